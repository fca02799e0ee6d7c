#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The shortest round trip: declare, publish, consume, ack.

mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn publish_then_consume_round_trip() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "hello").await;
    ch.basic_publish(
        "".into(),
        "hello".into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "hello".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"hi");
    assert!(!delivery.redelivered);
    delivery.ack(BasicAckOptions::default()).await.unwrap();
}
