//! basic.publish to a delayed message exchange (`crate::delayed`): a message with a positive
//! `x-delay` is held by the exchange instead of being routed.

use super::Channel;
use crate::connection::ConnCtx;
use crate::delayed::{header, DelayedExchange};
use crate::message::Message;
use std::sync::Arc;

impl Channel {
    /// Holds `message` if it asks for a delay; `false` if it does not (it is routed now,
    /// through the exchange's bindings).
    ///
    /// rabbitmq-compat: the plugin's exchange routes a delayed publish to no queue, so a
    /// mandatory one is returned at once with 312 NO_ROUTE (and still delivered when due), and
    /// in a transaction the message is held at publish time, not at commit (RabbitMQ routes
    /// at publish). In confirm mode the publish is acked once the message is held: for a
    /// persistent message in a durable exchange, once it is on disk.
    pub(super) fn hold_delayed(
        &mut self,
        ctx: &mut ConnCtx,
        delayed: &DelayedExchange,
        message: &Arc<Message>,
        mandatory: bool,
    ) -> bool {
        let headers = if message.summary.has_headers {
            message.headers()
        } else {
            None
        };
        let Some(delay) = header::delay_ms(headers.as_ref()) else {
            return false;
        };
        let held = header::swap_delay_header(message, delay).unwrap_or_else(|| message.clone());
        let seq = self.confirm.as_mut().map(|c| c.count_publish());
        let guard = match (&mut self.confirm, seq) {
            (Some(c), Some(seq)) if delayed.stores(held.persistent()) => {
                c.guards(&ctx.handle, self.id, self.epoch, seq, 1).pop()
            }
            _ => None,
        };
        if mandatory {
            ctx.out.return_unroutable(self.id, message);
        }
        delayed.hold(held, delay, guard);
        if seq.is_some() {
            ctx.confirms_pending = true;
        }
        true
    }
}
