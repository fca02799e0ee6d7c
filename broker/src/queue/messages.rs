//! The queue's message store in memory: ready messages in FIFO order, messages returned to the
//! queue (requeued) kept at their original position, and the unacked set. Pure, no tokio.
//!
//! Every message gets a per-queue sequence id on enqueue. Ready messages are a `VecDeque` in id
//! order; a requeued message goes into `returned`, ordered by id, and `pop` takes whichever of
//! the two heads is older — so requeued messages come back ahead of newer ones, in their
//! original order, without shifting the deque.
//!
//! At the end of a batch the queue sheds what it should not hold (`spill`): the newest ready
//! messages move to `tail`, compact 24-byte records of where each message waits on disk, always
//! after every message of `ready`. While a tail exists new messages join it directly. The tail
//! is read back from the front as consumers catch up, so a backlog of millions costs tens of
//! MiB of memory rather than its size.

use crate::message::Message;
use crate::store::Location;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    /// `None` when paged out: the message is only in the queue's store (at `location`).
    pub message: Option<Arc<Message>>,
    pub redelivered: bool,
    /// Where the queue's store holds it (persistent messages of stored queues).
    pub location: Option<Location>,
    /// Where the queue's page file holds it while paged out (messages without a store).
    pub page: Option<Location>,
    /// What it counts toward `x-max-length-bytes`: the body's length, or for a message read
    /// from disk its record's length (an upper bound of its body).
    pub size: u32,
    /// Its priority level (0 in a queue without priorities).
    pub level: u8,
}

/// The size an entry counts for: its body if held, else its record on disk.
pub fn size_of(
    message: Option<&Arc<Message>>,
    location: Option<Location>,
    page: Option<Location>,
) -> u32 {
    match (message, page.or(location)) {
        (Some(m), _) => u32::try_from(m.body.len()).unwrap_or(u32::MAX),
        (None, Some(at)) => at.len,
        (None, None) => 0,
    }
}

impl Entry {
    /// Bytes this entry holds in memory.
    pub fn resident(&self) -> usize {
        self.message.as_ref().map_or(0, |m| {
            super::memory::weight(m.properties.len(), m.body.len())
        })
    }
}

/// A ready message waiting on disk, in the queue's store or its page file.
#[derive(Debug, Clone, Copy)]
struct Paged {
    id: u64,
    location: Location,
    flags: u8,
}

/// `location` is in the page file (else in the queue's store).
const IN_PAGE_FILE: u8 = 1;
const REDELIVERED: u8 = 2;
/// No disk copy (writing the page file failed): the message is in `Messages::pinned`.
const PINNED: u8 = 4;

/// The ready messages of one priority level.
#[derive(Debug, Default)]
struct Level {
    ready: VecDeque<Entry>,
    /// Ready messages after all of `ready`, waiting on disk.
    tail: VecDeque<Paged>,
    returned: BTreeMap<u64, Entry>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.tail.is_empty() && self.returned.is_empty()
    }

    /// The id of this level's next message: the older of the returned and queue heads.
    fn head_id(&self) -> Option<u64> {
        let head = match (self.ready.front(), self.tail.front()) {
            (Some(e), _) => Some(e.id),
            (None, Some(p)) => Some(p.id),
            (None, None) => None,
        };
        match (self.returned.keys().next(), head) {
            (Some(r), Some(h)) => Some((*r).min(h)),
            (r, h) => r.copied().or(h),
        }
    }
}

/// A queue's messages. Without priorities there is one level; a priority queue
/// (`x-max-priority` N) has N + 1, and the highest non-empty level is served first, FIFO
/// within a level.
#[derive(Debug)]
pub struct Messages {
    next_id: u64,
    /// Sum of the sizes of the ready messages.
    ready_bytes: u64,
    /// How many messages are ready (in every level).
    ready_count: usize,
    /// Bytes of ready messages held in memory (paged-out ones excluded).
    resident: usize,
    /// The part of `resident` that also has a copy in the queue's store (persistent messages
    /// of a stored queue): memory that can be given back without writing anything.
    stored_resident: usize,
    levels: Vec<Level>,
    /// Tail messages that could not be written out (rare: the page file failed).
    pinned: crate::FastMap<u64, Arc<Message>>,
    unacked: crate::FastMap<u64, Entry>,
}

