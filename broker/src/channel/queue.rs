//! queue.* methods: declare, bind, unbind, purge, delete.

use super::{reply_to, Channel};
use crate::access::{Perm, Resource};
use crate::connection::outbound::short;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::queue::{QueueCmd, QueueGone, QueueStats};
use crate::vhost::QueueDeclare;
use amq_protocol::protocol::queue::{self as amqp_queue, AMQPMethod};
use amq_protocol::protocol::AMQPClass;

impl Channel {
    pub(super) async fn queue_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: AMQPMethod,
    ) -> AmqpResult<()> {
        match m {
            AMQPMethod::Declare(d) => self.queue_declare(ctx, d).await,
            AMQPMethod::Bind(b) => {
                let queue = self.queue_name(b.queue.as_str())?;
                let routing_key = shortcut_routing_key(&b.queue, &b.routing_key, &queue);
                check_binding_permitted(ctx, &queue, b.exchange.as_str(), routing_key)?;
                ctx.vhost.bind_queue(
                    &queue,
                    b.exchange.as_str(),
                    routing_key,
                    &b.arguments,
                    ctx.id,
                )?;
                ctx.vhost.sync_metadata().await?;
                if !b.nowait {
                    self.send_queue(ctx, AMQPMethod::BindOk(amqp_queue::BindOk {}));
                }
                Ok(())
            }
            AMQPMethod::Unbind(u) => {
                let queue = self.queue_name(u.queue.as_str())?;
                let routing_key = shortcut_routing_key(&u.queue, &u.routing_key, &queue);
                check_binding_permitted(ctx, &queue, u.exchange.as_str(), routing_key)?;
                ctx.vhost.unbind_queue(
                    &queue,
                    u.exchange.as_str(),
                    routing_key,
                    &u.arguments,
                    ctx.id,
                )?;
                ctx.vhost.sync_metadata().await?;
                self.send_queue(ctx, AMQPMethod::UnbindOk(amqp_queue::UnbindOk {}));
                Ok(())
            }
            AMQPMethod::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                ctx.access.check(Perm::Read, Resource::Queue, &name)?;
                let queue = ctx.vhost.queue(&name, ctx.id)?;
                let count = queue
                    .request(|reply| QueueCmd::Purge { reply })
                    .await
                    .map_err(|QueueGone| AmqpError::no_queue(&name, &ctx.vhost.name))?;
                if !p.nowait {
                    self.send_queue(
                        ctx,
                        AMQPMethod::PurgeOk(amqp_queue::PurgeOk {
                            message_count: count,
                        }),
                    );
                }
                Ok(())
            }
            AMQPMethod::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?;
                ctx.access.check(Perm::Configure, Resource::Queue, &name)?;
                let count = match ctx.vhost.queue(&name, ctx.id) {
                    Ok(queue) => {
                        let result = queue
                            .request(|reply| QueueCmd::Delete {
                                if_unused: d.if_unused,
                                if_empty: d.if_empty,
                                reply,
                            })
                            .await;
                        // A queue that stopped meanwhile was deleted by someone else: 0.
                        let count = result.unwrap_or(Ok(0))?;
                        ctx.vhost.forget_queue(&queue);
                        ctx.exclusive_queues.retain(|q| *q != queue);
                        count
                    }
                    // rabbitmq-compat: deleting a queue that does not exist succeeds.
                    Err(e) if e.code == crate::error::ReplyCode::NotFound => 0,
                    Err(e) => return Err(e),
                };
                ctx.vhost.sync_metadata().await?;
                if !d.nowait {
                    self.send_queue(
                        ctx,
                        AMQPMethod::DeleteOk(amqp_queue::DeleteOk {
                            message_count: count,
                        }),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid(
                "unexpected queue method from the client",
            )),
        }
    }

    /// rabbitmq-compat: a queue.declare (passive or not) of `amq.rabbitmq.reply-to` succeeds
    /// with no messages and no consumers, and of a reply address as long as its consumer is
    /// there (`declare_fast_reply_to` in rabbit_channel.erl); otherwise 404.
    fn declare_reply_to(
        &mut self,
        ctx: &mut ConnCtx,
        name: String,
        nowait: bool,
    ) -> AmqpResult<()> {
        if !ctx.replies.exists(&name) {
            return Err(AmqpError::no_queue(&name, &ctx.vhost.name));
        }
        if !nowait {
            self.send_queue(
                ctx,
                AMQPMethod::DeclareOk(amqp_queue::DeclareOk {
                    queue: short(&name),
                    message_count: 0,
                    consumer_count: 0,
                }),
            );
        }
        self.last_queue = Some(name);
        Ok(())
    }

    fn send_queue(&self, ctx: &mut ConnCtx, m: AMQPMethod) {
        ctx.out.method(self.id, AMQPClass::Queue(m));
    }

    async fn queue_declare(&mut self, ctx: &mut ConnCtx, d: amqp_queue::Declare) -> AmqpResult<()> {
        let server_named = d.queue.as_str().is_empty() && !d.passive;
        let name = if server_named {
            crate::names::generate("amq.gen-")
        } else {
            self.queue_name(d.queue.as_str())?
        };
        if name == reply_to::PSEUDO_QUEUE || reply_to::is_reply_address(&name) {
            return self.declare_reply_to(ctx, name, d.nowait);
        }
        if !d.passive {
            check_declare_permitted(ctx, &name, &d.arguments)?;
        }
        let req = QueueDeclare {
            name: name.clone(),
            passive: d.passive,
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
            arguments: d.arguments,
            server_named,
        };
        let (queue, created) = ctx.vhost.declare_queue(&req, ctx.id)?;
        if created && queue.is_exclusive() {
            ctx.exclusive_queues.push(queue.clone());
        }
        let stats = if created {
            QueueStats::default()
        } else {
            // A redeclare counts as use (x-expires starts over).
            queue.hint(QueueCmd::Touch);
            queue
                .request(|reply| QueueCmd::Stats { reply })
                .await
                .map_err(|QueueGone| AmqpError::no_queue(&name, &ctx.vhost.name))?
        };
        ctx.vhost.sync_metadata().await?;
        self.last_queue = Some(name.clone());
        if !d.nowait {
            self.send_queue(
                ctx,
                AMQPMethod::DeclareOk(amqp_queue::DeclareOk {
                    queue: short(&name),
                    message_count: stats.messages,
                    consumer_count: stats.consumers,
                }),
            );
        }
        Ok(())
    }
}

