//! A queue's optional arguments (`x-message-ttl`, `x-dead-letter-exchange`, `x-max-length`,
//! …), validated at declare time with RabbitMQ's 406 wording, and combined with the queue's
//! policy: for the numeric limits (`message-ttl`, `expires`, `max-length`,
//! `max-length-bytes`) the lower of the two applies, for the rest the argument wins — as
//! RabbitMQ's policy merge does.

use crate::defs::{int_value, str_value};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::erl_term;
use crate::policy::CompiledPolicy;
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::Value;

/// What happens to a publish that finds the queue at its length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest messages to make room.
    #[default]
    DropHead,
    /// Refuse the new message (basic.nack to a confirming publisher).
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
}

impl Overflow {
    fn parse(s: &str) -> Option<Overflow> {
        match s {
            "drop-head" => Some(Overflow::DropHead),
            "reject-publish" => Some(Overflow::RejectPublish),
            "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}

/// The effective settings of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    /// Milliseconds a message may wait in the queue.
    pub message_ttl: Option<u64>,
    /// Milliseconds the queue may stay unused before it is deleted.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Priorities 0..=max_priority are told apart (1–255); None: a plain FIFO queue.
    pub max_priority: Option<u8>,
    /// `x-single-active-consumer`: only the first registered consumer gets messages; the next
    /// one takes over when it goes.
    pub single_active_consumer: bool,
    /// `x-consumer-timeout` (ms): a delivery unacked for longer cancels its consumer.
    pub consumer_timeout: Option<u64>,
}

impl QueueArgs {
    /// Reads and checks a declare's arguments. rabbitmq-compat: an invalid value is
    /// 406 "invalid arg '<key>' for queue '<q>' in vhost '<v>': <reason>", with RabbitMQ's
    /// Erlang-term reasons.
    pub fn from_arguments(args: &FieldTable, queue: &str, vhost: &str) -> AmqpResult<QueueArgs> {
        let invalid = |key: &str, reason: String| {
            AmqpError::precondition_failed(format_args!(
                "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {reason}"
            ))
        };
        let mut out = QueueArgs::default();
        let table = args.inner();
        // A non-negative integer (or positive, when `min` is 1).
        let number = |key: &str, min: i64| -> AmqpResult<Option<u64>> {
            let Some(value) = table.get(key) else {
                return Ok(None);
            };
            let Some(n) = int_value(value) else {
                return Err(invalid(
                    key,
                    format!(
                        "{{unacceptable_type,{}}}",
                        erl_term::rabbit_type_name(value)
                    ),
                ));
            };
            if n < min {
                let what = if min == 0 {
                    "value_negative"
                } else {
                    "value_zero"
                };
                return Err(invalid(key, format!("{{{what},{n}}}")));
            }
            Ok(Some(u64::try_from(n).unwrap_or(u64::MAX)))
        };
        out.message_ttl = number("x-message-ttl", 0)?;
        out.expires = number("x-expires", 1)?;
        out.max_length = number("x-max-length", 0)?;
        out.max_length_bytes = number("x-max-length-bytes", 0)?;
        if table.contains_key("x-max-priority") {
            let n = number("x-max-priority", 0)?.unwrap_or(0);
            if n > 255 {
                return Err(invalid(
                    "x-max-priority",
                    format!("{{value_too_large,{n},255}}"),
                ));
            }
            // RabbitMQ: 0 means "no priorities".
            out.max_priority = u8::try_from(n).ok().filter(|p| *p > 0);
        }
        if let Some(value) = table.get("x-single-active-consumer") {
            match value {
                AMQPValue::Boolean(b) => out.single_active_consumer = *b,
                other => {
                    return Err(invalid(
                        "x-single-active-consumer",
                        format!(
                            "{{unacceptable_type,{}}}",
                            erl_term::rabbit_type_name(other)
                        ),
                    ))
                }
            }
        }
        out.consumer_timeout = number("x-consumer-timeout", 1)?;
        if let Some(value) = table.get("x-overflow") {
            out.overflow = str_value(value)
                .as_deref()
                .and_then(Overflow::parse)
                .ok_or_else(|| {
                    invalid(
                        "x-overflow",
                        format!("{{unacceptable_value,{}}}", erl_term::ErlTerm(value)),
                    )
                })?;
        }
        for (key, slot) in [
            ("x-dead-letter-exchange", &mut out.dead_letter_exchange),
            (
                "x-dead-letter-routing-key",
                &mut out.dead_letter_routing_key,
            ),
        ] {
            if let Some(value) = table.get(key) {
                *slot = Some(str_value(value).ok_or_else(|| {
                    invalid(
                        key,
                        format!(
                            "{{unacceptable_type,{}}}",
                            erl_term::rabbit_type_name(value)
                        ),
                    )
                })?);
            }
        }
        if out.dead_letter_routing_key.is_some() && out.dead_letter_exchange.is_none() {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "{routing_key_without_exchange}".into(),
            ));
        }
        if let Some(value) = table.get("x-queue-type") {
            match str_value(value).as_deref() {
                Some("classic") => {}
                Some(other @ ("quorum" | "stream")) => {
                    return Err(AmqpError::precondition_failed(format_args!(
                        "queue type '{other}' is not supported by Warren (queue '{queue}' in vhost \
                         '{vhost}'); declare a classic queue"
                    )))
                }
                _ => {
                    return Err(invalid(
                        "x-queue-type",
                        format!("{{unacceptable_value,{}}}", erl_term::ErlTerm(value)),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// These arguments with `policy` applied where the arguments leave a key unset (or, for
    /// numeric limits, where the policy's value is lower).
    pub fn with_policy(mut self, args: &FieldTable, policy: Option<&CompiledPolicy>) -> QueueArgs {
        let Some(policy) = policy else {
            return self;
        };
        let number = |key: &str| policy.get(key).and_then(Value::as_u64);
        let lower = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        self.message_ttl = lower(self.message_ttl, number("message-ttl"));
        self.expires = lower(self.expires, number("expires").filter(|e| *e > 0));
        self.max_length = lower(self.max_length, number("max-length"));
        self.max_length_bytes = lower(self.max_length_bytes, number("max-length-bytes"));
        if self.consumer_timeout.is_none() {
            self.consumer_timeout = number("consumer-timeout").filter(|t| *t > 0);
        }
        let string = |key: &str| policy.get(key).and_then(Value::as_str).map(str::to_string);
        if self.dead_letter_exchange.is_none() {
            self.dead_letter_exchange = string("dead-letter-exchange");
            if self.dead_letter_routing_key.is_none() {
                self.dead_letter_routing_key = string("dead-letter-routing-key");
            }
        }
        if !args.inner().contains_key("x-overflow") {
            if let Some(overflow) = string("overflow").as_deref().and_then(Overflow::parse) {
                self.overflow = overflow;
            }
        }
        self
    }
}
