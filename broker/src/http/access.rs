//! `GET /api/users[/{name}]`, `/api/vhosts[/{name}]`, `/api/permissions[/{vhost}/{user}]`:
//! the users, vhosts and permissions of the metadata document, in RabbitMQ's JSON shapes.

use super::topology::visible_vhosts;
use super::{Reply, Viewer};
use crate::server::BrokerShared;
use serde_json::{json, Value};
use warren_definitions::{Definitions, Permission, Policy, User, Vhost};

pub fn users(broker: &BrokerShared) -> Reply {
    let doc = broker.persistence.meta.base();
    let mut users: Vec<&User> = doc.users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Reply::ok(Value::Array(
        users.into_iter().map(|u| user_json(&doc, u)).collect(),
    ))
}

pub fn user(broker: &BrokerShared, name: &str) -> Reply {
    let doc = broker.persistence.meta.base();
    match doc.users.iter().find(|u| u.name == name) {
        Some(u) => Reply::ok(user_json(&doc, u)),
        None => Reply::not_found(),
    }
}

/// rabbitmq-compat: 3.13's shape: tags as a list, the hash and its algorithm, limits.
fn user_json(doc: &Definitions, u: &User) -> Value {
    let algorithm = match doc.hashing_algorithm_of(u) {
        Ok(algorithm) => algorithm.name().to_string(),
        Err(name) => name,
    };
    json!({
        "name": u.name,
        "password_hash": u.password_hash.clone().unwrap_or_default(),
        "hashing_algorithm": algorithm,
        "tags": u.tags.names(),
        "limits": u.limits.clone().unwrap_or_else(|| json!({})),
    })
}

/// The vhosts this user sees (all for monitoring and administrator users).
pub fn vhosts(broker: &BrokerShared, viewer: &Viewer) -> Reply {
    let doc = broker.persistence.meta.base();
    let out = visible_vhosts(broker, viewer, None)
        .into_iter()
        .map(|v| vhost_json(&v.name, doc.vhosts.iter().find(|d| d.name == v.name)))
        .collect();
    Reply::ok(Value::Array(out))
}

/// One vhost (its existence and visibility are checked by the router).
pub fn vhost(broker: &BrokerShared, name: &str) -> Reply {
    let doc = broker.persistence.meta.base();
    Reply::ok(vhost_json(name, doc.vhosts.iter().find(|d| d.name == name)))
}

fn vhost_json(name: &str, def: Option<&Vhost>) -> Value {
    let description = def.and_then(|d| d.description.clone()).unwrap_or_default();
    let tags: Vec<String> = def
        .and_then(|d| d.tags.as_ref())
        .map(|t| t.names().into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    let default_queue_type = def
        .and_then(|d| d.default_queue_type.clone())
        .unwrap_or_else(|| "classic".to_string());
    json!({
        "name": name,
        "description": description,
        "tags": tags,
        "default_queue_type": default_queue_type,
        "metadata": {"description": description, "tags": tags, "default_queue_type": default_queue_type},
        "tracing": def.and_then(|d| d.tracing).unwrap_or(false),
    })
}

pub fn permissions(broker: &BrokerShared) -> Reply {
    let doc = broker.persistence.meta.base();
    let mut entries: Vec<&Permission> = doc.permissions.iter().collect();
    entries.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
    Reply::ok(Value::Array(
        entries.into_iter().map(permission_json).collect(),
    ))
}

pub fn permission(broker: &BrokerShared, vhost: &str, user: &str) -> Reply {
    let doc = broker.persistence.meta.base();
    match doc
        .permissions
        .iter()
        .find(|p| p.vhost == vhost && p.user == user)
    {
        Some(p) => Reply::ok(permission_json(p)),
        None => Reply::not_found(),
    }
}

fn permission_json(p: &Permission) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    })
}

/// Policies of the vhosts this user sees (or of one vhost), sorted by vhost and name.
pub fn policies(broker: &BrokerShared, viewer: &Viewer, only: Option<&str>) -> Reply {
    let doc = broker.persistence.meta.base();
    let mut entries: Vec<&Policy> = doc
        .policies
        .iter()
        .filter(|p| only.is_none_or(|v| p.vhost == v) && viewer.sees(&p.vhost))
        .collect();
    entries.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    Reply::ok(Value::Array(entries.into_iter().map(policy_json).collect()))
}

pub fn policy(broker: &BrokerShared, vhost: &str, name: &str) -> Reply {
    let doc = broker.persistence.meta.base();
    match doc
        .policies
        .iter()
        .find(|p| p.vhost == vhost && p.name == name)
    {
        Some(p) => Reply::ok(policy_json(p)),
        None => Reply::not_found(),
    }
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to,
        "definition": p.definition,
        "priority": p.priority,
    })
}
