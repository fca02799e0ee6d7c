//! A stored queue's link to its `QueueStore`: appends persistent messages, records first
//! deliveries and removals, flushes once per batch, and hands the confirm guards of the batch
//! to the sync thread so publishers are confirmed only after the fsync.

use super::messages::Entry;
use crate::alarm::DiskAlarm;
use crate::channel::confirm::ConfirmGuard;
use crate::connection::frame::ShortStr;
use crate::connection::properties::walk_basic_properties;
use crate::message::Message;
use crate::store::sync::{SyncJob, Syncer};
use crate::store::{Location, QueueStore, Recovered, StoredMessage};
use std::sync::Arc;
use tracing::{error, warn};

pub struct QueueStorage {
    store: Box<dyn QueueStore>,
    syncer: Syncer,
    alarm: Arc<DiskAlarm>,
    /// Guards of messages appended in this batch, released after the next fsync.
    waiting: Vec<ConfirmGuard>,
    /// A write failed since the last successful flush: the batch's guards are failed.
    failed: bool,
}

impl QueueStorage {
    pub fn new(store: Box<dyn QueueStore>, syncer: Syncer, alarm: Arc<DiskAlarm>) -> Self {
        QueueStorage {
            store,
            syncer,
            alarm,
            waiting: Vec::new(),
            failed: false,
        }
    }

    /// The id the queue's next message must have at least.
    pub fn next_id(&self) -> u64 {
        self.store.next_id()
    }

    /// Appends a persistent message; `None` when the write failed (the publisher is nacked).
    pub fn append(
        &mut self,
        id: u64,
        message: &Message,
        guard: Option<ConfirmGuard>,
    ) -> Option<Location> {
        match self.store.append(id, message.as_stored()) {
            Ok(location) => {
                self.waiting.extend(guard);
                Some(location)
            }
            Err(e) => {
                error!(error = %e, "cannot store a persistent message");
                self.note_failure(&e);
                if let Some(g) = guard {
                    g.fail();
                }
                None
            }
        }
    }

    /// Reads a paged-out message back from the store.
    pub fn read(&mut self, id: u64, location: Location) -> std::io::Result<Arc<Message>> {
        self.store
            .read(id, location)
            .map(|m| Arc::new(to_message(m)))
    }

    /// The first delivery of a stored message: after a restart it comes back redelivered.
    pub fn delivered(&mut self, entry: &Entry) {
        if entry.location.is_some() && !entry.redelivered {
            if let Err(e) = self.store.mark_delivered(entry.id) {
                warn!(error = %e, "cannot record a delivery");
            }
        }
    }

    /// Messages gone for good (acked, dropped, purged, consumed without ack).
    pub fn removed<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>) {
        let gone: Vec<(u64, Location)> = entries
            .into_iter()
            .filter_map(|e| e.location.map(|l| (e.id, l)))
            .collect();
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.store.remove(&gone) {
            warn!(error = %e, "cannot record removed messages");
        }
    }

    /// End of a queue batch: one write to the OS, then the fsync job for waiting confirms.
    pub fn end_of_batch(&mut self) {
        if let Err(e) = self.store.flush() {
            error!(error = %e, "cannot write to the queue's store");
            self.note_failure(&e);
            self.failed = true;
        }
        if self.waiting.is_empty() {
            return;
        }
        let guards = std::mem::take(&mut self.waiting);
        if std::mem::take(&mut self.failed) {
            for g in &guards {
                g.fail();
            }
            return;
        }
        self.syncer.submit(SyncJob {
            files: self.store.sync_files(),
            guards,
        });
    }

    /// Out of space: publishers are blocked until the disk monitor finds room again.
    fn note_failure(&self, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::StorageFull
            || e.kind() == std::io::ErrorKind::QuotaExceeded
        {
            self.alarm.write_failed();
        }
    }

    /// The queue was deleted: its files go too.
    pub fn destroy(self) {
        if let Err(e) = self.store.destroy() {
            warn!(error = %e, "cannot remove the deleted queue's files");
        }
    }
}

/// A recovered record as a queue entry (paged out if recovery left its body on disk).
pub fn recovered_entry(r: Recovered) -> Entry {
    let message = r.message.map(|m| Arc::new(to_message(*m)));
    Entry {
        id: r.id,
        size: super::messages::size_of(message.as_ref(), Some(r.location), None),
        // The queue sets the priority level (a body left on disk counts as priority 0).
        level: 0,
        message,
        redelivered: r.delivered,
        location: Some(r.location),
        page: None,
    }
}

/// A stored message in the broker's form (its property summary recomputed from the raw bytes).
pub(super) fn to_message(m: StoredMessage) -> Message {
    let summary = walk_basic_properties(&m.properties).unwrap_or_default();
    Message {
        exchange: ShortStr::from_string(m.exchange).unwrap_or_default(),
        routing_key: ShortStr::from_string(m.routing_key).unwrap_or_default(),
        properties: m.properties,
        summary,
        body: m.body,
    }
}
