//! A queue's ack log: fixed-size records saying a stored message was delivered (so it comes
//! back redelivered) or is gone (acked, dropped, purged). Appended by the queue task, replayed
//! at recovery, and compacted by rewriting it once it has grown well past what still matters.
//!
//! Record: `[u8 kind][u64 id][u32 crc32 of kind and id]`, big-endian, 13 bytes.

use super::RecoveryIssue;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const RECORD: usize = 13;

/// Past this many buffered bytes, records go to the OS without waiting for the batch to end
/// (a purge of millions of messages must not buffer them all).
const BUF_FLUSH: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    Delivered = 1,
    Removed = 2,
}

pub(crate) fn encode(buf: &mut Vec<u8>, kind: AckKind, id: u64) {
    let start = buf.len();
    buf.push(kind as u8);
    buf.extend_from_slice(&id.to_be_bytes());
    let crc = crc32fast::hash(&buf[start..]);
    buf.extend_from_slice(&crc.to_be_bytes());
}

/// `None` for a damaged record: checksum mismatch or unknown kind.
pub(crate) fn decode(record: &[u8; RECORD]) -> Option<(AckKind, u64)> {
    let (body, crc) = record.split_at(9);
    if crc32fast::hash(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return None;
    }
    let kind = match body[0] {
        1 => AckKind::Delivered,
        2 => AckKind::Removed,
        _ => return None,
    };
    let mut id = [0; 8];
    id.copy_from_slice(&body[1..]);
    Some((kind, u64::from_be_bytes(id)))
}

const DELIVERED: u8 = 1;
const REMOVED: u8 = 2;

/// What the ack log says, per message id.
#[derive(Debug, Default)]
pub(crate) struct AckState {
    flags: HashMap<u64, u8>,
    /// The highest id any record names: new ids must stay above it.
    pub max_id: u64,
}

impl AckState {
    fn record(&mut self, kind: AckKind, id: u64) {
        let flag = match kind {
            AckKind::Delivered => DELIVERED,
            AckKind::Removed => REMOVED,
        };
        *self.flags.entry(id).or_default() |= flag;
        self.max_id = self.max_id.max(id);
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.flags.get(&id).is_some_and(|f| f & REMOVED != 0)
    }

    pub fn is_delivered(&self, id: u64) -> bool {
        self.flags.get(&id).is_some_and(|f| f & DELIVERED != 0)
    }
}

/// Replays the ack log at `path` (missing: empty). Damaged records in the middle are skipped
/// (a lost Removed record only means a redelivery: at-least-once); a torn or damaged tail is
/// cut off so that appends continue on a record boundary. Returns the state and the length of
/// the file as kept.
pub(crate) fn recover(path: &Path, issues: &mut Vec<RecoveryIssue>) -> io::Result<(AckState, u64)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((AckState::default(), 0)),
        Err(e) => return Err(e),
    };
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut state = AckState::default();
    let mut offset = 0u64;
    // Where the current run of damaged records started, and how many it has.
    let mut damaged: Option<(u64, u64)> = None;
    let mut record = [0; RECORD];
    while offset + RECORD as u64 <= file_len {
        reader.read_exact(&mut record)?;
        match decode(&record) {
            Some((kind, id)) => {
                if let Some((start, count)) = damaged.take() {
                    issues.push(issue(
                        path,
                        start,
                        format!("skipped {count} damaged ack records"),
                    ));
                }
                state.record(kind, id);
            }
            None => {
                let (_, count) = damaged.get_or_insert((offset, 0));
                *count += 1;
            }
        }
        offset += RECORD as u64;
    }
    let keep = damaged.map_or(offset, |(start, _)| start);
    if keep < file_len {
        issues.push(issue(
            path,
            keep,
            format!("torn or damaged tail of {} bytes cut off", file_len - keep),
        ));
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok((state, keep))
}

fn issue(path: &Path, offset: u64, reason: String) -> RecoveryIssue {
    RecoveryIssue {
        file: path.to_path_buf(),
        offset,
        reason,
    }
}

/// The ack log being appended to.
pub(crate) struct AckLog {
    path: PathBuf,
    /// Shared with the sync thread, which fsyncs it while appends go on.
    file: Arc<File>,
    /// Bytes in the file; buffered records go right after.
    len: u64,
    buf: Vec<u8>,
    /// Length right after the last compaction (or at open): the log is compacted again when it
    /// has grown to twice that plus `compact_min`, so rewriting costs amortized O(1) per record.
    compacted_len: u64,
    compact_min: u64,
}

