//! Routing end to end: the default exchange, direct, fanout, topic (a table of patterns and
//! routing keys through the broker) and headers exchanges (x-match all/any and the -with-x
//! modes), one copy per queue however many bindings match, and mandatory publishes that come
//! back as basic.return 312 NO_ROUTE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

/// Publishes and asserts the broker acked it: the message is in its queues on return.
async fn publish_acked(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    let confirmation =
        publish_and_confirm(ch, exchange, key, body, BasicProperties::default(), false).await;
    assert_eq!(confirmation, Confirmation::Ack(None));
}

fn with_headers(pairs: &[(&str, AMQPValue)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(pairs))
}

#[tokio::test]
async fn default_exchange_routes_to_the_queue_named_by_the_routing_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_queue(&ch, "left").await;
    declare_queue(&ch, "right").await;
    publish_acked(&ch, "", "left", b"to left").await;
    publish_acked(&ch, "", "nobody", b"to no queue").await;
    let m = within(ch.basic_get("left".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"to left");
    assert_eq!(m.delivery.exchange.as_str(), "");
    assert_eq!(m.delivery.routing_key.as_str(), "left");
    assert!(take_all(&ch, "left").await.is_empty());
    assert!(take_all(&ch, "right").await.is_empty());
}

#[tokio::test]
async fn direct_exchange_routes_on_the_exact_routing_key_to_every_bound_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "direct", ExchangeKind::Direct).await;
    for q in ["first", "second", "other"] {
        declare_queue(&ch, q).await;
    }
    bind(&ch, "first", "direct", "key").await;
    bind(&ch, "second", "direct", "key").await;
    bind(&ch, "other", "direct", "other.key").await;
    for key in ["key", "Key", "key.", "other", "other.*", ""] {
        publish_acked(&ch, "direct", key, key.as_bytes()).await;
    }
    assert_eq!(take_all(&ch, "first").await, ["key"]);
    assert_eq!(take_all(&ch, "second").await, ["key"]);
    assert!(take_all(&ch, "other").await.is_empty());
}

#[tokio::test]
async fn fanout_exchange_gives_every_bound_queue_one_copy_whatever_the_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout).await;
    for q in ["f1", "f2", "f3"] {
        declare_queue(&ch, q).await;
        bind(&ch, q, "fan", "ignored").await;
    }
    // A second binding (different key) to the same queue adds no second copy.
    bind(&ch, "f3", "fan", "also.ignored").await;
    publish_acked(&ch, "fan", "any.key", b"one").await;
    publish_acked(&ch, "fan", "", b"two").await;
    for q in ["f1", "f2", "f3"] {
        assert_eq!(take_all(&ch, q).await, ["one", "two"], "{q}");
    }
}

/// RabbitMQ's topic semantics: `*` is exactly one word (which may be empty, as in `a..b`), `#`
/// zero or more words, and an empty routing key or binding key has zero words.
#[tokio::test]
async fn topic_exchange_matches_star_and_hash_like_rabbitmq() {
    const KEYS: [&str; 10] = [
        "", "a", "a.b", "a.x.b", "a..b", "b", "a.b.c", ".", "a.x.y.b", "x.a.b",
    ];
    // (binding key, routing keys it matches)
    let table: [(&str, &[&str]); 12] = [
        ("#", &KEYS),
        ("*", &["a", "b"]),
        ("a.*", &["a.b"]),
        ("a.#", &["a", "a.b", "a.x.b", "a..b", "a.b.c", "a.x.y.b"]),
        ("#.b", &["a.b", "a.x.b", "a..b", "b", "a.x.y.b", "x.a.b"]),
        ("a.*.b", &["a.x.b", "a..b"]),
        ("a.#.b", &["a.b", "a.x.b", "a..b", "a.x.y.b"]),
        ("", &[""]),
        ("*.*", &["a.b", "."]),
        ("*.#", &KEYS[1..]),
        (
            "#.a.#",
            &["a", "a.b", "a.x.b", "a..b", "a.b.c", "a.x.y.b", "x.a.b"],
        ),
        ("a.b", &["a.b"]),
    ];
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "topics", ExchangeKind::Topic).await;
    for (i, (pattern, _)) in table.iter().enumerate() {
        let q = format!("topic-{i}");
        declare_queue(&ch, &q).await;
        bind(&ch, &q, "topics", pattern).await;
    }
    for key in KEYS {
        publish_acked(&ch, "topics", key, format!("<{key}>").as_bytes()).await;
    }
    for (i, (pattern, expected)) in table.iter().enumerate() {
        let expected: Vec<String> = KEYS
            .iter()
            .filter(|k| expected.contains(k))
            .map(|k| format!("<{k}>"))
            .collect();
        assert_eq!(
            take_all(&ch, &format!("topic-{i}")).await,
            expected,
            "binding key '{pattern}'"
        );
    }
}

