//! Connection-level behaviour: the protocol header, connection.start and its server
//! properties, PLAIN and AMQPLAIN logins, tune negotiation, vhosts, heartbeats, close/close-ok
//! in both directions, broker shutdown, and isolation between connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::BasicProperties;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use warren_broker::connection::frame::Frame;

/// The AMQP 0-9-1 protocol header, written out here rather than taken from the broker.
const AMQP_0_9_1: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

// ---- raw handshake steps -------------------------------------------------------------------

/// A raw client that has sent the protocol header and received connection.start.
async fn raw_start(addr: SocketAddr) -> (RawClient, connection::Start) {
    let mut c = RawClient::connect_only(addr).await;
    c.write(AMQP_0_9_1).await;
    match c.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::Start(start)) => (c, start),
        other => panic!("expected connection.start, got {other:?}"),
    }
}

/// client-properties announcing the given capabilities (each `true`).
fn client_properties(capabilities: &[&str]) -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in capabilities {
        caps.insert((*cap).into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert(
        "product".into(),
        AMQPValue::LongString(LongString::from("raw test client")),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

async fn send_start_ok(c: &mut RawClient, capabilities: &[&str], mechanism: &str, response: &[u8]) {
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: client_properties(capabilities),
            mechanism: mechanism.into(),
            response: LongString::from(response.to_vec()),
            locale: "en_US".into(),
        })),
    )
    .await;
}

async fn expect_tune(c: &mut RawClient) -> connection::Tune {
    match c.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
        other => panic!("expected connection.tune, got {other:?}"),
    }
}

async fn send_tune_ok(c: &mut RawClient, channel_max: u16, frame_max: u32, heartbeat: u16) {
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max,
            frame_max,
            heartbeat,
        })),
    )
    .await;
}

async fn send_open(c: &mut RawClient, vhost: &str) {
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: vhost.into(),
        })),
    )
    .await;
}

async fn expect_open_ok(c: &mut RawClient) {
    match c.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
        other => panic!("expected connection.open-ok, got {other:?}"),
    }
}

/// A full handshake as guest on "/", answering tune with the given values.
async fn raw_open_tuned(
    addr: SocketAddr,
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
) -> RawClient {
    let (mut c, _) = raw_start(addr).await;
    send_start_ok(
        &mut c,
        &["authentication_failure_close"],
        "PLAIN",
        b"\0guest\0guest",
    )
    .await;
    expect_tune(&mut c).await;
    send_tune_ok(&mut c, channel_max, frame_max, heartbeat).await;
    send_open(&mut c, "/").await;
    expect_open_ok(&mut c).await;
    c
}

async fn send_close_ok(c: &mut RawClient) {
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
    )
    .await;
}

/// Answers the broker's connection.close and checks the broker then closes the socket without
/// sending anything more.
async fn finish_close(c: &mut RawClient) {
    send_close_ok(c).await;
    assert_eq!(
        c.read_to_end().await,
        b"",
        "nothing may follow connection.close"
    );
}

