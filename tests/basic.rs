//! The basic class end to end: consume (server tags, no-ack, exclusive, tag reuse), cancel,
//! get, ack / nack / reject / recover, qos, and the errors RabbitMQ raises for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

fn exclusive() -> BasicConsumeOptions {
    BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    }
}

async fn setup(broker: &TestBroker, queue: &str) -> (Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, queue).await;
    (conn, ch)
}

#[tokio::test]
async fn consume_with_empty_tag_gets_a_server_generated_amq_ctag() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    declare_queue(&ch, "q2").await;
    let mut a = consume(&ch, "q", "").await;
    let b = consume(&ch, "q2", "").await;
    assert!(a.tag().as_str().starts_with("amq.ctag-"), "{}", a.tag());
    assert!(b.tag().as_str().starts_with("amq.ctag-"), "{}", b.tag());
    assert!(a.tag().as_str().len() > "amq.ctag-".len());
    assert_ne!(a.tag(), b.tag(), "generated tags are unique");
    publish_to_queue(&ch, "q", b"x").await;
    let d = next_delivery(&mut a).await;
    assert_eq!(body_text(&d), "x");
}

#[tokio::test]
async fn consume_with_client_tag_uses_that_tag() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    let consumer = consume(&ch, "q", "my-tag").await;
    assert_eq!(consumer.tag().as_str(), "my-tag");
}

#[tokio::test]
async fn no_ack_consumer_takes_messages_out_of_the_queue_without_acks() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        assert!(!d.redelivered);
    }
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
    // Nothing was unacked, so closing the connection returns nothing to the queue.
    conn.close(200, "bye".into()).await.unwrap();
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(queue_counts(&ch2, "q").await, (0, 0));
}

#[tokio::test]
async fn second_consumer_on_an_exclusively_consumed_queue_is_refused_with_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    let _owner = consume_with(&ch, "q", "owner", exclusive()).await;
    let (_conn2, ch2) = broker.channel().await;
    let err = ch2
        .basic_consume(
            "q".into(),
            "other".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err),
        "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    );
    // Only that channel closed: the exclusive consumer still works.
    publish_to_queue(&ch, "q", b"x").await;
    assert_eq!(queue_counts(&ch, "q").await.1, 1);
}

#[tokio::test]
async fn exclusive_consume_on_a_queue_that_has_a_consumer_is_refused_with_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    let _first = consume(&ch, "q", "first").await;
    let (_conn2, ch2) = broker.channel().await;
    let err = ch2
        .basic_consume(
            "q".into(),
            "greedy".into(),
            exclusive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err),
        "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    );
}

#[tokio::test]
async fn exclusive_consumer_leaving_lets_others_consume() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    let owner = consume_with(&ch, "q", "owner", exclusive()).await;
    ch.basic_cancel(owner.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    let mut other = consume(&ch, "q", "other").await;
    publish_to_queue(&ch, "q", b"x").await;
    assert_eq!(body_text(&next_delivery(&mut other).await), "x");
}

#[tokio::test]
async fn reusing_a_consumer_tag_on_a_channel_closes_the_connection_with_530() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    declare_queue(&ch, "q2").await;
    let mut events = Box::pin(conn.events_listener());
    let _first = consume(&ch, "q", "dup").await;
    let result = ch
        .basic_consume(
            "q2".into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let err = match result {
        Err(e) if reply_code(&e).is_some() => e,
        _ => next_error(&mut events).await,
    };
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        reply_text(&err),
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"
    );
    // A connection-level error: the whole connection is gone.
    within(async {
        while conn.status().connected() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(conn.create_channel().await.is_err());
}

#[tokio::test]
async fn consumer_tag_reuse_through_raw_frames_closes_the_connection_with_530() {
    use amq_protocol::protocol::{basic, queue, AMQPClass};
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    raw.next_method().await;
    let consume = || {
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "q".into(),
            consumer_tag: "dup".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        }))
    };
    raw.send_method(1, consume()).await;
    match raw.next_method().await {
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) => {
            assert_eq!(ok.consumer_tag.as_str(), "dup")
        }
        other => panic!("expected consume-ok, got {other:?}"),
    }
    raw.send_method(1, consume()).await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(text, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'");
    assert_eq!((class, method), (60, 20));
}

