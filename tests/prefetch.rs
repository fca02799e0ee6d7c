//! Prefetch and delivery order: a consumer never holds more than its prefetch count of unacked
//! deliveries, deliveries resume as acks arrive, a queue's consumers take turns, and a queue is
//! FIFO.
//!
//! "Nothing more arrived" is shown with a round trip, never a sleep: a passive queue.declare
//! asks the queue task itself for its ready count, and the queue answers only after it has run
//! the delivery pass for everything sent to it before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use lapin::options::*;

#[tokio::test]
async fn consumer_never_holds_more_than_its_prefetch_count() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 20).await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    let mut held = Vec::new();
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        held.push(d);
    }
    // Exactly three left the queue, and no fourth delivery reached the client.
    assert_eq!(queue_counts(&ch, "q").await, (17, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn prefetch_holds_for_messages_published_while_consuming() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    publish_n(&ch, "q", 10).await;
    let _a = next_delivery(&mut consumer).await;
    let _b = next_delivery(&mut consumer).await;
    assert_eq!(queue_counts(&ch, "q").await, (8, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn each_ack_lets_exactly_one_more_delivery_through() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 10).await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    let mut held = std::collections::VecDeque::new();
    held.push_back(next_delivery(&mut consumer).await);
    held.push_back(next_delivery(&mut consumer).await);
    for i in 2..10u32 {
        held.pop_front()
            .unwrap()
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        held.push_back(d);
        // Still two unacked at most: the queue handed out i + 1 in all.
        assert_eq!(queue_counts(&ch, "q").await, (10 - (i + 1), 1));
        assert_nothing_buffered(&mut consumer).await;
    }
}

#[tokio::test]
async fn deliveries_resume_after_an_ack_multiple() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 10).await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    let mut last = 0;
    for _ in 0..3 {
        last = next_delivery(&mut consumer).await.delivery_tag;
    }
    assert_eq!(queue_counts(&ch, "q").await, (7, 1));
    ch.basic_ack(last, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    for i in 3..6 {
        assert_eq!(
            body_text(&next_delivery(&mut consumer).await),
            format!("m{i}")
        );
    }
    assert_eq!(queue_counts(&ch, "q").await, (4, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn deliveries_resume_after_nack_and_reject() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 5).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "m0");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "m1");
    d.nack(BasicNackOptions {
        multiple: false,
        requeue: false,
    })
    .await
    .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_text(&d), "m2");
    assert_eq!(queue_counts(&ch, "q").await, (2, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn raising_prefetch_does_not_change_existing_consumers() {
    // rabbitmq-compat: global=false applies to consumers created after the qos call.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 10).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    let _d = next_delivery(&mut consumer).await;
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    assert_eq!(queue_counts(&ch, "q").await, (9, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn raising_global_prefetch_releases_more_deliveries() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 10).await;
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    assert_eq!(body_text(&next_delivery(&mut consumer).await), "m0");
    assert_eq!(queue_counts(&ch, "q").await, (9, 1));
    ch.basic_qos(4, BasicQosOptions { global: true })
        .await
        .unwrap();
    for i in 1..4 {
        assert_eq!(
            body_text(&next_delivery(&mut consumer).await),
            format!("m{i}")
        );
    }
    assert_eq!(queue_counts(&ch, "q").await, (6, 1));
    assert_nothing_buffered(&mut consumer).await;
}

#[tokio::test]
async fn two_consumers_share_a_queue_round_robin_alternating() {
    let broker = TestBroker::start().await;
    let (_c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    declare_queue(&ch1, "q").await;
    let mut a = consume(&ch1, "q", "a").await;
    let mut b = consume(&ch2, "q", "b").await;
    publish_n(&ch1, "q", 10).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(body_text(&next_delivery(&mut a).await));
        got_b.push(body_text(&next_delivery(&mut b).await));
    }
    assert_eq!(got_a, ["m0", "m2", "m4", "m6", "m8"]);
    assert_eq!(got_b, ["m1", "m3", "m5", "m7", "m9"]);
    assert_eq!(queue_counts(&ch1, "q").await, (0, 2));
    assert_nothing_buffered(&mut a).await;
    assert_nothing_buffered(&mut b).await;
}

#[tokio::test]
async fn three_consumers_on_one_channel_take_turns() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let mut consumers = Vec::new();
    for tag in ["a", "b", "c"] {
        consumers.push(consume(&ch, "q", tag).await);
    }
    publish_n(&ch, "q", 9).await;
    for (k, consumer) in consumers.iter_mut().enumerate() {
        for round in 0..3 {
            let d = next_delivery(consumer).await;
            assert_eq!(body_text(&d), format!("m{}", round * 3 + k));
        }
    }
}

#[tokio::test]
async fn round_robin_skips_a_consumer_whose_prefetch_is_full() {
    let broker = TestBroker::start().await;
    let (_c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    declare_queue(&ch1, "q").await;
    ch1.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut slow = consume(&ch1, "q", "slow").await;
    let mut fast = consume(&ch2, "q", "fast").await;
    publish_n(&ch1, "q", 6).await;
    let first = next_delivery(&mut slow).await;
    assert_eq!(body_text(&first), "m0");
    let rest: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let d = next_delivery(&mut fast).await;
            v.push(body_text(&d));
        }
        v
    };
    assert_eq!(rest, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(queue_counts(&ch1, "q").await, (0, 2));
    assert_nothing_buffered(&mut slow).await;
}

#[tokio::test]
async fn a_queue_delivers_in_fifo_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 500).await;
    let mut consumer = consume(&ch, "q", "c").await;
    for i in 0..500 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        assert_eq!(d.delivery_tag, i as u64 + 1);
    }
}

#[tokio::test]
async fn fifo_order_holds_with_prefetch_one_and_acks() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "q", "c").await;
    publish_n(&ch, "q", 50).await;
    for i in 0..50 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_text(&d), format!("m{i}"));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(queue_counts(&ch, "q").await, (0, 1));
}

#[tokio::test]
async fn basic_get_takes_messages_in_fifo_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_n(&ch, "q", 20).await;
    for i in 0..20 {
        let got = ch
            .basic_get("q".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("get-ok");
        assert_eq!(body_text(&got.delivery), format!("m{i}"));
    }
}
