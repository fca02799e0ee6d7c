//! Exchanges end to end: declare (types, flags, passive, arguments) and the equivalence check on
//! redeclare, the predeclared and reserved exchanges, delete (if-unused, idempotent), internal
//! and auto-delete exchanges, publishing to missing or internal exchanges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use amq_protocol::protocol::{connection, exchange, AMQPClass};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

const KINDS: [ExchangeKind; 4] = [
    ExchangeKind::Direct,
    ExchangeKind::Fanout,
    ExchangeKind::Topic,
    ExchangeKind::Headers,
];

fn kind_name(kind: &ExchangeKind) -> &'static str {
    match kind {
        ExchangeKind::Direct => "direct",
        ExchangeKind::Fanout => "fanout",
        ExchangeKind::Topic => "topic",
        ExchangeKind::Headers => "headers",
        ExchangeKind::Custom(_) => "custom",
    }
}

async fn declare(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> lapin::Result<()> {
    within(ch.exchange_declare(name.into(), kind, options, FieldTable::default())).await
}

/// Publishes in confirm mode and returns what the confirm resolved to: the channel-closing
/// error when the broker refused the publish.
async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str) -> lapin::Result<()> {
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    let confirm = within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"payload",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    within(confirm).await.map(|_| ())
}

#[tokio::test]
async fn every_exchange_type_declares_with_every_flag_combination_and_redeclares_equivalently() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert("x-custom".into(), AMQPValue::LongString("kept".into()));
    for kind in KINDS {
        for bits in 0..8u8 {
            let (durable, auto_delete, internal) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let name = format!("x.{}.{bits}", kind_name(&kind));
            let opts = exchange_flags(durable, auto_delete, internal);
            within(ch.exchange_declare(name.as_str().into(), kind.clone(), opts, args.clone()))
                .await
                .unwrap();
            // The same declaration again is a no-op, with or without the arguments.
            within(ch.exchange_declare(name.as_str().into(), kind.clone(), opts, args.clone()))
                .await
                .unwrap();
            declare(&ch, &name, kind.clone(), opts).await.unwrap();
            declare(&ch, &name, kind.clone(), passive_exchange_options())
                .await
                .unwrap();
        }
    }
    // An auto-delete exchange that never had a binding is not deleted.
    assert!(exchange_exists(&conn, "x.direct.2").await);
}

#[tokio::test]
async fn redeclare_with_a_different_type_closes_channel_with_406_inequivalent_arg_type() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "typed",
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
    )
    .await
    .unwrap();
    let (code, text) = refusal(
        declare(
            &ch,
            "typed",
            ExchangeKind::Fanout,
            exchange_flags(false, false, false),
        )
        .await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'typed' in vhost '/': \
         received 'fanout' but current is 'direct'"
    );
    // A channel error: the connection and the exchange stay.
    assert!(conn.status().connected());
    assert!(exchange_exists(&conn, "typed").await);
}

#[tokio::test]
async fn redeclare_with_a_different_flag_closes_channel_with_406_naming_the_flag() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "flagged",
        ExchangeKind::Topic,
        exchange_flags(true, false, false),
    )
    .await
    .unwrap();
    let cases = [
        (
            exchange_flags(false, false, false),
            "durable",
            "false",
            "true",
        ),
        (
            exchange_flags(true, true, false),
            "auto_delete",
            "true",
            "false",
        ),
        (
            exchange_flags(true, false, true),
            "internal",
            "true",
            "false",
        ),
    ];
    for (opts, arg, received, current) in cases {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(declare(&ch, "flagged", ExchangeKind::Topic, opts).await);
        assert_eq!(code, Some(406), "{arg}");
        assert_eq!(
            text,
            format!(
                "PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange 'flagged' in vhost \
                 '/': received '{received}' but current is '{current}'"
            )
        );
    }
}

#[tokio::test]
async fn redeclare_with_different_arguments_succeeds() {
    // rabbitmq-compat: only `alternate-exchange` takes part in exchange equivalence.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert("x-one".into(), AMQPValue::LongLongInt(1));
    within(ch.exchange_declare(
        "args".into(),
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
        args,
    ))
    .await
    .unwrap();
    let mut other = FieldTable::default();
    other.insert("x-two".into(), AMQPValue::LongLongInt(2));
    within(ch.exchange_declare(
        "args".into(),
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
        other,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn passive_declare_ignores_type_and_flags() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "headers.x",
        ExchangeKind::Headers,
        exchange_flags(true, false, true),
    )
    .await
    .unwrap();
    let opts = ExchangeDeclareOptions {
        passive: true,
        durable: false,
        auto_delete: true,
        internal: false,
        nowait: false,
    };
    declare(&ch, "headers.x", ExchangeKind::Fanout, opts)
        .await
        .unwrap();
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        declare(
            &ch,
            "missing",
            ExchangeKind::Direct,
            passive_exchange_options(),
        )
        .await,
    );
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no exchange 'missing' in vhost '/'");
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
    // The passive declare did not create it.
    assert!(!exchange_exists(&conn, "missing").await);
}

