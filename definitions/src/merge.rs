//! Object identities and the import-style merge of one document into another: an object
//! replaces the one with the same identity, new objects are appended.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::model::{
    Binding, Definitions, DestinationType, Exchange, GlobalParameter, JsonMap, Parameter,
    Permission, Policy, Queue, TopicPermission, User, Vhost,
};

/// What makes two objects of one kind "the same object" for import and duplicate checks.
///
/// | kind | identity |
/// |---|---|
/// | user, vhost, global parameter | name |
/// | permission | (user, vhost) |
/// | topic permission | (user, vhost, exchange) |
/// | parameter | (vhost, component, name) |
/// | policy, queue, exchange | (vhost, name) |
/// | binding | (vhost, source, destination, destination_type, routing_key, arguments) |
pub trait Identity {
    /// The identity, borrowing from the object.
    type Key<'a>: Hash + Eq
    where
        Self: 'a;

    /// This object's identity.
    fn identity(&self) -> Self::Key<'_>;
}

impl Identity for User {
    type Key<'a> = &'a str;
    fn identity(&self) -> &str {
        &self.name
    }
}

impl Identity for Vhost {
    type Key<'a> = &'a str;
    fn identity(&self) -> &str {
        &self.name
    }
}

impl Identity for Permission {
    type Key<'a> = (&'a str, &'a str);
    fn identity(&self) -> (&str, &str) {
        (&self.user, &self.vhost)
    }
}

impl Identity for TopicPermission {
    type Key<'a> = (&'a str, &'a str, &'a str);
    fn identity(&self) -> (&str, &str, &str) {
        (&self.user, &self.vhost, &self.exchange)
    }
}

impl Identity for Parameter {
    type Key<'a> = (&'a str, &'a str, &'a str);
    fn identity(&self) -> (&str, &str, &str) {
        (&self.vhost, &self.component, &self.name)
    }
}

impl Identity for GlobalParameter {
    type Key<'a> = &'a str;
    fn identity(&self) -> &str {
        &self.name
    }
}

impl Identity for Policy {
    type Key<'a> = (&'a str, &'a str);
    fn identity(&self) -> (&str, &str) {
        (&self.vhost, &self.name)
    }
}

impl Identity for Queue {
    type Key<'a> = (&'a str, &'a str);
    fn identity(&self) -> (&str, &str) {
        (&self.vhost, &self.name)
    }
}

impl Identity for Exchange {
    type Key<'a> = (&'a str, &'a str);
    fn identity(&self) -> (&str, &str) {
        (&self.vhost, &self.name)
    }
}

/// A binding's identity. Arguments take part in equality but not in the hash (a JSON map
/// has no hash); equal keys still hash equally, which is all `HashMap` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingKey<'a> {
    /// Vhost name.
    pub vhost: &'a str,
    /// Source exchange.
    pub source: &'a str,
    /// Destination queue or exchange.
    pub destination: &'a str,
    /// Queue or exchange.
    pub destination_type: &'a DestinationType,
    /// Routing key.
    pub routing_key: &'a str,
    /// Binding arguments.
    pub arguments: &'a JsonMap,
}

impl Hash for BindingKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.vhost.hash(state);
        self.source.hash(state);
        self.destination.hash(state);
        self.destination_type.hash(state);
        self.routing_key.hash(state);
    }
}

impl Identity for Binding {
    type Key<'a> = BindingKey<'a>;
    fn identity(&self) -> BindingKey<'_> {
        BindingKey {
            vhost: &self.vhost,
            source: &self.source,
            destination: &self.destination,
            destination_type: &self.destination_type,
            routing_key: &self.routing_key,
            arguments: &self.arguments,
        }
    }
}

impl Definitions {
    /// Merges `other` into `self` with import semantics: each object of `other` replaces
    /// the object of `self` with the same [`Identity`], or is appended if there is none;
    /// the version and product fields take `other`'s value when it has one; unknown
    /// top-level fields of `other` overwrite those of the same name.
    ///
    /// Merging the same document twice gives the same result as merging it once.
    pub fn merge(&mut self, other: Definitions) {
        let Definitions {
            rabbit_version,
            rabbitmq_version,
            product_name,
            product_version,
            users,
            vhosts,
            permissions,
            topic_permissions,
            parameters,
            global_parameters,
            policies,
            queues,
            exchanges,
            bindings,
            extra,
        } = other;
        for (slot, value) in [
            (&mut self.rabbit_version, rabbit_version),
            (&mut self.rabbitmq_version, rabbitmq_version),
            (&mut self.product_name, product_name),
            (&mut self.product_version, product_version),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        merge_list(&mut self.users, users);
        merge_list(&mut self.vhosts, vhosts);
        merge_list(&mut self.permissions, permissions);
        merge_list(&mut self.topic_permissions, topic_permissions);
        merge_list(&mut self.parameters, parameters);
        merge_list(&mut self.global_parameters, global_parameters);
        merge_list(&mut self.policies, policies);
        merge_list(&mut self.queues, queues);
        merge_list(&mut self.exchanges, exchanges);
        merge_list(&mut self.bindings, bindings);
        self.extra.extend(extra);
    }
}

/// Replaces or appends each of `incoming` in `existing`, by identity, in one pass over
/// each list (definitions files can hold thousands of queues).
fn merge_list<T: Identity>(existing: &mut Vec<T>, incoming: Vec<T>) {
    // Plan first, mutate second: the index borrows both lists, so it must be gone before
    // `existing` changes. A new identity gets the next free position, so a later object
    // of `incoming` with the same identity replaces the one just appended.
    let plan: Vec<usize> = {
        let mut index: HashMap<T::Key<'_>, usize> = HashMap::with_capacity(existing.len());
        for (position, item) in existing.iter().enumerate() {
            index.entry(item.identity()).or_insert(position);
        }
        let mut next = existing.len();
        incoming
            .iter()
            .map(|item| {
                *index.entry(item.identity()).or_insert_with(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    };
    for (item, position) in incoming.into_iter().zip(plan) {
        match existing.get_mut(position) {
            Some(slot) => *slot = item,
            // Positions past the end are handed out in order, so this is always the end.
            None => existing.push(item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, durable: bool) -> Queue {
        Queue {
            name: name.to_owned(),
            vhost: "/".to_owned(),
            durable,
            ..Queue::default()
        }
    }

    #[test]
    fn later_duplicates_in_incoming_win_and_appends_keep_order() {
        let mut existing = vec![queue("a", true)];
        merge_list(
            &mut existing,
            vec![
                queue("b", true),
                queue("a", false),
                queue("b", false),
                queue("c", true),
            ],
        );
        assert_eq!(
            existing,
            vec![queue("a", false), queue("b", false), queue("c", true)]
        );
    }

    #[test]
    fn binding_identity_includes_arguments() {
        let mut with_args = Binding {
            source: "x".into(),
            destination: "q".into(),
            ..Binding::default()
        };
        let plain = with_args.clone();
        with_args
            .arguments
            .insert("x-match".into(), serde_json::json!("any"));
        assert_ne!(plain.identity(), with_args.identity());
        let mut list = vec![plain.clone()];
        merge_list(&mut list, vec![with_args.clone(), plain.clone()]);
        assert_eq!(list, vec![plain, with_args]);
    }
}