/// An AMQPLAIN response: a field table of LOGIN and PASSWORD without its 4-byte length.
fn amqplain_response(login: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in [("LOGIN", login), ("PASSWORD", password)] {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn long_string(table: &FieldTable, key: &str) -> String {
    match table.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
        other => panic!("server property {key}: expected a long string, got {other:?}"),
    }
}

/// Publishes `body` to `queue` through the default exchange and gets it back.
async fn round_trip(ch: &lapin::Channel, queue: &str, body: &[u8]) {
    declare_queue(ch, queue).await;
    publish_to_queue(ch, queue, body).await;
    let got = within(ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("the message just published");
    assert_eq!(got.delivery.data.len(), body.len());
    assert!(got.delivery.data == body, "body changed in transit");
}

// ---- protocol header and connection.start --------------------------------------------------

#[tokio::test]
async fn wrong_protocol_header_gets_amqp_0_9_1_header_back_and_socket_closed() {
    let broker = TestBroker::start().await;
    for header in [
        &b"AMQP\x00\x00\x08\x00"[..], // AMQP 0-8
        b"AMQP\x00\x01\x00\x00",      // AMQP 1.0
        b"GET / HT",                  // not AMQP at all
    ] {
        let mut c = RawClient::connect_only(broker.addr).await;
        c.write(header).await;
        assert_eq!(
            c.read_to_end().await,
            AMQP_0_9_1,
            "reply to header {header:?}"
        );
    }
}

#[tokio::test]
async fn connection_start_carries_server_properties_and_capabilities() {
    let broker = TestBroker::start().await;
    let (_c, start) = raw_start(broker.addr).await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let props = &start.server_properties;
    assert_eq!(long_string(props, "product"), "Warren");
    assert_eq!(long_string(props, "version"), env!("CARGO_PKG_VERSION"));
    for key in ["platform", "copyright", "information"] {
        assert!(!long_string(props, key).is_empty(), "{key} is empty");
    }
    let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") else {
        panic!("no capabilities table in {props:?}");
    };
    let mut listed: Vec<&str> = caps.inner().keys().map(|k| k.as_str()).collect();
    listed.sort_unstable();
    // Only what works today; a capability added later needs its own test.
    assert_eq!(
        listed,
        [
            "authentication_failure_close",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "consumer_priorities",
            "direct_reply_to",
            "exchange_exchange_bindings",
            "per_consumer_qos",
            "publisher_confirms",
        ]
    );
    for (name, value) in caps.inner() {
        assert_eq!(value, &AMQPValue::Boolean(true), "capability {name}");
    }
}

#[tokio::test]
async fn connection_start_offers_plain_and_amqplain_in_en_us() {
    let broker = TestBroker::start().await;
    let (_c, start) = raw_start(broker.addr).await;
    let mechanisms = String::from_utf8(start.mechanisms.as_bytes().to_vec()).unwrap();
    let mechanisms: Vec<&str> = mechanisms.split(' ').collect();
    assert!(mechanisms.contains(&"PLAIN"), "{mechanisms:?}");
    assert!(mechanisms.contains(&"AMQPLAIN"), "{mechanisms:?}");
    assert_eq!(start.locales.as_bytes(), b"en_US");
}

// ---- authentication ------------------------------------------------------------------------

#[tokio::test]
async fn amqplain_login_as_guest_opens_the_connection() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(
        &mut c,
        &[],
        "AMQPLAIN",
        &amqplain_response("guest", "guest"),
    )
    .await;
    let tune = expect_tune(&mut c).await;
    send_tune_ok(&mut c, tune.channel_max, tune.frame_max, 0).await;
    send_open(&mut c, "/").await;
    expect_open_ok(&mut c).await;
    // and the connection is usable
    c.open_channel(1).await;
}

#[tokio::test]
async fn plain_login_works_through_lapin() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert!(conn.status().connected());
    assert_eq!(conn.status().username(), "guest");
    let ch = conn.create_channel().await.unwrap();
    round_trip(&ch, "plain-login", b"hello").await;
}

#[tokio::test]
async fn wrong_password_gets_403_access_refused_when_client_has_authentication_failure_close() {
    let broker = TestBroker::start().await;
    // lapin announces authentication_failure_close
    let url = format!("amqp://guest:wrong@{}/%2f", broker.addr);
    let err = broker.connect_url(&url).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
    assert_eq!(
        reply_text(&err),
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
         For details see the broker logfile."
    );
}

#[tokio::test]
async fn refused_login_close_names_connection_start_ok() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(
        &mut c,
        &["authentication_failure_close"],
        "PLAIN",
        b"\0guest\0nope",
    )
    .await;
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 403);
    assert!(
        text.starts_with("ACCESS_REFUSED - Login was refused"),
        "{text}"
    );
    assert_eq!((class_id, method_id), (10, 11));
    finish_close(&mut c).await;
}

#[tokio::test]
async fn wrong_amqplain_password_is_refused_naming_amqplain() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(
        &mut c,
        &["authentication_failure_close"],
        "AMQPLAIN",
        &amqplain_response("guest", "nope"),
    )
    .await;
    let (code, text, _, _) = c.expect_connection_close().await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. \
         For details see the broker logfile."
    );
    finish_close(&mut c).await;
}

#[tokio::test]
async fn wrong_password_without_authentication_failure_close_just_closes_the_socket() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(
        &mut c,
        &["consumer_cancel_notify"],
        "PLAIN",
        b"\0guest\0nope",
    )
    .await;
    // Spec: without the capability the server closes the socket without a connection.close.
    assert_eq!(c.read_to_end().await, b"");
}

// ---- tune ----------------------------------------------------------------------------------

#[tokio::test]
async fn tune_offers_channel_max_2047_frame_max_131072_heartbeat_60() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(&mut c, &[], "PLAIN", b"\0guest\0guest").await;
    let tune = expect_tune(&mut c).await;
    assert_eq!(
        (tune.channel_max, tune.frame_max, tune.heartbeat),
        (2047, 131_072, 60)
    );
}

