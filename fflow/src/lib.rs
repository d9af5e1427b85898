//! fflow stitches an upload's chunks into a spool file and encodes it with ffmpeg to CMAF
//! segments with an HLS master playlist and a DASH MPD, stores the presentation on holder over
//! FTP and publishes the outcome on the outcomes queue.
//!
//! Each replica serves its sessions under `/{replica_id}/`; process creation and the removal of
//! a video from holder are also served on the bare address, which a reverse proxy may send to
//! any replica. A session lives in
//! `{spool_dir}/{replica_id}/{session_id}/` until its outcome is published, so a restarted
//! replica takes its sessions up again.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod auth;
mod bounds;
pub mod config;
mod context;
mod digest;
mod downloads;
mod encode;
mod error;
mod ffmpeg;
mod ftp;
mod holder_check;
mod holder_ftp;
mod interlace;
mod join;
pub mod ladder;
mod language;
mod manifest;
mod metrics;
mod outcome_sink;
mod outcomes;
pub mod peers;
mod plan;
mod playlists;
mod probe;
mod progress;
mod routes;
mod sandbox;
mod session;
mod sniff;
mod startup;
mod state;
mod storyboard;
mod streaming;
mod unpublish;

pub use config::{Config, HolderSettings};
pub use peers::Peers;
pub use startup::App;

/// The arguments fflow gives ffmpeg to encode the complete file `source` (a name inside `dir`)
/// into the directory `output_dir` (inside `dir` too): the same sandboxed input, single process,
/// ladder and outputs as a real encode. For measuring the pipeline against a bare ffmpeg run.
pub async fn encode_args_for_file(
    config: &Config,
    dir: &std::path::Path,
    source: &str,
    output_dir: &str,
) -> anyhow::Result<Vec<String>> {
    let sandbox = config.sandbox();
    let facts = probe::probe(&sandbox, dir, source, config.probe_timeout())
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let bytes = std::fs::metadata(dir.join(source))?.len();
    let input = sandbox::Source {
        input: sandbox::Input::File(source),
        format: &facts.format,
        max_seconds: bounds::SourceBounds::new(config)
            .encode_seconds(Some(facts.duration_seconds), bytes),
    };
    let plan = plan::EncodePlan::for_source(config, &facts);
    let command = sandbox.ffmpeg(dir, &input, &plan::encode_args(config, &plan, output_dir));
    Ok(command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect())
}
