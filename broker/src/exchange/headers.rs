//! Headers exchange bindings: a message goes to a destination when its headers property
//! satisfies the binding's arguments under the binding's `x-match` mode. The routing key is
//! ignored. Each binding is compiled at bind time (mode parsed, `x-` keys filtered, values
//! reduced to what RabbitMQ compares), so publishing only does map lookups and comparisons.
//!
//! Semantics are those of RabbitMQ 3.13/4.x `rabbit_exchange_type_headers.erl` together with
//! `mc_amqpl:routing_headers/2`, which builds the message side of the comparison.

use std::hash::Hash;

use amq_protocol::types::{AMQPValue, DecimalValue, FieldArray, FieldTable};

use super::erl_term::{rabbit_type_name, ErlBinary, ErlTerm};
use super::Sink;
use crate::error::AmqpError;

#[derive(Clone, Debug)]
pub(super) struct HeadersBindings<D> {
    entries: Vec<Entry<D>>,
}

#[derive(Clone, Debug)]
struct Entry<D> {
    dest: D,
    key: Box<str>,
    args: FieldTable,
    matcher: Matcher,
}

impl<D> Default for HeadersBindings<D> {
    fn default() -> Self {
        HeadersBindings {
            entries: Vec::new(),
        }
    }
}

impl<D: Clone + Eq + Hash> HeadersBindings<D> {
    pub(super) fn bind(
        &mut self,
        dest: D,
        routing_key: &str,
        args: &FieldTable,
    ) -> Result<bool, AmqpError> {
        // Validate before looking for a duplicate, as RabbitMQ's `validate_binding` runs on
        // every `queue.bind`; an identical binding already passed it anyway.
        let matcher = Matcher::compile(args)?;
        if self.position(&dest, routing_key, args).is_some() {
            return Ok(false);
        }
        self.entries.push(Entry {
            dest,
            key: routing_key.into(),
            args: args.clone(),
            matcher,
        });
        Ok(true)
    }

    pub(super) fn unbind(&mut self, dest: &D, routing_key: &str, args: &FieldTable) -> bool {
        match self.position(dest, routing_key, args) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub(super) fn remove_destination(&mut self, dest: &D) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.dest != *dest);
        before - self.entries.len()
    }

    pub(super) fn route(&self, headers: Option<&FieldTable>, sink: &mut Sink<'_, D>) {
        for e in &self.entries {
            if e.matcher.matches(headers) {
                sink.push(&e.dest);
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&D, &str, &FieldTable)> + '_ {
        self.entries.iter().map(|e| (&e.dest, &*e.key, &e.args))
    }

    fn position(&self, dest: &D, routing_key: &str, args: &FieldTable) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.dest == *dest && &*e.key == routing_key && e.args == *args)
    }
}

/// The `x-match` binding argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl XMatch {
    /// Absent means `all` (RabbitMQ: "spec is vague on whether it can be omitted but in
    /// practice it's useful to allow people to do this").
    fn from_args(args: &FieldTable) -> Result<Self, AmqpError> {
        let value = match args.inner().get("x-match") {
            None => return Ok(XMatch::All),
            Some(AMQPValue::LongString(s)) => s.as_bytes(),
            // Never decoded from the wire (RabbitMQ has no shortstr field type; 's' is a short
            // int), but an in-process caller may build one: it is the same text.
            Some(AMQPValue::ShortString(s)) => s.as_str().as_bytes(),
            Some(other) => {
                return Err(AmqpError::precondition_failed(format_args!(
                    "Invalid x-match field type {} (value {}); expected longstr",
                    rabbit_type_name(other),
                    ErlTerm(other)
                )))
            }
        };
        match value {
            b"all" => Ok(XMatch::All),
            b"any" => Ok(XMatch::Any),
            b"all-with-x" => Ok(XMatch::AllWithX),
            b"any-with-x" => Ok(XMatch::AnyWithX),
            other => Err(AmqpError::precondition_failed(format_args!(
                "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                ErlBinary(other)
            ))),
        }
    }
}

/// A binding compiled for matching.
#[derive(Clone, Debug)]
struct Matcher {
    /// `all`/`all-with-x` need every rule to hold, `any`/`any-with-x` at least one.
    need_all: bool,
    rules: Box<[Rule]>,
}

