//! The AMQP commands of warren-cli: publish, consume, declare, delete, purge. Each opens
//! one connection, does its work on one channel and closes it.

use super::write_failed;
use crate::connect::connect;
use crate::error::Error;
use crate::message::{describe_target, Message};
use crate::publisher::{OnConnectionLoss, Publisher, PublisherOptions};
use clap::{Args, Subcommand, ValueEnum};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The exchange ("" is the default exchange, which routes to the queue named by the
    /// routing key).
    #[arg(long, short, default_value = "")]
    pub exchange: String,
    /// The routing key (with the default exchange: the queue's name).
    #[arg(long, short = 'k', default_value = "")]
    pub routing_key: String,
    /// The message body; without it, the body is read from stdin.
    #[arg(long, short)]
    pub body: Option<String>,
    /// Read stdin as one message per line.
    #[arg(long, conflicts_with = "body")]
    pub lines: bool,
    /// Transient messages (delivery mode 1); persistent by default.
    #[arg(long)]
    pub transient: bool,
    /// Fail when no queue receives the message (mandatory publish).
    #[arg(long)]
    pub mandatory: bool,
    /// A header, KEY=VALUE (repeatable; integers and true/false are typed).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// The content type property.
    #[arg(long)]
    pub content_type: Option<String>,
    /// The message priority (0-255; used by priority queues).
    #[arg(long)]
    pub priority: Option<u8>,
    /// Send the message N times.
    #[arg(long, default_value_t = 1)]
    pub repeat: u64,
}

/// How consumed messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The body, one message per line.
    Body,
    /// One JSON object per line: exchange, routing key, redelivered, properties, body.
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The queue to consume from.
    pub queue: String,
    /// Stop after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop when no message arrived for this many seconds (runs until Ctrl-C without it).
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<f64>,
    #[arg(long, value_enum, default_value_t = Format::Body)]
    pub format: Format,
    /// Leave the messages in the queue: they are requeued when warren-cli exits.
    #[arg(long)]
    pub requeue: bool,
    /// Messages the broker may send ahead of the acks.
    #[arg(long, default_value_t = 100)]
    pub prefetch: u16,
}

