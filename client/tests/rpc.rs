//! Request/reply against an in-process broker: an RpcServer answering an RpcClient, with
//! correlation ids, concurrent calls, timeouts and remote errors. Replies through a
//! server-named exclusive queue work today; direct reply-to awaits broker support.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{within, TestBroker};
use std::time::Duration;
use warren_client::{
    Error, Queue, ReplyTo, RpcClient, RpcServer, TaskError, Topology, WorkerPoolOptions,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sum {
    sum: i64,
}

async fn adder(broker: &TestBroker) -> RpcServer {
    let options = WorkerPoolOptions {
        topology: Topology::new().queue(Queue::transient("adder")),
        ..WorkerPoolOptions::new("adder", 4)
    };
    RpcServer::start_json(&broker.url(), options, |req: Add| async move {
        if req.a < 0 {
            return Err(TaskError::permanent("negative numbers are not supported"));
        }
        Ok(Sum { sum: req.a + req.b })
    })
    .await
    .unwrap()
}

async fn calls_are_answered(reply: ReplyTo) {
    let broker = TestBroker::start().await;
    let server = adder(&broker).await;
    let client = RpcClient::connect(&broker.url(), reply).await.unwrap();
    let timeout = Duration::from_secs(10);
    // Concurrent calls each get their own answer back.
    let calls = (0..20).map(|i| {
        let client = client.clone();
        async move {
            client
                .call_json::<_, Sum>("adder", &Add { a: i, b: 1000 }, timeout)
                .await
        }
    });
    let answers = within(futures_util::future::join_all(calls)).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer.unwrap(),
            Sum {
                sum: i as i64 + 1000
            }
        );
    }
    // A handler error is an error for the caller, at once.
    let error = within(client.call_json::<_, Sum>("adder", &Add { a: -1, b: 0 }, timeout))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("negative numbers are not supported"),
        "{error}"
    );
    client.close().await.unwrap();
    let stats = server.shutdown().await.unwrap();
    assert_eq!(stats.processed, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_through_an_exclusive_reply_queue() {
    calls_are_answered(ReplyTo::ExclusiveQueue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_through_direct_reply_to() {
    calls_are_answered(ReplyTo::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_answers_times_out() {
    let broker = TestBroker::start().await;
    // The queue exists but has no server.
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            "unserved".into(),
            Default::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let client = RpcClient::connect(&broker.url(), ReplyTo::ExclusiveQueue)
        .await
        .unwrap();
    let error = within(client.call_json::<_, Sum>(
        "unserved",
        &Add { a: 1, b: 2 },
        Duration::from_millis(200),
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_queue_that_does_not_exist_fails_at_once() {
    let broker = TestBroker::start().await;
    let client = RpcClient::connect(&broker.url(), ReplyTo::ExclusiveQueue)
        .await
        .unwrap();
    let error = within(client.call_json::<_, Sum>(
        "no-such-service",
        &Add { a: 1, b: 2 },
        Duration::from_secs(20),
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Returned { .. }), "{error:?}");
    assert!(error.to_string().contains("no-such-service"), "{error}");
}
