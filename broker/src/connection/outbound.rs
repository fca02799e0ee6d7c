//! The connection's outbound buffer: every frame the connection sends is encoded here, and the
//! connection task writes what a wake-up produced in one go.
//!
//! The buffer is allocated when the first frame of a batch is encoded and freed once the
//! socket has taken all of it, so a connection with nothing to send holds no buffer at all.

use super::codec::{self, MethodEncoder};
use super::frame::ChannelId;
use crate::error::AmqpError;
use crate::message::Message;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use bytes::{Buf, BytesMut};
use tracing::error;

/// What a batch's buffer starts with: room for a few hundred small deliveries, so that a busy
/// connection does not grow it step by step (it still grows past this for big batches).
const BATCH_CAPACITY: usize = 64 * 1024;

pub struct Outbound {
    /// Encoders append here through `buf()`; empty and unallocated between batches.
    buf: BytesMut,
    pub frame_max: u32,
}

impl Outbound {
    pub fn new(frame_max: u32) -> Self {
        Outbound {
            buf: BytesMut::new(),
            frame_max,
        }
    }

    /// The buffer to encode into, allocated with a batch's capacity if the batch starts now.
    pub fn buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() == 0 {
            self.buf.reserve(BATCH_CAPACITY);
        }
        &mut self.buf
    }

    /// Hands over everything encoded so far, with its allocation: the next frame starts a new
    /// buffer.
    pub fn take(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// What is encoded and not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The socket took the first `n` pending bytes. Once all are written the allocation goes,
    /// so a connection with nothing to send holds no buffer.
    pub fn written(&mut self, n: usize) {
        if n >= self.buf.len() {
            self.buf = BytesMut::new();
        } else {
            self.buf.advance(n);
        }
    }

    /// Encodes a control-path method. Encoding a well-formed method cannot fail short of a bug;
    /// if it does, the error is logged and the frame skipped.
    pub fn method(&mut self, channel: ChannelId, method: AMQPClass) {
        if let Err(e) = MethodEncoder::new().encode(self.buf(), channel, &method) {
            error!(?method, error = %e, "failed to encode method");
        }
    }

    /// The content header and body frames of a message.
    /// basic.return 312 NO_ROUTE with the message: a mandatory publish that reached no queue.
    pub fn return_unroutable(&mut self, channel: ChannelId, message: &Message) {
        codec::encode_return(
            self.buf(),
            channel,
            312,
            "NO_ROUTE",
            message.exchange.as_str(),
            message.routing_key.as_str(),
        );
        self.content(channel, message);
    }

    pub fn content(&mut self, channel: ChannelId, message: &Message) {
        let frame_max = self.frame_max;
        codec::encode_content(
            self.buf(),
            channel,
            &message.properties,
            &message.body,
            frame_max,
        );
    }

    pub fn channel_close(&mut self, channel: ChannelId, err: &AmqpError) {
        self.method(
            channel,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: err.code.code(),
                reply_text: short(&err.text),
                class_id: err.class_id,
                method_id: err.method_id,
            })),
        );
    }

    pub fn connection_close(&mut self, err: &AmqpError) {
        self.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: err.code.code(),
                reply_text: short(&err.text),
                class_id: err.class_id,
                method_id: err.method_id,
            })),
        );
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A ShortString from text the broker made, cut at 255 bytes on a char boundary
/// (`ShortString::from` would panic past 255).
pub fn short(s: &str) -> amq_protocol::types::ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    amq_protocol::types::ShortString::from(&s[..end])
}

/// A ShortString, or `None` past 255 bytes (for names that must not be cut).
pub fn short_checked(s: &str) -> Option<amq_protocol::types::ShortString> {
    (s.len() <= 255).then(|| amq_protocol::types::ShortString::from(s))
}
