//! `vod direct-upload`: make, list and cancel the single-use upload URLs of the project the
//! caller's key belongs to, to hand to a browser or an app that holds no key.

use clap::Subcommand;
use serde_json::json;
use vod_contracts::direct_upload::DirectUploadView;
use vod_contracts::DirectUploadId;

use crate::api::Api;

#[derive(Debug, Subcommand)]
pub enum DirectUploadCommand {
    /// Make a URL that takes one upload without a key; it is printed this once.
    Create {
        /// The new video's title (else the one the upload names).
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The one origin browsers may use the URL from, e.g. https://app.example.
        #[arg(long)]
        cors_origin: Option<String>,
        /// Seconds the URL waits for its upload (60 to 604800; the server's default is 3600).
        #[arg(long)]
        timeout: Option<u32>,
    },
    /// List the direct uploads, newest first.
    Ls,
    /// Cancel a direct upload that made no upload yet.
    Rm {
        #[arg(value_parser = parse_id)]
        id: DirectUploadId,
    },
}

pub async fn run(api: &Api, command: DirectUploadCommand) -> anyhow::Result<()> {
    match command {
        DirectUploadCommand::Create {
            title,
            description,
            cors_origin,
            timeout,
        } => {
            let mut request =
                json!({ "new_video": { "title": title, "description": description } });
            if let Some(cors_origin) = cors_origin {
                request["cors_origin"] = json!(cors_origin);
            }
            if let Some(timeout) = timeout {
                request["timeout_seconds"] = json!(timeout);
            }
            let created = api.create_direct_upload(&request).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("the url is shown this once (the server keeps only its hash)");
        }
        DirectUploadCommand::Ls => {
            let list = api.direct_uploads().await?;
            if list.direct_uploads.is_empty() {
                println!("no direct uploads");
            }
            for direct_upload in &list.direct_uploads {
                println!("{}", line(direct_upload));
            }
        }
        DirectUploadCommand::Rm { id } => {
            api.cancel_direct_upload(id).await?;
            println!("direct upload {id} cancelled");
        }
    }
    Ok(())
}

fn parse_id(text: &str) -> Result<DirectUploadId, String> {
    text.parse()
        .map_err(|_| "a direct upload id is a UUID (`vod direct-upload ls` lists them)".to_owned())
}

/// One line of `vod direct-upload ls`: id, status, expiry, video, title.
fn line(direct_upload: &DirectUploadView) -> String {
    let video = direct_upload
        .video_id
        .map(|id| id.to_string())
        .unwrap_or_else(|| "-".to_owned());
    format!(
        "{}  {:<13}  expires {}  video {video}  {}",
        direct_upload.id,
        direct_upload.status.as_str(),
        direct_upload.expires_at.format("%Y-%m-%d %H:%M"),
        direct_upload.new_video.title.as_deref().unwrap_or_default()
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use vod_contracts::direct_upload::{DirectUploadStatus, NewVideoView, PlaybackPolicy};

    use super::*;

    #[test]
    fn a_listed_direct_upload_shows_its_status_and_video() {
        let mut direct_upload = DirectUploadView {
            id: DirectUploadId::new(),
            status: DirectUploadStatus::Waiting,
            cors_origin: None,
            new_video: NewVideoView {
                title: Some("Holiday".to_owned()),
                description: String::new(),
                playback_policy: PlaybackPolicy::Public,
            },
            expires_at: "2024-05-01T10:00:00Z".parse().expect("date"),
            created_at: "2024-05-01T09:00:00Z".parse().expect("date"),
            video_id: None,
            cancelled_at: None,
        };
        let waiting = line(&direct_upload);
        assert!(waiting.contains("waiting"), "{waiting}");
        assert!(waiting.contains("expires 2024-05-01 10:00"), "{waiting}");
        assert!(waiting.contains("video -"), "{waiting}");
        assert!(waiting.ends_with("Holiday"), "{waiting}");
        let video_id = vod_contracts::VideoId::new();
        direct_upload.status = DirectUploadStatus::AssetCreated;
        direct_upload.video_id = Some(video_id);
        let created = line(&direct_upload);
        assert!(created.contains("asset_created"), "{created}");
        assert!(created.contains(&video_id.to_string()), "{created}");
        assert!(parse_id("../videos").is_err());
    }
}
