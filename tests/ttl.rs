//! Message TTL (RabbitMQ's `x-message-ttl` queue argument, `message-ttl` policy and the
//! per-message `expiration` property): expired messages are never delivered, they expire on
//! time without a consumer (dead-lettered with reason `expired` when the queue has a DLX),
//! requeued messages keep their original expiry, TTL 0 reaches only a consumer ready now.
//! Real short TTLs; waits are bounded polls, never fixed sleeps deciding a pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
use common::*;
use http::put_policy;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::Duration;

async fn declare_with(ch: &Channel, name: &str, args: FieldTable) {
    try_declare_queue(ch, name, QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

fn ttl(ms: i32) -> (&'static str, AMQPValue) {
    ("x-message-ttl", AMQPValue::LongInt(ms))
}

fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

#[tokio::test]
async fn a_queue_ttl_expires_messages_without_any_consumer_and_dead_letters_them_in_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "dlx", ExchangeKind::Fanout).await;
    declare_queue(&ch, "expired").await;
    bind(&ch, "expired", "dlx", "").await;
    declare_with(
        &ch,
        "short",
        table(&[ttl(100), ("x-dead-letter-exchange", text("dlx"))]),
    )
    .await;
    for body in ["a", "b", "c"] {
        publish_to_queue(&ch, "short", body).await;
    }
    until_ready(&ch, "short", 0).await;
    until_ready(&ch, "expired", 3).await;
    let m = get(&ch, "expired", true).await.unwrap();
    assert_eq!(m.delivery.data, b"a");
    let Some(AMQPValue::FieldArray(deaths)) = m
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death").cloned())
    else {
        panic!("no x-death");
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("expired".into()))
    );
    assert_eq!(take_all(&ch, "expired").await, ["b", "c"]);
}

#[tokio::test]
async fn per_message_ttl_expires_the_message_and_keeps_the_original_expiration() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "dlx", ExchangeKind::Fanout).await;
    declare_queue(&ch, "expired").await;
    bind(&ch, "expired", "dlx", "").await;
    declare_with(
        &ch,
        "work",
        table(&[("x-dead-letter-exchange", text("dlx"))]),
    )
    .await;
    publish_to_queue_with(&ch, "work", b"soon", expiring("50")).await;
    until_ready(&ch, "expired", 1).await;
    let m = get(&ch, "expired", true).await.unwrap();
    // The dead-lettered copy does not expire again: its TTL moved into x-death.
    assert!(m.delivery.properties.expiration().is_none());
    let headers = m.delivery.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death");
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry");
    };
    assert_eq!(
        death.inner().get("original-expiration"),
        Some(&AMQPValue::LongString("50".into()))
    );
    // A long TTL does not expire meanwhile.
    publish_to_queue_with(&ch, "work", b"later", expiring("600000")).await;
    assert_eq!(take_all(&ch, "work").await, ["later"]);
}

#[tokio::test]
async fn ttl_zero_reaches_a_ready_consumer_only() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_with(&ch, "now", table(&[ttl(0)])).await;
    publish_to_queue(&ch, "now", "nobody listening").await;
    until_ready(&ch, "now", 0).await;
    let mut consumer = consume(&ch, "now", "c").await;
    publish_to_queue(&ch, "now", "caught").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"caught");
}

#[tokio::test]
async fn a_requeued_message_keeps_its_original_expiry() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_exchange(&ch, "dlx", ExchangeKind::Fanout).await;
    declare_queue(&ch, "expired").await;
    bind(&ch, "expired", "dlx", "").await;
    declare_with(
        &ch,
        "held",
        table(&[ttl(200), ("x-dead-letter-exchange", text("dlx"))]),
    )
    .await;
    publish_to_queue(&ch, "held", "held past its ttl").await;
    let holder = conn.create_channel().await.unwrap();
    let taken = get(&holder, "held", false).await.expect("the message");
    assert_eq!(taken.delivery.data, b"held past its ttl");
    // Unacked messages do not expire; once the TTL has passed, closing the channel requeues
    // it, and it expires at once instead of being delivered again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(holder.close(200, "bye".into())).await.unwrap();
    until_ready(&ch, "expired", 1).await;
    assert_eq!(ready_count(&ch, "held").await, 0);
}

