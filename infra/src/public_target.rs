//! Where a request to a URL someone else gave (a webhook endpoint) may go: only to public
//! addresses, so that such a URL cannot make a service call its own host, its private network
//! or a cloud metadata endpoint (server-side request forgery).
//!
//! A URL is checked when it is given ([`check_url`], then [`resolve_public`]) and every
//! address it resolves to is checked again when a connection is made ([`refusal`], from the
//! resolver of the client that connects), since a name may resolve elsewhere by then (DNS
//! rebinding). An address is refused by what it is, whatever its spelling: IPv4 inside IPv6
//! (mapped, compatible, NAT64, 6to4) is judged as the IPv4 address it carries.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a URL given by a user may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `http` is accepted beside `https`.
    pub allow_http: bool,
    /// Loopback, private and link-local addresses are accepted (a local stack, where every
    /// receiver is on the same machine). Metadata, unspecified and multicast addresses never
    /// are.
    pub allow_private: bool,
    /// The longest URL accepted, in bytes.
    pub max_url_bytes: usize,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            max_url_bytes: 2048,
        }
    }
}

/// What kind of address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    Loopback,
    /// RFC 1918, shared address space (RFC 6598), IPv6 unique local and site-local.
    Private,
    LinkLocal,
    /// A cloud provider's instance metadata service.
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    /// Reserved for other uses (benchmarking, future use, IETF assignments, Teredo, discard).
    Reserved,
}

impl AddressKind {
    /// Refused even when private targets are allowed.
    fn always_refused(self) -> bool {
        matches!(
            self,
            AddressKind::Metadata
                | AddressKind::Unspecified
                | AddressKind::Multicast
                | AddressKind::Broadcast
        )
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Loopback => "loopback",
            AddressKind::Private => "private",
            AddressKind::LinkLocal => "link-local",
            AddressKind::Metadata => "cloud metadata",
            AddressKind::Unspecified => "unspecified",
            AddressKind::Multicast => "multicast",
            AddressKind::Broadcast => "broadcast",
            AddressKind::Documentation => "documentation",
            AddressKind::Reserved => "reserved",
        })
    }
}

/// Why a URL is refused; the message names the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the URL is not an absolute URL: {0}")]
    Malformed(String),
    #[error("the URL is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("the URL's scheme is {scheme}; only {allowed} is accepted")]
    Scheme {
        scheme: String,
        allowed: &'static str,
    },
    #[error("the URL carries a user name or password")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("{host} is {address}, a {kind} address")]
    Address {
        host: String,
        address: IpAddr,
        kind: AddressKind,
    },
    #[error("{host} does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
}

