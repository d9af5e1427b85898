//! Storing one chunk: the uploader's half of the write protocol.
//!
//! No database connection or row lock is held while a chunk travels to fflow. A chunk is
//! checked against the session as read (one statement), written to the session's fflow replica
//! under the write lock's fencing token, and counted by one compare-and-set statement that
//! moves the offset only if the upload is still where the chunk found it and its lock has not
//! passed to another request since. fflow refuses a write whose token is lower than one it has
//! seen, so a request that lost the lock while its chunk was on the way can neither overwrite
//! bytes another request wrote nor move the offset over them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use vod_contracts::commands::{ChunkCommit, ChunkHeader, ChunkReply, Reject, RejectCode};
use vod_contracts::{FlowStatus, SessionStatus, WriterId};

use crate::fflow_client::{ChunkPayload, FflowCallError};
use crate::handlers::{
    check_length, closed, locked, name_upload_in_span, no_room, not_found, offset_mismatch,
    HandlerError, Handlers,
};
use crate::store::{self, SessionRow};
use crate::transitions::{self, Advance, WriterChange};

/// The bytes of a chunk, as they came.
pub enum ChunkBody {
    /// A broker message, held whole: written again when the upload moved while it was on its
    /// way to fflow.
    Whole(Bytes),
    /// A request body, passed on to fflow as it arrives (the chunk listener): written once,
    /// and the chunk is what arrives, at most the header's `len`.
    Streamed(Option<StreamedBody>),
}

/// A request body on its way to fflow.
pub struct StreamedBody {
    pub body: reqwest::Body,
    /// Set when the body broke or went past the header's `len`: a failed write is then the
    /// sender's doing, not fflow's.
    pub cut: Arc<AtomicBool>,
}

impl ChunkBody {
    fn is_streamed(&self) -> bool {
        matches!(self, ChunkBody::Streamed(_))
    }
}

/// What one attempt to store a chunk came to.
enum Attempt {
    Done(ChunkReply),
    /// The chunk's request holds the write lock and sent chunks before this one that are not
    /// stored yet: the upload is short of the chunk's offset.
    Ahead(SessionRow),
    /// Another request holds the write lock, and the chunk, which takes the lock itself, may
    /// wait for it ([`ChunkHeader::lock_wait_ms`]); nothing of its body was read.
    Locked(SessionRow),
    /// The upload moved while the chunk was on its way (a redelivered copy was counted first,
    /// or the lock passed to another request): it is checked again against the new state.
    Moved,
}

/// The waits of a chunk that came before its predecessors: none at first, then the first,
/// doubling up to the second.
const AHEAD_FIRST_PAUSE: Duration = Duration::from_millis(1);
const AHEAD_MAX_PAUSE: Duration = Duration::from_millis(10);

/// How often a chunk waiting for another request's write lock checks again.
const LOCKED_PAUSE: Duration = Duration::from_millis(100);

/// How often a chunk whose upload moved under it is checked again before it is refused.
const MOVED_ATTEMPTS: u32 = 3;

/// The request a chunk is written for.
#[derive(Clone, Copy)]
struct Writer {
    id: WriterId,
    /// The chunk gives the lock back once it is counted.
    release: bool,
}

impl Writer {
    /// A chunk sent outside any request's lock writes as a request of its own, one chunk long,
    /// so that it cannot interleave with a request that holds (or takes) the lock.
    fn of(header: &ChunkHeader) -> Self {
        match header.writer {
            Some(id) => Self {
                id,
                release: header.release,
            },
            None => Self {
                id: WriterId::new(),
                release: true,
            },
        }
    }

    fn change(self, lease_secs: u64) -> WriterChange {
        if self.release {
            WriterChange::Release(self.id)
        } else {
            WriterChange::Hold {
                writer: self.id,
                lease_secs,
            }
        }
    }
}

