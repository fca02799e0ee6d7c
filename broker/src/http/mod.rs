//! The management HTTP API: an HTTP/1 listener beside the AMQP one, serving RabbitMQ's
//! `/api/...` JSON so existing tools can read and steer the broker. Each request is routed
//! here, authenticated (`auth.rs`) and answered from the live vhost topology, the queue
//! tasks' stats, the connection registry or the metadata document; writes (PUT, POST,
//! DELETE) go through `crate::admin`. No state of its own.

mod access;
mod auth;
mod connections;
mod definitions;
mod objects;
mod overview;
mod topology;
mod writes;

use crate::server::BrokerShared;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use auth::Viewer;

/// A response body: the whole JSON document at once (the API has no streaming responses).
type Body = Full<Bytes>;

/// Serves the management API on `listener` until `shutdown` is cancelled; open connections
/// finish their current request, then close.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<BrokerShared>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    info!(addr = %listener.local_addr()?, "listening for management HTTP");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracker.spawn(serve_connection(stream, peer, broker.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<BrokerShared>,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req| {
        let broker = broker.clone();
        async move { Ok::<_, Infallible>(handle(&broker, peer.ip(), req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// What an endpoint answers: a JSON status and document.
pub struct Reply {
    status: StatusCode,
    body: Value,
    /// A `Location` header (a created binding's URL).
    location: Option<String>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            location: None,
        }
    }

    fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            location: None,
        }
    }

    /// A status without a body (201 Created, 204 No Content).
    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: Value::Null,
            location: None,
        }
    }

    /// rabbitmq-compat: the management plugin's 400 body.
    fn bad_request(reason: impl Into<String>) -> Reply {
        Reply {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": "bad_request", "reason": reason.into()}),
            location: None,
        }
    }

    /// rabbitmq-compat: the management plugin's 404 body.
    fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "Object Not Found", "reason": "Not Found"}),
            location: None,
        }
    }

    /// rabbitmq-compat: the management plugin's 401 body (British spelling).
    fn not_authorised(reason: &str) -> Reply {
        Reply {
            status: StatusCode::UNAUTHORIZED,
            body: json!({"error": "not_authorised", "reason": reason}),
            location: None,
        }
    }

    fn into_response(self) -> Response<Body> {
        if self.body.is_null() {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = self.status;
            if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response
                    .headers_mut()
                    .insert(hyper::header::LOCATION, location);
            }
            return response;
        }
        let mut response = Response::new(Full::new(Bytes::from(self.body.to_string())));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

/// The endpoints, by path (segments percent-decoded).
enum Route {
    Overview,
    Definitions(Option<String>),
    Queues(Option<String>),
    Exchanges(Option<String>),
    Bindings(Option<String>),
    Users,
    User(String),
    Vhosts,
    Vhost(String),
    Permissions,
    Permission { vhost: String, user: String },
    Policies(Option<String>),
    Policy { vhost: String, name: String },
    Connections,
    Connection(String),
    Queue { vhost: String, name: String },
    QueueContents { vhost: String, name: String },
    Exchange { vhost: String, name: String },
    BindingsBetween(objects::BindingPath),
    Binding(objects::BindingPath, String),
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/api/")?;
        let segments: Vec<String> = rest
            .trim_end_matches('/')
            .split('/')
            .map(percent_decode)
            .collect::<Option<_>>()?;
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let one = |v: &str| v.to_string();
        Some(match s.as_slice() {
            ["overview"] => Route::Overview,
            ["definitions"] => Route::Definitions(None),
            ["definitions", v] => Route::Definitions(Some(one(v))),
            ["queues"] => Route::Queues(None),
            ["queues", v] => Route::Queues(Some(one(v))),
            ["exchanges"] => Route::Exchanges(None),
            ["exchanges", v] => Route::Exchanges(Some(one(v))),
            ["bindings"] => Route::Bindings(None),
            ["bindings", v] => Route::Bindings(Some(one(v))),
            ["users"] => Route::Users,
            ["users", u] => Route::User(one(u)),
            ["vhosts"] => Route::Vhosts,
            ["vhosts", v] => Route::Vhost(one(v)),
            ["permissions"] => Route::Permissions,
            ["permissions", v, u] => Route::Permission {
                vhost: one(v),
                user: one(u),
            },
            ["policies"] => Route::Policies(None),
            ["policies", v] => Route::Policies(Some(one(v))),
            ["policies", v, n] => Route::Policy {
                vhost: one(v),
                name: one(n),
            },
            ["connections"] => Route::Connections,
            ["connections", c] => Route::Connection(one(c)),
            ["queues", v, q] => Route::Queue {
                vhost: one(v),
                name: one(q),
            },
            ["queues", v, q, "contents"] => Route::QueueContents {
                vhost: one(v),
                name: one(q),
            },
            ["exchanges", v, x] => Route::Exchange {
                vhost: one(v),
                name: one(x),
            },
            ["bindings", v, "e", source, kind @ ("q" | "e"), dest, rest @ ..]
                if rest.len() <= 1 =>
            {
                let path = objects::BindingPath {
                    vhost: one(v),
                    source: one(source),
                    to_exchange: *kind == "e",
                    destination: one(dest),
                };
                match rest {
                    [props] => Route::Binding(path, one(props)),
                    _ => Route::BindingsBetween(path),
                }
            }
            _ => return None,
        })
    }
}

