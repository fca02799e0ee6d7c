//! Changes to users, vhosts, permissions and policies at run time, and definitions imports:
//! what the management API's writes do. Each change is validated like a definitions file
//! (every problem listed), applied to the metadata document, installed (users and
//! permissions swapped in, vhosts added or deleted, policies recompiled) and on disk before
//! it is answered. Changes are serialised by `BrokerShared::admin`.

use crate::definitions_boot::{self, EXCHANGE_TYPES};
use crate::server::BrokerShared;
use warren_definitions::{Definitions, Permission, Policy, User, ValidationOptions, Vhost};

/// A PUT created the object or changed an existing one (201 or 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
}

#[derive(Debug)]
pub enum AdminError {
    /// The request cannot be applied: every reason, worded for the user.
    BadRequest(Vec<String>),
    /// The object to change or delete does not exist.
    NotFound,
    /// The metadata could not be written.
    Internal(String),
}

impl AdminError {
    fn bad(reason: impl Into<String>) -> AdminError {
        AdminError::BadRequest(vec![reason.into()])
    }
}

type AdminResult<T> = Result<T, AdminError>;

impl BrokerShared {
    /// Validates `part` (a document holding only what is being changed) against the broker's
    /// current document.
    fn validate_change(&self, part: &Definitions) -> AdminResult<()> {
        let existing = self.persistence.meta.document();
        let options = ValidationOptions {
            exchange_types: EXCHANGE_TYPES,
            existing: Some(&existing),
        };
        part.validate_with(&options).map_err(|problems| {
            AdminError::BadRequest(problems.iter().map(ToString::to_string).collect())
        })
    }

    /// Installs `base` as the broker's users, vhosts, permissions and policies, and waits
    /// until it is on disk.
    async fn commit_base(&self, base: Definitions) -> AdminResult<()> {
        let policies_changed = self.persistence.meta.base().policies != base.policies;
        for v in &base.vhosts {
            if let Some(new) = self.add_vhost(&v.name) {
                new.set_policies(&base.policies);
            }
        }
        if policies_changed {
            // Every queue and exchange gets its effective policy again.
            for vhost in self.vhost_list() {
                vhost.set_policies(&base.policies);
            }
        }
        self.set_users(&base);
        self.persist_meta(self.persistence.meta.set_base(base))
            .await
    }

