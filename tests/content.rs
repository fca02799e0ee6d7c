//! Message content: the 14 basic properties round-trip (byte for byte, as published), bodies
//! from 0 bytes to 16 MiB are split into frames correctly, and the maximum message size is
//! enforced with 406.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use amq_protocol::protocol::{basic, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, DecimalValue, FieldArray, LongString};
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use warren_broker::connection::frame::Frame;
use warren_broker::Config;

/// The frame_max Warren offers and lapin accepts.
const FRAME_MAX: usize = 131_072;

async fn consume_one(ch: &Channel, queue: &str) -> lapin::message::Delivery {
    let mut consumer = consume_with(ch, queue, "", no_ack()).await;
    within(consumer.next()).await.unwrap().unwrap()
}

fn rich_headers() -> FieldTable {
    let mut inner = FieldTable::default();
    inner.insert("depth".into(), AMQPValue::ShortShortUInt(2));
    inner.insert(
        "list".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongString(LongString::from("in-array")),
            AMQPValue::Boolean(false),
        ])),
    );
    let mut h = FieldTable::default();
    h.insert("bool".into(), AMQPValue::Boolean(true));
    h.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    h.insert("u8".into(), AMQPValue::ShortShortUInt(200));
    h.insert("i16".into(), AMQPValue::ShortInt(-1600));
    h.insert("u16".into(), AMQPValue::ShortUInt(60_000));
    h.insert("i32".into(), AMQPValue::LongInt(-320_000));
    h.insert("u32".into(), AMQPValue::LongUInt(4_000_000_000));
    h.insert("i64".into(), AMQPValue::LongLongInt(-6_400_000_000));
    h.insert("f32".into(), AMQPValue::Float(1.5));
    h.insert("f64".into(), AMQPValue::Double(-2.25));
    h.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    h.insert(
        "string".into(),
        AMQPValue::LongString(LongString::from("héllo wörld")),
    );
    h.insert(
        "bytes".into(),
        AMQPValue::ByteArray(vec![0u8, 1, 2, 255].into()),
    );
    h.insert("timestamp".into(), AMQPValue::Timestamp(1_700_000_000));
    h.insert("void".into(), AMQPValue::Void);
    h.insert(
        "array".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::FieldTable(inner.clone()),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void])),
        ])),
    );
    h.insert("nested".into(), AMQPValue::FieldTable(inner));
    h
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(rich_headers())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-42".into())
        .with_reply_to("replies-for-corr-42".into())
        .with_expiration("60000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-a".into())
}

#[tokio::test]
async fn all_fourteen_properties_round_trip_through_consume() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let props = all_properties();
    publish_to_queue_with(&ch, "q", b"payload", props.clone()).await;
    let d = consume_one(&ch, "q").await;
    assert_eq!(d.properties, props);
    assert_eq!(
        d.properties.kind().as_ref().unwrap().as_str(),
        "order.created"
    );
    assert_eq!(d.data, b"payload");
}

#[tokio::test]
async fn all_fourteen_properties_round_trip_through_get() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let props = all_properties();
    publish_to_queue_with(&ch, "q", b"payload", props.clone()).await;
    let got = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(got.delivery.properties, props);
}

#[tokio::test]
async fn a_message_without_properties_arrives_without_properties() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    publish_to_queue_with(&ch, "q", b"plain", BasicProperties::default()).await;
    let d = consume_one(&ch, "q").await;
    assert_eq!(d.properties, BasicProperties::default());
}

#[tokio::test]
async fn user_id_other_than_the_authenticated_user_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let mut events = Box::pin(conn.events_listener());
    publish_to_queue_with(
        &ch,
        "q",
        b"spoofed",
        BasicProperties::default().with_user_id("admin".into()),
    )
    .await;
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - user_id property set to 'admin' but authenticated user was 'guest'"
    );
    // The message was not enqueued; the connection is still fine.
    let ch2 = conn.create_channel().await.unwrap();
    let q = passive_queue(&ch2, "q").await.unwrap();
    assert_eq!(q.message_count(), 0);
}

// ---- byte-exact properties through raw frames ----------------------------------------------

