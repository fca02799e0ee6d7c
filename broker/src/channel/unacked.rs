//! A channel's unacked deliveries, by delivery tag. Pure.
//!
//! Tags are handed out in increasing order, so entries live in a deque sorted by tag: acks of
//! the oldest delivery (the common case) pop the front, and any other tag is found by binary
//! search and left as a tombstone until the front catches up (compacted if tombstones pile up).

use crate::queue::consumer::ConsumerShared;
use crate::queue::QueueRef;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Unacked {
    pub queue: QueueRef,
    pub msg_id: u64,
    /// The consumer whose credit the delivery holds; `None` for basic.get.
    pub consumer: Option<Arc<ConsumerShared>>,
    /// When it was handed to the client (for the consumer timeout).
    pub delivered_at: tokio::time::Instant,
}

#[derive(Debug, Default)]
pub struct UnackedSet {
    entries: VecDeque<(u64, Option<Unacked>)>,
    live: usize,
}

impl UnackedSet {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Records a delivery; `tag` must be greater than every tag pushed before.
    pub fn push(&mut self, tag: u64, entry: Unacked) {
        self.entries.push_back((tag, Some(entry)));
        self.live += 1;
    }

    pub fn contains(&self, tag: u64) -> bool {
        self.position(tag)
            .is_some_and(|i| self.entries.get(i).is_some_and(|(_, e)| e.is_some()))
    }

    fn position(&self, tag: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()
    }

    pub fn remove(&mut self, tag: u64) -> Option<Unacked> {
        let i = self.position(tag)?;
        let entry = self.entries.get_mut(i)?.1.take()?;
        self.live -= 1;
        self.trim();
        Some(entry)
    }

    /// Removes every entry with a tag up to and including `tag`, oldest first.
    pub fn remove_up_to(&mut self, tag: u64) -> Vec<Unacked> {
        let mut out = Vec::new();
        while let Some((t, _)) = self.entries.front() {
            if *t > tag {
                break;
            }
            if let Some((_, Some(e))) = self.entries.pop_front() {
                out.push(e);
            }
        }
        self.live -= out.len();
        out
    }

    /// Removes everything, oldest first.
    /// The live entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Unacked> + '_ {
        self.entries.iter().filter_map(|(_, e)| e.as_ref())
    }

    /// Removes the entries `pick` selects.
    pub fn remove_where(&mut self, pick: impl Fn(&Unacked) -> bool) -> Vec<Unacked> {
        let mut out = Vec::new();
        for (_, slot) in &mut self.entries {
            if slot.as_ref().is_some_and(&pick) {
                if let Some(e) = slot.take() {
                    out.push(e);
                }
            }
        }
        self.live -= out.len();
        self.trim();
        out
    }

    pub fn drain_all(&mut self) -> Vec<Unacked> {
        self.live = 0;
        self.entries.drain(..).filter_map(|(_, e)| e).collect()
    }

    /// What an ack, nack or reject names, with the delivery tags: one tag, or with `multiple`
    /// every tag up to it (0 = all). `None` when the tag is not unacked.
    pub fn take(&mut self, tag: u64, multiple: bool) -> Option<Vec<(u64, Unacked)>> {
        if multiple && tag == 0 {
            self.live = 0;
            return Some(
                self.entries
                    .drain(..)
                    .filter_map(|(t, e)| e.map(|e| (t, e)))
                    .collect(),
            );
        }
        if !self.contains(tag) {
            return None;
        }
        if !multiple {
            return self.remove(tag).map(|e| vec![(tag, e)]);
        }
        let mut out = Vec::new();
        while let Some((t, _)) = self.entries.front() {
            if *t > tag {
                break;
            }
            if let Some((t, Some(e))) = self.entries.pop_front() {
                out.push((t, e));
            }
        }
        self.live -= out.len();
        Some(out)
    }

    /// Puts back an entry taken out earlier (a rolled-back transaction), at its place by tag.
    pub fn restore(&mut self, tag: u64, entry: Unacked) {
        match self.entries.binary_search_by_key(&tag, |(t, _)| *t) {
            Ok(i) => {
                if let Some(slot @ (_, None)) = self.entries.get_mut(i) {
                    slot.1 = Some(entry);
                    self.live += 1;
                }
            }
            Err(i) => {
                self.entries.insert(i, (tag, Some(entry)));
                self.live += 1;
            }
        }
    }

    fn trim(&mut self) {
        while matches!(self.entries.front(), Some((_, None))) {
            self.entries.pop_front();
        }
        if self.entries.len() > 64 && self.entries.len() > 2 * self.live {
            self.entries.retain(|(_, e)| e.is_some());
        }
    }
}

/// Groups message ids by queue, keeping each queue's ids in delivery order. Most channels
/// consume from one or a few queues, so a linear scan beats a hash map here.
pub fn group_by_queue(entries: Vec<Unacked>) -> Vec<(QueueRef, Vec<u64>)> {
    let mut groups: Vec<(QueueRef, Vec<u64>)> = Vec::new();
    add_to_groups(&mut groups, entries);
    groups
}

/// Adds the entries' message ids to `groups`, one group per queue.
pub fn add_to_groups(groups: &mut Vec<(QueueRef, Vec<u64>)>, entries: Vec<Unacked>) {
    for e in entries {
        match groups.iter_mut().find(|(q, _)| *q == e.queue) {
            Some((_, ids)) => ids.push(e.msg_id),
            None => groups.push((e.queue, vec![e.msg_id])),
        }
    }
}
