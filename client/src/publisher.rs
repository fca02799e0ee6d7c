//! The publisher: publishes with confirms on one channel, reconnecting (and declaring its
//! topology again) when the connection is lost.
//!
//! A message whose connection is lost before its confirm arrives is in an unknown state:
//! the broker may have it or not. [`OnConnectionLoss`] decides what happens to it —
//! published again on the next connection (at-least-once: the broker may then hold it
//! twice) or failed with [`Error::ConnectionLost`]. It is never dropped silently.
//!
//! ```text
//! publish(message) ─ session (connect, confirm.select, declare topology if new) ─ basic.publish
//!      └─ Confirm::wait ─ basic.ack → Ok · basic.nack → Nacked · basic.return → Returned
//!                       └─ connection lost → publish again on a new session, or ConnectionLost
//! ```

use crate::connect::{connect, connect_with_retry, Backoff};
use crate::error::{is_connection_failure, Error};
use crate::message::Message;
use crate::topology::Topology;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, PublisherConfirm};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What happens to a message whose connection is lost before it is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConnectionLoss {
    /// Fail it with [`Error::ConnectionLost`]; the caller decides.
    Fail,
    /// Publish it again on a new connection, up to `attempts` publishes in all; then fail
    /// it. The broker may receive it more than once (at-least-once delivery).
    Retry { attempts: u32 },
}

/// How a [`Publisher`] behaves.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Declared on connect and after every reconnect.
    pub topology: Topology,
    pub on_connection_loss: OnConnectionLoss,
    /// Delays between reconnect attempts, and how many before a publish fails (the first
    /// connect is a single attempt, so that a wrong URL fails at once).
    pub reconnect: Backoff,
    /// How long to wait for a confirm before giving up with [`Error::Timeout`] (the
    /// message may still be confirmed later, so it is not published again). It does not
    /// bound a publish the broker holds back with `connection.blocked` (disk alarm): that
    /// waits until the broker unblocks or the connection is lost.
    pub confirm_timeout: Duration,
    /// The connection's name, shown in the broker's connection listing.
    pub name: String,
}

impl Default for PublisherOptions {
    fn default() -> PublisherOptions {
        PublisherOptions {
            topology: Topology::default(),
            on_connection_loss: OnConnectionLoss::Retry { attempts: 5 },
            // About 45 s of attempts (0.1 s doubling up to 10 s), then the publish fails
            // with the connect error instead of waiting for the broker indefinitely.
            reconnect: Backoff {
                max_attempts: Some(10),
                ..Backoff::default()
            },
            confirm_timeout: Duration::from_secs(30),
            name: "warren-client publisher".into(),
        }
    }
}

/// A publisher with confirms. Cheap to clone: clones share one connection and channel.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    options: PublisherOptions,
    /// The owned topology: the options' plus whatever `declare` added. A std mutex: it is
    /// only cloned or extended, never held across an await.
    topology: Mutex<Topology>,
    /// The current connection and channel. A tokio mutex so that one task reconnects while
    /// the others wait for the result instead of each opening its own connection.
    session: tokio::sync::Mutex<Option<Session>>,
    closed: CancellationToken,
    sessions: AtomicU64,
}

#[derive(Clone)]
struct Session {
    connection: Arc<Connection>,
    channel: Channel,
    /// Which session this is (1, 2, ...), so that a failure seen late does not discard a
    /// newer session.
    id: u64,
}

impl Publisher {
    /// Connects to `url`, declares the topology and puts the channel in confirm mode.
    pub async fn connect(url: &str, options: PublisherOptions) -> Result<Publisher, Error> {
        let topology = options.topology.clone();
        let publisher = Publisher {
            inner: Arc::new(Inner {
                url: url.to_string(),
                options,
                topology: Mutex::new(topology),
                session: tokio::sync::Mutex::new(None),
                closed: CancellationToken::new(),
                sessions: AtomicU64::new(0),
            }),
        };
        let connection = connect(url, &publisher.inner.options.name).await?;
        let session = publisher.open_session(connection).await?;
        *publisher.inner.session.lock().await = Some(session);
        Ok(publisher)
    }

