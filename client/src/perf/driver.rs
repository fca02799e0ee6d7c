//! One perf connection, driven by one task: its producers append frames to one outbound
//! queue (large bodies by reference, see [`Outbound`]), written with as few syscalls as the
//! socket allows; inbound frames are split out of one buffer and handed to the consumer or
//! producer of their channel. No allocation per message, no task or future per message.

use super::arrival;
use super::consumer::{Consumer, ConsumerConfig};
use super::outbound::Outbound;
use super::producer::{Producer, ProducerConfig};
use super::stats::{Arrival, Stats};
use super::wire::{self, method, Fields, FrameWriter, Target, Wire};
use crate::error::Error;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Publishes stop being generated while this much is waiting to be written.
const OUT_HIGH: usize = 128 * 1024;
/// How long a stopped producer waits for the confirms it still has outstanding.
const CONFIRM_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the connection.close handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a channel is used for.
#[derive(Clone, Copy)]
enum Role {
    Producer(usize),
    Consumer(usize),
}

/// A connection with its channels set up, ready to run.
pub struct Connection {
    wire: Wire,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    /// By channel number (0 is the connection itself).
    roles: Vec<Option<Role>>,
}

/// Connects, opens a channel per producer (in confirm mode if asked) and per consumer
/// (with its prefetch), and starts the consumers.
pub async fn open(
    target: &Target,
    name: &str,
    producers: Vec<ProducerConfig>,
    consumers: Vec<ConsumerConfig>,
) -> Result<Connection, Error> {
    let mut wire = Wire::open(target, name).await?;
    let mut roles = vec![None];
    let mut channel = 0u16;
    let mut next_channel = |roles: &mut Vec<Option<Role>>, role| {
        channel += 1;
        roles.push(Some(role));
        channel
    };
    let mut ready_producers = Vec::with_capacity(producers.len());
    for config in producers {
        let channel = next_channel(&mut roles, Role::Producer(ready_producers.len()));
        wire.open_channel(channel).await?;
        if config.confirm > 0 {
            wire.confirm_select(channel).await?;
        }
        let frame_max = wire.frame_max;
        ready_producers.push(Producer::new(channel, config, frame_max, Instant::now()));
    }
    let mut ready_consumers = Vec::with_capacity(consumers.len());
    for config in consumers {
        let channel = next_channel(&mut roles, Role::Consumer(ready_consumers.len()));
        wire.open_channel(channel).await?;
        if !config.autoack && config.prefetch > 0 {
            wire.qos(channel, config.prefetch).await?;
        }
        ready_consumers.push(Consumer::new(channel, config));
    }
    let starts: Vec<_> = ready_consumers
        .iter()
        .map(|c| {
            let config = &c.config;
            (
                c.channel,
                config.queue.as_str(),
                config.consumer_tag.as_str(),
                config.autoack,
            )
        })
        .collect();
    wire.consume_all(&starts)
        .await
        .map_err(|e| in_context(e, "starting the consumers"))?;
    Ok(Connection {
        wire,
        producers: ready_producers,
        consumers: ready_consumers,
        roles,
    })
}

/// Where a run is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stopped publishing; waiting for the outstanding confirms.
    Draining {
        deadline: Instant,
    },
    /// connection.close sent; waiting for close-ok.
    Closing {
        deadline: Instant,
    },
}

