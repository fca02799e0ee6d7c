//! The delayed message exchange (`x-delayed-message`, as RabbitMQ's community plugin): messages
//! with an `x-delay` header are held and routed through the exchange's bindings when due,
//! routing as the `x-delayed-type` says; declare errors; deletion drops pending messages;
//! confirms, mandatory returns and the management API; persistent delayed messages of a
//! durable exchange survive `kill -9` and a clean restart of the real binary. Delays are real but short; tests wait
//! for deliveries with bounded waits, and decide "nothing else arrived" by a later sentinel
//! message rather than by sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use process::ChildBroker;
use std::time::{Duration, Instant};

fn delayed_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

fn delayed_args(kind: &str) -> FieldTable {
    table(&[("x-delayed-type", text(kind))])
}

async fn declare_delayed(ch: &Channel, name: &str, kind: &str, durable: bool) {
    try_declare_exchange(
        ch,
        name,
        delayed_kind(),
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        delayed_args(kind),
    )
    .await
    .unwrap();
}

fn delay(ms: i64) -> BasicProperties {
    BasicProperties::default().with_headers(table(&[("x-delay", AMQPValue::LongLongInt(ms))]))
}

fn x_delay(d: &lapin::message::Delivery) -> Option<AMQPValue> {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delay").cloned())
}

async fn publish_with(ch: &Channel, exchange: &str, key: &str, body: &str, props: BasicProperties) {
    within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_shorter_delay_published_later_arrives_first_with_x_delay_negated() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "later", "direct", false).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "later", "k").await;
    let start = Instant::now();
    publish_with(&ch, "later", "k", "slow", delay(900)).await;
    publish_with(&ch, "later", "k", "fast", delay(300)).await;
    // Held, not routed: the queue is empty right after the publishes.
    assert_eq!(ready_count(&ch, "q").await, 0);
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&first), "fast");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(x_delay(&first), Some(AMQPValue::LongInt(-300)));
    let second = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&second), "slow");
    assert!(
        start.elapsed() >= Duration::from_millis(850),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(x_delay(&second), Some(AMQPValue::LongInt(-900)));
    assert_eq!(first.exchange.as_str(), "later");
    assert_eq!(first.routing_key.as_str(), "k");
}

#[tokio::test]
async fn without_a_positive_x_delay_a_message_routes_at_once_unchanged() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "now", "fanout", false).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "now", "").await;
    publish_with(&ch, "now", "", "plain", BasicProperties::default()).await;
    publish_with(&ch, "now", "", "zero", delay(0)).await;
    publish_with(&ch, "now", "", "negative", delay(-5)).await;
    let words = table(&[("x-delay", text("soon"))]);
    publish_with(
        &ch,
        "now",
        "",
        "text",
        BasicProperties::default().with_headers(words),
    )
    .await;
    // A publish is in its queues before the channel's next method is handled.
    assert_eq!(ready_count(&ch, "q").await, 4);
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let d = next_delivery(&mut consumer).await;
        got.push((body_text(&d), x_delay(&d)));
    }
    assert_eq!(
        got,
        vec![
            ("plain".to_string(), None),
            ("zero".to_string(), Some(AMQPValue::LongLongInt(0))),
            ("negative".to_string(), Some(AMQPValue::LongLongInt(-5))),
            ("text".to_string(), Some(text("soon"))),
        ]
    );
}

#[tokio::test]
async fn topic_and_headers_delayed_types_route_by_their_own_rules() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "dt", "topic", false).await;
    declare_delayed(&ch, "dh", "headers", false).await;
    declare_queue(&ch, "by-topic").await;
    declare_queue(&ch, "by-headers").await;
    bind(&ch, "by-topic", "dt", "orders.*").await;
    let match_args = table(&[("x-match", text("all")), ("region", text("eu"))]);
    bind_with(&ch, "by-headers", "dh", "", match_args).await;

    // The non-matching message of each pair is due first, so once the matching one has
    // arrived the other has been routed (to nowhere) too.
    publish_with(&ch, "dt", "invoices.new", "miss", delay(100)).await;
    publish_with(&ch, "dt", "orders.new", "hit", delay(200)).await;
    let headers = |region: &str, ms: i64| {
        BasicProperties::default().with_headers(table(&[
            ("region", text(region)),
            ("x-delay", AMQPValue::LongInt(ms as i32)),
        ]))
    };
    publish_with(&ch, "dh", "", "miss", headers("us", 100)).await;
    publish_with(&ch, "dh", "", "hit", headers("eu", 200)).await;

    for queue in ["by-topic", "by-headers"] {
        let mut consumer = consume_with(&ch, queue, queue, no_ack()).await;
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), "hit", "{queue}");
        assert_eq!(ready_count(&ch, queue).await, 0, "{queue}");
        assert_nothing_buffered(&mut consumer).await;
    }
}

