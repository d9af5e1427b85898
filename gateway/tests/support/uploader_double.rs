//! TEST DOUBLE of the uploader, for gateway-only tests.
//!
//! It answers the gateway's requests on the commands queue per `vod_contracts::commands`, with
//! just enough of the uploader's behaviour for the gateway to be tested on its own: it writes
//! the test's own database the simplest way and records every chunk it receives. The real
//! uploader, and the end-to-end tests of the whole stack, live elsewhere.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::task::JoinHandle;
use vod_contracts::commands::{
    decode_chunk, Ack, ChunkHeader, Command, Reject, RejectCode, Reply, CHUNK_MESSAGE_TYPE,
};
use vod_contracts::{FlowId, SessionId, VideoId};

use super::{connect, TestEnv};

/// A chunk as the double received it.
#[derive(Clone, Debug)]
pub struct ReceivedChunk {
    pub header: ChunkHeader,
    pub payload: Vec<u8>,
    /// What the double confirmed for it.
    pub uploaded_bytes: u64,
}

pub struct UploaderDouble {
    chunks: Arc<Mutex<Vec<ReceivedChunk>>>,
    connection: Option<Connection>,
    task: JoinHandle<()>,
}

impl UploaderDouble {
    pub async fn start(env: &TestEnv) -> Self {
        let settings = env.amqp_settings();
        let connection = vod_infra::amqp::connect(&settings, "uploader-double")
            .await
            .expect("connect to rabbitmq");
        let channel = vod_infra::amqp::consumer_channel(&connection, 1)
            .await
            .expect("channel");
        let names = vod_infra::amqp::queue_names(&settings);
        vod_infra::amqp::declare_queues(&channel, &names)
            .await
            .expect("declare queues");
        let consumer = channel
            .basic_consume(
                names.commands.as_str().into(),
                "uploader-double".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume commands");
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let state = DoubleState {
            db: connect(&env.world.postgres_url).await,
            chunks: chunks.clone(),
        };
        let task = tokio::spawn(serve(channel, consumer, state));
        Self {
            chunks,
            connection: Some(connection),
            task,
        }
    }

    pub fn chunks(&self) -> Vec<ReceivedChunk> {
        self.chunks.lock().expect("chunks lock").clone()
    }
}

impl Drop for UploaderDouble {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(connection) = self.connection.take() {
            tokio::spawn(async move {
                let _ = connection.close(200, "OK".into()).await;
            });
        }
    }
}

struct DoubleState {
    db: tokio_postgres::Client,
    chunks: Arc<Mutex<Vec<ReceivedChunk>>>,
}

async fn serve(channel: Channel, mut consumer: lapin::Consumer, mut state: DoubleState) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let is_chunk = delivery
            .properties
            .kind()
            .as_ref()
            .is_some_and(|kind| kind.as_str() == CHUNK_MESSAGE_TYPE);
        let reply: Reply = if is_chunk {
            state.chunk(&delivery.data).await
        } else {
            match serde_json::from_slice::<Command>(&delivery.data) {
                Ok(command) => state.command(command).await,
                Err(err) => Err(Reject::new(RejectCode::InvalidCommand, err.to_string())),
            }
        }
        .into();
        if let (Some(reply_to), Some(correlation_id)) = (
            delivery.properties.reply_to().clone(),
            delivery.properties.correlation_id().clone(),
        ) {
            let body = serde_json::to_vec(&reply).expect("reply serializes");
            let _ = channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_correlation_id(correlation_id),
                )
                .await;
        }
        let _ = delivery.ack(BasicAckOptions::default()).await;
    }
}

