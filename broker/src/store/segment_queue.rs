//! One durable queue's open store: appends message records to the active segment through a
//! userspace buffer (one positioned write per batch), appends acks to the ack log, deletes
//! segments whose messages are all gone, and reads records back for paged-out bodies.

use super::acklog::{self, AckKind, AckLog};
use super::record;
use super::recovery::{segment_path, RecoveredQueue, SegmentInfo, ACK_LOG};
use super::{Location, MessageRef, QueueStore, StoredMessage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Past this many buffered bytes, records go to the OS without waiting for the batch to end,
/// so a batch of large messages does not hold them all in memory twice.
const BUF_FLUSH: usize = 4 << 20;
/// An active segment with no live message left is replaced once it holds this much.
const RECLAIM_ACTIVE_BYTES: u64 = 8 << 20;
/// After a flush, a buffer grown past `BUF_KEEP_MAX` (by a large batch or a large message) is
/// shrunk back to `BUF_KEEP`: thousands of durable queues must not each pin megabytes.
const BUF_KEEP_MAX: usize = 1 << 20;
const BUF_KEEP: usize = 256 << 10;
/// A record whose body is at least this long is written straight from the message (after the
/// buffered records) instead of being copied into the buffer first.
const DIRECT_WRITE: usize = 64 << 10;
/// A record read from a file brings at least this much of the file with it, from the record
/// on: a queue reads its backlog back in order, so its next records are mostly in the same
/// block, and one read serves hundreds of small ones.
const READ_AHEAD: usize = 256 << 10;

pub(crate) struct SegmentQueue {
    dir: PathBuf,
    segment_bytes: u64,
    /// Every segment file that exists, the active one included.
    segments: BTreeMap<u32, SegmentInfo>,
    active: u32,
    /// Shared with the sync thread, which fsyncs it while appends go on.
    active_file: Arc<File>,
    /// Bytes of the active segment in the file; `buf` holds the records after them.
    active_len: u64,
    buf: Vec<u8>,
    acks: AckLog,
    /// A read handle on the last non-active segment read from (reads come in queue order, so
    /// mostly from one segment at a time).
    reader: Option<(u32, File)>,
    /// The last block read (segment, file offset, bytes); records are never rewritten, so it
    /// stays right until its segment is deleted. Records read from it share its memory.
    read_ahead: Option<(u32, u64, Bytes)>,
    /// The highest id stored or seen at recovery (removed ones included): new ids must be
    /// greater, or a stale record or ack of a removed message would claim them.
    last_id: u64,
    /// Nothing here needs to survive a crash (page files): no fsync at segment roll-over.
    volatile: bool,
}

impl SegmentQueue {
    /// Opens the queue's files for appending after `recovered` was read from `dir`.
    pub fn open(
        dir: PathBuf,
        recovered: &RecoveredQueue,
        segment_bytes: u64,
        ack_compact_min: u64,
        volatile: bool,
    ) -> io::Result<SegmentQueue> {
        let active_path = segment_path(&dir, recovered.active);
        let created = !active_path.exists();
        let active_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&active_path)?;
        let acks = AckLog::open(dir.join(ACK_LOG), recovered.ack_len, ack_compact_min)?;
        if created && !volatile {
            acklog::sync_dir(&dir)?;
        }
        let mut segments = recovered.segments.clone();
        segments
            .entry(recovered.active)
            .or_insert(SegmentInfo::EMPTY);
        Ok(SegmentQueue {
            dir,
            segment_bytes,
            segments,
            active: recovered.active,
            active_file: Arc::new(active_file),
            active_len: recovered.active_len,
            buf: Vec::new(),
            acks,
            reader: None,
            read_ahead: None,
            last_id: recovered.max_seen_id,
            volatile,
        })
    }

    fn active_end(&self) -> u64 {
        self.active_len + self.buf.len() as u64
    }

    /// Writes the buffered records with one positioned write: a retry after a partial write
    /// (ENOSPC) rewrites the same bytes, so the file never holds a misaligned record.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.active_file.write_all_at(&self.buf, self.active_len)?;
        self.active_len += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > BUF_KEEP_MAX {
            self.buf.shrink_to(BUF_KEEP);
        }
        Ok(())
    }

    /// Finishes the active segment and starts the next. The finished one is fsynced here
    /// (rare, so inline) so that the sync thread only ever needs the active segment.
    fn roll_over(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        if !self.volatile {
            self.active_file.sync_data()?;
        }
        let next = self
            .active
            .checked_add(1)
            .ok_or_else(|| io::Error::other("segment numbers exhausted"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_path(&self.dir, next))?;
        if !self.volatile {
            acklog::sync_dir(&self.dir)?;
        }
        let finished = std::mem::replace(&mut self.active, next);
        self.active_file = Arc::new(file);
        self.active_len = 0;
        self.segments.insert(next, SegmentInfo::EMPTY);
        if self.segments.get(&finished).is_some_and(|s| s.live == 0) {
            self.delete_segment(finished)?;
        }
        Ok(())
    }

    /// Writes a large record straight to the file (the buffer is empty): its head through the
    /// buffer, its body from where it is, saving the copy into the buffer. Nothing is
    /// recorded on failure, so the next write goes to the same place.
    fn write_direct(&mut self, id: u64, message: MessageRef<'_>) -> io::Result<u32> {
        let len = record::encode_head(&mut self.buf, id, message)?;
        let head = self.buf.len() as u64;
        let written = self
            .active_file
            .write_all_at(&self.buf, self.active_len)
            .and_then(|()| {
                self.active_file
                    .write_all_at(message.body, self.active_len + head)
            });
        self.buf.clear();
        written?;
        self.active_len += u64::from(len);
        Ok(len)
    }

    fn delete_segment(&mut self, number: u32) -> io::Result<()> {
        self.segments.remove(&number);
        if self.reader.as_ref().is_some_and(|(n, _)| *n == number) {
            self.reader = None;
        }
        if self
            .read_ahead
            .as_ref()
            .is_some_and(|(n, _, _)| *n == number)
        {
            self.read_ahead = None;
        }
        tracing::debug!(dir = %self.dir.display(), segment = number, "segment emptied, deleted");
        match fs::remove_file(segment_path(&self.dir, number)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Rewrites the ack log without the records of ids in deleted segments (ids of a deleted
    /// segment never come back: new ids are always higher).
    fn compact_acks(&mut self) -> io::Result<()> {
        let ranges: Vec<(u64, u64)> = self
            .segments
            .values()
            .filter(|s| !s.is_empty())
            .map(|s| (s.min_id, s.max_id))
            .collect();
        // Segments in number order hold increasing id ranges, so `ranges` is sorted.
        self.acks.compact(|id| {
            let i = ranges.partition_point(|&(_, max)| max < id);
            ranges.get(i).is_some_and(|&(min, _)| min <= id)
        })
    }

    /// The record at `location` if the last block read holds all of it.
    fn read_ahead_of(&self, location: Location) -> Option<Bytes> {
        let (segment, start, block) = self.read_ahead.as_ref()?;
        let from = usize::try_from(u64::from(location.offset).checked_sub(*start)?).ok()?;
        let to = from.checked_add(location.len as usize)?;
        (*segment == location.segment && to <= block.len()).then(|| block.slice(from..to))
    }

    fn read_file(&mut self, segment: u32) -> io::Result<&File> {
        if segment == self.active {
            return Ok(&self.active_file);
        }
        if self.reader.as_ref().is_none_or(|(n, _)| *n != segment) {
            self.reader = Some((segment, File::open(segment_path(&self.dir, segment))?));
        }
        match &self.reader {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("segment reader missing")),
        }
    }
}

impl QueueStore for SegmentQueue {
    fn next_id(&self) -> u64 {
        self.last_id + 1
    }

    fn append(&mut self, id: u64, message: MessageRef<'_>) -> io::Result<Location> {
        if id <= self.last_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message id {id} not above the last stored id {}",
                    self.last_id
                ),
            ));
        }
        if self.active_end() >= self.segment_bytes {
            self.roll_over()?;
        }
        let offset = u32::try_from(self.active_end())
            .map_err(|_| io::Error::other("segment offset beyond 4 GiB"))?;
        // The buffered records go first; should that fail, this one is buffered behind them.
        let len = if message.body.len() >= DIRECT_WRITE && self.write_buffer().is_ok() {
            self.write_direct(id, message)?
        } else {
            record::encode(&mut self.buf, id, message)?
        };
        self.last_id = id;
        self.segments
            .entry(self.active)
            .or_insert(SegmentInfo::EMPTY)
            .add(id, true);
        if self.buf.len() >= BUF_FLUSH {
            // A failure leaves the records buffered; the batch's `flush` retries and reports it.
            let _ = self.write_buffer();
        }
        Ok(Location {
            segment: self.active,
            offset,
            len,
        })
    }

    fn mark_delivered(&mut self, id: u64) -> io::Result<()> {
        self.acks.push(AckKind::Delivered, id);
        Ok(())
    }

    fn remove(&mut self, removed: &[(u64, Location)]) -> io::Result<()> {
        let mut result = Ok(());
        for &(id, location) in removed {
            self.acks.push(AckKind::Removed, id);
            let Some(segment) = self.segments.get_mut(&location.segment) else {
                continue;
            };
            // Callers remove each message once; saturating keeps a double removal from
            // wrapping around (it could still delete a segment early: a caller bug).
            segment.live = segment.live.saturating_sub(1);
            if segment.live == 0 && location.segment != self.active {
                if let Err(e) = self.delete_segment(location.segment) {
                    result = result.and(Err(e));
                }
            }
        }
        // A drained queue whose active segment has grown big starts a fresh one, so the disk
        // space of a queue that keeps up with its publishers comes back too (the emptied
        // segment is deleted by the roll-over).
        let active_drained = self.segments.get(&self.active).is_some_and(|s| s.live == 0);
        if active_drained && self.active_end() >= RECLAIM_ACTIVE_BYTES.min(self.segment_bytes) {
            result = result.and(self.roll_over());
        }
        result
    }

    fn read(&mut self, id: u64, location: Location) -> io::Result<StoredMessage> {
        let offset = u64::from(location.offset);
        let len = location.len as usize;
        if location.segment == self.active && offset >= self.active_len {
            // Still in the write buffer.
            let start = (offset - self.active_len) as usize;
            let bytes = self
                .buf
                .get(start..start.saturating_add(len))
                .ok_or_else(|| bad_location(location))?;
            let (r, _) = checked(bytes, id, location)?;
            return Ok(StoredMessage {
                exchange: r.exchange.to_string(),
                routing_key: r.routing_key.to_string(),
                properties: Bytes::copy_from_slice(r.properties),
                body: Bytes::copy_from_slice(r.body),
            });
        }
        // Properties and body are slices of the block read (one allocation for many records).
        let bytes = match self.read_ahead_of(location) {
            Some(bytes) => bytes,
            None => {
                // In the active segment, only what is written so far can be read ahead.
                let written = if location.segment == self.active {
                    usize::try_from(self.active_len - offset).unwrap_or(usize::MAX)
                } else {
                    usize::MAX
                };
                let most = len.max(READ_AHEAD).min(written);
                let block = Bytes::from(read_at(
                    self.read_file(location.segment)?,
                    len,
                    most,
                    offset,
                )?);
                let record = block.slice(..len);
                self.read_ahead = Some((location.segment, offset, block));
                record
            }
        };
        let (r, _) = checked(&bytes, id, location)?;
        Ok(StoredMessage {
            exchange: r.exchange.to_string(),
            routing_key: r.routing_key.to_string(),
            properties: bytes.slice_ref(r.properties),
            body: bytes.slice_ref(r.body),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        let segment = self.write_buffer();
        let acks = self.acks.flush();
        segment?;
        acks?;
        if self.acks.needs_compaction() {
            if let Err(e) = self.compact_acks() {
                // Everything is written; only the rewrite failed. Try again after more growth.
                tracing::warn!(dir = %self.dir.display(), error = %e, "ack log compaction failed");
                self.acks.postpone_compaction();
            }
        }
        Ok(())
    }

    fn sync_files(&self) -> Vec<Arc<File>> {
        vec![Arc::clone(&self.active_file), self.acks.file()]
    }

    fn destroy(mut self: Box<Self>) -> io::Result<()> {
        self.buf.clear();
        self.acks.discard();
        let dir = std::mem::take(&mut self.dir);
        drop(self);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        acklog::sync_dir(dir.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for SegmentQueue {
    /// Hands what is still buffered to the OS when the queue task ends (shutdown). Nothing
    /// buffered has been confirmed, so a failure here loses no promise.
    fn drop(&mut self) {
        let _ = self.write_buffer();
        let _ = self.acks.flush();
    }
}

/// Reads at least `least` and at most `most` bytes at `offset` (fewer than `most` where the
/// file ends) into a new buffer, without zeroing it first (for a 1 MiB record that memset
/// cost a third as much as the read).
fn read_at(file: &File, least: usize, most: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(most.max(least));
    while buf.len() < most {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) if buf.len() >= least => break,
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The buffer may have had room for more than was asked.
    buf.truncate(most.max(least));
    Ok(buf)
}

/// Decodes a record read back and checks it is the one asked for.
fn checked(
    bytes: &[u8],
    id: u64,
    location: Location,
) -> io::Result<(record::RecordRef<'_>, usize)> {
    match record::parse(bytes) {
        Ok((r, len)) if len == bytes.len() && r.id == id => Ok((r, len)),
        Ok((r, _)) if r.id != id => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record at {location:?} has id {}, not {id}", r.id),
        )),
        Ok(_) => Err(bad_location(location)),
        Err(record::Damage::End(reason) | record::Damage::Skip(_, reason)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record {id} at {location:?}: {reason}"),
        )),
    }
}

fn bad_location(location: Location) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("no record at {location:?}"),
    )
}
