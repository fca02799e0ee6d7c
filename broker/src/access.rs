//! Authorisation of AMQP operations: a user's configure / write / read patterns for one vhost
//! and their topic permissions, compiled once when the users are loaded. A connection gets
//! its `Access` at connection.open; channel handlers ask it before each operation
//! (`check_*_permitted` in rabbit_channel.erl) and turn a refusal into a 403 channel close.

use crate::error::{AmqpError, AmqpResult};
use regex::Regex;
use std::collections::HashMap;
use std::fmt;
use warren_definitions::{Permission as PermissionEntry, TopicPermission};

/// The three kinds of access RabbitMQ grants on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        })
    }
}

/// What a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Queue,
    Exchange,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        })
    }
}

/// One compiled permission pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `.*`: every name, without running a regex (the common case; keeps publishes cheap).
    Any,
    /// Matches nothing: a pattern the `regex` crate cannot compile (PCRE-only syntax such as
    /// look-arounds). Refusing is the safe reading of a pattern we do not understand.
    Nothing,
    Regex(Regex),
}

impl Pattern {
    /// rabbitmq-compat: an empty pattern means `^$` (`rabbit_auth_backend_internal`), and a
    /// pattern is searched for anywhere in the name (`re:run/3`, not anchored).
    pub fn compile(pattern: &str) -> Pattern {
        let pattern = if pattern.is_empty() { "^$" } else { pattern };
        if pattern == ".*" {
            return Pattern::Any;
        }
        match Regex::new(pattern) {
            Ok(re) => Pattern::Regex(re),
            Err(e) => {
                tracing::warn!(%pattern, error = %e, "permission pattern does not compile; it matches nothing");
                Pattern::Nothing
            }
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Nothing => false,
            Pattern::Regex(re) => re.is_match(name),
        }
    }

    fn is_any(&self) -> bool {
        matches!(self, Pattern::Any)
    }
}

/// A topic permission's compiled write and read patterns (for one exchange).
#[derive(Debug, Clone)]
struct TopicPatterns {
    write: Pattern,
    read: Pattern,
}

/// What one user may do in one vhost: the permissions entry's patterns and the topic
/// permissions per exchange. Immutable once built; connections share it.
#[derive(Debug, Clone)]
pub struct Access {
    user: String,
    vhost: String,
    configure: Pattern,
    write: Pattern,
    read: Pattern,
    /// Exchange name → topic patterns; empty for most users.
    topics: HashMap<String, TopicPatterns>,
}

impl Access {
    /// Compiles `entry` and the topic permissions among `topics` for the same user and vhost.
    pub fn compile<'a>(
        entry: &PermissionEntry,
        topics: impl IntoIterator<Item = &'a TopicPermission>,
    ) -> Access {
        // rabbitmq-compat: topic patterns may name `{username}` and `{vhost}`
        // (`expand_topic_permission` in rabbit_auth_backend_internal); both are fixed for an
        // entry, so they are expanded before compiling.
        let expand = |p: &str| {
            p.replace("{username}", &entry.user)
                .replace("{vhost}", &entry.vhost)
        };
        let topics = topics
            .into_iter()
            .filter(|t| t.user == entry.user && t.vhost == entry.vhost)
            .map(|t| {
                let patterns = TopicPatterns {
                    write: Pattern::compile(&expand(&t.write)),
                    read: Pattern::compile(&expand(&t.read)),
                };
                (t.exchange.clone(), patterns)
            })
            .collect();
        Access {
            user: entry.user.clone(),
            vhost: entry.vhost.clone(),
            configure: Pattern::compile(&entry.configure),
            write: Pattern::compile(&entry.write),
            read: Pattern::compile(&entry.read),
            topics,
        }
    }

    fn pattern(&self, perm: Perm) -> &Pattern {
        match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        }
    }

    /// `perm` on the `kind` named `name`, or 403 in RabbitMQ's words.
    pub fn check(&self, perm: Perm, kind: Resource, name: &str) -> AmqpResult<()> {
        let name = resource_name(kind, name);
        if self.pattern(perm).matches(name) {
            return Ok(());
        }
        Err(AmqpError::access_refused(format_args!(
            "{perm} access to {kind} '{name}' in vhost '{}' refused for user '{}'",
            self.vhost, self.user
        )))
    }

    /// Whether the user has topic permissions for `exchange` (only then is a topic check
    /// needed).
    pub fn has_topic_permissions(&self, exchange: &str) -> bool {
        !self.topics.is_empty() && self.topics.contains_key(exchange)
    }

    /// `perm` (write for publish, read for bind) on routing key `key` of topic exchange
    /// `exchange`. rabbitmq-compat: without a topic permission entry everything is allowed
    /// (`check_topic_access` in rabbit_auth_backend_internal).
    pub fn check_topic(&self, perm: Perm, exchange: &str, key: &str) -> AmqpResult<()> {
        let Some(t) = self.topics.get(exchange) else {
            return Ok(());
        };
        let pattern = match perm {
            Perm::Read => &t.read,
            Perm::Write | Perm::Configure => &t.write,
        };
        if pattern.matches(key) {
            return Ok(());
        }
        Err(AmqpError::access_refused(format_args!(
            "{perm} access to topic '{key}' in exchange '{exchange}' in vhost '{}' \
             refused for user '{}'",
            self.vhost, self.user
        )))
    }
}

