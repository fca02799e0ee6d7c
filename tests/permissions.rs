//! Permissions (configure / write / read patterns per user and vhost) and topic permissions,
//! checked on each AMQP operation as RabbitMQ does: a refusal closes the channel with 403
//! ACCESS_REFUSED in RabbitMQ's words, the connection stays open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use amq_protocol::protocol::{basic as amqp_basic, queue as amqp_queue, AMQPClass};
use common::*;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use warren_broker::Config;
use warren_definitions::{hash_password_with_salt, HashingAlgorithm};

/// Every user's password.
const PASSWORD: &str = "pw";

/// Users of vhost "/":
/// - `admin`: everything, sets up the topology the others use;
/// - `alice`: only resources named `alice-…`;
/// - `tom`: everything, but topic permissions on exchange `events` (publish `tom.…`, bind
///   `tom.…` or `shared.…`);
/// - `nobody`: empty patterns, i.e. nothing at all;
/// - `guest` (password guest): only `guest-…`, for the raw-frame test of class/method ids.
fn definitions_json() -> String {
    let hash = |p: &str| hash_password_with_salt(HashingAlgorithm::Sha256, [7, 7, 7, 7], p);
    let user = |name: &str, password: &str| {
        serde_json::json!({"name": name, "password_hash": hash(password),
                           "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
    };
    let perm = |name: &str, configure: &str, write: &str, read: &str| {
        serde_json::json!({"user": name, "vhost": "/", "configure": configure,
                           "write": write, "read": read})
    };
    serde_json::json!({
        "users": [user("admin", PASSWORD), user("alice", PASSWORD), user("tom", PASSWORD),
                  user("nobody", PASSWORD), user("guest", "guest")],
        "vhosts": [{"name": "/"}],
        "permissions": [
            perm("admin", ".*", ".*", ".*"),
            perm("alice", "^alice-", "^alice-", "^alice-"),
            perm("tom", ".*", ".*", ".*"),
            perm("nobody", "", "", ""),
            perm("guest", "^guest-", "^guest-", "^guest-")
        ],
        "topic_permissions": [
            {"user": "tom", "vhost": "/", "exchange": "events",
             "write": "^tom\\.", "read": "^tom\\.|^shared\\."}
        ]
    })
    .to_string()
}

/// A broker booted with the users above, and `admin`'s topology: exchanges `bob-x`
/// (direct), `events` and `other-topic` (topic), queues `bob-q` (one message) and `tom-q`.
async fn broker() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, definitions_json()).unwrap();
    let broker = TestBroker::start_with(Config {
        definitions: Some(file),
        ..Config::default()
    })
    .await;
    let (_conn, ch) = channel(&broker, "admin").await;
    declare_exchange(&ch, "bob-x", ExchangeKind::Direct).await;
    declare_exchange(&ch, "events", ExchangeKind::Topic).await;
    declare_exchange(&ch, "other-topic", ExchangeKind::Topic).await;
    declare_queue(&ch, "bob-q").await;
    declare_queue(&ch, "tom-q").await;
    publish_to_queue(&ch, "bob-q", "for bob").await;
    (broker, dir)
}

async fn connect(broker: &TestBroker, user: &str) -> Connection {
    broker
        .connect_url(&format!("amqp://{user}:{PASSWORD}@{}/%2f", broker.addr))
        .await
        .unwrap()
}

async fn channel(broker: &TestBroker, user: &str) -> (Connection, Channel) {
    let conn = connect(broker, user).await;
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Asserts a 403 channel close with exactly `text`, and that the connection survived it.
fn assert_refused(conn: &Connection, result: lapin::Result<impl std::fmt::Debug>, text: &str) {
    let (code, got) = refusal(result);
    assert_eq!(code, Some(403), "{got}");
    assert_eq!(got, text);
    assert!(conn.status().connected(), "a 403 closes the channel only");
}

fn refused_text(perm: &str, kind: &str, name: &str, user: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '/' refused for user '{user}'"
    )
}

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

