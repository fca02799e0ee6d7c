//! The real `warren` binary as a child process, for tests that must kill it (`kill -9`) or stop
//! it (SIGTERM) and start it again on the same data directory.
//!
//! Included by the test files that need it with `#[path = "common/process.rs"] mod process;`.
//! Also: helpers to find a queue's files in the data dir, and the client calls restart tests
//! share (confirmed publishes, a barrier before a kill, draining a queue).

#![allow(dead_code)]

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long a start or an exit may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(30);

/// What the broker logs once it accepts connections; the line ends with `addr=<ip>:<port>`.
const LISTENING: &str = "listening for AMQP 0-9-1";

/// A `warren` process serving on 127.0.0.1:<ephemeral> with its data in `data_dir`. Dropping it
/// kills the process (SIGKILL).
pub struct ChildBroker {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Everything the process wrote to stderr so far (its log), one line per entry.
    log: Arc<Mutex<Vec<String>>>,
}

/// The process exited before it listened.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    pub stderr: String,
}

impl ChildBroker {
    /// Starts `warren --bind 127.0.0.1 --port 0 --http-port 0 --data-dir <data_dir>` and waits
    /// until it logs the address it listens on.
    pub async fn start(data_dir: &Path) -> ChildBroker {
        match Self::try_start(data_dir).await {
            Ok(broker) => broker,
            Err(f) => panic!("warren exited at startup with {}:\n{}", f.status, f.stderr),
        }
    }

    /// Like `start`, but a process that exits before listening is an `Err` with its exit status
    /// and its stderr.
    pub async fn try_start(data_dir: &Path) -> Result<ChildBroker, StartFailure> {
        Self::try_start_with(data_dir, &[]).await
    }

    /// Like `start`, with more flags (e.g. `--definitions FILE`).
    pub async fn start_with(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> ChildBroker {
        match Self::try_start_with(data_dir, extra).await {
            Ok(broker) => broker,
            Err(f) => panic!("warren exited at startup with {}:\n{}", f.status, f.stderr),
        }
    }

    /// Like `try_start`, with more flags.
    pub async fn try_start_with(
        data_dir: &Path,
        extra: &[&std::ffi::OsStr],
    ) -> Result<ChildBroker, StartFailure> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--http-port", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start the warren binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = oneshot::channel();
        // Reads stderr to its end, so the child never blocks on a full pipe. The sender is
        // dropped at end of file, which tells a waiting `try_start` that the process is gone.
        let lines = log.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            while reader
                .read_until(b'\n', &mut raw)
                .await
                .is_ok_and(|n| n > 0)
            {
                let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                raw.clear();
                let addr = line
                    .contains(LISTENING)
                    .then(|| listening_addr(&line))
                    .flatten();
                lines.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        match tokio::time::timeout(BOUND, addr_rx)
            .await
            .expect("warren neither listened nor exited")
        {
            Ok(addr) => Ok(ChildBroker {
                child,
                addr,
                data_dir: data_dir.to_path_buf(),
                log,
            }),
            Err(_) => {
                let stderr = log.lock().unwrap().join("\n");
                let Ok(status) = tokio::time::timeout(BOUND, child.wait()).await else {
                    panic!("warren closed stderr but did not exit; its log:\n{stderr}");
                };
                let status = status.unwrap();
                Err(StartFailure { status, stderr })
            }
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    pub async fn connect(&self) -> Connection {
        tokio::time::timeout(
            BOUND,
            Connection::connect(&self.url(), ConnectionProperties::default()),
        )
        .await
        .expect("timed out connecting")
        .unwrap()
    }

    /// A connection and one channel on it.
    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.unwrap();
        (conn, ch)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `kill -9`: no chance to flush or close anything. Waits until the process is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("warren survived SIGKILL")
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "warren ended otherwise: {status}");
    }

    /// SIGTERM, the clean shutdown; returns the exit status once the process has exited.
    pub async fn terminate(mut self) -> ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("warren did not exit after SIGTERM")
            .unwrap()
    }

    /// SIGTERM and a check that the broker exited with status 0.
    pub async fn stop(self) {
        let status = self.terminate().await;
        assert!(status.success(), "warren exited with {status}");
    }
}

/// The address in `... listening for AMQP 0-9-1 addr=127.0.0.1:46771`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The directory holding a durable queue's files under `<data_dir>/queues/`, found through the
/// `name` file each one carries (`vhost <len> <vhost>\nqueue <len> <queue>\n`).
pub fn queue_dir(data_dir: &Path, queue: &str) -> Option<PathBuf> {
    let wanted = format!("vhost 1 /\nqueue {} {queue}\n", queue.len());
    std::fs::read_dir(data_dir.join("queues"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|dir| std::fs::read(dir.join("name")).is_ok_and(|name| name == wanted.as_bytes()))
}

/// The segment files of a queue directory, in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    segments
}

/// The bytes of every file under `path`, recursively.
pub fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Client helpers the restart tests share.

/// Waits for `fut`, failing the test instead of hanging it.
async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut).await.expect("timed out")
}

pub fn persistent() -> lapin::BasicProperties {
    lapin::BasicProperties::default().with_delivery_mode(2)
}

impl ChildBroker {
    /// A connection and a channel in confirm mode.
    pub async fn confirming_channel(&self) -> (Connection, Channel) {
        let (conn, ch) = self.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        (conn, ch)
    }
}

pub async fn declare_durable(ch: &Channel, queue: &str) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    bounded(ch.queue_declare(queue.into(), durable, FieldTable::default()))
        .await
        .unwrap();
}

/// A passive declare: the queue's ready count, or the error that closed the channel.
pub async fn passive(ch: &Channel, queue: &str) -> lapin::Result<u32> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    bounded(ch.queue_declare(queue.into(), passive, FieldTable::default()))
        .await
        .map(|q| q.message_count())
}

/// Returns once the queue has finished the batch holding everything this channel sent it so
/// far (acks included), so what that batch recorded is in the OS and survives a process kill.
/// Each passive declare is answered by the queue task; the second is sent after the first was
/// answered, so the queue takes it in a later batch, after the end of the one that answered
/// the first (where a batch's records are written).
pub async fn barrier(ch: &Channel, queue: &str) -> lapin::Result<()> {
    passive(ch, queue).await?;
    passive(ch, queue).await?;
    Ok(())
}

/// Publishes on a channel in confirm mode and checks the broker confirmed with basic.ack.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) {
    let confirm = bounded(ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        BasicPublishOptions::default(),
        body,
        properties,
    ))
    .await
    .unwrap();
    assert_eq!(
        bounded(confirm).await.unwrap(),
        lapin::Confirmation::Ack(None)
    );
}

/// Every message of `queue` (as many as a passive declare counts), consumed with acks: bodies
/// with their redelivered flags, in delivery order. Checks the queue is empty afterwards.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    use futures_lite::StreamExt;
    let count = passive(ch, queue).await.unwrap() as usize;
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let tag = format!("drain-{queue}");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let d = bounded(consumer.next()).await.unwrap().unwrap();
        out.push((String::from_utf8(d.data.clone()).unwrap(), d.redelivered));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert_eq!(passive(ch, queue).await.unwrap(), 0, "{queue} not drained");
    out
}
