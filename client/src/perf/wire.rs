//! Just enough AMQP 0-9-1 for the load generator's data path, written by hand.
//!
//! lapin costs about 13 µs of CPU per message (futures, promises, an I/O thread per
//! connection); against Warren that made `perf` use more CPU than the broker it measured.
//! This module frames the few methods a producer or consumer needs straight into one
//! outbound buffer and reads inbound frames out of one inbound buffer, with no allocation
//! per message. Topology (declare, bind, delete) still goes through lapin.

use crate::error::Error;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// What we ask for; the broker may offer less.
const FRAME_MAX: u32 = 131_072;
const CHANNEL_MAX: u16 = 2047;
/// How long the handshake and each set-up reply may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Method ids as (class, method).
pub mod method {
    pub const CONNECTION_START: (u16, u16) = (10, 10);
    pub const CONNECTION_TUNE: (u16, u16) = (10, 30);
    pub const CONNECTION_OPEN_OK: (u16, u16) = (10, 41);
    pub const CONNECTION_CLOSE: (u16, u16) = (10, 50);
    pub const CONNECTION_CLOSE_OK: (u16, u16) = (10, 51);
    pub const CHANNEL_OPEN_OK: (u16, u16) = (20, 11);
    pub const CHANNEL_FLOW: (u16, u16) = (20, 20);
    pub const CHANNEL_CLOSE: (u16, u16) = (20, 40);
    pub const CHANNEL_CLOSE_OK: (u16, u16) = (20, 41);
    pub const BASIC_QOS_OK: (u16, u16) = (60, 11);
    pub const BASIC_CONSUME_OK: (u16, u16) = (60, 21);
    pub const BASIC_CANCEL: (u16, u16) = (60, 30);
    pub const BASIC_RETURN: (u16, u16) = (60, 50);
    pub const BASIC_DELIVER: (u16, u16) = (60, 60);
    pub const BASIC_ACK: (u16, u16) = (60, 80);
    pub const BASIC_NACK: (u16, u16) = (60, 120);
    pub const CONFIRM_SELECT_OK: (u16, u16) = (85, 11);
}

/// Appends AMQP frames to a byte buffer.
pub struct FrameWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the open frame's size field is.
    size_at: usize,
}

impl<'a> FrameWriter<'a> {
    /// Opens a frame; its size is filled in by [`FrameWriter::end`].
    pub fn begin(buf: &'a mut Vec<u8>, kind: u8, channel: u16) -> Self {
        buf.push(kind);
        buf.extend_from_slice(&channel.to_be_bytes());
        let size_at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        FrameWriter { buf, size_at }
    }

    /// Opens a method frame.
    pub fn method(buf: &'a mut Vec<u8>, channel: u16, (class, method): (u16, u16)) -> Self {
        let mut frame = FrameWriter::begin(buf, FRAME_METHOD, channel);
        frame.u16(class).u16(method);
        frame
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(value);
        self
    }

    /// A short string: the caller keeps it under 256 bytes (names come from a checked plan).
    pub fn short(&mut self, value: &str) -> &mut Self {
        let len = value.len().min(255);
        self.buf.push(len as u8);
        self.buf.extend_from_slice(&value.as_bytes()[..len]);
        self
    }

    pub fn long(&mut self, value: &[u8]) -> &mut Self {
        self.u32(value.len() as u32);
        self.buf.extend_from_slice(value);
        self
    }

    /// Closes the frame: writes its size and the frame-end octet.
    pub fn end(&mut self) {
        let size = (self.buf.len() - self.size_at - 4) as u32;
        self.buf[self.size_at..self.size_at + 4].copy_from_slice(&size.to_be_bytes());
        self.buf.push(FRAME_END);
    }
}

/// Reads the fields of an inbound method, failing (not panicking) on a short payload.
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Other("the broker sent a truncated method".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    pub fn short(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u8()? as usize;
        self.take(len)
    }

    pub fn long(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// The class and method ids at the start of a method payload.
    pub fn method(&mut self) -> Result<(u16, u16), Error> {
        Ok((self.u16()?, self.u16()?))
    }
}

/// Where a complete inbound frame lies in a buffer.
pub struct Split {
    pub kind: u8,
    pub channel: u16,
    /// The payload, relative to the frame's start.
    pub payload: std::ops::Range<usize>,
    /// The whole frame's length.
    pub total: usize,
}

/// The complete frame at the front of `buf`, or `None` when more bytes are needed.
pub fn split_frame(buf: &[u8], frame_max: u32) -> Result<Option<Split>, Error> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if size.saturating_add(8) > frame_max.max(FRAME_MAX) {
        return Err(Error::Other(format!(
            "the broker sent a {size}-byte frame, over the negotiated frame_max {frame_max}"
        )));
    }
    let total = 7 + size as usize + 1;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(Error::Other(
            "the broker sent a frame without its end octet".into(),
        ));
    }
    Ok(Some(Split {
        kind,
        channel,
        payload: 7..total - 1,
        total,
    }))
}

