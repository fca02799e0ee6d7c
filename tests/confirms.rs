//! Publisher confirms: confirm.select, sequence numbers from 1, a basic.ack for every publish
//! once it is routed and enqueued (with `multiple` where it covers several), unroutable
//! messages confirmed too, and tx/confirm mixing refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use amq_protocol::protocol::{basic, confirm, tx, AMQPClass};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use warren_broker::connection::frame::Frame;

/// Publishes b"x" and waits for its confirm.
async fn confirmed_publish(ch: &Channel, exchange: &str, routing_key: &str) -> Confirmation {
    publish_and_confirm(
        ch,
        exchange,
        routing_key,
        b"x",
        BasicProperties::default(),
        false,
    )
    .await
}

async fn raw_confirm_select(raw: &mut RawClient, channel: u16, nowait: bool) {
    raw.send_method(
        channel,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait })),
    )
    .await;
    if !nowait {
        match raw.next_frame().await {
            Some(Frame::Method(ch, m)) => {
                assert_eq!(ch, channel);
                assert!(
                    matches!(*m, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))),
                    "expected confirm.select-ok, got {m:?}"
                );
            }
            other => panic!("expected confirm.select-ok, got {other:?}"),
        }
    }
}

/// The next basic.ack from the broker: (channel, delivery tag, multiple).
async fn raw_ack(raw: &mut RawClient) -> (u16, u64, bool) {
    loop {
        match raw.next_frame().await {
            Some(Frame::Ack(ch, a)) => return (ch, a.delivery_tag, a.multiple),
            Some(Frame::Heartbeat(_)) => continue,
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn confirm_select_is_answered_with_select_ok() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(3).await;
    raw_confirm_select(&mut raw, 3, false).await;
    // Selecting again on a channel already in confirm mode is fine.
    raw_confirm_select(&mut raw, 3, false).await;
}

#[tokio::test]
async fn sequence_numbers_start_at_one_and_count_up_per_publish() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "q").await;
    raw_confirm_select(&mut raw, 1, false).await;
    for expected in 1..=3u64 {
        raw.write(&publish_frames(1, "", "q", false, b"x")).await;
        assert_eq!(raw_ack(&mut raw).await, (1, expected, false));
    }
}

#[tokio::test]
async fn confirm_select_nowait_sends_no_select_ok_but_confirms_publishes() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "q").await;
    raw_confirm_select(&mut raw, 1, true).await;
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    // The very next frame is the ack: no select-ok came before it.
    assert_eq!(raw_ack(&mut raw).await, (1, 1, false));
}

#[tokio::test]
async fn each_channel_numbers_its_confirms_from_one() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    for ch in [1, 2] {
        raw.open_channel(ch).await;
        raw_confirm_select(&mut raw, ch, false).await;
    }
    raw.declare_queue(1, "q").await;
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    assert_eq!(raw_ack(&mut raw).await, (1, 1, false));
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    assert_eq!(raw_ack(&mut raw).await, (1, 2, false));
    raw.write(&publish_frames(2, "", "q", false, b"x")).await;
    assert_eq!(raw_ack(&mut raw).await, (2, 1, false));
}

#[tokio::test]
async fn publishes_before_confirm_select_are_not_counted() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "q").await;
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    raw_confirm_select(&mut raw, 1, false).await;
    raw.write(&publish_frames(1, "", "q", false, b"x")).await;
    assert_eq!(raw_ack(&mut raw).await, (1, 1, false));
}

#[tokio::test]
async fn every_publish_is_acked_through_lapin() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..200 {
        let confirm = ch
            .basic_publish(
                "".into(),
                "q".into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for confirm in pending {
        assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
    }
    assert_eq!(ready_count(&ch, "q").await, 200);
}

#[tokio::test]
async fn a_confirmed_message_is_already_in_its_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        confirmed_publish(&ch, "", "q").await,
        Confirmation::Ack(None)
    );
    // Seen from another connection, right after the ack.
    let (_conn2, ch2) = broker.channel().await;
    let got = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the confirmed message is in the queue");
    assert_eq!(got.delivery.data, b"x");
}