/// Publishes and consumes until `stop`, then collects outstanding confirms and closes the
/// connection (the broker requeues what is unacked).
pub async fn run(
    connection: Connection,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let Connection {
        wire,
        mut producers,
        mut consumers,
        roles,
    } = connection;
    let Wire {
        stream,
        mut inbound,
        mut read_at,
        frame_max,
        ..
    } = wire;
    if !arrival::enable(&stream) {
        tracing::debug!("no kernel receive timestamps: latency is counted to when perf reads");
    }
    let mut out = Outbound::new(2 * OUT_HIGH, OUT_HIGH);
    let mut phase = Phase::Running;
    let started = Instant::now();
    for producer in &mut producers {
        producer.restart(started);
    }
    loop {
        let now = Instant::now();
        let mut progressed = false;
        match phase {
            Phase::Running if stop.is_cancelled() => {
                for consumer in &mut consumers {
                    consumer.ack(out.buf());
                }
                phase = Phase::Draining {
                    deadline: now + CONFIRM_DRAIN_TIMEOUT,
                };
                continue;
            }
            Phase::Running => {
                let sent = generate(&mut producers, &mut out, &stats, now);
                stats.sent.fetch_add(sent, Ordering::Relaxed);
            }
            Phase::Draining { deadline } => {
                let outstanding: usize = producers.iter().map(Producer::unconfirmed).sum();
                if outstanding == 0 {
                    FrameWriter::method(out.buf(), 0, (10, 50))
                        .u16(200)
                        .short("perf done")
                        .u16(0)
                        .u16(0)
                        .end();
                    phase = Phase::Closing {
                        deadline: now + CLOSE_TIMEOUT,
                    };
                } else if now >= deadline {
                    return Err(Error::Other(format!(
                        "{outstanding} publishes were still unconfirmed {} s after the stop",
                        CONFIRM_DRAIN_TIMEOUT.as_secs()
                    )));
                }
            }
            Phase::Closing { deadline } if now >= deadline => {
                // The measurements are in; a broker still busy with a backlog (RabbitMQ does
                // not read a connection it holds in flow control) just gets hung up on.
                eprintln!(
                    "the broker did not answer connection.close within {CLOSE_TIMEOUT:?}: closing the socket"
                );
                return Ok(());
            }
            Phase::Closing { .. } => {}
        }

        if out.pending() > 0 {
            match out.write_with(|slices| match slices {
                [one] => stream.try_write(one),
                _ => stream.try_write_vectored(slices),
            }) {
                Ok(_) => progressed = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::Other(format!("writing to the broker: {e}"))),
            }
        }

        if inbound.capacity() - inbound.len() < frame_max as usize {
            if read_at > 0 {
                inbound.drain(..read_at);
                read_at = 0;
            }
            inbound.reserve(2 * frame_max as usize);
        }
        match arrival::try_read(&stream, &mut inbound) {
            Ok(arrival::Read { bytes: 0, .. }) => {
                return match phase {
                    Phase::Closing { .. } => Ok(()),
                    _ => Err(Error::Other("the broker closed the connection".into())),
                }
            }
            Ok(read) => {
                progressed = true;
                let at = stats.arrival(read.waited);
                while let Some(wire::Split {
                    kind,
                    channel,
                    payload,
                    total,
                }) = wire::split_frame(&inbound[read_at..], frame_max)?
                {
                    let payload = &inbound[read_at + payload.start..read_at + payload.end];
                    read_at += total;
                    let frame = Frame {
                        kind,
                        channel,
                        payload,
                    };
                    if let Phase::Closing { .. } = phase {
                        if frame.closes_connection() {
                            return Ok(());
                        }
                        continue;
                    }
                    let role = roles.get(usize::from(channel)).copied().flatten();
                    handle(
                        frame,
                        role,
                        &mut producers,
                        &mut consumers,
                        out.buf(),
                        &stats,
                        at,
                    )?;
                }
                if read_at == inbound.len() {
                    inbound.clear();
                    read_at = 0;
                }
                if !matches!(phase, Phase::Closing { .. }) {
                    // Nothing more is waiting right now: ack what a multiple ack held back.
                    for consumer in &mut consumers {
                        consumer.ack(out.buf());
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::Other(format!("reading from the broker: {e}"))),
        }

        if progressed {
            // Let the other connections and the progress reporter run, once this task has
            // used its budget (128 rounds): a yield after every round would also, at a low
            // rate, wake another worker thread for each message (tokio hands a yielded
            // task to whichever worker is idle), which then competes with the broker for
            // the CPUs it is measured on.
            tokio::task::coop::consume_budget().await;
            continue;
        }
        let wants_write = out.pending() > 0;
        // Only a rate limit ahead of now is worth a timer: a producer that could publish
        // now is waiting for the socket (or its window), not for the clock.
        let paced = match phase {
            Phase::Running if out.pending() < OUT_HIGH => producers
                .iter()
                .filter(|p| p.has_room() && p.due() > now)
                .map(Producer::due)
                .min(),
            _ => None,
        };
        let deadline = match phase {
            Phase::Draining { deadline } | Phase::Closing { deadline } => Some(deadline),
            Phase::Running => None,
        };
        tokio::select! {
            ready = stream.readable() => ready.map_err(|e| Error::Other(format!("reading from the broker: {e}")))?,
            ready = stream.writable(), if wants_write => ready.map_err(|e| Error::Other(format!("writing to the broker: {e}")))?,
            _ = sleep_until(paced), if paced.is_some() => {}
            _ = sleep_until(deadline), if deadline.is_some() => {}
            _ = stop.cancelled(), if phase == Phase::Running => {}
        }
    }
}

/// Appends publishes, one per producer in turn, while the outbound buffer has room and
/// some producer has both window and rate to spare. Returns how many.
fn generate(producers: &mut [Producer], out: &mut Outbound, stats: &Stats, now: Instant) -> u64 {
    let mut sent = 0;
    loop {
        let mut any = false;
        for producer in producers.iter_mut() {
            if out.pending() < OUT_HIGH && producer.has_room() && producer.due() <= now {
                producer.publish(out, stats, now);
                sent += 1;
                any = true;
            }
        }
        if !any {
            return sent;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Frame<'a> {
    kind: u8,
    channel: u16,
    payload: &'a [u8],
}

impl Frame<'_> {
    fn method(&self) -> Option<(u16, u16)> {
        (self.kind == wire::FRAME_METHOD)
            .then(|| Fields::new(self.payload).method().ok())
            .flatten()
    }

    /// connection.close-ok, or the broker's own connection.close crossing ours.
    fn closes_connection(&self) -> bool {
        matches!(
            self.method(),
            Some(method::CONNECTION_CLOSE_OK | method::CONNECTION_CLOSE)
        )
    }
}

/// One inbound frame while running.
fn handle(
    frame: Frame<'_>,
    role: Option<Role>,
    producers: &mut [Producer],
    consumers: &mut [Consumer],
    out: &mut Vec<u8>,
    stats: &Stats,
    at: Arrival,
) -> Result<(), Error> {
    let what = || describe(role, producers, consumers);
    match frame.kind {
        wire::FRAME_METHOD => {
            let mut fields = Fields::new(frame.payload);
            match fields.method()? {
                method::BASIC_DELIVER => {
                    fields.short()?;
                    let tag = fields.u64()?;
                    if let Some(Role::Consumer(i)) = role {
                        consumers[i].deliver(tag);
                    }
                }
                id @ (method::BASIC_ACK | method::BASIC_NACK) => {
                    let tag = fields.u64()?;
                    let multiple = fields.u8()? & 1 != 0;
                    if let Some(Role::Producer(i)) = role {
                        producers[i].confirmed(tag, multiple, id == method::BASIC_ACK, stats, at);
                    }
                }
                method::CHANNEL_FLOW => {
                    let active = fields.u8()?;
                    FrameWriter::method(out, frame.channel, (20, 21))
                        .u8(active)
                        .end();
                }
                method::CHANNEL_CLOSE => {
                    return Err(Error::Other(format!(
                        "{}: the broker closed the channel: {}",
                        what(),
                        wire::close_reason(frame.payload)
                    )))
                }
                method::CONNECTION_CLOSE => {
                    return Err(Error::Other(format!(
                        "the broker closed the connection: {}",
                        wire::close_reason(frame.payload)
                    )))
                }
                method::BASIC_CANCEL => {
                    return Err(Error::Other(format!(
                        "{}: the broker cancelled the consumer (was the queue deleted?)",
                        what()
                    )))
                }
                // basic.return (the content that follows is skipped below), connection
                // blocked/unblocked, and anything else a broker may add: nothing to do.
                _ => {}
            }
        }
        wire::FRAME_HEADER => {
            if let Some(Role::Consumer(i)) = role {
                let mut fields = Fields::new(frame.payload);
                fields.u16()?;
                fields.u16()?;
                let size = fields.u64()?;
                consumers[i].header(size, out, stats, at);
            }
        }
        wire::FRAME_BODY => {
            if let Some(Role::Consumer(i)) = role {
                consumers[i].body(frame.payload, out, stats, at);
            }
        }
        _ => {}
    }
    Ok(())
}

fn describe(role: Option<Role>, producers: &[Producer], consumers: &[Consumer]) -> String {
    match role {
        Some(Role::Producer(i)) => {
            let route = &producers[i].config.route;
            match (route.exchange.as_str(), route.routing_key.as_str()) {
                ("", queue) => format!("publishing to queue '{queue}'"),
                (exchange, "") => format!("publishing to exchange '{exchange}'"),
                (exchange, key) => {
                    format!("publishing to exchange '{exchange}' with routing key '{key}'")
                }
            }
        }
        Some(Role::Consumer(i)) => {
            format!("consuming from queue '{}'", consumers[i].config.queue)
        }
        None => "on an unknown channel".into(),
    }
}

fn in_context(error: Error, context: &str) -> Error {
    Error::Other(format!("{context}: {error}"))
}
