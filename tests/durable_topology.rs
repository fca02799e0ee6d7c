//! Durable topology across restarts of the real `warren` binary: durable exchanges of every
//! type, durable queues and the bindings between durable objects come back exactly as declared
//! (type, flags, arguments) after `kill -9`; non-durable, exclusive and auto-delete ones do not.
//! Declares, binds and deletes are answered only once the metadata file is on disk, so the
//! tests kill the broker right after the reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use process::ChildBroker;

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Publishes a persistent message with `headers` and asserts the broker acked it.
async fn publish_persistent(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    headers: FieldTable,
) {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let confirmation = publish_and_confirm(ch, exchange, key, body.as_bytes(), props, false).await;
    assert_eq!(confirmation, Confirmation::Ack(None));
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn durable_exchanges_of_every_type_come_back_with_their_flags_and_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let ae = || table(&[("alternate-exchange", text("x.ae"))]);
    let durable = exchange_flags(true, false, false);
    let exchanges = [
        ("x.direct", ExchangeKind::Direct, durable, ae()),
        (
            "x.fanout",
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        ),
        ("x.topic", ExchangeKind::Topic, durable, ae()),
        ("x.headers", ExchangeKind::Headers, durable, ae()),
        (
            "x.internal",
            ExchangeKind::Topic,
            exchange_flags(true, false, true),
            FieldTable::default(),
        ),
    ];
    for (name, kind, flags, args) in exchanges.clone() {
        try_declare_exchange(&ch, name, kind, flags, args)
            .await
            .unwrap();
    }
    let plain = exchange_flags(false, false, false);
    try_declare_exchange(
        &ch,
        "x.transient",
        ExchangeKind::Direct,
        plain,
        FieldTable::default(),
    )
    .await
    .unwrap();
    let durable_auto_delete = exchange_flags(true, true, false);
    try_declare_exchange(
        &ch,
        "x.autodelete",
        ExchangeKind::Fanout,
        durable_auto_delete,
        FieldTable::default(),
    )
    .await
    .unwrap();
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    // The same declarations are equivalent: type, flags and alternate-exchange all match.
    for (name, kind, flags, args) in exchanges {
        passive_exchange(&ch, name).await.unwrap();
        try_declare_exchange(&ch, name, kind, flags, args)
            .await
            .unwrap();
    }
    for name in ["x.transient", "x.autodelete"] {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(passive_exchange(&ch, name).await);
        assert_eq!(code, Some(404), "{name} survived the restart");
        assert_eq!(
            text,
            format!("NOT_FOUND - no exchange '{name}' in vhost '/'")
        );
    }
    // Anything else is not.
    let mismatches = [
        (
            "x.fanout",
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
            "inequivalent arg 'type' for exchange 'x.fanout' in vhost '/': received 'direct' \
             but current is 'fanout'",
        ),
        (
            "x.topic",
            ExchangeKind::Topic,
            plain,
            ae(),
            "inequivalent arg 'durable' for exchange 'x.topic' in vhost '/': received 'false' \
             but current is 'true'",
        ),
        (
            "x.internal",
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
            "inequivalent arg 'internal' for exchange 'x.internal' in vhost '/': received \
             'false' but current is 'true'",
        ),
        (
            "x.direct",
            ExchangeKind::Direct,
            durable,
            table(&[("alternate-exchange", text("x.other"))]),
            "inequivalent arg 'alternate-exchange' for exchange 'x.direct' in vhost '/': \
             received 'x.other' but current is 'x.ae'",
        ),
        (
            "x.headers",
            ExchangeKind::Headers,
            durable,
            FieldTable::default(),
            "inequivalent arg 'alternate-exchange' for exchange 'x.headers' in vhost '/': \
             received none but current is the value 'x.ae' of type 'longstr'",
        ),
    ];
    for (name, kind, flags, args, expected) in mismatches {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(try_declare_exchange(&ch, name, kind, flags, args).await);
        assert_eq!(code, Some(406), "{name}");
        assert_eq!(text, format!("PRECONDITION_FAILED - {expected}"));
    }
    // Still internal: clients cannot publish to it.
    let ch = confirming(&conn).await;
    let confirm = within(ch.basic_publish(
        "x.internal".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    let (code, text) = refusal(within(confirm).await);
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - cannot publish to internal exchange 'x.internal' in vhost '/'"
    );
}

#[tokio::test]
async fn bindings_with_arguments_route_the_same_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let durable = exchange_flags(true, false, false);
    for (name, kind) in [
        ("b.direct", ExchangeKind::Direct),
        ("b.fanout", ExchangeKind::Fanout),
        ("b.topic", ExchangeKind::Topic),
        ("b.headers", ExchangeKind::Headers),
    ] {
        try_declare_exchange(&ch, name, kind, durable, FieldTable::default())
            .await
            .unwrap();
    }
    let plain = exchange_flags(false, false, false);
    try_declare_exchange(
        &ch,
        "b.transient",
        ExchangeKind::Fanout,
        plain,
        FieldTable::default(),
    )
    .await
    .unwrap();
    for queue in [
        "q.direct", "q.fan1", "q.fan2", "q.topic", "q.all", "q.any", "q.amq",
    ] {
        try_declare_queue(&ch, queue, durable_queue(), FieldTable::default())
            .await
            .unwrap();
    }
    try_declare_queue(
        &ch,
        "q.transient",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let match_on = |mode: &str| {
        table(&[
            ("x-match", text(mode)),
            ("colour", text("red")),
            ("size", AMQPValue::LongLongInt(3)),
        ])
    };
    let keyed = table(&[("x-note", text("kept"))]);
    bind_with(&ch, "q.direct", "b.direct", "k1", keyed.clone()).await;
    bind_with(&ch, "q.fan1", "b.fanout", "", FieldTable::default()).await;
    bind_with(&ch, "q.fan2", "b.fanout", "ignored", FieldTable::default()).await;
    bind_with(&ch, "q.topic", "b.topic", "a.*.c", FieldTable::default()).await;
    bind_with(&ch, "q.topic", "b.topic", "#.z", FieldTable::default()).await;
    bind_with(&ch, "q.all", "b.headers", "", match_on("all")).await;
    bind_with(&ch, "q.any", "b.headers", "", match_on("any")).await;
    bind_with(&ch, "q.amq", "amq.topic", "amq.#", FieldTable::default()).await;
    // Bindings involving a non-durable end do not outlive the broker.
    bind_with(&ch, "q.fan1", "b.transient", "", FieldTable::default()).await;
    bind_with(&ch, "q.transient", "b.fanout", "", FieldTable::default()).await;
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = confirming(&conn).await;
    let none = FieldTable::default;
    let header = |pairs: &[(&str, AMQPValue)]| table(pairs);
    publish_persistent(&ch, "b.direct", "k1", "d1", none()).await;
    publish_persistent(&ch, "b.direct", "k2", "d2", none()).await;
    publish_persistent(&ch, "b.fanout", "whatever", "f", none()).await;
    for key in ["a.b.c", "a.b", "x.y.z", "a.c"] {
        publish_persistent(&ch, "b.topic", key, key, none()).await;
    }
    let red_3 = header(&[("colour", text("red")), ("size", AMQPValue::LongLongInt(3))]);
    publish_persistent(&ch, "b.headers", "", "red-3", red_3).await;
    publish_persistent(
        &ch,
        "b.headers",
        "",
        "red",
        header(&[("colour", text("red"))]),
    )
    .await;
    let blue_3 = header(&[("colour", text("blue")), ("size", AMQPValue::LongInt(3))]);
    publish_persistent(&ch, "b.headers", "", "blue-3", blue_3).await;
    publish_persistent(&ch, "b.headers", "", "plain", none()).await;
    publish_persistent(&ch, "amq.topic", "amq.x", "amq", none()).await;

    assert_eq!(take_all(&ch, "q.direct").await, ["d1"]);
    assert_eq!(take_all(&ch, "q.fan1").await, ["f"]);
    assert_eq!(take_all(&ch, "q.fan2").await, ["f"]);
    assert_eq!(take_all(&ch, "q.topic").await, ["a.b.c", "x.y.z"]);
    assert_eq!(take_all(&ch, "q.all").await, ["red-3"]);
    assert_eq!(take_all(&ch, "q.any").await, ["red-3", "red", "blue-3"]);
    assert_eq!(take_all(&ch, "q.amq").await, ["amq"]);
    for (name, is_exchange) in [("b.transient", true), ("q.transient", false)] {
        let ch = conn.create_channel().await.unwrap();
        let (code, _) = if is_exchange {
            refusal(passive_exchange(&ch, name).await)
        } else {
            refusal(passive_queue(&ch, name).await.map(|_| ()))
        };
        assert_eq!(code, Some(404), "{name} survived the restart");
    }

    // The bindings kept their exact arguments: unbinding with them removes them.
    within(ch.queue_unbind(
        "q.all".into(),
        "b.headers".into(),
        "".into(),
        match_on("all"),
    ))
    .await
    .unwrap();
    within(ch.queue_unbind("q.direct".into(), "b.direct".into(), "k1".into(), keyed))
        .await
        .unwrap();
    publish_persistent(&ch, "b.headers", "", "red-3 again", match_on("all")).await;
    publish_persistent(&ch, "b.direct", "k1", "d1 again", none()).await;
    assert_eq!(take_all(&ch, "q.all").await, Vec::<String>::new());
    assert_eq!(take_all(&ch, "q.direct").await, Vec::<String>::new());
    assert_eq!(take_all(&ch, "q.any").await, ["red-3 again"]);

    // The unbinds are durable too, and a clean restart after a recovery loses nothing.
    drop(conn);
    broker.stop().await;
    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = confirming(&conn).await;
    publish_persistent(&ch, "b.headers", "", "third", match_on("any")).await;
    publish_persistent(&ch, "b.direct", "k1", "d1 third", none()).await;
    publish_persistent(&ch, "b.topic", "q.z", "q.z", none()).await;
    assert_eq!(take_all(&ch, "q.all").await, Vec::<String>::new());
    assert_eq!(take_all(&ch, "q.any").await, ["third"]);
    assert_eq!(take_all(&ch, "q.direct").await, Vec::<String>::new());
    assert_eq!(take_all(&ch, "q.topic").await, ["q.z"]);
}

/// A binding argument declared as a 32-bit integer must be unbindable after a restart with the
/// same 32-bit value (binding arguments are kept in the form the definitions file preserves,
/// so the restored binding is the same binding).
#[tokio::test]
async fn a_binding_with_a_32_bit_argument_can_be_unbound_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let durable = exchange_flags(true, false, false);
    try_declare_exchange(
        &ch,
        "t.headers",
        ExchangeKind::Headers,
        durable,
        FieldTable::default(),
    )
    .await
    .unwrap();
    try_declare_queue(&ch, "t.q", durable_queue(), FieldTable::default())
        .await
        .unwrap();
    let args = || table(&[("x-match", text("all")), ("n", AMQPValue::LongInt(7))]);
    bind_with(&ch, "t.q", "t.headers", "", args()).await;
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = confirming(&conn).await;
    within(ch.queue_unbind("t.q".into(), "t.headers".into(), "".into(), args()))
        .await
        .unwrap();
    publish_persistent(
        &ch,
        "t.headers",
        "",
        "after unbind",
        table(&[("n", AMQPValue::LongInt(7))]),
    )
    .await;
    assert_eq!(take_all(&ch, "t.q").await, Vec::<String>::new());
}

