//! RabbitMQ's routing extensions. Exchange-to-exchange bindings (`exchange.bind`): a message
//! routed by the source exchange goes on through the destination exchange with the same
//! routing key and headers, transitively; each queue gets one copy however many paths reach
//! it, cycles end; unbind, deletion of either end and errors as RabbitMQ has them. Alternate
//! exchanges (argument and policy) take what an exchange cannot route. Sender-selected
//! distribution: `CC`/`BCC` headers add routing keys, and BCC is removed before delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
use common::*;
use http::put_policy;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

async fn publish_acked(ch: &Channel, exchange: &str, key: &str, body: &str) {
    let confirmation = publish_and_confirm(
        ch,
        exchange,
        key,
        body.as_bytes(),
        BasicProperties::default(),
        false,
    )
    .await;
    assert_eq!(confirmation, Confirmation::Ack(None));
}

#[tokio::test]
async fn a_message_flows_through_the_destination_exchange_when_the_source_binding_matches() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "orders", ExchangeKind::Direct).await;
    declare_exchange(&ch, "eu", ExchangeKind::Topic).await;
    declare_queue(&ch, "eu.paris").await;
    declare_queue(&ch, "eu.all").await;
    bind_exchange(&ch, "eu", "orders", "eu.fr.paris").await;
    bind_exchange(&ch, "eu", "orders", "eu.de.berlin").await;
    bind(&ch, "eu.paris", "eu", "*.*.paris").await;
    bind(&ch, "eu.all", "eu", "eu.#").await;
    for key in ["eu.fr.paris", "eu.de.berlin", "us.ny.nyc", "eu.fr.lyon"] {
        publish_acked(&ch, "orders", key, key).await;
    }
    assert_eq!(take_all(&ch, "eu.paris").await, ["eu.fr.paris"]);
    assert_eq!(
        take_all(&ch, "eu.all").await,
        ["eu.fr.paris", "eu.de.berlin"]
    );
    // The delivery names the exchange it was published to.
    publish_acked(&ch, "orders", "eu.fr.paris", "again").await;
    let m = get(&ch, "eu.paris", true).await.unwrap();
    assert_eq!(m.delivery.exchange.as_str(), "orders");
    assert_eq!(m.delivery.routing_key.as_str(), "eu.fr.paris");
}

#[tokio::test]
async fn chains_diamonds_and_cycles_deliver_one_copy_per_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    for x in ["a", "b", "c", "d"] {
        declare_exchange(&ch, x, ExchangeKind::Fanout).await;
    }
    declare_queue(&ch, "end").await;
    declare_queue(&ch, "on.a").await;
    // a → b → d, a → c → d (a diamond), d → a (a cycle); queues on a and d.
    bind_exchange(&ch, "b", "a", "").await;
    bind_exchange(&ch, "c", "a", "").await;
    bind_exchange(&ch, "d", "b", "").await;
    bind_exchange(&ch, "d", "c", "").await;
    bind_exchange(&ch, "a", "d", "").await;
    bind(&ch, "end", "d", "").await;
    bind(&ch, "end", "c", "").await;
    bind(&ch, "on.a", "a", "").await;
    publish_acked(&ch, "a", "", "from a").await;
    publish_acked(&ch, "d", "", "from d").await;
    assert_eq!(take_all(&ch, "end").await, ["from a", "from d"]);
    assert_eq!(take_all(&ch, "on.a").await, ["from a", "from d"]);
    // An exchange bound to itself routes once.
    bind_exchange(&ch, "b", "b", "").await;
    declare_queue(&ch, "on.b").await;
    bind(&ch, "on.b", "b", "").await;
    publish_acked(&ch, "b", "", "self").await;
    assert_eq!(take_all(&ch, "on.b").await, ["self"]);
}

