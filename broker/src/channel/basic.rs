//! basic.* methods: publish (routing into queues), qos, consume, cancel, get, ack, nack,
//! reject, recover.

use super::assembler::Complete;
use super::unacked::{group_by_queue, Unacked};
use super::{Channel, ConsumerEntry};
use crate::access::{Perm, Resource};
use crate::connection::codec;
use crate::connection::frame::{Qos, ShortStr};
use crate::connection::outbound::short;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::queue::consumer::ConsumerShared;
use crate::queue::{QueueCmd, QueueGone};
use amq_protocol::protocol::basic::{self as amqp_basic, AMQPMethod};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

impl Channel {
    pub(super) async fn basic_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: AMQPMethod,
    ) -> AmqpResult<()> {
        match m {
            AMQPMethod::Consume(c) => self.consume(ctx, c).await,
            AMQPMethod::Cancel(c) => {
                if !self.cancel_reply_consumer(c.consumer_tag.as_str()) {
                    self.cancel(c.consumer_tag.as_str()).await;
                }
                if !c.nowait {
                    self.send_basic(
                        ctx,
                        AMQPMethod::CancelOk(amqp_basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        }),
                    );
                }
                Ok(())
            }
            AMQPMethod::Get(g) => self.get(ctx, g.queue.as_str(), g.no_ack).await,
            AMQPMethod::Recover(r) => {
                self.recover(r.requeue).await?;
                self.send_basic(ctx, AMQPMethod::RecoverOk(amqp_basic::RecoverOk {}));
                Ok(())
            }
            AMQPMethod::RecoverAsync(r) => self.recover(r.requeue).await,
            // Normally hand-decoded (to see prefetch_size); kept for completeness.
            AMQPMethod::Qos(q) => self.qos(
                ctx,
                Qos {
                    prefetch_size: 0,
                    prefetch_count: q.prefetch_count,
                    global: q.global,
                },
            ),
            // publish, ack, nack, reject and qos arrive as hand-decoded frames; the rest are
            // server-to-client methods.
            _ => Err(AmqpError::command_invalid(
                "unexpected basic method from the client",
            )),
        }
    }

    fn send_basic(&self, ctx: &mut ConnCtx, m: AMQPMethod) {
        ctx.out.method(self.id, AMQPClass::Basic(m));
    }

    /// Routes a fully received message into its queues.
    pub(super) async fn publish(&mut self, ctx: &mut ConnCtx, done: Complete) -> AmqpResult<()> {
        let Complete {
            publish,
            header,
            body,
        } = done;
        let during = |e: AmqpError| e.during(60, 40);
        if let Some(user_id) = &header.summary.user_id {
            if user_id.as_str() != ctx.user {
                return Err(during(AmqpError::precondition_failed(format_args!(
                    "user_id property set to '{user_id}' but authenticated user was '{}'",
                    ctx.user
                ))));
            }
        }
        // rabbitmq-compat: a per-message TTL must be a non-negative integer in decimal
        // (`rabbit_basic:parse_expiration`), else 406 with RabbitMQ's reason.
        if let Some(expiration) = &header.summary.expiration {
            let text = expiration.as_str();
            let reason = match text.parse::<i64>() {
                Ok(n) if n < 0 => Some(format!("{{value_negative,{n}}}")),
                Ok(_) => None,
                Err(_) => Some("no_integer".to_string()),
            };
            if let Some(reason) = reason {
                return Err(during(AmqpError::precondition_failed(format_args!(
                    "invalid expiration '{text}': {reason}"
                ))));
            }
        }
        let properties = self.rewrite_reply_to(header.properties).map_err(during)?;
        let mut strip_bcc = false;
        let mut message = Arc::new(Message {
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            properties,
            summary: header.summary,
            body,
        });
        // rabbitmq-compat: write permission is checked before the exchange is looked up, so a
        // refused user learns nothing about which exchanges exist.
        self.write_cache
            .check(&ctx.access, message.exchange.as_str())
            .map_err(during)?;
        if message.exchange.is_empty()
            && super::reply_to::is_reply_address(message.routing_key.as_str())
        {
            return self.publish_reply(ctx, message, publish.mandatory).await;
        }
        {
            // The snapshot guard is dropped before any `.await` below.
            let topology = ctx.vhost.topology();
            let exchange_name = message.exchange.as_str();
            let exchange = topology
                .exchanges
                .get(exchange_name)
                .ok_or_else(|| during(AmqpError::no_exchange(exchange_name, &ctx.vhost.name)))?;
            if exchange.internal {
                return Err(during(AmqpError::access_refused(format_args!(
                    "cannot publish to internal exchange '{exchange_name}' in vhost '{}'",
                    ctx.vhost.name
                ))));
            }
            if exchange.kind == crate::exchange::ExchangeKind::Topic
                && ctx.access.has_topic_permissions(exchange_name)
            {
                ctx.access
                    .check_topic(Perm::Write, exchange_name, message.routing_key.as_str())
                    .map_err(during)?;
            }
            // A delayed message exchange holds a message with an `x-delay` (channel/delayed.rs).
            if let Some(delayed) = &exchange.delayed {
                if self.hold_delayed(ctx, delayed, &message, publish.mandatory) {
                    return Ok(());
                }
            }
            // Headers are parsed only when something reads them: a headers exchange (or one
            // that may lead to one), or CC/BCC keys (spotted by the property walk).
            let read_headers = exchange.may_read_headers() || message.summary.has_cc_or_bcc;
            let headers = if message.summary.has_headers && read_headers {
                message.headers()
            } else {
                None
            };
            let header_routes = headers.as_ref().map(sender_selected_keys);
            let for_routing = if exchange.may_read_headers() {
                headers.as_ref()
            } else {
                None
            };
            topology.route(
                exchange,
                message.routing_key.as_str(),
                for_routing,
                &mut self.routing,
            );
            if let Some((keys, has_bcc)) = header_routes {
                if !keys.is_empty() {
                    // rabbitmq-compat: sender-selected distribution routes with each CC and BCC
                    // key too, one copy per queue.
                    let mut all = std::mem::take(&mut self.routing.queues);
                    for key in &keys {
                        topology.route(exchange, key, for_routing, &mut self.routing);
                        for q in self.routing.queues.drain(..) {
                            if !all.contains(&q) {
                                all.push(q);
                            }
                        }
                    }
                    self.routing.queues = all;
                }
                if has_bcc {
                    strip_bcc = true;
                }
            }
        }
        // rabbitmq-compat: the BCC header never reaches consumers.
        if strip_bcc {
            if let Some(stripped) = without_bcc(&message) {
                message = Arc::new(stripped);
            }
        }
        if self.tx.is_some() {
            let queues = self.routing.queues.drain(..).collect();
            let destination = super::tx::Destination::Queues(queues);
            self.tx_publish(message, publish.mandatory, destination);
            return Ok(());
        }
        // Confirm mode: a persistent message going to queues that store it is confirmed only
        // once each of them has it on disk, and a queue that may refuse it (overflow
        // reject-publish) decides; they hold a guard each until then.
        let seq = self.confirm.as_mut().map(|c| c.count_publish());
        let persistent = message.persistent();
        let mut guards = match (&mut self.confirm, seq) {
            (Some(c), Some(seq)) => {
                let waiting = self
                    .routing
                    .queues
                    .iter()
                    .filter(|q| q.confirms_after_enqueue(persistent))
                    .count();
                c.guards(&ctx.handle, self.id, self.epoch, seq, waiting)
            }
            _ => Vec::new(),
        };
        if self.routing.queues.is_empty() {
            if publish.mandatory {
                ctx.out.return_unroutable(self.id, &message);
            }
        } else {
            for q in self.routing.queues.drain(..) {
                let guard = if q.confirms_after_enqueue(persistent) {
                    guards.pop()
                } else {
                    None
                };
                // A queue deleted since the snapshot was taken drops the message (and its
                // guard, which counts as done).
                let _ = q.publish(message.clone(), guard).await;
            }
        }
        if seq.is_some() {
            ctx.confirms_pending = true;
        }
        Ok(())
    }

    pub(super) fn qos(&mut self, ctx: &mut ConnCtx, q: Qos) -> AmqpResult<()> {
        if q.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format_args!(
                "prefetch_size!=0 ({})",
                q.prefetch_size
            ))
            .during(60, 10));
        }
        if q.global {
            self.credit.set_limit(u32::from(q.prefetch_count));
            // A raised limit may unblock queues waiting on this channel's credit.
            for c in self.consumers.values() {
                c.queue.hint(QueueCmd::Wake);
            }
        } else {
            self.consumer_prefetch = u32::from(q.prefetch_count);
        }
        ctx.out.method(
            self.id,
            AMQPClass::Basic(AMQPMethod::QosOk(amqp_basic::QosOk {})),
        );
        Ok(())
    }

    async fn consume(&mut self, ctx: &mut ConnCtx, c: amqp_basic::Consume) -> AmqpResult<()> {
        let queue_name = self.queue_name(c.queue.as_str())?;
        if queue_name == super::reply_to::PSEUDO_QUEUE {
            return self.consume_reply_to(ctx, c);
        }
        ctx.access.check(Perm::Read, Resource::Queue, &queue_name)?;
        let queue = ctx.vhost.queue(&queue_name, ctx.id)?;
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
        let short_tag = ShortStr::from_string(tag.clone())
            .ok_or_else(|| AmqpError::syntax_error("consumer tag longer than 255 bytes"))?;
        let shared = Arc::new(ConsumerShared {
            tag: short_tag,
            channel: self.id,
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            priority: consumer_priority(&c.arguments)?,
            prefetch: self.consumer_prefetch,
            unacked: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            channel_credit: self.credit.clone(),
        });
        let registered = queue
            .request(|reply| QueueCmd::Consume {
                consumer: shared.clone(),
                conn: ctx.handle.clone(),
                reply,
            })
            .await
            .map_err(|QueueGone| AmqpError::no_queue(&queue_name, &ctx.vhost.name))?;
        registered?;
        self.consumers
            .insert(tag.clone(), ConsumerEntry { shared, queue });
        if !c.nowait {
            // Encoded before this task reads any delivery for the consumer from its mailbox,
            // so consume-ok always precedes the first basic.deliver.
            self.send_basic(
                ctx,
                AMQPMethod::ConsumeOk(amqp_basic::ConsumeOk {
                    consumer_tag: short(&tag),
                }),
            );
        }
        Ok(())
    }

    async fn cancel(&mut self, tag: &str) {
        if let Some(c) = self.consumers.remove(tag) {
            let _ = c.queue.send(QueueCmd::Cancel { consumer: c.shared }).await;
        }
    }

    async fn get(&mut self, ctx: &mut ConnCtx, queue: &str, no_ack: bool) -> AmqpResult<()> {
        let queue_name = self.queue_name(queue)?;
        ctx.access.check(Perm::Read, Resource::Queue, &queue_name)?;
        let queue = ctx.vhost.queue(&queue_name, ctx.id)?;
        let reply = queue
            .request(|reply| QueueCmd::Get { no_ack, reply })
            .await
            .map_err(|QueueGone| AmqpError::no_queue(&queue_name, &ctx.vhost.name))?;
        let Some(got) = reply else {
            self.send_basic(ctx, AMQPMethod::GetEmpty(amqp_basic::GetEmpty {}));
            return Ok(());
        };
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        codec::encode_get_ok(
            ctx.out.buf(),
            self.id,
            tag,
            got.redelivered,
            got.message.exchange.as_str(),
            got.message.routing_key.as_str(),
            got.remaining,
        );
        ctx.out.content(self.id, &got.message);
        if !no_ack {
            self.unacked.push(
                tag,
                Unacked {
                    queue,
                    msg_id: got.msg_id,
                    consumer: None,
                    delivered_at: tokio::time::Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// Takes the unacked entries an ack/nack/reject names: one tag, or with `multiple` every
    /// tag up to it (0 = all). An unknown tag is a 406 channel error.
    fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        let unknown = || AmqpError::precondition_failed(format_args!("unknown delivery tag {tag}"));
        if multiple {
            if tag == 0 {
                return Ok(self.unacked.drain_all());
            }
            if !self.unacked.contains(tag) {
                return Err(unknown());
            }
            Ok(self.unacked.remove_up_to(tag))
        } else {
            self.unacked
                .remove(tag)
                .map(|e| vec![e])
                .ok_or_else(unknown)
        }
    }

    /// Settles the deliveries at once; the queues hear of it at the next
    /// [`Channel::flush_acks`].
    pub(super) fn ack(&mut self, tag: u64, multiple: bool) -> AmqpResult<()> {
        if self.tx.is_some() {
            return self
                .tx_settle(tag, multiple, None)
                .map_err(|e| e.during(60, 80));
        }
        let entries = self
            .take_unacked(tag, multiple)
            .map_err(|e| e.during(60, 80))?;
        self.settle(&entries);
        super::unacked::add_to_groups(&mut self.pending_acks, entries);
        Ok(())
    }

    pub(super) async fn reject(
        &mut self,
        tag: u64,
        multiple: bool,
        requeue: bool,
        method_id: u16,
    ) -> AmqpResult<()> {
        if self.tx.is_some() {
            return self
                .tx_settle(tag, multiple, Some(requeue))
                .map_err(|e| e.during(60, method_id));
        }
        let entries = self
            .take_unacked(tag, multiple)
            .map_err(|e| e.during(60, method_id))?;
        self.settle(&entries);
        for (queue, ids) in group_by_queue(entries) {
            let cmd = if requeue {
                QueueCmd::Requeue {
                    ids,
                    delivered: true,
                }
            } else {
                QueueCmd::Discard(ids)
            };
            let _ = queue.send(cmd).await;
        }
        Ok(())
    }

    async fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            // rabbitmq-compat: RabbitMQ does not implement recover with requeue=false.
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let entries = self.unacked.drain_all();
        self.settle(&entries);
        for (queue, ids) in group_by_queue(entries) {
            let _ = queue
                .send(QueueCmd::Requeue {
                    ids,
                    delivered: true,
                })
                .await;
        }
        Ok(())
    }

    /// An empty queue name means "the last queue declared on this channel".
    pub(super) fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }
}

