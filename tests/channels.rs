//! Channel lifecycle: open/close/close-ok, 504 for methods on unopened channels and second
//! opens, the "closing" state after the broker's channel.close, and channel id reuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use amq_protocol::protocol::{channel, queue, AMQPClass};
use lapin::options::*;
use lapin::BasicProperties;

fn channel_open() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))
}

fn channel_close() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

fn channel_close_ok() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
}

fn queue_declare(name: &str, passive: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive,
        ..Default::default()
    }))
}

async fn expect_close_ok(c: &mut RawClient, ch: u16) {
    match c.next_frame().await {
        Some(warren_broker::connection::frame::Frame::Method(id, m)) => {
            assert_eq!(id, ch, "close-ok on the wrong channel");
            assert!(
                matches!(*m, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))),
                "expected channel.close-ok, got {m:?}"
            );
        }
        other => panic!("expected channel.close-ok, got {other:?}"),
    }
}

/// The next method must be queue.declare-ok for `name`, on channel `ch`.
async fn expect_declare_ok(c: &mut RawClient, ch: u16, name: &str) {
    match c.next_frame().await {
        Some(warren_broker::connection::frame::Frame::Method(id, m)) => {
            assert_eq!(id, ch);
            match *m {
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => {
                    assert_eq!(ok.queue.as_str(), name)
                }
                other => panic!("expected queue.declare-ok, got {other:?}"),
            }
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

async fn send_connection_close_ok(c: &mut RawClient) {
    c.send_method(
        0,
        AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::CloseOk(
            amq_protocol::protocol::connection::CloseOk {},
        )),
    )
    .await;
}

#[tokio::test]
async fn channel_open_and_client_close_get_open_ok_and_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    c.send_method(1, channel_close()).await;
    expect_close_ok(&mut c, 1).await;
    // The connection is unaffected.
    c.open_channel(2).await;
    c.send_method(2, queue_declare("after-close", false)).await;
    expect_declare_ok(&mut c, 2, "after-close").await;
}

#[tokio::test]
async fn lapin_channel_close_completes_and_leaves_the_connection_open() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert!(ch.status().connected());
    within(ch.close(200, "bye".into())).await.unwrap();
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
    let other = conn.create_channel().await.unwrap();
    declare_queue(&other, "still-open").await;
}

#[tokio::test]
async fn method_on_unopened_channel_closes_connection_with_504() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.send_method(3, queue_declare("q", false)).await;
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 504);
    assert_eq!(text, "CHANNEL_ERROR - expected 'channel.open'");
    assert_eq!((class_id, method_id), (50, 10));
    send_connection_close_ok(&mut c).await;
    assert_eq!(c.read_to_end().await, b"");
}

#[tokio::test]
async fn second_channel_open_closes_connection_with_504() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    c.send_method(1, channel_open()).await;
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 504);
    assert_eq!(text, "CHANNEL_ERROR - second 'channel.open' seen");
    assert_eq!((class_id, method_id), (20, 10));
    send_connection_close_ok(&mut c).await;
    assert_eq!(c.read_to_end().await, b"");
}

#[tokio::test]
async fn after_channel_close_everything_but_close_ok_is_ignored() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;

    // A soft error: the broker closes channel 1 with 404.
    c.send_method(1, queue_declare("missing", true)).await;
    let (ch, code, text, class_id, method_id) = c.expect_channel_close().await;
    assert_eq!((ch, code), (1, 404));
    assert_eq!(text, "NOT_FOUND - no queue 'missing' in vhost '/'");
    assert_eq!((class_id, method_id), (50, 10));

    // Until our close-ok, channel 1 ignores everything: a declare, a whole publish, a second
    // open (which would otherwise be a 504 connection error) and a content frame out of place.
    c.send_method(1, queue_declare("ignored-while-closing", false))
        .await;
    c.send_method(
        1,
        AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Publish(
            amq_protocol::protocol::basic::Publish {
                exchange: "".into(),
                routing_key: "ignored-while-closing".into(),
                mandatory: false,
                immediate: false,
            },
        )),
    )
    .await;
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(&2u64.to_be_bytes());
    header.extend_from_slice(&[0, 0]);
    c.write(&raw_frame(2, 1, &header)).await;
    c.write(&raw_frame(3, 1, b"hi")).await;
    c.write(&raw_frame(3, 1, b"stray body")).await;
    c.send_method(1, channel_open()).await;
    c.send_method(1, channel_close_ok()).await;

    // Reopened: the first thing back on the connection is open-ok, so nothing above was
    // answered (and the connection survived the stray open and body).
    c.open_channel(1).await;
    c.send_method(1, queue_declare("ignored-while-closing", true))
        .await;
    let (ch, code, _, _, _) = c.expect_channel_close().await;
    assert_eq!(
        (ch, code),
        (1, 404),
        "the declare sent while closing was carried out"
    );
}

#[tokio::test]
async fn client_close_crossing_the_brokers_channel_close_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    c.send_method(1, queue_declare("missing", true)).await;
    let (ch, code, _, _, _) = c.expect_channel_close().await;
    assert_eq!((ch, code), (1, 404));
    // Both sides closed at once: the broker treats our close as the end of the channel.
    c.send_method(1, channel_close()).await;
    expect_close_ok(&mut c, 1).await;
    c.open_channel(1).await;
}

#[tokio::test]
async fn channel_ids_are_reusable_after_close() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    for round in 0..3 {
        c.open_channel(7).await;
        let name = format!("reuse-{round}");
        c.send_method(7, queue_declare(&name, false)).await;
        expect_declare_ok(&mut c, 7, &name).await;
        c.send_method(7, channel_close()).await;
        expect_close_ok(&mut c, 7).await;
    }
}

#[tokio::test]
async fn channel_error_closes_only_that_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let good = conn.create_channel().await.unwrap();
    let bad = conn.create_channel().await.unwrap();
    let err = passive_queue(&bad, "nowhere").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert!(!bad.status().connected());
    assert!(conn.status().connected());
    declare_queue(&good, "fine").await;
    good.basic_publish(
        "".into(),
        "fine".into(),
        BasicPublishOptions::default(),
        b"ok",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = within(good.basic_get("fine".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.delivery.data, b"ok");
}
