//! The shortest publish and consume: send a few greetings to a queue, then take them back.
//!
//! ```sh
//! cargo run --example hello -- --count 3     # against WARREN_URL or amqp://guest:guest@127.0.0.1:5672/%2f
//! ```

use clap::Parser;
use warren_client::{Message, Publisher, PublisherOptions, Queue, Topology, WorkerPool};
use warren_client::{WorkerPoolOptions, DEFAULT_URL};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// How many greetings to send.
    #[arg(long, default_value_t = 3)]
    count: usize,
}

/// Sends `count` greetings and returns what came back.
pub async fn run(url: &str, count: usize) -> Result<Vec<String>, warren_client::Error> {
    // Publish: the publisher declares the queue and waits for the broker's confirm.
    let topology = Topology::new().queue(Queue::durable("hello"));
    let options = PublisherOptions {
        topology,
        ..PublisherOptions::default()
    };
    let publisher = Publisher::connect(url, options).await?;
    for i in 1..=count {
        let text = format!("Hello, world #{i}");
        publisher
            .send(Message::to_queue("hello", text.as_str()))
            .await?;
        println!("sent     {text}");
    }
    publisher.close().await?;

    // Consume: one worker hands each message over a channel; returning Ok acks it.
    let (received, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let pool = WorkerPool::start(url, WorkerPoolOptions::new("hello", 1), move |task| {
        let received = received.clone();
        async move {
            received.send(task.text())?;
            Ok(())
        }
    })
    .await?;
    let mut greetings = Vec::new();
    while greetings.len() < count {
        let Some(text) = inbox.recv().await else {
            break;
        };
        println!("received {text}");
        greetings.push(text);
    }
    pool.shutdown().await?;
    Ok(greetings)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args.url, args.count).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