#[tokio::test]
async fn cancel_stops_deliveries_and_leaves_later_messages_in_the_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    let mut consumer = consume(&ch, "q", "c").await;
    publish_to_queue(&ch, "q", b"before").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "before");
    d.ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_n(&ch, "q", 3).await;
    // The queue has all three and no consumer; the cancelled consumer's stream ends.
    assert_eq!(queue_counts(&ch, "q").await, (3, 0));
    assert!(within(consumer.next()).await.is_none());
    // The messages are still there, in order, for the next consumer.
    let mut again = consume(&ch, "q", "c").await;
    for i in 0..3 {
        assert_eq!(body_text(&next_delivery(&mut again).await), format!("m{i}"));
    }
}

#[tokio::test]
async fn cancelled_consumer_keeps_its_unacked_messages_until_acked() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_to_queue(&ch, "q", b"x").await;
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Acking after cancel is fine (RabbitMQ keeps the delivery on the channel).
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(queue_counts(&ch, "q").await, (0, 0));
}

#[tokio::test]
async fn get_returns_messages_with_the_remaining_count_then_get_empty() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    for (i, remaining) in [2, 1, 0].into_iter().enumerate() {
        let got = ch
            .basic_get("q".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("get-ok");
        assert_eq!(got.message_count, remaining);
        assert_eq!(body_text(&got.delivery), format!("m{i}"));
        assert_eq!(got.delivery.routing_key.as_str(), "q");
        assert_eq!(got.delivery.exchange.as_str(), "");
        assert!(!got.delivery.redelivered);
    }
    let empty = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(empty.is_none(), "expected get-empty");
}

#[tokio::test]
async fn get_with_ack_holds_the_message_until_acked() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_to_queue(&ch, "q", b"x").await;
    let got = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(got.message_count, 0);
    // Unacked: not ready, so a second get finds nothing.
    assert!(ch
        .basic_get("q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    // Acked for good: recover has nothing to bring back.
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(queue_counts(&ch, "q").await, (0, 0));
}

#[tokio::test]
async fn get_on_a_missing_queue_closes_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let err = ch
        .basic_get("nope".into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(reply_text(&err), "NOT_FOUND - no queue 'nope' in vhost '/'");
}

#[tokio::test]
async fn ack_multiple_acks_every_delivery_up_to_the_tag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 5).await;
    let mut consumer = consume(&ch, "q", "c").await;
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(next_delivery(&mut consumer).await.delivery_tag);
    }
    assert_eq!(tags, [1, 2, 3, 4, 5]);
    ch.basic_ack(3, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Closing the channel returns only what is still unacked: m3 and m4.
    drop(consumer);
    ch.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(queue_counts(&ch2, "q").await, (2, 0));
    for expected in ["m3", "m4"] {
        let got = ch2
            .basic_get("q".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("get-ok");
        assert_eq!(body_text(&got.delivery), expected);
        assert!(got.delivery.redelivered);
    }
}

#[tokio::test]
async fn ack_multiple_with_tag_zero_acks_everything_outstanding() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    let mut consumer = consume(&ch, "q", "c").await;
    for _ in 0..3 {
        next_delivery(&mut consumer).await;
    }
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    drop(consumer);
    ch.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(queue_counts(&ch2, "q").await, (0, 0));
}

#[tokio::test]
async fn nack_multiple_with_requeue_redelivers_in_order_marked_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 4).await;
    let mut consumer = consume(&ch, "q", "c").await;
    for i in 0..4 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        assert!(!d.redelivered);
    }
    // Tags 1..=3 go back; tag 4 stays unacked.
    ch.basic_nack(
        3,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        assert!(d.redelivered);
        assert_eq!(d.delivery_tag, 5 + i as u64);
    }
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn nack_without_requeue_drops_the_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    let mut consumer = consume(&ch, "q", "c").await;
    for _ in 0..3 {
        next_delivery(&mut consumer).await;
    }
    ch.basic_nack(
        2,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .unwrap();
    // Closing the channel returns only the one still unacked (m2).
    drop(consumer);
    ch.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let got = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(body_text(&got.delivery), "m2");
    assert_eq!(got.message_count, 0);
}