#[tokio::test]
async fn unknown_exchange_type_closes_connection_with_503() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        declare(
            &ch,
            "odd",
            ExchangeKind::Custom("x-no-such-type".into()),
            exchange_flags(false, false, false),
        )
        .await,
    );
    assert_eq!(code, Some(503));
    assert_eq!(
        text,
        "COMMAND_INVALID - unknown exchange type 'x-no-such-type'"
    );
    // The whole connection is closed, not just the channel.
    assert!(within(conn.create_channel()).await.is_err());
    // Nothing was created, and other connections are unaffected.
    let other = broker.connect().await;
    assert!(!exchange_exists(&other, "odd").await);
}

#[tokio::test]
async fn unknown_exchange_type_is_a_connection_close_naming_exchange_declare() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: "odd".into(),
            kind: "x-no-such-type".into(),
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    let (code, text, class_id, method_id) = raw.expect_connection_close().await;
    assert_eq!(code, 503);
    assert_eq!(
        text,
        "COMMAND_INVALID - unknown exchange type 'x-no-such-type'"
    );
    assert_eq!((class_id, method_id), (40, 10));
    raw.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
    )
    .await;
    assert!(
        raw.next_frame().await.is_none(),
        "socket closed after close-ok"
    );
}

#[tokio::test]
async fn predeclared_amq_exchanges_exist_with_their_types() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let predeclared = [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ];
    for (name, kind) in predeclared {
        declare(&ch, name, kind.clone(), passive_exchange_options())
            .await
            .unwrap();
        // rabbitmq-compat: an equivalent redeclare of an existing amq.* exchange is fine; the
        // reserved prefix only refuses creating one. The predeclared ones are durable.
        declare(&ch, name, kind, exchange_flags(true, false, false))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn predeclared_amq_direct_routes_by_binding_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "via-amq-direct").await;
    bind(&ch, "via-amq-direct", "amq.direct", "k").await;
    publish_confirmed(&ch, "amq.direct", "k").await.unwrap();
    assert_eq!(
        get_body(&ch, "via-amq-direct").await.as_deref(),
        Some(&b"payload"[..])
    );
}

#[tokio::test]
async fn redeclaring_an_amq_exchange_with_other_attributes_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        declare(
            &ch,
            "amq.direct",
            ExchangeKind::Direct,
            exchange_flags(false, false, false),
        )
        .await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost \
         '/': received 'false' but current is 'true'"
    );
}

#[tokio::test]
async fn declaring_a_new_amq_prefixed_exchange_closes_channel_with_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        declare(
            &ch,
            "amq.custom",
            ExchangeKind::Direct,
            exchange_flags(true, false, false),
        )
        .await,
    );
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'"
    );
    assert!(conn.status().connected());
    assert!(!exchange_exists(&conn, "amq.custom").await);
}

#[tokio::test]
async fn declaring_the_default_exchange_closes_channel_with_403() {
    // rabbitmq-compat: RabbitMQ refuses the default exchange even for a passive declare.
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for opts in [
        exchange_flags(true, false, false),
        passive_exchange_options(),
    ] {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(declare(&ch, "", ExchangeKind::Direct, opts).await);
        assert_eq!(code, Some(403), "{opts:?}");
        assert_eq!(
            text,
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        );
    }
}

#[tokio::test]
async fn deleting_an_amq_exchange_closes_channel_with_403_and_keeps_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        let ch = conn.create_channel().await.unwrap();
        let (code, text) = refusal(
            within(ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())).await,
        );
        assert_eq!(code, Some(403), "{name}");
        assert_eq!(
            text,
            format!(
                "ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '/' not allowed"
            )
        );
        assert!(exchange_exists(&conn, name).await, "{name} survived");
    }
}

#[tokio::test]
async fn deleting_the_default_exchange_closes_channel_with_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let (code, text) =
        refusal(within(ch.exchange_delete("".into(), ExchangeDeleteOptions::default())).await);
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
}