#[tokio::test]
async fn declaring_without_a_usable_delayed_type_is_refused_as_the_plugin_does() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;

    let ch = conn.create_channel().await.unwrap();
    let missing = try_declare_exchange(
        &ch,
        "d",
        delayed_kind(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&missing), Some(406));
    assert_eq!(
        reply_text(&missing),
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
    );

    let ch = conn.create_channel().await.unwrap();
    let itself = try_declare_exchange(
        &ch,
        "d",
        delayed_kind(),
        Default::default(),
        delayed_args("x-delayed-message"),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&itself), Some(406));
    assert_eq!(
        reply_text(&itself),
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"
    );

    // Nothing was created by the refusals.
    assert!(!exchange_exists(&conn, "d").await);

    // rabbitmq-compat: an unknown delayed type fails `rabbit_exchange:check_type`, a 503
    // connection error like any unknown exchange type.
    let ch = conn.create_channel().await.unwrap();
    let unknown = try_declare_exchange(
        &ch,
        "d",
        delayed_kind(),
        Default::default(),
        delayed_args("nope"),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&unknown), Some(503));
    assert_eq!(
        reply_text(&unknown),
        "COMMAND_INVALID - unknown exchange type 'nope'"
    );
}

#[tokio::test]
async fn a_redeclare_must_keep_the_type() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_delayed(&ch, "d", "direct", false).await;
    // Same type: equivalent (the delayed type is not compared, as in the plugin).
    declare_delayed(&ch, "d", "direct", false).await;
    let err = try_declare_exchange(
        &ch,
        "d",
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'd' in vhost '/': received 'direct' but current is 'x-delayed-message'"
    );
}

#[tokio::test]
async fn deleting_the_exchange_drops_its_pending_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "gone", "direct", true).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "gone", "k").await;
    publish_with(
        &ch,
        "gone",
        "k",
        "dropped",
        delay(200).with_delivery_mode(2),
    )
    .await;
    publish_with(&ch, "gone", "k", "dropped too", delay(300)).await;
    within(ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    // Its stored messages' files went with it, before delete-ok.
    let stores = broker.data_dir().join("delayed").join("queues");
    assert_eq!(std::fs::read_dir(&stores).unwrap().count(), 0);
    // The same name again, with a sentinel due after the dropped ones.
    declare_delayed(&ch, "gone", "direct", true).await;
    bind(&ch, "q", "gone", "k").await;
    publish_with(&ch, "gone", "k", "sentinel", delay(500)).await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "sentinel");
    assert_eq!(ready_count(&ch, "q").await, 0);
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn held_messages_are_confirmed_and_mandatory_ones_returned_at_once() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirming(&conn).await;
    declare_delayed(&ch, "durable", "direct", true).await;
    declare_delayed(&ch, "memory", "direct", false).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "durable", "k").await;
    bind(&ch, "q", "memory", "k").await;
    let persistent = |ms| delay(ms).with_delivery_mode(2);
    // Stored (persistent, durable exchange): acked after the fsync; the rest at once.
    for (exchange, props) in [
        ("durable", persistent(60_000)),
        ("durable", delay(60_000)),
        ("memory", persistent(60_000)),
    ] {
        let got = publish_and_confirm(&ch, exchange, "k", b"later", props, false).await;
        assert_eq!(got, Confirmation::Ack(None), "{exchange}");
    }
    // rabbitmq-compat: the plugin routes a delayed publish to no queue, so a mandatory one
    // comes back as unroutable (plugin issue #7), and is delivered when due all the same.
    let got = publish_and_confirm(&ch, "memory", "k", b"back", delay(200), true).await;
    assert!(got.is_ack());
    let returned = got.take_message().expect("returned message");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"back");
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "back");

    // The management API lists the exchange with its type, arguments and held messages.
    let exchanges = http::get_json(&broker, "/api/exchanges/%2F").await;
    let durable = http::with(&exchanges, "name", "durable");
    assert_eq!(durable.len(), 1);
    assert_eq!(durable[0]["type"], "x-delayed-message");
    assert_eq!(durable[0]["arguments"]["x-delayed-type"], "direct");
    assert_eq!(durable[0]["messages_delayed"], 2);
    let overview = http::get_json(&broker, "/api/overview").await;
    let types = overview["exchange_types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "x-delayed-message"));
    // And the definitions export carries it as a durable exchange.
    let defs = http::get_json(&broker, "/api/definitions").await;
    let exported = http::with(&defs["exchanges"], "name", "durable");
    assert_eq!(exported[0]["type"], "x-delayed-message");
    assert_eq!(exported[0]["arguments"]["x-delayed-type"], "direct");
}

