//! Bindings of a vhost: queue.bind/unbind, exchange.bind/unbind (exchange-to-exchange), and
//! what removing a queue or an exchange does to the bindings that lead to it. An auto-delete
//! exchange goes when its last binding (as the source) goes, which may cascade.

use super::*;

/// Whether a binding outlives the broker: its source and its destination both do (the
/// predeclared `amq.*` exchanges count as durable: every vhost has them).
pub(super) fn binding_persisted(topo: &Topology, source: &Exchange, dest: &Destination) -> bool {
    let durable_exchange = |x: &Exchange| exchange_persisted(x) || x.name.starts_with("amq.");
    durable_exchange(source)
        && match dest {
            Destination::Queue(q) => q.stores_messages(),
            Destination::Exchange(name) => topo
                .exchanges
                .get(&**name)
                .is_some_and(|x| durable_exchange(x)),
        }
}

impl Topology {
    /// Removes exchange `name` with its bindings, the bindings that lead to it, and the
    /// auto-delete exchanges that this leaves without bindings. Returns whether anything
    /// durable changed.
    pub(super) fn remove_exchange(&mut self, name: &str) -> bool {
        let Some(x) = self.exchanges.remove(name) else {
            return false;
        };
        if let Some(delayed) = &x.delayed {
            // Its pending messages (and their files) go with it.
            delayed.delete();
        }
        // Bindings that lead to it were persisted only if it was.
        let durable = exchange_persisted(&x);
        self.remove_destination(&Destination::Exchange(Arc::from(name))) || durable
    }

    /// Removes every binding leading to `dest`; auto-delete exchanges left without bindings
    /// are removed too (and so on). Returns whether anything durable changed.
    pub(super) fn remove_destination(&mut self, dest: &Destination) -> bool {
        let mut durable = false;
        let mut emptied = Vec::new();
        for x in self.exchanges.values_mut() {
            if x.bindings.contains_destination(dest) {
                let x = Arc::make_mut(x);
                let removed = x.bindings.remove_destination(dest);
                if matches!(dest, Destination::Exchange(_)) {
                    x.exchange_bindings = x.exchange_bindings.saturating_sub(removed);
                }
                if x.bindings.is_empty() && x.auto_delete {
                    emptied.push(x.name.clone());
                }
            }
        }
        for name in emptied {
            durable |= self.remove_exchange(&name);
        }
        durable
    }
}

impl VHost {
    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        let q = self.queue(queue, conn_id)?;
        self.change_binding(
            exchange,
            Destination::Queue(q),
            routing_key,
            arguments,
            true,
        )
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        let q = self.queue(queue, conn_id)?;
        self.change_binding(
            exchange,
            Destination::Queue(q),
            routing_key,
            arguments,
            false,
        )
    }

    /// exchange.bind: messages routed by `source` also go through `destination`.
    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let dest = self.exchange_destination(destination)?;
        self.change_binding(source, dest, routing_key, arguments, true)
    }

    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let dest = self.exchange_destination(destination)?;
        self.change_binding(source, dest, routing_key, arguments, false)
    }

    fn exchange_destination(&self, name: &str) -> AmqpResult<Destination> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if !self.topology().exchanges.contains_key(name) {
            return Err(AmqpError::no_exchange(name, &self.name));
        }
        Ok(Destination::Exchange(Arc::from(name)))
    }

    fn change_binding(
        &self,
        source: &str,
        dest: Destination,
        routing_key: &str,
        arguments: &FieldTable,
        bind: bool,
    ) -> AmqpResult<()> {
        if source.is_empty() {
            return Err(default_exchange_refused());
        }
        let arguments = normalize_table(arguments);
        self.update(|topo, durable_change| {
            if let Destination::Exchange(name) = &dest {
                // Deleted since it was looked up.
                if !topo.exchanges.contains_key(&**name) {
                    return Err(AmqpError::no_exchange(name, &self.name));
                }
            }
            let x = topo
                .exchanges
                .get(source)
                .ok_or_else(|| AmqpError::no_exchange(source, &self.name))?;
            let persisted = binding_persisted(topo, x, &dest);
            let to_exchange = matches!(dest, Destination::Exchange(_));
            let x = topo
                .exchanges
                .get_mut(source)
                .ok_or_else(|| AmqpError::no_exchange(source, &self.name))?;
            let x = Arc::make_mut(x);
            let changed = if bind {
                x.bindings.bind(dest, routing_key, &arguments)?
            } else {
                // rabbitmq-compat: unbinding a binding that does not exist succeeds.
                x.bindings.unbind(&dest, routing_key, &arguments)
            };
            if changed && to_exchange {
                if bind {
                    x.exchange_bindings += 1;
                } else {
                    x.exchange_bindings = x.exchange_bindings.saturating_sub(1);
                }
            }
            *durable_change = changed && persisted;
            if changed && !bind && x.bindings.is_empty() && x.auto_delete {
                *durable_change |= topo.remove_exchange(source);
            }
            Ok(())
        })
    }

    /// Removes a queue (already stopped, or stopping) from the topology: its bindings go, and
    /// auto-delete exchanges left without bindings go with them.
    pub fn forget_queue(&self, q: &QueueRef) {
        let _ = self.update(|topo, durable_change| {
            if topo.queues.get(&q.name) == Some(q) {
                topo.queues.remove(&q.name);
                *durable_change = q.stores_messages();
            }
            *durable_change |= topo.remove_destination(&Destination::Queue(q.clone()));
            Ok(())
        });
    }
}
