//! A virtual host: its exchanges, queues and bindings. Routing reads an immutable snapshot
//! (`Topology`) swapped atomically on every topology change, so publishing takes no lock.
//! Changes are serialised by one mutex that is held only while the next snapshot is built.

use crate::defs::{json_to_table, normalize_table, table_to_json};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Bindings, ExchangeKind};
use crate::queue::storage::QueueStorage;
use crate::queue::{self, QueueRef, QueueShared};
use crate::store::meta::VhostTopology;
use crate::store::Persistence;
use amq_protocol::types::{AMQPValue, FieldTable};
use arc_swap::{ArcSwap, Guard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use warren_definitions as defs_model;

static NEXT_QUEUE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub bindings: Bindings<QueueRef>,
}

impl Exchange {
    /// The default exchange and `amq.*` ones: they cannot be declared (non-passively) or deleted.
    pub fn is_reserved(&self) -> bool {
        is_reserved_name(&self.name)
    }
}

/// Durable exchanges outlive the broker, except auto-delete ones and the predeclared ones
/// (which every vhost gets anyway).
fn exchange_persisted(x: &Exchange) -> bool {
    x.durable && !x.auto_delete && !is_reserved_name(&x.name)
}

fn is_reserved_name(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// RabbitMQ's 403 for declaring, deleting or binding to the default exchange.
fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

/// One immutable view of a vhost's topology.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub exchanges: HashMap<String, Arc<Exchange>>,
    pub queues: HashMap<String, QueueRef>,
}

impl Topology {
    /// Appends the queues `exchange` routes this message to. The default exchange ("")
    /// delivers to the queue named by the routing key.
    pub fn route(
        &self,
        exchange: &Exchange,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<QueueRef>,
    ) {
        if exchange.name.is_empty() {
            if let Some(q) = self.queues.get(routing_key) {
                out.push(q.clone());
            }
        } else {
            exchange.bindings.route(routing_key, headers, out);
        }
    }
}

/// What queue.declare asks for.
#[derive(Debug, Clone)]
pub struct QueueDeclare {
    pub name: String,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The broker generated the name (`amq.gen-…`), so the reserved-prefix rule does not apply.
    pub server_named: bool,
}

/// What exchange.declare asks for.
#[derive(Debug, Clone)]
pub struct ExchangeDeclare {
    pub name: String,
    pub kind: String,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

pub struct VHost {
    pub name: String,
    persistence: Arc<Persistence>,
    /// The metadata version holding this vhost's latest durable change.
    meta_pending: AtomicU64,
    snapshot: ArcSwap<Topology>,
    /// Serialises topology changes. A std mutex: it is held only while a new snapshot is
    /// built (no `.await` inside), and never on the publish path.
    write: Mutex<()>,
}

impl std::fmt::Debug for VHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VHost").field("name", &self.name).finish()
    }
}

/// Queue arguments RabbitMQ checks for equivalence on redeclare.
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

impl VHost {
    /// A vhost with the predeclared exchanges: "", amq.direct, amq.fanout, amq.topic,
    /// amq.headers and amq.match.
    pub fn new(name: &str, persistence: Arc<Persistence>) -> Arc<VHost> {
        let mut topology = Topology::default();
        for (xname, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            topology.exchanges.insert(
                xname.to_string(),
                Arc::new(Exchange {
                    name: xname.to_string(),
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::default(),
                    bindings: Bindings::new(kind),
                }),
            );
        }
        Arc::new(VHost {
            name: name.to_string(),
            persistence,
            meta_pending: AtomicU64::new(0),
            snapshot: ArcSwap::from_pointee(topology),
            write: Mutex::new(()),
        })
    }

    /// The current routing snapshot (cheap; no lock).
    pub fn topology(&self) -> Guard<Arc<Topology>> {
        self.snapshot.load()
    }

