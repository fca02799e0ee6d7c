//! The connection handshake: protocol header, start/start-ok (authentication), tune/tune-ok,
//! open/open-ok. Runs before the connection's main loop, with a deadline.

use super::codec::{is_valid_protocol_header, DecodeError, FrameDecoder, PROTOCOL_HEADER};
use super::frame::Frame;
use super::outbound::Outbound;
use crate::access::Access;
use crate::auth::{AuthError, User, MECHANISMS};
use crate::config::FRAME_MIN_SIZE;
use crate::error::AmqpError;
use crate::server::BrokerShared;
use crate::vhost::VHost;
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the client told us about itself in start-ok.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub authentication_failure_close: bool,
    pub connection_blocked: bool,
}

pub struct Negotiated {
    pub user: User,
    pub vhost: Arc<VHost>,
    /// What the user may do in the vhost (fixed for the connection's life).
    pub access: Arc<Access>,
    pub caps: ClientCaps,
    pub channel_max: u16,
    pub heartbeat: Duration,
    pub client_name: String,
    pub client_properties: FieldTable,
    pub mechanism: String,
    pub frame_max: u32,
    /// The broker's access version `access` was read at.
    pub access_version: u64,
}

pub enum HandshakeError {
    /// The socket failed or closed, or the header was wrong (already answered): just drop it.
    Gone,
    /// A protocol error: send connection.close with it, then drop.
    Close(AmqpError),
}

impl From<DecodeError> for HandshakeError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Protocol(e) => HandshakeError::Close(e),
            DecodeError::Io(_) => HandshakeError::Gone,
        }
    }
}

pub struct Io<'a> {
    pub stream: &'a mut TcpStream,
    pub rbuf: &'a mut BytesMut,
    pub decoder: &'a mut FrameDecoder,
    pub out: &'a mut Outbound,
}

impl Io<'_> {
    async fn next_frame(&mut self) -> Result<Frame, HandshakeError> {
        use tokio_util::codec::Decoder;
        loop {
            if let Some(frame) = self.decoder.decode(self.rbuf)? {
                return Ok(frame);
            }
            if self
                .stream
                .read_buf(self.rbuf)
                .await
                .map_err(|_| HandshakeError::Gone)?
                == 0
            {
                return Err(HandshakeError::Gone);
            }
        }
    }

    /// The next frame, which must be a connection method on channel 0.
    async fn next_connection_method(
        &mut self,
        expected: &str,
    ) -> Result<connection::AMQPMethod, HandshakeError> {
        match self.next_frame().await? {
            Frame::Method(0, m) => match *m {
                AMQPClass::Connection(m) => Ok(m),
                other => Err(HandshakeError::Close(
                    AmqpError::command_invalid(format_args!("expected '{expected}'"))
                        .during(other.get_amqp_class_id(), other.get_amqp_method_id()),
                )),
            },
            // Heartbeats may arrive once tune-ok is sent.
            Frame::Heartbeat(0) => Box::pin(self.next_connection_method(expected)).await,
            _ => Err(HandshakeError::Close(AmqpError::command_invalid(
                format_args!("expected '{expected}'"),
            ))),
        }
    }

    /// After a connection.close sent during the handshake: reads until the client's close-ok,
    /// so the socket is closed as soon as it arrives (or until EOF if the input is garbage).
    pub async fn wait_for_close_ok(&mut self) {
        loop {
            match self.next_frame().await {
                Ok(Frame::Method(0, m))
                    if matches!(
                        *m,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))
                    ) =>
                {
                    return
                }
                Ok(_) => continue,
                Err(HandshakeError::Gone) => return,
                Err(HandshakeError::Close(_)) => {
                    let mut scratch = [0u8; 512];
                    while matches!(self.stream.read(&mut scratch).await, Ok(n) if n > 0) {}
                    return;
                }
            }
        }
    }

    pub async fn flush(&mut self) -> Result<(), HandshakeError> {
        let buf = self.out.take();
        self.stream
            .write_all(&buf)
            .await
            .map_err(|_| HandshakeError::Gone)
    }
}

