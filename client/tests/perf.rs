//! `warren-cli perf` end to end against an in-process broker: a short run stops by itself,
//! counts what it published, confirmed and consumed, measures latencies, and cleans up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use warren_client::perf::{self, PerfOptions};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    perf: PerfOptions,
}

fn options(args: &[&str]) -> PerfOptions {
    Cli::try_parse_from(std::iter::once("perf").chain(args.iter().copied()))
        .unwrap()
        .perf
}

/// A broker on 127.0.0.1:<ephemeral> in a temporary data directory, stopped on drop.
struct Broker {
    addr: SocketAddr,
    shutdown: CancellationToken,
    _data_dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Broker {
        let data_dir = tempfile::tempdir().unwrap();
        let config = warren_broker::Config {
            data_dir: data_dir.path().to_path_buf(),
            ..warren_broker::Config::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(warren_broker::run(listener, config, shutdown.clone()));
        Broker {
            addr,
            shutdown,
            _data_dir: data_dir,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }
}

/// Runs perf with `args` against `broker` until it stops by itself (within 30 s).
async fn run_to_the_end(broker: &Broker, args: &[&str]) -> perf::Summary {
    let plan = options(args).plan().unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        perf::run(&broker.url(), &plan),
    )
    .await
    .expect("perf stops by itself")
    .unwrap()
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_run_with_confirms_counts_everything_and_stops_by_itself() {
    let broker = Broker::start().await;
    let summary = run_to_the_end(
        &broker,
        &[
            "--duration",
            "1",
            "--confirm",
            "50",
            "--persistent",
            "--durable",
            "--queue",
            "perf-test",
            "--delete-queues",
            "--broker-pid",
            &std::process::id().to_string(),
        ],
    )
    .await;
    assert!(summary.sent > 0);
    assert!(summary.confirmed > 0 && summary.confirmed <= summary.sent);
    assert_eq!(summary.nacked, 0);
    assert!(summary.received > 0 && summary.received <= summary.sent);
    // Everything published was confirmed by the end; at most the window was late.
    assert!(summary.sent - summary.confirmed <= 50 + 1);
    let latency = summary.latency_us.expect("end-to-end latency");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    // Each delivery reached the socket no later than perf read it, so every percentile of
    // the latency to the socket is at most that of the latency to the read.
    let read = summary.read_latency_us.expect("latency to the read");
    assert_eq!(read.count, latency.count);
    assert!(latency.p50 <= read.p50 && latency.p99 <= read.p99 && latency.max <= read.max);
    let confirm = summary.confirm_latency_us.expect("confirm latency");
    assert!(confirm.count >= summary.confirmed);
    assert!(summary.duration_s >= 1.0 && summary.duration_s < 5.0);
    assert!(summary.cpu.tool_s.is_some());
    // --delete-queues removed the queue: declaring it passively now fails with 404.
    let conn = lapin::Connection::connect(&broker.url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let passive = ch
        .queue_declare(
            "perf-test".into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await;
    assert!(passive.is_err(), "the queue was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_queue() {
    let broker = Broker::start().await;
    let plan = options(&[
        "--duration",
        "1",
        "--fanout",
        "3",
        "--consumers",
        "3",
        "--rate",
        "200",
        "--connections",
        "1",
        "--delete-queues",
    ])
    .plan()
    .unwrap();
    let summary = perf::run(&broker.url(), &plan).await.unwrap();
    assert!(
        summary.sent > 50,
        "rate-limited to about 200/s: {}",
        summary.sent
    );
    assert!(
        summary.sent < 400,
        "rate-limited to about 200/s: {}",
        summary.sent
    );
    // Each message reaches 3 queues; those still in flight at the stop are not counted.
    assert!(summary.received <= 3 * summary.sent);
    assert!(
        summary.received + 3 * 20 >= 3 * summary.sent,
        "{} received for {} sent",
        summary.received,
        summary.sent
    );
}

/// Bodies of 64 KiB or more are framed once and written from there: each still goes out as
/// frames of at most frame_max, carrying its own send time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_whole_and_each_carries_its_own_stamp() {
    let broker = Broker::start().await;
    let summary = run_to_the_end(
        &broker,
        &[
            "--duration",
            "1",
            "--size",
            "300000",
            "--confirm",
            "8",
            "--prefetch",
            "8",
            "--queue",
            "perf-large",
            "--delete-queues",
        ],
    )
    .await;
    assert!(summary.sent > 5, "{} sent", summary.sent);
    assert_eq!(summary.nacked, 0);
    assert!(summary.sent - summary.confirmed <= 8 + 1);
    assert!(summary.received > 0 && summary.received <= summary.sent);
    // Every delivery's body was whole and stamped by this run: each counted a latency.
    let latency = summary.latency_us.expect("end-to-end latency");
    assert!(latency.count >= summary.received);
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.max);
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_with_its_url() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("amqp://guest:secret@{addr}/%2f");
    let plan = options(&["--duration", "1"]).plan().unwrap();
    let err = perf::run(&url, &plan).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(
        text.contains(&format!("amqp://guest:***@{addr}/%2f")),
        "{text}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_a_refused_login() {
    let broker = Broker::start().await;
    let url = format!("amqp://guest:wrong@{}/%2f", broker.addr);
    let plan = options(&["--duration", "1"]).plan().unwrap();
    let text = perf::run(&url, &plan).await.unwrap_err().to_string();
    assert!(text.contains("refused the login"), "{text}");
}
