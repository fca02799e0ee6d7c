//! Redeclare checks: an exchange or queue declared again must match what exists (type,
//! flags, and the arguments RabbitMQ compares), with RabbitMQ's "inequivalent arg" wording.

use super::*;

impl VHost {
    pub(super) fn check_exchange_equivalence(
        &self,
        x: &Exchange,
        req: &ExchangeDeclare,
    ) -> AmqpResult<()> {
        let mismatch = |arg: &str,
                        received: &dyn std::fmt::Display,
                        current: &dyn std::fmt::Display| {
            Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
                x.name, self.name
            )))
        };
        if x.type_name() != req.kind {
            return mismatch("type", &req.kind, &x.type_name());
        }
        if x.durable != req.durable {
            return mismatch("durable", &req.durable, &x.durable);
        }
        if x.auto_delete != req.auto_delete {
            return mismatch("auto_delete", &req.auto_delete, &x.auto_delete);
        }
        if x.internal != req.internal {
            return mismatch("internal", &req.internal, &x.internal);
        }
        // rabbitmq-compat: of an exchange's arguments only `alternate-exchange` must match
        // (`rabbit_exchange:assert_args_equivalence`).
        let key = "alternate-exchange";
        let received = req.arguments.inner().get(key);
        let current = x.arguments.inner().get(key);
        if !args_equivalent(received, current) {
            return Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{key}' for exchange '{}' in vhost '{}': received {} but current is {}",
                x.name,
                self.name,
                describe_arg(received, current.is_none()),
                describe_arg(current, received.is_none()),
            )));
        }
        Ok(())
    }

    pub(super) fn check_queue_reuse(
        &self,
        q: &QueueRef,
        req: &QueueDeclare,
        conn_id: u64,
    ) -> AmqpResult<()> {
        let locked =
            !q.accessible_by(conn_id) || (req.exclusive && !req.passive && !q.is_exclusive());
        if locked {
            return Err(self.locked(&q.name));
        }
        if req.passive {
            return Ok(());
        }
        let mismatch = |arg: &str,
                        received: &dyn std::fmt::Display,
                        current: &dyn std::fmt::Display| {
            Err(AmqpError::precondition_failed(format_args!(
                "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                q.name, self.name
            )))
        };
        if q.durable != req.durable {
            return mismatch("durable", &req.durable, &q.durable);
        }
        if q.auto_delete != req.auto_delete {
            return mismatch("auto_delete", &req.auto_delete, &q.auto_delete);
        }
        for key in EQUIVALENCE_ARGS {
            let received = req.arguments.inner().get(*key);
            let current = q.arguments.inner().get(*key);
            if !args_equivalent(received, current) {
                // Argument values carry their own quoting (RabbitMQ's `rabbit_misc:val/1`).
                return Err(AmqpError::precondition_failed(format_args!(
                    "inequivalent arg '{key}' for queue '{}' in vhost '{}': received {} but current is {}",
                    q.name,
                    self.name,
                    describe_arg(received, current.is_none()),
                    describe_arg(current, received.is_none()),
                )));
            }
        }
        Ok(())
    }
}

/// Queue arguments RabbitMQ checks for equivalence on redeclare.
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

/// rabbitmq-compat: `rabbit_misc:assert_args_equivalence/4` compares integers of any width
/// (and float with double) by value, everything else by type and value.
fn args_equivalent(a: Option<&AMQPValue>, b: Option<&AMQPValue>) -> bool {
    pub(super) fn int(v: &AMQPValue) -> Option<i128> {
        match v {
            AMQPValue::ShortShortInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortShortUInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortInt(i) => Some(i128::from(*i)),
            AMQPValue::ShortUInt(i) => Some(i128::from(*i)),
            AMQPValue::LongInt(i) => Some(i128::from(*i)),
            AMQPValue::LongUInt(i) => Some(i128::from(*i)),
            AMQPValue::LongLongInt(i) => Some(i128::from(*i)),
            _ => None,
        }
    }
    pub(super) fn float(v: &AMQPValue) -> Option<f64> {
        match v {
            AMQPValue::Float(f) => Some(f64::from(*f)),
            AMQPValue::Double(f) => Some(*f),
            _ => None,
        }
    }
    match (a, b) {
        (Some(x), Some(y)) => match (int(x), int(y), float(x), float(y)) {
            (Some(i), Some(j), _, _) => i == j,
            (_, _, Some(f), Some(g)) => f == g,
            _ => x == y,
        },
        (None, None) => true,
        _ => false,
    }
}

/// An argument in an equivalence error, as RabbitMQ's `rabbit_misc:val/1` shows it: `none`
/// when absent; `'10'` when both sides are set; `the value '10' of type 'long'` when only
/// this side is (`other_missing`).
fn describe_arg(v: Option<&AMQPValue>, other_missing: bool) -> String {
    use crate::exchange::erl_term::{rabbit_type_name, ErlTerm};
    let Some(v) = v else {
        return "none".to_string();
    };
    // Erlang prints binaries with `~s` (their text) and other values with `~p`.
    let value = match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => ErlTerm(other).to_string(),
    };
    if other_missing {
        format!("the value '{value}' of type '{}'", rabbit_type_name(v))
    } else {
        format!("'{value}'")
    }
}
