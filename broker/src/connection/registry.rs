//! The broker's open connections, for the management API (listing, closing) and for closing
//! the connections of a deleted user or vhost. A connection registers once it is open (its
//! user and vhost known) and unregisters when it ends; nothing on the message path reads it.

use super::handle::{ConnHandle, ConnMsg};
use crate::error::{AmqpError, ReplyCode};
use amq_protocol::frame::WriteContext;
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the broker tells about one open connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub auth_mechanism: String,
    pub client_properties: ClientProperties,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    pub heartbeat_secs: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Open channels, kept current by the connection task.
    pub channels: AtomicUsize,
    pub(super) handle: ConnHandle,
}

impl ConnectionInfo {
    /// rabbitmq-compat: a connection's name is "peer -> local", e.g.
    /// `127.0.0.1:50000 -> 127.0.0.1:5672`.
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    /// Asks the connection to close with 320 CONNECTION_FORCED and `reason` (RabbitMQ's
    /// wording: "CONNECTION_FORCED - <reason>").
    pub fn force_close(&self, reason: &str) {
        let e = AmqpError::new(ReplyCode::ConnectionForced, reason);
        // A connection already gone has nothing to close.
        let _ = self.handle.send(ConnMsg::Close(e));
    }
}

/// The client properties from start-ok, kept encoded as they came on the wire: only the
/// management API reads them, and a parsed table (map nodes, a string per key and value) took
/// about 1.5 KiB of every connection where the encoded one takes a few hundred bytes.
#[derive(Debug)]
pub struct ClientProperties(Box<[u8]>);

impl ClientProperties {
    pub fn new(table: &FieldTable) -> Self {
        match gen_field_table(table)(WriteContext::from(Vec::new())) {
            Ok(ctx) => ClientProperties(ctx.write.into_boxed_slice()),
            // A table that was just parsed encodes; should it not, the API shows an empty one.
            Err(_) => ClientProperties(Box::default()),
        }
    }

    pub fn table(&self) -> FieldTable {
        parse_field_table(&self.0[..])
            .map(|(_, table)| table)
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub struct Connections {
    /// A std mutex: held only to insert, remove or copy out entries.
    map: Mutex<HashMap<u64, Arc<ConnectionInfo>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionInfo>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn register(&self, info: Arc<ConnectionInfo>) {
        self.lock().insert(info.id, info);
    }

    pub(super) fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The open connections, oldest first.
    pub fn list(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn find(&self, name: &str) -> Option<Arc<ConnectionInfo>> {
        self.list().into_iter().find(|c| c.name() == name)
    }

    /// Closes every connection `select` picks with 320 and `reason`; returns how many.
    pub fn close_where(&self, select: impl Fn(&ConnectionInfo) -> bool, reason: &str) -> usize {
        let chosen: Vec<_> = self.list().into_iter().filter(|c| select(c)).collect();
        for c in &chosen {
            c.force_close(reason);
        }
        chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, LongString};

    #[test]
    fn client_properties_read_back_as_sent() {
        let mut caps = FieldTable::default();
        caps.insert("publisher_confirms".into(), AMQPValue::Boolean(true));
        let mut props = FieldTable::default();
        props.insert(
            "product".into(),
            AMQPValue::LongString(LongString::from("Pika Python Client Library")),
        );
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let kept = ClientProperties::new(&props);
        assert_eq!(kept.table(), props);
        assert_eq!(
            ClientProperties::new(&FieldTable::default()).table(),
            FieldTable::default()
        );
    }
}
