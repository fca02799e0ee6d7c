//! The embedded storage engine: one directory per durable queue under `<data_dir>/queues/`,
//! holding segment files of message records (`00000001.seg`, …), an ack log (`acks.log`) and a
//! `name` file saying which queue it is.
//!
//! The directory name is the first 32 hex digits of SHA-256(vhost ‖ 0x00 ‖ queue): fixed length
//! and safe whatever bytes the names hold. The `name` file (`vhost <len> <vhost>` and
//! `queue <len> <queue>` lines, lengths in bytes) lets a human, and `remove_other_queues`, tell
//! which queue a directory belongs to.

use super::acklog::sync_dir;
use super::recovery::{self, NAME_FILE};
use super::segment_queue::SegmentQueue;
use super::{OpenedQueue, Store};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A segment is finished, and the next one started, once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// The ack log is compacted once it exceeds this plus twice its size after the last compaction.
pub const ACK_COMPACT_MIN_BYTES: u64 = 4 << 20;

#[derive(Debug)]
pub struct SegmentStore {
    /// `<data_dir>/queues`
    root: PathBuf,
    segment_bytes: u64,
    ack_compact_min: u64,
    /// Page files: wiped at every start, so never fsynced.
    volatile: bool,
}

impl SegmentStore {
    /// Opens the store in `data_dir`, creating `<data_dir>/queues/` if needed.
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        Self::with_limits(data_dir, SEGMENT_BYTES, ACK_COMPACT_MIN_BYTES)
    }

    /// A store whose contents need not survive a crash (the page files of messages without a
    /// durable home, wiped at startup): segments are not fsynced when they fill up.
    pub fn volatile(data_dir: &Path) -> io::Result<Self> {
        let mut store = Self::new(data_dir)?;
        store.volatile = true;
        Ok(store)
    }

    /// Like `new` with other roll-over and compaction sizes (tests use tiny ones). Segment
    /// offsets are u32, so `segment_bytes` is capped at 1 GiB.
    pub fn with_limits(
        data_dir: &Path,
        segment_bytes: u64,
        ack_compact_min: u64,
    ) -> io::Result<Self> {
        let root = data_dir.join("queues");
        if !root.is_dir() {
            fs::create_dir_all(&root)?;
            sync_dir(data_dir)?;
        }
        Ok(SegmentStore {
            root,
            segment_bytes: segment_bytes.clamp(1, 1 << 30),
            ack_compact_min,
            volatile: false,
        })
    }

    fn queue_dir(&self, vhost: &str, queue: &str) -> PathBuf {
        self.root.join(dir_name(vhost, queue))
    }
}

/// First 32 hex digits of SHA-256(vhost ‖ 0x00 ‖ queue).
fn dir_name(vhost: &str, queue: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(vhost.as_bytes());
    hasher.update([0u8]);
    hasher.update(queue.as_bytes());
    let digest = hasher.finalize();
    let mut name = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        let _ = write!(name, "{byte:02x}");
    }
    name
}

fn encode_name(vhost: &str, queue: &str) -> Vec<u8> {
    format!(
        "vhost {} {vhost}\nqueue {} {queue}\n",
        vhost.len(),
        queue.len()
    )
    .into_bytes()
}

/// Parses a `name` file; `None` if it is not one.
fn decode_name(mut data: &[u8]) -> Option<(String, String)> {
    let vhost = name_field(&mut data, b"vhost ")?;
    let queue = name_field(&mut data, b"queue ")?;
    data.is_empty().then_some((vhost, queue))
}

/// One `<key><len> <bytes>\n` line.
fn name_field(data: &mut &[u8], key: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(key)?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    let rest = &rest[space + 1..];
    let value = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix(b"\n")?;
    *data = rest;
    String::from_utf8(value.to_vec()).ok()
}

/// Writes the `name` file atomically: temp file, fsync, rename, directory fsync.
fn write_name(dir: &Path, vhost: &str, queue: &str) -> io::Result<()> {
    let tmp = dir.join("name.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&encode_name(vhost, queue))?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(NAME_FILE))?;
    sync_dir(dir)
}

fn read_name(dir: &Path) -> io::Result<Option<(String, String)>> {
    match fs::read(dir.join(NAME_FILE)) {
        Ok(data) => Ok(decode_name(&data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store for SegmentStore {
    fn open_queue(&self, vhost: &str, queue: &str, keep_bytes: usize) -> io::Result<OpenedQueue> {
        let dir = self.queue_dir(vhost, queue);
        if dir.is_dir() {
            match read_name(&dir)? {
                Some((v, q)) if v == vhost && q == queue => {}
                Some((v, q)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} belongs to queue '{q}' in vhost '{v}', not '{queue}' in '{vhost}'",
                            dir.display()
                        ),
                    ))
                }
                // The queue's creation stopped before its name was written: nothing in it was
                // ever confirmed, and the directory is this queue's by its name.
                None => write_name(&dir, vhost, queue)?,
            }
        } else {
            fs::create_dir_all(&dir)?;
            write_name(&dir, vhost, queue)?;
            sync_dir(&self.root)?;
        }
        let mut recovered = recovery::recover(&dir, keep_bytes)?;
        let store = SegmentQueue::open(
            dir,
            &recovered,
            self.segment_bytes,
            self.ack_compact_min,
            self.volatile,
        )?;
        let messages = std::mem::take(&mut recovered.messages);
        Ok((Box::new(store), messages, recovered.issues))
    }

    fn remove_other_queues(&self, keep: &[(String, String)]) -> io::Result<()> {
        let keep: HashSet<String> = keep.iter().map(|(v, q)| dir_name(v, q)).collect();
        let mut removed = false;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path();
            // An I/O error stops here rather than deleting what may be a live queue's data; a
            // missing or garbled name file marks a directory no queue can claim.
            let name = read_name(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", path.join(NAME_FILE).display()))
            })?;
            // Kept only if its name file names a kept queue and the directory is where that
            // queue's files belong (a copied-in stray is not).
            let wanted = name.is_some_and(|(v, q)| {
                let dir = dir_name(&v, &q);
                keep.contains(&dir) && entry.file_name().to_str() == Some(dir.as_str())
            });
            if !wanted {
                tracing::info!(dir = %path.display(), "removing the files of a queue that no longer exists");
                fs::remove_dir_all(&path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.root)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_name_is_a_hash_prefix() {
        let name = dir_name("/", "orders");
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut input = b"/".to_vec();
        input.push(0);
        input.extend_from_slice(b"orders");
        let full: String = Sha256::digest(&input)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(name, full[..32]);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(dir_name("ab", "c"), dir_name("a", "bc"));
    }

    #[test]
    fn name_file_round_trips_any_bytes() {
        for (v, q) in [("/", "orders"), ("", ""), ("v h\nx", "q 3\n\0é")] {
            let encoded = encode_name(v, q);
            assert_eq!(decode_name(&encoded), Some((v.to_string(), q.to_string())));
        }
        assert_eq!(
            encode_name("/", "orders"),
            b"vhost 1 /\nqueue 6 orders\n".to_vec()
        );
        assert_eq!(decode_name(b"vhost 1 /\nqueue 9 orders\n"), None);
        assert_eq!(decode_name(b"garbage"), None);
    }
}
