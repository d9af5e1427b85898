//! `vod webhooks`: add, list, test and remove the endpoints the project's events are posted
//! to, rotate their signing secrets, and read their delivery log.

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use vod_contracts::webhook::{DeliveryStatus, DeliveryView, WebhookView};
use vod_contracts::WebhookId;

use crate::api::Api;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Post the project's events to URL; prints the endpoint with its signing secret, shown
    /// this once.
    Add {
        url: String,
        /// Event types, e.g. `video.ready,video.failed` (default: every type).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the endpoints.
    Ls,
    /// Remove an endpoint: nothing more is posted to it.
    Rm {
        #[arg(value_parser = parse_id)]
        id: WebhookId,
    },
    /// Send a `ping` event and wait for its first attempt's result.
    Test {
        #[arg(value_parser = parse_id)]
        id: WebhookId,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 30)]
        max_wait: u64,
    },
    /// Give an endpoint a new signing secret; the old one keeps signing beside it for the
    /// overlap.
    RotateSecret {
        #[arg(value_parser = parse_id)]
        id: WebhookId,
        /// Seconds the old secret keeps signing (the server's default is a day).
        #[arg(long)]
        overlap_seconds: Option<u64>,
    },
    /// The endpoint's latest deliveries and their attempts, newest first.
    Log {
        #[arg(value_parser = parse_id)]
        id: WebhookId,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(api: &Api, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Add {
            url,
            events,
            description,
        } => {
            let mut request = json!({ "url": url });
            if !events.is_empty() {
                request["events"] = json!(events);
            }
            if let Some(description) = description {
                request["description"] = json!(description);
            }
            let created = api.create_webhook(&request).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("the secret is shown this once: keep it to verify Vod-Signature");
        }
        WebhooksCommand::Ls => {
            let list = api.webhooks().await?;
            if list.webhooks.is_empty() {
                println!("no webhooks");
            }
            for webhook in &list.webhooks {
                println!("{}", webhook_line(webhook));
            }
        }
        WebhooksCommand::Rm { id } => {
            api.delete_webhook(id).await?;
            println!("webhook {id} removed");
        }
        WebhooksCommand::Test { id, max_wait } => test(api, id, max_wait).await?,
        WebhooksCommand::RotateSecret {
            id,
            overlap_seconds,
        } => {
            let rotated = api.rotate_webhook_secret(id, overlap_seconds).await?;
            println!("{}", serde_json::to_string_pretty(&rotated)?);
            eprintln!("the secret is shown this once");
        }
        WebhooksCommand::Log { id, limit } => {
            let log = api.webhook_deliveries(id, limit).await?;
            if log.deliveries.is_empty() {
                println!("no deliveries");
            }
            for delivery in &log.deliveries {
                print!("{}", delivery_lines(delivery));
            }
        }
    }
    Ok(())
}

