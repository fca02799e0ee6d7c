//! The accept loop. `run` takes an already-bound listener and a shutdown token, which makes
//! in-process tests trivial: bind `127.0.0.1:0`, spawn `run`, connect.

use crate::alarm::DiskAlarm;
use crate::auth::Users;
use crate::config::Config;
use crate::connection;
use crate::connection::registry::Connections;
use crate::definitions_boot::{self, DefinitionsError};
use crate::queue::memory::MemoryBudget;
use crate::store::meta::MetaStore;
use crate::store::segment::SegmentStore;
use crate::store::sync::Syncer;
use crate::store::Persistence;
use crate::vhost::VHost;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// What every connection shares.
#[derive(Debug)]
pub struct BrokerShared {
    pub config: Config,
    /// Swapped whole when users or permissions change (only at boot today), so a handshake
    /// reads them without a lock.
    pub users: ArcSwap<Users>,
    /// The vhosts by name; replaced whole when one is added or deleted (connection.open reads
    /// it without a lock).
    vhosts: ArcSwap<HashMap<String, Arc<VHost>>>,
    pub alarm: Arc<DiskAlarm>,
    pub(crate) persistence: Arc<Persistence>,
    /// The open connections (for the management API, and to close a deleted user's).
    pub connections: Connections,
    /// Direct reply-to consumers, so a reply reaches its requester's connection.
    pub replies: Arc<crate::channel::reply_to::ReplyConsumers>,
    /// Serialises changes of users, vhosts, permissions and policies (management API writes).
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// Bumped whenever users or permissions change, so open connections re-read theirs.
    access_version: AtomicU64,
    next_connection_id: AtomicU64,
}

