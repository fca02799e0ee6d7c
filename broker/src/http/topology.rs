//! `GET /api/queues`, `/api/exchanges`, `/api/bindings` (each optionally `/{vhost}`): the
//! live topology snapshots of the vhosts the user sees, in RabbitMQ's JSON shapes.

use super::{overview::node_name, Reply, Viewer};
use crate::defs::table_to_json;
use crate::policy::{CompiledPolicy, Target};
use crate::queue::{QueueCmd, QueueRef};
use crate::server::BrokerShared;
use crate::vhost::{Destination, VHost};
use amq_protocol::types::FieldTable;
use serde_json::{json, Value};
use std::sync::Arc;

/// The vhosts a listing covers, by name: `only` or all that `viewer` sees.
pub(super) fn visible_vhosts(
    broker: &BrokerShared,
    viewer: &Viewer,
    only: Option<&str>,
) -> Vec<Arc<VHost>> {
    broker
        .vhost_list()
        .into_iter()
        .filter(|v| only.is_none_or(|name| v.name == name) && viewer.sees(&v.name))
        .collect()
}

/// Queues sorted by vhost and name, with their message and consumer counts (one Stats round
/// trip to each queue task).
pub async fn queues(broker: &BrokerShared, viewer: &Viewer, only: Option<&str>) -> Reply {
    let mut out = Vec::new();
    for vhost in visible_vhosts(broker, viewer, only) {
        let mut queues: Vec<QueueRef> = vhost.topology().queues.values().cloned().collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let policies = vhost.policies();
        for q in queues {
            // A queue deleted since the snapshot is left out.
            if let Some(json) = queue_with_stats(&q, &policies).await {
                out.push(json);
            }
        }
    }
    Reply::ok(Value::Array(out))
}

/// rabbitmq-compat: `policy` names the policy in effect (absent without one) and
/// `effective_policy_definition` is its definition (`{}` without one).
fn add_policy(map: &mut serde_json::Map<String, Value>, policy: Option<&CompiledPolicy>) {
    if let Some(p) = policy {
        map.insert("policy".into(), json!(p.name));
    }
    let definition = policy.map_or_else(serde_json::Map::new, |p| p.definition.clone());
    map.insert(
        "effective_policy_definition".into(),
        Value::Object(definition),
    );
}

/// One queue (`GET /api/queues/{vhost}/{name}`).
pub async fn queue(broker: &BrokerShared, vhost: &str, name: &str) -> Reply {
    let Some(v) = broker.vhost(vhost) else {
        return Reply::not_found();
    };
    let Some(q) = v.topology().queues.get(name).cloned() else {
        return Reply::not_found();
    };
    match queue_with_stats(&q, &v.policies()).await {
        Some(json) => Reply::ok(json),
        None => Reply::not_found(),
    }
}

/// A queue's JSON with its counts and policy; None if it has stopped.
async fn queue_with_stats(q: &QueueRef, policies: &crate::policy::PolicySet) -> Option<Value> {
    let stats = q.request(|reply| QueueCmd::Stats { reply }).await.ok()?;
    let mut json = queue_json(q);
    if let Value::Object(map) = &mut json {
        add_policy(map, policies.effective(Target::Queue, &q.name));
        let ready = u64::from(stats.messages);
        let unacked = u64::from(stats.unacked);
        map.insert("messages".into(), json!(ready + unacked));
        map.insert("messages_ready".into(), json!(ready));
        map.insert("messages_unacknowledged".into(), json!(unacked));
        map.insert("consumers".into(), json!(stats.consumers));
    }
    Some(json)
}

fn queue_json(q: &QueueRef) -> Value {
    json!({
        "name": q.name,
        "vhost": q.vhost,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.is_exclusive(),
        "arguments": table_to_json(&q.arguments),
        "type": "classic",
        "state": "running",
        "node": node_name(),
    })
}

/// Exchanges sorted by vhost and name, the predeclared ones included ("" is the default).
pub fn exchanges(broker: &BrokerShared, viewer: &Viewer, only: Option<&str>) -> Reply {
    let mut out = Vec::new();
    for vhost in visible_vhosts(broker, viewer, only) {
        let topology = vhost.topology();
        let mut exchanges: Vec<_> = topology.exchanges.values().collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        let policies = vhost.policies();
        out.extend(exchanges.into_iter().map(|x| {
            let mut json = json!({
                "name": x.name,
                "vhost": vhost.name,
                "type": x.type_name(),
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": table_to_json(&x.arguments),
            });
            if let Value::Object(map) = &mut json {
                // rabbitmq-compat: the default exchange takes no policy.
                let policy = (!x.name.is_empty())
                    .then(|| policies.effective(Target::Exchange, &x.name))
                    .flatten();
                add_policy(map, policy);
                if let Some(delayed) = &x.delayed {
                    // The plugin's exchange info item.
                    map.insert("messages_delayed".into(), delayed.messages_delayed().into());
                }
            }
            json
        }));
    }
    Reply::ok(Value::Array(out))
}

/// Bindings per vhost: rabbitmq-compat: first the default exchange's implicit binding of
/// every queue (source "", routing key = queue name), then the declared ones by source.
pub fn bindings(broker: &BrokerShared, viewer: &Viewer, only: Option<&str>) -> Reply {
    let mut out = Vec::new();
    for vhost in visible_vhosts(broker, viewer, only) {
        let topology = vhost.topology();
        let mut queues: Vec<&QueueRef> = topology.queues.values().collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let empty = FieldTable::default();
        for q in queues {
            let dest = Destination::Queue(q.clone());
            out.push(binding_json(&vhost.name, "", &dest, &q.name, &empty));
        }
        let mut exchanges: Vec<_> = topology
            .exchanges
            .values()
            .filter(|x| !x.name.is_empty())
            .collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for x in exchanges {
            let mut declared: Vec<_> = x.bindings.iter().collect();
            declared.sort_by(|a, b| {
                (a.0.type_name(), a.0.name(), a.1).cmp(&(b.0.type_name(), b.0.name(), b.1))
            });
            for (dest, routing_key, arguments) in declared {
                out.push(binding_json(
                    &vhost.name,
                    &x.name,
                    dest,
                    routing_key,
                    arguments,
                ));
            }
        }
    }
    Reply::ok(Value::Array(out))
}

fn binding_json(
    vhost: &str,
    source: &str,
    destination: &Destination,
    routing_key: &str,
    arguments: &FieldTable,
) -> Value {
    let mut json = json!({
        "source": source,
        "vhost": vhost,
        "destination": destination.name(),
        "destination_type": destination.type_name(),
        "routing_key": routing_key,
        "arguments": table_to_json(arguments),
    });
    // rabbitmq-compat: `properties_key` identifies a binding in URLs: "~" for an empty routing
    // key, else the routing key itself when there are no arguments. With arguments RabbitMQ
    // appends a hash of the Erlang term, which Warren does not reproduce; it is left out.
    if arguments.inner().is_empty() {
        if let Value::Object(map) = &mut json {
            let key = if routing_key.is_empty() {
                "~".to_string()
            } else {
                routing_key.to_string()
            };
            map.insert("properties_key".into(), Value::String(key));
        }
    }
    json
}
