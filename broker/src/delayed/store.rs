//! A durable delayed exchange's messages on disk: the segment-file store that durable queues
//! use (`store::segment`), opened from its own root (`<data_dir>/delayed/`) so that its
//! directories can never be taken for a queue's, and keyed by (vhost, exchange name).
//!
//! Each record is an ordinary message record whose properties field is prefixed with the due
//! time (8 bytes, big-endian milliseconds since the Unix epoch): the due time is what recovery
//! needs and no queue record has a place for it. The rest is the message as it will be
//! delivered (its `x-delay` already negated).

use crate::alarm::DiskAlarm;
use crate::channel::confirm::ConfirmGuard;
use crate::connection::frame::ShortStr;
use crate::connection::properties::walk_basic_properties;
use crate::message::Message;
use crate::store::sync::{SyncJob, Syncer};
use crate::store::{Location, MessageRef, QueueStore, Recovered, StoredMessage};
use bytes::Bytes;
use std::sync::Arc;

/// Bytes of the due time in front of the properties.
const DUE_BYTES: usize = 8;

/// A recovered delayed message: when it is due, and where its record is.
pub struct RecoveredDelayed {
    pub due_ms: u64,
    pub message: Arc<Message>,
    pub id: u64,
    pub location: Location,
}

pub struct DelayedStore {
    store: Box<dyn QueueStore>,
    syncer: Syncer,
    alarm: Arc<DiskAlarm>,
    next_id: u64,
    /// Scratch buffer for the due-time prefix plus properties.
    scratch: Vec<u8>,
}

impl DelayedStore {
    pub fn new(store: Box<dyn QueueStore>, syncer: Syncer, alarm: Arc<DiskAlarm>) -> Self {
        let next_id = store.next_id();
        DelayedStore {
            store,
            syncer,
            alarm,
            next_id,
            scratch: Vec::new(),
        }
    }

    /// Writes the message and hands the write to the group-commit thread, which drops `guard`
    /// (the publisher's confirm) once it is on disk. `None` if the write failed: the guard is
    /// failed (the publisher gets a nack) and the message is held in memory only.
    pub fn append(
        &mut self,
        due_ms: u64,
        message: &Message,
        guard: Option<ConfirmGuard>,
    ) -> Option<(u64, Location)> {
        let id = self.next_id;
        self.scratch.clear();
        self.scratch.extend_from_slice(&due_ms.to_be_bytes());
        self.scratch.extend_from_slice(&message.properties);
        let record = MessageRef {
            exchange: message.exchange.as_str(),
            routing_key: message.routing_key.as_str(),
            properties: &self.scratch,
            body: &message.body,
        };
        let written = self
            .store
            .append(id, record)
            .and_then(|location| self.store.flush().map(|()| location));
        match written {
            Ok(location) => {
                self.next_id += 1;
                self.syncer.submit(SyncJob {
                    files: self.store.sync_files(),
                    guards: guard.into_iter().collect(),
                });
                Some((id, location))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a delayed message");
                if e.kind() == std::io::ErrorKind::StorageFull
                    || e.kind() == std::io::ErrorKind::QuotaExceeded
                {
                    self.alarm.write_failed();
                }
                if let Some(g) = guard {
                    g.fail();
                }
                None
            }
        }
    }

    /// Records that messages were routed (or dropped): their records may go.
    pub fn remove(&mut self, gone: &[(u64, Location)]) {
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.store.remove(gone).and_then(|()| self.store.flush()) {
            tracing::warn!(error = %e, "cannot record routed delayed messages");
        }
    }

    /// The exchange was deleted: its files go too.
    pub fn destroy(self) {
        if let Err(e) = self.store.destroy() {
            tracing::warn!(error = %e, "cannot remove the deleted delayed exchange's files");
        }
    }

    /// Turns what recovery found back into delayed messages (a record without its body in
    /// memory is read back). Records that cannot be read or decoded are dropped, and logged.
    pub fn recover(&mut self, recovered: Vec<Recovered>) -> Vec<RecoveredDelayed> {
        let mut out = Vec::with_capacity(recovered.len());
        let mut unreadable = Vec::new();
        for r in recovered {
            let stored = match r.message {
                Some(m) => Ok(*m),
                None => self.store.read(r.id, r.location),
            };
            match stored.ok().and_then(decode) {
                Some((due_ms, message)) => out.push(RecoveredDelayed {
                    due_ms,
                    message: Arc::new(message),
                    id: r.id,
                    location: r.location,
                }),
                None => {
                    tracing::warn!(id = r.id, "dropping an unreadable delayed message record");
                    unreadable.push((r.id, r.location));
                }
            }
        }
        self.remove(&unreadable);
        out
    }
}

/// A stored record as (due time, message); `None` if it is not one of ours.
fn decode(m: StoredMessage) -> Option<(u64, Message)> {
    let due: [u8; DUE_BYTES] = m.properties.get(..DUE_BYTES)?.try_into().ok()?;
    let properties: Bytes = m.properties.slice(DUE_BYTES..);
    let summary = walk_basic_properties(&properties).ok()?;
    Some((
        u64::from_be_bytes(due),
        Message {
            exchange: ShortStr::from_string(m.exchange)?,
            routing_key: ShortStr::from_string(m.routing_key)?,
            properties,
            summary,
            body: m.body,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::SegmentStore;
    use crate::store::Store;

    fn message(key: &str, body: &'static [u8]) -> Message {
        let properties = Bytes::from_static(&[0x10, 0x00, 0x02]); // delivery-mode 2
        Message {
            exchange: ShortStr::from_string("dx".to_string()).unwrap(),
            routing_key: ShortStr::from_string(key.to_string()).unwrap(),
            summary: walk_basic_properties(&properties).unwrap(),
            properties,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn messages_come_back_with_their_due_time_minus_the_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let segments = SegmentStore::new(dir.path()).unwrap();
        let alarm = Arc::new(DiskAlarm::new(dir.path().to_path_buf(), 0));
        let syncer = Syncer::start().unwrap();
        let (queue_store, recovered, _) = segments.open_queue("/", "dx", usize::MAX).unwrap();
        assert!(recovered.is_empty());
        let mut store = DelayedStore::new(queue_store, syncer.clone(), alarm.clone());
        let first = store.append(1_000, &message("a", b"one"), None).unwrap();
        store.append(500, &message("b", b"two"), None).unwrap();
        store.remove(&[first]);
        drop(store);

        let (queue_store, recovered, issues) = segments.open_queue("/", "dx", 0).unwrap();
        assert!(issues.is_empty());
        let mut store = DelayedStore::new(queue_store, syncer, alarm);
        let back = store.recover(recovered);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].due_ms, 500);
        assert_eq!(back[0].message.routing_key.as_str(), "b");
        assert_eq!(&back[0].message.body[..], b"two");
        assert!(back[0].message.persistent());
        store.destroy();
    }
}
