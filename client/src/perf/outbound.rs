//! What a perf connection has to write: frames encoded into one growing buffer, and large
//! message bodies that are not copied into it but written from where they are (shared with
//! the producer that made them), in order, with one vectored write where there are several
//! pieces.
//!
//! Copying a 1 MiB body into the buffer for every publish cost the load generator as much
//! CPU as the write itself, CPU taken from the broker being measured on the same machine.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// Pieces handed to one vectored write at most (the rest goes in the next one).
const MAX_SLICES: usize = 16;

/// The bytes waiting to be written, in order.
pub struct Outbound {
    /// Encoded frames; a shared piece sits between `buf[..piece.at]` and `buf[piece.at..]`.
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Large pieces, by position in `buf`.
    shared: VecDeque<Shared>,
    /// Bytes of `shared` not yet written.
    shared_pending: usize,
    /// `buf` drops what it has written once that is this large.
    compact_at: usize,
}

struct Shared {
    /// Written after `buf[..at]` and before `buf[at..]`.
    at: usize,
    bytes: Arc<Vec<u8>>,
    /// Bytes of `bytes` already written.
    sent: usize,
}

impl Outbound {
    /// An empty outbound with room for `capacity` bytes of frames, which drops written
    /// bytes from the front of its buffer once `compact_at` of them have piled up.
    pub fn new(capacity: usize, compact_at: usize) -> Outbound {
        Outbound {
            buf: Vec::with_capacity(capacity),
            written: 0,
            shared: VecDeque::new(),
            shared_pending: 0,
            compact_at,
        }
    }

    /// The buffer to append encoded frames to: they go after everything queued so far.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues `bytes` after everything queued so far, without copying it.
    pub fn push_shared(&mut self, bytes: Arc<Vec<u8>>) {
        self.shared_pending += bytes.len();
        self.shared.push_back(Shared {
            at: self.buf.len(),
            bytes,
            sent: 0,
        });
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.written + self.shared_pending
    }

    /// Offers what is pending to `write` (one call, with the pending bytes as up to
    /// `MAX_SLICES` slices in order) and drops what it took. Returns what `write` returned.
    pub fn write_with(
        &mut self,
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        let mut from = self.written;
        // Where the frame bytes this write may take end: before the first piece that does
        // not fit in it, if one does not.
        let mut end = self.buf.len();
        for piece in &self.shared {
            if count + 2 > MAX_SLICES {
                end = piece.at;
                break;
            }
            if piece.at > from {
                slices[count] = IoSlice::new(&self.buf[from..piece.at]);
                count += 1;
            }
            slices[count] = IoSlice::new(&piece.bytes[piece.sent..]);
            count += 1;
            from = piece.at;
        }
        if count < MAX_SLICES && from < end {
            slices[count] = IoSlice::new(&self.buf[from..end]);
            count += 1;
        }
        let n = write(&slices[..count])?;
        self.advance(n);
        Ok(n)
    }

    /// Drops the first `n` pending bytes.
    fn advance(&mut self, mut n: usize) {
        loop {
            let limit = self.shared.front().map_or(self.buf.len(), |piece| piece.at);
            let take = n.min(limit - self.written);
            self.written += take;
            n -= take;
            let Some(piece) = self.shared.front_mut() else {
                break;
            };
            if self.written < piece.at {
                break;
            }
            let take = n.min(piece.bytes.len() - piece.sent);
            piece.sent += take;
            n -= take;
            self.shared_pending -= take;
            if piece.sent < piece.bytes.len() {
                break;
            }
            self.shared.pop_front();
        }
        if self.written > 0 && (self.written == self.buf.len() || self.written >= self.compact_at) {
            self.buf.drain(..self.written);
            for piece in &mut self.shared {
                piece.at -= self.written;
            }
            self.written = 0;
        }
    }
}

