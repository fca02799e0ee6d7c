//! Exchange types and their bindings: the pure routing core (no tokio). The vhost keeps one
//! `Bindings` per exchange inside its immutable routing snapshot and calls `route` on publish;
//! each exchange type lives in its own file (`direct`, `fanout`, `topic`, `headers`) behind the
//! same three hooks: `bind`, `unbind` and `route`. `erl_term` renders field values the way
//! RabbitMQ's error texts do.

mod direct;
pub(crate) mod erl_term;
mod fanout;
mod headers;
mod topic;

use std::collections::HashSet;
use std::hash::Hash;

use amq_protocol::types::FieldTable;

use crate::error::AmqpError;

/// The exchange types Warren routes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// `"direct"`, `"fanout"`, `"topic"`, `"headers"`; anything else is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// The bindings of one exchange, compiled for routing. `D` is the destination (a queue
/// handle). A binding is identified, as in RabbitMQ, by (destination, routing key, arguments):
/// the same key with different arguments is a second binding.
///
/// The vhost clones this whenever the topology changes (copy-on-write snapshot), so every
/// representation below is plain owned data with a derived, deep `Clone`.
#[derive(Clone, Debug)]
pub struct Bindings<D> {
    table: Table<D>,
    len: usize,
}

#[derive(Clone, Debug)]
enum Table<D> {
    Direct(direct::DirectBindings<D>),
    Fanout(fanout::FanoutBindings<D>),
    Topic(topic::TopicBindings<D>),
    Headers(headers::HeadersBindings<D>),
}

impl<D: Clone + Eq + Hash> Bindings<D> {
    pub fn new(kind: ExchangeKind) -> Self {
        let table = match kind {
            ExchangeKind::Direct => Table::Direct(direct::DirectBindings::default()),
            ExchangeKind::Fanout => Table::Fanout(fanout::FanoutBindings::default()),
            ExchangeKind::Topic => Table::Topic(topic::TopicBindings::default()),
            ExchangeKind::Headers => Table::Headers(headers::HeadersBindings::default()),
        };
        Bindings { table, len: 0 }
    }

    pub fn kind(&self) -> ExchangeKind {
        match self.table {
            Table::Direct(_) => ExchangeKind::Direct,
            Table::Fanout(_) => ExchangeKind::Fanout,
            Table::Topic(_) => ExchangeKind::Topic,
            Table::Headers(_) => ExchangeKind::Headers,
        }
    }

    /// Adds a binding; `Ok(true)` if it is new, `Ok(false)` if an identical binding (same
    /// destination, routing key and arguments) already existed (`queue.bind` is idempotent).
    /// Only headers exchanges can refuse a binding: an invalid `x-match` is a 406
    /// PRECONDITION_FAILED with RabbitMQ's text.
    pub fn bind(
        &mut self,
        dest: D,
        routing_key: &str,
        args: &FieldTable,
    ) -> Result<bool, AmqpError> {
        let added = match &mut self.table {
            Table::Direct(t) => t.bind(dest, routing_key, args),
            Table::Fanout(t) => t.bind(dest, routing_key, args),
            Table::Topic(t) => t.bind(dest, routing_key, args),
            Table::Headers(t) => t.bind(dest, routing_key, args)?,
        };
        if added {
            self.len += 1;
        }
        Ok(added)
    }

    /// Removes one binding (same destination, key and arguments); `true` if it existed.
    pub fn unbind(&mut self, dest: &D, routing_key: &str, args: &FieldTable) -> bool {
        let removed = match &mut self.table {
            Table::Direct(t) => t.unbind(dest, routing_key, args),
            Table::Fanout(t) => t.unbind(dest, routing_key, args),
            Table::Topic(t) => t.unbind(dest, routing_key, args),
            Table::Headers(t) => t.unbind(dest, routing_key, args),
        };
        if removed {
            self.len = self.len.saturating_sub(1);
        }
        removed
    }

