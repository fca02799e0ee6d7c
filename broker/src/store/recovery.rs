//! Recovery of one queue's directory at startup: replays the ack log, scans the segment files in
//! order, keeps every intact record that was not removed, reports and works around damage
//! (torn tails, truncation, checksum mismatches), and deletes segments with nothing left.

use super::acklog::{self, AckState};
use super::record::{self, Damage};
use super::{Location, Recovered, RecoveryIssue, StoredMessage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) const ACK_LOG: &str = "acks.log";
pub(crate) const NAME_FILE: &str = "name";

/// Bookkeeping of one segment file, kept in memory while the queue runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// Records in it not yet removed; the file is deleted when this reaches 0 (unless it is the
    /// segment being appended to).
    pub live: u64,
    /// The ids of its records, all of them removed or not: ids increase with every append, so
    /// segments hold disjoint id ranges, and ack compaction keeps exactly the ack records whose
    /// id falls in the range of a segment that still exists.
    pub min_id: u64,
    pub max_id: u64,
}

impl SegmentInfo {
    pub const EMPTY: SegmentInfo = SegmentInfo {
        live: 0,
        min_id: u64::MAX,
        max_id: 0,
    };

    /// No record at all (removed or not).
    pub fn is_empty(&self) -> bool {
        self.min_id > self.max_id
    }

    pub fn add(&mut self, id: u64, live: bool) {
        self.min_id = self.min_id.min(id);
        self.max_id = self.max_id.max(id);
        if live {
            self.live += 1;
        }
    }
}

pub(crate) fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.seg"))
}

/// The segment number of a file name like `00000012.seg`.
fn segment_number(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_suffix(".seg")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What recovery found in a queue's directory.
pub(crate) struct RecoveredQueue {
    pub messages: Vec<Recovered>,
    /// Bytes of message data recovery may still keep in memory; past it, bodies stay on disk.
    pub keep_bytes: usize,
    pub issues: Vec<RecoveryIssue>,
    /// The segments kept (those with live messages, and the last one if it is kept to append
    /// to), by number.
    pub segments: BTreeMap<u32, SegmentInfo>,
    /// The segment to append to and its intact length: the last segment if kept, else a new
    /// number after every one seen.
    pub active: u32,
    pub active_len: u64,
    /// The highest id in any record or ack: ids of new messages must be greater, or a stale
    /// Removed record could claim them.
    pub max_seen_id: u64,
    /// Intact length of the ack log.
    pub ack_len: u64,
}

pub(crate) fn recover(dir: &Path, keep_bytes: usize) -> io::Result<RecoveredQueue> {
    let mut issues = Vec::new();
    let (acks, ack_len) = acklog::recover(&dir.join(ACK_LOG), &mut issues)?;

    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = segment_number(name) {
            numbers.push(n);
        } else if name.ends_with(".tmp") {
            // A compaction or name-file write that did not finish: the original is intact.
            fs::remove_file(entry.path())?;
        }
    }
    numbers.sort_unstable();

    let mut found = RecoveredQueue {
        messages: Vec::new(),
        keep_bytes,
        issues,
        segments: BTreeMap::new(),
        active: numbers.last().map_or(1, |n| n.saturating_add(1)),
        active_len: 0,
        max_seen_id: acks.max_id,
        ack_len,
    };
    let mut changed = false;
    for (i, &number) in numbers.iter().enumerate() {
        let last = i + 1 == numbers.len();
        let path = segment_path(dir, number);
        let (info, len) = scan_segment(&path, number, last, &acks, &mut found)?;
        found.max_seen_id = found.max_seen_id.max(info.max_id);
        if info.live > 0 {
            found.segments.insert(number, info);
            if last {
                found.active = number;
                found.active_len = len;
            }
        } else if last && info.is_empty() {
            // Nothing intact in it at all (new, or cut back to nothing): append to it.
            found.segments.insert(number, info);
            found.active = number;
            found.active_len = len;
        } else {
            tracing::debug!(path = %path.display(), "segment with no live message deleted");
            fs::remove_file(&path)?;
            changed = true;
        }
    }
    if changed {
        acklog::sync_dir(dir)?;
    }
    // Segments are scanned in order and ids increase with every append, so this is already
    // sorted unless a writer broke that rule; the sort is then what keeps queue order. (Ids
    // are unique, so an unstable sort will do: a stable one allocates half the list again,
    // 16 MiB for a million messages, at recovery's peak.)
    if !found.messages.is_sorted_by_key(|m| m.id) {
        found.messages.sort_unstable_by_key(|m| m.id);
    }
    Ok(found)
}