#[tokio::test]
async fn a_policy_ttl_applies_and_the_lower_of_policy_and_argument_wins() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let body = serde_json::json!({"pattern": "^p\\.", "apply-to": "queues",
                                  "definition": {"message-ttl": 100}});
    let status = put_policy(&broker, "ttl", &body).await;
    assert_eq!(status, 201);
    declare_queue(&ch, "p.policy-only").await;
    declare_with(&ch, "p.longer-arg", table(&[ttl(600_000)])).await;
    declare_with(&ch, "other", FieldTable::default()).await;
    for q in ["p.policy-only", "p.longer-arg", "other"] {
        publish_to_queue(&ch, q, "m").await;
    }
    until_ready(&ch, "p.policy-only", 0).await;
    until_ready(&ch, "p.longer-arg", 0).await;
    assert_eq!(ready_count(&ch, "other").await, 1);
}

#[tokio::test]
async fn per_message_ttls_behind_a_longer_one_wait_for_the_head_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "mixed").await;
    publish_to_queue_with(&ch, "mixed", b"long", expiring("600000")).await;
    publish_to_queue_with(&ch, "mixed", b"short", expiring("20")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The short one has expired but waits behind the head; it is never delivered.
    assert_eq!(ready_count(&ch, "mixed").await, 2);
    assert_eq!(take_all(&ch, "mixed").await, ["long"]);
}

#[tokio::test]
async fn an_invalid_expiration_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let mut events = Box::pin(conn.events_listener());
    for (value, text) in [
        (
            "later",
            "PRECONDITION_FAILED - invalid expiration 'later': no_integer",
        ),
        (
            "-5",
            "PRECONDITION_FAILED - invalid expiration '-5': {value_negative,-5}",
        ),
    ] {
        let ch = conn.create_channel().await.unwrap();
        declare_queue(&ch, "q").await;
        publish_to_queue_with(&ch, "q", b"x", expiring(value)).await;
        let err = next_error(&mut events).await;
        assert_eq!(reply_code(&err), Some(406), "{value}");
        assert_eq!(reply_text(&err), text);
    }
}

/// Whether the management API still lists `queue` (asking it does not count as using it).
async fn queue_listed(broker: &TestBroker, queue: &str) -> bool {
    let path = format!("/api/queues/%2F/{queue}");
    http::request(broker, "GET", &path, http::GUEST)
        .await
        .status
        == 200
}

async fn until_gone(broker: &TestBroker, queue: &str) {
    within(async {
        while queue_listed(broker, queue).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_unused_queue_with_x_expires_is_deleted_with_its_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "temporary",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&[("x-expires", AMQPValue::LongInt(200))]),
    )
    .await
    .unwrap();
    publish_to_queue(&ch, "temporary", "left behind").await;
    until_gone(&broker, "temporary").await;
    let err = passive_queue(&ch, "temporary").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    // Its deletion reached the metadata.
    within(async {
        loop {
            let doc = std::fs::read_to_string(broker.data_dir().join("definitions.json")).unwrap();
            if !doc.contains("\"temporary\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_queue_with_a_consumer_does_not_expire_until_the_consumer_leaves() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_with(
        &ch,
        "watched",
        table(&[("x-expires", AMQPValue::LongInt(150))]),
    )
    .await;
    let consumer_ch = conn.create_channel().await.unwrap();
    let _consumer = consume(&consumer_ch, "watched", "c").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        queue_listed(&broker, "watched").await,
        "expired while consumed"
    );
    within(consumer_ch.basic_cancel("c".into(), BasicCancelOptions::default()))
        .await
        .unwrap();
    until_gone(&broker, "watched").await;
}