impl Default for Messages {
    fn default() -> Self {
        Messages::with_priorities(None)
    }
}

impl Messages {
    /// Messages of a queue with priorities 0..=`max` (None: one level, plain FIFO).
    pub fn with_priorities(max: Option<u8>) -> Messages {
        let levels = usize::from(max.unwrap_or(0)) + 1;
        Messages {
            next_id: 0,
            ready_bytes: 0,
            ready_count: 0,
            resident: 0,
            stored_resident: 0,
            levels: (0..levels).map(|_| Level::default()).collect(),
            pinned: Default::default(),
            unacked: Default::default(),
        }
    }

    /// The level a message with `priority` goes to (priorities above the maximum count as
    /// the maximum, as in RabbitMQ).
    pub fn level_of(&self, priority: Option<u8>) -> u8 {
        let top = u8::try_from(self.levels.len().saturating_sub(1)).unwrap_or(u8::MAX);
        priority.unwrap_or(0).min(top)
    }

    fn level_mut(&mut self, level: u8) -> &mut Level {
        let i = usize::from(level).min(self.levels.len().saturating_sub(1));
        // `levels` is never empty (at least one level is made).
        &mut self.levels[i]
    }

    /// The id the next pushed message will get.
    pub fn next_id(&self) -> u64 {
        self.next_id + 1
    }

    /// Appends a new message at priority `level` (`None`: already paged out; then
    /// `location` or `page` is set).
    pub fn push(
        &mut self,
        message: Option<Arc<Message>>,
        location: Option<Location>,
        page: Option<Location>,
        level: u8,
    ) {
        self.next_id += 1;
        let size = size_of(message.as_ref(), location, page);
        let entry = Entry {
            id: self.next_id,
            message,
            redelivered: false,
            location,
            page,
            size,
            level,
        };
        self.enqueue(entry);
    }

    /// Appends to `ready`, or to the tail once paging has started (order is kept: the tail
    /// always follows `ready`).
    fn enqueue(&mut self, entry: Entry) {
        self.ready_count += 1;
        let level = entry.level;
        if self.level_mut(level).tail.is_empty() && entry.message.is_some() {
            self.hold(&entry);
            self.ready_bytes += u64::from(entry.size);
            self.level_mut(level).ready.push_back(entry);
            return;
        }
        let (location, mut flags) = match (entry.location, entry.page) {
            (_, Some(page)) => (page, IN_PAGE_FILE),
            (Some(location), None) => (location, 0),
            (None, None) => (Location::default(), PINNED),
        };
        if entry.redelivered {
            flags |= REDELIVERED;
        }
        if flags & PINNED != 0 {
            if let Some(message) = &entry.message {
                self.hold(&entry);
                self.pinned.insert(entry.id, message.clone());
            }
        }
        let paged = Paged {
            id: entry.id,
            location,
            flags,
        };
        self.ready_bytes += u64::from(self.paged_size(&paged));
        self.level_mut(level).tail.push_back(paged);
    }

    /// A ready entry's body is now held in memory.
    fn hold(&mut self, entry: &Entry) {
        let bytes = entry.resident();
        self.resident += bytes;
        if entry.location.is_some() {
            self.stored_resident += bytes;
        }
    }

    /// A ready entry's body is no longer held (taken out, or paged out).
    fn release(&mut self, entry: &Entry) {
        let bytes = entry.resident();
        self.resident = self.resident.saturating_sub(bytes);
        if entry.location.is_some() {
            self.stored_resident = self.stored_resident.saturating_sub(bytes);
        }
    }

    /// The size a paged entry counts for (the same going in and coming out).
    fn paged_size(&self, p: &Paged) -> u32 {
        if p.flags & PINNED != 0 {
            size_of(self.pinned.get(&p.id), None, None)
        } else {
            p.location.len
        }
    }

    /// Whether priority `level` is paging: new messages must then go to disk too, to stay
    /// in order.
    pub fn has_tail(&self, level: u8) -> bool {
        self.levels
            .get(usize::from(level))
            .is_some_and(|l| !l.tail.is_empty())
    }

