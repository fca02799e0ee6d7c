//! Queues end to end: declare (named, server-named, passive, durable, exclusive, auto-delete,
//! arguments) with its counts and equivalence checks, bind/unbind, purge, delete with
//! if-unused/if-empty, exclusive queues locked to their connection, auto-delete on the last
//! consumer, consumer cancel notification, and the empty queue name shortcut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use amq_protocol::protocol::{basic, queue, AMQPClass};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use warren_broker::connection::frame::Frame;

const LOCKED: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in \
                      vhost '/'. It could be originally declared on another connection or the \
                      exclusive property value does not match that of the original declaration.";

fn opts(durable: bool, exclusive: bool, auto_delete: bool) -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable,
        exclusive,
        auto_delete,
        ..QueueDeclareOptions::default()
    }
}

fn max_length(value: AMQPValue) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), value);
    args
}

async fn cancel(ch: &Channel, tag: &str) {
    within(ch.basic_cancel(tag.into(), BasicCancelOptions::default()))
        .await
        .unwrap();
}

async fn delete(ch: &Channel, queue: &str, if_unused: bool, if_empty: bool) -> lapin::Result<u32> {
    within(ch.queue_delete(
        queue.into(),
        QueueDeleteOptions {
            if_unused,
            if_empty,
            nowait: false,
        },
    ))
    .await
}

// ---- declare ----

#[tokio::test]
async fn declare_of_a_named_queue_returns_its_name_and_zero_counts() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = declare_queue(&ch, "orders").await;
    assert_eq!(q.name().as_str(), "orders");
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
}

#[tokio::test]
async fn server_named_queues_get_unique_amq_gen_names_that_work() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let a = declare_queue(&ch, "").await;
    let b = declare_queue(&ch, "").await;
    let (a, b) = (a.name().as_str().to_string(), b.name().as_str().to_string());
    assert!(a.starts_with("amq.gen-"), "{a}");
    assert!(b.starts_with("amq.gen-"), "{b}");
    assert!(a.len() > "amq.gen-".len());
    assert_ne!(a, b);
    // The name is a real queue: passive declare (no 403 for the amq. prefix) and routing work.
    let q = try_declare_queue(&ch, &a, passive_queue_options(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!(q.name().as_str(), a);
    publish(&ch, "", &a, b"to the generated queue").await;
    assert_eq!(
        get_body(&ch, &a).await.as_deref(),
        Some(&b"to the generated queue"[..])
    );
}

#[tokio::test]
async fn declare_ok_counts_ready_messages_but_not_unacked_ones() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "counted").await;
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "", "counted", body).await;
    }
    let unacked = get(&ch, "counted", false).await.unwrap();
    assert_eq!(unacked.delivery.data, b"1");
    let q = try_declare_queue(
        &ch,
        "counted",
        passive_queue_options(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!((q.message_count(), q.consumer_count()), (2, 0));
    // A non-passive redeclare reports the same counts.
    let q = declare_queue(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (2, 0));
}

#[tokio::test]
async fn declare_ok_counts_consumers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "watched").await;
    let other = conn.create_channel().await.unwrap();
    let _a = consume(&ch, "watched", "a").await;
    let _b = consume(&other, "watched", "b").await;
    assert_eq!(queue_counts_if_exists(&conn, "watched").await, Some((0, 2)));
    cancel(&ch, "a").await;
    assert_eq!(queue_counts_if_exists(&conn, "watched").await, Some((0, 1)));
}

#[tokio::test]
async fn passive_declare_of_missing_queue_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        try_declare_queue(
            &ch,
            "absent",
            passive_queue_options(),
            FieldTable::default(),
        )
        .await,
    );
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no queue 'absent' in vhost '/'");
    assert!(conn.status().connected());
    assert_eq!(
        queue_counts_if_exists(&conn, "absent").await,
        None,
        "not created"
    );
}

#[tokio::test]
async fn passive_declare_ignores_flags_and_arguments() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "plain").await;
    let odd = QueueDeclareOptions {
        passive: true,
        durable: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    try_declare_queue(&ch, "plain", odd, max_length(AMQPValue::LongLongInt(1)))
        .await
        .unwrap();
}

