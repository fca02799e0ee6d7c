//! exchange.* methods: declare, delete, and exchange-to-exchange bind/unbind.

use super::Channel;
use crate::access::{Perm, Resource};
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::vhost::ExchangeDeclare;
use amq_protocol::protocol::exchange::{self as amqp_exchange, AMQPMethod};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::FieldTable;

impl Channel {
    pub(super) async fn exchange_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: AMQPMethod,
    ) -> AmqpResult<()> {
        match m {
            AMQPMethod::Declare(d) => {
                if !d.passive {
                    check_declare_permitted(ctx, d.exchange.as_str(), &d.arguments)?;
                }
                ctx.vhost.declare_exchange(&ExchangeDeclare {
                    name: d.exchange.as_str().to_string(),
                    kind: d.kind.as_str().to_string(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments,
                })?;
                ctx.vhost.sync_metadata().await?;
                if !d.nowait {
                    self.send_exchange(ctx, AMQPMethod::DeclareOk(amqp_exchange::DeclareOk {}));
                }
                Ok(())
            }
            AMQPMethod::Delete(d) => {
                let name = d.exchange.as_str();
                // rabbitmq-compat: the default and `amq.*` exchanges are refused for what they
                // are before permissions are checked (`check_exchange_deletion`); the vhost
                // gives those errors.
                if !name.is_empty() && !name.starts_with("amq.") {
                    ctx.access
                        .check(Perm::Configure, Resource::Exchange, name)?;
                }
                ctx.vhost
                    .delete_exchange(d.exchange.as_str(), d.if_unused)?;
                // A durable exchange's deletion is on disk before delete-ok, like its declare.
                ctx.vhost.sync_metadata().await?;
                if !d.nowait {
                    self.send_exchange(ctx, AMQPMethod::DeleteOk(amqp_exchange::DeleteOk {}));
                }
                Ok(())
            }
            AMQPMethod::Bind(b) => {
                let (destination, source) = (b.destination.as_str(), b.source.as_str());
                check_binding_permitted(ctx, destination, source, b.routing_key.as_str())?;
                ctx.vhost.bind_exchange(
                    destination,
                    source,
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                ctx.vhost.sync_metadata().await?;
                if !b.nowait {
                    self.send_exchange(ctx, AMQPMethod::BindOk(amqp_exchange::BindOk {}));
                }
                Ok(())
            }
            AMQPMethod::Unbind(u) => {
                let (destination, source) = (u.destination.as_str(), u.source.as_str());
                check_binding_permitted(ctx, destination, source, u.routing_key.as_str())?;
                ctx.vhost.unbind_exchange(
                    destination,
                    source,
                    u.routing_key.as_str(),
                    &u.arguments,
                )?;
                ctx.vhost.sync_metadata().await?;
                if !u.nowait {
                    self.send_exchange(ctx, AMQPMethod::UnbindOk(amqp_exchange::UnbindOk {}));
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid(
                "unexpected exchange method from the client",
            )),
        }
    }

    fn send_exchange(&self, ctx: &mut ConnCtx, m: AMQPMethod) {
        ctx.out.method(self.id, AMQPClass::Exchange(m));
    }
}

/// Permissions for a non-passive exchange.declare: configure on the exchange; creating one
/// with an alternate exchange also needs read on it and write on the alternate
/// (rabbit_channel.erl). The default exchange is left to the vhost, which refuses it.
fn check_declare_permitted(ctx: &ConnCtx, name: &str, arguments: &FieldTable) -> AmqpResult<()> {
    if name.is_empty() {
        return Ok(());
    }
    ctx.access
        .check(Perm::Configure, Resource::Exchange, name)?;
    if ctx.vhost.topology().exchanges.contains_key(name) {
        return Ok(());
    }
    if let Some(alternate) = crate::defs::str_field(arguments, "alternate-exchange") {
        ctx.access.check(Perm::Read, Resource::Exchange, name)?;
        ctx.access
            .check(Perm::Write, Resource::Exchange, &alternate)?;
    }
    Ok(())
}

/// Permissions for exchange.bind and exchange.unbind, as for a queue binding: write on the
/// destination, read on the source, and the topic read pattern on the binding key. The
/// default exchange is left to the vhost, which refuses binding to or from it.
fn check_binding_permitted(
    ctx: &ConnCtx,
    destination: &str,
    source: &str,
    routing_key: &str,
) -> AmqpResult<()> {
    if destination.is_empty() || source.is_empty() {
        return Ok(());
    }
    ctx.access
        .check(Perm::Write, Resource::Exchange, destination)?;
    ctx.access.check(Perm::Read, Resource::Exchange, source)?;
    super::queue::check_topic_binding(ctx, source, routing_key)
}