async fn try_consume(ch: &Channel, queue: &str) -> lapin::Result<lapin::Consumer> {
    within(ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
}

async fn try_get(
    ch: &Channel,
    queue: &str,
) -> lapin::Result<Option<lapin::message::BasicGetMessage>> {
    within(ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })).await
}

async fn try_purge(ch: &Channel, queue: &str) -> lapin::Result<u32> {
    within(ch.queue_purge(queue.into(), QueuePurgeOptions::default())).await
}

async fn try_delete_queue(ch: &Channel, queue: &str) -> lapin::Result<u32> {
    within(ch.queue_delete(queue.into(), QueueDeleteOptions::default())).await
}

async fn try_delete_exchange(ch: &Channel, exchange: &str) -> lapin::Result<()> {
    within(ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())).await
}

async fn try_declare(ch: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    try_declare_queue(
        ch,
        queue,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
}

async fn try_declare_x(ch: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    try_declare_exchange(ch, name, ExchangeKind::Direct, Default::default(), args).await
}

#[tokio::test]
async fn exchange_declare_and_delete_need_configure_on_the_exchange() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    try_declare_x(&ch, "alice-x", FieldTable::default())
        .await
        .unwrap();
    try_delete_exchange(&ch, "alice-x").await.unwrap();
    let result = try_declare_x(&ch, "bob-new", FieldTable::default()).await;
    let text = refused_text("configure", "exchange", "bob-new", "alice");
    assert_refused(&conn, result, &text);

    let ch = conn.create_channel().await.unwrap();
    let result = try_delete_exchange(&ch, "bob-x").await;
    let text = refused_text("configure", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
    let (_admin, admin) = channel(&broker, "admin").await;
    passive_exchange(&admin, "bob-x").await.unwrap();
}

#[tokio::test]
async fn an_alternate_exchange_needs_write_on_it() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    let args = |ae: &str| table(&[("alternate-exchange", text(ae))]);
    try_declare_x(&ch, "alice-x", args("alice-ae"))
        .await
        .unwrap();
    let result = try_declare_x(&ch, "alice-y", args("bob-x")).await;
    let text = refused_text("write", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
}

#[tokio::test]
async fn queue_declare_and_delete_need_configure_on_the_queue() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    try_declare(&ch, "alice-q").await.unwrap();
    try_delete_queue(&ch, "alice-q").await.unwrap();
    let result = try_declare(&ch, "bob-new").await;
    assert_refused(
        &conn,
        result,
        &refused_text("configure", "queue", "bob-new", "alice"),
    );

    let ch = conn.create_channel().await.unwrap();
    let result = try_delete_queue(&ch, "bob-q").await;
    assert_refused(
        &conn,
        result,
        &refused_text("configure", "queue", "bob-q", "alice"),
    );
    let (_admin, admin) = channel(&broker, "admin").await;
    assert_eq!(queue_counts(&admin, "bob-q").await, (1, 0));
}