    /// Removes every binding to `dest` (its queue was deleted); returns how many there were.
    pub fn remove_destination(&mut self, dest: &D) -> usize {
        let removed = match &mut self.table {
            Table::Direct(t) => t.remove_destination(dest),
            Table::Fanout(t) => t.remove_destination(dest),
            Table::Topic(t) => t.remove_destination(dest),
            Table::Headers(t) => t.remove_destination(dest),
        };
        self.len = self.len.saturating_sub(removed);
        removed
    }

    /// Appends to `out` every destination with a matching binding. A destination matched by
    /// several bindings is appended once per call (one copy per queue), but only items this
    /// call appends are deduplicated: whatever `out` held before is left alone and not looked
    /// at, so a caller routing through several exchanges dedups across them itself.
    /// `headers` is the message's headers property (`None` when absent); only headers
    /// exchanges read it. Fanout and headers exchanges ignore `routing_key`.
    pub fn route(&self, routing_key: &str, headers: Option<&FieldTable>, out: &mut Vec<D>) {
        let mut sink = Sink::new(out);
        match &self.table {
            Table::Direct(t) => t.route(routing_key, &mut sink),
            Table::Fanout(t) => t.route(&mut sink),
            Table::Topic(t) => t.route(routing_key, &mut sink),
            Table::Headers(t) => t.route(headers, &mut sink),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All bindings as (destination, routing key, arguments), for listing and export. The
    /// order is unspecified; sort if it matters.
    pub fn iter(&self) -> impl Iterator<Item = (&D, &str, &FieldTable)> + '_ {
        match &self.table {
            Table::Direct(t) => Iter::Direct(t.iter()),
            Table::Fanout(t) => Iter::Fanout(t.iter()),
            Table::Topic(t) => Iter::Topic(t.iter()),
            Table::Headers(t) => Iter::Headers(t.iter()),
        }
    }

    /// Whether any binding points at `dest`.
    pub fn contains_destination(&self, dest: &D) -> bool {
        self.iter().any(|(d, _, _)| d == dest)
    }
}

/// One iterator type over the four tables, so `iter` needs no boxing.
enum Iter<A, B, C, E> {
    Direct(A),
    Fanout(B),
    Topic(C),
    Headers(E),
}

impl<T, A, B, C, E> Iterator for Iter<A, B, C, E>
where
    A: Iterator<Item = T>,
    B: Iterator<Item = T>,
    C: Iterator<Item = T>,
    E: Iterator<Item = T>,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Iter::Direct(it) => it.next(),
            Iter::Fanout(it) => it.next(),
            Iter::Topic(it) => it.next(),
            Iter::Headers(it) => it.next(),
        }
    }
}

/// Past this many destinations in one `route` call, duplicates are found with a hash set
/// instead of a linear scan. Most publishes reach 1–10 queues, where scanning a few handles
/// beats hashing and needs no allocation.
const LINEAR_DEDUP_LIMIT: usize = 16;

/// Where a routing hook puts the destinations it matched: appends to the caller's `Vec`,
/// skipping destinations this call has already appended.
struct Sink<'a, D> {
    out: &'a mut Vec<D>,
    /// Length of `out` when the call began; everything after it was appended by this call.
    start: usize,
    /// Built lazily once more than `LINEAR_DEDUP_LIMIT` destinations were appended.
    seen: Option<HashSet<D>>,
}

impl<'a, D: Clone + Eq + Hash> Sink<'a, D> {
    fn new(out: &'a mut Vec<D>) -> Self {
        let start = out.len();
        Sink {
            out,
            start,
            seen: None,
        }
    }

