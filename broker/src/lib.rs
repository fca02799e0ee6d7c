//! Warren's broker: AMQP 0-9-1 as RabbitMQ speaks it.
//!
//! The path of a message:
//! ```text
//! TCP socket
//!   └─ connection task (connection/): codec → handshake, heartbeats, channel table
//!        └─ Channel (channel/): assembles publish (method + header + body), qos, consumers,
//!           unacked delivery tags, confirm counter
//!             └─ VHost routing snapshot (vhost.rs, exchange/): exchange → queues, no lock
//!                  └─ queue task (queue/): owns its messages and consumers
//!                       └─ delivery to a consumer with credit → its connection's mailbox
//!   └─ back out through the same connection task: its outbound buffer, one write per batch
//! ```
//! Acks travel back: basic.ack(tag) → channel maps tag → (queue, message id) → queue drops it.
//! When a channel or connection closes, its unacked messages return to their queues, at their
//! original position, marked redelivered.

pub mod access;
pub mod admin;
pub mod alarm;
pub mod auth;
pub mod channel;
pub mod config;
pub mod connection;
pub mod definitions_boot;
pub mod defs;
pub mod delayed;
pub mod error;
pub mod exchange;
pub mod http;
pub mod message;
pub mod names;
pub mod policy;
pub mod queue;
pub mod server;
pub mod store;
pub mod vhost;

/// Hash maps on the publish and deliver paths (topology by name, deliveries by id, channels
/// by number): foldhash, seeded per map, instead of std's slower SipHash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use config::Config;
pub use definitions_boot::DefinitionsError;
pub use server::{run, Broker};
