//! Reading and writing a [`Definitions`] document as JSON, and looking objects up in it by
//! their identity.

use std::fmt;

use crate::builtin::{self, Category};
use crate::model::{
    Definitions, Exchange, GlobalParameter, Parameter, Permission, Policy, Queue, TopicPermission,
    User, Vhost,
};
use crate::password::HashingAlgorithm;

/// A definitions document that is not valid JSON or does not fit the model (a boolean
/// where a string belongs, a list where an object belongs…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the error (0 when serde_json could not tell).
    pub line: usize,
    /// 1-based column of the error (0 when serde_json could not tell).
    pub column: usize,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "invalid definitions: {}", self.message)
        } else {
            write!(
                f,
                "invalid definitions at line {}, column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ParseError {}

impl From<serde_json::Error> for ParseError {
    fn from(err: serde_json::Error) -> Self {
        let (line, column) = (err.line(), err.column());
        // serde_json's Display appends " at line L column C"; the position has fields of
        // its own here, so keep only the message.
        let full = err.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        ParseError {
            line,
            column,
            message,
        }
    }
}

impl Definitions {
    /// Parses a definitions document.
    ///
    /// This checks only the shape of the JSON; call [`Definitions::validate`] for the
    /// cross-references (bindings to declared queues, permissions of listed users, …).
    pub fn from_json(json: &str) -> Result<Definitions, ParseError> {
        Ok(serde_json::from_str(json)?)
    }

    /// Parses a definitions document from bytes (e.g. an HTTP request body).
    pub fn from_slice(json: &[u8]) -> Result<Definitions, ParseError> {
        Ok(serde_json::from_slice(json)?)
    }

    /// Writes the document as indented JSON, keys in RabbitMQ's export order, unknown
    /// fields included.
    pub fn to_json_pretty(&self) -> String {
        // Cannot fail: every map key is a string and no Serialize impl in this crate
        // returns an error. The fallback keeps the signature honest without a panic.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Writes the document as compact JSON.
    pub fn to_json(&self) -> String {
        // Cannot fail, for the reason given in `to_json_pretty`.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The RabbitMQ version that wrote the file: `rabbitmq_version`, else `rabbit_version`
    /// (the same preference as RabbitMQ's import).
    pub fn version(&self) -> Option<&str> {
        self.rabbitmq_version
            .as_deref()
            .or(self.rabbit_version.as_deref())
    }

    /// The hashing algorithm that applies to `user`'s `password_hash`; see
    /// [`User::effective_hashing_algorithm`].
    pub fn hashing_algorithm_of(&self, user: &User) -> Result<HashingAlgorithm, String> {
        user.effective_hashing_algorithm(self.version())
    }

    /// The order in which RabbitMQ applies an import; see
    /// [`RABBITMQ_IMPORT_ORDER`](crate::RABBITMQ_IMPORT_ORDER).
    pub fn rabbitmq_import_order() -> &'static [Category] {
        &builtin::RABBITMQ_IMPORT_ORDER
    }

    /// Sets `vhost` on every object whose vhost is missing.
    ///
    /// A single-vhost export (`GET /api/definitions/{vhost}`) leaves the vhost out of each
    /// object; call this before validating or merging such a file into a full document.
    pub fn fill_missing_vhost(&mut self, vhost: &str) {
        let slots = self
            .permissions
            .iter_mut()
            .map(|p| &mut p.vhost)
            .chain(self.topic_permissions.iter_mut().map(|p| &mut p.vhost))
            .chain(self.parameters.iter_mut().map(|p| &mut p.vhost))
            .chain(self.policies.iter_mut().map(|p| &mut p.vhost))
            .chain(self.queues.iter_mut().map(|q| &mut q.vhost))
            .chain(self.exchanges.iter_mut().map(|x| &mut x.vhost))
            .chain(self.bindings.iter_mut().map(|b| &mut b.vhost));
        for slot in slots.filter(|slot| slot.is_empty()) {
            vhost.clone_into(slot);
        }
    }

    /// The user named `name`.
    pub fn find_user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The vhost named `name`.
    pub fn find_vhost(&self, name: &str) -> Option<&Vhost> {
        self.vhosts.iter().find(|v| v.name == name)
    }

    /// The permissions of `user` in `vhost`.
    pub fn find_permission(&self, user: &str, vhost: &str) -> Option<&Permission> {
        self.permissions
            .iter()
            .find(|p| p.user == user && p.vhost == vhost)
    }

    /// The topic permissions of `user` for `exchange` in `vhost`.
    pub fn find_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
    ) -> Option<&TopicPermission> {
        self.topic_permissions
            .iter()
            .find(|p| p.user == user && p.vhost == vhost && p.exchange == exchange)
    }

    /// The runtime parameter `component`/`name` in `vhost`.
    pub fn find_parameter(&self, vhost: &str, component: &str, name: &str) -> Option<&Parameter> {
        self.parameters
            .iter()
            .find(|p| p.vhost == vhost && p.component == component && p.name == name)
    }

    /// The global parameter named `name`.
    pub fn find_global_parameter(&self, name: &str) -> Option<&GlobalParameter> {
        self.global_parameters.iter().find(|p| p.name == name)
    }

    /// The policy named `name` in `vhost`.
    pub fn find_policy(&self, vhost: &str, name: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.vhost == vhost && p.name == name)
    }

    /// The queue named `name` in `vhost`.
    pub fn find_queue(&self, vhost: &str, name: &str) -> Option<&Queue> {
        self.queues
            .iter()
            .find(|q| q.vhost == vhost && q.name == name)
    }

    /// The exchange named `name` in `vhost`, as declared in this document (predeclared
    /// exchanges are not listed; see [`Definitions::has_exchange`]).
    pub fn find_exchange(&self, vhost: &str, name: &str) -> Option<&Exchange> {
        self.exchanges
            .iter()
            .find(|x| x.vhost == vhost && x.name == name)
    }

    /// Whether an exchange `name` exists in `vhost`: declared here or predeclared.
    pub fn has_exchange(&self, vhost: &str, name: &str) -> bool {
        builtin::is_predeclared_exchange(name) || self.find_exchange(vhost, name).is_some()
    }
}

impl User {
    /// The hashing algorithm for this user's `password_hash`, following RabbitMQ's rule
    /// (`hashing_algorithm/2` in `rabbit_auth_backend_internal.erl`): the named module if
    /// there is one; otherwise MD5 for files written by 3.0–3.5, SHA-256 for 3.6.0, and
    /// the default (SHA-256) for anything newer or unversioned.
    ///
    /// `version` is the document's [`Definitions::version`]. An unknown module name is
    /// returned as the error.
    pub fn effective_hashing_algorithm(
        &self,
        version: Option<&str>,
    ) -> Result<HashingAlgorithm, String> {
        match &self.hashing_algorithm {
            Some(name) => HashingAlgorithm::from_name(name).ok_or_else(|| name.clone()),
            None => {
                let pre_36 = ["3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5."];
                match version {
                    Some(v) if pre_36.iter().any(|prefix| v.starts_with(prefix)) => {
                        Ok(HashingAlgorithm::Md5)
                    }
                    _ => Ok(HashingAlgorithm::default()),
                }
            }
        }
    }
}
