//! The delayed exchange's pure core: messages ordered by the wall-clock millisecond at which
//! they are due (a min-heap), first-come first-served among messages due at the same moment.
//! No tokio and no clock: callers pass "now".

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// One held item and when it is due.
#[derive(Debug)]
struct Slot<T> {
    due_ms: u64,
    /// Arrival order, so equal due times keep publish order.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl<T> Eq for Slot<T> {}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Slot<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

/// Items waiting for their due time.
#[derive(Debug)]
pub struct Schedule<T> {
    heap: BinaryHeap<Reverse<Slot<T>>>,
    next_seq: u64,
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Schedule<T> {
    /// Holds `item` until `due_ms`; returns whether it is now the earliest (the timer must be
    /// moved forward).
    pub fn push(&mut self, due_ms: u64, item: T) -> bool {
        let earliest = self.next_due().is_none_or(|first| due_ms < first);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Slot { due_ms, seq, item }));
        earliest
    }

    /// When the earliest item is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(s)| s.due_ms)
    }

    /// Takes every item due at or before `now_ms`, earliest first.
    pub fn pop_due(&mut self, now_ms: u64) -> Vec<T> {
        let mut due = Vec::new();
        while self.next_due().is_some_and(|d| d <= now_ms) {
            if let Some(Reverse(slot)) = self.heap.pop() {
                due.push(slot.item);
            }
        }
        due
    }

    /// Drops everything held.
    pub fn clear(&mut self) {
        self.heap.clear();
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_by_due_time_not_by_arrival() {
        let mut s = Schedule::default();
        assert!(s.push(900, "late"));
        assert!(s.push(300, "early"));
        assert!(!s.push(600, "middle"));
        assert_eq!(s.next_due(), Some(300));
        assert!(s.pop_due(299).is_empty());
        assert_eq!(s.pop_due(600), vec!["early", "middle"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.pop_due(u64::MAX), vec!["late"]);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn equal_due_times_keep_arrival_order() {
        let mut s = Schedule::default();
        for i in 0..100 {
            s.push(50, i);
        }
        assert!(
            !s.push(50, 100),
            "an equal due time does not move the timer"
        );
        assert_eq!(s.pop_due(50), (0..=100).collect::<Vec<_>>());
    }

    #[test]
    fn clear_drops_everything() {
        let mut s = Schedule::default();
        s.push(1, ());
        s.push(2, ());
        s.clear();
        assert!(s.is_empty());
        assert!(s.pop_due(10).is_empty());
    }
}
