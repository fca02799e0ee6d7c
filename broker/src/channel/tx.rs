//! tx.* methods: AMQP transactions as RabbitMQ runs them. After tx.select, publishes are
//! checked and routed when they arrive but only handed to their queues at tx.commit, and
//! acks, nacks and rejects take their deliveries out of the unacked set at once but settle
//! them only at commit. tx.commit-ok waits until every persistent message the commit sent to
//! a queue with a store is on disk (the queues hold a `ConfirmGuard` each, as in confirm
//! mode). tx.rollback drops the publishes and puts the deliveries back among the unacked —
//! rabbitmq-compat: they are not requeued.

use super::confirm::{guards_for, ConfirmGuard};
use super::reply_to::{send_reply, ReplyTo};
use super::unacked::{group_by_queue, Unacked};
use super::Channel;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::queue::{QueueCmd, QueueRef};
use amq_protocol::protocol::tx::{self as amqp_tx, AMQPMethod};
use amq_protocol::protocol::AMQPClass;
use std::collections::VecDeque;
use std::sync::Arc;

/// Where a buffered publish goes at commit.
#[derive(Debug)]
pub(super) enum Destination {
    /// The queues routing found when the publish arrived (none: unroutable).
    Queues(Vec<QueueRef>),
    /// A direct reply-to consumer (`None`: it was already gone).
    Reply(Option<ReplyTo>),
}

/// How buffered deliveries are settled at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
}

#[derive(Debug)]
enum Op {
    Publish {
        message: Arc<Message>,
        mandatory: bool,
        destination: Destination,
    },
    Settle {
        how: Settle,
        /// With their delivery tags, to go back to the unacked set on rollback.
        entries: Vec<(u64, Unacked)>,
    },
}

/// A tx reply the channel owes the client, held back while an earlier commit waits for disk.
#[derive(Debug)]
struct Owed {
    /// The commit (by number) whose stored messages are not all on disk yet.
    waiting_for: Option<u64>,
    reply: AMQPMethod,
}

/// A transactional channel's state.
#[derive(Debug, Default)]
pub struct Tx {
    ops: Vec<Op>,
    commits: u64,
    owed: VecDeque<Owed>,
}

impl Tx {
    /// The deliveries settled in the open transaction, given back (rollback, channel close).
    fn take_settlements(&mut self) -> Vec<(u64, Unacked)> {
        let mut back = Vec::new();
        self.ops.retain_mut(|op| match op {
            Op::Settle { entries, .. } => {
                back.append(entries);
                false
            }
            Op::Publish { .. } => true,
        });
        back
    }

    /// Commit `seq`'s stored messages are all on disk (`ok`) or failed to be stored.
    fn stored(&mut self, seq: u64, ok: bool) -> AmqpResult<()> {
        if !ok {
            // rabbitmq-compat: rabbit_channel's complete_tx for a failed commit.
            return Err(AmqpError::precondition_failed("partial tx completion").during(90, 20));
        }
        for owed in &mut self.owed {
            if owed.waiting_for == Some(seq) {
                owed.waiting_for = None;
            }
        }
        Ok(())
    }

    fn owe(&mut self, waiting_for: Option<u64>, reply: AMQPMethod) {
        self.owed.push_back(Owed { waiting_for, reply });
    }

    fn has_news(&self) -> bool {
        self.owed.front().is_some_and(|o| o.waiting_for.is_none())
    }
}

impl Channel {
    pub(super) async fn tx_method(&mut self, ctx: &mut ConnCtx, m: AMQPMethod) -> AmqpResult<()> {
        let not_transactional = || AmqpError::precondition_failed("channel is not transactional");
        match m {
            AMQPMethod::Select(_) => {
                // rabbitmq-compat: the texts of rabbit_channel.erl.
                if self.confirm.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                let tx = self.tx.get_or_insert_with(Tx::default);
                tx.owe(None, AMQPMethod::SelectOk(amqp_tx::SelectOk {}));
            }
            AMQPMethod::Commit(_) => {
                let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
                let ops = std::mem::take(&mut tx.ops);
                tx.commits += 1;
                let seq = tx.commits;
                self.commit(ctx, seq, ops).await;
            }
            AMQPMethod::Rollback(_) => {
                let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
                let back = tx.take_settlements();
                tx.ops.clear();
                tx.owe(None, AMQPMethod::RollbackOk(amqp_tx::RollbackOk {}));
                for (tag, entry) in back {
                    self.unacked.restore(tag, entry);
                }
            }
            _ => {
                return Err(AmqpError::command_invalid(
                    "unexpected tx method from the client",
                ))
            }
        }
        self.flush_tx(ctx);
        Ok(())
    }

