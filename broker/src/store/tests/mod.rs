//! Tests of the segment store as the queue task uses it: append, deliver, remove, flush,
//! reopen; and recovery from damaged files written by the tests themselves.

use super::segment::SegmentStore;
use super::{Location, OpenedQueue, QueueStore, Recovered, Store, StoredMessage};
use bytes::Bytes;
use std::fs;
use std::path::{Path, PathBuf};

fn message(i: u64) -> StoredMessage {
    StoredMessage {
        exchange: "amq.direct".into(),
        routing_key: format!("key.{i}"),
        properties: Bytes::from(vec![0x10, 0x00, (i % 256) as u8]),
        body: Bytes::from(format!("message number {i}")),
    }
}

fn open(store: &SegmentStore) -> OpenedQueue {
    store.open_queue("/", "q", usize::MAX).unwrap()
}

/// Appends messages `ids` and flushes; returns their locations.
fn append(q: &mut Box<dyn QueueStore>, ids: impl IntoIterator<Item = u64>) -> Vec<(u64, Location)> {
    let out = ids
        .into_iter()
        .map(|id| (id, q.append(id, message(id).as_ref()).unwrap()))
        .collect();
    q.flush().unwrap();
    out
}

fn ids(recovered: &[Recovered]) -> Vec<u64> {
    recovered.iter().map(|r| r.id).collect()
}

/// The queue's directory (the only one under `queues/`).
fn queue_dir(data: &Path) -> PathBuf {
    let mut dirs: Vec<_> = fs::read_dir(data.join("queues"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs.remove(0)
}

fn segments(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(queue_dir(data))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn appended_messages_recover_in_order_with_delivered_markers() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, recovered, issues) = open(&store);
    assert!(recovered.is_empty() && issues.is_empty());
    let locations = append(&mut q, 1..=5);
    q.mark_delivered(2).unwrap();
    q.mark_delivered(4).unwrap();
    q.flush().unwrap();
    drop(q);

    let (_q, recovered, issues) = open(&store);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(ids(&recovered), [1, 2, 3, 4, 5]);
    for (r, (id, location)) in recovered.iter().zip(&locations) {
        assert_eq!(r.id, *id);
        assert_eq!(r.location, *location);
        assert_eq!(r.message.as_deref().unwrap(), &message(*id));
        assert_eq!(r.delivered, *id == 2 || *id == 4);
    }
}

#[test]
fn removed_messages_are_not_recovered() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=5);
    q.mark_delivered(1).unwrap();
    q.remove(&[locations[0], locations[2]]).unwrap();
    q.flush().unwrap();
    drop(q);

    let (_q, recovered, issues) = open(&store);
    assert!(issues.is_empty());
    assert_eq!(ids(&recovered), [2, 4, 5]);
    assert!(recovered.iter().all(|r| !r.delivered));
}

#[test]
fn torn_last_record_is_cut_off_and_appends_continue() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=3);
    drop(q);
    let seg = queue_dir(data.path()).join("00000001.seg");
    let last = locations[2].1;
    // A partial write: the last record stops halfway.
    let cut = u64::from(last.offset + last.len / 2);
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (mut q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), [1, 2]);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, seg);
    assert_eq!(issues[0].offset, u64::from(last.offset));
    assert!(
        issues[0].reason.contains("truncated record"),
        "{}",
        issues[0].reason
    );
    assert_eq!(fs::metadata(&seg).unwrap().len(), u64::from(last.offset));

    // The queue task numbers on from the highest recovered id.
    let new = append(&mut q, [3, 4]);
    assert_eq!(new[0].1.offset, last.offset);
    drop(q);
    let (_q, recovered, issues) = open(&store);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(ids(&recovered), [1, 2, 3, 4]);
    assert_eq!(recovered[3].message.as_deref().unwrap(), &message(4));
}

#[test]
fn zeroed_tail_after_a_crash_is_cut_off() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=2);
    drop(q);
    let seg = queue_dir(data.path()).join("00000001.seg");
    let end = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(end + 4096)
        .unwrap();

    let (_q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), [1, 2]);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].offset, end);
    assert!(issues[0].reason.contains("implausible record length 0"));
    assert_eq!(fs::metadata(&seg).unwrap().len(), end);
    assert_eq!(u64::from(locations[1].1.offset + locations[1].1.len), end);
}

