//! Each example in `examples/` run against an in-process broker: the example files are
//! included as modules, so the test calls the same `run` that `main` calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{within, TestBroker};
use warren_client::ReplyTo;

#[allow(dead_code)]
#[path = "../examples/hello.rs"]
mod hello;
#[allow(dead_code)]
#[path = "../examples/notifications.rs"]
mod notifications;
#[allow(dead_code)]
#[path = "../examples/rider_updates.rs"]
mod rider_updates;
#[allow(dead_code)]
#[path = "../examples/rpc.rs"]
mod rpc;
#[allow(dead_code)]
#[path = "../examples/task_queue.rs"]
mod task_queue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_sends_and_receives_its_greetings() {
    let broker = TestBroker::start().await;
    let greetings = within(hello::run(&broker.url(), 3)).await.unwrap();
    assert_eq!(
        greetings,
        ["Hello, world #1", "Hello, world #2", "Hello, world #3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_every_channel_once_per_transfer() {
    let broker = TestBroker::start().await;
    let sent = within(notifications::run(&broker.url(), 12)).await.unwrap();
    for queue in ["notify.email", "notify.sms", "notify.push"] {
        let mut ids = sent[queue].clone();
        ids.sort_unstable();
        assert_eq!(ids, (1..=12).collect::<Vec<u64>>(), "{queue}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rider_updates_are_shared_per_region_and_all_audited() {
    let broker = TestBroker::start().await;
    let handled = within(rider_updates::run(&broker.url(), 40)).await.unwrap();
    let group = |region: &str| -> u64 {
        handled
            .iter()
            .filter(|(name, _)| name.starts_with(region))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(group("north-"), 20);
    assert_eq!(group("south-"), 20);
    assert_eq!(handled["audit"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_quotes_come_back_and_a_slow_call_times_out_with_a_reply_queue() {
    let broker = TestBroker::start().await;
    let outcome = within(rpc::run(&broker.url(), 4, ReplyTo::ExclusiveQueue))
        .await
        .unwrap();
    assert_eq!(outcome.quotes, [430, 610, 790, 970]);
    assert!(outcome.slow_call_timed_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_quotes_come_back_over_direct_reply_to() {
    let broker = TestBroker::start().await;
    let outcome = within(rpc::run(&broker.url(), 4, ReplyTo::Direct))
        .await
        .unwrap();
    assert_eq!(outcome.quotes, [430, 610, 790, 970]);
    assert!(outcome.slow_call_timed_out);
}

fn assert_every_submission_settled(report: &task_queue::Report, count: u64) {
    assert_eq!(report.statuses.len() as u64, count);
    for (id, status) in &report.statuses {
        assert_eq!(*status, task_queue::expected_status(*id), "submission {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_judges_every_submission_retries_flaky_ones_and_dead_letters_poison() {
    let broker = TestBroker::start().await;
    let report = within(task_queue::run(&broker.url(), 24, false))
        .await
        .unwrap();
    assert_every_submission_settled(&report, 24);
    let (premium, free) = (report.premium, report.free);
    // 1..=24: poison 7, 14, 21 (3 attempts each); flaky 5, 10, 15, 20 (one retry each).
    assert_eq!(premium.dead_lettered + free.dead_lettered, 3);
    assert_eq!(premium.retried + free.retried, 3 * 2 + 4);
    assert_eq!(premium.processed + free.processed, 21);
    // Premium submissions are the even ids.
    assert_eq!(premium.dead_lettered, 1);
    assert_eq!(premium.processed, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_with_broker_dead_lettering_marks_poison_the_same_way() {
    let broker = TestBroker::start().await;
    let report = within(task_queue::run(&broker.url(), 24, true))
        .await
        .unwrap();
    assert_every_submission_settled(&report, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_submissions_with_a_higher_priority_are_judged_first() {
    use warren_client::{Message, Publisher, PublisherOptions};
    let broker = TestBroker::start().await;
    let publisher = Publisher::connect(
        &broker.url(),
        PublisherOptions {
            topology: task_queue::topology(),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    // A backlog: practice submissions first, then contest ones with a higher priority.
    for (id, priority) in [(1, 1), (2, 1), (3, 1), (4, 9), (5, 9)] {
        let submission = task_queue::submission(id);
        let message = Message::json("judge", "premium", &submission)
            .unwrap()
            .priority(priority);
        within(publisher.send(message)).await.unwrap();
    }
    let (_connection, channel) = broker.channel().await;
    let mut order = Vec::new();
    while let Some(message) = channel
        .basic_get(
            "judge.premium".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let submission: task_queue::Submission =
            warren_client::decode_json(&message.delivery.data).unwrap();
        order.push(submission.id);
    }
    assert_eq!(order, [4, 5, 1, 2, 3]);
}
