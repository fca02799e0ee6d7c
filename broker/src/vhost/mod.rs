//! A virtual host: its exchanges, queues and bindings. Routing reads an immutable snapshot
//! (`Topology`) swapped atomically on every topology change, so publishing takes no lock.
//! Changes are serialised by one mutex that is held only while the next snapshot is built.

use crate::defs::{json_to_table, normalize_table, table_to_json};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Bindings, ExchangeKind};
use crate::policy::Target;
use crate::queue::args::QueueArgs;
use crate::queue::storage::QueueStorage;
use crate::queue::{self, QueueCmd, QueueRef, QueueShared};
use crate::store::meta::VhostTopology;
use crate::store::Persistence;
use amq_protocol::types::{AMQPValue, FieldTable};
use arc_swap::{ArcSwap, Guard};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use warren_definitions as defs_model;

mod bindings;
mod delayed;
mod durable;
mod equivalence;

static NEXT_QUEUE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub bindings: Bindings<Destination>,
    /// How many of `bindings` lead to other exchanges (routing follows them only if any).
    pub exchange_bindings: usize,
    /// Where messages this exchange cannot route go: the `alternate-exchange` argument, else
    /// the exchange's policy's `alternate-exchange`.
    pub alternate: Option<Arc<str>>,
    /// Set for an `x-delayed-message` exchange (whose `kind` is its `x-delayed-type`): holds
    /// messages published with an `x-delay` (`crate::delayed`).
    pub delayed: Option<Arc<crate::delayed::DelayedExchange>>,
}

impl Exchange {
    fn new(name: &str, kind: ExchangeKind) -> Exchange {
        Exchange {
            name: name.to_string(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
            bindings: Bindings::new(kind),
            exchange_bindings: 0,
            alternate: None,
            delayed: None,
        }
    }

    /// The exchange's type as declared: `kind`'s name, or `x-delayed-message`.
    pub fn type_name(&self) -> &'static str {
        match self.delayed {
            Some(_) => crate::delayed::TYPE_NAME,
            None => self.kind.name(),
        }
    }

    /// The alternate exchange: the argument wins over the policy.
    fn find_alternate(
        arguments: &FieldTable,
        policies: &crate::policy::PolicySet,
        name: &str,
    ) -> Option<Arc<str>> {
        crate::defs::str_field(arguments, "alternate-exchange")
            .or_else(|| {
                policies
                    .effective(Target::Exchange, name)
                    .and_then(|p| p.get("alternate-exchange"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .map(Arc::from)
    }

    /// Whether routing a message through this exchange may read its headers (a headers
    /// exchange, or bindings or an alternate exchange that may lead to one).
    pub fn may_read_headers(&self) -> bool {
        self.kind == ExchangeKind::Headers || self.exchange_bindings > 0 || self.alternate.is_some()
    }
}

/// Where a binding leads: a queue, or another exchange of the same vhost (an
/// exchange-to-exchange binding, named because exchanges are replaced in each snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Queue(QueueRef),
    Exchange(Arc<str>),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => &q.name,
            Destination::Exchange(x) => x,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Destination::Queue(_) => "queue",
            Destination::Exchange(_) => "exchange",
        }
    }
}

/// A channel's scratch space for routing, reused across publishes so that routing allocates
/// nothing once warm. `queues` holds the result of the last `Topology::route`.
#[derive(Debug, Default)]
pub struct Routing {
    pub queues: Vec<QueueRef>,
    destinations: Vec<Destination>,
    /// Exchanges already routed through (by address in the snapshot), so cycles end.
    visited: Vec<usize>,
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
    pub exchanges: crate::FastMap<String, Arc<Exchange>>,
    pub queues: crate::FastMap<String, QueueRef>,
}

impl Topology {
    /// Fills `routing.queues` with the queues `exchange` routes this message to, each once.
    /// The default exchange ("") delivers to the queue named by the routing key. Bindings to
    /// other exchanges are followed transitively with the same routing key and headers; an
    /// exchange reached twice (a cycle, or two paths) routes once.
    pub fn route(
        &self,
        exchange: &Exchange,
        routing_key: &str,
        headers: Option<&FieldTable>,
        routing: &mut Routing,
    ) {
        routing.queues.clear();
        routing.destinations.clear();
        if exchange.name.is_empty() {
            if let Some(q) = self.queues.get(routing_key) {
                routing.queues.push(q.clone());
            }
            return;
        }
        exchange
            .bindings
            .route(routing_key, headers, &mut routing.destinations);
        if exchange.exchange_bindings == 0 {
            // Only queues, already one copy each.
            routing
                .queues
                .extend(routing.destinations.drain(..).filter_map(|d| match d {
                    Destination::Queue(q) => Some(q),
                    Destination::Exchange(_) => None,
                }));
        } else {
            routing.visited.clear();
            routing.visited.push(exchange as *const Exchange as usize);
            self.follow_exchanges(routing_key, headers, routing);
        }
        if routing.queues.is_empty() && exchange.alternate.is_some() {
            self.route_alternates(exchange, routing_key, headers, routing);
        }
    }