#[tokio::test]
async fn a_server_named_queue_needs_configure_on_its_generated_name() {
    let (broker, _dir) = broker().await;
    let (_tom, ch) = channel(&broker, "tom").await;
    let q = try_declare(&ch, "").await.unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"));

    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    let (code, text) = refusal(try_declare(&ch, "").await);
    assert_eq!(code, Some(403));
    assert!(
        text.starts_with("ACCESS_REFUSED - configure access to queue 'amq.gen-")
            && text.ends_with("' in vhost '/' refused for user 'alice'"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dead_letter_exchange_needs_write_on_it() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    let args = |dlx: &str| table(&[("x-dead-letter-exchange", text(dlx))]);
    try_declare_queue(&ch, "alice-q", Default::default(), args("alice-dlx"))
        .await
        .unwrap();
    let result = try_declare_queue(&ch, "alice-r", Default::default(), args("")).await;
    let text = refused_text("write", "exchange", "amq.default", "alice");
    assert_refused(&conn, result, &text);
}

#[tokio::test]
async fn bind_and_unbind_need_write_on_the_queue_and_read_on_the_exchange() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "alice-q").await;
    declare_exchange(&ch, "alice-x", ExchangeKind::Direct).await;
    bind(&ch, "alice-q", "alice-x", "k").await;
    unbind(&ch, "alice-q", "alice-x", "k").await;

    let result = try_bind(&ch, "alice-q", "bob-x", "k").await;
    let text = refused_text("read", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    let result = try_bind(&ch, "bob-q", "alice-x", "k").await;
    assert_refused(
        &conn,
        result,
        &refused_text("write", "queue", "bob-q", "alice"),
    );
    let ch = conn.create_channel().await.unwrap();
    let result = try_unbind(&ch, "alice-q", "bob-x", "k").await;
    let text = refused_text("read", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
}

#[tokio::test]
async fn exchange_bind_needs_write_on_the_destination_and_read_on_the_source() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    declare_exchange(&ch, "alice-x", ExchangeKind::Direct).await;
    declare_exchange(&ch, "alice-y", ExchangeKind::Fanout).await;
    bind_exchange(&ch, "alice-y", "alice-x", "k").await;
    try_unbind_exchange(&ch, "alice-y", "alice-x", "k")
        .await
        .unwrap();

    let result = try_bind_exchange(&ch, "alice-y", "bob-x", "k", FieldTable::default()).await;
    let text = refused_text("read", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    let result = try_bind_exchange(&ch, "bob-x", "alice-x", "k", FieldTable::default()).await;
    let text = refused_text("write", "exchange", "bob-x", "alice");
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    let result = try_unbind_exchange(&ch, "bob-x", "alice-x", "k").await;
    assert_refused(&conn, result, &text);
}

#[tokio::test]
async fn publish_needs_write_on_the_exchange_and_the_default_exchange_is_amq_default() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "alice-q").await;
    declare_exchange(&ch, "alice-x", ExchangeKind::Direct).await;
    bind(&ch, "alice-q", "alice-x", "k").await;
    publish_confirmed(&ch, "alice-x", "k").await.unwrap();
    // Allowed once (now cached on the channel) does not let another exchange through.
    let result = publish_confirmed(&ch, "bob-x", "k").await;
    assert_refused(
        &conn,
        result,
        &refused_text("write", "exchange", "bob-x", "alice"),
    );
    let ch = conn.create_channel().await.unwrap();
    let result = publish_confirmed(&ch, "", "alice-q").await;
    let text = refused_text("write", "exchange", "amq.default", "alice");
    assert_refused(&conn, result, &text);
    // rabbitmq-compat: permission comes before existence: 403, not 404.
    let ch = conn.create_channel().await.unwrap();
    let result = publish_confirmed(&ch, "missing", "k").await;
    let text = refused_text("write", "exchange", "missing", "alice");
    assert_refused(&conn, result, &text);

    let ch = conn.create_channel().await.unwrap();
    assert_eq!(take_all(&ch, "alice-q").await, ["payload"]);
}

#[tokio::test]
async fn consume_get_and_purge_need_read_on_the_queue() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "alice").await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "alice-q").await;
    try_consume(&ch, "alice-q").await.unwrap();
    assert!(try_get(&ch, "alice-q").await.unwrap().is_none());
    assert_eq!(try_purge(&ch, "alice-q").await.unwrap(), 0);

    let result = try_consume(&ch, "bob-q").await;
    let text = refused_text("read", "queue", "bob-q", "alice");
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    let result = try_get(&ch, "bob-q").await;
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    let result = try_purge(&ch, "bob-q").await;
    assert_refused(&conn, result, &text);

    let (_admin, admin) = channel(&broker, "admin").await;
    assert_eq!(take_all(&admin, "bob-q").await, ["for bob"]);
}

#[tokio::test]
async fn topic_permissions_check_routing_keys_on_publish() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "tom").await;
    let ch = conn.create_channel().await.unwrap();
    bind(&ch, "tom-q", "events", "tom.#").await;
    publish_confirmed(&ch, "events", "tom.created")
        .await
        .unwrap();
    // No topic permission for this exchange: any routing key.
    publish(&ch, "other-topic", "bob.created", b"x").await;
    let result = publish_confirmed(&ch, "events", "bob.created").await;
    let text = "ACCESS_REFUSED - write access to topic 'bob.created' in exchange 'events' \
                in vhost '/' refused for user 'tom'";
    assert_refused(&conn, result, text);

    let ch = conn.create_channel().await.unwrap();
    assert_eq!(take_all(&ch, "tom-q").await, ["payload"]);
}

