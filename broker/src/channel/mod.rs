//! A channel: plain state inside its connection task. It assembles publishes, routes them
//! through the vhost snapshot into queue mailboxes, tracks consumers, prefetch credit and
//! unacked deliveries, and counts publisher confirms. One file per AMQP class holds the
//! method handlers (`basic.rs`, `queue.rs`, `exchange.rs`, `tx.rs`); `reply_to.rs` is
//! RabbitMQ's direct reply-to.

pub mod assembler;
mod basic;
pub mod confirm;
mod delayed;
mod exchange;
mod queue;
pub mod reply_to;
mod tx;
pub mod unacked;

use crate::access::WriteCache;
use crate::connection::frame::{ChannelId, Frame};
use crate::connection::handle::Delivery;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::queue::consumer::{ChannelCredit, ConsumerShared};
use crate::queue::{QueueCmd, QueueRef};
use amq_protocol::protocol::{basic as amqp_basic, channel as amqp_channel, AMQPClass};
use assembler::Assembler;
use confirm::Confirms;
use std::sync::Arc;
use unacked::{group_by_queue, Unacked, UnackedSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    /// The broker sent channel.close and waits for close-ok; every other frame is ignored.
    Closing,
}

/// What the connection should do with the channel after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    /// The channel is finished (close or close-ok handled): remove it.
    Remove,
}

struct ConsumerEntry {
    shared: Arc<ConsumerShared>,
    queue: QueueRef,
}

pub struct Channel {
    pub id: ChannelId,
    /// Distinguishes this channel from earlier ones with the same id on the connection.
    pub epoch: u64,
    pub state: ChannelState,
    pub assembler: Assembler,
    next_delivery_tag: u64,
    unacked: UnackedSet,
    consumers: crate::FastMap<String, ConsumerEntry>,
    /// basic.qos global=false: prefetch given to consumers created from now on.
    consumer_prefetch: u32,
    /// basic.qos global=true: shared by all consumers of this channel.
    credit: Arc<ChannelCredit>,
    /// Publisher confirms: the sequence number of the last publish, and the last one acked.
    confirm: Option<Confirms>,
    /// The queue named by the last queue.declare, used when a later method names queue "".
    last_queue: Option<String>,
    /// Scratch space for routing results, reused across publishes.
    routing: crate::vhost::Routing,
    /// Exchanges this channel may publish to, so a publish rarely runs a pattern.
    write_cache: WriteCache,
    /// Set by tx.select: the open transaction's publishes and acks, and owed tx replies.
    tx: Option<tx::Tx>,
    /// The consumer of `amq.rabbitmq.reply-to` (direct reply-to), if any.
    reply_consumer: Option<reply_to::ReplyConsumer>,
    /// Acked message ids not yet sent to their queues, grouped by queue: sent once per
    /// batch of frames (one mailbox message per queue instead of one per basic.ack), and
    /// before anything else this channel does.
    pending_acks: Vec<(crate::queue::QueueRef, Vec<u64>)>,
}

impl Channel {
    /// The user's permissions changed: forget what was found permitted.
    pub fn forget_permissions(&mut self) {
        self.write_cache = WriteCache::default();
    }

    pub fn new(id: ChannelId, epoch: u64) -> Self {
        Channel {
            id,
            epoch,
            state: ChannelState::Open,
            assembler: Assembler::default(),
            next_delivery_tag: 1,
            unacked: UnackedSet::default(),
            consumers: Default::default(),
            consumer_prefetch: 0,
            credit: Arc::new(ChannelCredit::default()),
            confirm: None,
            last_queue: None,
            routing: crate::vhost::Routing::default(),
            write_cache: WriteCache::default(),
            tx: None,
            reply_consumer: None,
            pending_acks: Vec::new(),
        }
    }

    /// Sends the acks held back since the last flush to their queues.
    pub async fn flush_acks(&mut self) {
        for (queue, ids) in self.pending_acks.drain(..) {
            let _ = queue.send(QueueCmd::Ack(ids)).await;
        }
    }

