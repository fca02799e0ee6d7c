//! Validation of a parsed document: cross-references, names, types, patterns and password
//! hashes, every problem reported with its JSON-pointer location — not only the first.

mod checks;

use std::fmt;

use crate::builtin::KNOWN_EXCHANGE_TYPES;
use crate::model::Definitions;
use checks::Validator;

/// One thing wrong with a definitions document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON pointer into the document, e.g. `/bindings/3/source` or
    /// `/queues/0/arguments/x-message-ttl`.
    pub path: String,
    /// What is wrong, for a person.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for Problem {}

/// What validation accepts beyond the document itself.
#[derive(Debug, Clone, Copy)]
pub struct ValidationOptions<'a> {
    /// Exchange types the broker supports; [`KNOWN_EXCHANGE_TYPES`] by default.
    pub exchange_types: &'a [&'a str],
    /// Objects that already exist (e.g. a running broker's own definitions): their vhosts,
    /// users, queues and exchanges count as declared, so a partial import may refer to
    /// them.
    pub existing: Option<&'a Definitions>,
}

impl Default for ValidationOptions<'_> {
    fn default() -> Self {
        ValidationOptions {
            exchange_types: KNOWN_EXCHANGE_TYPES,
            existing: None,
        }
    }
}

/// Validates `definitions` with the default options; see [`validate_with`].
pub fn validate(definitions: &Definitions) -> Result<(), Vec<Problem>> {
    validate_with(definitions, &ValidationOptions::default())
}

/// Validates `definitions`, returning every problem found, in document order.
///
/// Checked: names present and unique (users; vhosts; permissions per user and vhost;
/// topic permissions per user, vhost and exchange; parameters; global parameters;
/// policies, queues and exchanges per vhost; bindings); every vhost and user referred to
/// is listed; bindings join declared or predeclared exchanges and declared queues, and
/// not the default exchange; exchange types are known; well-known `x-` arguments and
/// policy keys have the right types; permission and policy patterns compile as regular
/// expressions (Rust `regex` syntax, which the broker uses to enforce them); policy
/// `apply-to` values; hashing algorithm names; password hashes are base64 of the right
/// length.
pub fn validate_with(
    definitions: &Definitions,
    options: &ValidationOptions<'_>,
) -> Result<(), Vec<Problem>> {
    let mut validator = Validator::new(definitions, options);
    validator.run();
    let mut problems = validator.problems;
    // Duplicates are found after a section's per-object checks; a stable sort by object
    // index puts each problem back beside the others of its object.
    problems.sort_by_key(|problem| document_position(&problem.path));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// (section in document order, object index) of a problem path like `/queues/3/name`.
fn document_position(path: &str) -> (usize, usize) {
    let mut parts = path.split('/').skip(1);
    let section = parts.next().unwrap_or_default();
    let rank = SECTION_ORDER
        .iter()
        .position(|known| *known == section)
        .unwrap_or(SECTION_ORDER.len());
    let index = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
    (rank, index)
}

/// The order of the lists in a document as RabbitMQ exports it, which is also the order
/// problems are reported in.
const SECTION_ORDER: &[&str] = &[
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
];

impl Definitions {
    /// Validates this document with the default options; see [`validate_with`].
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        validate(self)
    }

    /// Validates this document with `options`; see [`validate_with`].
    pub fn validate_with(&self, options: &ValidationOptions<'_>) -> Result<(), Vec<Problem>> {
        validate_with(self, options)
    }
}
