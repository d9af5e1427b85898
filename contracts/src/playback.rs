//! Who may watch a video.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A video's playback policy: `public` plays from its plain URLs (and stays cacheable by a
/// CDN); `signed` plays only with a token signed by one of the project's signing keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlaybackPolicy {
    #[default]
    Public,
    Signed,
}

impl PlaybackPolicy {
    /// The spelling in JSON, in `Upload-Metadata` and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Signed => "signed",
        }
    }
}

impl fmt::Display for PlaybackPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("playback_policy must be `public` or `signed`, not {0:?}")]
pub struct UnknownPlaybackPolicy(pub String);

impl FromStr for PlaybackPolicy {
    type Err = UnknownPlaybackPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "public" => Ok(Self::Public),
            "signed" => Ok(Self::Signed),
            other => Err(UnknownPlaybackPolicy(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_back_as_it_is_written_and_nothing_else_reads() {
        for policy in [PlaybackPolicy::Public, PlaybackPolicy::Signed] {
            assert_eq!(policy.as_str().parse(), Ok(policy));
            assert_eq!(
                serde_json::to_string(&policy).ok(),
                Some(format!("\"{policy}\""))
            );
        }
        assert!("Signed".parse::<PlaybackPolicy>().is_err());
        assert!("".parse::<PlaybackPolicy>().is_err());
        assert_eq!(PlaybackPolicy::default(), PlaybackPolicy::Public);
    }
}