/// A field table given as (key, tagged value bytes) in the order given.
fn table(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in entries {
        short_str(&mut body, key);
        body.extend_from_slice(value);
    }
    let mut out = Vec::new();
    long_str(&mut out, &body);
    out
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(bytes);
    v
}

/// All 14 properties, with a headers table whose keys are far from sorted (amq-protocol would
/// sort them on re-encoding, since its FieldTable is a BTreeMap).
fn raw_properties() -> Vec<u8> {
    let nested = table(&[
        ("zz", tagged(b't', &[1])),
        ("aa", tagged(b'l', &(-5i64).to_be_bytes())),
    ]);
    let mut array = Vec::new();
    array.extend(tagged(b'b', &[0xFF]));
    array.extend(tagged(b'S', &{
        let mut s = Vec::new();
        long_str(&mut s, b"x");
        s
    }));
    array.push(b'V');
    let mut array_field = vec![b'A'];
    long_str(&mut array_field, &array);
    let mut nested_field = vec![b'F'];
    nested_field.extend(nested);
    let headers = table(&[
        (
            "zulu",
            tagged(b'S', &{
                let mut s = Vec::new();
                long_str(&mut s, b"last letter");
                s
            }),
        ),
        ("alpha", tagged(b'I', &(-7i32).to_be_bytes())),
        ("mike", nested_field),
        ("bravo", array_field),
        (
            "echo",
            tagged(b'x', &{
                let mut s = Vec::new();
                long_str(&mut s, &[0, 1, 2]);
                s
            }),
        ),
        ("delta", tagged(b'D', &[2, 0, 0, 0x30, 0x39])),
        ("golf", tagged(b'T', &1_700_000_000u64.to_be_bytes())),
        ("foxtrot", tagged(b'd', &1.25f64.to_be_bytes())),
        ("hotel", tagged(b'f', &0.5f32.to_be_bytes())),
        ("charlie", tagged(b'u', &65_000u16.to_be_bytes())),
        ("bravo2", tagged(b's', &(-3i16).to_be_bytes())),
        ("kilo", tagged(b'B', &[250])),
        ("india", tagged(b'i', &4_000_000_000u32.to_be_bytes())),
    ]);
    let mut p = Vec::new();
    p.extend_from_slice(&0xFFFCu16.to_be_bytes()); // all 14 property flags
    short_str(&mut p, "text/plain");
    short_str(&mut p, "identity");
    p.extend(headers);
    p.push(2); // delivery_mode
    p.push(3); // priority
    short_str(&mut p, "corr");
    short_str(&mut p, "replies");
    short_str(&mut p, "30000");
    short_str(&mut p, "id-1");
    p.extend_from_slice(&1_600_000_000u64.to_be_bytes());
    short_str(&mut p, "kind");
    short_str(&mut p, "guest");
    short_str(&mut p, "app");
    short_str(&mut p, "cluster");
    p
}

async fn raw_setup(broker: &TestBroker) -> RawClient {
    let mut raw = RawClient::open(broker.addr).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "q").await;
    raw
}

async fn raw_consume(raw: &mut RawClient) {
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "q".into(),
            consumer_tag: "raw".into(),
            no_local: false,
            no_ack: true,
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
}

/// Reads a basic.deliver and its content: (raw property bytes, body frame sizes, body).
async fn raw_delivery(raw: &mut RawClient) -> (Vec<u8>, Vec<usize>, Vec<u8>) {
    match raw.next_method().await {
        AMQPClass::Basic(basic::AMQPMethod::Deliver(_)) => {}
        other => panic!("expected basic.deliver, got {other:?}"),
    }
    let (size, props) = match raw.next_frame().await {
        Some(Frame::Header(1, h)) => (h.body_size as usize, h.properties.to_vec()),
        other => panic!("expected a content header, got {other:?}"),
    };
    let mut sizes = Vec::new();
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        match raw.next_frame().await {
            Some(Frame::Body(1, chunk)) => {
                sizes.push(chunk.len());
                data.extend_from_slice(&chunk);
            }
            other => panic!("expected a content body, got {other:?}"),
        }
    }
    (props, sizes, data)
}

