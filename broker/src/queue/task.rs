//! The queue task: drains its mailbox in batches, then hands ready messages to consumers
//! round-robin while they have credit.

use super::args::{Overflow, QueueArgs};
use super::consumer::ConsumerShared;
use super::dead_letter::{self, Reason};
use super::memory::{self, MemoryBudget};
use super::messages::{Entry, Messages};
use super::paging::Pager;
use super::storage::{recovered_entry, QueueStorage};
use super::{GetReply, QueueCmd, QueueRef, QueueShared, QueueStats};
use crate::connection::handle::{ConnHandle, ConnMsg, Delivery};
use crate::error::AmqpError;
use crate::vhost::VHost;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{debug, Instrument};

/// Mailbox size: how many commands may wait before publishers are made to wait.
const MAILBOX: usize = 8192;
/// Commands taken per wake-up.
const BATCH: usize = 512;

struct Consumer {
    shared: Arc<ConsumerShared>,
    conn: ConnHandle,
}

struct QueueTask {
    queue: QueueRef,
    vhost: Arc<VHost>,
    /// Effective settings: arguments with the policy applied.
    args: QueueArgs,
    messages: Messages,
    /// Round-robin order: the next consumer to try is at the front.
    consumers: VecDeque<Consumer>,
    had_consumer: bool,
    /// Consumers differ in `x-priority` (kept when consumers come and go, so that the
    /// common case of equal priorities costs nothing per delivery).
    mixed_priorities: bool,
    /// Durable queues that survive restarts write persistent messages here.
    storage: Option<QueueStorage>,
    budget: Arc<MemoryBudget>,
    /// Resident bytes last reported to the budget.
    reported: usize,
    /// Where messages without a store wait when the budget is spent.
    pager: Pager,
    /// Expiry deadlines (ms since the Unix epoch) of the messages that have one, by id:
    /// every message under a queue TTL, and those with an `expiration` property.
    deadlines: BTreeMap<u64, u64>,
    /// The time the current batch of commands started (ms since the Unix epoch).
    batch_now: u64,
    /// When the queue was last used (consume, get, redeclare, or its last consumer left):
    /// with `x-expires` and no consumers it is deleted that long after.
    last_used: tokio::time::Instant,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Drop for QueueTask {
    fn drop(&mut self) {
        // However the task ends, its messages no longer count against the budget, and its
        // page file (transient by nature) goes.
        self.budget.report(self.reported, 0);
        self.pager.destroy();
        // Publishers waiting for mailbox bytes learn the queue is gone.
        self.queue.large_bytes.close();
    }
}

/// A message's own TTL (`expiration`, milliseconds), checked on publish.
fn message_ttl(message: &crate::message::Message) -> Option<u64> {
    message.summary.expiration.as_ref()?.as_str().parse().ok()
}

/// Sleeps until `at`; forever without one.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline` (ms since the Unix epoch); forever without one.
async fn sleep_until_ms(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// What the unacked set keeps of a delivered message: stored ones are re-read from disk if
/// they are ever requeued, so their bodies need not stay in memory meanwhile.
fn unacked_copy(entry: &Entry) -> Entry {
    let mut copy = entry.clone();
    if copy.location.is_some() {
        copy.message = None;
    }
    copy
}

/// Creates the queue's shared description and starts its task. A stored queue starts with the
/// messages recovered from its store.
pub fn spawn(
    mut shared: impl FnMut(mpsc::Sender<QueueCmd>) -> QueueShared,
    args: QueueArgs,
    vhost: Arc<VHost>,
    storage: Option<(QueueStorage, Vec<crate::store::Recovered>)>,
    budget: Arc<MemoryBudget>,
    paging: Arc<dyn crate::store::Store>,
) -> QueueRef {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let queue = QueueRef(Arc::new(shared(tx)));
    let span = tracing::debug_span!("queue", name = %queue.name, vhost = %queue.vhost);
    let mut messages = Messages::with_priorities(args.max_priority);
    let storage = storage.map(|(storage, recovered)| {
        for r in recovered {
            let mut entry = recovered_entry(r);
            entry.level =
                messages.level_of(entry.message.as_ref().and_then(|m| m.summary.priority));
            messages.push_recovered(entry);
        }
        messages.number_from(storage.next_id());
        storage
    });
    let mut task = QueueTask {
        queue: queue.clone(),
        vhost,
        args,
        messages,
        consumers: VecDeque::new(),
        had_consumer: false,
        mixed_priorities: false,
        storage,
        budget,
        reported: 0,
        pager: Pager::new(paging, &queue.vhost, &queue.name),
        deadlines: BTreeMap::new(),
        batch_now: now_ms(),
        last_used: tokio::time::Instant::now(),
    };
    task.publish_settings();
    task.report_memory();
    tokio::spawn(task.run(rx).instrument(span));
    queue
}

enum Flow {
    Continue,
    Stop,
}

impl QueueTask {
    async fn run(mut self, mut rx: mpsc::Receiver<QueueCmd>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let wake = self.next_deadline();
            let expires_at = self.expires_at();
            let received = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => Some(n),
                _ = sleep_until_ms(wake), if wake.is_some() => None,
                _ = sleep_until_opt(expires_at), if expires_at.is_some() => {
                    debug!("queue expired (x-expires): deleting it");
                    self.expire_queue();
                    return;
                }
            };
            if received == Some(0) {
                break;
            }
            self.batch_now = now_ms();
            for cmd in batch.drain(..) {
                if let Flow::Stop = self.handle(cmd) {
                    debug!("queue stopped");
                    return;
                }
            }
            // Messages that expired before this batch are not delivered; those published in
            // it with a TTL of 0 may still go to a consumer ready now, and expire otherwise.
            self.expire(true);
            self.deliver();
            self.expire(false);
            self.spill();
            if let Some(storage) = &mut self.storage {
                storage.end_of_batch();
            }
            self.pager.end_of_batch();
            self.messages.shrink_if_drained();
            self.report_memory();
            if self.should_auto_delete() {
                debug!("auto-deleting queue after its last consumer went");
                self.vhost.forget_queue(&self.queue);
                self.cancel_all_consumers();
                return;
            }
        }
    }

