//! One perf producer: a channel that publishes stamped bodies as fast as the rate limit and
//! the confirm window allow, and measures each confirm's latency. Driven by
//! [`super::driver`], which owns the socket.

use super::options::Route;
use super::stats::{stamp, Arrival, Stats};
use super::wire::{FrameWriter, FRAME_BODY, FRAME_HEADER};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// A producer that falls behind its rate this far gives up the backlog instead of bursting.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// Marks a confirm-window slot whose confirm has come.
const DONE: u64 = u64::MAX;

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

/// A producer's state on its channel.
pub struct Producer {
    pub channel: u16,
    pub config: ProducerConfig,
    /// The publish method frame and the content header frame: the same for every message.
    prefix: Vec<u8>,
    body: Vec<u8>,
    /// Body bytes per body frame (frame_max less the frame's own 8 bytes).
    chunk: usize,
    pacer: Pacer,
    /// Send times of the messages awaiting a confirm, by sequence number from `first`;
    /// a slot is `DONE` once its confirm (or nack) has come.
    unconfirmed: VecDeque<u64>,
    first: u64,
    /// Slots of `unconfirmed` not yet `DONE`.
    open: usize,
}

impl Producer {
    pub fn new(channel: u16, config: ProducerConfig, frame_max: u32, start: Instant) -> Producer {
        let mut prefix = Vec::new();
        FrameWriter::method(&mut prefix, channel, (60, 40))
            .u16(0)
            .short(&config.route.exchange)
            .short(&config.route.routing_key)
            .u8(0)
            .end();
        let mut header = FrameWriter::begin(&mut prefix, FRAME_HEADER, channel);
        header.u16(60).u16(0).u64(config.size as u64);
        if config.persistent {
            // Property flags: only delivery-mode (bit 12), then its octet.
            header.u16(0x1000).u8(2);
        } else {
            header.u16(0);
        }
        header.end();
        Producer {
            channel,
            prefix,
            body: vec![0; config.size],
            chunk: (frame_max as usize).saturating_sub(8).max(1),
            pacer: Pacer::new(config.rate, start),
            unconfirmed: VecDeque::new(),
            first: 1,
            open: 0,
            config,
        }
    }

    /// Starts the rate limit's clock (at the start of the measured window).
    pub fn restart(&mut self, now: Instant) {
        self.pacer = Pacer::new(self.config.rate, now);
    }

    /// Whether the confirm window has room (always, without confirms).
    pub fn has_room(&self) -> bool {
        self.config.confirm == 0 || self.open < self.config.confirm
    }

    /// When the rate limit lets the next message go.
    pub fn due(&self) -> Instant {
        self.pacer.due()
    }

    /// Confirms still awaited.
    pub fn unconfirmed(&self) -> usize {
        self.open
    }

    /// Appends one message's frames to `out`.
    pub fn publish(&mut self, out: &mut Vec<u8>, stats: &Stats, now: Instant) {
        let sent_at = stats.now_ns();
        stamp(&mut self.body, sent_at, stats.run_id);
        out.extend_from_slice(&self.prefix);
        for piece in self.body.chunks(self.chunk) {
            FrameWriter::begin(out, FRAME_BODY, self.channel)
                .bytes(piece)
                .end();
        }
        if self.config.confirm > 0 {
            self.unconfirmed.push_back(sent_at);
            self.open += 1;
        }
        self.pacer.advance(now);
    }

    /// A basic.ack (`ack`) or basic.nack for `tag` (and, with `multiple`, all before it).
    pub fn confirmed(&mut self, tag: u64, multiple: bool, ack: bool, stats: &Stats, at: Arrival) {
        let now = at.socket;
        let settle = |slot: &mut u64| {
            if *slot != DONE {
                if ack {
                    stats.confirm_latency.record(now.saturating_sub(*slot));
                }
                *slot = DONE;
                true
            } else {
                false
            }
        };
        let mut settled = 0u64;
        if multiple {
            for slot in self
                .unconfirmed
                .iter_mut()
                .take(tag.saturating_sub(self.first - 1) as usize)
            {
                settled += u64::from(settle(slot));
            }
        } else if let Some(slot) = tag
            .checked_sub(self.first)
            .and_then(|index| self.unconfirmed.get_mut(index as usize))
        {
            settled += u64::from(settle(slot));
        }
        while self.unconfirmed.front() == Some(&DONE) {
            self.unconfirmed.pop_front();
            self.first += 1;
        }
        self.open -= settled as usize;
        let counter = if ack { &stats.confirmed } else { &stats.nacked };
        counter.fetch_add(settled, std::sync::atomic::Ordering::Relaxed);
    }
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
    use std::sync::atomic::Ordering;

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

    fn producer(confirm: usize) -> Producer {
        let config = ProducerConfig {
            route: Route {
                exchange: String::new(),
                routing_key: "q".into(),
            },
            size: 20,
            rate: 0,
            confirm,
            persistent: true,
        };
        Producer::new(3, config, 131_072, Instant::now())
    }

    #[test]
    fn confirms_single_multiple_and_out_of_order_settle_the_window() {
        let stats = Stats::new(7);
        let mut p = producer(4);
        let mut out = Vec::new();
        for _ in 0..4 {
            p.publish(&mut out, &stats, Instant::now());
        }
        assert!(!p.has_room());
        p.confirmed(2, false, true, &stats, stats.arrival(None));
        assert_eq!(p.unconfirmed(), 3);
        p.confirmed(2, false, true, &stats, stats.arrival(None)); // a repeat changes nothing
        assert_eq!(p.unconfirmed(), 3);
        p.confirmed(3, true, true, &stats, stats.arrival(None)); // 1 and 3
        assert_eq!(p.unconfirmed(), 1);
        p.confirmed(4, false, false, &stats, stats.arrival(None));
        assert_eq!(p.unconfirmed(), 0);
        assert!(p.has_room());
        assert_eq!(stats.confirmed.load(Ordering::Relaxed), 3);
        assert_eq!(stats.nacked.load(Ordering::Relaxed), 1);
        let mut latencies = crate::histogram::Histogram::new();
        stats.confirm_latency.drain_into(&mut latencies);
        assert_eq!(latencies.count(), 3);
        // A stale tag from before the window is ignored.
        p.confirmed(1, false, true, &stats, stats.arrival(None));
        assert_eq!(stats.confirmed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_publish_is_method_header_and_body_frames() {
        let stats = Stats::new(7);
        let mut p = producer(0);
        let mut out = Vec::new();
        p.publish(&mut out, &stats, Instant::now());
        // publish: 7 + (4 + 2 + 1 + 1 + 1 + 1) + 1; header: 7 + 14 + 1 + 1; body: 7 + 20 + 1.
        assert_eq!(out.len(), 18 + 23 + 28);
        assert_eq!(&out[..3], &[1, 0, 3]);
        assert_eq!(&out[7..11], &[0, 60, 0, 40]);
        assert_eq!(out[18], 2);
        assert_eq!(&out[18 + 7 + 12..18 + 7 + 15], &[0x10, 0, 2]);
        assert_eq!(out[41], 3);
        assert!(p.has_room(), "no window without confirms");
    }
}