    fn unpage(&mut self, p: Paged, level: u8) -> Entry {
        let size = self.paged_size(&p);
        let message = if p.flags & PINNED != 0 {
            self.pinned.remove(&p.id)
        } else {
            None
        };
        if let Some(m) = &message {
            // Pinned messages have no copy on disk, so they never count as `stored_resident`.
            self.resident = self
                .resident
                .saturating_sub(super::memory::weight(m.properties.len(), m.body.len()));
        }
        let (location, page) = match p.flags & (IN_PAGE_FILE | PINNED) {
            0 => (Some(p.location), None),
            IN_PAGE_FILE => (None, Some(p.location)),
            _ => (None, None),
        };
        Entry {
            id: p.id,
            message,
            redelivered: p.flags & REDELIVERED != 0,
            location,
            page,
            size,
            level,
        }
    }

    /// Bytes of the ready messages (bodies; records on disk for paged ones).
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    /// Bytes of ready messages held in memory.
    pub fn resident(&self) -> usize {
        self.resident
    }

    /// Bytes of ready messages held in memory that also have a copy in the queue's store.
    pub fn stored_resident(&self) -> usize {
        self.stored_resident
    }

    /// New messages get ids from `next` on (a store's ids must not be reused).
    pub fn number_from(&mut self, next: u64) {
        self.next_id = self.next_id.max(next.saturating_sub(1));
    }

    /// Puts back a message recovered from the store; ids must come in increasing order.
    pub fn push_recovered(&mut self, entry: Entry) {
        self.next_id = self.next_id.max(entry.id);
        self.enqueue(entry);
    }

