//! Queue length limits (RabbitMQ's `x-max-length`, `x-max-length-bytes`, `x-overflow` and the
//! matching policy keys): drop-head drops (or dead-letters, reason `maxlen`) the oldest ready
//! messages; reject-publish refuses the newest with basic.nack to a confirming publisher;
//! reject-publish-dlx also dead-letters it. Only ready messages count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
use common::*;
use http::put_policy;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

async fn declare_with(ch: &Channel, name: &str, args: FieldTable) {
    try_declare_queue(ch, name, QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

fn max_len(n: i64) -> (&'static str, AMQPValue) {
    ("x-max-length", AMQPValue::LongLongInt(n))
}

async fn with_dlq(ch: &Channel) {
    declare_exchange(ch, "dlx", ExchangeKind::Fanout).await;
    declare_queue(ch, "dlq").await;
    bind(ch, "dlq", "dlx", "").await;
}

async fn confirmed(ch: &Channel, queue: &str, body: &str) -> Confirmation {
    publish_and_confirm(
        ch,
        "",
        queue,
        body.as_bytes(),
        BasicProperties::default(),
        false,
    )
    .await
}

#[tokio::test]
async fn drop_head_keeps_the_newest_and_dead_letters_the_dropped_with_reason_maxlen() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    with_dlq(&ch).await;
    declare_with(
        &ch,
        "capped",
        table(&[max_len(2), ("x-dead-letter-exchange", text("dlx"))]),
    )
    .await;
    for body in ["a", "b", "c", "d"] {
        assert_eq!(
            confirmed(&ch, "capped", body).await,
            Confirmation::Ack(None)
        );
    }
    assert_eq!(take_all(&ch, "capped").await, ["c", "d"]);
    until_ready(&ch, "dlq", 2).await;
    let m = get(&ch, "dlq", true).await.unwrap();
    assert_eq!(m.delivery.data, b"a");
    let headers = m.delivery.properties.headers().clone().unwrap();
    assert_eq!(
        headers.inner().get("x-first-death-reason"),
        Some(&AMQPValue::LongString("maxlen".into()))
    );
    assert_eq!(take_all(&ch, "dlq").await, ["b"]);
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_with(
        &ch,
        "bytes",
        table(&[("x-max-length-bytes", AMQPValue::LongInt(10))]),
    )
    .await;
    for body in ["1111", "2222", "3333"] {
        confirmed(&ch, "bytes", body).await;
    }
    assert_eq!(take_all(&ch, "bytes").await, ["2222", "3333"]);
}

#[tokio::test]
async fn reject_publish_nacks_the_newest_message_and_keeps_the_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_with(
        &ch,
        "full",
        table(&[max_len(1), ("x-overflow", text("reject-publish"))]),
    )
    .await;
    assert_eq!(
        confirmed(&ch, "full", "first").await,
        Confirmation::Ack(None)
    );
    assert!(matches!(
        confirmed(&ch, "full", "second").await,
        Confirmation::Nack(_)
    ));
    // Persistent messages are refused the same way.
    let c = publish_and_confirm(
        &ch,
        "",
        "full",
        b"third",
        BasicProperties::default().with_delivery_mode(2),
        false,
    )
    .await;
    assert!(matches!(c, Confirmation::Nack(_)), "{c:?}");
    assert_eq!(take_all(&ch, "full").await, ["first"]);
    // With room again, publishes are accepted.
    assert_eq!(
        confirmed(&ch, "full", "fourth").await,
        Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn reject_publish_dlx_also_dead_letters_the_refused_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    with_dlq(&ch).await;
    declare_with(
        &ch,
        "full",
        table(&[
            max_len(1),
            ("x-overflow", text("reject-publish-dlx")),
            ("x-dead-letter-exchange", text("dlx")),
        ]),
    )
    .await;
    confirmed(&ch, "full", "kept").await;
    assert!(matches!(
        confirmed(&ch, "full", "refused").await,
        Confirmation::Nack(_)
    ));
    until_ready(&ch, "dlq", 1).await;
    assert_eq!(take_all(&ch, "dlq").await, ["refused"]);
    assert_eq!(take_all(&ch, "full").await, ["kept"]);
}

#[tokio::test]
async fn only_ready_messages_count_toward_the_limit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.confirming_channel().await;
    declare_with(&ch, "busy", table(&[max_len(1)])).await;
    let consumer_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consumer_ch, "busy", "c").await;
    confirmed(&ch, "busy", "in hand").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"in hand");
    // One unacked, one ready: nothing dropped.
    within(consumer_ch.basic_cancel("c".into(), BasicCancelOptions::default()))
        .await
        .unwrap();
    confirmed(&ch, "busy", "waiting").await;
    assert_eq!(ready_count(&ch, "busy").await, 1);
}

#[tokio::test]
async fn a_max_length_policy_applies_to_queues_without_the_argument() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    let body = serde_json::json!({"pattern": "^capped\\.", "apply-to": "queues",
                                  "definition": {"max-length": 1}});
    let status = put_policy(&broker, "cap", &body).await;
    assert_eq!(status, 201);
    declare_queue(&ch, "capped.one").await;
    for body in ["x", "y"] {
        confirmed(&ch, "capped.one", body).await;
    }
    assert_eq!(take_all(&ch, "capped.one").await, ["y"]);
}