#[test]
fn truncated_earlier_segment_keeps_its_intact_records_and_later_segments() {
    let data = tempfile::tempdir().unwrap();
    // Tiny segments: three records each.
    let store = SegmentStore::with_limits(data.path(), 150, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=9);
    assert_eq!(segments(data.path()).len(), 3);
    assert!(locations
        .iter()
        .all(|(id, l)| l.segment == ((id - 1) / 3 + 1) as u32));
    drop(q);

    // Segment 1 loses the second half of its second record and everything after.
    let seg = queue_dir(data.path()).join("00000001.seg");
    let second = locations[1].1;
    let cut = u64::from(second.offset + 10);
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (_q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), [1, 4, 5, 6, 7, 8, 9]);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        (issues[0].file.clone(), issues[0].offset),
        (seg.clone(), u64::from(second.offset))
    );
    // Not the last segment: read up to the damage, the file left as it is.
    assert_eq!(fs::metadata(&seg).unwrap().len(), cut);
}

#[test]
fn checksum_mismatch_skips_just_that_record() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=3);
    drop(q);
    let seg = queue_dir(data.path()).join("00000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let second = locations[1].1;
    // Flip a byte of the second record's body.
    bytes[(second.offset + second.len - 2) as usize] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();

    let (mut q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), [1, 3]);
    assert_eq!(recovered[1].message.as_deref().unwrap(), &message(3));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, seg);
    assert_eq!(issues[0].offset, u64::from(second.offset));
    assert_eq!(issues[0].reason, "checksum mismatch");
    // The damaged record stays in the file, so the segment keeps its length and appends go on
    // after it.
    let new = append(&mut q, [4]);
    assert_eq!(u64::from(new[0].1.offset), bytes.len() as u64);
}

#[test]
fn torn_ack_log_tail_is_cut_off() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=3);
    q.mark_delivered(1).unwrap();
    q.remove(&[locations[1]]).unwrap();
    q.flush().unwrap();
    drop(q);
    let acks = queue_dir(data.path()).join("acks.log");
    let good = fs::metadata(&acks).unwrap().len();
    assert_eq!(good, 26);
    // The start of a Removed record for id 3, torn.
    let mut bytes = fs::read(&acks).unwrap();
    bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0]);
    fs::write(&acks, &bytes).unwrap();

    let (mut q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), [1, 3]);
    assert!(recovered[0].delivered);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        (issues[0].file.clone(), issues[0].offset),
        (acks.clone(), good)
    );
    assert_eq!(fs::metadata(&acks).unwrap().len(), good);
    // Acks appended after recovery land on a record boundary.
    q.remove(&[(recovered[1].id, recovered[1].location)])
        .unwrap();
    q.flush().unwrap();
    drop(q);
    let (_q, recovered, issues) = open(&store);
    assert!(issues.is_empty());
    assert_eq!(ids(&recovered), [1]);
}

#[test]
fn segments_roll_over_and_fully_removed_ones_are_deleted() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 150, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=9);
    assert_eq!(
        segments(data.path()),
        ["00000001.seg", "00000002.seg", "00000003.seg"]
    );

    // Removing all of segment 1 deletes it; most of segment 2 keeps it.
    q.remove(&locations[0..5]).unwrap();
    assert_eq!(segments(data.path()), ["00000002.seg", "00000003.seg"]);
    // A full active segment that empties is replaced by a fresh one (and deleted).
    q.remove(&locations[6..9]).unwrap();
    assert_eq!(segments(data.path()), ["00000002.seg", "00000004.seg"]);
    q.flush().unwrap();
    drop(q);

    // At recovery the emptied last segment goes too; appends start a new one.
    let (mut q, recovered, issues) = open(&store);
    assert!(issues.is_empty());
    assert_eq!(ids(&recovered), [6]);
    assert_eq!(segments(data.path()), ["00000002.seg", "00000004.seg"]);
    assert_eq!(q.next_id(), 10);
    let new = append(&mut q, [10]);
    assert_eq!(new[0].1.segment, 4);
    q.remove(&[(6, recovered[0].location)]).unwrap();
    assert_eq!(segments(data.path()), ["00000004.seg"]);
}