#[tokio::test]
async fn tune_ok_frame_max_below_8192_is_refused_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(&mut c, &[], "PLAIN", b"\0guest\0guest").await;
    expect_tune(&mut c).await;
    send_tune_ok(&mut c, 2047, 4096, 0).await;
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(text, "NOT_ALLOWED - frame_max=4096 < 8192 min size");
    assert_eq!((class_id, method_id), (10, 31));
    finish_close(&mut c).await;
}

#[tokio::test]
async fn tune_ok_frame_max_of_exactly_8192_is_accepted() {
    let broker = TestBroker::start().await;
    let mut c = raw_open_tuned(broker.addr, 0, 8192, 0).await;
    c.open_channel(1).await;
}

#[tokio::test]
async fn lapin_with_lower_frame_max_heartbeat_and_channel_max_round_trips_a_300kb_message() {
    let broker = TestBroker::start().await;
    let url = format!(
        "amqp://guest:guest@{}/%2f?frame_max=16384&heartbeat=5&channel_max=10",
        broker.addr
    );
    let conn = broker.connect_url(&url).await.unwrap();
    let config = conn.configuration();
    assert_eq!(
        (config.frame_max(), config.heartbeat(), config.channel_max()),
        (16_384, 5, 10)
    );
    let ch = conn.create_channel().await.unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Both directions cross many 16 KiB frames: the publish and the delivery.
    round_trip(&ch, "small-frames", &body).await;
    let mut consumer = ch
        .basic_consume(
            "small-frames".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "small-frames".into(),
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let delivery = within(consumer.next()).await.unwrap().unwrap();
    assert!(delivery.data == body, "consumed body differs");
    delivery.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn deliveries_are_split_at_the_clients_lower_frame_max() {
    let broker = TestBroker::start().await;
    let mut c = raw_open_tuned(broker.addr, 0, 16_384, 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "split").await;
    let body: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    c.publish_chunked(1, "split", &body, 16_384 - 8).await;
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "split".into(),
            no_ack: true,
        })),
    )
    .await;
    match c.next_method().await {
        AMQPClass::Basic(basic::AMQPMethod::GetOk(_)) => {}
        other => panic!("expected basic.get-ok, got {other:?}"),
    }
    match c.next_frame().await {
        Some(Frame::Header(1, h)) => assert_eq!(h.body_size, 40_000),
        other => panic!("expected a content header, got {other:?}"),
    }
    let mut received = Vec::new();
    let mut sizes = Vec::new();
    while received.len() < body.len() {
        match c.next_frame().await {
            Some(Frame::Body(1, part)) => {
                sizes.push(part.len());
                received.extend_from_slice(&part);
            }
            other => panic!("expected a body frame, got {other:?}"),
        }
    }
    // frame_max counts the 8 bytes around the payload
    assert_eq!(sizes, [16_376, 16_376, 7_248]);
    assert!(received == body);
}

#[tokio::test]
async fn frame_above_the_clients_lower_frame_max_is_refused_with_501() {
    let broker = TestBroker::start().await;
    let mut c = raw_open_tuned(broker.addr, 0, 16_384, 0).await;
    c.open_channel(1).await;
    // A body frame 1 byte over the negotiated 16384 (the broker offered 131072).
    c.write(&raw_frame(3, 1, &[0u8; 16_385])).await;
    let (code, text, _, _) = c.expect_connection_close().await;
    assert_eq!(code, 501);
    assert!(text.contains("frame_too_large,16385"), "{text}");
    finish_close(&mut c).await;
}

