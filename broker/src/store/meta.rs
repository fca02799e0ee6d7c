//! The broker's metadata: users, vhosts, permissions (policies and parameters kept as
//! imported) and durable exchanges, queues and bindings, as one definitions document in RabbitMQ's format,
//! `<data-dir>/definitions.json`, replaced atomically (write a temp file, fsync, rename, fsync
//! the directory) after each durable change. Concurrent changes share one write: a caller
//! waits for a write that started after its change, whoever did it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use warren_definitions::{Binding, Definitions, Exchange, Queue};

pub const FILE_NAME: &str = "definitions.json";

/// One vhost's durable topology.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VhostTopology {
    pub exchanges: Vec<Exchange>,
    pub queues: Vec<Queue>,
    pub bindings: Vec<Binding>,
}

#[derive(Debug)]
struct State {
    /// Everything but the topology sections: users, vhosts, permissions, policies, ….
    base: Definitions,
    topology: BTreeMap<String, VhostTopology>,
    version: u64,
}

#[derive(Debug)]
pub struct MetaStore {
    path: PathBuf,
    /// A std mutex: held only to update or snapshot the document, never across `.await`.
    state: Mutex<State>,
    /// The version on disk; held while writing, so writes are serialised.
    written: tokio::sync::Mutex<u64>,
}

impl MetaStore {
    /// Reads `<data_dir>/definitions.json` if present. A file that cannot be read or parsed is
    /// an error naming it: starting empty would silently drop the broker's durable state.
    pub fn open(data_dir: &Path) -> io::Result<(MetaStore, Definitions)> {
        let path = data_dir.join(FILE_NAME);
        let doc = match fs::read_to_string(&path) {
            Ok(text) => Definitions::from_json(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("metadata file {} is corrupt: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Definitions::default(),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read metadata file {}: {e}", path.display()),
                ))
            }
        };
        let mut base = doc.clone();
        base.exchanges.clear();
        base.queues.clear();
        base.bindings.clear();
        let store = MetaStore {
            path,
            state: Mutex::new(State {
                base,
                topology: BTreeMap::new(),
                version: 0,
            }),
            written: tokio::sync::Mutex::new(0),
        };
        Ok((store, doc))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a vhost's durable topology; returns the version a caller must persist.
    pub fn set_vhost_topology(&self, vhost: &str, topology: VhostTopology) -> u64 {
        let mut state = self.lock();
        if state.topology.get(vhost) != Some(&topology) {
            state.topology.insert(vhost.to_string(), topology);
            state.version += 1;
        }
        state.version
    }

    /// Forgets a deleted vhost's topology; returns the version a caller must persist.
    pub fn remove_vhost_topology(&self, vhost: &str) -> u64 {
        let mut state = self.lock();
        if state.topology.remove(vhost).is_some() {
            state.version += 1;
        }
        state.version
    }

    /// Everything but the topology: users, vhosts, permissions, policies, parameters.
    pub fn base(&self) -> Definitions {
        self.lock().base.clone()
    }

    /// Replaces everything but the topology (whose sections in `base` are ignored); returns
    /// the version a caller must persist.
    pub fn set_base(&self, mut base: Definitions) -> u64 {
        base.exchanges.clear();
        base.queues.clear();
        base.bindings.clear();
        let mut state = self.lock();
        if state.base != base {
            state.base = base;
            state.version += 1;
        }
        state.version
    }

    /// The latest version of the document (persist it to have everything on disk).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The whole document as it stands (what `export` returns).
    pub fn document(&self) -> Definitions {
        let state = self.lock();
        let mut doc = state.base.clone();
        doc.product_name = Some("Warren".into());
        doc.product_version = Some(env!("CARGO_PKG_VERSION").into());
        for t in state.topology.values() {
            doc.exchanges.extend(t.exchanges.iter().cloned());
            doc.queues.extend(t.queues.iter().cloned());
            doc.bindings.extend(t.bindings.iter().cloned());
        }
        doc
    }

    /// Makes sure version `version` (or later) is on disk.
    pub async fn persist(&self, version: u64) -> io::Result<()> {
        let mut written = self.written.lock().await;
        if *written >= version {
            return Ok(());
        }
        let (json, now) = {
            let current = self.lock().version;
            (self.document().to_json_pretty(), current)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, json.as_bytes()))
            .await
            .map_err(io::Error::other)??;
        *written = now;
        Ok(())
    }
}

/// temp file, fsync, rename over, fsync the directory: readers see the old or the new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str) -> Queue {
        Queue {
            name: name.into(),
            vhost: "/".into(),
            durable: true,
            ..Queue::default()
        }
    }

    #[tokio::test]
    async fn persisted_topology_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, doc) = MetaStore::open(dir.path()).unwrap();
        assert!(doc.queues.is_empty());
        let v = meta.set_vhost_topology(
            "/",
            VhostTopology {
                queues: vec![queue("a"), queue("b")],
                ..VhostTopology::default()
            },
        );
        meta.persist(v).await.unwrap();
        let (_, doc) = MetaStore::open(dir.path()).unwrap();
        let names: Vec<_> = doc.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(doc.product_name.as_deref(), Some("Warren"));
        assert!(!dir.path().join("definitions.json.tmp").exists());
    }

    #[tokio::test]
    async fn an_unchanged_topology_needs_no_new_write() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, _) = MetaStore::open(dir.path()).unwrap();
        let t = VhostTopology {
            queues: vec![queue("a")],
            ..VhostTopology::default()
        };
        let v1 = meta.set_vhost_topology("/", t.clone());
        let v2 = meta.set_vhost_topology("/", t);
        assert_eq!(v1, v2);
    }

    #[tokio::test]
    async fn users_and_vhosts_in_the_base_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, _) = MetaStore::open(dir.path()).unwrap();
        let mut base = Definitions::default();
        base.vhosts.push(warren_definitions::Vhost {
            name: "sales".into(),
            ..Default::default()
        });
        let v1 = meta.set_base(base.clone());
        assert_eq!(
            meta.set_base(base),
            v1,
            "an unchanged base needs no new write"
        );
        meta.persist(v1).await.unwrap();
        let (_, doc) = MetaStore::open(dir.path()).unwrap();
        assert_eq!(doc.vhosts[0].name, "sales");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{ not json").unwrap();
        let err = MetaStore::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("definitions.json"), "{err}");
    }
}
