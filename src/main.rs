//! The `warren` binary: flags → Config → tracing → the broker, until SIGINT or SIGTERM.

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warren_broker::{Config, DefinitionsError};

/// Warren: an AMQP 0-9-1 message broker that RabbitMQ clients connect to unchanged.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// AMQP port (0: any free port; the log says which).
    #[arg(long, default_value_t = 5672)]
    port: u16,
    /// Management HTTP API port (0: any free port; the log says which).
    #[arg(long, default_value_t = 15672)]
    http_port: u16,
    /// Where durable state lives.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Largest accepted message body in bytes (RabbitMQ 4's default: 16 MiB).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_message_size: u64,
    /// Bytes of message data all queues keep in memory for messages waiting for a consumer (a
    /// message counts as its properties and body plus 330 bytes of bookkeeping); past it, messages wait on disk until they are delivered (persistent messages of durable
    /// queues keep at most 4 MiB per queue in memory anyway). Default: a tenth of the memory
    /// the broker may use (the machine's, or its control group's limit), at least 64 MiB.
    #[arg(long)]
    memory_budget: Option<usize>,
    /// Free disk space (bytes) under the data dir below which publishers are blocked.
    #[arg(long, default_value_t = 50_000_000)]
    disk_free_limit: u64,
    /// Heartbeat interval offered to clients, in seconds (0 disables).
    #[arg(long, default_value_t = 60)]
    heartbeat: u64,
    /// A RabbitMQ definitions file (JSON) to load at boot: users, vhosts, permissions,
    /// exchanges, queues, bindings. An invalid file stops startup with exit status 2.
    #[arg(long, value_name = "FILE")]
    definitions: Option<PathBuf>,
    /// Milliseconds a delivery may stay unacked before its consumer is cancelled and its
    /// messages requeued (RabbitMQ's consumer_timeout; a queue's x-consumer-timeout
    /// overrides it). 0 disables.
    #[arg(long, default_value_t = 1_800_000)]
    consumer_timeout: u64,
}

/// Exit status for a definitions file that cannot be loaded.
const EXIT_BAD_DEFINITIONS: u8 = 2;

fn main() -> ExitCode {
    tune_malloc();
    let args = Args::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config {
        bind: args.bind,
        port: args.port,
        http_port: args.http_port,
        data_dir: args.data_dir,
        max_message_size: args.max_message_size,
        heartbeat: Duration::from_secs(args.heartbeat),
        memory_budget: args
            .memory_budget
            .unwrap_or_else(warren_broker::config::default_memory_budget),
        disk_free_limit: args.disk_free_limit,
        definitions: args.definitions,
        consumer_timeout: (args.consumer_timeout > 0)
            .then(|| Duration::from_millis(args.consumer_timeout)),
        ..Config::default()
    };
    tracing::info!(
        bytes = config.memory_budget,
        "memory budget for queued messages (--memory-budget)"
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DefinitionsError>())
        {
            // One line per problem (JSON path and reason), for the operator to fix them all.
            Some(invalid) => {
                eprintln!("warren: {invalid}");
                ExitCode::from(EXIT_BAD_DEFINITIONS)
            }
            None => {
                eprintln!("warren: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    let amqp = bind(std::net::SocketAddr::new(config.bind, config.port)).await?;
    let http = bind(std::net::SocketAddr::new(config.bind, config.http_port)).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    // Held until the process exits: a second broker on the same data dir would corrupt it.
    let _lock = lock_data_dir(&config.data_dir)?;
    let broker = warren_broker::Broker::open(config)?;
    let management = tokio::spawn(broker.clone().serve_http(http, shutdown.clone()));
    tokio::spawn(give_back_freed_memory(broker.clone(), shutdown.clone()));
    let served = broker.serve(amqp, shutdown.clone()).await;
    // AMQP stopped (shutdown, or an error before serving): the HTTP side stops with it.
    shutdown.cancel();
    match management.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "management HTTP listener failed"),
        Err(e) => tracing::warn!(error = %e, "management HTTP task failed"),
        Ok(Ok(())) => {}
    }
    served
}

/// How often the queues' memory is looked at by [`give_back_freed_memory`].
const TRIM_CHECK_EVERY: Duration = Duration::from_secs(1);

/// glibc keeps what a program frees for its next allocations and only hands the top of each
/// heap back to the kernel: a backlog of millions of small messages, once consumed or
/// deleted, left the broker's RSS gigabytes above what it used. When the queues' memory has
/// fallen from its high point to a quarter of it or less (a backlog drained, not one that
/// comes and goes), `malloc_trim` gives the free pages back.
async fn give_back_freed_memory(broker: warren_broker::Broker, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = broker.queued_bytes();
        high = high.max(now);
        if drained(high, now) {
            high = now;
            // Walks every heap under its lock: not on a runtime thread.
            let _ = tokio::task::spawn_blocking(trim_malloc).await;
        }
    }
}

/// The queues held `high` bytes at most since the last trim and hold `now`: worth a trim?
fn drained(high: usize, now: usize) -> bool {
    const AT_LEAST: usize = 64 << 20;
    high.saturating_sub(now) >= AT_LEAST && now <= high / 4
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_malloc() {
    // SAFETY: malloc_trim takes malloc's own locks; it only returns free pages to the kernel.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "gave freed memory back (malloc_trim)"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_malloc() {}

/// Takes an exclusive lock on `<data_dir>/warren.lock` (released when the process ends,
/// however it ends), or fails naming the directory if another process holds it.
fn lock_data_dir(data_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    let context = |e: std::io::Error, what: &str| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| context(e, "cannot create data dir"))?;
    let path = data_dir.join("warren.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| context(e, "cannot open the lock file in"))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "data dir {} is in use by another running broker (it holds {})",
                data_dir.display(),
                path.display()
            ),
        )),
        Err(e) => Err(context(e.into(), "cannot lock data dir")),
    }
}

async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// glibc's malloc serves each large message body (over 128 KiB, or over whatever size it last
/// freed) with a fresh mmap, and gives the top of a thread's heap back to the kernel once 2
/// such sizes are free there: at 1 MiB messages, every body then costs a page fault per 4 KiB
/// touched and an madvise when freed (a fifth of the broker's CPU in a 1p1c 1 MiB run). Bodies
/// up to 4 MiB come from the heaps instead, and up to 32 MiB of free heap top is kept for the
/// next ones. Called first thing, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    const TRIM_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: mallopt only sets malloc's parameters; no other thread is running yet. A
    // refused setting (return 0) leaves glibc's default, which is only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

#[cfg(test)]
mod tests {
    use super::drained;

    const MIB: usize = 1 << 20;

    #[test]
    fn freed_memory_goes_back_once_a_backlog_has_drained() {
        assert!(drained(1024 * MIB, 0));
        assert!(drained(1024 * MIB, 256 * MIB), "down to a quarter");
        assert!(
            !drained(1024 * MIB, 300 * MIB),
            "a backlog that comes and goes"
        );
        assert!(!drained(60 * MIB, 0), "too little to be worth a trim");
        assert!(!drained(0, 0));
        assert!(!drained(10 * MIB, 20 * MIB), "growing");
    }
}
