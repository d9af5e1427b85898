//! Videos.

use serde::{Deserialize, Deserializer, Serialize};

use super::json_request;
use crate::{PlaybackPolicy, ProjectId, VideoId};

/// Create an empty video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateVideo {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub playback_policy: PlaybackPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoCreated {
    pub video_id: VideoId,
}

/// Change a video's own fields; a field left `None` keeps its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateVideo {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub video_id: VideoId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Some(None)` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub passthrough: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_policy: Option<PlaybackPolicy>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoUpdated {}

/// Delete a video: from the reply on it is gone for the API; its open uploads are terminated,
/// and its rows and its output on holder go once no encode of it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteVideo {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub video_id: VideoId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoDeleted {}

/// A field that is present, `null` included: `null` is `Some(None)`, an absent field (with
/// `#[serde(default)]`) `None`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

json_request!(CreateVideo, CreateVideo => VideoCreated);
json_request!(UpdateVideo, UpdateVideo => VideoUpdated);
json_request!(DeleteVideo, DeleteVideo => VideoDeleted);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_passthrough_clears_it_and_an_absent_one_keeps_it() {
        let base = r#""project_id":"00000000-0000-7000-8000-000000000001","video_id":"00000000-0000-7000-8000-000000000002""#;
        let parse = |extra: &str| -> Option<Option<String>> {
            serde_json::from_str::<UpdateVideo>(&format!("{{{base}{extra}}}"))
                .map(|update| update.passthrough)
                .unwrap_or_else(|error| panic!("{extra}: {error}"))
        };
        assert_eq!(parse(""), None);
        assert_eq!(parse(r#","passthrough":null"#), Some(None));
        assert_eq!(parse(r#","passthrough":"x""#), Some(Some("x".to_owned())));
        let update = UpdateVideo {
            project_id: ProjectId::DEFAULT,
            video_id: VideoId::new(),
            title: None,
            description: None,
            passthrough: Some(None),
            playback_policy: Some(PlaybackPolicy::Signed),
        };
        let json = serde_json::to_string(&update).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<UpdateVideo>(&json).ok(),
            Some(update)
        );
    }
}
