//! The management API through a real HTTP client (ureq, blocking, on tokio's blocking pool):
//! requests with basic auth and their JSON answers.

#![allow(dead_code)]

use super::common::{within, TestBroker};
use base64::Engine;
use serde_json::Value;

/// What one request got back.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub json: Value,
}

pub const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

/// Sends `method` to `path` with an empty JSON object as the body of a PUT or POST.
pub async fn request(
    broker: &TestBroker,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> Answer {
    send(broker, method, path, credentials, "{}").await
}

/// Sends `method` to `path` with `body` (for PUT and POST; ureq is blocking, so it runs on
/// the blocking pool).
pub async fn send(
    broker: &TestBroker,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
    body: &str,
) -> Answer {
    let url = format!("{}{path}", broker.http_url());
    let method = method.to_string();
    let body = body.to_string();
    let auth = credentials.map(|(user, password)| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
    });
    within(tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = match method.as_str() {
            "GET" => {
                let mut req = agent.get(&url);
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            "DELETE" => {
                let mut req = agent.delete(&url);
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            "PUT" | "POST" => {
                let mut req = if method == "PUT" {
                    agent.put(&url)
                } else {
                    agent.post(&url)
                };
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.header("Content-Type", "application/json")
                    .send(body.as_str())
            }
            other => panic!("unsupported method {other}"),
        }
        .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, www_authenticate) = (header("content-type"), header("www-authenticate"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        Answer {
            status,
            content_type,
            www_authenticate,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }))
    .await
    .unwrap()
}

pub async fn get_json(broker: &TestBroker, path: &str) -> Value {
    let answer = request(broker, "GET", path, GUEST).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.json);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    answer.json
}

/// The objects of a JSON list whose `key` is `value`.
pub fn with<'a>(list: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|item| item[key] == value)
        .collect()
}

/// `PUT /api/policies/%2F/{name}` as guest; the HTTP status.
pub async fn put_policy(broker: &TestBroker, name: &str, body: &Value) -> u16 {
    let path = format!("/api/policies/%2F/{name}");
    send(broker, "PUT", &path, GUEST, &body.to_string())
        .await
        .status
}
