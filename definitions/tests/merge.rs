//! Merging documents with import semantics: same identity replaces, new objects append,
//! and merging the same document again changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use warren_definitions::{Definitions, DestinationType, Tags};

const FULL: &str = include_str!("fixtures/full.json");

fn full() -> Definitions {
    Definitions::from_json(FULL).unwrap()
}

/// An update touching every kind of object: some replace, some are new.
const UPDATE: &str = r#"{
  "rabbitmq_version": "4.0.5",
  "product_version": "4.0.5",
  "exported_by": "warren-tests",
  "users": [
    {"name": "admin", "password_hash": "ytUIm8s3AnKsXQjptplKFytfVxI=", "hashing_algorithm": "rabbit_password_hashing_md5", "tags": ["administrator", "policymaker"]},
    {"name": "newcomer", "password_hash": "", "tags": []}
  ],
  "vhosts": [
    {"name": "billing", "description": "Payments only"},
    {"name": "staging"}
  ],
  "permissions": [
    {"user": "billing", "vhost": "billing", "configure": "", "write": "", "read": ".*"},
    {"user": "newcomer", "vhost": "staging", "configure": ".*", "write": ".*", "read": ".*"}
  ],
  "topic_permissions": [
    {"user": "billing", "vhost": "billing", "exchange": "billing.events", "write": "^refund\\.", "read": ".*"},
    {"user": "billing", "vhost": "billing", "exchange": "amq.topic", "write": "", "read": ".*"}
  ],
  "parameters": [
    {"vhost": "billing", "component": "vhost-limits", "name": "limits", "value": {"max-connections": 5}},
    {"vhost": "billing", "component": "shovel", "name": "second", "value": {"src-queue": "payments"}}
  ],
  "global_parameters": [
    {"name": "cluster_name", "value": "rabbit@renamed"},
    {"name": "feature_x", "value": true}
  ],
  "policies": [
    {"vhost": "billing", "name": "dlx-all", "pattern": "^inv", "apply-to": "queues", "definition": {"max-length": 10}, "priority": 3},
    {"vhost": "billing", "name": "ttl", "pattern": ".*", "apply-to": "queues", "definition": {"message-ttl": 1000}, "priority": 0}
  ],
  "queues": [
    {"name": "invoices", "vhost": "billing", "type": "quorum", "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 10}},
    {"name": "invoices", "vhost": "staging", "type": "classic", "durable": false, "auto_delete": true, "arguments": {}}
  ],
  "exchanges": [
    {"name": "broadcast", "vhost": "/", "type": "fanout", "durable": false, "auto_delete": true, "internal": false, "arguments": {}},
    {"name": "broadcast", "vhost": "staging", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}
  ],
  "bindings": [
    {"source": "dlx", "vhost": "/", "destination": "orders.dead", "destination_type": "queue", "routing_key": "orders.dead", "arguments": {}, "note": "same identity, new extra field"},
    {"source": "dlx", "vhost": "/", "destination": "orders.dead", "destination_type": "queue", "routing_key": "orders.dead", "arguments": {"x-extra": 1}},
    {"source": "broadcast", "vhost": "staging", "destination": "invoices", "destination_type": "queue", "routing_key": "", "arguments": {}}
  ]
}"#;

fn update() -> Definitions {
    Definitions::from_json(UPDATE).unwrap()
}