#[derive(Debug, Subcommand)]
pub enum DeclareCommand {
    /// Declare an exchange (durable unless --transient).
    Exchange {
        name: String,
        /// direct, fanout, topic or headers.
        #[arg(long = "type", short = 't', default_value = "direct")]
        kind: String,
        #[arg(long)]
        transient: bool,
        #[arg(long)]
        auto_delete: bool,
        #[arg(long)]
        internal: bool,
    },
    /// Declare a queue (durable unless --transient).
    Queue {
        name: String,
        #[arg(long)]
        transient: bool,
        #[arg(long)]
        auto_delete: bool,
        /// x-dead-letter-exchange.
        #[arg(long)]
        dead_letter_exchange: Option<String>,
        /// x-max-priority.
        #[arg(long)]
        max_priority: Option<u8>,
        /// x-message-ttl, in milliseconds.
        #[arg(long)]
        message_ttl: Option<u32>,
        /// Any queue argument, KEY=VALUE (repeatable; integers and true/false are typed).
        #[arg(long = "argument", short = 'a', value_name = "KEY=VALUE")]
        arguments: Vec<String>,
    },
    /// Bind a queue to an exchange.
    Binding {
        /// The exchange (source).
        exchange: String,
        /// The queue (destination).
        queue: String,
        #[arg(long, short = 'k', default_value = "")]
        routing_key: String,
        /// A binding argument, KEY=VALUE (headers exchanges: x-match and the headers).
        #[arg(long = "argument", short = 'a', value_name = "KEY=VALUE")]
        arguments: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete an exchange.
    Exchange {
        name: String,
        /// Only if no queue is bound to it.
        #[arg(long)]
        if_unused: bool,
    },
    /// Delete a queue and its messages.
    Queue {
        name: String,
        /// Only if it has no consumers.
        #[arg(long)]
        if_unused: bool,
        /// Only if it has no messages.
        #[arg(long)]
        if_empty: bool,
    },
    /// Remove a binding.
    Binding {
        exchange: String,
        queue: String,
        #[arg(long, short = 'k', default_value = "")]
        routing_key: String,
        #[arg(long = "argument", short = 'a', value_name = "KEY=VALUE")]
        arguments: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    pub queue: String,
}

pub async fn publish(
    url: &str,
    args: &PublishArgs,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), Error> {
    let bodies: Vec<Vec<u8>> = match (&args.body, args.lines) {
        (Some(body), _) => vec![body.clone().into_bytes()],
        (None, true) => input
            .lines()
            .map(|line| line.map(String::into_bytes))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Other(format!("cannot read stdin: {e}")))?,
        (None, false) => {
            let mut body = Vec::new();
            input
                .read_to_end(&mut body)
                .map_err(|e| Error::Other(format!("cannot read stdin: {e}")))?;
            vec![body]
        }
    };
    let mut properties = BasicProperties::default();
    if let Some(content_type) = &args.content_type {
        properties = properties.with_content_type(content_type.as_str().into());
    }
    if let Some(priority) = args.priority {
        properties = properties.with_priority(priority);
    }
    let headers = parse_table(&args.headers, "--header")?;
    let publisher = Publisher::connect(
        url,
        PublisherOptions {
            on_connection_loss: OnConnectionLoss::Fail,
            name: "warren-cli publish".into(),
            ..PublisherOptions::default()
        },
    )
    .await?;
    let mut messages = Vec::new();
    for _ in 0..args.repeat {
        for body in &bodies {
            let mut message = Message::new(&args.exchange, &args.routing_key, body.clone())
                .with_properties(properties.clone());
            message.headers = headers.clone();
            message.persistent = Some(!args.transient);
            message.mandatory = args.mandatory;
            messages.push(message);
        }
    }
    let outcome = publisher.send_batch(messages).await;
    let closed = publisher.close().await;
    let count = outcome?;
    closed?;
    writeln!(
        output,
        "published {count} message{} to {}",
        plural(count as u64),
        describe_target(&args.exchange, &args.routing_key)
    )
    .map_err(write_failed)
}

pub async fn consume(url: &str, args: &ConsumeArgs, output: &mut dyn Write) -> Result<(), Error> {
    let (connection, channel) = open(url, "warren-cli consume").await?;
    let outcome = consume_on(&channel, args, output).await;
    close(connection, outcome).await
}

async fn consume_on(
    channel: &Channel,
    args: &ConsumeArgs,
    output: &mut dyn Write,
) -> Result<(), Error> {
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| Error::amqp("basic.qos", e))?;
    let mut consumer = channel
        .basic_consume(
            args.queue.as_str().into(),
            "warren-cli".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::amqp(format!("consuming from queue '{}'", args.queue), e))?;
    let idle = args.idle_timeout.map(Duration::from_secs_f64);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut taken = 0u64;
    while args.count.is_none_or(|count| taken < count) {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = sleep_opt(idle) => break,
            _ = &mut interrupted => break,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                return Err(Error::amqp(
                    format!("consuming from queue '{}'", args.queue),
                    e,
                ))
            }
            None => {
                return Err(Error::Other(format!(
                    "the broker cancelled the consumer of queue '{}' (deleted?)",
                    args.queue
                )))
            }
        };
        match args.format {
            Format::Body => {
                output.write_all(&delivery.data).map_err(write_failed)?;
                output.write_all(b"\n").map_err(write_failed)?;
            }
            Format::Json => {
                let line = delivery_json(&delivery);
                writeln!(output, "{line}").map_err(write_failed)?;
            }
        }
        output.flush().map_err(write_failed)?;
        taken += 1;
        // Acked once printed: a message is never taken without being shown. With --requeue
        // nothing is acked, and closing the channel gives everything back.
        if !args.requeue {
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| Error::amqp("acking a message", e))?;
        }
    }
    Ok(())
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// A delivery as one JSON object; the body as text when it is UTF-8, else base64.
fn delivery_json(delivery: &lapin::message::Delivery) -> Value {
    use base64::Engine;
    let p = &delivery.properties;
    let mut properties = serde_json::Map::new();
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.as_str().to_string());
    for (key, value) in [
        ("content_type", text(p.content_type())),
        ("correlation_id", text(p.correlation_id())),
        ("reply_to", text(p.reply_to())),
        ("message_id", text(p.message_id())),
        ("type", text(p.kind())),
        ("app_id", text(p.app_id())),
    ] {
        if let Some(value) = value {
            properties.insert(key.into(), json!(value));
        }
    }
    if let Some(mode) = p.delivery_mode() {
        properties.insert("delivery_mode".into(), json!(mode));
    }
    if let Some(priority) = p.priority() {
        properties.insert("priority".into(), json!(priority));
    }
    if let Some(headers) = p.headers() {
        let headers: serde_json::Map<String, Value> = headers
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), value_json(v)))
            .collect();
        properties.insert("headers".into(), Value::Object(headers));
    }
    let (body, encoding) = match std::str::from_utf8(&delivery.data) {
        Ok(text) => (json!(text), "string"),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(&delivery.data)),
            "base64",
        ),
    };
    json!({
        "exchange": delivery.exchange.as_str(),
        "routing_key": delivery.routing_key.as_str(),
        "redelivered": delivery.redelivered,
        "properties": properties,
        "body": body,
        "body_encoding": encoding,
    })
}

