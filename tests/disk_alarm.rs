//! The disk alarm: while free space is below the limit, connections that publish are blocked
//! (connection.blocked when they asked for it, and their socket is not read); they resume when
//! space returns. Connections that only consume keep working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use amq_protocol::protocol::{connection, queue, AMQPClass};
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use warren_broker::connection::frame::Frame;

/// Sends a passive queue.declare on `channel`: a round trip through the channel and the queue.
async fn send_passive_declare(c: &mut RawClient, channel: u16, name: &str) {
    c.send_method(
        channel,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            passive: true,
            ..Default::default()
        })),
    )
    .await;
}

#[tokio::test]
async fn publishers_are_blocked_under_the_disk_alarm_and_resume_when_space_returns() {
    let broker = TestBroker::start().await;
    let (_observer_conn, observer) = broker.channel().await;
    declare_queue(&observer, "alarmed").await;

    let mut publisher = RawClient::open(broker.addr).await;
    publisher.open_channel(1).await;
    publisher.publish_chunked(1, "alarmed", b"hello", 5).await;
    // A synchronous round trip on the publisher's channel: the publish was handled.
    send_passive_declare(&mut publisher, 1, "alarmed").await;
    assert!(matches!(
        publisher.next_method().await,
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))
    ));
    assert_eq!(ready_count(&observer, "alarmed").await, 1);

    // Free space is now "below the limit".
    broker.broker.set_disk_free_limit(u64::MAX);
    match publisher.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::Blocked(b)) => {
            assert_eq!(b.reason.as_str(), "low on disk")
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    // What the blocked publisher sends now is not read...
    publisher.publish_chunked(1, "alarmed", b"hello", 5).await;
    // ...while a connection that never published still works (declare round trip).
    assert_eq!(ready_count(&observer, "alarmed").await, 1);

    broker.broker.set_disk_free_limit(0);
    match publisher.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    // The held publish goes through once reading resumes.
    send_passive_declare(&mut publisher, 1, "alarmed").await;
    loop {
        match publisher.next_frame().await {
            Some(Frame::Method(_, m)) => {
                if let AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) = *m {
                    assert_eq!(ok.message_count, 2);
                    break;
                }
            }
            Some(_) => continue,
            None => panic!("publisher connection closed"),
        }
    }
}

#[tokio::test]
async fn lapin_sees_its_connection_blocked_and_unblocked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.basic_publish(
        "".into(),
        "q".into(),
        BasicPublishOptions::default(),
        b"x",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap();
    // Round trip so the publish is known to the broker before the alarm.
    ready_count(&ch, "q").await;
    let mut events = conn.events_listener();
    broker.broker.set_disk_free_limit(u64::MAX);
    let reason = within(async {
        loop {
            if let Some(lapin::Event::ConnectionBlocked(reason)) = events.next().await {
                return reason;
            }
        }
    })
    .await;
    assert_eq!(reason, "low on disk");
    assert!(conn.status().blocked());
    broker.broker.set_disk_free_limit(0);
    within(async {
        while !matches!(events.next().await, Some(lapin::Event::ConnectionUnblocked)) {}
    })
    .await;
    assert!(!conn.status().blocked());
    assert_eq!(ready_count(&ch, "q").await, 1);
}
