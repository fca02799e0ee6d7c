//! The AMQP 0-9-1 wire codec: turns the socket's bytes into `Frame`s for the connection task and
//! appends outbound frames to its write buffer.
//!
//! Inbound, the frame header is read by hand so the `frame_max` check happens before any payload
//! is buffered; basic.publish/ack/reject/nack and content headers are decoded by hand without
//! allocating (strings and properties share the frame's buffer), everything else goes through
//! amq-protocol's `parse_class`. Outbound, deliveries, returns, confirms and content frames are
//! written by hand, byte-identical to amq-protocol's `gen_frame`; other methods use `gen_class`.
//! The 8-byte protocol header is not a frame: the connection reads and checks it itself.

use crate::connection::frame::{
    Ack, ChannelId, ContentHeader, Frame, Nack, Publish, Qos, Reject, ShortStr,
};
use crate::connection::properties::{check_method_table, walk_basic_properties, WalkError};
use crate::error::AmqpError;
use amq_protocol::frame::{GenError, WriteContext};
use amq_protocol::protocol::{gen_class, parse_class, AMQPClass};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::{self, Write as _};
use std::io::{self, Cursor};
use tokio_util::codec::Decoder;

/// The only protocol header accepted: AMQP 0-9-1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Whether the first 8 bytes a client sent announce AMQP 0-9-1.
pub fn is_valid_protocol_header(h: &[u8]) -> bool {
    h == PROTOCOL_HEADER.as_slice()
}

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Type, channel and size.
pub const FRAME_HEADER_SIZE: usize = 7;
/// Bytes of a frame around its payload: the header plus the end octet.
const FRAME_OVERHEAD: u32 = 8;
/// rabbit_reader lets a payload exceed `frame_max - 8` by up to 8 bytes ("quite a few [clients]
/// get it wrong - off-by 1 or 8"). Warren holds clients to the negotiated frame_max exactly
/// (lapin and pika both send at most `frame_max - 8` payload bytes); raise this to
/// `FRAME_OVERHEAD` to tolerate such clients.
const FRAME_SIZE_FUDGE: u32 = 0;
/// Class id, weight and body size at the start of a content header payload.
const CONTENT_HEADER_PREFIX: usize = 12;
const CLASS_BASIC: u16 = 60;

/// Why decoding stopped: a protocol violation to report with connection.close, or the socket
/// failing underneath (which just ends the connection).
#[derive(Debug)]
pub enum DecodeError {
    Protocol(AmqpError),
    Io(io::Error),
}

impl From<io::Error> for DecodeError {
    fn from(e: io::Error) -> Self {
        DecodeError::Io(e)
    }
}

impl From<AmqpError> for DecodeError {
    fn from(e: AmqpError) -> Self {
        DecodeError::Protocol(e)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Protocol(e) => write!(f, "protocol error: {e}"),
            DecodeError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Protocol(e) => Some(e),
            DecodeError::Io(e) => Some(e),
        }
    }
}

/// Splits the inbound byte stream into frames (after the protocol header).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// Negotiated maximum frame size including the 8 bytes of overhead; 0 means no limit.
    frame_max: u32,
}

impl FrameDecoder {
    pub fn new(frame_max: u32) -> Self {
        FrameDecoder { frame_max }
    }

