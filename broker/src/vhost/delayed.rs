//! A vhost's delayed message exchanges (`crate::delayed`): creating one (opening and
//! recovering a durable one's store), starting recovered ones once the bindings are restored,
//! and what the boot clean-up and vhost deletion need to know of them.

use super::*;
use crate::delayed::{DelayedExchange, DelayedStore};

impl VHost {
    /// The delayed half of a new `x-delayed-message` exchange; `stored` (a durable exchange)
    /// opens its store, recovering what a previous run left in it.
    pub(super) fn new_delayed(
        self: &Arc<Self>,
        exchange: &str,
        stored: bool,
    ) -> AmqpResult<Arc<DelayedExchange>> {
        let store = if stored {
            let (store, recovered, issues) = self
                .persistence
                .delayed
                .open_queue(&self.name, exchange, usize::MAX)
                .map_err(|e| {
                    tracing::error!(exchange, vhost = %self.name, error = %e, "cannot open the delayed exchange's store");
                    AmqpError::internal_error(format_args!(
                        "cannot open the store of exchange '{exchange}' in vhost '{}'",
                        self.name
                    ))
                })?;
            for issue in issues {
                tracing::warn!(
                    exchange,
                    vhost = %self.name,
                    file = %issue.file.display(),
                    offset = issue.offset,
                    reason = %issue.reason,
                    "damaged delayed message record skipped during recovery"
                );
            }
            if !recovered.is_empty() {
                tracing::info!(exchange, vhost = %self.name, messages = recovered.len(), "recovered delayed messages");
            }
            let store = DelayedStore::new(
                store,
                self.persistence.syncer.clone(),
                self.persistence.alarm.clone(),
            );
            Some((store, recovered))
        } else {
            None
        };
        Ok(DelayedExchange::spawn(
            Arc::downgrade(self),
            exchange,
            store,
        ))
    }

    /// Lets every delayed exchange route its recovered messages (called once the stored
    /// topology, bindings included, is restored).
    pub(super) fn start_delayed_exchanges(&self) {
        for x in self.topology().exchanges.values() {
            if let Some(delayed) = &x.delayed {
                delayed.start();
            }
        }
    }

    /// The vhost is being deleted: every delayed exchange drops its messages and files.
    pub(super) fn delete_delayed_exchanges(&self) {
        for x in self.topology().exchanges.values() {
            if let Some(delayed) = &x.delayed {
                delayed.delete();
            }
        }
    }

    /// The delayed exchanges of this vhost that store messages (to tell the delayed store
    /// which directories are live).
    pub fn stored_delayed_exchanges(&self) -> Vec<String> {
        self.topology()
            .exchanges
            .values()
            .filter(|x| x.delayed.is_some() && exchange_persisted(x))
            .map(|x| x.name.clone())
            .collect()
    }
}
