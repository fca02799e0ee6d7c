//! A consumer as both sides see it: the channel (in the connection task) and the queue task
//! share `ConsumerShared`, whose atomics carry prefetch credit without a round trip.
//!
//! Credit rules (checked by the queue before each delivery):
//! - `prefetch` (basic.qos global=false, fixed when the consumer is created): at most that many
//!   unacked deliveries; 0 = unlimited. The channel decrements `unacked` on ack/nack/reject.
//! - the channel's `ChannelCredit` (basic.qos global=true): shared by every consumer of the channel.
//! - `pending`: deliveries handed to the connection but not yet encoded for the socket, capped
//!   at `PENDING_WINDOW` so a slow client (or a no-ack consumer) cannot make the queue pile
//!   deliveries into the connection's mailbox without bound. The connection decrements it and
//!   wakes the queue when it drops below the cap.

use crate::connection::frame::{ChannelId, ShortStr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How many deliveries may wait in a connection's mailbox per consumer.
pub const PENDING_WINDOW: u32 = 2048;

#[derive(Debug)]
pub struct ConsumerShared {
    pub tag: ShortStr,
    pub channel: ChannelId,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority` of basic.consume: while higher-priority consumers have credit, lower ones
    /// get nothing (0 by default; negative allowed).
    pub priority: i32,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u32,
    pub unacked: AtomicU32,
    pub pending: AtomicU32,
    pub channel_credit: Arc<ChannelCredit>,
}

impl ConsumerShared {
    /// Whether the queue may deliver one more message now; takes the channel credit if so.
    pub fn try_take_credit(&self) -> bool {
        if self.pending.load(Ordering::Acquire) >= PENDING_WINDOW {
            return false;
        }
        if self.no_ack {
            return true;
        }
        if self.prefetch != 0 && self.unacked.load(Ordering::Acquire) >= self.prefetch {
            return false;
        }
        self.channel_credit.try_acquire()
    }

    /// Gives back what a successful `try_take_credit` took when no delivery follows. No-ack
    /// consumers take no channel credit, so there is none to give back.
    pub fn untake_credit(&self) {
        if !self.no_ack {
            self.channel_credit.release();
        }
    }

    /// Called by the queue after a successful `try_take_credit` when it sends the delivery.
    pub fn record_delivery(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if !self.no_ack {
            self.unacked.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Called by the connection once the delivery is encoded. True when the queue may have
    /// stopped on the window and needs a wake-up.
    pub fn delivery_written(&self) -> bool {
        self.pending.fetch_sub(1, Ordering::AcqRel) == PENDING_WINDOW
    }

    /// Called by the channel when one of this consumer's deliveries is acked, nacked, rejected
    /// or requeued. Returns true when the channel-wide credit was exhausted before.
    pub fn settle(&self) -> bool {
        self.unacked.fetch_sub(1, Ordering::AcqRel);
        self.channel_credit.release()
    }
}

/// basic.qos global=true: one unacked limit shared by all consumers on a channel.
#[derive(Debug, Default)]
pub struct ChannelCredit {
    /// 0 = unlimited.
    limit: AtomicU32,
    used: AtomicU32,
}

impl ChannelCredit {
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if limit != 0 && used >= limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Returns true when the credit was exhausted before this release (queues may be waiting).
    pub fn release(&self) -> bool {
        let before = self.used.fetch_sub(1, Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Acquire);
        limit != 0 && before >= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(prefetch: u32, no_ack: bool, credit: Arc<ChannelCredit>) -> ConsumerShared {
        ConsumerShared {
            tag: ShortStr::from_static("c"),
            channel: 1,
            no_ack,
            exclusive: false,
            priority: 0,
            prefetch,
            unacked: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            channel_credit: credit,
        }
    }

    #[test]
    fn prefetch_limits_unacked_and_settle_restores_it() {
        let c = consumer(2, false, Arc::default());
        for _ in 0..2 {
            assert!(c.try_take_credit());
            c.record_delivery();
        }
        assert!(!c.try_take_credit());
        c.settle();
        assert!(c.try_take_credit());
    }

    #[test]
    fn channel_credit_is_shared_between_consumers() {
        let credit = Arc::new(ChannelCredit::default());
        credit.set_limit(1);
        let a = consumer(0, false, credit.clone());
        let b = consumer(0, false, credit.clone());
        assert!(a.try_take_credit());
        a.record_delivery();
        assert!(!b.try_take_credit());
        assert!(a.settle(), "release from a full channel asks for a wake-up");
        assert!(b.try_take_credit());
    }

    #[test]
    fn untaking_credit_of_a_no_ack_consumer_leaves_the_channel_credit_alone() {
        let credit = Arc::new(ChannelCredit::default());
        credit.set_limit(1);
        let no_ack = consumer(0, true, credit.clone());
        let acking = consumer(0, false, credit.clone());
        assert!(no_ack.try_take_credit());
        no_ack.untake_credit();
        // The channel's one credit is still there, and only once.
        assert!(acking.try_take_credit());
        assert!(!acking.try_take_credit());
        acking.untake_credit();
        assert!(acking.try_take_credit());
    }

    #[test]
    fn pending_window_caps_no_ack_consumers() {
        let c = consumer(0, true, Arc::default());
        for _ in 0..PENDING_WINDOW {
            assert!(c.try_take_credit());
            c.record_delivery();
        }
        assert!(!c.try_take_credit());
        assert!(c.delivery_written());
        assert!(c.try_take_credit());
    }
}
