//! Dead-lettering (RabbitMQ's `x-dead-letter-exchange` extension) and the validation of queue
//! arguments: rejected messages are republished to the queue's dead-letter exchange with the
//! `x-death` history, by argument or by policy (the argument wins), cycles are cut, and bad
//! arguments are refused with 406 in RabbitMQ's words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;
use common::*;
use http::put_policy;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

fn dlx_args(exchange: &str, routing_key: Option<&str>) -> FieldTable {
    let mut pairs = vec![("x-dead-letter-exchange", text(exchange))];
    if let Some(key) = routing_key {
        pairs.push(("x-dead-letter-routing-key", text(key)));
    }
    table(&pairs)
}

async fn declare_with(ch: &Channel, name: &str, args: FieldTable) {
    try_declare_queue(ch, name, QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

/// Takes one message from `queue` with basic.get (waiting for one to arrive) and rejects it
/// without requeue.
async fn reject_next(ch: &Channel, queue: &str) {
    let m = within(async {
        loop {
            if let Some(m) = get(ch, queue, false).await {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    within(
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .unwrap();
}

/// Waits until `queue` holds `n` ready messages (dead-lettering happens in the queue's own
/// time, after the reject that caused it was sent), then takes them all.
async fn dead_lettered(ch: &Channel, queue: &str, n: u32) -> Vec<String> {
    within(async {
        while ready_count(ch, queue).await < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    take_all(ch, queue).await
}

fn header<'a>(d: &'a lapin::message::Delivery, key: &str) -> Option<&'a AMQPValue> {
    d.properties.headers().as_ref()?.inner().get(key)
}

fn deaths(d: &lapin::message::Delivery) -> Vec<FieldTable> {
    match header(d, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

fn string(t: &FieldTable, key: &str) -> String {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

#[tokio::test]
async fn a_rejected_message_goes_to_the_dead_letter_exchange_with_its_history() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "dlx", ExchangeKind::Direct).await;
    declare_queue(&ch, "dead").await;
    bind(&ch, "dead", "dlx", "work").await;
    declare_with(&ch, "work", dlx_args("dlx", None)).await;
    let props = BasicProperties::default()
        .with_correlation_id("c-1".into())
        .with_headers(table(&[("app", text("kept"))]));
    publish_to_queue_with(&ch, "work", b"poison", props).await;
    reject_next(&ch, "work").await;

    within(async {
        while ready_count(&ch, "dead").await < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let m = get(&ch, "dead", true)
        .await
        .expect("the dead-lettered message");
    let d = &m.delivery;
    assert_eq!(d.data, b"poison");
    assert_eq!(d.exchange.as_str(), "dlx");
    assert_eq!(d.routing_key.as_str(), "work");
    assert_eq!(
        d.properties.correlation_id().as_ref().unwrap().as_str(),
        "c-1"
    );
    assert!(matches!(header(d, "app"), Some(AMQPValue::LongString(_))));
    let deaths = deaths(d);
    assert_eq!(deaths.len(), 1);
    let death = &deaths[0];
    assert_eq!(string(death, "reason"), "rejected");
    assert_eq!(string(death, "queue"), "work");
    assert_eq!(string(death, "exchange"), "");
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert!(matches!(
        death.inner().get("time"),
        Some(AMQPValue::Timestamp(_))
    ));
    match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => assert_eq!(keys.as_slice().len(), 1),
        other => panic!("routing-keys: {other:?}"),
    }
    for (key, value) in [
        ("x-first-death-reason", "rejected"),
        ("x-first-death-queue", "work"),
        ("x-first-death-exchange", ""),
    ] {
        match header(d, key) {
            Some(AMQPValue::LongString(s)) => assert_eq!(s.as_bytes(), value.as_bytes(), "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn nack_without_requeue_dead_letters_with_the_configured_routing_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "dlx", ExchangeKind::Direct).await;
    declare_queue(&ch, "parked").await;
    bind(&ch, "parked", "dlx", "parking").await;
    declare_with(&ch, "work", dlx_args("dlx", Some("parking"))).await;
    for body in ["one", "two", "three"] {
        publish_to_queue(&ch, "work", body).await;
    }
    let mut consumer = consume_with(&ch, "work", "c", BasicConsumeOptions::default()).await;
    let mut last = 0;
    for _ in 0..3 {
        last = next_delivery(&mut consumer).await.delivery_tag;
    }
    within(ch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    ))
    .await
    .unwrap();
    let parked = dead_lettered(&ch, "parked", 3).await;
    assert_eq!(parked, ["one", "two", "three"]);
    // Requeued (not dead-lettered) messages stay.
    assert_eq!(ready_count(&ch, "work").await, 0);
}

#[tokio::test]
async fn a_policy_sets_the_dead_letter_exchange_and_an_argument_wins_over_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for (x, q) in [("by-policy", "policy-dead"), ("by-arg", "arg-dead")] {
        declare_exchange(&ch, x, ExchangeKind::Fanout).await;
        declare_queue(&ch, q).await;
        bind(&ch, q, x, "").await;
    }
    let policy = serde_json::json!({"pattern": "^jobs", "apply-to": "queues",
                                    "definition": {"dead-letter-exchange": "by-policy"}});
    let answer = put_policy(&broker, "dlx", &policy).await;
    assert_eq!(answer, 201);
    declare_queue(&ch, "jobs.plain").await;
    declare_with(&ch, "jobs.own", dlx_args("by-arg", None)).await;
    publish_to_queue(&ch, "jobs.plain", "plain").await;
    publish_to_queue(&ch, "jobs.own", "own").await;
    reject_next(&ch, "jobs.plain").await;
    reject_next(&ch, "jobs.own").await;
    assert_eq!(dead_lettered(&ch, "policy-dead", 1).await, ["plain"]);
    assert_eq!(dead_lettered(&ch, "arg-dead", 1).await, ["own"]);
    // A policy added after the queue was declared applies to it too.
    declare_queue(&ch, "later").await;
    let policy = serde_json::json!({"pattern": "^later$", "apply-to": "queues", "priority": 1,
                                    "definition": {"dead-letter-exchange": "by-arg"}});
    assert_eq!(put_policy(&broker, "later", &policy).await, 201);
    publish_to_queue(&ch, "later", "late").await;
    reject_next(&ch, "later").await;
    assert_eq!(dead_lettered(&ch, "arg-dead", 1).await, ["late"]);
}

#[tokio::test]
async fn a_missing_dead_letter_exchange_drops_the_message_quietly() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_with(&ch, "work", dlx_args("nowhere", None)).await;
    publish_to_queue(&ch, "work", "gone").await;
    reject_next(&ch, "work").await;
    // No error for the client (the channel stays open) and the message does not come back.
    assert_eq!(ready_count(&ch, "work").await, 0);
    declare_exchange(&ch, "nowhere", ExchangeKind::Fanout).await;
    declare_queue(&ch, "late").await;
    bind(&ch, "late", "nowhere", "").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        ready_count(&ch, "late").await,
        0,
        "a dropped message reappeared"
    );
}

#[tokio::test]
async fn dying_again_in_the_same_queue_counts_up_one_entry() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // Rejected messages come straight back (a retry loop through the default exchange).
    declare_with(&ch, "loop", dlx_args("", Some("loop"))).await;
    publish_to_queue(&ch, "loop", "again").await;
    reject_next(&ch, "loop").await;
    reject_next(&ch, "loop").await;
    within(async {
        while ready_count(&ch, "loop").await < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let m = get(&ch, "loop", true).await.expect("back in the queue");
    let deaths = deaths(&m.delivery);
    assert_eq!(deaths.len(), 1);
    assert_eq!(
        deaths[0].inner().get("count"),
        Some(&AMQPValue::LongLongInt(2))
    );
}

#[tokio::test]
async fn invalid_queue_arguments_are_refused_with_406_in_rabbitmqs_words() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let cases: Vec<(FieldTable, &str)> = vec![
        (
            table(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}",
        ),
        (
            table(&[("x-max-length", text("ten"))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/': {unacceptable_type,longstr}",
        ),
        (
            table(&[("x-expires", AMQPValue::LongInt(0))]),
            "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}",
        ),
        (
            table(&[("x-overflow", text("sideways"))]),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': {unacceptable_value,<<\"sideways\">>}",
        ),
        (
            table(&[("x-max-priority", AMQPValue::LongInt(256))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {value_too_large,256,255}",
        ),
        (
            table(&[("x-queue-type", text("quorum"))]),
            "PRECONDITION_FAILED - queue type 'quorum' is not supported by Warren (queue 'q' in vhost '/'); declare a classic queue",
        ),
    ];
    for (args, expected) in cases {
        let ch = conn.create_channel().await.unwrap();
        let err = try_declare_queue(&ch, "q", QueueDeclareOptions::default(), args)
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), Some(406));
        assert_eq!(reply_text(&err), expected);
    }
    let ch = conn.create_channel().await.unwrap();
    declare_with(&ch, "q", table(&[("x-queue-type", text("classic"))])).await;
}

#[tokio::test]
async fn a_dead_lettered_persistent_message_in_a_durable_queue_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = process::ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    try_declare_queue(&ch, "parked", durable, FieldTable::default())
        .await
        .unwrap();
    try_declare_queue(&ch, "work", durable, dlx_args("", Some("parked")))
        .await
        .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    process::publish_confirmed(&ch, "", "work", b"poison", process::persistent()).await;
    reject_next(&ch, "work").await;
    within(async {
        while ready_count(&ch, "parked").await < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    // Dead-lettering has no confirm of its own, and a queue can answer the passive declare
    // above before the end of the batch that writes what it received. A confirmed publish to
    // each queue is the barrier: it is confirmed only once everything its queue wrote before
    // it is on disk (the dead-lettered copy in parked, the reject's record in work).
    process::publish_confirmed(&ch, "", "parked", b"marker", process::persistent()).await;
    process::publish_confirmed(&ch, "", "work", b"marker", process::persistent()).await;
    drop(conn);
    broker.kill().await;

    let broker = process::ChildBroker::start(dir.path()).await;
    let (_conn, ch) = broker.channel().await;
    let m = get(&ch, "parked", true)
        .await
        .expect("the dead-lettered message");
    assert_eq!(m.delivery.data, b"poison");
    assert!(m.delivery.properties.headers().is_some());
    // The rejected original did not come back to work: only the marker is there.
    let m = get(&ch, "work", true).await.expect("work's marker");
    assert_eq!(m.delivery.data, b"marker");
    assert_eq!(ready_count(&ch, "work").await, 0);
    broker.stop().await;
}