/// Why the broker closed a channel or the connection, from its close method's fields.
pub fn close_reason(payload: &[u8]) -> String {
    let mut fields = Fields::new(payload);
    let _ = fields.method();
    match (fields.u16(), fields.short()) {
        (Ok(code), Ok(text)) => format!("{code} {}", String::from_utf8_lossy(text)),
        _ => "(no reason given)".into(),
    }
}

/// "the connection" or "channel N", for messages about a close.
pub fn closed_what(channel: u16) -> String {
    match channel {
        0 => "the connection".into(),
        n => format!("channel {n}"),
    }
}

/// Where to connect and as whom, from an `amqp://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, Error> {
        let uri: lapin::uri::AMQPUri = url
            .parse()
            .map_err(|e| Error::Usage(format!("not an AMQP URL ({e})")))?;
        Ok(Target {
            host: uri.authority.host,
            port: uri.authority.port,
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
        })
    }
}

/// An open connection: the socket, the bytes read but not yet taken, and what was tuned.
pub struct Wire {
    pub stream: TcpStream,
    pub inbound: Vec<u8>,
    /// Start of the unread part of `inbound`.
    pub read_at: usize,
    pub frame_max: u32,
    /// Channels the broker allows (what `channel_max` came to).
    pub channel_max: u16,
}

impl Wire {
    /// Connects and runs the handshake (PLAIN login, no heartbeats).
    pub async fn open(target: &Target, name: &str) -> Result<Wire, Error> {
        let address = format!("{}:{}", target.host, target.port);
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| Error::Other(format!("connecting to {address}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::Other(format!("setting TCP_NODELAY: {e}")))?;
        let mut wire = Wire {
            stream,
            inbound: Vec::with_capacity(FRAME_MAX as usize * 2),
            read_at: 0,
            frame_max: FRAME_MAX,
            channel_max: CHANNEL_MAX,
        };
        wire.send(b"AMQP\x00\x00\x09\x01").await?;
        wire.expect(0, method::CONNECTION_START).await?;

        let mut out = Vec::new();
        let mut frame = FrameWriter::method(&mut out, 0, (10, 11));
        let mut properties = Vec::new();
        table_long(&mut properties, "product", b"warren-cli perf");
        table_long(&mut properties, "connection_name", name.as_bytes());
        frame.long(&properties).short("PLAIN");
        let mut response = vec![0u8];
        response.extend_from_slice(target.user.as_bytes());
        response.push(0);
        response.extend_from_slice(target.password.as_bytes());
        frame.long(&response).short("en_US");
        frame.end();
        wire.send(&out).await?;

        let tune = wire.expect(0, method::CONNECTION_TUNE).await.map_err(|e| {
            // A broker that refuses the login closes the connection instead of tuning.
            Error::Other(format!(
                "the broker refused the login as '{}': {e}",
                target.user
            ))
        })?;
        let mut fields = Fields::new(&tune[4..]);
        let (channel_max, frame_max) = (fields.u16()?, fields.u32()?);
        wire.channel_max = match channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
        };
        wire.frame_max = match frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        out.clear();
        let mut frame = FrameWriter::method(&mut out, 0, (10, 31));
        frame.u16(wire.channel_max).u32(wire.frame_max).u16(0);
        frame.end();
        let mut frame = FrameWriter::method(&mut out, 0, (10, 40));
        frame.short(&target.vhost).short("").u8(0);
        frame.end();
        wire.send(&out).await?;
        wire.expect(0, method::CONNECTION_OPEN_OK).await?;
        Ok(wire)
    }

    /// Opens channel `channel` (numbered by the caller from 1).
    pub async fn open_channel(&mut self, channel: u16) -> Result<(), Error> {
        if channel > self.channel_max {
            return Err(Error::Other(format!(
                "the broker allows {} channels per connection; this run needs more",
                self.channel_max
            )));
        }
        let mut out = Vec::new();
        FrameWriter::method(&mut out, channel, (20, 10))
            .short("")
            .end();
        self.send(&out).await?;
        self.expect(channel, method::CHANNEL_OPEN_OK).await?;
        Ok(())
    }

    pub async fn confirm_select(&mut self, channel: u16) -> Result<(), Error> {
        let mut out = Vec::new();
        FrameWriter::method(&mut out, channel, (85, 10)).u8(0).end();
        self.send(&out).await?;
        self.expect(channel, method::CONFIRM_SELECT_OK).await?;
        Ok(())
    }

    pub async fn qos(&mut self, channel: u16, prefetch: u16) -> Result<(), Error> {
        let mut out = Vec::new();
        FrameWriter::method(&mut out, channel, (60, 10))
            .u32(0)
            .u16(prefetch)
            .u8(0)
            .end();
        self.send(&out).await?;
        self.expect(channel, method::BASIC_QOS_OK).await?;
        Ok(())
    }

    /// Starts consumers, each `(channel, queue, consumer tag, no_ack)`, and waits for every
    /// consume-ok. Deliveries can arrive in between (a queue with messages in it): their
    /// frames are kept, in order, ahead of what is read next, for the run to take.
    pub async fn consume_all(
        &mut self,
        consumers: &[(u16, &str, &str, bool)],
    ) -> Result<(), Error> {
        let mut out = Vec::new();
        for &(channel, queue, tag, no_ack) in consumers {
            FrameWriter::method(&mut out, channel, (60, 20))
                .u16(0)
                .short(queue)
                .short(tag)
                .u8(if no_ack { 0b10 } else { 0 })
                .u32(0)
                .end();
        }
        self.send(&out).await?;
        let mut waiting = consumers.len();
        let mut deferred = Vec::new();
        let wait = async {
            while waiting > 0 {
                let Split {
                    kind,
                    channel: on,
                    payload,
                    ..
                } = self.next_frame().await?;
                // The whole frame: its 7-byte header before the payload, the end octet after.
                let (start, total) = (payload.start - 7, payload.len() + 8);
                let payload = &self.inbound[payload];
                let found = (kind == FRAME_METHOD)
                    .then(|| Fields::new(payload).method().ok())
                    .flatten();
                match found {
                    Some(method::BASIC_CONSUME_OK) => waiting -= 1,
                    Some(method::CONNECTION_CLOSE | method::CHANNEL_CLOSE) => {
                        return Err(Error::Other(format!(
                            "the broker closed {}: {}",
                            closed_what(on),
                            close_reason(payload)
                        )))
                    }
                    _ => deferred.extend_from_slice(&self.inbound[start..start + total]),
                }
            }
            Ok(())
        };
        tokio::time::timeout(SETUP_TIMEOUT, wait)
            .await
            .map_err(|_| Error::Other(format!("no consume-ok within {SETUP_TIMEOUT:?}")))??;
        deferred.extend_from_slice(&self.inbound[self.read_at..]);
        self.inbound = deferred;
        self.read_at = 0;
        Ok(())
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| Error::Other(format!("writing to the broker: {e}")))
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        self.compact();
        let n = self
            .stream
            .read_buf(&mut self.inbound)
            .await
            .map_err(|e| Error::Other(format!("reading from the broker: {e}")))?;
        Ok(n > 0)
    }