    /// Applies the frame_max agreed in connection.tune-ok; 0 means no limit (spec 4.2.3).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// The channel and payload size of a body frame that `src` starts with, when its payload
    /// is at least `min` bytes and has not all arrived: such a payload can be read straight
    /// into its message's buffer. None otherwise, including for a size past frame_max (which
    /// `decode` reports).
    pub fn large_body_start(&self, src: &[u8], min: usize) -> Option<(ChannelId, usize)> {
        if src.len() < FRAME_HEADER_SIZE || src[0] != FRAME_BODY {
            return None;
        }
        let channel = u16::from_be_bytes([src[1], src[2]]);
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]);
        let limit = self.frame_max.saturating_sub(FRAME_OVERHEAD);
        if self.frame_max != 0 && size > limit.saturating_add(FRAME_SIZE_FUDGE) {
            return None;
        }
        let size = size as usize;
        (size >= min && src.len() < FRAME_HEADER_SIZE + size + 1).then_some((channel, size))
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if src.len() < FRAME_HEADER_SIZE {
            return Ok(None);
        }
        let kind = src[0];
        let channel = u16::from_be_bytes([src[1], src[2]]);
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]);

        // Checked before waiting for the payload, so a forged size cannot make us buffer it.
        let limit = self.frame_max.saturating_sub(FRAME_OVERHEAD);
        if self.frame_max != 0 && size > limit.saturating_add(FRAME_SIZE_FUDGE) {
            return Err(frame_error(format_args!(
                "type {kind}, all octets = <<>>: {{frame_too_large,{size},{limit}}}"
            ))
            .into());
        }
        let total = FRAME_HEADER_SIZE + size as usize + 1;
        if src.len() < total {
            // Without a limit the size is untrusted, so let the buffer grow as bytes arrive.
            if self.frame_max != 0 {
                src.reserve(total - src.len());
            }
            return Ok(None);
        }
        let end = src[total - 1];
        if end != FRAME_END {
            let payload = &src[FRAME_HEADER_SIZE..total - 1];
            return Err(invalid_frame_end(kind, payload, end).into());
        }
        let frame = src.split_to(total).freeze();
        let payload = frame.slice(FRAME_HEADER_SIZE..total - 1);
        decode_payload(kind, channel, payload)
            .map(Some)
            .map_err(DecodeError::Protocol)
    }
}

/// 501 for a frame that does not end with the frame-end octet.
pub fn invalid_frame_end(kind: u8, payload: &[u8], end: u8) -> AmqpError {
    frame_error(format_args!(
        "type {kind}, {}: {{invalid_frame_end_marker,{end}}}",
        PayloadSnippet(payload)
    ))
}

fn decode_payload(kind: u8, channel: ChannelId, payload: Bytes) -> Result<Frame, AmqpError> {
    match kind {
        FRAME_METHOD => decode_method(channel, payload),
        FRAME_HEADER => decode_content_header(channel, payload),
        FRAME_BODY => Ok(Frame::Body(channel, payload)),
        // rabbitmq-compat: a heartbeat with a payload is an "unknown frame" (rabbit_command_assembler)
        FRAME_HEARTBEAT if payload.is_empty() => Ok(Frame::Heartbeat(channel)),
        _ => Err(unknown_frame(kind, &payload)),
    }
}

fn decode_method(channel: ChannelId, payload: Bytes) -> Result<Frame, AmqpError> {
    if payload.len() < 4 {
        return Err(unknown_frame(FRAME_METHOD, &payload));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    let args = &payload[4..];
    let cannot_decode = || cannot_decode(class_id, method_id, args);
    match (class_id, method_id) {
        (CLASS_BASIC, 40) => {
            let (exchange, routing_key, bits) =
                publish_fields(&payload).ok_or_else(cannot_decode)?;
            Ok(Frame::Publish(
                channel,
                Publish {
                    exchange: utf8_short_str(exchange)?,
                    routing_key: utf8_short_str(routing_key)?,
                    mandatory: bits & 1 != 0,
                    immediate: bits & 2 != 0,
                },
            ))
        }
        (CLASS_BASIC, 80 | 90 | 120) => {
            let (delivery_tag, bits) = tag_and_bits(args).ok_or_else(cannot_decode)?;
            let (bit0, bit1) = (bits & 1 != 0, bits & 2 != 0);
            Ok(match method_id {
                80 => Frame::Ack(
                    channel,
                    Ack {
                        delivery_tag,
                        multiple: bit0,
                    },
                ),
                90 => Frame::Reject(
                    channel,
                    Reject {
                        delivery_tag,
                        requeue: bit0,
                    },
                ),
                _ => {
                    let (multiple, requeue) = (bit0, bit1);
                    Frame::Nack(
                        channel,
                        Nack {
                            delivery_tag,
                            multiple,
                            requeue,
                        },
                    )
                }
            })
        }
        // basic.qos by hand: amq-protocol's struct drops prefetch_size, which the broker must
        // see to refuse it.
        (CLASS_BASIC, 10) => {
            let [a, b, c, d, e, f, bits] =
                <[u8; 7]>::try_from(args).map_err(|_| cannot_decode())?;
            Ok(Frame::Qos(
                channel,
                Qos {
                    prefetch_size: u32::from_be_bytes([a, b, c, d]),
                    prefetch_count: u16::from_be_bytes([e, f]),
                    global: bits & 1 != 0,
                },
            ))
        }
        _ => decode_other_method(channel, class_id, method_id, &payload),
    }
}

/// basic.publish: reserved short, exchange, routing-key, then mandatory (bit 0) and immediate
/// (bit 1) in one octet, and nothing after. `None` when the arguments do not fit that layout.
fn publish_fields(payload: &Bytes) -> Option<(Bytes, Bytes, u8)> {
    let short_str = |pos: &mut usize| {
        let len = usize::from(*payload.get(*pos)?);
        let range = *pos + 1..*pos + 1 + len;
        *pos = range.end;
        (range.end <= payload.len()).then(|| payload.slice(range))
    };
    let mut pos = 6; // class id, method id, reserved ticket
    let exchange = short_str(&mut pos)?;
    let routing_key = short_str(&mut pos)?;
    let bits = *payload.get(pos)?;
    (payload.len() == pos + 1).then_some((exchange, routing_key, bits))
}

/// rabbitmq-compat: RabbitMQ skips the UTF-8 check on content-bearing methods, but `ShortStr`
/// needs it; the error is the one rabbit_binary_parser:assert_utf8 raises for other methods.
fn utf8_short_str(bytes: Bytes) -> Result<ShortStr, AmqpError> {
    ShortStr::from_bytes(bytes)
        .ok_or_else(|| frame_error("Malformed UTF-8 in shortstr").during(CLASS_BASIC, 40))
}

/// The delivery-tag and bit octet of basic.ack / reject / nack, which must be all there is.
fn tag_and_bits(args: &[u8]) -> Option<(u64, u8)> {
    let args: &[u8; 9] = args.try_into().ok()?;
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&args[..8]);
    Some((u64::from_be_bytes(tag), args[8]))
}

