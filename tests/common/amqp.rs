//! lapin one-liners shared by the end-to-end tests: declare, bind, publish, consume and get,
//! each unwrapping the broker's reply (or returning it where a test checks a refusal) and
//! bounded by `within` so a broken broker fails the test instead of hanging it.

use super::{reply_code, reply_text, within};
use futures_lite::{Stream, StreamExt};
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer, Event, ExchangeKind};

// ---- options and arguments -----------------------------------------------------------------

/// Options for a passive queue.declare: a probe that never creates the queue.
pub fn passive_queue_options() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

/// Options for a passive exchange.declare.
pub fn passive_exchange_options() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// exchange.declare options with the three flags a redeclare must match.
pub fn exchange_flags(durable: bool, auto_delete: bool, internal: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable,
        auto_delete,
        internal,
        ..ExchangeDeclareOptions::default()
    }
}

/// basic.consume options with `no_ack` set.
pub fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    }
}

/// A field table from (key, value) pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A long-string field value.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The (code, text) of the error the broker refused a method with (channel or connection close).
pub fn refusal(result: lapin::Result<impl std::fmt::Debug>) -> (Option<u16>, String) {
    let err = result.expect_err("the broker accepted a method it must refuse");
    (reply_code(&err), reply_text(&err))
}

// ---- queues --------------------------------------------------------------------------------

/// queue.declare with any options and arguments; the broker's reply, refusal included.
pub async fn try_declare_queue(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within(ch.queue_declare(name.into(), options, args)).await
}

/// Declares a plain (non-durable, non-exclusive) queue.
pub async fn declare_queue(ch: &Channel, name: &str) -> lapin::Queue {
    try_declare_queue(
        ch,
        name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// A passive queue.declare on `ch`; a missing queue closes `ch` with 404.
pub async fn passive_queue(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    try_declare_queue(ch, name, passive_queue_options(), FieldTable::default()).await
}

/// (ready messages, consumers) as the queue reports them in declare-ok. The queue answers after
/// everything sent to it before, so this is also a round-trip barrier.
pub async fn queue_counts(ch: &Channel, queue: &str) -> (u32, u32) {
    let q = passive_queue(ch, queue).await.unwrap();
    (q.message_count(), q.consumer_count())
}

/// The queue's ready-message count (a round-trip barrier like `queue_counts`).
pub async fn ready_count(ch: &Channel, queue: &str) -> u32 {
    queue_counts(ch, queue).await.0
}

/// (message count, consumer count) from a passive declare on a fresh channel of `conn`, or None
/// for 404. The channel is closed before returning (a 404 closes it anyway).
pub async fn queue_counts_if_exists(conn: &Connection, name: &str) -> Option<(u32, u32)> {
    let ch = conn.create_channel().await.unwrap();
    match passive_queue(&ch, name).await {
        Ok(q) => {
            within(ch.close(200, "OK".into())).await.unwrap();
            Some((q.message_count(), q.consumer_count()))
        }
        Err(e) if reply_code(&e) == Some(404) => None,
        Err(e) => panic!("passive declare of '{name}' failed: {e:?}"),
    }
}

// ---- exchanges and bindings ----------------------------------------------------------------

/// exchange.declare with any kind, options and arguments; the broker's reply.
pub async fn try_declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
    args: FieldTable,
) -> lapin::Result<()> {
    within(ch.exchange_declare(name.into(), kind, options, args)).await
}

/// Declares an exchange of `kind` with default flags.
pub async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    try_declare_exchange(
        ch,
        name,
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// A passive exchange.declare on `ch`; a missing exchange closes `ch` with 404.
pub async fn passive_exchange(ch: &Channel, name: &str) -> lapin::Result<()> {
    try_declare_exchange(
        ch,
        name,
        ExchangeKind::Direct,
        passive_exchange_options(),
        FieldTable::default(),
    )
    .await
}

/// Whether exchange `name` exists, asked with a passive declare on a fresh channel of `conn`,
/// which is closed before returning (a 404 closes it anyway).
pub async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.unwrap();
    match passive_exchange(&ch, name).await {
        Ok(()) => {
            within(ch.close(200, "OK".into())).await.unwrap();
            true
        }
        Err(e) if reply_code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of '{name}' failed: {e:?}"),
    }
}

/// queue.bind with arguments; the broker's reply.
pub async fn try_bind_with(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    within(ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    ))
    .await
}

/// queue.bind without arguments; the broker's reply.
pub async fn try_bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    try_bind_with(ch, queue, exchange, key, FieldTable::default()).await
}

/// Binds `queue` to `exchange` with arguments.
pub async fn bind_with(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    try_bind_with(ch, queue, exchange, key, args).await.unwrap();
}

/// Binds `queue` to `exchange`.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    try_bind(ch, queue, exchange, key).await.unwrap();
}

