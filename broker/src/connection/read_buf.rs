//! The connection's read buffer. Frames are split off it and keep sharing its memory (a
//! message body stays a slice of it while it waits in a queue), so the buffer is held only
//! while something needs it: an idle connection holds none.

use bytes::BytesMut;
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
}

impl ReadBuf {
    /// Takes over what the handshake read (and possibly the start of what follows it).
    pub fn from_handshake(buf: BytesMut) -> Self {
        let mut rbuf = ReadBuf { buf, fresh: false };
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
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            // An empty buffer is reclaimed whole when nothing points into it any more, and
            // replaced by a new allocation otherwise: either way nothing else points into it.
            self.fresh = self.buf.is_empty();
            self.buf.reserve(READ_CAPACITY);
        }
        let read = poll_read_buf(reader, cx, &mut self.buf);
        match read {
            Poll::Ready(Ok(n)) if n > 0 => self.fresh = false,
            Poll::Pending => self.release_if_drained(),
            Poll::Ready(_) => {}
        }
        read
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
            *self = ReadBuf::default();
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
