//! `warren --definitions FILE`: a RabbitMQ definitions file loaded at boot gives clients its
//! users, vhosts, permissions and topology; an invalid file stops startup with exit status 2
//! and every problem listed; loading it again changes nothing; what it defined survives a
//! restart without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;

use common::*;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use process::ChildBroker;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use warren_broker::Config;
use warren_definitions::{hash_password_with_salt, Definitions, HashingAlgorithm};

/// A definitions file as `rabbitmqctl export_definitions` writes it: vhosts `sales` and
/// `ops`, alice (sales only) and bob (both), durable exchanges of every type, queues with
/// arguments, bindings with arguments, an exchange-to-exchange binding, a policy and a topic
/// permission.
fn definitions_json() -> String {
    let alice = hash_password_with_salt(HashingAlgorithm::Sha256, [0x90, 0x8D, 0xC6, 0x0A], "a1");
    let bob = hash_password_with_salt(HashingAlgorithm::Sha256, [0x11, 0x22, 0x33, 0x44], "b2");
    let exchange = |vhost: &str, name: &str, kind: &str| {
        serde_json::json!({"name": name, "vhost": vhost, "type": kind, "durable": true,
                           "auto_delete": false, "internal": false, "arguments": {}})
    };
    let binding = |vhost: &str, source: &str, queue: &str, key: &str, args: serde_json::Value| {
        serde_json::json!({"source": source, "vhost": vhost, "destination": queue,
                           "destination_type": "queue", "routing_key": key, "arguments": args})
    };
    serde_json::json!({
        "rabbit_version": "3.13.7",
        "rabbitmq_version": "3.13.7",
        "product_name": "RabbitMQ",
        "product_version": "3.13.7",
        "users": [
            {"name": "alice", "password_hash": alice,
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"],
             "limits": {}},
            {"name": "bob", "password_hash": bob,
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator",
             "limits": {}}
        ],
        "vhosts": [
            {"name": "sales", "description": "orders", "tags": [], "metadata": {}},
            {"name": "ops", "limits": [], "metadata": {"description": "", "tags": []}}
        ],
        "permissions": [
            {"user": "alice", "vhost": "sales", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "bob", "vhost": "sales", "configure": "", "write": ".*", "read": ".*"},
            {"user": "bob", "vhost": "ops", "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "topic_permissions": [
            {"user": "bob", "vhost": "ops", "exchange": "events", "write": "^ops\\.", "read": ".*"}
        ],
        "parameters": [],
        "global_parameters": [{"name": "cluster_name", "value": "rabbit@warren"}],
        "policies": [
            {"vhost": "sales", "name": "ttl", "pattern": "^orders$", "apply-to": "queues",
             "definition": {"message-ttl": 60000}, "priority": 0}
        ],
        "queues": [
            {"name": "orders", "vhost": "sales", "durable": true, "auto_delete": false,
             "arguments": {"x-max-length": 1000, "x-message-ttl": 3_600_000}},
            {"name": "audit", "vhost": "sales", "durable": true, "auto_delete": false,
             "arguments": {"x-queue-type": "classic"}},
            {"name": "shared", "vhost": "sales", "durable": true, "auto_delete": false,
             "arguments": {}},
            {"name": "shared", "vhost": "ops", "durable": true, "auto_delete": false,
             "arguments": {}}
        ],
        "exchanges": [
            exchange("sales", "orders.direct", "direct"),
            exchange("sales", "orders.fanout", "fanout"),
            exchange("sales", "orders.topic", "topic"),
            exchange("sales", "orders.headers", "headers"),
            exchange("ops", "events", "topic")
        ],
        "bindings": [
            binding("sales", "orders.direct", "orders", "new", serde_json::json!({})),
            binding("sales", "orders.fanout", "audit", "", serde_json::json!({})),
            binding("sales", "orders.topic", "audit", "order.#", serde_json::json!({})),
            binding("sales", "orders.headers", "orders", "",
                    serde_json::json!({"x-match": "all", "region": "eu", "priority": 1})),
            binding("ops", "events", "shared", "ops.*", serde_json::json!({})),
            {"source": "orders.topic", "vhost": "sales", "destination": "orders.fanout",
             "destination_type": "exchange", "routing_key": "order.refund.#", "arguments": {}}
        ]
    })
    .to_string()
}

/// Writes the realistic definitions file into `dir`; returns its path.
fn write_definitions(dir: &Path) -> PathBuf {
    let path = dir.join("definitions-import.json");
    std::fs::write(&path, definitions_json()).unwrap();
    path
}

fn url(addr: SocketAddr, user: &str, password: &str, vhost: &str) -> String {
    format!("amqp://{user}:{password}@{addr}/{vhost}")
}

async fn connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
    vhost: &str,
) -> lapin::Result<lapin::Connection> {
    lapin::Connection::connect(
        &url(addr, user, password, vhost),
        lapin::ConnectionProperties::default(),
    )
    .await
}

