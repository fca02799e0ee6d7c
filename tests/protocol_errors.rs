//! Protocol violations sent as raw frames: each must close the offending connection with the
//! right reply code, a clear reply-text and the class/method ids, while another connection on
//! the same broker keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use amq_protocol::protocol::{connection, queue, AMQPClass};
use lapin::options::*;
use lapin::{BasicProperties, Channel, Connection};

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;

/// A broker, a lapin connection that must not notice anything, and a raw client with
/// channel 1 open.
struct Setup {
    broker: TestBroker,
    bystander: (Connection, Channel),
    raw: RawClient,
}

async fn setup() -> Setup {
    let broker = TestBroker::start().await;
    let bystander = broker.channel().await;
    declare_queue(&bystander.1, "bystander").await;
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    Setup {
        broker,
        bystander,
        raw,
    }
}

impl Setup {
    /// The raw client gets connection.close with exactly this code, text and ids; after its
    /// close-ok the broker closes the socket; and the bystander connection still works.
    async fn expect_close(mut self, code: u16, text: &str, class_id: u16, method_id: u16) {
        let close = self.raw.expect_connection_close().await;
        assert_eq!(close, (code, text.to_string(), class_id, method_id));
        self.raw
            .send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
            )
            .await;
        assert_eq!(self.raw.read_to_end().await, b"");
        self.bystander_still_works().await;
    }

    async fn bystander_still_works(&self) {
        let (conn, ch) = &self.bystander;
        assert!(conn.status().connected());
        ch.basic_publish(
            "".into(),
            "bystander".into(),
            BasicPublishOptions::default(),
            b"unaffected",
            BasicProperties::default(),
        )
        .await
        .unwrap();
        let got = within(ch.basic_get("bystander".into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .expect("the bystander's message");
        assert_eq!(got.delivery.data, b"unaffected");
        // and the broker still accepts new connections
        let (_conn, fresh) = self.broker.channel().await;
        passive_queue(&fresh, "bystander").await.unwrap();
    }
}

/// A method frame payload: class id, method id, then the arguments as given.
fn method_payload(class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class_id.to_be_bytes().to_vec();
    p.extend_from_slice(&method_id.to_be_bytes());
    p.extend_from_slice(args);
    p
}

fn short_str(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// basic.publish to the default exchange with the given bit octet (mandatory=1, immediate=2).
fn publish_frame(channel: u16, routing_key: &str, bits: u8) -> Vec<u8> {
    let mut args = vec![0, 0]; // reserved ticket
    args.extend(short_str(""));
    args.extend(short_str(routing_key));
    args.push(bits);
    raw_frame(FRAME_METHOD, channel, &method_payload(60, 40, &args))
}

/// A basic content header with no properties.
fn header_frame(channel: u16, body_size: u64) -> Vec<u8> {
    raw_frame(
        FRAME_HEADER,
        channel,
        &basic_header_payload(body_size, NO_PROPERTIES),
    )
}

/// basic.qos as raw bytes: amq-protocol's `Qos` has no prefetch_size field, so lapin cannot
/// send a non-zero one.
fn qos_frame(channel: u16, prefetch_size: u32, prefetch_count: u16, global: bool) -> Vec<u8> {
    let mut args = prefetch_size.to_be_bytes().to_vec();
    args.extend_from_slice(&prefetch_count.to_be_bytes());
    args.push(u8::from(global));
    raw_frame(FRAME_METHOD, channel, &method_payload(60, 10, &args))
}

// ---- framing -------------------------------------------------------------------------------

#[tokio::test]
async fn frame_larger_than_frame_max_closes_connection_with_501() {
    let mut s = setup().await;
    // Only the 7-byte frame header: the broker refuses the size before any payload arrives.
    let mut header = vec![FRAME_BODY];
    header.extend_from_slice(&1u16.to_be_bytes());
    header.extend_from_slice(&131_073u32.to_be_bytes());
    s.raw.write(&header).await;
    s.expect_close(
        501,
        "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}",
        0,
        0,
    )
    .await;
}

#[tokio::test]
async fn frame_of_exactly_frame_max_is_accepted() {
    let mut s = setup().await;
    // A 131064-byte body fills one frame of exactly frame_max (131072) bytes.
    let body = vec![7u8; 131_064];
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&header_frame(1, body.len() as u64)).await;
    let body_frame = raw_frame(FRAME_BODY, 1, &body);
    assert_eq!(body_frame.len(), 131_072);
    s.raw.write(&body_frame).await;
    // A passive declare on the same channel is answered only after the publish was handled.
    s.raw
        .send_method(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "bystander".into(),
                passive: true,
                ..Default::default()
            })),
        )
        .await;
    match s.raw.next_method().await {
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => assert_eq!(ok.message_count, 1),
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    // basic.get through the bystander proves it was routed whole.
    let got = within(
        s.bystander
            .1
            .basic_get("bystander".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("the full-frame message");
    assert!(got.delivery.data == body);
}

#[tokio::test]
async fn bad_frame_end_byte_closes_connection_with_501() {
    let mut s = setup().await;
    // channel.open on channel 2, with 0x00 where 0xCE belongs
    let mut frame = raw_frame(FRAME_METHOD, 2, &method_payload(20, 10, &[0]));
    *frame.last_mut().unwrap() = 0x00;
    s.raw.write(&frame).await;
    s.expect_close(
        501,
        "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}",
        0,
        0,
    )
    .await;
}

#[tokio::test]
async fn bad_frame_end_is_caught_before_the_method_runs() {
    let mut s = setup().await;
    // A queue.declare with a broken end: the queue must not be created.
    let mut args = vec![0, 0];
    args.extend(short_str("never-declared"));
    args.extend_from_slice(&[0, 0, 0, 0, 0]); // bits, empty arguments table
    let mut frame = raw_frame(FRAME_METHOD, 1, &method_payload(50, 10, &args));
    *frame.last_mut().unwrap() = b'x';
    s.raw.write(&frame).await;
    let (code, text, _, _) = s.raw.expect_connection_close().await;
    assert_eq!(code, 501);
    assert!(text.ends_with("{invalid_frame_end_marker,120}"), "{text}");
    let err = passive_queue(&s.bystander.1, "never-declared")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn bad_frame_end_after_a_large_body_frame_closes_with_501_and_routes_nothing() {
    let mut s = setup().await;
    // A large payload is read straight into the message's buffer, bypassing the decoder: its
    // frame end is checked all the same, before the message is routed. Written in pieces, so
    // that the payload arrives over several reads.
    let body = vec![5u8; 100_000];
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&header_frame(1, body.len() as u64)).await;
    let mut frame = raw_frame(FRAME_BODY, 1, &body);
    *frame.last_mut().unwrap() = 0x00;
    for piece in frame.chunks(30_000) {
        s.raw.write(piece).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (code, text, _, _) = s.raw.expect_connection_close().await;
    assert_eq!(code, 501);
    assert!(
        text.starts_with("FRAME_ERROR - type 3, ")
            && text.ends_with("{invalid_frame_end_marker,0}"),
        "{text}"
    );
    assert_eq!(ready_count(&s.bystander.1, "bystander").await, 0);
}

#[tokio::test]
async fn unknown_frame_type_closes_connection_with_501() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(9, 1, b"?")).await;
    s.expect_close(
        501,
        "FRAME_ERROR - type 9, all octets = <<\"?\">>: unknown_frame",
        0,
        0,
    )
    .await;
}

// ---- unknown methods -----------------------------------------------------------------------
// RabbitMQ has no close to copy here (its decoder crashes the connection on an unknown id), so
// the codec answers 503 COMMAND_INVALID, the code RabbitMQ's channel uses for methods it does
// not handle, naming the ids it could not place.

#[tokio::test]
async fn unknown_class_id_closes_connection_with_503_and_the_ids() {
    let mut s = setup().await;
    s.raw
        .write(&raw_frame(FRAME_METHOD, 1, &method_payload(999, 10, &[])))
        .await;
    s.expect_close(
        503,
        "COMMAND_INVALID - unknown class id 999 (method id 10)",
        999,
        10,
    )
    .await;
}

#[tokio::test]
async fn unknown_method_id_closes_connection_with_503_and_the_ids() {
    let mut s = setup().await;
    s.raw
        .write(&raw_frame(FRAME_METHOD, 1, &method_payload(60, 999, &[])))
        .await;
    s.expect_close(
        503,
        "COMMAND_INVALID - unknown method id 999 in class basic (60)",
        60,
        999,
    )
    .await;
}

#[tokio::test]
async fn unknown_method_on_channel_zero_closes_connection_with_503() {
    let mut s = setup().await;
    s.raw
        .write(&raw_frame(FRAME_METHOD, 0, &method_payload(10, 99, &[])))
        .await;
    s.expect_close(
        503,
        "COMMAND_INVALID - unknown method id 99 in class connection (10)",
        10,
        99,
    )
    .await;
}

// ---- content without a publish, heartbeats off channel 0 -----------------------------------

#[tokio::test]
async fn content_header_without_publish_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&header_frame(1, 5)).await;
    s.expect_close(
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        0,
        0,
    )
    .await;
}

