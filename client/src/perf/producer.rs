//! One perf producer: a channel that publishes stamped bodies as fast as the rate limit and
//! the confirm window allow, and measures each confirm's latency. Driven by
//! [`super::driver`], which owns the socket.

use super::options::Route;
use super::outbound::Outbound;
use super::stats::{stamp, Arrival, Stats};
use super::wire::{FrameWriter, FRAME_BODY, FRAME_HEADER};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A producer that falls behind its rate this far gives up the backlog instead of bursting.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// Marks a confirm-window slot whose confirm has come.
const DONE: u64 = u64::MAX;
/// Bodies from this size on are framed once and written from there (shared with the
/// outbound queue) instead of being copied into the outbound buffer for each publish.
const SHARED_BODY_MIN: usize = 64 * 1024;
/// Where the body starts in its first body frame (type, channel, size).
const BODY_AT: usize = 7;

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
    body: Body,
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

/// Appends `body` to `out` as body frames on `channel` of at most `chunk` bytes each.
fn body_frames(out: &mut Vec<u8>, channel: u16, body: &[u8], chunk: usize) {
    for piece in body.chunks(chunk) {
        FrameWriter::begin(out, FRAME_BODY, channel)
            .bytes(piece)
            .end();
    }
}

/// A producer's message body, stamped afresh for each publish.
enum Body {
    /// Copied into the outbound buffer, framed, for each publish.
    Copied(Vec<u8>),
    /// The body frames, built once. Each publish stamps a copy no write still holds (making
    /// one when all are in flight) and queues it as it is.
    Framed(Vec<Arc<Vec<u8>>>),
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
        let chunk = (frame_max as usize).saturating_sub(8).max(1);
        let body = if config.size >= SHARED_BODY_MIN {
            let mut frames = Vec::with_capacity(config.size + config.size.div_ceil(chunk) * 8);
            body_frames(&mut frames, channel, &vec![0; config.size], chunk);
            Body::Framed(vec![Arc::new(frames)])
        } else {
            Body::Copied(vec![0; config.size])
        };
        Producer {
            channel,
            prefix,
            body,
            chunk,
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

    /// Queues one message's frames on `out`.
    pub fn publish(&mut self, out: &mut Outbound, stats: &Stats, now: Instant) {
        let sent_at = stats.now_ns();
        out.buf().extend_from_slice(&self.prefix);
        match &mut self.body {
            Body::Copied(body) => {
                stamp(body, sent_at, stats.run_id);
                body_frames(out.buf(), self.channel, body, self.chunk);
            }
            Body::Framed(copies) => {
                let free = match copies.iter().position(|c| Arc::strong_count(c) == 1) {
                    Some(free) => free,
                    None => {
                        copies.push(Arc::new(copies[0].as_ref().clone()));
                        copies.len() - 1
                    }
                };
                if let Some(frames) = Arc::get_mut(&mut copies[free]) {
                    let first = self.config.size.min(self.chunk);
                    stamp(&mut frames[BODY_AT..BODY_AT + first], sent_at, stats.run_id);
                }
                out.push_shared(Arc::clone(&copies[free]));
            }
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
        sized_producer(confirm, 20)
    }

    fn sized_producer(confirm: usize, size: usize) -> Producer {
        let config = ProducerConfig {
            route: Route {
                exchange: String::new(),
                routing_key: "q".into(),
            },
            size,
            rate: 0,
            confirm,
            persistent: true,
        };
        Producer::new(3, config, 131_072, Instant::now())
    }

    /// Everything `out` holds, written out.
    fn written(out: &mut Outbound) -> Vec<u8> {
        let mut bytes = Vec::new();
        out.drain_into(&[usize::MAX], &mut bytes);
        bytes
    }

    #[test]
    fn confirms_single_multiple_and_out_of_order_settle_the_window() {
        let stats = Stats::new(7);
        let mut p = producer(4);
        let mut out = Outbound::new(1024, 1024);
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
        let mut out = Outbound::new(1024, 1024);
        p.publish(&mut out, &stats, Instant::now());
        let out = written(&mut out);
        // publish: 7 + (4 + 2 + 1 + 1 + 1 + 1) + 1; header: 7 + 14 + 1 + 1; body: 7 + 20 + 1.
        assert_eq!(out.len(), 18 + 23 + 28);
        assert_eq!(&out[..3], &[1, 0, 3]);
        assert_eq!(&out[7..11], &[0, 60, 0, 40]);
        assert_eq!(out[18], 2);
        assert_eq!(&out[18 + 7 + 12..18 + 7 + 15], &[0x10, 0, 2]);
        assert_eq!(out[41], 3);
        assert!(p.has_room(), "no window without confirms");
    }

    #[test]
    fn a_large_body_is_framed_once_and_stamped_per_publish_without_a_copy_in_flight() {
        let stats = Stats::new(7);
        let size = 300_000;
        let mut p = sized_producer(0, size);
        let mut out = Outbound::new(1024, 1024);
        p.publish(&mut out, &stats, Instant::now());
        let first = written(&mut out);
        // publish 18, header 23, then three body frames of up to 131,064 bytes.
        let body_frames = &first[18 + 23..];
        assert_eq!(body_frames.len(), size + 3 * 8);
        let mut at = 0;
        let mut body = Vec::new();
        while at < body_frames.len() {
            assert_eq!(body_frames[at], FRAME_BODY);
            assert_eq!(&body_frames[at + 1..at + 3], &[0, 3]);
            let len = u32::from_be_bytes(body_frames[at + 3..at + 7].try_into().unwrap()) as usize;
            assert!(len <= 131_064);
            body.extend_from_slice(&body_frames[at + 7..at + 7 + len]);
            assert_eq!(body_frames[at + 7 + len], 0xCE);
            at += len + 8;
        }
        assert_eq!(body.len(), size);
        let stamped = crate::perf::stats::read_stamp(&body, 7);
        assert!(stamped.is_some(), "the body carries this run's stamp");

        // Written before the next publish: the one copy is stamped again, in place.
        p.publish(&mut out, &stats, Instant::now());
        let second = written(&mut out);
        assert_eq!(second.len(), first.len());
        let Body::Framed(copies) = &p.body else {
            panic!("a large body is framed once")
        };
        assert_eq!(copies.len(), 1);
        // Still queued when the next is published: that one gets a copy of its own.
        p.publish(&mut out, &stats, Instant::now());
        p.publish(&mut out, &stats, Instant::now());
        let Body::Framed(copies) = &p.body else {
            panic!("a large body is framed once")
        };
        assert_eq!(copies.len(), 2);
        assert_eq!(written(&mut out).len(), 2 * first.len());
    }
}
