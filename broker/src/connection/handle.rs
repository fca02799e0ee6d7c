//! How queue tasks reach a connection: an unbounded mailbox of deliveries and notices.
//! It is unbounded because every delivery is already bounded by its consumer's credit
//! (prefetch and the pending window, see `queue::consumer`), so the queue never waits on a
//! slow connection.

use crate::message::Message;
use crate::queue::consumer::ConsumerShared;
use crate::queue::QueueRef;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct Delivery {
    pub consumer: Arc<ConsumerShared>,
    pub queue: QueueRef,
    pub msg_id: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
}

#[derive(Debug)]
pub enum ConnMsg {
    Deliver(Delivery),
    /// Every queue a confirm-mode publish went to has stored it (`ok`) or failed to.
    Confirmed {
        channel: u16,
        epoch: u64,
        seq: u64,
        ok: bool,
    },
    /// A direct reply-to reply for the reply consumer `key` of `channel` (no queue on the way;
    /// dropped if that consumer is gone by now). Not bounded by credit: a reply consumer is
    /// no-ack, and the responder's publish rate is the bound, as in RabbitMQ.
    Reply {
        channel: u16,
        epoch: u64,
        key: u128,
        message: Arc<Message>,
    },
    /// The queue was deleted: the consumer is gone (basic.cancel to clients that asked for it).
    ConsumerCancelled {
        consumer: Arc<ConsumerShared>,
    },
    /// Close the connection with this error (an operator closed it, or deleted its user or
    /// vhost).
    Close(crate::error::AmqpError),
}

#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    tx: mpsc::UnboundedSender<ConnMsg>,
}

/// The connection task has ended.
#[derive(Debug)]
pub struct ConnGone;

impl ConnHandle {
    pub fn new(id: u64) -> (Self, mpsc::UnboundedReceiver<ConnMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ConnHandle { id, tx }, rx)
    }

    pub fn send(&self, msg: ConnMsg) -> Result<(), ConnGone> {
        self.tx.send(msg).map_err(|_| ConnGone)
    }
}