fn decode_other_method(
    channel: ChannelId,
    class_id: u16,
    method_id: u16,
    payload: &[u8],
) -> Result<Frame, AmqpError> {
    if !is_known_method(class_id, method_id) {
        return Err(unknown_method(class_id, method_id));
    }
    let args = &payload[4..];
    check_method_table(class_id, method_id, args)
        .map_err(|e| method_walk_error(class_id, method_id, args, e))?;
    match parse_class(payload) {
        Ok(([], class)) => Ok(Frame::Method(channel, Box::new(class))),
        _ => Err(cannot_decode(class_id, method_id, args)),
    }
}

fn method_walk_error(class_id: u16, method_id: u16, args: &[u8], e: WalkError) -> AmqpError {
    if e.is_too_deep() {
        frame_error(format_args!("cannot decode: {e}")).during(class_id, method_id)
    } else {
        cannot_decode(class_id, method_id, args)
    }
}

fn decode_content_header(channel: ChannelId, payload: Bytes) -> Result<Frame, AmqpError> {
    if payload.len() < CONTENT_HEADER_PREFIX {
        return Err(unknown_frame(FRAME_HEADER, &payload));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let weight = u16::from_be_bytes([payload[2], payload[3]]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&payload[4..CONTENT_HEADER_PREFIX]);
    let body_size = u64::from_be_bytes(size);
    // rabbitmq-compat: rabbit_command_assembler only accepts headers with weight 0 for the class
    // of the pending method, and only basic methods carry content; anything else is 505 there
    // whatever state the channel is in.
    if class_id != CLASS_BASIC {
        return Err(AmqpError::unexpected_frame(format_args!(
            "content header for class {class_id}; only class {CLASS_BASIC} carries content"
        )));
    }
    if weight != 0 {
        return Err(AmqpError::unexpected_frame(format_args!(
            "content header with non-zero weight {weight}"
        )));
    }
    let properties = payload.slice(CONTENT_HEADER_PREFIX..);
    let summary = walk_basic_properties(&properties).map_err(|e| {
        // Content only ever follows basic.publish from a client, hence its ids.
        AmqpError::syntax_error(format_args!("malformed content header properties: {e}"))
            .during(CLASS_BASIC, 40)
    })?;
    Ok(Frame::Header(
        channel,
        ContentHeader {
            class_id,
            body_size,
            properties,
            summary,
        },
    ))
}

/// Every AMQP 0-9-1 class and its method ids: the spec XML, access.request from 0-8, and
/// RabbitMQ's extensions (connection.blocked/unblocked/update-secret, exchange.bind/unbind,
/// basic.nack, confirm.select). Exactly the set amq-protocol parses, which a test checks.
#[rustfmt::skip]
const KNOWN_METHODS: &[(u16, &str, &[u16])] = &[
    (10, "connection", &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71]),
    (20, "channel", &[10, 11, 20, 21, 40, 41]),
    (30, "access", &[10, 11]),
    (40, "exchange", &[10, 11, 20, 21, 30, 31, 40, 51]),
    (50, "queue", &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51]),
    (60, "basic", &[10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120]),
    (85, "confirm", &[10, 11]),
    (90, "tx", &[10, 11, 20, 21, 30, 31]),
];