    /// Handles one frame for this (open) channel. Errors are returned to the connection, which
    /// closes the channel or the connection according to their scope.
    pub async fn handle(&mut self, ctx: &mut ConnCtx, frame: Frame) -> AmqpResult<Outcome> {
        let keeps_acks = matches!(
            frame,
            Frame::Ack(..)
                | Frame::Publish(..)
                | Frame::Header(..)
                | Frame::Body(..)
                | Frame::BodyRead(..)
        );
        if !keeps_acks && !self.pending_acks.is_empty() {
            // Whatever else the client does on this channel sees its earlier acks done.
            self.flush_acks().await;
        }
        // Content frames feed the message being assembled; while one is, nothing else may
        // come on the channel.
        let assembled = match frame {
            Frame::Header(_, header) => self.assembler.header(header, ctx.max_message_size)?,
            Frame::Body(_, chunk) => self.assembler.body(chunk)?,
            Frame::BodyRead(_, filled) => self.assembler.body_read(filled)?,
            _ if !self.assembler.is_idle() => return Err(self.assembler.method_while_busy()),
            Frame::Publish(_, p) => {
                if p.immediate {
                    return Err(AmqpError::not_implemented("immediate=true").during(60, 40));
                }
                ctx.publishes = true;
                self.assembler.start(p);
                None
            }
            Frame::Ack(_, a) => {
                self.ack(a.delivery_tag, a.multiple)?;
                ctx.acks_pending |= !self.pending_acks.is_empty();
                None
            }
            Frame::Nack(_, n) => {
                self.reject(n.delivery_tag, n.multiple, n.requeue, 120)
                    .await?;
                None
            }
            Frame::Reject(_, r) => {
                self.reject(r.delivery_tag, false, r.requeue, 90).await?;
                None
            }
            Frame::Qos(_, q) => {
                self.qos(ctx, q)?;
                None
            }
            Frame::Method(_, method) => return self.method(ctx, *method).await,
            Frame::Heartbeat(_) => {
                return Err(AmqpError::unexpected_frame("unexpected frame on a channel"))
            }
        };
        if let Some(done) = assembled {
            self.publish(ctx, done).await?;
        }
        Ok(Outcome::Keep)
    }

