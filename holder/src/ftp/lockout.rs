//! Failed FTP logins, counted per client address across all its connections.
//!
//! libunftp has a failed-login policy, but it lives in the `Server`, and holder builds a
//! `Server` per connection (`Server::service`), so that policy would forget everything when a
//! client simply connects again. This one is shared by every connection: after
//! `max_failures` refused logins from one address, with no more than `lockout` between them,
//! that address is refused every login, the right password included, for `lockout`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many addresses, the ones whose failures have expired are forgotten, so a client
/// cycling through addresses cannot grow the table without bound.
const PRUNE_ABOVE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Refused logins from one address that lock it out.
    pub max_failures: u32,
    /// How long an address stays locked out; also how long a refused login is remembered.
    pub lockout: Duration,
}

/// What a refused login did to its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the address may try again.
    Counted,
    /// This failure locked the address out.
    LockedOut,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// Neither locked nor recent enough to count any more.
    fn has_expired(&self, now: Instant, lockout: Duration) -> bool {
        !self.is_locked(now) && now.duration_since(self.last) >= lockout
    }
}

#[derive(Debug)]
pub struct LoginLockout {
    policy: LockoutPolicy,
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginLockout {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` is locked out at `now`.
    pub fn is_locked(&self, client: IpAddr, now: Instant) -> bool {
        self.clients()
            .get(&client)
            .is_some_and(|failures| failures.is_locked(now))
    }

    /// Counts a refused login of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Failure {
        let LockoutPolicy {
            max_failures,
            lockout,
        } = self.policy;
        let mut clients = self.clients();
        if clients.len() > PRUNE_ABOVE {
            clients.retain(|_, failures| !failures.has_expired(now, lockout));
        }
        let failures = clients.entry(client).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if failures.has_expired(now, lockout) {
            failures.count = 0;
            failures.locked_until = None;
        }
        failures.last = now;
        if failures.is_locked(now) {
            // Attempts while locked out do not extend it: the address is free again at a
            // time its owner can tell.
            return Failure::Counted;
        }
        failures.count += 1;
        if failures.count >= max_failures {
            failures.count = 0;
            failures.locked_until = Some(now + lockout);
            return Failure::LockedOut;
        }
        Failure::Counted
    }

    /// A login of `client` succeeded: its refused logins are forgotten.
    pub fn succeeded(&self, client: IpAddr) {
        self.clients().remove(&client);
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // A panic while holding the lock leaves counters, never a broken invariant.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKOUT: Duration = Duration::from_secs(300);

    fn lockout(max_failures: u32) -> LoginLockout {
        LoginLockout::new(LockoutPolicy {
            max_failures,
            lockout: LOCKOUT,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_last_allowed_failure_locks_the_address_for_the_lockout() {
        let lockout = lockout(3);
        let (client, start) = (ip("10.0.0.1"), Instant::now());
        assert_eq!(lockout.failed(client, start), Failure::Counted);
        assert_eq!(lockout.failed(client, start), Failure::Counted);
        assert!(!lockout.is_locked(client, start));
        assert_eq!(lockout.failed(client, start), Failure::LockedOut);
        assert!(lockout.is_locked(client, start));
        assert!(lockout.is_locked(client, start + LOCKOUT - Duration::from_secs(1)));
        assert!(!lockout.is_locked(client, start + LOCKOUT));
        assert!(
            !lockout.is_locked(ip("10.0.0.2"), start),
            "other addresses are not affected"
        );
    }

    #[test]
    fn attempts_while_locked_do_not_extend_the_lockout() {
        let lockout = lockout(1);
        let (client, start) = (ip("10.0.0.1"), Instant::now());
        assert_eq!(lockout.failed(client, start), Failure::LockedOut);
        let later = start + LOCKOUT / 2;
        assert_eq!(lockout.failed(client, later), Failure::Counted);
        assert!(!lockout.is_locked(client, start + LOCKOUT));
    }

    #[test]
    fn failures_far_apart_do_not_add_up() {
        let lockout = lockout(2);
        let (client, start) = (ip("10.0.0.1"), Instant::now());
        assert_eq!(lockout.failed(client, start), Failure::Counted);
        assert_eq!(lockout.failed(client, start + LOCKOUT), Failure::Counted);
        assert!(!lockout.is_locked(client, start + LOCKOUT));
    }

    #[test]
    fn a_successful_login_forgets_the_failures() {
        let lockout = lockout(2);
        let (client, start) = (ip("10.0.0.1"), Instant::now());
        assert_eq!(lockout.failed(client, start), Failure::Counted);
        lockout.succeeded(client);
        assert_eq!(lockout.failed(client, start), Failure::Counted);
        assert!(!lockout.is_locked(client, start));
    }

    #[test]
    fn expired_addresses_are_forgotten_when_the_table_grows() {
        let lockout = lockout(5);
        let start = Instant::now();
        for n in 0..=PRUNE_ABOVE as u32 {
            lockout.failed(IpAddr::from(n.to_be_bytes()), start);
        }
        lockout.failed(ip("10.0.0.1"), start + LOCKOUT);
        assert_eq!(lockout.clients().len(), 1, "the expired entries are gone");
    }
}
