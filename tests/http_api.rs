//! The management HTTP API (read side) through a real HTTP client: basic auth against the
//! broker's users, and RabbitMQ's JSON shapes for the overview, definitions, queues,
//! exchanges, bindings, users, vhosts and permissions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;

use common::*;
use http::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use serde_json::json;
use warren_broker::Config;
use warren_definitions::{hash_password_with_salt, Definitions, HashingAlgorithm};

/// A broker with a durable queue `orders` (two messages, bound to durable direct exchange
/// `shop` with key `new`) and a transient queue `scratch`.
async fn broker_with_topology() -> TestBroker {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.confirming_channel().await;
    try_declare_queue(
        &ch,
        "orders",
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_queue(&ch, "scratch").await;
    try_declare_exchange(
        &ch,
        "shop",
        ExchangeKind::Direct,
        exchange_flags(true, false, false),
        FieldTable::default(),
    )
    .await
    .unwrap();
    bind(&ch, "orders", "shop", "new").await;
    for body in [b"a", b"b"] {
        publish_and_confirm(&ch, "shop", "new", body, BasicProperties::default(), false).await;
    }
    broker
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_the_management_realm() {
    let broker = TestBroker::start().await;
    for credentials in [None, Some(("guest", "wrong")), Some(("nobody", "guest"))] {
        let answer = request(&broker, "GET", "/api/overview", credentials).await;
        assert_eq!(answer.status, 401, "{credentials:?}");
        assert_eq!(
            answer.www_authenticate.as_deref(),
            Some("Basic realm=\"RabbitMQ Management\"")
        );
        assert_eq!(answer.json["error"], "not_authorised");
    }
}

#[tokio::test]
async fn overview_names_warren_and_counts_objects() {
    let broker = broker_with_topology().await;
    let overview = get_json(&broker, "/api/overview").await;
    assert_eq!(overview["product_name"], "Warren");
    assert_eq!(overview["rabbitmq_version"], "3.13.0");
    assert_eq!(overview["management_version"], "3.13.0");
    assert!(overview["node"].as_str().unwrap().starts_with("warren@"));
    let totals = &overview["object_totals"];
    assert_eq!(totals["queues"], 2);
    // The six predeclared exchanges and `shop`.
    assert_eq!(totals["exchanges"], 7);
    assert_eq!(totals["consumers"], 0);
    assert_eq!(overview["queue_totals"]["messages"], 2);
}

#[tokio::test]
async fn definitions_export_holds_the_durable_queue_and_parses_as_definitions() {
    let broker = broker_with_topology().await;
    let export = get_json(&broker, "/api/definitions").await;
    let doc = Definitions::from_json(&export.to_string()).unwrap();
    assert!(doc.queues.iter().any(|q| q.name == "orders" && q.durable));
    assert!(!doc.queues.iter().any(|q| q.name == "scratch"));
    assert!(doc.users.iter().any(|u| u.name == "guest"));
    assert!(doc.vhosts.iter().any(|v| v.name == "/"));
    assert_eq!(doc.product_name.as_deref(), Some("Warren"));

    let scoped = get_json(&broker, "/api/definitions/%2F").await;
    for absent in ["users", "vhosts", "permissions"] {
        assert!(scoped.get(absent).is_none(), "{absent} in {scoped}");
    }
    let orders = with(&scoped["queues"], "name", "orders");
    assert_eq!(orders.len(), 1);
    assert!(orders[0].get("vhost").is_none(), "vhost keys are stripped");
    let mut doc = Definitions::from_json(&scoped.to_string()).unwrap();
    doc.fill_missing_vhost("/");
    assert!(doc
        .bindings
        .iter()
        .any(|b| b.source == "shop" && b.destination == "orders"));

    let missing = request(&broker, "GET", "/api/definitions/nowhere", GUEST).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn queues_exchanges_and_bindings_list_the_declared_topology_with_counts() {
    let broker = broker_with_topology().await;
    for path in ["/api/queues", "/api/queues/%2F"] {
        let queues = get_json(&broker, path).await;
        let orders = with(&queues, "name", "orders");
        assert_eq!(orders.len(), 1, "{queues}");
        let orders = orders[0];
        assert_eq!(orders["vhost"], "/");
        assert_eq!(orders["durable"], true);
        assert_eq!(orders["auto_delete"], false);
        assert_eq!(orders["exclusive"], false);
        assert_eq!(orders["type"], "classic");
        assert_eq!(orders["state"], "running");
        assert_eq!(orders["arguments"], json!({}));
        assert_eq!(orders["messages"], 2);
        assert_eq!(orders["messages_ready"], 2);
        assert_eq!(orders["messages_unacknowledged"], 0);
        assert_eq!(orders["consumers"], 0);
        assert_eq!(with(&queues, "name", "scratch")[0]["durable"], false);
    }

    let exchanges = get_json(&broker, "/api/exchanges/%2F").await;
    let names: Vec<&str> = exchanges
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    for name in [
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
        "shop",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let shop = with(&exchanges, "name", "shop")[0];
    assert_eq!(shop["type"], "direct");
    assert_eq!(shop["durable"], true);
    assert_eq!(get_json(&broker, "/api/exchanges").await, exchanges);

    let bindings = get_json(&broker, "/api/bindings").await;
    let default = with(&bindings, "source", "");
    assert_eq!(
        default.len(),
        2,
        "one implicit binding per queue: {bindings}"
    );
    assert!(default.iter().any(|b| b["destination"] == "orders"
        && b["routing_key"] == "orders"
        && b["destination_type"] == "queue"));
    let shop = with(&bindings, "source", "shop");
    assert_eq!(shop.len(), 1);
    assert_eq!(shop[0]["destination"], "orders");
    assert_eq!(shop[0]["routing_key"], "new");
    assert_eq!(shop[0]["properties_key"], "new");
    assert_eq!(get_json(&broker, "/api/bindings/%2F").await, bindings);

    let missing = request(&broker, "GET", "/api/queues/nowhere", GUEST).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn users_vhosts_and_permissions_are_readable_and_missing_ones_are_404() {
    let broker = TestBroker::start().await;
    let users = get_json(&broker, "/api/users").await;
    let guest = with(&users, "name", "guest")[0];
    assert_eq!(guest["tags"], json!(["administrator"]));
    assert_eq!(guest["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert!(!guest["password_hash"].as_str().unwrap().is_empty());
    assert_eq!(&get_json(&broker, "/api/users/guest").await, guest);

    let vhosts = get_json(&broker, "/api/vhosts").await;
    assert_eq!(vhosts.as_array().unwrap().len(), 1);
    assert_eq!(vhosts[0]["name"], "/");
    assert_eq!(get_json(&broker, "/api/vhosts/%2F").await["name"], "/");

    let permissions = get_json(&broker, "/api/permissions").await;
    let expected =
        json!({"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(permissions, json!([expected.clone()]));
    assert_eq!(
        get_json(&broker, "/api/permissions/%2F/guest").await,
        expected
    );

    for path in [
        "/api/users/nobody",
        "/api/vhosts/nowhere",
        "/api/permissions/%2F/nobody",
        "/api/permissions/nowhere/guest",
    ] {
        let answer = request(&broker, "GET", path, GUEST).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(
            answer.json,
            json!({"error": "Object Not Found", "reason": "Not Found"})
        );
    }
}

#[tokio::test]
async fn methods_a_resource_does_not_take_get_405_and_unknown_paths_404() {
    let broker = TestBroker::start().await;
    let put = request(&broker, "PUT", "/api/queues", GUEST).await;
    assert_eq!(put.status, 405);
    assert_eq!(put.content_type.as_deref(), Some("application/json"));
    let post = request(&broker, "POST", "/api/users/alice", GUEST).await;
    assert_eq!(post.status, 405);
    let unknown = request(&broker, "GET", "/api/nothing-here", GUEST).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json["error"], "Object Not Found");
}

/// guest (administrator), `mona` (management, permissions on vhost `other` only) and `bob`
/// (no tags) in vhosts `/` and `other`.
async fn broker_with_users() -> (TestBroker, tempfile::TempDir) {
    let hash = |p: &str| hash_password_with_salt(HashingAlgorithm::Sha256, [1, 2, 3, 4], p);
    let user = |name: &str, tags: &str| {
        json!({"name": name, "password_hash": hash("pw"),
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags})
    };
    let perm = |user: &str, vhost: &str| json!({"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"});
    let mut guest = user("guest", "administrator");
    guest["password_hash"] = json!(hash("guest"));
    let defs = json!({
        "users": [guest, user("mona", "management"), user("bob", "")],
        "vhosts": [{"name": "/"}, {"name": "other"}],
        "permissions": [perm("guest", "/"), perm("mona", "other"), perm("bob", "/")],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, defs.to_string()).unwrap();
    let broker = TestBroker::start_with(Config {
        definitions: Some(file),
        ..Config::default()
    })
    .await;
    (broker, dir)
}

#[tokio::test]
async fn management_users_see_their_vhosts_only_and_untagged_users_are_refused() {
    let (broker, _dir) = broker_with_users().await;
    let mona = Some(("mona", "pw"));

    let bob = request(&broker, "GET", "/api/overview", Some(("bob", "pw"))).await;
    assert_eq!(bob.status, 401);
    assert_eq!(bob.json["reason"], "Not management user");

    let vhosts = request(&broker, "GET", "/api/vhosts", mona).await;
    assert_eq!(vhosts.status, 200);
    assert_eq!(
        vhosts.json,
        json!([get_json(&broker, "/api/vhosts/other").await])
    );
    let exchanges = request(&broker, "GET", "/api/exchanges", mona).await;
    assert!(exchanges
        .json
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["vhost"] == "other"));
    let other_vhost = request(&broker, "GET", "/api/queues/%2F", mona).await;
    assert_eq!(other_vhost.status, 401);
    for admin_only in ["/api/users", "/api/permissions", "/api/definitions"] {
        let answer = request(&broker, "GET", admin_only, mona).await;
        assert_eq!(answer.status, 401, "{admin_only}");
        assert_eq!(answer.json["reason"], "Not administrator user");
    }
    assert_eq!(
        get_json(&broker, "/api/vhosts")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