#[tokio::test]
async fn delete_if_unused_of_an_exchange_with_bindings_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "busy",
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
    )
    .await
    .unwrap();
    declare_queue(&ch, "busy-q").await;
    bind(&ch, "busy-q", "busy", "k").await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        nowait: false,
    };
    let (code, text) = refusal(within(ch.exchange_delete("busy".into(), if_unused)).await);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - exchange 'busy' in vhost '/' in use"
    );
    // The exchange and its binding are intact.
    let ch = conn.create_channel().await.unwrap();
    publish_confirmed(&ch, "busy", "k").await.unwrap();
    assert_eq!(
        get_body(&ch, "busy-q").await.as_deref(),
        Some(&b"payload"[..])
    );
}

#[tokio::test]
async fn delete_if_unused_of_an_exchange_without_bindings_deletes_it() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "idle",
        ExchangeKind::Fanout,
        exchange_flags(false, false, false),
    )
    .await
    .unwrap();
    declare_queue(&ch, "idle-q").await;
    bind(&ch, "idle-q", "idle", "").await;
    unbind(&ch, "idle-q", "idle", "").await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        nowait: false,
    };
    within(ch.exchange_delete("idle".into(), if_unused))
        .await
        .unwrap();
    assert!(!exchange_exists(&conn, "idle").await);
}

#[tokio::test]
async fn delete_removes_the_exchange_and_its_bindings() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "gone",
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
    )
    .await
    .unwrap();
    declare_queue(&ch, "gone-q").await;
    bind(&ch, "gone-q", "gone", "k").await;
    within(ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    assert!(!exchange_exists(&conn, "gone").await);
    // A new exchange of the same name starts without the old binding.
    declare(
        &ch,
        "gone",
        ExchangeKind::Direct,
        exchange_flags(false, false, false),
    )
    .await
    .unwrap();
    publish_confirmed(&ch, "gone", "k").await.unwrap();
    assert_eq!(get_body(&ch, "gone-q").await, None);
}

#[tokio::test]
async fn deleting_a_missing_exchange_succeeds() {
    // rabbitmq-compat: exchange.delete has been idempotent since RabbitMQ 3.0.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    within(ch.exchange_delete("never-declared".into(), ExchangeDeleteOptions::default()))
        .await
        .unwrap();
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        nowait: false,
    };
    within(ch.exchange_delete("never-declared".into(), if_unused))
        .await
        .unwrap();
    assert!(ch.status().connected());
}

#[tokio::test]
async fn publishing_to_an_internal_exchange_closes_channel_with_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "inside",
        ExchangeKind::Fanout,
        exchange_flags(false, false, true),
    )
    .await
    .unwrap();
    declare_queue(&ch, "inside-q").await;
    bind(&ch, "inside-q", "inside", "").await;
    let (code, text) = refusal(publish_confirmed(&ch, "inside", "").await);
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - cannot publish to internal exchange 'inside' in vhost '/'"
    );
    // Nothing reached the bound queue.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(get_body(&ch, "inside-q").await, None);
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // A queue of that name does not make the publish valid.
    declare_queue(&ch, "nowhere").await;
    let (code, text) = refusal(publish_confirmed(&ch, "nowhere", "nowhere").await);
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no exchange 'nowhere' in vhost '/'");
    assert!(conn.status().connected());
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(get_body(&ch, "nowhere").await, None);
}

#[tokio::test]
async fn auto_delete_exchange_is_deleted_when_its_last_binding_is_removed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "fleeting",
        ExchangeKind::Direct,
        exchange_flags(false, true, false),
    )
    .await
    .unwrap();
    declare_queue(&ch, "fleeting-a").await;
    declare_queue(&ch, "fleeting-b").await;
    bind(&ch, "fleeting-a", "fleeting", "k").await;
    bind(&ch, "fleeting-b", "fleeting", "k").await;
    unbind(&ch, "fleeting-a", "fleeting", "k").await;
    assert!(
        exchange_exists(&conn, "fleeting").await,
        "one binding is left"
    );
    unbind(&ch, "fleeting-b", "fleeting", "k").await;
    assert!(
        !exchange_exists(&conn, "fleeting").await,
        "the last binding went"
    );
}

#[tokio::test]
async fn auto_delete_exchange_is_deleted_when_its_last_bound_queue_is_deleted() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "fleeting",
        ExchangeKind::Fanout,
        exchange_flags(false, true, false),
    )
    .await
    .unwrap();
    declare_queue(&ch, "fleeting-q").await;
    bind(&ch, "fleeting-q", "fleeting", "").await;
    within(ch.queue_delete("fleeting-q".into(), QueueDeleteOptions::default()))
        .await
        .unwrap();
    assert!(!exchange_exists(&conn, "fleeting").await);
}
