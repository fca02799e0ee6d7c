//! The connection's read buffer. Frames are split off it and keep sharing its memory (a
//! message body stays a slice of it while it waits in a queue), so the buffer is held only
//! while something needs it: an idle connection holds none.
//!
//! The payload of a large body frame is not read into this buffer: it is read straight into
//! the room its message's buffer has for it (`start_body`), so that a large message is
//! copied once, by the kernel, rather than read here and then copied again to join its frames.

use super::codec::{self, FRAME_BODY, FRAME_END, FRAME_HEADER_SIZE};
use super::frame::ChannelId;
use crate::error::AmqpError;
use bytes::{Buf, BufMut, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;
use tokio_util::io::poll_read_buf;

/// What a read is given room for: a burst of publishes arrives in few reads.
const READ_CAPACITY: usize = 64 * 1024;
/// Below this much room left, the next read gets a fresh `READ_CAPACITY`.
const MIN_ROOM: usize = 4 * 1024;

#[derive(Debug, Default)]
pub struct ReadBuf {
    buf: BytesMut,
    /// Allocated (or reclaimed) for a read that has not put anything in it yet, so nothing
    /// else points into it.
    fresh: bool,
    /// A large body frame's payload being read into its message's buffer; boxed, as most
    /// connections never have one.
    body: Option<Box<BodyRead>>,
}

/// A body frame whose payload goes straight into `sink`.
#[derive(Debug)]
struct BodyRead {
    channel: ChannelId,
    sink: BytesMut,
    /// Payload bytes still to read; at 0 the frame-end octet is next.
    remaining: usize,
}

/// After a payload read straight into its message's buffer, the next read takes only the
/// frame-end octet and the next frame's header: if that is another large body frame, none of
/// its payload lands in this buffer (where it would have to be copied out again).
const AFTER_BODY_READ: usize = 1 + FRAME_HEADER_SIZE;

impl ReadBuf {
    /// Takes over what the handshake read (and possibly the start of what follows it).
    pub fn from_handshake(buf: BytesMut) -> Self {
        let mut rbuf = ReadBuf {
            buf,
            fresh: false,
            body: None,
        };
        rbuf.release_if_drained();
        rbuf
    }

    /// What has been read and not yet decoded.
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads what `reader` has into the buffer, first making room for a burst if little is
    /// left. Ready(Ok(0)) at end of stream; Pending when there turned out to be nothing, with
    /// a buffer allocated for this read given up again. (Call it once the socket is readable,
    /// so that an idle connection does not allocate.)
    pub fn poll_read<R: AsyncRead + ?Sized>(
        &mut self,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let ReadBuf { buf, body, .. } = self;
        if let Some(body) = body.as_mut().filter(|b| b.remaining > 0) {
            // `sink` has room for the whole payload (see `start_body`), so it does not grow.
            // Where it has room beyond it (more of the body is to come), the frame end and the
            // next frame's header come in the same read, right after the payload, and are
            // moved to the read buffer: one read per frame rather than two.
            let room = body.sink.capacity() - body.sink.len();
            let framing = AFTER_BODY_READ.min(room.saturating_sub(body.remaining));
            let limit = body.remaining + framing;
            let read = poll_read_buf(reader, cx, &mut (&mut body.sink).limit(limit));
            if let Poll::Ready(Ok(n)) = read {
                let payload = n.min(body.remaining);
                body.remaining -= payload;
                let end = body.sink.len() - (n - payload);
                buf.extend_from_slice(&body.sink[end..]);
                body.sink.truncate(end);
            }
            return read;
        }
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            // An empty buffer is reclaimed whole when nothing points into it any more, and
            // replaced by a new allocation otherwise: either way nothing else points into it.
            self.fresh = self.buf.is_empty();
            self.buf.reserve(READ_CAPACITY);
        }
        let read = if self.body.is_some() {
            poll_read_buf(reader, cx, &mut (&mut self.buf).limit(AFTER_BODY_READ))
        } else {
            poll_read_buf(reader, cx, &mut self.buf)
        };
        match read {
            Poll::Ready(Ok(n)) if n > 0 => self.fresh = false,
            Poll::Pending => self.release_if_drained(),
            Poll::Ready(_) => {}
        }
        read
    }

    /// Whether a payload is being read into a message's buffer (or its frame-end octet has not
    /// arrived yet): then there is nothing to decode.
    pub fn reading_body(&self) -> bool {
        self.body.is_some()
    }

    /// Reads the rest of the body frame the buffer starts with (header of `FRAME_HEADER_SIZE`
    /// bytes, then `size` payload bytes, part of which may have arrived) into `sink`, which
    /// must have room for `size` bytes.
    pub fn start_body(&mut self, channel: ChannelId, size: usize, mut sink: BytesMut) {
        self.buf.advance(FRAME_HEADER_SIZE);
        let arrived = size.min(self.buf.len());
        sink.extend_from_slice(&self.buf[..arrived]);
        self.buf.advance(arrived);
        self.body = Some(Box::new(BodyRead {
            channel,
            sink,
            remaining: size - arrived,
        }));
    }

    /// The body frame read into its message's buffer, once its payload and frame-end octet
    /// are in: its channel and the filled room. 501 if the frame does not end as it should.
    pub fn take_body(&mut self) -> Result<Option<(ChannelId, BytesMut)>, AmqpError> {
        let end_arrived = !self.buf.is_empty();
        let Some(body) = self.body.take_if(|b| b.remaining == 0 && end_arrived) else {
            return Ok(None);
        };
        let end = self.buf[0];
        if end != FRAME_END {
            return Err(codec::invalid_frame_end(FRAME_BODY, &body.sink, end));
        }
        self.buf.advance(1);
        Ok(Some((body.channel, body.sink)))
    }

    /// Gives the allocation back once everything read has been decoded, unless a frame still
    /// points into it: then it stays, and the next reads fill the rest of it rather than
    /// starting another allocation per read (which a slow publisher's queued messages would
    /// otherwise each hold on to).
    pub fn release_if_drained(&mut self) {
        if !self.buf.is_empty() {
            return;
        }
        // Asking for one byte more room than there is makes `try_reclaim` look at the
        // allocation: it can take all of it back (and says so) only when this handle is its
        // only owner. That needs at least one byte consumed from it, which is what `fresh`
        // covers.
        if self.fresh || self.buf.try_reclaim(self.buf.capacity() + 1) {
            self.buf = BytesMut::new();
            self.fresh = false;
        }
    }

    /// Bytes allocated for reading (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn read(rbuf: &mut ReadBuf, mut data: &[u8]) {
        let len = data.len();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let read = rbuf.poll_read(Pin::new(&mut data), &mut cx);
        assert!(matches!(read, Poll::Ready(Ok(n)) if n == len));
    }

    /// A socket with nothing to read.
    struct Idle;

    impl AsyncRead for Idle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[test]
    fn an_idle_connection_holds_no_read_buffer() {
        let mut rbuf = ReadBuf::default();
        assert_eq!(rbuf.capacity(), 0);
        read(&mut rbuf, b"a frame");
        assert!(rbuf.capacity() >= READ_CAPACITY);
        let frame = rbuf.bytes().split_to(7).freeze();
        drop(frame);
        rbuf.release_if_drained();
        assert_eq!(rbuf.capacity(), 0);
    }

    #[test]
    fn a_buffer_a_frame_still_points_into_is_kept_and_filled_further() {
        let mut rbuf = ReadBuf::default();
        read(&mut rbuf, b"body one");
        let body = rbuf.bytes().split_to(8).freeze();
        rbuf.release_if_drained();
        let room = rbuf.capacity();
        assert!(room > 0, "kept while the body lives");
        read(&mut rbuf, b"body two");
        let second = rbuf.bytes().split_to(8).freeze();
        // The second read went into the same allocation, right after the first.
        assert_eq!(body.as_ptr().wrapping_add(8), second.as_ptr());
        drop((body, second));
        rbuf.release_if_drained();
        assert_eq!(rbuf.capacity(), 0);
    }

    #[test]
    fn a_read_that_finds_nothing_leaves_no_buffer() {
        let mut rbuf = ReadBuf::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(rbuf.poll_read(Pin::new(&mut Idle), &mut cx).is_pending());
        assert_eq!(rbuf.capacity(), 0);
    }

    #[test]
    fn a_partial_frame_is_kept() {
        let mut rbuf = ReadBuf::default();
        read(&mut rbuf, b"half a fr");
        rbuf.release_if_drained();
        assert_eq!(&rbuf.bytes()[..], b"half a fr");
    }

    #[test]
    fn the_handshake_buffer_goes_once_drained() {
        let mut hs = BytesMut::with_capacity(1024);
        hs.put_slice(b"AMQP0091");
        let header = hs.split_to(8);
        drop(header);
        let rbuf = ReadBuf::from_handshake(hs);
        assert_eq!(rbuf.capacity(), 0);
    }
}