impl Handlers {
    /// Stores one chunk and answers with where the upload stands. A request sends its next
    /// chunk while the one before is stored; when the next arrives first, it waits for the
    /// upload to reach it (`chunk_ahead_wait`), then is refused as at another offset.
    pub async fn chunk(
        &self,
        header: ChunkHeader,
        mut body: ChunkBody,
    ) -> Result<ChunkReply, HandlerError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.chunk_ahead_wait;
        // Never past the lease: a lock held that long is given up anyway.
        let lock_deadline = header.lock_wait_ms.map(|wait| {
            started + Duration::from_millis(wait).min(Duration::from_secs(self.writer_lease_secs))
        });
        let writer = Writer::of(&header);
        let mut pause = Duration::ZERO;
        let mut moved = 0;
        loop {
            match self.try_chunk(&header, writer, &mut body).await? {
                Attempt::Done(ack) => return Ok(ack),
                Attempt::Locked(_)
                    if lock_deadline.is_some_and(|until| {
                        tokio::time::Instant::now() + LOCKED_PAUSE < until
                    }) =>
                {
                    tokio::time::sleep(LOCKED_PAUSE).await;
                }
                Attempt::Locked(session) => return Err(locked(&session).into()),
                Attempt::Moved if moved < MOVED_ATTEMPTS => moved += 1,
                Attempt::Moved => return Err(moved_under(&header).into()),
                Attempt::Ahead(session) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(session_id = %session.session_id, offset = header.offset, uploaded = session.uploaded_bytes, "chunk came before those sent ahead of it, waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).clamp(AHEAD_FIRST_PAUSE, AHEAD_MAX_PAUSE);
                }
                Attempt::Ahead(session) => {
                    tracing::info!(session_id = %session.session_id, offset = header.offset, uploaded = session.uploaded_bytes, "the chunks sent before this one never came");
                    return Err(offset_mismatch(&session, header.offset).into());
                }
            }
        }
    }

    /// One attempt: check, take the lock's token, write to fflow, count. A chunk refused here
    /// creates no process: the session's fflow replica is chosen (and its process created) only
    /// once the checks pass.
    async fn try_chunk(
        &self,
        header: &ChunkHeader,
        writer: Writer,
        body: &mut ChunkBody,
    ) -> Result<Attempt, HandlerError> {
        let end = header.offset.checked_add(header.len).ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidCommand,
                "chunk offset and length overflow",
            )
        })?;
        let (session, cached, epoch) = {
            let client = self.pg.get().await.context("no database connection")?;
            // The cached route is read while the session is.
            let (cached, session) = tokio::join!(
                self.routing.cached(header.session_id),
                store::load_session(&client, header.session_id)
            );
            let session = session?.ok_or_else(|| not_found(header.session_id))?;
            name_upload_in_span(&session);
            check_length(&session, end)?;
            // A streamed chunk is sent once and is never a copy of one stored before.
            if !body.is_streamed() {
                if let Some(ack) = self.already_stored(&session, header, end).await {
                    return Ok(Attempt::Done(ack));
                }
            }
            if session.status == SessionStatus::Open && session.expired {
                return Err(self.expire_found(client, &session).await);
            }
            if is_ahead(&session, header) {
                return Ok(Attempt::Ahead(session));
            }
            let waits_for_lock = header.lock_wait_ms.is_some();
            if waits_for_lock
                && session.status == SessionStatus::Open
                && !session.may_write(header.writer)
            {
                return Ok(Attempt::Locked(session));
            }
            check_writable(&session, header)?;
            let epoch = if session.writer == Some(writer.id) {
                session.writer_epoch
            } else {
                // The request takes the lock with this chunk (or writes outside any lock):
                // the token goes up, which fences off the request that held it before.
                match store::claim_writer(
                    &client,
                    session.session_id,
                    writer.id,
                    self.writer_lease_secs,
                )
                .await?
                {
                    Some(epoch) => epoch,
                    None if waits_for_lock => return Ok(Attempt::Locked(session)),
                    None => return Err(locked(&session).into()),
                }
            };
            (session, cached, epoch)
        };
        // The row read is the truth: a cached route may name a replica the upload was moved
        // away from since, or be gone with a restarted Redis; it is written again then.
        let address = match &session.fflow_address {
            Some(recorded) => {
                self.routing
                    .cache_unless_known(session.session_id, recorded, &cached)
                    .await;
                recorded.clone()
            }
            None => {
                self.routing.forget(session.session_id).await;
                self.routing.address_for(&self.pg, &session).await?
            }
        };
        let (payload, cut) = match body {
            ChunkBody::Whole(bytes) => (ChunkPayload::Whole(bytes.clone()), None),
            ChunkBody::Streamed(streamed) => match streamed.take() {
                Some(StreamedBody { body, cut }) => (
                    ChunkPayload::Streamed {
                        body,
                        // A request that holds the chunk longer has lost its lease.
                        timeout: Duration::from_secs(self.writer_lease_secs),
                    },
                    Some(cut),
                ),
                // Its bytes went to fflow once, and the upload moved before they counted.
                None => return Err(moved_under(header).into()),
            },
        };
        let written = match self
            .fflow
            .put_chunk(&address, session.session_id, header.offset, epoch, payload)
            .await
        {
            Ok(written) => written,
            Err(error) if error.is_stale_writer() => {
                tracing::info!(session_id = %session.session_id, "the write lock passed to another request while the chunk was on its way");
                return Ok(Attempt::Moved);
            }
            Err(error) if cut.as_ref().is_some_and(|cut| cut.load(Ordering::Acquire)) => {
                tracing::info!(session_id = %session.session_id, error = %error, "chunk body cut off on its way in, nothing counted");
                return Err(Reject::new(
                    RejectCode::InvalidCommand,
                    "the chunk's body broke off or went past its length; nothing of it counts",
                )
                .into());
            }
            Err(error) => return Err(self.chunk_not_taken(&session, &address, error).await),
        };
        let end = if cut.is_some() {
            // A streamed chunk is what arrived.
            if !(header.offset..=end).contains(&written.received_bytes) {
                return Err(HandlerError::Internal(anyhow!(
                    "fflow holds {} bytes after a chunk of at most {} at {}",
                    written.received_bytes,
                    header.len,
                    header.offset
                )));
            }
            written.received_bytes
        } else {
            if written.received_bytes != end {
                tracing::warn!(session_id = %session.session_id, received = written.received_bytes, expected = end, "fflow holds an unexpected length");
            }
            end
        };
        self.count(&session, header, writer, epoch, end).await
    }

    /// Counts a chunk fflow holds: a staged one extends its request's lease, any other moves
    /// the offset. Nothing is counted when the upload moved meanwhile.
    async fn count(
        &self,
        session: &SessionRow,
        header: &ChunkHeader,
        writer: Writer,
        epoch: u64,
        end: u64,
    ) -> Result<Attempt, HandlerError> {
        let mut client = self.pg.get().await.context("no database connection")?;
        if session.fflow_unreachable_for.is_some() {
            store::note_fflow_reachable(&client, session.session_id).await?;
        }
        let from = match header.commit {
            ChunkCommit::Stage { .. } => {
                let held = if writer.release {
                    store::release_writer(&client, session.session_id, writer.id).await?;
                    true
                } else {
                    store::extend_writer(
                        &client,
                        session.session_id,
                        writer.id,
                        epoch,
                        self.writer_lease_secs,
                    )
                    .await?
                };
                if !held {
                    return Ok(Attempt::Moved);
                }
                return Ok(Attempt::Done(ChunkReply::Staged { staged_to: end }));
            }
            ChunkCommit::Immediate => header.offset,
            ChunkCommit::CommitStaged { base } => base,
        };
        let advance = Advance {
            from,
            to: end,
            epoch,
        };
        let writer_change = writer.change(self.writer_lease_secs);
        // A chunk that may complete the upload (its length reached, or not declared yet and
        // possibly declared meanwhile) completes it in the same transaction.
        let may_complete = session.total_bytes.is_none_or(|total| total == end);
        let advanced = if may_complete {
            let tx = client.transaction().await.context("failed to begin")?;
            let Some(advanced) = transitions::advance_offset(
                &tx,
                session,
                advance,
                self.session_ttl_secs,
                writer_change,
            )
            .await?
            else {
                return Ok(Attempt::Moved);
            };
            let complete = advanced.total_bytes == Some(advanced.uploaded_bytes);
            if complete {
                transitions::complete_upload(&tx, session, self.recorder()).await?;
            }
            tx.commit().await.context("failed to commit the chunk")?;
            advanced
        } else {
            let Some(advanced) = transitions::advance_offset(
                &client,
                session,
                advance,
                self.session_ttl_secs,
                writer_change,
            )
            .await?
            else {
                return Ok(Attempt::Moved);
            };
            advanced
        };
        drop(client);
        let complete = advanced.total_bytes == Some(advanced.uploaded_bytes);
        tracing::debug!(session_id = %session.session_id, uploaded = advanced.uploaded_bytes, total = advanced.total_bytes, "chunk stored");
        if complete {
            self.after_complete(session.session_id).await;
        }
        Ok(Attempt::Done(ChunkReply::Stored {
            uploaded_bytes: advanced.uploaded_bytes,
            total_bytes: advanced.total_bytes,
            expires_at: (!complete).then_some(advanced.expires_at).flatten(),
        }))
    }

    /// The answer to a chunk the session's fflow replica did not take. A refusal is passed on;
    /// one for want of disk space keeps its own code, so the client hears why.
    /// A replica that cannot be reached (or that no longer knows the session) may be
    /// restarting, and it reloads its sessions from its spool, so the first failure is only
    /// noted; once that has lasted longer than the grace, its bytes are given up for lost and
    /// the upload moves: the offset drops to 0 and the next chunk goes to another replica.
    async fn chunk_not_taken(
        &self,
        found: &SessionRow,
        address: &str,
        error: FflowCallError,
    ) -> HandlerError {
        tracing::warn!(session_id = %found.session_id, address = %address, error = %error, "fflow did not take the chunk");
        if error.is_insufficient_storage() {
            return no_room(&error).into();
        }
        let unavailable = Reject::new(
            RejectCode::Unavailable,
            "the encoder did not take the chunk; retry from the reported offset",
        );
        if !error.may_be_lost() {
            return unavailable.into();
        }
        let noted = async {
            let mut client = self.pg.get().await.context("no database connection")?;
            let tx = client.transaction().await.context("failed to begin")?;
            let Some(session) = store::lock_session(&tx, found.session_id).await? else {
                return anyhow::Ok(None);
            };
            if session.fflow_address.as_deref() != Some(address) {
                // Moved already, by a chunk that found the same failure.
                return Ok(None);
            }
            let lowered = match session.fflow_unreachable_for {
                Some(unreachable_for) if unreachable_for >= self.fflow_reassign_after => {
                    let reason = format!(
                        "fflow replica {address} lost the upload {} s ago: {error}",
                        unreachable_for.as_secs()
                    );
                    transitions::reassign_lost_replica(&tx, &session, &reason)
                        .await?
                        .map(|from| (from, reason, session))
                }
                _ => {
                    store::note_fflow_unreachable(&tx, session.session_id).await?;
                    None
                }
            };
            tx.commit()
                .await
                .context("failed to commit the unreachable replica")?;
            Ok(lowered)
        }
        .await;
        match noted {
            Err(error) => HandlerError::Internal(error),
            Ok(None) => unavailable.into(),
            Ok(Some((from, reason, session))) => {
                self.routing.forget(session.session_id).await;
                tracing::warn!(
                    session_id = %session.session_id,
                    kind = session.kind.as_str(),
                    address = %address,
                    lost_bytes = from,
                    reason = %reason,
                    "fflow replica lost, upload moved: its offset drops to 0"
                );
                Reject::new(
                    RejectCode::OffsetMismatch,
                    format!(
                        "the encoder holding upload {} was lost; the upload is at offset 0 \
                         again, resend from there",
                        session.session_id
                    ),
                )
                .into()
            }
        }
    }

    /// The answer to a chunk whose bytes are all stored already (a redelivery), if it is one.
    async fn already_stored(
        &self,
        session: &SessionRow,
        header: &ChunkHeader,
        end: u64,
    ) -> Option<ChunkReply> {
        let start = match header.commit {
            ChunkCommit::Immediate => header.offset,
            ChunkCommit::CommitStaged { base } => base,
            ChunkCommit::Stage { .. } => return None,
        };
        let stored_before = start < session.uploaded_bytes && end <= session.uploaded_bytes;
        let empty_at_offset = header.len == 0
            && header.commit == ChunkCommit::Immediate
            && header.offset == session.uploaded_bytes;
        if !(stored_before || empty_at_offset) {
            return None;
        }
        if session
            .flow
            .is_some_and(|flow| flow.status == FlowStatus::Processing)
        {
            self.ensure_finish_requested(session).await;
        }
        Some(ChunkReply::Stored {
            uploaded_bytes: session.uploaded_bytes,
            total_bytes: session.total_bytes,
            expires_at: session
                .expires_at
                .filter(|_| session.status == SessionStatus::Open),
        })
    }
}

