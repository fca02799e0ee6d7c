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
            memory_budget: MIN_MEMORY_BUDGET,
            // rabbitmq-compat: RabbitMQ's default disk_free_limit is 50 MB.
            disk_free_limit: 50_000_000,
            definitions: None,
            consumer_timeout: Some(Duration::from_secs(30 * 60)),
        }
    }
}

/// The smallest frame_max AMQP allows (spec constant FRAME-MIN-SIZE).
pub const FRAME_MIN_SIZE: u32 = 8192;

/// The least memory budget `warren` starts with when none is given (and `Config`'s default).
pub const MIN_MEMORY_BUDGET: usize = 64 * 1024 * 1024;

/// The memory budget when none is given: a tenth of the memory this process may use (the
/// machine's, or its control group's limit when that is lower), at least
/// [`MIN_MEMORY_BUDGET`]; that when neither can be read.
///
/// rabbitmq-compat: RabbitMQ keeps transient messages in memory until it uses half of its
/// high watermark (40 % of the memory it sees, so 20 %), then pages them to disk; a tenth
/// (counted as what messages really cost, see `queue::memory::PER_MESSAGE`) pages sooner than
/// it does but lets a backlog of a few hundred megabytes on an ordinary machine stay in
/// memory, where a fixed 64 MiB had the queue writing and re-reading it.
pub fn default_memory_budget() -> usize {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let machine = read("/proc/meminfo").and_then(|text| mem_total(&text));
    let group = read("/proc/self/cgroup")
        .and_then(|text| cgroup2_path(&text).map(str::to_owned))
        .and_then(|path| read(&format!("/sys/fs/cgroup{path}/memory.max")))
        .or_else(|| read("/sys/fs/cgroup/memory.max"))
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| memory_limit(&text));
    budget_for([machine, group].into_iter().flatten().min())
}

/// A tenth of `memory` bytes, at least [`MIN_MEMORY_BUDGET`] (that when unknown).
fn budget_for(memory: Option<u64>) -> usize {
    memory
        .map(|m| usize::try_from(m / 10).unwrap_or(usize::MAX))
        .unwrap_or(0)
        .max(MIN_MEMORY_BUDGET)
}

/// Bytes of `MemTotal` in the text of /proc/meminfo.
fn mem_total(meminfo: &str) -> Option<u64> {
    let rest = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut words = rest.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The cgroup v2 path in the text of /proc/self/cgroup (its `0::` line).
fn cgroup2_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A control group's memory limit in bytes, from `memory.max` (v2: a number or `max`) or
/// `memory.limit_in_bytes` (v1: a number, huge when unlimited). None when unlimited.
fn memory_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn the_default_budget_is_a_tenth_of_the_memory_and_never_under_64_mib() {
        assert_eq!(budget_for(Some(20 * GIB)), (2 * GIB) as usize);
        assert_eq!(budget_for(Some(GIB / 2)), MIN_MEMORY_BUDGET);
        assert_eq!(budget_for(None), MIN_MEMORY_BUDGET);
        assert_eq!(
            budget_for(Some(u64::MAX)) as u64,
            (u64::MAX / 10).min(usize::MAX as u64)
        );
        // Whatever this machine has, the default is a usable budget.
        assert!(default_memory_budget() >= MIN_MEMORY_BUDGET);
    }

    #[test]
    fn machine_memory_and_cgroup_limits_are_read_from_their_files() {
        let meminfo = "MemTotal:       24573904 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_573_904 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(
            cgroup2_path("0::/system.slice/warren.service\n"),
            Some("/system.slice/warren.service")
        );
        assert_eq!(cgroup2_path("12:memory:/docker/abc\n"), None);
        assert_eq!(memory_limit("536870912\n"), Some(512 * 1024 * 1024));
        assert_eq!(memory_limit("max\n"), None, "v2: no limit");
    }
}