#[test]
fn objects_with_the_same_identity_are_replaced_and_new_ones_appended() {
    let original = full();
    let mut merged = original.clone();
    merged.merge(update());

    // Counts: each list gains exactly its new identities.
    assert_eq!(merged.users.len(), original.users.len() + 1);
    assert_eq!(merged.vhosts.len(), original.vhosts.len() + 1);
    assert_eq!(merged.permissions.len(), original.permissions.len() + 1);
    assert_eq!(
        merged.topic_permissions.len(),
        original.topic_permissions.len() + 1
    );
    assert_eq!(merged.parameters.len(), original.parameters.len() + 1);
    assert_eq!(
        merged.global_parameters.len(),
        original.global_parameters.len() + 1
    );
    assert_eq!(merged.policies.len(), original.policies.len() + 1);
    assert_eq!(merged.queues.len(), original.queues.len() + 1);
    assert_eq!(merged.exchanges.len(), original.exchanges.len() + 1);
    assert_eq!(merged.bindings.len(), original.bindings.len() + 2);

    // Replaced in place, keeping their position.
    assert_eq!(merged.users[0].name, "admin");
    assert_eq!(
        merged.users[0].tags,
        Tags::List(vec!["administrator".into(), "policymaker".into()])
    );
    assert_eq!(
        merged.users[0].hashing_algorithm.as_deref(),
        Some("rabbit_password_hashing_md5")
    );
    // Replacement is whole-object, as in RabbitMQ's import: fields the update leaves out
    // are gone, not kept from before.
    assert_eq!(merged.users[0].limits, None);
    assert_eq!(
        merged.vhosts[1].description.as_deref(),
        Some("Payments only")
    );
    assert_eq!(merged.vhosts[1].default_queue_type, None);
    assert_eq!(
        merged.find_permission("billing", "billing").unwrap().write,
        ""
    );
    assert_eq!(
        merged
            .find_topic_permission("billing", "billing", "billing.events")
            .unwrap()
            .write,
        "^refund\\."
    );
    assert_eq!(
        merged
            .find_parameter("billing", "vhost-limits", "limits")
            .unwrap()
            .value,
        json!({"max-connections": 5})
    );
    assert_eq!(
        merged.find_global_parameter("cluster_name").unwrap().value,
        json!("rabbit@renamed")
    );
    assert_eq!(
        merged.find_policy("billing", "dlx-all").unwrap().priority,
        3
    );
    let invoices = merged.find_queue("billing", "invoices").unwrap();
    assert_eq!(invoices.arguments["x-delivery-limit"], json!(10));
    // Same name in another vhost is another queue.
    assert_eq!(
        merged.find_queue("analytics", "invoices").unwrap(),
        original.find_queue("analytics", "invoices").unwrap()
    );
    assert!(merged.find_queue("staging", "invoices").is_some());
    assert!(!merged.find_exchange("/", "broadcast").unwrap().durable);
    assert!(
        merged
            .find_exchange("staging", "broadcast")
            .unwrap()
            .durable
    );

    // Binding identity includes the arguments: the first update binding replaced the
    // original, the one with different arguments was appended.
    assert_eq!(
        merged.bindings[0].extra["note"],
        json!("same identity, new extra field")
    );
    let n = merged.bindings.len();
    assert_eq!(merged.bindings[n - 2].arguments["x-extra"], json!(1));
    assert_eq!(merged.bindings[n - 1].vhost, "staging");
    assert_eq!(
        merged.bindings[n - 1].destination_type,
        DestinationType::Queue
    );

    // Untouched objects are exactly as they were.
    assert_eq!(merged.users[1], original.users[1]);
    assert_eq!(
        merged.find_queue("/", "orders"),
        original.find_queue("/", "orders")
    );
}

#[test]
fn version_fields_and_extras_come_from_the_update_when_present() {
    let mut merged = full();
    merged.merge(update());
    assert_eq!(merged.rabbitmq_version.as_deref(), Some("4.0.5"));
    assert_eq!(merged.product_version.as_deref(), Some("4.0.5"));
    // Absent in the update: kept.
    assert_eq!(merged.rabbit_version.as_deref(), Some("3.13.7"));
    assert_eq!(merged.product_name.as_deref(), Some("RabbitMQ"));
    assert_eq!(merged.version(), Some("4.0.5"));
    assert_eq!(merged.extra["exported_by"], json!("warren-tests"));
    assert!(merged.extra.contains_key("explanation"));
}

#[test]
fn merging_the_same_document_twice_changes_nothing() {
    let mut once = full();
    once.merge(update());
    let mut twice = once.clone();
    twice.merge(update());
    assert_eq!(twice, once);

    // A document merged into itself is unchanged too.
    let mut self_merged = full();
    self_merged.merge(full());
    assert_eq!(self_merged, full());
}

#[test]
fn merging_into_an_empty_document_copies_it() {
    let mut empty = Definitions::default();
    empty.merge(full());
    assert_eq!(empty, full());
    empty.merge(full());
    assert_eq!(empty, full());
}

#[test]
fn merged_document_is_still_valid_and_round_trips() {
    let mut merged = full();
    merged.merge(update());
    assert_eq!(merged.validate(), Ok(()));
    let reparsed = Definitions::from_json(&merged.to_json_pretty()).unwrap();
    assert_eq!(reparsed, merged);
}
