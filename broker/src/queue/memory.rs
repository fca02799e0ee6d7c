//! The broker-wide budget for message data held in queue memory (`--memory-budget`). Queues
//! report what they hold after each batch; what a batch left past the budget moves to disk at
//! its end (persistent messages of stored queues just drop their bodies, others go to the
//! queue's page file) with an index entry left in memory, and is read back when delivered.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// How far `extra` more bytes (not yet reported) would go past the limit (0: they fit).
    pub fn excess(&self, extra: usize) -> usize {
        self.used
            .load(Ordering::Relaxed)
            .saturating_add(extra)
            .saturating_sub(self.limit)
    }

    /// Bytes still free.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// A queue's resident bytes went from `before` to `after`.
    pub fn report(&self, before: usize, after: usize) {
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

/// What a message costs in queue memory: its data plus the bookkeeping around it.
pub fn weight(properties: usize, body: usize) -> usize {
    properties + body + 128
}

/// Bytes of persistent message data a stored queue keeps in memory ahead of its consumers.
/// Those bodies are on disk already, so holding more of a backlog buys nothing but memory:
/// past this the newest give their bodies up at the end of the batch (a consumer that keeps
/// up is served before that, from memory) and are read back when their turn comes.
pub const STORED_READ_AHEAD: usize = 4 << 20;