/// queue.unbind without arguments; the broker's reply.
pub async fn try_unbind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    within(ch.queue_unbind(
        queue.into(),
        exchange.into(),
        key.into(),
        FieldTable::default(),
    ))
    .await
}

/// Unbinds `queue` from `exchange`.
pub async fn unbind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    try_unbind(ch, queue, exchange, key).await.unwrap();
}

// ---- publishing ----------------------------------------------------------------------------

/// Publishes through `exchange` without confirms. Later methods on the same channel see the
/// message enqueued: the broker hands a publish to its queues before it reads the channel's
/// next method.
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    ))
    .await
    .unwrap();
}

/// Publishes `body` to `queue` through the default exchange, with `properties`, no confirms.
pub async fn publish_to_queue_with(
    ch: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    within(ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        properties,
    ))
    .await
    .unwrap();
}

/// Publishes `body` to `queue` through the default exchange, no properties, no confirms.
pub async fn publish_to_queue(ch: &Channel, queue: &str, body: impl AsRef<[u8]>) {
    publish_to_queue_with(ch, queue, body.as_ref(), BasicProperties::default()).await;
}

/// Publishes "m0", "m1", … "m{n-1}" to `queue` through the default exchange.
pub async fn publish_n(ch: &Channel, queue: &str, n: usize) {
    for i in 0..n {
        publish_to_queue(ch, queue, format!("m{i}")).await;
    }
}

/// Publishes and waits for the broker's confirm (the channel must be in confirm mode), so the
/// message is in its queues when this returns. Returns the confirmation.
pub async fn publish_and_confirm(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> Confirmation {
    let confirm = within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions {
            mandatory,
            immediate: false,
        },
        body,
        properties,
    ))
    .await
    .unwrap();
    within(confirm).await.unwrap()
}

/// A new channel on `conn`, in confirm mode.
pub async fn confirming(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    ch
}

// ---- consuming and getting -----------------------------------------------------------------

/// basic.consume with `options`.
pub async fn consume_with(
    ch: &Channel,
    queue: &str,
    tag: &str,
    options: BasicConsumeOptions,
) -> Consumer {
    within(ch.basic_consume(queue.into(), tag.into(), options, FieldTable::default()))
        .await
        .unwrap()
}

/// basic.consume with default options (acks required).
pub async fn consume(ch: &Channel, queue: &str, tag: &str) -> Consumer {
    consume_with(ch, queue, tag, BasicConsumeOptions::default()).await
}

/// The consumer's next delivery.
pub async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within(consumer.next())
        .await
        .expect("consumer ended")
        .expect("delivery error")
}

/// A delivery's body as text.
pub fn body_text(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Asserts that the consumer holds no delivery it has not handed out yet.
pub async fn assert_nothing_buffered(consumer: &mut Consumer) {
    let extra = futures_lite::future::poll_once(consumer.next()).await;
    assert!(extra.is_none(), "unexpected extra delivery: {extra:?}");
}

/// Waits for the error that closed a channel or the connection, as lapin reports it.
pub async fn next_error(events: &mut (impl Stream<Item = Event> + Unpin)) -> lapin::Error {
    loop {
        match within(events.next()).await {
            Some(Event::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("event stream ended without an error"),
        }
    }
}

/// basic.get with `no_ack`.
pub async fn get(
    ch: &Channel,
    queue: &str,
    no_ack: bool,
) -> Option<lapin::message::BasicGetMessage> {
    within(ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .unwrap()
}

/// Body of the next message in `queue` (taken without ack), or None when it is empty.
pub async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    get(ch, queue, true).await.map(|m| m.delivery.data.clone())
}

/// Takes every ready message from `queue` (basic.get, no ack) and returns their bodies as text,
/// in order.
pub async fn take_all(ch: &Channel, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(body) = get_body(ch, queue).await {
        bodies.push(String::from_utf8(body).unwrap());
    }
    bodies
}

/// exchange.bind (`destination` receives what `source` routes with `key`); the reply.
pub async fn try_bind_exchange(
    ch: &Channel,
    destination: &str,
    source: &str,
    key: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    within(ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeBindOptions::default(),
        args,
    ))
    .await
}

/// Binds exchange `destination` to `source` with `key`.
pub async fn bind_exchange(ch: &Channel, destination: &str, source: &str, key: &str) {
    try_bind_exchange(ch, destination, source, key, FieldTable::default())
        .await
        .unwrap();
}

/// exchange.unbind; the reply.
pub async fn try_unbind_exchange(
    ch: &Channel,
    destination: &str,
    source: &str,
    key: &str,
) -> lapin::Result<()> {
    within(ch.exchange_unbind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    ))
    .await
}

/// Polls until `queue` holds exactly `n` ready messages (what other queues or timers do in
/// their own time), bounded by `within`.
pub async fn until_ready(ch: &Channel, queue: &str, n: u32) {
    within(async {
        while ready_count(ch, queue).await != n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
}
