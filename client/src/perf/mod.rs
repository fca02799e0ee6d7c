//! `warren-cli perf`: a load generator in the spirit of RabbitMQ's PerfTest.
//!
//! Flow of a run: [`PerfOptions`] → [`Plan`] (pure) → a lapin connection declares the
//! topology (exchange, queues, bindings) → the load connections open, hand-framed
//! ([`wire`]), with producers in confirm mode and consumers registered → the clock starts →
//! one task per load connection ([`driver`]) records into the shared [`Stats`] while this
//! task prints a progress line each second → at the deadline (or Ctrl-C, or the first
//! failure) everything stops, outstanding confirms are collected, connections close →
//! [`Summary`].

mod arrival;
pub mod consumer;
pub mod cpu;
mod driver;
pub mod options;
pub mod outbound;
pub mod producer;
pub mod stats;
pub mod wire;

pub use options::{PerfOptions, Plan};
pub use stats::Summary;

use crate::error::{redact_url, Error};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use stats::{CpuReport, Percentiles, Reporter, Stats};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the measured window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Interrupted,
    Failed,
}

/// What a producer or consumer task ends with.
type TaskResult = Result<(), Error>;

/// Runs the plan against the broker at `url`, printing progress lines to stderr, and
/// returns the summary. Stops at the plan's duration or on Ctrl-C; closes what it opened
/// even when a producer or consumer fails, and then returns that failure.
pub async fn run(url: &str, plan: &Plan) -> Result<Summary, Error> {
    let options = &plan.options;
    let properties =
        ConnectionProperties::default().with_connection_name("warren-cli perf topology".into());
    let control = Connection::connect(url, properties)
        .await
        .map_err(|e| Error::connect(url, e))?;
    let outcome = run_on(&control, url, plan).await;
    let cleanup = async {
        if options.delete_queues {
            delete_topology(&control, plan).await?;
        }
        control
            .close(200, "perf done".into())
            .await
            .map_err(|e| Error::amqp("closing the connection", e))
    }
    .await;
    let summary = outcome?;
    cleanup?;
    Ok(summary)
}

