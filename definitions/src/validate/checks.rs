//! The checks behind [`validate_with`](super::validate_with): one pass per section of the
//! document, each problem pushed with its JSON-pointer location.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Problem, ValidationOptions};
use crate::arguments::{self, quoted_list, EXCHANGE_ARGUMENTS, POLICY_KEYS, QUEUE_ARGUMENTS};
use crate::builtin::{self, POLICY_APPLY_TO, QUEUE_TYPES};
use crate::merge::Identity;
use crate::model::{Definitions, DestinationType, JsonMap};
use crate::password::{decode_password_hash, HashingAlgorithm, PasswordHashError};

/// AMQP short strings (queue and exchange names) hold at most 255 bytes.
const MAX_NAME_BYTES: usize = 255;

pub(super) struct Validator<'a> {
    defs: &'a Definitions,
    exchange_types: &'a [&'a str],
    vhosts: HashSet<&'a str>,
    users: HashSet<&'a str>,
    queues: HashSet<(&'a str, &'a str)>,
    /// (vhost, name) → exchange type, for declared exchanges.
    exchanges: HashMap<(&'a str, &'a str), &'a str>,
    /// Pattern → why it does not compile; permissions repeat `.*` thousands of times.
    patterns: HashMap<&'a str, Option<String>>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(defs: &'a Definitions, options: &ValidationOptions<'a>) -> Self {
        let sources = std::iter::once(defs).chain(options.existing);
        let mut validator = Validator {
            defs,
            exchange_types: options.exchange_types,
            vhosts: HashSet::new(),
            users: HashSet::new(),
            queues: HashSet::new(),
            exchanges: HashMap::new(),
            patterns: HashMap::new(),
            problems: Vec::new(),
        };
        for doc in sources {
            validator
                .vhosts
                .extend(doc.vhosts.iter().map(|v| v.name.as_str()));
            validator
                .users
                .extend(doc.users.iter().map(|u| u.name.as_str()));
            validator.queues.extend(
                doc.queues
                    .iter()
                    .map(|q| (q.vhost.as_str(), q.name.as_str())),
            );
            for x in &doc.exchanges {
                validator
                    .exchanges
                    .entry((x.vhost.as_str(), x.name.as_str()))
                    .or_insert(x.kind.as_str());
            }
        }
        validator
    }

    fn report(&mut self, path: String, reason: impl Into<String>) {
        self.problems.push(Problem {
            path,
            reason: reason.into(),
        });
    }

    pub(super) fn run(&mut self) {
        self.users();
        self.vhosts();
        self.permissions();
        self.topic_permissions();
        self.parameters();
        self.global_parameters();
        self.policies();
        self.queues();
        self.exchanges();
        self.bindings();
    }

    fn users(&mut self) {
        let defs = self.defs;
        let version = defs.version();
        for (i, user) in defs.users.iter().enumerate() {
            self.required(&format!("/users/{i}/name"), &user.name, "user name");
            if user.password.is_some() && user.password_hash.is_some() {
                self.report(
                    format!("/users/{i}/password"),
                    "both password and password_hash are given (RabbitMQ refuses the user)",
                );
            }
            match user.effective_hashing_algorithm(version) {
                Err(name) => self.report(
                    format!("/users/{i}/hashing_algorithm"),
                    format!(
                        "unknown hashing algorithm '{name}' (known: {})",
                        quoted_list(&HashingAlgorithm::ALL.map(HashingAlgorithm::name))
                    ),
                ),
                Ok(algorithm) => match user.password_hash.as_deref() {
                    // Empty: a user without a password (RabbitMQ's clear_password).
                    None | Some("") => {}
                    Some(hash) => match decode_password_hash(algorithm, hash) {
                        Ok(_) => {}
                        Err(err @ PasswordHashError::NotBase64) => {
                            self.report(format!("/users/{i}/password_hash"), err.to_string())
                        }
                        Err(err @ PasswordHashError::WrongLength { .. }) => self.report(
                            format!("/users/{i}/password_hash"),
                            format!("{err} for {algorithm}"),
                        ),
                    },
                },
            }
        }
        self.duplicates("users", &defs.users, "name", |u| {
            format!("user '{}'", u.name)
        });
    }

    fn vhosts(&mut self) {
        let defs = self.defs;
        for (i, vhost) in defs.vhosts.iter().enumerate() {
            self.required(&format!("/vhosts/{i}/name"), &vhost.name, "vhost name");
            if let Some(queue_type) = vhost.default_queue_type.as_deref() {
                // rabbitmq-compat: some 3.x exports write the Erlang atom `undefined` for
                // a vhost without a default queue type.
                if queue_type != "undefined" && !QUEUE_TYPES.contains(&queue_type) {
                    self.report(
                        format!("/vhosts/{i}/default_queue_type"),
                        format!(
                            "unknown queue type '{queue_type}' (known: {})",
                            quoted_list(QUEUE_TYPES)
                        ),
                    );
                }
            }
        }
        self.duplicates("vhosts", &defs.vhosts, "name", |v| {
            format!("vhost '{}'", v.name)
        });
    }

    fn permissions(&mut self) {
        let defs = self.defs;
        for (i, p) in defs.permissions.iter().enumerate() {
            let at = |field: &str| format!("/permissions/{i}/{field}");
            self.user_ref(&at("user"), &p.user);
            self.vhost_ref(&at("vhost"), &p.vhost);
            self.pattern(&at("configure"), &p.configure);
            self.pattern(&at("write"), &p.write);
            self.pattern(&at("read"), &p.read);
        }
        self.duplicates("permissions", &defs.permissions, "user", |p| {
            format!("permissions of user '{}' in vhost '{}'", p.user, p.vhost)
        });
    }

    fn topic_permissions(&mut self) {
        let defs = self.defs;
        for (i, p) in defs.topic_permissions.iter().enumerate() {
            let at = |field: &str| format!("/topic_permissions/{i}/{field}");
            self.user_ref(&at("user"), &p.user);
            self.vhost_ref(&at("vhost"), &p.vhost);
            self.required(&at("exchange"), &p.exchange, "exchange");
            self.pattern(&at("write"), &p.write);
            self.pattern(&at("read"), &p.read);
        }
        self.duplicates("topic_permissions", &defs.topic_permissions, "user", |p| {
            format!(
                "topic permissions of user '{}' for exchange '{}' in vhost '{}'",
                p.user, p.exchange, p.vhost
            )
        });
    }

    fn parameters(&mut self) {
        let defs = self.defs;
        for (i, p) in defs.parameters.iter().enumerate() {
            let at = |field: &str| format!("/parameters/{i}/{field}");
            self.vhost_ref(&at("vhost"), &p.vhost);
            self.required(&at("component"), &p.component, "component");
            self.required(&at("name"), &p.name, "parameter name");
        }
        self.duplicates("parameters", &defs.parameters, "name", |p| {
            format!(
                "parameter '{}' of component '{}' in vhost '{}'",
                p.name, p.component, p.vhost
            )
        });
    }

    fn global_parameters(&mut self) {
        let defs = self.defs;
        for (i, p) in defs.global_parameters.iter().enumerate() {
            self.required(
                &format!("/global_parameters/{i}/name"),
                &p.name,
                "parameter name",
            );
        }
        self.duplicates("global_parameters", &defs.global_parameters, "name", |p| {
            format!("global parameter '{}'", p.name)
        });
    }

    fn policies(&mut self) {
        let defs = self.defs;
        for (i, policy) in defs.policies.iter().enumerate() {
            let at = |field: &str| format!("/policies/{i}/{field}");
            self.vhost_ref(&at("vhost"), &policy.vhost);
            self.required(&at("name"), &policy.name, "policy name");
            self.pattern(&at("pattern"), &policy.pattern);
            if !POLICY_APPLY_TO.contains(&policy.apply_to.as_str()) {
                self.report(
                    at("apply-to"),
                    format!(
                        "unknown apply-to '{}' (known: {})",
                        policy.apply_to,
                        quoted_list(POLICY_APPLY_TO)
                    ),
                );
            }
            if policy.definition.is_empty() {
                self.report(
                    at("definition"),
                    "definition is empty (RabbitMQ refuses it)",
                );
            }
            self.arguments(&at("definition"), &policy.definition, POLICY_KEYS);
        }
        self.duplicates("policies", &defs.policies, "name", |p| {
            format!("policy '{}' in vhost '{}'", p.name, p.vhost)
        });
    }

    fn queues(&mut self) {
        let defs = self.defs;
        for (i, queue) in defs.queues.iter().enumerate() {
            let at = |field: &str| format!("/queues/{i}/{field}");
            self.name(&at("name"), &queue.name, "queue name");
            self.vhost_ref(&at("vhost"), &queue.vhost);
            if let Some(queue_type) = queue.queue_type.as_deref() {
                if !QUEUE_TYPES.contains(&queue_type) {
                    self.report(
                        at("type"),
                        format!(
                            "unknown queue type '{queue_type}' (known: {})",
                            quoted_list(QUEUE_TYPES)
                        ),
                    );
                }
                let argument = queue.arguments.get("x-queue-type").and_then(Value::as_str);
                if argument.is_some_and(|argument| argument != queue_type) {
                    self.report(
                        at("arguments/x-queue-type"),
                        format!("disagrees with the queue's type '{queue_type}'"),
                    );
                }
            }
            let args = &queue.arguments;
            self.arguments(&at("arguments"), args, QUEUE_ARGUMENTS);
            if args.contains_key("x-dead-letter-routing-key")
                && !args.contains_key("x-dead-letter-exchange")
            {
                self.report(
                    at("arguments/x-dead-letter-routing-key"),
                    "x-dead-letter-routing-key needs x-dead-letter-exchange",
                );
            }
        }
        self.duplicates("queues", &defs.queues, "name", |q| {
            format!("queue '{}' in vhost '{}'", q.name, q.vhost)
        });
    }

    fn exchanges(&mut self) {
        let defs = self.defs;
        for (i, exchange) in defs.exchanges.iter().enumerate() {
            let at = |field: &str| format!("/exchanges/{i}/{field}");
            // An empty name is the default exchange, which RabbitMQ's import skips.
            if !exchange.name.is_empty() {
                self.name(&at("name"), &exchange.name, "exchange name");
            }
            self.vhost_ref(&at("vhost"), &exchange.vhost);
            self.exchange_type(&at("type"), &exchange.kind);
            self.arguments(&at("arguments"), &exchange.arguments, EXCHANGE_ARGUMENTS);
            if exchange.kind == builtin::DELAYED {
                match exchange.arguments.get("x-delayed-type") {
                    None => self.report(
                        at("arguments"),
                        "an x-delayed-message exchange needs an x-delayed-type argument",
                    ),
                    Some(Value::String(inner)) if inner == builtin::DELAYED => self.report(
                        at("arguments/x-delayed-type"),
                        "x-delayed-type cannot itself be x-delayed-message",
                    ),
                    Some(Value::String(inner)) => {
                        self.exchange_type(&at("arguments/x-delayed-type"), inner)
                    }
                    // Not a string: already reported by the argument rules.
                    Some(_) => {}
                }
            }
        }
        self.duplicates("exchanges", &defs.exchanges, "name", |x| {
            format!("exchange '{}' in vhost '{}'", x.name, x.vhost)
        });
    }

    fn bindings(&mut self) {
        let defs = self.defs;
        for (i, binding) in defs.bindings.iter().enumerate() {
            let at = |field: &str| format!("/bindings/{i}/{field}");
            let vhost = binding.vhost.as_str();
            self.vhost_ref(&at("vhost"), vhost);

            let source_type = if binding.source.is_empty() {
                self.report(
                    at("source"),
                    "the default exchange accepts no explicit bindings",
                );
                None
            } else {
                let found = self.exchange_type_of(vhost, &binding.source);
                if found.is_none() {
                    self.report(
                        at("source"),
                        format!(
                            "exchange '{}' is not declared in vhost '{vhost}'",
                            binding.source
                        ),
                    );
                }
                found
            };

            match &binding.destination_type {
                DestinationType::Other(other) => self.report(
                    at("destination_type"),
                    format!("'{other}' is not a destination type (expected 'queue' or 'exchange')"),
                ),
                _ if binding.destination.is_empty() => {
                    self.report(at("destination"), "destination is missing")
                }
                DestinationType::Queue => {
                    if !self.queues.contains(&(vhost, binding.destination.as_str())) {
                        self.report(
                            at("destination"),
                            format!(
                                "queue '{}' is not declared in vhost '{vhost}'",
                                binding.destination
                            ),
                        );
                    }
                }
                DestinationType::Exchange => {
                    if self.exchange_type_of(vhost, &binding.destination).is_none() {
                        self.report(
                            at("destination"),
                            format!(
                                "exchange '{}' is not declared in vhost '{vhost}'",
                                binding.destination
                            ),
                        );
                    }
                }
            }

            if source_type == Some("headers") {
                if let Some(x_match) = binding.arguments.get("x-match") {
                    if !x_match
                        .as_str()
                        .is_some_and(|s| arguments::X_MATCH.contains(&s))
                    {
                        self.report(
                            at("arguments/x-match"),
                            format!(
                                "must be one of {}, not {x_match}",
                                quoted_list(arguments::X_MATCH)
                            ),
                        );
                    }
                }
            }
        }
        self.duplicates("bindings", &defs.bindings, "source", |b| {
            format!(
                "binding from '{}' to {} '{}' with routing key '{}' in vhost '{}'",
                b.source,
                b.destination_type.as_str(),
                b.destination,
                b.routing_key,
                b.vhost
            )
        });
    }

    /// The type of exchange `name` in `vhost`, if it is declared or predeclared. The
    /// default exchange `""` is not counted: it takes no explicit bindings.
    fn exchange_type_of(&self, vhost: &str, name: &str) -> Option<&'a str> {
        if let Some(kind) = self.exchanges.get(&(vhost, name)) {
            return Some(kind);
        }
        builtin::PREDECLARED_EXCHANGES
            .iter()
            .find(|(predeclared, _)| !predeclared.is_empty() && *predeclared == name)
            .map(|(_, kind)| *kind)
    }

    fn required(&mut self, path: &str, value: &str, what: &str) {
        if value.is_empty() {
            self.report(path.to_owned(), format!("{what} is missing"));
        }
    }

    /// A queue or exchange name: present and short enough for AMQP.
    fn name(&mut self, path: &str, value: &str, what: &str) {
        self.required(path, value, what);
        if value.len() > MAX_NAME_BYTES {
            self.report(
                path.to_owned(),
                format!(
                    "{what} is {} bytes long; AMQP allows at most {MAX_NAME_BYTES}",
                    value.len()
                ),
            );
        }
    }

    fn vhost_ref(&mut self, path: &str, vhost: &str) {
        if vhost.is_empty() {
            self.report(path.to_owned(), "vhost is missing");
        } else if !self.vhosts.contains(vhost) {
            self.report(
                path.to_owned(),
                format!("vhost '{vhost}' is not listed in vhosts"),
            );
        }
    }

    fn user_ref(&mut self, path: &str, user: &str) {
        if user.is_empty() {
            self.report(path.to_owned(), "user is missing");
        } else if !self.users.contains(user) {
            self.report(
                path.to_owned(),
                format!("user '{user}' is not listed in users"),
            );
        }
    }

    fn exchange_type(&mut self, path: &str, kind: &str) {
        if kind.is_empty() {
            self.report(path.to_owned(), "exchange type is missing");
        } else if !self.exchange_types.contains(&kind) {
            self.report(
                path.to_owned(),
                format!(
                    "unknown exchange type '{kind}' (known: {})",
                    quoted_list(self.exchange_types)
                ),
            );
        }
    }

    fn pattern(&mut self, path: &str, pattern: &'a str) {
        let verdict = self
            .patterns
            .entry(pattern)
            .or_insert_with(|| {
                regex::Regex::new(pattern)
                    .err()
                    .map(|err| regex_reason(&err))
            })
            .clone();
        if let Some(reason) = verdict {
            self.report(
                path.to_owned(),
                format!("'{pattern}' is not a valid regular expression: {reason}"),
            );
        }
    }

    fn arguments(&mut self, path: &str, arguments: &JsonMap, rules: &[(&str, arguments::Rule)]) {
        for (key, value) in arguments {
            if let Err(reason) = arguments::check(rules, key, value) {
                self.report(format!("{path}/{}", pointer_escape(key)), reason);
            }
        }
    }

    /// Reports each object whose identity an earlier object of the list already has.
    fn duplicates<T: Identity>(
        &mut self,
        section: &str,
        items: &[T],
        field: &str,
        describe: impl Fn(&T) -> String,
    ) {
        let mut first: HashMap<T::Key<'_>, usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match first.entry(item.identity()) {
                Entry::Occupied(earlier) => {
                    let reason = format!(
                        "duplicate {} (first at /{section}/{})",
                        describe(item),
                        earlier.get()
                    );
                    self.report(format!("/{section}/{i}/{field}"), reason);
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
    }
}

/// The one-line cause from a `regex` error, whose Display is a multi-line diagram.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"))
        .trim()
        .to_owned()
}

/// Escapes a key for a JSON pointer (RFC 6901): `~` → `~0`, `/` → `~1`.
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escaping() {
        assert_eq!(pointer_escape("x-message-ttl"), "x-message-ttl");
        assert_eq!(pointer_escape("a/b~c"), "a~1b~0c");
    }

    #[test]
    fn regex_reason_is_one_line() {
        // Built at run time so clippy's compile-time regex check does not flag it.
        let pattern = ["(", "unclosed"].concat();
        let err = regex::Regex::new(&pattern).unwrap_err();
        let reason = regex_reason(&err);
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.contains("unclosed"), "{reason}");
    }
}
