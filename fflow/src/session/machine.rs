//! The life of a session, without I/O: which step may follow which, and what each step asks of
//! its caller.
//!
//! [`Session`](super::Session) keeps one [`Machine`] under its lock. It applies a step to a copy,
//! does what the step asks (persist `session.json`, cancel the streaming encode, write the
//! chunk) and keeps the copy only once that succeeded, so a failed write to the disk leaves the
//! session as it was.

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Chunks are arriving.
    Receiving,
    /// The source is being joined from the parts of a concatenated upload.
    Joining,
    Encoding,
    /// Outcome published, spool removed; kept so that `finish` stays idempotent.
    Done,
}

/// Whether the session is encoded while it uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streaming {
    /// Not decided yet: the first bytes did not tell, or probing needs more of them.
    Undecided,
    /// One task is probing the source to start a streaming encode.
    Starting,
    /// A streaming encode runs.
    Running,
    /// Encoded once complete: the source cannot be read as it arrives, streaming is off, or a
    /// streaming encode was abandoned.
    AtLastByte,
}

/// Why a step was refused. A refused step changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The step does not follow from the session's phase and streaming state.
    NotNow,
    /// A partial upload is never encoded itself.
    NotEncodable,
    /// The chunk's writer lost its lease to one of a higher epoch.
    StaleWriter {
        epoch: u64,
        highest: u64,
    },
    OffsetGap {
        offset: u64,
        received: u64,
    },
    LengthExceeded {
        end: u64,
        total: u64,
    },
    ChunkTooLarge {
        max: u64,
    },
    Incomplete {
        received: u64,
        total: u64,
    },
    LengthMismatch {
        known: u64,
        given: u64,
    },
}

/// Who writes a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The uploader, holding the write lease of fencing token `epoch`.
    Upload { epoch: u64 },
    /// This replica, joining the parts of a concatenated upload: no lease fences it.
    Join,
}

/// A chunk as it is announced, before its bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    /// The length the request declared, when it did.
    pub declared_len: Option<u64>,
    pub max_bytes: u64,
}

/// What an accepted chunk asks of the caller before its bytes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The writer's epoch is the highest yet: persist it before the first byte.
    pub persist_epoch: bool,
    /// Bytes below this were read by ffmpeg: compare them before overwriting them.
    pub fed: u64,
}

/// Who encodes a session whose upload is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoder {
    /// Nobody yet: the caller starts the encode of the complete source.
    CompleteSource,
    /// The streaming encode that runs finishes the session.
    RunningStream,
}

/// Whether a claimed streaming encode may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStart {
    /// It runs, with this many bytes received.
    Started { received: u64 },
    /// The upload completed while it was being decided: the source is encoded once complete.
    TooLate,
}

/// What to hand a streaming encode's ffmpeg next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Read `len` bytes of the source from the offset asked for.
    Read { len: usize },
    /// Everything was fed.
    End,
    /// Nothing new was uploaded yet.
    Wait,
}

/// A session's state, and every step that changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    phase: Phase,
    streaming: Streaming,
    /// `false` for a partial upload, which is never encoded itself.
    encodable: bool,
    received: u64,
    /// `None` while the length is deferred.
    total_bytes: Option<u64>,
    /// Bytes of the source handed to the streaming encode's ffmpeg; 0 without one.
    fed: u64,
    /// The highest writer epoch a chunk was accepted from.
    epoch: u64,
}

/// What a session starts from, new or reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub encodable: bool,
    /// The replica encodes uploads while they arrive.
    pub streaming_allowed: bool,
    pub total_bytes: Option<u64>,
    pub epoch: u64,
}

impl Machine {
    /// A session just created.
    pub fn new(start: Start) -> Self {
        Self::with(start, Phase::Receiving, 0)
    }

    /// A session reloaded from its spool: `on_disk` bytes of source, the record's `finished`
    /// flag and whether it names parts to join.
    pub fn reloaded(start: Start, on_disk: u64, finished: bool, has_parts: bool) -> Self {
        let received = start
            .total_bytes
            .map_or(on_disk, |total| on_disk.min(total));
        let phase = if finished && Some(received) == start.total_bytes {
            Phase::Encoding
        } else if has_parts {
            Phase::Joining
        } else {
            Phase::Receiving
        };
        Self::with(start, phase, received)
    }

