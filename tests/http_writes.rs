//! The management HTTP API's writes through a real HTTP client, checked through AMQP clients:
//! users, vhosts, permissions and policies created, changed and deleted at run time (and kept
//! in the metadata document), definitions imported with every problem reported, connections
//! listed and closed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod http;

use common::*;
use http::*;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};
use warren_definitions::Definitions;

fn amqp_url(broker: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    format!("amqp://{user}:{password}@{}/{vhost}", broker.addr)
}

async fn login(
    broker: &TestBroker,
    user: &str,
    password: &str,
    vhost: &str,
) -> lapin::Result<Connection> {
    within(Connection::connect(
        &amqp_url(broker, user, password, vhost),
        ConnectionProperties::default(),
    ))
    .await
}

/// PUT/POST as guest (an administrator); returns the status and JSON answer.
async fn put(broker: &TestBroker, path: &str, body: Value) -> Answer {
    send(broker, "PUT", path, GUEST, &body.to_string()).await
}

async fn delete(broker: &TestBroker, path: &str) -> Answer {
    send(broker, "DELETE", path, GUEST, "").await
}

fn stored(broker: &TestBroker) -> Definitions {
    let text = std::fs::read_to_string(broker.data_dir().join("definitions.json")).unwrap();
    Definitions::from_json(&text).unwrap()
}

/// Waits until the broker closes the connection whose `events` these are; returns the
/// close's code and text.
async fn closed_by_broker(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> (u16, String) {
    let err = next_error(events).await;
    (reply_code(&err).unwrap_or(0), reply_text(&err))
}

#[tokio::test]
async fn users_are_created_changed_and_deleted_and_a_deleted_users_connections_close() {
    let broker = TestBroker::start().await;
    let created = put(
        &broker,
        "/api/users/carol",
        json!({"password": "s3cret", "tags": "management"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(
        put(
            &broker,
            "/api/permissions/%2F/carol",
            json!({"configure": ".*", "write": ".*", "read": ".*"})
        )
        .await
        .status,
        201
    );
    let conn = login(&broker, "carol", "s3cret", "%2f").await.unwrap();
    let mut carol_events = Box::pin(conn.events_listener());
    // No clear-text password is stored.
    let doc = stored(&broker);
    let carol = doc.find_user("carol").unwrap();
    assert!(carol.password.is_none() && carol.password_hash.is_some());

    // New tags without a password keep the password.
    let updated = put(&broker, "/api/users/carol", json!({"tags": ["monitoring"]})).await;
    assert_eq!(updated.status, 204, "{}", updated.json);
    let user = get_json(&broker, "/api/users/carol").await;
    assert_eq!(user["tags"], json!(["monitoring"]));
    login(&broker, "carol", "s3cret", "%2f").await.unwrap();
    // A new password replaces the old one.
    put(
        &broker,
        "/api/users/carol",
        json!({"password": "n3w", "tags": ""}),
    )
    .await;
    let err = login(&broker, "carol", "s3cret", "%2f").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403));

    let deleted = delete(&broker, "/api/users/carol").await;
    assert_eq!(deleted.status, 204);
    let (code, text) = closed_by_broker(&mut carol_events).await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - user 'carol' was deleted");
    assert_eq!(delete(&broker, "/api/users/carol").await.status, 404);
    assert!(stored(&broker).find_user("carol").is_none());
    assert!(stored(&broker).find_permission("carol", "/").is_none());
}

#[tokio::test]
async fn a_vhost_created_at_run_time_is_usable_isolated_and_deleted_with_its_queues() {
    let broker = TestBroker::start().await;
    assert_eq!(
        put(
            &broker,
            "/api/vhosts/tenant-1",
            json!({"description": "first tenant"})
        )
        .await
        .status,
        201
    );
    // Without permissions guest cannot open it yet.
    let err = login(&broker, "guest", "guest", "tenant-1")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530));
    put(
        &broker,
        "/api/permissions/tenant-1/guest",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    let conn = login(&broker, "guest", "guest", "tenant-1").await.unwrap();
    let mut tenant_events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "jobs").await;
    publish_to_queue(&ch, "jobs", "in tenant-1").await;
    // The same name in "/" is another queue.
    let (_root, root_ch) = broker.channel().await;
    declare_queue(&root_ch, "jobs").await;
    assert!(take_all(&root_ch, "jobs").await.is_empty());
    let queues = get_json(&broker, "/api/queues/tenant-1").await;
    assert_eq!(queues[0]["name"], "jobs");
    assert_eq!(queues[0]["messages"], 1);
    let vhost = get_json(&broker, "/api/vhosts/tenant-1").await;
    assert_eq!(vhost["description"], "first tenant");
    assert!(stored(&broker).vhosts.iter().any(|v| v.name == "tenant-1"));

    assert_eq!(delete(&broker, "/api/vhosts/tenant-1").await.status, 204);
    let (code, text) = closed_by_broker(&mut tenant_events).await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - vhost 'tenant-1' is deleted");
    let err = login(&broker, "guest", "guest", "tenant-1")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        request(&broker, "GET", "/api/vhosts/tenant-1", GUEST)
            .await
            .status,
        404
    );
    assert_eq!(delete(&broker, "/api/vhosts/tenant-1").await.status, 404);
    let doc = stored(&broker);
    assert!(!doc.vhosts.iter().any(|v| v.name == "tenant-1"));
    assert!(doc.find_permission("guest", "tenant-1").is_none());
    // Re-created, it starts empty.
    put(&broker, "/api/vhosts/tenant-1", json!({})).await;
    put(
        &broker,
        "/api/permissions/tenant-1/guest",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    let conn = login(&broker, "guest", "guest", "tenant-1").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        reply_code(&passive_queue(&ch, "jobs").await.unwrap_err()),
        Some(404)
    );
    // "/" was not touched.
    assert!(passive_queue(&root_ch, "jobs").await.is_ok());
}

