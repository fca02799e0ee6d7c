//! HTTP basic authentication against the broker's users, and what the management tags let a
//! user read (RabbitMQ's `management`, `policymaker`, `monitoring`, `administrator`).

use super::{Reply, Route};
use crate::auth::Users;
use crate::server::BrokerShared;
use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

/// An authenticated management user.
pub struct Viewer {
    name: String,
    /// `administrator`: everything, including users, permissions and definitions.
    admin: bool,
    /// `monitoring` (or `administrator`): every vhost's objects.
    monitor: bool,
    /// `policymaker` (or `administrator`): policies of the vhosts it sees.
    policymaker: bool,
    /// The users as they were when the request came in (for vhost visibility).
    users: Arc<Users>,
}

impl Viewer {
    /// Checks the `Authorization: Basic …` header. rabbitmq-compat: missing or wrong
    /// credentials and users without a management tag all get 401 (with the realm header).
    pub fn authenticate(
        broker: &BrokerShared,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<Viewer, Reply> {
        let (login, password) =
            basic_credentials(headers).ok_or_else(|| Reply::not_authorised("Login failed"))?;
        let users = broker.users.load_full();
        let user = users
            .check_login(login, &password, peer, "basic")
            .map_err(|_| Reply::not_authorised("Login failed"))?;
        let has = |tag: &str| user.tags.iter().any(|t| t == tag);
        let admin = has("administrator");
        let monitor = admin || has("monitoring");
        if !(monitor || has("management") || has("policymaker")) {
            return Err(Reply::not_authorised("Not management user"));
        }
        let policymaker = admin || has("policymaker");
        Ok(Viewer {
            name: user.name,
            admin,
            monitor,
            policymaker,
            users,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_monitor(&self) -> bool {
        self.monitor
    }

    /// Whether this user sees `vhost`'s objects: monitors see every vhost, other management
    /// users those they have permissions in (RabbitMQ's `list_visible_vhosts`).
    pub fn sees(&self, vhost: &str) -> bool {
        self.monitor || self.users.may_open_vhost(&self.name, vhost)
    }

    /// Refuses writes this user's tags do not cover: `administrator` for everything;
    /// rabbitmq-compat: `policymaker` may also change policies of the vhosts it sees.
    pub(super) fn may_write(&self, route: &Route) -> Result<(), Reply> {
        match route {
            // Queues, exchanges and bindings: any management user, checked against their
            // permissions in the vhost like AMQP methods.
            Route::Queue { vhost, .. }
            | Route::QueueContents { vhost, .. }
            | Route::Exchange { vhost, .. } => self.may_use(vhost),
            Route::BindingsBetween(path) | Route::Binding(path, _) => self.may_use(&path.vhost),
            _ if self.admin => Ok(()),
            Route::Policy { vhost, .. } if self.policymaker && self.sees(vhost) => Ok(()),
            _ => Err(Reply::not_authorised("Not administrator user")),
        }
    }

    fn may_use(&self, vhost: &str) -> Result<(), Reply> {
        if self.users.may_open_vhost(&self.name, vhost) {
            Ok(())
        } else {
            Err(Reply::not_authorised(
                "User not authorised to access virtual host",
            ))
        }
    }

    /// This user's permissions in `vhost`.
    pub fn access(&self, vhost: &str) -> Option<Arc<crate::access::Access>> {
        self.users.access(&self.name, vhost)
    }

    /// Refuses routes this user's tags do not cover.
    pub(super) fn may_read(&self, route: &Route) -> Result<(), Reply> {
        match route {
            Route::Definitions(_)
            | Route::Users
            | Route::User(_)
            | Route::Permissions
            | Route::Permission { .. }
                if !self.admin =>
            {
                Err(Reply::not_authorised("Not administrator user"))
            }
            _ => match route.vhost() {
                Some(vhost) if !self.sees(vhost) => Err(Reply::not_authorised(
                    "User not authorised to access virtual host",
                )),
                _ => Ok(()),
            },
        }
    }
}

/// The user name and password of a basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        // "guest:gu:est"
        assert_eq!(
            basic_credentials(&headers("Basic Z3Vlc3Q6Z3U6ZXN0")),
            Some(("guest".into(), "gu:est".into()))
        );
        assert_eq!(basic_credentials(&headers("Bearer abc")), None);
        assert_eq!(basic_credentials(&headers("Basic !!!")), None);
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
