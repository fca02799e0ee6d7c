//! The disk alarm: publishers are blocked while free space under the data directory is below
//! `--disk-free-limit`, or after a store write failed for lack of space, as RabbitMQ's disk
//! alarm does. Connections watch the alarm: a connection that publishes stops reading its
//! socket (and is sent connection.blocked if it asked for it) until the alarm clears.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often free space is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct DiskAlarm {
    path: PathBuf,
    limit: AtomicU64,
    write_failed: AtomicBool,
    state: watch::Sender<bool>,
}

impl DiskAlarm {
    pub fn new(path: PathBuf, limit: u64) -> Self {
        let (state, _) = watch::channel(false);
        DiskAlarm {
            path,
            limit: AtomicU64::new(limit),
            write_failed: AtomicBool::new(false),
            state,
        }
    }

    /// `true` while publishers must be blocked.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    pub fn is_raised(&self) -> bool {
        *self.state.borrow()
    }

    /// Changes the limit (like `rabbitmqctl set_disk_free_limit`) and re-checks at once.
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
        self.check();
    }

    /// A store write failed for lack of space: block publishers until a check finds room.
    pub fn write_failed(&self) {
        self.write_failed.store(true, Ordering::Relaxed);
        self.set(true);
    }

    /// Compares free space with the limit; clears a write-failure alarm once there is room.
    pub fn check(&self) {
        let limit = self.limit.load(Ordering::Relaxed);
        let low = match free_bytes(&self.path) {
            Ok(free) => free < limit,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot read free disk space");
                false
            }
        };
        if !low {
            self.write_failed.store(false, Ordering::Relaxed);
        }
        self.set(low || self.write_failed.load(Ordering::Relaxed));
    }

    fn set(&self, raised: bool) {
        let changed = self.state.send_if_modified(|state| {
            let changed = *state != raised;
            *state = raised;
            changed
        });
        if changed {
            if raised {
                warn!("disk alarm raised: blocking publishers");
            } else {
                info!("disk alarm cleared: unblocking publishers");
            }
        }
    }

    /// Checks every `CHECK_EVERY` until the broker stops.
    pub async fn monitor(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(),
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_above_free_space_raises_and_lowering_it_clears() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = DiskAlarm::new(dir.path().to_path_buf(), 0);
        let mut rx = alarm.subscribe();
        alarm.check();
        assert!(!alarm.is_raised());
        alarm.set_limit(u64::MAX);
        assert!(alarm.is_raised());
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        alarm.set_limit(0);
        assert!(!alarm.is_raised());
    }

    #[test]
    fn a_failed_write_raises_until_a_check_finds_room() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = DiskAlarm::new(dir.path().to_path_buf(), 0);
        alarm.write_failed();
        assert!(alarm.is_raised());
        alarm.check();
        assert!(!alarm.is_raised());
    }
}
