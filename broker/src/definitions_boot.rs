//! What the broker starts with: the metadata document's users, vhosts and permissions, the
//! default data of a fresh broker (vhost `/`, user guest/guest, as RabbitMQ seeds them), and
//! `--definitions FILE`. The file is read, parsed and validated before anything of it is
//! applied; a valid file is then applied over the metadata in RabbitMQ's import order
//! (`apply_defs/3` in rabbit_definitions.erl), through the same declares AMQP clients use.

use crate::vhost::VHost;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warren_definitions::{
    hash_password, verify_password, Category, Definitions, HashingAlgorithm, Permission, Problem,
    Tags, User, ValidationOptions, Vhost,
};

/// The exchange types Warren routes, the delayed message exchange included.
pub const EXCHANGE_TYPES: &[&str] = &[
    "direct",
    "fanout",
    "topic",
    "headers",
    crate::delayed::TYPE_NAME,
];

/// A definitions file that cannot be loaded: every problem found, with its JSON path.
#[derive(Debug)]
pub struct DefinitionsError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl DefinitionsError {
    /// As the `io::Error` `Broker::open` returns; `main` finds it again with `downcast_ref`.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    fn whole_file(file: &Path, reason: String) -> DefinitionsError {
        DefinitionsError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                path: String::new(),
                reason,
            }],
        }
    }
}

impl fmt::Display for DefinitionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "definitions file {} is invalid ({n} problem{}); nothing of it was applied:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            // An empty JSON pointer is the whole document.
            let path = if p.path.is_empty() { "(file)" } else { &p.path };
            write!(f, "\n  {path}: {}", p.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionsError {}

/// Reads and parses a definitions file.
pub fn read(file: &Path) -> Result<Definitions, DefinitionsError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| DefinitionsError::whole_file(file, format!("cannot read the file: {e}")))?;
    Definitions::from_json(&text).map_err(|e| DefinitionsError::whole_file(file, e.to_string()))
}

/// Validates a definitions file against what the broker supports; `existing` (the broker's
/// metadata) counts as declared, so the file may refer to its vhosts, users and queues.
pub fn validate(
    file: &Path,
    defs: &Definitions,
    existing: &Definitions,
) -> Result<(), DefinitionsError> {
    let options = ValidationOptions {
        exchange_types: EXCHANGE_TYPES,
        existing: Some(existing),
    };
    let problems = defs.validate_with(&options).err().unwrap_or_default();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DefinitionsError {
            file: file.to_path_buf(),
            problems,
        })
    }
}

/// The users, vhosts, permissions, policies and parameters the broker starts with: `base`
/// (from the metadata document), with the default data if the broker has none and no file
/// to load, and the file's merged over it (import semantics: same name replaces).
///
/// Vhosts that the stored topology uses but `base` does not list (a data dir written before
/// vhosts were recorded) are added, so their queues' messages are kept.
pub fn boot_access(
    mut base: Definitions,
    stored: &Definitions,
    file: Option<&Definitions>,
) -> io::Result<Definitions> {
    match file {
        Some(file) => merge_access(&mut base, file)?,
        // rabbitmq-compat: RabbitMQ seeds guest and "/" only into an empty database, and not
        // when definitions are to be loaded at boot (`rabbit:maybe_insert_default_data`).
        None if base.users.is_empty() && base.vhosts.is_empty() => base.merge(default_data()?),
        None => {}
    }
    let listed: BTreeSet<String> = base.vhosts.iter().map(|v| v.name.clone()).collect();
    let used: BTreeSet<&str> = stored
        .exchanges
        .iter()
        .map(|x| x.vhost.as_str())
        .chain(stored.queues.iter().map(|q| q.vhost.as_str()))
        .map(|v| if v.is_empty() { "/" } else { v })
        .collect();
    for name in used.into_iter().filter(|v| !listed.contains(*v)) {
        tracing::warn!(vhost = %name, "stored topology in a vhost that is not defined; adding the vhost");
        base.vhosts.push(Vhost {
            name: name.to_string(),
            ..Vhost::default()
        });
    }
    Ok(base)
}

/// vhost `/` and guest/guest (an administrator with every permission on `/`), as a fresh
/// RabbitMQ has them. guest may only connect from loopback (see `auth`).
pub fn default_data() -> io::Result<Definitions> {
    let algorithm = HashingAlgorithm::Sha256;
    let all = ".*".to_string();
    Ok(Definitions {
        users: vec![User {
            name: "guest".into(),
            password_hash: Some(hash_password(algorithm, "guest").map_err(io::Error::other)?),
            hashing_algorithm: Some(algorithm.name().into()),
            tags: Tags::List(vec!["administrator".into()]),
            ..User::default()
        }],
        vhosts: vec![Vhost {
            name: "/".into(),
            ..Vhost::default()
        }],
        permissions: vec![Permission {
            user: "guest".into(),
            vhost: "/".into(),
            configure: all.clone(),
            write: all.clone(),
            read: all,
            ..Permission::default()
        }],
        ..Definitions::default()
    })
}

