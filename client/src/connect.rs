//! Opening connections: one attempt with an error a user can act on, or attempts with
//! exponential backoff for the reconnect loops of the publisher and the worker pool.

use crate::error::Error;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Opens a connection to `url`, named `name` (shown by the broker's connection listing).
pub async fn connect(url: &str, name: &str) -> Result<Connection, Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties)
        .await
        .map_err(|e| Error::connect(url, e))
}

/// Delays between reconnect attempts: `initial`, doubled each time up to `max`; after
/// `max_attempts` failed attempts in a row (if set) the caller gives up.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Whether another attempt is allowed after `failed` failures in a row.
    pub fn allows(&self, failed: u32) -> bool {
        self.max_attempts.is_none_or(|max| failed < max)
    }
}

/// Connects, retrying with `backoff` while the broker is unreachable. A refused login or
/// vhost is not retried: waiting will not fix it. Returns `Error::Closed` if `cancel`
/// fires first.
pub async fn connect_with_retry(
    url: &str,
    name: &str,
    backoff: &Backoff,
    cancel: &CancellationToken,
) -> Result<Connection, Error> {
    let mut failed = 0;
    loop {
        let attempt = tokio::select! {
            attempt = connect(url, name) => attempt,
            _ = cancel.cancelled() => return Err(Error::Closed),
        };
        let error = match attempt {
            Ok(connection) => return Ok(connection),
            Err(error) => error,
        };
        if is_refusal(&error) {
            return Err(error);
        }
        failed += 1;
        if !backoff.allows(failed) {
            return Err(error);
        }
        tracing::warn!(%error, attempt = failed, "cannot connect; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay(failed)) => {}
            _ = cancel.cancelled() => return Err(Error::Closed),
        }
    }
}

/// The broker answered and said no (bad credentials, no access to the vhost).
fn is_refusal(error: &Error) -> bool {
    match error {
        Error::Connect { source, .. } => matches!(
            source.kind(),
            lapin::ErrorKind::ProtocolError(e) if matches!(e.get_id(), 403 | 530)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: Some(3),
        };
        let delays: Vec<u128> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(200), Duration::from_secs(1));
        assert!(backoff.allows(2));
        assert!(!backoff.allows(3));
        assert!(Backoff::default().allows(u32::MAX - 1));
    }
}