    fn push(&mut self, dest: &D) {
        if let Some(seen) = &mut self.seen {
            if seen.insert(dest.clone()) {
                self.out.push(dest.clone());
            }
            return;
        }
        // `out` only grows while the sink holds it, so `start` is always in range.
        let appended = self.out.get(self.start..).unwrap_or_default();
        if appended.contains(dest) {
            return;
        }
        self.out.push(dest.clone());
        if self.out.len() - self.start > LINEAR_DEDUP_LIMIT {
            let appended = self.out.get(self.start..).unwrap_or_default();
            self.seen = Some(appended.iter().cloned().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    fn no_args() -> FieldTable {
        FieldTable::default()
    }

    fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn routed(b: &Bindings<u32>, key: &str, headers: Option<&FieldTable>) -> Vec<u32> {
        let mut out = Vec::new();
        b.route(key, headers, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn kind_round_trips_through_name_and_new() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            assert_eq!(ExchangeKind::from_name(kind.name()), Some(kind));
            assert_eq!(Bindings::<u32>::new(kind).kind(), kind);
        }
        assert_eq!(ExchangeKind::from_name("x-consistent-hash"), None);
    }

    #[test]
    fn len_and_contains_follow_bind_unbind_and_remove_destination() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            let mut b = Bindings::new(kind);
            assert!(b.is_empty());
            let a1 = args(&[("k", AMQPValue::LongString("1".into()))]);
            assert_eq!(b.bind(1, "a.b", &no_args()), Ok(true));
            assert_eq!(b.bind(1, "a.b", &no_args()), Ok(false));
            assert_eq!(b.bind(1, "a.b", &a1), Ok(true));
            assert_eq!(b.bind(1, "c", &no_args()), Ok(true));
            assert_eq!(b.bind(2, "a.b", &no_args()), Ok(true));
            assert_eq!(b.len(), 4, "{kind:?}");
            assert_eq!(b.iter().count(), 4, "{kind:?}");
            assert!(b.contains_destination(&1) && b.contains_destination(&2));

            assert!(b.unbind(&1, "a.b", &a1));
            assert!(!b.unbind(&1, "a.b", &a1));
            assert_eq!(b.len(), 3);

            assert_eq!(b.remove_destination(&1), 2, "{kind:?}");
            assert_eq!(b.remove_destination(&1), 0);
            assert!(!b.contains_destination(&1));
            assert_eq!(b.len(), 1);
            assert_eq!(b.iter().collect::<Vec<_>>(), vec![(&2, "a.b", &no_args())]);

            assert!(b.unbind(&2, "a.b", &no_args()));
            assert!(b.is_empty());
            assert_eq!(b.iter().count(), 0);
        }
    }

    #[test]
    fn clone_is_a_deep_snapshot() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            let mut live = Bindings::new(kind);
            assert_eq!(live.bind(1, "k", &no_args()), Ok(true));
            let snapshot = live.clone();
            assert_eq!(live.bind(2, "k", &no_args()), Ok(true));
            assert!(live.unbind(&1, "k", &no_args()));
            assert_eq!(routed(&snapshot, "k", None), vec![1], "{kind:?}");
            assert_eq!(routed(&live, "k", None), vec![2], "{kind:?}");
            assert_eq!(snapshot.len(), 1);
        }
    }

    #[test]
    fn route_leaves_earlier_items_of_out_alone() {
        let mut b = Bindings::new(ExchangeKind::Fanout);
        assert_eq!(b.bind(7, "", &no_args()), Ok(true));
        let mut out = vec![7, 8];
        b.route("", None, &mut out);
        assert_eq!(out, vec![7, 8, 7]);
    }

    #[test]
    fn dedup_holds_past_the_linear_scan_limit() {
        let mut b = Bindings::new(ExchangeKind::Fanout);
        let n = (LINEAR_DEDUP_LIMIT as u32) * 3;
        for dest in 0..n {
            // two bindings per destination, told apart by their routing key
            assert_eq!(b.bind(dest, "one", &no_args()), Ok(true));
            assert_eq!(b.bind(dest, "two", &no_args()), Ok(true));
        }
        let mut out = vec![0];
        b.route("", None, &mut out);
        assert_eq!(out.len(), 1 + n as usize);
        out.remove(0);
        out.sort_unstable();
        assert_eq!(out, (0..n).collect::<Vec<_>>());
    }
}