/// Pings the endpoint and prints what its first attempt got; an error when it failed.
async fn test(api: &Api, id: WebhookId, max_wait: u64) -> anyhow::Result<()> {
    let queued = api.test_webhook(id).await?;
    println!("ping {} queued", queued.event_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(max_wait);
    loop {
        let log = api.webhook_deliveries(id, 20).await?;
        let attempted = log
            .deliveries
            .iter()
            .find(|delivery| delivery.id == queued.id)
            .filter(|delivery| !delivery.attempts.is_empty());
        if let Some(delivery) = attempted {
            print!("{}", delivery_lines(delivery));
            anyhow::ensure!(
                delivery.attempts[0].error.is_none(),
                "the ping was not delivered at its first attempt{}",
                if delivery.status == DeliveryStatus::Pending {
                    "; it will be tried again (`vod webhooks log` shows how it goes)"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no attempt of the ping within {max_wait} s (`vod webhooks log {id}` shows it later)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn parse_id(text: &str) -> Result<WebhookId, String> {
    text.parse()
        .map_err(|_| "a webhook id is a UUID (`vod webhooks ls` lists them)".to_owned())
}

/// One line of `vod webhooks ls`: id, state, events, URL.
fn webhook_line(webhook: &WebhookView) -> String {
    let state = match (webhook.enabled, webhook.failing_since) {
        (false, _) => match webhook.disabled_reason {
            Some(reason) => format!("disabled ({})", reason.as_str()),
            None => "disabled".to_owned(),
        },
        (true, Some(since)) => format!("failing since {}", since.format("%Y-%m-%d %H:%M")),
        (true, None) => "enabled".to_owned(),
    };
    format!(
        "{}  {state}  {}  {}",
        webhook.id,
        webhook.events.join(","),
        webhook.url
    )
}

/// A delivery and its attempts, a line each.
fn delivery_lines(delivery: &DeliveryView) -> String {
    let mut text = format!(
        "{}  {:<9}  {}  {}\n",
        delivery.created_at.format("%Y-%m-%d %H:%M:%S"),
        delivery.status.as_str(),
        delivery.event_type,
        delivery.event_id
    );
    for attempt in &delivery.attempts {
        let status = attempt
            .status_code
            .map_or_else(|| "---".to_owned(), |code| code.to_string());
        text.push_str(&format!(
            "    #{} {}  {status}  {} ms  {}\n",
            attempt.number,
            attempt.attempted_at.format("%H:%M:%S"),
            attempt.latency_ms,
            attempt.error.as_deref().unwrap_or("ok")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use vod_contracts::webhook::{AttemptView, DisabledReason};
    use vod_contracts::DeliveryId;

    use super::*;

    #[test]
    fn a_listed_webhook_shows_its_state_events_and_url() {
        let mut webhook = WebhookView {
            id: WebhookId::new(),
            url: "https://app.example/hooks".to_owned(),
            events: vec!["video.ready".to_owned(), "video.failed".to_owned()],
            description: String::new(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: "2024-05-01T09:00:00Z".parse().expect("date"),
            updated_at: "2024-05-01T09:00:00Z".parse().expect("date"),
        };
        let line = webhook_line(&webhook);
        assert!(
            line.contains("enabled  video.ready,video.failed  https://app.example/hooks"),
            "{line}"
        );
        webhook.failing_since = Some("2024-05-02T08:30:00Z".parse().expect("date"));
        assert!(webhook_line(&webhook).contains("failing since 2024-05-02 08:30"));
        webhook.enabled = false;
        webhook.disabled_reason = Some(DisabledReason::Failing);
        assert!(webhook_line(&webhook).contains("disabled (failing)"));
        assert!(parse_id("../keys").is_err());
    }

    #[test]
    fn a_delivery_lists_each_attempt_with_its_status_or_error() {
        let delivery = DeliveryView {
            id: DeliveryId::new(),
            webhook_id: WebhookId::new(),
            event_id: "evt_0123456789abcdef0123456789abcdef".to_owned(),
            event_type: "video.ready".to_owned(),
            status: DeliveryStatus::Delivered,
            created_at: "2024-05-01T09:00:00Z".parse().expect("date"),
            finished_at: None,
            attempts: vec![
                AttemptView {
                    number: 1,
                    attempted_at: "2024-05-01T09:00:00Z".parse().expect("date"),
                    status_code: None,
                    latency_ms: 10_000,
                    error: Some("the receiver did not answer in time".to_owned()),
                },
                AttemptView {
                    number: 2,
                    attempted_at: "2024-05-01T09:00:31Z".parse().expect("date"),
                    status_code: Some(204),
                    latency_ms: 12,
                    error: None,
                },
            ],
        };
        let text = delivery_lines(&delivery);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("delivered  video.ready  evt_"), "{text}");
        assert!(
            lines[1].contains("#1 09:00:00  ---  10000 ms  the receiver did not answer"),
            "{text}"
        );
        assert!(lines[2].contains("#2 09:00:31  204  12 ms  ok"), "{text}");
    }
}