/// The largest request body accepted (a definitions file).
const MAX_BODY: usize = 64 * 1024 * 1024;

async fn handle(broker: &BrokerShared, peer: IpAddr, req: Request<Incoming>) -> Response<Body> {
    // rabbitmq-compat: like cowboy_rest, an unknown resource is 404 and a method it does not
    // allow is 405, both before authentication.
    let Some(route) = Route::parse(req.uri().path()) else {
        return Reply::not_found().into_response();
    };
    let allowed = route.methods();
    let method = req.method().clone();
    if !(method == Method::HEAD && allowed.contains(&Method::GET) || allowed.contains(&method)) {
        let mut response = Reply {
            status: StatusCode::METHOD_NOT_ALLOWED,
            body: json!({"error": "Method Not Allowed", "reason": "Method Not Allowed"}),
            location: None,
        }
        .into_response();
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
            response.headers_mut().insert(ALLOW, value);
        }
        return response;
    }
    let viewer = match Viewer::authenticate(broker, req.headers(), peer) {
        Ok(viewer) => viewer,
        Err(reply) => return reply.into_response(),
    };
    if method == Method::GET || method == Method::HEAD {
        return route_to(broker, &viewer, route).await.into_response();
    }
    // The vhost a write acts in must exist (except the vhost a PUT creates).
    if let Some(vhost) = route.vhost() {
        if !matches!(route, Route::Vhost(_)) && broker.vhost(vhost).is_none() {
            return Reply::not_found().into_response();
        }
    }
    if let Err(reply) = viewer.may_write(&route) {
        return reply.into_response();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Reply::bad_request(format!("cannot read the body: {e}")).into_response(),
    };
    writes::write(broker, &viewer, &method, route, &body)
        .await
        .into_response()
}

async fn route_to(broker: &BrokerShared, viewer: &Viewer, route: Route) -> Reply {
    if let Err(reply) = viewer.may_read(&route) {
        return reply;
    }
    if let Some(vhost) = route.vhost() {
        if broker.vhost(vhost).is_none() {
            return Reply::not_found();
        }
    }
    match route {
        Route::Overview => overview::overview(broker, viewer).await,
        Route::Definitions(None) => definitions::export(broker),
        Route::Definitions(Some(vhost)) => definitions::export_vhost(broker, &vhost),
        Route::Queues(vhost) => topology::queues(broker, viewer, vhost.as_deref()).await,
        Route::Exchanges(vhost) => topology::exchanges(broker, viewer, vhost.as_deref()),
        Route::Bindings(vhost) => topology::bindings(broker, viewer, vhost.as_deref()),
        Route::Users => access::users(broker),
        Route::User(name) => access::user(broker, &name),
        Route::Vhosts => access::vhosts(broker, viewer),
        Route::Vhost(name) => access::vhost(broker, &name),
        Route::Permissions => access::permissions(broker),
        Route::Permission { vhost, user } => access::permission(broker, &vhost, &user),
        Route::Policies(vhost) => access::policies(broker, viewer, vhost.as_deref()),
        Route::Policy { vhost, name } => access::policy(broker, &vhost, &name),
        Route::Connections => connections::list(broker, viewer),
        Route::Connection(name) => connections::one(broker, viewer, &name),
        Route::Queue { vhost, name } => topology::queue(broker, &vhost, &name).await,
        Route::Exchange { vhost, name } => {
            let all = topology::exchanges(broker, viewer, Some(&vhost));
            one_of(all, |x| x["name"] == name.as_str())
        }
        Route::BindingsBetween(path) => {
            let all = topology::bindings(broker, viewer, Some(&path.vhost));
            many_of(all, |b| binding_matches(b, &path))
        }
        Route::Binding(path, props) => {
            let all = topology::bindings(broker, viewer, Some(&path.vhost));
            one_of(all, |b| {
                binding_matches(b, &path) && b["properties_key"] == props.as_str()
            })
        }
        // Only DELETE is routed for a queue's contents.
        Route::QueueContents { .. } => Reply::not_found(),
    }
}