#[tokio::test]
async fn single_nack_with_requeue_redelivers_only_that_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 2).await;
    let mut consumer = consume(&ch, "q", "c").await;
    let first = next_delivery(&mut consumer).await;
    let _second = next_delivery(&mut consumer).await;
    first
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .unwrap();
    let again = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&again), "m0");
    assert!(again.redelivered);
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn reject_with_requeue_redelivers_marked_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_to_queue(&ch, "q", b"x").await;
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    d.reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let again = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&again), "x");
    assert!(again.redelivered);
    assert_eq!(again.delivery_tag, 2);
}

#[tokio::test]
async fn reject_without_requeue_drops_the_message() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 2).await;
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "m0");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d2 = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d2), "m1");
    drop(consumer);
    ch.close(200, "bye".into()).await.unwrap();
    // Only m1 was still unacked; m0 is gone.
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(queue_counts(&ch2, "q").await, (1, 0));
    let got = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(body_text(&got.delivery), "m1");
}

#[tokio::test]
async fn recover_with_requeue_redelivers_unacked_messages_marked_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    let mut consumer = consume(&ch, "q", "c").await;
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next_delivery(&mut consumer).await);
    }
    first[1].ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    for expected in ["m0", "m2"] {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), expected);
        assert!(d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn recover_without_requeue_closes_the_connection_with_540() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let err = ch
        .basic_recover(BasicRecoverOptions { requeue: false })
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(540));
    assert_eq!(reply_text(&err), "NOT_IMPLEMENTED - requeue=false");
}

#[tokio::test]
async fn qos_without_global_limits_each_consumer_separately() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "a").await;
    declare_queue(&ch, "b").await;
    publish_n(&ch, "a", 5).await;
    publish_n(&ch, "b", 5).await;
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut ca = consume(&ch, "a", "ca").await;
    let mut cb = consume(&ch, "b", "cb").await;
    for c in [&mut ca, &mut cb] {
        for i in 0..2 {
            assert_eq!(body_text(&next_delivery(c).await), format!("m{i}"));
        }
    }
    // Each queue handed out exactly its consumer's two.
    assert_eq!(queue_counts(&ch, "a").await, (3, 1));
    assert_eq!(queue_counts(&ch, "b").await, (3, 1));
    assert_nothing_buffered(&mut ca).await;
    assert_nothing_buffered(&mut cb).await;
}

#[tokio::test]
async fn qos_without_global_applies_to_consumers_created_after_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "a").await;
    declare_queue(&ch, "b").await;
    publish_n(&ch, "a", 5).await;
    publish_n(&ch, "b", 5).await;
    let mut unlimited = consume(&ch, "a", "unlimited").await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut limited = consume(&ch, "b", "limited").await;
    for i in 0..5 {
        assert_eq!(
            body_text(&next_delivery(&mut unlimited).await),
            format!("m{i}")
        );
    }
    assert_eq!(body_text(&next_delivery(&mut limited).await), "m0");
    assert_eq!(queue_counts(&ch, "a").await, (0, 1));
    assert_eq!(queue_counts(&ch, "b").await, (4, 1));
}