#[tokio::test]
async fn content_body_without_publish_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(FRAME_BODY, 1, b"orphan")).await;
    let (code, text, class_id, method_id) = s.raw.expect_connection_close().await;
    assert_eq!(code, 505);
    assert!(
        text.starts_with("UNEXPECTED_FRAME - expected method frame, got "),
        "{text}"
    );
    assert_eq!((class_id, method_id), (0, 0));
    s.bystander_still_works().await;
}

#[tokio::test]
async fn content_on_an_unopened_channel_closes_connection_with_505() {
    // rabbitmq-compat: the frame assembler rejects it before the channel state is looked at.
    let mut s = setup().await;
    s.raw.write(&header_frame(4, 5)).await;
    s.expect_close(
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        0,
        0,
    )
    .await;
}

#[tokio::test]
async fn content_header_on_channel_zero_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&header_frame(0, 5)).await;
    let (code, text, _, _) = s.raw.expect_connection_close().await;
    assert_eq!(code, 505);
    assert!(text.starts_with("UNEXPECTED_FRAME - "), "{text}");
    s.bystander_still_works().await;
}

#[tokio::test]
async fn heartbeat_on_an_open_channel_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(FRAME_HEARTBEAT, 1, &[])).await;
    let (code, text, class_id, method_id) = s.raw.expect_connection_close().await;
    assert_eq!(code, 505);
    assert!(text.starts_with("UNEXPECTED_FRAME - "), "{text}");
    assert!(text.contains("heartbeat"), "{text}");
    assert_eq!((class_id, method_id), (0, 0));
    s.bystander_still_works().await;
}

