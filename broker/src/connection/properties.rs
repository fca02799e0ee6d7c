//! Allocation-free validation walks over AMQP field tables and the basic-class property list,
//! used by the codec (`codec.rs`) on every inbound content header and before amq-protocol
//! parses any method that carries a table.
//!
//! The walks accept exactly what amq-protocol 10.6's parsers accept (same type tags, UTF-8 keys
//! and short strings, tables and arrays consumed to their last byte), minus two things: nesting
//! deeper than [`MAX_TABLE_DEPTH`], and property flags with the continuation or reserved bits
//! set. So whatever passes here also passes `basic::parse_properties` / `parse_class`.

use crate::connection::frame::{PropertySummary, ShortStr};
use bytes::Bytes;
use std::fmt;
use std::ops::Range;

/// Deepest nesting of field tables and arrays accepted. amq-protocol parses tables by recursion,
/// and a 35 kB frame holding 5 000 nested tables overflows a 2 MiB tokio worker stack, which
/// aborts the whole process; real clients nest at most 3 or 4 levels (`x-death`).
pub const MAX_TABLE_DEPTH: usize = 64;

/// Why a walk failed, and where (offset from the start of the walked bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkError {
    pub reason: &'static str,
    pub offset: usize,
}

impl WalkError {
    /// True when the only problem is nesting past [`MAX_TABLE_DEPTH`].
    pub fn is_too_deep(&self) -> bool {
        self.reason == TOO_DEEP
    }
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for WalkError {}

// Spelled out because consts cannot be formatted into a &str; keep in step with MAX_TABLE_DEPTH.
const TOO_DEEP: &str = "field table nesting exceeds 64 levels";

/// A read position inside `buf`, bounded by `end` (which shrinks while inside a table or array
/// so offsets in errors stay relative to the whole buffer).
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    /// A top-level key of a walked table was `CC` or `BCC`.
    saw_cc_or_bcc: bool,
}

impl<'a> Walker<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Walker {
            buf,
            pos: 0,
            end: buf.len(),
            saw_cc_or_bcc: false,
        }
    }

    fn fail(&self, reason: &'static str) -> WalkError {
        WalkError {
            reason,
            offset: self.pos,
        }
    }

    /// Advances over `n` bytes and returns their range.
    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>, WalkError> {
        match self.pos.checked_add(n) {
            Some(next) if next <= self.end => {
                let range = self.pos..next;
                self.pos = next;
                Ok(range)
            }
            _ => Err(self.fail(what)),
        }
    }

    fn octet(&mut self, what: &'static str) -> Result<u8, WalkError> {
        let range = self.take(1, what)?;
        Ok(self.buf[range.start])
    }

    fn long(&mut self, what: &'static str) -> Result<u32, WalkError> {
        let r = self.take(4, what)?;
        let b = &self.buf[r];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A short string that must be UTF-8 (amq-protocol rejects anything else); returns the
    /// range of its content.
    fn short_str(&mut self, what: &'static str) -> Result<Range<usize>, WalkError> {
        let len = self.octet(what)?;
        let start = self.pos;
        let range = self.take(usize::from(len), what)?;
        if std::str::from_utf8(&self.buf[range.clone()]).is_err() {
            return Err(WalkError {
                reason: "short string is not valid UTF-8",
                offset: start,
            });
        }
        Ok(range)
    }

    /// A 32-bit length followed by that many bytes (long string, byte array).
    fn long_bytes(&mut self, what: &'static str) -> Result<(), WalkError> {
        let len = self.long(what)?;
        self.take(len as usize, what).map(|_| ())
    }

    /// Runs `body` with the bound narrowed to the next `len`-prefixed section and requires it
    /// to consume that section exactly.
    fn section(
        &mut self,
        what: &'static str,
        body: impl FnOnce(&mut Self) -> Result<(), WalkError>,
    ) -> Result<(), WalkError> {
        let len = self.long(what)?;
        let inner = self.take(len as usize, what)?;
        let outer_end = self.end;
        self.pos = inner.start;
        self.end = inner.end;
        body(self)?;
        self.end = outer_end;
        Ok(())
    }

    /// A field table with its 32-bit length. `depth` counts the tables and arrays around it.
    fn table(&mut self, depth: usize) -> Result<(), WalkError> {
        if depth >= MAX_TABLE_DEPTH {
            return Err(self.fail(TOO_DEEP));
        }
        self.section("truncated field table", |w| {
            while w.pos < w.end {
                let key = w.short_str("truncated field table key")?;
                if depth == 0 && matches!(w.buf.get(key), Some(b"CC" | b"BCC")) {
                    w.saw_cc_or_bcc = true;
                }
                w.value(depth + 1)?;
            }
            Ok(())
        })
    }

    fn array(&mut self, depth: usize) -> Result<(), WalkError> {
        if depth >= MAX_TABLE_DEPTH {
            return Err(self.fail(TOO_DEEP));
        }
        self.section("truncated field array", |w| {
            while w.pos < w.end {
                w.value(depth + 1)?;
            }
            Ok(())
        })
    }

    /// One tagged field value. The tags and widths are amq-protocol's, which follow RabbitMQ's
    /// reading of the 0-9-1 errata: 's' is a signed short (not a short string), 'l' and 'L' are
    /// both 64-bit, 'x' is a byte array, 'V' is void. amq-protocol also takes 'U' as a signed
    /// short; RabbitMQ would not, but nothing here forbids it.
    fn value(&mut self, depth: usize) -> Result<(), WalkError> {
        const TRUNCATED: &str = "truncated field value";
        let tag_at = self.pos;
        let tag = self.octet(TRUNCATED)?;
        let width = match tag {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'S' | b'x' => return self.long_bytes(TRUNCATED),
            b'A' => return self.array(depth),
            b'F' => return self.table(depth),
            _ => {
                return Err(WalkError {
                    reason: "unknown field value type",
                    offset: tag_at,
                })
            }
        };
        self.take(width, TRUNCATED).map(|_| ())
    }
}

