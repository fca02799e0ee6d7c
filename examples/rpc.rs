//! Request/reply over the broker that reads like a function call: a fare-quote service
//! answers on its request queue; the client calls it with a timeout. Replies come back by
//! direct reply-to (`amq.rabbitmq.reply-to`), so the client declares no queue of its own.
//!
//! ```text
//! client ─ request (reply_to, correlation_id) → queue "rpc.fare_quote" → fare service
//!    ↑                                                                        │
//!    └──────────────── reply (same correlation_id) ── amq.rabbitmq.reply-to ──┘
//! ```
//!
//! ```sh
//! cargo run --example rpc -- --count 5
//! cargo run --example rpc -- --count 5 --reply-queue   # a broker without direct reply-to
//! ```

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use warren_client::{
    Error, Queue, ReplyTo, RpcClient, RpcServer, Topology, WorkerPoolOptions, DEFAULT_URL,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// How many quotes to ask for.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Receive replies on an exclusive queue instead of direct reply-to.
    #[arg(long)]
    reply_queue: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct QuoteRequest {
    pub km: f64,
    /// The service takes this long to answer (to show a timeout).
    pub think_ms: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub cents: u64,
}

/// What the calls returned: the quotes, then whether the slow call timed out.
pub struct Outcome {
    pub quotes: Vec<u64>,
    pub slow_call_timed_out: bool,
}

pub async fn run(url: &str, count: usize, reply: ReplyTo) -> Result<Outcome, Error> {
    // The service: 2 workers over the request queue; the handler's value is the reply.
    let options = WorkerPoolOptions {
        topology: Topology::new().queue(Queue::transient("rpc.fare_quote")),
        ..WorkerPoolOptions::new("rpc.fare_quote", 2)
    };
    let server = RpcServer::start_json(url, options, |request: QuoteRequest| async move {
        tokio::time::sleep(Duration::from_millis(request.think_ms)).await;
        Ok(Quote {
            cents: 250 + (request.km * 120.0) as u64,
        })
    })
    .await?;

    // The client: each call waits for its own reply, or gives up after the timeout.
    let client = RpcClient::connect(url, reply).await?;
    let mut quotes = Vec::new();
    for i in 1..=count {
        let request = QuoteRequest {
            km: i as f64 * 1.5,
            think_ms: 0,
        };
        let quote: Quote = client
            .call_json("rpc.fare_quote", &request, Duration::from_secs(5))
            .await?;
        println!("{:>4.1} km costs {} cents", request.km, quote.cents);
        quotes.push(quote.cents);
    }
    let slow = QuoteRequest {
        km: 3.0,
        think_ms: 1_000,
    };
    let slow_call_timed_out = match client
        .call_json::<_, Quote>("rpc.fare_quote", &slow, Duration::from_millis(100))
        .await
    {
        Err(Error::Timeout { .. }) => {
            println!("a quote that takes 1 s timed out after 100 ms, as asked");
            true
        }
        Err(e) => return Err(e),
        Ok(_) => false,
    };
    client.close().await?;
    server.shutdown().await?;
    Ok(Outcome {
        quotes,
        slow_call_timed_out,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let reply = if args.reply_queue {
        ReplyTo::ExclusiveQueue
    } else {
        ReplyTo::Direct
    };
    match run(&args.url, args.count, reply).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