/// The routing keys of the `CC` and `BCC` headers (arrays of strings; other values are
/// ignored), and whether a `BCC` header is present.
fn sender_selected_keys(headers: &FieldTable) -> (Vec<String>, bool) {
    let mut keys = Vec::new();
    for name in ["CC", "BCC"] {
        if let Some(AMQPValue::FieldArray(values)) = headers.inner().get(name) {
            keys.extend(values.as_slice().iter().filter_map(crate::defs::str_value));
        }
    }
    (keys, headers.inner().contains_key("BCC"))
}

/// The message without its `BCC` header.
fn without_bcc(message: &Message) -> Option<Message> {
    let (_, props) =
        amq_protocol::protocol::basic::parse_properties(message.properties.as_ref()).ok()?;
    let mut headers = FieldTable::default();
    for (k, v) in props.headers().as_ref()?.inner() {
        if k.as_str() != "BCC" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let props = props.with_headers(headers);
    let (properties, summary) = crate::message::encode_properties(&props)?;
    Some(Message {
        exchange: message.exchange.clone(),
        routing_key: message.routing_key.clone(),
        properties,
        summary,
        body: message.body.clone(),
    })
}

/// rabbitmq-compat: a consumer's `x-priority` argument must be an integer (else 406 with
/// RabbitMQ's reason).
fn consumer_priority(arguments: &FieldTable) -> AmqpResult<i32> {
    let Some(value) = arguments.inner().get("x-priority") else {
        return Ok(0);
    };
    let n = crate::defs::int_value(value);
    match n {
        Some(n) => Ok(i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })),
        None => Err(AmqpError::precondition_failed(format_args!(
            "invalid arg 'x-priority' for consumer: {{unacceptable_type,{}}}",
            crate::exchange::erl_term::rabbit_type_name(value)
        ))),
    }
}