/// Checks a field table (with its length prefix) that fills `buf` exactly.
pub fn walk_field_table(buf: &[u8]) -> Result<(), WalkError> {
    let mut w = Walker::new(buf);
    w.table(0)?;
    if w.pos != buf.len() {
        return Err(w.fail("bytes after field table"));
    }
    Ok(())
}

/// What precedes the field table in a method's arguments.
#[derive(Clone, Copy)]
enum Arg {
    Fixed(usize),
    ShortStr,
}

/// The arguments before the first field table of every method that has one (spec XML plus
/// RabbitMQ's exchange.bind/unbind), or `None` for methods without tables.
fn args_before_table(class_id: u16, method_id: u16) -> Option<&'static [Arg]> {
    use Arg::{Fixed, ShortStr as S};
    Some(match (class_id, method_id) {
        // connection.start: version-major, version-minor, server-properties
        (10, 10) => &[Fixed(2)],
        // connection.start-ok: client-properties first
        (10, 11) => &[],
        // exchange.declare: ticket, exchange, type, 5 bits, arguments
        (40, 10) => &[Fixed(2), S, S, Fixed(1)],
        // exchange.bind / unbind: ticket, destination, source, routing-key, nowait, arguments
        (40, 30) | (40, 40) => &[Fixed(2), S, S, S, Fixed(1)],
        // queue.declare: ticket, queue, 5 bits, arguments
        (50, 10) => &[Fixed(2), S, Fixed(1)],
        // queue.bind: ticket, queue, exchange, routing-key, nowait, arguments
        (50, 20) => &[Fixed(2), S, S, S, Fixed(1)],
        // queue.unbind has no nowait bit
        (50, 50) => &[Fixed(2), S, S, S],
        // basic.consume: ticket, queue, consumer-tag, 4 bits, arguments
        (60, 20) => &[Fixed(2), S, S, Fixed(1)],
        _ => return None,
    })
}

