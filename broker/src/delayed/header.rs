//! The `x-delay` header, read and rewritten as the community plugin does
//! (`rabbit_delayed_message_utils.erl`): pure functions over field tables and property bytes.

use crate::message::Message;
use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use std::sync::Arc;

/// The header that asks for a delay, in milliseconds.
pub const DELAY_HEADER: &str = "x-delay";

/// rabbitmq-compat: the plugin delays only for 0 < x-delay <= 2^32 - 1 (Erlang's longest
/// timer, `?ERL_MAX_T`); anything else routes at once.
pub const MAX_DELAY_MS: i64 = u32::MAX as i64;

/// The `x-delay` value as the plugin reads it: any integer type; a string holding a decimal
/// integer; a float, double or decimal truncated toward zero. `None` when absent or of another
/// type.
///
/// rabbitmq-compat: a string that is not an integer makes the plugin's `binary_to_integer`
/// crash the publishing channel; Warren treats it as "no delay" instead.
pub fn delay_value(headers: &FieldTable) -> Option<i64> {
    let value = headers.inner().get(DELAY_HEADER)?;
    if let Some(n) = crate::defs::int_value(value) {
        return Some(n);
    }
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().parse().ok(),
        // `as` saturates (NaN becomes 0, which is "no delay").
        AMQPValue::Float(f) => Some(f.trunc() as i64),
        AMQPValue::Double(f) => Some(f.trunc() as i64),
        AMQPValue::DecimalValue(d) => {
            let scale = 10_i64.checked_pow(u32::from(d.scale))?;
            Some(i64::from(d.value) / scale)
        }
        _ => None,
    }
}

/// How long to hold a message with these headers, if at all (see `MAX_DELAY_MS`).
pub fn delay_ms(headers: Option<&FieldTable>) -> Option<u64> {
    let delay = delay_value(headers?)?;
    if delay > 0 && delay <= MAX_DELAY_MS {
        u64::try_from(delay).ok()
    } else {
        None
    }
}

/// The message as the plugin delivers it once its delay has passed: `x-delay` set to minus
/// the delay (a signed 32-bit integer as the plugin writes it; a 64-bit one for delays past
/// 2^31 ms, which a 32-bit integer cannot hold), so that a delayed exchange further along an
/// exchange-to-exchange path does not delay it again and consumers can tell it was delayed.
/// `None` if the properties cannot be re-encoded (the caller keeps the message unchanged).
pub fn swap_delay_header(message: &Message, delay_ms: u64) -> Option<Arc<Message>> {
    let (_, props): (_, AMQPProperties) = parse_properties(message.properties.as_ref()).ok()?;
    let mut headers = props.headers().clone().unwrap_or_default();
    let negated = i64::try_from(delay_ms).ok()?.checked_neg()?;
    let value = match i32::try_from(negated) {
        Ok(small) => AMQPValue::LongInt(small),
        Err(_) => AMQPValue::LongLongInt(negated),
    };
    headers.insert(DELAY_HEADER.into(), value);
    let props = props.with_headers(headers);
    let written = gen_properties(&props)(WriteContext::from(Vec::new())).ok()?;
    let properties = Bytes::from(written.write);
    let summary = crate::connection::properties::walk_basic_properties(&properties).ok()?;
    Some(Arc::new(Message {
        exchange: message.exchange.clone(),
        routing_key: message.routing_key.clone(),
        properties,
        summary,
        body: message.body.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::frame::ShortStr;
    use amq_protocol::types::{DecimalValue, LongString, ShortString};

    fn headers(v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(DELAY_HEADER.into(), v);
        t
    }

    #[test]
    fn integers_of_every_width_strings_and_floats_are_delays() {
        for (value, expected) in [
            (AMQPValue::ShortShortInt(5), Some(5)),
            (AMQPValue::ShortShortUInt(200), Some(200)),
            (AMQPValue::ShortInt(-3), Some(-3)),
            (AMQPValue::ShortUInt(60_000), Some(60_000)),
            (AMQPValue::LongInt(1500), Some(1500)),
            (AMQPValue::LongUInt(4_000_000_000), Some(4_000_000_000)),
            (AMQPValue::LongLongInt(-1), Some(-1)),
            (AMQPValue::LongString(LongString::from("250")), Some(250)),
            (AMQPValue::ShortString(ShortString::from("7")), Some(7)),
            (AMQPValue::LongString(LongString::from("soon")), None),
            (AMQPValue::Double(99.9), Some(99)),
            (AMQPValue::Float(-0.5), Some(0)),
            (
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 12345,
                }),
                Some(123),
            ),
            (AMQPValue::Boolean(true), None),
        ] {
            assert_eq!(delay_value(&headers(value.clone())), expected, "{value:?}");
        }
    }

    #[test]
    fn only_positive_delays_up_to_the_erlang_timer_limit_hold_a_message() {
        assert_eq!(delay_ms(None), None);
        assert_eq!(delay_ms(Some(&FieldTable::default())), None);
        assert_eq!(delay_ms(Some(&headers(AMQPValue::LongInt(0)))), None);
        assert_eq!(delay_ms(Some(&headers(AMQPValue::LongInt(-10)))), None);
        assert_eq!(delay_ms(Some(&headers(AMQPValue::LongInt(1)))), Some(1));
        let max = AMQPValue::LongLongInt(MAX_DELAY_MS);
        assert_eq!(delay_ms(Some(&headers(max))), Some(u64::from(u32::MAX)));
        let past = AMQPValue::LongLongInt(MAX_DELAY_MS + 1);
        assert_eq!(delay_ms(Some(&headers(past))), None);
    }

    #[test]
    fn delivered_messages_carry_the_negated_delay() {
        let mut h = headers(AMQPValue::LongString(LongString::from("1500")));
        h.insert("other".into(), AMQPValue::LongInt(1));
        let props = AMQPProperties::default()
            .with_headers(h)
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("text/plain"));
        let written = gen_properties(&props)(WriteContext::from(Vec::new())).unwrap();
        let properties = Bytes::from(written.write);
        let message = Message {
            exchange: ShortStr::from_string("x".to_string()).unwrap(),
            routing_key: ShortStr::from_string("k".to_string()).unwrap(),
            summary: crate::connection::properties::walk_basic_properties(&properties).unwrap(),
            properties,
            body: Bytes::from_static(b"body"),
        };
        let swapped = swap_delay_header(&message, 1500).unwrap();
        let got = swapped.headers().unwrap();
        assert_eq!(
            got.inner().get(DELAY_HEADER),
            Some(&AMQPValue::LongInt(-1500))
        );
        assert_eq!(got.inner().get("other"), Some(&AMQPValue::LongInt(1)));
        assert!(swapped.persistent());
        assert_eq!(swapped.body, message.body);
        assert_eq!(swapped.routing_key.as_str(), "k");

        let long = swap_delay_header(&message, u64::from(u32::MAX)).unwrap();
        assert_eq!(
            long.headers().unwrap().inner().get(DELAY_HEADER),
            Some(&AMQPValue::LongLongInt(-i64::from(u32::MAX)))
        );
    }
}
