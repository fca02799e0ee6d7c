//! A code-judging service. Each submission is stored with status `processing` and queued:
//! premium submissions on a priority queue served by a large pool of judges, free ones on
//! a queue served by a small pool. Judges report verdicts back on a results queue, and a
//! results consumer updates the statuses. A judge that fails (the sandbox is down) is
//! retried with backoff; a poison submission that crashes every attempt is dead-lettered
//! and marked `poisoned`.
//!
//! ```text
//! submit ─ status "processing" ─ exchange "judge" (direct)
//!   ├─ premium → judge.premium (x-max-priority 10) ─ 8 judges, prefetch 16 ─┐
//!   └─ free    → judge.free                        ─ 2 judges, prefetch 2  ─┤
//!        verdict → judge.results ─ results consumer ─ status accepted / wrong_answer
//!        3 failed attempts → exchange "judge.dead" → judge.poison ─ status poisoned
//! ```
//!
//! Retries are copies of the submission with `x-retry-count` raised (the worker pool's
//! design: no broker TTL needed). Dead-lettering is a confirmed copy to `judge.dead` by
//! default; with `--broker-dead-lettering` the judge rejects the message and the queue's
//! `x-dead-letter-exchange` takes it there (RabbitMQ semantics).
//!
//! ```sh
//! cargo run --example task_queue -- --count 24
//! ```

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use warren_client::{
    Backoff, DeadLetter, Error, Exchange, Message, PoolStats, Publisher, PublisherOptions, Queue,
    RetryPolicy, TaskError, Topology, WorkerPool, WorkerPoolOptions, DEFAULT_URL,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// How many submissions to judge.
    #[arg(long, default_value_t = 24)]
    count: usize,
    /// Dead-letter by rejecting (the queues' x-dead-letter-exchange) instead of a copy.
    #[arg(long)]
    broker_dead_lettering: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub id: u64,
    pub user: String,
    pub premium: bool,
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    id: u64,
    verdict: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Processing,
    Accepted,
    WrongAnswer,
    Poisoned,
}

/// The final statuses and each pool's counts.
pub struct Report {
    pub statuses: BTreeMap<u64, Status>,
    pub premium: PoolStats,
    pub free: PoolStats,
}

/// How long the run waits for the last verdict.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The submissions database (here a map in memory).
type Store = Arc<Mutex<BTreeMap<u64, Status>>>;

/// Submission `i` of a run: mostly correct, some wrong, every 5th flaky (the sandbox fails
/// its first attempt), every 7th a poison (crashes every attempt).
pub fn submission(i: u64) -> Submission {
    let code = match i {
        i if i.is_multiple_of(7) => "fork bomb",
        i if i.is_multiple_of(5) => "flaky",
        i if i.is_multiple_of(3) => "print(41)",
        _ => "print(42)",
    };
    Submission {
        id: i,
        user: format!("user{}", i % 4),
        premium: i.is_multiple_of(2),
        code: code.into(),
    }
}

/// The verdict a correct run gives submission `i`.
pub fn expected_status(i: u64) -> Status {
    match submission(i).code.as_str() {
        "fork bomb" => Status::Poisoned,
        "print(41)" => Status::WrongAnswer,
        _ => Status::Accepted,
    }
}

pub fn topology() -> Topology {
    Topology::new()
        .exchange(Exchange::direct("judge"))
        .exchange(Exchange::fanout("judge.dead"))
        .queue(
            Queue::durable("judge.premium")
                .max_priority(10)
                .dead_letter_exchange("judge.dead"),
        )
        .queue(Queue::durable("judge.free").dead_letter_exchange("judge.dead"))
        .queue(Queue::durable("judge.results"))
        .queue(Queue::durable("judge.poison"))
        .bind("judge", "judge.premium", "premium")
        .bind("judge", "judge.free", "free")
        .bind("judge.dead", "judge.poison", "")
}

/// Judges the code; a failure of the sandbox is worth a retry.
async fn judge(submission: &Submission, attempt: u32) -> Result<Status, TaskError> {
    tokio::time::sleep(Duration::from_millis(5)).await; // compile and run the tests
    match submission.code.as_str() {
        "fork bomb" => Err(TaskError::retry("the sandbox crashed")),
        "flaky" if attempt == 1 => Err(TaskError::retry("no sandbox available")),
        "print(42)" | "flaky" => Ok(Status::Accepted),
        _ => Ok(Status::WrongAnswer),
    }
}

