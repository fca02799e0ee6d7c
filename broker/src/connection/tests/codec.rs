//! Unit and property tests of the codec: hand-written frames against amq-protocol, both ways.

use super::*;
use crate::connection::frame::PropertySummary;
use crate::connection::properties::tests::{basic_properties, field_table, short_string};
use crate::error::ReplyCode;
use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::basic::{self, gen_properties, AMQPProperties};
use amq_protocol::protocol::{connection, queue};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use proptest::prelude::*;

fn gen_bytes(frame: &AMQPFrame) -> Vec<u8> {
    match gen_frame(frame)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(e) => panic!("gen_frame failed: {e}"),
    }
}

fn props_bytes(p: &AMQPProperties) -> Vec<u8> {
    match gen_properties(p)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(e) => panic!("gen_properties failed: {e}"),
    }
}

fn basic_frame(channel: u16, method: basic::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(channel, AMQPClass::Basic(method))
}

/// Decodes every frame in `bytes`, requiring nothing to be left over.
fn decode_all(bytes: &[u8], frame_max: u32) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = FrameDecoder::new(frame_max);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(frames)
}

fn decode_one(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let mut frames = decode_all(bytes, 131_072)?;
    assert_eq!(frames.len(), 1);
    Ok(frames.remove(0))
}

fn protocol_error<T: fmt::Debug>(r: Result<T, DecodeError>) -> AmqpError {
    match r {
        Err(DecodeError::Protocol(e)) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// A raw frame with an arbitrary type, channel and payload.
fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn method_payload(class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
    [
        &class_id.to_be_bytes()[..],
        &method_id.to_be_bytes()[..],
        args,
    ]
    .concat()
}

fn sstr(s: &str) -> ShortString {
    ShortString::from(s)
}

fn shortstr(s: &ShortString) -> ShortStr {
    ShortStr::from_string(s.as_str().to_owned()).unwrap_or_default()
}

// ---- encoders equal gen_frame ----------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn deliver_matches_gen_frame(
        ch in any::<u16>(), ct in short_string(), tag in any::<u64>(), redelivered in any::<bool>(),
        ex in short_string(), rk in short_string(),
    ) {
        let mut buf = BytesMut::new();
        encode_deliver(&mut buf, ch, ct.as_str(), tag, redelivered, ex.as_str(), rk.as_str());
        let expected = gen_bytes(&basic_frame(ch, basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: ct, delivery_tag: tag, redelivered, exchange: ex, routing_key: rk,
        })));
        prop_assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn get_ok_matches_gen_frame(
        ch in any::<u16>(), tag in any::<u64>(), redelivered in any::<bool>(),
        ex in short_string(), rk in short_string(), count in any::<u32>(),
    ) {
        let mut buf = BytesMut::new();
        encode_get_ok(&mut buf, ch, tag, redelivered, ex.as_str(), rk.as_str(), count);
        let expected = gen_bytes(&basic_frame(ch, basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag, redelivered, exchange: ex, routing_key: rk, message_count: count,
        })));
        prop_assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn return_matches_gen_frame(
        ch in any::<u16>(), code in any::<u16>(), text in short_string(),
        ex in short_string(), rk in short_string(),
    ) {
        let mut buf = BytesMut::new();
        encode_return(&mut buf, ch, code, text.as_str(), ex.as_str(), rk.as_str());
        let expected = gen_bytes(&basic_frame(ch, basic::AMQPMethod::Return(basic::Return {
            reply_code: code, reply_text: text, exchange: ex, routing_key: rk,
        })));
        prop_assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn confirms_match_gen_frame(
        ch in any::<u16>(), tag in any::<u64>(), multiple in any::<bool>(), requeue in any::<bool>(),
    ) {
        let mut buf = BytesMut::new();
        encode_ack(&mut buf, ch, tag, multiple);
        let expected = gen_bytes(&basic_frame(ch, basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: tag, multiple,
        })));
        prop_assert_eq!(&buf[..], &expected[..]);

        let mut buf = BytesMut::new();
        encode_nack(&mut buf, ch, tag, multiple, requeue);
        let expected = gen_bytes(&basic_frame(ch, basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: tag, multiple, requeue,
        })));
        prop_assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn content_matches_gen_frame(
        ch in any::<u16>(), props in basic_properties(),
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        frame_max in prop_oneof![9u32..64, 4096u32..4200, Just(131_072u32)],
    ) {
        let raw = props_bytes(&props);
        let mut buf = BytesMut::new();
        encode_content(&mut buf, ch, &raw, &body, frame_max);
        let mut expected = gen_bytes(&AMQPFrame::Header(ch, AMQPContentHeader {
            class_id: 60, body_size: body.len() as u64, properties: props,
        }));
        for part in body.chunks((frame_max - 8) as usize) {
            expected.extend(gen_bytes(&AMQPFrame::Body(ch, part.to_vec())));
        }
        prop_assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn method_encoder_matches_gen_frame(
        ch in any::<u16>(), queue in short_string(), args in field_table(),
        durable in any::<bool>(), nowait in any::<bool>(),
    ) {
        let class = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue, passive: false, durable, exclusive: false, auto_delete: true, nowait,
            arguments: args,
        }));
        let mut buf = BytesMut::new();
        let mut encoder = MethodEncoder::new();
        prop_assert!(encoder.encode(&mut buf, ch, &class).is_ok());
        let frame = AMQPFrame::Method(ch, class);
        prop_assert_eq!(&buf[..], &gen_bytes(&frame)[..]);
        // and the decoder hands the same method back
        let decoded = decode_one(&buf);
        let AMQPFrame::Method(_, class) = frame else { unreachable!() };
        prop_assert!(matches!(decoded, Ok(Frame::Method(c, m)) if c == ch && *m == class));
    }
}

