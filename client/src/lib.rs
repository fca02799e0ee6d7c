//! Warren's Rust client side, on lapin:
//!
//! - [`Publisher`]: publishes with confirms (per message or in batches), reconnects and
//!   declares its [`Topology`] again, never drops a message silently.
//! - [`WorkerPool`]: N concurrent handlers over a queue, with prefetch, retries with
//!   backoff, dead-lettering, reconnects and graceful shutdown.
//! - [`RpcClient`] / [`RpcServer`]: request/reply with correlation ids and timeouts, over
//!   direct reply-to.
//! - JSON payloads: [`Message::json`], [`Publisher::publish_json`], [`Task::json`],
//!   [`decode_json`].
//! - The `warren-cli` tool's commands, as library code ([`cli`], [`perf`]): the binary only
//!   parses arguments and prints.

pub mod cli;
pub mod connect;
pub mod error;
pub mod histogram;
pub mod message;
pub mod perf;
pub mod publisher;
pub mod rpc;
pub mod topology;
pub mod worker;

pub use connect::{connect, Backoff};
pub use error::{Error, DEFAULT_URL};
pub use message::{decode_json, encode_json, Message};
pub use publisher::{Confirm, OnConnectionLoss, Publisher, PublisherOptions};
pub use rpc::{Reply, ReplyTo, RpcClient, RpcServer};
pub use topology::{Binding, Exchange, Queue, Topology};
pub use worker::{
    DeadLetter, PoolStats, RetryPolicy, Task, TaskError, WorkerPool, WorkerPoolOptions,
};
