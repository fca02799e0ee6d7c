//! Field values printed the way RabbitMQ's error texts show them: the type names of
//! `rabbit_binary_parser.erl` and Erlang's `~tp` rendering of the decoded value. Used by the
//! headers exchange for its `x-match` errors; any other "invalid argument" text can reuse it.

use std::fmt;

use amq_protocol::types::AMQPValue;

/// RabbitMQ's name for a field type (`rabbit_binary_parser.erl`), e.g. `signedint`.
pub(crate) fn rabbit_type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        // amq-protocol's in-process short string goes on the wire as a longstr
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// A field value as Erlang's `~tp` prints RabbitMQ's decoded form of it: `<<"bogus">>`, `1`,
/// `true`, `1.5`, `{2,314}` (decimal), `undefined` (void), `[{<<"k">>,long,1}]` (table).
pub(crate) struct ErlTerm<'a>(pub(crate) &'a AMQPValue);

impl fmt::Display for ErlTerm<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AMQPValue::Boolean(b) => write!(f, "{b}"),
            AMQPValue::ShortShortInt(i) => write!(f, "{i}"),
            AMQPValue::ShortShortUInt(i) => write!(f, "{i}"),
            AMQPValue::ShortInt(i) => write!(f, "{i}"),
            AMQPValue::ShortUInt(i) => write!(f, "{i}"),
            AMQPValue::LongInt(i) => write!(f, "{i}"),
            AMQPValue::LongUInt(i) => write!(f, "{i}"),
            AMQPValue::LongLongInt(i) => write!(f, "{i}"),
            AMQPValue::Timestamp(t) => write!(f, "{t}"),
            // Erlang decodes a 32-bit float into a double, and prints that
            AMQPValue::Float(x) => fmt_float(f, f64::from(*x)),
            AMQPValue::Double(x) => fmt_float(f, *x),
            AMQPValue::DecimalValue(d) => write!(f, "{{{},{}}}", d.scale, d.value),
            AMQPValue::ShortString(s) => ErlBinary(s.as_str().as_bytes()).fmt(f),
            AMQPValue::LongString(s) => ErlBinary(s.as_bytes()).fmt(f),
            AMQPValue::ByteArray(b) => ErlBinary(b.as_slice()).fmt(f),
            AMQPValue::Void => f.write_str("undefined"),
            AMQPValue::FieldTable(t) => {
                f.write_str("[")?;
                for (i, (k, v)) in t.inner().iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let key = ErlBinary(k.as_str().as_bytes());
                    write!(f, "{sep}{{{key},{},{}}}", rabbit_type_name(v), ErlTerm(v))?;
                }
                f.write_str("]")
            }
            AMQPValue::FieldArray(a) => {
                f.write_str("[")?;
                for (i, v) in a.as_slice().iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{{{},{}}}", rabbit_type_name(v), ErlTerm(v))?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Erlang always prints a float with a fractional part (`1.0`, `1.0e20`); Rust's `{:?}` is
/// the same shortest round-trip form except that it drops `.0` before an exponent.
fn fmt_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    let s = format!("{x:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) if !mantissa.contains('.') => write!(f, "{mantissa}.0e{exp}"),
        _ => f.write_str(&s),
    }
}

/// An Erlang binary as `~tp` shows it: `<<"text">>`, `<<"tëxt"/utf8>>`, `<<>>`, or
/// `<<0,255>>` when it is not printable text. (Erlang's exact printability rules depend on
/// the node's printable range; this follows the default closely enough for error texts.)
pub(super) struct ErlBinary<'a>(pub(super) &'a [u8]);

impl fmt::Display for ErlBinary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<<>>");
        }
        let text = std::str::from_utf8(self.0)
            .ok()
            .filter(|s| s.chars().all(|c| escape(c).is_some() || !c.is_control()));
        match text {
            Some(text) => {
                f.write_str("<<\"")?;
                for c in text.chars() {
                    match escape(c) {
                        Some(esc) => f.write_str(esc)?,
                        None => write!(f, "{c}")?,
                    }
                }
                let suffix = if text.is_ascii() { "" } else { "/utf8" };
                write!(f, "\"{suffix}>>")
            }
            None => {
                f.write_str("<<")?;
                for (i, b) in self.0.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{b}")?;
                }
                f.write_str(">>")
            }
        }
    }
}

/// The escapes Erlang uses inside a printed string.
fn escape(c: char) -> Option<&'static str> {
    Some(match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\u{0b}' => "\\v",
        '\u{08}' => "\\b",
        '\u{0c}' => "\\f",
        '\u{1b}' => "\\e",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{ByteArray, DecimalValue, FieldArray, FieldTable};

    fn show(v: AMQPValue) -> String {
        ErlTerm(&v).to_string()
    }

    #[test]
    fn prints_like_erlang_tp() {
        assert_eq!(
            show(AMQPValue::LongString("bogus".into())),
            r#"<<"bogus">>"#
        );
        assert_eq!(
            show(AMQPValue::LongString("a\"b\\c\n".into())),
            r#"<<"a\"b\\c\n">>"#
        );
        assert_eq!(
            show(AMQPValue::LongString("tëst".into())),
            r#"<<"tëst"/utf8>>"#
        );
        assert_eq!(show(AMQPValue::LongString("".into())), "<<>>");
        let bytes = ByteArray::from(&[0u8, 255][..]);
        assert_eq!(show(AMQPValue::ByteArray(bytes)), "<<0,255>>");
        assert_eq!(show(AMQPValue::ShortShortInt(-1)), "-1");
        assert_eq!(show(AMQPValue::Double(1.0)), "1.0");
        assert_eq!(show(AMQPValue::Double(1e20)), "1.0e20");
        assert_eq!(show(AMQPValue::Float(0.5)), "0.5");
        assert_eq!(show(AMQPValue::Boolean(false)), "false");
        assert_eq!(show(AMQPValue::Void), "undefined");
        let d = DecimalValue {
            scale: 2,
            value: 314,
        };
        assert_eq!(show(AMQPValue::DecimalValue(d)), "{2,314}");
        let mut t = FieldTable::default();
        t.insert("k".into(), AMQPValue::LongLongInt(1));
        assert_eq!(show(AMQPValue::FieldTable(t)), r#"[{<<"k">>,long,1}]"#);
        let a = FieldArray::from(vec![AMQPValue::LongInt(1), AMQPValue::Boolean(true)]);
        assert_eq!(
            show(AMQPValue::FieldArray(a)),
            "[{signedint,1},{bool,true}]"
        );
    }
}
