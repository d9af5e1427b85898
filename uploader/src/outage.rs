//! Tells a dependency's outage from a defect. A command that failed because PostgreSQL could
//! not be reached (or went away under it) may work when retried, and is answered unavailable;
//! anything else (a constraint the command broke, a row it cannot read, a statement the schema
//! refuses) fails again the same way, and is answered as an internal failure.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

/// Whether `error` comes from a dependency that is away (or overloaded) rather than from what
/// the command asked for.
pub fn is_outage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<deadpool_postgres::PoolError>()
            || cause.is::<std::io::Error>()
            || cause
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(postgres_is_away)
    })
}

/// The connection is gone, or the server says it cannot serve now: shutting down, out of
/// resources, or a transaction that lost a race and may pass the next time.
fn postgres_is_away(error: &tokio_postgres::Error) -> bool {
    if error.is_closed()
        || error
            .source()
            .is_some_and(|source| source.is::<std::io::Error>())
    {
        return true;
    }
    let Some(code) = error.code() else {
        return false;
    };
    let class = code.code().get(..2);
    matches!(class, Some("08" | "53"))
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .contains(code)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_lost_connection_is_an_outage() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let error = Err::<(), _>(reset)
            .context("failed to commit the chunk")
            .expect_err("an error");
        assert!(is_outage(&error));
    }

    #[test]
    fn a_failure_of_our_own_is_not() {
        assert!(!is_outage(&anyhow::anyhow!(
            "a row the uploader cannot read"
        )));
        let parse = serde_json::from_str::<u64>("x").expect_err("not a number");
        let error = Err::<(), _>(parse)
            .context("failed to read")
            .expect_err("an error");
        assert!(!is_outage(&error));
    }
}
