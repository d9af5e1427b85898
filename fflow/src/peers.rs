//! The other replicas this one may fetch the parts of a concatenated upload from, by id
//! (`FFLOW_PEERS=r1=http://fflow-r1:4050,r2=http://fflow-r2:4050`). A part names only its
//! replica's id: the address called is always one of these, never one taken from a request.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Replica id → base URL of that replica (its `/{replica_id}/...` routes are under it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Peers(BTreeMap<String, String>);

impl Peers {
    /// The base URL of the replica with this id, without a trailing `/`.
    pub fn base_url(&self, replica_id: &str) -> Option<&str> {
        self.0.get(replica_id).map(String::as_str)
    }

    /// Adds (or replaces) one peer; `base_url` is checked as in the text form.
    pub fn insert(&mut self, replica_id: &str, base_url: &str) -> Result<(), String> {
        let (id, url) = parse_entry(replica_id, base_url)?;
        self.0.insert(id, url);
        Ok(())
    }
}

fn parse_entry(id: &str, url: &str) -> Result<(String, String), String> {
    let id = id.trim();
    let url = url.trim().trim_end_matches('/');
    if !is_valid_replica_id(id) {
        return Err(format!("{id:?} is not a replica id ([a-z0-9-]+)"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{url:?} must be a base URL, without query or fragment"
        ));
    }
    Ok((id.to_owned(), url.to_owned()))
}

impl FromStr for Peers {
    type Err = String;

    /// `id=url` entries separated by commas; an empty text is no peer.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut peers = Peers::default();
        for entry in text.split(',').filter(|entry| !entry.trim().is_empty()) {
            let (id, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("peer {entry:?} is not of the form id=url"))?;
            let (id, url) = parse_entry(id, url)?;
            if peers.0.insert(id.clone(), url).is_some() {
                return Err(format!("replica {id} is named twice"));
            }
        }
        Ok(peers)
    }
}

impl TryFrom<String> for Peers {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(id, url)| format!("{id}={url}"))
            .collect();
        f.write_str(&entries.join(","))
    }
}

/// A replica id: lowercase ASCII letters, digits and dashes, as it appears in URL paths.
pub(crate) fn is_valid_replica_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_read_from_their_text_form() {
        let peers: Peers = "r1=http://fflow-r1:4050/, r2=http://127.0.0.1:4051"
            .parse()
            .unwrap();
        assert_eq!(peers.base_url("r1"), Some("http://fflow-r1:4050"));
        assert_eq!(peers.base_url("r2"), Some("http://127.0.0.1:4051"));
        assert_eq!(peers.base_url("r3"), None);
        assert_eq!(
            peers.to_string(),
            "r1=http://fflow-r1:4050,r2=http://127.0.0.1:4051"
        );
        assert_eq!("".parse::<Peers>().unwrap(), Peers::default());
    }

    #[test]
    fn bad_peers_are_refused() {
        for bad in [
            "r1",
            "R1=http://a:1",
            "r1=ftp://a:1",
            "r1=a:1",
            "r1=http://a:1?x=1",
            "r1=http://a:1,r1=http://b:1",
        ] {
            assert!(bad.parse::<Peers>().is_err(), "{bad:?} accepted");
        }
    }
}