async fn channel(
    addr: SocketAddr,
    user: &str,
    password: &str,
    vhost: &str,
) -> (lapin::Connection, lapin::Channel) {
    let conn = connect(addr, user, password, vhost).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// A broker started in-process with the realistic definitions file.
async fn broker_with_definitions() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(Config {
        definitions: Some(write_definitions(dir.path())),
        ..Config::default()
    })
    .await;
    (broker, dir)
}

async fn publish_with_headers(
    ch: &lapin::Channel,
    exchange: &str,
    body: &[u8],
    headers: FieldTable,
) {
    within(ch.basic_publish(
        exchange.into(),
        "".into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_headers(headers),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn users_see_the_topology_of_their_vhost_and_route_through_its_bindings() {
    let (broker, _dir) = broker_with_definitions().await;
    let (_conn, ch) = channel(broker.addr, "alice", "a1", "sales").await;
    for x in [
        "orders.direct",
        "orders.fanout",
        "orders.topic",
        "orders.headers",
    ] {
        passive_exchange(&ch, x).await.unwrap();
    }
    for q in ["orders", "audit", "shared"] {
        passive_queue(&ch, q).await.unwrap();
    }
    publish(&ch, "orders.direct", "new", b"direct").await;
    publish(&ch, "orders.fanout", "anything", b"fanout").await;
    publish(&ch, "orders.topic", "order.created.eu", b"topic").await;
    publish(&ch, "orders.topic", "invoice.created", b"unrouted").await;
    let eu = table(&[
        ("region", text("eu")),
        ("priority", AMQPValue::LongLongInt(1)),
    ]);
    publish_with_headers(&ch, "orders.headers", b"headers", eu).await;
    let us = table(&[
        ("region", text("us")),
        ("priority", AMQPValue::LongLongInt(1)),
    ]);
    publish_with_headers(&ch, "orders.headers", b"unrouted", us).await;
    assert_eq!(take_all(&ch, "orders").await, ["direct", "headers"]);
    assert_eq!(take_all(&ch, "audit").await, ["fanout", "topic"]);

    // bob's vhost has its own topology: sales' exchanges are not there.
    let (_conn, ops) = channel(broker.addr, "bob", "b2", "ops").await;
    passive_exchange(&ops, "events").await.unwrap();
    publish(&ops, "events", "ops.deploy", b"deploy").await;
    assert_eq!(take_all(&ops, "shared").await, ["deploy"]);
    let (code, text) = refusal(passive_exchange(&ops, "orders.direct").await);
    assert_eq!(code, Some(404));
    assert_eq!(
        text,
        "NOT_FOUND - no exchange 'orders.direct' in vhost 'ops'"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_403_and_guest_is_not_seeded() {
    let (broker, _dir) = broker_with_definitions().await;
    let err = connect(broker.addr, "alice", "wrong", "sales")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
    // rabbitmq-compat: definitions loaded at boot replace the default user and vhost.
    let err = connect(broker.addr, "guest", "guest", "%2f")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
}

#[tokio::test]
async fn opening_a_vhost_without_permission_is_refused_with_530() {
    let (broker, _dir) = broker_with_definitions().await;
    let err = connect(broker.addr, "alice", "a1", "ops")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
    assert_eq!(
        reply_text(&err),
        "NOT_ALLOWED - access to vhost 'ops' refused for user 'alice'"
    );
    let err = connect(broker.addr, "alice", "a1", "nowhere")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
    assert_eq!(reply_text(&err), "NOT_ALLOWED - vhost nowhere not found");
}

#[tokio::test]
async fn the_same_queue_name_in_two_vhosts_is_two_queues() {
    let (broker, _dir) = broker_with_definitions().await;
    let (_c1, sales) = channel(broker.addr, "bob", "b2", "sales").await;
    let (_c2, ops) = channel(broker.addr, "bob", "b2", "ops").await;
    publish_to_queue(&sales, "shared", "for sales").await;
    publish_to_queue(&ops, "shared", "for ops 1").await;
    publish_to_queue(&ops, "shared", "for ops 2").await;
    assert_eq!(take_all(&sales, "shared").await, ["for sales"]);
    assert_eq!(take_all(&ops, "shared").await, ["for ops 1", "for ops 2"]);
}

#[tokio::test]
async fn without_definitions_a_fresh_broker_has_guest_on_root_only() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let err = connect(broker.addr, "guest", "guest", "sales")
        .await
        .unwrap_err();
    assert_eq!(reply_text(&err), "NOT_ALLOWED - vhost sales not found");
}

/// A file with several problems: the listed paths, in the order the file holds them.
const INVALID: &str = r#"{
  "users": [{"name": "carol", "password_hash": "not base64!",
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
  "vhosts": [{"name": "v"}],
  "permissions": [{"user": "carol", "vhost": "missing", "configure": ".*", "write": ".*",
                   "read": ".*"}],
  "queues": [{"name": "q", "vhost": "v", "durable": true, "auto_delete": false,
              "arguments": {"x-max-length": "ten"}}],
  "exchanges": [{"name": "d", "vhost": "v", "type": "x-delayed-message", "durable": true,
                 "auto_delete": false, "internal": false, "arguments": {}}],
  "bindings": [{"source": "amq.direct", "vhost": "v", "destination": "nope",
                "destination_type": "queue", "routing_key": "", "arguments": {}},
               {"source": "amq.direct", "vhost": "v", "destination": "nowhere",
                "destination_type": "exchange", "routing_key": "", "arguments": {}}]
}"#;

#[tokio::test]
async fn an_invalid_file_stops_startup_with_status_2_and_every_problem_listed() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("bad.json");
    std::fs::write(&file, INVALID).unwrap();
    let failure =
        ChildBroker::try_start_with(data.path(), &["--definitions".as_ref(), file.as_ref()])
            .await
            .err()
            .expect("warren started with an invalid definitions file");
    assert_eq!(failure.status.code(), Some(2), "{}", failure.stderr);
    for path in [
        "/users/0/password_hash",
        "/permissions/0/vhost",
        "/queues/0/arguments/x-max-length",
        // x-delayed-message is supported, but needs its x-delayed-type.
        "/exchanges/0/arguments",
        "/bindings/0/destination",
        "/bindings/1/destination",
    ] {
        assert!(
            failure.stderr.contains(&format!("  {path}: ")),
            "{path} missing from:\n{}",
            failure.stderr
        );
    }
    // Nothing of it was applied: no metadata written.
    assert!(!data.path().join("definitions.json").exists());

    // Bad JSON and a missing file are problems of the whole file, with the same status.
    std::fs::write(&file, "{\"users\": [").unwrap();
    let args = ["--definitions".as_ref(), file.as_os_str()];
    let failure = ChildBroker::try_start_with(data.path(), &args)
        .await
        .err()
        .unwrap();
    assert_eq!(failure.status.code(), Some(2), "{}", failure.stderr);
    assert!(failure.stderr.contains("bad.json"), "{}", failure.stderr);
    let missing = data.path().join("missing.json");
    let args = ["--definitions".as_ref(), missing.as_os_str()];
    let failure = ChildBroker::try_start_with(data.path(), &args)
        .await
        .err()
        .unwrap();
    assert_eq!(failure.status.code(), Some(2), "{}", failure.stderr);
    assert!(failure.stderr.contains("cannot read"), "{}", failure.stderr);
}

fn stored_document(data_dir: &Path) -> Definitions {
    Definitions::from_json(&std::fs::read_to_string(data_dir.join("definitions.json")).unwrap())
        .unwrap()
}

#[tokio::test]
async fn booting_twice_with_the_same_file_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let file = write_definitions(data.path());
    let args = ["--definitions".as_ref(), file.as_os_str()];
    let broker = ChildBroker::start_with(data.path(), &args).await;
    {
        let (_conn, ch) = channel(broker.addr, "alice", "a1", "sales").await;
        ch.confirm_select(Default::default()).await.unwrap();
        process::publish_confirmed(&ch, "orders.direct", "new", b"kept", process::persistent())
            .await;
    }
    broker.stop().await;
    let first = stored_document(data.path());
    assert_eq!(first.users.len(), 2);
    assert_eq!(first.vhosts.len(), 2);
    assert_eq!(first.permissions.len(), 3);
    assert_eq!(first.policies.len(), 1, "policies are stored as imported");
    assert_eq!(first.topic_permissions.len(), 1);
    assert_eq!(first.queues.len(), 4);
    assert_eq!(first.bindings.len(), 6);

    let broker = ChildBroker::start_with(data.path(), &args).await;
    {
        let (_conn, ch) = channel(broker.addr, "alice", "a1", "sales").await;
        assert_eq!(take_all(&ch, "orders").await, ["kept"]);
    }
    broker.stop().await;
    assert_eq!(stored_document(data.path()), first);
}

#[tokio::test]
async fn users_vhosts_and_topology_survive_a_restart_without_the_file() {
    let data = tempfile::tempdir().unwrap();
    let file = write_definitions(data.path());
    let broker =
        ChildBroker::start_with(data.path(), &["--definitions".as_ref(), file.as_os_str()]).await;
    broker.stop().await;
    std::fs::remove_file(&file).unwrap();

    let broker = ChildBroker::start(data.path()).await;
    let (_c1, sales) = channel(broker.addr, "alice", "a1", "sales").await;
    publish(&sales, "orders.topic", "order.paid", b"paid").await;
    assert_eq!(take_all(&sales, "audit").await, ["paid"]);
    let (_c2, ops) = channel(broker.addr, "bob", "b2", "ops").await;
    passive_exchange(&ops, "events").await.unwrap();
    let err = connect(broker.addr, "alice", "a1", "ops")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
    // The broker has users now, so guest is not seeded on a restart either.
    let err = connect(broker.addr, "guest", "guest", "%2f")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
    broker.stop().await;
}

/// What a definitions document says, with each list as a sorted set of normalised entries,
/// so two documents compare equal when they define the same things (order, absent-vs-empty
/// fields and product fields aside).
fn semantic(doc: &Definitions) -> Vec<Vec<String>> {
    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }
    let vhost = |v: &str| {
        if v.is_empty() {
            "/".to_string()
        } else {
            v.to_string()
        }
    };
    let args = |m: &serde_json::Map<String, serde_json::Value>| {
        serde_json::Value::Object(m.clone()).to_string()
    };
    vec![
        sorted(
            doc.users
                .iter()
                .map(|u| {
                    let mut tags: Vec<&str> = u.tags.names();
                    tags.sort();
                    format!("{} {:?} {:?}", u.name, u.password_hash, tags)
                })
                .collect(),
        ),
        sorted(doc.vhosts.iter().map(|v| v.name.clone()).collect()),
        sorted(
            doc.permissions
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} {} {}",
                        p.user,
                        vhost(&p.vhost),
                        p.configure,
                        p.write,
                        p.read
                    )
                })
                .collect(),
        ),
        sorted(
            doc.topic_permissions
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} {} {}",
                        p.user,
                        vhost(&p.vhost),
                        p.exchange,
                        p.write,
                        p.read
                    )
                })
                .collect(),
        ),
        sorted(
            doc.policies
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} {} {} {}",
                        vhost(&p.vhost),
                        p.name,
                        p.pattern,
                        p.apply_to,
                        args(&p.definition),
                        p.priority
                    )
                })
                .collect(),
        ),
        sorted(
            doc.queues
                .iter()
                .map(|q| {
                    format!(
                        "{} {} {} {} {}",
                        vhost(&q.vhost),
                        q.name,
                        q.durable,
                        q.auto_delete,
                        args(&q.arguments)
                    )
                })
                .collect(),
        ),
        sorted(
            doc.exchanges
                .iter()
                .map(|x| {
                    format!(
                        "{} {} {} {} {} {} {}",
                        vhost(&x.vhost),
                        x.name,
                        x.kind,
                        x.durable,
                        x.auto_delete,
                        x.internal,
                        args(&x.arguments)
                    )
                })
                .collect(),
        ),
        sorted(
            doc.bindings
                .iter()
                .map(|b| {
                    format!(
                        "{} {} {} {} {} {}",
                        vhost(&b.vhost),
                        b.source,
                        b.destination,
                        b.destination_type.as_str(),
                        b.routing_key,
                        args(&b.arguments)
                    )
                })
                .collect(),
        ),
    ]
}