#[test]
fn new_ids_after_a_consumed_tail_skip_the_ids_old_acks_still_name() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=5);
    q.mark_delivered(4).unwrap();
    q.remove(&locations[3..5]).unwrap();
    q.flush().unwrap();
    drop(q);

    // 4 and 5 were consumed: their records and Removed acks remain, so numbering goes on at 6
    // and reusing 4 is refused.
    let (mut q, recovered, _) = open(&store);
    assert_eq!(ids(&recovered), [1, 2, 3]);
    assert_eq!(q.next_id(), 6);
    assert!(q.append(4, message(4).as_ref()).is_err());
    let new = append(&mut q, [6, 7]);
    assert_eq!(q.read(7, new[1].1).unwrap(), message(7));
    drop(q);

    let (mut q, recovered, issues) = open(&store);
    assert!(issues.is_empty());
    assert_eq!(ids(&recovered), [1, 2, 3, 6, 7]);
    assert_eq!(recovered[3].message.as_deref().unwrap(), &message(6));
    assert!(!recovered[3].delivered);
    q.remove(&[(recovered[3].id, recovered[3].location)])
        .unwrap();
    q.flush().unwrap();
    drop(q);
    let (_q, after, _) = open(&store);
    assert_eq!(ids(&after), [1, 2, 3, 7]);
}

#[test]
fn everything_consumed_then_restarted_twice_keeps_new_messages() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=3);
    q.remove(&locations).unwrap();
    q.flush().unwrap();
    drop(q);
    let (mut q, recovered, _) = open(&store);
    assert!(recovered.is_empty());
    let next = q.next_id();
    assert_eq!(next, 4);
    append(&mut q, [next]);
    drop(q);
    let (_q, recovered, _) = open(&store);
    assert_eq!(ids(&recovered), [4]);
    assert_eq!(recovered[0].message.as_deref().unwrap(), &message(4));
}

#[test]
fn ack_log_compaction_keeps_recovery_correct() {
    let data = tempfile::tempdir().unwrap();
    // Tiny segments and compaction as soon as the log doubles.
    let store = SegmentStore::with_limits(data.path(), 300, 0).unwrap();
    let (mut q, _, _) = open(&store);
    let mut live = Vec::new();
    for round in 0..20u64 {
        let batch = append(&mut q, round * 10 + 1..=round * 10 + 10);
        for (i, &(id, location)) in batch.iter().enumerate() {
            q.mark_delivered(id).unwrap();
            if i == 0 {
                live.push(id); // delivered, unacked
            } else {
                q.remove(&[(id, location)]).unwrap();
            }
        }
        q.flush().unwrap();
    }
    drop(q);
    let acks = queue_dir(data.path()).join("acks.log");
    let records = fs::metadata(&acks).unwrap().len() / 13;
    // 200 Delivered and 180 Removed records were appended; compaction dropped those of the
    // segments that emptied (every other one: five records per segment, one live per ten).
    assert!(records < 250, "{records} records");

    let (mut q, recovered, issues) = open(&store);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(ids(&recovered), live);
    assert!(recovered.iter().all(|r| r.delivered));
    for r in &recovered {
        assert_eq!(q.read(r.id, r.location).unwrap(), message(r.id));
    }
    // Remove the rest, compact again, reopen: nothing comes back.
    let all: Vec<_> = recovered.iter().map(|r| (r.id, r.location)).collect();
    q.remove(&all).unwrap();
    q.flush().unwrap();
    drop(q);
    let (_q, recovered, _) = open(&store);
    assert!(recovered.is_empty());
}

