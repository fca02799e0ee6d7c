//! Request/reply over the broker: an [`RpcClient`] that publishes requests with a
//! `correlation_id` and a `reply_to`, and waits (with a timeout) for the matching reply;
//! and an [`RpcServer`] that consumes a request queue and publishes each handler's answer
//! to the request's `reply_to`.
//!
//! Replies come back through RabbitMQ's direct reply-to by default: the client consumes
//! the pseudo-queue `amq.rabbitmq.reply-to` (no-ack) on the channel it publishes requests
//! from, and the broker routes replies straight to that consumer — no queue is declared.
//! [`ReplyTo::ExclusiveQueue`] uses a server-named exclusive queue instead, for brokers
//! without direct reply-to.
//!
//! An `RpcClient` does not reconnect: a reply cannot outlive the channel it was asked on
//! (direct reply-to is bound to it), so after a connection loss calls fail and the caller
//! connects a new client. The `RpcServer` runs on a worker pool and reconnects.

use crate::connect::connect;
use crate::error::Error;
use crate::message::{decode_json, encode_json, header_str, Message, JSON_CONTENT_TYPE};
use crate::publisher::{OnConnectionLoss, Publisher, PublisherOptions};
use crate::worker::{PoolStats, Task, TaskError, WorkerPool, WorkerPoolOptions};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// RabbitMQ's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// On a reply: the server's handler failed with this text (the reply body is empty).
pub const RPC_ERROR_HEADER: &str = "x-rpc-error";

/// Where replies are received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyTo {
    /// `amq.rabbitmq.reply-to` (RabbitMQ's direct reply-to).
    #[default]
    Direct,
    /// A server-named, exclusive, auto-delete queue of the client's own.
    ExclusiveQueue,
}

/// A reply: its body and properties.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// Replies expected, by correlation id. A std mutex: inserted and removed without awaiting.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// Sends requests and waits for their replies. Calls may run concurrently from clones.
#[derive(Clone)]
pub struct RpcClient {
    connection: Arc<Connection>,
    channel: Channel,
    reply_to: String,
    pending: Pending,
}

impl RpcClient {
    /// Connects and starts listening for replies.
    pub async fn connect(url: &str, reply: ReplyTo) -> Result<RpcClient, Error> {
        let connection = connect(url, "warren-client rpc client").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| Error::amqp("opening a channel", e))?;
        // Confirms, so that a request nobody can receive (no such queue) fails at once as
        // a returned message instead of running into the timeout.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::amqp("confirm.select", e))?;
        let queue = match reply {
            ReplyTo::Direct => DIRECT_REPLY_TO.to_string(),
            ReplyTo::ExclusiveQueue => channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| Error::amqp("declaring the reply queue", e))?
                .name()
                .as_str()
                .to_string(),
        };
        // rabbitmq-compat: direct reply-to needs a no-ack consumer on the same channel
        // before the first request is published with reply_to set.
        let mut replies = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("consuming replies from '{queue}'"), e))?;
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let Some(id) = delivery.properties.correlation_id().clone() else {
                    continue;
                };
                let waiter = routes.lock().ok().and_then(|mut p| p.remove(id.as_str()));
                // A reply nobody waits for any more (its call timed out) is dropped.
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Reply {
                        body: delivery.data,
                        properties: delivery.properties,
                    });
                }
            }
            // The connection is gone: dropping the senders fails every waiting call.
            if let Ok(mut waiting) = routes.lock() {
                waiting.clear();
            }
        });
        Ok(RpcClient {
            connection: Arc::new(connection),
            channel,
            reply_to: queue,
            pending,
        })
    }

    /// Publishes `body` to `exchange` with `routing_key` and waits up to `timeout` for the
    /// reply. A reply carrying `x-rpc-error` (the server's handler failed) is an error.
    pub async fn call(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let target = crate::message::describe_target(exchange, routing_key);
        let id = uuid::Uuid::new_v4().to_string();
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id.clone(), sender);
        }
        let forget = |pending: &Pending| {
            if let Ok(mut pending) = pending.lock() {
                pending.remove(&id);
            }
        };
        let properties = properties
            .with_correlation_id(id.as_str().into())
            .with_reply_to(self.reply_to.as_str().into());
        let published = async {
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let answer = tokio::time::timeout(timeout, async {
            match published.await {
                Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
                    return Err(Error::Returned {
                        target: target.clone(),
                        reply_code: returned.reply_code,
                        reply_text: returned.reply_text.as_str().to_string(),
                    })
                }
                Ok(Confirmation::Nack(None)) => {
                    return Err(Error::Nacked {
                        target: target.clone(),
                    })
                }
                Ok(_) => {}
                Err(e) => return Err(Error::amqp(format!("sending a request to {target}"), e)),
            }
            receiver.await.map_err(|_| Error::ConnectionLost {
                context: format!("waiting for the reply from {target}"),
            })
        })
        .await;
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                forget(&self.pending);
                return Err(e);
            }
            Err(_) => {
                forget(&self.pending);
                return Err(Error::Timeout {
                    context: format!("waiting for the reply from {target}"),
                    after: timeout,
                });
            }
        };
        if let Some(remote) = header_str(reply.properties.headers().as_ref(), RPC_ERROR_HEADER) {
            return Err(Error::Other(format!(
                "{target} answered with an error: {remote}"
            )));
        }
        Ok(reply)
    }

    /// `request` as JSON to `queue`, the reply decoded from JSON.
    pub async fn call_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        queue: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error> {
        let body = encode_json(request)?;
        let properties = BasicProperties::default().with_content_type(JSON_CONTENT_TYPE.into());
        let reply = self.call("", queue, &body, properties, timeout).await?;
        decode_json(&reply.body)
    }

    pub async fn close(&self) -> Result<(), Error> {
        self.connection
            .close(200, "rpc client closed".into())
            .await
            .map_err(|e| Error::amqp("closing the rpc client's connection", e))
    }
}

