//! Authentication: SASL PLAIN and AMQPLAIN responses checked against the broker's users.
//! Today the only user is RabbitMQ's default `guest`/`guest`, allowed from loopback only.

use amq_protocol::types::{parsing::parse_field_table, AMQPValue};
use std::net::IpAddr;

/// The SASL mechanisms offered in connection.start.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    password: String,
    /// rabbitmq-compat: `loopback_users` — guest may only connect from localhost.
    loopback_only: bool,
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

#[derive(Debug, Clone)]
pub struct Users {
    users: Vec<User>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            users: vec![User {
                name: "guest".into(),
                password: "guest".into(),
                loopback_only: true,
            }],
        }
    }
}

impl Users {
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
        let user = self
            .users
            .iter()
            .find(|u| u.name == login && u.password == password)
            .ok_or_else(|| AuthError::Refused {
                mechanism: mechanism.to_string(),
            })?;
        if user.loopback_only && !is_loopback(peer) {
            return Err(AuthError::LoopbackOnly {
                user: user.name.clone(),
            });
        }
        Ok(user.clone())
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

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn plain_guest_from_loopback_is_accepted() {
        let users = Users::default();
        assert_eq!(
            users
                .authenticate("PLAIN", b"\0guest\0guest", LOCAL)
                .map(|u| u.name),
            Ok("guest".to_string())
        );
    }

    #[test]
    fn wrong_password_and_remote_guest_are_refused() {
        let users = Users::default();
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
        let users = Users::default();
        assert!(users.authenticate("AMQPLAIN", &buf[4..n], LOCAL).is_ok());
    }
}
