//! Authentication and vhost access: SASL PLAIN and AMQPLAIN responses checked against the
//! broker's users (RabbitMQ's salted password hashes, from the metadata document and
//! `--definitions`), and the permissions that let a user open a vhost (their patterns are
//! compiled into an `access::Access`, which the connection keeps for its vhost).

use crate::access::Access;
use amq_protocol::types::{parsing::parse_field_table, AMQPValue};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use warren_definitions::{verify_password, Definitions, HashingAlgorithm};

/// The SASL mechanisms offered in connection.start.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

/// rabbitmq-compat: RabbitMQ's default `loopback_users = [guest]`: these users may only
/// connect from localhost, whatever their password.
const LOOPBACK_USERS: &[&str] = &["guest"];

/// An authenticated user, as a connection keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
}

/// A user as the broker knows it: who, and how to check a password.
#[derive(Debug, Clone)]
struct Account {
    user: User,
    /// None: the user cannot log in with a password (RabbitMQ's empty `password_hash`, or
    /// an algorithm this broker does not know).
    password: Option<(HashingAlgorithm, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown mechanism or a response that does not parse.
    BadResponse(String),
    /// Unknown user or wrong password.
    Refused { mechanism: String },
    /// The user may only connect from loopback.
    LoopbackOnly { user: String },
}

impl AuthError {
    /// reply-text for the 403 connection.close, in RabbitMQ's words.
    pub fn reply_text(&self) -> String {
        match self {
            AuthError::BadResponse(why) => format!("ACCESS_REFUSED - {why}"),
            AuthError::Refused { mechanism } => format!(
                "ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. \
                 For details see the broker logfile."
            ),
            AuthError::LoopbackOnly { user } => {
                format!("ACCESS_REFUSED - User '{user}' can only connect via localhost")
            }
        }
    }
}

/// The users and their vhost permissions. Built from a definitions document at boot.
#[derive(Debug, Clone, Default)]
pub struct Users {
    accounts: HashMap<String, Account>,
    /// (user, vhost) → compiled configure/write/read and topic patterns. connection.open
    /// needs an entry; channels check their operations against it.
    permissions: HashMap<(String, String), Arc<Access>>,
}

impl Users {
    /// The users and permissions of `doc`. A user whose hashing algorithm is unknown is kept
    /// but cannot log in (validation reports such files before they get here).
    pub fn from_definitions(doc: &Definitions) -> Users {
        let mut accounts = HashMap::new();
        for u in &doc.users {
            let password = match (&u.password_hash, doc.hashing_algorithm_of(u)) {
                (Some(hash), Ok(algorithm)) if !hash.is_empty() => Some((algorithm, hash.clone())),
                (Some(hash), Err(name)) if !hash.is_empty() => {
                    tracing::warn!(user = %u.name, algorithm = %name, "unknown password hashing algorithm; the user cannot log in");
                    None
                }
                _ => None,
            };
            let user = User {
                name: u.name.clone(),
                tags: u.tags.names().into_iter().map(str::to_string).collect(),
            };
            accounts.insert(u.name.clone(), Account { user, password });
        }
        let permissions = doc
            .permissions
            .iter()
            .map(|p| {
                let access = Access::compile(p, &doc.topic_permissions);
                ((p.user.clone(), p.vhost.clone()), Arc::new(access))
            })
            .collect();
        Users {
            accounts,
            permissions,
        }
    }

    /// Checks a connection.start-ok response for `mechanism`, from `peer`.
    pub fn authenticate(
        &self,
        mechanism: &str,
        response: &[u8],
        peer: IpAddr,
    ) -> Result<User, AuthError> {
        let (login, password) = match mechanism {
            "PLAIN" => parse_plain(response)?,
            "AMQPLAIN" => parse_amqplain(response)?,
            other => {
                return Err(AuthError::BadResponse(format!(
                    "unsupported authentication mechanism '{other}'"
                )))
            }
        };
        self.check_login(login, &password, peer, mechanism)
    }

    /// Checks a user name and password from `peer` (what every mechanism comes down to; the
    /// management API's HTTP basic auth calls it with mechanism "basic").
    pub fn check_login(
        &self,
        login: String,
        password: &str,
        peer: IpAddr,
        mechanism: &str,
    ) -> Result<User, AuthError> {
        let refused = || AuthError::Refused {
            mechanism: mechanism.to_string(),
        };
        let account = self.accounts.get(&login).ok_or_else(refused)?;
        let Some((algorithm, hash)) = &account.password else {
            return Err(refused());
        };
        if !verify_password(*algorithm, hash, password) {
            return Err(refused());
        }
        if LOOPBACK_USERS.contains(&login.as_str()) && !is_loopback(peer) {
            return Err(AuthError::LoopbackOnly { user: login });
        }
        Ok(account.user.clone())
    }

