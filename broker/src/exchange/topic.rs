//! Topic exchange bindings, compiled into a trie over the dot-separated words of binding keys:
//! each node has literal-word edges plus at most one `*` edge and one `#` edge. Publishing
//! walks the trie with the routing key's words, on a small inline stack: no regex, and no
//! allocation unless the bindings are more than about ten words deep.
//!
//! Words follow RabbitMQ's `split_topic_key` (`rabbit_db_topic_exchange.erl`): split on every
//! `.`, so `a..b` is `a`, ``, `b` and `*` can match that empty word; the empty key is zero
//! words (not one empty word), so `*` does not match it but `#` does.

use std::hash::Hash;

use amq_protocol::types::FieldTable;

use super::Sink;

/// The root is always slot 0 and never freed.
const ROOT: usize = 0;

/// Trie nodes live in one `Vec` and point at each other by index, so cloning the snapshot and
/// dropping a deep trie walk a `Vec` instead of recursing through boxes. Every index stored in a node is a
/// live slot; lookups still use `get` and treat a missing slot as "no such edge" rather than
/// panicking.
#[derive(Clone, Debug)]
pub(super) struct TopicBindings<D> {
    nodes: Vec<Node<D>>,
    /// Slots of pruned nodes, reused before `nodes` grows.
    free: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Node<D> {
    words: crate::FastMap<Box<str>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// Bindings whose key ends at this node. They all share one key, which each keeps for
    /// listing.
    bindings: Vec<Binding<D>>,
}

#[derive(Clone, Debug)]
struct Binding<D> {
    dest: D,
    key: Box<str>,
    args: FieldTable,
}

/// The edge a binding-key word takes out of a node.
#[derive(Clone, Copy, Debug)]
enum Edge<'k> {
    Word(&'k str),
    Star,
    Hash,
}

impl<'k> Edge<'k> {
    fn of(word: &'k str) -> Self {
        match word {
            "*" => Edge::Star,
            "#" => Edge::Hash,
            _ => Edge::Word(word),
        }
    }
}

impl<D> Node<D> {
    fn child(&self, edge: Edge<'_>) -> Option<usize> {
        match edge {
            Edge::Word(w) => self.words.get(w).copied(),
            Edge::Star => self.star,
            Edge::Hash => self.hash,
        }
    }

    fn set_child(&mut self, edge: Edge<'_>, child: Option<usize>) {
        match (edge, child) {
            (Edge::Word(w), Some(c)) => {
                self.words.insert(w.into(), c);
            }
            (Edge::Word(w), None) => {
                self.words.remove(w);
            }
            (Edge::Star, c) => self.star = c,
            (Edge::Hash, c) => self.hash = c,
        }
    }

