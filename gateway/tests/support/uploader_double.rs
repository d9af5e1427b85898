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
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinHandle;
use vod_contracts::commands::{
    decode_chunk, ChunkHeader, ChunkReply, CommandKind, CreateUpload, CreateVideo, LockUpload,
    Reject, RejectCode, Reply, TerminateUpload, UnlockUpload, UploadCreated, UploadLocked,
    UploadTerminated, UploadUnlocked, VideoCreated,
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
        let message_type = delivery.properties.kind().clone();
        let kind = message_type
            .as_ref()
            .and_then(|kind| CommandKind::from_message_type(kind.as_str()));
        let body = match kind {
            Some(CommandKind::Chunk) => reply_body(state.chunk(&delivery.data).await),
            Some(CommandKind::CreateVideo) => {
                let video = decoded::<CreateVideo>(&delivery.data);
                reply_body(state.create_video(video).await)
            }
            Some(CommandKind::CreateUpload) => {
                let upload = decoded::<CreateUpload>(&delivery.data);
                reply_body(state.create_upload(upload).await)
            }
            Some(CommandKind::TerminateUpload) => {
                let terminate = decoded::<TerminateUpload>(&delivery.data);
                reply_body(state.terminate(terminate).await)
            }
            // One request at a time reaches the double: the lock is always free.
            Some(CommandKind::LockUpload) => reply_body(decoded::<LockUpload>(&delivery.data).map(
                |lock| UploadLocked {
                    uploaded_bytes: lock.offset,
                    expires_at: None,
                },
            )),
            Some(CommandKind::UnlockUpload) => {
                reply_body(decoded::<UnlockUpload>(&delivery.data).map(|_| UploadUnlocked {}))
            }
            other => reply_body(Err::<(), _>(Reject::new(
                RejectCode::InvalidCommand,
                format!("the double does not do {other:?}"),
            ))),
        };
        if let (Some(reply_to), Some(correlation_id)) = (
            delivery.properties.reply_to().clone(),
            delivery.properties.correlation_id().clone(),
        ) {
            let mut properties = BasicProperties::default().with_correlation_id(correlation_id);
            if let Some(message_type) = message_type {
                properties = properties.with_type(message_type);
            }
            let _ = channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await;
        }
        let _ = delivery.ack(BasicAckOptions::default()).await;
    }
}

fn decoded<C: DeserializeOwned>(body: &[u8]) -> Result<C, Reject> {
    serde_json::from_slice(body)
        .map_err(|err| Reject::new(RejectCode::InvalidCommand, err.to_string()))
}

fn reply_body<T: Serialize>(result: Result<T, Reject>) -> Vec<u8> {
    serde_json::to_vec(&Reply::from(result)).expect("reply serializes")
}

impl DoubleState {
    async fn create_video(
        &mut self,
        video: Result<CreateVideo, Reject>,
    ) -> Result<VideoCreated, Reject> {
        let CreateVideo {
            title, description, ..
        } = video?;
        let video_id = VideoId::new();
        self.db
            .execute(
                "INSERT INTO video (project_id, id, title, description) VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, $3)",
                &[&video_id.0, &title, &description],
            )
            .await
            .map_err(unavailable)?;
        Ok(VideoCreated { video_id })
    }

    async fn create_upload(
        &mut self,
        upload: Result<CreateUpload, Reject>,
    ) -> Result<UploadCreated, Reject> {
        let CreateUpload {
            video_id,
            title,
            filename,
            total_bytes,
            metadata,
            ..
        } = upload?;
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
                        "INSERT INTO video (project_id, id, title, status) VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, 'UPLOADING')",
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
                "INSERT INTO upload_session (project_id, id, flow_id, metadata) VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, $3)",
                &[&session_id.0, &flow_id.0, &metadata],
            )
            .await
            .map_err(unavailable)?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(UploadCreated {
            video_id,
            flow_id,
            session_id,
            expires_at: None,
        })
    }

    async fn terminate(
        &mut self,
        terminate: Result<TerminateUpload, Reject>,
    ) -> Result<UploadTerminated, Reject> {
        let TerminateUpload { session_id, .. } = terminate?;
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
        Ok(UploadTerminated {})
    }

    async fn chunk(&mut self, frame: &[u8]) -> Result<ChunkReply, Reject> {
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
        Ok(ChunkReply::Stored {
            uploaded_bytes,
            total_bytes: Some(total),
            expires_at: None,
        })
    }
}

fn unavailable(err: tokio_postgres::Error) -> Reject {
    Reject::new(RejectCode::Unavailable, err.to_string())
}