#[tokio::test]
async fn a_queue_matched_by_several_bindings_gets_one_copy() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "topics", ExchangeKind::Topic).await;
    declare_exchange(&ch, "by-headers", ExchangeKind::Headers).await;
    declare_queue(&ch, "once").await;
    bind(&ch, "once", "topics", "a.*").await;
    bind(&ch, "once", "topics", "#").await;
    bind(&ch, "once", "topics", "a.b").await;
    bind_with(&ch, "once", "by-headers", "", table(&[("k", text("v"))])).await;
    bind_with(
        &ch,
        "once",
        "by-headers",
        "",
        table(&[("x-match", text("any")), ("k", text("v")), ("j", text("w"))]),
    )
    .await;
    publish_acked(&ch, "topics", "a.b", b"topic").await;
    publish_and_confirm(
        &ch,
        "by-headers",
        "",
        b"headers",
        with_headers(&[("k", text("v")), ("j", text("w"))]),
        false,
    )
    .await;
    assert_eq!(take_all(&ch, "once").await, ["topic", "headers"]);
}

#[tokio::test]
async fn headers_exchange_matches_all_and_any() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "hdr", ExchangeKind::Headers).await;
    let bindings = [
        // x-match absent means all
        (
            "all",
            table(&[("format", text("pdf")), ("type", text("report"))]),
        ),
        (
            "any",
            table(&[
                ("x-match", text("any")),
                ("format", text("pdf")),
                ("type", text("report")),
            ]),
        ),
        ("all-empty", table(&[("x-match", text("all"))])),
        ("any-empty", table(&[("x-match", text("any"))])),
    ];
    for (q, args) in &bindings {
        declare_queue(&ch, q).await;
        bind_with(&ch, q, "hdr", "", args.clone()).await;
    }
    let messages = [
        (
            "both",
            Some(vec![("format", text("pdf")), ("type", text("report"))]),
        ),
        (
            "both+extra",
            Some(vec![
                ("format", text("pdf")),
                ("type", text("report")),
                ("extra", AMQPValue::LongLongInt(1)),
            ]),
        ),
        ("format-only", Some(vec![("format", text("pdf"))])),
        (
            "mismatch",
            Some(vec![("format", text("zip")), ("type", text("log"))]),
        ),
        ("no-headers", None),
    ];
    for (body, headers) in &messages {
        let props = match headers {
            Some(h) => with_headers(h),
            None => BasicProperties::default(),
        };
        // The routing key plays no part.
        publish_and_confirm(&ch, "hdr", "format.pdf", body.as_bytes(), props, false).await;
    }
    assert_eq!(take_all(&ch, "all").await, ["both", "both+extra"]);
    assert_eq!(
        take_all(&ch, "any").await,
        ["both", "both+extra", "format-only"]
    );
    assert_eq!(
        take_all(&ch, "all-empty").await,
        [
            "both",
            "both+extra",
            "format-only",
            "mismatch",
            "no-headers"
        ]
    );
    assert!(take_all(&ch, "any-empty").await.is_empty());
}

#[tokio::test]
async fn headers_exchange_with_x_modes_match_x_arguments_too() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "hdr", ExchangeKind::Headers).await;
    let bindings = [
        (
            "all",
            table(&[
                ("x-match", text("all")),
                ("x-tenant", text("t1")),
                ("format", text("pdf")),
            ]),
        ),
        (
            "all-with-x",
            table(&[
                ("x-match", text("all-with-x")),
                ("x-tenant", text("t1")),
                ("format", text("pdf")),
            ]),
        ),
        (
            "any",
            table(&[("x-match", text("any")), ("x-tenant", text("t1"))]),
        ),
        (
            "any-with-x",
            table(&[("x-match", text("any-with-x")), ("x-tenant", text("t1"))]),
        ),
    ];
    for (q, args) in &bindings {
        declare_queue(&ch, q).await;
        bind_with(&ch, q, "hdr", "", args.clone()).await;
    }
    let messages = [
        ("pdf", vec![("format", text("pdf"))]),
        (
            "pdf+t1",
            vec![("format", text("pdf")), ("x-tenant", text("t1"))],
        ),
        ("t1", vec![("x-tenant", text("t1"))]),
        (
            "pdf+t2",
            vec![("format", text("pdf")), ("x-tenant", text("t2"))],
        ),
    ];
    for (body, headers) in &messages {
        publish_and_confirm(
            &ch,
            "hdr",
            "",
            body.as_bytes(),
            with_headers(headers),
            false,
        )
        .await;
    }
    assert_eq!(take_all(&ch, "all").await, ["pdf", "pdf+t1", "pdf+t2"]);
    assert_eq!(take_all(&ch, "all-with-x").await, ["pdf+t1"]);
    assert!(take_all(&ch, "any").await.is_empty());
    assert_eq!(take_all(&ch, "any-with-x").await, ["pdf+t1", "t1"]);
}

