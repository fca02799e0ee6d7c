//! Dead-lettering: a message rejected without requeue, expired, or dropped for a length limit
//! is republished to the queue's dead-letter exchange, with RabbitMQ's `x-death` history in
//! its headers. Pure functions; the queue task does the routing.

use crate::connection::frame::ShortStr;
use crate::defs::str_field;
use crate::message::Message;
use amq_protocol::protocol::basic::{parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use std::sync::Arc;

/// Why a message was dead-lettered (`x-death`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
        }
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// rabbitmq-compat (`rabbit_dead_letter` cycle detection): delivering a dead-lettered
/// message to `target` would close a cycle if its `x-death` history (newest first) reaches an
/// earlier death in `target` without any rejection on the way. Such a message is dropped
/// for that queue rather than circulating forever.
pub fn is_cycle(headers: Option<&FieldTable>, target: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = headers.and_then(|h| h.inner().get("x-death")) else {
        return false;
    };
    for death in deaths.as_slice() {
        let AMQPValue::FieldTable(t) = death else {
            continue;
        };
        if str_field(t, "reason").as_deref() == Some("rejected") {
            return false;
        }
        if str_field(t, "queue").as_deref() == Some(target) {
            return true;
        }
    }
    false
}

/// The message as it leaves `queue` for dead-letter exchange `exchange` with `routing_key`:
/// its `x-death` entry for (queue, reason) added or counted (and moved first), the
/// `x-first-death-*` headers set once and `x-last-death-*` each time, and a per-message TTL
/// moved to `original-expiration` so that it does not expire again. None if its properties
/// cannot be re-encoded (they were validated on publish, so this does not happen).
pub fn mark(
    message: &Message,
    queue: &str,
    reason: Reason,
    exchange: &str,
    routing_key: &str,
    now_secs: u64,
) -> Option<Arc<Message>> {
    let (_, mut props): (_, AMQPProperties) = parse_properties(message.properties.as_ref()).ok()?;
    let mut headers = props.headers().clone().unwrap_or_default();
    let expiration = props.expiration().as_ref().map(|e| e.as_str().to_string());
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |v: &AMQPValue| match v {
        AMQPValue::FieldTable(t) => {
            str_field(t, "queue").as_deref() == Some(queue)
                && str_field(t, "reason").as_deref() == Some(reason.as_str())
        }
        _ => false,
    };
    let entry = match deaths.iter().position(same) {
        Some(i) => {
            let mut old = match deaths.remove(i) {
                AMQPValue::FieldTable(t) => t,
                _ => FieldTable::default(),
            };
            let count = match old.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                _ => 0,
            };
            old.insert(
                "count".into(),
                AMQPValue::LongLongInt(count.saturating_add(1)),
            );
            old.insert("time".into(), AMQPValue::Timestamp(now_secs));
            old
        }
        None => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), long(reason.as_str()));
            t.insert("queue".into(), long(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now_secs));
            t.insert("exchange".into(), long(message.exchange.as_str()));
            let keys = FieldArray::from(vec![long(message.routing_key.as_str())]);
            t.insert("routing-keys".into(), AMQPValue::FieldArray(keys));
            if let Some(e) = &expiration {
                t.insert("original-expiration".into(), long(e));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    if !headers.inner().contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), long(reason.as_str()));
        headers.insert("x-first-death-queue".into(), long(queue));
        headers.insert(
            "x-first-death-exchange".into(),
            long(message.exchange.as_str()),
        );
    }
    headers.insert("x-last-death-reason".into(), long(reason.as_str()));
    headers.insert("x-last-death-queue".into(), long(queue));
    headers.insert(
        "x-last-death-exchange".into(),
        long(message.exchange.as_str()),
    );
    props = without_expiration(&props).with_headers(headers);
    let (properties, summary) = crate::message::encode_properties(&props)?;
    Some(Arc::new(Message {
        exchange: ShortStr::from_string(exchange)?,
        routing_key: ShortStr::from_string(routing_key)?,
        properties,
        summary,
        body: message.body.clone(),
    }))
}

/// A copy of `p` without `expiration` and `headers` (amq-protocol has setters only).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    let mut out = AMQPProperties::default();
    let short = |v: &Option<ShortString>| v.clone();
    if let Some(v) = short(p.content_type()) {
        out = out.with_content_type(v);
    }
    if let Some(v) = short(p.content_encoding()) {
        out = out.with_content_encoding(v);
    }
    if let Some(v) = *p.delivery_mode() {
        out = out.with_delivery_mode(v);
    }
    if let Some(v) = *p.priority() {
        out = out.with_priority(v);
    }
    if let Some(v) = short(p.correlation_id()) {
        out = out.with_correlation_id(v);
    }
    if let Some(v) = short(p.reply_to()) {
        out = out.with_reply_to(v);
    }
    if let Some(v) = short(p.message_id()) {
        out = out.with_message_id(v);
    }
    if let Some(v) = *p.timestamp() {
        out = out.with_timestamp(v);
    }
    if let Some(v) = short(p.kind()) {
        out = out.with_type(v);
    }
    if let Some(v) = short(p.user_id()) {
        out = out.with_user_id(v);
    }
    if let Some(v) = short(p.app_id()) {
        out = out.with_app_id(v);
    }
    if let Some(v) = short(p.cluster_id()) {
        out = out.with_cluster_id(v);
    }
    out
}
