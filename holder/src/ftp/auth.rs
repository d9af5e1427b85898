use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tracing::warn;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};

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

#[async_trait]
impl Authenticator for SingleAccount {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or_default();
        match self.check(username, password) {
            Ok(()) => Ok(Principal {
                username: username.to_owned(),
            }),
            Err(err) => {
                warn!(user = username, source_ip = %creds.source_ip, error = %err, "ftp login refused");
                Err(err)
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
