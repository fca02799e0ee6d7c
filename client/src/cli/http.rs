//! A small client of the broker's management HTTP API (RabbitMQ's `/api/...`): GET and
//! POST JSON with basic auth taken from the URL. ureq is blocking, so each request runs on
//! tokio's blocking pool.

use crate::error::{redact_url, Error};
use base64::Engine;
use lapin::uri::AMQPUri;
use serde_json::Value;
use std::str::FromStr;
use std::time::Duration;

/// The management port RabbitMQ and Warren listen on by default.
pub const DEFAULT_HTTP_PORT: u16 = 15672;
/// Longest wait for one API answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read (a definitions export of a big broker).
const MAX_BODY: u64 = 256 << 20;

/// Where the management API is and who to log in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    /// `http://host:port` plus any path prefix, without a trailing slash or credentials.
    base: String,
    user: String,
    password: String,
}

impl Management {
    /// From `--http-url` when given, else the AMQP URL's host, user and password on the
    /// default management port.
    pub fn locate(http_url: Option<&str>, amqp_url: &str) -> Result<Management, Error> {
        match http_url {
            Some(url) => Management::parse(url),
            None => {
                let amqp = AMQPUri::from_str(amqp_url).map_err(|e| {
                    Error::Usage(format!("invalid AMQP URL {}: {e}", redact_url(amqp_url)))
                })?;
                let host = match amqp.authority.host.contains(':') {
                    true => format!("[{}]", amqp.authority.host),
                    false => amqp.authority.host.clone(),
                };
                Ok(Management {
                    base: format!("http://{host}:{DEFAULT_HTTP_PORT}"),
                    user: amqp.authority.userinfo.username,
                    password: amqp.authority.userinfo.password,
                })
            }
        }
    }

    /// Parses `http://[user[:password]@]host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Management, Error> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.starts_with("https://") => {
                return Err(Error::Usage(
                    "https management URLs are not supported (no TLS in warren-cli yet)".into(),
                ))
            }
            None => {
                return Err(Error::Usage(format!(
                    "the management URL must start with http:// (got {})",
                    redact_url(url)
                )))
            }
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (userinfo, host) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(Error::Usage(format!(
                "no host in the management URL {}",
                redact_url(url)
            )));
        }
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (percent_decode(user), percent_decode(password)),
                None => (percent_decode(info), String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        Ok(Management {
            base: format!("http://{host}{}", path.trim_end_matches('/')),
            user,
            password,
        })
    }

    /// The base URL for messages, with the user and without the password.
    pub fn display(&self) -> String {
        match self.base.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}:***@{rest}", self.user),
            None => self.base.clone(),
        }
    }

    /// GET `path` (e.g. `/api/queues`) as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, Error> {
        let text = self.request("GET", path, None).await?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            context: format!("reading the answer to GET {path}"),
            source,
        })
    }

    /// POST `body` (JSON) to `path`; the answer's text.
    pub async fn post(&self, path: &str, body: String) -> Result<String, Error> {
        self.request("POST", path, Some(body)).await
    }

    async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> Result<String, Error> {
        let url = format!("{}{path}", self.base);
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let auth = format!("Basic {token}");
        let request = format!("{method} {path}");
        let shown = self.display();
        let joined = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(REQUEST_TIMEOUT))
                .build()
                .into();
            let sent = match body {
                Some(body) => agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(body),
                None => agent.get(&url).header("Authorization", &auth).call(),
            };
            let mut response = sent?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_string()?;
            Ok::<_, ureq::Error>((status, text))
        })
        .await
        .map_err(|e| Error::Other(format!("{request}: the request task failed: {e}")))?;
        let (status, text) = joined.map_err(|e| unreachable_api(&request, &shown, e))?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(Error::Http {
                request,
                status,
                body: text,
            })
        }
    }
}

/// A transport failure, worded with what to check.
fn unreachable_api(request: &str, base: &str, error: ureq::Error) -> Error {
    let refused = match &error {
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        ureq::Error::ConnectionFailed => true,
        _ => false,
    };
    if refused {
        Error::Other(format!(
            "{request}: cannot connect to the management API at {base}: connection refused; \
             is the broker's HTTP port there? (set --http-url or WARREN_HTTP_URL)"
        ))
    } else {
        Error::Other(format!(
            "{request}: the management API at {base} failed: {error}"
        ))
    }
}

/// `%XX` escapes decoded (user names and passwords in URLs); invalid escapes kept as is.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment percent-encoded (a vhost `/` becomes `%2F`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_management_url_defaults_to_the_amqp_host_and_user() {
        let m = Management::locate(None, crate::DEFAULT_URL).unwrap();
        assert_eq!(
            m,
            Management::parse("http://guest:guest@127.0.0.1:15672").unwrap()
        );
        let m = Management::locate(None, "amqp://app:s%40cret@mq.example:5673/prod").unwrap();
        assert_eq!(m.base, "http://mq.example:15672");
        assert_eq!((m.user.as_str(), m.password.as_str()), ("app", "s@cret"));
        assert_eq!(m.display(), "http://app:***@mq.example:15672");
    }

    #[test]
    fn explicit_management_urls_parse() {
        let m = Management::parse("http://admin:p%3Ass@10.0.0.1:8080/rabbit/").unwrap();
        assert_eq!(m.base, "http://10.0.0.1:8080/rabbit");
        assert_eq!((m.user.as_str(), m.password.as_str()), ("admin", "p:ss"));
        let m = Management::parse("http://localhost:15672").unwrap();
        assert_eq!(m.user, "guest");
        assert!(Management::parse("https://x").is_err());
        assert!(Management::parse("ftp://x").is_err());
        assert!(Management::parse("http://user@/").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("prod vhost"), "prod%20vhost");
        assert_eq!(encode_segment("a-b.c_d~"), "a-b.c_d~");
        assert_eq!(percent_decode("%2f%zz%4"), "/%zz%4");
    }
}