#[test]
fn reopening_is_idempotent_and_ids_continue() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 200, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let locations = append(&mut q, 1..=6);
    q.remove(&locations[0..2]).unwrap();
    q.mark_delivered(3).unwrap();
    q.flush().unwrap();
    drop(q);

    let first = open(&store);
    drop(first.0);
    let (mut q, second, issues) = open(&store);
    assert!(issues.is_empty());
    assert_eq!(first.1, second);
    assert_eq!(ids(&second), [3, 4, 5, 6]);

    let next = second.last().unwrap().id + 1;
    append(&mut q, next..next + 3);
    drop(q);
    let (_q, third, _) = open(&store);
    assert_eq!(ids(&third), [3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(third[6].message.as_deref().unwrap(), &message(9));
    assert!(third[0].delivered && !third[1].delivered);
}

#[test]
fn read_returns_the_record_from_buffer_file_and_older_segments() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 150, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let flushed = append(&mut q, 1..=4);
    let buffered = q.append(5, message(5).as_ref()).unwrap();
    assert_eq!(q.read(5, buffered).unwrap(), message(5));
    for &(id, location) in &flushed {
        assert_eq!(q.read(id, location).unwrap(), message(id));
    }
    // The wrong id or a location that is not a record start is an error, not a wrong message.
    assert!(q.read(2, flushed[0].1).is_err());
    let mut shifted = flushed[0].1;
    shifted.offset += 1;
    assert!(q.read(1, shifted).is_err());
}

#[test]
fn sync_files_are_the_active_segment_and_the_ack_log() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    append(&mut q, [1]);
    let files = q.sync_files();
    assert_eq!(files.len(), 2);
    // Another thread can fsync them while the queue goes on appending.
    let handle = std::thread::spawn(move || files.iter().try_for_each(|f| f.sync_data()));
    append(&mut q, [2]);
    handle.join().unwrap().unwrap();
}

#[test]
fn remove_other_queues_keeps_only_the_named_ones() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    for (vhost, queue) in [("/", "a"), ("/", "b"), ("other", "a")] {
        let (mut q, _, _) = store.open_queue(vhost, queue, usize::MAX).unwrap();
        append(&mut q, [1]);
    }
    let stray = data.path().join("queues").join("not-a-queue");
    fs::create_dir(&stray).unwrap();
    fs::write(stray.join("00000001.seg"), b"junk").unwrap();

    store
        .remove_other_queues(&[("/".into(), "a".into()), ("other".into(), "a".into())])
        .unwrap();
    assert_eq!(fs::read_dir(data.path().join("queues")).unwrap().count(), 2);
    let (_q, recovered, _) = store.open_queue("/", "a", usize::MAX).unwrap();
    assert_eq!(recovered.len(), 1);
    let (_q, recovered, _) = store.open_queue("/", "b", usize::MAX).unwrap();
    assert!(recovered.is_empty(), "b's files were removed");
}

#[test]
fn destroy_removes_the_queue_directory() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    append(&mut q, [1]);
    let dir = queue_dir(data.path());
    q.destroy().unwrap();
    assert!(!dir.exists());
    let (_q, recovered, _) = open(&store);
    assert!(recovered.is_empty());
}

#[test]
fn a_directory_naming_another_queue_is_an_error() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    drop(open(&store));
    let name = queue_dir(data.path()).join("name");
    assert_eq!(fs::read(&name).unwrap(), b"vhost 1 /\nqueue 1 q\n");
    fs::write(&name, b"vhost 1 /\nqueue 5 other\n").unwrap();
    let err = store.open_queue("/", "q", usize::MAX).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn large_message_round_trips_through_the_store() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::new(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let mut big = message(1);
    big.body = Bytes::from(vec![7u8; 16 << 20]);
    let location = q.append(1, big.as_ref()).unwrap();
    q.flush().unwrap();
    assert_eq!(q.read(1, location).unwrap(), big);
    drop(q);
    let (_q, recovered, _) = open(&store);
    assert_eq!(recovered[0].message.as_deref().unwrap(), &big);
}

