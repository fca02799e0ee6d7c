//! An outgoing message (where it goes, its body and properties) and the typed JSON
//! helpers: encode a value into a message, decode a delivery's body into a value.

use crate::error::Error;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The content type JSON messages carry.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// Properties other than `headers` and `delivery_mode` (see the fields below).
    pub properties: BasicProperties,
    pub headers: FieldTable,
    /// `Some(true)`: persistent (delivery mode 2); `Some(false)`: transient; `None`: the
    /// publisher decides (persistent unless it declared the target non-durable).
    pub persistent: Option<bool>,
    /// Return the message (an error for the publisher) when no queue gets it.
    pub mandatory: bool,
}

impl Message {
    /// A message to `exchange` with `routing_key`.
    pub fn new(exchange: &str, routing_key: &str, body: impl Into<Vec<u8>>) -> Message {
        Message {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            body: body.into(),
            properties: BasicProperties::default(),
            headers: FieldTable::default(),
            persistent: None,
            mandatory: false,
        }
    }

    /// A message straight to `queue` (through the default exchange).
    pub fn to_queue(queue: &str, body: impl Into<Vec<u8>>) -> Message {
        Message::new("", queue, body)
    }

    /// `value` as JSON, with content type `application/json`.
    pub fn json<T: Serialize + ?Sized>(
        exchange: &str,
        routing_key: &str,
        value: &T,
    ) -> Result<Message, Error> {
        let body = encode_json(value)?;
        let mut message = Message::new(exchange, routing_key, body);
        message.properties = message
            .properties
            .with_content_type(JSON_CONTENT_TYPE.into());
        Ok(message)
    }

    pub fn persistent(mut self) -> Message {
        self.persistent = Some(true);
        self
    }

    pub fn transient(mut self) -> Message {
        self.persistent = Some(false);
        self
    }

    pub fn mandatory(mut self) -> Message {
        self.mandatory = true;
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: &str, value: AMQPValue) -> Message {
        self.headers.insert(key.into(), value);
        self
    }

    /// Adds a string header.
    pub fn header_str(self, key: &str, value: &str) -> Message {
        self.header(key, AMQPValue::LongString(LongString::from(value)))
    }

    /// Message priority (used by priority queues, `x-max-priority`).
    pub fn priority(mut self, priority: u8) -> Message {
        self.properties = self.properties.with_priority(priority);
        self
    }

    /// Replaces the properties (headers and persistence are still taken from the fields).
    pub fn with_properties(mut self, properties: BasicProperties) -> Message {
        self.properties = properties;
        self
    }

    /// The properties to send, given the publisher's default persistence.
    pub(crate) fn wire_properties(&self, persistent_by_default: bool) -> BasicProperties {
        let mut properties = self.properties.clone();
        if self.persistent.unwrap_or(persistent_by_default) {
            properties = properties.with_delivery_mode(2);
        } else {
            properties = properties.with_delivery_mode(1);
        }
        if !self.headers.inner().is_empty() {
            let mut headers = properties.headers().clone().unwrap_or_default();
            for (key, value) in self.headers.inner() {
                headers.insert(key.clone(), value.clone());
            }
            properties = properties.with_headers(headers);
        }
        properties
    }

    /// Where the message goes, for error messages.
    pub fn target(&self) -> String {
        describe_target(&self.exchange, &self.routing_key)
    }
}

/// "queue 'q'", "exchange 'x'" or "exchange 'x' with routing key 'k'".
pub(crate) fn describe_target(exchange: &str, routing_key: &str) -> String {
    match (exchange, routing_key) {
        ("", queue) => format!("queue '{queue}'"),
        (exchange, "") => format!("exchange '{exchange}'"),
        (exchange, key) => format!("exchange '{exchange}' with routing key '{key}'"),
    }
}

/// `value` as JSON bytes.
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|source| Error::Json {
        context: "encoding a message as JSON".into(),
        source,
    })
}

/// A message body decoded from JSON.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|source| Error::Json {
        context: "decoding a JSON message".into(),
        source,
    })
}

/// A header's value as an integer, whichever integer type the publisher used.
pub fn header_u32(headers: Option<&FieldTable>, key: &str) -> Option<u32> {
    let value = headers?.inner().get(key)?;
    let number: i128 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        _ => return None,
    };
    u32::try_from(number).ok()
}

/// A header's value as text (long or short string).
pub fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Transfer {
        id: u32,
        amount_cents: i64,
    }

    #[test]
    fn json_round_trips_and_sets_the_content_type() {
        let transfer = Transfer {
            id: 7,
            amount_cents: 1250,
        };
        let message = Message::json("payments", "transfer.created", &transfer).unwrap();
        assert_eq!(
            message.properties.content_type().as_ref().unwrap().as_str(),
            JSON_CONTENT_TYPE
        );
        assert_eq!(decode_json::<Transfer>(&message.body).unwrap(), transfer);
        let error = decode_json::<Transfer>(b"{\"id\": \"seven\"}").unwrap_err();
        assert!(
            error.to_string().contains("decoding a JSON message"),
            "{error}"
        );
    }

    #[test]
    fn persistence_defaults_to_the_publisher_and_headers_merge() {
        let message = Message::to_queue("jobs", "x").header_str("k", "v");
        assert_eq!(*message.wire_properties(true).delivery_mode(), Some(2));
        assert_eq!(*message.wire_properties(false).delivery_mode(), Some(1));
        let transient = message.clone().transient();
        assert_eq!(*transient.wire_properties(true).delivery_mode(), Some(1));
        let properties = message.wire_properties(true);
        assert_eq!(
            header_str(properties.headers().as_ref(), "k").as_deref(),
            Some("v")
        );
    }

    #[test]
    fn integer_headers_of_any_width_are_read() {
        let mut headers = FieldTable::default();
        headers.insert("a".into(), AMQPValue::LongLongInt(3));
        headers.insert("b".into(), AMQPValue::ShortShortUInt(4));
        headers.insert("c".into(), AMQPValue::LongLongInt(-1));
        assert_eq!(header_u32(Some(&headers), "a"), Some(3));
        assert_eq!(header_u32(Some(&headers), "b"), Some(4));
        assert_eq!(header_u32(Some(&headers), "c"), None);
        assert_eq!(header_u32(Some(&headers), "missing"), None);
        assert_eq!(header_u32(None, "a"), None);
    }
}
