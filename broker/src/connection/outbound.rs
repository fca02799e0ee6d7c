//! The connection's outbound buffer: every frame the connection sends is encoded here, and the
//! connection task writes what a wake-up produced in one go.
//!
//! Frames are encoded into one buffer, except the bodies of large messages: those are queued
//! as slices of the message's own body (shared, not copied) between the encoded bytes before
//! and after them, and written with one vectored write.
//!
//! The buffer is allocated when the first frame of a batch is encoded and freed once the
//! socket has taken all of it, so a connection with nothing to send holds no buffer at all.

use super::codec::{self, MethodEncoder};
use super::frame::ChannelId;
use crate::error::AmqpError;
use crate::message::Message;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use tracing::error;

/// What a batch's buffer starts with: room for a few hundred small deliveries, so that a busy
/// connection does not grow it step by step (it still grows past this for big batches).
const BATCH_CAPACITY: usize = 64 * 1024;
/// Bodies from this size on are written from the message rather than copied into the buffer.
/// (Below it, copying costs less than the extra pieces of a vectored write.)
pub const SHARED_BODY_MIN: usize = 32 * 1024;
/// Pieces handed to one vectored write (Linux takes up to 1024).
const MAX_IOVECS: usize = 64;

pub struct Outbound {
    /// Encoders append here through `buf()`; empty and unallocated between batches.
    buf: BytesMut,
    /// What goes out before `buf`: encoded bytes frozen out of it and shared body slices, in
    /// order. Empty unless a large body was queued.
    queued: VecDeque<Bytes>,
    /// Bytes in `queued`.
    queued_len: usize,
    pub frame_max: u32,
}

impl Outbound {
    pub fn new(frame_max: u32) -> Self {
        Outbound {
            buf: BytesMut::new(),
            queued: VecDeque::new(),
            queued_len: 0,
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

    /// Queues `bytes` (a body slice) after everything encoded so far, without copying it.
    fn share(&mut self, bytes: Bytes) {
        if !self.buf.is_empty() {
            let encoded = self.buf.split().freeze();
            self.queue(encoded);
        }
        self.queue(bytes);
    }

    fn queue(&mut self, bytes: Bytes) {
        self.queued_len += bytes.len();
        self.queued.push_back(bytes);
    }

    /// Hands over everything encoded so far, with its allocation: the next frame starts a new
    /// buffer. (For the handshake, which queues no bodies; anything queued comes first.)
    pub fn take(&mut self) -> BytesMut {
        if self.queued.is_empty() {
            return std::mem::take(&mut self.buf);
        }
        let mut all = BytesMut::with_capacity(self.len());
        for piece in self.queued.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.buf);
        self.queued_len = 0;
        self.buf = BytesMut::new();
        all
    }

    /// Writes as much as `write` takes of what is pending, in one call: a plain write when
    /// everything is in the buffer, a vectored one when body slices are queued. Returns what
    /// `write` returned; the bytes it took are dropped from the buffer.
    pub fn write_with(
        &mut self,
        write: impl FnOnce(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        if self.queued.is_empty() {
            // The common case: everything is in the buffer.
            let wrote = write(&[IoSlice::new(&self.buf)])?;
            self.written(wrote);
            return Ok(wrote);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for piece in self.queued.iter().take(MAX_IOVECS) {
            slices[n] = IoSlice::new(piece);
            n += 1;
        }
        if n < MAX_IOVECS && !self.buf.is_empty() {
            slices[n] = IoSlice::new(&self.buf);
            n += 1;
        }
        let wrote = write(&slices[..n])?;
        self.written(wrote);
        Ok(wrote)
    }

    /// The socket took the first `n` pending bytes. Once all are written the allocation goes,
    /// so a connection with nothing to send holds no buffer.
    fn written(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queued.front_mut() else {
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.queued_len -= step;
            n -= step;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
        if !self.queued.is_empty() {
            return;
        }
        if self.queued.capacity() > 0 {
            // Its allocation goes too: an idle connection holds nothing here.
            self.queued = VecDeque::new();
        }
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
        let body = &message.body;
        if body.len() < SHARED_BODY_MIN {
            codec::encode_content(self.buf(), channel, &message.properties, body, frame_max);
            return;
        }
        codec::encode_content_header(self.buf(), channel, &message.properties, body.len());
        for range in codec::body_frame_ranges(body.len(), frame_max) {
            codec::encode_body_frame_start(self.buf(), channel, range.len());
            self.share(body.slice(range));
            codec::encode_frame_end(self.buf());
        }
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

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.queued_len + self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.buf.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::frame::{PropertySummary, ShortStr};
    use bytes::Bytes;

    fn message(body_len: usize) -> Message {
        Message {
            exchange: ShortStr::default(),
            routing_key: ShortStr::from_static("q"),
            properties: Bytes::from_static(&[0, 0]),
            summary: PropertySummary::default(),
            body: (0..body_len).map(|i| (i % 251) as u8).collect(),
        }
    }

    /// Everything pending, as the socket would get it in writes of at most `step` bytes.
    fn drain(out: &mut Outbound, step: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while !out.is_empty() {
            let took = out.write_with(|slices| {
                let mut n = 0;
                for s in slices {
                    let take = s.len().min(step - n);
                    wire.extend_from_slice(&s[..take]);
                    n += take;
                    if n == step {
                        break;
                    }
                }
                Ok(n)
            });
            assert!(matches!(took, Ok(n) if n > 0));
        }
        wire
    }

    #[test]
    fn a_large_body_is_written_from_the_message_and_framed_as_when_copied() {
        let frame_max = 32_768;
        for (len, step) in [
            (SHARED_BODY_MIN, 7_777),
            (100_000, 10_000),
            (300_000, 1 << 20),
        ] {
            let m = message(len);
            let mut out = Outbound::new(frame_max);
            out.method(
                1,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            );
            out.content(1, &m);
            out.content(2, &message(10));
            let mut expected = BytesMut::new();
            MethodEncoder::new()
                .encode(
                    &mut expected,
                    1,
                    &AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                )
                .unwrap();
            codec::encode_content(&mut expected, 1, &m.properties, &m.body, frame_max);
            codec::encode_content(&mut expected, 2, &[0, 0], &message(10).body, frame_max);
            assert_eq!(out.len(), expected.len());
            // The body is not copied: the first write is handed slices of it.
            let body = m.body.as_ptr_range();
            let mut shared = false;
            let _ = out.write_with(|slices| {
                shared = slices.iter().any(|s| body.contains(&s.as_ptr()));
                Ok(0)
            });
            assert!(shared, "{len}-byte body was copied");
            assert_eq!(
                drain(&mut out, step),
                expected[..],
                "{len} bytes, writes of {step}"
            );
            assert_eq!(out.len(), 0);
            assert_eq!(out.queued.capacity(), 0, "nothing is held once written");
        }
    }

    #[test]
    fn a_small_body_is_copied_into_the_buffer() {
        let m = message(SHARED_BODY_MIN - 1);
        let mut out = Outbound::new(131_072);
        out.content(1, &m);
        let mut pieces = 0;
        let _ = out.write_with(|slices| {
            pieces = slices.len();
            Ok(0)
        });
        assert_eq!(pieces, 1);
    }
}
