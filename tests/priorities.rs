//! Priority queues (RabbitMQ's `x-max-priority`): higher priorities are delivered first, FIFO
//! within a priority, priorities above the maximum count as the maximum, requeued messages
//! go back to their priority, and persistent priority messages keep their order after a
//! restart of the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

fn max_priority(n: i32) -> FieldTable {
    table(&[("x-max-priority", AMQPValue::LongInt(n))])
}

async fn publish_at(ch: &Channel, queue: &str, body: &str, priority: Option<u8>) {
    let mut props = BasicProperties::default();
    if let Some(p) = priority {
        props = props.with_priority(p);
    }
    publish_to_queue_with(ch, queue, body.as_bytes(), props).await;
}

#[tokio::test]
async fn higher_priorities_come_first_and_fifo_within_a_priority() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    try_declare_queue(&ch, "jobs", QueueDeclareOptions::default(), max_priority(5))
        .await
        .unwrap();
    for (body, priority) in [
        ("none-1", None),
        ("low-1", Some(1)),
        ("high-1", Some(5)),
        ("low-2", Some(1)),
        ("over-max", Some(200)),
        ("none-2", Some(0)),
        ("high-2", Some(5)),
    ] {
        publish_at(&ch, "jobs", body, priority).await;
    }
    assert_eq!(
        take_all(&ch, "jobs").await,
        ["high-1", "over-max", "high-2", "low-1", "low-2", "none-1", "none-2"]
    );
}

#[tokio::test]
async fn a_queue_without_max_priority_ignores_priorities() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "plain").await;
    publish_at(&ch, "plain", "first", Some(0)).await;
    publish_at(&ch, "plain", "second", Some(9)).await;
    assert_eq!(take_all(&ch, "plain").await, ["first", "second"]);
}

#[tokio::test]
async fn requeued_messages_return_to_their_priority() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    try_declare_queue(&ch, "jobs", QueueDeclareOptions::default(), max_priority(3))
        .await
        .unwrap();
    publish_at(&ch, "jobs", "high", Some(3)).await;
    publish_at(&ch, "jobs", "low", Some(1)).await;
    let holder = conn.create_channel().await.unwrap();
    let taken = get(&holder, "jobs", false).await.unwrap();
    assert_eq!(taken.delivery.data, b"high");
    publish_at(&ch, "jobs", "mid", Some(2)).await;
    within(holder.close(200, "bye".into())).await.unwrap();
    assert_eq!(take_all(&ch, "jobs").await, ["high", "mid", "low"]);
}

#[tokio::test]
async fn persistent_priority_messages_keep_their_order_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = process::ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "durable-jobs",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        max_priority(9),
    )
    .await
    .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for (body, priority) in [("p1", 1), ("p9", 9), ("p5", 5), ("p9b", 9)] {
        process::publish_confirmed(
            &ch,
            "",
            "durable-jobs",
            body.as_bytes(),
            process::persistent().with_priority(priority),
        )
        .await;
    }
    drop(conn);
    broker.kill().await;
    let broker = process::ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(
        take_all(&ch, "durable-jobs").await,
        ["p9", "p9b", "p5", "p1"]
    );
    broker.stop().await;
}
