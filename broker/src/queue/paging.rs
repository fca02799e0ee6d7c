//! Paging of messages that have no durable home (transient messages, or any message of a
//! queue without a store) once the memory budget is spent: they go to a per-queue page file
//! under `<data-dir>/paging` (the segment store again, never fsynced, wiped at startup) and are
//! read back — and dropped from the page file — when they reach the head of the queue.

use super::messages::Entry;
use crate::message::Message;
use crate::store::{Location, QueueStore, Store};
use std::sync::Arc;
use tracing::{error, warn};

pub struct Pager {
    store: Arc<dyn Store>,
    vhost: String,
    queue: String,
    /// Opened on first use: most queues never page.
    file: Option<Box<dyn QueueStore>>,
}

impl Pager {
    pub fn new(store: Arc<dyn Store>, vhost: &str, queue: &str) -> Self {
        Pager {
            store,
            vhost: vhost.to_string(),
            queue: queue.to_string(),
            file: None,
        }
    }

    fn file(&mut self) -> Option<&mut Box<dyn QueueStore>> {
        if self.file.is_none() {
            match self.store.open_queue(&self.vhost, &self.queue, 0) {
                Ok((file, _, _)) => self.file = Some(file),
                Err(e) => {
                    error!(error = %e, "cannot open the queue's page file; keeping messages in memory");
                    return None;
                }
            }
        }
        self.file.as_mut()
    }

    /// Writes a message out; `None` when that failed (it then stays in memory).
    pub fn page_out(&mut self, id: u64, message: &Message) -> Option<Location> {
        let file = self.file()?;
        if id < file.next_id() {
            // Ids only grow within a queue; a page file from before cannot hold this one.
            return None;
        }
        match file.append(id, message.as_stored()) {
            Ok(location) => Some(location),
            Err(e) => {
                warn!(error = %e, "cannot page a message out; keeping it in memory");
                None
            }
        }
    }

    /// Reads a paged-out message back and forgets it in the page file.
    pub fn page_in(&mut self, id: u64, page: Location) -> std::io::Result<Arc<Message>> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("page file not open"))?;
        let stored = file.read(id, page)?;
        let _ = file.remove(&[(id, page)]);
        Ok(Arc::new(super::storage::to_message(stored)))
    }

    /// Paged-out messages dropped without being read back (purge).
    pub fn discard<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>) {
        let gone: Vec<(u64, Location)> = entries
            .into_iter()
            .filter_map(|e| e.page.map(|p| (e.id, p)))
            .collect();
        if let (false, Some(file)) = (gone.is_empty(), self.file.as_mut()) {
            let _ = file.remove(&gone);
        }
    }

    /// End of a queue batch: hand the page writes to the OS (no fsync: nothing here is
    /// promised to survive a restart).
    pub fn end_of_batch(&mut self) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.flush() {
                warn!(error = %e, "cannot write the queue's page file");
            }
        }
    }

    /// The queue is gone: so is its page file.
    pub fn destroy(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.destroy();
        }
    }
}
