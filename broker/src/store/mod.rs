//! Durable message storage. The `Store` trait is what the broker needs from a storage engine;
//! `segment` is the embedded implementation in `--data-dir`: per-queue segment files of message
//! records plus an ack log. fsync is not done here: queue tasks hand their files to the
//! `sync::Syncer` thread, which batches fsyncs across queues (group commit) and only then lets
//! publisher confirms go out.

mod acklog;
pub mod meta;
mod record;
mod recovery;
pub mod segment;
mod segment_queue;
pub mod sync;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a message record lives in a queue's store: segment number, byte offset and length of
/// the whole record. Needed to read a paged-out body back and to know when a segment empties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

/// A message as stored: routing info, the raw property bytes as published, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body: Bytes,
}

/// A message to store, borrowed from wherever it lives (the broker's `Message`, or a
/// `StoredMessage`): appending copies its bytes straight into the write buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

impl StoredMessage {
    pub fn as_ref(&self) -> MessageRef<'_> {
        MessageRef {
            exchange: &self.exchange,
            routing_key: &self.routing_key,
            properties: &self.properties,
            body: &self.body,
        }
    }
}

/// One message found at recovery, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub id: u64,
    pub location: Location,
    /// The message, or `None` when it did not fit the memory budget given to `open_queue` (it
    /// is read back with `QueueStore::read` when needed).
    /// Boxed: during recovery of a large backlog most entries have none, and each costs only
    /// a pointer then.
    pub message: Option<Box<StoredMessage>>,
    /// A delivery was recorded for it: it comes back with `redelivered = true`.
    pub delivered: bool,
}

/// A problem recovery found and worked around (logged by the caller with the queue's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryIssue {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// One queue's persistent messages. Owned by the queue task; calls are synchronous and cheap
/// (buffered appends); `flush` hands the buffers to the OS once per batch.
pub trait QueueStore: Send {
    /// The lowest id the next `append` may use: above every id stored or seen at recovery
    /// (removed messages included, whose records may linger in a segment or the ack log).
    fn next_id(&self) -> u64;
    /// Appends a message record (buffered). `id` increases with every call and starts at
    /// `next_id()` or above.
    fn append(&mut self, id: u64, message: MessageRef<'_>) -> io::Result<Location>;
    /// Records the first delivery of a message, so that after a restart it is marked redelivered.
    fn mark_delivered(&mut self, id: u64) -> io::Result<()>;
    /// Records that messages are gone for good (acked, dropped, purged). Segments left with no
    /// live message are deleted.
    fn remove(&mut self, removed: &[(u64, Location)]) -> io::Result<()>;
    /// Reads a record back (for bodies paged out of memory).
    fn read(&mut self, id: u64, location: Location) -> io::Result<StoredMessage>;
    /// Writes buffered records to the OS (not yet durable).
    fn flush(&mut self) -> io::Result<()>;
    /// The files an fsync must cover to make everything flushed so far durable.
    fn sync_files(&self) -> Vec<Arc<File>>;
    /// Deletes every file of the queue (the queue was deleted).
    fn destroy(self: Box<Self>) -> io::Result<()>;
}

/// An opened queue store, the messages it holds in queue order, and the damage recovery found.
pub type OpenedQueue = (Box<dyn QueueStore>, Vec<Recovered>, Vec<RecoveryIssue>);

/// A storage engine: opens (and recovers) the stores of durable queues.
pub trait Store: Send + Sync {
    /// Opens the store of a durable queue, creating it if new; returns the messages it holds in
    /// queue order (bodies only up to `keep_bytes` of message data), and any damage found and
    /// skipped.
    fn open_queue(&self, vhost: &str, queue: &str, keep_bytes: usize) -> io::Result<OpenedQueue>;
    /// Removes the stores of queues that are not in `keep` (vhost, name): leftovers of queues
    /// deleted while the broker was down or mid-deletion.
    fn remove_other_queues(&self, keep: &[(String, String)]) -> io::Result<()>;
}

/// What vhosts need to make queues durable: the storage engine and the group-commit thread.
pub struct Persistence {
    pub store: Box<dyn Store>,
    pub syncer: sync::Syncer,
    pub meta: meta::MetaStore,
    /// Message data queues may hold in memory before they move messages to disk.
    pub budget: std::sync::Arc<crate::queue::memory::MemoryBudget>,
    /// Page files of messages without a durable home (wiped at every start).
    pub paging: std::sync::Arc<dyn Store>,
    /// Messages held by durable delayed exchanges, keyed by (vhost, exchange) (`delayed`).
    pub delayed: Box<dyn Store>,
    /// Raised when a write fails for lack of space (and by the free-space monitor).
    pub alarm: std::sync::Arc<crate::alarm::DiskAlarm>,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence").finish_non_exhaustive()
    }
}
