//! Validation of definitions files: a file with many mistakes gets every one of them
//! reported, each at the right JSON location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warren_definitions::{
    Definitions, Exchange, Problem, Queue, ValidationOptions, Vhost, KNOWN_EXCHANGE_TYPES,
};

const BROKEN: &str = include_str!("fixtures/broken.json");

/// Every mistake planted in `fixtures/broken.json`: where, and a fragment of the reason.
const EXPECTED: &[(&str, &str)] = &[
    (
        "/users/1/name",
        "duplicate user 'admin' (first at /users/0)",
    ),
    ("/users/2/name", "user name is missing"),
    (
        "/users/3/hashing_algorithm",
        "unknown hashing algorithm 'rabbit_password_hashing_bcrypt'",
    ),
    ("/users/4/password_hash", "decodes to 20 bytes, expected 36"),
    ("/users/5/password_hash", "not valid base64"),
    ("/users/6/password", "both password and password_hash"),
    (
        "/vhosts/1/default_queue_type",
        "unknown queue type 'mirrored'",
    ),
    ("/vhosts/2/name", "duplicate vhost '/' (first at /vhosts/0)"),
    ("/permissions/1/user", "user 'ghost' is not listed in users"),
    (
        "/permissions/2/vhost",
        "vhost 'staging' is not listed in vhosts",
    ),
    (
        "/permissions/3/configure",
        "'(unclosed' is not a valid regular expression",
    ),
    (
        "/permissions/3/read",
        "'[z-a]' is not a valid regular expression",
    ),
    (
        "/permissions/3/user",
        "duplicate permissions of user 'admin' in vhost '/'",
    ),
    ("/topic_permissions/0/user", "user 'ghost' is not listed"),
    (
        "/topic_permissions/0/vhost",
        "vhost 'nowhere' is not listed",
    ),
    ("/topic_permissions/1/exchange", "exchange is missing"),
    (
        "/topic_permissions/1/write",
        "'*' is not a valid regular expression",
    ),
    ("/parameters/0/vhost", "vhost 'nowhere' is not listed"),
    ("/parameters/1/component", "component is missing"),
    ("/parameters/1/name", "parameter name is missing"),
    (
        "/parameters/3/name",
        "duplicate parameter 's2' of component 'shovel'",
    ),
    (
        "/global_parameters/1/name",
        "duplicate global parameter 'cluster_name'",
    ),
    (
        "/policies/0/pattern",
        "'^(a|b' is not a valid regular expression",
    ),
    (
        "/policies/0/definition/message-ttl",
        "must be a non-negative integer, not -5",
    ),
    (
        "/policies/0/definition/overflow",
        "must be one of 'drop-head'",
    ),
    ("/policies/1/apply-to", "unknown apply-to 'everything'"),
    ("/policies/1/definition", "definition is empty"),
    ("/policies/1/name", "duplicate policy 'p' in vhost '/'"),
    ("/policies/2/vhost", "vhost 'gone' is not listed"),
    (
        "/queues/0/arguments/x-dead-letter-exchange",
        "must be a string, not 7",
    ),
    (
        "/queues/0/arguments/x-dead-letter-routing-key",
        "must be a string, not 5",
    ),
    (
        "/queues/0/arguments/x-delivery-limit",
        "(or -1 for no limit), not -3",
    ),
    (
        "/queues/0/arguments/x-expires",
        "must be an integer ≥ 1, not 0",
    ),
    (
        "/queues/0/arguments/x-max-length",
        "must be a non-negative integer, not -1",
    ),
    (
        "/queues/0/arguments/x-max-length-bytes",
        "must be a non-negative integer, not 1.5",
    ),
    (
        "/queues/0/arguments/x-max-priority",
        "must be an integer from 1 to 255, not 300",
    ),
    (
        "/queues/0/arguments/x-message-ttl",
        "must be a non-negative integer, not \"60000\"",
    ),
    ("/queues/0/arguments/x-overflow", "not \"drop-tail\""),
    (
        "/queues/0/arguments/x-queue-mode",
        "must be one of 'default', 'lazy'",
    ),
    (
        "/queues/0/arguments/x-queue-type",
        "must be one of 'classic', 'quorum', 'stream'",
    ),
    (
        "/queues/0/arguments/x-single-active-consumer",
        "must be a boolean",
    ),
    ("/queues/1/name", "queue name is missing"),
    (
        "/queues/2/arguments/x-queue-type",
        "disagrees with the queue's type 'quorum'",
    ),
    (
        "/queues/2/name",
        "duplicate queue 'orders' in vhost '/' (first at /queues/0)",
    ),
    (
        "/queues/3/arguments/x-dead-letter-routing-key",
        "needs x-dead-letter-exchange",
    ),
    ("/queues/4/type", "unknown queue type 'mirrored'"),
    ("/queues/4/vhost", "vhost 'nowhere' is not listed"),
    ("/queues/5/name", "300 bytes long; AMQP allows at most 255"),
    ("/exchanges/0/type", "unknown exchange type 'topics'"),
    (
        "/exchanges/1/arguments/alternate-exchange",
        "must be a string, not 42",
    ),
    (
        "/exchanges/1/name",
        "duplicate exchange 'events' in vhost '/'",
    ),
    ("/exchanges/2/arguments", "needs an x-delayed-type argument"),
    (
        "/exchanges/3/arguments/x-delayed-type",
        "unknown exchange type 'fifo'",
    ),
    ("/exchanges/4/type", "exchange type is missing"),
    ("/exchanges/6/vhost", "vhost 'nowhere' is not listed"),
    (
        "/bindings/0/source",
        "exchange 'missing-x' is not declared in vhost '/'",
    ),
    (
        "/bindings/1/destination",
        "queue 'missing-q' is not declared in vhost '/'",
    ),
    (
        "/bindings/2/destination",
        "exchange 'missing-x' is not declared in vhost '/'",
    ),
    (
        "/bindings/3/source",
        "default exchange accepts no explicit bindings",
    ),
    (
        "/bindings/4/destination_type",
        "'stream' is not a destination type",
    ),
    (
        "/bindings/5/arguments/x-match",
        "must be one of 'all', 'any'",
    ),
    ("/bindings/6/vhost", "vhost 'nowhere' is not listed"),
    (
        "/bindings/6/destination",
        "queue 'orders' is not declared in vhost 'nowhere'",
    ),
    (
        "/bindings/8/source",
        "duplicate binding from 'amq.direct' to queue 'orders'",
    ),
    ("/bindings/10/destination", "destination is missing"),
];