#[tokio::test]
async fn redeclare_with_different_durable_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "kept",
        opts(false, false, false),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (code, text) = refusal(
        try_declare_queue(&ch, "kept", opts(true, false, false), FieldTable::default()).await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'kept' in vhost '/': \
         received 'true' but current is 'false'"
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn redeclare_with_different_auto_delete_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    try_declare_queue(&ch, "kept", opts(true, false, false), FieldTable::default())
        .await
        .unwrap();
    let (code, text) = refusal(
        try_declare_queue(&ch, "kept", opts(true, false, true), FieldTable::default()).await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'kept' in vhost '/': \
         received 'true' but current is 'false'"
    );
}

#[tokio::test]
async fn queue_arguments_are_kept_and_checked_on_redeclare() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    try_declare_queue(
        &ch,
        "bounded",
        QueueDeclareOptions::default(),
        max_length(AMQPValue::LongLongInt(10)),
    )
    .await
    .unwrap();
    // The same value is equivalent whatever integer width the client encodes it with
    // (rabbitmq-compat: RabbitMQ compares integer arguments by value).
    for same in [
        AMQPValue::LongLongInt(10),
        AMQPValue::LongInt(10),
        AMQPValue::ShortInt(10),
    ] {
        try_declare_queue(
            &ch,
            "bounded",
            QueueDeclareOptions::default(),
            max_length(same),
        )
        .await
        .unwrap();
    }
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(
        try_declare_queue(
            &ch,
            "bounded",
            QueueDeclareOptions::default(),
            max_length(AMQPValue::LongLongInt(20)),
        )
        .await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'bounded' in vhost '/': \
         received '20' but current is '10'"
    );
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(
        try_declare_queue(
            &ch,
            "bounded",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    );
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'bounded' in vhost '/': \
         received none but current is the value '10' of type 'long'"
    );
}

#[tokio::test]
async fn declaring_an_amq_prefixed_queue_closes_channel_with_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) = refusal(
        try_declare_queue(
            &ch,
            "amq.mine",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    );
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    );
    assert_eq!(queue_counts_if_exists(&conn, "amq.mine").await, None);
}

// ---- bind / unbind ----

#[tokio::test]
async fn binding_twice_is_one_binding() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "twice", ExchangeKind::Direct).await;
    declare_queue(&ch, "twice-q").await;
    try_bind(&ch, "twice-q", "twice", "k").await.unwrap();
    try_bind(&ch, "twice-q", "twice", "k").await.unwrap();
    publish(&ch, "twice", "k", b"once").await;
    assert_eq!(
        get_body(&ch, "twice-q").await.as_deref(),
        Some(&b"once"[..])
    );
    assert_eq!(get_body(&ch, "twice-q").await, None, "one copy only");
    // One unbind removes it: there was only one binding.
    try_unbind(&ch, "twice-q", "twice", "k").await.unwrap();
    publish(&ch, "twice", "k", b"after unbind").await;
    assert_eq!(get_body(&ch, "twice-q").await, None);
}

#[tokio::test]
async fn unbinding_a_missing_binding_succeeds() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "loose", ExchangeKind::Topic).await;
    declare_queue(&ch, "loose-q").await;
    try_unbind(&ch, "loose-q", "loose", "never.bound")
        .await
        .unwrap();
    try_bind(&ch, "loose-q", "loose", "a.*").await.unwrap();
    try_unbind(&ch, "loose-q", "loose", "a.*").await.unwrap();
    try_unbind(&ch, "loose-q", "loose", "a.*").await.unwrap();
    assert!(ch.status().connected());
}

#[tokio::test]
async fn bind_to_a_missing_queue_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "x", ExchangeKind::Direct).await;
    let (code, text) = refusal(try_bind(&ch, "no-such-queue", "x", "k").await);
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no queue 'no-such-queue' in vhost '/'");
}

#[tokio::test]
async fn bind_to_a_missing_exchange_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let (code, text) = refusal(try_bind(&ch, "q", "no-such-exchange", "k").await);
    assert_eq!(code, Some(404));
    assert_eq!(
        text,
        "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"
    );
}

