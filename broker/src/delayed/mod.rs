//! The delayed message exchange (`x-delayed-message`), compatible with RabbitMQ's community
//! plugin `rabbitmq_delayed_message_exchange`.
//!
//! Where it sits: an `x-delayed-message` exchange is an ordinary `vhost::Exchange` whose
//! bindings are those of its `x-delayed-type` (direct, fanout, topic or headers), plus a
//! `DelayedExchange` handle. A publish to it with a positive `x-delay` header does not route:
//! the channel hands the message to `DelayedExchange::hold` instead (`channel/delayed.rs`).
//! Once the delay has passed, the exchange's timer task routes it through the exchange's
//! bindings *as they are then* (`Topology::route` on the current snapshot) into queue
//! mailboxes, exactly as a publish would, with `x-delay` negated as the plugin does.
//!
//! Design, and why:
//! - **One timer task per delayed exchange**, sleeping until the earliest due time in a
//!   min-heap (`schedule.rs`, pure). Per exchange rather than per vhost because the exchange
//!   is the unit of creation, deletion and storage: deleting one stops its task and removes
//!   its files, and no other exchange's messages are looked at.
//! - **The held messages sit behind a std mutex** shared by publishers (connection tasks) and
//!   the timer task, rather than in an actor mailbox: `hold` is then synchronous, and deleting
//!   the exchange (under the vhost's topology mutex) can empty it and remove its files before
//!   a re-declare of the same name opens them again. The mutex is held for a heap push or pop
//!   and a buffered write, never across an `.await`.
//! - **Durability reuses the segment store** of durable queues (`store.rs`): a durable
//!   exchange (durable, not auto-delete) stores its persistent messages under
//!   `<data_dir>/delayed/`, a separate root so its directories never mix with queues' (and the
//!   queue store's clean-up at boot does not see them). The publisher's confirm is held by the
//!   group-commit thread until the record is fsynced. Transient messages and non-durable
//!   exchanges are held in memory only.
//! - **Recovery**: at boot the store hands back every stored message with its due time; the
//!   task does not route until the vhost has restored its bindings (`start`), then routes the
//!   overdue ones at once and the rest when due. Due times are wall-clock milliseconds (they
//!   must survive a restart), like the plugin's.
//! - Every held message is kept in memory (as the plugin keeps its Mnesia table in RAM), so
//!   the number of delayed messages is bounded by memory, not disk.
//!
//! rabbitmq-compat notes:
//! - A delayed publish routes to no queue at publish time, so with `mandatory` it is returned
//!   at once with 312 NO_ROUTE (plugin issues #7 and #136), and delivered later all the same.
//! - Only a publish *to* the delayed exchange is delayed. The plugin also delays a message
//!   that reaches the exchange through an exchange-to-exchange binding; Warren routes such a
//!   message through its bindings at once (the negated `x-delay` it delivers with is the
//!   plugin's guard against a second delay on such paths).
//! - The plugin's delayed publish reaches the alternate exchange at once (its route returns
//!   no queue; plugin issue #36); Warren's does not, it is routed when due.
//! - Routing after the delay starts a message's per-message TTL only then (it counts in the
//!   queue), as in RabbitMQ.
//! - Topic permissions are checked on a delayed exchange whose `x-delayed-type` is topic
//!   (its `kind` is `Topic`); RabbitMQ checks them only for exchanges of type `topic`.
//! - A stored message whose fsync fails is nacked but still held in memory (and delivered
//!   when due unless the broker restarts first).

pub mod header;
mod schedule;
mod store;

use crate::channel::confirm::ConfirmGuard;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::ExchangeKind;
use crate::message::Message;
use crate::queue::QueueRef;
use crate::store::Location;
use crate::vhost::{Routing, VHost};
use amq_protocol::types::{AMQPValue, FieldTable};
use schedule::Schedule;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use store::DelayedStore;

/// The exchange type's name.
pub const TYPE_NAME: &str = "x-delayed-message";

/// The argument naming the type whose routing the exchange borrows.
pub const TYPE_ARGUMENT: &str = "x-delayed-type";

