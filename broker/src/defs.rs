//! The broker's topology in RabbitMQ's definitions format (`warren-definitions`): AMQP field
//! tables to and from JSON arguments, and a vhost's durable exchanges, queues and bindings as
//! definitions objects. The metadata store persists exactly this. Also the two readings of a
//! field value that arguments and headers need everywhere: as an integer, as a string.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use serde_json::{Number, Value};
use warren_definitions::JsonMap;

/// An AMQP table as JSON, the way RabbitMQ exports arguments: numbers, strings, booleans,
/// arrays and nested objects. Types JSON cannot tell apart (integer widths, short vs long
/// strings) collapse; equivalence checks compare by value, so that is harmless.
pub fn table_to_json(table: &FieldTable) -> JsonMap {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let scaled = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(scaled).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(table_to_json(t)),
        AMQPValue::Void => Value::Null,
    }
}

/// A table in the form it takes after a trip through the definitions document (integers as
/// 64-bit, strings as long strings, floats as doubles). Binding arguments are kept in this
/// form, so a binding is the same binding before and after a restart: unbinding with a
/// 32-bit integer finds a binding restored with a 64-bit one.
pub fn normalize_table(table: &FieldTable) -> FieldTable {
    json_to_table(&table_to_json(table))
}

/// JSON arguments as an AMQP table: integers become signed 64-bit (`l`), other numbers
/// doubles, strings long strings, null void — what RabbitMQ's import produces.
pub fn json_to_table(map: &JsonMap) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in map {
        if let Some(key) = crate::connection::outbound::short_checked(k) {
            table.insert(key, json_to_value(v));
        }
    }
    table
}

fn json_to_value(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => AMQPValue::Void,
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => {
            let mut array = FieldArray::default();
            for item in items {
                array.push(json_to_value(item));
            }
            AMQPValue::FieldArray(array)
        }
        Value::Object(map) => AMQPValue::FieldTable(json_to_table(map)),
    }
}

/// An integer field value of any width (None for other types).
pub fn int_value(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    })
}

/// A string field value, long or short (None for other types).
pub fn str_value(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The string value of `key` in `table`, as RabbitMQ's `r_arg` reads names.
pub fn str_field(table: &FieldTable, key: &str) -> Option<String> {
    str_value(table.inner().get(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_through_json_by_value() {
        let mut nested = FieldTable::default();
        nested.insert("deep".into(), AMQPValue::Boolean(true));
        let mut t = FieldTable::default();
        t.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("dlx".into()),
        );
        t.insert("ratio".into(), AMQPValue::Double(0.5));
        t.insert("nested".into(), AMQPValue::FieldTable(nested));
        t.insert("none".into(), AMQPValue::Void);
        let json = table_to_json(&t);
        assert_eq!(json["x-max-length"], Value::from(10));
        assert_eq!(json_to_table(&json), t);
        // Narrow integers come back as 64-bit ones with the same value.
        let mut narrow = FieldTable::default();
        narrow.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
        let back = json_to_table(&table_to_json(&narrow));
        assert_eq!(
            back.inner().get("x-max-priority"),
            Some(&AMQPValue::LongLongInt(5))
        );
    }
}