    /// How many connections this publisher has opened (1 until the first reconnect).
    pub fn connections_opened(&self) -> u64 {
        self.inner.sessions.load(Ordering::Relaxed)
    }

    /// Declares `topology` now and again after every reconnect.
    pub async fn declare(&self, topology: Topology) -> Result<(), Error> {
        let session = self.session().await?;
        topology.declare(&session.channel).await?;
        if let Ok(mut owned) = self.inner.topology.lock() {
            owned.extend(topology);
        }
        Ok(())
    }

    /// Publishes `message` and returns once its frames are handed to the connection; the
    /// returned [`Confirm`] resolves when the broker confirms it. Messages published from
    /// one task are sent in order.
    pub async fn publish(&self, message: Message) -> Result<Confirm, Error> {
        let mut message = message;
        if message.persistent.is_none() {
            let durable = self
                .inner
                .topology
                .lock()
                .ok()
                .and_then(|t| t.is_durable_target(&message.exchange, &message.routing_key));
            // Unknown targets get persistent messages: a broker stores a persistent message
            // only in a durable queue, so a transient queue costs nothing more.
            message.persistent = Some(durable.unwrap_or(true));
        }
        let mut confirm = Confirm {
            publisher: self.clone(),
            message: Arc::new(message),
            publishes: 0,
            pending: None,
        };
        confirm.send().await?;
        Ok(confirm)
    }

    /// Publishes `message` and waits for its confirm.
    pub async fn send(&self, message: Message) -> Result<(), Error> {
        self.publish(message).await?.wait().await
    }

    /// `value` as JSON to `exchange` with `routing_key`, waiting for the confirm.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing_key: &str,
        value: &T,
    ) -> Result<(), Error> {
        self.send(Message::json(exchange, routing_key, value)?)
            .await
    }

    /// Publishes every message, then waits for all their confirms; returns each message's
    /// outcome, in order.
    pub async fn send_all(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Vec<Result<(), Error>> {
        let mut pending = Vec::new();
        for message in messages {
            pending.push(self.publish(message).await);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for published in pending {
            outcomes.push(match published {
                Ok(confirm) => confirm.wait().await,
                Err(e) => Err(e),
            });
        }
        outcomes
    }

    /// Publishes every message and waits for all their confirms: the number confirmed, or
    /// the first failure (after every confirm was waited for).
    pub async fn send_batch(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<usize, Error> {
        let outcomes = self.send_all(messages).await;
        let count = outcomes.len();
        match outcomes.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Closes the connection. Publishing afterwards fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.closed.cancel();
        let session = self.inner.session.lock().await.take();
        if let Some(session) = session {
            if session.connection.status().connected() {
                session
                    .connection
                    .close(200, "publisher closed".into())
                    .await
                    .map_err(|e| Error::amqp("closing the publisher's connection", e))?;
            }
        }
        Ok(())
    }

    /// The current session, opening a channel or a whole connection if needed.
    async fn session(&self) -> Result<Session, Error> {
        if self.inner.closed.is_cancelled() {
            return Err(Error::Closed);
        }
        let mut slot = self.inner.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if session.channel.status().connected() {
                return Ok(session.clone());
            }
            if session.connection.status().connected() {
                // The broker closed the channel (a publish to a missing exchange, say); the
                // connection and the topology are fine.
                let channel = open_confirm_channel(&session.connection).await?;
                let session = Session {
                    channel,
                    ..session.clone()
                };
                *slot = Some(session.clone());
                return Ok(session);
            }
        }
        *slot = None;
        let connection = connect_with_retry(
            &self.inner.url,
            &self.inner.options.name,
            &self.inner.options.reconnect,
            &self.inner.closed,
        )
        .await?;
        let session = self.open_session(connection).await?;
        tracing::info!(session = session.id, "publisher reconnected");
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn open_session(&self, connection: Connection) -> Result<Session, Error> {
        let channel = open_confirm_channel(&connection).await?;
        let topology = self
            .inner
            .topology
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        topology.declare(&channel).await?;
        let id = self.inner.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Session {
            connection: Arc::new(connection),
            channel,
            id,
        })
    }

    /// Forgets session `id` if it is still the current one and its connection is gone.
    async fn discard(&self, id: u64) {
        let mut slot = self.inner.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if session.id == id && !session.connection.status().connected() {
                *slot = None;
            }
        }
    }

    fn attempts(&self) -> u32 {
        match self.inner.options.on_connection_loss {
            OnConnectionLoss::Fail => 1,
            OnConnectionLoss::Retry { attempts } => attempts.max(1),
        }
    }
}

