//! Type rules for the well-known `x-` arguments of queues and exchanges and the matching
//! policy keys, shared by validation of queues, exchanges and policies.

use serde_json::Value;

/// What a well-known argument's value must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    /// An integer ≥ 0.
    NonNegative,
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// An integer ≥ 0, or -1 meaning "no limit".
    NonNegativeOrUnlimited,
    /// A string.
    Text,
    /// A boolean.
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

const OVERFLOW: &[&str] = &["drop-head", "reject-publish", "reject-publish-dlx"];
const QUEUE_MODES: &[&str] = &["default", "lazy"];

/// Queue arguments (`x-…`) with a known type. rabbitmq-compat: RabbitMQ's checks in
/// `rabbit_amqqueue:declare_args/0`; x-expires must be ≥ 1 (a zero expiry is refused).
pub(crate) const QUEUE_ARGUMENTS: &[(&str, Rule)] = &[
    ("x-message-ttl", Rule::NonNegative),
    ("x-expires", Rule::Range(1, i64::MAX)),
    ("x-max-length", Rule::NonNegative),
    ("x-max-length-bytes", Rule::NonNegative),
    ("x-max-priority", Rule::Range(1, 255)),
    // rabbitmq-compat: RabbitMQ 4.0 accepts -1 for "no delivery limit" on quorum queues.
    ("x-delivery-limit", Rule::NonNegativeOrUnlimited),
    ("x-dead-letter-exchange", Rule::Text),
    ("x-dead-letter-routing-key", Rule::Text),
    ("x-overflow", Rule::OneOf(OVERFLOW)),
    ("x-queue-mode", Rule::OneOf(QUEUE_MODES)),
    ("x-queue-type", Rule::OneOf(crate::builtin::QUEUE_TYPES)),
    ("x-single-active-consumer", Rule::Bool),
];

/// Exchange arguments with a known type.
pub(crate) const EXCHANGE_ARGUMENTS: &[(&str, Rule)] = &[
    ("alternate-exchange", Rule::Text),
    ("x-delayed-type", Rule::Text),
];

/// Policy definition keys with a known type: the queue and exchange arguments without
/// their `x-` prefix, as RabbitMQ names them in policies.
pub(crate) const POLICY_KEYS: &[(&str, Rule)] = &[
    ("message-ttl", Rule::NonNegative),
    ("expires", Rule::Range(1, i64::MAX)),
    ("max-length", Rule::NonNegative),
    ("max-length-bytes", Rule::NonNegative),
    ("delivery-limit", Rule::NonNegativeOrUnlimited),
    ("dead-letter-exchange", Rule::Text),
    ("dead-letter-routing-key", Rule::Text),
    ("overflow", Rule::OneOf(OVERFLOW)),
    ("queue-mode", Rule::OneOf(QUEUE_MODES)),
    ("alternate-exchange", Rule::Text),
];

/// The values of a headers binding's `x-match`.
pub(crate) const X_MATCH: &[&str] = &["all", "any", "all-with-x", "any-with-x"];

/// Checks `value` against the rule for `key` in `rules`; `Err` is the reason it fails.
/// Keys without a rule are accepted as they are (plugins define many).
pub(crate) fn check(rules: &[(&str, Rule)], key: &str, value: &Value) -> Result<(), String> {
    match rules.iter().find(|(name, _)| *name == key) {
        Some((_, rule)) => check_rule(*rule, value),
        None => Ok(()),
    }
}

fn check_rule(rule: Rule, value: &Value) -> Result<(), String> {
    let integer = value.as_i64();
    let ok = match rule {
        Rule::NonNegative => value.as_u64().is_some(),
        Rule::Range(min, max) => integer.is_some_and(|n| (min..=max).contains(&n)),
        Rule::NonNegativeOrUnlimited => integer.is_some_and(|n| n >= -1),
        Rule::Text => value.is_string(),
        Rule::Bool => value.is_boolean(),
        Rule::OneOf(allowed) => value.as_str().is_some_and(|s| allowed.contains(&s)),
    };
    if ok {
        return Ok(());
    }
    let wanted = match rule {
        Rule::NonNegative => "a non-negative integer".to_owned(),
        Rule::Range(min, i64::MAX) => format!("an integer ≥ {min}"),
        Rule::Range(min, max) => format!("an integer from {min} to {max}"),
        Rule::NonNegativeOrUnlimited => "a non-negative integer (or -1 for no limit)".to_owned(),
        Rule::Text => "a string".to_owned(),
        Rule::Bool => "a boolean".to_owned(),
        Rule::OneOf(allowed) => format!("one of {}", quoted_list(allowed)),
    };
    Err(format!("must be {wanted}, not {value}"))
}

/// `'a', 'b', 'c'` — for reasons that list the accepted values.
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("'{item}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_rules() {
        let q = QUEUE_ARGUMENTS;
        assert!(check(q, "x-message-ttl", &json!(0)).is_ok());
        assert!(check(q, "x-message-ttl", &json!(-1)).is_err());
        assert!(check(q, "x-message-ttl", &json!(1.5)).is_err());
        assert!(check(q, "x-message-ttl", &json!("60000")).is_err());
        assert!(check(q, "x-expires", &json!(0)).is_err());
        assert!(check(q, "x-expires", &json!(1)).is_ok());
        assert!(check(q, "x-max-priority", &json!(0)).is_err());
        assert!(check(q, "x-max-priority", &json!(255)).is_ok());
        assert!(check(q, "x-max-priority", &json!(256)).is_err());
        assert!(check(q, "x-delivery-limit", &json!(-1)).is_ok());
        assert!(check(q, "x-delivery-limit", &json!(-2)).is_err());
    }

    #[test]
    fn string_and_enum_rules() {
        let q = QUEUE_ARGUMENTS;
        assert!(check(q, "x-overflow", &json!("reject-publish-dlx")).is_ok());
        assert!(check(q, "x-overflow", &json!("drop-tail")).is_err());
        assert!(check(q, "x-queue-type", &json!("quorum")).is_ok());
        assert!(check(q, "x-queue-type", &json!("mirrored")).is_err());
        assert!(check(q, "x-single-active-consumer", &json!("true")).is_err());
        assert!(check(q, "x-dead-letter-exchange", &json!(5)).is_err());
        assert!(check(q, "x-custom-plugin-thing", &json!([1, 2])).is_ok());
        let reason = check(q, "x-max-priority", &json!(300)).unwrap_err();
        assert_eq!(reason, "must be an integer from 1 to 255, not 300");
    }
}