    fn handle(&mut self, cmd: QueueCmd) -> Flow {
        match cmd {
            QueueCmd::Publish(message, guard) => {
                let permits = super::large_permits(&message);
                if permits > 0 {
                    self.queue.large_bytes.add_permits(permits as usize);
                }
                if self.args.overflow != Overflow::DropHead && self.full_for(&message) {
                    // rabbitmq-compat: reject-publish refuses the newest message (a confirming
                    // publisher gets basic.nack); reject-publish-dlx also dead-letters it.
                    if let Some(guard) = &guard {
                        guard.fail();
                    }
                    if self.args.overflow == Overflow::RejectPublishDlx {
                        let entry = Entry {
                            id: 0,
                            size: 0,
                            level: 0,
                            message: Some(message),
                            redelivered: false,
                            location: None,
                            page: None,
                        };
                        self.dead_letter(&[entry], Reason::Maxlen);
                    }
                    return Flow::Continue;
                }
                let ttl = match (self.args.message_ttl, message_ttl(&message)) {
                    (Some(q), Some(m)) => Some(q.min(m)),
                    (q, m) => q.or(m),
                };
                if let Some(ttl) = ttl {
                    let deadline = self.batch_now.saturating_add(ttl);
                    self.deadlines.insert(self.messages.next_id(), deadline);
                }
                let location = match &mut self.storage {
                    Some(storage) if message.persistent() => {
                        storage.append(self.messages.next_id(), &message, guard)
                    }
                    // Not stored: the guard (if any) is done as soon as it is enqueued.
                    _ => None,
                };
                // The message is kept in memory for now: a consumer with credit takes it in
                // this batch, and what is left past the memory budget or the read-ahead moves
                // to disk at the end of the batch (`spill`). But while a tail of paged
                // messages exists, newer ones must wait on disk behind it: in the queue's
                // store if it is stored there, else in the queue's page file.
                let level = self.messages.level_of(message.summary.priority);
                if !self.messages.has_tail(level) {
                    self.messages.push(Some(message), location, None, level);
                } else if location.is_some() {
                    self.messages.push(None, location, None, level);
                } else {
                    match self.pager.page_out(self.messages.next_id(), &message) {
                        Some(page) => self.messages.push(None, None, Some(page), level),
                        None => self.messages.push(Some(message), None, None, level),
                    }
                }
                self.drop_over_limit();
            }
            QueueCmd::Consume {
                consumer,
                conn,
                reply,
            } => {
                let result = self.add_consumer(consumer, conn);
                self.last_used = tokio::time::Instant::now();
                let _ = reply.send(result);
            }
            QueueCmd::Cancel { consumer } => {
                self.consumers
                    .retain(|c| !Arc::ptr_eq(&c.shared, &consumer));
                self.consumers_changed();
                self.last_used = tokio::time::Instant::now();
                // Deleted at once, not after the batch: a command queued behind the cancel
                // (say the same client's passive declare) must already find the queue gone.
                if self.should_auto_delete() {
                    debug!("auto-deleting queue after its last consumer was cancelled");
                    self.vhost.forget_queue(&self.queue);
                    self.cancel_all_consumers();
                    return Flow::Stop;
                }
            }
            QueueCmd::Ack(ids) => {
                self.forget_deadlines(&ids);
                let gone = self.messages.ack(&ids);
                if let Some(storage) = &mut self.storage {
                    storage.removed(&gone);
                }
            }
            QueueCmd::Discard(ids) => {
                self.forget_deadlines(&ids);
                let gone = self.messages.ack(&ids);
                self.dead_letter(&gone, Reason::Rejected);
                if let Some(storage) = &mut self.storage {
                    storage.removed(&gone);
                }
            }
            QueueCmd::Touch => self.last_used = tokio::time::Instant::now(),
            QueueCmd::Configure(args) => {
                self.args = *args;
                self.publish_settings();
                self.drop_over_limit();
            }
            QueueCmd::Requeue { ids, delivered } => self.messages.requeue(&ids, delivered),
            QueueCmd::Restore(mut entry) => {
                entry.level = self
                    .messages
                    .level_of(entry.message.as_ref().and_then(|m| m.summary.priority));
                self.messages.unpop(*entry);
            }
            QueueCmd::Get { no_ack, reply } => {
                self.last_used = tokio::time::Instant::now();
                self.get(no_ack, reply);
            }
            QueueCmd::Purge { reply } => {
                let purged = self.messages.purge();
                let ids: Vec<u64> = purged.iter().map(|e| e.id).collect();
                self.forget_deadlines(&ids);
                self.pager.discard(&purged);
                if let Some(storage) = &mut self.storage {
                    storage.removed(&purged);
                    // purge-ok promises the purge: its records reach the OS before the reply
                    // (not at the end of the batch), so a crash right after it cannot bring
                    // the purged messages back.
                    storage.end_of_batch();
                }
                let _ = reply.send(u32::try_from(purged.len()).unwrap_or(u32::MAX));
            }
            QueueCmd::Delete {
                if_unused,
                if_empty,
                reply,
            } => {
                if if_unused && !self.consumers.is_empty() {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format_args!(
                        "queue '{}' in vhost '{}' in use",
                        self.queue.name, self.queue.vhost
                    ))));
                    return Flow::Continue;
                }
                if if_empty && self.messages.ready_len() > 0 {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format_args!(
                        "queue '{}' in vhost '{}' not empty",
                        self.queue.name, self.queue.vhost
                    ))));
                    return Flow::Continue;
                }
                let n = self.messages.ready_len();
                self.cancel_all_consumers();
                if let Some(storage) = self.storage.take() {
                    storage.destroy();
                }
                self.pager.destroy();
                let _ = reply.send(Ok(u32::try_from(n).unwrap_or(u32::MAX)));
                return Flow::Stop;
            }
            QueueCmd::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            QueueCmd::Wake => {}
        }
        Flow::Continue
    }

    fn stats(&self) -> QueueStats {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        QueueStats {
            messages: count(self.messages.ready_len()),
            consumers: count(self.consumers.len()),
            unacked: count(self.messages.unacked_len()),
        }
    }

    fn add_consumer(
        &mut self,
        consumer: Arc<ConsumerShared>,
        conn: ConnHandle,
    ) -> Result<(), AmqpError> {
        let exclusive_in_use = self.consumers.iter().any(|c| c.shared.exclusive);
        if exclusive_in_use || (consumer.exclusive && !self.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format_args!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.queue.name, self.queue.vhost
            )));
        }
        self.had_consumer = true;
        self.consumers.push_back(Consumer {
            shared: consumer,
            conn,
        });
        self.consumers_changed();
        Ok(())
    }

    fn get(&mut self, no_ack: bool, reply: tokio::sync::oneshot::Sender<Option<GetReply>>) {
        self.expire(true);
        let Some((entry, message)) = self.pop_loaded() else {
            let _ = reply.send(None);
            return;
        };
        let remaining = u32::try_from(self.messages.ready_len()).unwrap_or(u32::MAX);
        let answer = GetReply {
            msg_id: entry.id,
            message,
            redelivered: entry.redelivered,
            remaining,
        };
        if let Some(storage) = &mut self.storage {
            if no_ack {
                storage.removed([&entry]);
            } else {
                storage.delivered(&entry);
            }
        }
        if no_ack {
            self.forget_deadlines(&[entry.id]);
        } else {
            self.messages.track_unacked(unacked_copy(&entry));
        }
        if reply.send(Some(answer)).is_err() {
            // The channel went away before it could take the message: put it back untouched.
            if !no_ack {
                self.messages.ack(&[entry.id]);
            }
            self.messages.unpop(entry);
        }
    }

    /// Hands ready messages to consumers while any has credit: round-robin among the
    /// consumers of the highest priority that have credit (RabbitMQ's consumer priorities);
    /// with single active consumer, only to the first registered one.
    fn deliver(&mut self) {
        while self.messages.has_ready() && !self.consumers.is_empty() {
            let Some(i) = self.next_consumer() else { break };
            let Some((entry, message)) = self.pop_loaded() else {
                // Nothing deliverable after all: give the credit back and stop.
                self.consumers[i].shared.untake_credit();
                break;
            };
            let Some(consumer) = self.consumers.remove(i) else {
                break;
            };
            if self.send_delivery(&consumer, entry, message) {
                if self.args.single_active_consumer {
                    // The active consumer keeps its place at the front.
                    self.consumers.push_front(consumer);
                } else {
                    // Rotate: this consumer goes to the back, those it skipped keep their turn.
                    self.consumers.push_back(consumer);
                }
            } else {
                self.consumers_changed();
            }
        }
    }

    fn consumers_changed(&mut self) {
        let first = self.consumers.front().map(|c| c.shared.priority);
        self.mixed_priorities = self
            .consumers
            .iter()
            .any(|c| Some(c.shared.priority) != first);
    }

    /// The consumer to deliver to next, with its credit taken; None if none can take one.
    fn next_consumer(&mut self) -> Option<usize> {
        if self.args.single_active_consumer {
            return self
                .consumers
                .front()
                .is_some_and(|c| c.shared.try_take_credit())
                .then_some(0);
        }
        if !self.mixed_priorities {
            return (0..self.consumers.len()).find(|&i| self.consumers[i].shared.try_take_credit());
        }
        let mut priorities: Vec<i32> = self.consumers.iter().map(|c| c.shared.priority).collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();
        for p in priorities {
            let found = (0..self.consumers.len()).find(|&i| {
                self.consumers[i].shared.priority == p && self.consumers[i].shared.try_take_credit()
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The oldest ready message, read back from the store if it was paged out. A record that
    /// cannot be read is logged and dropped (the next one is tried).
    fn pop_loaded(&mut self) -> Option<(Entry, Arc<crate::message::Message>)> {
        loop {
            let mut entry = self.messages.pop()?;
            if let Some(message) = &entry.message {
                let message = message.clone();
                return Some((entry, message));
            }
            if let Some(page) = entry.page.take() {
                match self.pager.page_in(entry.id, page) {
                    Ok(message) => {
                        entry.message = Some(message.clone());
                        return Some((entry, message));
                    }
                    Err(e) => {
                        tracing::error!(id = entry.id, error = %e, "cannot read a paged-out message; dropping it");
                        continue;
                    }
                }
            }
            let (Some(storage), Some(location)) = (&mut self.storage, entry.location) else {
                continue;
            };
            match storage.read(entry.id, location) {
                Ok(message) => {
                    entry.message = Some(message.clone());
                    return Some((entry, message));
                }
                Err(e) => {
                    tracing::error!(id = entry.id, error = %e, "cannot read a paged-out message; dropping it");
                    storage.removed([&entry]);
                }
            }
        }
    }

    /// Returns false when the consumer's connection is gone (the consumer is dropped).
    fn send_delivery(
        &mut self,
        consumer: &Consumer,
        entry: Entry,
        message: Arc<crate::message::Message>,
    ) -> bool {
        let shared = &consumer.shared;
        shared.record_delivery();
        if let Some(storage) = &mut self.storage {
            // A no-ack delivery consumes the message. (Should it never reach the client, it
            // comes back to the queue in memory only: the rare price of not waiting for the
            // socket write before forgetting it on disk.)
            if shared.no_ack {
                storage.removed([&entry]);
            } else {
                storage.delivered(&entry);
            }
        }
        if shared.no_ack {
            if !self.deadlines.is_empty() {
                self.deadlines.remove(&entry.id);
            }
        } else {
            self.messages.track_unacked(unacked_copy(&entry));
        }
        let delivery = Delivery {
            consumer: shared.clone(),
            queue: self.queue.clone(),
            msg_id: entry.id,
            message,
            redelivered: entry.redelivered,
        };
        if consumer.conn.send(ConnMsg::Deliver(delivery)).is_ok() {
            return true;
        }
        // The connection task has ended; undo and requeue without the redelivered mark.
        if !shared.no_ack {
            self.messages.requeue(&[entry.id], false);
            shared.settle();
        } else {
            self.messages.unpop(entry);
        }
        false
    }

    /// Shares the settings channels read without asking the queue.
    fn publish_settings(&self) {
        use std::sync::atomic::Ordering;
        self.queue
            .rejects_publish
            .store(self.args.overflow != Overflow::DropHead, Ordering::Relaxed);
        self.queue
            .consumer_timeout_ms
            .store(self.args.consumer_timeout.unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether one more message like `message` would exceed the length limits.
    fn full_for(&self, message: &crate::message::Message) -> bool {
        let len = self.messages.ready_len() as u64;
        let bytes = self.messages.ready_bytes() + message.body.len() as u64;
        self.args.max_length.is_some_and(|max| len >= max)
            || self.args.max_length_bytes.is_some_and(|max| bytes > max)
    }

    /// rabbitmq-compat (overflow `drop-head`): while the queue is over `x-max-length` or
    /// `x-max-length-bytes`, its oldest ready messages are dropped, or dead-lettered with
    /// reason `maxlen`. Only ready messages count, as in RabbitMQ.
    fn drop_over_limit(&mut self) {
        let over = |m: &Messages, args: &QueueArgs| {
            args.max_length
                .is_some_and(|max| m.ready_len() as u64 > max)
                || args
                    .max_length_bytes
                    .is_some_and(|max| m.ready_bytes() > max)
        };
        let mut dropped = Vec::new();
        while over(&self.messages, &self.args) {
            let Some(entry) = self.messages.pop() else {
                break;
            };
            dropped.push(entry);
        }
        if dropped.is_empty() {
            return;
        }
        let ids: Vec<u64> = dropped.iter().map(|e| e.id).collect();
        self.forget_deadlines(&ids);
        self.dead_letter(&dropped, Reason::Maxlen);
        self.pager.discard(&dropped);
        if let Some(storage) = &mut self.storage {
            storage.removed(&dropped);
        }
    }

    /// When an unused queue with `x-expires` is deleted (None: it has consumers, or no expiry).
    fn expires_at(&self) -> Option<tokio::time::Instant> {
        let ms = self.args.expires?;
        if !self.consumers.is_empty() {
            return None;
        }
        Some(self.last_used + std::time::Duration::from_millis(ms))
    }

    /// rabbitmq-compat (`x-expires`): the queue has gone unused for its expiry period; it is
    /// deleted with its messages, as if by queue.delete, and the deletion is written to the
    /// metadata (durable queues).
    fn expire_queue(&mut self) {
        self.vhost.forget_queue(&self.queue);
        if let Some(storage) = self.storage.take() {
            storage.destroy();
        }
        self.pager.destroy();
        let vhost = self.vhost.clone();
        tokio::spawn(async move {
            let _ = vhost.sync_metadata().await;
        });
    }

    /// Settled messages need no expiry any more.
    fn forget_deadlines(&mut self, ids: &[u64]) {
        if !self.deadlines.is_empty() {
            for id in ids {
                self.deadlines.remove(id);
            }
        }
    }

    /// The expiry deadline of the message at the head, if it has one.
    fn next_deadline(&self) -> Option<u64> {
        if self.deadlines.is_empty() {
            return None;
        }
        self.deadlines.get(&self.messages.head_id()?).copied()
    }

    /// Drops (or dead-letters, reason `expired`) expired messages from the head of the queue.
    /// `before_delivery`: only those that expired before the current batch started.
    /// rabbitmq-compat: expiry is checked at the head. Under a queue TTL every message has a
    /// deadline and they come in order, so messages expire on time whether or not anyone
    /// consumes; a per-message TTL shorter than that of a message ahead of it takes effect
    /// when the message reaches the head, as in RabbitMQ.
    fn expire(&mut self, before_delivery: bool) {
        if self.deadlines.is_empty() {
            return;
        }
        let now = if before_delivery {
            self.batch_now
        } else {
            now_ms()
        };
        let mut expired = Vec::new();
        while let Some(id) = self.messages.head_id() {
            let Some(&deadline) = self.deadlines.get(&id) else {
                break;
            };
            let due = if before_delivery {
                deadline < now
            } else {
                deadline <= now
            };
            if !due {
                break;
            }
            let Some(entry) = self.messages.pop() else {
                break;
            };
            self.deadlines.remove(&id);
            expired.push(entry);
        }
        if expired.is_empty() {
            return;
        }
        self.dead_letter(&expired, Reason::Expired);
        self.pager.discard(&expired);
        if let Some(storage) = &mut self.storage {
            storage.removed(&expired);
        }
    }

    /// Republishes `entries` to the queue's dead-letter exchange (if it has one and it
    /// exists), marked with `reason`. rabbitmq-compat: a message whose `x-death` history shows
    /// it already died in a target queue with no rejection along the way is not delivered
    /// there again (a dead-letter cycle), and dead-lettering is at most once, as for
    /// RabbitMQ's classic queues. Call before the entries leave the store (stored messages
    /// not in memory are read back from it).
    fn dead_letter(&mut self, entries: &[Entry], reason: Reason) {
        let Some(dlx) = self.args.dead_letter_exchange.clone() else {
            return;
        };
        let topology = self.vhost.topology();
        let Some(exchange) = topology.exchanges.get(&dlx) else {
            tracing::debug!(exchange = %dlx, "dead-letter exchange missing; message dropped");
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut routing = crate::vhost::Routing::default();
        for entry in entries {
            let message = match (&entry.message, &mut self.storage, entry.location) {
                (Some(m), _, _) => m.clone(),
                (None, _, _) if entry.page.is_some() => {
                    let Some(page) = entry.page else { continue };
                    match self.pager.page_in(entry.id, page) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(id = entry.id, error = %e, "cannot read a message to dead-letter it");
                            continue;
                        }
                    }
                }
                (None, Some(storage), Some(location)) => match storage.read(entry.id, location) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(id = entry.id, error = %e, "cannot read a message to dead-letter it");
                        continue;
                    }
                },
                _ => continue,
            };
            let key = self
                .args
                .dead_letter_routing_key
                .clone()
                .unwrap_or_else(|| message.routing_key.as_str().to_string());
            let Some(marked) =
                dead_letter::mark(&message, &self.queue.name, reason, &dlx, &key, now)
            else {
                continue;
            };
            let headers = marked.headers();
            topology.route(exchange, &key, headers.as_ref(), &mut routing);
            for q in routing.queues.drain(..) {
                if !dead_letter::is_cycle(headers.as_ref(), &q.name) {
                    q.publish_detached(marked.clone());
                }
            }
        }
    }

    /// End of a batch: what is still ready moves to disk (newest first) past the memory budget
    /// (only what this batch added beyond what the queue last reported: the queue does not
    /// pay for others) and past the read-ahead of bodies that are on disk already.
    fn spill(&mut self) {
        let growth = self.messages.resident().saturating_sub(self.reported);
        let over = self.budget.excess(growth).min(growth);
        let stored_over = self
            .messages
            .stored_resident()
            .saturating_sub(memory::STORED_READ_AHEAD);
        if over == 0 && stored_over == 0 {
            return;
        }
        let pager = &mut self.pager;
        let moved = self
            .messages
            .spill(over, stored_over, |id, message| pager.page_out(id, message));
        tracing::trace!(moved, over, stored_over, "moved ready messages to disk");
    }

    /// Tells the broker-wide budget how much message data this queue now holds in memory.
    fn report_memory(&mut self) {
        let resident = self.messages.resident();
        self.budget.report(self.reported, resident);
        self.reported = resident;
    }

    fn should_auto_delete(&self) -> bool {
        self.queue.auto_delete && self.had_consumer && self.consumers.is_empty()
    }

    fn cancel_all_consumers(&mut self) {
        for c in self.consumers.drain(..) {
            let _ = c
                .conn
                .send(ConnMsg::ConsumerCancelled { consumer: c.shared });
        }
    }
}
