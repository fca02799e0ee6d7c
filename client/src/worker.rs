//! The worker pool: N concurrent handlers over one queue, with prefetch, retries with
//! backoff, dead-lettering after a maximum number of attempts, reconnects and graceful
//! shutdown.
//!
//! ```text
//! supervisor task: connect → declare topology → basic.qos(prefetch) → basic.consume
//!   └─ each delivery → a handler task (at most `concurrency` run the handler at once)
//!        Ok                          → basic.ack
//!        Err, attempts left          → wait the backoff, publish a copy to the queue with
//!                                      x-retry-count + 1 (confirmed), then basic.ack
//!        Err, attempts used up       → dead-letter (see DeadLetter), then basic.ack / nack
//!   connection lost → running handlers finish (their acks are void: the broker gives the
//!                     messages back) → reconnect with backoff → consume again
//! ```
//!
//! Retries are copies published by the pool rather than `nack(requeue)`: the attempt count
//! travels in the message (`x-retry-count`), the delay needs no broker TTL, and a failing
//! message goes to the back of the queue instead of spinning at its head. A message is
//! acked only after its copy (or dead-letter copy) is confirmed, so a connection lost in
//! between loses nothing; it can at worst duplicate the message (at-least-once).

use crate::connect::{connect, connect_with_retry, Backoff};
use crate::error::Error;
use crate::message::{decode_json, header_u32};
use crate::topology::Topology;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The header carrying how many times a message has failed so far.
pub const RETRY_COUNT_HEADER: &str = "x-retry-count";
/// On a dead-lettered copy: the handler's last error.
pub const LAST_ERROR_HEADER: &str = "x-last-error";
/// On a dead-lettered copy: the queue it was taken from.
pub const ORIGINAL_QUEUE_HEADER: &str = "x-original-queue";

/// When a failing message is tried again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Handler runs per message, the first included; after the last failure the message
    /// is dead-lettered. 1 means no retries.
    pub max_attempts: u32,
    /// The wait before each retry (`delay(1)` before the second attempt, ...).
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(30),
                max_attempts: None,
            },
        }
    }
}

/// Where a message goes after its last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// `basic.nack` with `requeue = false`: the queue's `x-dead-letter-exchange` takes it
    /// (RabbitMQ semantics, with an `x-death` header); without one the broker drops it.
    Reject,
    /// Publish a copy to `exchange` (with `routing_key`, or the message's own when `None`)
    /// carrying `x-retry-count`, `x-last-error` and `x-original-queue`, wait for its
    /// confirm, then ack the original. Works without broker dead-lettering support.
    Publish {
        exchange: String,
        routing_key: Option<String>,
    },
}

/// How a [`WorkerPool`] behaves.
#[derive(Debug, Clone)]
pub struct WorkerPoolOptions {
    pub queue: String,
    /// Declared on connect and after every reconnect (typically the queue itself).
    pub topology: Topology,
    /// Handlers running at once.
    pub concurrency: usize,
    /// Unacked messages the broker may send ahead (`basic.qos`); at least `concurrency`
    /// keeps every handler busy.
    pub prefetch: u16,
    pub retry: RetryPolicy,
    pub dead_letter: DeadLetter,
    /// Delays between reconnect attempts.
    pub reconnect: Backoff,
    /// The connection's name, shown in the broker's connection listing.
    pub name: String,
}

impl WorkerPoolOptions {
    /// `concurrency` handlers over `queue` (which must exist, or be in `topology`).
    pub fn new(queue: &str, concurrency: usize) -> WorkerPoolOptions {
        let concurrency = concurrency.max(1);
        WorkerPoolOptions {
            queue: queue.to_string(),
            topology: Topology::default(),
            concurrency,
            prefetch: u16::try_from(concurrency.saturating_mul(2)).unwrap_or(u16::MAX),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetter::Reject,
            reconnect: Backoff::default(),
            name: format!("warren-client worker pool '{queue}'"),
        }
    }
}

/// A message handed to a handler.
#[derive(Debug, Clone)]
pub struct Task {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    pub exchange: String,
    pub routing_key: String,
    /// The broker delivered it before (e.g. its handler's connection was lost).
    pub redelivered: bool,
    /// Which attempt this is: 1 the first time, 2 on the first retry, ...
    pub attempt: u32,
}

impl Task {
    /// The body decoded from JSON. A body that does not decode is a permanent failure:
    /// retrying will not fix it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        decode_json(&self.body).map_err(|e| TaskError::permanent(e.to_string()))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a handler failed, and whether trying again may help.
#[derive(Debug, Clone)]
pub struct TaskError {
    pub message: String,
    /// `false`: dead-letter at once, whatever attempts are left.
    pub retry: bool,
}

impl TaskError {
    /// A failure worth retrying (a timeout, a service briefly down).
    pub fn retry(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retry: true,
        }
    }

