//! Queues, exchanges and bindings through the management API, as rabbitmqadmin and
//! Terraform's provider use them: `PUT`/`DELETE /api/queues/{vhost}/{name}` (and
//! `DELETE …/contents` to purge), `PUT`/`DELETE /api/exchanges/{vhost}/{name}`,
//! `POST /api/bindings/{vhost}/e/{source}/{q|e}/{destination}` and `DELETE` of one binding
//! by its properties key. They are the same operations as the AMQP methods, with the same
//! permission checks (the user's configure/write/read patterns in the vhost) and the same
//! errors, answered as 400/404 with the AMQP reply text.

use super::{Reply, Viewer};
use crate::access::{Perm, Resource};
use crate::defs::json_to_table;
use crate::error::{AmqpError, ReplyCode};
use crate::queue::QueueCmd;
use crate::server::BrokerShared;
use crate::vhost::{ExchangeDeclare, QueueDeclare, VHost};
use amq_protocol::types::FieldTable;
use hyper::StatusCode;
use serde_json::Value;
use std::sync::Arc;

/// What a binding route names.
pub struct BindingPath {
    pub vhost: String,
    pub source: String,
    /// `q` or `e`.
    pub to_exchange: bool,
    pub destination: String,
}

/// An AMQP error as the management plugin answers it: 404 for NOT_FOUND, 401 for
/// ACCESS_REFUSED, 400 for the rest (reason: the reply text).
fn amqp_reply(e: &AmqpError) -> Reply {
    let status = match e.code {
        ReplyCode::NotFound => StatusCode::NOT_FOUND,
        ReplyCode::AccessRefused => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let error = if status == StatusCode::UNAUTHORIZED {
        "not_authorised"
    } else if status == StatusCode::NOT_FOUND {
        "Object Not Found"
    } else {
        "bad_request"
    };
    Reply::json(
        status,
        serde_json::json!({"error": error, "reason": e.text}),
    )
}

/// The vhost and the viewer's permissions in it.
fn vhost_and_access(
    broker: &BrokerShared,
    viewer: &Viewer,
    vhost: &str,
) -> Result<(Arc<VHost>, Arc<crate::access::Access>), Reply> {
    let v = broker.vhost(vhost).ok_or_else(Reply::not_found)?;
    let access = viewer
        .access(vhost)
        .ok_or_else(|| Reply::not_authorised("User not authorised to access virtual host"))?;
    Ok((v, access))
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Reply::bad_request("the body must be a JSON object")),
        Err(e) => Err(Reply::bad_request(format!("invalid JSON body: {e}"))),
    }
}

fn flag(map: &serde_json::Map<String, Value>, key: &str, default: bool) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn arguments(map: &serde_json::Map<String, Value>) -> FieldTable {
    match map.get("arguments") {
        Some(Value::Object(args)) => json_to_table(args),
        _ => FieldTable::default(),
    }
}

pub async fn put_queue(
    broker: &BrokerShared,
    viewer: &Viewer,
    vhost: &str,
    name: &str,
    body: &[u8],
) -> Result<Reply, Reply> {
    let (v, access) = vhost_and_access(broker, viewer, vhost)?;
    let map = object(body)?;
    access
        .check(Perm::Configure, Resource::Queue, name)
        .map_err(|e| amqp_reply(&e))?;
    // rabbitmq-compat: queues declared over HTTP are durable unless told otherwise.
    let req = QueueDeclare {
        name: name.to_string(),
        passive: false,
        durable: flag(&map, "durable", true),
        exclusive: false,
        auto_delete: flag(&map, "auto_delete", false),
        arguments: arguments(&map),
        server_named: false,
    };
    let created = match v.declare_queue(&req, 0) {
        Ok((_, created)) => created,
        Err(e) => return Err(amqp_reply(&e)),
    };
    v.sync_metadata().await.map_err(|e| amqp_reply(&e))?;
    Ok(Reply::empty(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }))
}