#[tokio::test]
async fn property_bytes_are_delivered_exactly_as_published() {
    let broker = TestBroker::start().await;
    let mut raw = raw_setup(&broker).await;
    let props = raw_properties();
    raw.write(&publish_frames_with(1, "", "q", false, &props, &[b"body"]))
        .await;
    raw_consume(&mut raw).await;
    let (delivered, _, body) = raw_delivery(&mut raw).await;
    assert_eq!(delivered, props, "property bytes changed on the way");
    assert_eq!(body, b"body");
}

#[tokio::test]
async fn unsorted_header_keys_reach_lapin_intact() {
    let broker = TestBroker::start().await;
    let mut raw = raw_setup(&broker).await;
    raw.write(&publish_frames_with(
        1,
        "",
        "q",
        false,
        &raw_properties(),
        &[b"body"],
    ))
    .await;
    // Barrier: a second declare-ok means the publish before it was handled.
    raw.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            passive: true,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    match raw.next_method().await {
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => assert_eq!(ok.message_count, 1),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    let (_conn, ch) = broker.channel().await;
    let got = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    let p = &got.delivery.properties;
    assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/plain");
    assert_eq!(p.cluster_id().as_ref().unwrap().as_str(), "cluster");
    assert_eq!(*p.timestamp(), Some(1_600_000_000));
    let headers = p.headers().as_ref().unwrap().inner();
    let keys: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys.len(), 13);
    assert_eq!(
        headers.get("alpha"),
        Some(&AMQPValue::LongInt(-7)),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("india"),
        Some(&AMQPValue::LongUInt(4_000_000_000))
    );
}

#[tokio::test]
async fn a_body_published_in_small_uneven_frames_is_joined() {
    let broker = TestBroker::start().await;
    let mut raw = raw_setup(&broker).await;
    let props = 0u16.to_be_bytes();
    raw.write(&publish_frames_with(
        1,
        "",
        "q",
        false,
        &props,
        &[b"hello", b" ", b"", b"world, in pieces"],
    ))
    .await;
    raw_consume(&mut raw).await;
    let (delivered, sizes, body) = raw_delivery(&mut raw).await;
    assert_eq!(delivered, props);
    assert_eq!(body, b"hello world, in pieces");
    assert_eq!(sizes, [22], "re-framed into one body frame");
}

#[tokio::test]
async fn deliveries_split_bodies_at_frame_max() {
    let broker = TestBroker::start().await;
    let mut raw = raw_setup(&broker).await;
    let chunk = FRAME_MAX - 8;
    let cases: [(usize, Vec<usize>); 5] = [
        (0, vec![]),
        (1, vec![1]),
        (chunk, vec![chunk]),
        (chunk + 1, vec![chunk, 1]),
        (300_000, vec![chunk, chunk, 300_000 - 2 * chunk]),
    ];
    for (len, _) in &cases {
        let body: Vec<u8> = (0..*len).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
        raw.write(&publish_frames_with(
            1,
            "",
            "q",
            false,
            &0u16.to_be_bytes(),
            &pieces,
        ))
        .await;
    }
    raw_consume(&mut raw).await;
    for (len, frames) in cases {
        let (_, sizes, body) = raw_delivery(&mut raw).await;
        assert_eq!(body.len(), len);
        assert!(
            body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "body of {len} bytes corrupted"
        );
        assert_eq!(sizes, frames, "body frames for {len} bytes");
    }
}

