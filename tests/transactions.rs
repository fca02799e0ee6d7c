//! Transactions (tx.select, tx.commit, tx.rollback) as RabbitMQ runs them: publishes reach
//! their queues only at commit, acks, nacks and rejects settle only at commit, a rollback drops
//! the publishes and leaves the acked deliveries unacked, mandatory publishes that route
//! nowhere come back before commit-ok, and a committed persistent message survives kill -9.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use lapin::options::*;
use lapin::{BasicProperties, Channel};

async fn tx_channel(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    within(ch.tx_select()).await.unwrap();
    (conn, ch)
}

/// Ready messages of `queue`, seen from another channel.
async fn ready_elsewhere(broker: &TestBroker, queue: &str) -> u32 {
    let (_c, ch) = broker.channel().await;
    ready_count(&ch, queue).await
}

#[tokio::test]
async fn publishes_are_invisible_until_commit() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 3).await;
    assert_eq!(ready_elsewhere(&broker, "q").await, 0);
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(ready_elsewhere(&broker, "q").await, 3);
    let (_c2, other) = broker.channel().await;
    assert_eq!(take_all(&other, "q").await, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn rollback_discards_publishes_and_the_channel_stays_transactional() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    declare_queue(&ch, "q").await;
    publish_to_queue(&ch, "q", "dropped").await;
    within(ch.tx_rollback()).await.unwrap();
    assert_eq!(ready_elsewhere(&broker, "q").await, 0);
    publish_to_queue(&ch, "q", "kept").await;
    assert_eq!(ready_elsewhere(&broker, "q").await, 0);
    within(ch.tx_commit()).await.unwrap();
    let (_c2, other) = broker.channel().await;
    assert_eq!(take_all(&other, "q").await, ["kept"]);
}

#[tokio::test]
async fn an_empty_commit_and_rollback_are_answered() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    within(ch.tx_commit()).await.unwrap();
    within(ch.tx_rollback()).await.unwrap();
    within(ch.tx_select()).await.unwrap();
    within(ch.tx_commit()).await.unwrap();
}

/// A queue "q" holding `n` messages and a transactional channel that received them all
/// (manual acks) through basic.get; returns the delivery tags.
async fn got_in_tx(broker: &TestBroker, ch: &Channel, n: usize) -> Vec<u64> {
    let (_c, setup) = broker.channel().await;
    declare_queue(&setup, "q").await;
    publish_n(&setup, "q", n).await;
    let mut tags = Vec::new();
    for _ in 0..n {
        tags.push(get(ch, "q", false).await.unwrap().delivery.delivery_tag);
    }
    tags
}

#[tokio::test]
async fn an_ack_takes_effect_only_at_commit() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    let tags = got_in_tx(&broker, &ch, 2).await;
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.tx_commit()).await.unwrap();
    // Closing the channel requeues what is still unacked: only the second message.
    within(ch.close(200, "bye".into())).await.unwrap();
    let (_c2, other) = broker.channel().await;
    assert_eq!(take_all(&other, "q").await, ["m1"]);
}

#[tokio::test]
async fn an_uncommitted_ack_is_undone_when_the_channel_closes() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    let tags = got_in_tx(&broker, &ch, 2).await;
    within(ch.basic_ack(tags[1], BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(ch.close(200, "bye".into())).await.unwrap();
    let (_c2, other) = broker.channel().await;
    assert_eq!(take_all(&other, "q").await, ["m0", "m1"]);
}

#[tokio::test]
async fn a_rolled_back_ack_leaves_the_delivery_unacked_not_requeued() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    let tags = got_in_tx(&broker, &ch, 2).await;
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.tx_rollback()).await.unwrap();
    // Not requeued: nothing is ready.
    assert_eq!(ready_elsewhere(&broker, "q").await, 0);
    // Still unacked: the same tag can be acked again, and this time it is committed.
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.tx_commit()).await.unwrap();
    within(ch.close(200, "bye".into())).await.unwrap();
    let (_c2, other) = broker.channel().await;
    let m = get(&other, "q", true).await.unwrap();
    assert_eq!(m.delivery.data, b"m1");
    assert!(m.delivery.redelivered);
    assert!(get(&other, "q", true).await.is_none());
}