    async fn persist_meta(&self, version: u64) -> AdminResult<()> {
        self.persistence.meta.persist(version).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the metadata file");
            AdminError::Internal(format!("cannot write the broker's metadata: {e}"))
        })
    }

    /// Adds or replaces user `name`. A plain `password` is hashed; a user given neither a
    /// password nor a hash keeps the one it had (a new one cannot log in with a password).
    pub async fn put_user(&self, name: &str, mut user: User) -> AdminResult<Change> {
        let _admin = self.admin.lock().await;
        user.name = name.to_string();
        let mut base = self.persistence.meta.base();
        let existing = base.find_user(name).cloned();
        if user.password.is_none() && user.password_hash.is_none() {
            if let Some(old) = &existing {
                user.password_hash = old.password_hash.clone();
                user.hashing_algorithm = old.hashing_algorithm.clone();
            }
        }
        let part = Definitions {
            users: vec![user],
            ..Definitions::default()
        };
        self.validate_change(&part)?;
        definitions_boot::merge_access(&mut base, &part)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        self.commit_base(base).await?;
        Ok(if existing.is_some() {
            Change::Updated
        } else {
            Change::Created
        })
    }

    /// Deletes user `name` with its permissions; its connections are closed.
    pub async fn delete_user(&self, name: &str) -> AdminResult<()> {
        let _admin = self.admin.lock().await;
        let mut base = self.persistence.meta.base();
        if base.find_user(name).is_none() {
            return Err(AdminError::NotFound);
        }
        base.users.retain(|u| u.name != name);
        base.permissions.retain(|p| p.user != name);
        base.topic_permissions.retain(|p| p.user != name);
        self.commit_base(base).await?;
        self.connections
            .close_where(|c| c.user == name, &format!("user '{name}' was deleted"));
        Ok(())
    }

    /// Adds vhost `name` or updates its metadata (description, tags, default queue type).
    pub async fn put_vhost(&self, name: &str, mut vhost: Vhost) -> AdminResult<Change> {
        let _admin = self.admin.lock().await;
        vhost.name = name.to_string();
        if name.is_empty() {
            return Err(AdminError::bad("a vhost name cannot be empty"));
        }
        let part = Definitions {
            vhosts: vec![vhost.clone()],
            ..Definitions::default()
        };
        self.validate_change(&part)?;
        let mut base = self.persistence.meta.base();
        let change = match base.vhosts.iter_mut().find(|v| v.name == name) {
            Some(existing) => {
                *existing = vhost;
                Change::Updated
            }
            None => {
                base.vhosts.push(vhost);
                Change::Created
            }
        };
        self.commit_base(base).await?;
        Ok(change)
    }

    /// Deletes vhost `name`: its connections are closed, its queues (with their messages),
    /// exchanges, bindings, permissions and policies go.
    pub async fn delete_vhost(&self, name: &str) -> AdminResult<()> {
        let _admin = self.admin.lock().await;
        let mut base = self.persistence.meta.base();
        if !base.vhosts.iter().any(|v| v.name == name) && self.vhost(name).is_none() {
            return Err(AdminError::NotFound);
        }
        base.vhosts.retain(|v| v.name != name);
        base.permissions.retain(|p| p.vhost != name);
        base.topic_permissions.retain(|p| p.vhost != name);
        base.policies.retain(|p| p.vhost != name);
        base.parameters.retain(|p| p.vhost != name);
        if let Some(vhost) = self.remove_vhost(name) {
            self.connections
                .close_where(|c| c.vhost == name, &format!("vhost '{name}' is deleted"));
            vhost.delete_contents().await;
        }
        self.commit_base(base).await
    }

    /// Sets `user`'s configure/write/read patterns in `vhost`.
    pub async fn put_permission(
        &self,
        vhost: &str,
        user: &str,
        mut permission: Permission,
    ) -> AdminResult<Change> {
        let _admin = self.admin.lock().await;
        permission.vhost = vhost.to_string();
        permission.user = user.to_string();
        let part = Definitions {
            permissions: vec![permission.clone()],
            ..Definitions::default()
        };
        self.validate_change(&part)?;
        let mut base = self.persistence.meta.base();
        let change = match base
            .permissions
            .iter_mut()
            .find(|p| p.vhost == vhost && p.user == user)
        {
            Some(existing) => {
                *existing = permission;
                Change::Updated
            }
            None => {
                base.permissions.push(permission);
                Change::Created
            }
        };
        self.commit_base(base).await?;
        Ok(change)
    }

    /// Removes `user`'s permissions in `vhost`; its connections to `vhost` are closed when
    /// they next act (see `Connection::refresh_access`).
    pub async fn delete_permission(&self, vhost: &str, user: &str) -> AdminResult<()> {
        let _admin = self.admin.lock().await;
        let mut base = self.persistence.meta.base();
        let before = base.permissions.len();
        base.permissions
            .retain(|p| !(p.vhost == vhost && p.user == user));
        if base.permissions.len() == before {
            return Err(AdminError::NotFound);
        }
        self.commit_base(base).await?;
        self.connections.close_where(
            |c| c.vhost == vhost && c.user == user,
            &format!("user '{user}' no longer has access to vhost '{vhost}'"),
        );
        Ok(())
    }

    /// Adds or replaces policy `name` in `vhost`.
    pub async fn put_policy(
        &self,
        vhost: &str,
        name: &str,
        mut policy: Policy,
    ) -> AdminResult<Change> {
        let _admin = self.admin.lock().await;
        policy.vhost = vhost.to_string();
        policy.name = name.to_string();
        if policy.definition.is_empty() {
            return Err(AdminError::bad("a policy needs a non-empty definition"));
        }
        let part = Definitions {
            policies: vec![policy.clone()],
            ..Definitions::default()
        };
        self.validate_change(&part)?;
        let mut base = self.persistence.meta.base();
        let change = match base
            .policies
            .iter_mut()
            .find(|p| p.vhost == vhost && p.name == name)
        {
            Some(existing) => {
                *existing = policy;
                Change::Updated
            }
            None => {
                base.policies.push(policy);
                Change::Created
            }
        };
        self.commit_base(base).await?;
        Ok(change)
    }

    pub async fn delete_policy(&self, vhost: &str, name: &str) -> AdminResult<()> {
        let _admin = self.admin.lock().await;
        let mut base = self.persistence.meta.base();
        let before = base.policies.len();
        base.policies
            .retain(|p| !(p.vhost == vhost && p.name == name));
        if base.policies.len() == before {
            return Err(AdminError::NotFound);
        }
        self.commit_base(base).await
    }

    /// Imports a definitions document, as `--definitions` does at boot: validated first
    /// (nothing applied if any problem), then users, vhosts, permissions, policies and
    /// parameters merged, then exchanges, queues and bindings declared. With `into_vhost`,
    /// only the topology, policies and parameters are imported, all into that vhost
    /// (RabbitMQ's per-vhost import). Declarations that conflict with existing objects are
    /// skipped and reported (the rest stays applied, as in RabbitMQ).
    pub async fn import(&self, mut defs: Definitions, into_vhost: Option<&str>) -> AdminResult<()> {
        let _admin = self.admin.lock().await;
        if let Some(vhost) = into_vhost {
            defs.users.clear();
            defs.vhosts.clear();
            defs.permissions.clear();
            defs.topic_permissions.clear();
            defs.global_parameters.clear();
            let v = vhost.to_string();
            defs.exchanges
                .iter_mut()
                .for_each(|x| x.vhost.clone_from(&v));
            defs.queues.iter_mut().for_each(|q| q.vhost.clone_from(&v));
            defs.bindings
                .iter_mut()
                .for_each(|b| b.vhost.clone_from(&v));
            defs.policies
                .iter_mut()
                .for_each(|p| p.vhost.clone_from(&v));
            defs.parameters
                .iter_mut()
                .for_each(|p| p.vhost.clone_from(&v));
        }
        self.validate_change(&defs)?;
        let mut base = self.persistence.meta.base();
        definitions_boot::merge_access(&mut base, &defs)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        self.commit_base(base).await?;
        let vhosts = self
            .vhost_list()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        let problems = definitions_boot::apply_topology(&vhosts, &defs);
        self.persist_meta(self.persistence.meta.version()).await?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AdminError::BadRequest(problems))
        }
    }
}
