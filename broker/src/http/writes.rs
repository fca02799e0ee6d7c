//! The management API's writes: PUT and DELETE of users, vhosts, permissions and policies,
//! POST of a definitions document, DELETE of a connection. Bodies are RabbitMQ's JSON (the
//! same objects as in a definitions file); the work is done by `crate::admin`.

use super::{objects, Reply, Route, Viewer};
use crate::admin::{AdminError, Change};
use crate::server::BrokerShared;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use warren_definitions::Definitions;

pub async fn write(
    broker: &BrokerShared,
    viewer: &Viewer,
    method: &Method,
    route: Route,
    body: &[u8],
) -> Reply {
    let delete = *method == Method::DELETE;
    // The parent vhost of a permission or policy must exist.
    if let Route::Permission { vhost, .. } | Route::Policy { vhost, .. } = &route {
        if broker.vhost(vhost).is_none() {
            return Reply::not_found();
        }
    }
    let result = match route {
        Route::User(name) if delete => broker.delete_user(&name).await.map(|()| None),
        Route::User(name) => match parse(body) {
            Ok(user) => broker.put_user(&name, user).await.map(Some),
            Err(reply) => return reply,
        },
        Route::Vhost(name) if delete => broker.delete_vhost(&name).await.map(|()| None),
        Route::Vhost(name) => match parse_or_default(body) {
            Ok(vhost) => broker.put_vhost(&name, vhost).await.map(Some),
            Err(reply) => return reply,
        },
        Route::Permission { vhost, user } if delete => {
            broker.delete_permission(&vhost, &user).await.map(|()| None)
        }
        Route::Permission { vhost, user } => match parse_permission(body) {
            Ok(p) => broker.put_permission(&vhost, &user, p).await.map(Some),
            Err(reply) => return reply,
        },
        Route::Policy { vhost, name } if delete => {
            broker.delete_policy(&vhost, &name).await.map(|()| None)
        }
        Route::Policy { vhost, name } => match parse_policy(body) {
            Ok(p) => broker.put_policy(&vhost, &name, p).await.map(Some),
            Err(reply) => return reply,
        },
        Route::Definitions(vhost) => {
            if let Some(v) = &vhost {
                if broker.vhost(v).is_none() {
                    return Reply::not_found();
                }
            }
            match parse::<Definitions>(body) {
                Ok(defs) => broker.import(defs, vhost.as_deref()).await.map(|()| None),
                Err(reply) => return reply,
            }
        }
        Route::Connection(name) => {
            return match broker.connections.find(&name) {
                Some(c) => {
                    c.force_close("Closed via management plugin");
                    Reply::empty(StatusCode::NO_CONTENT)
                }
                None => Reply::not_found(),
            };
        }
        Route::Queue { vhost, name } if delete => {
            return objects::delete_queue(broker, viewer, &vhost, &name, false)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::Queue { vhost, name } => {
            return objects::put_queue(broker, viewer, &vhost, &name, body)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::QueueContents { vhost, name } => {
            return objects::delete_queue(broker, viewer, &vhost, &name, true)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::Exchange { vhost, name } if delete => {
            return objects::delete_exchange(broker, viewer, &vhost, &name)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::Exchange { vhost, name } => {
            return objects::put_exchange(broker, viewer, &vhost, &name, body)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::BindingsBetween(path) => {
            return objects::post_binding(broker, viewer, &path, body)
                .await
                .unwrap_or_else(|reply| reply)
        }
        Route::Binding(path, props) => {
            return objects::delete_binding(broker, viewer, &path, &props)
                .await
                .unwrap_or_else(|reply| reply)
        }
        // Routes without writes were answered 405 by the router.
        _ => return Reply::not_found(),
    };
    match result {
        Ok(Some(Change::Created)) => Reply::empty(StatusCode::CREATED),
        Ok(Some(Change::Updated) | None) => Reply::empty(StatusCode::NO_CONTENT),
        Err(AdminError::NotFound) => Reply::not_found(),
        Err(AdminError::BadRequest(reasons)) => Reply::bad_request(reasons.join("; ")),
        Err(AdminError::Internal(reason)) => Reply::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "internal_error", "reason": reason}),
        ),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| Reply::bad_request(format!("invalid JSON body: {e}")))
}

/// An empty body reads as `{}` (RabbitMQ accepts `PUT /api/vhosts/v` without one).
fn parse_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

/// rabbitmq-compat: configure, write and read are all required.
fn parse_permission(body: &[u8]) -> Result<warren_definitions::Permission, Reply> {
    let value: Value = parse(body)?;
    for key in ["configure", "write", "read"] {
        if !value.get(key).is_some_and(Value::is_string) {
            return Err(Reply::bad_request(format!(
                "{key} must be a string (a pattern)"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| Reply::bad_request(format!("invalid body: {e}")))
}

/// rabbitmq-compat: pattern and definition are required.
fn parse_policy(body: &[u8]) -> Result<warren_definitions::Policy, Reply> {
    let value: Value = parse(body)?;
    if !value.get("pattern").is_some_and(Value::is_string) {
        return Err(Reply::bad_request("pattern must be a string"));
    }
    if !value.get("definition").is_some_and(Value::is_object) {
        return Err(Reply::bad_request("definition must be an object"));
    }
    serde_json::from_value(value).map_err(|e| Reply::bad_request(format!("invalid body: {e}")))
}
