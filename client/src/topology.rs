//! The exchanges, queues and bindings a publisher or worker pool owns: declared when it
//! connects and declared again after every reconnect, so a broker that lost them (a
//! restart without durable state, an auto-delete queue gone with its connection) gets them
//! back before the first message.

use crate::error::Error;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// An exchange to declare.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

impl Exchange {
    /// A durable exchange of `kind` (the common case for application topology).
    pub fn new(name: impl Into<String>, kind: ExchangeKind) -> Exchange {
        Exchange {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
            arguments: FieldTable::default(),
        }
    }

    pub fn direct(name: impl Into<String>) -> Exchange {
        Exchange::new(name, ExchangeKind::Direct)
    }

    pub fn fanout(name: impl Into<String>) -> Exchange {
        Exchange::new(name, ExchangeKind::Fanout)
    }

    pub fn topic(name: impl Into<String>) -> Exchange {
        Exchange::new(name, ExchangeKind::Topic)
    }

    pub fn headers(name: impl Into<String>) -> Exchange {
        Exchange::new(name, ExchangeKind::Headers)
    }

    /// Not kept across broker restarts.
    pub fn transient(mut self) -> Exchange {
        self.durable = false;
        self
    }

    pub fn auto_delete(mut self) -> Exchange {
        self.auto_delete = true;
        self
    }

    async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        channel
            .exchange_declare(
                self.name.as_str().into(),
                self.kind.clone(),
                ExchangeDeclareOptions {
                    durable: self.durable,
                    auto_delete: self.auto_delete,
                    ..ExchangeDeclareOptions::default()
                },
                self.arguments.clone(),
            )
            .await
            .map_err(|e| Error::amqp(format!("declaring exchange '{}'", self.name), e))
    }
}

/// A queue to declare.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

impl Queue {
    /// A durable queue (kept across broker restarts with its persistent messages).
    pub fn durable(name: impl Into<String>) -> Queue {
        Queue {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
        }
    }

    /// A queue that lives in memory only.
    pub fn transient(name: impl Into<String>) -> Queue {
        Queue {
            durable: false,
            ..Queue::durable(name)
        }
    }

    pub fn auto_delete(mut self) -> Queue {
        self.auto_delete = true;
        self
    }

    pub fn exclusive(mut self) -> Queue {
        self.exclusive = true;
        self
    }

    /// Any queue argument (`x-...`).
    pub fn argument(mut self, key: &str, value: AMQPValue) -> Queue {
        self.arguments.insert(key.into(), value);
        self
    }

    /// Messages rejected without requeue (or expired) go to `exchange`
    /// (`x-dead-letter-exchange`), with their routing key unless
    /// [`dead_letter_routing_key`](Self::dead_letter_routing_key) replaces it.
    pub fn dead_letter_exchange(self, exchange: &str) -> Queue {
        self.argument(
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from(exchange)),
        )
    }

    pub fn dead_letter_routing_key(self, routing_key: &str) -> Queue {
        self.argument(
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from(routing_key)),
        )
    }

    /// A priority queue (`x-max-priority`): messages with a higher `priority` property, up
    /// to `max`, are delivered first.
    pub fn max_priority(self, max: u8) -> Queue {
        self.argument("x-max-priority", AMQPValue::ShortShortUInt(max))
    }

    /// Messages older than `ms` milliseconds expire (`x-message-ttl`).
    pub fn message_ttl(self, ms: u32) -> Queue {
        self.argument("x-message-ttl", AMQPValue::LongUInt(ms))
    }

    async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        channel
            .queue_declare(
                self.name.as_str().into(),
                QueueDeclareOptions {
                    durable: self.durable,
                    exclusive: self.exclusive,
                    auto_delete: self.auto_delete,
                    ..QueueDeclareOptions::default()
                },
                self.arguments.clone(),
            )
            .await
            .map(|_| ())
            .map_err(|e| Error::amqp(format!("declaring queue '{}'", self.name), e))
    }
}

/// A binding of a queue to an exchange.
#[derive(Debug, Clone)]
pub struct Binding {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// Exchanges, queues and bindings, declared in that order.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub exchanges: Vec<Exchange>,
    pub queues: Vec<Queue>,
    pub bindings: Vec<Binding>,
}

impl Topology {
    pub fn new() -> Topology {
        Topology::default()
    }

    pub fn exchange(mut self, exchange: Exchange) -> Topology {
        self.exchanges.push(exchange);
        self
    }

    pub fn queue(mut self, queue: Queue) -> Topology {
        self.queues.push(queue);
        self
    }

    /// Binds `queue` to `exchange` with `routing_key`.
    pub fn bind(self, exchange: &str, queue: &str, routing_key: &str) -> Topology {
        self.bind_with(exchange, queue, routing_key, FieldTable::default())
    }

    /// Binds with arguments (a headers exchange's `x-match` and header values).
    pub fn bind_with(
        mut self,
        exchange: &str,
        queue: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Topology {
        self.bindings.push(Binding {
            exchange: exchange.to_string(),
            queue: queue.to_string(),
            routing_key: routing_key.to_string(),
            arguments,
        });
        self
    }

    /// Adds everything in `other`.
    pub fn extend(&mut self, other: Topology) {
        self.exchanges.extend(other.exchanges);
        self.queues.extend(other.queues);
        self.bindings.extend(other.bindings);
    }

    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty() && self.queues.is_empty() && self.bindings.is_empty()
    }

    /// Declares everything on `channel`: exchanges, then queues, then bindings.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        for exchange in &self.exchanges {
            exchange.declare(channel).await?;
        }
        for queue in &self.queues {
            queue.declare(channel).await?;
        }
        for binding in &self.bindings {
            channel
                .queue_bind(
                    binding.queue.as_str().into(),
                    binding.exchange.as_str().into(),
                    binding.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    binding.arguments.clone(),
                )
                .await
                .map_err(|e| {
                    Error::amqp(
                        format!(
                            "binding queue '{}' to exchange '{}'",
                            binding.queue, binding.exchange
                        ),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// Whether a message published to `exchange` with `routing_key` targets something this
    /// topology declares durable: `Some(true)` / `Some(false)` when it declares the target
    /// (the queue itself for the default exchange), `None` when it does not know it.
    pub fn is_durable_target(&self, exchange: &str, routing_key: &str) -> Option<bool> {
        if exchange.is_empty() {
            self.queues
                .iter()
                .find(|q| q.name == routing_key)
                .map(|q| q.durable)
        } else {
            self.exchanges
                .iter()
                .find(|e| e.name == exchange)
                .map(|e| e.durable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_of_a_target_follows_its_declaration() {
        let topology = Topology::new()
            .exchange(Exchange::fanout("events"))
            .exchange(Exchange::topic("scratch").transient())
            .queue(Queue::durable("jobs"))
            .queue(Queue::transient("tmp"));
        assert_eq!(topology.is_durable_target("events", ""), Some(true));
        assert_eq!(topology.is_durable_target("scratch", "a.b"), Some(false));
        assert_eq!(topology.is_durable_target("", "jobs"), Some(true));
        assert_eq!(topology.is_durable_target("", "tmp"), Some(false));
        assert_eq!(topology.is_durable_target("", "other"), None);
        assert_eq!(topology.is_durable_target("amq.topic", "x"), None);
    }
}
