//! Direct reply-to: a requester consumes `amq.rabbitmq.reply-to` (no-ack) and publishes with
//! that reply-to; the broker hands the responder a generated address, and replies published to
//! it reach the requester's consumer without a queue. Refusals use RabbitMQ's codes and texts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A requester channel consuming its replies.
async fn requester(broker: &TestBroker) -> (lapin::Connection, Channel, Consumer) {
    let (conn, ch) = broker.channel().await;
    let replies = consume_with(&ch, REPLY_TO, "", no_ack()).await;
    (conn, ch, replies)
}

/// Publishes a request to `queue` with reply-to set to the pseudo-queue.
async fn request(ch: &Channel, queue: &str, body: &str, correlation_id: &str) {
    let props = BasicProperties::default()
        .with_reply_to(REPLY_TO.into())
        .with_correlation_id(correlation_id.into());
    publish_to_queue_with(ch, queue, body.as_bytes(), props).await;
}

/// Answers one request from `requests`: publishes "re:<body>" to its reply-to with its
/// correlation id; returns the reply-to it saw.
async fn answer_one(responder: &Channel, requests: &mut Consumer) -> String {
    let req = next_delivery(requests).await;
    let reply_to = req
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    let props = BasicProperties::default().with_correlation_id(
        req.properties
            .correlation_id()
            .clone()
            .expect("correlation id"),
    );
    let body = format!("re:{}", body_text(&req));
    publish_to_queue_with(responder, &reply_to, body.as_bytes(), props).await;
    req.ack(BasicAckOptions::default()).await.unwrap();
    reply_to
}

#[tokio::test]
async fn rpc_round_trip_carries_the_correlation_id_back() {
    let broker = TestBroker::start().await;
    let (_rc, req_ch, mut replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.channel().await;
    declare_queue(&srv_ch, "rpc").await;
    let mut requests = consume(&srv_ch, "rpc", "server").await;

    request(&req_ch, "rpc", "one", "c-1").await;
    let reply_to = answer_one(&srv_ch, &mut requests).await;
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > REPLY_TO.len() + 1,
        "{reply_to}"
    );
    let reply = next_delivery(&mut replies).await;
    assert_eq!(body_text(&reply), "re:one");
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "c-1"
    );
    assert_eq!(reply.routing_key.as_str(), reply_to);
    assert_eq!(reply.exchange.as_str(), "");
    assert!(!reply.redelivered);

    // The same channel keeps the same address; a second call works the same way.
    request(&req_ch, "rpc", "two", "c-2").await;
    assert_eq!(answer_one(&srv_ch, &mut requests).await, reply_to);
    let reply = next_delivery(&mut replies).await;
    assert_eq!(body_text(&reply), "re:two");
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "c-2"
    );
}

#[tokio::test]
async fn declaring_the_pseudo_queue_succeeds_with_zero_counts() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = passive_queue(&ch, REPLY_TO).await.unwrap();
    assert_eq!(q.name().as_str(), REPLY_TO);
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
}