async fn run_on(control: &Connection, url: &str, plan: &Plan) -> Result<Summary, Error> {
    let options = &plan.options;
    declare_topology(control, plan).await?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let stats = Arc::new(Stats::new(run_id));
    let stop = CancellationToken::new();

    // Everything that talks to the broker before the clock starts: each connection's
    // producers in confirm mode and its consumers registered, so the first message
    // published has someone to go to.
    let mut producers = vec![Vec::new(); plan.connections];
    let mut consumers = vec![Vec::new(); plan.connections];
    for index in 0..options.consumers {
        consumers[plan.consumer_connection(index)].push(consumer::ConsumerConfig {
            queue: plan.consumer_queue(index).to_string(),
            consumer_tag: format!("perf-consumer-{}", index + 1),
            autoack: options.autoack,
            prefetch: options.prefetch,
            multi_ack_every: options.multi_ack_every,
        });
    }
    for index in 0..options.producers {
        producers[plan.producer_connection(index)].push(producer::ProducerConfig {
            route: plan.producer_route(index),
            size: options.size,
            rate: options.rate,
            confirm: options.confirm,
            persistent: options.persistent,
        });
    }
    let target = wire::Target::parse(url)?;
    let mut connections = Vec::with_capacity(plan.connections);
    for (index, (producers, consumers)) in producers.into_iter().zip(consumers).enumerate() {
        let name = format!("warren-cli perf {}", index + 1);
        connections.push(driver::open(&target, &name, producers, consumers).await?);
    }

    let started = Instant::now();
    let tool_cpu_start = cpu::own_cpu();
    let broker_cpu_start = options.broker_pid.and_then(cpu::process_cpu);
    let mut tasks: JoinSet<TaskResult> = JoinSet::new();
    for connection in connections {
        tasks.spawn(driver::run(connection, stats.clone(), stop.clone()));
    }

    let mut reporter = Reporter::new(
        started,
        options.confirm > 0 && options.producers > 0,
        options.consumers > 0,
    );
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(started) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = plan
        .duration
        .map(|d| tokio::time::Instant::from_std(started) + d);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut failure: Option<Error> = None;
    let reason = loop {
        tokio::select! {
            _ = ticker.tick() => eprintln!("{}", reporter.tick(&stats)),
            _ = sleep_until_opt(deadline) => break Stop::Deadline,
            _ = &mut interrupted => break Stop::Interrupted,
            Some(joined) = tasks.join_next() => {
                if let Some(e) = task_failure(joined) {
                    failure = Some(e);
                    break Stop::Failed;
                }
            }
        }
    };
    let window = started.elapsed();
    let at_stop = stats.counts();
    let tool_cpu = tool_cpu_start
        .zip(cpu::own_cpu())
        .map(|(a, b)| b.saturating_sub(a));
    let broker_cpu = broker_cpu_start
        .zip(options.broker_pid.and_then(cpu::process_cpu))
        .map(|(a, b)| b.saturating_sub(a));
    if reason == Stop::Interrupted {
        eprintln!("interrupted: stopping");
    }

    stop.cancel();
    while let Some(joined) = tasks.join_next().await {
        if let (None, Some(e)) = (&failure, task_failure(joined)) {
            failure = Some(e);
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    reporter.drain(&stats);
    let at_end = stats.counts();

    let secs = window.as_secs_f64().max(1e-9);
    Ok(Summary {
        scenario: plan.describe(),
        url: redact_url(url),
        producers: options.producers,
        consumers: options.consumers,
        queues: plan.queues.len(),
        size: options.size,
        confirm: options.confirm,
        persistent: options.persistent,
        durable: options.durable,
        autoack: options.autoack,
        prefetch: options.prefetch,
        rate: options.rate,
        duration_s: secs,
        sent: at_stop.sent,
        confirmed: at_stop.confirmed,
        nacked: at_end.nacked,
        received: at_stop.received,
        publish_rate: at_stop.sent as f64 / secs,
        confirm_rate: at_stop.confirmed as f64 / secs,
        consume_rate: at_stop.received as f64 / secs,
        confirmed_after_stop: at_end.confirmed - at_stop.confirmed,
        latency_us: Percentiles::of(&reporter.total_latency),
        read_latency_us: Percentiles::of(&reporter.total_read_latency),
        confirm_latency_us: Percentiles::of(&reporter.total_confirm),
        cpu: CpuReport::new(tool_cpu, options.broker_pid, broker_cpu, window),
    })
}

/// The error a finished task reports, if any (a task that ends before the stop without an
/// error is not a failure: a producer or consumer only ends early by failing).
fn task_failure(joined: Result<TaskResult, tokio::task::JoinError>) -> Option<Error> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(Error::Other(format!("a perf task failed: {e}"))),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn open_channel(connection: &Connection) -> Result<lapin::Channel, Error> {
    connection
        .create_channel()
        .await
        .map_err(|e| Error::amqp("opening a channel", e))
}

async fn declare_topology(connection: &Connection, plan: &Plan) -> Result<(), Error> {
    let durable = plan.options.durable;
    let channel = open_channel(connection).await?;
    if let Some(exchange) = &plan.exchange {
        let kind = if exchange.fanout {
            ExchangeKind::Fanout
        } else {
            ExchangeKind::Direct
        };
        // rabbitmq-compat: names starting with "amq." are reserved, and declaring one is
        // refused (403) unless passive; the predeclared amq.* exchanges can still be used.
        let passive = exchange.name.starts_with("amq.");
        channel
            .exchange_declare(
                exchange.name.as_str().into(),
                kind,
                ExchangeDeclareOptions {
                    passive,
                    durable,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("declaring exchange '{}'", exchange.name), e))?;
    }
    for queue in &plan.queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("declaring queue '{queue}'"), e))?;
        if let Some(exchange) = &plan.exchange {
            let routing_key = if exchange.fanout { "" } else { queue.as_str() };
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.name.as_str().into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    Error::amqp(
                        format!("binding queue '{queue}' to exchange '{}'", exchange.name),
                        e,
                    )
                })?;
        }
    }
    channel
        .close(200, "declared".into())
        .await
        .map_err(|e| Error::amqp("closing the declaring channel", e))
}

async fn delete_topology(connection: &Connection, plan: &Plan) -> Result<(), Error> {
    let channel = open_channel(connection).await?;
    for queue in &plan.queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| Error::amqp(format!("deleting queue '{queue}'"), e))?;
    }
    if let Some(exchange) = plan
        .exchange
        .as_ref()
        .filter(|e| !e.name.starts_with("amq."))
    {
        channel
            .exchange_delete(
                exchange.name.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("deleting exchange '{}'", exchange.name), e))?;
    }
    channel
        .close(200, "deleted".into())
        .await
        .map_err(|e| Error::amqp("closing the deleting channel", e))
}