    /// Builds the next snapshot from the current one under the write mutex. The closure also
    /// says whether durable topology changed; if so the metadata store gets the vhost's new
    /// durable topology (still under the mutex, so it never sees an older one after a newer).
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Topology, &mut bool) -> AmqpResult<T>,
    ) -> AmqpResult<T> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Topology::clone(&self.snapshot.load());
        let mut durable_change = false;
        let result = f(&mut next, &mut durable_change)?;
        if durable_change {
            let version = self
                .persistence
                .meta
                .set_vhost_topology(&self.name, self.durable_topology(&next));
            self.meta_pending.fetch_max(version, Ordering::AcqRel);
        }
        self.snapshot.store(Arc::new(next));
        Ok(result)
    }

    /// Waits until the metadata store has this vhost's latest durable topology on disk.
    /// Called before a durable declare/delete/bind is answered.
    pub async fn sync_metadata(&self) -> AmqpResult<()> {
        let version = self.meta_pending.load(Ordering::Acquire);
        self.persistence.meta.persist(version).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the metadata file");
            AmqpError::internal_error("cannot write the broker's metadata to disk")
        })
    }

    /// The durable part of a topology in definitions form: what survives a restart.
    fn durable_topology(&self, topo: &Topology) -> VhostTopology {
        let mut t = VhostTopology::default();
        for x in topo.exchanges.values() {
            if exchange_persisted(x) {
                t.exchanges.push(defs_model::Exchange {
                    name: x.name.clone(),
                    vhost: self.name.clone(),
                    kind: x.kind.name().to_string(),
                    durable: true,
                    auto_delete: false,
                    internal: x.internal,
                    arguments: table_to_json(&x.arguments),
                    ..Default::default()
                });
            }
            if exchange_persisted(x) || (x.name.starts_with("amq.")) {
                for (q, key, args) in x.bindings.iter() {
                    if q.stores_messages() {
                        t.bindings.push(defs_model::Binding {
                            source: x.name.clone(),
                            vhost: self.name.clone(),
                            destination: q.name.clone(),
                            destination_type: defs_model::DestinationType::Queue,
                            routing_key: key.to_string(),
                            arguments: table_to_json(args),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        for q in topo.queues.values() {
            if q.stores_messages() {
                t.queues.push(defs_model::Queue {
                    name: q.name.clone(),
                    vhost: self.name.clone(),
                    durable: true,
                    auto_delete: false,
                    arguments: table_to_json(&q.arguments),
                    ..Default::default()
                });
            }
        }
        t.exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        t.queues.sort_by(|a, b| a.name.cmp(&b.name));
        t.bindings.sort_by(|a, b| {
            (&a.source, &a.destination, &a.routing_key).cmp(&(
                &b.source,
                &b.destination,
                &b.routing_key,
            ))
        });
        t
    }

    /// Re-creates this vhost's durable topology from the metadata document at startup
    /// (recovering each durable queue's messages). Entries that no longer make sense are
    /// logged and skipped.
    pub fn restore(self: &Arc<Self>, doc: &warren_definitions::Definitions) {
        let ours = |vhost: &str| vhost == self.name || (vhost.is_empty() && self.name == "/");
        for x in doc.exchanges.iter().filter(|x| ours(&x.vhost)) {
            let req = ExchangeDeclare {
                name: x.name.clone(),
                kind: x.kind.clone(),
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: json_to_table(&x.arguments),
            };
            if let Err(e) = self.declare_exchange(&req) {
                tracing::warn!(exchange = %x.name, error = %e, "exchange not restored");
            }
        }
        for q in doc.queues.iter().filter(|q| ours(&q.vhost)) {
            let req = QueueDeclare {
                name: q.name.clone(),
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: json_to_table(&q.arguments),
                server_named: true,
            };
            if let Err(e) = self.declare_queue(&req, 0) {
                tracing::warn!(queue = %q.name, error = %e, "queue not restored");
            }
        }
        for b in doc.bindings.iter().filter(|b| ours(&b.vhost)) {
            if b.destination_type != defs_model::DestinationType::Queue {
                tracing::warn!(source = %b.source, destination = %b.destination, "exchange-to-exchange binding not restored (not supported yet)");
                continue;
            }
            let args = json_to_table(&b.arguments);
            if let Err(e) = self.bind_queue(&b.destination, &b.source, &b.routing_key, &args, 0) {
                tracing::warn!(source = %b.source, queue = %b.destination, error = %e, "binding not restored");
            }
        }
    }

    /// The stored queues of this vhost (to tell the store which directories are live).
    pub fn stored_queue_names(&self) -> Vec<String> {
        self.topology()
            .queues
            .values()
            .filter(|q| q.stores_messages())
            .map(|q| q.name.clone())
            .collect()
    }

    pub fn declare_exchange(&self, req: &ExchangeDeclare) -> AmqpResult<()> {
        let existing = self.topology().exchanges.get(&req.name).cloned();
        // rabbitmq-compat: the default exchange cannot be declared, not even passively
        // (`check_not_default_exchange` in rabbit_channel.erl).
        if req.passive {
            if req.name.is_empty() {
                return Err(default_exchange_refused());
            }
            return match existing {
                Some(_) => Ok(()),
                None => Err(AmqpError::no_exchange(&req.name, &self.name)),
            };
        }
        // rabbitmq-compat: an unknown exchange type is a connection error (503), checked first.
        let kind = ExchangeKind::from_name(&req.kind).ok_or_else(|| {
            AmqpError::command_invalid(format_args!("unknown exchange type '{}'", req.kind))
        })?;
        if req.name.is_empty() {
            return Err(default_exchange_refused());
        }
        // rabbitmq-compat: the reserved `amq.` prefix only refuses *creating* an exchange; an
        // equivalent redeclare of an existing `amq.*` exchange succeeds (as in RabbitMQ).
        if let Some(x) = existing {
            return self.check_exchange_equivalence(&x, kind, req);
        }
        if is_reserved_name(&req.name) {
            return Err(AmqpError::access_refused(format_args!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                req.name
            )));
        }
        self.update(|topo, durable_change| {
            if let Some(x) = topo.exchanges.get(&req.name) {
                return self.check_exchange_equivalence(x, kind, req);
            }
            let x = Exchange {
                name: req.name.clone(),
                kind,
                durable: req.durable,
                auto_delete: req.auto_delete,
                internal: req.internal,
                arguments: req.arguments.clone(),
                bindings: Bindings::new(kind),
            };
            *durable_change = exchange_persisted(&x);
            topo.exchanges.insert(req.name.clone(), Arc::new(x));
            Ok(())
        })
    }

    fn check_exchange_equivalence(
        &self,
        x: &Exchange,
        kind: ExchangeKind,
        req: &ExchangeDeclare,
    ) -> AmqpResult<()> {
        let mismatch = |arg: &str,
                        received: &dyn std::fmt::Display,
                        current: &dyn std::fmt::Display| {
            Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
                x.name, self.name
            )))
        };
        if x.kind != kind {
            return mismatch("type", &kind.name(), &x.kind.name());
        }
        if x.durable != req.durable {
            return mismatch("durable", &req.durable, &x.durable);
        }
        if x.auto_delete != req.auto_delete {
            return mismatch("auto_delete", &req.auto_delete, &x.auto_delete);
        }
        if x.internal != req.internal {
            return mismatch("internal", &req.internal, &x.internal);
        }
        // rabbitmq-compat: of an exchange's arguments only `alternate-exchange` must match
        // (`rabbit_exchange:assert_args_equivalence`).
        let key = "alternate-exchange";
        let received = req.arguments.inner().get(key);
        let current = x.arguments.inner().get(key);
        if !args_equivalent(received, current) {
            return Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{key}' for exchange '{}' in vhost '{}': received {} but current is {}",
                x.name,
                self.name,
                describe_arg(received, current.is_none()),
                describe_arg(current, received.is_none()),
            )));
        }
        Ok(())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if is_reserved_name(name) {
            // rabbitmq-compat: `check_exchange_deletion` in rabbit_channel.erl.
            return Err(AmqpError::access_refused(format_args!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        self.update(|topo, durable_change| {
            // rabbitmq-compat: deleting a missing exchange succeeds (idempotent delete).
            let Some(x) = topo.exchanges.get(name) else {
                return Ok(());
            };
            if if_unused && !x.bindings.is_empty() {
                return Err(AmqpError::precondition_failed(format_args!(
                    "exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            *durable_change = exchange_persisted(x);
            topo.exchanges.remove(name);
            Ok(())
        })
    }

    /// Declares (or finds) a queue. Returns the queue and whether it was created.
    pub fn declare_queue(
        self: &Arc<Self>,
        req: &QueueDeclare,
        conn_id: u64,
    ) -> AmqpResult<(QueueRef, bool)> {
        if let Some(q) = self.topology().queues.get(&req.name).cloned() {
            self.check_queue_reuse(&q, req, conn_id)?;
            return Ok((q, false));
        }
        if req.passive {
            return Err(AmqpError::no_queue(&req.name, &self.name));
        }
        if req.name.starts_with("amq.") && !req.server_named {
            return Err(AmqpError::access_refused(format_args!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                req.name
            )));
        }
        self.update(|topo, durable_change| {
            if let Some(q) = topo.queues.get(&req.name) {
                self.check_queue_reuse(q, req, conn_id)?;
                return Ok((q.clone(), false));
            }
            // rabbitmq-compat: exclusive and auto-delete queues do not outlive the broker even
            // when durable, so only the rest get a store.
            let stored = req.durable && !req.exclusive && !req.auto_delete;
            let storage = if stored {
                Some(self.open_store(&req.name)?)
            } else {
                None
            };
            let q = queue::spawn(
                |tx| QueueShared {
                    id: NEXT_QUEUE_ID.fetch_add(1, Ordering::Relaxed),
                    name: req.name.clone(),
                    vhost: self.name.clone(),
                    durable: req.durable,
                    exclusive_owner: req.exclusive.then_some(conn_id),
                    auto_delete: req.auto_delete,
                    arguments: req.arguments.clone(),
                    stored,
                    tx,
                },
                self.clone(),
                storage,
                self.persistence.budget.clone(),
                self.persistence.paging.clone(),
            );
            topo.queues.insert(req.name.clone(), q.clone());
            *durable_change = stored;
            Ok((q, true))
        })
    }

    /// Opens (and recovers) a durable queue's store.
    fn open_store(&self, queue: &str) -> AmqpResult<(QueueStorage, Vec<crate::store::Recovered>)> {
        let (store, recovered, issues) = self
            .persistence
            .store
            .open_queue(&self.name, queue, self.persistence.budget.available())
            .map_err(|e| {
                tracing::error!(queue, vhost = %self.name, error = %e, "cannot open the queue's store");
                AmqpError::internal_error(format_args!(
                    "cannot open the store of queue '{queue}' in vhost '{}'",
                    self.name
                ))
            })?;
        for issue in issues {
            tracing::warn!(
                queue,
                vhost = %self.name,
                file = %issue.file.display(),
                offset = issue.offset,
                reason = %issue.reason,
                "damaged record skipped during recovery"
            );
        }
        if !recovered.is_empty() {
            tracing::info!(queue, vhost = %self.name, messages = recovered.len(), "recovered messages");
        }
        let storage = QueueStorage::new(
            store,
            self.persistence.syncer.clone(),
            self.persistence.alarm.clone(),
        );
        Ok((storage, recovered))
    }

    fn check_queue_reuse(&self, q: &QueueRef, req: &QueueDeclare, conn_id: u64) -> AmqpResult<()> {
        let locked =
            !q.accessible_by(conn_id) || (req.exclusive && !req.passive && !q.is_exclusive());
        if locked {
            return Err(self.locked(&q.name));
        }
        if req.passive {
            return Ok(());
        }
        let mismatch = |arg: &str,
                        received: &dyn std::fmt::Display,
                        current: &dyn std::fmt::Display| {
            Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                q.name, self.name
            )))
        };
        if q.durable != req.durable {
            return mismatch("durable", &req.durable, &q.durable);
        }
        if q.auto_delete != req.auto_delete {
            return mismatch("auto_delete", &req.auto_delete, &q.auto_delete);
        }
        for key in EQUIVALENCE_ARGS {
            let received = req.arguments.inner().get(*key);
            let current = q.arguments.inner().get(*key);
            if !args_equivalent(received, current) {
                // Argument values carry their own quoting (RabbitMQ's `rabbit_misc:val/1`).
                return Err(AmqpError::precondition_failed(format_args!(
                    "inequivalent arg '{key}' for queue '{}' in vhost '{}': received {} but current is {}",
                    q.name,
                    self.name,
                    describe_arg(received, current.is_none()),
                    describe_arg(current, received.is_none()),
                )));
            }
        }
        Ok(())
    }

    /// RabbitMQ's 405 text for a queue owned by another connection.
    pub fn locked(&self, queue: &str) -> AmqpError {
        AmqpError::resource_locked(format_args!(
            "cannot obtain exclusive access to locked queue '{queue}' in vhost '{}'. It could be \
             originally declared on another connection or the exclusive property value does not \
             match that of the original declaration.",
            self.name
        ))
    }

    /// Finds a queue that connection `conn_id` may use (404 missing, 405 another's exclusive).
    pub fn queue(&self, name: &str, conn_id: u64) -> AmqpResult<QueueRef> {
        let q = self
            .topology()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| AmqpError::no_queue(name, &self.name))?;
        if !q.accessible_by(conn_id) {
            return Err(self.locked(name));
        }
        Ok(q)
    }

    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        self.change_binding(queue, exchange, conn_id, |x, q| {
            x.bindings
                .bind(q, routing_key, &normalize_table(arguments))
                .map(|_| ())
        })
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        self.change_binding(queue, exchange, conn_id, |x, q| {
            // rabbitmq-compat: unbinding a binding that does not exist succeeds.
            x.bindings
                .unbind(&q, routing_key, &normalize_table(arguments));
            Ok(())
        })
    }

    fn change_binding(
        &self,
        queue: &str,
        exchange: &str,
        conn_id: u64,
        change: impl FnOnce(&mut Exchange, QueueRef) -> AmqpResult<()>,
    ) -> AmqpResult<()> {
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        let q = self.queue(queue, conn_id)?;
        self.update(|topo, durable_change| {
            let x = topo
                .exchanges
                .get_mut(exchange)
                .ok_or_else(|| AmqpError::no_exchange(exchange, &self.name))?;
            let had_bindings = !x.bindings.is_empty();
            let x = Arc::make_mut(x);
            *durable_change =
                q.stores_messages() && (exchange_persisted(x) || x.name.starts_with("amq."));
            change(x, q)?;
            if had_bindings && x.bindings.is_empty() && x.auto_delete {
                topo.exchanges.remove(exchange);
            }
            Ok(())
        })
    }

    /// Removes a queue (already stopped, or stopping) from the topology: its bindings go, and
    /// auto-delete exchanges left without bindings go with them.
    pub fn forget_queue(&self, q: &QueueRef) {
        let _ = self.update(|topo, durable_change| {
            if topo.queues.get(&q.name) == Some(q) {
                topo.queues.remove(&q.name);
                *durable_change = q.stores_messages();
            }
            let mut emptied = Vec::new();
            for x in topo.exchanges.values_mut() {
                if x.bindings.contains_destination(q) {
                    let x = Arc::make_mut(x);
                    x.bindings.remove_destination(q);
                    if x.bindings.is_empty() && x.auto_delete {
                        emptied.push(x.name.clone());
                    }
                }
            }
            for name in emptied {
                topo.exchanges.remove(&name);
            }
            Ok(())
        });
    }
}