#[tokio::test]
async fn an_imported_definitions_file_declares_a_working_delayed_exchange() {
    let broker = TestBroker::start().await;
    let doc = serde_json::json!({
        "exchanges": [{"name": "imported", "vhost": "/", "type": "x-delayed-message",
                       "durable": true, "auto_delete": false, "internal": false,
                       "arguments": {"x-delayed-type": "topic"}}],
        "queues": [{"name": "q", "vhost": "/", "durable": true, "auto_delete": false,
                    "arguments": {}}],
        "bindings": [{"source": "imported", "vhost": "/", "destination": "q",
                      "destination_type": "queue", "routing_key": "a.#", "arguments": {}}]
    });
    let answer = http::send(
        &broker,
        "POST",
        "/api/definitions",
        http::GUEST,
        &doc.to_string(),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.json);
    let (_conn, ch) = broker.channel().await;
    publish_with(&ch, "imported", "a.b", "via import", delay(50)).await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "via import");
}

// ---------------------------------------------------------------------------------------------
// Restarts of the real binary

/// A durable delayed exchange "later" bound to durable queue "q" with key "k".
async fn durable_setup(ch: &Channel) {
    declare_delayed(ch, "later", "direct", true).await;
    process::declare_durable(ch, "q").await;
    bind(ch, "q", "later", "k").await;
}

#[tokio::test]
async fn a_confirmed_persistent_delayed_message_survives_kill_9_and_arrives_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    durable_setup(&ch).await;
    // Transient: held in memory only, so lost; it is due first, so had it survived it would
    // arrive before the persistent one.
    process::publish_confirmed(&ch, "later", "k", b"transient", delay(1000)).await;
    let persistent = delay(1500).with_delivery_mode(2);
    process::publish_confirmed(&ch, "later", "k", b"kept", persistent).await;
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "kept");
    assert_eq!(x_delay(&d), Some(AMQPValue::LongInt(-1500)));
    assert_eq!(d.properties.delivery_mode(), &Some(2));
    assert_eq!(process::passive(&ch, "q").await.unwrap(), 0);
    assert_nothing_buffered(&mut consumer).await;
    // Routed, so no longer held: it does not come back after another restart. Had it stayed
    // in the store it would be overdue, and routed before a sentinel due 1 ms after publish.
    drop(consumer);
    broker.stop().await;
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    publish_with(&ch, "later", "k", "sentinel", delay(1)).await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "sentinel");
    assert_eq!(ready_count(&ch, "q").await, 0);
}

#[tokio::test]
async fn a_delayed_message_overdue_at_boot_is_delivered_right_away() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.confirming_channel().await;
    durable_setup(&ch).await;
    let published = tokio::time::Instant::now();
    let persistent = delay(60_000).with_delivery_mode(2);
    process::publish_confirmed(&ch, "later", "k", b"long", persistent).await;
    let persistent = delay(300).with_delivery_mode(2);
    process::publish_confirmed(&ch, "later", "k", b"overdue", persistent).await;
    broker.stop().await;
    // Setup, not a verdict: make sure the short delay has passed while the broker is down.
    tokio::time::sleep_until(published + Duration::from_millis(400)).await;

    let broker = ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "overdue");
    // The long one is still held, and listed.
    let conn = broker.connect().await;
    assert!(exchange_exists(&conn, "later").await);
    within(ch.exchange_delete("later".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    broker.stop().await;
    // Deleted with the exchange: nothing of it is left in the data directory.
    let stores = dir.path().join("delayed").join("queues");
    assert_eq!(std::fs::read_dir(&stores).unwrap().count(), 0);
}