#[tokio::test]
async fn channel_above_negotiated_channel_max_is_refused_with_504() {
    let broker = TestBroker::start().await;
    let mut c = raw_open_tuned(broker.addr, 10, 131_072, 0).await;
    c.open_channel(10).await; // the highest allowed id
    c.send_method(
        11,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let (code, text, _, _) = c.expect_connection_close().await;
    assert_eq!(code, 504);
    assert!(text.starts_with("CHANNEL_ERROR - "), "{text}");
    assert!(text.contains("11"), "{text}");
    finish_close(&mut c).await;
}

#[tokio::test]
async fn channel_max_zero_in_tune_ok_means_the_brokers_2047() {
    let broker = TestBroker::start().await;
    let mut c = raw_open_tuned(broker.addr, 0, 131_072, 0).await;
    c.open_channel(2047).await;
    c.send_method(
        2048,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let (code, _, _, _) = c.expect_connection_close().await;
    assert_eq!(code, 504);
}

// ---- connection.open -----------------------------------------------------------------------

#[tokio::test]
async fn open_on_unknown_vhost_is_refused_with_530_not_allowed() {
    let broker = TestBroker::start().await;
    let url = format!("amqp://guest:guest@{}/no-such-vhost", broker.addr);
    let err = broker.connect_url(&url).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
    assert_eq!(
        reply_text(&err),
        "NOT_ALLOWED - vhost no-such-vhost not found"
    );
}

#[tokio::test]
async fn unknown_vhost_close_names_connection_open() {
    let broker = TestBroker::start().await;
    let (mut c, _) = raw_start(broker.addr).await;
    send_start_ok(&mut c, &[], "PLAIN", b"\0guest\0guest").await;
    let tune = expect_tune(&mut c).await;
    send_tune_ok(&mut c, tune.channel_max, tune.frame_max, 0).await;
    send_open(&mut c, "elsewhere").await;
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(text, "NOT_ALLOWED - vhost elsewhere not found");
    assert_eq!((class_id, method_id), (10, 40));
    finish_close(&mut c).await;
}

// ---- heartbeats (paused time) --------------------------------------------------------------

async fn send_heartbeat(c: &mut RawClient) {
    c.write(&raw_frame(8, 0, &[])).await;
}

/// Lets paused time advance only in small steps, each after a moment of real time.
///
/// Paused tokio time jumps to the next timer whenever the runtime has nothing ready, even if
/// bytes are still on their way through the kernel's loopback; with only long timers pending
/// (the handshake timeout, `within`'s 30 s) a single round trip could jump past them. This task
/// keeps a timer 25 ms ahead, and before each step holds the clock still (a blocking task in
/// flight stops auto-advance) for 1 ms of real time so in-flight I/O lands first.
fn pace_paused_clock() {
    tokio::spawn(async {
        loop {
            let _ =
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1))).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
}

#[tokio::test(start_paused = true)]
async fn broker_sends_heartbeats_on_an_idle_connection() {
    let broker = TestBroker::start().await;
    pace_paused_clock();
    let mut c = RawClient::open_with_heartbeat(broker.addr, 1).await;
    for _ in 0..5 {
        match c.next_frame().await {
            Some(Frame::Heartbeat(0)) => send_heartbeat(&mut c).await,
            other => panic!("expected a heartbeat on channel 0, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn silent_client_is_disconnected_after_about_two_heartbeat_intervals() {
    let broker = TestBroker::start().await;
    pace_paused_clock();
    let mut c = RawClient::open_with_heartbeat(broker.addr, 1).await;
    let silent_since = Instant::now();
    // Heartbeats keep coming until the broker gives up and closes the socket (no
    // connection.close: the peer is presumed dead).
    loop {
        match c.next_frame().await {
            Some(Frame::Heartbeat(0)) => continue,
            None => break,
            Some(other) => panic!("expected only heartbeats, got {other:?}"),
        }
    }
    // Paused time: this is the broker's own clock, not wall-clock timing.
    let silence = silent_since.elapsed();
    assert!(
        silence >= Duration::from_secs(2) && silence <= Duration::from_secs(4),
        "disconnected after {silence:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn client_that_sends_heartbeats_stays_connected() {
    let broker = TestBroker::start().await;
    pace_paused_clock();
    let mut c = RawClient::open_with_heartbeat(broker.addr, 1).await;
    let start = Instant::now();
    // Ten intervals, the client beating every half interval as RabbitMQ clients do.
    while start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_heartbeat(&mut c).await;
    }
    // Still open: a channel opens (heartbeats from the broker are skipped by next_method).
    c.open_channel(1).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat_zero_turns_heartbeats_off() {
    let broker = TestBroker::start().await;
    pace_paused_clock();
    let mut c = RawClient::open_with_heartbeat(broker.addr, 0).await;
    // Longer than half the offered 60 s, when the broker would have sent its first heartbeat
    // had it kept its own interval. (Windows below `within`'s 30 s bound on each read.)
    for _ in 0..2 {
        let nothing = tokio::time::timeout(Duration::from_secs(20), c.next_frame()).await;
        assert!(nothing.is_err(), "unexpected frame: {nothing:?}");
    }
    c.open_channel(1).await;
}

// ---- close / close-ok ----------------------------------------------------------------------

#[tokio::test]
async fn client_close_is_answered_with_close_ok_and_the_socket_closes() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match c.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    assert_eq!(c.read_to_end().await, b"");
}

#[tokio::test]
async fn lapin_close_completes() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let _ch = conn.create_channel().await.unwrap();
    // lapin resolves close() only once close-ok has arrived.
    within(conn.close(200, "bye".into())).await.unwrap();
    assert!(!conn.status().connected());
}

/// Makes the broker close the connection (a second channel.open: 504) and returns the close.
async fn provoke_connection_close(c: &mut RawClient) -> (u16, String, u16, u16) {
    c.open_channel(1).await;
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    c.expect_connection_close().await
}

#[tokio::test(start_paused = true)]
async fn broker_initiated_close_waits_for_close_ok() {
    let broker = TestBroker::start().await;
    pace_paused_clock();
    let mut c = RawClient::open(broker.addr).await;
    let (code, _, _, _) = provoke_connection_close(&mut c).await;
    assert_eq!(code, 504);
    let closed_at = Instant::now();
    // The socket stays open while the broker waits for our close-ok.
    let waiting = tokio::time::timeout(Duration::from_secs(1), c.next_frame()).await;
    assert!(
        waiting.is_err(),
        "broker did not wait for close-ok: {waiting:?}"
    );
    send_close_ok(&mut c).await;
    assert_eq!(c.read_to_end().await, b"");
    // It was our close-ok that ended the connection, not the broker's give-up timeout (3 s).
    assert!(
        closed_at.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        closed_at.elapsed()
    );
}

#[tokio::test]
async fn after_connection_close_the_broker_ignores_everything_but_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    provoke_connection_close(&mut c).await;
    // None of these is answered: the connection is closing.
    c.send_method(
        2,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "ignored".into(),
            ..Default::default()
        })),
    )
    .await;
    send_heartbeat(&mut c).await;
    send_close_ok(&mut c).await;
    assert_eq!(
        c.read_to_end().await,
        b"",
        "a method was answered after close"
    );
    // And the declare really was ignored.
    let (_conn, ch) = broker.channel().await;
    let err = passive_queue(&ch, "ignored").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn close_crossing_the_brokers_close_is_answered_with_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    provoke_connection_close(&mut c).await;
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "me too".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match c.next_method().await {
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    assert_eq!(c.read_to_end().await, b"");
}

// ---- broker shutdown -----------------------------------------------------------------------

#[tokio::test]
async fn broker_shutdown_closes_connections_with_320_connection_forced() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::open(broker.addr).await;
    c.open_channel(1).await;
    let stopping = tokio::spawn(broker.stop());
    let (code, text, class_id, method_id) = c.expect_connection_close().await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    );
    assert_eq!((class_id, method_id), (0, 0));
    finish_close(&mut c).await;
    within(stopping).await.unwrap();
}