/// Permissions for a non-passive queue.declare (server-named queues included): configure on
/// the queue; creating one with a dead-letter exchange also needs read on the queue and
/// write on that exchange (rabbit_channel.erl).
fn check_declare_permitted(
    ctx: &ConnCtx,
    name: &str,
    arguments: &amq_protocol::types::FieldTable,
) -> AmqpResult<()> {
    ctx.access.check(Perm::Configure, Resource::Queue, name)?;
    if ctx.vhost.topology().queues.contains_key(name) {
        return Ok(());
    }
    if let Some(dlx) = crate::defs::str_field(arguments, "x-dead-letter-exchange") {
        ctx.access.check(Perm::Read, Resource::Queue, name)?;
        ctx.access.check(Perm::Write, Resource::Exchange, &dlx)?;
    }
    Ok(())
}

/// Permissions for queue.bind and queue.unbind (`binding_action_with_checks` in
/// rabbit_channel.erl): write on the queue, read on the exchange, and for a topic exchange
/// the user's topic read pattern on the binding key. The default exchange is left to the
/// vhost, which refuses binding to it.
fn check_binding_permitted(
    ctx: &ConnCtx,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> AmqpResult<()> {
    ctx.access.check(Perm::Write, Resource::Queue, queue)?;
    if exchange.is_empty() {
        return Ok(());
    }
    ctx.access.check(Perm::Read, Resource::Exchange, exchange)?;
    check_topic_binding(ctx, exchange, routing_key)
}

/// A binding key on a topic exchange must match the user's topic read pattern, if the user
/// has topic permissions for that exchange.
pub(super) fn check_topic_binding(
    ctx: &ConnCtx,
    exchange: &str,
    routing_key: &str,
) -> AmqpResult<()> {
    if ctx.access.has_topic_permissions(exchange) {
        let is_topic = ctx
            .vhost
            .topology()
            .exchanges
            .get(exchange)
            .is_some_and(|x| x.kind == crate::exchange::ExchangeKind::Topic);
        if is_topic {
            ctx.access.check_topic(Perm::Read, exchange, routing_key)?;
        }
    }
    Ok(())
}

/// rabbitmq-compat: a bind/unbind naming neither queue nor routing key uses the channel's last
/// declared queue for both (`expand_routing_key_shortcut` in rabbit_channel.erl).
fn shortcut_routing_key<'a>(
    queue_field: &amq_protocol::types::ShortString,
    routing_key: &'a amq_protocol::types::ShortString,
    resolved_queue: &'a str,
) -> &'a str {
    if queue_field.as_str().is_empty() && routing_key.as_str().is_empty() {
        resolved_queue
    } else {
        routing_key.as_str()
    }
}
