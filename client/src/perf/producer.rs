//! One perf producer: publishes stamped bodies on its channel as fast as allowed by the rate
//! limit and the confirm window, and measures each confirm's latency.

use super::options::Route;
use super::stats::{stamp, Stats};
use crate::error::Error;
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a stopped producer waits for the confirms it still has outstanding.
const CONFIRM_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Without confirms: at most this many publishes handed to lapin and not yet written to
/// the socket, so a broker that reads slowly slows the producer instead of growing a buffer.
const MAX_UNWRITTEN: usize = 1000;
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

/// A publish in flight: resolves to (the broker's answer, the send time in ns since the
/// run's start) once lapin has written its frames and, with confirms, once it is confirmed.
type InFlight = Pin<Box<dyn Future<Output = (lapin::Result<Confirmation>, u64)> + Send>>;

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
    // One Arc clone per publish rather than a Channel clone (a dozen Arcs).
    let channel = Arc::new(channel);
    let mut body = vec![0u8; config.size];
    // Bounded by the confirm window (or MAX_UNWRITTEN): the loop waits for the oldest
    // publishes to finish before it publishes past it.
    let window = match config.confirm {
        0 => MAX_UNWRITTEN,
        n => n,
    };
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut pacer = Pacer::new(config.rate, Instant::now());
    let stopped = stop.cancelled();
    tokio::pin!(stopped);

    'run: while !stop.is_cancelled() {
        // Wait for room in the window and for the rate limit, collecting what finishes.
        loop {
            let full = in_flight.len() >= window;
            let due = pacer.due();
            if !full && due <= Instant::now() {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut stopped => break 'run,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    record(&stats, done, &target)?;
                }
                _ = tokio::time::sleep_until(due), if !full => {}
            }
        }
        let sent_at = stats.now_ns();
        stamp(&mut body, sent_at, stats.run_id);
        let mut publish = publish(
            channel.clone(),
            exchange.clone(),
            routing_key.clone(),
            body.clone(),
            properties.clone(),
            sent_at,
        );
        // The first poll hands the frames to lapin and takes the confirm sequence number, so
        // publishes go out in order. Not waiting for the write lets lapin's I/O thread write
        // many publishes per wake-up instead of one round trip per message.
        match futures_lite::future::poll_once(&mut publish).await {
            Some(done) => record(&stats, done, &target)?,
            None => in_flight.push(publish),
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        pacer.advance(Instant::now());
        // Take what has already finished, so that confirm latency is measured now rather
        // than when the window fills.
        while let Some(Some(done)) = futures_lite::future::poll_once(in_flight.next()).await {
            record(&stats, done, &target)?;
        }
    }

    let outstanding = in_flight.len();
    tokio::time::timeout(CONFIRM_DRAIN_TIMEOUT, async {
        while let Some(done) = in_flight.next().await {
            record(&stats, done, &target)?;
        }
        Ok::<(), Error>(())
    })
    .await
    .map_err(|_| {
        Error::Other(format!(
            "{outstanding} publishes were still unconfirmed {} s after the stop",
            CONFIRM_DRAIN_TIMEOUT.as_secs()
        ))
    })??;
    channel
        .close(200, "perf done".into())
        .await
        .map_err(|e| Error::amqp("closing a producer channel", e))
}

fn publish(
    channel: Arc<Channel>,
    exchange: lapin::types::ShortString,
    routing_key: lapin::types::ShortString,
    payload: Vec<u8>,
    properties: BasicProperties,
    sent_at: u64,
) -> InFlight {
    Box::pin(async move {
        let answer = match channel
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await
        {
            Ok(confirm) => confirm.await,
            Err(e) => Err(e),
        };
        (answer, sent_at)
    })
}

fn describe(route: &Route) -> String {
    match (route.exchange.as_str(), route.routing_key.as_str()) {
        ("", queue) => format!("queue '{queue}'"),
        (exchange, "") => format!("exchange '{exchange}'"),
        (exchange, key) => format!("exchange '{exchange}' with routing key '{key}'"),
    }
}

/// Counts a finished publish, and its confirm latency if it was confirmed.
fn record(
    stats: &Stats,
    done: (lapin::Result<Confirmation>, u64),
    target: &str,
) -> Result<(), Error> {
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
        // Without confirm mode: the frames are written, nothing more to wait for.
        Ok(Confirmation::NotRequested) => {}
        Err(e) => return Err(Error::amqp(format!("publishing to {target}"), e)),
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
