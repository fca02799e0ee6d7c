//! Broker configuration: what `warren`'s flags set, with RabbitMQ's defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// Management HTTP API port (RabbitMQ's management plugin default: 15672).
    pub http_port: u16,
    pub data_dir: PathBuf,
    /// Largest message body accepted; larger publishes close the channel with 406.
    pub max_message_size: u64,
    /// Offered in connection.tune; never below 8192 (lapin raises anything lower to 8192).
    pub frame_max: u32,
    pub channel_max: u16,
    /// Offered heartbeat interval; the client's lower value (or 0) wins.
    pub heartbeat: Duration,
    /// Bytes of message data all queues together keep in memory for messages waiting for a
    /// consumer; past it, queues move their newest messages to disk at the end of a batch
    /// (persistent ones of durable queues keep at most `queue::memory::STORED_READ_AHEAD` per
    /// queue in memory anyway).
    pub memory_budget: usize,
    /// Free disk space (bytes) under the data directory below which publishers are blocked.
    pub disk_free_limit: u64,
    /// How long a client has to finish the handshake before its socket is closed.
    pub handshake_timeout: Duration,
    /// A RabbitMQ definitions file to load at boot (`--definitions`); an invalid one stops
    /// the broker from opening.
    pub definitions: Option<PathBuf>,
    /// A delivery unacked for longer cancels its consumer (RabbitMQ's `consumer_timeout`,
    /// 30 minutes by default); a queue's `x-consumer-timeout` overrides it. None: no limit.
    pub consumer_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 5672,
            http_port: 15672,
            data_dir: PathBuf::from("./data"),
            // rabbitmq-compat: RabbitMQ 4 defaults max_message_size to 16 MiB.
            max_message_size: 16 * 1024 * 1024,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            memory_budget: 64 * 1024 * 1024,
            // rabbitmq-compat: RabbitMQ's default disk_free_limit is 50 MB.
            disk_free_limit: 50_000_000,
            definitions: None,
            consumer_timeout: Some(Duration::from_secs(30 * 60)),
        }
    }
}

/// The smallest frame_max AMQP allows (spec constant FRAME-MIN-SIZE).
pub const FRAME_MIN_SIZE: u32 = 8192;