fn known_class(class_id: u16) -> Option<(&'static str, &'static [u16])> {
    KNOWN_METHODS
        .iter()
        .find(|(id, _, _)| *id == class_id)
        .map(|(_, name, methods)| (*name, *methods))
}

fn is_known_method(class_id: u16, method_id: u16) -> bool {
    known_class(class_id).is_some_and(|(_, methods)| methods.contains(&method_id))
}

// ---- error texts ---------------------------------------------------------------------------
// RabbitMQ builds these from Erlang terms (rabbit_reader:frame_error/5, rabbit_misc:frame_error/2);
// we print the same terms so clients and operators see familiar text.

fn frame_error(detail: impl fmt::Display) -> AmqpError {
    AmqpError::frame_error(detail)
}

/// rabbitmq-compat: what rabbit_reader says when rabbit_command_assembler:analyze_frame cannot
/// make sense of a frame (unknown type, method payload under 4 bytes, header under 12 bytes,
/// heartbeat with a payload).
fn unknown_frame(kind: u8, payload: &[u8]) -> AmqpError {
    frame_error(format_args!(
        "type {kind}, {}: unknown_frame",
        PayloadSnippet(payload)
    ))
}

/// rabbitmq-compat: the generated rabbit_framing decoder's fallback for arguments that do not
/// match the method's layout, `rabbit_misc:frame_error(Method, Bin)` → "cannot decode ~w".
fn cannot_decode(class_id: u16, method_id: u16, args: &[u8]) -> AmqpError {
    frame_error(format_args!("cannot decode {}", ErlBinary::raw(args))).during(class_id, method_id)
}

/// RabbitMQ crashes the connection without a close on an unknown method id (`exit({unknown_
/// method_id, Id})` in rabbit_framing), so there is no reply to copy. We use the code its channel
/// gives methods it does not handle (`command_invalid, "unimplemented method"`).
fn unknown_method(class_id: u16, method_id: u16) -> AmqpError {
    let err = match known_class(class_id) {
        Some((name, _)) => AmqpError::command_invalid(format_args!(
            "unknown method id {method_id} in class {name} ({class_id})"
        )),
        None => AmqpError::command_invalid(format_args!(
            "unknown class id {class_id} (method id {method_id})"
        )),
    };
    err.during(class_id, method_id)
}

/// rabbit_reader's `payload_snippet`: "all octets = <<…>>" up to 16 bytes, else the first 16.
struct PayloadSnippet<'a>(&'a [u8]);

impl fmt::Display for PayloadSnippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get(..16) {
            Some(first) if self.0.len() > 16 => {
                write!(f, "first 16 octets = {}", ErlBinary::pretty(first))
            }
            _ => write!(f, "all octets = {}", ErlBinary::pretty(self.0)),
        }
    }
}

/// An Erlang binary as `~p` (printable ASCII shown as a string) or `~w` (always numbers) print
/// it. Long binaries are cut, as the close reply-text is a short string anyway.
struct ErlBinary<'a> {
    bytes: &'a [u8],
    printable: bool,
}

impl<'a> ErlBinary<'a> {
    const MAX_SHOWN: usize = 64;

    fn pretty(bytes: &'a [u8]) -> Self {
        let printable = !bytes.is_empty()
            && bytes
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) || erl_escape(b).is_some());
        ErlBinary { bytes, printable }
    }

    fn raw(bytes: &'a [u8]) -> Self {
        ErlBinary {
            bytes,
            printable: false,
        }
    }
}

fn erl_escape(b: u8) -> Option<&'static str> {
    Some(match b {
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x0b => "\\v",
        0x08 => "\\b",
        0x0c => "\\f",
        0x1b => "\\e",
        b'"' => "\\\"",
        b'\\' => "\\\\",
        _ => return None,
    })
}