/// The routing of a new `x-delayed-message` exchange, from its `x-delayed-type` argument.
///
/// rabbitmq-compat: the plugin's `validate/1` — a missing (or non-string) argument is a 406
/// channel error, `x-delayed-message` itself another 406, and an unknown type the same 503
/// connection error an unknown exchange type is (`rabbit_exchange:check_type`). Only a new
/// exchange is validated; a redeclare is compared like any other exchange.
pub fn delayed_kind(arguments: &FieldTable) -> AmqpResult<ExchangeKind> {
    let name = match arguments.inner().get(TYPE_ARGUMENT) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => {
            return Err(AmqpError::precondition_failed(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type",
            ))
        }
    };
    if name == TYPE_NAME {
        return Err(AmqpError::precondition_failed(
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        ));
    }
    ExchangeKind::from_name(&name)
        .ok_or_else(|| AmqpError::command_invalid(format_args!("unknown exchange type '{name}'")))
}

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A held message, and its record when stored.
#[derive(Debug)]
struct Held {
    message: Arc<Message>,
    stored: Option<(u64, Location)>,
}

struct State {
    schedule: Schedule<Held>,
    store: Option<DelayedStore>,
    /// False while recovered messages wait for the vhost to restore its bindings.
    started: bool,
    /// The exchange was deleted: nothing more is held or routed.
    deleted: bool,
}

struct Shared {
    exchange: String,
    /// Whether persistent messages are written to disk (a durable exchange).
    durable: bool,
    /// Publishers and the timer task share it (see the module doc for why a mutex).
    state: Mutex<State>,
    /// Wakes the timer task: an earlier message, the start, or deletion.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The delayed half of an `x-delayed-message` exchange, shared by every topology snapshot
/// holding the exchange. Dropping the last handle (the vhost went away, e.g. at shutdown)
/// stops the timer task but keeps the files; `delete` removes them.
pub struct DelayedExchange {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl std::fmt::Debug for DelayedExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedExchange")
            .field("exchange", &self.shared.exchange)
            .field("durable", &self.shared.durable)
            .finish_non_exhaustive()
    }
}

