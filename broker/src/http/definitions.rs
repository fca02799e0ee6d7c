//! `GET /api/definitions` and `/api/definitions/{vhost}`: the metadata document the broker
//! persists (users, vhosts, permissions, policies, durable topology), whole or for one vhost.

use super::overview::RABBITMQ_COMPAT_VERSION;
use super::Reply;
use crate::server::BrokerShared;
use serde_json::{Map, Value};

/// The whole document: exactly what `<data-dir>/definitions.json` holds.
pub fn export(broker: &BrokerShared) -> Reply {
    let mut doc = broker.persistence.meta.document();
    doc.rabbitmq_version
        .get_or_insert_with(|| RABBITMQ_COMPAT_VERSION.to_string());
    match serde_json::to_value(&doc) {
        Ok(json) => Reply::ok(json),
        Err(e) => internal_error(&e),
    }
}

/// rabbitmq-compat: a vhost export holds only that vhost's parameters, policies, queues,
/// exchanges and bindings, each without its `vhost` key (so the file imports into any vhost),
/// and no users, vhosts or permissions.
pub fn export_vhost(broker: &BrokerShared, vhost: &str) -> Reply {
    let doc = broker.persistence.meta.document();
    let mut out = Map::new();
    out.insert(
        "rabbit_version".into(),
        Value::from(RABBITMQ_COMPAT_VERSION),
    );
    out.insert(
        "rabbitmq_version".into(),
        Value::from(RABBITMQ_COMPAT_VERSION),
    );
    out.insert("product_name".into(), Value::from("Warren"));
    out.insert(
        "product_version".into(),
        Value::from(env!("CARGO_PKG_VERSION")),
    );
    let sections = [
        ("parameters", in_vhost(&doc.parameters, vhost, |p| &p.vhost)),
        ("policies", in_vhost(&doc.policies, vhost, |p| &p.vhost)),
        ("queues", in_vhost(&doc.queues, vhost, |q| &q.vhost)),
        ("exchanges", in_vhost(&doc.exchanges, vhost, |x| &x.vhost)),
        ("bindings", in_vhost(&doc.bindings, vhost, |b| &b.vhost)),
    ];
    for (name, section) in sections {
        match section {
            Ok(items) => {
                out.insert(name.into(), Value::Array(items));
            }
            Err(e) => return internal_error(&e),
        }
    }
    Reply::ok(Value::Object(out))
}

/// The items of `vhost`, as JSON without their `vhost` key.
fn in_vhost<T: serde::Serialize>(
    items: &[T],
    vhost: &str,
    vhost_of: impl Fn(&T) -> &String,
) -> Result<Vec<Value>, serde_json::Error> {
    items
        .iter()
        .filter(|item| vhost_of(item) == vhost)
        .map(|item| {
            let mut json = serde_json::to_value(item)?;
            if let Value::Object(map) = &mut json {
                map.remove("vhost");
            }
            Ok(json)
        })
        .collect()
}

fn internal_error(e: &serde_json::Error) -> Reply {
    tracing::error!(error = %e, "cannot serialise the definitions document");
    Reply::json(
        hyper::StatusCode::INTERNAL_SERVER_ERROR,
        serde_json::json!({"error": "internal_error", "reason": e.to_string()}),
    )
}