#[tokio::test]
async fn topic_permissions_check_binding_keys_on_bind() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "tom").await;
    let ch = conn.create_channel().await.unwrap();
    bind(&ch, "tom-q", "events", "tom.#").await;
    bind(&ch, "tom-q", "events", "shared.*").await;
    bind(&ch, "tom-q", "other-topic", "bob.#").await;
    let result = try_bind(&ch, "tom-q", "events", "bob.#").await;
    let text = "ACCESS_REFUSED - read access to topic 'bob.#' in exchange 'events' \
                in vhost '/' refused for user 'tom'";
    assert_refused(&conn, result, text);
}

#[tokio::test]
async fn a_user_with_empty_patterns_can_only_declare_passively() {
    let (broker, _dir) = broker().await;
    let conn = connect(&broker, "nobody").await;
    let ch = conn.create_channel().await.unwrap();
    passive_queue(&ch, "bob-q").await.unwrap();
    passive_exchange(&ch, "bob-x").await.unwrap();

    let user = "nobody";
    let configure_q = refused_text("configure", "queue", "bob-q", user);
    let read_q = refused_text("read", "queue", "bob-q", user);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_declare(&ch, "bob-q").await, &configure_q);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_delete_queue(&ch, "bob-q").await, &configure_q);
    let ch = conn.create_channel().await.unwrap();
    let configure_x = refused_text("configure", "exchange", "bob-x", user);
    let result = try_declare_x(&ch, "bob-x", FieldTable::default()).await;
    assert_refused(&conn, result, &configure_x);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_delete_exchange(&ch, "bob-x").await, &configure_x);
    let ch = conn.create_channel().await.unwrap();
    let result = try_bind(&ch, "bob-q", "bob-x", "k").await;
    assert_refused(
        &conn,
        result,
        &refused_text("write", "queue", "bob-q", user),
    );
    let ch = conn.create_channel().await.unwrap();
    let result = publish_confirmed(&ch, "bob-x", "k").await;
    let text = refused_text("write", "exchange", "bob-x", user);
    assert_refused(&conn, result, &text);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_consume(&ch, "bob-q").await, &read_q);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_get(&ch, "bob-q").await, &read_q);
    let ch = conn.create_channel().await.unwrap();
    assert_refused(&conn, try_purge(&ch, "bob-q").await, &read_q);

    // Still nothing changed.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        passive_queue(&ch, "bob-q").await.unwrap().message_count(),
        1
    );
}

#[tokio::test]
async fn refusals_carry_the_class_and_method_of_the_refused_method() {
    let (broker, _dir) = broker().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    c.send_method(
        1,
        AMQPClass::Queue(amqp_queue::AMQPMethod::Declare(amqp_queue::Declare {
            queue: "bob-q".into(),
            ..Default::default()
        })),
    )
    .await;
    let (ch, code, text, class_id, method_id) = c.expect_channel_close().await;
    assert_eq!((ch, code), (1, 403));
    assert_eq!(text, refused_text("configure", "queue", "bob-q", "guest"));
    assert_eq!((class_id, method_id), (50, 10));

    c.open_channel(2).await;
    c.send_method(
        2,
        AMQPClass::Basic(amqp_basic::AMQPMethod::Get(amqp_basic::Get {
            queue: "bob-q".into(),
            no_ack: true,
        })),
    )
    .await;
    let (ch, code, _, class_id, method_id) = c.expect_channel_close().await;
    assert_eq!((ch, code, class_id, method_id), (2, 403, 60, 70));

    c.open_channel(3).await;
    c.write(&publish_frames(3, "", "guest-q", false, b"body"))
        .await;
    let (ch, code, text, class_id, method_id) = c.expect_channel_close().await;
    assert_eq!((ch, code), (3, 403));
    assert_eq!(
        text,
        refused_text("write", "exchange", "amq.default", "guest")
    );
    assert_eq!((class_id, method_id), (60, 40));
}
