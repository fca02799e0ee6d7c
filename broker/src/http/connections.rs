//! `GET /api/connections[/{name}]`: the open AMQP connections in RabbitMQ's shape. Users
//! without `monitoring` see their own connections only.

use super::overview::node_name;
use super::{Reply, Viewer};
use crate::connection::registry::ConnectionInfo;
use crate::defs::table_to_json;
use crate::server::BrokerShared;
use serde_json::{json, Value};

pub fn list(broker: &BrokerShared, viewer: &Viewer) -> Reply {
    let node = node_name();
    let out = broker
        .connections
        .list()
        .iter()
        .filter(|c| visible(viewer, c))
        .map(|c| connection_json(c, &node))
        .collect();
    Reply::ok(Value::Array(out))
}

pub fn one(broker: &BrokerShared, viewer: &Viewer, name: &str) -> Reply {
    match broker.connections.find(name) {
        Some(c) if visible(viewer, &c) => Reply::ok(connection_json(&c, &node_name())),
        _ => Reply::not_found(),
    }
}

fn visible(viewer: &Viewer, c: &ConnectionInfo) -> bool {
    viewer.is_monitor() || c.user == viewer.name()
}

pub(super) fn connection_json(c: &ConnectionInfo, node: &str) -> Value {
    json!({
        "name": c.name(),
        "node": node,
        "vhost": c.vhost,
        "user": c.user,
        "state": "running",
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": c.auth_mechanism,
        "ssl": false,
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "channels": c.channel_count(),
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat_secs,
        "connected_at": c.connected_at,
        "client_properties": table_to_json(&c.client_properties.table()),
    })
}
