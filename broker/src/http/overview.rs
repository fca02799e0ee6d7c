//! `GET /api/overview`: who the broker is and how many objects it holds.

use super::topology::visible_vhosts;
use super::{Reply, Viewer};
use crate::queue::QueueCmd;
use crate::server::BrokerShared;
use serde_json::json;

/// The RabbitMQ release whose management API shapes Warren follows. Tools that branch on the
/// version (rabbitmqadmin, client libraries) see a release they know; `product_name` and
/// `product_version` say it is Warren.
pub const RABBITMQ_COMPAT_VERSION: &str = "3.13.0";

/// This node's name, RabbitMQ-style (`warren@<hostname>`).
pub fn node_name() -> String {
    let uname = rustix::system::uname();
    format!("warren@{}", uname.nodename().to_string_lossy())
}

/// rabbitmq-compat: the overview's identity fields and `object_totals` (connections and
/// channels as the user may list them); queue message totals and consumers come from one
/// Stats round trip per queue.
pub async fn overview(broker: &BrokerShared, viewer: &Viewer) -> Reply {
    let (mut exchanges, mut queues, mut consumers) = (0u64, 0u64, 0u64);
    let (mut ready, mut unacked) = (0u64, 0u64);
    for vhost in visible_vhosts(broker, viewer, None) {
        let topology = vhost.topology();
        exchanges += topology.exchanges.len() as u64;
        for q in topology.queues.values() {
            if let Ok(stats) = q.request(|reply| QueueCmd::Stats { reply }).await {
                queues += 1;
                consumers += u64::from(stats.consumers);
                ready += u64::from(stats.messages);
                unacked += u64::from(stats.unacked);
            }
        }
    }
    let (mut connections, mut channels) = (0usize, 0usize);
    for c in broker.connections.list() {
        if viewer.is_monitor() || c.user == viewer.name() {
            connections += 1;
            channels += c.channel_count();
        }
    }
    let node = node_name();
    let exchange_types: Vec<_> = crate::definitions_boot::EXCHANGE_TYPES
        .iter()
        .map(|name| json!({"name": name, "enabled": true}))
        .collect();
    Reply::ok(json!({
        "management_version": RABBITMQ_COMPAT_VERSION,
        "rabbitmq_version": RABBITMQ_COMPAT_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "cluster_name": node,
        "node": node,
        "rates_mode": "none",
        "exchange_types": exchange_types,
        "object_totals": {
            "connections": connections,
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "queue_totals": {
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
        },
    }))
}