    /// Hands commit `seq`'s publishes to their queues and settles its deliveries, in the order
    /// they arrived; mandatory publishes that reach nothing come back as basic.return now,
    /// before tx.commit-ok.
    async fn commit(&mut self, ctx: &mut ConnCtx, seq: u64, ops: Vec<Op>) {
        let stored: usize = ops
            .iter()
            .map(|op| match op {
                Op::Publish {
                    message,
                    destination: Destination::Queues(queues),
                    ..
                } if message.persistent() => queues.iter().filter(|q| q.stores_messages()).count(),
                _ => 0,
            })
            .sum();
        let mut guards = guards_for(&ctx.handle, self.id, self.epoch, seq, stored);
        for op in ops {
            match op {
                Op::Publish {
                    message,
                    mandatory,
                    destination: Destination::Queues(queues),
                } => {
                    if queues.is_empty() {
                        if mandatory {
                            ctx.out.return_unroutable(self.id, &message);
                        }
                        continue;
                    }
                    let persistent = message.persistent();
                    for q in queues {
                        let guard: Option<ConfirmGuard> = if persistent && q.stores_messages() {
                            guards.pop()
                        } else {
                            None
                        };
                        // A queue deleted since the publish drops the message (and its guard).
                        let _ = q.publish(message.clone(), guard).await;
                    }
                }
                Op::Publish {
                    message,
                    mandatory,
                    destination: Destination::Reply(to),
                } => send_reply(ctx, self.id, to, message, mandatory),
                Op::Settle { how, entries } => {
                    let entries: Vec<Unacked> = entries.into_iter().map(|(_, e)| e).collect();
                    self.settle(&entries);
                    for (queue, ids) in group_by_queue(entries) {
                        let cmd = match how {
                            Settle::Ack => QueueCmd::Ack(ids),
                            Settle::Requeue => QueueCmd::Requeue {
                                ids,
                                delivered: true,
                            },
                            Settle::Discard => QueueCmd::Discard(ids),
                        };
                        let _ = queue.send(cmd).await;
                    }
                }
            }
        }
        if let Some(tx) = &mut self.tx {
            let waiting_for = (stored > 0).then_some(seq);
            tx.owe(waiting_for, AMQPMethod::CommitOk(amqp_tx::CommitOk {}));
        }
    }

    /// A publish in a transaction, checked and routed: kept until commit.
    pub(super) fn tx_publish(
        &mut self,
        message: Arc<Message>,
        mandatory: bool,
        destination: Destination,
    ) {
        if let Some(tx) = &mut self.tx {
            tx.ops.push(Op::Publish {
                message,
                mandatory,
                destination,
            });
        }
    }

    /// basic.ack, nack or reject in a transaction: the deliveries leave the unacked set now (an
    /// unknown tag is a 406 now) and are settled at commit.
    pub(super) fn tx_settle(
        &mut self,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> AmqpResult<()> {
        let entries = self.unacked.take(tag, multiple).ok_or_else(|| {
            AmqpError::precondition_failed(format_args!("unknown delivery tag {tag}"))
        })?;
        let how = match requeue {
            None => Settle::Ack,
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Discard,
        };
        if let Some(tx) = &mut self.tx {
            tx.ops.push(Op::Settle { how, entries });
        }
        Ok(())
    }

    /// Commit `seq` is on disk (or failed to be stored: the channel is closed with 406).
    pub(super) fn tx_stored(&mut self, seq: u64, ok: bool) -> AmqpResult<()> {
        match &mut self.tx {
            Some(tx) => tx.stored(seq, ok),
            None => Ok(()),
        }
    }

    /// Writes the tx replies that no longer wait for the disk, in order.
    pub(super) fn flush_tx(&mut self, ctx: &mut ConnCtx) {
        let Some(tx) = &mut self.tx else {
            return;
        };
        while tx.has_news() {
            if let Some(owed) = tx.owed.pop_front() {
                ctx.out.method(self.id, AMQPClass::Tx(owed.reply));
            }
        }
    }

    /// The channel is going away: deliveries settled in the open transaction are unacked
    /// again (and so requeued with the rest); its publishes are dropped.
    pub(super) fn tx_release(&mut self) {
        if let Some(tx) = &mut self.tx {
            let back = tx.take_settlements();
            tx.ops.clear();
            for (tag, entry) in back {
                self.unacked.restore(tag, entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(tx: &mut Tx) -> Vec<&'static str> {
        let mut out = Vec::new();
        while tx.has_news() {
            if let Some(owed) = tx.owed.pop_front() {
                out.push(match owed.reply {
                    AMQPMethod::SelectOk(_) => "select-ok",
                    AMQPMethod::CommitOk(_) => "commit-ok",
                    AMQPMethod::RollbackOk(_) => "rollback-ok",
                    _ => "other",
                });
            }
        }
        out
    }

    #[test]
    fn replies_wait_in_order_behind_a_commit_on_its_way_to_disk() {
        let mut tx = Tx::default();
        tx.owe(None, AMQPMethod::SelectOk(amqp_tx::SelectOk {}));
        tx.owe(Some(1), AMQPMethod::CommitOk(amqp_tx::CommitOk {}));
        tx.owe(None, AMQPMethod::CommitOk(amqp_tx::CommitOk {}));
        assert_eq!(replies(&mut tx), ["select-ok"]);
        tx.stored(2, true).unwrap();
        assert!(replies(&mut tx).is_empty());
        tx.stored(1, true).unwrap();
        assert_eq!(replies(&mut tx), ["commit-ok", "commit-ok"]);
    }

    #[test]
    fn a_commit_that_failed_to_store_is_a_406() {
        let mut tx = Tx::default();
        tx.owe(Some(1), AMQPMethod::CommitOk(amqp_tx::CommitOk {}));
        let e = tx.stored(1, false).unwrap_err();
        assert_eq!(e.text, "PRECONDITION_FAILED - partial tx completion");
        assert_eq!((e.class_id, e.method_id), (90, 20));
    }
}
