//! The serde model of a definitions document: one struct per kind of object, fields named
//! exactly as RabbitMQ writes them, unknown fields kept in `extra` so they survive export.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A JSON object: `arguments` tables, policy `definition`s, `metadata`. Values keep their
/// JSON types (a TTL stays a number, a flag stays a boolean).
pub type JsonMap = serde_json::Map<String, Value>;

/// A whole definitions document, as written by `rabbitmqctl export_definitions` or
/// `GET /api/definitions`.
///
/// Every list defaults to empty and every version field to absent, because hand-written
/// files in the wild omit whatever they do not use. Top-level keys this model does not know
/// land in [`extra`](Definitions::extra) and are written back unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Definitions {
    /// Version of the node that wrote the file (older key, still written by RabbitMQ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    /// Version of the node that wrote the file (newer key; preferred when both are present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    /// Product name, e.g. `"RabbitMQ"` (written by the management plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Product version (written by the management plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Users of the internal authentication backend.
    #[serde(default)]
    pub users: Vec<User>,
    /// Virtual hosts.
    #[serde(default)]
    pub vhosts: Vec<Vhost>,
    /// Configure/write/read permissions of a user in a vhost.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Topic permissions of a user for one topic exchange in a vhost.
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermission>,
    /// Per-vhost runtime parameters (shovels, federation upstreams, limits…).
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Cluster-wide runtime parameters (`cluster_name`, …).
    #[serde(default)]
    pub global_parameters: Vec<GlobalParameter>,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// Exchanges (RabbitMQ's export leaves out the predeclared ones).
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// Bindings, exchange → queue and exchange → exchange.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Top-level keys this model does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A user of the internal authentication backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    /// User name.
    #[serde(default)]
    pub name: String,
    /// Base64 of salt ‖ hash; see [`crate::password`]. An empty string is a user who cannot
    /// log in with a password (RabbitMQ's `clear_password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// A cleartext password, which RabbitMQ's import accepts instead of `password_hash`
    /// (and hashes on import). Never written by an export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `rabbit_password_hashing_sha256` and friends; absent in files from before 3.6.
    /// Kept as text so an unknown module name round-trips and validation can report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing_algorithm: Option<String>,
    /// Tags such as `administrator`, `management`, `monitoring`.
    #[serde(default)]
    pub tags: Tags,
    /// Per-user limits (`max-connections`, `max-channels`). RabbitMQ writes `{}` or `[]`
    /// when there are none, so any JSON value is kept as it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A list of tags, written either as a JSON list (`["administrator","monitoring"]`, newer
/// RabbitMQ) or a comma-separated string (`"administrator,monitoring"`, older RabbitMQ).
///
/// The form read is the form written back, so an exported file diffs cleanly against its
/// source. Use [`Tags::names`] to read the tags whatever the form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    /// `["administrator", "monitoring"]`
    List(Vec<String>),
    /// `"administrator,monitoring"`
    Csv(String),
}

impl Default for Tags {
    fn default() -> Self {
        Tags::List(Vec::new())
    }
}

impl Tags {
    /// The tag names, trimmed, without empty entries (RabbitMQ trims each tag of a
    /// comma-separated string, so `"a, b"` is `a` and `b`).
    pub fn names(&self) -> Vec<&str> {
        let raw: Vec<&str> = match self {
            Tags::List(list) => list.iter().map(String::as_str).collect(),
            Tags::Csv(text) => text.split(',').collect(),
        };
        raw.into_iter()
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .collect()
    }

    /// Whether `tag` is one of the tags.
    pub fn contains(&self, tag: &str) -> bool {
        self.names().contains(&tag)
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }
}

/// A virtual host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Vhost {
    /// Vhost name, e.g. `/`.
    #[serde(default)]
    pub name: String,
    /// Description (top-level in some versions, inside `metadata` in others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Vhost tags (top-level in some versions, inside `metadata` in others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Queue type used when a client declares a queue without `x-queue-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
    /// Whether message tracing is on (read by RabbitMQ's import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<bool>,
    /// `{"description": …, "tags": […], "default_queue_type": …}` in 3.11 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonMap>,
    /// Vhost limits (`max-connections`, `max-queues`); `[]` when none, so any JSON value
    /// is kept as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// Permissions of one user in one vhost: three regular expressions over resource names.
/// A missing pattern defaults to `""`, which RabbitMQ treats as "matches nothing".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Permission {
    /// User name.
    #[serde(default)]
    pub user: String,
    /// Vhost name. Absent in a single-vhost export; see [`Definitions::fill_missing_vhost`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// Pattern for declare/delete.
    #[serde(default)]
    pub configure: String,
    /// Pattern for publish and the queue side of bind.
    #[serde(default)]
    pub write: String,
    /// Pattern for consume/get/purge and the exchange side of bind.
    #[serde(default)]
    pub read: String,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// Topic permissions of one user for one topic exchange: regular expressions over routing
/// keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopicPermission {
    /// User name.
    #[serde(default)]
    pub user: String,
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// The topic exchange these patterns apply to.
    #[serde(default)]
    pub exchange: String,
    /// Pattern for routing keys the user may publish with.
    #[serde(default)]
    pub write: String,
    /// Pattern for routing keys the user may bind with.
    #[serde(default)]
    pub read: String,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A per-vhost runtime parameter of some plugin component (`shovel`, `federation-upstream`,
/// `vhost-limits`, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Parameter {
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// Component, e.g. `shovel`.
    #[serde(default)]
    pub component: String,
    /// Parameter name.
    #[serde(default)]
    pub name: String,
    /// The component's value, any JSON.
    #[serde(default)]
    pub value: Value,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A cluster-wide runtime parameter (`cluster_name`, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GlobalParameter {
    /// Parameter name.
    #[serde(default)]
    pub name: String,
    /// Any JSON.
    #[serde(default)]
    pub value: Value,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A policy: a pattern over queue/exchange names and a definition applied to the matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// Policy name.
    #[serde(default)]
    pub name: String,
    /// Regular expression over queue/exchange names.
    #[serde(default)]
    pub pattern: String,
    /// `queues`, `exchanges`, `all`, `classic_queues`, `quorum_queues` or `streams`.
    /// Defaults to `all`, as RabbitMQ's import does.
    #[serde(rename = "apply-to", default = "default_apply_to")]
    pub apply_to: String,
    /// Keys such as `message-ttl`, `max-length`, `dead-letter-exchange`.
    #[serde(default)]
    pub definition: JsonMap,
    /// Higher wins when several policies match.
    #[serde(default)]
    pub priority: i64,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

fn default_apply_to() -> String {
    "all".to_owned()
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            vhost: String::new(),
            name: String::new(),
            pattern: String::new(),
            apply_to: default_apply_to(),
            definition: JsonMap::new(),
            priority: 0,
            extra: JsonMap::new(),
        }
    }
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// Queue name.
    #[serde(default)]
    pub name: String,
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// `classic`, `quorum` or `stream`; written by 3.9 and later, absent before.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
    /// Survives a restart. Defaults to `true`: definitions describe long-lived topology,
    /// and RabbitMQ's management UI and rabbitmqadmin default to durable too.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted when its last consumer goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// `x-` arguments, with their JSON types.
    #[serde(default)]
    pub arguments: JsonMap,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            name: String::new(),
            vhost: String::new(),
            queue_type: None,
            durable: true,
            auto_delete: false,
            arguments: JsonMap::new(),
            extra: JsonMap::new(),
        }
    }
}

/// An exchange.
///
/// rabbitmq-compat: RabbitMQ's import skips (with a warning) exchanges named `""` or
/// starting with `amq.`, since those are predeclared; a broker should do the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Exchange name.
    #[serde(default)]
    pub name: String,
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// Exchange type (`direct`, `fanout`, `topic`, `headers`, `x-delayed-message`, …).
    /// Missing means empty, which validation reports.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Survives a restart (defaults to `true`, like [`Queue::durable`]).
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted when its last binding goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// Only other exchanges may publish to it.
    #[serde(default)]
    pub internal: bool,
    /// `alternate-exchange`, `x-delayed-type`, …
    #[serde(default)]
    pub arguments: JsonMap,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            name: String::new(),
            vhost: String::new(),
            kind: String::new(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: JsonMap::new(),
            extra: JsonMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A binding from an exchange to a queue or to another exchange.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Binding {
    /// Source exchange.
    #[serde(default)]
    pub source: String,
    /// Vhost name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vhost: String,
    /// Destination queue or exchange.
    #[serde(default)]
    pub destination: String,
    /// Whether `destination` names a queue or an exchange.
    #[serde(default)]
    pub destination_type: DestinationType,
    /// Routing key (binding key).
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments (`x-match` and header values for headers exchanges).
    #[serde(default)]
    pub arguments: JsonMap,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// What a binding's `destination` names.
///
/// Any other text is kept as [`DestinationType::Other`] rather than failing the parse, so
/// that validation can report it alongside every other problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum DestinationType {
    /// `"queue"`
    #[default]
    Queue,
    /// `"exchange"`
    Exchange,
    /// Anything else (invalid; reported by validation).
    Other(String),
}

impl DestinationType {
    /// The JSON text of this destination type.
    pub fn as_str(&self) -> &str {
        match self {
            DestinationType::Queue => "queue",
            DestinationType::Exchange => "exchange",
            DestinationType::Other(other) => other,
        }
    }
}

impl Serialize for DestinationType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DestinationType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "queue" => DestinationType::Queue,
            "exchange" => DestinationType::Exchange,
            _ => DestinationType::Other(text),
        })
    }
}
