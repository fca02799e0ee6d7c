//! One perf producer: publishes stamped bodies on its channel as fast as allowed by the rate
//! limit and the confirm window, and measures each confirm's latency.

use super::options::Route;
use super::stats::{stamp, Stats};
use crate::error::Error;
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a stopped producer waits for the confirms it still has outstanding.
const CONFIRM_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A producer that falls behind its rate this far gives up the backlog instead of bursting.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub route: Route,
    pub size: usize,
    /// Messages per second; 0 is unlimited.
    pub rate: u64,
    /// Confirm window; 0 is no confirms.
    pub confirm: usize,
    pub persistent: bool,
}

/// Puts the channel in confirm mode if the run uses confirms. Done before the clock starts.
pub async fn prepare(channel: &Channel, config: &ProducerConfig) -> Result<(), Error> {
    if config.confirm > 0 {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::amqp("confirm.select", e))?;
    }
    Ok(())
}

/// Publishes until `stop`, then waits for outstanding confirms and closes the channel.
pub async fn run(
    channel: Channel,
    config: ProducerConfig,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let target = describe(&config.route);
    let exchange: lapin::types::ShortString = config.route.exchange.as_str().into();
    let routing_key: lapin::types::ShortString = config.route.routing_key.as_str().into();
    let properties = if config.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut body = vec![0u8; config.size];
    // Each entry resolves to (the broker's answer, when the message was sent). Bounded by
    // `config.confirm`: the loop waits for one to finish before publishing past the window.
    let mut in_flight = FuturesUnordered::new();
    let mut pacer = Pacer::new(config.rate, Instant::now());
    let stopped = stop.cancelled();
    tokio::pin!(stopped);

    'run: while !stop.is_cancelled() {
        // Wait for room in the confirm window and for the rate limit, collecting confirms.
        loop {
            let full = config.confirm > 0 && in_flight.len() >= config.confirm;
            let due = pacer.due();
            if !full && due <= Instant::now() {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut stopped => break 'run,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    record_confirm(&stats, done)?;
                }
                _ = tokio::time::sleep_until(due), if !full => {}
            }
        }
        let sent_at = stats.now_ns();
        stamp(&mut body, sent_at, stats.run_id);
        // Resolves once lapin has handed the frames to its I/O thread; the returned future
        // resolves when the broker confirms (or at once without confirms).
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                BasicPublishOptions::default(),
                &body,
                properties.clone(),
            )
            .await
            .map_err(|e| Error::amqp(format!("publishing to {target}"), e))?;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        pacer.advance(Instant::now());
        if config.confirm > 0 {
            in_flight.push(async move { (confirm.await, sent_at) });
            // Take the confirms that have already arrived, so their latency is measured now
            // rather than when the window fills.
            while let Some(Some(done)) = futures_lite::future::poll_once(in_flight.next()).await {
                record_confirm(&stats, done)?;
            }
        }
    }

    let outstanding = in_flight.len();
    tokio::time::timeout(CONFIRM_DRAIN_TIMEOUT, async {
        while let Some(done) = in_flight.next().await {
            record_confirm(&stats, done)?;
        }
        Ok::<(), Error>(())
    })
    .await
    .map_err(|_| {
        Error::Other(format!(
            "{outstanding} publisher confirms were still outstanding {} s after the stop",
            CONFIRM_DRAIN_TIMEOUT.as_secs()
        ))
    })??;
    channel
        .close(200, "perf done".into())
        .await
        .map_err(|e| Error::amqp("closing a producer channel", e))
}

fn describe(route: &Route) -> String {
    match (route.exchange.as_str(), route.routing_key.as_str()) {
        ("", queue) => format!("queue '{queue}'"),
        (exchange, "") => format!("exchange '{exchange}'"),
        (exchange, key) => format!("exchange '{exchange}' with routing key '{key}'"),
    }
}

fn record_confirm(stats: &Stats, done: (lapin::Result<Confirmation>, u64)) -> Result<(), Error> {
    let (answer, sent_at) = done;
    match answer {
        Ok(Confirmation::Ack(_)) => {
            stats.confirmed.fetch_add(1, Ordering::Relaxed);
            stats
                .confirm_latency
                .record(stats.now_ns().saturating_sub(sent_at));
        }
        Ok(Confirmation::Nack(_)) => {
            stats.nacked.fetch_add(1, Ordering::Relaxed);
        }
        // Only without confirm mode, where nothing is pushed here.
        Ok(Confirmation::NotRequested) => {}
        Err(e) => return Err(Error::amqp("waiting for a publisher confirm", e)),
    }
    Ok(())
}

/// Spaces publishes evenly at a fixed rate: publish number n is due at start + n / rate.
#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64, start: Instant) -> Pacer {
        Pacer {
            interval: (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64)),
            next: start,
        }
    }

    /// When the next publish may go (at once when unlimited).
    fn due(&self) -> Instant {
        self.next
    }

    /// Called after each publish.
    fn advance(&mut self, now: Instant) {
        if let Some(interval) = self.interval {
            self.next += interval;
            if now.saturating_duration_since(self.next) > MAX_CATCH_UP {
                self.next = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_publishes_and_drops_a_long_backlog() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1000, start);
        assert_eq!(pacer.due(), start);
        pacer.advance(start);
        pacer.advance(start);
        assert_eq!(pacer.due(), start + Duration::from_millis(2));
        // Ten seconds late: catch up from now, not with ten thousand messages at once.
        let late = start + Duration::from_secs(10);
        pacer.advance(late);
        assert_eq!(pacer.due(), late);

        let mut unlimited = Pacer::new(0, start);
        unlimited.advance(start + Duration::from_secs(5));
        assert_eq!(unlimited.due(), start);
    }
}
