//! `vod events`: the project's event log, oldest first, and with `--follow` every event as it
//! happens, read with the same `after` cursor a polling application uses.

use std::time::Duration;

use clap::Args;
use vod_contracts::event::EventView;

use crate::api::Api;

/// Events asked for per request.
const PAGE: u32 = 100;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start after this event id (`evt_…`); without it, at the oldest event kept.
    #[arg(long)]
    after: Option<String>,
    /// Only these types, e.g. `video.ready,video.failed`.
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<String>,
    /// Keep reading: print each new event as it happens, until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Seconds between two looks while following.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// One JSON object per line, as the API and webhooks send it, instead of a summary line.
    #[arg(long)]
    json: bool,
}

pub async fn run(api: &Api, args: EventsArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    let mut after = args.after;
    loop {
        let page = api.events(after.as_deref(), &args.types, PAGE).await?;
        for event in &page.events {
            if args.json {
                println!("{}", serde_json::to_string(event)?);
            } else {
                println!("{}", line(event));
            }
        }
        if page.next_after.is_some() {
            after = page.next_after;
        }
        if page.events.len() as u32 >= PAGE {
            continue;
        }
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

/// One event: when, its type, what it is about (and the video's status), its id.
fn line(event: &EventView) -> String {
    let status = event.data["status"].as_str().unwrap_or("-");
    format!(
        "{}  {:<26}  {} {}  {:<10}  {}",
        event.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
        event.event_type.as_str(),
        event.object.object_type.as_str(),
        event.object.id,
        status,
        event.id
    )
}

#[cfg(test)]
mod tests {
    use vod_contracts::event::{EventObject, EventType, ObjectType};

    use super::*;

    #[test]
    fn an_event_line_names_its_time_type_object_and_id() {
        let event = EventView {
            id: "evt_0123456789abcdef0123456789abcdef".to_owned(),
            event_type: EventType::VideoReady,
            created_at: "2024-05-01T10:00:01.250Z".parse().expect("date"),
            object: EventObject {
                object_type: ObjectType::Video,
                id: uuid::Uuid::nil(),
            },
            data: serde_json::json!({"status": "READY"}),
        };
        let line = line(&event);
        assert!(
            line.starts_with("2024-05-01 10:00:01.250  video.ready"),
            "{line}"
        );
        assert!(
            line.contains("video 00000000-0000-0000-0000-000000000000"),
            "{line}"
        );
        assert!(line.contains("READY"), "{line}");
        assert!(
            line.ends_with("evt_0123456789abcdef0123456789abcdef"),
            "{line}"
        );
    }
}
