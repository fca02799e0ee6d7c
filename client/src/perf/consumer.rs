//! One perf consumer: a channel that receives deliveries, measures each one's end-to-end
//! latency from the producer's timestamp, and acks it (unless auto-ack), one by one or with
//! `multiple`. Driven by [`super::driver`], which owns the socket.

use super::stats::{read_stamp, Arrival, Stats};
use super::wire::FrameWriter;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: String,
    pub consumer_tag: String,
    pub autoack: bool,
    /// basic.qos prefetch count; 0 is unlimited.
    pub prefetch: u16,
    /// Ack with `multiple` once this many deliveries are unacked, or sooner when no further
    /// delivery is waiting; 1 acks each delivery on its own.
    pub multi_ack_every: u32,
}

/// A delivery whose content is still arriving.
struct Arriving {
    tag: u64,
    /// `None` until the content header has come.
    size: Option<u64>,
    got: u64,
    /// The first bytes of the body: where the producer's stamp is.
    head: [u8; 16],
}

/// A consumer's state on its channel.
pub struct Consumer {
    pub channel: u16,
    pub config: ConsumerConfig,
    arriving: Option<Arriving>,
    /// Deliveries received and not yet acked, and the newest one's tag.
    unacked: u32,
    last_tag: u64,
}

impl Consumer {
    pub fn new(channel: u16, config: ConsumerConfig) -> Consumer {
        Consumer {
            channel,
            config,
            arriving: None,
            unacked: 0,
            last_tag: 0,
        }
    }

    /// A basic.deliver: its content follows.
    pub fn deliver(&mut self, tag: u64) {
        self.arriving = Some(Arriving {
            tag,
            size: None,
            got: 0,
            head: [0; 16],
        });
    }

    /// The content header's body size.
    pub fn header(&mut self, size: u64, out: &mut Vec<u8>, stats: &Stats, at: Arrival) {
        if let Some(arriving) = &mut self.arriving {
            arriving.size = Some(size);
        }
        self.complete_if_done(out, stats, at);
    }

    /// A body frame.
    pub fn body(&mut self, bytes: &[u8], out: &mut Vec<u8>, stats: &Stats, at: Arrival) {
        if let Some(arriving) = &mut self.arriving {
            let at = arriving.got as usize;
            if at < arriving.head.len() {
                let n = bytes.len().min(arriving.head.len() - at);
                arriving.head[at..at + n].copy_from_slice(&bytes[..n]);
            }
            arriving.got += bytes.len() as u64;
        }
        self.complete_if_done(out, stats, at);
    }

    fn complete_if_done(&mut self, out: &mut Vec<u8>, stats: &Stats, at: Arrival) {
        let Some(arriving) = &self.arriving else {
            return;
        };
        let Some(size) = arriving.size.filter(|&size| arriving.got >= size) else {
            return;
        };
        let head = &arriving.head[..(size as usize).min(arriving.head.len())];
        if let Some(sent_at) = read_stamp(head, stats.run_id) {
            stats.latency.record(at.socket.saturating_sub(sent_at));
            stats.read_latency.record(at.read.saturating_sub(sent_at));
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        let tag = arriving.tag;
        self.arriving = None;
        if !self.config.autoack {
            self.last_tag = tag;
            self.unacked += 1;
            if self.unacked >= self.config.multi_ack_every.max(1) {
                self.ack(out);
            }
        }
    }

    /// Acks what is unacked (called when no further delivery is waiting, too).
    pub fn ack(&mut self, out: &mut Vec<u8>) {
        if self.unacked == 0 {
            return;
        }
        let multiple = self.config.multi_ack_every > 1;
        FrameWriter::method(out, self.channel, (60, 80))
            .u64(self.last_tag)
            .u8(u8::from(multiple))
            .end();
        self.unacked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use crate::perf::stats::stamp;

    fn consumer(every: u32) -> Consumer {
        Consumer::new(
            2,
            ConsumerConfig {
                queue: "q".into(),
                consumer_tag: "t".into(),
                autoack: false,
                prefetch: 10,
                multi_ack_every: every,
            },
        )
    }

    #[test]
    fn a_delivery_in_several_body_frames_is_counted_once_and_acked() {
        let stats = Stats::new(9);
        let mut c = consumer(1);
        let mut out = Vec::new();
        let mut body = vec![0u8; 40];
        stamp(&mut body, 0, 9);
        c.deliver(5);
        c.header(40, &mut out, &stats, stats.arrival(None));
        c.body(&body[..10], &mut out, &stats, stats.arrival(None));
        assert!(out.is_empty());
        c.body(&body[10..], &mut out, &stats, stats.arrival(None));
        assert_eq!(stats.received.load(Ordering::Relaxed), 1);
        // basic.ack on channel 2, tag 5, not multiple.
        assert_eq!(
            out,
            [1, 0, 2, 0, 0, 0, 13, 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0xCE]
        );
        let mut latencies = crate::histogram::Histogram::new();
        stats.latency.drain_into(&mut latencies);
        assert_eq!(latencies.count(), 1);
    }

    #[test]
    fn latency_counts_to_the_socket_and_read_latency_to_the_read() {
        let stats = Stats::new(9);
        let mut c = consumer(1);
        let mut out = Vec::new();
        let mut body = [0u8; 16];
        stamp(&mut body, 1_000, 9);
        c.deliver(1);
        c.header(16, &mut out, &stats, Arrival { socket: 0, read: 0 });
        // The body came in a later read, which found it had waited 3 µs in the socket.
        c.body(
            &body,
            &mut out,
            &stats,
            Arrival {
                socket: 5_000,
                read: 8_000,
            },
        );
        let (mut latency, mut read) = (Histogram::new(), Histogram::new());
        stats.latency.drain_into(&mut latency);
        stats.read_latency.drain_into(&mut read);
        assert_eq!((latency.count(), latency.max()), (1, Some(4_000)));
        assert_eq!((read.count(), read.max()), (1, Some(7_000)));
    }

    #[test]
    fn multiple_acks_wait_for_the_count_or_an_idle_moment() {
        let stats = Stats::new(9);
        let mut c = consumer(3);
        let mut out = Vec::new();
        for tag in 1..=4 {
            c.deliver(tag);
            c.header(0, &mut out, &stats, stats.arrival(None));
        }
        assert_eq!(out.len(), 21, "one ack, for 1..=3");
        assert_eq!(&out[11..19], &3u64.to_be_bytes());
        assert_eq!(out[19], 1, "multiple");
        c.ack(&mut out);
        assert_eq!(out.len(), 42);
        assert_eq!(&out[32..40], &4u64.to_be_bytes());
        c.ack(&mut out);
        assert_eq!(out.len(), 42, "nothing left to ack");
    }
}