fn value_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(v) => json!(v),
        AMQPValue::ShortShortUInt(v) => json!(v),
        AMQPValue::ShortInt(v) => json!(v),
        AMQPValue::ShortUInt(v) => json!(v),
        AMQPValue::LongInt(v) => json!(v),
        AMQPValue::LongUInt(v) => json!(v),
        AMQPValue::LongLongInt(v) => json!(v),
        AMQPValue::Float(v) => json!(v),
        AMQPValue::Double(v) => json!(v),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_json).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), value_json(v)))
                .collect(),
        ),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::Void => Value::Null,
        other => json!(format!("{other:?}")),
    }
}

pub async fn declare(
    url: &str,
    what: &DeclareCommand,
    output: &mut dyn Write,
) -> Result<(), Error> {
    let (connection, channel) = open(url, "warren-cli declare").await?;
    let outcome = declare_on(&channel, what).await;
    let line = close(connection, outcome).await?;
    writeln!(output, "{line}").map_err(write_failed)
}

async fn declare_on(channel: &Channel, what: &DeclareCommand) -> Result<String, Error> {
    match what {
        DeclareCommand::Exchange {
            name,
            kind,
            transient,
            auto_delete,
            internal,
        } => {
            channel
                .exchange_declare(
                    name.as_str().into(),
                    exchange_kind(kind),
                    ExchangeDeclareOptions {
                        durable: !transient,
                        auto_delete: *auto_delete,
                        internal: *internal,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| Error::amqp(format!("declaring exchange '{name}'"), e))?;
            Ok(format!("declared {kind} exchange '{name}'"))
        }
        DeclareCommand::Queue {
            name,
            transient,
            auto_delete,
            dead_letter_exchange,
            max_priority,
            message_ttl,
            arguments,
        } => {
            let mut table = parse_table(arguments, "--argument")?;
            if let Some(dlx) = dead_letter_exchange {
                table.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(LongString::from(dlx.as_str())),
                );
            }
            if let Some(max) = max_priority {
                table.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(*max));
            }
            if let Some(ttl) = message_ttl {
                table.insert("x-message-ttl".into(), AMQPValue::LongUInt(*ttl));
            }
            let queue = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        durable: !transient,
                        auto_delete: *auto_delete,
                        ..QueueDeclareOptions::default()
                    },
                    table,
                )
                .await
                .map_err(|e| Error::amqp(format!("declaring queue '{name}'"), e))?;
            Ok(format!(
                "declared queue '{}' ({} message{}, {} consumer{})",
                queue.name().as_str(),
                queue.message_count(),
                plural(queue.message_count().into()),
                queue.consumer_count(),
                plural(queue.consumer_count().into()),
            ))
        }
        DeclareCommand::Binding {
            exchange,
            queue,
            routing_key,
            arguments,
        } => {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    parse_table(arguments, "--argument")?,
                )
                .await
                .map_err(|e| {
                    Error::amqp(
                        format!("binding queue '{queue}' to exchange '{exchange}'"),
                        e,
                    )
                })?;
            Ok(format!(
                "bound queue '{queue}' to exchange '{exchange}' with routing key '{routing_key}'"
            ))
        }
    }
}

pub async fn delete(url: &str, what: &DeleteCommand, output: &mut dyn Write) -> Result<(), Error> {
    let (connection, channel) = open(url, "warren-cli delete").await?;
    let outcome = delete_on(&channel, what).await;
    let line = close(connection, outcome).await?;
    writeln!(output, "{line}").map_err(write_failed)
}