async fn open_confirm_channel(connection: &Connection) -> Result<Channel, Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| Error::amqp("opening a channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Error::amqp("confirm.select", e))?;
    Ok(channel)
}

/// A published message waiting for its confirm. Dropping it does not cancel the publish.
#[must_use = "a publish is confirmed only when its Confirm is waited for"]
pub struct Confirm {
    publisher: Publisher,
    message: Arc<Message>,
    /// How many times the message was handed to a connection.
    publishes: u32,
    pending: Option<(PublisherConfirm, Session)>,
}

impl Confirm {
    /// Waits for the broker's confirm: `Ok` once it has the message (on disk, for a
    /// persistent message in a durable queue).
    pub async fn wait(mut self) -> Result<(), Error> {
        let timeout = self.publisher.inner.options.confirm_timeout;
        loop {
            let Some((pending, session)) = self.pending.take() else {
                return Err(Error::Closed);
            };
            let answer = match tokio::time::timeout(timeout, pending).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(Error::Timeout {
                        context: format!(
                            "waiting for the confirm of a message to {}",
                            self.target()
                        ),
                        after: timeout,
                    })
                }
            };
            match answer {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
                    return Err(Error::Returned {
                        target: self.target(),
                        reply_code: returned.reply_code,
                        reply_text: returned.reply_text.as_str().to_string(),
                    })
                }
                Ok(Confirmation::Nack(None)) => {
                    return Err(Error::Nacked {
                        target: self.target(),
                    })
                }
                Err(error) => {
                    if !self.lost_connection(&error, &session) {
                        return Err(Error::amqp(
                            format!("publishing to {}", self.target()),
                            error,
                        ));
                    }
                    self.publisher.discard(session.id).await;
                    self.retry_or_fail()?;
                    tracing::warn!(target = %self.target(), %error, "connection lost before the confirm; publishing again");
                    self.send().await?;
                }
            }
        }
    }

    /// Hands the message to the current session (reconnecting if needed).
    async fn send(&mut self) -> Result<(), Error> {
        loop {
            let session = self.publisher.session().await?;
            self.publishes += 1;
            let message = &self.message;
            let properties = message.wire_properties(true);
            let published = session
                .channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: message.mandatory,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    properties,
                )
                .await;
            match published {
                Ok(pending) => {
                    self.pending = Some((pending, session));
                    return Ok(());
                }
                Err(error) => {
                    if !self.lost_connection(&error, &session) {
                        return Err(Error::amqp(
                            format!("publishing to {}", self.target()),
                            error,
                        ));
                    }
                    self.publisher.discard(session.id).await;
                    self.retry_or_fail()?;
                }
            }
        }
    }

    fn lost_connection(&self, error: &lapin::Error, session: &Session) -> bool {
        is_connection_failure(error) || !session.connection.status().connected()
    }

    fn retry_or_fail(&self) -> Result<(), Error> {
        if self.publishes >= self.publisher.attempts() {
            Err(Error::ConnectionLost {
                context: format!(
                    "publishing to {} ({} attempt{})",
                    self.target(),
                    self.publishes,
                    if self.publishes == 1 { "" } else { "s" }
                ),
            })
        } else {
            Ok(())
        }
    }

    fn target(&self) -> String {
        self.message.target()
    }
}