#[cfg(test)]
mod body_read_tests {
    use super::*;

    fn read(rbuf: &mut ReadBuf, mut data: &[u8]) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match rbuf.poll_read(Pin::new(&mut data), &mut cx) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("read: {other:?}"),
        }
    }

    fn body_frame(channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
        let mut f = vec![FRAME_BODY];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(end);
        f
    }

    #[test]
    fn a_payload_goes_into_the_sink_and_only_the_next_header_into_the_buffer() {
        let payload: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let mut wire = body_frame(3, &payload, FRAME_END);
        wire.extend(body_frame(3, b"next", FRAME_END));
        let mut rbuf = ReadBuf::default();
        // The header and the start of the payload arrive first.
        assert_eq!(read(&mut rbuf, &wire[..1_000]), 1_000);
        rbuf.start_body(3, payload.len(), BytesMut::with_capacity(payload.len()));
        assert!(rbuf.reading_body());
        assert!(rbuf.bytes().is_empty());
        // The rest of the payload: however much is offered, only the payload is taken.
        let mut at = 1_000;
        while at < 7 + payload.len() {
            at += read(&mut rbuf, &wire[at..]);
        }
        assert_eq!(at, 7 + payload.len());
        assert!(
            matches!(rbuf.take_body(), Ok(None)),
            "frame end not read yet"
        );
        // Then the frame end and the next frame's header, and nothing more.
        assert_eq!(read(&mut rbuf, &wire[at..]), AFTER_BODY_READ);
        let (channel, sink) = rbuf.take_body().ok().flatten().unwrap();
        assert_eq!(channel, 3);
        assert_eq!(sink[..], payload[..]);
        assert!(!rbuf.reading_body());
        assert_eq!(rbuf.bytes().len(), FRAME_HEADER_SIZE);
    }

    #[test]
    fn with_more_body_to_come_the_frame_end_and_next_header_come_in_the_payloads_read() {
        let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 7) as u8).collect();
        let mut wire = body_frame(5, &payload, FRAME_END);
        wire.extend(body_frame(5, &[1; 40_000], FRAME_END));
        let mut rbuf = ReadBuf::default();
        read(&mut rbuf, &wire[..7]);
        // Room for both frames' payloads, as the message's buffer has.
        rbuf.start_body(5, payload.len(), BytesMut::with_capacity(80_000));
        let mut at = 7;
        while rbuf.bytes().len() < AFTER_BODY_READ {
            at += read(&mut rbuf, &wire[at..]);
        }
        // The payload, the frame end and the next header, and nothing of the next payload.
        assert_eq!(at, 7 + payload.len() + AFTER_BODY_READ);
        let (channel, sink) = rbuf.take_body().ok().flatten().unwrap();
        assert_eq!(channel, 5);
        assert_eq!(sink[..], payload[..]);
        assert_eq!(rbuf.bytes()[..], wire[at - FRAME_HEADER_SIZE..at]);
    }

    #[test]
    fn a_wrong_frame_end_after_a_payload_is_a_frame_error() {
        let wire = body_frame(1, &[9; 40_000], 0x00);
        let mut rbuf = ReadBuf::default();
        read(&mut rbuf, &wire[..7]);
        rbuf.start_body(1, 40_000, BytesMut::with_capacity(40_000));
        let mut at = 7;
        while at < wire.len() {
            at += read(&mut rbuf, &wire[at..]);
        }
        let err = rbuf.take_body().err().map(|e| e.code);
        assert_eq!(err, Some(crate::error::ReplyCode::FrameError));
    }
}