async fn delete_on(channel: &Channel, what: &DeleteCommand) -> Result<String, Error> {
    match what {
        DeleteCommand::Exchange { name, if_unused } => {
            channel
                .exchange_delete(
                    name.as_str().into(),
                    ExchangeDeleteOptions {
                        if_unused: *if_unused,
                        ..ExchangeDeleteOptions::default()
                    },
                )
                .await
                .map_err(|e| Error::amqp(format!("deleting exchange '{name}'"), e))?;
            Ok(format!("deleted exchange '{name}'"))
        }
        DeleteCommand::Queue {
            name,
            if_unused,
            if_empty,
        } => {
            let messages = channel
                .queue_delete(
                    name.as_str().into(),
                    QueueDeleteOptions {
                        if_unused: *if_unused,
                        if_empty: *if_empty,
                        ..QueueDeleteOptions::default()
                    },
                )
                .await
                .map_err(|e| Error::amqp(format!("deleting queue '{name}'"), e))?;
            Ok(format!(
                "deleted queue '{name}' ({messages} message{})",
                plural(messages.into())
            ))
        }
        DeleteCommand::Binding {
            exchange,
            queue,
            routing_key,
            arguments,
        } => {
            channel
                .queue_unbind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    parse_table(arguments, "--argument")?,
                )
                .await
                .map_err(|e| {
                    Error::amqp(
                        format!("unbinding queue '{queue}' from exchange '{exchange}'"),
                        e,
                    )
                })?;
            Ok(format!(
                "unbound queue '{queue}' from exchange '{exchange}' (routing key '{routing_key}')"
            ))
        }
    }
}

pub async fn purge(url: &str, args: &PurgeArgs, output: &mut dyn Write) -> Result<(), Error> {
    let (connection, channel) = open(url, "warren-cli purge").await?;
    let outcome = channel
        .queue_purge(args.queue.as_str().into(), QueuePurgeOptions::default())
        .await
        .map_err(|e| Error::amqp(format!("purging queue '{}'", args.queue), e));
    let purged = close(connection, outcome).await?;
    writeln!(
        output,
        "purged {purged} message{} from queue '{}'",
        plural(purged.into()),
        args.queue
    )
    .map_err(write_failed)
}

async fn open(url: &str, name: &str) -> Result<(Connection, Channel), Error> {
    let connection = connect(url, name).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| Error::amqp("opening a channel", e))?;
    Ok((connection, channel))
}

/// Closes the connection whatever the outcome; the outcome's error wins over the close's.
async fn close<T>(connection: Connection, outcome: Result<T, Error>) -> Result<T, Error> {
    let closed = connection.close(200, "warren-cli done".into()).await;
    let value = outcome?;
    closed.map_err(|e| Error::amqp("closing the connection", e))?;
    Ok(value)
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_string()),
    }
}

/// `KEY=VALUE` pairs as a field table: integers, true/false, else strings.
pub fn parse_table(pairs: &[String], flag: &str) -> Result<FieldTable, Error> {
    let mut table = FieldTable::default();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "{flag} expects KEY=VALUE, got '{pair}'"
            )));
        };
        let value = if let Ok(n) = value.parse::<i64>() {
            AMQPValue::LongLongInt(n)
        } else if value == "true" || value == "false" {
            AMQPValue::Boolean(value == "true")
        } else {
            AMQPValue::LongString(LongString::from(value))
        };
        table.insert(key.into(), value);
    }
    Ok(table)
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_value_pairs_are_typed() {
        let table = parse_table(
            &[
                "x-max-priority=10".into(),
                "flag=true".into(),
                "name=a=b".into(),
            ],
            "--argument",
        )
        .unwrap();
        let inner = table.inner();
        assert_eq!(
            inner.get("x-max-priority"),
            Some(&AMQPValue::LongLongInt(10))
        );
        assert_eq!(inner.get("flag"), Some(&AMQPValue::Boolean(true)));
        assert_eq!(
            inner.get("name"),
            Some(&AMQPValue::LongString(LongString::from("a=b")))
        );
        let error = parse_table(&["novalue".into()], "--header").unwrap_err();
        assert!(error.to_string().contains("--header expects KEY=VALUE"));
    }
}