/// rabbitmq-compat: the default exchange is checked as `amq.default`
/// (`check_resource_access` in rabbit_access_control).
fn resource_name(kind: Resource, name: &str) -> &str {
    match (kind, name) {
        (Resource::Exchange, "") => "amq.default",
        _ => name,
    }
}

/// How many exchanges a channel remembers as write-permitted (RabbitMQ's
/// `MAX_PERMISSION_CACHE_SIZE`).
const WRITE_CACHE_SIZE: usize = 12;

/// A channel's memory of the exchanges it was allowed to publish to, so that the publish path
/// runs a pattern only the first time it sees an exchange. Only successes are kept: a refusal
/// closes the channel.
#[derive(Debug, Default)]
pub struct WriteCache {
    permitted: Vec<String>,
}

impl WriteCache {
    /// Write permission on exchange `name`.
    pub fn check(&mut self, access: &Access, name: &str) -> AmqpResult<()> {
        if access.write.is_any() || self.permitted.iter().any(|x| x == name) {
            return Ok(());
        }
        access.check(Perm::Write, Resource::Exchange, name)?;
        if self.permitted.len() == WRITE_CACHE_SIZE {
            self.permitted.remove(0);
        }
        self.permitted.push(name.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ReplyCode;

    fn access(configure: &str, write: &str, read: &str, topics: &[TopicPermission]) -> Access {
        let entry = PermissionEntry {
            user: "u".into(),
            vhost: "/".into(),
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
            ..PermissionEntry::default()
        };
        Access::compile(&entry, topics)
    }

    fn topic(exchange: &str, write: &str, read: &str) -> TopicPermission {
        TopicPermission {
            user: "u".into(),
            vhost: "/".into(),
            exchange: exchange.into(),
            write: write.into(),
            read: read.into(),
            ..TopicPermission::default()
        }
    }

    #[test]
    fn patterns_search_unanchored_and_empty_means_caret_dollar() {
        let p = Pattern::compile("^app-");
        assert!(p.matches("app-1"));
        assert!(!p.matches("my-app-1"));
        // Unanchored: a pattern matches anywhere in the name.
        assert!(Pattern::compile("orders").matches("eu.orders.new"));
        let empty = Pattern::compile("");
        assert!(!empty.matches("q"));
        assert!(empty.matches(""));
        assert!(Pattern::compile(".*").matches(""));
        // PCRE-only syntax the regex crate refuses: matches nothing.
        assert!(!Pattern::compile("^(?!amq\\.).*").matches("q"));
    }

    #[test]
    fn refusals_use_rabbitmq_wording_and_amq_default() {
        let a = access("^own-", "", "^own-", &[]);
        assert!(a.check(Perm::Configure, Resource::Queue, "own-q").is_ok());
        let e = a
            .check(Perm::Configure, Resource::Queue, "other")
            .unwrap_err();
        assert_eq!(e.code, ReplyCode::AccessRefused);
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - configure access to queue 'other' in vhost '/' refused for user 'u'"
        );
        let e = a.check(Perm::Write, Resource::Exchange, "").unwrap_err();
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' \
             refused for user 'u'"
        );
    }

    #[test]
    fn topic_permissions_apply_only_to_their_exchange_and_expand_variables() {
        let a = access(
            ".*",
            ".*",
            ".*",
            &[topic("events", "^{username}\\.", "^{vhost}$|^ops\\.")],
        );
        assert!(a.has_topic_permissions("events"));
        assert!(!a.has_topic_permissions("other"));
        assert!(a.check_topic(Perm::Write, "events", "u.created").is_ok());
        assert!(a.check_topic(Perm::Write, "other", "anything").is_ok());
        assert!(a.check_topic(Perm::Read, "events", "ops.x").is_ok());
        assert!(a.check_topic(Perm::Read, "events", "/").is_ok());
        let e = a
            .check_topic(Perm::Write, "events", "v.created")
            .unwrap_err();
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - write access to topic 'v.created' in exchange 'events' \
             in vhost '/' refused for user 'u'"
        );
    }

    #[test]
    fn the_write_cache_remembers_successes_up_to_its_size() {
        let a = access("", "^x", "", &[]);
        let mut cache = WriteCache::default();
        for i in 0..20 {
            cache.check(&a, &format!("x{i}")).unwrap();
        }
        assert_eq!(cache.permitted.len(), WRITE_CACHE_SIZE);
        assert!(cache.check(&a, "y").is_err());
        assert_eq!(cache.permitted.len(), WRITE_CACHE_SIZE);
        let all = access("", ".*", "", &[]);
        cache = WriteCache::default();
        cache.check(&all, "anything").unwrap();
        assert!(cache.permitted.is_empty());
    }
}
