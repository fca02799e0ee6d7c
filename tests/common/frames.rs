//! Raw AMQP building blocks for the raw-frame tests: field encoders, basic.publish frames and
//! content headers, and `RawClient` shortcuts for the methods most raw tests start with.

use super::{raw_frame, RawClient};
use amq_protocol::protocol::{basic, queue, AMQPClass};

/// Appends a short string (length octet, then bytes).
pub fn short_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a long string (32-bit length, then bytes).
pub fn long_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A basic content-header payload: class 60, weight 0, `body_size`, then `properties` as
/// given (flags first; `&[0, 0]` for none).
pub fn basic_header_payload(body_size: u64, properties: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&60u16.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&body_size.to_be_bytes());
    header.extend_from_slice(properties);
    header
}

/// Property flags with no property set.
pub const NO_PROPERTIES: &[u8] = &[0, 0];

/// The frames of one publish: basic.publish, a content header carrying `properties`, and one
/// body frame per chunk (none for an empty body).
pub fn publish_frames_with(
    channel: u16,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    properties: &[u8],
    body_chunks: &[&[u8]],
) -> Vec<u8> {
    let mut method = Vec::new();
    method.extend_from_slice(&60u16.to_be_bytes());
    method.extend_from_slice(&40u16.to_be_bytes());
    method.extend_from_slice(&0u16.to_be_bytes());
    short_str(&mut method, exchange);
    short_str(&mut method, routing_key);
    method.push(u8::from(mandatory));
    let size: usize = body_chunks.iter().map(|c| c.len()).sum();
    let mut frames = raw_frame(1, channel, &method);
    frames.extend(raw_frame(
        2,
        channel,
        &basic_header_payload(size as u64, properties),
    ));
    for chunk in body_chunks {
        frames.extend(raw_frame(3, channel, chunk));
    }
    frames
}

impl RawClient {
    /// Declares a plain queue on `channel` and expects queue.declare-ok.
    pub async fn declare_queue(&mut self, channel: u16, name: &str) {
        self.send_method(
            channel,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                ..Default::default()
            })),
        )
        .await;
        match self.next_method().await {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) => {}
            other => panic!("expected queue.declare-ok, got {other:?}"),
        }
    }

    /// Publishes `body` on `channel` to the default exchange: basic.publish as a method, a
    /// content header without properties, then body frames of at most `chunk` bytes.
    pub async fn publish_chunked(
        &mut self,
        channel: u16,
        routing_key: &str,
        body: &[u8],
        chunk: usize,
    ) {
        self.send_method(
            channel,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: routing_key.into(),
                mandatory: false,
                immediate: false,
            })),
        )
        .await;
        let header = basic_header_payload(body.len() as u64, NO_PROPERTIES);
        self.write(&raw_frame(2, channel, &header)).await;
        for part in body.chunks(chunk) {
            self.write(&raw_frame(3, channel, part)).await;
        }
    }
}

/// The frames of one publish with no properties and `body` in a single body frame (none when
/// the body is empty).
pub fn publish_frames(
    channel: u16,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    body: &[u8],
) -> Vec<u8> {
    let chunks: &[&[u8]] = if body.is_empty() { &[] } else { &[body] };
    publish_frames_with(
        channel,
        exchange,
        routing_key,
        mandatory,
        NO_PROPERTIES,
        chunks,
    )
}
