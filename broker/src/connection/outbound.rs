//! The connection's outbound buffer: every frame the connection sends is encoded here, and the
//! connection task hands the filled buffer to the writer task in one piece per wake-up.

use super::codec::{self, MethodEncoder};
use super::frame::ChannelId;
use crate::error::AmqpError;
use crate::message::Message;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use bytes::BytesMut;
use tracing::error;

pub struct Outbound {
    pub buf: BytesMut,
    methods: MethodEncoder,
    pub frame_max: u32,
}

impl Outbound {
    pub fn new(frame_max: u32) -> Self {
        Outbound {
            buf: BytesMut::with_capacity(64 * 1024),
            methods: MethodEncoder::new(),
            frame_max,
        }
    }

    /// Encodes a control-path method. Encoding a well-formed method cannot fail short of a bug;
    /// if it does, the error is logged and the frame skipped.
    pub fn method(&mut self, channel: ChannelId, method: AMQPClass) {
        if let Err(e) = self.methods.encode(&mut self.buf, channel, &method) {
            error!(?method, error = %e, "failed to encode method");
        }
    }

    /// The content header and body frames of a message.
    pub fn content(&mut self, channel: ChannelId, message: &Message) {
        codec::encode_content(
            &mut self.buf,
            channel,
            &message.properties,
            &message.body,
            self.frame_max,
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