    /// Drops the bytes already taken, so the buffer does not grow.
    pub fn compact(&mut self) {
        if self.read_at > 0 {
            self.inbound.drain(..self.read_at);
            self.read_at = 0;
        }
        if self.inbound.capacity() - self.inbound.len() < self.frame_max as usize {
            self.inbound.reserve(self.frame_max as usize);
        }
    }

    /// The next whole frame, read from the socket if need be; its payload range is into
    /// `inbound` (valid until the next read).
    async fn next_frame(&mut self) -> Result<Split, Error> {
        loop {
            if let Some(mut split) = split_frame(&self.inbound[self.read_at..], self.frame_max)? {
                let start = self.read_at;
                self.read_at += split.total;
                split.payload = start + split.payload.start..start + split.payload.end;
                return Ok(split);
            }
            if !self.fill().await? {
                return Err(Error::Other("the broker closed the connection".into()));
            }
        }
    }

    /// Waits for the method `expected` on `channel` (during set-up, when nothing else is
    /// in flight) and returns its payload; a close from the broker becomes the error.
    pub async fn expect(&mut self, channel: u16, expected: (u16, u16)) -> Result<Vec<u8>, Error> {
        let wait = async {
            loop {
                let Split {
                    kind,
                    channel: on,
                    payload,
                    ..
                } = self.next_frame().await?;
                let payload = &self.inbound[payload];
                if kind == FRAME_HEARTBEAT {
                    continue;
                }
                let found = Fields::new(payload).method().ok();
                if kind == FRAME_METHOD && on == channel && found == Some(expected) {
                    return Ok(payload.to_vec());
                }
                if kind == FRAME_METHOD
                    && (found == Some(method::CONNECTION_CLOSE)
                        || found == Some(method::CHANNEL_CLOSE))
                {
                    return Err(Error::Other(format!(
                        "the broker closed {}: {}",
                        closed_what(on),
                        close_reason(payload)
                    )));
                }
                return Err(Error::Other(format!(
                    "expected method {expected:?} on channel {channel}, the broker sent frame type {kind} {found:?} on channel {on}"
                )));
            }
        };
        tokio::time::timeout(SETUP_TIMEOUT, wait)
            .await
            .map_err(|_| {
                Error::Other(format!(
                    "no answer to {expected:?} within {SETUP_TIMEOUT:?}"
                ))
            })?
    }
}

/// A field-table entry holding a long string.
fn table_long(table: &mut Vec<u8>, key: &str, value: &[u8]) {
    table.push(key.len() as u8);
    table.extend_from_slice(key.as_bytes());
    table.push(b'S');
    table.extend_from_slice(&(value.len() as u32).to_be_bytes());
    table.extend_from_slice(value);
}