impl DoubleState {
    async fn command(&mut self, command: Command) -> Result<Ack, Reject> {
        match command {
            Command::CreateVideo { title, description } => {
                let video_id = VideoId::new();
                self.db
                    .execute(
                        "INSERT INTO video (id, title, description) VALUES ($1, $2, $3)",
                        &[&video_id.0, &title, &description],
                    )
                    .await
                    .map_err(unavailable)?;
                Ok(Ack::VideoCreated { video_id })
            }
            Command::CreateUpload {
                video_id,
                title,
                filename,
                total_bytes,
                metadata,
            } => {
                let transaction = self.db.transaction().await.map_err(unavailable)?;
                let video_id = match video_id {
                    Some(video_id) => {
                        let exists = transaction
                            .query_opt("SELECT 1 FROM video WHERE id = $1", &[&video_id.0])
                            .await
                            .map_err(unavailable)?
                            .is_some();
                        if !exists {
                            return Err(Reject::new(RejectCode::VideoNotFound, "no such video"));
                        }
                        video_id
                    }
                    None => {
                        let video_id = VideoId::new();
                        transaction
                            .execute(
                                "INSERT INTO video (id, title, status) VALUES ($1, $2, 'UPLOADING')",
                                &[&video_id.0, &title],
                            )
                            .await
                            .map_err(unavailable)?;
                        video_id
                    }
                };
                let flow_id = FlowId::new();
                let session_id = SessionId::new();
                transaction
                    .execute(
                        "INSERT INTO flow (id, video_id, status, filename, total_bytes)
                         VALUES ($1, $2, 'UPLOADING', $3, $4)",
                        &[
                            &flow_id.0,
                            &video_id.0,
                            &filename,
                            &total_bytes.map(|total| total as i64),
                        ],
                    )
                    .await
                    .map_err(unavailable)?;
                transaction
                    .execute(
                        "INSERT INTO upload_session (id, flow_id, metadata) VALUES ($1, $2, $3)",
                        &[&session_id.0, &flow_id.0, &metadata],
                    )
                    .await
                    .map_err(unavailable)?;
                transaction.commit().await.map_err(unavailable)?;
                Ok(Ack::UploadCreated {
                    video_id,
                    flow_id,
                    session_id,
                    expires_at: None,
                })
            }
            Command::TerminateUpload { session_id } => {
                let transaction = self.db.transaction().await.map_err(unavailable)?;
                let updated = transaction
                    .execute(
                        "UPDATE upload_session SET status = 'TERMINATED', closed_at = now()
                         WHERE id = $1",
                        &[&session_id.0],
                    )
                    .await
                    .map_err(unavailable)?;
                if updated == 0 {
                    return Err(Reject::new(RejectCode::UploadNotFound, "no such upload"));
                }
                transaction
                    .execute(
                        "UPDATE flow SET status = 'CANCELLED'
                         WHERE id = (SELECT flow_id FROM upload_session WHERE id = $1)",
                        &[&session_id.0],
                    )
                    .await
                    .map_err(unavailable)?;
                transaction.commit().await.map_err(unavailable)?;
                Ok(Ack::UploadTerminated)
            }
            // One request at a time reaches the double: the lock is always free.
            Command::LockUpload { offset, .. } => Ok(Ack::UploadLocked {
                uploaded_bytes: offset,
                expires_at: None,
            }),
            Command::UnlockUpload { .. } => Ok(Ack::UploadUnlocked),
            other => Err(Reject::new(
                RejectCode::InvalidCommand,
                format!("the double does not do {other:?}"),
            )),
        }
    }

    async fn chunk(&mut self, frame: &[u8]) -> Result<Ack, Reject> {
        let (header, payload) = decode_chunk(frame)
            .map_err(|err| Reject::new(RejectCode::InvalidCommand, err.to_string()))?;
        let row = self
            .db
            .query_opt(
                "SELECT s.status, f.id, f.uploaded_bytes, f.total_bytes
                 FROM upload_session s JOIN flow f ON f.id = s.flow_id WHERE s.id = $1",
                &[&header.session_id.0],
            )
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Reject::new(RejectCode::UploadNotFound, "no such upload"))?;
        let status: String = row.get(0);
        let flow_id: uuid::Uuid = row.get(1);
        let uploaded = row.get::<_, i64>(2) as u64;
        let total = row.get::<_, i64>(3) as u64;
        if status != "OPEN" {
            return Err(Reject::new(RejectCode::UploadClosed, "upload is closed"));
        }
        if header.offset != uploaded {
            return Err(Reject::new(
                RejectCode::OffsetMismatch,
                format!("the upload is at offset {uploaded}"),
            ));
        }
        if header.offset + header.len > total {
            return Err(Reject::new(
                RejectCode::LengthExceeded,
                "past the upload length",
            ));
        }
        let uploaded_bytes = header.offset + header.len;
        self.db
            .execute(
                "UPDATE flow SET uploaded_bytes = $2 WHERE id = $1",
                &[&flow_id, &(uploaded_bytes as i64)],
            )
            .await
            .map_err(unavailable)?;
        self.chunks
            .lock()
            .expect("chunks lock")
            .push(ReceivedChunk {
                header,
                payload: payload.to_vec(),
                uploaded_bytes,
            });
        Ok(Ack::ChunkStored {
            uploaded_bytes,
            total_bytes: Some(total),
            expires_at: None,
        })
    }
}

fn unavailable(err: tokio_postgres::Error) -> Reject {
    Reject::new(RejectCode::Unavailable, err.to_string())
}