/// Walks the field table inside a method's arguments (the payload after class and method id)
/// so that deep nesting is refused before amq-protocol's recursive parser sees it. Methods
/// without a table pass untouched; everything past the table is left to amq-protocol.
pub fn check_method_table(class_id: u16, method_id: u16, args: &[u8]) -> Result<(), WalkError> {
    let Some(before) = args_before_table(class_id, method_id) else {
        return Ok(());
    };
    let mut w = Walker::new(args);
    for arg in before {
        match arg {
            Arg::Fixed(n) => {
                w.take(*n, "truncated method arguments")?;
            }
            Arg::ShortStr => {
                let len = w.octet("truncated method arguments")?;
                w.take(usize::from(len), "truncated method arguments")?;
            }
        }
    }
    w.table(0)
}

/// Walks a basic-class property list (flags word, then the present properties in order),
/// validating its structure and picking out what the broker routes on. `props` must be exactly
/// the property bytes of a content header; strings in the summary share its buffer.
pub fn walk_basic_properties(props: &Bytes) -> Result<PropertySummary, WalkError> {
    let mut w = Walker::new(props);
    let flags_range = w.take(2, "missing property flags")?;
    let flags = u16::from_be_bytes([props[flags_range.start], props[flags_range.start + 1]]);
    // Bit 0 would announce a second flags word, which the 14 basic properties never need;
    // bit 1 names no property. RabbitMQ ignores both, but honouring bit 0 is impossible and a
    // publisher setting either is broken.
    if flags & 0b11 != 0 {
        return Err(WalkError {
            reason: "reserved property flag bits set",
            offset: 0,
        });
    }
    let present = |bit: u16| flags & (1 << bit) != 0;
    let mut summary = PropertySummary::default();

    if present(15) {
        w.short_str("truncated content-type")?;
    }
    if present(14) {
        w.short_str("truncated content-encoding")?;
    }
    if present(13) {
        w.table(0)?;
        summary.has_headers = true;
        summary.has_cc_or_bcc = w.saw_cc_or_bcc;
    }
    if present(12) {
        summary.delivery_mode = w.octet("truncated delivery-mode")?;
    }
    if present(11) {
        summary.priority = Some(w.octet("truncated priority")?);
    }
    if present(10) {
        w.short_str("truncated correlation-id")?;
    }
    if present(9) {
        w.short_str("truncated reply-to")?;
    }
    if present(8) {
        let range = w.short_str("truncated expiration")?;
        summary.expiration = Some(shared_str(props, range)?);
    }
    if present(7) {
        w.short_str("truncated message-id")?;
    }
    if present(6) {
        w.take(8, "truncated timestamp")?;
    }
    if present(5) {
        w.short_str("truncated type")?;
    }
    if present(4) {
        let range = w.short_str("truncated user-id")?;
        summary.user_id = Some(shared_str(props, range)?);
    }
    if present(3) {
        w.short_str("truncated app-id")?;
    }
    if present(2) {
        w.short_str("truncated cluster-id")?;
    }
    if w.pos != props.len() {
        return Err(w.fail("bytes after the last property"));
    }
    Ok(summary)
}

/// Where the `reply-to` property's text sits in a property list already validated by
/// [`walk_basic_properties`], or `None` when it is absent. Only publishes that set reply-to
/// pay for this walk (direct reply-to looks for `amq.rabbitmq.reply-to`).
pub fn reply_to_range(props: &[u8]) -> Option<Range<usize>> {
    let flags = u16::from_be_bytes([*props.first()?, *props.get(1)?]);
    let present = |bit: u16| flags & (1 << bit) != 0;
    if !present(9) {
        return None;
    }
    let mut w = Walker::new(props);
    w.take(2, "").ok()?;
    if present(15) {
        w.short_str("").ok()?;
    }
    if present(14) {
        w.short_str("").ok()?;
    }
    if present(13) {
        w.table(0).ok()?;
    }
    if present(12) {
        w.octet("").ok()?;
    }
    if present(11) {
        w.octet("").ok()?;
    }
    if present(10) {
        w.short_str("").ok()?;
    }
    w.short_str("").ok()
}

