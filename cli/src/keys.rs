//! `vod keys`: make, list and revoke the API keys of the project the caller's key belongs to.

use clap::Subcommand;
use vod_contracts::access::{KeyView, Scope};
use vod_contracts::ApiKeyId;

use crate::api::Api;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed this once, the server keeps only its hash.
    Create {
        /// A name to tell the key by.
        #[arg(long, default_value = "")]
        name: String,
        /// What the key may do: `read` (GET, HEAD) or `write` (everything else); repeat it for
        /// both, the default.
        #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// List the keys, newest first (never their secrets).
    Ls,
    /// Revoke a key; the gateway refuses it once it no longer remembers it verified.
    Revoke {
        #[arg(value_parser = parse_key_id)]
        key_id: ApiKeyId,
    },
}

pub async fn run(api: &Api, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scopes } => {
            let created = api.create_key(&name, &requested_scopes(scopes)).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!(
                "the key is shown this once (the server keeps only its hash): store it now, and \
                 give it to vod with VOD_API_KEY or --api-key"
            );
        }
        KeysCommand::Ls => {
            let list = api.keys().await?;
            if list.keys.is_empty() {
                println!("no keys");
            }
            for key in &list.keys {
                println!("{}", key_line(key));
            }
        }
        KeysCommand::Revoke { key_id } => {
            api.revoke_key(key_id).await?;
            println!("key {key_id} revoked");
        }
    }
    Ok(())
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| "a scope is `read` or `write`".to_owned())
}

fn parse_key_id(text: &str) -> Result<ApiKeyId, String> {
    text.parse()
        .map_err(|_| "a key id is a UUID (`vod keys ls` lists them)".to_owned())
}

/// The scopes asked for, each once; none named means both.
fn requested_scopes(mut scopes: Vec<Scope>) -> Vec<Scope> {
    if scopes.is_empty() {
        return vec![Scope::Read, Scope::Write];
    }
    scopes.sort();
    scopes.dedup();
    scopes
}

/// One line of `vod keys ls`, in the columns of `vod ls`: id, scopes, state, dates, name.
fn key_line(key: &KeyView) -> String {
    let scopes = key
        .scopes
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let state = match key.revoked_at {
        Some(revoked_at) => format!("revoked {}", revoked_at.format("%Y-%m-%d %H:%M")),
        None => "active".to_owned(),
    };
    let used = match key.last_used_at {
        Some(used_at) => format!("used {}", used_at.format("%Y-%m-%d %H:%M")),
        None => "never used".to_owned(),
    };
    format!(
        "{}  {scopes:<10}  {state:<24}  created {}  {used:<21}  {}",
        key.id,
        key.created_at.format("%Y-%m-%d %H:%M"),
        key.name
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Keys {
        #[command(subcommand)]
        command: KeysCommand,
    }

    fn parse(args: &[&str]) -> Result<KeysCommand, clap::Error> {
        Keys::try_parse_from(std::iter::once("keys").chain(args.iter().copied()))
            .map(|keys| keys.command)
    }

    #[test]
    fn create_asks_for_both_scopes_unless_told_otherwise() {
        let KeysCommand::Create { name, scopes } = parse(&["create"]).expect("parses") else {
            panic!("create");
        };
        assert_eq!(name, "");
        assert_eq!(requested_scopes(scopes), [Scope::Read, Scope::Write]);

        let KeysCommand::Create { name, scopes } =
            parse(&["create", "--name", "ci", "--scope", "read"]).expect("parses")
        else {
            panic!("create");
        };
        assert_eq!(name, "ci");
        assert_eq!(requested_scopes(scopes), [Scope::Read]);

        let KeysCommand::Create { scopes, .. } = parse(&[
            "create", "--scope", "write", "--scope", "read", "--scope", "write",
        ])
        .expect("parses") else {
            panic!("create");
        };
        assert_eq!(requested_scopes(scopes), [Scope::Read, Scope::Write]);
    }

    #[test]
    fn an_unknown_scope_or_key_id_is_refused_before_any_request() {
        let error = parse(&["create", "--scope", "admin"]).expect_err("refused");
        assert!(
            error.to_string().contains("a scope is `read` or `write`"),
            "{error}"
        );
        assert!(parse(&["revoke", "../videos/x"]).is_err());
        let id = ApiKeyId::new();
        let KeysCommand::Revoke { key_id } = parse(&["revoke", &id.to_string()]).expect("parses")
        else {
            panic!("revoke");
        };
        assert_eq!(key_id, id);
    }

    #[test]
    fn a_listed_key_shows_its_state_and_dates() {
        let created_at = "2024-05-01T10:00:00Z".parse().expect("date");
        let mut key = KeyView {
            id: ApiKeyId::new(),
            name: "ci".to_owned(),
            scopes: vec![Scope::Read, Scope::Write],
            created_at,
            last_used_at: None,
            revoked_at: None,
        };
        let line = key_line(&key);
        assert!(line.starts_with(&key.id.to_string()), "{line}");
        assert!(line.contains("read,write"), "{line}");
        assert!(line.contains("active"), "{line}");
        assert!(line.contains("created 2024-05-01 10:00"), "{line}");
        assert!(line.contains("never used"), "{line}");
        assert!(line.ends_with("  ci"), "{line}");

        key.last_used_at = Some("2024-05-02T11:30:00Z".parse().expect("date"));
        key.revoked_at = Some("2024-05-03T12:00:00Z".parse().expect("date"));
        let line = key_line(&key);
        assert!(line.contains("revoked 2024-05-03 12:00"), "{line}");
        assert!(line.contains("used 2024-05-02 11:30"), "{line}");
        assert!(!line.contains("active"), "{line}");
    }
}