#[derive(Clone, Debug)]
struct Rule {
    header: Box<str>,
    want: Want,
}

/// What a rule asks of the message's header of the same name. Values are reduced the way
/// RabbitMQ reduces them before comparing (see `Want::accepts`).
#[derive(Clone, Debug)]
enum Want {
    /// A void binding argument: the header only has to be present, with any value.
    Present,
    Int(i128),
    Float(f64),
    Bytes(Box<[u8]>),
    Bool(bool),
    Decimal(DecimalValue),
    Table(FieldTable),
    Array(FieldArray),
}

impl Matcher {
    fn compile(args: &FieldTable) -> Result<Self, AmqpError> {
        let x_match = XMatch::from_args(args)?;
        let with_x = matches!(x_match, XMatch::AllWithX | XMatch::AnyWithX);
        let rules = args
            .inner()
            .iter()
            .filter(|(key, _)| {
                let key = key.as_str();
                // `x-match` itself is never matched; other `x-` arguments only by the
                // `-with-x` modes.
                key != "x-match" && (with_x || !key.starts_with("x-"))
            })
            .map(|(key, value)| Rule {
                header: key.as_str().into(),
                want: Want::from_binding(value),
            })
            .collect();
        Ok(Matcher {
            need_all: matches!(x_match, XMatch::All | XMatch::AllWithX),
            rules,
        })
    }

    /// A missing headers property is an empty table: `all` then holds only when there are no
    /// rules, and `any` never holds (an `any` binding without rules matches nothing, as in
    /// RabbitMQ).
    fn matches(&self, headers: Option<&FieldTable>) -> bool {
        let holds = |rule: &Rule| {
            headers
                .and_then(|h| h.inner().get(&*rule.header))
                .is_some_and(|got| rule.want.accepts(got))
        };
        if self.need_all {
            self.rules.iter().all(holds)
        } else {
            self.rules.iter().any(holds)
        }
    }
}

impl Want {
    fn from_binding(value: &AMQPValue) -> Self {
        match value {
            AMQPValue::Void => Want::Present,
            AMQPValue::Boolean(b) => Want::Bool(*b),
            AMQPValue::ShortShortInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::ShortShortUInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::ShortInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::ShortUInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::LongInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::LongUInt(i) => Want::Int(i128::from(*i)),
            AMQPValue::LongLongInt(i) => Want::Int(i128::from(*i)),
            // The binding side keeps a timestamp's value as sent; only the message side is
            // rescaled (see `message_int`).
            AMQPValue::Timestamp(t) => Want::Int(i128::from(*t)),
            AMQPValue::Float(f) => Want::Float(f64::from(*f)),
            AMQPValue::Double(f) => Want::Float(*f),
            AMQPValue::DecimalValue(d) => Want::Decimal(*d),
            AMQPValue::ShortString(s) => Want::Bytes(s.as_str().as_bytes().into()),
            AMQPValue::LongString(s) => Want::Bytes(s.as_bytes().into()),
            AMQPValue::ByteArray(b) => Want::Bytes(b.as_slice().into()),
            AMQPValue::FieldTable(t) => Want::Table(t.clone()),
            AMQPValue::FieldArray(a) => Want::Array(a.clone()),
        }
    }

    // rabbitmq-compat: RabbitMQ compares `maps:get(K, Headers) =:= V`, Erlang's exact
    // equality of the *untyped* values (`rabbit_exchange_type_headers:match/2`). So:
    // - integer widths do not matter: `short 1` matches `long 1` (all are Erlang integers);
    // - an integer never matches a float (`1 =:= 1.0` is false), but `float` and `double`
    //   compare by value (a float is decoded into a double);
    // - `longstr` and byte array (`x`) are both binaries and match on equal bytes;
    // - tables and arrays compare structurally, element types included;
    // - a message's timestamp header `t` compares as the integer `1000 * t`
    //   (`mc_amqpl:routing_value/2` turns it into milliseconds) while a binding's timestamp
    //   argument stays `t`: a timestamp argument does not match the same timestamp in a
    //   message (unless 0), and an integer argument `5000` matches a timestamp `5`. Odd, but
    //   it is what RabbitMQ 4.x does.
    fn accepts(&self, got: &AMQPValue) -> bool {
        match self {
            Want::Present => true,
            Want::Int(want) => message_int(got) == Some(*want),
            Want::Float(want) => match got {
                AMQPValue::Float(f) => f64::from(*f) == *want,
                AMQPValue::Double(f) => f == want,
                _ => false,
            },
            Want::Bytes(want) => as_bytes(got) == Some(&**want),
            Want::Bool(want) => matches!(got, AMQPValue::Boolean(b) if b == want),
            Want::Decimal(want) => matches!(got, AMQPValue::DecimalValue(d) if d == want),
            Want::Table(want) => matches!(got, AMQPValue::FieldTable(t) if t == want),
            Want::Array(want) => matches!(got, AMQPValue::FieldArray(a) if a == want),
        }
    }
}