    /// Walks `routing.destinations`, following exchange destinations (each exchange once)
    /// and collecting each queue once.
    fn follow_exchanges(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        routing: &mut Routing,
    ) {
        let mut seen: HashSet<u64> = routing.queues.iter().map(|q| q.id).collect();
        let mut next = 0;
        while let Some(d) = routing.destinations.get(next).cloned() {
            next += 1;
            match d {
                Destination::Queue(q) => {
                    if seen.insert(q.id) {
                        routing.queues.push(q);
                    }
                }
                Destination::Exchange(name) => {
                    let Some(x) = self.exchanges.get(&*name) else {
                        continue;
                    };
                    let address = Arc::as_ptr(x) as usize;
                    if !routing.visited.contains(&address) {
                        routing.visited.push(address);
                        x.bindings
                            .route(routing_key, headers, &mut routing.destinations);
                    }
                }
            }
        }
        routing.destinations.clear();
    }

    /// rabbitmq-compat: a message its exchange routes nowhere goes to the exchange's alternate
    /// exchange, and on to that one's alternate if it routes nowhere either (each exchange
    /// tried once).
    fn route_alternates(
        &self,
        exchange: &Exchange,
        routing_key: &str,
        headers: Option<&FieldTable>,
        routing: &mut Routing,
    ) {
        let mut tried = vec![exchange as *const Exchange as usize];
        let mut current = exchange.alternate.clone();
        while let Some(name) = current {
            let Some(x) = self.exchanges.get(&*name) else {
                return;
            };
            let address = Arc::as_ptr(x) as usize;
            if tried.contains(&address) {
                return;
            }
            tried.push(address);
            routing.destinations.clear();
            x.bindings
                .route(routing_key, headers, &mut routing.destinations);
            routing.visited.clear();
            routing.visited.push(address);
            self.follow_exchanges(routing_key, headers, routing);
            if !routing.queues.is_empty() {
                return;
            }
            current = x.alternate.clone();
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
    /// The vhost's policies, compiled (replaced whole when they change).
    policies: ArcSwap<crate::policy::PolicySet>,
    /// Set once the vhost is deleted: no further topology changes.
    deleted: std::sync::atomic::AtomicBool,
    /// Serialises topology changes. A std mutex: it is held only while a new snapshot is
    /// built (no `.await` inside), and never on the publish path.
    write: Mutex<()>,
}

impl std::fmt::Debug for VHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VHost").field("name", &self.name).finish()
    }
}

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
            topology
                .exchanges
                .insert(xname.to_string(), Arc::new(Exchange::new(xname, kind)));
        }
        Arc::new(VHost {
            name: name.to_string(),
            persistence,
            meta_pending: AtomicU64::new(0),
            snapshot: ArcSwap::from_pointee(topology),
            policies: ArcSwap::from_pointee(crate::policy::PolicySet::default()),
            deleted: std::sync::atomic::AtomicBool::new(false),
            write: Mutex::new(()),
        })
    }

    /// The current routing snapshot (cheap; no lock).
    pub fn topology(&self) -> Guard<Arc<Topology>> {
        self.snapshot.load()
    }

    /// The vhost's compiled policies.
    pub fn policies(&self) -> Arc<crate::policy::PolicySet> {
        self.policies.load_full()
    }

    /// Replaces the policies with those of `all` that belong to this vhost; each queue gets
    /// its new effective settings.
    pub fn set_policies(&self, all: &[warren_definitions::Policy]) {
        let policies = Arc::new(crate::policy::PolicySet::compile(&self.name, all));
        self.policies.store(policies.clone());
        // A vhost being deleted refuses changes; its exchanges no longer matter.
        let _ = self.update(|topo, _| {
            for x in topo.exchanges.values_mut() {
                if x.name.is_empty() {
                    continue;
                }
                let alternate = Exchange::find_alternate(&x.arguments, &policies, &x.name);
                if x.alternate != alternate {
                    Arc::make_mut(x).alternate = alternate;
                }
            }
            Ok(())
        });
        for q in self.topology().queues.values() {
            // Validated when the queue was declared.
            if let Ok(args) = QueueArgs::from_arguments(&q.arguments, &q.name, &self.name) {
                let args =
                    args.with_policy(&q.arguments, policies.effective(Target::Queue, &q.name));
                q.send_detached(QueueCmd::Configure(Box::new(args)));
            }
        }
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
        if self.deleted.load(Ordering::Acquire) {
            return Err(AmqpError::new(
                crate::error::ReplyCode::ConnectionForced,
                format_args!("vhost '{}' is deleted", self.name),
            ));
        }
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

    pub fn declare_exchange(self: &Arc<Self>, req: &ExchangeDeclare) -> AmqpResult<()> {
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
        let delayed = req.kind == crate::delayed::TYPE_NAME;
        let kind = ExchangeKind::from_name(&req.kind);
        if kind.is_none() && !delayed {
            return Err(AmqpError::command_invalid(format_args!(
                "unknown exchange type '{}'",
                req.kind
            )));
        }
        if req.name.is_empty() {
            return Err(default_exchange_refused());
        }
        // rabbitmq-compat: the reserved `amq.` prefix only refuses *creating* an exchange; an
        // equivalent redeclare of an existing `amq.*` exchange succeeds (as in RabbitMQ).
        if let Some(x) = existing {
            return self.check_exchange_equivalence(&x, req);
        }
        if is_reserved_name(&req.name) {
            return Err(AmqpError::access_refused(format_args!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                req.name
            )));
        }
        // A new delayed exchange routes as its `x-delayed-type` says (validated as the plugin's
        // `validate/1` does, only on creation).
        let kind = match kind {
            Some(kind) => kind,
            None => crate::delayed::delayed_kind(&req.arguments)?,
        };
        self.update(|topo, durable_change| {
            if let Some(x) = topo.exchanges.get(&req.name) {
                return self.check_exchange_equivalence(x, req);
            }
            let mut x = Exchange {
                durable: req.durable,
                auto_delete: req.auto_delete,
                internal: req.internal,
                arguments: req.arguments.clone(),
                alternate: Exchange::find_alternate(&req.arguments, &self.policies(), &req.name),
                ..Exchange::new(&req.name, kind)
            };
            *durable_change = exchange_persisted(&x);
            if delayed {
                x.delayed = Some(self.new_delayed(&x.name, *durable_change)?);
            }
            topo.exchanges.insert(req.name.clone(), Arc::new(x));
            Ok(())
        })
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
            *durable_change = topo.remove_exchange(name);
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
        let args = QueueArgs::from_arguments(&req.arguments, &req.name, &self.name)?;
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
            let args = args.clone().with_policy(
                &req.arguments,
                self.policies().effective(Target::Queue, &req.name),
            );
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
                    rejects_publish: Default::default(),
                    consumer_timeout_ms: Default::default(),
                    large_bytes: tokio::sync::Semaphore::new(queue::MAILBOX_LARGE_KIB),
                    tx,
                },
                args,
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
}
