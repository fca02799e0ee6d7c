//! Fanout exchange bindings: a message goes to every bound destination, whatever its routing
//! key. Keys and arguments are kept only because they are part of a binding's identity.

use std::hash::Hash;

use amq_protocol::types::FieldTable;

use super::Sink;

#[derive(Clone, Debug)]
pub(super) struct FanoutBindings<D> {
    entries: Vec<Entry<D>>,
}

#[derive(Clone, Debug)]
struct Entry<D> {
    dest: D,
    key: Box<str>,
    args: FieldTable,
}

impl<D> Default for FanoutBindings<D> {
    fn default() -> Self {
        FanoutBindings {
            entries: Vec::new(),
        }
    }
}

impl<D: Clone + Eq + Hash> FanoutBindings<D> {
    pub(super) fn bind(&mut self, dest: D, routing_key: &str, args: &FieldTable) -> bool {
        if self.position(&dest, routing_key, args).is_some() {
            return false;
        }
        self.entries.push(Entry {
            dest,
            key: routing_key.into(),
            args: args.clone(),
        });
        true
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

    pub(super) fn route(&self, sink: &mut Sink<'_, D>) {
        for e in &self.entries {
            sink.push(&e.dest);
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

#[cfg(test)]
mod tests {
    use super::super::{Bindings, ExchangeKind};
    use amq_protocol::types::FieldTable;

    fn routed(b: &Bindings<&'static str>, key: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        b.route(key, None, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn every_destination_gets_one_copy_whatever_the_key() {
        let mut b = Bindings::new(ExchangeKind::Fanout);
        let none = FieldTable::default();
        assert_eq!(b.bind("q1", "", &none), Ok(true));
        assert_eq!(b.bind("q2", "ignored", &none), Ok(true));
        // a second binding of q1 (different key) must not give q1 a second copy
        assert_eq!(b.bind("q1", "other", &none), Ok(true));
        assert_eq!(b.bind("q1", "other", &none), Ok(false));
        assert_eq!(b.len(), 3);
        for key in ["", "anything", "a.b.#"] {
            assert_eq!(routed(&b, key), vec!["q1", "q2"]);
        }
    }

    #[test]
    fn unbind_and_remove_destination() {
        let mut b = Bindings::new(ExchangeKind::Fanout);
        let none = FieldTable::default();
        assert_eq!(b.bind("q1", "a", &none), Ok(true));
        assert_eq!(b.bind("q1", "b", &none), Ok(true));
        assert_eq!(b.bind("q2", "a", &none), Ok(true));

        assert!(!b.unbind(&"q1", "c", &none));
        assert!(b.unbind(&"q1", "a", &none));
        assert_eq!(routed(&b, ""), vec!["q1", "q2"]);

        assert_eq!(b.remove_destination(&"q1"), 1);
        assert_eq!(routed(&b, ""), vec!["q2"]);
        assert_eq!(b.len(), 1);
    }
}
