//! exchange.* methods: declare and delete. Exchange-to-exchange bindings come with the
//! RabbitMQ-extensions work and are refused with 540 until then.

use super::Channel;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::vhost::ExchangeDeclare;
use amq_protocol::protocol::exchange::{self as amqp_exchange, AMQPMethod};
use amq_protocol::protocol::AMQPClass;

impl Channel {
    pub(super) async fn exchange_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: AMQPMethod,
    ) -> AmqpResult<()> {
        match m {
            AMQPMethod::Declare(d) => {
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
                ctx.vhost
                    .delete_exchange(d.exchange.as_str(), d.if_unused)?;
                // A durable exchange's deletion is on disk before delete-ok, like its declare.
                ctx.vhost.sync_metadata().await?;
                if !d.nowait {
                    self.send_exchange(ctx, AMQPMethod::DeleteOk(amqp_exchange::DeleteOk {}));
                }
                Ok(())
            }
            AMQPMethod::Bind(_) | AMQPMethod::Unbind(_) => Err(AmqpError::not_implemented(
                "exchange-to-exchange bindings are not supported yet",
            )),
            _ => Err(AmqpError::command_invalid(
                "unexpected exchange method from the client",
            )),
        }
    }

    fn send_exchange(&self, ctx: &mut ConnCtx, m: AMQPMethod) {
        ctx.out.method(self.id, AMQPClass::Exchange(m));
    }
}