    /// Ready messages (what declare-ok and get-ok report as the message count).
    pub fn ready_len(&self) -> usize {
        self.ready_count
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    pub fn has_ready(&self) -> bool {
        self.ready_count > 0
    }

    /// The highest level holding ready messages.
    fn top_level(&self) -> Option<usize> {
        self.levels.iter().rposition(|l| !l.is_empty())
    }

    /// The id of the message `pop` would take next.
    pub fn head_id(&self) -> Option<u64> {
        self.levels.get(self.top_level()?)?.head_id()
    }

    /// Takes the next ready message: from the highest non-empty level, the oldest there.
    pub fn pop(&mut self) -> Option<Entry> {
        let top = self.top_level()?;
        let level = self.levels.get_mut(top)?;
        // Requeued messages come back ahead of newer ones: the head may be in `returned`.
        let head = level.head_id()?;
        let entry = if level.returned.keys().next() == Some(&head) {
            let (_, entry) = level.returned.pop_first()?;
            self.release(&entry);
            entry
        } else if let Some(entry) = level.ready.pop_front() {
            self.release(&entry);
            entry
        } else {
            let paged = level.tail.pop_front()?;
            let n = u8::try_from(top).unwrap_or(u8::MAX);
            self.unpage(paged, n)
        };
        self.ready_count = self.ready_count.saturating_sub(1);
        self.ready_bytes = self.ready_bytes.saturating_sub(u64::from(entry.size));
        Some(entry)
    }

    /// Records a delivered message as awaiting ack.
    pub fn track_unacked(&mut self, entry: Entry) {
        self.unacked.insert(entry.id, entry);
    }

    /// Removes acked messages; unknown ids (already settled) are ignored.
    pub fn ack(&mut self, ids: &[u64]) -> Vec<Entry> {
        ids.iter()
            .filter_map(|id| self.unacked.remove(id))
            .collect()
    }

    /// Puts unacked messages back at their original position. `delivered` marks them
    /// `redelivered` (false when the delivery never reached the client).
    pub fn requeue(&mut self, ids: &[u64], delivered: bool) {
        for id in ids {
            if let Some(mut e) = self.unacked.remove(id) {
                e.redelivered |= delivered;
                self.hold(&e);
                self.ready_bytes += u64::from(e.size);
                self.ready_count += 1;
                self.level_mut(e.level).returned.insert(e.id, e);
            }
        }
    }

    /// Puts a message that was popped but could not be handed out back at the head.
    pub fn unpop(&mut self, entry: Entry) {
        self.hold(&entry);
        self.ready_bytes += u64::from(entry.size);
        self.ready_count += 1;
        self.level_mut(entry.level).returned.insert(entry.id, entry);
    }

    /// Moves the newest ready messages to the tail until `over` bytes of resident memory have
    /// been given back, and `stored_over` bytes of the part that has a copy in the queue's
    /// store; the lowest priority level goes first. A message with a store copy only drops its
    /// body; any other is written out by `page_out` (in id order, as the page file wants), and
    /// one that cannot be written stays in memory as a pinned tail entry, keeping its place.
    /// Returns how many messages moved.
    pub fn spill(
        &mut self,
        mut over: usize,
        mut stored_over: usize,
        mut page_out: impl FnMut(u64, &Message) -> Option<Location>,
    ) -> usize {
        let mut moved = 0;
        for n in 0..self.levels.len() {
            if over == 0 && stored_over == 0 {
                break;
            }
            // The newest messages of this level that must go: a suffix of `ready`, since the
            // tail must stay behind every ready message.
            let ready = &self.levels[n].ready;
            let mut keep = ready.len();
            for e in ready.iter().rev() {
                if over == 0 && stored_over == 0 {
                    break;
                }
                let bytes = e.resident();
                over = over.saturating_sub(bytes);
                if e.location.is_some() {
                    stored_over = stored_over.saturating_sub(bytes);
                }
                keep -= 1;
            }
            let spilled = self.levels[n].ready.split_off(keep);
            moved += spilled.len();
            let mut paged = Vec::with_capacity(spilled.len());
            for entry in spilled {
                self.release(&entry);
                self.ready_bytes = self.ready_bytes.saturating_sub(u64::from(entry.size));
                let mut flags = if entry.redelivered { REDELIVERED } else { 0 };
                let location = match (entry.location, &entry.message) {
                    (Some(location), _) => location,
                    (None, Some(message)) => match page_out(entry.id, message) {
                        Some(page) => {
                            flags |= IN_PAGE_FILE;
                            page
                        }
                        None => {
                            self.hold(&entry);
                            self.pinned.insert(entry.id, message.clone());
                            flags |= PINNED;
                            Location::default()
                        }
                    },
                    // Not reachable (ready messages are held in memory); it would come out of
                    // the tail as a message with nothing to deliver, and be dropped then.
                    (None, None) => {
                        flags |= PINNED;
                        Location::default()
                    }
                };
                let p = Paged {
                    id: entry.id,
                    location,
                    flags,
                };
                self.ready_bytes += u64::from(self.paged_size(&p));
                paged.push(p);
            }
            let tail = &mut self.levels[n].tail;
            for p in paged.into_iter().rev() {
                tail.push_front(p);
            }
        }
        moved
    }

    /// Gives memory back once a large backlog has drained: a deque keeps the capacity of its
    /// largest size, which for millions of paged-out entries is hundreds of MiB.
    pub fn shrink_if_drained(&mut self) {
        for level in &mut self.levels {
            let cap = level.ready.capacity();
            if cap > 4096 && level.ready.len() < cap / 4 {
                level.ready.shrink_to(level.ready.len() * 2);
            }
            let cap = level.tail.capacity();
            if cap > 4096 && level.tail.len() < cap / 4 {
                level.tail.shrink_to(level.tail.len() * 2);
            }
        }
    }

    /// Drops every ready message and returns them.
    pub fn purge(&mut self) -> Vec<Entry> {
        let mut purged = Vec::with_capacity(self.ready_count);
        let levels: Vec<Level> = self.levels.iter_mut().map(std::mem::take).collect();
        for (n, level) in levels.into_iter().enumerate() {
            let n = u8::try_from(n).unwrap_or(u8::MAX);
            purged.extend(level.returned.into_values());
            purged.extend(level.ready);
            purged.extend(level.tail.into_iter().map(|p| self.unpage(p, n)));
        }
        self.pinned.clear();
        self.resident = 0;
        self.stored_resident = 0;
        self.ready_bytes = 0;
        self.ready_count = 0;
        purged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::frame::{PropertySummary, ShortStr};
    use bytes::Bytes;

    fn msg(body: &'static str) -> Arc<Message> {
        Arc::new(Message {
            exchange: ShortStr::default(),
            routing_key: ShortStr::default(),
            properties: Bytes::from_static(&[0, 0]),
            summary: PropertySummary::default(),
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    fn bodies(m: &mut Messages) -> Vec<(String, bool)> {
        std::iter::from_fn(|| m.pop())
            .map(|e| {
                let body = e.message.map(|m| m.body.clone()).unwrap_or_default();
                (String::from_utf8_lossy(&body).into_owned(), e.redelivered)
            })
            .collect()
    }

    #[test]
    fn fifo_order() {
        let mut m = Messages::default();
        for b in ["a", "b", "c"] {
            m.push(Some(msg(b)), None, None, 0);
        }
        assert_eq!(m.ready_len(), 3);
        let got: Vec<_> = bodies(&mut m).into_iter().map(|(b, _)| b).collect();
        assert_eq!(got, ["a", "b", "c"]);
    }

    #[test]
    fn requeued_messages_return_ahead_of_newer_ones_in_original_order() {
        let mut m = Messages::default();
        for b in ["a", "b", "c", "d"] {
            m.push(Some(msg(b)), None, None, 0);
        }
        let a = m.pop().map(|e| e.id);
        let b = m.pop().map(|e| e.id);
        for e in [a, b] {
            let id = e.unwrap_or_default();
            m.track_unacked(Entry {
                id,
                message: Some(msg(if id == 1 { "a" } else { "b" })),
                redelivered: false,
                location: None,
                page: None,
                size: 1,
                level: 0,
            });
        }
        m.push(Some(msg("e")), None, None, 0);
        // requeue in reverse order: position comes from the id, not the call order
        m.requeue(&[2, 1], true);
        assert_eq!(m.unacked_len(), 0);
        assert_eq!(
            bodies(&mut m),
            [
                ("a".to_string(), true),
                ("b".to_string(), true),
                ("c".to_string(), false),
                ("d".to_string(), false),
                ("e".to_string(), false)
            ]
        );
    }

    #[test]
    fn ack_of_unknown_id_is_ignored_and_purge_counts_ready_only() {
        let mut m = Messages::default();
        m.push(Some(msg("a")), None, None, 0);
        m.push(Some(msg("b")), None, None, 0);
        let e = m.pop();
        if let Some(e) = e {
            m.track_unacked(e);
        }
        assert!(m.ack(&[42]).is_empty());
        assert_eq!(m.purge().len(), 1);
        assert_eq!(m.unacked_len(), 1);
        assert_eq!(m.ack(&[1]).len(), 1);
    }

    #[test]
    fn resident_bytes_follow_ready_messages_held_in_memory() {
        let mut m = Messages::default();
        let w = msg("abc");
        let one = super::super::memory::weight(w.properties.len(), w.body.len());
        m.push(Some(w), None, None, 0);
        m.push(
            None,
            Some(Location {
                segment: 1,
                offset: 0,
                len: 10,
            }),
            None,
            0,
        );
        assert_eq!(m.resident(), one, "a paged-out entry holds nothing");
        let e = m.pop().unwrap();
        assert_eq!(m.resident(), 0);
        m.track_unacked(e);
        m.requeue(&[1], true);
        assert_eq!(m.resident(), one, "a requeued message is resident again");
        assert_eq!(m.purge().len(), 2);
        assert_eq!(m.resident(), 0);
    }

    #[test]
    fn an_index_entry_stays_small() {
        // A paged-out message costs one of these in memory (the README states the figure).
        assert!(
            std::mem::size_of::<Entry>() <= 56,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn a_paged_message_costs_24_bytes() {
        assert!(
            std::mem::size_of::<Paged>() <= 24,
            "{}",
            std::mem::size_of::<Paged>()
        );
    }

    fn at(offset: u32) -> Option<Location> {
        Some(Location {
            segment: 1,
            offset,
            len: 10,
        })
    }

    #[test]
    fn once_paging_starts_later_messages_follow_on_disk_in_order() {
        let mut m = Messages::default();
        m.push(Some(msg("a")), at(0), None, 0);
        // The budget ran out: "b" stays on disk only.
        m.push(None, at(10), None, 0);
        // Room again, but "c" must not overtake "b": it joins the tail too.
        m.push(Some(msg("c")), at(20), None, 0);
        // A transient message with no disk copy (page file failed) keeps its place as well.
        m.push(Some(msg("d")), None, None, 0);
        assert!(m.has_tail(0));
        assert_eq!(m.ready_len(), 4);
        let order: Vec<(u64, bool, Option<Location>)> = std::iter::from_fn(|| m.pop())
            .map(|e| (e.id, e.message.is_some(), e.location))
            .collect();
        assert_eq!(
            order,
            [
                (1, true, at(0)),
                (2, false, at(10)),
                (3, false, at(20)),
                (4, true, None)
            ]
        );
        assert_eq!(m.resident(), 0);
        assert!(!m.has_tail(0));
    }

    #[test]
    fn spill_moves_the_newest_to_disk_and_keeps_the_order() {
        let mut m = Messages::default();
        let one = {
            let w = msg("a");
            super::super::memory::weight(w.properties.len(), w.body.len())
        };
        // 1 and 3 have a copy in the store; 2, 4 and 5 are transient.
        m.push(Some(msg("a")), at(0), None, 0);
        m.push(Some(msg("b")), None, None, 0);
        m.push(Some(msg("c")), at(10), None, 0);
        m.push(Some(msg("d")), None, None, 0);
        m.push(Some(msg("e")), None, None, 0);
        assert_eq!((m.resident(), m.stored_resident()), (5 * one, 2 * one));
        // Give back the stored part past one message: everything from 3 on must go, 4 and 5
        // with it (they are behind 3), written in id order; 5 cannot be written.
        let mut written = Vec::new();
        let moved = m.spill(0, one, |id, _| {
            written.push(id);
            (id != 5).then(|| Location {
                segment: 9,
                offset: u32::try_from(id).unwrap_or(0),
                len: 1,
            })
        });
        assert_eq!(moved, 3);
        assert_eq!(written, [4, 5]);
        assert!(m.has_tail(0));
        assert_eq!(
            (m.resident(), m.stored_resident()),
            (3 * one, one),
            "1 and 2 stay, 5 is pinned"
        );
        assert_eq!(m.ready_len(), 5);
        // New messages queue behind the tail.
        m.push(Some(msg("f")), None, None, 0);
        let order: Vec<(u64, bool, Option<Location>, bool)> = std::iter::from_fn(|| m.pop())
            .map(|e| (e.id, e.message.is_some(), e.location, e.page.is_some()))
            .collect();
        assert_eq!(
            order,
            [
                (1, true, at(0), false),
                (2, true, None, false),
                (3, false, at(10), false),
                (4, false, None, true),
                (5, true, None, false),
                (6, true, None, false),
            ]
        );
        assert_eq!((m.resident(), m.stored_resident()), (0, 0));
        assert_eq!(m.ready_bytes(), 0);
    }

    #[test]
    fn spill_for_memory_takes_the_lowest_priority_first() {
        let mut m = Messages::with_priorities(Some(1));
        let one = {
            let w = msg("a");
            super::super::memory::weight(w.properties.len(), w.body.len())
        };
        m.push(Some(msg("hi")), None, None, 1);
        m.push(Some(msg("lo")), None, None, 0);
        let mut written = Vec::new();
        assert_eq!(
            m.spill(one, 0, |id, _| {
                written.push(id);
                at(0)
            }),
            1
        );
        assert_eq!(written, [2]);
        assert!(m.has_tail(0) && !m.has_tail(1));
        assert_eq!(
            m.spill(0, 0, |_, _| None),
            0,
            "nothing asked, nothing moved"
        );
    }

    #[test]
    fn paged_and_page_file_entries_keep_their_kind_and_redelivered_flag() {
        let mut m = Messages::default();
        m.push_recovered(Entry {
            id: 7,
            message: None,
            redelivered: true,
            location: at(5),
            page: None,
            size: 10,
            level: 0,
        });
        m.push(None, None, at(9), 0);
        let first = m.pop().unwrap();
        assert_eq!(
            (first.id, first.redelivered, first.location, first.page),
            (7, true, at(5), None)
        );
        let second = m.pop().unwrap();
        assert_eq!(
            (second.id, second.redelivered, second.location, second.page),
            (8, false, None, at(9))
        );
    }
}