/// The refusal of a chunk whose upload kept changing while it was stored.
fn moved_under(header: &ChunkHeader) -> Reject {
    Reject::new(
        RejectCode::UploadLocked,
        format!(
            "upload {} kept changing while the chunk was stored; retry from the offset HEAD \
             gives",
            header.session_id
        ),
    )
}

/// Whether the chunk is one its request sent while chunks before it are still on their way:
/// the request holds the write lock of the open upload, and the upload is short of the chunk.
fn is_ahead(session: &SessionRow, header: &ChunkHeader) -> bool {
    session.status == SessionStatus::Open
        && !session.expired
        && header.commit == ChunkCommit::Immediate
        && header.writer.is_some()
        && session.writer == header.writer
        && session.writer_active
        && header.offset > session.uploaded_bytes
}

/// Whether the chunk may be written now: the upload is open, the chunk's writer may write,
/// and it starts where the upload (or its request's staged bytes) stand.
fn check_writable(session: &SessionRow, header: &ChunkHeader) -> Result<(), Reject> {
    if session.status != SessionStatus::Open {
        return Err(closed(session));
    }
    if !session.may_write(header.writer) {
        return Err(locked(session));
    }
    match header.commit {
        ChunkCommit::Immediate if header.offset != session.uploaded_bytes => {
            Err(offset_mismatch(session, header.offset))
        }
        ChunkCommit::Immediate => Ok(()),
        ChunkCommit::Stage { base } | ChunkCommit::CommitStaged { base } => {
            if header.writer.is_none() {
                return Err(Reject::new(
                    RejectCode::InvalidCommand,
                    "a staged chunk needs the upload's write lock",
                ));
            }
            if base != session.uploaded_bytes {
                return Err(offset_mismatch(session, base));
            }
            if header.offset < base {
                return Err(Reject::new(
                    RejectCode::InvalidCommand,
                    "a staged chunk starts before its request's offset",
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use vod_infra::testsuite::TestWorld;

    use super::*;
    use crate::events::Recorder;
    use crate::metrics::StateTransitions;
    use crate::transitions::NewUpload;

    type Client = deadpool_postgres::Client;

    async fn connect(world: &TestWorld) -> Client {
        vod_infra::postgres::pool(&world.postgres())
            .expect("a pool")
            .get()
            .await
            .expect("a connection")
    }

    async fn new_upload(client: &mut Client, total_bytes: u64) -> SessionRow {
        let counted = Recorder::new(StateTransitions::default(), "http://holder.test");
        // The flow and its session are checked together at commit.
        let tx = client.transaction().await.expect("a transaction");
        let created = transitions::create_upload(
            &tx,
            NewUpload {
                project_id: vod_contracts::ProjectId::DEFAULT,
                video_id: None,
                title: "fenced",
                description: "",
                filename: None,
                total_bytes: Some(total_bytes),
                metadata: None,
                ttl_secs: 60,
            },
            &counted,
        )
        .await
        .expect("database")
        .expect("upload created");
        tx.commit().await.expect("committed");
        load(client, &created.session_id).await
    }

    async fn load(client: &Client, id: &vod_contracts::SessionId) -> SessionRow {
        store::load_session(client, *id)
            .await
            .expect("database")
            .expect("the session exists")
    }

    fn hold(writer: WriterId) -> WriterChange {
        WriterChange::Hold {
            writer,
            lease_secs: 60,
        }
    }

    #[tokio::test]
    async fn a_request_that_lost_the_lock_while_its_chunk_travelled_cannot_count_it() {
        let world = TestWorld::new().await;
        let mut client = connect(&world).await;
        let session = new_upload(&mut client, 100).await;
        let (first, second) = (WriterId::new(), WriterId::new());

        // The first request takes the lock with a lease that has already run out.
        let first_epoch = store::claim_writer(&client, session.session_id, first, 0)
            .await
            .expect("database")
            .expect("nobody held the lock");
        // It checked its chunk and sent it to fflow; meanwhile the second request takes the
        // lock, which raises the token.
        let second_epoch = store::claim_writer(&client, session.session_id, second, 60)
            .await
            .expect("database")
            .expect("the first lease ran out");
        assert!(
            second_epoch > first_epoch,
            "the token goes up with a new holder"
        );
        assert_eq!(
            store::claim_writer(&client, session.session_id, first, 60)
                .await
                .expect("database"),
            None,
            "the first request cannot take the lock back while the second's lease runs"
        );

        // The first request's chunk comes back from fflow: it moves nothing.
        let stale = Advance {
            from: 0,
            to: 10,
            epoch: first_epoch,
        };
        let moved = transitions::advance_offset(&client, &session, stale, 60, hold(first))
            .await
            .expect("database");
        assert!(
            moved.is_none(),
            "a chunk under an older token moved the offset"
        );
        let after = load(&client, &session.session_id).await;
        assert_eq!(after.uploaded_bytes, 0);
        assert_eq!(
            after.writer,
            Some(second),
            "the lock stays with the second request"
        );

        // The second request's chunk counts, and extending its own lease keeps its token.
        let current = Advance {
            from: 0,
            to: 10,
            epoch: second_epoch,
        };
        let moved = transitions::advance_offset(&client, &session, current, 60, hold(second))
            .await
            .expect("database")
            .expect("the holder's chunk moves the offset");
        assert_eq!(moved.uploaded_bytes, 10);
        assert_eq!(
            store::claim_writer(&client, session.session_id, second, 60)
                .await
                .expect("database"),
            Some(second_epoch)
        );
    }

    #[tokio::test]
    async fn a_chunk_never_moves_the_offset_past_the_length_or_twice() {
        let world = TestWorld::new().await;
        let mut client = connect(&world).await;
        let session = new_upload(&mut client, 10).await;
        let writer = WriterId::new();
        let epoch = store::claim_writer(&client, session.session_id, writer, 60)
            .await
            .expect("database")
            .expect("nobody held the lock");
        let past_the_end = Advance {
            from: 0,
            to: 11,
            epoch,
        };
        let moved = transitions::advance_offset(&client, &session, past_the_end, 60, hold(writer))
            .await
            .expect("database");
        assert!(moved.is_none(), "moved past the declared length");

        let chunk = Advance {
            from: 0,
            to: 4,
            epoch,
        };
        let first = transitions::advance_offset(&client, &session, chunk, 60, hold(writer))
            .await
            .expect("database");
        assert_eq!(first.map(|moved| moved.uploaded_bytes), Some(4));
        let again = transitions::advance_offset(&client, &session, chunk, 60, hold(writer))
            .await
            .expect("database");
        assert!(
            again.is_none(),
            "a redelivered chunk moved the offset twice"
        );
        assert_eq!(load(&client, &session.session_id).await.uploaded_bytes, 4);
    }
}
