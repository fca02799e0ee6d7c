//! The client side's one error type: what went wrong, worded so a user can act on it
//! (which URL refused the connection, which broker reply closed which operation).

use std::fmt;
use std::time::Duration;

/// The URL every client command connects to unless `--url` or `WARREN_URL` says otherwise.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug)]
pub enum Error {
    /// The connection to the broker could not be opened.
    Connect { url: String, source: lapin::Error },
    /// An operation on an open connection failed; `context` names the operation.
    Amqp {
        context: String,
        source: lapin::Error,
    },
    /// The connection (or channel) went away while a message was in flight: the broker may
    /// or may not have it. Nothing was retried (or the retries ran out).
    ConnectionLost { context: String },
    /// The broker refused a published message (`basic.nack`).
    Nacked { target: String },
    /// A mandatory message could not be routed and came back (`basic.return`).
    Returned {
        target: String,
        reply_code: u16,
        reply_text: String,
    },
    /// An operation did not finish in time.
    Timeout { context: String, after: Duration },
    /// A payload could not be encoded to, or decoded from, JSON.
    Json {
        context: String,
        source: serde_json::Error,
    },
    /// The management HTTP API answered with an error status; `body` is its text.
    Http {
        request: String,
        status: u16,
        body: String,
    },
    /// The publisher, pool or client was shut down.
    Closed,
    /// The command's output could not be written (a closed pipe, a full disk).
    Output(std::io::Error),
    /// The options given cannot work together.
    Usage(String),
    /// Anything else, already worded for the user.
    Other(String),
}

impl Error {
    /// Wraps a failure to connect to `url`.
    pub fn connect(url: &str, source: lapin::Error) -> Error {
        Error::Connect {
            url: redact_url(url),
            source,
        }
    }

    /// Wraps a failure of the operation described by `context` (e.g. "declaring queue 'q'").
    pub fn amqp(context: impl Into<String>, source: lapin::Error) -> Error {
        Error::Amqp {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { url, source } => match source.kind() {
                lapin::ErrorKind::IOError(io)
                    if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    write!(
                        f,
                        "cannot connect to {url}: connection refused; is a broker running \
                         there? (set --url or WARREN_URL)"
                    )
                }
                lapin::ErrorKind::ProtocolError(e) if e.get_id() == 403 => write!(
                    f,
                    "{url}: the broker refused the login ({}); check the user and password \
                     in the URL",
                    e.get_message()
                ),
                lapin::ErrorKind::ProtocolError(e) if e.get_id() == 530 => write!(
                    f,
                    "{url}: the broker refused the virtual host ({})",
                    e.get_message()
                ),
                _ => write!(f, "cannot connect to {url}: {}", describe(source)),
            },
            Error::Amqp { context, source } => write!(f, "{context}: {}", describe(source)),
            Error::ConnectionLost { context } => write!(
                f,
                "{context}: the connection to the broker was lost; the broker may or may not \
                 have the message"
            ),
            Error::Nacked { target } => write!(f, "the broker refused the message to {target}"),
            Error::Returned {
                target,
                reply_code,
                reply_text,
            } => write!(
                f,
                "the message to {target} was returned unroutable: {reply_text} ({reply_code})"
            ),
            Error::Timeout { context, after } => {
                write!(f, "{context}: no answer within {} ms", after.as_millis())
            }
            Error::Json { context, source } => write!(f, "{context}: {source}"),
            Error::Http {
                request,
                status,
                body,
            } => {
                let reason = http_reason(body);
                write!(f, "{request}: HTTP {status}")?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                if *status == 401 {
                    write!(
                        f,
                        " (check the user and password in --http-url / WARREN_HTTP_URL)"
                    )?;
                }
                Ok(())
            }
            Error::Closed => f.write_str("already shut down"),
            Error::Output(e) => write!(f, "cannot write the output: {e}"),
            Error::Usage(text) | Error::Other(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Amqp { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            Error::Output(e) => Some(e),
            _ => None,
        }
    }
}

/// The reason in a management API error body: RabbitMQ answers
/// `{"error": "...", "reason": "..."}`; anything else is shown as it is.
fn http_reason(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => match (json.get("error"), json.get("reason")) {
            (_, Some(serde_json::Value::String(reason))) => reason.clone(),
            (Some(serde_json::Value::String(error)), _) => error.clone(),
            _ => body.trim().to_string(),
        },
        Err(_) => body.trim().to_string(),
    }
}

/// Whether `error` means the connection (not just one operation) is gone: the socket
/// failed, heartbeats stopped, or the broker closed the connection.
pub(crate) fn is_connection_failure(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::IOError(_)
        | lapin::ErrorKind::MissingHeartbeatError
        | lapin::ErrorKind::InvalidConnectionState(_)
        | lapin::ErrorKind::RuntimeShutdownError(_) => true,
        lapin::ErrorKind::ProtocolError(e) => e.get_id() == 320,
        _ => false,
    }
}

/// A lapin error in the broker's words where there are some.
fn describe(error: &lapin::Error) -> String {
    match error.kind() {
        // The broker's reply text already starts with the code's name,
        // e.g. "NOT_FOUND - no queue 'q' in vhost '/'".
        lapin::ErrorKind::ProtocolError(e) => format!("{} ({})", e.get_message(), e.get_id()),
        lapin::ErrorKind::IOError(io) => io.to_string(),
        lapin::ErrorKind::InvalidChannelState(state, _) => {
            format!("the channel is {state:?} (closed by an earlier error?)")
        }
        lapin::ErrorKind::InvalidConnectionState(state) => {
            format!("the connection is {state:?}")
        }
        _ => error.to_string(),
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url(DEFAULT_URL),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://user@host/vh"), "amqp://user@host/vh");
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("not a url"), "not a url");
        // An '@' in the path is not userinfo.
        assert_eq!(redact_url("amqp://host/a@b"), "amqp://host/a@b");
    }

    #[test]
    fn connection_refused_names_the_url_and_the_remedy() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = Error::connect("amqp://guest:secret@127.0.0.1:1/%2f", io.into());
        let text = err.to_string();
        assert!(text.contains("amqp://guest:***@127.0.0.1:1/%2f"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("WARREN_URL"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