#[tokio::test]
async fn permission_changes_apply_to_open_connections_and_bad_ones_get_400() {
    let broker = TestBroker::start().await;
    put(
        &broker,
        "/api/users/dave",
        json!({"password": "pw", "tags": ""}),
    )
    .await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    put(&broker, "/api/permissions/%2F/dave", all).await;
    let conn = login(&broker, "dave", "pw", "%2f").await.unwrap();
    let mut dave_events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "a-queue").await;
    declare_queue(&ch, "b-queue").await;
    assert!(get(&ch, "b-queue", true).await.is_none());

    // Narrowed: reading b-queue is refused on the same connection from now on.
    let narrow = json!({"configure": ".*", "write": ".*", "read": "^a-"});
    assert_eq!(
        put(&broker, "/api/permissions/%2F/dave", narrow)
            .await
            .status,
        204
    );
    let err = within(ch.basic_get("b-queue".into(), Default::default()))
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err),
        "ACCESS_REFUSED - read access to queue 'b-queue' in vhost '/' refused for user 'dave'"
    );
    // (The channel's 403 is an event too.)
    assert_eq!(reply_code(&next_error(&mut dave_events).await), Some(403));
    let ch = conn.create_channel().await.unwrap();
    assert!(get(&ch, "a-queue", true).await.is_none());

    for (body, why) in [
        (
            json!({"configure": ".*", "write": ".*"}),
            "read must be a string",
        ),
        (
            json!({"configure": "(", "write": ".*", "read": ".*"}),
            "configure",
        ),
    ] {
        let answer = put(&broker, "/api/permissions/%2F/dave", body).await;
        assert_eq!(answer.status, 400, "{}", answer.json);
        assert_eq!(answer.json["error"], "bad_request");
        assert!(
            answer.json["reason"].as_str().unwrap().contains(why),
            "{}",
            answer.json
        );
    }
    let nobody = put(
        &broker,
        "/api/permissions/%2F/nobody",
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await;
    assert_eq!(nobody.status, 400, "{}", nobody.json);
    assert!(
        nobody.json["reason"].as_str().unwrap().contains("nobody"),
        "{}",
        nobody.json
    );
    let no_vhost = put(
        &broker,
        "/api/permissions/nowhere/dave",
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await;
    assert_eq!(no_vhost.status, 404);

    // Removed: the user's connections to the vhost are closed.
    assert_eq!(
        delete(&broker, "/api/permissions/%2F/dave").await.status,
        204
    );
    let (code, text) = closed_by_broker(&mut dave_events).await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - user 'dave' no longer has access to vhost '/'"
    );
    assert_eq!(
        delete(&broker, "/api/permissions/%2F/dave").await.status,
        404
    );
    let err = login(&broker, "dave", "pw", "%2f").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530));
}