#[tokio::test]
async fn headers_exchange_compares_values_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare_queue(&ch, "int").await;
    declare_queue(&ch, "present").await;
    bind_with(
        &ch,
        "int",
        "hdr",
        "",
        table(&[("n", AMQPValue::LongLongInt(7))]),
    )
    .await;
    bind_with(
        &ch,
        "present",
        "hdr",
        "",
        table(&[("flag", AMQPValue::Void)]),
    )
    .await;
    let messages = [
        ("short 7", vec![("n", AMQPValue::ShortInt(7))]),
        ("long 7", vec![("n", AMQPValue::LongInt(7))]),
        ("double 7", vec![("n", AMQPValue::Double(7.0))]),
        ("text 7", vec![("n", text("7"))]),
        ("flag", vec![("flag", AMQPValue::Boolean(false))]),
    ];
    for (body, headers) in &messages {
        publish_and_confirm(
            &ch,
            "hdr",
            "",
            body.as_bytes(),
            with_headers(headers),
            false,
        )
        .await;
    }
    // Integers match whatever their width; a float or a string never equals an integer.
    assert_eq!(take_all(&ch, "int").await, ["short 7", "long 7"]);
    // A void argument only asks for the header to be present.
    assert_eq!(take_all(&ch, "present").await, ["flag"]);
}

#[tokio::test]
async fn invalid_x_match_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare_queue(&ch, "q").await;
    let err = within(ch.queue_bind(
        "q".into(),
        "hdr".into(),
        "".into(),
        QueueBindOptions::default(),
        table(&[("x-match", text("bogus"))]),
    ))
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - Invalid x-match field value <<\"bogus\">>; expected all, any, \
         all-with-x, or any-with-x"
    );
}

/// Every basic property set, to see a returned message come back intact.
fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(table(&[
            ("trace", text("abc")),
            ("attempt", AMQPValue::LongInt(3)),
        ]))
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("60000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_000)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-a".into())
}

#[tokio::test]
async fn mandatory_publish_that_routes_nowhere_comes_back_as_312_no_route() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "empty-topic", ExchangeKind::Topic).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let confirmation = publish_and_confirm(
        &ch,
        "empty-topic",
        "no.such.route",
        &body,
        all_properties(),
        true,
    )
    .await;
    // rabbitmq-compat: an unroutable message is still confirmed (acked) after its return.
    assert!(confirmation.is_ack());
    let returned = confirmation.take_message().expect("a basic.return");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), "empty-topic");
    assert_eq!(returned.delivery.routing_key.as_str(), "no.such.route");
    assert_eq!(returned.delivery.data, body);
    assert_eq!(returned.delivery.properties, all_properties());
}

#[tokio::test]
async fn wait_for_confirms_hands_back_every_returned_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_queue(&ch, "exists").await;
    let publishes: [(&str, &[u8]); 3] = [
        ("missing-1", b"r1"),
        ("exists", b"ok"),
        ("missing-2", b"r2"),
    ];
    for (key, body) in publishes {
        let _confirm = within(ch.basic_publish(
            "".into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            BasicProperties::default().with_message_id(ShortString::from(key)),
        ))
        .await
        .unwrap();
    }
    let returned = within(ch.wait_for_confirms()).await.unwrap();
    // lapin collects them from its pending confirms in no particular order.
    let mut summary: Vec<(u16, String, Vec<u8>)> = returned
        .iter()
        .map(|r| {
            (
                r.reply_code,
                r.delivery.routing_key.as_str().to_string(),
                r.delivery.data.clone(),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (312, "missing-1".to_string(), b"r1".to_vec()),
            (312, "missing-2".to_string(), b"r2".to_vec()),
        ]
    );
    assert_eq!(take_all(&ch, "exists").await, ["ok"]);
}

#[tokio::test]
async fn unroutable_publish_without_mandatory_is_dropped_and_still_confirmed() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "void", ExchangeKind::Fanout).await;
    let confirmation =
        publish_and_confirm(&ch, "void", "", b"lost", BasicProperties::default(), false).await;
    assert_eq!(confirmation, Confirmation::Ack(None));
    assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
}

#[tokio::test]
async fn mandatory_publish_that_routes_is_delivered_not_returned() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout).await;
    declare_queue(&ch, "fan-q").await;
    bind(&ch, "fan-q", "fan", "").await;
    let confirmation =
        publish_and_confirm(&ch, "fan", "", b"kept", BasicProperties::default(), true).await;
    assert_eq!(confirmation, Confirmation::Ack(None));
    assert_eq!(take_all(&ch, "fan-q").await, ["kept"]);
}