#[tokio::test]
async fn heartbeat_on_an_unopened_channel_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(FRAME_HEARTBEAT, 9, &[])).await;
    let (code, text, _, _) = s.raw.expect_connection_close().await;
    assert_eq!(code, 505, "{text}");
    assert!(text.contains("heartbeat"), "{text}");
    s.bystander_still_works().await;
}

#[tokio::test]
async fn heartbeat_on_channel_zero_is_fine() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(FRAME_HEARTBEAT, 0, &[])).await;
    s.raw.write(&qos_frame(1, 0, 5, false)).await;
    match s.raw.next_method().await {
        AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::QosOk(_)) => {}
        other => panic!("expected basic.qos-ok, got {other:?}"),
    }
}

// ---- methods where content is expected -----------------------------------------------------

#[tokio::test]
async fn method_while_publish_awaits_its_header_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&qos_frame(1, 0, 1, false)).await;
    // rabbitmq-compat: the ids are those of the publish whose content was interrupted.
    s.expect_close(
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
        60,
        40,
    )
    .await;
}

#[tokio::test]
async fn body_while_publish_awaits_its_header_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&raw_frame(FRAME_BODY, 1, b"early")).await;
    // rabbitmq-compat: the same close as for a method frame in that place.
    s.expect_close(
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
        60,
        40,
    )
    .await;
}

#[tokio::test]
async fn method_while_publish_awaits_its_body_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&header_frame(1, 10)).await;
    s.raw.write(&raw_frame(FRAME_BODY, 1, b"half")).await;
    s.raw.write(&qos_frame(1, 0, 1, false)).await;
    s.expect_close(
        505,
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
        60,
        40,
    )
    .await;
}

#[tokio::test]
async fn second_publish_while_the_first_awaits_content_closes_connection_with_505() {
    let mut s = setup().await;
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    s.raw.write(&publish_frame(1, "bystander", 0)).await;
    let (code, _, class_id, method_id) = s.raw.expect_connection_close().await;
    assert_eq!((code, class_id, method_id), (505, 60, 40));
    s.bystander_still_works().await;
}