/// Merges everything of `file` but its topology into `base`. Each user's hashing algorithm
/// is written out (it may depend on the file's version), and a plain `password` is hashed
/// so that no password is stored in clear; an unchanged plain password keeps its stored
/// hash, so loading the same file twice changes nothing.
pub(crate) fn merge_access(base: &mut Definitions, file: &Definitions) -> io::Result<()> {
    let mut access = file.clone();
    access.exchanges.clear();
    access.queues.clear();
    access.bindings.clear();
    for user in &mut access.users {
        let Ok(algorithm) = file.hashing_algorithm_of(user) else {
            continue; // validation reports unknown algorithms
        };
        user.hashing_algorithm = Some(algorithm.name().into());
        let Some(plain) = user.password.take() else {
            continue;
        };
        if user.password_hash.is_some() {
            continue;
        }
        let stored = base
            .find_user(&user.name)
            .and_then(|u| u.password_hash.as_ref().map(|h| (u, h)))
            .filter(|(u, hash)| {
                u.hashing_algorithm.as_deref() == Some(algorithm.name())
                    && verify_password(algorithm, hash, &plain)
            });
        user.password_hash = Some(match stored {
            Some((_, hash)) => hash.clone(),
            None => hash_password(algorithm, &plain).map_err(io::Error::other)?,
        });
    }
    base.merge(access);
    Ok(())
}

/// Declares the file's exchanges, queues and bindings in RabbitMQ's import order. Users,
/// vhosts, permissions and topic permissions came first (`boot_access`, before the vhosts
/// were built); parameters and policies are stored with them. Declaring what exists is a
/// no-op; what conflicts with existing topology is logged, skipped and returned.
pub fn apply_topology(vhosts: &HashMap<String, Arc<VHost>>, file: &Definitions) -> Vec<String> {
    let mut problems = Vec::new();
    for category in Definitions::rabbitmq_import_order() {
        let part = match category {
            Category::Exchanges => Definitions {
                exchanges: file.exchanges.clone(),
                ..Definitions::default()
            },
            Category::Queues => Definitions {
                queues: file.queues.clone(),
                ..Definitions::default()
            },
            Category::Bindings => Definitions {
                bindings: file.bindings.clone(),
                ..Definitions::default()
            },
            _ => continue,
        };
        // `restore` declares what belongs to its vhost, as the metadata document's topology
        // is re-created at startup.
        for vhost in vhosts.values() {
            problems.extend(vhost.restore(&part));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let defs = Definitions::from_json(
            r#"{"vhosts": [{"name": "/"}],
                "exchanges": [{"name": "d", "vhost": "/", "type": "x-consistent-hash",
                               "durable": true, "auto_delete": false, "internal": false,
                               "arguments": {}}],
                "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "amq.fanout",
                              "destination_type": "exchange", "routing_key": "", "arguments": {}},
                             {"source": "amq.direct", "vhost": "/", "destination": "nope",
                              "destination_type": "queue", "routing_key": "", "arguments": {}}]}"#,
        )
        .unwrap();
        let err = validate(Path::new("f.json"), &defs, &Definitions::default()).unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"/exchanges/0/type"), "{err}");
        assert!(paths.contains(&"/bindings/1/destination"), "{err}");
        assert!(err.to_string().contains("f.json"), "{err}");
    }

    #[test]
    fn a_fresh_broker_gets_guest_and_root_but_not_when_a_file_is_loaded() {
        let fresh = boot_access(Definitions::default(), &Definitions::default(), None).unwrap();
        assert_eq!(fresh.users[0].name, "guest");
        assert!(fresh.find_permission("guest", "/").is_some());
        let file = Definitions::from_json(r#"{"vhosts": [{"name": "v"}]}"#).unwrap();
        let loaded =
            boot_access(Definitions::default(), &Definitions::default(), Some(&file)).unwrap();
        assert!(loaded.users.is_empty());
        assert_eq!(loaded.vhosts.len(), 1);
    }

    #[test]
    fn plain_passwords_are_hashed_once() {
        let file =
            Definitions::from_json(r#"{"users": [{"name": "u", "password": "pw", "tags": ""}]}"#)
                .unwrap();
        let mut base = Definitions::default();
        merge_access(&mut base, &file).unwrap();
        let first = base.clone();
        let user = &first.users[0];
        assert!(user.password.is_none());
        let hash = user.password_hash.as_deref().unwrap();
        assert!(verify_password(HashingAlgorithm::Sha256, hash, "pw"));
        merge_access(&mut base, &file).unwrap();
        assert_eq!(base, first);
    }
}