    async fn method(&mut self, ctx: &mut ConnCtx, method: AMQPClass) -> AmqpResult<Outcome> {
        let (class_id, method_id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
        let result = match method {
            AMQPClass::Channel(m) => return self.channel_method(ctx, m).await,
            AMQPClass::Basic(m) => self.basic_method(ctx, m).await,
            AMQPClass::Queue(m) => self.queue_method(ctx, m).await,
            AMQPClass::Exchange(m) => self.exchange_method(ctx, m).await,
            AMQPClass::Confirm(amq_protocol::protocol::confirm::AMQPMethod::Select(s)) => {
                self.confirm_select(ctx, s.nowait)
            }
            AMQPClass::Tx(m) => self.tx_method(ctx, m).await,
            AMQPClass::Access(_) => Err(AmqpError::command_invalid(
                "access.request is obsolete and not supported",
            )),
            AMQPClass::Connection(_) => Err(AmqpError::command_invalid(
                "connection class methods are only valid on channel 0",
            )),
            _ => Err(AmqpError::command_invalid(format_args!(
                "unexpected method (class {class_id}, method {method_id}) from the client"
            ))),
        };
        result.map_err(|e| e.during(class_id, method_id))?;
        Ok(Outcome::Keep)
    }

    async fn channel_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: amqp_channel::AMQPMethod,
    ) -> AmqpResult<Outcome> {
        match m {
            amqp_channel::AMQPMethod::Open(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen").during(20, 10))
            }
            amqp_channel::AMQPMethod::Close(_) => {
                self.release().await;
                ctx.out.method(
                    self.id,
                    AMQPClass::Channel(amqp_channel::AMQPMethod::CloseOk(amqp_channel::CloseOk {})),
                );
                Ok(Outcome::Remove)
            }
            amqp_channel::AMQPMethod::CloseOk(_) => Err(AmqpError::command_invalid(
                "channel.close-ok without a channel.close",
            )
            .during(20, 41)),
            amqp_channel::AMQPMethod::Flow(f) => {
                if !f.active {
                    // rabbitmq-compat: RabbitMQ refuses channel.flow(active=false) too.
                    return Err(AmqpError::not_implemented("active=false").during(20, 20));
                }
                ctx.out.method(
                    self.id,
                    AMQPClass::Channel(amqp_channel::AMQPMethod::FlowOk(amqp_channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(Outcome::Keep)
            }
            amqp_channel::AMQPMethod::OpenOk(_) | amqp_channel::AMQPMethod::FlowOk(_) => Err(
                AmqpError::command_invalid("unexpected channel method from the client"),
            ),
        }
    }

    fn confirm_select(&mut self, ctx: &mut ConnCtx, nowait: bool) -> AmqpResult<()> {
        if self.tx.is_some() {
            // rabbitmq-compat: rabbit_channel.erl's text.
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        if self.confirm.is_none() {
            self.confirm = Some(Confirms::default());
        }
        if !nowait {
            ctx.out.method(
                self.id,
                AMQPClass::Confirm(amq_protocol::protocol::confirm::AMQPMethod::SelectOk(
                    amq_protocol::protocol::confirm::SelectOk {},
                )),
            );
        }
        Ok(())
    }

    /// Sends basic.ack (and basic.nack) for every publish settled since the last flush,
    /// coalesced with `multiple`, and the tx.commit-oks whose messages reached the disk.
    /// Called once per batch of frames or mailbox messages.
    pub fn flush_confirms(&mut self, ctx: &mut ConnCtx) {
        if let Some(c) = &mut self.confirm {
            if c.has_news() {
                c.flush(ctx.out.buf(), self.id);
            }
        }
        self.flush_tx(ctx);
    }

    /// A confirm-mode publish (or a transaction's commit) has been stored by all its durable
    /// queues, or failed to be; a failed commit is an error that closes the channel.
    pub fn confirmed(&mut self, seq: u64, ok: bool) -> AmqpResult<()> {
        if let Some(c) = &mut self.confirm {
            c.complete(seq, ok);
        }
        self.tx_stored(seq, ok)
    }

    /// Writes a delivery from a queue, or gives it back if its consumer is gone.
    pub async fn deliver(&mut self, ctx: &mut ConnCtx, d: Delivery) {
        let live = self.state == ChannelState::Open
            && self
                .consumers
                .get(d.consumer.tag.as_str())
                .is_some_and(|c| Arc::ptr_eq(&c.shared, &d.consumer));
        if !live {
            return_undelivered(d).await;
            return;
        }
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        crate::connection::codec::encode_deliver(
            ctx.out.buf(),
            self.id,
            d.consumer.tag.as_str(),
            tag,
            d.redelivered,
            d.message.exchange.as_str(),
            d.message.routing_key.as_str(),
        );
        ctx.out.content(self.id, &d.message);
        if d.consumer.delivery_written() {
            d.queue.hint(QueueCmd::Wake);
        }
        if !d.consumer.no_ack {
            self.unacked.push(
                tag,
                Unacked {
                    queue: d.queue,
                    msg_id: d.msg_id,
                    consumer: Some(d.consumer),
                    delivered_at: ctx.now,
                },
            );
        }
    }

    /// The queue was deleted under one of our consumers.
    pub fn consumer_cancelled(&mut self, ctx: &mut ConnCtx, consumer: Arc<ConsumerShared>) {
        let tag = consumer.tag.as_str();
        let ours = self
            .consumers
            .get(tag)
            .is_some_and(|c| Arc::ptr_eq(&c.shared, &consumer));
        if !ours {
            return;
        }
        self.consumers.remove(tag);
        if ctx.caps.consumer_cancel_notify && self.state == ChannelState::Open {
            ctx.out.method(
                self.id,
                AMQPClass::Basic(amqp_basic::AMQPMethod::Cancel(amqp_basic::Cancel {
                    consumer_tag: crate::connection::outbound::short(tag),
                    nowait: true,
                })),
            );
        }
    }

    /// Whether a consumer of this channel holds unacked deliveries (the connection then checks
    /// consumer timeouts).
    pub fn has_consumer_deliveries(&self) -> bool {
        !self.consumers.is_empty() && !self.unacked.is_empty()
    }

    /// Cancels every consumer holding a delivery unacked for longer than its timeout (the
    /// queue's `x-consumer-timeout`, else `default`): the queue forgets it, its unacked
    /// messages are requeued (redelivered), and the client gets basic.cancel — what RabbitMQ
    /// 4.3 does for a consumer timeout.
    pub async fn check_consumer_timeouts(
        &mut self,
        ctx: &mut ConnCtx,
        now: tokio::time::Instant,
        default: Option<std::time::Duration>,
    ) {
        let mut late: Vec<Arc<ConsumerShared>> = Vec::new();
        for u in self.unacked.iter() {
            let Some(c) = &u.consumer else { continue };
            if late.iter().any(|l| Arc::ptr_eq(l, c)) {
                continue;
            }
            let Some(timeout) = u.queue.consumer_timeout().or(default) else {
                continue;
            };
            if now.saturating_duration_since(u.delivered_at) > timeout {
                late.push(c.clone());
            }
        }
        for consumer in late {
            let tag = consumer.tag.as_str().to_string();
            let ours = self
                .consumers
                .get(&tag)
                .is_some_and(|c| Arc::ptr_eq(&c.shared, &consumer));
            if !ours {
                continue;
            }
            let Some(entry) = self.consumers.remove(&tag) else {
                continue;
            };
            tracing::warn!(channel = self.id, consumer = %tag, queue = %entry.queue.name, "delivery acknowledgement timed out; cancelling the consumer");
            let _ = entry
                .queue
                .send(QueueCmd::Cancel {
                    consumer: consumer.clone(),
                })
                .await;
            let taken = self.unacked.remove_where(|u| {
                u.consumer
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, &consumer))
            });
            self.settle(&taken);
            for (queue, ids) in group_by_queue(taken) {
                let _ = queue
                    .send(QueueCmd::Requeue {
                        ids,
                        delivered: true,
                    })
                    .await;
            }
            if ctx.caps.consumer_cancel_notify && self.state == ChannelState::Open {
                ctx.out.method(
                    self.id,
                    AMQPClass::Basic(amqp_basic::AMQPMethod::Cancel(amqp_basic::Cancel {
                        consumer_tag: crate::connection::outbound::short(&tag),
                        nowait: true,
                    })),
                );
            }
        }
    }

    /// The channel is going away (closed by either side, or its connection ended): cancel its
    /// consumers, then return every unacked message to its queue marked redelivered.
    pub async fn release(&mut self) {
        self.flush_acks().await;
        self.assembler.reset();
        self.reply_consumer = None;
        self.tx_release();
        for (_, c) in self.consumers.drain() {
            let _ = c.queue.send(QueueCmd::Cancel { consumer: c.shared }).await;
        }
        let entries = self.unacked.drain_all();
        for (queue, ids) in group_by_queue(entries) {
            let _ = queue
                .send(QueueCmd::Requeue {
                    ids,
                    delivered: true,
                })
                .await;
        }
    }

    /// Settles consumer credit for entries leaving the unacked set; wakes the channel's
    /// queues when the channel-wide prefetch was exhausted.
    fn settle(&self, entries: &[Unacked]) {
        let mut wake = false;
        for e in entries {
            if let Some(c) = &e.consumer {
                wake |= c.settle();
            }
        }
        if wake {
            for c in self.consumers.values() {
                c.queue.hint(QueueCmd::Wake);
            }
        }
    }
}

/// A delivery whose consumer or channel is gone before it was written: back to its queue,
/// not marked redelivered (the client never saw it).
pub async fn return_undelivered(d: Delivery) {
    d.consumer.delivery_written();
    let cmd = if d.consumer.no_ack {
        QueueCmd::Restore(Box::new(crate::queue::messages::Entry {
            id: d.msg_id,
            size: crate::queue::messages::size_of(Some(&d.message), None, None),
            // The queue puts it back at its priority.
            level: 0,
            message: Some(d.message),
            redelivered: d.redelivered,
            // A no-ack delivery was already removed from the store when it was handed out.
            location: None,
            page: None,
        }))
    } else {
        d.consumer.settle();
        QueueCmd::Requeue {
            ids: vec![d.msg_id],
            delivered: false,
        }
    };
    let _ = d.queue.send(cmd).await;
}