fn binding_matches(b: &Value, path: &objects::BindingPath) -> bool {
    let kind = if path.to_exchange {
        "exchange"
    } else {
        "queue"
    };
    b["source"] == path.source.as_str()
        && b["destination"] == path.destination.as_str()
        && b["destination_type"] == kind
}

/// The one item of a listing `pick` selects, or 404.
fn one_of(list: Reply, pick: impl Fn(&Value) -> bool) -> Reply {
    match list.body {
        Value::Array(items) => match items.into_iter().find(|item| pick(item)) {
            Some(item) => Reply::ok(item),
            None => Reply::not_found(),
        },
        _ => list,
    }
}

/// The items of a listing `pick` selects.
fn many_of(list: Reply, pick: impl Fn(&Value) -> bool) -> Reply {
    match list.body {
        Value::Array(items) => Reply::ok(Value::Array(
            items.into_iter().filter(|item| pick(item)).collect(),
        )),
        _ => list,
    }
}

impl Route {
    /// The vhost a route is scoped to, if any (it must exist).
    fn vhost(&self) -> Option<&str> {
        match self {
            Route::Definitions(v) | Route::Queues(v) | Route::Exchanges(v) | Route::Bindings(v) => {
                v.as_deref()
            }
            Route::Policies(v) => v.as_deref(),
            Route::Queue { vhost, .. }
            | Route::QueueContents { vhost, .. }
            | Route::Exchange { vhost, .. } => Some(vhost),
            Route::BindingsBetween(path) | Route::Binding(path, _) => Some(&path.vhost),
            Route::Vhost(v)
            | Route::Permission { vhost: v, .. }
            | Route::Policy { vhost: v, .. } => Some(v),
            _ => None,
        }
    }

    /// The methods a route answers.
    fn methods(&self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        const READ_PUT_DELETE: &[Method] =
            &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE];
        match self {
            Route::Definitions(_) => &[Method::GET, Method::HEAD, Method::POST],
            Route::User(_) | Route::Vhost(_) | Route::Permission { .. } | Route::Policy { .. } => {
                READ_PUT_DELETE
            }
            Route::Connection(_) | Route::Binding(..) => {
                &[Method::GET, Method::HEAD, Method::DELETE]
            }
            Route::Queue { .. } | Route::Exchange { .. } => READ_PUT_DELETE,
            Route::QueueContents { .. } => &[Method::DELETE],
            Route::BindingsBetween(_) => &[Method::GET, Method::HEAD, Method::POST],
            _ => READ,
        }
    }
}

/// Encodes a path segment: everything but unreserved characters as `%XX`.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (vhost `/` is `%2F` in URLs). None for a malformed escape or
/// a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_the_default_vhost_and_rejects_bad_escapes() {
        assert_eq!(percent_decode("%2F").as_deref(), Some("/"));
        assert_eq!(percent_decode("%2f").as_deref(), Some("/"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn routes_parse_with_decoded_segments() {
        assert!(matches!(
            Route::parse("/api/queues/%2F"),
            Some(Route::Queues(Some(v))) if v == "/"
        ));
        assert!(matches!(
            Route::parse("/api/permissions/%2F/guest"),
            Some(Route::Permission { vhost, user }) if vhost == "/" && user == "guest"
        ));
        assert!(matches!(
            Route::parse("/api/overview"),
            Some(Route::Overview)
        ));
        assert!(Route::parse("/api/nope").is_none());
        assert!(Route::parse("/other").is_none());
        assert!(matches!(
            Route::parse("/api/queues/%2F/q"),
            Some(Route::Queue { vhost, name }) if vhost == "/" && name == "q"
        ));
        assert!(matches!(
            Route::parse("/api/bindings/%2F/e/x/q/q/~"),
            Some(Route::Binding(path, props)) if path.source == "x" && !path.to_exchange && props == "~"
        ));
        assert!(Route::parse("/api/queues/%2F/q/other").is_none());
    }
}