impl Drop for DelayedExchange {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DelayedExchange {
    /// Starts the exchange's timer task. `store` is the opened store of a durable exchange
    /// and what it recovered; recovered messages wait for `start` (the vhost's bindings are
    /// not restored yet), an exchange with none starts at once.
    pub fn spawn(
        vhost: Weak<VHost>,
        exchange: &str,
        store: Option<(DelayedStore, Vec<crate::store::Recovered>)>,
    ) -> Arc<DelayedExchange> {
        let mut schedule = Schedule::default();
        let durable = store.is_some();
        let store = store.map(|(mut store, recovered)| {
            for r in store.recover(recovered) {
                schedule.push(
                    r.due_ms,
                    Held {
                        message: r.message,
                        stored: Some((r.id, r.location)),
                    },
                );
            }
            store
        });
        let started = schedule.is_empty();
        let shared = Arc::new(Shared {
            exchange: exchange.to_string(),
            durable,
            state: Mutex::new(State {
                schedule,
                store,
                started,
                deleted: false,
            }),
            wake: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run(shared.clone(), vhost, stop.clone()));
        Arc::new(DelayedExchange { shared, stop })
    }

    /// Whether a confirm for this message waits for the disk (persistent, durable exchange).
    pub fn stores(&self, persistent: bool) -> bool {
        persistent && self.shared.durable
    }

    /// Holds `message` for `delay_ms`. `guard` (confirm mode, `stores` true) is dropped once
    /// the message is on disk; without a guard the publish is confirmed at once.
    pub fn hold(&self, message: Arc<Message>, delay_ms: u64, guard: Option<ConfirmGuard>) {
        let due_ms = now_ms().saturating_add(delay_ms);
        let mut state = self.shared.lock();
        if state.deleted {
            // Deleted since the publisher's snapshot was taken: dropped, as a message routed
            // to a queue deleted meanwhile is (the guard counts as done).
            return;
        }
        let stored = match (&mut state.store, message.persistent()) {
            (Some(store), true) => store.append(due_ms, &message, guard),
            _ => None,
        };
        if state.schedule.push(due_ms, Held { message, stored }) {
            self.shared.wake.notify_one();
        }
    }

    /// Routes recovered messages from now on (the vhost has restored its bindings).
    pub fn start(&self) {
        let mut state = self.shared.lock();
        if !state.started {
            state.started = true;
            self.shared.wake.notify_one();
        }
    }

    /// The exchange was deleted: pending messages are dropped with its files, and its timer
    /// task stops.
    pub fn delete(&self) {
        let store = {
            let mut state = self.shared.lock();
            state.deleted = true;
            state.schedule.clear();
            state.store.take()
        };
        if let Some(store) = store {
            store.destroy();
        }
        self.stop.cancel();
    }

    /// How many messages wait (the plugin's `messages_delayed`).
    pub fn messages_delayed(&self) -> usize {
        self.shared.lock().schedule.len()
    }

    /// Whether this handle belongs to the exchange whose timer task holds `shared`.
    fn is(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }
}

/// The timer task: routes what is due, then sleeps until the next due time, a wake-up, or
/// the stop.
async fn run(shared: Arc<Shared>, vhost: Weak<VHost>, stop: CancellationToken) {
    let mut routing = Routing::default();
    loop {
        let (due, next) = {
            let mut state = shared.lock();
            if state.deleted {
                return;
            }
            if state.started {
                let due = state.schedule.pop_due(now_ms());
                (due, state.schedule.next_due())
            } else {
                (Vec::new(), None)
            }
        };
        if !due.is_empty() {
            let Some(vhost) = vhost.upgrade() else {
                // The vhost is gone (shutdown): stored messages stay on disk.
                return;
            };
            let routed = deliver(&shared, &vhost, due, &mut routing).await;
            if let Some(store) = shared.lock().store.as_mut() {
                store.remove(&routed);
            }
            continue;
        }
        let wait = next.map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

/// Routes due messages through the exchange's current bindings; returns the records of
/// those handed on (or dropped because the exchange is gone), which the store may forget.
async fn deliver(
    shared: &Arc<Shared>,
    vhost: &VHost,
    due: Vec<Held>,
    routing: &mut Routing,
) -> Vec<(u64, Location)> {
    let mut routed = Vec::new();
    for held in due {
        let queues: Vec<QueueRef> = {
            // The snapshot guard is dropped before the sends below.
            let topology = vhost.topology();
            match topology.exchanges.get(&shared.exchange) {
                Some(x) if x.delayed.as_ref().is_some_and(|d| d.is(shared)) => {
                    let headers = if held.message.summary.has_headers && x.may_read_headers() {
                        held.message.headers()
                    } else {
                        None
                    };
                    topology.route(
                        x,
                        held.message.routing_key.as_str(),
                        headers.as_ref(),
                        routing,
                    );
                    routing.queues.drain(..).collect()
                }
                // Deleted (or replaced) meanwhile: the message goes with it.
                _ => Vec::new(),
            }
        };
        for q in queues {
            // A queue deleted since the snapshot drops the message.
            let _ = q.publish(held.message.clone(), None).await;
        }
        routed.extend(held.stored);
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn the_delayed_type_argument_picks_the_routing() {
        for name in ["direct", "fanout", "topic", "headers"] {
            let t = args(&[(TYPE_ARGUMENT, AMQPValue::LongString(name.into()))]);
            assert_eq!(delayed_kind(&t).map(|k| k.name()), Ok(name));
        }
        let short = args(&[(TYPE_ARGUMENT, AMQPValue::ShortString("topic".into()))]);
        assert_eq!(delayed_kind(&short), Ok(ExchangeKind::Topic));
    }

    #[test]
    fn a_missing_or_unusable_delayed_type_is_refused_as_the_plugin_does() {
        let missing = delayed_kind(&FieldTable::default()).unwrap_err();
        assert_eq!(missing.code.code(), 406);
        assert_eq!(
            missing.text,
            "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
        );
        let number = delayed_kind(&args(&[(TYPE_ARGUMENT, AMQPValue::LongInt(1))])).unwrap_err();
        assert_eq!(number.text, missing.text);
        let itself = args(&[(TYPE_ARGUMENT, AMQPValue::LongString(TYPE_NAME.into()))]);
        let itself = delayed_kind(&itself).unwrap_err();
        assert_eq!(itself.code.code(), 406);
        assert!(itself
            .text
            .ends_with("'x-delayed-message' can't be used for 'x-delayed-type'"));
        let unknown = args(&[(TYPE_ARGUMENT, AMQPValue::LongString("x-nope".into()))]);
        let unknown = delayed_kind(&unknown).unwrap_err();
        assert_eq!(unknown.code.code(), 503);
        assert_eq!(
            unknown.text,
            "COMMAND_INVALID - unknown exchange type 'x-nope'"
        );
    }
}