impl fmt::Display for ErlBinary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.bytes[..self.bytes.len().min(Self::MAX_SHOWN)];
        let cut = if shown.len() < self.bytes.len() {
            "..."
        } else {
            ""
        };
        f.write_str("<<")?;
        if self.printable {
            f.write_char('"')?;
            for &b in shown {
                match erl_escape(b) {
                    Some(esc) => f.write_str(esc)?,
                    None => f.write_char(char::from(b))?,
                }
            }
            f.write_char('"')?;
        } else {
            for (i, b) in shown.iter().enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                write!(f, "{b}")?;
            }
        }
        write!(f, "{cut}>>")
    }
}

// ---- encoding ------------------------------------------------------------------------------

/// Encodes any method through amq-protocol's `gen_class`. Methods are generated into a 1 KiB
/// scratch array on the stack (a heap buffer only for the rare bigger one), so a connection
/// holds no scratch memory between methods.
#[derive(Debug, Clone, Default)]
pub struct MethodEncoder;

impl MethodEncoder {
    const INITIAL_SCRATCH: usize = 1024;
    /// No method the broker sends comes close; past this something is wrong, not just big.
    const MAX_SCRATCH: usize = 64 << 20;

    pub fn new() -> Self {
        MethodEncoder
    }

    /// Appends one method frame. Fails (541) only if amq-protocol cannot generate the method.
    pub fn encode(
        &mut self,
        buf: &mut BytesMut,
        channel: ChannelId,
        method: &AMQPClass,
    ) -> Result<(), AmqpError> {
        let during =
            |e: AmqpError| e.during(method.get_amqp_class_id(), method.get_amqp_method_id());
        let mut stack = [0u8; Self::INITIAL_SCRATCH];
        let mut heap = Vec::new();
        let mut scratch: &mut [u8] = &mut stack;
        loop {
            // A Cursor rather than a bare `&mut [u8]`: cookie-factory's `&mut [u8]` writer
            // panics (split_at_mut) when a table's length prefix falls in the last 3 bytes,
            // while the Cursor's seek past the end just yields BufferTooSmall.
            let generated = {
                let ctx = WriteContext::from(Cursor::new(&mut *scratch));
                gen_class(method)(ctx).map(|ctx| ctx.write.position())
            };
            match generated {
                Ok(len) => {
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    let Some(body) = scratch.get(..len) else {
                        return Err(during(AmqpError::internal_error(
                            "method generation overran its buffer",
                        )));
                    };
                    buf.reserve(len + FRAME_OVERHEAD as usize);
                    put_frame_header(buf, FRAME_METHOD, channel, len);
                    buf.put_slice(body);
                    buf.put_u8(FRAME_END);
                    return Ok(());
                }
                Err(GenError::BufferTooSmall(_)) if scratch.len() < Self::MAX_SCRATCH => {
                    let grown = scratch.len() * 2;
                    heap.resize(grown, 0);
                    scratch = &mut heap;
                }
                Err(e) => {
                    return Err(during(AmqpError::internal_error(format_args!(
                        "cannot encode method: {e}"
                    ))))
                }
            }
        }
    }
}

fn put_frame_header(buf: &mut BytesMut, kind: u8, channel: ChannelId, size: usize) {
    buf.put_u8(kind);
    buf.put_u16(channel);
    // Every caller's size is bounded far below 4 GiB (short strings, one body chunk, properties
    // that arrived in a frame); saturate rather than wrap should that ever change.
    buf.put_u32(u32::try_from(size).unwrap_or(u32::MAX));
}

/// Short strings reaching the hand encoders are at most 255 bytes by construction; longer input
/// is cut at 255 bytes rather than producing a corrupt length octet.
fn short_str_bytes(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(255)]
}

fn short_str_size(s: &str) -> usize {
    1 + short_str_bytes(s).len()
}

fn put_short_str(buf: &mut BytesMut, s: &str) {
    let b = short_str_bytes(s);
    buf.put_u8(b.len() as u8);
    buf.put_slice(b);
}

/// Writes the frame header and the class and method ids of a basic method of `size` payload bytes.
fn put_basic_method_start(buf: &mut BytesMut, channel: ChannelId, method_id: u16, size: usize) {
    buf.reserve(size + FRAME_OVERHEAD as usize);
    put_frame_header(buf, FRAME_METHOD, channel, size);
    buf.put_u16(CLASS_BASIC);
    buf.put_u16(method_id);
}

/// basic.deliver (60, 60).
pub fn encode_deliver(
    buf: &mut BytesMut,
    channel: ChannelId,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let size = 4
        + short_str_size(consumer_tag)
        + 8
        + 1
        + short_str_size(exchange)
        + short_str_size(routing_key);
    put_basic_method_start(buf, channel, 60, size);
    put_short_str(buf, consumer_tag);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(redelivered));
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    buf.put_u8(FRAME_END);
}