#[tokio::test]
async fn a_headers_exchange_behind_a_topic_exchange_sees_the_headers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "events", ExchangeKind::Topic).await;
    declare_exchange(&ch, "by-format", ExchangeKind::Headers).await;
    declare_queue(&ch, "pdf").await;
    bind_exchange(&ch, "by-format", "events", "doc.#").await;
    bind_with(
        &ch,
        "pdf",
        "by-format",
        "",
        table(&[("x-match", text("all")), ("format", text("pdf"))]),
    )
    .await;
    for (key, format) in [("doc.new", "pdf"), ("doc.new", "txt"), ("img.new", "pdf")] {
        let props = BasicProperties::default().with_headers(table(&[("format", text(format))]));
        let body = format!("{key} {format}");
        let c = publish_and_confirm(&ch, "events", key, body.as_bytes(), props, false).await;
        assert_eq!(c, Confirmation::Ack(None));
    }
    assert_eq!(take_all(&ch, "pdf").await, ["doc.new pdf"]);
}

#[tokio::test]
async fn unbinding_stops_the_flow_and_unbinding_what_is_not_bound_succeeds() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "src", ExchangeKind::Direct).await;
    declare_exchange(&ch, "dst", ExchangeKind::Fanout).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "dst", "").await;
    bind_exchange(&ch, "dst", "src", "k").await;
    // Binding twice is one binding.
    bind_exchange(&ch, "dst", "src", "k").await;
    publish_acked(&ch, "src", "k", "bound").await;
    try_unbind_exchange(&ch, "dst", "src", "k").await.unwrap();
    publish_acked(&ch, "src", "k", "unbound").await;
    assert_eq!(take_all(&ch, "q").await, ["bound"]);
    try_unbind_exchange(&ch, "dst", "src", "k").await.unwrap();
    try_unbind_exchange(&ch, "dst", "src", "never")
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_exchanges_are_404_and_the_default_exchange_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let cases = [
        (
            "nope",
            "amq.direct",
            404,
            "NOT_FOUND - no exchange 'nope' in vhost '/'",
        ),
        (
            "amq.fanout",
            "nope",
            404,
            "NOT_FOUND - no exchange 'nope' in vhost '/'",
        ),
        (
            "",
            "amq.direct",
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        ),
        (
            "amq.fanout",
            "",
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        ),
    ];
    for (destination, source, code, text) in cases {
        let ch = conn.create_channel().await.unwrap();
        let err = try_bind_exchange(&ch, destination, source, "k", FieldTable::default())
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), Some(code), "{destination} <- {source}");
        assert_eq!(reply_text(&err), text);
    }
    // Channel errors only: the connection is still usable.
    let ch = conn.create_channel().await.unwrap();
    bind_exchange(&ch, "amq.fanout", "amq.direct", "k").await;
}