/// Deletes a queue, or with `contents` purges it.
pub async fn delete_queue(
    broker: &BrokerShared,
    viewer: &Viewer,
    vhost: &str,
    name: &str,
    contents: bool,
) -> Result<Reply, Reply> {
    let (v, access) = vhost_and_access(broker, viewer, vhost)?;
    let perm = if contents {
        Perm::Read
    } else {
        Perm::Configure
    };
    access
        .check(perm, Resource::Queue, name)
        .map_err(|e| amqp_reply(&e))?;
    let q = match v.queue(name, 0) {
        Ok(q) => q,
        Err(e) => return Err(amqp_reply(&e)),
    };
    if contents {
        let _ = q.request(|reply| QueueCmd::Purge { reply }).await;
        return Ok(Reply::empty(StatusCode::NO_CONTENT));
    }
    let result = q
        .request(|reply| QueueCmd::Delete {
            if_unused: false,
            if_empty: false,
            reply,
        })
        .await;
    if let Ok(Err(e)) = result {
        return Err(amqp_reply(&e));
    }
    // A queue that stopped meanwhile (Err(QueueGone)) was deleted by someone else.
    v.forget_queue(&q);
    v.sync_metadata().await.map_err(|e| amqp_reply(&e))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub async fn put_exchange(
    broker: &BrokerShared,
    viewer: &Viewer,
    vhost: &str,
    name: &str,
    body: &[u8],
) -> Result<Reply, Reply> {
    let (v, access) = vhost_and_access(broker, viewer, vhost)?;
    let map = object(body)?;
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        return Err(Reply::bad_request(
            "type must be given (direct, fanout, topic or headers)",
        ));
    };
    access
        .check(Perm::Configure, Resource::Exchange, name)
        .map_err(|e| amqp_reply(&e))?;
    let existed = v.topology().exchanges.contains_key(name);
    let req = ExchangeDeclare {
        name: name.to_string(),
        kind: kind.to_string(),
        passive: false,
        durable: flag(&map, "durable", true),
        auto_delete: flag(&map, "auto_delete", false),
        internal: flag(&map, "internal", false),
        arguments: arguments(&map),
    };
    v.declare_exchange(&req).map_err(|e| amqp_reply(&e))?;
    v.sync_metadata().await.map_err(|e| amqp_reply(&e))?;
    Ok(Reply::empty(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    }))
}

pub async fn delete_exchange(
    broker: &BrokerShared,
    viewer: &Viewer,
    vhost: &str,
    name: &str,
) -> Result<Reply, Reply> {
    let (v, access) = vhost_and_access(broker, viewer, vhost)?;
    access
        .check(Perm::Configure, Resource::Exchange, name)
        .map_err(|e| amqp_reply(&e))?;
    // rabbitmq-compat: over HTTP, deleting a missing exchange is 404.
    if !v.topology().exchanges.contains_key(name) {
        return Err(Reply::not_found());
    }
    v.delete_exchange(name, false).map_err(|e| amqp_reply(&e))?;
    v.sync_metadata().await.map_err(|e| amqp_reply(&e))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// Adds a binding (`routing_key`, `arguments` from the body); 201 with the new binding's
/// location, as the management plugin answers.
pub async fn post_binding(
    broker: &BrokerShared,
    viewer: &Viewer,
    path: &BindingPath,
    body: &[u8],
) -> Result<Reply, Reply> {
    let map = object(body)?;
    let key = map
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let args = arguments(&map);
    change_binding(broker, viewer, path, &key, &args, true).await
}

/// Removes the binding whose properties key is `props` (`~` for an empty routing key and no
/// arguments, else the routing key).
pub async fn delete_binding(
    broker: &BrokerShared,
    viewer: &Viewer,
    path: &BindingPath,
    props: &str,
) -> Result<Reply, Reply> {
    let key = if props == "~" { "" } else { props };
    change_binding(broker, viewer, path, key, &FieldTable::default(), false).await
}

async fn change_binding(
    broker: &BrokerShared,
    viewer: &Viewer,
    path: &BindingPath,
    key: &str,
    args: &FieldTable,
    bind: bool,
) -> Result<Reply, Reply> {
    let (v, access) = vhost_and_access(broker, viewer, &path.vhost)?;
    let dest_kind = if path.to_exchange {
        Resource::Exchange
    } else {
        Resource::Queue
    };
    let checks = access
        .check(Perm::Write, dest_kind, &path.destination)
        .and_then(|()| access.check(Perm::Read, Resource::Exchange, &path.source));
    checks.map_err(|e| amqp_reply(&e))?;
    let (source, dest) = (path.source.as_str(), path.destination.as_str());
    let result = match (path.to_exchange, bind) {
        (true, true) => v.bind_exchange(dest, source, key, args),
        (true, false) => v.unbind_exchange(dest, source, key, args),
        (false, true) => v.bind_queue(dest, source, key, args, 0),
        (false, false) => v.unbind_queue(dest, source, key, args, 0),
    };
    result
        .and(v.sync_metadata().await)
        .map_err(|e| amqp_reply(&e))?;
    if !bind {
        return Ok(Reply::empty(StatusCode::NO_CONTENT));
    }
    // rabbitmq-compat: the new binding's URL (its last segment is the properties key, which
    // clients such as rabbit-hole read back).
    let props = if key.is_empty() && args.inner().is_empty() {
        "~".to_string()
    } else {
        key.to_string()
    };
    let location = [
        "api",
        "bindings",
        &path.vhost,
        "e",
        source,
        if path.to_exchange { "e" } else { "q" },
        dest,
        &props,
    ]
    .iter()
    .map(|segment| super::percent_encode(segment))
    .collect::<Vec<_>>()
    .join("/");
    let mut reply = Reply::empty(StatusCode::CREATED);
    reply.location = Some(format!("/{location}"));
    Ok(reply)
}