    fn with(start: Start, phase: Phase, received: u64) -> Self {
        Self {
            phase,
            streaming: if start.streaming_allowed {
                Streaming::Undecided
            } else {
                Streaming::AtLastByte
            },
            encodable: start.encodable,
            received,
            total_bytes: start.total_bytes,
            fed: 0,
            epoch: start.epoch,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    #[cfg(test)]
    pub fn streaming(&self) -> Streaming {
        self.streaming
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// `session.json` says the encode was started.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Encoding | Phase::Done)
    }

    /// Takes a chunk of `writer` before its bytes arrive. The bytes received become
    /// `chunk.offset` until [`Machine::chunk_written`] says how far the write went.
    pub fn accept_chunk(&mut self, writer: Writer, chunk: &Chunk) -> Result<Accepted, Refusal> {
        let writes_in = match writer {
            Writer::Upload { .. } => Phase::Receiving,
            Writer::Join => Phase::Joining,
        };
        if self.phase != writes_in {
            return Err(Refusal::NotNow);
        }
        if let Writer::Upload { epoch } = writer {
            if epoch < self.epoch {
                return Err(Refusal::StaleWriter {
                    epoch,
                    highest: self.epoch,
                });
            }
        }
        if chunk.offset > self.received {
            return Err(Refusal::OffsetGap {
                offset: chunk.offset,
                received: self.received,
            });
        }
        if let Some(len) = chunk.declared_len {
            self.check_growth(chunk, len)?;
        }
        let persist_epoch = match writer {
            Writer::Upload { epoch } if epoch > self.epoch => {
                self.epoch = epoch;
                true
            }
            _ => false,
        };
        self.received = chunk.offset;
        Ok(Accepted {
            persist_epoch,
            fed: self.fed,
        })
    }

    /// Whether `written` bytes of `chunk` still fit: checked as they arrive.
    pub fn check_growth(&self, chunk: &Chunk, written: u64) -> Result<(), Refusal> {
        if written > chunk.max_bytes {
            return Err(Refusal::ChunkTooLarge {
                max: chunk.max_bytes,
            });
        }
        let end = chunk.offset.saturating_add(written);
        match self.total_bytes {
            Some(total) if end > total => Err(Refusal::LengthExceeded { end, total }),
            _ => Ok(()),
        }
    }

    /// The accepted chunk's bytes are on disk up to `end`.
    pub fn chunk_written(&mut self, end: u64) {
        self.received = end;
    }

    /// The source's length, given at finish when it was deferred at creation. `Ok(true)` when
    /// it was not known before, and must be persisted.
    pub fn give_length(&mut self, total: u64) -> Result<bool, Refusal> {
        match self.total_bytes {
            Some(known) if known != total => Err(Refusal::LengthMismatch {
                known,
                given: total,
            }),
            Some(_) => Ok(false),
            None => {
                self.total_bytes = Some(total);
                Ok(true)
            }
        }
    }

    /// A final upload starts joining its parts (to be persisted with them).
    pub fn begin_join(&mut self) -> Result<(), Refusal> {
        if !self.encodable {
            return Err(Refusal::NotEncodable);
        }
        if self.phase != Phase::Receiving {
            return Err(Refusal::NotNow);
        }
        self.phase = Phase::Joining;
        Ok(())
    }

    /// The upload is complete: the session moves to encoding (to be persisted).
    pub fn begin_encode(&mut self) -> Result<Encoder, Refusal> {
        if !self.encodable {
            return Err(Refusal::NotEncodable);
        }
        self.enter_encoding(Phase::Receiving)
    }

    /// The parts are joined: the session moves on to encoding (to be persisted).
    pub fn joined(&mut self) -> Result<Encoder, Refusal> {
        self.enter_encoding(Phase::Joining)
    }

    fn enter_encoding(&mut self, from: Phase) -> Result<Encoder, Refusal> {
        if self.phase != from {
            return Err(Refusal::NotNow);
        }
        let total = self.total_bytes.unwrap_or(self.received);
        if self.received != total {
            return Err(Refusal::Incomplete {
                received: self.received,
                total,
            });
        }
        self.total_bytes = Some(total);
        self.phase = Phase::Encoding;
        Ok(match self.streaming {
            Streaming::Running => Encoder::RunningStream,
            _ => {
                // A probe still running finds the session finished and gives up.
                self.streaming = Streaming::AtLastByte;
                Encoder::CompleteSource
            }
        })
    }

    /// The caller becomes the one task deciding whether to stream; returns the bytes received.
    /// Only a whole upload of known length, still arriving, is encoded as it arrives.
    pub fn claim_streaming_decision(&mut self) -> Result<u64, Refusal> {
        let may_stream = self.encodable && self.total_bytes.is_some();
        if !may_stream || (self.phase, self.streaming) != (Phase::Receiving, Streaming::Undecided) {
            return Err(Refusal::NotNow);
        }
        self.streaming = Streaming::Starting;
        Ok(self.received)
    }

    /// The decision needs more bytes; a later chunk tries again.
    pub fn streaming_undecided(&mut self) -> Result<(), Refusal> {
        self.leave_starting(Streaming::Undecided)
    }

    /// The source is encoded once complete.
    pub fn streaming_refused(&mut self) -> Result<(), Refusal> {
        self.leave_starting(Streaming::AtLastByte)
    }

    fn leave_starting(&mut self, to: Streaming) -> Result<(), Refusal> {
        if self.streaming != Streaming::Starting {
            return Err(Refusal::NotNow);
        }
        self.streaming = to;
        Ok(())
    }

    /// The claimed streaming encode starts, unless the upload moved on meanwhile.
    pub fn start_streaming(&mut self) -> Result<StreamStart, Refusal> {
        if self.streaming != Streaming::Starting {
            return Err(Refusal::NotNow);
        }
        if self.phase != Phase::Receiving {
            self.streaming = Streaming::AtLastByte;
            return Ok(StreamStart::TooLate);
        }
        self.streaming = Streaming::Running;
        self.fed = 0;
        Ok(StreamStart::Started {
            received: self.received,
        })
    }

    /// The streaming encode ended without a presentation. `Ok(true)` when the upload is
    /// already complete, so that the caller encodes it now; otherwise `finish` will. Refused
    /// when no streaming encode runs: it was abandoned, and `finish` started the encode.
    pub fn streaming_failed(&mut self) -> Result<bool, Refusal> {
        if self.streaming != Streaming::Running {
            return Err(Refusal::NotNow);
        }
        self.streaming = Streaming::AtLastByte;
        self.fed = 0;
        Ok(self.phase == Phase::Encoding)
    }

    /// The upload rewrote bytes ffmpeg had read: the source is encoded once complete. True when
    /// a running streaming encode must be cancelled.
    pub fn abandon_streaming(&mut self) -> bool {
        let was_running = self.streaming == Streaming::Running;
        self.streaming = Streaming::AtLastByte;
        self.fed = 0;
        was_running
    }

    /// What the streaming encode's ffmpeg gets next, from `fed` on, at most `max` bytes.
    pub fn feed_window(&self, fed: u64, max: usize) -> Feed {
        if self.total_bytes.is_some_and(|total| fed >= total) {
            return Feed::End;
        }
        if self.received <= fed {
            return Feed::Wait;
        }
        let len = (self.received - fed).min(max as u64) as usize;
        Feed::Read { len }
    }

    /// ffmpeg was handed the source up to `end`.
    pub fn fed_to(&mut self, end: u64) {
        self.fed = self.fed.max(end);
    }

    /// The outcome is published.
    pub fn mark_done(&mut self) -> Result<(), Refusal> {
        if !matches!(self.phase, Phase::Joining | Phase::Encoding) {
            return Err(Refusal::NotNow);
        }
        self.phase = Phase::Done;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
