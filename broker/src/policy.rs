//! Policies: which policy applies to a queue or an exchange. A vhost's policies are compiled
//! once per change; the effective policy of an object is the matching one (pattern searched in
//! the name, `apply-to` covering the object's kind) with the highest priority. Ties go to the
//! policy whose name sorts first (RabbitMQ leaves them unspecified).
//!
//! What a policy's definition does (`message-ttl`, `dead-letter-exchange`, `max-length`, …) is
//! read by the features that implement those keys; client-supplied arguments win over a
//! policy for the same key.

use regex::Regex;
use serde_json::Value;
use warren_definitions::{JsonMap, Policy};

/// What a policy can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A (classic) queue.
    Queue,
    Exchange,
}

/// One compiled policy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub name: String,
    pub priority: i64,
    pub definition: JsonMap,
    pattern: Regex,
    queues: bool,
    exchanges: bool,
}

impl CompiledPolicy {
    /// A definition value by key (`message-ttl`, …).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.definition.get(key)
    }

    fn applies(&self, target: Target, name: &str) -> bool {
        let kind = match target {
            Target::Queue => self.queues,
            Target::Exchange => self.exchanges,
        };
        kind && self.pattern.is_match(name)
    }
}

/// A vhost's policies, highest priority first.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

impl PolicySet {
    /// Compiles the policies of `vhost` among `all`. A policy whose pattern does not compile
    /// or whose apply-to is unknown (validation refuses both before they are stored) is
    /// skipped with a warning.
    pub fn compile(vhost: &str, all: &[Policy]) -> PolicySet {
        let mut policies: Vec<CompiledPolicy> = all
            .iter()
            .filter(|p| p.vhost == vhost || (p.vhost.is_empty() && vhost == "/"))
            .filter_map(|p| {
                let (queues, exchanges) = match p.apply_to.as_str() {
                    "all" => (true, true),
                    // Warren's queues are classic queues.
                    "queues" | "classic_queues" => (true, false),
                    "exchanges" => (false, true),
                    // Quorum queues and streams do not exist here: nothing to apply to.
                    "quorum_queues" | "streams" => (false, false),
                    other => {
                        tracing::warn!(policy = %p.name, vhost, apply_to = other, "unknown apply-to; policy ignored");
                        return None;
                    }
                };
                match Regex::new(&p.pattern) {
                    Ok(pattern) => Some(CompiledPolicy {
                        name: p.name.clone(),
                        priority: p.priority,
                        definition: p.definition.clone(),
                        pattern,
                        queues,
                        exchanges,
                    }),
                    Err(e) => {
                        tracing::warn!(policy = %p.name, vhost, error = %e, "policy pattern does not compile; policy ignored");
                        None
                    }
                }
            })
            .collect();
        policies.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        PolicySet { policies }
    }

    /// The policy in effect for the queue or exchange `name`, if any.
    pub fn effective(&self, target: Target, name: &str) -> Option<&CompiledPolicy> {
        self.policies.iter().find(|p| p.applies(target, name))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, pattern: &str, apply_to: &str, priority: i64) -> Policy {
        let mut definition = JsonMap::new();
        definition.insert("max-length".into(), Value::from(priority));
        Policy {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to: apply_to.into(),
            definition,
            priority,
            ..Policy::default()
        }
    }

    #[test]
    fn the_highest_priority_match_wins_and_ties_go_to_the_first_name() {
        let set = PolicySet::compile(
            "/",
            &[
                policy("low", "^orders", "queues", 1),
                policy("high", "^orders\\.eu", "all", 5),
                policy("tie-b", "eu", "queues", 5),
                policy("x-only", ".*", "exchanges", 9),
            ],
        );
        let name = |t, n| set.effective(t, n).map(|p| p.name.as_str());
        assert_eq!(name(Target::Queue, "orders.us"), Some("low"));
        assert_eq!(name(Target::Queue, "orders.eu"), Some("high"));
        assert_eq!(name(Target::Queue, "eu.orders"), Some("tie-b"));
        assert_eq!(name(Target::Queue, "other"), None);
        assert_eq!(name(Target::Exchange, "orders.eu"), Some("x-only"));
        let high = set.effective(Target::Queue, "orders.eu").unwrap();
        assert_eq!(high.get("max-length"), Some(&Value::from(5)));
    }

    #[test]
    fn other_vhosts_bad_patterns_and_unknown_apply_to_are_left_out() {
        let mut elsewhere = policy("elsewhere", ".*", "all", 1);
        elsewhere.vhost = "v".into();
        let set = PolicySet::compile(
            "/",
            &[
                elsewhere,
                policy("bad", "(", "all", 1),
                policy("odd", ".*", "bananas", 1),
                policy("quorum", ".*", "quorum_queues", 1),
            ],
        );
        assert!(set.effective(Target::Queue, "q").is_none());
        assert!(set.effective(Target::Exchange, "x").is_none());
        let mut in_v = policy("v", "^q$", "classic_queues", 0);
        in_v.vhost = "v".into();
        let set = PolicySet::compile("v", &[in_v]);
        assert!(set.effective(Target::Queue, "q").is_some());
        assert!(set.effective(Target::Exchange, "q").is_none());
    }
}