/// rabbitmq-compat: `rabbit_misc:assert_args_equivalence/4` compares integers of any width
/// (and float with double) by value, everything else by type and value.
fn args_equivalent(a: Option<&AMQPValue>, b: Option<&AMQPValue>) -> bool {
    fn int(v: &AMQPValue) -> Option<i128> {
        match v {
            AMQPValue::ShortShortInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortShortUInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortUInt(i) => Some(i128::from(*i)),
            AMQPValue::LongInt(i) => Some(i128::from(*i)),
            AMQPValue::LongUInt(i) => Some(i128::from(*i)),
            AMQPValue::LongLongInt(i) => Some(i128::from(*i)),
            _ => None,
        }
    }
    fn float(v: &AMQPValue) -> Option<f64> {
        match v {
            AMQPValue::Float(f) => Some(f64::from(*f)),
            AMQPValue::Double(f) => Some(*f),
            _ => None,
        }
    }
    match (a, b) {
        (Some(x), Some(y)) => match (int(x), int(y), float(x), float(y)) {
            (Some(i), Some(j), _, _) => i == j,
            (_, _, Some(f), Some(g)) => f == g,
            _ => x == y,
        },
        (None, None) => true,
        _ => false,
    }
}

/// An argument in an equivalence error, as RabbitMQ's `rabbit_misc:val/1` shows it: `none`
/// when absent; `'10'` when both sides are set; `the value '10' of type 'long'` when only
/// this side is (`other_missing`).
fn describe_arg(v: Option<&AMQPValue>, other_missing: bool) -> String {
    use crate::exchange::erl_term::{rabbit_type_name, ErlTerm};
    let Some(v) = v else {
        return "none".to_string();
    };
    // Erlang prints binaries with `~s` (their text) and other values with `~p`.
    let value = match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => ErlTerm(other).to_string(),
    };
    if other_missing {
        format!("the value '{value}' of type '{}'", rabbit_type_name(v))
    } else {
        format!("'{value}'")
    }
}
