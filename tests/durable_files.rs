//! The files under `--data-dir` seen from outside the real `warren` binary: disk space comes back
//! once messages are consumed, a damaged segment is logged (queue, file, offset) and every
//! intact message kept, and a corrupt or unreadable metadata file stops startup with an error
//! naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use common::within;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};
use process::{declare_durable, passive, persistent, publish_confirmed};
use process::{dir_size, queue_dir, segment_files, ChildBroker};
use std::collections::VecDeque;
use std::io::Write;

const MIB: u64 = 1 << 20;
/// The broker's segment size (`store::segment::SEGMENT_BYTES`).
const SEGMENT_BYTES: u64 = 32 * MIB;

async fn ready(ch: &Channel, queue: &str) -> u32 {
    passive(ch, queue).await.unwrap()
}

async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    publish_confirmed(ch, "", queue, body, persistent()).await;
}

/// Every ready message's body, taken with basic.get and acked.
async fn take_all(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = within(ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }))
        .await
        .unwrap()
    {
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    out
}

// ---------------------------------------------------------------------------------------------

const BULK_BODY: usize = 64 * 1024;
const BULK_MESSAGES: usize = 3_200; // 200 MiB of bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_space_comes_back_once_200_mib_of_persistent_messages_are_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_durable(&ch, "bulk").await;
    let queues = dir.path().join("queues");
    let empty_size = dir_size(&queues);

    let consumer_conn = broker.connect().await;
    let consumer = tokio::spawn(async move {
        let ch = consumer_conn.create_channel().await.unwrap();
        ch.basic_qos(64, BasicQosOptions::default()).await.unwrap();
        let mut deliveries = ch
            .basic_consume(
                "bulk".into(),
                "bulk".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for n in 0..BULK_MESSAGES {
            let d = within(deliveries.next()).await.unwrap().unwrap();
            assert_eq!(&d.data[..8], &(n as u64).to_be_bytes());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        (consumer_conn, ch)
    });

    let mut body = vec![0x5a; BULK_BODY];
    let mut in_flight = VecDeque::new();
    let mut peak_segments = 0;
    for n in 0..BULK_MESSAGES {
        body[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let confirm = within(ch.basic_publish(
            "".into(),
            "bulk".into(),
            BasicPublishOptions::default(),
            &body,
            persistent(),
        ))
        .await
        .unwrap();
        in_flight.push_back(confirm);
        if in_flight.len() >= 32 {
            let confirm = in_flight.pop_front().unwrap();
            assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
        }
        if n % 400 == 0 {
            let files = segment_files(&queue_dir(dir.path(), "bulk").unwrap()).len();
            peak_segments = peak_segments.max(files);
        }
    }
    for confirm in in_flight {
        assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
    }
    let (_consumer_conn, consumer_ch) = within(consumer).await.unwrap();
    // Both passive declares are answered by the queue task, the second in a later batch: by
    // then the batch holding the last acks has written them and deleted emptied segments.
    ready(&consumer_ch, "bulk").await;
    assert_eq!(ready(&consumer_ch, "bulk").await, 0);

    let segments = segment_files(&queue_dir(dir.path(), "bulk").unwrap());
    let size = dir_size(&queues);
    eprintln!(
        "queues dir: {empty_size} bytes empty, at most {peak_segments} segments seen while \
         publishing, {} segment(s) and {size} bytes after consuming",
        segments.len()
    );
    // Only the segment being appended to is left (it goes when the next one starts), plus the
    // ack log: well under what went through.
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(
        size < SEGMENT_BYTES + MIB,
        "{size} bytes left in {queues:?}"
    );

    // At startup nothing live is left in that segment either: back to (nearly) empty.
    broker.stop().await;
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(ready(&ch, "bulk").await, 0);
    let size = dir_size(&queues);
    assert!(
        size < MIB,
        "{size} bytes left in {queues:?} after a restart"
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn corrupt_metadata_file_stops_startup_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    let garbage = b"{\"queues\": [ {\"name\": \"orders\", ";
    std::fs::write(&file, garbage).unwrap();
    let failure = ChildBroker::try_start(dir.path())
        .await
        .err()
        .expect("warren started with a corrupt definitions.json");
    assert!(!failure.status.success(), "exit status {}", failure.status);
    assert!(
        failure.stderr.contains(&file.display().to_string()),
        "the error does not name {}:\n{}",
        file.display(),
        failure.stderr
    );
    assert!(failure.stderr.contains("corrupt"), "{}", failure.stderr);
    // Left as it was, for a human to repair.
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

#[tokio::test]
async fn unreadable_metadata_file_stops_startup_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    std::fs::create_dir(&file).unwrap();
    let failure = ChildBroker::try_start(dir.path())
        .await
        .err()
        .expect("warren started with an unreadable definitions.json");
    assert!(!failure.status.success(), "exit status {}", failure.status);
    assert!(
        failure.stderr.contains(&file.display().to_string()),
        "the error does not name {}:\n{}",
        file.display(),
        failure.stderr
    );
}

/// The broker's warning about damage in `queue`'s store.
fn damage_report(log: &[String], queue: &str) -> String {
    let tag = format!("queue=\"{queue}\"");
    let lines: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") && l.contains(&tag))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one warning for {queue}:\n{log:#?}"
    );
    lines[0].clone()
}

#[tokio::test]
async fn damaged_segments_are_logged_with_queue_and_offset_and_intact_messages_survive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    let queues = ["torn", "cut", "flipped", "intact"];
    for queue in queues {
        declare_durable(&ch, queue).await;
        // Same-size records: record i starts at i * (file length / 10).
        for i in 0..10 {
            publish(&ch, queue, format!("m{i}").as_bytes()).await;
        }
    }
    broker.stop().await;

    let last_segment = |queue: &str| {
        let segments = segment_files(&queue_dir(dir.path(), queue).unwrap());
        assert_eq!(segments.len(), 1);
        let path = segments[0].clone();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len % 10, 0);
        (path, len, len / 10)
    };
    // A torn write: garbage after the last record.
    let (torn, torn_len, _) = last_segment("torn");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&torn)
        .unwrap()
        .write_all(b"\x00\x00\x01\x00 a partial record")
        .unwrap();
    // A truncated segment: the last record cut in half.
    let (cut, cut_len, cut_record) = last_segment("cut");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(cut_len - cut_record / 2)
        .unwrap();
    // A checksum mismatch: the last body byte of record 5 flipped.
    let (flipped, _, record) = last_segment("flipped");
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[(6 * record - 1) as usize] ^= 0x01;
    std::fs::write(&flipped, bytes).unwrap();

    let broker = ChildBroker::start(dir.path()).await;
    let log = broker.log();
    for (queue, file, offset) in [
        ("torn", &torn, torn_len),
        ("cut", &cut, cut_len - cut_record),
        ("flipped", &flipped, 5 * record),
    ] {
        let report = damage_report(&log, queue);
        assert!(
            report.contains(&format!("offset={offset} ")),
            "{queue}: expected offset {offset}: {report}"
        );
        assert!(
            report.contains(&file.display().to_string()),
            "{queue}: the report does not name {}: {report}",
            file.display()
        );
    }
    assert!(!log
        .iter()
        .any(|l| l.contains("queue=\"intact\"") && l.contains("WARN")));

    let (_conn, ch) = broker.confirming_channel().await;
    let all: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let except = |n: usize| -> Vec<String> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| *i != n)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let expected = [
        ("torn", all.clone()),
        ("cut", except(9)),
        ("flipped", except(5)),
        ("intact", all.clone()),
    ];
    for (queue, bodies) in &expected {
        assert_eq!(ready(&ch, queue).await as usize, bodies.len(), "{queue}");
    }
    // New records go after the intact ones: a second restart reads them all back.
    for queue in queues {
        publish(&ch, queue, b"after").await;
    }
    broker.stop().await;
    let broker = ChildBroker::start(dir.path()).await;
    // The cut-off tails are gone for good (the flipped record is still in its segment).
    for queue in ["torn", "cut", "intact"] {
        let tag = format!("queue=\"{queue}\"");
        let log = broker.log();
        assert!(
            !log.iter().any(|l| l.contains("WARN") && l.contains(&tag)),
            "damage in {queue} reported again: {log:#?}"
        );
    }
    let (_conn, ch) = broker.channel().await;
    for (queue, bodies) in expected {
        let mut bodies = bodies;
        bodies.push("after".to_string());
        assert_eq!(take_all(&ch, queue).await, bodies, "{queue}");
    }
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = ChildBroker::start(dir.path()).await;
    let failure = ChildBroker::try_start(dir.path())
        .await
        .err()
        .expect("a second broker started on a data dir in use");
    assert_eq!(failure.status.code(), Some(1), "{}", failure.stderr);
    assert!(
        failure
            .stderr
            .contains("is in use by another running broker"),
        "{}",
        failure.stderr
    );
    // The first one is unaffected, and once it is gone the directory is free again.
    let (_conn, _ch) = first.channel().await;
    first.kill().await;
    ChildBroker::start(dir.path()).await.stop().await;
}
