//! Direct exchange bindings: a message goes to the destinations bound with exactly its routing
//! key, found with one hash lookup on the publish path.

use std::hash::Hash;

use amq_protocol::types::FieldTable;

use super::Sink;

#[derive(Clone, Debug)]
pub(super) struct DirectBindings<D> {
    /// Binding key -> the bindings with that key. Keys with no bindings left are removed, so
    /// the map never grows with keys that were unbound.
    by_key: crate::FastMap<Box<str>, Vec<Entry<D>>>,
}

#[derive(Clone, Debug)]
struct Entry<D> {
    dest: D,
    args: FieldTable,
}

impl<D> Default for DirectBindings<D> {
    fn default() -> Self {
        DirectBindings {
            by_key: Default::default(),
        }
    }
}

impl<D: Clone + Eq + Hash> DirectBindings<D> {
    pub(super) fn bind(&mut self, dest: D, routing_key: &str, args: &FieldTable) -> bool {
        let entries = self.by_key.entry(routing_key.into()).or_default();
        if entries.iter().any(|e| e.dest == dest && e.args == *args) {
            return false;
        }
        entries.push(Entry {
            dest,
            args: args.clone(),
        });
        true
    }

    pub(super) fn unbind(&mut self, dest: &D, routing_key: &str, args: &FieldTable) -> bool {
        let Some(entries) = self.by_key.get_mut(routing_key) else {
            return false;
        };
        let Some(i) = entries
            .iter()
            .position(|e| e.dest == *dest && e.args == *args)
        else {
            return false;
        };
        entries.swap_remove(i);
        if entries.is_empty() {
            self.by_key.remove(routing_key);
        }
        true
    }

    pub(super) fn remove_destination(&mut self, dest: &D) -> usize {
        let mut removed = 0;
        self.by_key.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|e| e.dest != *dest);
            removed += before - entries.len();
            !entries.is_empty()
        });
        removed
    }

    pub(super) fn route(&self, routing_key: &str, sink: &mut Sink<'_, D>) {
        if let Some(entries) = self.by_key.get(routing_key) {
            for e in entries {
                sink.push(&e.dest);
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&D, &str, &FieldTable)> + '_ {
        self.by_key
            .iter()
            .flat_map(|(key, entries)| entries.iter().map(move |e| (&e.dest, &**key, &e.args)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Bindings, ExchangeKind};
    use amq_protocol::types::{AMQPValue, FieldTable};

    fn routed(b: &Bindings<&'static str>, key: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        b.route(key, None, &mut out);
        out.sort_unstable();
        out
    }

    fn arg(v: &str) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("tag".into(), AMQPValue::LongString(v.into()));
        t
    }

    #[test]
    fn routes_on_exact_key_equality_only() {
        let mut b = Bindings::new(ExchangeKind::Direct);
        let none = FieldTable::default();
        assert_eq!(b.bind("q1", "orders", &none), Ok(true));
        assert_eq!(b.bind("q2", "orders", &none), Ok(true));
        assert_eq!(b.bind("q3", "Orders", &none), Ok(true));
        assert_eq!(b.bind("q4", "", &none), Ok(true));
        assert_eq!(routed(&b, "orders"), vec!["q1", "q2"]);
        assert_eq!(routed(&b, "Orders"), vec!["q3"]);
        assert_eq!(routed(&b, ""), vec!["q4"]);
        // no pattern matching of any kind
        assert!(routed(&b, "orders.eu").is_empty());
        assert!(routed(&b, "order").is_empty());
        assert!(routed(&b, "#").is_empty());
    }

    #[test]
    fn bind_is_idempotent_and_arguments_are_part_of_identity() {
        let mut b = Bindings::new(ExchangeKind::Direct);
        assert_eq!(b.bind("q", "k", &arg("a")), Ok(true));
        assert_eq!(b.bind("q", "k", &arg("a")), Ok(false));
        assert_eq!(b.bind("q", "k", &arg("b")), Ok(true));
        assert_eq!(b.len(), 2);
        // two bindings, one copy
        assert_eq!(routed(&b, "k"), vec!["q"]);

        assert!(!b.unbind(&"q", "k", &FieldTable::default()));
        assert!(b.unbind(&"q", "k", &arg("a")));
        assert_eq!(routed(&b, "k"), vec!["q"]);
        assert!(b.unbind(&"q", "k", &arg("b")));
        assert!(routed(&b, "k").is_empty());
        assert!(b.is_empty());
    }

    #[test]
    fn remove_destination_drops_every_key_of_that_queue() {
        let mut b = Bindings::new(ExchangeKind::Direct);
        let none = FieldTable::default();
        for key in ["a", "b", "c"] {
            assert_eq!(b.bind("gone", key, &none), Ok(true));
        }
        assert_eq!(b.bind("kept", "a", &none), Ok(true));
        assert_eq!(b.remove_destination(&"gone"), 3);
        assert_eq!(routed(&b, "a"), vec!["kept"]);
        assert!(routed(&b, "b").is_empty());
        assert_eq!(b.len(), 1);
    }
}