/// Serves requests from a queue: each handler's answer goes to the request's `reply_to`
/// with its `correlation_id`. A handler error is answered with an empty reply carrying
/// `x-rpc-error`, so the caller fails at once instead of waiting for its timeout.
pub struct RpcServer {
    pool: WorkerPool,
    publisher: Publisher,
}

impl RpcServer {
    /// Serves `options.queue` with `handler`. Replies are published on a connection of
    /// their own; a reply that cannot be published is retried as the pool's retry policy
    /// says (the request is handled again).
    pub async fn start<H, F>(
        url: &str,
        options: WorkerPoolOptions,
        handler: H,
    ) -> Result<RpcServer, Error>
    where
        H: Fn(Task) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Vec<u8>, TaskError>> + Send + 'static,
    {
        let publisher = Publisher::connect(
            url,
            PublisherOptions {
                on_connection_loss: OnConnectionLoss::Retry { attempts: 3 },
                name: "warren-client rpc server replies".into(),
                ..PublisherOptions::default()
            },
        )
        .await?;
        let handler = Arc::new(handler);
        let replies = publisher.clone();
        let pool = WorkerPool::start(url, options, move |task: Task| {
            let handler = handler.clone();
            let replies = replies.clone();
            async move {
                let (Some(reply_to), correlation_id) = (
                    task.properties.reply_to().clone(),
                    task.properties.correlation_id().clone(),
                ) else {
                    return Err(TaskError::permanent("a request without reply_to"));
                };
                let content_type = task.properties.content_type().clone();
                let mut message = match handler(task).await {
                    Ok(body) => Message::to_queue(reply_to.as_str(), body),
                    Err(error) => Message::to_queue(reply_to.as_str(), Vec::new()).header(
                        RPC_ERROR_HEADER,
                        AMQPValue::LongString(LongString::from(error.message.as_str())),
                    ),
                };
                let mut properties = BasicProperties::default();
                if let Some(id) = correlation_id {
                    properties = properties.with_correlation_id(id);
                }
                if let Some(content_type) = content_type {
                    properties = properties.with_content_type(content_type);
                }
                message = message.with_properties(properties).transient();
                replies.send(message).await?;
                Ok(())
            }
        })
        .await?;
        Ok(RpcServer { pool, publisher })
    }

    /// Serves JSON requests with a handler from the decoded request to the reply value.
    pub async fn start_json<Req, Resp, H, F>(
        url: &str,
        options: WorkerPoolOptions,
        handler: H,
    ) -> Result<RpcServer, Error>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(Req) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Resp, TaskError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        RpcServer::start(url, options, move |task: Task| {
            let handler = handler.clone();
            async move {
                let request: Req = task.json()?;
                let reply = handler(request).await?;
                encode_json(&reply).map_err(|e| TaskError::permanent(e.to_string()))
            }
        })
        .await
    }

    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Stops taking requests, finishes the running ones and closes the connections.
    pub async fn shutdown(self) -> Result<PoolStats, Error> {
        let stats = self.pool.shutdown().await?;
        self.publisher.close().await?;
        Ok(stats)
    }
}
