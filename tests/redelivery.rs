//! Redelivery: when a channel or connection goes away (closed cleanly, or its socket dropped),
//! its unacked messages return to their queues ahead of newer messages, in their original
//! order, marked redelivered, and go to the queue's other consumers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use amq_protocol::protocol::{basic, AMQPClass};
use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use warren_broker::connection::frame::Frame;

/// Polls the queue (one round trip at a time) until it reports `ready` messages: for a
/// dropped socket, where the client has no reply to wait on.
async fn wait_for_ready(ch: &Channel, queue: &str, ready: u32) {
    within(async {
        while queue_counts(ch, queue).await.0 != ready {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The first consumer ("a") holds m0..m2 unacked; a second consumer ("b", prefetch 1) holds n0
/// with n1..n3 waiting in the queue. Returns b's channel, its consumer and the held n0.
struct Scene {
    b_ch: Channel,
    b: Consumer,
    n0: Delivery,
    _b_conn: lapin::Connection,
}

async fn second_consumer_with_newer_messages_waiting(broker: &TestBroker) -> Scene {
    let (b_conn, b_ch) = broker.channel().await;
    b_ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut b = consume(&b_ch, "q", "b").await;
    for i in 0..4 {
        publish_to_queue(&b_ch, "q", &format!("n{i}")).await;
    }
    let n0 = next_delivery(&mut b).await;
    assert_eq!(body_text(&n0), "n0");
    assert_eq!(queue_counts(&b_ch, "q").await, (3, 2));
    Scene {
        b_ch,
        b,
        n0,
        _b_conn: b_conn,
    }
}

/// After "a" went away: its m0..m2 come to "b" first, in order and redelivered, then n1..n3.
async fn b_gets_returned_messages_first(scene: Scene) {
    let Scene {
        b_ch, mut b, n0, ..
    } = scene;
    n0.ack(BasicAckOptions::default()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        let d = next_delivery(&mut b).await;
        got.push((body_text(&d), d.redelivered));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let expected = [
        ("m0", true),
        ("m1", true),
        ("m2", true),
        ("n1", false),
        ("n2", false),
        ("n3", false),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(b, r)| (b.to_string(), *r)).collect();
    assert_eq!(got, expected);
    assert_eq!(queue_counts(&b_ch, "q").await, (0, 1));
}

/// A lapin consumer "a" with prefetch 3 that received m0..m2 and acked none.
async fn first_consumer_holding_three(
    broker: &TestBroker,
) -> (lapin::Connection, Channel, Consumer) {
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    for i in 0..3 {
        publish_to_queue(&ch, "q", &format!("m{i}")).await;
    }
    let mut a = consume(&ch, "q", "a").await;
    for i in 0..3 {
        let d = next_delivery(&mut a).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        assert!(!d.redelivered);
    }
    (conn, ch, a)
}

#[tokio::test]
async fn closing_a_channel_returns_its_unacked_messages_first_in_order_redelivered() {
    let broker = TestBroker::start().await;
    let (_a_conn, a_ch, a) = first_consumer_holding_three(&broker).await;
    let scene = second_consumer_with_newer_messages_waiting(&broker).await;
    drop(a);
    a_ch.close(200, "bye".into()).await.unwrap();
    // close-ok comes after the messages are back in the queue.
    assert_eq!(queue_counts(&scene.b_ch, "q").await, (6, 1));
    b_gets_returned_messages_first(scene).await;
}

#[tokio::test]
async fn closing_a_connection_returns_its_unacked_messages_first_in_order_redelivered() {
    let broker = TestBroker::start().await;
    let (a_conn, _a_ch, _a) = first_consumer_holding_three(&broker).await;
    let scene = second_consumer_with_newer_messages_waiting(&broker).await;
    a_conn.close(200, "bye".into()).await.unwrap();
    // rabbitmq-compat: close-ok comes after every channel of the connection was cleaned up.
    assert_eq!(queue_counts(&scene.b_ch, "q").await, (6, 1));
    b_gets_returned_messages_first(scene).await;
}

/// A raw-frame consumer: basic.qos and basic.consume on channel 1, then deliveries read by hand.
async fn raw_consumer(broker: &TestBroker, queue_name: &str, prefetch: u16) -> RawClient {
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, queue_name).await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: prefetch,
            global: false,
        })),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        AMQPClass::Basic(basic::AMQPMethod::QosOk(_))
    ));
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue_name.into(),
            consumer_tag: "raw".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))
    ));
    raw
}

/// Reads one basic.deliver with its content: (delivery tag, redelivered, body).
async fn raw_delivery(raw: &mut RawClient) -> (u64, bool, String) {
    let deliver = match raw.next_method().await {
        AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) => d,
        other => panic!("expected basic.deliver, got {other:?}"),
    };
    let size = match raw.next_frame().await {
        Some(Frame::Header(_, h)) => h.body_size as usize,
        other => panic!("expected a content header, got {other:?}"),
    };
    let mut data = Vec::new();
    while data.len() < size {
        match raw.next_frame().await {
            Some(Frame::Body(_, chunk)) => data.extend_from_slice(&chunk),
            other => panic!("expected a content body, got {other:?}"),
        }
    }
    (
        deliver.delivery_tag,
        deliver.redelivered,
        String::from_utf8(data).unwrap(),
    )
}

