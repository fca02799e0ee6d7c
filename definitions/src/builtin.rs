//! What RabbitMQ provides without being declared: predeclared exchanges, the known exchange
//! and queue types, and the order in which an import applies each kind of object.

/// Exchanges that exist implicitly in every vhost, with their types. A definitions file
/// may bind to and from them without declaring them (except the default exchange `""`,
/// which accepts no explicit bindings).
pub const PREDECLARED_EXCHANGES: &[(&str, &str)] = &[
    ("", "direct"),
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
    ("amq.rabbitmq.trace", "topic"),
    ("amq.rabbitmq.log", "topic"),
];

/// Whether `name` is one of the [`PREDECLARED_EXCHANGES`].
pub fn is_predeclared_exchange(name: &str) -> bool {
    PREDECLARED_EXCHANGES
        .iter()
        .any(|(known, _)| *known == name)
}

/// Exchange types accepted by default validation: the four AMQP types plus the
/// delayed-message plugin's `x-delayed-message` (which takes `x-delayed-type`).
///
/// Pass a longer list in [`ValidationOptions::exchange_types`](crate::ValidationOptions)
/// when a broker supports more (e.g. `x-consistent-hash`).
pub const KNOWN_EXCHANGE_TYPES: &[&str] = &["direct", "fanout", "topic", "headers", DELAYED];

/// The delayed-message plugin's exchange type; it routes like its `x-delayed-type`.
pub(crate) const DELAYED: &str = "x-delayed-message";

/// Queue types, for a queue's `type`, `x-queue-type` and a vhost's `default_queue_type`.
pub const QUEUE_TYPES: &[&str] = &["classic", "quorum", "stream"];

/// Values of a policy's `apply-to`.
pub const POLICY_APPLY_TO: &[&str] = &[
    "queues",
    "exchanges",
    "all",
    "classic_queues",
    "quorum_queues",
    "streams",
];

/// One top-level list of a definitions document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `users`
    Users,
    /// `vhosts`
    Vhosts,
    /// `permissions`
    Permissions,
    /// `topic_permissions`
    TopicPermissions,
    /// `parameters`
    Parameters,
    /// `global_parameters`
    GlobalParameters,
    /// `policies`
    Policies,
    /// `queues`
    Queues,
    /// `exchanges`
    Exchanges,
    /// `bindings`
    Bindings,
}

impl Category {
    /// The top-level JSON key of this list.
    pub fn key(self) -> &'static str {
        match self {
            Category::Users => "users",
            Category::Vhosts => "vhosts",
            Category::Permissions => "permissions",
            Category::TopicPermissions => "topic_permissions",
            Category::Parameters => "parameters",
            Category::GlobalParameters => "global_parameters",
            Category::Policies => "policies",
            Category::Queues => "queues",
            Category::Exchanges => "exchanges",
            Category::Bindings => "bindings",
        }
    }
}

/// The order in which RabbitMQ applies a definitions import (`apply_defs/3` in
/// `deps/rabbit/src/rabbit_definitions.erl`):
///
/// 1. users, 2. vhosts (then vhost queue limits are checked), 3. permissions,
/// 4. topic permissions, 5. exchanges, 6. global parameters, 7. policies (one at a time, so
///    queues see policy changes in order), 8. parameters, 9. queues, 10. bindings.
///
/// Each step only depends on earlier ones: permissions need users and vhosts, bindings
/// need their exchanges and queues. A broker that applies a document in this order sees
/// the same intermediate states as RabbitMQ.
pub const RABBITMQ_IMPORT_ORDER: [Category; 10] = [
    Category::Users,
    Category::Vhosts,
    Category::Permissions,
    Category::TopicPermissions,
    Category::Exchanges,
    Category::GlobalParameters,
    Category::Policies,
    Category::Parameters,
    Category::Queues,
    Category::Bindings,
];