#[tokio::test]
async fn many_publishes_are_each_covered_by_exactly_one_ack() {
    const N: u64 = 3000;
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "q").await;
    raw_confirm_select(&mut raw, 1, false).await;
    // All publishes in one write, so the broker reads many per batch and may answer them with
    // one `multiple` ack.
    let mut all = Vec::new();
    for i in 0..N {
        all.extend(publish_frames(
            1,
            "",
            "q",
            false,
            format!("m{i}").as_bytes(),
        ));
    }
    raw.write(&all).await;
    let mut confirmed = vec![false; N as usize + 1];
    let mut highest = 0;
    let mut multiples = 0;
    while highest < N {
        let (ch, tag, multiple) = raw_ack(&mut raw).await;
        assert_eq!(ch, 1);
        assert!(
            (1..=N).contains(&tag),
            "ack for unknown sequence number {tag}"
        );
        if multiple {
            multiples += 1;
            let newly: Vec<u64> = (1..=tag).filter(|&t| !confirmed[t as usize]).collect();
            assert!(!newly.is_empty(), "multiple ack {tag} confirms nothing new");
            for t in newly {
                confirmed[t as usize] = true;
            }
        } else {
            assert!(
                !confirmed[tag as usize],
                "sequence number {tag} acked twice"
            );
            confirmed[tag as usize] = true;
        }
        highest = highest.max(tag);
    }
    assert!(
        confirmed[1..].iter().all(|&c| c),
        "every sequence number is confirmed"
    );
    assert!(multiples > 0, "expected at least one multiple ack");
}

#[tokio::test]
async fn unroutable_messages_are_still_confirmed() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        confirmed_publish(&ch, "amq.direct", "nobody-listens").await,
        Confirmation::Ack(None)
    );
    assert_eq!(
        confirmed_publish(&ch, "", "no-such-queue").await,
        Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn unroutable_mandatory_message_is_returned_then_confirmed() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            "nobody".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"back",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    // lapin attaches the return to the confirmation only when the return came first.
    let confirmation = within(confirm).await.unwrap();
    assert!(confirmation.is_ack());
    let returned = confirmation.take_message().expect("returned message");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.delivery.data, b"back");
}

#[tokio::test]
async fn basic_return_precedes_the_ack_on_the_wire() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw_confirm_select(&mut raw, 1, false).await;
    raw.write(&publish_frames(1, "amq.direct", "nobody", true, b"back"))
        .await;
    match raw.next_method().await {
        AMQPClass::Basic(basic::AMQPMethod::Return(r)) => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(r.exchange.as_str(), "amq.direct");
            assert_eq!(r.routing_key.as_str(), "nobody");
        }
        other => panic!("expected basic.return, got {other:?}"),
    }
    assert!(matches!(raw.next_frame().await, Some(Frame::Header(1, h)) if h.body_size == 4));
    assert!(matches!(raw.next_frame().await, Some(Frame::Body(1, b)) if b.as_ref() == b"back"));
    assert_eq!(raw_ack(&mut raw).await, (1, 1, false));
}

#[tokio::test]
async fn a_message_routed_to_several_queues_gets_one_ack() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for q in ["a", "b", "c"] {
        declare_queue(&ch, q).await;
        ch.queue_bind(
            q.into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        confirmed_publish(&ch, "amq.fanout", "").await,
        Confirmation::Ack(None)
    );
    assert_eq!(
        confirmed_publish(&ch, "amq.fanout", "").await,
        Confirmation::Ack(None)
    );
    for q in ["a", "b", "c"] {
        assert_eq!(ready_count(&ch, q).await, 2);
    }
}

#[tokio::test]
async fn tx_select_on_a_confirm_channel_closes_it_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let err = ch.tx_select().await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    );
    // A channel error only: the connection carries on.
    let ch2 = conn.create_channel().await.unwrap();
    declare_queue(&ch2, "still-fine").await;
}

#[tokio::test]
async fn tx_select_after_confirm_select_is_refused_on_the_wire_with_406() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw_confirm_select(&mut raw, 1, false).await;
    raw.send_method(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
        .await;
    let (ch, code, text, class, method) = raw.expect_channel_close().await;
    assert_eq!((ch, code), (1, 406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    );
    assert_eq!((class, method), (90, 10));
}

#[tokio::test]
async fn tx_select_alone_is_answered_with_select_ok() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.send_method(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
        .await;
    let reply = raw.next_method().await;
    assert!(
        matches!(reply, AMQPClass::Tx(tx::AMQPMethod::SelectOk(_))),
        "expected tx.select-ok, got {reply:?}"
    );
}

#[tokio::test]
async fn confirm_select_on_a_transactional_channel_closes_it_with_406() {
    let broker = TestBroker::start().await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.send_method(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
        .await;
    raw.next_method().await;
    raw.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
    .await;
    let (channel, code, text, class, method) = raw.expect_channel_close().await;
    assert_eq!((channel, code), (1, 406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    );
    assert_eq!((class, method), (85, 10));
}