/// The URL, if its form is acceptable (scheme, length, host, no credentials). Its addresses
/// are checked by [`resolve_public`].
pub fn check_url(text: &str, policy: &TargetPolicy) -> Result<url::Url, Refused> {
    if text.len() > policy.max_url_bytes {
        return Err(Refused::TooLong {
            max: policy.max_url_bytes,
        });
    }
    let url = url::Url::parse(text).map_err(|error| Refused::Malformed(error.to_string()))?;
    let allowed = if policy.allow_http {
        "https or http"
    } else {
        "https"
    };
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        other => {
            return Err(Refused::Scheme {
                scheme: other.to_owned(),
                allowed,
            })
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    if url.host().is_none() {
        return Err(Refused::NoHost);
    }
    Ok(url)
}

/// The addresses the URL's host resolves to, each of them acceptable; one refused address
/// refuses the URL.
pub async fn resolve_public(
    url: &url::Url,
    policy: &TargetPolicy,
) -> Result<Vec<SocketAddr>, Refused> {
    let host = url.host_str().ok_or(Refused::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        _ => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| Refused::Unresolved {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(Refused::Unresolved {
            host: host.to_owned(),
            reason: "no address".to_owned(),
        });
    }
    for address in &addresses {
        if let Some(kind) = refusal(address.ip(), policy) {
            return Err(Refused::Address {
                host: host.to_owned(),
                address: address.ip(),
                kind,
            });
        }
    }
    Ok(addresses)
}

/// Why the policy refuses a connection to `ip`, if it does.
pub fn refusal(ip: IpAddr, policy: &TargetPolicy) -> Option<AddressKind> {
    classify(ip).filter(|kind| !policy.allow_private || kind.always_refused())
}

/// What a non-public address is; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddressKind> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, c, _] = ip.octets();
    let kind = if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200)
    {
        // AWS, GCP, Azure, OpenStack; Alibaba Cloud.
        AddressKind::Metadata
    } else if ip.is_broadcast() {
        AddressKind::Broadcast
    } else if a == 0 {
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressKind::Private
    } else if ip.is_link_local() {
        AddressKind::LinkLocal
    } else if ip.is_multicast() {
        AddressKind::Multicast
    } else if ip.is_documentation() {
        AddressKind::Documentation
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) || a >= 240 {
        AddressKind::Reserved
    } else {
        return None;
    };
    Some(kind)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressKind> {
    let segments = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let kind = if ip.is_unspecified() {
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if segments[..4] == [0xfd00, 0x0ec2, 0, 0] && segments[4..] == [0, 0, 0, 0x254] {
        // AWS's instance metadata over IPv6.
        AddressKind::Metadata
    } else if (segments[0] & 0xfe00) == 0xfc00 || (segments[0] & 0xffc0) == 0xfec0 {
        AddressKind::Private
    } else if (segments[0] & 0xffc0) == 0xfe80 {
        AddressKind::LinkLocal
    } else if (segments[0] & 0xff00) == 0xff00 {
        AddressKind::Multicast
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        AddressKind::Documentation
    } else if (segments[0] == 0x2001 && segments[1] == 0)
        || segments[..4] == [0x0100, 0, 0, 0]
        || segments[..6] == [0, 0, 0, 0, 0, 0]
    {
        // Teredo (its IPv4 is obfuscated), the discard prefix, and the rest of ::/96.
        AddressKind::Reserved
    } else {
        return None;
    };
    Some(kind)
}

/// The IPv4 address an IPv6 address carries: v4-mapped (`::ffff:a.b.c.d`), v4-compatible
/// (`::a.b.c.d`, but `::` and `::1`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some(low);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(low);
    }
    if s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<AddressKind> {
        classify(text.parse().expect("an address"))
    }

    #[test]
    fn loopback_private_link_local_and_metadata_v4_are_refused() {
        for (address, expected) in [
            ("127.0.0.1", AddressKind::Loopback),
            ("127.255.0.9", AddressKind::Loopback),
            ("10.1.2.3", AddressKind::Private),
            ("172.16.0.1", AddressKind::Private),
            ("172.31.255.255", AddressKind::Private),
            ("192.168.1.1", AddressKind::Private),
            ("100.64.0.1", AddressKind::Private),
            ("169.254.1.1", AddressKind::LinkLocal),
            ("169.254.169.254", AddressKind::Metadata),
            ("100.100.100.200", AddressKind::Metadata),
            ("0.0.0.0", AddressKind::Unspecified),
            ("0.1.2.3", AddressKind::Unspecified),
            ("224.0.0.1", AddressKind::Multicast),
            ("255.255.255.255", AddressKind::Broadcast),
            ("192.0.2.10", AddressKind::Documentation),
            ("198.18.0.1", AddressKind::Reserved),
            ("240.0.0.1", AddressKind::Reserved),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
        ] {
            assert_eq!(kind(address), None, "{address}");
        }
    }

    #[test]
    fn ipv6_equivalents_are_refused() {
        for (address, expected) in [
            ("::1", AddressKind::Loopback),
            ("::", AddressKind::Unspecified),
            ("fc00::1", AddressKind::Private),
            ("fd12:3456::1", AddressKind::Private),
            ("fec0::1", AddressKind::Private),
            ("fe80::1", AddressKind::LinkLocal),
            ("ff02::1", AddressKind::Multicast),
            ("fd00:ec2::254", AddressKind::Metadata),
            ("2001:db8::1", AddressKind::Documentation),
            ("2001:0:4136:e378::1", AddressKind::Reserved),
            ("100::1", AddressKind::Reserved),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv4_carried_in_ipv6_is_judged_as_ipv4() {
        for (address, expected) in [
            ("::ffff:127.0.0.1", AddressKind::Loopback),
            ("::ffff:10.0.0.1", AddressKind::Private),
            ("::ffff:169.254.169.254", AddressKind::Metadata),
            ("::127.0.0.1", AddressKind::Loopback),
            ("64:ff9b::192.168.0.1", AddressKind::Private),
            ("2002:7f00:1::", AddressKind::Loopback),
            ("2002:a9fe:a9fe::", AddressKind::Metadata),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
        assert_eq!(kind("::ffff:8.8.8.8"), None);
    }

    #[test]
    fn allowing_private_targets_still_refuses_metadata() {
        let local = TargetPolicy {
            allow_private: true,
            ..TargetPolicy::default()
        };
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        assert_eq!(refusal(ip("127.0.0.1"), &local), None);
        assert_eq!(refusal(ip("192.168.0.10"), &local), None);
        assert_eq!(
            refusal(ip("169.254.169.254"), &local),
            Some(AddressKind::Metadata)
        );
        assert_eq!(
            refusal(ip("127.0.0.1"), &TargetPolicy::default()),
            Some(AddressKind::Loopback)
        );
    }

    #[test]
    fn only_https_urls_without_credentials_and_not_too_long_pass() {
        let policy = TargetPolicy::default();
        assert!(check_url("https://hooks.example/vod", &policy).is_ok());
        assert!(matches!(
            check_url("http://hooks.example/vod", &policy),
            Err(Refused::Scheme { .. })
        ));
        let with_http = TargetPolicy {
            allow_http: true,
            ..policy
        };
        assert!(check_url("http://hooks.example/vod", &with_http).is_ok());
        assert!(matches!(
            check_url("ftp://hooks.example/", &with_http),
            Err(Refused::Scheme { .. })
        ));
        assert_eq!(
            check_url("https://user:pw@hooks.example/", &policy),
            Err(Refused::Credentials)
        );
        assert!(matches!(
            check_url("hooks.example/vod", &policy),
            Err(Refused::Malformed(_))
        ));
        let long = format!("https://hooks.example/{}", "a".repeat(2048));
        assert_eq!(
            check_url(&long, &policy),
            Err(Refused::TooLong { max: 2048 })
        );
    }

    #[tokio::test]
    async fn a_name_or_literal_resolving_to_loopback_is_refused() {
        let policy = TargetPolicy::default();
        for text in [
            "https://localhost/hook",
            "https://127.0.0.1:8443/hook",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
        ] {
            let url = check_url(text, &policy).expect("a well-formed URL");
            match resolve_public(&url, &policy).await {
                Err(Refused::Address { kind, .. }) => {
                    assert_eq!(kind, AddressKind::Loopback, "{text}")
                }
                other => panic!("{text}: expected a refused address, got {other:?}"),
            }
        }
        let local = TargetPolicy {
            allow_private: true,
            ..policy
        };
        let url = check_url("https://127.0.0.1:8443/hook", &local).expect("well-formed");
        assert!(resolve_public(&url, &local).await.is_ok());
    }
}
