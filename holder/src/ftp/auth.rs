//! Who may log in to holder's FTP server: the one configured account, from an address that
//! is not locked out.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tracing::{debug, warn};
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};

use super::lockout::{Failure, LoginLockout};
use crate::metrics::HolderMetrics;

/// The one account fflow logs in with. Anonymous and every other account are refused.
#[derive(Debug)]
pub struct SingleAccount {
    user: String,
    password: SecretString,
}

impl SingleAccount {
    pub fn new(user: String, password: SecretString) -> Self {
        Self { user, password }
    }

    fn check(&self, user: &str, password: &str) -> Result<(), AuthenticationError> {
        // Both comparisons always run, in constant time for equal lengths, so timing tells
        // nothing about which one failed or how much of a secret matched.
        let user_matches = user.as_bytes().ct_eq(self.user.as_bytes());
        let password_matches = password
            .as_bytes()
            .ct_eq(self.password.expose_secret().as_bytes());
        match (bool::from(user_matches), bool::from(password_matches)) {
            (true, true) => Ok(()),
            (false, _) => Err(AuthenticationError::BadUser),
            (true, false) => Err(AuthenticationError::BadPassword),
        }
    }
}

/// The account behind the lockout, shared by every connection: an address that is locked
/// out is refused without its password being looked at, and every refused login is answered
/// only after `refusal_delay`, so guessing costs time on each connection.
#[derive(Debug)]
pub struct GuardedAccount {
    account: SingleAccount,
    lockout: LoginLockout,
    refusal_delay: Duration,
    metrics: HolderMetrics,
}

impl GuardedAccount {
    pub fn new(
        account: SingleAccount,
        lockout: LoginLockout,
        refusal_delay: Duration,
        metrics: HolderMetrics,
    ) -> Self {
        Self {
            account,
            lockout,
            refusal_delay,
            metrics,
        }
    }

    async fn refuse(&self, error: AuthenticationError) -> Result<Principal, AuthenticationError> {
        tokio::time::sleep(self.refusal_delay).await;
        Err(error)
    }
}

#[async_trait]
impl Authenticator for GuardedAccount {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let client = creds.source_ip;
        if self.lockout.is_locked(client, Instant::now()) {
            // Logged once, when the address was locked out; each attempt is only counted.
            debug!(user = username, source_ip = %client, "ftp login refused: address locked out");
            self.metrics.ftp_login_refused("locked_out");
            return self
                .refuse(AuthenticationError::new(
                    "address locked out after too many refused logins",
                ))
                .await;
        }
        let password = creds.password.as_deref().unwrap_or_default();
        match self.account.check(username, password) {
            Ok(()) => {
                self.lockout.succeeded(client);
                Ok(Principal {
                    username: username.to_owned(),
                })
            }
            Err(error) => {
                warn!(user = username, source_ip = %client, error = %error, "ftp login refused");
                self.metrics.ftp_login_refused("bad_credentials");
                if self.lockout.failed(client, Instant::now()) == Failure::LockedOut {
                    warn!(source_ip = %client, "ftp client address locked out after too many refused logins");
                    self.metrics.ftp_lockout();
                }
                self.refuse(error).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> SingleAccount {
        SingleAccount::new("vod".to_owned(), SecretString::from("s3cret"))
    }

    #[test]
    fn only_the_configured_user_and_password_pass() {
        assert!(account().check("vod", "s3cret").is_ok());
        assert!(matches!(
            account().check("vod", "s3cre"),
            Err(AuthenticationError::BadPassword)
        ));
        assert!(matches!(
            account().check("vod", "s3cret!"),
            Err(AuthenticationError::BadPassword)
        ));
        assert!(matches!(
            account().check("vod", ""),
            Err(AuthenticationError::BadPassword)
        ));
        assert!(matches!(
            account().check("anonymous", "s3cret"),
            Err(AuthenticationError::BadUser)
        ));
        assert!(matches!(
            account().check("VOD", "s3cret"),
            Err(AuthenticationError::BadUser)
        ));
    }
}