#[tokio::test]
async fn a_realistic_file_round_trips_through_import_and_export() {
    let (broker, _dir) = broker_with_definitions().await;
    let original = Definitions::from_json(&definitions_json()).unwrap();
    // Exported by a user who may: bob is the file's administrator.
    let answer = http::send(&broker, "GET", "/api/definitions", Some(("bob", "b2")), "").await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let exported = Definitions::from_json(&answer.json.to_string()).unwrap();
    assert_eq!(semantic(&exported), semantic(&original));
    // Fields beyond the compared ones survive too (a vhost's description and metadata).
    let sales = exported.vhosts.iter().find(|v| v.name == "sales").unwrap();
    assert_eq!(sales.description.as_deref(), Some("orders"));
    assert!(sales.metadata.is_some(), "{sales:?}");
    // And the export imports into a fresh broker as the same definitions.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exported.json");
    std::fs::write(&file, exported.to_json_pretty()).unwrap();
    let second = TestBroker::start_with(Config {
        definitions: Some(file),
        ..Config::default()
    })
    .await;
    let again = http::send(&second, "GET", "/api/definitions", Some(("bob", "b2")), "").await;
    let again = Definitions::from_json(&again.json.to_string()).unwrap();
    assert_eq!(semantic(&again), semantic(&original));
}