/// The integer RabbitMQ routes on for a message header (timestamps in milliseconds).
fn message_int(value: &AMQPValue) -> Option<i128> {
    match value {
        AMQPValue::Timestamp(t) => Some(i128::from(*t) * 1000),
        other => as_int(other),
    }
}

fn as_int(value: &AMQPValue) -> Option<i128> {
    match value {
        AMQPValue::ShortShortInt(i) => Some(i128::from(*i)),
        AMQPValue::ShortShortUInt(i) => Some(i128::from(*i)),
        AMQPValue::ShortInt(i) => Some(i128::from(*i)),
        AMQPValue::ShortUInt(i) => Some(i128::from(*i)),
        AMQPValue::LongInt(i) => Some(i128::from(*i)),
        AMQPValue::LongUInt(i) => Some(i128::from(*i)),
        AMQPValue::LongLongInt(i) => Some(i128::from(*i)),
        _ => None,
    }
}

fn as_bytes(value: &AMQPValue) -> Option<&[u8]> {
    match value {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Bindings, ExchangeKind};
    use super::*;
    use amq_protocol::types::ByteArray;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    /// One binding with `args` to "q"; does a message with `headers` reach it?
    fn reaches(args: &[(&str, AMQPValue)], headers: Option<&[(&str, AMQPValue)]>) -> bool {
        let mut x = Bindings::new(ExchangeKind::Headers);
        assert_eq!(x.bind("q", "", &table(args)), Ok(true));
        let headers = headers.map(table);
        let mut out = Vec::new();
        x.route("any routing key", headers.as_ref(), &mut out);
        assert!(out.len() <= 1);
        out == ["q"]
    }

    fn bind_error(args: &[(&str, AMQPValue)]) -> String {
        let mut x = Bindings::<&str>::new(ExchangeKind::Headers);
        match x.bind("q", "", &table(args)) {
            Err(e) => {
                assert_eq!(e.code.code(), 406);
                e.text
            }
            Ok(added) => panic!("binding accepted ({added})"),
        }
    }

    #[test]
    fn all_is_the_default_and_needs_every_argument() {
        let args = [("format", s("pdf")), ("type", s("report"))];
        let with_all = [
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ];
        for args in [&args[..], &with_all[..]] {
            assert!(reaches(
                args,
                Some(&[
                    ("format", s("pdf")),
                    ("type", s("report")),
                    ("extra", s("1"))
                ])
            ));
            assert!(!reaches(args, Some(&[("format", s("pdf"))])));
            assert!(!reaches(
                args,
                Some(&[("format", s("pdf")), ("type", s("log"))])
            ));
            assert!(!reaches(args, None));
        }
    }

    #[test]
    fn any_needs_one_argument() {
        let args = [
            ("x-match", s("any")),
            ("format", s("pdf")),
            ("type", s("report")),
        ];
        assert!(reaches(&args, Some(&[("type", s("report"))])));
        assert!(reaches(
            &args,
            Some(&[("format", s("pdf")), ("type", s("log"))])
        ));
        assert!(!reaches(
            &args,
            Some(&[("format", s("zip")), ("type", s("log"))])
        ));
        assert!(!reaches(&args, Some(&[])));
        assert!(!reaches(&args, None));
    }

    #[test]
    fn without_arguments_all_matches_everything_and_any_nothing() {
        assert!(reaches(&[], None));
        assert!(reaches(&[], Some(&[("a", s("1"))])));
        assert!(reaches(&[("x-match", s("all"))], None));
        assert!(!reaches(&[("x-match", s("any"))], Some(&[("a", s("1"))])));
        assert!(!reaches(&[("x-match", s("any"))], None));
        // only `x-` arguments, which plain all/any skip: the same as none
        assert!(reaches(&[("x-foo", s("1"))], None));
        assert!(!reaches(
            &[("x-match", s("any")), ("x-foo", s("1"))],
            Some(&[("x-foo", s("1"))])
        ));
    }

    #[test]
    fn x_arguments_are_ignored_unless_with_x() {
        let plain = [
            ("x-match", s("all")),
            ("x-tenant", s("acme")),
            ("kind", s("a")),
        ];
        // x-tenant is not looked at
        assert!(reaches(&plain, Some(&[("kind", s("a"))])));
        assert!(reaches(
            &plain,
            Some(&[("kind", s("a")), ("x-tenant", s("other"))])
        ));

        let all_x = [
            ("x-match", s("all-with-x")),
            ("x-tenant", s("acme")),
            ("kind", s("a")),
        ];
        assert!(!reaches(&all_x, Some(&[("kind", s("a"))])));
        assert!(!reaches(
            &all_x,
            Some(&[("kind", s("a")), ("x-tenant", s("other"))])
        ));
        assert!(reaches(
            &all_x,
            Some(&[("kind", s("a")), ("x-tenant", s("acme"))])
        ));

        let any_x = [
            ("x-match", s("any-with-x")),
            ("x-tenant", s("acme")),
            ("kind", s("a")),
        ];
        assert!(reaches(&any_x, Some(&[("x-tenant", s("acme"))])));
        assert!(reaches(&any_x, Some(&[("kind", s("a"))])));
        assert!(!reaches(
            &any_x,
            Some(&[("x-tenant", s("other")), ("kind", s("b"))])
        ));

        // `x-match` itself is never a condition, even with -with-x
        assert!(!reaches(
            &[("x-match", s("any-with-x"))],
            Some(&[("x-match", s("any-with-x"))])
        ));
        assert!(reaches(&[("x-match", s("all-with-x"))], Some(&[])));
    }

    #[test]
    fn void_argument_matches_on_presence() {
        let args = [("trace", AMQPValue::Void), ("kind", s("a"))];
        assert!(reaches(
            &args,
            Some(&[("trace", s("anything")), ("kind", s("a"))])
        ));
        assert!(reaches(
            &args,
            Some(&[("trace", AMQPValue::Void), ("kind", s("a"))])
        ));
        assert!(reaches(
            &args,
            Some(&[("trace", AMQPValue::LongLongInt(0)), ("kind", s("a"))])
        ));
        assert!(!reaches(&args, Some(&[("kind", s("a"))])));
        // a void header only satisfies a void (presence) argument
        assert!(!reaches(
            &[("kind", s("a"))],
            Some(&[("kind", AMQPValue::Void)])
        ));
    }

    #[test]
    fn values_compare_like_rabbitmq() {
        use AMQPValue as V;
        // integer widths do not matter
        assert!(reaches(
            &[("n", V::ShortShortUInt(7))],
            Some(&[("n", V::LongLongInt(7))])
        ));
        assert!(reaches(
            &[("n", V::LongInt(-3))],
            Some(&[("n", V::ShortInt(-3))])
        ));
        assert!(!reaches(
            &[("n", V::LongInt(3))],
            Some(&[("n", V::LongInt(4))])
        ));
        // an integer never equals a float; float and double compare by value
        assert!(!reaches(
            &[("n", V::LongInt(1))],
            Some(&[("n", V::Double(1.0))])
        ));
        assert!(!reaches(
            &[("n", V::Double(1.0))],
            Some(&[("n", V::LongInt(1))])
        ));
        assert!(reaches(
            &[("n", V::Float(1.5))],
            Some(&[("n", V::Double(1.5))])
        ));
        assert!(!reaches(
            &[("n", V::Double(0.1))],
            Some(&[("n", V::Float(0.1))])
        ));
        // strings: same bytes, whether longstr or byte array; case matters
        assert!(reaches(
            &[("s", s("abc"))],
            Some(&[("s", V::ByteArray(ByteArray::from(&b"abc"[..])))])
        ));
        assert!(!reaches(&[("s", s("abc"))], Some(&[("s", s("ABC"))])));
        // a string is not a number
        assert!(!reaches(&[("n", s("1"))], Some(&[("n", V::LongInt(1))])));
        // booleans are not integers
        assert!(reaches(
            &[("b", V::Boolean(true))],
            Some(&[("b", V::Boolean(true))])
        ));
        assert!(!reaches(
            &[("b", V::Boolean(true))],
            Some(&[("b", V::ShortShortUInt(1))])
        ));
        // decimals compare as (scale, value)
        let d = |scale, value| V::DecimalValue(DecimalValue { scale, value });
        assert!(reaches(&[("d", d(2, 314))], Some(&[("d", d(2, 314))])));
        assert!(!reaches(&[("d", d(1, 31))], Some(&[("d", d(2, 310))])));
        // tables compare structurally, including the element types
        let inner = |v| V::FieldTable(table(&[("k", v)]));
        assert!(reaches(
            &[("t", inner(V::LongInt(1)))],
            Some(&[("t", inner(V::LongInt(1)))])
        ));
        assert!(!reaches(
            &[("t", inner(V::LongInt(1)))],
            Some(&[("t", inner(V::LongLongInt(1)))])
        ));
    }

    #[test]
    fn message_timestamps_compare_in_milliseconds() {
        use AMQPValue as V;
        // rabbitmq-compat: mc_amqpl turns a timestamp header into milliseconds
        assert!(reaches(
            &[("at", V::LongLongInt(5000))],
            Some(&[("at", V::Timestamp(5))])
        ));
        assert!(!reaches(
            &[("at", V::Timestamp(5))],
            Some(&[("at", V::Timestamp(5))])
        ));
        assert!(reaches(
            &[("at", V::Timestamp(5000))],
            Some(&[("at", V::Timestamp(5))])
        ));
        assert!(reaches(
            &[("at", V::Timestamp(7))],
            Some(&[("at", V::LongLongInt(7))])
        ));
    }

    #[test]
    fn routing_key_is_ignored_and_one_copy_per_destination() {
        let mut x = Bindings::new(ExchangeKind::Headers);
        let a = table(&[("a", s("1"))]);
        let b = table(&[("x-match", s("any")), ("b", s("2"))]);
        assert_eq!(x.bind("q", "k1", &a), Ok(true));
        assert_eq!(x.bind("q", "k2", &b), Ok(true));
        assert_eq!(x.bind("q", "k2", &b), Ok(false));
        assert_eq!(x.bind("other", "k1", &b), Ok(true));
        let headers = table(&[("a", s("1")), ("b", s("2"))]);
        let mut out = Vec::new();
        x.route("unrelated", Some(&headers), &mut out);
        out.sort_unstable();
        assert_eq!(out, ["other", "q"]);

        assert!(x.unbind(&"q", "k2", &b));
        assert_eq!(x.remove_destination(&"q"), 1);
        assert_eq!(x.len(), 1);
    }

    #[test]
    fn invalid_x_match_is_refused_with_rabbitmq_text() {
        assert_eq!(
            bind_error(&[("x-match", s("bogus"))]),
            "PRECONDITION_FAILED - Invalid x-match field value <<\"bogus\">>; \
             expected all, any, all-with-x, or any-with-x"
        );
        // matching is exact: RabbitMQ does not lower-case or trim
        assert!(bind_error(&[("x-match", s("ALL"))]).contains("<<\"ALL\">>"));
        assert!(bind_error(&[("x-match", s(""))]).contains("value <<>>;"));
        assert_eq!(
            bind_error(&[("x-match", AMQPValue::ShortShortInt(1))]),
            "PRECONDITION_FAILED - Invalid x-match field type byte (value 1); expected longstr"
        );
        assert_eq!(
            bind_error(&[("x-match", AMQPValue::Boolean(true))]),
            "PRECONDITION_FAILED - Invalid x-match field type bool (value true); expected longstr"
        );
        assert_eq!(
            bind_error(&[("x-match", AMQPValue::ByteArray(ByteArray::from(&b"all"[..])))]),
            "PRECONDITION_FAILED - Invalid x-match field type binary (value <<\"all\">>); expected longstr"
        );
        // a refused binding is not added
        let mut x = Bindings::<&str>::new(ExchangeKind::Headers);
        assert!(x.bind("q", "", &table(&[("x-match", s("none"))])).is_err());
        assert!(x.is_empty());
    }
}