// ---- hand decoders agree with amq-protocol -----------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn publish_decodes_like_parse_frame(
        ch in any::<u16>(), ex in short_string(), rk in short_string(),
        mandatory in any::<bool>(), immediate in any::<bool>(),
    ) {
        let bytes = gen_bytes(&basic_frame(ch, basic::AMQPMethod::Publish(basic::Publish {
            exchange: ex, routing_key: rk, mandatory, immediate,
        })));
        let Ok((_, AMQPFrame::Method(pch, AMQPClass::Basic(basic::AMQPMethod::Publish(p))))) =
            parse_frame(&bytes[..]) else { panic!("amq-protocol cannot parse its own publish") };
        let expected = Frame::Publish(pch, Publish {
            exchange: shortstr(&p.exchange), routing_key: shortstr(&p.routing_key),
            mandatory: p.mandatory, immediate: p.immediate,
        });
        prop_assert_eq!(decode_one(&bytes).ok(), Some(expected));
    }

    #[test]
    fn acks_decode_like_parse_frame(
        ch in any::<u16>(), tag in any::<u64>(), multiple in any::<bool>(), requeue in any::<bool>(),
        which in 0u8..3,
    ) {
        let method = match which {
            0 => basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple }),
            1 => basic::AMQPMethod::Nack(basic::Nack { delivery_tag: tag, multiple, requeue }),
            _ => basic::AMQPMethod::Reject(basic::Reject { delivery_tag: tag, requeue }),
        };
        let bytes = gen_bytes(&basic_frame(ch, method));
        let expected = match parse_frame(&bytes[..]) {
            Ok((_, AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::Ack(a))))) =>
                Frame::Ack(c, Ack { delivery_tag: a.delivery_tag, multiple: a.multiple }),
            Ok((_, AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::Nack(n))))) =>
                Frame::Nack(c, Nack {
                    delivery_tag: n.delivery_tag, multiple: n.multiple, requeue: n.requeue,
                }),
            Ok((_, AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::Reject(r))))) =>
                Frame::Reject(c, Reject { delivery_tag: r.delivery_tag, requeue: r.requeue }),
            other => panic!("unexpected parse: {other:?}"),
        };
        prop_assert_eq!(decode_one(&bytes).ok(), Some(expected));
    }

    /// Bit octets with unused bits set decode the same as amq-protocol reads them.
    #[test]
    fn spare_bits_are_ignored_like_amq_protocol(bits in any::<u8>(), tag in any::<u64>()) {
        let mut args = tag.to_be_bytes().to_vec();
        args.push(bits);
        let bytes = raw_frame(1, 1, &method_payload(60, 120, &args));
        let Ok((_, AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Nack(n))))) =
            parse_frame(&bytes[..]) else { panic!("nack does not parse") };
        let expected = Frame::Nack(1, Nack {
            delivery_tag: n.delivery_tag, multiple: n.multiple, requeue: n.requeue,
        });
        prop_assert_eq!(decode_one(&bytes).ok(), Some(expected));
    }

    #[test]
    fn content_header_decodes_like_parse_frame(
        ch in any::<u16>(), props in basic_properties(), body_size in any::<u64>(),
    ) {
        let raw = props_bytes(&props);
        let bytes = gen_bytes(&AMQPFrame::Header(ch, AMQPContentHeader {
            class_id: 60, body_size, properties: props,
        }));
        let Ok((_, AMQPFrame::Header(pch, parsed))) = parse_frame(&bytes[..]) else {
            panic!("amq-protocol cannot parse its own header")
        };
        let Ok(Frame::Header(c, header)) = decode_one(&bytes) else {
            panic!("header did not decode")
        };
        prop_assert_eq!(c, pch);
        prop_assert_eq!(header.class_id, parsed.class_id);
        prop_assert_eq!(header.body_size, parsed.body_size);
        prop_assert_eq!(&header.properties[..], &raw[..]);
        let p = &parsed.properties;
        let s = |v: &Option<ShortString>| v.as_ref().map(shortstr);
        prop_assert_eq!(header.summary, PropertySummary {
            delivery_mode: p.delivery_mode().unwrap_or(0),
            priority: *p.priority(),
            expiration: s(p.expiration()),
            user_id: s(p.user_id()),
            has_headers: p.headers().is_some(),
            has_cc_or_bcc: p.headers().as_ref().is_some_and(|h| {
                h.inner().contains_key("CC") || h.inner().contains_key("BCC")
            }),
        });
    }

    /// A stream of frames cut into arbitrary pieces decodes to the same frames.
    #[test]
    fn frames_survive_arbitrary_chunking(
        props in basic_properties(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(1usize..97, 1..40),
    ) {
        let mut stream = BytesMut::new();
        encode_ack(&mut stream, 3, 42, true);
        encode_content(&mut stream, 3, &props_bytes(&props), &body, 200);
        encode_heartbeat(&mut stream);
        let whole = decode_all(&stream, 131_072);
        prop_assert!(whole.is_ok());

        let mut decoder = FrameDecoder::new(131_072);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap_or(&1)).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                frames.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(whole.ok(), Some(frames));
    }
}