/// A `ShortStr` sharing `props`' buffer; the walker already checked length and UTF-8, so the
/// error branch is unreachable but keeps the codec panic-free.
fn shared_str(props: &Bytes, range: Range<usize>) -> Result<ShortStr, WalkError> {
    let offset = range.start;
    ShortStr::from_bytes(props.slice(range)).ok_or(WalkError {
        reason: "short string is not valid UTF-8",
        offset,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use amq_protocol::frame::{GenError, WriteContext};
    use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
    use amq_protocol::types::generation::gen_field_table;
    use amq_protocol::types::parsing::parse_field_table;
    use amq_protocol::types::{
        AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
    };
    use proptest::prelude::*;

    fn gen_to_vec<F>(f: F) -> Vec<u8>
    where
        F: Fn(WriteContext<Vec<u8>>) -> Result<WriteContext<Vec<u8>>, GenError>,
    {
        match f(WriteContext::from(Vec::new())) {
            Ok(ctx) => ctx.write,
            Err(e) => panic!("generation failed: {e}"),
        }
    }

    fn props_bytes(p: &AMQPProperties) -> Vec<u8> {
        gen_to_vec(gen_properties(p))
    }

    fn table_bytes(t: &FieldTable) -> Vec<u8> {
        gen_to_vec(gen_field_table(t))
    }

    pub(crate) fn short_string() -> impl Strategy<Value = ShortString> {
        prop_oneof![
            8 => "\\PC{0,40}",
            1 => "[a-z]{255}",
            1 => Just(String::new()),
        ]
        .prop_map(|s| {
            let mut s: String = s;
            while s.len() > 255 {
                s.pop();
            }
            ShortString::from(s)
        })
    }

    pub(crate) fn field_value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<u16>().prop_map(AMQPValue::ShortUInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|v| AMQPValue::LongString(LongString::from(v))),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|v| AMQPValue::ByteArray(ByteArray::from(v))),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v))),
                proptest::collection::btree_map(short_string(), inner, 0..6).prop_map(|m| {
                    let mut t = FieldTable::default();
                    for (k, v) in m {
                        t.insert(k, v);
                    }
                    AMQPValue::FieldTable(t)
                }),
            ]
        })
    }

    pub(crate) fn field_table() -> impl Strategy<Value = FieldTable> {
        proptest::collection::btree_map(short_string(), field_value(), 0..6).prop_map(|m| {
            let mut t = FieldTable::default();
            for (k, v) in m {
                t.insert(k, v);
            }
            t
        })
    }

    pub(crate) fn basic_properties() -> impl Strategy<Value = AMQPProperties> {
        let strings = proptest::collection::vec(proptest::option::of(short_string()), 11);
        (
            strings,
            proptest::option::of(field_table()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(s, headers, dm, prio, ts)| {
                let mut p = AMQPProperties::default();
                let mut s = s.into_iter();
                let mut next = || s.next().flatten();
                if let Some(v) = next() {
                    p = p.with_content_type(v);
                }
                if let Some(v) = next() {
                    p = p.with_content_encoding(v);
                }
                if let Some(v) = headers {
                    p = p.with_headers(v);
                }
                if let Some(v) = dm {
                    p = p.with_delivery_mode(v);
                }
                if let Some(v) = prio {
                    p = p.with_priority(v);
                }
                if let Some(v) = next() {
                    p = p.with_correlation_id(v);
                }
                if let Some(v) = next() {
                    p = p.with_reply_to(v);
                }
                if let Some(v) = next() {
                    p = p.with_expiration(v);
                }
                if let Some(v) = next() {
                    p = p.with_message_id(v);
                }
                if let Some(v) = ts {
                    p = p.with_timestamp(v);
                }
                if let Some(v) = next() {
                    p = p.with_type(v);
                }
                if let Some(v) = next() {
                    p = p.with_user_id(v);
                }
                if let Some(v) = next() {
                    p = p.with_app_id(v);
                }
                if let Some(v) = next() {
                    p = p.with_cluster_id(v);
                }
                p
            })
    }

    /// amq-protocol's verdict on a property list: parsed and fully consumed.
    fn amq_parses(bytes: &[u8]) -> Option<AMQPProperties> {
        match parse_properties(bytes) {
            Ok(([], p)) => Some(p),
            _ => None,
        }
    }

    fn summary_of(p: &AMQPProperties) -> PropertySummary {
        let s = |v: &Option<ShortString>| {
            v.as_ref()
                .and_then(|s| ShortStr::from_string(s.as_str().to_owned()))
        };
        PropertySummary {
            delivery_mode: p.delivery_mode().unwrap_or(0),
            priority: *p.priority(),
            expiration: s(p.expiration()),
            user_id: s(p.user_id()),
            has_headers: p.headers().is_some(),
            has_cc_or_bcc: p
                .headers()
                .as_ref()
                .is_some_and(|h| h.inner().contains_key("CC") || h.inner().contains_key("BCC")),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn walk_accepts_generated_properties_and_agrees_on_summary(p in basic_properties()) {
            let bytes = Bytes::from(props_bytes(&p));
            let summary = walk_basic_properties(&bytes);
            prop_assert!(summary.is_ok(), "{:?}", summary);
            let parsed = amq_parses(&bytes);
            prop_assert!(parsed.is_some());
            if let (Ok(summary), Some(parsed)) = (summary, parsed) {
                prop_assert_eq!(summary, summary_of(&parsed));
            }
        }

        #[test]
        fn reply_to_range_finds_the_reply_to_property(p in basic_properties()) {
            let bytes = props_bytes(&p);
            let found = reply_to_range(&bytes).map(|r| &bytes[r]);
            let expected = p.reply_to().as_ref().map(|s| s.as_str().as_bytes());
            prop_assert_eq!(found, expected);
        }

        /// Whatever the walk accepts after a byte flip or truncation, amq-protocol accepts too.
        #[test]
        fn walk_accepts_only_what_amq_protocol_parses(
            p in basic_properties(),
            flip in any::<(usize, u8)>(),
            cut in any::<usize>(),
            mode in 0u8..3,
        ) {
            let mut bytes = props_bytes(&p);
            match mode {
                0 => { let i = flip.0 % bytes.len(); bytes[i] ^= flip.1.max(1); }
                1 => { bytes.truncate(cut % bytes.len()); }
                _ => { bytes.push(flip.1); }
            }
            let bytes = Bytes::from(bytes);
            if let Ok(summary) = walk_basic_properties(&bytes) {
                let parsed = amq_parses(&bytes);
                prop_assert!(parsed.is_some());
                if let Some(parsed) = parsed {
                    prop_assert_eq!(summary, summary_of(&parsed));
                }
            }
        }

        #[test]
        fn walk_on_garbage_never_accepts_what_amq_protocol_rejects(
            bytes in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let bytes = Bytes::from(bytes);
            if walk_basic_properties(&bytes).is_ok() {
                prop_assert!(amq_parses(&bytes).is_some());
            }
        }

        #[test]
        fn table_walk_matches_amq_protocol(t in field_table(), flip in any::<(usize, u8)>()) {
            let mut bytes = table_bytes(&t);
            prop_assert_eq!(walk_field_table(&bytes), Ok(()));
            let i = flip.0 % bytes.len();
            bytes[i] ^= flip.1.max(1);
            if walk_field_table(&bytes).is_ok() {
                let parsed = parse_field_table(&bytes[..]);
                prop_assert!(matches!(parsed, Ok((rest, _)) if rest.is_empty()));
            }
        }
    }

    fn nested_tables(depth: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..depth {
            let mut t = vec![1, b'k', b'F'];
            t.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            t.extend_from_slice(&inner);
            inner = t;
        }
        let mut table = (inner.len() as u32).to_be_bytes().to_vec();
        table.extend_from_slice(&inner);
        table
    }

    #[test]
    fn nesting_is_capped_and_the_cap_is_safe_for_amq_protocol() {
        // the outer table is level 0, so MAX_TABLE_DEPTH - 1 nested tables is the most allowed
        let ok = nested_tables(MAX_TABLE_DEPTH - 1);
        assert_eq!(walk_field_table(&ok), Ok(()));
        let deep = nested_tables(MAX_TABLE_DEPTH);
        assert!(walk_field_table(&deep).is_err_and(|e| e.is_too_deep()));
        // amq-protocol must survive the deepest accepted table on a 2 MiB stack even unoptimised
        let parsed = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse_field_table(&ok[..]).is_ok())
            .map(|h| h.join());
        assert!(matches!(parsed, Ok(Ok(true))));
    }

    #[test]
    fn malformed_property_lists_are_rejected() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "missing property flags"),
            (&[0x80], "missing property flags"),
            (&[0x00, 0x01], "reserved property flag bits set"),
            (&[0x00, 0x02], "reserved property flag bits set"),
            (&[0x80, 0x00], "truncated content-type"),
            (&[0x80, 0x00, 3, b'a'], "truncated content-type"),
            (&[0x80, 0x00, 1, 0xff], "short string is not valid UTF-8"),
            (&[0x20, 0x00, 0, 0, 0, 5, 0], "truncated field table"),
            (
                &[0x20, 0x00, 0, 0, 0, 3, 1, b'k', b'Q'],
                "unknown field value type",
            ),
            (
                &[0x20, 0x00, 0, 0, 0, 4, 1, b'k', b'I', 0],
                "truncated field value",
            ),
            (&[0x10, 0x00], "truncated delivery-mode"),
            (&[0x00, 0x40, 1, 2, 3], "truncated timestamp"),
            (&[0x10, 0x00, 2, 9], "bytes after the last property"),
            (&[0x00, 0x00, 0], "bytes after the last property"),
        ];
        for (bytes, reason) in cases {
            let bytes = Bytes::copy_from_slice(bytes);
            let err = walk_basic_properties(&bytes);
            assert!(
                matches!(err, Err(e) if e.reason == *reason),
                "{bytes:?}: expected {reason}, got {err:?}"
            );
        }
    }

    #[test]
    fn summary_shares_the_property_buffer() {
        let p = AMQPProperties::default()
            .with_delivery_mode(2)
            .with_expiration(ShortString::from("60000"))
            .with_user_id(ShortString::from("guest"));
        let bytes = Bytes::from(props_bytes(&p));
        let summary = walk_basic_properties(&bytes);
        let Ok(summary) = summary else {
            panic!("walk failed: {summary:?}");
        };
        assert_eq!(summary.delivery_mode, 2);
        let exp = summary.expiration.as_ref().map(|s| s.as_bytes().as_ptr());
        let range = bytes.as_ptr_range();
        assert!(exp.is_some_and(|p| range.contains(&p)));
        assert_eq!(
            summary.user_id.as_ref().map(ShortStr::as_str),
            Some("guest")
        );
    }

    #[test]
    fn method_tables_are_located_for_every_table_bearing_method() {
        let deep = nested_tables(MAX_TABLE_DEPTH);
        let shallow = nested_tables(2);
        // queue.declare: ticket, queue "q", bits, arguments
        let declare = |t: &[u8]| [&[0, 0, 1, b'q', 0][..], t].concat();
        assert_eq!(check_method_table(50, 10, &declare(&shallow)), Ok(()));
        assert!(check_method_table(50, 10, &declare(&deep)).is_err_and(|e| e.is_too_deep()));
        // queue.unbind has no bits octet between routing-key and arguments
        let unbind = |t: &[u8]| [&[0, 0, 1, b'q', 1, b'x', 0][..], t].concat();
        assert!(check_method_table(50, 50, &unbind(&deep)).is_err_and(|e| e.is_too_deep()));
        // connection.start-ok starts with the table
        assert!(check_method_table(10, 11, &deep).is_err_and(|e| e.is_too_deep()));
        // methods without tables are not inspected
        assert_eq!(check_method_table(60, 80, &[]), Ok(()));
    }
}