#[tokio::test]
async fn bind_and_unbind_on_the_default_exchange_close_channel_with_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "q").await;
    let (code, text) = refusal(try_bind(&ch, "q", "", "q").await);
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(try_unbind(&ch, "q", "", "q").await);
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
}

// ---- purge ----

#[tokio::test]
async fn purge_returns_the_ready_count_and_leaves_unacked_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "purged").await;
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "", "purged", body).await;
    }
    let held = get(&ch, "purged", false).await.unwrap();
    assert_eq!(held.delivery.data, b"1");
    let purged = within(ch.queue_purge("purged".into(), QueuePurgeOptions::default()))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert!(
        get(&ch, "purged", true).await.is_none(),
        "empty after purge"
    );
    // The unacked message was not purged: requeued, it is there again.
    within(ch.basic_reject(
        held.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    ))
    .await
    .unwrap();
    let back = get(&ch, "purged", true).await.unwrap();
    assert_eq!(back.delivery.data, b"1");
    assert!(back.delivery.redelivered);
    assert_eq!(
        within(ch.queue_purge("purged".into(), QueuePurgeOptions::default()))
            .await
            .unwrap(),
        0
    );
}

// ---- delete ----

#[tokio::test]
async fn delete_returns_the_message_count_and_removes_queue_and_bindings() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_exchange(&ch, "to-deleted", ExchangeKind::Fanout).await;
    declare_queue(&ch, "doomed").await;
    try_bind(&ch, "doomed", "to-deleted", "").await.unwrap();
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "to-deleted", "", body).await;
    }
    assert_eq!(delete(&ch, "doomed", false, false).await.unwrap(), 3);
    assert_eq!(queue_counts_if_exists(&conn, "doomed").await, None);
    // A new queue of the same name is empty and has none of the old bindings.
    declare_queue(&ch, "doomed").await;
    publish(&ch, "to-deleted", "", b"4").await;
    assert_eq!(queue_counts_if_exists(&conn, "doomed").await, Some((0, 0)));
}

#[tokio::test]
async fn delete_if_unused_of_a_queue_with_a_consumer_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let consumer_ch = conn.create_channel().await.unwrap();
    declare_queue(&consumer_ch, "in-use").await;
    let _consumer = consume(&consumer_ch, "in-use", "c").await;
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(delete(&ch, "in-use", true, false).await);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - queue 'in-use' in vhost '/' in use"
    );
    assert_eq!(
        queue_counts_if_exists(&conn, "in-use").await,
        Some((0, 1)),
        "still there"
    );
}

#[tokio::test]
async fn delete_if_empty_of_a_queue_with_messages_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "full").await;
    publish(&ch, "", "full", b"m").await;
    let (code, text) = refusal(delete(&ch, "full", false, true).await);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - queue 'full' in vhost '/' not empty"
    );
    assert_eq!(
        queue_counts_if_exists(&conn, "full").await,
        Some((1, 0)),
        "still there"
    );
}

#[tokio::test]
async fn delete_if_unused_and_if_empty_of_an_idle_empty_queue_succeeds() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "idle").await;
    let _consumer = consume(&ch, "idle", "c").await;
    cancel(&ch, "c").await;
    assert_eq!(delete(&ch, "idle", true, true).await.unwrap(), 0);
    assert_eq!(queue_counts_if_exists(&conn, "idle").await, None);
}

#[tokio::test]
async fn deleting_a_missing_queue_succeeds_with_zero_messages() {
    // rabbitmq-compat: queue.delete has been idempotent since RabbitMQ 3.0.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(delete(&ch, "never-there", false, false).await.unwrap(), 0);
    assert_eq!(delete(&ch, "never-there", true, true).await.unwrap(), 0);
    declare_queue(&ch, "once").await;
    assert_eq!(delete(&ch, "once", false, false).await.unwrap(), 0);
    assert_eq!(delete(&ch, "once", false, false).await.unwrap(), 0);
}

