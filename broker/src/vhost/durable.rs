//! A vhost's durable side: its durable topology as definitions objects for the metadata
//! store, re-creating it at startup, and opening (recovering) durable queues' stores.

use super::*;

impl VHost {
    /// Waits until the metadata store has this vhost's latest durable topology on disk.
    /// Called before a durable declare/delete/bind is answered.
    pub async fn sync_metadata(&self) -> AmqpResult<()> {
        let version = self.meta_pending.load(Ordering::Acquire);
        self.persistence.meta.persist(version).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the metadata file");
            AmqpError::internal_error("cannot write the broker's metadata to disk")
        })
    }

    /// The durable part of a topology in definitions form: what survives a restart.
    pub(super) fn durable_topology(&self, topo: &Topology) -> VhostTopology {
        let mut t = VhostTopology::default();
        for x in topo.exchanges.values() {
            if exchange_persisted(x) {
                t.exchanges.push(defs_model::Exchange {
                    name: x.name.clone(),
                    vhost: self.name.clone(),
                    kind: x.type_name().to_string(),
                    durable: true,
                    auto_delete: false,
                    internal: x.internal,
                    arguments: table_to_json(&x.arguments),
                    ..Default::default()
                });
            }
            for (dest, key, args) in x.bindings.iter() {
                if bindings::binding_persisted(topo, x, dest) {
                    t.bindings.push(defs_model::Binding {
                        source: x.name.clone(),
                        vhost: self.name.clone(),
                        destination: dest.name().to_string(),
                        destination_type: match dest {
                            Destination::Queue(_) => defs_model::DestinationType::Queue,
                            Destination::Exchange(_) => defs_model::DestinationType::Exchange,
                        },
                        routing_key: key.to_string(),
                        arguments: table_to_json(args),
                        ..Default::default()
                    });
                }
            }
        }
        for q in topo.queues.values() {
            if q.stores_messages() {
                t.queues.push(defs_model::Queue {
                    name: q.name.clone(),
                    vhost: self.name.clone(),
                    durable: true,
                    auto_delete: false,
                    arguments: table_to_json(&q.arguments),
                    ..Default::default()
                });
            }
        }
        t.exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        t.queues.sort_by(|a, b| a.name.cmp(&b.name));
        t.bindings.sort_by(|a, b| {
            (
                &a.source,
                a.destination_type.as_str(),
                &a.destination,
                &a.routing_key,
            )
                .cmp(&(
                    &b.source,
                    b.destination_type.as_str(),
                    &b.destination,
                    &b.routing_key,
                ))
        });
        t
    }

    /// Re-creates this vhost's durable topology from the metadata document at startup
    /// (recovering each durable queue's messages), or declares an imported file's. Entries
    /// that no longer make sense are logged, skipped and returned as problems.
    pub fn restore(self: &Arc<Self>, doc: &warren_definitions::Definitions) -> Vec<String> {
        let mut problems = Vec::new();
        let ours = |vhost: &str| vhost == self.name || (vhost.is_empty() && self.name == "/");
        for x in doc.exchanges.iter().filter(|x| ours(&x.vhost)) {
            let req = ExchangeDeclare {
                name: x.name.clone(),
                kind: x.kind.clone(),
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: json_to_table(&x.arguments),
            };
            if let Err(e) = self.declare_exchange(&req) {
                tracing::warn!(exchange = %x.name, error = %e, "exchange not restored");
                problems.push(format!(
                    "exchange '{}' in vhost '{}': {}",
                    x.name, self.name, e.text
                ));
            }
        }
        for q in doc.queues.iter().filter(|q| ours(&q.vhost)) {
            let req = QueueDeclare {
                name: q.name.clone(),
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: json_to_table(&q.arguments),
                server_named: true,
            };
            if let Err(e) = self.declare_queue(&req, 0) {
                tracing::warn!(queue = %q.name, error = %e, "queue not restored");
                problems.push(format!(
                    "queue '{}' in vhost '{}': {}",
                    q.name, self.name, e.text
                ));
            }
        }
        for b in doc.bindings.iter().filter(|b| ours(&b.vhost)) {
            let args = json_to_table(&b.arguments);
            let result = match b.destination_type {
                defs_model::DestinationType::Queue => {
                    self.bind_queue(&b.destination, &b.source, &b.routing_key, &args, 0)
                }
                defs_model::DestinationType::Exchange => {
                    self.bind_exchange(&b.destination, &b.source, &b.routing_key, &args)
                }
                defs_model::DestinationType::Other(_) => continue,
            };
            if let Err(e) = result {
                tracing::warn!(source = %b.source, destination = %b.destination, error = %e, "binding not restored");
                problems.push(format!(
                    "binding of {} '{}' to exchange '{}' in vhost '{}': {}",
                    b.destination_type.as_str(),
                    b.destination,
                    b.source,
                    self.name,
                    e.text
                ));
            }
        }
        // Bindings are back: recovered delayed messages may be routed now.
        self.start_delayed_exchanges();
        problems
    }

    /// Deletes everything in the vhost (it was deleted): further topology changes are refused,
    /// every queue is deleted with its stored messages, and the vhost's topology leaves the
    /// metadata document. The caller has already removed the vhost from the broker's map and
    /// asked its connections to close.
    pub async fn delete_contents(&self) {
        let queues: Vec<QueueRef> = {
            let _guard = self
                .write
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.deleted.store(true, Ordering::Release);
            self.delete_delayed_exchanges();
            let queues = self.topology().queues.values().cloned().collect();
            self.snapshot.store(Arc::new(Topology::default()));
            queues
        };
        for q in queues {
            // A queue already stopping is deleted by whoever stops it.
            let _ = q
                .request(|reply| crate::queue::QueueCmd::Delete {
                    if_unused: false,
                    if_empty: false,
                    reply,
                })
                .await;
        }
        let version = self.persistence.meta.remove_vhost_topology(&self.name);
        self.meta_pending.fetch_max(version, Ordering::AcqRel);
    }

    /// The stored queues of this vhost (to tell the store which directories are live).
    pub fn stored_queue_names(&self) -> Vec<String> {
        self.topology()
            .queues
            .values()
            .filter(|q| q.stores_messages())
            .map(|q| q.name.clone())
            .collect()
    }

    /// Opens (and recovers) a durable queue's store.
    pub(super) fn open_store(
        &self,
        queue: &str,
    ) -> AmqpResult<(QueueStorage, Vec<crate::store::Recovered>)> {
        let (store, recovered, issues) = self
            .persistence
            .store
            .open_queue(
                &self.name,
                queue,
                // Bodies past the read-ahead would only be dropped again at the first batch.
                self.persistence
                    .budget
                    .available()
                    .min(crate::queue::memory::STORED_READ_AHEAD),
            )
            .map_err(|e| {
                tracing::error!(queue, vhost = %self.name, error = %e, "cannot open the queue's store");
                AmqpError::internal_error(format_args!(
                    "cannot open the store of queue '{queue}' in vhost '{}'",
                    self.name
                ))
            })?;
        for issue in issues {
            tracing::warn!(
                queue,
                vhost = %self.name,
                file = %issue.file.display(),
                offset = issue.offset,
                reason = %issue.reason,
                "damaged record skipped during recovery"
            );
        }
        if !recovered.is_empty() {
            tracing::info!(queue, vhost = %self.name, messages = recovered.len(), "recovered messages");
        }
        let storage = QueueStorage::new(
            store,
            self.persistence.syncer.clone(),
            self.persistence.alarm.clone(),
        );
        Ok((storage, recovered))
    }
}