// ---- not implemented -----------------------------------------------------------------------

#[tokio::test]
async fn qos_with_prefetch_size_closes_connection_with_540() {
    let mut s = setup().await;
    s.raw.write(&qos_frame(1, 1024, 10, false)).await;
    s.expect_close(540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)", 60, 10)
        .await;
}

#[tokio::test]
async fn qos_with_zero_prefetch_size_is_answered_with_qos_ok() {
    let mut s = setup().await;
    for global in [false, true] {
        s.raw.write(&qos_frame(1, 0, 10, global)).await;
        match s.raw.next_method().await {
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::QosOk(_)) => {}
            other => panic!("expected basic.qos-ok, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn publish_with_immediate_closes_connection_with_540() {
    let mut s = setup().await;
    s.raw.write(&publish_frame(1, "bystander", 2)).await;
    s.expect_close(540, "NOT_IMPLEMENTED - immediate=true", 60, 40)
        .await;
}

#[tokio::test]
async fn immediate_publish_through_lapin_closes_its_connection_with_540() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (_other, other_ch) = broker.channel().await;
    let mut events = conn.events_listener();
    // lapin sends the publish; the broker's close arrives as a connection error.
    let _ = ch
        .basic_publish(
            "".into(),
            "anywhere".into(),
            BasicPublishOptions {
                immediate: true,
                ..Default::default()
            },
            b"now!",
            BasicProperties::default(),
        )
        .await;
    let err = within(async {
        use futures_lite::StreamExt;
        loop {
            match events.next().await {
                Some(lapin::Event::Error(err)) => return err,
                Some(_) => continue,
                None => panic!("no connection error reported"),
            }
        }
    })
    .await;
    assert_eq!(reply_code(&err), Some(540), "{err:?}");
    assert_eq!(reply_text(&err), "NOT_IMPLEMENTED - immediate=true");
    declare_queue(&other_ch, "after-immediate").await;
}

// ---- malformed arguments -------------------------------------------------------------------
// rabbitmq-compat: arguments that do not fit the method's layout are 501 FRAME_ERROR
// "cannot decode <<…>>" (rabbit_misc:frame_error/2), naming the method.

#[tokio::test]
async fn truncated_queue_declare_closes_connection_with_501_cannot_decode() {
    let mut s = setup().await;
    // reserved short, then a queue name claiming 10 bytes of which 3 arrive
    let args = [0, 0, 10, b'a', b'b', b'c'];
    s.raw
        .write(&raw_frame(FRAME_METHOD, 1, &method_payload(50, 10, &args)))
        .await;
    s.expect_close(
        501,
        "FRAME_ERROR - cannot decode <<0,0,10,97,98,99>>",
        50,
        10,
    )
    .await;
}

#[tokio::test]
async fn basic_ack_with_trailing_bytes_closes_connection_with_501() {
    let mut s = setup().await;
    let args = [0, 0, 0, 0, 0, 0, 0, 1, 0, 42];
    s.raw
        .write(&raw_frame(FRAME_METHOD, 1, &method_payload(60, 80, &args)))
        .await;
    s.expect_close(
        501,
        "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,1,0,42>>",
        60,
        80,
    )
    .await;
}

#[tokio::test]
async fn truncated_qos_closes_connection_with_501() {
    let mut s = setup().await;
    let args = [0, 0, 0, 0, 0];
    s.raw
        .write(&raw_frame(FRAME_METHOD, 1, &method_payload(60, 10, &args)))
        .await;
    let (code, text, class_id, method_id) = s.raw.expect_connection_close().await;
    assert_eq!((code, class_id, method_id), (501, 60, 10));
    assert!(text.starts_with("FRAME_ERROR - cannot decode"), "{text}");
    s.bystander_still_works().await;
}

#[tokio::test]
async fn method_payload_shorter_than_its_ids_closes_connection_with_501() {
    let mut s = setup().await;
    s.raw.write(&raw_frame(FRAME_METHOD, 1, &[0, 50])).await;
    s.expect_close(
        501,
        "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame",
        0,
        0,
    )
    .await;
}
