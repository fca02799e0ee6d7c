//! Test helpers: an in-process broker on 127.0.0.1:<ephemeral> (AMQP and management HTTP),
//! which can drop every client connection and keep serving on the same port, as a broker
//! restart or a network cut looks to a client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestBroker {
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    config: warren_broker::Config,
    broker: warren_broker::Broker,
    amqp_shutdown: CancellationToken,
    amqp_task: Option<JoinHandle<std::io::Result<()>>>,
    http_shutdown: CancellationToken,
    http_task: Option<JoinHandle<std::io::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        let data_dir = tempfile::tempdir().unwrap();
        let config = warren_broker::Config {
            data_dir: data_dir.path().to_path_buf(),
            ..warren_broker::Config::default()
        };
        let broker = warren_broker::Broker::open(config.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http_listener.local_addr().unwrap();
        let http_shutdown = CancellationToken::new();
        let http_task = tokio::spawn(
            broker
                .clone()
                .serve_http(http_listener, http_shutdown.clone()),
        );
        let amqp_shutdown = CancellationToken::new();
        let amqp_task = tokio::spawn(broker.clone().serve(listener, amqp_shutdown.clone()));
        TestBroker {
            addr,
            http_addr,
            config,
            broker,
            amqp_shutdown,
            amqp_task: Some(amqp_task),
            http_shutdown,
            http_task: Some(http_task),
            _data_dir: data_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// The management API with guest's credentials.
    pub fn http_url(&self) -> String {
        format!("http://guest:guest@{}", self.http_addr)
    }

    /// Closes every AMQP connection (320 CONNECTION_FORCED, unacked messages go back to
    /// their queues), then serves again on the same port with the same queues.
    pub async fn drop_connections(&mut self) {
        self.amqp_shutdown.cancel();
        if let Some(task) = self.amqp_task.take() {
            task.await.unwrap().unwrap();
        }
        // tokio's listeners set SO_REUSEADDR, so the port can be bound again at once.
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.amqp_shutdown = CancellationToken::new();
        self.amqp_task = Some(tokio::spawn(
            self.broker
                .clone()
                .serve(listener, self.amqp_shutdown.clone()),
        ));
    }

    /// Raises (or clears) the disk alarm: publishing connections are blocked and their
    /// sockets not read.
    pub fn block_publishers(&self, blocked: bool) {
        self.broker
            .set_disk_free_limit(if blocked { u64::MAX } else { 0 });
    }

    /// Stops serving AMQP: every connection is closed and new ones are refused.
    pub async fn stop_serving(&mut self) {
        self.amqp_shutdown.cancel();
        if let Some(task) = self.amqp_task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the broker and opens a new one on the same data directory and port: only
    /// durable queues and persistent messages survive, as in a real restart.
    pub async fn restart(&mut self) {
        self.amqp_shutdown.cancel();
        if let Some(task) = self.amqp_task.take() {
            task.await.unwrap().unwrap();
        }
        self.http_shutdown.cancel();
        if let Some(task) = self.http_task.take() {
            task.await.unwrap().unwrap();
        }
        self.broker = warren_broker::Broker::open(self.config.clone()).unwrap();
        let http_listener = tokio::net::TcpListener::bind(self.http_addr).await.unwrap();
        self.http_shutdown = CancellationToken::new();
        self.http_task = Some(tokio::spawn(
            self.broker
                .clone()
                .serve_http(http_listener, self.http_shutdown.clone()),
        ));
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.amqp_shutdown = CancellationToken::new();
        self.amqp_task = Some(tokio::spawn(
            self.broker
                .clone()
                .serve(listener, self.amqp_shutdown.clone()),
        ));
    }

    pub async fn connect(&self) -> lapin::Connection {
        lapin::Connection::connect(&self.url(), lapin::ConnectionProperties::default())
            .await
            .unwrap()
    }

    /// The number of ready messages in `queue` (passive declare).
    pub async fn ready(&self, queue: &str) -> u32 {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "".into()).await;
        declared.message_count()
    }

    /// Takes every message in `queue` (basic.get with ack), as text.
    pub async fn drain(&self, queue: &str) -> Vec<String> {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let mut bodies = Vec::new();
        while let Some(message) = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            bodies.push(String::from_utf8(message.delivery.data.clone()).unwrap());
        }
        let _ = connection.close(200, "".into()).await;
        bodies
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.amqp_shutdown.cancel();
        self.http_shutdown.cancel();
    }
}

/// Waits for `fut` with a generous bound so a bug fails the test instead of hanging it.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("timed out")
}
