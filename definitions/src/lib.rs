//! RabbitMQ definitions files — the JSON of `rabbitmqctl export_definitions` and
//! `GET /api/definitions` — as a Rust model Warren loads at boot, validates, merges and
//! exports; plus RabbitMQ's salted password hashes. Pure data: no I/O, no async runtime.
//!
//! - [`Definitions`] and its object types mirror RabbitMQ's field names. Unknown fields,
//!   at the top level and in each object, are kept and written back.
//! - [`Definitions::validate`] reports every problem with its JSON-pointer location.
//! - [`Definitions::merge`] applies one document over another with import semantics.
//! - [`hash_password`] / [`verify_password`] produce and check `password_hash` values.
//! - [`RABBITMQ_IMPORT_ORDER`] is the order in which RabbitMQ applies an import.
//!
//! ```
//! use warren_definitions::{hash_password_with_salt, verify_password, Definitions, HashingAlgorithm};
//!
//! let json = r#"{
//!   "rabbit_version": "3.13.7",
//!   "users": [{"name": "app", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
//!              "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"]}],
//!   "vhosts": [{"name": "/"}],
//!   "permissions": [{"user": "app", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
//!   "queues": [{"name": "jobs", "vhost": "/", "durable": true, "auto_delete": false,
//!               "arguments": {"x-queue-type": "quorum"}}],
//!   "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "job",
//!                 "destination_type": "queue", "routing_key": "jobs", "arguments": {}}]
//! }"#;
//! let mut defs = Definitions::from_json(json)?;
//!
//! // Validation lists every problem, each with where it is.
//! let problems = defs.validate().unwrap_err();
//! assert_eq!(problems[0].path, "/bindings/0/destination");
//! assert_eq!(problems[0].reason, "queue 'job' is not declared in vhost '/'");
//!
//! defs.bindings[0].destination = "jobs".into();
//! assert!(defs.validate().is_ok());
//!
//! // Password hashes are RabbitMQ's: base64(salt ‖ sha256(salt ‖ password)).
//! let user = defs.find_user("app").unwrap();
//! let algorithm = defs.hashing_algorithm_of(user)?;
//! assert!(verify_password(algorithm, user.password_hash.as_deref().unwrap(), "test12"));
//! assert_eq!(
//!     hash_password_with_salt(HashingAlgorithm::Sha256, [0x90, 0x8D, 0xC6, 0x0A], "test12"),
//!     user.password_hash.clone().unwrap(),
//! );
//!
//! // Export, and merge: importing the same document again changes nothing.
//! let exported = defs.to_json_pretty();
//! let again = Definitions::from_json(&exported)?;
//! let before = defs.clone();
//! defs.merge(again);
//! assert_eq!(defs, before);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod arguments;
mod builtin;
mod document;
mod merge;
mod model;
pub mod password;
mod validate;

pub use builtin::{
    is_predeclared_exchange, Category, KNOWN_EXCHANGE_TYPES, POLICY_APPLY_TO,
    PREDECLARED_EXCHANGES, QUEUE_TYPES, RABBITMQ_IMPORT_ORDER,
};
pub use document::ParseError;
pub use merge::{BindingKey, Identity};
pub use model::{
    Binding, Definitions, DestinationType, Exchange, GlobalParameter, JsonMap, Parameter,
    Permission, Policy, Queue, Tags, TopicPermission, User, Vhost,
};
pub use password::{
    decode_password_hash, hash_password, hash_password_with_salt, verify_password,
    HashingAlgorithm, PasswordHashError,
};
pub use validate::{validate, validate_with, Problem, ValidationOptions};