#[tokio::test]
async fn a_reply_address_exists_while_its_consumer_does() {
    let broker = TestBroker::start().await;
    let (_rc, req_ch, _replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.channel().await;
    declare_queue(&srv_ch, "rpc").await;
    request(&req_ch, "rpc", "x", "c").await;
    let req = get(&srv_ch, "rpc", true).await.unwrap();
    let reply_to = req.properties.reply_to().clone().unwrap().to_string();
    assert!(passive_queue(&srv_ch, &reply_to).await.is_ok());
    req_ch.close(200, "bye".into()).await.unwrap();
    let (code, text) = refusal(passive_queue(&srv_ch, &reply_to).await);
    assert_eq!(code, Some(404));
    assert_eq!(
        text,
        format!("NOT_FOUND - no queue '{reply_to}' in vhost '/'")
    );
}

#[tokio::test]
async fn consuming_the_pseudo_queue_with_acks_is_refused_with_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let result = within(ch.basic_consume(
        REPLY_TO.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    let (code, text) = refusal(result);
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge"
    );
}

#[tokio::test]
async fn publishing_with_reply_to_but_no_reply_consumer_is_refused_with_406() {
    let broker = TestBroker::start().await;
    let (c, ch) = broker.channel().await;
    let mut events = Box::pin(c.events_listener());
    declare_queue(&ch, "rpc").await;
    request(&ch, "rpc", "x", "c").await;
    // The publish has no reply: the refusal arrives as the channel's close.
    let err = next_error(&mut events).await;
    let (code, text) = (reply_code(&err), reply_text(&err));
    assert_eq!(code, Some(406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - fast reply consumer does not exist"
    );
}

#[tokio::test]
async fn a_second_reply_consumer_on_a_channel_is_refused_with_406() {
    let broker = TestBroker::start().await;
    let (_c, ch, _replies) = requester(&broker).await;
    let result =
        within(ch.basic_consume(REPLY_TO.into(), "".into(), no_ack(), FieldTable::default())).await;
    let (code, text) = refusal(result);
    assert_eq!(code, Some(406));
    assert_eq!(text, "PRECONDITION_FAILED - reply consumer already set");
}

#[tokio::test]
async fn replies_to_a_closed_requester_are_dropped_or_returned_if_mandatory() {
    let broker = TestBroker::start().await;
    let (req_conn, req_ch, _replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.confirming_channel().await;
    declare_queue(&srv_ch, "rpc").await;
    request(&req_ch, "rpc", "x", "c").await;
    let req = get(&srv_ch, "rpc", true).await.unwrap();
    let reply_to = req.properties.reply_to().clone().unwrap().to_string();
    req_conn.close(200, "bye".into()).await.unwrap();

    // Not mandatory: silently dropped (and confirmed).
    let c = publish_and_confirm(&srv_ch, "", &reply_to, b"late", Default::default(), false).await;
    assert!(c.is_ack());
    assert!(c.take_message().is_none());
    // Mandatory: returned with 312 NO_ROUTE.
    let c = publish_and_confirm(&srv_ch, "", &reply_to, b"late", Default::default(), true).await;
    let returned = c.take_message().expect("basic.return");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.routing_key.as_str(), reply_to);
    assert_eq!(returned.delivery.data, b"late");
    // A made-up address is no different.
    let forged = "amq.rabbitmq.reply-to.0123456789abcdef0123456789abcdef";
    let c = publish_and_confirm(&srv_ch, "", forged, b"x", Default::default(), true).await;
    assert_eq!(c.take_message().expect("basic.return").reply_code, 312);
}

#[tokio::test]
async fn a_delivered_mandatory_reply_is_not_returned() {
    let broker = TestBroker::start().await;
    let (_rc, req_ch, mut replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.confirming_channel().await;
    declare_queue(&srv_ch, "rpc").await;
    request(&req_ch, "rpc", "x", "c").await;
    let req = get(&srv_ch, "rpc", true).await.unwrap();
    let reply_to = req.properties.reply_to().clone().unwrap().to_string();
    let c = publish_and_confirm(&srv_ch, "", &reply_to, b"r", Default::default(), true).await;
    assert!(c.is_ack());
    assert!(c.take_message().is_none());
    assert_eq!(body_text(&next_delivery(&mut replies).await), "r");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesters_on_different_connections_get_only_their_own_replies() {
    let broker = TestBroker::start().await;
    let (_sc, srv_ch) = broker.channel().await;
    declare_queue(&srv_ch, "rpc").await;
    let mut requests = consume(&srv_ch, "rpc", "server").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(requester(&broker).await);
    }
    for round in 0..3 {
        for (i, (_, ch, _)) in clients.iter().enumerate() {
            request(ch, "rpc", &format!("{i}-{round}"), &format!("c{i}-{round}")).await;
        }
        for _ in 0..clients.len() {
            answer_one(&srv_ch, &mut requests).await;
        }
    }
    for (i, (_, ch, replies)) in clients.iter_mut().enumerate() {
        for round in 0..3 {
            let reply = next_delivery(replies).await;
            assert_eq!(body_text(&reply), format!("re:{i}-{round}"));
            assert_eq!(
                reply.properties.correlation_id().as_ref().unwrap().as_str(),
                format!("c{i}-{round}")
            );
        }
        // Nothing else arrives for this requester (a barrier round trip first).
        ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
        assert_nothing_buffered(replies).await;
    }
}

#[tokio::test]
async fn cancelling_the_reply_consumer_retires_its_address() {
    let broker = TestBroker::start().await;
    let (_rc, req_ch, replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.channel().await;
    declare_queue(&srv_ch, "rpc").await;
    request(&req_ch, "rpc", "x", "c").await;
    let req = get(&srv_ch, "rpc", true).await.unwrap();
    let reply_to = req.properties.reply_to().clone().unwrap().to_string();
    within(req_ch.basic_cancel(replies.tag(), BasicCancelOptions::default()))
        .await
        .unwrap();
    let (code, _) = refusal(passive_queue(&srv_ch, &reply_to).await);
    assert_eq!(code, Some(404));
}

/// A broker whose users are `guest` (everything) and `bob` (may write nothing).
async fn broker_with_bob() -> (TestBroker, tempfile::TempDir) {
    use warren_definitions::{hash_password_with_salt, HashingAlgorithm};
    let hash = |p: &str| hash_password_with_salt(HashingAlgorithm::Sha256, [7, 7, 7, 7], p);
    let user = |name: &str| {
        serde_json::json!({"name": name, "password_hash": hash(name),
                           "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
    };
    let definitions = serde_json::json!({
        "users": [user("guest"), user("bob")],
        "vhosts": [{"name": "/"}],
        "permissions": [
            {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "bob", "vhost": "/", "configure": ".*", "write": "", "read": ".*"}
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, definitions.to_string()).unwrap();
    let config = warren_broker::Config {
        definitions: Some(file),
        ..Default::default()
    };
    (TestBroker::start_with(config).await, dir)
}

#[tokio::test]
async fn replying_needs_write_permission_on_amq_default() {
    let (broker, _dir) = broker_with_bob().await;
    let (_rc, req_ch, _replies) = requester(&broker).await;
    let (_sc, srv_ch) = broker.channel().await;
    declare_queue(&srv_ch, "rpc").await;
    request(&req_ch, "rpc", "x", "c").await;
    let req = get(&srv_ch, "rpc", true).await.unwrap();
    let reply_to = req.properties.reply_to().clone().unwrap().to_string();
    let bob = broker
        .connect_url(&format!("amqp://bob:bob@{}/%2f", broker.addr))
        .await
        .unwrap();
    let mut events = Box::pin(bob.events_listener());
    let ch = bob.create_channel().await.unwrap();
    publish_to_queue(&ch, &reply_to, b"r").await;
    let err = next_error(&mut events).await;
    let (code, text) = (reply_code(&err), reply_text(&err));
    assert_eq!(code, Some(403));
    assert_eq!(
        text,
        "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'bob'"
    );
}