#[tokio::test]
async fn writes_need_an_administrator_and_policymakers_may_set_policies() {
    let broker = TestBroker::start().await;
    put(
        &broker,
        "/api/users/mgmt",
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    put(
        &broker,
        "/api/users/pol",
        json!({"password": "pw", "tags": "policymaker"}),
    )
    .await;
    put(
        &broker,
        "/api/permissions/%2F/pol",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    let as_mgmt = send(&broker, "PUT", "/api/vhosts/x", Some(("mgmt", "pw")), "{}").await;
    assert_eq!(as_mgmt.status, 401);
    assert_eq!(as_mgmt.json["reason"], "Not administrator user");
    let policy = json!({"pattern": "^q", "definition": {"max-length": 10}, "apply-to": "queues"});
    let as_mgmt = send(
        &broker,
        "PUT",
        "/api/policies/%2F/p",
        Some(("mgmt", "pw")),
        &policy.to_string(),
    )
    .await;
    assert_eq!(as_mgmt.status, 401);
    let as_pol = send(
        &broker,
        "PUT",
        "/api/policies/%2F/p",
        Some(("pol", "pw")),
        &policy.to_string(),
    )
    .await;
    assert_eq!(as_pol.status, 201, "{}", as_pol.json);
    let as_pol = send(&broker, "PUT", "/api/users/x", Some(("pol", "pw")), "{}").await;
    assert_eq!(as_pol.status, 401);
}

#[tokio::test]
async fn policies_match_queues_and_exchanges_by_pattern_priority_and_apply_to() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for q in ["orders.eu", "orders.us", "other"] {
        declare_queue(&ch, q).await;
    }
    declare_exchange(&ch, "orders.x", lapin::ExchangeKind::Topic).await;
    let policies = [
        (
            "low",
            json!({"pattern": "^orders", "definition": {"max-length": 100}, "priority": 1, "apply-to": "all"}),
        ),
        (
            "eu",
            json!({"pattern": "\\.eu$", "definition": {"message-ttl": 5000}, "priority": 5, "apply-to": "queues"}),
        ),
        (
            "xs",
            json!({"pattern": ".*", "definition": {"alternate-exchange": "ae"}, "priority": 9, "apply-to": "exchanges"}),
        ),
    ];
    for (name, body) in &policies {
        let answer = put(&broker, &format!("/api/policies/%2F/{name}"), body.clone()).await;
        assert_eq!(answer.status, 201, "{name}: {}", answer.json);
    }
    let queues = get_json(&broker, "/api/queues/%2F").await;
    let policy_of = |name: &str| with(&queues, "name", name)[0]["policy"].clone();
    assert_eq!(policy_of("orders.eu"), "eu");
    assert_eq!(policy_of("orders.us"), "low");
    assert_eq!(policy_of("other"), Value::Null);
    assert_eq!(
        with(&queues, "name", "orders.eu")[0]["effective_policy_definition"],
        json!({"message-ttl": 5000})
    );
    let exchanges = get_json(&broker, "/api/exchanges/%2F").await;
    assert_eq!(with(&exchanges, "name", "orders.x")[0]["policy"], "xs");
    assert_eq!(with(&exchanges, "name", "")[0]["policy"], Value::Null);

    let listed = get_json(&broker, "/api/policies/%2F").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(
        get_json(&broker, "/api/policies/%2F/eu").await["priority"],
        5
    );
    assert_eq!(stored(&broker).policies.len(), 3);
    assert_eq!(delete(&broker, "/api/policies/%2F/eu").await.status, 204);
    let queues = get_json(&broker, "/api/queues/%2F").await;
    assert_eq!(with(&queues, "name", "orders.eu")[0]["policy"], "low");
    assert_eq!(delete(&broker, "/api/policies/%2F/eu").await.status, 404);

    let bad = put(
        &broker,
        "/api/policies/%2F/bad",
        json!({"pattern": "(", "definition": {"max-length": 1}}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.json);
    let bad = put(
        &broker,
        "/api/policies/%2F/bad",
        json!({"pattern": ".*", "definition": {"max-length": "ten"}}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.json);
}

#[tokio::test]
async fn posted_definitions_are_imported_and_an_invalid_document_changes_nothing() {
    let broker = TestBroker::start().await;
    let doc = json!({
        "users": [{"name": "erin", "password": "pw", "tags": ""}],
        "vhosts": [{"name": "shop"}],
        "permissions": [{"user": "erin", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [
            {"name": "in", "vhost": "shop", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}},
            {"name": "eu", "vhost": "shop", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}
        ],
        "queues": [{"name": "eu-orders", "vhost": "shop", "durable": true, "auto_delete": false, "arguments": {"x-max-length": 50}}],
        "bindings": [
            {"source": "in", "vhost": "shop", "destination": "eu", "destination_type": "exchange", "routing_key": "eu.#", "arguments": {}},
            {"source": "eu", "vhost": "shop", "destination": "eu-orders", "destination_type": "queue", "routing_key": "", "arguments": {}}
        ]
    });
    let answer = send(&broker, "POST", "/api/definitions", GUEST, &doc.to_string()).await;
    assert_eq!(answer.status, 204, "{}", answer.json);
    let conn = login(&broker, "erin", "pw", "shop").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    publish(&ch, "in", "eu.fr", b"bonjour").await;
    publish(&ch, "in", "us.ny", b"hello").await;
    assert_eq!(take_all(&ch, "eu-orders").await, ["bonjour"]);
    // Posting it again changes nothing.
    let before = stored(&broker);
    let answer = send(&broker, "POST", "/api/definitions", GUEST, &doc.to_string()).await;
    assert_eq!(answer.status, 204, "{}", answer.json);
    assert_eq!(stored(&broker), before);

    let invalid = json!({
        "vhosts": [{"name": "later"}],
        "queues": [{"name": "q", "vhost": "missing", "durable": true, "auto_delete": false, "arguments": {}}],
        "exchanges": [{"name": "d", "vhost": "later", "type": "nonsense", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}]
    });
    let answer = send(
        &broker,
        "POST",
        "/api/definitions",
        GUEST,
        &invalid.to_string(),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.json);
    let reason = answer.json["reason"].as_str().unwrap();
    assert!(reason.contains("/queues/0/vhost"), "{reason}");
    assert!(reason.contains("/exchanges/0/type"), "{reason}");
    assert_eq!(
        request(&broker, "GET", "/api/vhosts/later", GUEST)
            .await
            .status,
        404
    );
    assert_eq!(stored(&broker), before);
    let answer = send(&broker, "POST", "/api/definitions", GUEST, "{not json").await;
    assert_eq!(answer.status, 400);

    // Per-vhost import: the document's topology lands in that vhost.
    let scoped = json!({"queues": [{"name": "imported", "vhost": "elsewhere", "durable": true, "auto_delete": false, "arguments": {}}]});
    let answer = send(
        &broker,
        "POST",
        "/api/definitions/shop",
        GUEST,
        &scoped.to_string(),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.json);
    assert!(passive_queue(&ch, "imported").await.is_ok());
}

#[tokio::test]
async fn connections_are_listed_and_can_be_closed() {
    let broker = TestBroker::start().await;
    let props = ConnectionProperties::default().with_connection_name("billing-worker".into());
    let conn = within(Connection::connect(&broker.url(), props))
        .await
        .unwrap();
    let mut conn_events = Box::pin(conn.events_listener());
    let _ch = conn.create_channel().await.unwrap();
    let listed = get_json(&broker, "/api/connections").await;
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_properties"]["connection_name"] == "billing-worker")
        .expect("the connection is listed")
        .clone();
    assert_eq!(mine["user"], "guest");
    assert_eq!(mine["vhost"], "/");
    assert_eq!(mine["protocol"], "AMQP 0-9-1");
    assert_eq!(mine["channels"], 1);
    assert_eq!(mine["port"], broker.addr.port());
    let overview = get_json(&broker, "/api/overview").await;
    assert_eq!(overview["object_totals"]["connections"], 1);

    let name = mine["name"].as_str().unwrap();
    let path = format!("/api/connections/{}", encode(name));
    assert_eq!(get_json(&broker, &path).await["name"], name);
    assert_eq!(delete(&broker, &path).await.status, 204);
    let (code, text) = closed_by_broker(&mut conn_events).await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - Closed via management plugin");
    for _ in 0..100 {
        if get_json(&broker, "/api/connections")
            .await
            .as_array()
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(get_json(&broker, "/api/connections")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(delete(&broker, &path).await.status, 404);
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn queues_exchanges_and_bindings_are_declared_and_deleted_over_http_like_rabbitmqadmin() {
    let broker = TestBroker::start().await;
    let q = put(
        &broker,
        "/api/queues/%2F/jobs",
        json!({"durable": true, "arguments": {"x-max-length": 10}}),
    )
    .await;
    assert_eq!(q.status, 201, "{}", q.json);
    assert_eq!(
        put(
            &broker,
            "/api/queues/%2F/jobs",
            json!({"durable": true, "arguments": {"x-max-length": 10}})
        )
        .await
        .status,
        204
    );
    let clash = put(&broker, "/api/queues/%2F/jobs", json!({"durable": false})).await;
    assert_eq!(clash.status, 400);
    assert!(
        clash.json["reason"]
            .as_str()
            .unwrap()
            .contains("inequivalent arg 'durable'"),
        "{}",
        clash.json
    );
    let x = put(
        &broker,
        "/api/exchanges/%2F/work",
        json!({"type": "topic", "durable": true}),
    )
    .await;
    assert_eq!(x.status, 201, "{}", x.json);
    let no_type = put(&broker, "/api/exchanges/%2F/typeless", json!({})).await;
    assert_eq!(no_type.status, 400);
    let bound = send(
        &broker,
        "POST",
        "/api/bindings/%2F/e/work/q/jobs",
        GUEST,
        &json!({"routing_key": "job.#"}).to_string(),
    )
    .await;
    assert_eq!(bound.status, 201, "{}", bound.json);
    let fanout = put(&broker, "/api/exchanges/%2F/all", json!({"type": "fanout"})).await;
    assert_eq!(fanout.status, 201);
    let e2e = send(
        &broker,
        "POST",
        "/api/bindings/%2F/e/all/e/work",
        GUEST,
        "{}",
    )
    .await;
    assert_eq!(e2e.status, 201, "{}", e2e.json);

    // AMQP clients see it all; the metadata is on disk.
    let (_conn, ch) = broker.channel().await;
    publish(&ch, "work", "job.build", b"direct").await;
    publish(&ch, "all", "job.x", b"through all").await;
    publish(&ch, "work", "other", b"unrouted").await;
    assert_eq!(
        get_json(&broker, "/api/queues/%2F/jobs").await["messages"],
        3 - 1
    );
    let between = get_json(&broker, "/api/bindings/%2F/e/work/q/jobs").await;
    assert_eq!(between[0]["properties_key"], "job.#");
    let doc = stored(&broker);
    assert!(doc.queues.iter().any(|q| q.name == "jobs"));
    assert_eq!(doc.bindings.len(), 2);

    assert_eq!(
        delete(&broker, "/api/queues/%2F/jobs/contents")
            .await
            .status,
        204
    );
    assert!(take_all(&ch, "jobs").await.is_empty());
    assert_eq!(
        delete(&broker, "/api/bindings/%2F/e/work/q/jobs/job.%23")
            .await
            .status,
        204
    );
    publish(&ch, "work", "job.build", b"after unbind").await;
    assert!(take_all(&ch, "jobs").await.is_empty());
    assert_eq!(delete(&broker, "/api/exchanges/%2F/work").await.status, 204);
    assert_eq!(delete(&broker, "/api/exchanges/%2F/work").await.status, 404);
    assert_eq!(delete(&broker, "/api/queues/%2F/jobs").await.status, 204);
    assert_eq!(
        reply_code(&passive_queue(&ch, "jobs").await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        put(&broker, "/api/queues/nowhere/q", json!({}))
            .await
            .status,
        404
    );

    // Permissions apply as over AMQP.
    put(
        &broker,
        "/api/users/lim",
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    put(
        &broker,
        "/api/permissions/%2F/lim",
        json!({"configure": "^lim-", "write": ".*", "read": ".*"}),
    )
    .await;

    assert_eq!(
        send(
            &broker,
            "PUT",
            "/api/queues/%2F/lim-q",
            Some(("lim", "pw")),
            "{}"
        )
        .await
        .status,
        201
    );
    let refused = send(
        &broker,
        "PUT",
        "/api/queues/%2F/other-q",
        Some(("lim", "pw")),
        "{}",
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.json["reason"],
        "ACCESS_REFUSED - configure access to queue 'other-q' in vhost '/' refused for user 'lim'"
    );
}