#[tokio::test]
async fn large_body_frames_interleaved_with_another_channel_and_split_across_writes_are_joined() {
    // Large payloads are read straight into their message's buffer; here two channels publish
    // at once, frame by frame, each frame written in uneven pieces.
    let broker = TestBroker::start().await;
    let mut raw = raw_setup(&broker).await;
    raw.open_channel(2).await;
    let body =
        |seed: usize| -> Vec<u8> { (0..200_000).map(|i| ((i + seed) % 241) as u8).collect() };
    let (one, two) = (body(1), body(2));
    // A publish to "q" on `channel` with the body in two frames, cut at `cut`.
    let publish = |channel: u16, body: &[u8], cut: usize| {
        publish_frames_with(
            channel,
            "",
            "q",
            false,
            &0u16.to_be_bytes(),
            &[&body[..cut], &body[cut..]],
        )
    };
    let (frames_one, frames_two) = (publish(1, &one, 90_000), publish(2, &two, 100_000));
    // Each publish is method + header + 2 body frames; interleave frame by frame.
    let split = |frames: &[u8]| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < frames.len() {
            let size = u32::from_be_bytes(frames[at + 3..at + 7].try_into().unwrap()) as usize;
            out.push(frames[at..at + 8 + size].to_vec());
            at += 8 + size;
        }
        out
    };
    for (a, b) in split(&frames_one).iter().zip(split(&frames_two).iter()) {
        for frame in [a, b] {
            for piece in frame.chunks(33_333) {
                raw.write(piece).await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    }
    raw_consume(&mut raw).await;
    let mut got = [
        raw_delivery(&mut raw).await.2,
        raw_delivery(&mut raw).await.2,
    ];
    got.sort_by_key(|b| b[0]);
    assert!(got[0] == one, "channel 1's body differs");
    assert!(got[1] == two, "channel 2's body differs");
}

async fn lapin_round_trip(size: usize) {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    publish_to_queue_with(&ch, "q", &body, BasicProperties::default()).await;
    let d = consume_one(&ch, "q").await;
    assert_eq!(d.data.len(), size);
    assert!(d.data == body, "body of {size} bytes differs");
}

#[tokio::test]
async fn empty_body_round_trips() {
    lapin_round_trip(0).await;
}

#[tokio::test]
async fn one_byte_body_round_trips() {
    lapin_round_trip(1).await;
}

#[tokio::test]
async fn body_filling_exactly_one_frame_round_trips() {
    lapin_round_trip(FRAME_MAX - 8).await;
}

#[tokio::test]
async fn body_one_byte_over_a_frame_round_trips() {
    lapin_round_trip(FRAME_MAX - 7).await;
}

#[tokio::test]
async fn body_of_300_000_bytes_round_trips() {
    lapin_round_trip(300_000).await;
}

#[tokio::test]
async fn body_of_16_mib_round_trips() {
    lapin_round_trip(16 * 1024 * 1024).await;
}

#[tokio::test]
async fn body_larger_than_max_message_size_closes_the_channel_with_406() {
    let broker = TestBroker::start_with(Config {
        max_message_size: 1 << 20,
        ..Default::default()
    })
    .await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "q").await;
    // Exactly the maximum is fine.
    publish_to_queue_with(&ch, "q", &vec![7u8; 1 << 20], BasicProperties::default()).await;
    let mut events = Box::pin(conn.events_listener());
    publish_to_queue_with(
        &ch,
        "q",
        &vec![7u8; (1 << 20) + 1],
        BasicProperties::default(),
    )
    .await;
    let err = next_error(&mut events).await;
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - message size 1048577 is larger than configured max size 1048576"
    );
    // Only the channel closed; just the message at the limit is in the queue.
    let ch2 = conn.create_channel().await.unwrap();
    let got = ch2
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(got.delivery.data.len(), 1 << 20);
    assert_eq!(got.message_count, 0);
}

#[tokio::test]
async fn oversized_message_is_refused_at_its_content_header() {
    let broker = TestBroker::start_with(Config {
        max_message_size: 1 << 20,
        ..Default::default()
    })
    .await;
    let mut raw = raw_setup(&broker).await;
    // Only the header announcing 16 MiB is sent: the broker refuses before any body arrives.
    let mut frames = publish_frames_with(1, "", "q", false, &0u16.to_be_bytes(), &[]);
    let header_at = frames.len() - (8 + 14);
    frames[header_at + 7 + 4..header_at + 7 + 12].copy_from_slice(&(16u64 << 20).to_be_bytes());
    raw.write(&frames).await;
    let (ch, code, text, class, method) = raw.expect_channel_close().await;
    assert_eq!((ch, code), (1, 406));
    assert_eq!(
        text,
        "PRECONDITION_FAILED - message size 16777216 is larger than configured max size 1048576"
    );
    assert_eq!((class, method), (60, 40));
}