/// Scans one segment, adding its live records to `found.messages` and its damage to
/// `found.issues`. The last segment is cut back to its intact length, so appends continue on a
/// record boundary. Returns the segment's bookkeeping and its intact length.
fn scan_segment(
    path: &Path,
    number: u32,
    last: bool,
    acks: &AckState,
    found: &mut RecoveredQueue,
) -> io::Result<(SegmentInfo, u64)> {
    let mut segment = SegmentReader::open(path)?;
    let mut info = SegmentInfo::EMPTY;
    let mut offset = 0usize;
    loop {
        let data = segment.record_at(offset)?;
        if data.is_empty() {
            break;
        }
        let (r, len) = match record::parse(data) {
            Ok(parsed) => parsed,
            Err(Damage::Skip(len, reason)) => {
                found.issues.push(issue(path, offset, reason));
                offset += len;
                continue;
            }
            Err(Damage::End(reason)) => {
                found
                    .issues
                    .push(issue(path, offset, end_reason(reason, last)));
                break;
            }
        };
        // A `Location` holds u32s; segments roll over far below 4 GiB, so a record reaching
        // past that can only be garbage that happened to pass the checks.
        let (Ok(location_offset), Ok(location_len)) = (u32::try_from(offset), u32::try_from(len))
        else {
            let reason = "record beyond 4 GiB into the segment".to_string();
            found
                .issues
                .push(issue(path, offset, end_reason(reason, last)));
            break;
        };
        let live = !acks.is_removed(r.id);
        info.add(r.id, live);
        if live {
            found.messages.push(Recovered {
                id: r.id,
                location: Location {
                    segment: number,
                    offset: location_offset,
                    len: location_len,
                },
                message: keep(&mut found.keep_bytes, r.properties.len() + r.body.len()).then(
                    || {
                        Box::new(StoredMessage {
                            // Copies, so that a few live messages do not pin a whole segment read
                            // into memory.
                            exchange: r.exchange.to_string(),
                            routing_key: r.routing_key.to_string(),
                            properties: Bytes::copy_from_slice(r.properties),
                            body: Bytes::copy_from_slice(r.body),
                        })
                    },
                ),
                delivered: acks.is_delivered(r.id),
            });
        }
        offset += len;
    }
    if last && (offset as u64) < segment.file_len {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(offset as u64)?;
        file.sync_all()?;
    }
    Ok((info, offset as u64))
}

/// Segments are read this much at a time at recovery (a record larger than this is read
/// whole): a whole 32 MiB segment in memory, on top of the list of recovered messages, was
/// recovery's peak.
const SCAN_CHUNK: usize = 4 << 20;

/// Reads a segment front to back in chunks, handing out the bytes from a record's start.
struct SegmentReader {
    file: File,
    file_len: u64,
    /// Bytes of the file from `start` on.
    buf: Vec<u8>,
    start: usize,
}

impl SegmentReader {
    fn open(path: &Path) -> io::Result<SegmentReader> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        Ok(SegmentReader {
            file,
            file_len,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// The bytes from file offset `offset` (at or after the last one asked for) to the end of
    /// what is buffered, which holds the whole record there if the file does: its length
    /// field says how long it is (a damaged one that claims more is read up to the end of the
    /// file). Empty at the end of the file.
    fn record_at(&mut self, offset: usize) -> io::Result<&[u8]> {
        loop {
            let pos = offset.saturating_sub(self.start).min(self.buf.len());
            let have = self.buf.len() - pos;
            let want = match self.buf.get(pos..pos + 4) {
                Some(len) => 4 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize,
                None => 4,
            };
            let buffered_end = (self.start + self.buf.len()) as u64;
            if have >= want || buffered_end >= self.file_len {
                return Ok(&self.buf[pos..]);
            }
            // Drop what was read, then read on: at least the record, at least a chunk.
            self.buf.drain(..pos);
            self.start += pos;
            let left = self.file_len - buffered_end;
            let more = (want.max(SCAN_CHUNK) - self.buf.len()) as u64;
            let read = (&self.file)
                .take(more.min(left))
                .read_to_end(&mut self.buf)?;
            if read == 0 {
                // The file is shorter than it was: treat what is buffered as all there is.
                self.file_len = buffered_end;
            }
        }
    }
}

fn end_reason(reason: String, last: bool) -> String {
    if last {
        format!("{reason}; segment cut off here")
    } else {
        format!("{reason}; rest of the segment skipped")
    }
}

fn issue(path: &Path, offset: usize, reason: String) -> RecoveryIssue {
    RecoveryIssue {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    }
}

/// Takes `size` from the recovery memory budget if it fits.
fn keep(budget: &mut usize, size: usize) -> bool {
    match budget.checked_sub(size) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names() {
        assert_eq!(segment_number("00000001.seg"), Some(1));
        assert_eq!(segment_number("12345678.seg"), Some(12_345_678));
        assert_eq!(segment_number("acks.log"), None);
        assert_eq!(segment_number(".seg"), None);
        assert_eq!(segment_number("+1.seg"), None);
        assert_eq!(
            segment_path(Path::new("/q"), 7),
            PathBuf::from("/q/00000007.seg")
        );
    }
}
