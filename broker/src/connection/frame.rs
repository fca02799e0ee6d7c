//! Frames as the broker sees them, between the codec (`codec.rs`) and the connection task.
//!
//! Hot methods (basic.publish / ack / nack / reject) are decoded by hand into small structs
//! with zero-copy strings; every other method is parsed by amq-protocol into `AMQPClass`.
//! Content headers keep the publisher's raw property bytes so deliveries are byte-exact.

use amq_protocol::protocol::AMQPClass;
use bytes::Bytes;
use std::fmt;

pub type ChannelId = u16;

/// An AMQP short string (at most 255 bytes) known to be valid UTF-8, sharing the buffer it was
/// read from.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ShortStr(Bytes);

impl ShortStr {
    /// Checks UTF-8 and the 255-byte limit; `None` when either fails.
    pub fn from_bytes(bytes: Bytes) -> Option<Self> {
        if bytes.len() > 255 || std::str::from_utf8(&bytes).is_err() {
            return None;
        }
        Some(ShortStr(bytes))
    }

    /// For strings the broker makes itself; `None` past 255 bytes.
    pub fn from_string(s: impl Into<String>) -> Option<Self> {
        let s: String = s.into();
        if s.len() > 255 {
            return None;
        }
        Some(ShortStr(Bytes::from(s)))
    }

    pub const fn from_static(s: &'static str) -> Self {
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // Every constructor checked UTF-8, so this never fails; the fallback only keeps the
        // broker panic-free should that invariant ever break.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// basic.publish (class 60, method 40).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub mandatory: bool,
    pub immediate: bool,
}

/// basic.ack (60, 80) from a client (consumer ack) — the same shape the broker sends for confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub delivery_tag: u64,
    pub multiple: bool,
}

/// basic.nack (60, 120).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack {
    pub delivery_tag: u64,
    pub multiple: bool,
    pub requeue: bool,
}

/// basic.reject (60, 90).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub delivery_tag: u64,
    pub requeue: bool,
}

/// basic.qos (60, 10), decoded by hand because amq-protocol drops `prefetch_size` (which the
/// broker must see to refuse it with 540).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    pub prefetch_size: u32,
    pub prefetch_count: u16,
    pub global: bool,
}

/// What the broker needs from the basic properties without allocating: picked out by a walk
/// over the raw property bytes, which also validates their structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertySummary {
    /// 0 when absent; 2 = persistent.
    pub delivery_mode: u8,
    pub priority: Option<u8>,
    pub expiration: Option<ShortStr>,
    pub user_id: Option<ShortStr>,
    /// Whether the `headers` property is present (a headers exchange then parses it).
    pub has_headers: bool,
    /// Whether the headers hold a `CC` or `BCC` key (sender-selected distribution: only then
    /// does routing parse them for a non-headers exchange).
    pub has_cc_or_bcc: bool,
}

/// A content header frame: class id, body size, and the property flags and list exactly as the
/// publisher sent them (everything after the 12 bytes of class-id, weight and body-size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: Bytes,
    pub summary: PropertySummary,
}

/// One inbound frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Any method other than the hot ones below, parsed by amq-protocol.
    Method(ChannelId, Box<AMQPClass>),
    Publish(ChannelId, Publish),
    Ack(ChannelId, Ack),
    Nack(ChannelId, Nack),
    Reject(ChannelId, Reject),
    Qos(ChannelId, Qos),
    Header(ChannelId, ContentHeader),
    Body(ChannelId, Bytes),
    /// A body frame whose payload was read from the socket straight into the message's own
    /// buffer: the room `Assembler::body_sink` split off it, now filled.
    BodyRead(ChannelId, bytes::BytesMut),
    /// A heartbeat; the channel should be 0 (anything else is 505 UNEXPECTED_FRAME, decided by
    /// the connection).
    Heartbeat(ChannelId),
}

impl Frame {
    pub fn channel(&self) -> ChannelId {
        match self {
            Frame::Method(c, _)
            | Frame::Publish(c, _)
            | Frame::Ack(c, _)
            | Frame::Nack(c, _)
            | Frame::Reject(c, _)
            | Frame::Qos(c, _)
            | Frame::Header(c, _)
            | Frame::Body(c, _)
            | Frame::BodyRead(c, _)
            | Frame::Heartbeat(c) => *c,
        }
    }
}