    /// No bindings end here and no longer key passes through: the node can be pruned.
    fn is_unused(&self) -> bool {
        self.bindings.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Node {
            words: Default::default(),
            star: None,
            hash: None,
            bindings: Vec::new(),
        }
    }
}

impl<D> Default for TopicBindings<D> {
    fn default() -> Self {
        TopicBindings {
            nodes: vec![Node::default()],
            free: Vec::new(),
        }
    }
}

/// The words of a key; the empty key has none.
fn words(key: &str) -> impl Iterator<Item = &str> {
    (!key.is_empty())
        .then(|| key.split('.'))
        .into_iter()
        .flatten()
}

/// Where the first word of `key` starts, or `None` when the key has no words.
fn first_word(key: &str) -> Option<usize> {
    (!key.is_empty()).then_some(0)
}

/// The word of `key` starting at byte `pos`, and where the next one starts (`None` after the
/// last word). `.` is ASCII, so every split point is a char boundary.
fn word_at(key: &str, pos: usize) -> (&str, Option<usize>) {
    let tail = key.get(pos..).unwrap_or("");
    match tail.find('.') {
        Some(dot) => (tail.get(..dot).unwrap_or(""), Some(pos + dot + 1)),
        None => (tail, None),
    }
}

impl<D: Clone + Eq + Hash> TopicBindings<D> {
    pub(super) fn bind(&mut self, dest: D, routing_key: &str, args: &FieldTable) -> bool {
        let mut node = ROOT;
        for word in words(routing_key) {
            node = self.child_or_insert(node, Edge::of(word));
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        if n.bindings.iter().any(|b| b.dest == dest && b.args == *args) {
            return false;
        }
        n.bindings.push(Binding {
            dest,
            key: routing_key.into(),
            args: args.clone(),
        });
        true
    }

    pub(super) fn unbind(&mut self, dest: &D, routing_key: &str, args: &FieldTable) -> bool {
        // The nodes passed on the way down, with the edge taken out of each, for pruning.
        let mut path = Vec::new();
        let mut node = ROOT;
        for word in words(routing_key) {
            let edge = Edge::of(word);
            let Some(child) = self.nodes.get(node).and_then(|n| n.child(edge)) else {
                return false;
            };
            path.push((node, edge));
            node = child;
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        let Some(i) = n
            .bindings
            .iter()
            .position(|b| b.dest == *dest && b.args == *args)
        else {
            return false;
        };
        n.bindings.swap_remove(i);
        self.prune(node, &path);
        true
    }

    pub(super) fn remove_destination(&mut self, dest: &D) -> usize {
        // Unbinding one by one reuses the pruning walk; this runs when a queue is deleted,
        // not per message.
        let doomed: Vec<(Box<str>, FieldTable)> = self
            .nodes
            .iter()
            .flat_map(|n| &n.bindings)
            .filter(|b| b.dest == *dest)
            .map(|b| (b.key.clone(), b.args.clone()))
            .collect();
        doomed
            .iter()
            .filter(|(key, args)| self.unbind(dest, key, args))
            .count()
    }

    /// Walks the trie depth-first with an explicit stack, so a long key cannot overflow the
    /// thread's stack and a typical key allocates nothing.
    pub(super) fn route(&self, routing_key: &str, sink: &mut Sink<'_, D>) {
        self.walk(routing_key, sink, &mut Steps::default());
    }

    fn walk(&self, routing_key: &str, sink: &mut Sink<'_, D>, stack: &mut Steps) {
        stack.push(Step::visit(ROOT, first_word(routing_key)));
        while let Some(step) = stack.pop() {
            let Some(node) = self.nodes.get(step.node) else {
                continue;
            };
            if step.swallow {
                // This node was reached over a `#` edge: it may swallow any number of the
                // remaining words. Queue "swallow one more" first so that "swallow none" (a
                // plain visit) is explored before it: the stack then stays as shallow as the
                // trie instead of growing with the number of words.
                if let Some(pos) = step.rest {
                    stack.push(Step::swallow(step.node, word_at(routing_key, pos).1));
                }
                stack.push(Step::visit(step.node, step.rest));
                continue;
            }
            match step.rest {
                None => {
                    for b in &node.bindings {
                        sink.push(&b.dest);
                    }
                    // a trailing `#` matches zero words
                    if let Some(hash) = node.hash {
                        stack.push(Step::visit(hash, None));
                    }
                }
                Some(pos) => {
                    let (word, rest) = word_at(routing_key, pos);
                    // A routing-key word `*` or `#` is just a word: `words` never holds them.
                    if let Some(&child) = node.words.get(word) {
                        stack.push(Step::visit(child, rest));
                    }
                    if let Some(star) = node.star {
                        stack.push(Step::visit(star, rest));
                    }
                    if let Some(hash) = node.hash {
                        stack.push(Step::swallow(hash, Some(pos)));
                    }
                }
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&D, &str, &FieldTable)> + '_ {
        self.nodes
            .iter()
            .flat_map(|n| &n.bindings)
            .map(|b| (&b.dest, &*b.key, &b.args))
    }

    fn child_or_insert(&mut self, parent: usize, edge: Edge<'_>) -> usize {
        if let Some(child) = self.nodes.get(parent).and_then(|n| n.child(edge)) {
            return child;
        }
        let child = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.nodes.push(Node::default());
                self.nodes.len() - 1
            }
        };
        if let Some(p) = self.nodes.get_mut(parent) {
            p.set_child(edge, Some(child));
        }
        child
    }

    /// Removes the nodes that `unbind` left unused, bottom-up along the path it took.
    fn prune(&mut self, mut node: usize, path: &[(usize, Edge<'_>)]) {
        for &(parent, edge) in path.iter().rev() {
            if !self.nodes.get(node).is_some_and(Node::is_unused) {
                break;
            }
            if let Some(p) = self.nodes.get_mut(parent) {
                p.set_child(edge, None);
            }
            if let Some(n) = self.nodes.get_mut(node) {
                // drop the node's (empty) map and vec allocations along with it
                *n = Node::default();
            }
            self.free.push(node);
            node = parent;
        }
        // With nothing left at the root every other slot is free: give the memory back.
        if self.nodes.get(ROOT).is_some_and(Node::is_unused) {
            self.nodes.truncate(1);
            self.nodes.shrink_to_fit();
            self.free = Vec::new();
        }
    }

    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

/// One pending visit of the routing walk.
#[derive(Clone, Copy, Debug, Default)]
struct Step {
    node: usize,
    /// Byte offset of the next unmatched word of the routing key; `None` when all are matched.
    rest: Option<usize>,
    /// `node` was reached over a `#` edge and may still swallow words.
    swallow: bool,
}

impl Step {
    fn visit(node: usize, rest: Option<usize>) -> Self {
        Step {
            node,
            rest,
            swallow: false,
        }
    }

    fn swallow(node: usize, rest: Option<usize>) -> Self {
        Step {
            node,
            rest,
            swallow: true,
        }
    }
}

/// Steps kept inline before spilling to the heap. The walk is depth-first and leaves at most
/// three steps pending per trie level (literal word, `*`, `#`), so bindings up to about ten
/// words deep never spill, however long the routing key.
const INLINE_STEPS: usize = 32;

/// A LIFO stack of `Step`s that lives on the thread's stack until it outgrows `INLINE_STEPS`.
struct Steps {
    inline: [Step; INLINE_STEPS],
    len: usize,
    /// Only non-empty while `inline` is full, so it always holds the top of the stack.
    spill: Vec<Step>,
}

impl Default for Steps {
    fn default() -> Self {
        Steps {
            inline: [Step::default(); INLINE_STEPS],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl Steps {
    fn push(&mut self, step: Step) {
        match self.inline.get_mut(self.len) {
            Some(slot) if self.spill.is_empty() => {
                *slot = step;
                self.len += 1;
            }
            _ => self.spill.push(step),
        }
    }

    fn pop(&mut self) -> Option<Step> {
        if let Some(step) = self.spill.pop() {
            return Some(step);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Bindings, ExchangeKind, Sink};
    use super::*;
    use amq_protocol::types::AMQPValue;
    use proptest::prelude::*;

    fn none() -> FieldTable {
        FieldTable::default()
    }

    fn routed<D: Clone + Eq + Hash + Ord>(b: &Bindings<D>, key: &str) -> Vec<D> {
        let mut out = Vec::new();
        b.route(key, None, &mut out);
        out.sort();
        out
    }

    fn route_trie(t: &TopicBindings<usize>, key: &str) -> Vec<usize> {
        let mut out = Vec::new();
        t.route(key, &mut Sink::new(&mut out));
        out.sort_unstable();
        out
    }

    /// The reference semantics, written the obvious (exponential) way over word slices.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", p_rest)), _) => {
                reference(p_rest, key)
                    || key
                        .split_first()
                        .is_some_and(|(_, k)| reference(pattern, k))
            }
            (Some((p, p_rest)), Some((k, k_rest))) => {
                (*p == "*" || p == k) && reference(p_rest, k_rest)
            }
            _ => false,
        }
    }

    fn split(key: &str) -> Vec<&str> {
        words(key).collect()
    }

    // The canonical table of RabbitMQ's deps/rabbit/test/routing_SUITE.erl (`topic1/1`):
    // the same bindings, the same routing keys and the same expected queues, then the same
    // bindings removed, then the exchange deleted.
    #[test]
    fn rabbitmq_routing_suite_golden_table() {
        let mut foo_bar = FieldTable::default();
        foo_bar.insert("foo".into(), AMQPValue::LongString("bar".into()));
        let mut foo_baz = FieldTable::default();
        foo_baz.insert("foo".into(), AMQPValue::LongString("baz".into()));
        let bindings: Vec<(&str, &str, FieldTable)> = vec![
            ("a.b.c", "t1", none()),
            ("a.*.c", "t2", none()),
            ("a.#.b", "t3", none()),
            ("a.b.b.c", "t4", none()),
            ("#", "t5", none()),
            ("#.#", "t6", none()),
            ("#.b", "t7", none()),
            ("*.*", "t8", none()),
            ("a.*", "t9", none()),
            ("*.b.c", "t10", none()),
            ("a.#", "t11", none()),
            ("a.#.#", "t12", none()),
            ("b.b.c", "t13", none()),
            ("a.b.b", "t14", none()),
            ("a.b", "t15", none()),
            ("b.c", "t16", none()),
            ("", "t17", none()),
            ("*.*.*", "t18", none()),
            ("vodka.martini", "t19", none()),
            ("a.b.c", "t20", none()),
            ("*.#", "t21", none()),
            ("#.*.#", "t22", none()),
            ("*.#.#", "t23", none()),
            ("*", "t25", none()),
            ("#.b.#", "t26", none()),
            ("args-test", "t27", foo_bar),
            // two bindings of t27 that differ only in their arguments ("Note aliasing")
            ("args-test", "t27", foo_baz),
        ];
        let mut x = Bindings::new(ExchangeKind::Topic);
        for (key, queue, args) in &bindings {
            assert_eq!(x.bind(*queue, key, args), Ok(true), "{key} -> {queue}");
        }
        assert_eq!(x.len(), 27);

        // expected queues as in the suite, space-separated
        let check = |x: &Bindings<&str>, table: &[(&str, &str)]| {
            for (key, expected) in table {
                let mut expected: Vec<&str> = expected.split_whitespace().collect();
                expected.sort_unstable();
                assert_eq!(routed(x, key), expected, "routing key {key:?}");
            }
        };
        #[rustfmt::skip]
        check(&x, &[
            ("a.b.c",               "t1 t2 t5 t6 t10 t11 t12 t18 t20 t21 t22 t23 t26"),
            ("a.b",                 "t3 t5 t6 t7 t8 t9 t11 t12 t15 t21 t22 t23 t26"),
            ("a.b.b",               "t3 t5 t6 t7 t11 t12 t14 t18 t21 t22 t23 t26"),
            ("",                    "t5 t6 t17"),
            ("b.c.c",               "t5 t6 t18 t21 t22 t23 t26"),
            ("a.a.a.a.a",           "t5 t6 t11 t12 t21 t22 t23"),
            ("vodka.gin",           "t5 t6 t8 t21 t22 t23"),
            ("vodka.martini",       "t5 t6 t8 t19 t21 t22 t23"),
            ("b.b.c",               "t5 t6 t10 t13 t18 t21 t22 t23 t26"),
            ("nothing.here.at.all", "t5 t6 t21 t22 t23"),
            ("oneword",             "t5 t6 t21 t22 t23 t25"),
            ("args-test",           "t5 t6 t21 t22 t23 t25 t27"),
        ]);

        // the suite removes bindings number 1, 5, 11, 19, 21 and 27 (1-based)
        for n in [1, 5, 11, 19, 21, 27] {
            let (key, queue, args) = &bindings[n - 1];
            assert!(x.unbind(queue, key, args), "unbind {key} -> {queue}");
        }
        #[rustfmt::skip]
        check(&x, &[
            ("a.b.c",               "t2 t6 t10 t12 t18 t20 t22 t23 t26"),
            ("a.b",                 "t3 t6 t7 t8 t9 t12 t15 t22 t23 t26"),
            ("a.b.b",               "t3 t6 t7 t12 t14 t18 t22 t23 t26"),
            ("",                    "t6 t17"),
            ("b.c.c",               "t6 t18 t22 t23 t26"),
            ("a.a.a.a.a",           "t6 t12 t22 t23"),
            ("vodka.gin",           "t6 t8 t22 t23"),
            ("vodka.martini",       "t6 t8 t22 t23"),
            ("b.b.c",               "t6 t10 t13 t18 t22 t23 t26"),
            ("nothing.here.at.all", "t6 t22 t23"),
            ("oneword",             "t6 t22 t23 t25"),
            ("args-test",           "t6 t22 t23 t25 t27"),
        ]);

        // deleting the exchange: here, every destination goes
        let queues: Vec<&str> = x.iter().map(|(q, _, _)| *q).collect();
        for q in queues {
            x.remove_destination(&q);
        }
        assert!(x.is_empty());
        check(&x, &[("a.b.c", ""), ("b.b.c", ""), ("", "")]);
    }

    #[test]
    fn empty_words_and_the_empty_key() {
        let assert_routes = |x: &Bindings<&str>, key: &str, expected: &[&str]| {
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            assert_eq!(routed(x, key), expected, "routing key {key:?}");
        };
        let mut x = Bindings::new(ExchangeKind::Topic);
        for (key, queue) in [
            ("a.*.b", "star-in-middle"),
            ("*", "one-word"),
            ("#", "anything"),
            ("a.#", "a-and-more"),
            ("a.*", "a-and-one"),
            ("", "empty"),
            ("a.", "a-then-empty"),
            ("*.*", "two-words"),
        ] {
            assert_eq!(x.bind(queue, key, &none()), Ok(true));
        }
        // `*` matches the empty word between two dots
        assert_routes(&x, "a..b", &["anything", "a-and-more", "star-in-middle"]);
        // the empty key is zero words: `*` does not match it, `#` does
        assert_routes(&x, "", &["anything", "empty"]);
        // "a." is the words `a` and ``
        assert_routes(
            &x,
            "a.",
            &[
                "a-and-more",
                "a-and-one",
                "a-then-empty",
                "anything",
                "two-words",
            ],
        );
        // "." is two empty words
        assert_routes(&x, ".", &["anything", "two-words"]);
        // `#` matches zero words after `a`
        assert_routes(&x, "a", &["a-and-more", "anything", "one-word"]);
        // wildcards in a routing key are plain words
        assert_routes(&x, "*", &["anything", "one-word"]);
    }

    #[test]
    fn one_copy_per_destination_and_idempotent_bind() {
        let mut x = Bindings::new(ExchangeKind::Topic);
        assert_eq!(x.bind("q", "a.*", &none()), Ok(true));
        assert_eq!(x.bind("q", "#", &none()), Ok(true));
        assert_eq!(x.bind("q", "#.#", &none()), Ok(true));
        assert_eq!(x.bind("q", "#", &none()), Ok(false));
        assert_eq!(x.len(), 3);
        assert_eq!(routed(&x, "a.b"), vec!["q"]);
    }

    #[test]
    fn unbind_prunes_the_trie() {
        let mut t = TopicBindings::default();
        assert!(t.bind(1, "a.b.c", &none()));
        assert!(t.bind(2, "a.b", &none()));
        assert!(t.bind(3, "a.#.*", &none()));
        assert_eq!(t.live_nodes(), 1 + 3 + 2);

        assert!(!t.unbind(&1, "a.b", &none()));
        assert!(t.unbind(&1, "a.b.c", &none()));
        // `c` is gone, `a.b` stays for binding 2
        assert_eq!(t.live_nodes(), 1 + 2 + 2);
        assert_eq!(route_trie(&t, "a.b"), vec![2, 3]);
        assert_eq!(route_trie(&t, "a.b.c"), vec![3]);

        assert!(t.unbind(&2, "a.b", &none()));
        assert_eq!(t.live_nodes(), 1 + 1 + 2);
        // freed slots are reused before the arena grows
        assert!(t.bind(4, "x.y", &none()));
        assert_eq!(t.nodes.len(), 1 + 3 + 2);

        assert_eq!(t.remove_destination(&3), 1);
        assert_eq!(t.remove_destination(&4), 1);
        assert_eq!(t.nodes.len(), 1);
        assert!(t.free.is_empty());
        assert!(route_trie(&t, "a.b").is_empty());
    }

    #[test]
    fn very_long_keys_do_not_recurse() {
        let long: String = vec!["w"; 5_000].join(".");
        // `#` followed by a literal tail costs O(words²) to route, as in RabbitMQ: keep it shorter
        let medium: String = vec!["w"; 200].join(".");
        let hash_medium = format!("#.{medium}");
        let mut t = TopicBindings::default();
        assert!(t.bind(1, &long, &none()));
        assert!(t.bind(2, &hash_medium, &none()));
        assert!(t.bind(3, "#.w", &none()));
        assert_eq!(route_trie(&t, &long), vec![1, 2, 3]);
        assert_eq!(route_trie(&t, &medium), vec![2, 3]);
        assert!(t.unbind(&1, &long, &none()));
        assert!(t.unbind(&2, &hash_medium, &none()));
        assert!(t.unbind(&3, "#.w", &none()));
        assert_eq!(t.nodes.len(), 1);
        // dropping a deep trie must not recurse either
        let mut deep = TopicBindings::default();
        assert!(deep.bind(1, &long, &none()));
        drop(deep);
    }

    #[test]
    fn routing_a_long_key_stays_on_the_inline_stack() {
        let mut t = TopicBindings::default();
        for (i, p) in ["#", "#.#", "a.#.b", "*.*.#", "#.a.*.#"].iter().enumerate() {
            assert!(t.bind(i, p, &none()));
        }
        let key = vec!["a"; 120].join(".");
        let mut out = Vec::new();
        let mut stack = Steps::default();
        t.walk(&key, &mut Sink::new(&mut out), &mut stack);
        out.sort_unstable();
        assert_eq!(out, vec![0, 1, 3, 4]);
        assert_eq!(stack.spill.capacity(), 0, "the walk allocated");
    }

    #[test]
    fn reference_matcher_sanity() {
        assert!(reference(&split("a.*.b"), &split("a..b")));
        assert!(reference(&split("#"), &split("")));
        assert!(!reference(&split("*"), &split("")));
        assert!(reference(&split("#.b.#"), &split("a.b.c")));
        assert!(!reference(&split("a.#.b"), &split("a.c")));
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "*", "#"]), 0..6)
            .prop_map(|w| w.join("."))
    }

    fn routing_key() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "*"]), 0..7)
            .prop_map(|w| w.join("."))
    }

    proptest! {
        #[test]
        fn trie_agrees_with_reference_matcher(
            patterns in prop::collection::vec(pattern(), 1..12),
            keys in prop::collection::vec(routing_key(), 1..8),
            unbind_first in prop::collection::vec(any::<bool>(), 12),
        ) {
            let expected = |live: &[bool], key: &str| -> Vec<usize> {
                let k = split(key);
                patterns
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| live[*i] && reference(&split(p), &k))
                    .map(|(i, _)| i)
                    .collect()
            };
            let mut t = TopicBindings::default();
            for (i, p) in patterns.iter().enumerate() {
                prop_assert!(t.bind(i, p, &none()));
            }
            let mut live = vec![true; patterns.len()];
            for key in &keys {
                prop_assert_eq!(route_trie(&t, key), expected(&live, key), "key {:?}", key);
            }

            for (i, p) in patterns.iter().enumerate() {
                if unbind_first[i] {
                    prop_assert!(t.unbind(&i, p, &none()));
                    live[i] = false;
                }
            }
            for key in &keys {
                prop_assert_eq!(route_trie(&t, key), expected(&live, key), "key {:?}", key);
            }

            for (i, p) in patterns.iter().enumerate() {
                if live[i] {
                    prop_assert!(t.unbind(&i, p, &none()));
                }
            }
            prop_assert_eq!(t.nodes.len(), 1);
            prop_assert_eq!(t.live_nodes(), 1);
        }
    }
}
