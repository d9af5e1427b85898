use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A status string that is not one of the known values.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$variant_doc:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in the database and in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        /// By hand: the derive does not see the `serde(rename)`s this macro writes.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|status| status.as_str())))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownStatus(other.to_owned())),
                }
            }
        }
    };
}

pub(crate) use status_enum;

status_enum!(
    /// What a user sees of a video. It follows the video's newest flow that was not cancelled.
    VideoStatus {
        Created => "CREATED",
        Uploading => "UPLOADING",
        Processing => "PROCESSING",
        Ready => "READY",
        Failed => "FAILED",
    }
);

status_enum!(
    /// The life of one uploaded instance of a video.
    FlowStatus {
        Uploading => "UPLOADING",
        Processing => "PROCESSING",
        Ready => "READY",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
);

status_enum!(
    /// An upload session is open while its flow uploads, and closed for one reason afterwards.
    SessionStatus {
        Open => "OPEN",
        Completed => "COMPLETED",
        Terminated => "TERMINATED",
        Expired => "EXPIRED",
        Failed => "FAILED",
    }
);

status_enum!(
    /// How an encode was started: while the upload was still arriving, or once it was
    /// complete.
    EncodePath {
        Streaming => "STREAMING",
        AfterUpload => "AFTER_UPLOAD",
    }
);

status_enum!(
    /// What an upload session is for (tus concatenation).
    UploadKind {
        /// Feeds its flow.
        Single => "SINGLE",
        /// Holds bytes for a final upload; has no flow and counts its bytes itself.
        Partial => "PARTIAL",
        /// Feeds its flow with the joined bytes of its partial uploads.
        Final => "FINAL",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for status in FlowStatus::ALL {
            assert_eq!(status.as_str().parse::<FlowStatus>().ok(), Some(*status));
        }
        for status in VideoStatus::ALL {
            let json = serde_json::to_string(status).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("uploading".parse::<SessionStatus>().is_err());
        assert_eq!(
            "PARTIAL".parse::<UploadKind>().ok(),
            Some(UploadKind::Partial)
        );
        assert!("MULTI".parse::<UploadKind>().is_err());
    }
}