#[cfg(test)]
impl Outbound {
    /// One write that takes at most `limit` bytes, copying them to `into`.
    pub(crate) fn write_once_into(&mut self, limit: usize, into: &mut Vec<u8>) {
        self.write_with(|slices| {
            let mut left = limit;
            for slice in slices {
                let take = left.min(slice.len());
                into.extend_from_slice(&slice[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
            Ok(limit - left)
        })
        .unwrap();
    }

    /// Writes everything to `into`, the i-th write taking at most `limits[i]` (cycling).
    pub(crate) fn drain_into(&mut self, limits: &[usize], into: &mut Vec<u8>) {
        for &limit in limits.iter().cycle() {
            if self.pending() == 0 {
                return;
            }
            self.write_once_into(limit, into);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_shared_pieces_come_out_in_order_whatever_each_write_takes() {
        for limits in [
            &[usize::MAX][..],
            &[1],
            &[3, 7, 2],
            &[5, 1000, 13],
            &[64, 1],
        ] {
            let mut out = Outbound::new(16, 8);
            let mut expected = Vec::new();
            let mut got = Vec::new();
            for round in 0u8..20 {
                let small: Vec<u8> = (0..(round % 5) * 3).map(|i| round ^ i).collect();
                out.buf().extend_from_slice(&small);
                expected.extend_from_slice(&small);
                if round % 3 != 1 {
                    let big: Vec<u8> = (0..40 + usize::from(round)).map(|i| i as u8).collect();
                    expected.extend_from_slice(&big);
                    out.push_shared(Arc::new(big));
                }
                assert_eq!(out.pending(), expected.len() - got.len());
                // Half of what is pending goes out before more is queued.
                if round % 2 == 0 {
                    let half = out.pending() / 2 + 1;
                    out.write_once_into(half, &mut got);
                }
            }
            out.drain_into(limits, &mut got);
            assert_eq!(got, expected, "limits {limits:?}");
            assert_eq!(out.pending(), 0);
            assert!(out.buf.is_empty() && out.shared.is_empty());
        }
    }

    #[test]
    fn more_pieces_than_one_write_takes_still_come_out_in_order() {
        // A shared piece first (one slice), then pieces each after a few frame bytes (two
        // slices each): the slices run out with frame bytes left both before and after the
        // piece that did not fit.
        let mut out = Outbound::new(16, 1024);
        let mut expected = Vec::new();
        for n in 0u8..12 {
            if n > 0 {
                out.buf().extend_from_slice(&[n; 3]);
                expected.extend_from_slice(&[n; 3]);
            }
            out.push_shared(Arc::new(vec![100 + n; 5]));
            expected.extend_from_slice(&[100 + n; 5]);
        }
        out.buf().extend_from_slice(b"tail");
        expected.extend_from_slice(b"tail");
        let mut got = Vec::new();
        out.write_once_into(usize::MAX, &mut got);
        assert!(got.len() < expected.len(), "one write cannot take it all");
        assert_eq!(
            got[..],
            expected[..got.len()],
            "the first write keeps the order"
        );
        out.drain_into(&[usize::MAX], &mut got);
        assert_eq!(got, expected);
    }

    #[test]
    fn a_written_shared_piece_is_let_go() {
        let mut out = Outbound::new(16, 1024);
        let body = Arc::new(vec![7u8; 100]);
        out.buf().extend_from_slice(b"head");
        out.push_shared(Arc::clone(&body));
        out.write_with(|_| Ok(50)).unwrap();
        assert_eq!(Arc::strong_count(&body), 2, "half written: still held");
        out.write_with(|slices| {
            assert_eq!(slices.len(), 1);
            assert_eq!(slices[0].len(), 54);
            Ok(54)
        })
        .unwrap();
        assert_eq!(Arc::strong_count(&body), 1);
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn a_refused_write_leaves_everything_pending() {
        let mut out = Outbound::new(16, 1024);
        out.buf().extend_from_slice(b"abc");
        out.push_shared(Arc::new(vec![1; 10]));
        let e = out
            .write_with(|_| Err(io::ErrorKind::WouldBlock.into()))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(out.pending(), 13);
    }
}
