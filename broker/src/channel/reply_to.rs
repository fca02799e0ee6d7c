//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`): an RPC client consumes the pseudo-queue
//! `amq.rabbitmq.reply-to` (no-ack) and publishes requests with that reply-to; the broker
//! rewrites it to `amq.rabbitmq.reply-to.<key>`, and a reply published to the default exchange
//! with that routing key goes straight to the client's consumer through its connection's
//! mailbox — no queue on the way.
//!
//! The key is 128 random bits naming one reply consumer in `ReplyConsumers`, a broker-wide map
//! from key to (connection mailbox, channel). Why a map and not an address encoded in the name
//! (RabbitMQ encodes its channel's pid): a Rust task has no address a peer could name, and the
//! connection registry is one mutex shared with the management API. The map is split into
//! shards, each a std mutex held only for one hash-map operation (never across `.await`), so
//! replies from different connections rarely meet on a lock. A random key cannot be guessed,
//! and a key outlives neither its consumer nor its channel (`Registration` removes it on drop).

use super::Channel;
use crate::connection::codec;
use crate::connection::frame::{ChannelId, ShortStr};
use crate::connection::handle::{ConnHandle, ConnMsg};
use crate::connection::outbound::short;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use amq_protocol::protocol::basic::{self as amqp_basic, AMQPMethod};
use amq_protocol::protocol::AMQPClass;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The pseudo-queue a client consumes from and names as reply-to.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// The prefix of the names the broker hands to responders.
const PREFIX: &str = "amq.rabbitmq.reply-to.";
const SHARDS: usize = 16;

/// Where a reply consumer lives.
#[derive(Debug, Clone)]
struct ReplyTarget {
    conn: ConnHandle,
    channel: ChannelId,
    epoch: u64,
}

/// Every live reply consumer of the broker, by key.
#[derive(Debug)]
pub struct ReplyConsumers {
    shards: [Mutex<HashMap<u128, ReplyTarget>>; SHARDS],
}

