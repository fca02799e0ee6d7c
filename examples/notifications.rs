//! A money-transfer service: it records each transfer, answers the user at once, and fans
//! a `transfer.completed` event out (fanout exchange) to the email, SMS and push queues.
//! Each notification service consumes its own queue at its own pace; a slow email
//! provider delays nobody.
//!
//! ```text
//! user ─ transfer() ─ record in the ledger ─ answer "accepted" ─┐
//!                                                               └─ publish (confirmed)
//!   exchange "transfers" (fanout) ─┬─ notify.email ─ email service (2 workers, slow)
//!                                  ├─ notify.sms   ─ SMS service   (1 worker)
//!                                  └─ notify.push  ─ push service  (4 workers, fast)
//! ```
//!
//! ```sh
//! cargo run --example notifications -- --count 20
//! ```

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_client::{
    Error, Exchange, Publisher, PublisherOptions, Queue, Topology, WorkerPool, WorkerPoolOptions,
    DEFAULT_URL,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// How many transfers to make.
    #[arg(long, default_value_t = 20)]
    count: usize,
}

/// The event every notification service receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferCompleted {
    pub id: u64,
    pub from: String,
    pub to: String,
    pub cents: u64,
}

/// The money-transfer service: a ledger (here in memory) and a publisher.
struct TransferService {
    ledger: Mutex<Vec<TransferCompleted>>,
    events: Publisher,
}

impl TransferService {
    /// Records the transfer, publishes its event and answers the user. The answer does not
    /// wait for any notification to be sent, only for the broker to have the event.
    async fn transfer(&self, from: &str, to: &str, cents: u64) -> Result<String, Error> {
        let event = {
            let mut ledger = self
                .ledger
                .lock()
                .map_err(|_| Error::Other("ledger poisoned".into()))?;
            let event = TransferCompleted {
                id: ledger.len() as u64 + 1,
                from: from.into(),
                to: to.into(),
                cents,
            };
            ledger.push(event.clone());
            event
        };
        self.events.publish_json("transfers", "", &event).await?;
        Ok(format!(
            "transfer #{} of {} cents to {to} accepted",
            event.id, cents
        ))
    }
}

/// Starts a notification service: `workers` handlers over `queue`, each taking `pace`
/// per message; counts the notifications it sent per transfer id.
async fn notification_service(
    url: &str,
    queue: &'static str,
    workers: usize,
    pace: Duration,
    sent: Arc<Mutex<HashMap<&'static str, Vec<u64>>>>,
) -> Result<WorkerPool, Error> {
    WorkerPool::start(url, WorkerPoolOptions::new(queue, workers), move |task| {
        let sent = sent.clone();
        async move {
            let event: TransferCompleted = task.json()?;
            tokio::time::sleep(pace).await; // talking to the email/SMS/push provider
            if let Ok(mut sent) = sent.lock() {
                sent.entry(queue).or_default().push(event.id);
            }
            Ok(())
        }
    })
    .await
}

/// Makes `count` transfers and waits until every service has notified every one; returns
/// the transfer ids each queue's service notified.
pub async fn run(url: &str, count: usize) -> Result<HashMap<&'static str, Vec<u64>>, Error> {
    let queues = ["notify.email", "notify.sms", "notify.push"];
    let mut topology = Topology::new().exchange(Exchange::fanout("transfers"));
    for queue in queues {
        topology = topology
            .queue(Queue::durable(queue))
            .bind("transfers", queue, "");
    }
    let events = Publisher::connect(
        url,
        PublisherOptions {
            topology,
            ..PublisherOptions::default()
        },
    )
    .await?;
    let service = TransferService {
        ledger: Mutex::new(Vec::new()),
        events,
    };

    let sent = Arc::new(Mutex::new(HashMap::new()));
    let services = [
        notification_service(
            url,
            "notify.email",
            2,
            Duration::from_millis(20),
            sent.clone(),
        )
        .await?,
        notification_service(url, "notify.sms", 1, Duration::from_millis(5), sent.clone()).await?,
        notification_service(url, "notify.push", 4, Duration::ZERO, sent.clone()).await?,
    ];

    let people = ["ada", "grace", "alan", "edsger"];
    for i in 0..count {
        let (from, to) = (people[i % people.len()], people[(i + 1) % people.len()]);
        let answer = service.transfer(from, to, 100 * (i as u64 + 1)).await?;
        println!("user {from}: {answer}");
    }

    for (queue, pool) in queues.iter().zip(&services) {
        pool.wait_until(|stats| stats.processed as usize >= count)
            .await;
        println!("{queue}: {} notifications sent", pool.stats().processed);
    }
    for pool in services {
        pool.shutdown().await?;
    }
    service.events.close().await?;
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(sent)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args.url, args.count).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notifications: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