#[test]
fn large_records_written_directly_keep_their_place_among_buffered_ones() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 512 << 10, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let mut written = Vec::new();
    for id in 1..=12 {
        let mut m = message(id);
        if id % 3 == 0 {
            // Past the direct-write size: written behind the small records buffered before it.
            m.body = Bytes::from(vec![id as u8; 300 << 10]);
        }
        let location = q.append(id, m.as_ref()).unwrap();
        written.push((id, location, m));
    }
    // Read before the flush: the small records after the last large one are still buffered.
    for (id, location, m) in &written {
        assert_eq!(&q.read(*id, *location).unwrap(), m, "message {id}");
    }
    q.flush().unwrap();
    assert!(segments(data.path()).len() > 1, "the segments rolled over");
    drop(q);
    let (_q, recovered, issues) = open(&store);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(ids(&recovered), (1..=12).collect::<Vec<_>>());
    for (r, (_, location, m)) in recovered.iter().zip(&written) {
        assert_eq!(r.location, *location);
        assert_eq!(r.message.as_deref(), Some(m));
    }
}

#[test]
fn a_volatile_store_works_the_same() {
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::volatile(data.path()).unwrap();
    let (mut q, _, _) = open(&store);
    let mut big = message(1);
    big.body = Bytes::from(vec![1u8; 1 << 20]);
    let at = q.append(1, big.as_ref()).unwrap();
    q.flush().unwrap();
    assert_eq!(q.read(1, at).unwrap(), big);
}

#[test]
fn recovery_reads_records_across_its_read_chunks() {
    // ~10 MiB in one segment: records of odd sizes straddle the 4 MiB chunks recovery reads,
    // one is larger than a chunk, and the last is torn.
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 64 << 20, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let mut written = Vec::new();
    for id in 1..=1000 {
        let mut m = message(id);
        m.body = if id == 500 {
            Bytes::from(vec![5u8; 5 << 20])
        } else {
            Bytes::from(vec![id as u8; 4999 + id as usize])
        };
        let location = q.append(id, m.as_ref()).unwrap();
        written.push((location, m));
    }
    q.flush().unwrap();
    drop(q);
    let seg = queue_dir(data.path()).join("00000001.seg");
    let last = written[999].0;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(u64::from(last.offset + 10))
        .unwrap();
    let (_q, recovered, issues) = open(&store);
    assert_eq!(ids(&recovered), (1..=999).collect::<Vec<_>>());
    for (r, (location, m)) in recovered.iter().zip(&written) {
        assert_eq!(r.location, *location);
        assert_eq!(r.message.as_deref(), Some(m), "message {}", r.id);
    }
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].offset, u64::from(last.offset));
    assert_eq!(fs::metadata(&seg).unwrap().len(), u64::from(last.offset));
}

#[test]
fn records_read_back_in_order_or_not_come_back_intact() {
    // Reads bring a block of the file with them; whatever the order, every record must come
    // back as written: across blocks, segments, the end of what the active segment has
    // written, and the write buffer.
    let data = tempfile::tempdir().unwrap();
    let store = SegmentStore::with_limits(data.path(), 1 << 20, 1 << 20).unwrap();
    let (mut q, _, _) = open(&store);
    let bodied = |id: u64| {
        let mut m = message(id);
        m.body = Bytes::from(vec![(id % 251) as u8; 900 + (id % 300) as usize]);
        m
    };
    let mut written: Vec<(u64, Location)> = (1..=3000)
        .map(|id| (id, q.append(id, bodied(id).as_ref()).unwrap()))
        .collect();
    q.flush().unwrap();
    written.extend((3001..=3010).map(|id| (id, q.append(id, bodied(id).as_ref()).unwrap())));
    assert!(segments(data.path()).len() >= 3);
    for &(id, location) in &written {
        assert_eq!(q.read(id, location).unwrap(), bodied(id), "message {id}");
    }
    for &(id, location) in written.iter().rev().step_by(7) {
        assert_eq!(q.read(id, location).unwrap(), bodied(id), "message {id}");
    }
    // A segment whose records are all removed goes, and with it what was read ahead of it.
    let first_segment: Vec<(u64, Location)> = written
        .iter()
        .copied()
        .filter(|(_, l)| l.segment == written[0].1.segment)
        .collect();
    q.remove(&first_segment).unwrap();
    let (id, location) = first_segment[0];
    assert!(q.read(id, location).is_err());
}
