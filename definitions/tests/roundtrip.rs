//! Parsing realistic definitions files in RabbitMQ's format, exporting them and parsing the
//! export again: nothing is lost, unknown fields included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use warren_definitions::{
    verify_password, Definitions, DestinationType, HashingAlgorithm, Tags, RABBITMQ_IMPORT_ORDER,
};

const FULL: &str = include_str!("fixtures/full.json");

fn full() -> Definitions {
    Definitions::from_json(FULL).expect("fixture parses")
}

#[test]
fn full_file_is_valid() {
    if let Err(problems) = full().validate() {
        panic!("unexpected problems: {problems:#?}");
    }
}

#[test]
fn full_file_round_trips_through_export() {
    let defs = full();
    let exported = defs.to_json_pretty();
    let reparsed = Definitions::from_json(&exported).unwrap();
    assert_eq!(reparsed, defs);

    // The file spells out every field RabbitMQ writes, so the export is the same JSON
    // value as the input: nothing added, nothing dropped, no type changed.
    let original: Value = serde_json::from_str(FULL).unwrap();
    let exported: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(exported, original);

    let compact = Definitions::from_json(&defs.to_json()).unwrap();
    assert_eq!(compact, defs);
}

#[test]
fn every_section_is_read() {
    let defs = full();
    assert_eq!(defs.version(), Some("3.13.7"));
    assert_eq!(defs.product_name.as_deref(), Some("RabbitMQ"));
    assert_eq!(defs.users.len(), 4);
    assert_eq!(defs.vhosts.len(), 3);
    assert_eq!(defs.permissions.len(), 5);
    assert_eq!(defs.topic_permissions.len(), 2);
    assert_eq!(defs.parameters.len(), 3);
    assert_eq!(defs.global_parameters.len(), 2);
    assert_eq!(defs.policies.len(), 4);
    assert_eq!(defs.queues.len(), 7);
    assert_eq!(defs.exchanges.len(), 8);
    assert_eq!(defs.bindings.len(), 12);

    let kinds: Vec<&str> = defs.exchanges.iter().map(|x| x.kind.as_str()).collect();
    for kind in ["direct", "fanout", "topic", "headers", "x-delayed-message"] {
        assert!(kinds.contains(&kind), "{kind} missing");
    }
    let e2e = defs
        .bindings
        .iter()
        .filter(|b| b.destination_type == DestinationType::Exchange)
        .count();
    assert_eq!(e2e, 3);
}

#[test]
fn tags_keep_their_form() {
    let defs = full();
    let admin = defs.find_user("admin").unwrap();
    assert_eq!(admin.tags, Tags::List(vec!["administrator".into()]));
    let legacy = defs.find_user("legacy-monitor").unwrap();
    assert_eq!(legacy.tags, Tags::Csv("management,monitoring".into()));
    assert_eq!(legacy.tags.names(), ["management", "monitoring"]);
    assert!(legacy.tags.contains("monitoring"));
    assert!(defs.find_user("x509-client").unwrap().tags.is_empty());

    let exported: Value = serde_json::from_str(&defs.to_json()).unwrap();
    assert_eq!(exported["users"][0]["tags"], json!(["administrator"]));
    assert_eq!(exported["users"][1]["tags"], json!("management,monitoring"));
    assert_eq!(exported["users"][3]["tags"], json!(""));
}

#[test]
fn comma_separated_tags_are_trimmed() {
    assert_eq!(
        Tags::Csv(" administrator , ,policymaker".into()).names(),
        ["administrator", "policymaker"]
    );
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let defs = full();
    assert_eq!(
        defs.extra["explanation"],
        json!("hand-written for Warren's tests in the format of rabbitmqctl export_definitions")
    );
    let billing = defs.find_user("billing").unwrap();
    assert_eq!(billing.extra["x-owner-team"], json!("payments"));
    assert_eq!(
        defs.find_vhost("analytics").unwrap().extra["cluster_state"],
        json!({"rabbit@node1": "running"})
    );
    assert_eq!(
        defs.find_queue("billing", "payments").unwrap().extra["node"],
        json!("rabbit@node1")
    );
    assert_eq!(
        defs.bindings[11].extra["properties_key"],
        json!("click.%23")
    );

    let exported: Value = serde_json::from_str(&defs.to_json_pretty()).unwrap();
    assert_eq!(exported["users"][2]["x-owner-team"], json!("payments"));
    assert_eq!(
        exported["bindings"][11]["properties_key"],
        json!("click.%23")
    );
    assert!(exported["explanation"].is_string());
}