pub async fn run(
    io: &mut Io<'_>,
    broker: &BrokerShared,
    peer: SocketAddr,
) -> Result<Negotiated, HandshakeError> {
    // Protocol header, read by hand: the codec only knows frames.
    while io.rbuf.len() < 8 {
        if io
            .stream
            .read_buf(io.rbuf)
            .await
            .map_err(|_| HandshakeError::Gone)?
            == 0
        {
            return Err(HandshakeError::Gone);
        }
    }
    if !is_valid_protocol_header(&io.rbuf[..8]) {
        // Spec 4.2.2: answer with the header we do support, then close.
        let _ = io.stream.write_all(PROTOCOL_HEADER).await;
        return Err(HandshakeError::Gone);
    }
    let _ = io.rbuf.split_to(8);

    io.out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from(MECHANISMS),
            locales: LongString::from("en_US"),
        })),
    );
    io.flush().await?;

    let start_ok = match io.next_connection_method("connection.start-ok").await? {
        connection::AMQPMethod::StartOk(s) => s,
        _ => {
            return Err(HandshakeError::Close(
                AmqpError::command_invalid("expected 'connection.start-ok'").during(10, 11),
            ))
        }
    };
    let caps = client_caps(&start_ok.client_properties);
    let client_name = match start_ok.client_properties.inner().get("connection_name") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    };
    let user = match broker.users.load().authenticate(
        start_ok.mechanism.as_str(),
        start_ok.response.as_bytes(),
        peer.ip(),
    ) {
        Ok(user) => user,
        Err(e) => return Err(auth_failed(&e, caps, peer)),
    };

    let config = &broker.config;
    let offered_frame_max = config.frame_max.max(FRAME_MIN_SIZE);
    let offered_heartbeat = u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX);
    io.out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
            channel_max: config.channel_max,
            frame_max: offered_frame_max,
            heartbeat: offered_heartbeat,
        })),
    );
    io.flush().await?;

    let tune_ok = match io.next_connection_method("connection.tune-ok").await? {
        connection::AMQPMethod::TuneOk(t) => t,
        _ => {
            return Err(HandshakeError::Close(
                AmqpError::command_invalid("expected 'connection.tune-ok'").during(10, 31),
            ))
        }
    };
    if tune_ok.frame_max != 0 && tune_ok.frame_max < FRAME_MIN_SIZE {
        return Err(HandshakeError::Close(
            AmqpError::not_allowed(format_args!(
                "frame_max={} < {} min size",
                tune_ok.frame_max, FRAME_MIN_SIZE
            ))
            .during(10, 31),
        ));
    }
    // 0 means "no limit" from the client: ours applies. Higher values are clamped to ours.
    let frame_max = match tune_ok.frame_max {
        0 => offered_frame_max,
        n => n.min(offered_frame_max),
    };
    let channel_max = match tune_ok.channel_max {
        0 => config.channel_max,
        n => n.min(config.channel_max),
    };
    // The client's answer decides (it may lower the interval or turn heartbeats off).
    let heartbeat = Duration::from_secs(u64::from(tune_ok.heartbeat));
    io.decoder.set_frame_max(frame_max);
    io.out.frame_max = frame_max;

    let open = match io.next_connection_method("connection.open").await? {
        connection::AMQPMethod::Open(o) => o,
        _ => {
            return Err(HandshakeError::Close(
                AmqpError::command_invalid("expected 'connection.open'").during(10, 40),
            ))
        }
    };
    let vhost_name = open.virtual_host.as_str();
    let Some(vhost) = broker.vhost(vhost_name) else {
        return Err(HandshakeError::Close(
            AmqpError::not_allowed(format_args!("vhost {vhost_name} not found")).during(10, 40),
        ));
    };
    let access_version = broker.access_version();
    let Some(access) = broker.users.load().access(&user.name, vhost_name) else {
        tracing::warn!(%peer, user = %user.name, vhost = %vhost_name, "vhost access refused");
        return Err(HandshakeError::Close(
            AmqpError::not_allowed(format_args!(
                "access to vhost '{vhost_name}' refused for user '{}'",
                user.name
            ))
            .during(10, 40),
        ));
    };
    io.out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    );
    io.flush().await?;
    Ok(Negotiated {
        user,
        vhost,
        access,
        caps,
        channel_max,
        heartbeat,
        client_name,
        mechanism: start_ok.mechanism.as_str().to_string(),
        client_properties: start_ok.client_properties,
        frame_max,
        access_version,
    })
}

fn auth_failed(e: &AuthError, caps: ClientCaps, peer: SocketAddr) -> HandshakeError {
    tracing::warn!(%peer, reason = %e.reply_text(), "authentication failed");
    if caps.authentication_failure_close {
        let mut err = AmqpError::access_refused("");
        err.text = e.reply_text();
        HandshakeError::Close(err.during(10, 11))
    } else {
        // Spec: without the capability the server just closes the socket.
        HandshakeError::Gone
    }
}

fn client_caps(props: &FieldTable) -> ClientCaps {
    let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") else {
        return ClientCaps::default();
    };
    let flag = |name: &str| matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)));
    ClientCaps {
        consumer_cancel_notify: flag("consumer_cancel_notify"),
        authentication_failure_close: flag("authentication_failure_close"),
        connection_blocked: flag("connection.blocked"),
    }
}

/// server-properties for connection.start; `capabilities` lists only what works today.
fn server_properties() -> FieldTable {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "per_consumer_qos",
        "authentication_failure_close",
        "connection.blocked",
        "direct_reply_to",
        "exchange_exchange_bindings",
        "consumer_priorities",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("product".into(), text("Warren"));
    props.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), text("Rust"));
    props.insert(
        "copyright".into(),
        text("Copyright (c) the Warren developers"),
    );
    props.insert(
        "information".into(),
        text("Licensed under the Apache License 2.0"),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}