impl Default for ReplyConsumers {
    fn default() -> Self {
        ReplyConsumers {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl ReplyConsumers {
    fn shard(&self, key: u128) -> MutexGuard<'_, HashMap<u128, ReplyTarget>> {
        // The key is random, so its low bits spread keys evenly over the shards; the modulo
        // keeps the index in bounds.
        let shard = &self.shards[(key % SHARDS as u128) as usize];
        // A poisoned shard only means a panic elsewhere mid-insert; the map is still usable.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a reply consumer under a fresh random key.
    fn register(self: &Arc<Self>, target: ReplyTarget) -> Registration {
        loop {
            let key = uuid::Uuid::new_v4().as_u128();
            let mut shard = self.shard(key);
            if let std::collections::hash_map::Entry::Vacant(slot) = shard.entry(key) {
                slot.insert(target);
                return Registration {
                    registry: self.clone(),
                    key,
                };
            }
        }
    }

    fn lookup(&self, key: u128) -> Option<ReplyTarget> {
        self.shard(key).get(&key).cloned()
    }

    /// Whether `name` is the pseudo-queue or the name of a live reply consumer (what a
    /// queue.declare of such a name answers).
    pub fn exists(&self, name: &str) -> bool {
        name == PSEUDO_QUEUE || decode(name).is_some_and(|key| self.lookup(key).is_some())
    }
}

/// A key in the registry, removed when this is dropped.
#[derive(Debug)]
struct Registration {
    registry: Arc<ReplyConsumers>,
    key: u128,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.shard(self.key).remove(&self.key);
    }
}

/// A channel's reply consumer (at most one per channel, as in RabbitMQ).
#[derive(Debug)]
pub(super) struct ReplyConsumer {
    tag: ShortStr,
    /// The name responders publish to, `amq.rabbitmq.reply-to.<key>`.
    name: String,
    registration: Registration,
}

impl ReplyConsumer {
    pub(super) fn tag(&self) -> &str {
        self.tag.as_str()
    }
}

/// Whether a routing key on the default exchange addresses a reply consumer.
pub fn is_reply_address(routing_key: &str) -> bool {
    routing_key.starts_with(PREFIX)
}

fn encode(key: u128) -> String {
    format!("{PREFIX}{key:032x}")
}

fn decode(name: &str) -> Option<u128> {
    let hex = name.strip_prefix(PREFIX)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// The property list with the reply-to text at `range` replaced by `name` (a short string:
/// its length octet sits just before `range`).
fn replace_reply_to(props: &[u8], range: std::ops::Range<usize>, name: &str) -> Option<Bytes> {
    let len_at = range.start.checked_sub(1)?;
    let len = u8::try_from(name.len()).ok()?;
    let mut out = BytesMut::with_capacity(props.len() + name.len());
    out.put_slice(props.get(..len_at)?);
    out.put_u8(len);
    out.put_slice(name.as_bytes());
    out.put_slice(props.get(range.end..)?);
    Some(out.freeze())
}

impl Channel {
    /// basic.consume of `amq.rabbitmq.reply-to`.
    pub(super) fn consume_reply_to(
        &mut self,
        ctx: &mut ConnCtx,
        c: amqp_basic::Consume,
    ) -> AmqpResult<()> {
        let tag = if c.consumer_tag.as_str().is_empty() {
            crate::names::generate("amq.ctag-")
        } else {
            c.consumer_tag.as_str().to_string()
        };
        if self.consumers.contains_key(&tag)
            || self.reply_consumer.as_ref().is_some_and(|r| r.tag() == tag)
        {
            return Err(AmqpError::not_allowed(format_args!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        // rabbitmq-compat: the texts of rabbit_channel.erl.
        if !c.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply_consumer.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let short_tag = ShortStr::from_string(tag.clone())
            .ok_or_else(|| AmqpError::syntax_error("consumer tag longer than 255 bytes"))?;
        let registration = ctx.replies.register(ReplyTarget {
            conn: ctx.handle.clone(),
            channel: self.id,
            epoch: self.epoch,
        });
        self.reply_consumer = Some(ReplyConsumer {
            tag: short_tag,
            name: encode(registration.key),
            registration,
        });
        if !c.nowait {
            ctx.out.method(
                self.id,
                AMQPClass::Basic(AMQPMethod::ConsumeOk(amqp_basic::ConsumeOk {
                    consumer_tag: short(&tag),
                })),
            );
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer; false when `tag` names another consumer.
    pub(super) fn cancel_reply_consumer(&mut self, tag: &str) -> bool {
        if self.reply_consumer.as_ref().is_some_and(|r| r.tag() == tag) {
            self.reply_consumer = None;
            return true;
        }
        false
    }

    /// A publish whose reply-to is `amq.rabbitmq.reply-to` gets this channel's reply address
    /// instead; without a reply consumer on the channel that is a 406.
    pub(super) fn rewrite_reply_to(&self, properties: Bytes) -> AmqpResult<Bytes> {
        let Some(range) = crate::connection::properties::reply_to_range(&properties) else {
            return Ok(properties);
        };
        if properties.get(range.clone()) != Some(PSEUDO_QUEUE.as_bytes()) {
            return Ok(properties);
        }
        let Some(consumer) = &self.reply_consumer else {
            return Err(AmqpError::precondition_failed(
                "fast reply consumer does not exist",
            ));
        };
        replace_reply_to(&properties, range, &consumer.name)
            .ok_or_else(|| AmqpError::internal_error("cannot rewrite reply-to"))
    }

    /// A publish to the default exchange addressed to a reply consumer: straight to its
    /// connection. A reply nobody waits for any more is dropped, or returned if mandatory.
    pub(super) async fn publish_reply(
        &mut self,
        ctx: &mut ConnCtx,
        message: Arc<Message>,
        mandatory: bool,
    ) -> AmqpResult<()> {
        if let Some(c) = &mut self.confirm {
            // Nothing stores a reply: it is confirmed at the next flush.
            c.count_publish();
            ctx.confirms_pending = true;
        }
        let target = decode(message.routing_key.as_str()).and_then(|key| {
            ctx.replies
                .lookup(key)
                .map(|target| ReplyTo { target, key })
        });
        if self.tx.is_some() {
            self.tx_publish(message, mandatory, super::tx::Destination::Reply(target));
            return Ok(());
        }
        send_reply(ctx, self.id, target, message, mandatory);
        Ok(())
    }

    /// A reply for this channel's reply consumer `key`, from the connection's mailbox.
    pub fn deliver_reply(&mut self, ctx: &mut ConnCtx, key: u128, message: &Message) {
        let Some(consumer) = &self.reply_consumer else {
            return;
        };
        if consumer.registration.key != key || self.state != super::ChannelState::Open {
            return;
        }
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        codec::encode_deliver(
            ctx.out.buf(),
            self.id,
            consumer.tag.as_str(),
            tag,
            false,
            message.exchange.as_str(),
            message.routing_key.as_str(),
        );
        ctx.out.content(self.id, message);
    }
}

/// A reply consumer found for a publish.
#[derive(Debug)]
pub(super) struct ReplyTo {
    target: ReplyTarget,
    key: u128,
}

/// Hands a reply to its consumer's connection, or returns it (mandatory) when there is none.
pub(super) fn send_reply(
    ctx: &mut ConnCtx,
    channel: ChannelId,
    to: Option<ReplyTo>,
    message: Arc<Message>,
    mandatory: bool,
) {
    let undelivered = match to {
        Some(ReplyTo { target, key }) => target
            .conn
            .send(ConnMsg::Reply {
                channel: target.channel,
                epoch: target.epoch,
                key,
                message: message.clone(),
            })
            .is_err(),
        None => true,
    };
    if undelivered && mandatory {
        ctx.out.return_unroutable(channel, &message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_garbage() {
        let key = 0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128;
        let name = encode(key);
        assert!(is_reply_address(&name));
        assert_eq!(decode(&name), Some(key));
        assert_eq!(decode(PSEUDO_QUEUE), None);
        assert_eq!(decode("amq.rabbitmq.reply-to.xyz"), None);
        assert_eq!(
            decode(&format!("{PREFIX}+{}", &name[PREFIX.len() + 1..])),
            None
        );
    }

    #[test]
    fn registrations_are_found_until_dropped() {
        let registry = Arc::new(ReplyConsumers::default());
        let (conn, _rx) = ConnHandle::new(7);
        let reg = registry.register(ReplyTarget {
            conn,
            channel: 3,
            epoch: 1,
        });
        let name = encode(reg.key);
        assert!(registry.exists(&name));
        assert!(registry.exists(PSEUDO_QUEUE));
        assert_eq!(registry.lookup(reg.key).map(|t| t.channel), Some(3));
        drop(reg);
        assert!(!registry.exists(&name));
    }

    #[test]
    fn reply_to_is_replaced_in_place() {
        // flags: correlation-id (bit 10) and reply-to (bit 9), then app-id (bit 3).
        let mut props = vec![0b0000_0110, 0b0000_1000];
        for s in ["c1", PSEUDO_QUEUE, "app"] {
            props.push(s.len() as u8);
            props.extend_from_slice(s.as_bytes());
        }
        let range = crate::connection::properties::reply_to_range(&props).unwrap();
        let name = encode(42);
        let out = replace_reply_to(&props, range, &name).unwrap();
        let (_, parsed) = amq_protocol::protocol::basic::parse_properties(&out[..]).unwrap();
        assert_eq!(parsed.reply_to().as_ref().unwrap().as_str(), name);
        assert_eq!(parsed.correlation_id().as_ref().unwrap().as_str(), "c1");
        assert_eq!(parsed.app_id().as_ref().unwrap().as_str(), "app");
    }
}
