//! One perf consumer: reads its queue, measures each delivery's end-to-end latency from the
//! producer's timestamp, and acks it (unless auto-ack), one by one or with `multiple`.

use super::stats::{read_stamp, Stats};
use crate::error::Error;
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::DeliveryTag;
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// At most this many acks handed to lapin and not yet written to the socket.
const MAX_UNWRITTEN_ACKS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: String,
    pub consumer_tag: String,
    pub autoack: bool,
    /// basic.qos prefetch count; 0 is unlimited.
    pub prefetch: u16,
    /// Ack with `multiple` once this many deliveries are unacked, or sooner when no further
    /// delivery is waiting; 1 acks each delivery on its own.
    pub multi_ack_every: u32,
}

/// Sets the prefetch and starts consuming. Done before the clock starts, so that every
/// consumer is registered before the first publish.
pub async fn prepare(channel: &Channel, config: &ConsumerConfig) -> Result<Consumer, Error> {
    if !config.autoack && config.prefetch > 0 {
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| Error::amqp("basic.qos", e))?;
    }
    channel
        .basic_consume(
            config.queue.as_str().into(),
            config.consumer_tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: config.autoack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::amqp(format!("consuming from queue '{}'", config.queue), e))
}

/// Consumes until `stop`, then closes the channel (the broker requeues what is unacked).
pub async fn run(
    channel: Channel,
    mut consumer: Consumer,
    config: ConsumerConfig,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let ack_every = config.multi_ack_every.max(1);
    let mut acks = Acks {
        channel: Arc::new(channel),
        multiple: ack_every > 1,
        queue: &config.queue,
        in_flight: FuturesUnordered::new(),
    };
    let mut unacked = 0;
    let mut last_tag: DeliveryTag = 0;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    while !stop.is_cancelled() {
        let delivery = if unacked > 0 {
            // Deliveries wait for a multiple ack: take the next one only if it is already
            // here, else ack now rather than hold them while the queue is idle.
            match futures_lite::future::poll_once(consumer.next()).await {
                Some(delivery) => delivery,
                None => {
                    acks.send(last_tag).await?;
                    unacked = 0;
                    continue;
                }
            }
        } else {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                delivery = consumer.next() => delivery,
            }
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                return Err(Error::amqp(
                    format!("consuming from queue '{}'", config.queue),
                    e,
                ))
            }
            None => {
                return Err(Error::Other(format!(
                    "the broker cancelled the consumer of queue '{}' (was it deleted?)",
                    config.queue
                )))
            }
        };
        let now = stats.now_ns();
        stats.received.fetch_add(1, Ordering::Relaxed);
        if let Some(sent_at) = read_stamp(&delivery.data, stats.run_id) {
            stats.latency.record(now.saturating_sub(sent_at));
        }
        if !config.autoack {
            last_tag = delivery.delivery_tag;
            unacked += 1;
            if unacked >= ack_every {
                acks.send(last_tag).await?;
                unacked = 0;
            }
        }
    }
    if unacked > 0 {
        acks.send(last_tag).await?;
    }
    acks.finish().await?;
    acks.channel
        .close(200, "perf done".into())
        .await
        .map_err(|e| Error::amqp("closing a consumer channel", e))
}

/// An ack handed to lapin; resolves once its frame is written.
type PendingAck = Pin<Box<dyn Future<Output = lapin::Result<()>> + Send>>;

/// Acks on their way to the broker. Like publishes, they are not awaited one by one (a
/// round trip to lapin's I/O thread each) but handed over in order and reaped as they finish.
struct Acks<'a> {
    channel: Arc<Channel>,
    multiple: bool,
    queue: &'a str,
    /// At most MAX_UNWRITTEN_ACKS: `send` waits for the oldest when it is full.
    in_flight: FuturesUnordered<PendingAck>,
}

impl Acks<'_> {
    async fn send(&mut self, delivery_tag: DeliveryTag) -> Result<(), Error> {
        let channel = self.channel.clone();
        let options = BasicAckOptions {
            multiple: self.multiple,
        };
        let mut ack: PendingAck =
            Box::pin(async move { channel.basic_ack(delivery_tag, options).await });
        // The first poll queues the frame, in delivery order.
        match futures_lite::future::poll_once(&mut ack).await {
            Some(written) => self.check(written)?,
            None => self.in_flight.push(ack),
        }
        while let Some(Some(written)) = futures_lite::future::poll_once(self.in_flight.next()).await
        {
            self.check(written)?;
        }
        while self.in_flight.len() >= MAX_UNWRITTEN_ACKS {
            if let Some(written) = self.in_flight.next().await {
                self.check(written)?;
            }
        }
        Ok(())
    }

    /// Waits until every ack is written.
    async fn finish(&mut self) -> Result<(), Error> {
        while let Some(written) = self.in_flight.next().await {
            self.check(written)?;
        }
        Ok(())
    }

    fn check(&self, written: lapin::Result<()>) -> Result<(), Error> {
        written.map_err(|e| Error::amqp(format!("acking on queue '{}'", self.queue), e))
    }
}
