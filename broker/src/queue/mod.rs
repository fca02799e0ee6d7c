//! Queues: one task per queue (an actor, like RabbitMQ's queue process) owning its messages,
//! consumers and unacked set, so no lock guards a queue. Everything else holds a `QueueRef`
//! and talks to it through a bounded mailbox.

pub mod args;
pub mod consumer;
pub mod dead_letter;
pub mod memory;
pub mod messages;
pub mod paging;
pub mod storage;
mod task;

use crate::connection::handle::ConnHandle;
use crate::error::AmqpResult;
use crate::message::Message;
use amq_protocol::types::FieldTable;
use consumer::ConsumerShared;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use task::spawn;

/// Commands a queue task accepts. Publishers wait when the mailbox is full (that is the
/// back-pressure that stops a publishing connection from reading its socket).
#[derive(Debug)]
pub enum QueueCmd {
    /// A published message; the guard (confirm mode, persistent message, queue with a store)
    /// is dropped once the message is on disk.
    Publish(Arc<Message>, Option<crate::channel::confirm::ConfirmGuard>),
    Consume {
        consumer: Arc<ConsumerShared>,
        conn: ConnHandle,
        reply: oneshot::Sender<AmqpResult<()>>,
    },
    /// Removes the consumer (identified by pointer). Its unacked deliveries stay unacked.
    Cancel {
        consumer: Arc<ConsumerShared>,
    },
    Ack(Vec<u64>),
    /// Puts unacked messages back; `delivered` marks them redelivered.
    Requeue {
        ids: Vec<u64>,
        delivered: bool,
    },
    /// A no-ack delivery that never reached its consumer goes back to its place.
    Restore(Box<messages::Entry>),
    /// nack/reject without requeue: the messages are dropped.
    Discard(Vec<u64>),
    Get {
        no_ack: bool,
        reply: oneshot::Sender<Option<GetReply>>,
    },
    Purge {
        reply: oneshot::Sender<u32>,
    },
    Delete {
        if_unused: bool,
        if_empty: bool,
        reply: oneshot::Sender<AmqpResult<u32>>,
    },
    Stats {
        reply: oneshot::Sender<QueueStats>,
    },
    /// Credit became available for a consumer: try delivering again.
    Wake,
    /// The queue's effective settings changed (its policy did).
    Configure(Box<args::QueueArgs>),
    /// The queue was used (redeclared): its expiry (`x-expires`) starts over.
    Touch,
}

#[derive(Debug)]
pub struct GetReply {
    pub msg_id: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Messages left ready after this one.
    pub remaining: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: u32,
    pub consumers: u32,
    pub unacked: u32,
}

/// The immutable description of a queue plus its mailbox.
#[derive(Debug)]
pub struct QueueShared {
    /// Unique within the broker process; identity for hashing.
    pub id: u64,
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// The connection that declared an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// Persistent messages published to this queue are written to its store (a durable queue
    /// that survives restarts: not exclusive, not auto-delete).
    pub stored: bool,
    /// The queue's overflow mode may refuse publishes (`reject-publish[-dlx]`): confirming
    /// publishers then wait for the queue's verdict. Kept current by the queue task.
    pub rejects_publish: std::sync::atomic::AtomicBool,
    /// The queue's consumer timeout in ms (`x-consumer-timeout` or policy; 0: the broker's
    /// default). Kept current by the queue task.
    pub consumer_timeout_ms: std::sync::atomic::AtomicU64,
    /// Bytes of large messages (see `LARGE_MESSAGE`) that may wait in the mailbox, in KiB
    /// permits: with 1 MiB bodies a mailbox of 8192 commands would hold 8 GiB and keep acks
    /// waiting behind all of it.
    pub(crate) large_bytes: tokio::sync::Semaphore,
    pub(crate) tx: mpsc::Sender<QueueCmd>,
}

/// Bodies from this size on also take mailbox byte permits.
pub const LARGE_MESSAGE: usize = 64 * 1024;
/// KiB of large messages a queue's mailbox may hold.
pub const MAILBOX_LARGE_KIB: usize = 64 * 1024;

/// The mailbox byte permits a message takes (0 for small messages).
pub(crate) fn large_permits(message: &Message) -> u32 {
    let len = message.body.len();
    if len < LARGE_MESSAGE {
        return 0;
    }
    u32::try_from(len.div_ceil(1024).min(MAILBOX_LARGE_KIB)).unwrap_or(u32::MAX)
}

/// A cheap, hashable handle to a queue task.
#[derive(Debug, Clone)]
pub struct QueueRef(Arc<QueueShared>);

impl Deref for QueueRef {
    type Target = QueueShared;
    fn deref(&self) -> &QueueShared {
        &self.0
    }
}

impl PartialEq for QueueRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for QueueRef {}
impl Hash for QueueRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

/// The queue task has stopped (the queue was deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGone;

impl QueueRef {
    pub async fn send(&self, cmd: QueueCmd) -> Result<(), QueueGone> {
        self.0.tx.send(cmd).await.map_err(|_| QueueGone)
    }

    /// Hands a published message to the queue, waiting for mailbox room (for a large
    /// message, also for room in bytes).
    pub async fn publish(
        &self,
        message: Arc<Message>,
        guard: Option<crate::channel::confirm::ConfirmGuard>,
    ) -> Result<(), QueueGone> {
        let permits = large_permits(&message);
        if permits > 0 {
            // The queue gives the permits back when it takes the message.
            match self.0.large_bytes.acquire_many(permits).await {
                Ok(p) => p.forget(),
                Err(_) => return Err(QueueGone),
            }
        }
        self.send(QueueCmd::Publish(message, guard)).await
    }

    /// `publish` without waiting: a task waits for room instead of the caller.
    pub fn publish_detached(&self, message: Arc<Message>) {
        if large_permits(&message) == 0 {
            self.send_detached(QueueCmd::Publish(message, None));
            return;
        }
        let q = self.clone();
        tokio::spawn(async move {
            let _ = q.publish(message, None).await;
        });
    }

    /// Sends without waiting: if the mailbox is full, a task waits for room instead of the
    /// caller (a queue task sending to another queue must never block on it).
    pub fn send_detached(&self, cmd: QueueCmd) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.0.tx.try_send(cmd) {
            let tx = self.0.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    /// For hints that may be dropped when the mailbox is full (the queue is busy and will run
    /// its delivery loop anyway).
    pub fn hint(&self, cmd: QueueCmd) {
        let _ = self.0.tx.try_send(cmd);
    }

    /// Sends a command carrying a reply channel and waits for the answer.
    pub async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> QueueCmd,
    ) -> Result<T, QueueGone> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| QueueGone)
    }

    /// Whether persistent messages routed here are written to disk (and confirmed after fsync).
    pub fn stores_messages(&self) -> bool {
        self.0.stored
    }

    /// The queue's own consumer timeout, if it has one.
    pub fn consumer_timeout(&self) -> Option<std::time::Duration> {
        match self
            .0
            .consumer_timeout_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// Whether a confirm for a publish routed here must wait for the queue: the message is
    /// persistent and stored here, or the queue may refuse it (overflow `reject-publish`).
    pub fn confirms_after_enqueue(&self, persistent: bool) -> bool {
        (persistent && self.0.stored)
            || self
                .0
                .rejects_publish
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_exclusive(&self) -> bool {
        self.0.exclusive_owner.is_some()
    }

    /// Whether connection `conn_id` may use this queue (exclusive queues: only their owner).
    pub fn accessible_by(&self, conn_id: u64) -> bool {
        self.0.exclusive_owner.is_none_or(|owner| owner == conn_id)
    }
}