/// basic.get-ok (60, 71).
pub fn encode_get_ok(
    buf: &mut BytesMut,
    channel: ChannelId,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    message_count: u32,
) {
    let size = 4 + 8 + 1 + short_str_size(exchange) + short_str_size(routing_key) + 4;
    put_basic_method_start(buf, channel, 71, size);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(redelivered));
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    buf.put_u32(message_count);
    buf.put_u8(FRAME_END);
}

/// basic.return (60, 50).
pub fn encode_return(
    buf: &mut BytesMut,
    channel: ChannelId,
    reply_code: u16,
    reply_text: &str,
    exchange: &str,
    routing_key: &str,
) {
    let size =
        4 + 2 + short_str_size(reply_text) + short_str_size(exchange) + short_str_size(routing_key);
    put_basic_method_start(buf, channel, 50, size);
    buf.put_u16(reply_code);
    put_short_str(buf, reply_text);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    buf.put_u8(FRAME_END);
}

/// basic.ack (60, 80) as a publisher confirm.
pub fn encode_ack(buf: &mut BytesMut, channel: ChannelId, delivery_tag: u64, multiple: bool) {
    put_basic_method_start(buf, channel, 80, 4 + 8 + 1);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(multiple));
    buf.put_u8(FRAME_END);
}

/// basic.nack (60, 120) as a negative publisher confirm.
pub fn encode_nack(
    buf: &mut BytesMut,
    channel: ChannelId,
    delivery_tag: u64,
    multiple: bool,
    requeue: bool,
) {
    put_basic_method_start(buf, channel, 120, 4 + 8 + 1);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(multiple) | u8::from(requeue) << 1);
    buf.put_u8(FRAME_END);
}

/// The largest body chunk a frame of `frame_max` bytes holds (0 = no limit).
fn body_chunk_size(frame_max: u32) -> usize {
    if frame_max == 0 {
        u32::MAX as usize
    } else {
        frame_max.saturating_sub(FRAME_OVERHEAD).max(1) as usize
    }
}

/// A content header (class 60, weight 0, body_size, the raw property bytes) followed by body
/// frames of at most `frame_max - 8` bytes each; a 0-byte body has no body frame.
pub fn encode_content(
    buf: &mut BytesMut,
    channel: ChannelId,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let chunk = body_chunk_size(frame_max);
    let body_frames = body.len().div_ceil(chunk);
    buf.reserve(
        CONTENT_HEADER_PREFIX
            + properties.len()
            + body.len()
            + FRAME_OVERHEAD as usize * (1 + body_frames),
    );
    encode_content_header(buf, channel, properties, body.len());
    for range in body_frame_ranges(body.len(), frame_max) {
        encode_body_frame_start(buf, channel, range.len());
        buf.put_slice(&body[range]);
        encode_frame_end(buf);
    }
}

/// The content header frame alone (class 60, weight 0, `body_size`, the raw property bytes).
pub fn encode_content_header(
    buf: &mut BytesMut,
    channel: ChannelId,
    properties: &[u8],
    body_size: usize,
) {
    put_frame_header(
        buf,
        FRAME_HEADER,
        channel,
        CONTENT_HEADER_PREFIX + properties.len(),
    );
    buf.put_u16(CLASS_BASIC);
    buf.put_u16(0);
    buf.put_u64(body_size as u64);
    buf.put_slice(properties);
    buf.put_u8(FRAME_END);
}

/// The body split into the payloads of frames of at most `frame_max` bytes, as ranges.
pub fn body_frame_ranges(
    body_len: usize,
    frame_max: u32,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let chunk = body_chunk_size(frame_max);
    (0..body_len)
        .step_by(chunk)
        .map(move |start| start..body_len.min(start.saturating_add(chunk)))
}

/// The 7 bytes before a body frame's payload of `len` bytes (the frame end follows it).
pub fn encode_body_frame_start(buf: &mut BytesMut, channel: ChannelId, len: usize) {
    put_frame_header(buf, FRAME_BODY, channel, len);
}

/// The byte that ends every frame.
pub fn encode_frame_end(buf: &mut BytesMut) {
    buf.put_u8(FRAME_END);
}

/// A heartbeat frame (always on channel 0).
pub fn encode_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
#[path = "tests/codec.rs"]
mod tests;