    /// Whether `user` may open `vhost`: RabbitMQ's internal backend allows it when the user
    /// has a permissions entry for the vhost, whatever its patterns.
    pub fn may_open_vhost(&self, user: &str, vhost: &str) -> bool {
        self.access(user, vhost).is_some()
    }

    /// What `user` may do in `vhost`; None when they have no permissions entry for it.
    pub fn access(&self, user: &str, vhost: &str) -> Option<Arc<Access>> {
        self.permissions
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
fn parse_plain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut parts = response.split(|b| *b == 0);
    let (_authzid, login, password) = match (parts.next(), parts.next(), parts.next(), parts.next())
    {
        (Some(a), Some(l), Some(p), None) => (a, l, p),
        _ => return Err(AuthError::BadResponse("malformed PLAIN response".into())),
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| AuthError::BadResponse("PLAIN response is not UTF-8".into()))
    };
    Ok((utf8(login)?, utf8(password)?))
}

/// AMQPLAIN: a field table without its 4-byte length prefix, holding LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Result<(String, String), AuthError> {
    let bad = || AuthError::BadResponse("malformed AMQPLAIN response".into());
    let len = u32::try_from(response.len()).map_err(|_| bad())?;
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(response);
    let (rest, table) = parse_field_table(framed.as_slice()).map_err(|_| bad())?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let field = |name: &str| match table.inner().get(name) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
        _ => None,
    };
    match (field("LOGIN"), field("PASSWORD")) {
        (Some(l), Some(p)) => Ok((l, p)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use warren_definitions::hash_password_with_salt;

    /// guest/guest with full permissions on "/", and alice (no permissions) in "/".
    fn users() -> Users {
        let hash = |p: &str| hash_password_with_salt(HashingAlgorithm::Sha256, [1, 2, 3, 4], p);
        let doc = Definitions::from_json(&format!(
            r#"{{"users": [{{"name": "guest", "password_hash": "{}", "tags": "administrator"}},
                          {{"name": "alice", "password_hash": "{}", "tags": []}}],
                "vhosts": [{{"name": "/"}}],
                "permissions": [{{"user": "guest", "vhost": "/", "configure": ".*",
                                  "write": ".*", "read": ".*"}}]}}"#,
            hash("guest"),
            hash("secret")
        ))
        .unwrap();
        Users::from_definitions(&doc)
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn plain_guest_from_loopback_is_accepted() {
        let users = users();
        assert_eq!(
            users
                .authenticate("PLAIN", b"\0guest\0guest", LOCAL)
                .map(|u| u.name),
            Ok("guest".to_string())
        );
    }

    #[test]
    fn wrong_password_and_remote_guest_are_refused() {
        let users = users();
        assert!(matches!(
            users.authenticate("PLAIN", b"\0guest\0nope", LOCAL),
            Err(AuthError::Refused { .. })
        ));
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(matches!(
            users.authenticate("PLAIN", b"\0guest\0guest", remote),
            Err(AuthError::LoopbackOnly { .. })
        ));
    }

    #[test]
    fn only_guest_is_loopback_only_and_permissions_gate_vhosts() {
        let users = users();
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let alice = users
            .authenticate("PLAIN", b"\0alice\0secret", remote)
            .unwrap();
        assert_eq!(alice.tags, Vec::<String>::new());
        assert!(users.may_open_vhost("guest", "/"));
        assert!(!users.may_open_vhost("alice", "/"));
        assert!(!users.may_open_vhost("guest", "other"));
        assert!(matches!(
            users.authenticate("PLAIN", b"\0nobody\0secret", LOCAL),
            Err(AuthError::Refused { .. })
        ));
    }

    #[test]
    fn amqplain_table_without_length_prefix() {
        use amq_protocol::types::{generation::gen_field_table, FieldTable, LongString};
        let mut t = FieldTable::default();
        t.insert(
            "LOGIN".into(),
            AMQPValue::LongString(LongString::from("guest")),
        );
        t.insert(
            "PASSWORD".into(),
            AMQPValue::LongString(LongString::from("guest")),
        );
        let mut buf = vec![0u8; 256];
        let ctx = gen_field_table(&t)(amq_protocol::frame::WriteContext::from(&mut buf[..]))
            .map(|c| c.position as usize);
        let n = ctx.unwrap_or(0);
        assert!(n > 4);
        let users = users();
        assert!(users.authenticate("AMQPLAIN", &buf[4..n], LOCAL).is_ok());
    }
}
