//! The broker-wide budget for message data held in queue memory (`--memory-budget`). Queues
//! report what they hold after each batch; past the budget, stored queues keep new persistent
//! messages on disk only (an index entry stays in memory) and read them back when they are
//! delivered.

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

    /// Whether `extra` more bytes (not yet reported) would still fit.
    pub fn fits(&self, extra: usize) -> bool {
        self.used.load(Ordering::Relaxed).saturating_add(extra) <= self.limit
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