    /// A failure no retry will fix (a malformed message): dead-letter it now.
    pub fn permanent(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retry: false,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts with `?` into a retryable failure.
impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> TaskError {
        TaskError::retry(error.to_string())
    }
}

/// What the pool has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Messages handled successfully and acked.
    pub processed: u64,
    /// Handler runs that failed (each retry that fails counts again).
    pub failed: u64,
    /// Copies published for another attempt.
    pub retried: u64,
    /// Messages dead-lettered (attempts used up, or a permanent failure).
    pub dead_lettered: u64,
    /// Messages taken by a handler and not yet settled (running, or waiting out a retry
    /// backoff). Messages the broker sent ahead (prefetch) wait unacked, uncounted.
    pub in_flight: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    changed: Notify,
}

impl Counters {
    fn add(&self, counter: &AtomicU64, delta: u64) {
        counter.fetch_add(delta, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn finish(&self, counter: Option<&AtomicU64>) {
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> PoolStats {
        PoolStats {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// A running worker pool.
pub struct WorkerPool {
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    supervisor: JoinHandle<Result<(), Error>>,
}

impl WorkerPool {
    /// Connects, declares the topology and starts consuming `options.queue`, running
    /// `handler` for each message. Errors of the first connection are returned here; later
    /// connection losses are retried in the background.
    pub async fn start<H, F>(
        url: &str,
        options: WorkerPoolOptions,
        handler: H,
    ) -> Result<WorkerPool, Error>
    where
        H: Fn(Task) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let connection = connect(url, &options.name).await?;
        let session = Session::open(connection, &options).await?;
        let counters = Arc::new(Counters::default());
        let shutdown = CancellationToken::new();
        let pool = Arc::new(Pool {
            url: url.to_string(),
            semaphore: Arc::new(Semaphore::new(options.concurrency)),
            options,
            handler,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
        });
        let supervisor = tokio::spawn(supervise(pool, session));
        Ok(WorkerPool {
            counters,
            shutdown,
            supervisor,
        })
    }

    pub fn stats(&self) -> PoolStats {
        self.counters.snapshot()
    }

    /// Waits until `done` holds for the pool's stats (check it under a timeout).
    pub async fn wait_until(&self, done: impl Fn(&PoolStats) -> bool) {
        loop {
            let changed = self.counters.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change in between is not missed.
            changed.as_mut().enable();
            if done(&self.stats()) {
                return;
            }
            changed.await;
        }
    }

    /// Stops consuming, lets running handlers finish (messages received but not started
    /// go back to the queue), closes the connection and returns the final stats — or the
    /// error that stopped the pool earlier (reconnect attempts used up).
    pub async fn shutdown(self) -> Result<PoolStats, Error> {
        self.shutdown.cancel();
        match self.supervisor.await {
            Ok(result) => result?,
            Err(e) => return Err(Error::Other(format!("the worker pool task failed: {e}"))),
        }
        Ok(self.counters.snapshot())
    }
}

/// One connection's worth of consuming.
struct Session {
    connection: Connection,
    consumer: Consumer,
    consume_channel: Channel,
    /// In confirm mode: retries and dead-letter copies are published here.
    publish_channel: Channel,
}

impl Session {
    async fn open(connection: Connection, options: &WorkerPoolOptions) -> Result<Session, Error> {
        let consume_channel = connection
            .create_channel()
            .await
            .map_err(|e| Error::amqp("opening a channel", e))?;
        options.topology.declare(&consume_channel).await?;
        consume_channel
            .basic_qos(options.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| Error::amqp("basic.qos", e))?;
        let publish_channel = connection
            .create_channel()
            .await
            .map_err(|e| Error::amqp("opening a channel", e))?;
        publish_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::amqp("confirm.select", e))?;
        let consumer = consume_channel
            .basic_consume(
                options.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("consuming from queue '{}'", options.queue), e))?;
        Ok(Session {
            connection,
            consumer,
            consume_channel,
            publish_channel,
        })
    }
}

/// What every session and handler task of one pool shares.
struct Pool<H> {
    url: String,
    options: WorkerPoolOptions,
    handler: H,
    counters: Arc<Counters>,
    /// Caps the handlers running at once at `options.concurrency`.
    semaphore: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// Runs sessions until shutdown; reconnects after each loss.
async fn supervise<H, F>(pool: Arc<Pool<H>>, first: Session) -> Result<(), Error>
where
    H: Fn(Task) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let options = &pool.options;
    let mut session = first;
    loop {
        run_session(&mut session, &pool).await;
        if session.connection.status().connected() {
            // On shutdown, unstarted deliveries were nacked back; after a channel failure,
            // closing gives back whatever is still unacked.
            let _ = session
                .connection
                .close(200, "worker pool stopped".into())
                .await;
        }
        if pool.shutdown.is_cancelled() {
            return Ok(());
        }
        tracing::warn!(queue = %options.queue, "worker pool lost its session; reconnecting");
        session = loop {
            let connection = match connect_with_retry(
                &pool.url,
                &options.name,
                &options.reconnect,
                &pool.shutdown,
            )
            .await
            {
                Ok(connection) => connection,
                Err(Error::Closed) => return Ok(()),
                Err(e) => return Err(e),
            };
            match Session::open(connection, options).await {
                Ok(session) => break session,
                Err(e) => {
                    // E.g. the queue is gone and not ours to declare: wait and try again.
                    tracing::warn!(error = %e, "cannot resume consuming; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(options.reconnect.max) => {}
                        _ = pool.shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        };
        pool.counters.add(&pool.counters.reconnects, 1);
    }
}

/// Dispatches deliveries until the consumer ends (connection or channel lost, consumer
/// cancelled by the broker) or shutdown; returns once every handler task has finished.
async fn run_session<H, F>(session: &mut Session, pool: &Arc<Pool<H>>)
where
    H: Fn(Task) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    // Cancelled by a handler task that found the publishing channel closed.
    let broken = CancellationToken::new();
    // Cancelled once the consuming side is gone (the consumer failed, or ended with its
    // channel closed): a settlement still in flight then cannot reach the broker, which
    // gives the message back, and lapin may never answer it (after a connection.close from
    // the broker, amqp-rs/lapin#409), so the handler tasks stop waiting for one.
    let lost = CancellationToken::new();
    loop {
        tokio::select! {
            _ = broken.cancelled() => {
                tracing::warn!(queue = %pool.options.queue, "the publishing channel closed; starting over");
                break;
            }
            _ = pool.shutdown.cancelled() => {
                let tag = session.consumer.tag();
                let _ = session
                    .consume_channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await;
                break;
            }
            delivery = session.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    // A handler slot is taken here, in delivery order, so that one worker
                    // handles messages in queue order. Deliveries waiting meanwhile stay
                    // with lapin, unacked.
                    let permit = tokio::select! {
                        permit = pool.semaphore.clone().acquire_owned() => permit.ok(),
                        _ = pool.shutdown.cancelled() => None,
                        _ = broken.cancelled() => None,
                    };
                    let Some(permit) = permit else {
                        // Not started: back to the queue now (the rest go back when the
                        // connection closes).
                        let _ = delivery.acker.nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        }).await;
                        continue;
                    };
                    pool.counters.add(&pool.counters.in_flight, 1);
                    tasks.spawn(handle(
                        delivery,
                        permit,
                        pool.clone(),
                        session.publish_channel.clone(),
                        broken.clone(),
                        lost.clone(),
                    ));
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, queue = %pool.options.queue, "consumer failed");
                    lost.cancel();
                    break;
                }
                None => {
                    if !session.consume_channel.status().connected() {
                        lost.cancel();
                    }
                    break;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One delivery: run the handler (holding its slot), settle the message.
async fn handle<H, F>(
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
    pool: Arc<Pool<H>>,
    publish_channel: Channel,
    broken: CancellationToken,
    lost: CancellationToken,
) where
    H: Fn(Task) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let (options, counters, shutdown) = (&pool.options, &pool.counters, &pool.shutdown);
    let failures =
        header_u32(delivery.properties.headers().as_ref(), RETRY_COUNT_HEADER).unwrap_or(0);
    let task = Task {
        body: delivery.data.clone(),
        properties: delivery.properties.clone(),
        exchange: delivery.exchange.as_str().to_string(),
        routing_key: delivery.routing_key.as_str().to_string(),
        redelivered: delivery.redelivered,
        attempt: failures.saturating_add(1),
    };
    let outcome = (pool.handler)(task).await;
    drop(permit);
    let settle = async {
        match outcome {
            Ok(()) => ack(&delivery).await.then_some(&counters.processed),
            Err(error) => {
                counters.add(&counters.failed, 1);
                let attempts_left = failures.saturating_add(1) < options.retry.max_attempts;
                if error.retry && attempts_left {
                    retry(
                        &delivery,
                        failures,
                        options,
                        &publish_channel,
                        shutdown,
                        &broken,
                    )
                    .await
                    .then_some(&counters.retried)
                } else {
                    dead_letter(
                        &delivery,
                        failures,
                        &error,
                        options,
                        &publish_channel,
                        &broken,
                    )
                    .await
                    .then_some(&counters.dead_lettered)
                }
            }
        }
    };
    // A settlement that has its answer is taken even if the session was lost meanwhile.
    let settled = tokio::select! {
        biased;
        settled = settle => settled,
        _ = lost.cancelled() => None,
    };
    counters.finish(settled);
}

/// Acks; `false` if the channel is gone (the broker will deliver the message again).
async fn ack(delivery: &Delivery) -> bool {
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => true,
        Ok(false) | Err(_) => {
            tracing::warn!(
                delivery_tag = delivery.delivery_tag,
                "cannot ack: the channel is gone; the broker will deliver the message again"
            );
            false
        }
    }
}

/// Waits the backoff, publishes a copy with the failure count raised, then acks.
async fn retry(
    delivery: &Delivery,
    failures: u32,
    options: &WorkerPoolOptions,
    channel: &Channel,
    shutdown: &CancellationToken,
    broken: &CancellationToken,
) -> bool {
    // A shutdown cuts the wait short: the copy is published at once, so nothing waits in
    // memory when the pool stops.
    tokio::select! {
        _ = tokio::time::sleep(options.retry.backoff.delay(failures.saturating_add(1))) => {}
        _ = shutdown.cancelled() => {}
    }
    let headers = with_header(
        delivery.properties.headers().clone(),
        RETRY_COUNT_HEADER,
        AMQPValue::LongUInt(failures.saturating_add(1)),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    let published =
        publish_confirmed(channel, "", &options.queue, &delivery.data, properties).await;
    settle_after_copy(published, delivery, channel, broken).await
}

/// Settles a message that will not be tried again.
async fn dead_letter(
    delivery: &Delivery,
    failures: u32,
    error: &TaskError,
    options: &WorkerPoolOptions,
    channel: &Channel,
    broken: &CancellationToken,
) -> bool {
    tracing::warn!(queue = %options.queue, attempts = failures + 1, %error, "dead-lettering a message");
    match &options.dead_letter {
        DeadLetter::Reject => matches!(
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await,
            Ok(true)
        ),
        DeadLetter::Publish {
            exchange,
            routing_key,
        } => {
            let mut headers = delivery.properties.headers().clone();
            for (key, value) in [
                (
                    RETRY_COUNT_HEADER,
                    AMQPValue::LongUInt(failures.saturating_add(1)),
                ),
                (
                    LAST_ERROR_HEADER,
                    AMQPValue::LongString(LongString::from(error.message.as_str())),
                ),
                (
                    ORIGINAL_QUEUE_HEADER,
                    AMQPValue::LongString(LongString::from(options.queue.as_str())),
                ),
            ] {
                headers = Some(with_header(headers, key, value));
            }
            let properties = delivery
                .properties
                .clone()
                .with_headers(headers.unwrap_or_default());
            let routing_key = routing_key
                .as_deref()
                .unwrap_or(delivery.routing_key.as_str());
            let published =
                publish_confirmed(channel, exchange, routing_key, &delivery.data, properties).await;
            settle_after_copy(published, delivery, channel, broken).await
        }
    }
}

/// Acks the original once its copy is confirmed. If the copy failed, the original goes
/// back to the queue (to be handled again) instead of holding a prefetch slot; and if the
/// publishing channel is gone (e.g. the broker closed it: no such dead-letter exchange),
/// the consuming channel is closed too, so that the pool starts a fresh session.
async fn settle_after_copy(
    published: bool,
    delivery: &Delivery,
    channel: &Channel,
    broken: &CancellationToken,
) -> bool {
    if published {
        return ack(delivery).await;
    }
    let _ = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await;
    if !channel.status().connected() {
        broken.cancel();
    }
    false
}

fn with_header(headers: Option<FieldTable>, key: &str, value: AMQPValue) -> FieldTable {
    let mut headers = headers.unwrap_or_default();
    headers.insert(key.into(), value);
    headers
}

/// Publishes and waits for the broker's ack; `false` (logged) on anything else.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    let published = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await;
    let answer = match published {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(confirmation) if confirmation.is_ack() => true,
        other => {
            tracing::warn!(
                exchange,
                routing_key,
                answer = ?other.map(|c| c.is_ack()),
                "publishing a retry or dead-letter copy failed; the original stays unacked"
            );
            false
        }
    }
}