#[tokio::test]
async fn dropping_a_socket_returns_its_unacked_messages_first_in_order_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    for i in 0..3 {
        publish_to_queue(&ch, "q", &format!("m{i}")).await;
    }
    let mut a = raw_consumer(&broker, "q", 3).await;
    for i in 0..3 {
        let (tag, redelivered, body) = raw_delivery(&mut a).await;
        assert_eq!((tag, redelivered, body), (i + 1, false, format!("m{i}")));
    }
    let scene = second_consumer_with_newer_messages_waiting(&broker).await;
    // No close, no close-ok: the TCP connection just ends.
    drop(a);
    wait_for_ready(&scene.b_ch, "q", 6).await;
    assert_eq!(queue_counts(&scene.b_ch, "q").await, (6, 1));
    b_gets_returned_messages_first(scene).await;
}

#[tokio::test]
async fn dropping_a_socket_with_many_unacked_returns_all_of_them_in_order() {
    const TOTAL: usize = 300;
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let mut a = raw_consumer(&broker, "q", 0).await;
    for i in 0..TOTAL {
        publish_to_queue(&ch, "q", &format!("m{i}")).await;
    }
    // Read part of the stream, then vanish with the rest in flight.
    let seen = 120;
    for i in 0..seen {
        let (_, redelivered, body) = raw_delivery(&mut a).await;
        assert_eq!((redelivered, body), (false, format!("m{i}")));
    }
    drop(a);
    wait_for_ready(&ch, "q", TOTAL as u32).await;
    let mut b = consume(&ch, "q", "b").await;
    for i in 0..TOTAL {
        let d = next_delivery(&mut b).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        // Everything the dropped client read was delivered to it; what it never read may or
        // may not have reached its socket.
        if i < seen {
            assert!(d.redelivered, "m{i} should be marked redelivered");
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
}

#[tokio::test]
async fn closing_a_channel_returns_unacked_basic_get_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_to_queue(&ch, "q", "m0").await;
    publish_to_queue(&ch, "q", "m1").await;
    let got = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(body_text(&got.delivery), "m0");
    assert!(!got.delivery.redelivered);
    ch.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let again = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(body_text(&again.delivery), "m0");
    assert!(again.delivery.redelivered);
    assert_eq!(again.message_count, 1);
}

#[tokio::test]
async fn unacked_messages_from_several_queues_each_return_to_their_own_queue() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    for q in ["x", "y"] {
        declare_queue(&ch, q).await;
        for i in 0..3 {
            publish_to_queue(&ch, q, &format!("{q}{i}")).await;
        }
    }
    let mut cx = consume(&ch, "x", "cx").await;
    let mut cy = consume(&ch, "y", "cy").await;
    // Interleave: ack x1 and y0, keep the rest unacked.
    for i in 0..3 {
        let dx = next_delivery(&mut cx).await;
        let dy = next_delivery(&mut cy).await;
        if i == 1 {
            dx.ack(BasicAckOptions::default()).await.unwrap();
        }
        if i == 0 {
            dy.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    drop((cx, cy));
    ch.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    for (q, expected) in [("x", ["x0", "x2"]), ("y", ["y1", "y2"])] {
        assert_eq!(queue_counts(&ch2, q).await, (2, 0));
        for e in expected {
            let got = ch2
                .basic_get(q.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("get-ok");
            assert_eq!(body_text(&got.delivery), e);
            assert!(got.delivery.redelivered);
        }
    }
}

#[tokio::test]
async fn channel_closed_by_a_broker_error_returns_its_unacked_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_to_queue(&ch, "q", "m0").await;
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    // An unknown tag closes the channel with 406 (see basic.rs); its unacked m0 returns.
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    let err = within(consumer.next()).await.unwrap().unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    let ch2 = conn.create_channel().await.unwrap();
    wait_for_ready(&ch2, "q", 1).await;
    let got = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(body_text(&got.delivery), "m0");
    assert!(got.delivery.redelivered);
}

#[tokio::test]
async fn redelivered_messages_keep_their_place_among_requeued_and_acked_ones() {
    // Requeue order comes from the original queue position, not the order of nacks.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    for i in 0..5 {
        publish_to_queue(&ch, "q", &format!("m{i}")).await;
    }
    let mut consumer = consume(&ch, "q", "c").await;
    let mut ds = Vec::new();
    for _ in 0..5 {
        ds.push(next_delivery(&mut consumer).await);
    }
    drop(consumer);
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let requeue = BasicRejectOptions { requeue: true };
    ds[3].reject(requeue).await.unwrap();
    ds[1].reject(requeue).await.unwrap();
    ds[2].ack(BasicAckOptions::default()).await.unwrap();
    ds[4].reject(requeue).await.unwrap();
    ds[0].reject(requeue).await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        assert!(m.delivery.redelivered);
        got.push(body_text(&m.delivery));
    }
    assert_eq!(got, ["m0", "m1", "m3", "m4"]);
}
