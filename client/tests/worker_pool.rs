//! The worker pool against an in-process broker: acks, concurrency, retries with an
//! attempt count, dead-lettering, graceful shutdown, and surviving a connection drop
//! without losing or double-acking a task.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{within, TestBroker};
use lapin::options::BasicGetOptions;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use warren_client::message::{header_str, header_u32};
use warren_client::{
    Backoff, DeadLetter, Exchange, Message, Publisher, PublisherOptions, Queue, RetryPolicy,
    TaskError, Topology, WorkerPool, WorkerPoolOptions,
};

/// Publishes `bodies` to durable queue `queue` (declared), persistent, confirmed.
async fn fill(broker: &TestBroker, queue: &str, bodies: impl IntoIterator<Item = String>) {
    let publisher = Publisher::connect(
        &broker.url(),
        PublisherOptions {
            topology: Topology::new().queue(Queue::durable(queue)),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    let messages = bodies.into_iter().map(|b| Message::to_queue(queue, b));
    within(publisher.send_batch(messages)).await.unwrap();
    publisher.close().await.unwrap();
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            max_attempts: None,
        },
    }
}

fn pool_options(queue: &str, concurrency: usize) -> WorkerPoolOptions {
    WorkerPoolOptions {
        topology: Topology::new().queue(Queue::durable(queue)),
        ..WorkerPoolOptions::new(queue, concurrency)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_handled_and_acked_with_at_most_concurrency_handlers_at_once() {
    let broker = TestBroker::start().await;
    fill(&broker, "work", (0..100).map(|i| format!("{i}"))).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (running, max_running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let pool = WorkerPool::start(&broker.url(), pool_options("work", 4), {
        let (seen, running, max_running) = (seen.clone(), running.clone(), max_running.clone());
        move |task| {
            let (seen, running, max_running) = (seen.clone(), running.clone(), max_running.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                seen.lock().unwrap().push(task.text());
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    within(pool.wait_until(|s| s.processed == 100)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!(stats.processed, 100);
    assert_eq!((stats.failed, stats.retried, stats.in_flight), (0, 0, 0));
    assert!(max_running.load(Ordering::SeqCst) <= 4);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(seen, (0..100).map(|i| format!("{i}")).collect::<Vec<_>>());
    assert_eq!(broker.ready("work").await, 0, "everything was acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_with_its_attempt_count_until_it_succeeds() {
    let broker = TestBroker::start().await;
    fill(&broker, "flaky", ["job".to_string()]).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let options = WorkerPoolOptions {
        retry: quick_retries(5),
        ..pool_options("flaky", 2)
    };
    let pool = WorkerPool::start(&broker.url(), options, {
        let attempts = attempts.clone();
        move |task| {
            let attempts = attempts.clone();
            async move {
                attempts.lock().unwrap().push(task.attempt);
                if task.attempt < 3 {
                    return Err(TaskError::retry("the service is down"));
                }
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    within(pool.wait_until(|s| s.processed == 1)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    assert_eq!((stats.processed, stats.failed, stats.retried), (1, 2, 2));
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(broker.ready("flaky").await, 0);
}

/// A pool over `queue` whose failures are dead-lettered to exchange `dlx` → queue `dead`.
fn dead_letter_options(queue: &str, max_attempts: u32) -> WorkerPoolOptions {
    WorkerPoolOptions {
        topology: Topology::new()
            .queue(Queue::durable(queue))
            .exchange(Exchange::fanout("dlx"))
            .queue(Queue::durable("dead"))
            .bind("dlx", "dead", ""),
        retry: quick_retries(max_attempts),
        dead_letter: DeadLetter::Publish {
            exchange: "dlx".into(),
            routing_key: None,
        },
        ..WorkerPoolOptions::new(queue, 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_last_attempt_a_message_goes_to_the_dead_letter_exchange_with_its_story() {
    let broker = TestBroker::start().await;
    fill(&broker, "doomed", ["poison".to_string()]).await;
    let pool = WorkerPool::start(
        &broker.url(),
        dead_letter_options("doomed", 3),
        |_task| async { Err::<(), _>(TaskError::retry("always fails")) },
    )
    .await
    .unwrap();
    within(pool.wait_until(|s| s.dead_lettered == 1)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!((stats.failed, stats.retried, stats.processed), (3, 2, 0));
    assert_eq!(broker.ready("doomed").await, 0);
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let dead = channel
        .basic_get("dead".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the dead-lettered copy");
    let headers = dead.delivery.properties.headers().clone();
    assert_eq!(dead.delivery.data, b"poison");
    assert_eq!(header_u32(headers.as_ref(), "x-retry-count"), Some(3));
    assert_eq!(
        header_str(headers.as_ref(), "x-last-error").as_deref(),
        Some("always fails")
    );
    assert_eq!(
        header_str(headers.as_ref(), "x-original-queue").as_deref(),
        Some("doomed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_valid_json_is_dead_lettered_without_retries() {
    #[derive(serde::Deserialize)]
    struct Job {
        #[allow(dead_code)]
        id: u32,
    }
    let broker = TestBroker::start().await;
    fill(&broker, "typed", ["not json".to_string()]).await;
    let pool = WorkerPool::start(
        &broker.url(),
        dead_letter_options("typed", 5),
        |task| async move {
            let _job: Job = task.json()?;
            Ok(())
        },
    )
    .await
    .unwrap();
    within(pool.wait_until(|s| s.dead_lettered == 1)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!((stats.failed, stats.retried), (1, 0));
    assert_eq!(broker.ready("dead").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_a_message_goes_to_its_queues_dead_letter_exchange() {
    let broker = TestBroker::start().await;
    let topology = Topology::new()
        .exchange(Exchange::fanout("rejected"))
        .queue(Queue::durable("rejected.store"))
        .bind("rejected", "rejected.store", "")
        .queue(Queue::durable("strict").dead_letter_exchange("rejected"));
    let publisher = Publisher::connect(
        &broker.url(),
        PublisherOptions {
            topology: topology.clone(),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    within(publisher.send(Message::to_queue("strict", "bad")))
        .await
        .unwrap();
    let options = WorkerPoolOptions {
        topology,
        retry: quick_retries(2),
        dead_letter: DeadLetter::Reject,
        ..WorkerPoolOptions::new("strict", 1)
    };
    let pool = WorkerPool::start(&broker.url(), options, |_task| async {
        Err::<(), _>(TaskError::retry("no"))
    })
    .await
    .unwrap();
    within(pool.wait_until(|s| s.dead_lettered == 1)).await;
    within(pool.shutdown()).await.unwrap();
    assert_eq!(broker.drain("rejected.store").await, ["bad"]);
}

/// A handler that blocks until the gate opens, counting the handlers that started.
struct Gate {
    open: AtomicBool,
    opened: Notify,
    started: AtomicUsize,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicBool::new(false),
            opened: Notify::new(),
            started: AtomicUsize::new(0),
        })
    }

    async fn pass(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.open.load(Ordering::SeqCst) {
                return;
            }
            opened.await;
        }
    }

    /// Waits until `n` handlers have started.
    async fn started(&self, n: usize) {
        while self.started.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_handlers_and_gives_back_unstarted_messages() {
    let broker = TestBroker::start().await;
    fill(&broker, "slow", (0..10).map(|i| format!("{i}"))).await;
    let gate = Gate::new();
    let options = WorkerPoolOptions {
        prefetch: 10,
        ..pool_options("slow", 2)
    };
    let pool = WorkerPool::start(&broker.url(), options, {
        let gate = gate.clone();
        move |_task| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    // Both handlers are busy; the other messages wait (prefetched or in the queue).
    within(gate.started(2)).await;
    assert_eq!(pool.stats().in_flight, 2);
    let stopping = tokio::spawn(pool.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the running handlers"
    );
    gate.open();
    let stats = within(stopping).await.unwrap().unwrap();
    assert_eq!(stats.processed, 2, "only the running handlers finished");
    assert_eq!(stats.in_flight, 0);
    assert_eq!(gate.started.load(Ordering::SeqCst), 2);
    assert_eq!(
        broker.ready("slow").await,
        8,
        "the rest went back to the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_survives_a_connection_drop_without_losing_or_double_acking_a_task() {
    let mut broker = TestBroker::start().await;
    fill(&broker, "durable.tasks", (0..50).map(|i| format!("{i}"))).await;
    let gate = Gate::new();
    let handled: Arc<Mutex<HashMap<String, (u32, bool)>>> = Arc::default();
    let options = WorkerPoolOptions {
        prefetch: 8,
        reconnect: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            max_attempts: None,
        },
        ..pool_options("durable.tasks", 4)
    };
    let pool = WorkerPool::start(&broker.url(), options, {
        let (gate, handled) = (gate.clone(), handled.clone());
        move |task| {
            let (gate, handled) = (gate.clone(), handled.clone());
            async move {
                gate.pass().await;
                let mut handled = handled.lock().unwrap();
                let entry = handled.entry(task.text()).or_insert((0, false));
                entry.0 += 1;
                entry.1 |= task.redelivered;
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    // Four handlers are stuck mid-task, more messages wait prefetched: then the
    // connection drops.
    within(gate.started(4)).await;
    broker.drop_connections().await;
    // The stuck handlers finish after the drop: their acks cannot reach the broker.
    gate.open();
    within(pool.wait_until(|s| s.processed == 50)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!(
        stats.reconnects, 1,
        "one reconnect; no channel closed by a bad ack"
    );
    assert_eq!(stats.processed, 50, "each task acked exactly once");
    assert_eq!(stats.failed, 0);
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 50, "no task lost");
    for (task, (count, redelivered)) in handled.iter() {
        // Handled twice only if it was in flight at the drop and came back redelivered.
        assert!(
            *count == 1 || (*count == 2 && *redelivered),
            "task {task}: {count}"
        );
    }
    assert_eq!(broker.ready("durable.tasks").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_that_cannot_be_published_leaves_the_message_in_the_queue() {
    let broker = TestBroker::start().await;
    fill(&broker, "no-dlx", ["job".to_string()]).await;
    let options = WorkerPoolOptions {
        retry: quick_retries(1),
        dead_letter: DeadLetter::Publish {
            exchange: "missing-dlx".into(),
            routing_key: None,
        },
        reconnect: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            max_attempts: None,
        },
        ..pool_options("no-dlx", 1)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::start(&broker.url(), options, {
        let calls = calls.clone();
        move |_task| {
            let calls = calls.clone();
            async move {
                // Fails once: the dead-letter copy to a missing exchange fails (the broker
                // closes the publishing channel), so the message must come back.
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(TaskError::retry("first call fails"));
                }
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    within(pool.wait_until(|s| s.processed == 1)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!((stats.failed, stats.dead_lettered), (1, 0));
    // The session starts over once the publishing channel is seen closed (whether the
    // requeued message was handled again before or after that is a race).
    assert!(stats.reconnects <= 1);
    assert_eq!(broker.ready("no-dlx").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_worker_handles_messages_in_queue_order() {
    let broker = TestBroker::start().await;
    fill(&broker, "ordered", (0..50).map(|i| format!("{i}"))).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = WorkerPoolOptions {
        prefetch: 20,
        ..pool_options("ordered", 1)
    };
    let pool = WorkerPool::start(&broker.url(), options, {
        let seen = seen.clone();
        move |task| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(task.text());
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    within(pool.wait_until(|s| s.processed == 50)).await;
    within(pool.shutdown()).await.unwrap();
    let expected: Vec<String> = (0..50).map(|i| format!("{i}")).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_resumes_after_a_broker_restart_with_every_durable_task() {
    let mut broker = TestBroker::start().await;
    fill(&broker, "restart.tasks", (0..30).map(|i| format!("{i}"))).await;
    let gate = Gate::new();
    let handled: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let options = WorkerPoolOptions {
        reconnect: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            max_attempts: None,
        },
        ..pool_options("restart.tasks", 3)
    };
    let pool = WorkerPool::start(&broker.url(), options, {
        let (gate, handled) = (gate.clone(), handled.clone());
        move |task| {
            let (gate, handled) = (gate.clone(), handled.clone());
            async move {
                gate.pass().await;
                *handled.lock().unwrap().entry(task.text()).or_default() += 1;
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    within(gate.started(3)).await;
    broker.restart().await;
    gate.open();
    within(pool.wait_until(|s| s.processed == 30)).await;
    let stats = within(pool.shutdown()).await.unwrap();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.processed, 30);
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 30, "no task lost");
    assert_eq!(broker.ready("restart.tasks").await, 0);
}