#[tokio::test]
async fn deleting_an_exchange_removes_the_bindings_to_it_and_auto_deletes_its_sources() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.confirming_channel().await;
    try_declare_exchange(
        &ch,
        "feeder",
        ExchangeKind::Fanout,
        exchange_flags(false, true, false),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_exchange(&ch, "target", ExchangeKind::Fanout).await;
    declare_exchange(&ch, "keeper", ExchangeKind::Fanout).await;
    bind_exchange(&ch, "target", "feeder", "").await;
    bind_exchange(&ch, "target", "keeper", "").await;
    within(ch.exchange_delete("target".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    // feeder was auto-delete and lost its last binding; keeper stays, with no binding left.
    assert!(!exchange_exists(&conn, "feeder").await);
    assert!(exchange_exists(&conn, "keeper").await);
    within(ch.exchange_delete(
        "keeper".into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    // A destination re-created under the same name is not bound again.
    declare_exchange(&ch, "src", ExchangeKind::Fanout).await;
    declare_exchange(&ch, "dst", ExchangeKind::Fanout).await;
    bind_exchange(&ch, "dst", "src", "").await;
    within(ch.exchange_delete("dst".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    declare_exchange(&ch, "dst", ExchangeKind::Fanout).await;
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "dst", "").await;
    publish_acked(&ch, "src", "", "lost").await;
    assert!(take_all(&ch, "q").await.is_empty());
}

#[tokio::test]
async fn mandatory_publishes_count_queues_reached_through_other_exchanges() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "front", ExchangeKind::Direct).await;
    declare_exchange(&ch, "back", ExchangeKind::Fanout).await;
    bind_exchange(&ch, "back", "front", "k").await;
    // No queue behind back yet: returned.
    let c = publish_and_confirm(&ch, "front", "k", b"none", BasicProperties::default(), true).await;
    assert!(c.is_ack());
    let returned = c.take_message().expect("a basic.return");
    assert_eq!(returned.reply_code, 312);
    declare_queue(&ch, "q").await;
    bind(&ch, "q", "back", "").await;
    let c = publish_and_confirm(&ch, "front", "k", b"one", BasicProperties::default(), true).await;
    assert_eq!(c, Confirmation::Ack(None));
    assert_eq!(take_all(&ch, "q").await, ["one"]);
}

#[tokio::test]
async fn unroutable_messages_go_to_the_alternate_exchange_and_its_alternate() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    declare_exchange(&ch, "last-resort", ExchangeKind::Fanout).await;
    try_declare_exchange(
        &ch,
        "second",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", text("last-resort"))]),
    )
    .await
    .unwrap();
    try_declare_exchange(
        &ch,
        "main",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", text("second"))]),
    )
    .await
    .unwrap();
    for q in ["routed", "second-q", "unrouted"] {
        declare_queue(&ch, q).await;
    }
    bind(&ch, "routed", "main", "known").await;
    bind(&ch, "second-q", "second", "other").await;
    bind(&ch, "unrouted", "last-resort", "").await;
    publish_acked(&ch, "main", "known", "to routed").await;
    publish_acked(&ch, "main", "other", "via second").await;
    // Routed by the alternate: a mandatory publish is not returned.
    let c = publish_and_confirm(
        &ch,
        "main",
        "nobody",
        b"via last",
        BasicProperties::default(),
        true,
    )
    .await;
    assert_eq!(c, Confirmation::Ack(None));
    assert_eq!(take_all(&ch, "routed").await, ["to routed"]);
    assert_eq!(take_all(&ch, "second-q").await, ["via second"]);
    assert_eq!(take_all(&ch, "unrouted").await, ["via last"]);
}

#[tokio::test]
async fn an_alternate_exchange_set_by_policy_applies_and_the_argument_wins() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    for (x, q) in [("ae-policy", "by-policy"), ("ae-arg", "by-arg")] {
        declare_exchange(&ch, x, ExchangeKind::Fanout).await;
        declare_queue(&ch, q).await;
        bind(&ch, q, x, "").await;
    }
    declare_exchange(&ch, "orders", ExchangeKind::Direct).await;
    try_declare_exchange(
        &ch,
        "orders-own",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", text("ae-arg"))]),
    )
    .await
    .unwrap();
    let body = serde_json::json!({"pattern": "^orders", "apply-to": "exchanges",
                                  "definition": {"alternate-exchange": "ae-policy"}});
    let status = put_policy(&broker, "ae", &body).await;
    assert_eq!(status, 201);
    publish_acked(&ch, "orders", "x", "policy").await;
    publish_acked(&ch, "orders-own", "x", "argument").await;
    assert_eq!(take_all(&ch, "by-policy").await, ["policy"]);
    assert_eq!(take_all(&ch, "by-arg").await, ["argument"]);
}

#[tokio::test]
async fn cc_and_bcc_headers_add_routing_keys_and_bcc_is_not_delivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    for q in ["main", "copy", "blind"] {
        declare_queue(&ch, q).await;
        bind(&ch, q, "amq.direct", q).await;
    }
    let keys = |names: &[&str]| {
        AMQPValue::FieldArray(names.iter().map(|n| text(n)).collect::<Vec<_>>().into())
    };
    let props = BasicProperties::default().with_headers(table(&[
        ("CC", keys(&["copy", "main"])),
        ("BCC", keys(&["blind"])),
        ("kept", text("yes")),
    ]));
    let c = publish_and_confirm(&ch, "amq.direct", "main", b"memo", props, false).await;
    assert_eq!(c, Confirmation::Ack(None));
    for q in ["main", "copy", "blind"] {
        let m = get(&ch, q, true)
            .await
            .unwrap_or_else(|| panic!("{q} got no copy"));
        let headers = m.delivery.properties.headers().clone().unwrap();
        assert!(headers.inner().contains_key("CC"), "{q}");
        assert!(!headers.inner().contains_key("BCC"), "{q} saw BCC");
        assert!(headers.inner().contains_key("kept"), "{q}");
        assert!(get(&ch, q, true).await.is_none(), "{q} got two copies");
    }
}