impl BrokerShared {
    /// Opens the data directory (recovering durable queues), loads `config.definitions` if
    /// set, and builds the users and vhosts. An invalid definitions file is an error holding
    /// a `DefinitionsError`, returned before anything of it is applied.
    pub fn open(config: Config) -> io::Result<Self> {
        let file = match &config.definitions {
            Some(path) => Some((
                path,
                definitions_boot::read(path).map_err(DefinitionsError::into_io)?,
            )),
            None => None,
        };
        // Read-only (a missing data dir reads as empty), so an invalid file changes nothing.
        let (meta, doc) = MetaStore::open(&config.data_dir)?;
        if let Some((path, defs)) = &file {
            definitions_boot::validate(path, defs, &doc).map_err(DefinitionsError::into_io)?;
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create data dir {}: {e}", config.data_dir.display()),
            )
        })?;
        let alarm = Arc::new(DiskAlarm::new(
            config.data_dir.clone(),
            config.disk_free_limit,
        ));
        alarm.check();
        // Page files only ever hold what a restart drops anyway.
        let paging_dir = config.data_dir.join("paging");
        match std::fs::remove_dir_all(&paging_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let persistence = Arc::new(Persistence {
            store: Box::new(SegmentStore::new(&config.data_dir)?),
            syncer: Syncer::start()?,
            meta,
            budget: Arc::new(MemoryBudget::new(config.memory_budget)),
            paging: Arc::new(SegmentStore::volatile(&paging_dir)?),
            delayed: Box::new(SegmentStore::new(&config.data_dir.join("delayed"))?),
            alarm: alarm.clone(),
        });
        let base = definitions_boot::boot_access(
            persistence.meta.base(),
            &doc,
            file.as_ref().map(|(_, defs)| defs),
        )?;
        persistence.meta.set_base(base.clone());
        let users = Users::from_definitions(&base);
        // Each vhost re-creates its own part of the stored topology (queues keyed by vhost
        // and name, so same-named queues in two vhosts are two queues).
        let mut vhosts = HashMap::new();
        for v in &base.vhosts {
            let vhost = VHost::new(&v.name, persistence.clone());
            vhost.set_policies(&base.policies);
            vhost.restore(&doc);
            vhosts.insert(v.name.clone(), vhost);
        }
        if let Some((_, defs)) = &file {
            // Problems were logged; a validated file's topology only fails against conflicting
            // stored topology, which stays as it is (RabbitMQ's boot import does the same).
            let _ = definitions_boot::apply_topology(&vhosts, defs);
        }
        // Stores of queues deleted while the broker was down (or mid-delete) go now.
        let keep: Vec<(String, String)> = vhosts
            .values()
            .flat_map(|v| {
                v.stored_queue_names()
                    .into_iter()
                    .map(|q| (v.name.clone(), q))
            })
            .collect();
        persistence.store.remove_other_queues(&keep)?;
        // Likewise the messages of durable delayed exchanges that are gone.
        let keep: Vec<(String, String)> = vhosts
            .values()
            .flat_map(|v| {
                v.stored_delayed_exchanges()
                    .into_iter()
                    .map(|x| (v.name.clone(), x))
            })
            .collect();
        persistence.delayed.remove_other_queues(&keep)?;
        Ok(BrokerShared {
            config,
            users: ArcSwap::from_pointee(users),
            vhosts: ArcSwap::from_pointee(vhosts),
            alarm,
            persistence,
            connections: Connections::default(),
            replies: Arc::default(),
            admin: tokio::sync::Mutex::new(()),
            access_version: AtomicU64::new(0),
            next_connection_id: AtomicU64::new(1),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn access_version(&self) -> u64 {
        self.access_version.load(Ordering::Acquire)
    }

    /// Installs users and permissions rebuilt from `base` (callers hold `admin`).
    pub(crate) fn set_users(&self, base: &warren_definitions::Definitions) {
        self.users.store(Arc::new(Users::from_definitions(base)));
        self.access_version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.load().get(name).cloned()
    }

    /// Every vhost, sorted by name.
    pub fn vhost_list(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<_> = self.vhosts.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Adds a vhost; None if it exists already. Callers hold `admin`.
    pub(crate) fn add_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        if self.vhost(name).is_some() {
            return None;
        }
        let vhost = VHost::new(name, self.persistence.clone());
        let mut next = HashMap::clone(&self.vhosts.load());
        next.insert(name.to_string(), vhost.clone());
        self.vhosts.store(Arc::new(next));
        Some(vhost)
    }

    /// Removes a vhost from the map (new connections can no longer open it); returns it.
    /// Callers hold `admin` and then delete its contents.
    pub(crate) fn remove_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        let mut next = HashMap::clone(&self.vhosts.load());
        let removed = next.remove(name);
        self.vhosts.store(Arc::new(next));
        removed
    }
}

/// A broker opened on its data directory: serve it with `serve`, steer it with the rest.
#[derive(Clone, Debug)]
pub struct Broker {
    shared: Arc<BrokerShared>,
}

impl Broker {
    /// Opens the data directory and recovers durable state. Must run inside the tokio runtime
    /// (recovered queues start their tasks).
    pub fn open(config: Config) -> io::Result<Broker> {
        Ok(Broker {
            shared: Arc::new(BrokerShared::open(config)?),
        })
    }

    /// Bytes of message data the queues hold in memory now, as `--memory-budget` counts them.
    pub fn queued_bytes(&self) -> usize {
        self.shared.persistence.budget.used()
    }

    /// Changes the disk free limit at run time (like `rabbitmqctl set_disk_free_limit`).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.shared.alarm.set_limit(bytes);
    }

    /// Serves AMQP on `listener` until `shutdown` is cancelled; then every connection is
    /// closed with 320 CONNECTION_FORCED and `serve` returns once they have all finished.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        let broker = self.shared;
        // What boot changed (default data, a definitions file) is on disk before anyone
        // connects.
        let meta = &broker.persistence.meta;
        meta.persist(meta.version()).await?;
        let tracker = TaskTracker::new();
        let alarm = broker.alarm.clone();
        tracker.spawn({
            let shutdown = shutdown.clone();
            async move { alarm.monitor(shutdown).await }
        });
        info!(addr = %listener.local_addr()?, "listening for AMQP 0-9-1");
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracker.spawn(connection::serve(stream, peer, broker.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
        info!("broker stopped");
        Ok(())
    }
}

impl Broker {
    /// Serves the management HTTP API on `listener` until `shutdown` is cancelled (spawn it
    /// beside `serve`, which serves AMQP for the same broker).
    pub async fn serve_http(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        crate::http::serve(listener, self.shared, shutdown).await
    }
}

/// Opens the broker on `config.data_dir` and serves AMQP on `listener` until `shutdown` is
/// cancelled (see `Broker::serve`).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    Broker::open(config)?.serve(listener, shutdown).await
}