#[tokio::test]
async fn broker_shutdown_shows_320_on_a_lapin_connection() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let _ch = conn.create_channel().await.unwrap();
    let mut events = conn.events_listener();
    within(broker.stop()).await;
    let err = within(async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(err)) => return err,
                Some(_) => continue,
                None => panic!("event stream ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(reply_code(&err), Some(320), "{err:?}");
    assert!(reply_text(&err).starts_with("CONNECTION_FORCED - "));
    assert!(conn.status().errored());
}

// ---- isolation -----------------------------------------------------------------------------

#[tokio::test]
async fn a_connection_error_does_not_affect_another_connection() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_queue(&ch, "survivor").await;
    let mut consumer = ch
        .basic_consume(
            "survivor".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let mut bad = RawClient::open(broker.addr).await;
    let (code, _, _, _) = provoke_connection_close(&mut bad).await;
    assert_eq!(code, 504);
    finish_close(&mut bad).await;

    assert!(conn.status().connected());
    ch.basic_publish(
        "".into(),
        "survivor".into(),
        BasicPublishOptions::default(),
        b"still here",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let delivery = within(consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"still here");
    delivery.ack(BasicAckOptions::default()).await.unwrap();
}

/// A local address of this machine that is not loopback (the one its default route uses),
/// if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the route's source address.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn guest_from_a_non_loopback_address_is_refused_like_rabbitmq() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no non-loopback address (the rule is unit-tested in auth.rs)");
        return;
    };
    let broker = TestBroker::start_on(&ip.to_string(), warren_broker::Config::default()).await;
    let url = format!("amqp://guest:guest@{}/%2f", broker.addr);
    let err = within(lapin::Connection::connect(
        &url,
        lapin::ConnectionProperties::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
    assert_eq!(
        reply_text(&err),
        "ACCESS_REFUSED - User 'guest' can only connect via localhost"
    );
}