#[test]
fn arguments_keep_their_json_types() {
    let defs = full();
    let orders = defs.find_queue("/", "orders").unwrap();
    assert_eq!(orders.arguments["x-message-ttl"], json!(86400000));
    assert_eq!(orders.arguments["x-overflow"], json!("reject-publish-dlx"));
    let sessions = defs.find_queue("/", "temp.sessions").unwrap();
    assert_eq!(sessions.arguments["x-single-active-consumer"], json!(true));
    assert_eq!(
        defs.bindings[7].arguments["version"],
        json!(2),
        "header values stay numbers"
    );
    let shovel = defs
        .find_parameter("billing", "shovel", "invoices-to-archive")
        .unwrap();
    assert_eq!(shovel.value["ack-mode"], json!("on-confirm"));
    assert_eq!(
        defs.find_global_parameter("cluster_name").unwrap().value,
        json!("rabbit@warren-test")
    );
}

#[test]
fn password_hashes_in_the_file_verify() {
    let defs = full();
    let cases = [
        ("admin", "test12", HashingAlgorithm::Sha256),
        ("legacy-monitor", "simon", HashingAlgorithm::Md5),
        ("billing", "test12", HashingAlgorithm::Sha512),
    ];
    for (name, password, algorithm) in cases {
        let user = defs.find_user(name).unwrap();
        assert_eq!(defs.hashing_algorithm_of(user), Ok(algorithm));
        let hash = user.password_hash.as_deref().unwrap();
        assert!(verify_password(algorithm, hash, password), "{name}");
        assert!(!verify_password(algorithm, hash, "wrong"), "{name}");
    }
    let passwordless = defs.find_user("x509-client").unwrap();
    assert!(!verify_password(HashingAlgorithm::Sha256, "", ""));
    assert_eq!(passwordless.password_hash.as_deref(), Some(""));
}

#[test]
fn lookups_respect_vhosts() {
    let defs = full();
    assert!(defs.find_queue("billing", "invoices").is_some());
    assert!(defs.find_queue("analytics", "invoices").is_some());
    assert!(defs.find_queue("/", "invoices").is_none());
    assert_eq!(
        defs.find_queue("billing", "invoices")
            .unwrap()
            .queue_type
            .as_deref(),
        Some("quorum")
    );
    assert!(defs.has_exchange("billing", "amq.topic"));
    assert!(defs.has_exchange("billing", "billing.events"));
    assert!(!defs.has_exchange("/", "billing.events"));
    assert!(defs.find_exchange("/", "amq.direct").is_none());
    assert_eq!(
        defs.find_permission("billing", "billing").unwrap().write,
        "^billing\\."
    );
    assert!(defs.find_permission("billing", "/").is_none());
    assert!(defs
        .find_topic_permission("billing", "billing", "billing.events")
        .is_some());
    assert_eq!(defs.find_policy("billing", "dlx-all").unwrap().priority, 10);
}

/// A hand-written file that leaves out most optional keys, as files in the wild do.
#[test]
fn missing_keys_take_rabbitmq_defaults() {
    let defs = Definitions::from_json(
        r#"{
          "users": [{"name": "u", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"}],
          "vhosts": [{"name": "/"}],
          "queues": [{"name": "q", "vhost": "/"}],
          "exchanges": [{"name": "x", "vhost": "/", "type": "topic"}],
          "bindings": [{"source": "x", "vhost": "/", "destination": "q"}],
          "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": {"max-length": 5}}]
        }"#,
    )
    .unwrap();
    assert_eq!(defs.rabbit_version, None);
    assert!(defs.permissions.is_empty() && defs.global_parameters.is_empty());
    let user = &defs.users[0];
    assert_eq!(user.hashing_algorithm, None);
    assert_eq!(
        defs.hashing_algorithm_of(user),
        Ok(HashingAlgorithm::Sha256)
    );
    assert!(user.tags.is_empty());
    let queue = &defs.queues[0];
    assert!(queue.durable && !queue.auto_delete && queue.arguments.is_empty());
    assert_eq!(queue.queue_type, None);
    let exchange = &defs.exchanges[0];
    assert!(exchange.durable && !exchange.auto_delete && !exchange.internal);
    let binding = &defs.bindings[0];
    assert_eq!(binding.destination_type, DestinationType::Queue);
    assert_eq!(binding.routing_key, "");
    assert_eq!(defs.policies[0].apply_to, "all");
    assert_eq!(defs.policies[0].priority, 0);
    assert!(defs.validate().is_ok());

    let reparsed = Definitions::from_json(&defs.to_json_pretty()).unwrap();
    assert_eq!(reparsed, defs);
}

