//! The publisher against an in-process broker: confirms per message and per batch,
//! persistence chosen from the declared topology, returns and nacks as errors, and what
//! happens to messages when the connection is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{within, TestBroker};
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use std::time::Duration;
use warren_client::{
    Error, Exchange, Message, OnConnectionLoss, Publisher, PublisherOptions, Queue, Topology,
};

fn options(topology: Topology) -> PublisherOptions {
    PublisherOptions {
        topology,
        ..PublisherOptions::default()
    }
}

/// The delivery mode of the next message in `queue`.
async fn delivery_mode(broker: &TestBroker, queue: &str) -> Option<u8> {
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    *message.delivery.properties.delivery_mode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_durable_targets_are_persistent_and_to_transient_ones_are_not() {
    let broker = TestBroker::start().await;
    let topology = Topology::new()
        .queue(Queue::durable("orders"))
        .queue(Queue::transient("scratch"));
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    within(publisher.send(Message::to_queue("orders", "o-1")))
        .await
        .unwrap();
    within(publisher.send(Message::to_queue("scratch", "s-1")))
        .await
        .unwrap();
    within(publisher.send(Message::to_queue("scratch", "s-2").persistent()))
        .await
        .unwrap();
    assert_eq!(delivery_mode(&broker, "orders").await, Some(2));
    assert_eq!(delivery_mode(&broker, "scratch").await, Some(1));
    assert_eq!(delivery_mode(&broker, "scratch").await, Some(2));
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_confirmed_as_a_whole_and_lands_in_order() {
    let broker = TestBroker::start().await;
    let topology = Topology::new()
        .exchange(Exchange::direct("jobs"))
        .queue(Queue::durable("jobs.batch"))
        .bind("jobs", "jobs.batch", "batch");
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    let messages = (0..200).map(|i| Message::new("jobs", "batch", format!("job-{i}")));
    let confirmed = within(publisher.send_batch(messages)).await.unwrap();
    assert_eq!(confirmed, 200);
    let bodies = broker.drain("jobs.batch").await;
    let expected: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
    assert_eq!(bodies, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_can_be_awaited_one_by_one_after_publishing_several() {
    let broker = TestBroker::start().await;
    let topology = Topology::new().queue(Queue::durable("one-by-one"));
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..10 {
        pending.push(
            publisher
                .publish(Message::to_queue("one-by-one", format!("{i}")))
                .await
                .unwrap(),
        );
    }
    for confirm in pending {
        within(confirm.wait()).await.unwrap();
    }
    assert_eq!(broker.ready("one-by-one").await, 10);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Transfer {
    id: u64,
    cents: i64,
    to: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_payloads_round_trip_with_their_content_type() {
    let broker = TestBroker::start().await;
    let topology = Topology::new().queue(Queue::durable("transfers"));
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    let transfer = Transfer {
        id: 42,
        cents: 12_50,
        to: "ada".into(),
    };
    within(publisher.publish_json("", "transfers", &transfer))
        .await
        .unwrap();
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("transfers".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        message
            .delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/json")
    );
    let decoded: Transfer = warren_client::decode_json(&message.delivery.data).unwrap();
    assert_eq!(decoded, transfer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_mandatory_message_is_returned_as_an_error() {
    let broker = TestBroker::start().await;
    let publisher = Publisher::connect(&broker.url(), PublisherOptions::default())
        .await
        .unwrap();
    let error = within(publisher.send(Message::new("amq.direct", "nobody", "x").mandatory()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Returned {
                reply_code: 312,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("NO_ROUTE"), "{error}");
    // Without mandatory the broker drops it, and confirms it.
    within(publisher.send(Message::new("amq.direct", "nobody", "x")))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_missing_exchange_fails_with_the_brokers_words_and_the_next_one_works() {
    let broker = TestBroker::start().await;
    let topology = Topology::new().queue(Queue::durable("after-404"));
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    let error = within(publisher.send(Message::new("no-such-exchange", "k", "x")))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("NOT_FOUND"), "{text}");
    assert!(text.contains("no-such-exchange"), "{text}");
    within(publisher.send(Message::to_queue("after-404", "ok")))
        .await
        .unwrap();
    assert_eq!(broker.ready("after-404").await, 1);
    // The channel was reopened on the same connection.
    assert_eq!(publisher.connections_opened(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_connection_drop_the_publisher_reconnects_and_declares_its_topology_again() {
    let mut broker = TestBroker::start().await;
    let topology = Topology::new()
        .exchange(Exchange::fanout("events"))
        .queue(Queue::transient("events.audit"))
        .bind("events", "events.audit", "");
    let publisher = Publisher::connect(&broker.url(), options(topology))
        .await
        .unwrap();
    within(publisher.send(Message::new("events", "", "before")))
        .await
        .unwrap();
    broker.drop_connections().await;
    // While the publisher is away, its queue disappears.
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete("events.audit".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    within(publisher.send(Message::new("events", "", "after")))
        .await
        .unwrap();
    assert_eq!(publisher.connections_opened(), 2);
    assert_eq!(broker.drain("events.audit").await, ["after"]);
}

/// A publish the broker has not taken yet (its socket is not read under the disk alarm)
/// when the connection drops: with `Retry` it is published again on the new connection,
/// with `Fail` it fails with ConnectionLost. Either way it is not silently dropped.
async fn publish_in_flight_during_a_drop(policy: OnConnectionLoss) -> (Result<(), Error>, u32) {
    let mut broker = TestBroker::start().await;
    let topology = Topology::new().queue(Queue::durable("in-flight"));
    let publisher = Publisher::connect(
        &broker.url(),
        PublisherOptions {
            topology,
            on_connection_loss: policy,
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    // The alarm blocks connections that have published before.
    within(publisher.send(Message::to_queue("in-flight", "warm-up")))
        .await
        .unwrap();
    broker.block_publishers(true);
    // Whether lapin holds the publish back (it may have seen connection.blocked) or writes
    // it to the unread socket, its outcome is decided by the drop.
    let waiting = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.send(Message::to_queue("in-flight", "m")).await }
    });
    // Give the frames time to reach the blocked socket; the outcome does not depend on it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.drop_connections().await;
    broker.block_publishers(false);
    let outcome = within(waiting).await.unwrap();
    (outcome, broker.ready("in-flight").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retry_a_message_in_flight_during_a_drop_is_published_again() {
    let (outcome, ready) =
        publish_in_flight_during_a_drop(OnConnectionLoss::Retry { attempts: 3 }).await;
    outcome.unwrap();
    assert!(ready >= 2, "the message is in the queue (at least once)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_a_message_in_flight_during_a_drop_fails_with_connection_lost() {
    let (outcome, _) = publish_in_flight_during_a_drop(OnConnectionLoss::Fail).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(error.to_string().contains("may or may not"), "{error}");
}

#[tokio::test]
async fn a_closed_publisher_refuses_to_publish() {
    let broker = TestBroker::start().await;
    let publisher = Publisher::connect(&broker.url(), PublisherOptions::default())
        .await
        .unwrap();
    publisher.close().await.unwrap();
    let error = publisher
        .send(Message::to_queue("q", "x"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_fails_with_the_connect_error_once_reconnect_attempts_run_out() {
    let mut broker = TestBroker::start().await;
    let publisher = Publisher::connect(
        &broker.url(),
        PublisherOptions {
            reconnect: warren_client::Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
                max_attempts: Some(3),
            },
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    broker.stop_serving().await;
    let error = within(publisher.send(Message::to_queue("q", "x")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}