#[tokio::test]
async fn qos_global_is_shared_by_all_consumers_on_the_channel() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = setup(&broker, "a").await;
    declare_queue(&ch, "b").await;
    publish_n(&ch, "a", 5).await;
    publish_n(&ch, "b", 5).await;
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut ca = consume(&ch, "a", "ca").await;
    let mut cb = consume(&ch, "b", "cb").await;
    // Three deliveries in all, however they split between the two consumers.
    let (ready_a, _) = queue_counts(&ch, "a").await;
    let (ready_b, _) = queue_counts(&ch, "b").await;
    assert_eq!(10 - ready_a - ready_b, 3, "a={ready_a} b={ready_b}");
    let mut held = Vec::new();
    for _ in 0..(5 - ready_a) {
        held.push(next_delivery(&mut ca).await);
    }
    for _ in 0..(5 - ready_b) {
        held.push(next_delivery(&mut cb).await);
    }
    assert_nothing_buffered(&mut ca).await;
    assert_nothing_buffered(&mut cb).await;
    // One ack frees one slot on the channel: exactly one more delivery, from either queue.
    held[0].ack(BasicAckOptions::default()).await.unwrap();
    let more = within(futures_lite::future::or(
        async { ("a", next_delivery(&mut ca).await) },
        async { ("b", next_delivery(&mut cb).await) },
    ))
    .await;
    assert!(!more.1.redelivered);
    let (ra, _) = queue_counts(&ch, "a").await;
    let (rb, _) = queue_counts(&ch, "b").await;
    assert_eq!(ra + rb, ready_a + ready_b - 1);
}

#[tokio::test]
async fn qos_with_prefetch_size_is_refused_with_540() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    // basic.qos: prefetch_size=1000, prefetch_count=10, global=false (amq-protocol's Qos has
    // no prefetch_size field, so the frame is built by hand).
    let mut payload = Vec::new();
    payload.extend_from_slice(&60u16.to_be_bytes());
    payload.extend_from_slice(&10u16.to_be_bytes());
    payload.extend_from_slice(&1000u32.to_be_bytes());
    payload.extend_from_slice(&10u16.to_be_bytes());
    payload.push(0);
    raw.write(&raw_frame(1, 1, &payload)).await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!(code, 540);
    assert_eq!(text, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)");
    assert_eq!((class, method), (60, 10));
}

#[tokio::test]
async fn ack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(42, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - unknown delivery tag 42"
    );
    // A channel error: the connection stays usable.
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(queue_counts(&ch2, "q").await, (0, 0));
}

#[tokio::test]
async fn acking_a_delivery_twice_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_to_queue(&ch, "q", b"x").await;
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            d.delivery_tag
        )
    );
    // The consumer stream reports the same channel error.
    let from_consumer = within(consumer.next()).await.unwrap().unwrap_err();
    assert_eq!(reply_code(&from_consumer), Some(406));
}

#[tokio::test]
async fn ack_multiple_naming_an_already_acked_tag_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_n(&ch, "q", 3).await;
    let mut consumer = consume(&ch, "q", "c").await;
    for _ in 0..3 {
        next_delivery(&mut consumer).await;
    }
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(2, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(2, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - unknown delivery tag 2"
    );
}

#[tokio::test]
async fn nack_and_reject_of_unknown_tags_close_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, _ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());

    let ch = conn.create_channel().await.unwrap();
    ch.basic_nack(7, BasicNackOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - unknown delivery tag 7"
    );

    let ch = conn.create_channel().await.unwrap();
    ch.basic_reject(9, BasicRejectOptions::default())
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - unknown delivery tag 9"
    );
}

#[tokio::test]
async fn acking_a_no_ack_delivery_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    publish_to_queue(&ch, "q", b"x").await;
    let mut consumer = consume_with(&ch, "q", "c", no_ack()).await;
    let d = next_delivery(&mut consumer).await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            d.delivery_tag
        )
    );
}

#[tokio::test]
async fn mandatory_publish_without_a_route_is_returned_with_312_no_route() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let confirmation = within(confirm).await.unwrap();
    assert!(confirmation.is_ack());
    let returned = confirmation.take_message().expect("basic.return");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(returned.delivery.routing_key.as_str(), "nowhere");
    assert_eq!(returned.delivery.data, b"lost");
}

#[tokio::test]
async fn publish_with_immediate_closes_the_connection_with_540() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker, "q").await;
    let mut events = Box::pin(conn.events_listener());
    let _ = ch
        .basic_publish(
            "".into(),
            "q".into(),
            BasicPublishOptions {
                immediate: true,
                ..Default::default()
            },
            b"now",
            BasicProperties::default(),
        )
        .await;
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(540));
    assert_eq!(reply_text(&err), "NOT_IMPLEMENTED - immediate=true");
    // Nothing was enqueued.
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(queue_counts(&ch2, "q").await, (0, 0));
}