#[tokio::test]
async fn nack_and_reject_settle_at_commit() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    let tags = got_in_tx(&broker, &ch, 2).await;
    within(ch.basic_nack(
        tags[0],
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    within(ch.basic_reject(tags[1], BasicRejectOptions { requeue: false }))
        .await
        .unwrap();
    assert_eq!(ready_elsewhere(&broker, "q").await, 0);
    within(ch.tx_commit()).await.unwrap();
    // m0 is back (requeued), m1 is gone (rejected without requeue).
    let (_c2, other) = broker.channel().await;
    assert_eq!(take_all(&other, "q").await, ["m0"]);
}

#[tokio::test]
async fn acking_the_same_tag_twice_in_a_transaction_is_refused_with_406() {
    let broker = TestBroker::start().await;
    let (c, ch) = tx_channel(&broker).await;
    let mut events = Box::pin(c.events_listener());
    let tags = got_in_tx(&broker, &ch, 1).await;
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .unwrap();
    // The second ack closes the channel at once (as RabbitMQ does, transaction or not): the
    // refusal arrives as the channel's close, which a later tx.commit may or may not be
    // sent in time to be answered by.
    let err = next_error(&mut events).await;
    let (code, text) = (reply_code(&err), reply_text(&err));
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        format!("PRECONDITION_FAILED - unknown delivery tag {}", tags[0])
    );
}

#[tokio::test]
async fn an_unroutable_mandatory_publish_is_returned_at_commit() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    within(ch.basic_publish(
        "amq.direct".into(),
        "nowhere".into(),
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        b"lost",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    // A round trip: nothing came back before the commit.
    within(ch.basic_qos(0, BasicQosOptions::default()))
        .await
        .unwrap();
    assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
    within(ch.tx_commit()).await.unwrap();
    let returned = within(ch.wait_for_confirms()).await.unwrap();
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_eq!(returned[0].reply_code, 312);
    assert_eq!(returned[0].reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned[0].delivery.routing_key.as_str(), "nowhere");
    assert_eq!(returned[0].delivery.data, b"lost");
}

#[tokio::test]
async fn commit_and_rollback_without_tx_select_are_refused_with_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(within(ch.tx_commit()).await);
    assert_eq!(code, Some(406));
    assert_eq!(text, "PRECONDITION_FAILED - channel is not transactional");
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(within(ch.tx_rollback()).await);
    assert_eq!(code, Some(406));
    assert_eq!(text, "PRECONDITION_FAILED - channel is not transactional");
}

#[tokio::test]
async fn tx_and_confirm_modes_do_not_mix() {
    let broker = TestBroker::start().await;
    let (_c, ch) = tx_channel(&broker).await;
    let (code, text) = refusal(within(ch.confirm_select(ConfirmSelectOptions::default())).await);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    );
    let (_c2, ch) = broker.confirming_channel().await;
    let (code, text) = refusal(within(ch.tx_select()).await);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    );
}

#[tokio::test]
async fn replies_through_direct_reply_to_wait_for_the_commit() {
    let broker = TestBroker::start().await;
    let (_rc, req_ch) = broker.channel().await;
    let mut replies = consume_with(&req_ch, "amq.rabbitmq.reply-to", "", no_ack()).await;
    declare_queue(&req_ch, "rpc").await;
    let props = BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into());
    publish_to_queue_with(&req_ch, "rpc", b"ask", props).await;
    let (_c, ch) = tx_channel(&broker).await;
    let req = get(&ch, "rpc", true).await.unwrap();
    let reply_to = req.delivery.properties.reply_to().clone().unwrap();
    publish_to_queue(&ch, reply_to.as_str(), "answer").await;
    within(req_ch.basic_qos(0, BasicQosOptions::default()))
        .await
        .unwrap();
    assert_nothing_buffered(&mut replies).await;
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(body_text(&next_delivery(&mut replies).await), "answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_persistent_publish_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = process::ChildBroker::start(dir.path()).await;
    {
        let (_conn, ch) = broker.channel().await;
        process::declare_durable(&ch, "durable-q").await;
        within(ch.tx_select()).await.unwrap();
        for i in 0..20 {
            publish_to_queue_with(
                &ch,
                "durable-q",
                format!("p{i}").as_bytes(),
                process::persistent(),
            )
            .await;
        }
        within(ch.tx_commit()).await.unwrap();
        // Not committed: must not come back.
        publish_to_queue_with(&ch, "durable-q", b"uncommitted", process::persistent()).await;
        broker.kill().await;
    }
    let broker = process::ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    let bodies: Vec<String> = process::drain(&ch, "durable-q")
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    assert_eq!(bodies, expected);
}
