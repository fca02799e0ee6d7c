//! Publisher confirms. A channel in confirm mode numbers its publishes from 1. A publish is
//! confirmed once every queue it was routed to has taken it — for a persistent message in a
//! durable queue that means "fsynced", which the queue signals by dropping a `ConfirmGuard`
//! after the sync thread's fsync. Acks are sent in sequence order, coalesced with `multiple`.

use crate::connection::codec;
use crate::connection::frame::ChannelId;
use crate::connection::handle::{ConnHandle, ConnMsg};
use bytes::BytesMut;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// One publish waiting for durable queues.
#[derive(Debug)]
struct ConfirmToken {
    conn: ConnHandle,
    channel: ChannelId,
    /// Which incarnation of the channel id: a confirmation for a closed channel must not
    /// settle a publish of a channel reopened with the same id.
    epoch: u64,
    seq: u64,
    remaining: AtomicUsize,
    failed: AtomicBool,
}

/// Held by a queue until the message it came with is safely stored. Dropping it counts as
/// done (also when the queue is deleted meanwhile — the message was handled, as in RabbitMQ);
/// `fail` first turns the confirm into a basic.nack.
#[derive(Debug)]
pub struct ConfirmGuard(Arc<ConfirmToken>);

impl ConfirmGuard {
    /// The message could not be stored (e.g. the disk is full): the publisher gets a nack.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }
}

impl Drop for ConfirmGuard {
    fn drop(&mut self) {
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.0.conn.send(ConnMsg::Confirmed {
                channel: self.0.channel,
                epoch: self.0.epoch,
                seq: self.0.seq,
                ok: !self.0.failed.load(Ordering::Acquire),
            });
        }
    }
}

/// `guards` guards sharing one token: when the last is dropped, the connection gets
/// `ConnMsg::Confirmed` for (`channel`, `epoch`, `seq`). Also how a transaction's commit-ok
/// waits for its stored messages.
pub fn guards_for(
    conn: &ConnHandle,
    channel: ChannelId,
    epoch: u64,
    seq: u64,
    guards: usize,
) -> Vec<ConfirmGuard> {
    if guards == 0 {
        return Vec::new();
    }
    let token = Arc::new(ConfirmToken {
        conn: conn.clone(),
        channel,
        epoch,
        seq,
        remaining: AtomicUsize::new(guards),
        failed: AtomicBool::new(false),
    });
    (0..guards).map(|_| ConfirmGuard(token.clone())).collect()
}

/// A channel's confirm-mode bookkeeping.
#[derive(Debug, Default)]
pub struct Confirms {
    published: u64,
    acked_through: u64,
    /// Publishes still waiting for their queues.
    outstanding: BTreeSet<u64>,
    /// Publishes whose storing failed, not yet nacked.
    failed: BTreeSet<u64>,
}

impl Confirms {
    /// Counts a publish; returns its sequence number.
    pub fn count_publish(&mut self) -> u64 {
        self.published += 1;
        self.published
    }

    /// Makes `guards` guards for publish `seq`, which stays outstanding until all are dropped.
    pub fn guards(
        &mut self,
        conn: &ConnHandle,
        channel: ChannelId,
        epoch: u64,
        seq: u64,
        guards: usize,
    ) -> Vec<ConfirmGuard> {
        if guards == 0 {
            return Vec::new();
        }
        self.outstanding.insert(seq);
        guards_for(conn, channel, epoch, seq, guards)
    }

    /// A publish's queues are all done.
    pub fn complete(&mut self, seq: u64, ok: bool) {
        if self.outstanding.remove(&seq) && !ok {
            self.failed.insert(seq);
        }
    }

    pub fn has_news(&self) -> bool {
        self.floor() > self.acked_through
    }

    /// Everything up to here is settled.
    fn floor(&self) -> u64 {
        match self.outstanding.first() {
            Some(first) => first - 1,
            None => self.published,
        }
    }

    /// Writes the acks (and nacks) for every settled publish since the last flush, in order.
    pub fn flush(&mut self, buf: &mut BytesMut, channel: ChannelId) {
        let floor = self.floor();
        while let Some(&f) = self.failed.first() {
            if f > floor {
                break;
            }
            self.failed.pop_first();
            if f - 1 > self.acked_through {
                let multiple = f - 1 - self.acked_through > 1;
                codec::encode_ack(buf, channel, f - 1, multiple);
            }
            codec::encode_nack(buf, channel, f, false, false);
            self.acked_through = f;
        }
        if floor > self.acked_through {
            let multiple = floor - self.acked_through > 1;
            codec::encode_ack(buf, channel, floor, multiple);
            self.acked_through = floor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::codec::FrameDecoder;
    use crate::connection::frame::{Frame, Nack};
    use tokio_util::codec::Decoder;

    fn frames(buf: &mut BytesMut) -> Vec<Frame> {
        let mut d = FrameDecoder::new(131_072);
        std::iter::from_fn(|| d.decode(buf).ok().flatten()).collect()
    }

    #[test]
    fn settled_publishes_are_acked_in_order_with_multiple() {
        let (conn, mut rx) = ConnHandle::new(1);
        let mut c = Confirms::default();
        let s1 = c.count_publish();
        let s2 = c.count_publish();
        let g2 = c.guards(&conn, 1, 0, s2, 1);
        let _s3 = c.count_publish();
        let mut buf = BytesMut::new();
        c.flush(&mut buf, 1);
        // 1 is settled; 2 waits for its queue, so 3 is held back behind it.
        assert!(
            matches!(&frames(&mut buf)[..], [Frame::Ack(1, a)] if a.delivery_tag == s1 && !a.multiple)
        );
        drop(g2);
        match rx.try_recv() {
            Ok(ConnMsg::Confirmed { seq, ok, .. }) => c.complete(seq, ok),
            other => panic!("expected a confirmation, got {other:?}"),
        }
        c.flush(&mut buf, 1);
        assert!(
            matches!(&frames(&mut buf)[..], [Frame::Ack(1, a)] if a.delivery_tag == 3 && a.multiple)
        );
        assert!(!c.has_news());
    }

    #[test]
    fn failed_publishes_are_nacked_between_acks() {
        let (conn, mut rx) = ConnHandle::new(1);
        let mut c = Confirms::default();
        c.count_publish();
        let s2 = c.count_publish();
        let g = c.guards(&conn, 1, 0, s2, 2);
        c.count_publish();
        g[0].fail();
        drop(g);
        if let Ok(ConnMsg::Confirmed { seq, ok, .. }) = rx.try_recv() {
            c.complete(seq, ok);
        }
        let mut buf = BytesMut::new();
        c.flush(&mut buf, 1);
        let got = frames(&mut buf);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[0], Frame::Ack(1, a) if a.delivery_tag == 1 && !a.multiple));
        assert!(matches!(
            &got[1],
            Frame::Nack(
                1,
                Nack {
                    delivery_tag: 2,
                    ..
                }
            )
        ));
        assert!(matches!(&got[2], Frame::Ack(1, a) if a.delivery_tag == 3 && !a.multiple));
    }
}
