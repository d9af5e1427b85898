use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $(#[$new_doc:meta])* new: $generate:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            $(#[$new_doc])*
            pub fn new() -> Self {
                Self($generate)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// A video, what a user sees.
    VideoId,
    /// A new, time-ordered id (UUIDv7), so rows created together sit together. Public:
    /// `GET /v1/videos` lists it.
    new: Uuid::now_v7()
);
id_type!(
    /// One uploaded instance of a video.
    FlowId,
    /// A new, time-ordered id (UUIDv7): public, shown in the video's JSON.
    new: Uuid::now_v7()
);
id_type!(
    /// The upload session of a flow; also the tus upload id, the only credential of `HEAD`,
    /// `PATCH` and `DELETE` on its URL.
    SessionId,
    /// A new random id (UUIDv4, 122 bits from a CSPRNG): nothing in it
    /// follows from the time or from the ids made with it, so it cannot be guessed from them.
    new: Uuid::new_v4()
);
id_type!(
    /// One request writing to an upload while it holds the upload's write lock.
    WriterId,
    /// A new, time-ordered id (UUIDv7); it never leaves the services.
    new: Uuid::now_v7()
);
id_type!(
    /// A project: the namespace every video, upload and API key belongs to. Never in a public
    /// path: a key says which project it acts for.
    ProjectId,
    /// A new, time-ordered id (UUIDv7).
    new: Uuid::now_v7()
);
id_type!(
    /// An API key's public half; the secret beside it in the key is what authenticates.
    ApiKeyId,
    /// A new, time-ordered id (UUIDv7): public, listed by `GET /v1/keys`.
    new: Uuid::now_v7()
);
id_type!(
    /// A direct upload: a single-use upload URL of a project. Its id is not the credential (the
    /// URL's token is).
    DirectUploadId,
    /// A new, time-ordered id (UUIDv7): public, listed by `GET /v1/direct-uploads`.
    new: Uuid::now_v7()
);
id_type!(
    /// A webhook endpoint of a project.
    WebhookId,
    /// A new, time-ordered id (UUIDv7): public, listed by `GET /v1/webhooks`.
    new: Uuid::now_v7()
);
id_type!(
    /// One event (or ping) sent to one webhook endpoint, with all its attempts.
    DeliveryId,
    /// A new, time-ordered id (UUIDv7): public, in the delivery log.
    new: Uuid::now_v7()
);

impl ProjectId {
    /// The project every row made before projects existed belongs to (migration V7).
    pub const DEFAULT: ProjectId =
        ProjectId(Uuid::from_u128(0x00000000_0000_7000_8000_000000000001));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_random_and_share_nothing_with_the_ids_made_with_them() {
        let flow = FlowId::new();
        let first = SessionId::new();
        let second = SessionId::new();
        assert_eq!(first.0.get_version_num(), 4);
        assert_eq!(second.0.get_version_num(), 4);
        assert_eq!(flow.0.get_version_num(), 7);
        let time_prefix = |id: Uuid| id.as_bytes()[..6].to_vec();
        assert_ne!(time_prefix(first.0), time_prefix(second.0));
        assert_ne!(time_prefix(first.0), time_prefix(flow.0));
    }
}
