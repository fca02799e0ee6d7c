//! Rider location updates on a topic exchange. Each update is published with the routing
//! key `rider.<region>.<rider>`; each region has a queue bound with `rider.<region>.*`,
//! shared by a group of workers (two pools, as two processes would be); an audit queue
//! bound with `rider.#` sees everything.
//!
//! ```text
//! exchange "rider.locations" (topic)
//!   ├─ rider.north.*  → riders.north ─ north-1, north-2 (competing consumers)
//!   ├─ rider.south.*  → riders.south ─ south-1, south-2
//!   └─ rider.#        → riders.audit ─ audit (every update)
//! ```
//!
//! ```sh
//! cargo run --example rider_updates -- --count 40
//! ```

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use warren_client::{
    Error, Exchange, Message, Publisher, PublisherOptions, Queue, Topology, WorkerPool,
    WorkerPoolOptions, DEFAULT_URL,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// How many location updates to publish.
    #[arg(long, default_value_t = 40)]
    count: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Location {
    rider: String,
    lat: f64,
    lon: f64,
}

const REGIONS: [&str; 2] = ["north", "south"];

/// Messages handled, by worker name ("north-1", ..., "audit").
pub type Handled = BTreeMap<String, u64>;

fn topology() -> Topology {
    let mut topology = Topology::new().exchange(Exchange::topic("rider.locations"));
    for region in REGIONS {
        let queue = format!("riders.{region}");
        topology = topology.queue(Queue::durable(queue.as_str())).bind(
            "rider.locations",
            &queue,
            &format!("rider.{region}.*"),
        );
    }
    topology.queue(Queue::durable("riders.audit")).bind(
        "rider.locations",
        "riders.audit",
        "rider.#",
    )
}

/// A worker pool named `name` over `queue`; reports each update it handles on `done`.
async fn worker(
    url: &str,
    name: String,
    queue: &str,
    done: UnboundedSender<String>,
) -> Result<WorkerPool, Error> {
    WorkerPool::start(url, WorkerPoolOptions::new(queue, 2), move |task| {
        let (name, done) = (name.clone(), done.clone());
        async move {
            let location: Location = task.json()?;
            // A real worker would move the rider on the map here.
            let _ = (location.rider, location.lat, location.lon);
            done.send(name)?;
            Ok(())
        }
    })
    .await
}

pub async fn run(url: &str, count: usize) -> Result<Handled, Error> {
    let publisher = Publisher::connect(
        url,
        PublisherOptions {
            topology: topology(),
            ..PublisherOptions::default()
        },
    )
    .await?;
    let (done, mut handled_by) = unbounded_channel();
    let mut pools = Vec::new();
    for region in REGIONS {
        for n in 1..=2 {
            let name = format!("{region}-{n}");
            pools.push(worker(url, name, &format!("riders.{region}"), done.clone()).await?);
        }
    }
    pools.push(worker(url, "audit".into(), "riders.audit", done).await?);

    // Location updates are frequent and soon stale: transient, confirmed as one batch.
    let mut updates = Vec::new();
    for i in 0..count {
        let region = REGIONS[i % REGIONS.len()];
        let rider = format!("r{}", i % 5);
        let location = Location {
            rider: rider.clone(),
            lat: 59.3 + i as f64 / 1000.0,
            lon: 18.0,
        };
        let key = format!("rider.{region}.{rider}");
        updates.push(Message::json("rider.locations", &key, &location)?.transient());
    }
    publisher.send_batch(updates).await?;
    println!("published {count} location updates");

    // Every update reaches its region's group once and the audit once.
    let mut handled = Handled::new();
    for _ in 0..2 * count {
        let Some(name) = handled_by.recv().await else {
            break;
        };
        *handled.entry(name).or_default() += 1;
    }
    for pool in pools {
        pool.shutdown().await?;
    }
    publisher.close().await?;
    for (name, n) in &handled {
        println!("{name}: {n} updates");
    }
    Ok(handled)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args.url, args.count).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rider_updates: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
