//! Test helpers: an in-process broker on an ephemeral port, lapin connections to it, and a
//! raw-frame client (built on the broker's own codec) for what lapin cannot send. Shared lapin
//! shortcuts live in `amqp.rs`, raw-frame builders in `frames.rs`; both are re-exported here.

#![allow(dead_code)]

mod amqp;
mod frames;

#[allow(unused_imports)]
pub use amqp::*;
#[allow(unused_imports)]
pub use frames::*;

use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::BytesMut;
use lapin::{Channel, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use warren_broker::connection::codec::{FrameDecoder, MethodEncoder, PROTOCOL_HEADER};
use warren_broker::connection::frame::Frame;
use warren_broker::Config;

/// A broker running inside the test's runtime on 127.0.0.1:<ephemeral>.
pub struct TestBroker {
    pub addr: SocketAddr,
    /// The management HTTP API's address.
    pub http_addr: SocketAddr,
    /// Control of the running broker (e.g. the disk free limit).
    pub broker: warren_broker::Broker,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// The broker's data directory, removed when the broker is dropped.
    _data_dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(Config::default()).await
    }

    /// Starts with `config`, in a fresh temporary data directory.
    pub async fn start_with(config: Config) -> TestBroker {
        Self::start_on("127.0.0.1", config).await
    }

    /// Starts with `config`, listening for AMQP on `ip` (an ephemeral port).
    pub async fn start_on(ip: &str, mut config: Config) -> TestBroker {
        let data_dir = tempfile::tempdir().unwrap();
        config.data_dir = data_dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http_listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let broker = warren_broker::Broker::open(config).unwrap();
        tokio::spawn(broker.clone().serve_http(http_listener, shutdown.clone()));
        let task = tokio::spawn(broker.clone().serve(listener, shutdown.clone()));
        TestBroker {
            addr,
            http_addr,
            broker,
            shutdown,
            task: Some(task),
            _data_dir: data_dir,
        }
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// The management API's base URL (`http://127.0.0.1:<port>`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub async fn connect(&self) -> Connection {
        self.connect_url(&self.url()).await.unwrap()
    }

    pub async fn connect_url(&self, url: &str) -> lapin::Result<Connection> {
        Connection::connect(url, ConnectionProperties::default()).await
    }

    /// A connection and one channel on it.
    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.unwrap();
        (conn, ch)
    }

    /// A connection and one channel on it, in confirm mode.
    pub async fn confirming_channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = confirming(&conn).await;
        (conn, ch)
    }

    /// Stops the broker (SIGTERM path) and waits until every connection is closed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The reply code of a lapin protocol error (channel or connection close).
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// The reply text of a lapin protocol error.
pub fn reply_text(err: &lapin::Error) -> String {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => e.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

/// Waits for `fut` with a generous bound so a broken broker fails the test instead of hanging it.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("timed out")
}

/// A client that speaks raw frames: for protocol violations lapin will not produce.
pub struct RawClient {
    pub stream: TcpStream,
    rbuf: BytesMut,
    decoder: FrameDecoder,
    methods: MethodEncoder,
}

impl RawClient {
    /// Connects and sends the protocol header only.
    pub async fn connect_only(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        RawClient {
            stream,
            rbuf: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 20),
            methods: MethodEncoder::new(),
        }
    }

    /// Connects and completes the handshake as guest on vhost "/", with the given heartbeat.
    pub async fn open(addr: SocketAddr) -> RawClient {
        Self::open_with_heartbeat(addr, 0).await
    }

    pub async fn open_with_heartbeat(addr: SocketAddr, heartbeat: u16) -> RawClient {
        let mut c = Self::connect_only(addr).await;
        c.write(PROTOCOL_HEADER).await;
        let start = c.next_method().await;
        assert!(matches!(
            start,
            AMQPClass::Connection(connection::AMQPMethod::Start(_))
        ));
        let mut caps = FieldTable::default();
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        caps.insert("connection.blocked".into(), AMQPValue::Boolean(true));
        caps.insert(
            "authentication_failure_close".into(),
            AMQPValue::Boolean(true),
        );
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        c.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from("\0guest\0guest"),
                locale: "en_US".into(),
            })),
        )
        .await;
        let tune = match c.next_method().await {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => panic!("expected tune, got {other:?}"),
        };
        c.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            })),
        )
        .await;
        c.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        )
        .await;
        match c.next_method().await {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
            other => panic!("expected open-ok, got {other:?}"),
        }
        c
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send_method(&mut self, channel: u16, method: AMQPClass) {
        let mut buf = BytesMut::new();
        self.methods.encode(&mut buf, channel, &method).unwrap();
        self.write(&buf).await;
    }

    /// The next frame from the broker, or None when it closed the socket.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.rbuf).unwrap() {
                return Some(frame);
            }
            let n = within(self.stream.read_buf(&mut self.rbuf)).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// The next method frame (heartbeats skipped).
    pub async fn next_method(&mut self) -> AMQPClass {
        loop {
            match self.next_frame().await {
                Some(Frame::Method(_, m)) => return *m,
                Some(Frame::Heartbeat(_)) => continue,
                Some(other) => panic!("expected a method, got {other:?}"),
                None => panic!("connection closed while waiting for a method"),
            }
        }
    }

    /// Reads until the broker closes the socket; returns the raw bytes received.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = self.rbuf.split().to_vec();
        let _ = within(self.stream.read_to_end(&mut all)).await;
        all
    }

    /// Expects connection.close and returns (reply code, text, class id, method id).
    pub async fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
        loop {
            match self.next_method().await {
                AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                    return (
                        c.reply_code,
                        c.reply_text.as_str().to_string(),
                        c.class_id,
                        c.method_id,
                    )
                }
                _ => continue,
            }
        }
    }

    /// Expects channel.close on any channel and returns (channel, code, text, class, method).
    pub async fn expect_channel_close(&mut self) -> (u16, u16, String, u16, u16) {
        loop {
            match self.next_frame().await {
                Some(Frame::Method(ch, m)) => {
                    if let AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Close(
                        c,
                    )) = *m
                    {
                        return (
                            ch,
                            c.reply_code,
                            c.reply_text.as_str().to_string(),
                            c.class_id,
                            c.method_id,
                        );
                    }
                }
                Some(_) => continue,
                None => panic!("connection closed while waiting for channel.close"),
            }
        }
    }

    pub async fn open_channel(&mut self, channel: u16) {
        self.send_method(
            channel,
            AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Open(
                amq_protocol::protocol::channel::Open {},
            )),
        )
        .await;
        match self.next_method().await {
            AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::OpenOk(_)) => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }
}

/// Builds a raw frame: type, channel, payload, frame-end.
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}