#[tokio::test]
async fn durable_queue_arguments_come_back_and_still_decide_equivalence() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let args = || {
        table(&[
            ("x-max-length", AMQPValue::LongLongInt(10)),
            ("x-message-ttl", AMQPValue::LongLongInt(60_000)),
            ("x-dead-letter-exchange", text("dlx")),
            ("x-dead-letter-routing-key", text("dead")),
        ])
    };
    try_declare_queue(&ch, "q.args", durable_queue(), args())
        .await
        .unwrap();
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    passive_queue(&ch, "q.args").await.unwrap();
    let same = try_declare_queue(&ch, "q.args", durable_queue(), args())
        .await
        .unwrap();
    assert_eq!(same.message_count(), 0);
    let with = |key: &str, value: AMQPValue| {
        let mut t = args();
        t.insert(key.into(), value);
        t
    };
    let without = |key: &str| {
        let mut t = FieldTable::default();
        for (k, v) in args().inner() {
            if k.as_str() != key {
                t.insert(k.clone(), v.clone());
            }
        }
        t
    };
    let mismatches = [
        (
            durable_queue(),
            with("x-max-length", AMQPValue::LongLongInt(11)),
            "inequivalent arg 'x-max-length' for queue 'q.args' in vhost '/': received '11' but \
             current is '10'",
        ),
        (
            durable_queue(),
            with("x-message-ttl", AMQPValue::LongLongInt(1_000)),
            "inequivalent arg 'x-message-ttl' for queue 'q.args' in vhost '/': received '1000' \
             but current is '60000'",
        ),
        (
            durable_queue(),
            with("x-dead-letter-exchange", text("other")),
            "inequivalent arg 'x-dead-letter-exchange' for queue 'q.args' in vhost '/': \
             received 'other' but current is 'dlx'",
        ),
        (
            durable_queue(),
            without("x-dead-letter-routing-key"),
            "inequivalent arg 'x-dead-letter-routing-key' for queue 'q.args' in vhost '/': \
             received none but current is the value 'dead' of type 'longstr'",
        ),
        (
            QueueDeclareOptions::default(),
            args(),
            "inequivalent arg 'durable' for queue 'q.args' in vhost '/': received 'false' but \
             current is 'true'",
        ),
    ];
    for (options, args, expected) in mismatches {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(try_declare_queue(&ch, "q.args", options, args).await);
        assert_eq!(code, Some(406), "{expected}");
        assert_eq!(text, format!("PRECONDITION_FAILED - {expected}"));
    }
}

