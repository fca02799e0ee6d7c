//! Durable messages across restarts of the real `warren` binary: a clean restart keeps
//! persistent messages in order and drops transient ones, non-durable, exclusive and
//! auto-delete queues; unacked deliveries come back redelivered after `kill -9` while acked ones
//! stay gone; purge and delete of durable queues are durable.
//!
//! The at-least-once window of acks: the broker writes ack records to the OS at the end of each
//! queue batch without an fsync, and an ack gets no reply. A process kill loses nothing the
//! queue has written to the OS, so a test that acks waits until the queue has finished the batch
//! holding the ack before killing it (`process::barrier`). A power loss could still bring back
//! a message acked since the last fsync of its queue: that is the documented window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use common::{reply_code, reply_text, within};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use process::{barrier, declare_durable, drain, passive, persistent, publish_confirmed};
use process::{queue_dir, ChildBroker};

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

async fn declare(ch: &Channel, queue: &str, options: QueueDeclareOptions) {
    within(ch.queue_declare(queue.into(), options, FieldTable::default()))
        .await
        .unwrap();
}

fn bodies(messages: &[(String, bool)]) -> Vec<&str> {
    messages.iter().map(|(b, _)| b.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Clean restart

#[tokio::test]
async fn clean_restart_keeps_persistent_messages_in_order_and_drops_transient_ones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_durable(&ch, "keep").await;
    declare(&ch, "plain", QueueDeclareOptions::default()).await;
    let durable_and = |exclusive, auto_delete| QueueDeclareOptions {
        durable: true,
        exclusive,
        auto_delete,
        ..Default::default()
    };
    declare(&ch, "mine", durable_and(true, false)).await;
    declare(&ch, "fleeting", durable_and(false, true)).await;

    let mut headers = FieldTable::default();
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    headers.insert("origin".into(), AMQPValue::LongString("test".into()));
    let rich = persistent()
        .with_content_type("text/plain".into())
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_priority(4)
        .with_headers(headers.clone());
    for i in 0..10 {
        let props = if i == 0 { rich.clone() } else { persistent() };
        publish_confirmed(&ch, "", "keep", format!("p{i}").as_bytes(), props).await;
        publish_confirmed(&ch, "", "keep", format!("t{i}").as_bytes(), transient()).await;
    }
    for queue in ["plain", "mine", "fleeting"] {
        publish_confirmed(&ch, "", queue, b"gone", persistent()).await;
    }
    assert_eq!(passive(&ch, "keep").await.unwrap(), 20);
    broker.stop().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    for queue in ["plain", "mine", "fleeting"] {
        // Each 404 closes the channel: one channel per check.
        let ch = conn.create_channel().await.unwrap();
        let err = passive(&ch, queue).await.unwrap_err();
        assert_eq!(reply_code(&err), Some(404), "{queue} survived the restart");
        assert_eq!(
            reply_text(&err),
            format!("NOT_FOUND - no queue '{queue}' in vhost '/'")
        );
    }
    let ch = conn.create_channel().await.unwrap();
    let first = within(ch.basic_get("keep".into(), BasicGetOptions { no_ack: false }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.delivery.data, b"p0");
    assert_eq!(first.delivery.properties, rich);
    assert_eq!(first.message_count, 9);
    first
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let rest = drain(&ch, "keep").await;
    let expected: Vec<String> = (1..10).map(|i| format!("p{i}")).collect();
    assert_eq!(bodies(&rest), expected);
    assert!(rest.iter().all(|(_, redelivered)| !redelivered));
}

// ---------------------------------------------------------------------------------------------
// Redelivery and acks across kill -9

#[tokio::test]
async fn unacked_deliveries_come_back_redelivered_after_kill_9_and_acked_ones_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_durable(&ch, "got").await;
    declare_durable(&ch, "consumed").await;
    for i in 0..10 {
        publish_confirmed(&ch, "", "got", format!("g{i}").as_bytes(), persistent()).await;
        publish_confirmed(
            &ch,
            "",
            "consumed",
            format!("c{i}").as_bytes(),
            persistent(),
        )
        .await;
    }

    // basic.get: g0..g3 delivered, g1 acked.
    let mut tags = Vec::new();
    for i in 0..4 {
        let m = within(ch.basic_get("got".into(), BasicGetOptions { no_ack: false }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery.data, format!("g{i}").as_bytes());
        tags.push(m.delivery.delivery_tag);
    }
    ch.basic_ack(tags[1], BasicAckOptions::default())
        .await
        .unwrap();

    // A consumer with prefetch 3: c0..c2 delivered, c0 acked, which lets c3 through.
    let consumer_ch = broker.connect().await.create_channel().await.unwrap();
    consumer_ch
        .basic_qos(3, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            "consumed".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..4 {
        let d = within(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, format!("c{i}").as_bytes());
        if i == 0 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    barrier(&ch, "got").await.unwrap();
    barrier(&consumer_ch, "consumed").await.unwrap();
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    let expect = |prefix: &str, acked: usize, delivered: usize| -> Vec<(String, bool)> {
        (0..10)
            .filter(|&i| i != acked)
            .map(|i| (format!("{prefix}{i}"), i < delivered))
            .collect()
    };
    assert_eq!(drain(&ch, "got").await, expect("g", 1, 4));
    assert_eq!(drain(&ch, "consumed").await, expect("c", 0, 4));
}

// ---------------------------------------------------------------------------------------------
// Purge and delete across kill -9

#[tokio::test]
async fn purge_of_a_durable_queue_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_durable(&ch, "purged").await;
    for i in 0..20 {
        publish_confirmed(&ch, "", "purged", format!("m{i}").as_bytes(), persistent()).await;
    }
    let purged = within(ch.queue_purge("purged".into(), QueuePurgeOptions::default()))
        .await
        .unwrap();
    assert_eq!(purged, 20);
    // No barrier: purge-ok itself promises the purge is recorded.
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    assert_eq!(passive(&ch, "purged").await.unwrap(), 0);
    publish_confirmed(&ch, "", "purged", b"after", persistent()).await;
    assert_eq!(bodies(&drain(&ch, "purged").await), ["after"]);
}

#[tokio::test]
async fn deleted_durable_queue_stays_deleted_after_kill_9_and_its_files_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_durable(&ch, "doomed").await;
    ch.queue_bind(
        "doomed".into(),
        "amq.direct".into(),
        "doomed".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..5 {
        publish_confirmed(&ch, "", "doomed", format!("m{i}").as_bytes(), persistent()).await;
    }
    let files = queue_dir(dir.path(), "doomed").expect("the queue has a directory");
    let deleted = within(ch.queue_delete("doomed".into(), QueueDeleteOptions::default()))
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    broker.kill().await;
    assert!(!files.exists(), "{} outlived the delete", files.display());

    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.confirming_channel().await;
    let err = passive(&ch, "doomed").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(
        reply_text(&err),
        "NOT_FOUND - no queue 'doomed' in vhost '/'"
    );
    assert!(queue_dir(dir.path(), "doomed").is_none());
    // Declared again it starts empty, and its old binding is gone with it.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&ch, "doomed").await;
    assert_eq!(passive(&ch, "doomed").await.unwrap(), 0);
    publish_confirmed(&ch, "amq.direct", "doomed", b"unrouted", persistent()).await;
    assert_eq!(passive(&ch, "doomed").await.unwrap(), 0);
}