// ---- exclusive ----

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection_with_405() {
    let broker = TestBroker::start().await;
    let (_owner, owner_ch) = broker.channel().await;
    try_declare_queue(
        &owner_ch,
        "mine",
        opts(false, true, false),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&owner_ch, "", "mine", b"private").await;
    declare_exchange(&owner_ch, "shared-x", ExchangeKind::Direct).await;

    let other = broker.connect().await;
    let attempts: Vec<(&str, lapin::Result<()>)> = vec![
        ("declare", {
            let ch = other.create_channel().await.unwrap();
            try_declare_queue(
                &ch,
                "mine",
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(drop)
        }),
        ("declare exclusive", {
            let ch = other.create_channel().await.unwrap();
            try_declare_queue(&ch, "mine", opts(false, true, false), FieldTable::default())
                .await
                .map(drop)
        }),
        ("passive declare", {
            let ch = other.create_channel().await.unwrap();
            try_declare_queue(&ch, "mine", passive_queue_options(), FieldTable::default())
                .await
                .map(drop)
        }),
        ("consume", {
            let ch = other.create_channel().await.unwrap();
            within(ch.basic_consume(
                "mine".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .await
            .map(drop)
        }),
        ("get", {
            let ch = other.create_channel().await.unwrap();
            within(ch.basic_get("mine".into(), BasicGetOptions::default()))
                .await
                .map(drop)
        }),
        ("purge", {
            let ch = other.create_channel().await.unwrap();
            within(ch.queue_purge("mine".into(), QueuePurgeOptions::default()))
                .await
                .map(drop)
        }),
        ("delete", {
            let ch = other.create_channel().await.unwrap();
            delete(&ch, "mine", false, false).await.map(drop)
        }),
        ("bind", {
            let ch = other.create_channel().await.unwrap();
            try_bind(&ch, "mine", "shared-x", "k").await
        }),
        ("unbind", {
            let ch = other.create_channel().await.unwrap();
            try_unbind(&ch, "mine", "shared-x", "k").await
        }),
    ];
    for (what, result) in attempts {
        let err = result.expect_err(what);
        assert_eq!(reply_code(&err), Some(405), "{what}");
        assert_eq!(reply_text(&err), LOCKED, "{what}");
    }
    // The owner still has its queue and its message.
    assert_eq!(
        get_body(&owner_ch, "mine").await.as_deref(),
        Some(&b"private"[..])
    );
}

#[tokio::test]
async fn exclusive_queue_outlives_its_channel_and_is_deleted_when_its_connection_closes() {
    let broker = TestBroker::start().await;
    let owner = broker.connect().await;
    let ch = owner.create_channel().await.unwrap();
    try_declare_queue(&ch, "mine", opts(false, true, false), FieldTable::default())
        .await
        .unwrap();
    publish(&ch, "", "mine", b"m").await;
    within(ch.close(200, "bye".into())).await.unwrap();
    assert_eq!(
        queue_counts_if_exists(&owner, "mine").await,
        Some((1, 0)),
        "bound to the connection"
    );

    within(owner.close(200, "bye".into())).await.unwrap();
    let other = broker.connect().await;
    assert_eq!(queue_counts_if_exists(&other, "mine").await, None);
    // The name is free again, for anyone.
    let ch = other.create_channel().await.unwrap();
    declare_queue(&ch, "mine").await;
}

// ---- auto-delete ----

#[tokio::test]
async fn auto_delete_queue_is_kept_until_it_has_had_a_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "ephemeral",
        opts(false, false, true),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "", "ephemeral", b"waiting").await;
    assert_eq!(
        queue_counts_if_exists(&conn, "ephemeral").await,
        Some((1, 0))
    );
    let _consumer = consume(&ch, "ephemeral", "c").await;
    cancel(&ch, "c").await;
    assert_eq!(queue_counts_if_exists(&conn, "ephemeral").await, None);
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_last_consumer_is_cancelled() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "ephemeral",
        opts(false, false, true),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let _a = consume(&ch, "ephemeral", "a").await;
    let _b = consume(&ch, "ephemeral", "b").await;
    cancel(&ch, "a").await;
    assert_eq!(
        queue_counts_if_exists(&conn, "ephemeral").await,
        Some((0, 1)),
        "one consumer left"
    );
    cancel(&ch, "b").await;
    assert_eq!(queue_counts_if_exists(&conn, "ephemeral").await, None);
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_last_consumers_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    try_declare_queue(
        &ch,
        "ephemeral",
        opts(false, false, true),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let consumer_ch = conn.create_channel().await.unwrap();
    let _consumer = consume(&consumer_ch, "ephemeral", "c").await;
    within(consumer_ch.close(200, "bye".into())).await.unwrap();
    assert_eq!(queue_counts_if_exists(&conn, "ephemeral").await, None);
}

// ---- consumer cancel notification ----

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers_and_keeps_their_channel_open() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "short-lived").await;
    let mut consumer = consume(&ch, "short-lived", "watcher").await;
    let (_other, deleter) = broker.channel().await;
    delete(&deleter, "short-lived", false, false).await.unwrap();
    // lapin advertises consumer_cancel_notify and ends the consumer's stream on basic.cancel.
    assert!(within(consumer.next()).await.is_none());
    // It was a cancel, not a channel close: the channel still works.
    assert!(ch.status().connected());
    declare_queue(&ch, "after").await;
}