/// RabbitMQ before 3.6 wrote no `hashing_algorithm`; its hashes are MD5.
#[test]
fn old_files_without_hashing_algorithm_use_md5() {
    let defs = Definitions::from_json(
        r#"{"rabbit_version": "3.5.7",
            "users": [{"name": "simon", "password_hash": "ytUIm8s3AnKsXQjptplKFytfVxI=", "tags": "administrator"}],
            "vhosts": [{"name": "/"}]}"#,
    )
    .unwrap();
    let user = &defs.users[0];
    assert_eq!(defs.hashing_algorithm_of(user), Ok(HashingAlgorithm::Md5));
    assert!(verify_password(
        HashingAlgorithm::Md5,
        user.password_hash.as_deref().unwrap(),
        "simon"
    ));
    assert!(defs.validate().is_ok());
}

/// `GET /api/definitions/{vhost}` leaves the vhost out of every object.
#[test]
fn single_vhost_export_keeps_its_shape_and_can_be_filled_in() {
    let json = r#"{
      "rabbit_version": "3.13.7",
      "queues": [{"name": "q", "durable": true, "auto_delete": false, "arguments": {}}],
      "exchanges": [{"name": "x", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
      "bindings": [{"source": "x", "destination": "q", "destination_type": "queue", "routing_key": "", "arguments": {}}],
      "policies": [],
      "parameters": []
    }"#;
    let mut defs = Definitions::from_json(json).unwrap();
    let exported: Value = serde_json::from_str(&defs.to_json()).unwrap();
    assert!(exported["queues"][0].get("vhost").is_none());

    defs.fill_missing_vhost("billing");
    assert_eq!(defs.queues[0].vhost, "billing");
    assert_eq!(defs.bindings[0].vhost, "billing");
    assert!(defs.find_exchange("billing", "x").is_some());
}

#[test]
fn parse_errors_carry_line_and_column() {
    let err =
        Definitions::from_json("{\n  \"users\": [\n    {\"name\": \"a\",}\n  ]\n}").unwrap_err();
    assert_eq!((err.line, err.column), (3, 18));
    assert!(!err.message.contains("line"), "{}", err.message);
    assert!(err.to_string().contains("line 3, column 18"), "{err}");

    let err = Definitions::from_json("{\"queues\": [{\"name\": \"q\", \"durable\": \"yes\"}]}")
        .unwrap_err();
    assert!(err.line >= 1 && err.column > 0, "{err:?}");
    assert!(err.message.contains("invalid type"), "{}", err.message);

    let err = Definitions::from_json("[]").unwrap_err();
    assert!(err.message.contains("invalid type"), "{}", err.message);
}

#[test]
fn unknown_destination_type_is_kept_for_validation() {
    let defs = Definitions::from_json(
        r#"{"bindings": [{"source": "a", "vhost": "/", "destination": "b", "destination_type": "stream"}]}"#,
    )
    .unwrap();
    assert_eq!(
        defs.bindings[0].destination_type,
        DestinationType::Other("stream".into())
    );
    let exported: Value = serde_json::from_str(&defs.to_json()).unwrap();
    assert_eq!(exported["bindings"][0]["destination_type"], json!("stream"));
}

#[test]
fn import_order_follows_rabbitmq() {
    let keys: Vec<&str> = RABBITMQ_IMPORT_ORDER.iter().map(|c| c.key()).collect();
    assert_eq!(
        keys,
        [
            "users",
            "vhosts",
            "permissions",
            "topic_permissions",
            "exchanges",
            "global_parameters",
            "policies",
            "parameters",
            "queues",
            "bindings"
        ]
    );
    assert_eq!(Definitions::rabbitmq_import_order(), &RABBITMQ_IMPORT_ORDER);
}