// ---- unit tests ----------------------------------------------------------------------------

#[test]
fn protocol_header_is_0_9_1_only() {
    assert!(is_valid_protocol_header(b"AMQP\x00\x00\x09\x01"));
    assert!(!is_valid_protocol_header(b"AMQP\x01\x01\x00\x09"));
    assert!(!is_valid_protocol_header(b"AMQP\x00\x00\x09"));
    assert!(!is_valid_protocol_header(b"GET / HT"));
}

#[test]
fn partial_input_waits_and_resumes() {
    let mut frame = BytesMut::new();
    encode_deliver(&mut frame, 7, "ctag", 9, false, "x", "rk");
    let mut ack = BytesMut::new();
    encode_ack(&mut ack, 7, 9, false);
    let mut decoder = FrameDecoder::new(131_072);
    let mut buf = BytesMut::new();
    // the header alone, then all but the end octet: nothing yet
    buf.extend_from_slice(&ack[..5]);
    assert!(matches!(decoder.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(&ack[5..ack.len() - 1]);
    assert!(matches!(decoder.decode(&mut buf), Ok(None)));
    // the end octet and the start of the next frame: one frame, the rest stays buffered
    buf.extend_from_slice(&ack[ack.len() - 1..]);
    buf.extend_from_slice(&frame[..3]);
    let ack_frame = Frame::Ack(
        7,
        Ack {
            delivery_tag: 9,
            multiple: false,
        },
    );
    assert_eq!(decoder.decode(&mut buf).ok(), Some(Some(ack_frame)));
    assert_eq!(&buf[..], &frame[..3]);
    assert!(matches!(decoder.decode(&mut buf), Ok(None)));
}

#[test]
fn oversize_frame_is_rejected_from_its_header_alone() {
    let mut decoder = FrameDecoder::new(131_072);
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 0x03, 0x0d, 0x40][..]); // 200 000 bytes
    let err = protocol_error(decoder.decode(&mut buf));
    assert_eq!(err.code, ReplyCode::FrameError);
    assert_eq!(
        err.text,
        "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,200000,131064}"
    );
    assert_eq!((err.class_id, err.method_id), (0, 0));
    // a forged 4 GiB size is refused the same way, without reserving anything
    let mut buf = BytesMut::from(&[1u8, 0, 0, 0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        protocol_error(decoder.decode(&mut buf)).code,
        ReplyCode::FrameError
    );
    assert!(buf.capacity() < 1024);
}

#[test]
fn payload_beyond_frame_max_minus_8_is_refused_from_the_header() {
    let mut decoder = FrameDecoder::new(8192);
    let header = |size: u32| {
        let mut h = vec![3u8, 0, 1];
        h.extend_from_slice(&size.to_be_bytes());
        BytesMut::from(&h[..])
    };
    assert!(matches!(decoder.decode(&mut header(8184)), Ok(None)));
    assert!(decoder.decode(&mut header(8185)).is_err());
    decoder.set_frame_max(0);
    assert!(matches!(decoder.decode(&mut header(u32::MAX)), Ok(None)));
    assert_eq!(decoder.frame_max(), 0);
}

#[test]
fn qos_is_decoded_by_hand_with_its_prefetch_size() {
    let mut args = Vec::new();
    args.extend_from_slice(&7u32.to_be_bytes());
    args.extend_from_slice(&300u16.to_be_bytes());
    args.push(1);
    let mut buf = BytesMut::from(&raw_frame(1, 3, &method_payload(60, 10, &args))[..]);
    let frame = FrameDecoder::new(131_072).decode(&mut buf);
    let expected = Qos {
        prefetch_size: 7,
        prefetch_count: 300,
        global: true,
    };
    assert!(matches!(frame, Ok(Some(Frame::Qos(3, q))) if q == expected));
    let mut short = BytesMut::from(&raw_frame(1, 3, &method_payload(60, 10, &[0; 3]))[..]);
    assert!(FrameDecoder::new(131_072).decode(&mut short).is_err());
}

#[test]
fn bad_frame_end_is_a_frame_error() {
    let mut bytes = raw_frame(1, 1, &method_payload(60, 80, &[0; 9]));
    let last = bytes.len() - 1;
    bytes[last] = 0xCD;
    let err = protocol_error(decode_all(&bytes, 131_072));
    assert_eq!(err.code, ReplyCode::FrameError);
    assert_eq!(
        err.text,
        "FRAME_ERROR - type 1, all octets = <<0,60,0,80,0,0,0,0,0,0,0,0,0>>: \
         {invalid_frame_end_marker,205}"
    );
    let mut long = raw_frame(3, 1, b"hello world, this is a body");
    let last = long.len() - 1;
    long[last] = 0;
    let err = protocol_error(decode_all(&long, 131_072));
    assert_eq!(
        err.text,
        "FRAME_ERROR - type 3, first 16 octets = <<\"hello world, thi\">>: \
         {invalid_frame_end_marker,0}"
    );
}

#[test]
fn unknown_frame_types_and_short_payloads_are_unknown_frames() {
    let cases: &[(Vec<u8>, &str)] = &[
        (
            raw_frame(4, 0, b""),
            "FRAME_ERROR - type 4, all octets = <<>>: unknown_frame",
        ),
        (
            raw_frame(1, 1, &[0, 60]),
            "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame",
        ),
        (
            raw_frame(2, 1, &[0, 60, 0, 0, 0]),
            "FRAME_ERROR - type 2, all octets = <<0,60,0,0,0>>: unknown_frame",
        ),
        (
            raw_frame(8, 0, b"\n"),
            "FRAME_ERROR - type 8, all octets = <<\"\\n\">>: unknown_frame",
        ),
    ];
    for (bytes, text) in cases {
        let err = protocol_error(decode_all(bytes, 131_072));
        assert_eq!(err.code, ReplyCode::FrameError);
        assert_eq!(&err.text, text);
    }
}

#[test]
fn heartbeats_round_trip() {
    let mut buf = BytesMut::new();
    encode_heartbeat(&mut buf);
    assert_eq!(&buf[..], &gen_bytes(&AMQPFrame::Heartbeat)[..]);
    assert_eq!(decode_one(&buf).ok(), Some(Frame::Heartbeat(0)));
    // on another channel it still decodes; the connection answers 505
    let other = raw_frame(8, 5, b"");
    assert_eq!(decode_one(&other).ok(), Some(Frame::Heartbeat(5)));
}

#[test]
fn unknown_class_and_unknown_method_are_command_invalid() {
    let err = protocol_error(decode_one(&raw_frame(1, 1, &method_payload(99, 10, &[]))));
    assert_eq!(err.code, ReplyCode::CommandInvalid);
    assert_eq!(
        err.text,
        "COMMAND_INVALID - unknown class id 99 (method id 10)"
    );
    assert_eq!((err.class_id, err.method_id), (99, 10));

    let err = protocol_error(decode_one(&raw_frame(
        1,
        1,
        &method_payload(60, 999, &[0; 8]),
    )));
    assert_eq!(err.code, ReplyCode::CommandInvalid);
    assert_eq!(
        err.text,
        "COMMAND_INVALID - unknown method id 999 in class basic (60)"
    );
    assert_eq!((err.class_id, err.method_id), (60, 999));
}

#[test]
fn malformed_arguments_cannot_be_decoded() {
    // basic.ack one byte short, basic.publish with a trailing byte, basic.nack one too many,
    // queue.declare cut inside its arguments table, channel.close cut short
    let publish = [&[0, 0, 1, b'x', 0, 0][..], &[7]].concat();
    let cases: &[(u16, u16, Vec<u8>, &str)] = &[
        (
            60,
            80,
            vec![0; 8],
            "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,0>>",
        ),
        (
            60,
            40,
            publish,
            "FRAME_ERROR - cannot decode <<0,0,1,120,0,0,7>>",
        ),
        (
            60,
            120,
            vec![1; 10],
            "FRAME_ERROR - cannot decode <<1,1,1,1,1,1,1,1,1,1>>",
        ),
        (60, 90, vec![], "FRAME_ERROR - cannot decode <<>>"),
        (
            50,
            10,
            vec![0, 0, 1, b'q', 0, 0, 0, 0, 9],
            "FRAME_ERROR - cannot decode <<0,0,1,113,0,0,0,0,9>>",
        ),
        (20, 40, vec![1, 2], "FRAME_ERROR - cannot decode <<1,2>>"),
    ];
    for (class_id, method_id, args, text) in cases {
        let bytes = raw_frame(1, 1, &method_payload(*class_id, *method_id, args));
        let err = protocol_error(decode_one(&bytes));
        assert_eq!(err.code, ReplyCode::FrameError, "{text}");
        assert_eq!(&err.text, text);
        assert_eq!((err.class_id, err.method_id), (*class_id, *method_id));
    }
    // long arguments are cut in the text (the close reply-text is a short string anyway)
    let bytes = raw_frame(1, 1, &method_payload(60, 80, &[0; 100]));
    let err = protocol_error(decode_one(&bytes));
    assert!(
        err.text.ends_with(",0...>>") && err.text.len() < 200,
        "{}",
        err.text
    );
}

#[test]
fn non_utf8_publish_strings_are_refused() {
    let args = [0, 0, 1, 0xff, 0, 0];
    let err = protocol_error(decode_one(&raw_frame(1, 1, &method_payload(60, 40, &args))));
    assert_eq!(err.code, ReplyCode::FrameError);
    assert_eq!(err.text, "FRAME_ERROR - Malformed UTF-8 in shortstr");
    assert_eq!((err.class_id, err.method_id), (60, 40));
}

#[test]
fn deeply_nested_method_tables_are_refused_before_amq_protocol_parses_them() {
    // 5 000 arrays nested in one another (5 bytes a level), as the value of key ""
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..5000 {
        let mut array = vec![b'A'];
        array.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        array.extend_from_slice(&inner);
        inner = array;
    }
    let mut args = vec![0, 0, 1, b'q', 0];
    args.extend_from_slice(&(inner.len() as u32 + 1).to_be_bytes());
    args.push(0);
    args.extend_from_slice(&inner);
    let err = protocol_error(decode_one(&raw_frame(1, 1, &method_payload(50, 10, &args))));
    assert_eq!(err.code, ReplyCode::FrameError);
    assert!(
        err.text.contains("nesting exceeds 64 levels"),
        "{}",
        err.text
    );
    assert_eq!((err.class_id, err.method_id), (50, 10));
}

#[test]
fn bad_content_headers_are_refused() {
    let header = |class_id: u16, weight: u16, props: &[u8]| {
        let mut p = class_id.to_be_bytes().to_vec();
        p.extend_from_slice(&weight.to_be_bytes());
        p.extend_from_slice(&5u64.to_be_bytes());
        p.extend_from_slice(props);
        raw_frame(2, 1, &p)
    };
    // truncated, garbage and over-long property lists: 502
    for props in [
        &[0x80u8][..],
        &[0x80, 0, 9, b'a'],
        &[0xff, 0xff, 1, 2, 3],
        &[0, 0, 0],
    ] {
        let err = protocol_error(decode_one(&header(60, 0, props)));
        assert_eq!(err.code, ReplyCode::SyntaxError, "{props:?}");
        assert!(err
            .text
            .starts_with("SYNTAX_ERROR - malformed content header properties: "));
        assert_eq!((err.class_id, err.method_id), (60, 40));
    }
    let err = protocol_error(decode_one(&header(60, 0, &[0x80, 0, 9, b'a'])));
    assert_eq!(
        err.text,
        "SYNTAX_ERROR - malformed content header properties: truncated content-type at offset 3"
    );
    // wrong class or weight: 505
    let err = protocol_error(decode_one(&header(50, 0, &[0, 0])));
    assert_eq!(err.code, ReplyCode::UnexpectedFrame);
    let err = protocol_error(decode_one(&header(60, 1, &[0, 0])));
    assert_eq!(err.code, ReplyCode::UnexpectedFrame);
    assert_eq!(
        err.text,
        "UNEXPECTED_FRAME - content header with non-zero weight 1"
    );
    // and a well-formed one passes
    let ok = decode_one(&header(60, 0, &[0x10, 0, 2]));
    let Ok(Frame::Header(1, h)) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!((h.body_size, h.summary.delivery_mode), (5, 2));
}

#[test]
fn large_bodies_split_at_frame_max_minus_8() {
    let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let props = props_bytes(&AMQPProperties::default().with_delivery_mode(2));
    let mut buf = BytesMut::new();
    encode_content(&mut buf, 1, &props, &body, 131_072);
    let frames = decode_all(&buf, 131_072);
    let Ok(frames) = frames else {
        panic!("{frames:?}")
    };
    assert_eq!(frames.len(), 4);
    let Frame::Header(1, header) = &frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(header.body_size, 300_000);
    let sizes: Vec<usize> = frames[1..]
        .iter()
        .map(|f| match f {
            Frame::Body(1, b) => b.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes, [131_064, 131_064, 37_872]);
    let joined: Vec<u8> = frames[1..]
        .iter()
        .flat_map(|f| match f {
            Frame::Body(_, b) => b.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(joined, body);

    // an empty body is a header and nothing else
    let mut buf = BytesMut::new();
    encode_content(&mut buf, 1, &props, &[], 131_072);
    assert!(matches!(
        decode_all(&buf, 131_072).as_deref(),
        Ok([Frame::Header(..)])
    ));
}

#[test]
fn body_frames_share_the_read_buffer() {
    let bytes = raw_frame(3, 2, b"payload");
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let frame = FrameDecoder::new(131_072).decode(&mut buf);
    let Ok(Some(Frame::Body(2, body))) = frame else {
        panic!("{frame:?}")
    };
    assert_eq!(&body[..], b"payload");
    assert_eq!(body.as_ptr() as usize, start + 7);
}

/// The known-method table and amq-protocol's parser agree on every class and method id:
/// zero-filled arguments are valid for every known method and nothing else parses.
#[test]
fn known_methods_are_exactly_those_amq_protocol_parses() {
    for class_id in 0..=300u16 {
        for method_id in 0..=300u16 {
            let payload = method_payload(class_id, method_id, &[0; 64]);
            let parses = parse_class(&payload[..]).is_ok();
            assert_eq!(
                is_known_method(class_id, method_id),
                parses,
                "class {class_id} method {method_id}"
            );
        }
    }
    for (c, m) in [
        (60, 120),
        (85, 10),
        (85, 11),
        (40, 30),
        (40, 31),
        (40, 40),
        (40, 51),
    ]
    .into_iter()
    .chain([(10, 60), (10, 61), (10, 70), (10, 71), (30, 10), (30, 11)])
    {
        assert!(is_known_method(c, m), "{c}/{m}");
    }
}

#[test]
fn method_encoder_grows_without_panicking_near_the_scratch_end() {
    // Arguments tables whose length prefix lands on every offset around the initial 1 KiB
    // scratch end, where cookie-factory's plain slice writer would panic.
    let mut encoder = MethodEncoder::new();
    for pad in 950..1050 {
        let mut args = FieldTable::default();
        args.insert(
            sstr("x"),
            AMQPValue::LongString(LongString::from(vec![b'a'; 10])),
        );
        let class = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: ShortString::from("q".repeat(pad % 250)),
            arguments: args,
            ..Default::default()
        }));
        let start = AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: {
                let mut t = FieldTable::default();
                t.insert(
                    sstr("product"),
                    AMQPValue::LongString(vec![b'w'; pad].into()),
                );
                t
            },
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        }));
        for class in [class, start] {
            let mut buf = BytesMut::new();
            assert!(encoder.encode(&mut buf, 0, &class).is_ok());
            assert_eq!(&buf[..], &gen_bytes(&AMQPFrame::Method(0, class))[..]);
        }
        encoder = MethodEncoder::new();
    }
}

#[test]
fn short_strings_past_255_bytes_are_cut_not_panicked_on() {
    let long = "k".repeat(300);
    let mut buf = BytesMut::new();
    encode_deliver(&mut buf, 1, &long, 1, false, "", "");
    let frame = decode_one(&buf);
    let Ok(Frame::Method(1, class)) = frame else {
        panic!("{frame:?}")
    };
    let AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) = *class else {
        panic!()
    };
    assert_eq!(d.consumer_tag.as_str(), &long[..255]);
}

#[test]
fn decode_errors_display_and_convert() {
    let e = DecodeError::from(io::Error::other("reset"));
    assert_eq!(e.to_string(), "I/O error: reset");
    let e = DecodeError::from(AmqpError::frame_error("x"));
    assert!(e.to_string().starts_with("protocol error: FRAME_ERROR - x"));
    assert!(std::error::Error::source(&e).is_some());
}