/// A pool of `judges` over `queue` that publishes each verdict to `judge.results`.
async fn judges(
    url: &str,
    queue: &str,
    judges: usize,
    prefetch: u16,
    dead_letter: DeadLetter,
    results: Publisher,
) -> Result<WorkerPool, Error> {
    let options = WorkerPoolOptions {
        prefetch,
        retry: RetryPolicy {
            max_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_secs(1),
                max_attempts: None,
            },
        },
        dead_letter,
        ..WorkerPoolOptions::new(queue, judges)
    };
    WorkerPool::start(url, options, move |task| {
        let results = results.clone();
        async move {
            let submission: Submission = task.json()?;
            let verdict = judge(&submission, task.attempt).await?;
            let verdict = Verdict {
                id: submission.id,
                verdict,
            };
            results.publish_json("", "judge.results", &verdict).await?;
            Ok(())
        }
    })
    .await
}

/// A consumer of `queue` that sets each message's status in the store.
async fn status_updater(
    url: &str,
    queue: &str,
    store: Store,
    settled: UnboundedSender<u64>,
) -> Result<WorkerPool, Error> {
    let poisoned = queue == "judge.poison";
    WorkerPool::start(url, WorkerPoolOptions::new(queue, 1), move |task| {
        let (store, settled) = (store.clone(), settled.clone());
        async move {
            let (id, status) = if poisoned {
                (task.json::<Submission>()?.id, Status::Poisoned)
            } else {
                let verdict: Verdict = task.json()?;
                (verdict.id, verdict.verdict)
            };
            if let Ok(mut store) = store.lock() {
                store.insert(id, status);
            }
            settled.send(id)?;
            Ok(())
        }
    })
    .await
}

pub async fn run(url: &str, count: usize, broker_dead_lettering: bool) -> Result<Report, Error> {
    let publisher = Publisher::connect(
        url,
        PublisherOptions {
            topology: topology(),
            ..PublisherOptions::default()
        },
    )
    .await?;
    let dead_letter = if broker_dead_lettering {
        DeadLetter::Reject
    } else {
        DeadLetter::Publish {
            exchange: "judge.dead".into(),
            routing_key: None,
        }
    };
    let store: Store = Arc::default();
    let (settled, mut settled_ids) = unbounded_channel();
    let premium = judges(
        url,
        "judge.premium",
        8,
        16,
        dead_letter.clone(),
        publisher.clone(),
    )
    .await?;
    let free = judges(url, "judge.free", 2, 2, dead_letter, publisher.clone()).await?;
    let updaters = [
        status_updater(url, "judge.results", store.clone(), settled.clone()).await?,
        status_updater(url, "judge.poison", store.clone(), settled).await?,
    ];

    for i in 1..=count as u64 {
        let submission = submission(i);
        if let Ok(mut store) = store.lock() {
            store.insert(i, Status::Processing);
        }
        let tier = if submission.premium {
            "premium"
        } else {
            "free"
        };
        // Premium users in a contest (every 4th) jump the premium queue.
        let priority = if i.is_multiple_of(4) { 9 } else { 1 };
        let message = Message::json("judge", tier, &submission)?.priority(priority);
        publisher.send(message).await?;
    }
    println!("submitted {count} solutions");

    // Every submission ends with a verdict or as poison; a broker that drops rejected
    // messages (no dead-lettering) would leave some `processing`: give up waiting then.
    let all_settled = tokio::time::timeout(SETTLE_TIMEOUT, async {
        for _ in 0..count {
            settled_ids.recv().await;
        }
    })
    .await;
    if all_settled.is_err() {
        println!("some submissions were not settled within {SETTLE_TIMEOUT:?}");
    }
    let premium = premium.shutdown().await?;
    let free = free.shutdown().await?;
    for updater in updaters {
        updater.shutdown().await?;
    }
    publisher.close().await?;
    let statuses = store.lock().map(|s| s.clone()).unwrap_or_default();
    for (id, status) in &statuses {
        println!("submission {id:>3} ({}): {status:?}", submission(*id).code);
    }
    println!(
        "premium judges: {} judged, {} retried, {} dead-lettered; free judges: {} judged, {} retried, {} dead-lettered",
        premium.processed, premium.retried, premium.dead_lettered, free.processed, free.retried, free.dead_lettered
    );
    Ok(Report {
        statuses,
        premium,
        free,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args.url, args.count, args.broker_dead_lettering).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task_queue: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
