//! What `/readyz` asks of holder: its FTP greeting every time, and a login only when the last
//! login check is older than `login_check_interval_ms`. Orchestrators probe every few seconds;
//! a login each time would fill holder's log with sessions, and a wrong password would be
//! tried against holder's lockout again and again.

use std::time::Instant;

use tokio::sync::Mutex;
use vod_infra::config::millis;

use crate::config::HolderSettings;
use crate::holder_ftp::{self, FtpCallError, HolderFtp};

#[derive(Debug, Default)]
pub struct HolderCheck {
    /// When holder last answered a login, and whether it took it. Held while a login check
    /// runs, so concurrent probes make one login between them.
    last_login: Mutex<Option<LoginAnswer>>,
}

#[derive(Clone, Copy, Debug)]
struct LoginAnswer {
    at: Instant,
    taken: bool,
}

impl HolderCheck {
    /// Whether holder greets, and took our login at the last check.
    pub async fn reachable(&self, settings: &HolderSettings) -> bool {
        if !holder_ftp::greets(settings).await {
            return false;
        }
        let mut last_login = self.last_login.lock().await;
        if let Some(answer) = *last_login {
            if answer.at.elapsed() < millis(settings.login_check_interval_ms) {
                return answer.taken;
            }
        }
        match HolderFtp::connect(settings).await {
            Ok(holder) => {
                holder.quit().await;
                *last_login = Some(LoginAnswer {
                    at: Instant::now(),
                    taken: true,
                });
                true
            }
            Err(error) => {
                tracing::warn!(error = %error, "holder does not take fflow's ftp login");
                // A refusal is an answer and is kept like one; a connection lost on the way
                // tells nothing about the login, which is tried again at the next probe.
                if let FtpCallError::Answered { .. } = error {
                    *last_login = Some(LoginAnswer {
                        at: Instant::now(),
                        taken: false,
                    });
                }
                false
            }
        }
    }
}