#[tokio::test]
async fn deleting_a_queue_sends_basic_cancel_with_the_consumer_tag() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "watched".into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))
    ));
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "watched".into(),
            consumer_tag: "raw-tag".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))
    ));

    let (_conn, ch) = broker.channel().await;
    delete(&ch, "watched", false, false).await.unwrap();
    loop {
        match raw.next_frame().await {
            Some(Frame::Method(channel, m)) => match *m {
                AMQPClass::Basic(basic::AMQPMethod::Cancel(c)) => {
                    assert_eq!(channel, 1);
                    assert_eq!(c.consumer_tag.as_str(), "raw-tag");
                    break;
                }
                other => panic!("expected basic.cancel, got {other:?}"),
            },
            Some(Frame::Heartbeat(_)) => continue,
            other => panic!("expected basic.cancel, got {other:?}"),
        }
    }
}

// ---- the empty queue name ----

#[tokio::test]
async fn empty_queue_name_means_the_channels_last_declared_queue() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_exchange(&ch, "shortcut", ExchangeKind::Direct).await;
    let name = declare_queue(&ch, "").await.name().as_str().to_string();
    try_bind(&ch, "", "shortcut", "k").await.unwrap();
    publish(&ch, "shortcut", "k", b"1").await;
    assert_eq!(get_body(&ch, "").await.as_deref(), Some(&b"1"[..]));
    for body in [b"2", b"3"] {
        publish(&ch, "shortcut", "k", body).await;
    }
    let purged = within(ch.queue_purge("".into(), QueuePurgeOptions::default()))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    publish(&ch, "shortcut", "k", b"4").await;
    let mut consumer = consume(&ch, "", "c").await;
    let delivery = within(consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"4");
    assert_eq!(delivery.routing_key.as_str(), "k");
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    cancel(&ch, "c").await;
    try_unbind(&ch, "", "shortcut", "k").await.unwrap();
    publish(&ch, "shortcut", "k", b"unrouted").await;
    publish(&ch, "", &name, b"5").await;
    assert_eq!(delete(&ch, "", false, false).await.unwrap(), 1);
    assert_eq!(queue_counts_if_exists(&conn, &name).await, None);
}

#[tokio::test]
async fn bind_without_queue_and_routing_key_uses_the_last_queue_name_as_key() {
    // rabbitmq-compat: `expand_routing_key_shortcut` in rabbit_channel.erl.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "by-name", ExchangeKind::Direct).await;
    declare_queue(&ch, "named").await;
    try_bind(&ch, "", "by-name", "").await.unwrap();
    publish(&ch, "by-name", "", b"empty key").await;
    publish(&ch, "by-name", "named", b"queue name as key").await;
    assert_eq!(
        get_body(&ch, "named").await.as_deref(),
        Some(&b"queue name as key"[..])
    );
    assert_eq!(get_body(&ch, "named").await, None);
}

#[tokio::test]
async fn empty_queue_name_without_a_declared_queue_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let (code, text) =
        refusal(within(ch.queue_purge("".into(), QueuePurgeOptions::default())).await);
    assert_eq!(code, Some(404));
    assert_eq!(text, "NOT_FOUND - no previously declared queue");
}
