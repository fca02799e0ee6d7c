//! A published message as queues hold it: routing info, the publisher's raw property bytes and
//! the body, all shared (`Arc<Message>`, `Bytes`) so a message routed to ten queues is stored once.

use crate::connection::frame::{PropertySummary, ShortStr};
use bytes::Bytes;

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    /// Property flags and list exactly as published: deliveries write them back unchanged.
    pub properties: Bytes,
    pub summary: PropertySummary,
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        self.summary.delivery_mode == 2
    }

    /// The message as the store appends it (borrowed: no copy until the write buffer).
    pub fn as_stored(&self) -> crate::store::MessageRef<'_> {
        crate::store::MessageRef {
            exchange: self.exchange.as_str(),
            routing_key: self.routing_key.as_str(),
            properties: &self.properties,
            body: &self.body,
        }
    }
}

impl Message {
    /// The `headers` property, parsed from the raw property bytes (only a headers exchange
    /// needs it, so it is not parsed on the common path).
    pub fn headers(&self) -> Option<amq_protocol::types::FieldTable> {
        let (_, props) =
            amq_protocol::protocol::basic::parse_properties(self.properties.as_ref()).ok()?;
        props.headers().clone()
    }
}

/// Encodes `props` as a content header's property flags and list, with the summary the
/// broker keeps of them. None if they cannot be encoded (they were parsed from a valid
/// header, so this does not happen).
pub fn encode_properties(
    props: &amq_protocol::protocol::basic::AMQPProperties,
) -> Option<(Bytes, PropertySummary)> {
    let ctx = amq_protocol::protocol::basic::gen_properties(props)(
        amq_protocol::frame::WriteContext::from(Vec::new()),
    )
    .ok()?;
    let bytes = Bytes::from(ctx.write);
    let summary = crate::connection::properties::walk_basic_properties(&bytes).ok()?;
    Some((bytes, summary))
}
