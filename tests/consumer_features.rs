//! RabbitMQ's consumer extensions: consumer priorities (`x-priority` on basic.consume: higher
//! priority consumers get messages while they have credit), single active consumer
//! (`x-single-active-consumer`: one consumer at a time, the next takes over), and their
//! argument errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;

async fn consume_args(ch: &Channel, queue: &str, tag: &str, args: FieldTable) -> lapin::Consumer {
    within(ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        args,
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn higher_priority_consumers_get_messages_while_they_have_credit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = conn.create_channel().await.unwrap();
    declare_queue(&setup, "work").await;
    let high_ch = conn.create_channel().await.unwrap();
    within(high_ch.basic_qos(1, BasicQosOptions::default()))
        .await
        .unwrap();
    let low_ch = conn.create_channel().await.unwrap();
    let mut low = consume_args(&low_ch, "work", "low", FieldTable::default()).await;
    let mut high = consume_args(
        &high_ch,
        "work",
        "high",
        table(&[("x-priority", AMQPValue::LongInt(10))]),
    )
    .await;
    for body in ["m1", "m2", "m3"] {
        publish_to_queue(&setup, "work", body).await;
    }
    // high takes one (its prefetch), the rest overflow to low.
    let first = next_delivery(&mut high).await;
    assert_eq!(first.data, b"m1");
    assert_eq!(next_delivery(&mut low).await.data, b"m2");
    assert_eq!(next_delivery(&mut low).await.data, b"m3");
    // With credit again, high is served first.
    within(first.acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    publish_to_queue(&setup, "work", "m4").await;
    assert_eq!(next_delivery(&mut high).await.data, b"m4");
}

#[tokio::test]
async fn a_single_active_consumer_gets_everything_until_it_leaves() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = conn.create_channel().await.unwrap();
    try_declare_queue(
        &setup,
        "sac",
        QueueDeclareOptions::default(),
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await
    .unwrap();
    let first_ch = conn.create_channel().await.unwrap();
    let second_ch = conn.create_channel().await.unwrap();
    let mut first = consume_args(&first_ch, "sac", "first", FieldTable::default()).await;
    let mut second = consume_args(&second_ch, "sac", "second", FieldTable::default()).await;
    for body in ["a", "b", "c"] {
        publish_to_queue(&setup, "sac", body).await;
    }
    for body in ["a", "b", "c"] {
        let d = next_delivery(&mut first).await;
        assert_eq!(d.data, body.as_bytes());
        within(d.acker.ack(BasicAckOptions::default()))
            .await
            .unwrap();
    }
    assert_nothing_buffered(&mut second).await;
    within(first_ch.basic_cancel("first".into(), BasicCancelOptions::default()))
        .await
        .unwrap();
    publish_to_queue(&setup, "sac", "d").await;
    assert_eq!(next_delivery(&mut second).await.data, b"d");
}

#[tokio::test]
async fn bad_consumer_and_queue_arguments_are_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "q").await;
    let err = within(ch.basic_consume(
        "q".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        table(&[("x-priority", text("high"))]),
    ))
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - invalid arg 'x-priority' for consumer: {unacceptable_type,longstr}"
    );
    let ch = conn.create_channel().await.unwrap();
    let err = try_declare_queue(
        &ch,
        "sac",
        QueueDeclareOptions::default(),
        table(&[("x-single-active-consumer", text("yes"))]),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
}

#[tokio::test]
async fn a_consumer_holding_a_delivery_past_its_timeout_is_cancelled_and_the_message_requeued() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = conn.create_channel().await.unwrap();
    try_declare_queue(
        &setup,
        "slow",
        QueueDeclareOptions::default(),
        table(&[("x-consumer-timeout", AMQPValue::LongInt(200))]),
    )
    .await
    .unwrap();
    publish_to_queue(&setup, "slow", "never acked").await;
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = consume_args(&ch, "slow", "sleepy", FieldTable::default()).await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    // The broker cancels the consumer (basic.cancel ends lapin's consumer stream)...
    within(async {
        use futures_lite::StreamExt;
        while let Some(next) = consumer.next().await {
            assert!(next.is_ok(), "{next:?}");
        }
    })
    .await;
    // ... and the message is back, marked redelivered; the channel stays open.
    let m = within(async {
        loop {
            if let Some(m) = get(&ch, "slow", true).await {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(m.delivery.data, b"never acked");
    assert!(m.delivery.redelivered);
}