fn problems(defs: &Definitions) -> Vec<Problem> {
    defs.validate().expect_err("the file has problems")
}

#[test]
fn every_mistake_is_reported_at_its_location() {
    let defs = Definitions::from_json(BROKEN).unwrap();
    let problems = problems(&defs);

    let mut actual: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.reason.as_str()))
        .collect();
    let mut expected = EXPECTED.to_vec();
    // Argument maps may iterate in insertion or sorted order depending on serde_json's
    // features elsewhere in the build, so compare by location rather than list order.
    actual.sort();
    expected.sort();
    let actual_paths: Vec<&str> = actual.iter().map(|(path, _)| *path).collect();
    let expected_paths: Vec<&str> = expected.iter().map(|(path, _)| *path).collect();
    assert_eq!(actual_paths, expected_paths, "all reported: {problems:#?}");
    for ((path, reason), (_, fragment)) in actual.iter().zip(&expected) {
        assert!(
            reason.contains(fragment),
            "{path}: {reason:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn problems_come_in_document_order() {
    let defs = Definitions::from_json(BROKEN).unwrap();
    let sections: Vec<String> = problems(&defs)
        .iter()
        .map(|p| p.path.split('/').nth(1).unwrap_or_default().to_owned())
        .collect();
    let mut deduped = sections.clone();
    deduped.dedup();
    // Within a section, objects come in index order.
    let positions: Vec<(String, usize)> = problems(&defs)
        .iter()
        .map(|p| {
            let mut parts = p.path.split('/').skip(1);
            let section = parts.next().unwrap().to_owned();
            (section, parts.next().unwrap().parse().unwrap())
        })
        .collect();
    for pair in positions.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(pair[0].1 <= pair[1].1, "{pair:?}");
        }
    }
    assert_eq!(
        deduped,
        [
            "users",
            "vhosts",
            "permissions",
            "topic_permissions",
            "parameters",
            "global_parameters",
            "policies",
            "queues",
            "exchanges",
            "bindings"
        ]
    );
}

#[test]
fn problem_displays_location_and_reason() {
    let problem = Problem {
        path: "/bindings/3/source".into(),
        reason: "exchange 'x' is not declared in vhost '/'".into(),
    };
    assert_eq!(
        problem.to_string(),
        "/bindings/3/source: exchange 'x' is not declared in vhost '/'"
    );
}

fn vhost(name: &str) -> Vhost {
    Vhost {
        name: name.into(),
        ..Vhost::default()
    }
}

fn exchange(vhost: &str, name: &str, kind: &str) -> Exchange {
    Exchange {
        name: name.into(),
        vhost: vhost.into(),
        kind: kind.into(),
        ..Exchange::default()
    }
}

#[test]
fn exchange_types_are_a_parameter() {
    let defs = Definitions {
        vhosts: vec![vhost("/")],
        exchanges: vec![exchange("/", "ring", "x-consistent-hash")],
        ..Definitions::default()
    };
    let problems = defs.validate().unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "/exchanges/0/type");

    let mut types = KNOWN_EXCHANGE_TYPES.to_vec();
    types.push("x-consistent-hash");
    let options = ValidationOptions {
        exchange_types: &types,
        ..ValidationOptions::default()
    };
    assert!(defs.validate_with(&options).is_ok());
}

#[test]
fn existing_objects_count_as_declared() {
    // A partial import that refers to what a running broker already has.
    let existing = Definitions {
        vhosts: vec![vhost("prod")],
        queues: vec![Queue {
            name: "jobs".into(),
            vhost: "prod".into(),
            ..Queue::default()
        }],
        exchanges: vec![exchange("prod", "work", "direct")],
        ..Definitions::default()
    };
    let partial = Definitions::from_json(
        r#"{"bindings": [{"source": "work", "vhost": "prod", "destination": "jobs",
                          "destination_type": "queue", "routing_key": "jobs"}]}"#,
    )
    .unwrap();
    assert_eq!(partial.validate().unwrap_err().len(), 3);
    let options = ValidationOptions {
        existing: Some(&existing),
        ..ValidationOptions::default()
    };
    assert_eq!(partial.validate_with(&options), Ok(()));
}

#[test]
fn predeclared_exchanges_exist_in_every_vhost() {
    let mut json = String::from(r#"{"vhosts": [{"name": "a"}, {"name": "b"}], "queues": ["#);
    json.push_str(r#"{"name": "q", "vhost": "b"}], "bindings": ["#);
    let sources = [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
        "amq.rabbitmq.trace",
        "amq.rabbitmq.log",
    ];
    let bindings: Vec<String> = sources
        .iter()
        .map(|s| {
            format!(r#"{{"source": "{s}", "vhost": "b", "destination": "q", "destination_type": "queue", "routing_key": "{s}"}}"#)
        })
        .collect();
    json.push_str(&bindings.join(","));
    json.push_str("]}");
    let defs = Definitions::from_json(&json).unwrap();
    assert_eq!(defs.validate(), Ok(()));
}
