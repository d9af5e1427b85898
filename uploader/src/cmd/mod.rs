//! What the uploader does with each command, one module per command (mini-redis `cmd/`). The
//! consumer reads which command a message is from its AMQP `type`, decodes it and runs its
//! [`Handle`] implementation, whose reply type is the command's own.

mod chunk;
mod create_final_upload;
mod create_partial_upload;
mod create_upload;
mod create_video;
mod declare_length;
mod delete_video;
mod direct_uploads;
mod lock_upload;
mod projects;
mod terminate_upload;
mod unlock_upload;
mod update_video;
mod webhooks;

use std::future::Future;

use vod_contracts::commands::Request;
use vod_contracts::SessionId;

use crate::handlers::{HandlerError, Handlers};

pub use chunk::handle_chunk;

/// A command the uploader does. Every implementation is safe to run twice for the same
/// message: the broker redelivers after a lost connection, and a gateway may resend.
pub trait Handle: Request + Sized {
    /// The upload the command is about, if it names one, for the message's log span.
    fn session_id(&self) -> Option<SessionId> {
        None
    }

    fn handle(
        self,
        handlers: &Handlers,
    ) -> impl Future<Output = Result<Self::Reply, HandlerError>> + Send;
}