#[tokio::test]
async fn deleted_exchanges_stay_deleted_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let durable = exchange_flags(true, false, false);
    for name in ["d.kept", "d.deleted"] {
        try_declare_exchange(
            &ch,
            name,
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    try_declare_queue(&ch, "d.q", durable_queue(), FieldTable::default())
        .await
        .unwrap();
    bind_with(&ch, "d.q", "d.deleted", "", FieldTable::default()).await;
    within(ch.exchange_delete("d.deleted".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    passive_exchange(&ch, "d.kept").await.unwrap();
    let (code, text) = refusal(passive_exchange(&ch, "d.deleted").await);
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no exchange 'd.deleted' in vhost '/'");
    let ch = conn.create_channel().await.unwrap();
    passive_queue(&ch, "d.q").await.unwrap();
}

#[tokio::test]
async fn exchange_to_exchange_bindings_between_durable_exchanges_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::start(dir.path()).await;
    let (conn, ch) = broker.channel().await;
    let durable = exchange_flags(true, false, false);
    for (name, kind) in [
        ("e.front", ExchangeKind::Topic),
        ("e.back", ExchangeKind::Fanout),
    ] {
        try_declare_exchange(&ch, name, kind, durable, FieldTable::default())
            .await
            .unwrap();
    }
    try_declare_exchange(
        &ch,
        "e.transient",
        ExchangeKind::Fanout,
        exchange_flags(false, false, false),
        FieldTable::default(),
    )
    .await
    .unwrap();
    try_declare_queue(&ch, "e.q", durable_queue(), FieldTable::default())
        .await
        .unwrap();
    bind_exchange(&ch, "e.back", "e.front", "keep.#").await;
    bind_exchange(&ch, "e.back", "amq.direct", "from-amq").await;
    // Bindings with a non-durable end do not outlive the broker.
    bind_exchange(&ch, "e.transient", "e.front", "#").await;
    bind_exchange(&ch, "e.back", "e.transient", "").await;
    bind(&ch, "e.q", "e.back", "").await;
    drop(conn);
    broker.kill().await;

    let broker = ChildBroker::start(dir.path()).await;
    let conn = broker.connect().await;
    let ch = confirming(&conn).await;
    let none = FieldTable::default;
    publish_persistent(&ch, "e.front", "keep.this", "kept", none()).await;
    publish_persistent(&ch, "e.front", "drop.this", "dropped", none()).await;
    publish_persistent(&ch, "amq.direct", "from-amq", "amq", none()).await;
    assert_eq!(take_all(&ch, "e.q").await, ["kept", "amq"]);
    assert!(!exchange_exists(&conn, "e.transient").await);
    drop(conn);
    broker.stop().await;
}