impl AckLog {
    /// Opens (creating if missing) the log at `path`, whose first `len` bytes are intact.
    pub fn open(path: PathBuf, len: u64, compact_min: u64) -> io::Result<AckLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(AckLog {
            path,
            file: Arc::new(file),
            len,
            buf: Vec::new(),
            compacted_len: len,
            compact_min,
        })
    }

    pub fn push(&mut self, kind: AckKind, id: u64) {
        encode(&mut self.buf, kind, id);
        if self.buf.len() >= BUF_FLUSH {
            // A failure leaves the records buffered; the batch's `flush` retries and reports.
            let _ = self.flush();
        }
    }

    /// Writes buffered records with one positioned write. Positioned, so that a retry after a
    /// partial write (ENOSPC) rewrites the same bytes instead of leaving a misaligned record.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 4 * BUF_FLUSH {
            self.buf.shrink_to(BUF_FLUSH);
        }
        Ok(())
    }

    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn needs_compaction(&self) -> bool {
        self.len
            > self
                .compact_min
                .saturating_add(self.compacted_len.saturating_mul(2))
    }

    /// Postpones the next compaction as if one had just happened (after a failed attempt, so
    /// that it is not retried on every flush).
    pub fn postpone_compaction(&mut self) {
        self.compacted_len = self.len;
    }

    /// Rewrites the log with only the records whose id `keep` accepts: written to a temp file,
    /// fsynced, renamed over the log, directory fsynced. Everything flushed before stays
    /// durable across the switch: what matters is in the fsynced new file.
    pub fn compact(&mut self, keep: impl Fn(u64) -> bool) -> io::Result<()> {
        self.flush()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("log.tmp");
        let new = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut kept = 0u64;
        {
            // Reads through its own handle: `self.file` is shared with the sync thread, so its
            // cursor is left alone (appends are positioned anyway).
            let mut reader = BufReader::with_capacity(1 << 16, File::open(&self.path)?);
            let mut writer = BufWriter::with_capacity(1 << 16, &new);
            let mut record = [0; RECORD];
            for _ in 0..self.len / RECORD as u64 {
                reader.read_exact(&mut record)?;
                if decode(&record).is_some_and(|(_, id)| keep(id)) {
                    writer.write_all(&record)?;
                    kept += RECORD as u64;
                }
            }
            writer.flush()?;
        }
        new.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        sync_dir(dir)?;
        tracing::debug!(path = %self.path.display(), from = self.len, to = kept, "ack log compacted");
        self.file = Arc::new(new);
        self.len = kept;
        self.compacted_len = kept;
        Ok(())
    }

    /// Drops buffered records (the queue is being destroyed).
    pub fn discard(&mut self) {
        self.buf.clear();
    }
}

/// fsyncs a directory, so that files created, renamed or removed in it stay so after a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_record_encoding() {
        let mut buf = Vec::new();
        encode(&mut buf, AckKind::Removed, 0x0102_0304_0506_0708);
        assert_eq!(buf.len(), RECORD);
        assert_eq!(&buf[..9], &[2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[9..], &crc32fast::hash(&buf[..9]).to_be_bytes());
        let record: [u8; RECORD] = buf[..].try_into().unwrap();
        assert_eq!(
            decode(&record),
            Some((AckKind::Removed, 0x0102_0304_0506_0708))
        );

        let mut buf = Vec::new();
        encode(&mut buf, AckKind::Delivered, 5);
        let mut record: [u8; RECORD] = buf[..].try_into().unwrap();
        assert_eq!(decode(&record), Some((AckKind::Delivered, 5)));
        record[4] ^= 0x10;
        assert_eq!(decode(&record), None);
    }

    #[test]
    fn unknown_kind_is_damage() {
        let mut record = [0u8; RECORD];
        record[0] = 3;
        let crc = crc32fast::hash(&record[..9]);
        record[9..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&record), None);
    }

    #[test]
    fn recovery_skips_damage_in_the_middle_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.log");
        let mut buf = Vec::new();
        encode(&mut buf, AckKind::Delivered, 1);
        encode(&mut buf, AckKind::Removed, 2);
        encode(&mut buf, AckKind::Removed, 3);
        buf[RECORD + 3] ^= 0xff; // damages the second record
        encode(&mut buf, AckKind::Removed, 4);
        buf.extend_from_slice(&[2, 0, 0]); // a record torn after three bytes
        fs::write(&path, &buf).unwrap();

        let mut issues = Vec::new();
        let (state, len) = recover(&path, &mut issues).unwrap();
        assert_eq!(len, 4 * RECORD as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        assert!(state.is_delivered(1) && !state.is_removed(1));
        assert!(!state.is_removed(2));
        assert!(state.is_removed(3) && state.is_removed(4));
        assert_eq!(state.max_id, 4);
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].offset, RECORD as u64);
        assert_eq!(issues[1].offset, 4 * RECORD as u64);
    }

    #[test]
    fn a_damaged_run_at_the_end_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.log");
        let mut buf = Vec::new();
        encode(&mut buf, AckKind::Removed, 1);
        buf.extend_from_slice(&[0; 2 * RECORD]); // zeros, as a crash can leave
        fs::write(&path, &buf).unwrap();
        let mut issues = Vec::new();
        let (state, len) = recover(&path, &mut issues).unwrap();
        assert_eq!(len, RECORD as u64);
        assert!(state.is_removed(1));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].offset, RECORD as u64);
    }

    #[test]
    fn compaction_keeps_only_what_matters_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.log");
        let mut log = AckLog::open(path.clone(), 0, 0).unwrap();
        for id in 1..=10 {
            log.push(AckKind::Delivered, id);
            log.push(AckKind::Removed, id);
        }
        log.flush().unwrap();
        assert!(log.needs_compaction());
        log.compact(|id| id > 8).unwrap();
        assert_eq!(log.len(), 4 * RECORD as u64);
        log.push(AckKind::Delivered, 11);
        log.flush().unwrap();

        let (state, len) = recover(&path, &mut Vec::new()).unwrap();
        assert_eq!(len, 5 * RECORD as u64);
        assert!(!state.is_removed(8));
        assert!(state.is_removed(9) && state.is_delivered(10) && state.is_delivered(11));
        assert!(!dir.path().join("acks.log.tmp").exists());
    }
}
