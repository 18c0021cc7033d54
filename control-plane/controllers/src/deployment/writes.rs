//! The requests of a Deployment sync: adopting and releasing ReplicaSets, creating, scaling
//! and deleting them, and writing the Deployment's revision and status.
//!
//! A ReplicaSet is scaled with an update carrying the resourceVersion it was read at, as
//! kube does: a decision taken on a stale copy is refused with a conflict, and the sync is
//! retried on a fresh cache. The Deployment's status goes through its `status` subresource
//! (also with its resourceVersion, which each write here moves on), its revision annotation
//! through a merge patch of the object.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::apps::v1::ReplicaSet;
use keel_api::label_selector::Selector;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::annotations;
use super::events;
use super::progress;
use super::scale::{self, Scale};
use super::sync::{refs, SyncError, Syncer};
use super::template;
use super::util;
use crate::api_errors::{is_not_found, message_of, namespace_terminating, status_of};
use crate::replicaset::pods::{self, object_key};

impl SyncError {
    /// A write refused because the namespace is being deleted: kube drops the key rather
    /// than retry, every retry failing the same way until the namespace is gone.
    pub fn namespace_terminating(&self) -> bool {
        match self {
            SyncError::Create { source, .. }
            | SyncError::Update { source, .. }
            | SyncError::Adopt { source, .. }
            | SyncError::Status { source, .. } => namespace_terminating(source),
            _ => false,
        }
    }
}

impl Syncer<'_> {
    fn name(&self) -> &str {
        self.d.metadata.name.as_deref().unwrap_or_default()
    }

    /// The ReplicaSets this Deployment owns after adopting the matching orphans and releasing
    /// the ones it no longer selects (`getReplicaSetsForDeployment`). Any failure fails the
    /// sync, as kube's: which ReplicaSets are old is not known without them.
    pub(super) async fn claim_replica_sets(
        &self,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, SyncError> {
        let namespace = self.d.metadata.namespace.clone();
        let candidates = self
            .context
            .replicasets
            .state_filter(|rs| rs.metadata.namespace == namespace);
        let claim = template::claim_replica_sets(&self.d, selector, &candidates);
        let mut first_error = None;
        // Adopted ReplicaSets as the API server returned them, by name; and those gone.
        let mut adopted: HashMap<String, ReplicaSet> = HashMap::new();
        let mut gone = HashSet::new();
        if !claim.adopt.is_empty() {
            match self.recheck_deletion().await {
                Err(error) => first_error = Some(error),
                Ok(()) => {
                    for rs in &claim.adopt {
                        let name = rs.metadata.name.clone().unwrap_or_default();
                        match self.adopt(rs).await {
                            Ok(updated) => {
                                adopted.insert(name, updated);
                            }
                            Err(error) if is_not_found(&error) => {
                                gone.insert(name);
                            }
                            Err(source) => {
                                first_error.get_or_insert(SyncError::Adopt {
                                    replicaset: object_key(&rs.metadata),
                                    source,
                                });
                            }
                        }
                    }
                }
            }
        }
        for rs in &claim.release {
            if let Err(source) = self.release(rs).await {
                first_error.get_or_insert(SyncError::Release {
                    replicaset: object_key(&rs.metadata),
                    source,
                });
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        Ok(claim
            .claimed
            .into_iter()
            .filter_map(|rs| {
                let name = rs.metadata.name.clone().unwrap_or_default();
                if gone.contains(&name) {
                    return None;
                }
                Some(adopted.remove(&name).unwrap_or_else(|| (*rs).clone()))
            })
            .collect())
    }

    /// Re-reads the Deployment from the API server before adopting
    /// (`RecheckDeletionTimestamp`): one deleted a moment ago must not adopt ReplicaSets the
    /// garbage collector would then delete with it.
    async fn recheck_deletion(&self) -> Result<(), SyncError> {
        let cannot = |reason: String| SyncError::CannotAdopt {
            deployment: self.key.to_string(),
            reason,
        };
        let fresh = self
            .deployments
            .get(self.name())
            .await
            .map_err(|error| cannot(format!("can't recheck DeletionTimestamp: {error}")))?;
        if fresh.metadata.uid != self.d.metadata.uid {
            return Err(cannot(format!(
                "original Deployment {} is gone: got uid {}, wanted {}",
                self.key,
                fresh.metadata.uid.as_deref().unwrap_or_default(),
                self.d.metadata.uid.as_deref().unwrap_or_default(),
            )));
        }
        if let Some(deleted) = &fresh.metadata.deletion_timestamp {
            return Err(cannot(format!(
                "{} has just been deleted at {}",
                self.key, deleted.0
            )));
        }
        Ok(())
    }

    /// Makes the Deployment the controller of the orphan `rs`; the uid in the patch keeps a
    /// namesake created meanwhile out.
    async fn adopt(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        let patch = json!({"metadata": {
            "ownerReferences": [template::controller_reference(&self.d)],
            "uid": rs.metadata.uid,
        }});
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        self.replicasets
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
    }

    /// Removes the Deployment from `rs`'s owners; one gone or recreated needs no release.
    async fn release(&self, rs: &ReplicaSet) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": self.d.metadata.uid}],
            "uid": rs.metadata.uid,
        }});
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        match self
            .replicasets
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if status_of(&error)
                    .is_some_and(|status| status.is_not_found() || status.is_invalid()) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Creates the new ReplicaSet; returns it and whether it existed already. A namesake
    /// that is this Deployment's and runs its template is the one a lost reply or a slow
    /// cache hid. Any other is a hash collision: `collisionCount` goes up, so that the next
    /// sync picks another name. A failure is recorded in the Progressing condition (with a
    /// deadline) and as an event.
    pub(super) async fn create_replica_set(
        &mut self,
        rs: &ReplicaSet,
    ) -> Result<(ReplicaSet, bool), SyncError> {
        let key = object_key(&rs.metadata);
        let error = match self.replicasets.create(&PostParams::default(), rs).await {
            Ok(created) => return Ok((created, false)),
            Err(error) => error,
        };
        let already_exists = status_of(&error).is_some_and(|status| status.is_already_exists());
        if already_exists {
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
            let Some(existing) = self
                .context
                .replicasets
                .get(&ObjectRef::new(name).within(namespace))
            else {
                // Not in the cache yet: look again once it is.
                return Err(SyncError::Create {
                    replicaset: key,
                    source: error,
                });
            };
            let uid = self.d.metadata.uid.as_deref().unwrap_or_default();
            let template = existing.spec.template.clone().unwrap_or_default();
            if pods::is_controlled_by(&existing.metadata, uid)
                && template::equal_ignore_hash(&self.d.spec.template, &template)
            {
                return Ok(((*existing).clone(), true));
            }
            let status = self.d.status.get_or_insert_with(Default::default);
            let before = status.collision_count.unwrap_or(0);
            status.collision_count = Some(before.wrapping_add(1));
            match self.write_status().await {
                Ok(()) => tracing::info!(
                    key = %self.key,
                    old_collision_count = before,
                    "found a hash collision for deployment, bumping collisionCount"
                ),
                Err(error) => tracing::debug!(%error, "recording a hash collision"),
            }
            return Err(SyncError::Collision { replicaset: key });
        }
        self.record(events::create_failed(
            rs.metadata.name.as_deref().unwrap_or_default(),
            &error,
        ));
        if !namespace_terminating(&error) && util::has_progress_deadline(&self.d) {
            let message = format!(
                "Failed to create new replica set {:?}: {}",
                rs.metadata.name.as_deref().unwrap_or_default(),
                message_of(&error)
            );
            let condition = progress::new_condition(
                progress::PROGRESSING,
                progress::FALSE,
                progress::FAILED_RS_CREATE_REASON,
                &message,
                self.now,
            );
            if self.set_condition(condition) {
                // The failure to create matters more than a failure to record it.
                if let Err(error) = self.write_status().await {
                    tracing::debug!(%error, "recording a failed replica set create");
                }
            }
        }
        Err(SyncError::Create {
            replicaset: key,
            source: error,
        })
    }

    pub(super) async fn update_replica_set(
        &self,
        rs: &ReplicaSet,
    ) -> Result<ReplicaSet, SyncError> {
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        self.replicasets
            .replace(name, &PostParams::default(), rs)
            .await
            .map_err(|source| SyncError::Update {
                replicaset: object_key(&rs.metadata),
                source,
            })
    }

    /// Carries `plan` out in order over `rss`, stopping at the first failure; returns
    /// whether a size changed.
    pub(super) async fn apply_scales(
        &self,
        plan: &[Scale],
        rss: &[&ReplicaSet],
    ) -> Result<bool, SyncError> {
        let mut scaled = false;
        for step in plan {
            let Some(rs) = rss
                .iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(step.name.as_str()))
            else {
                continue;
            };
            let Some(updated) =
                scale::scaled_replica_set(rs, &self.d, step.replicas, step.refresh_annotations)
            else {
                continue;
            };
            self.update_replica_set(&updated).await?;
            let from = util::rs_replicas(rs);
            let note = events::scaled(&step.name, from, step.replicas);
            if let Some(note) = &note {
                scaled = true;
                tracing::info!(key = %self.key, "{}", note.message);
            }
            self.record(note);
        }
        Ok(scaled)
    }

    /// Deletes the old ReplicaSets beyond the revision history limit. A ReplicaSet gone, or
    /// replaced by a namesake (the uid precondition), is no failure.
    pub(super) async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), SyncError> {
        for rs in scale::cleanup_deployment(&refs(old), &self.d) {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            tracing::debug!(key = %self.key, replicaset = %name, "deleting an old revision");
            match self.replicasets.delete(name, &params).await {
                Ok(_) => {}
                Err(error)
                    if status_of(&error)
                        .is_some_and(|status| status.is_not_found() || status.is_conflict()) => {}
                // As kube: stop at the first failure rather than pile on a struggling server.
                Err(source) => {
                    return Err(SyncError::Delete {
                        replicaset: object_key(&rs.metadata),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Writes what changed of the Deployment: its revision annotation, its status.
    pub(super) async fn persist(
        &mut self,
        revision_changed: bool,
        status_changed: bool,
    ) -> Result<(), SyncError> {
        if revision_changed {
            self.patch_revision().await?;
        }
        if status_changed {
            self.write_status().await?;
        }
        Ok(())
    }

    async fn patch_revision(&mut self) -> Result<(), SyncError> {
        let key = annotations::REVISION_ANNOTATION;
        let revision = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(key))
            .cloned();
        let patch = json!({"metadata": {"annotations": {key: revision}}});
        let updated = self
            .deployments
            .patch(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| SyncError::Revision {
                deployment: self.key.to_string(),
                source,
            })?;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Writes the in-memory status through the `status` subresource.
    pub(super) async fn write_status(&mut self) -> Result<(), SyncError> {
        let updated = self
            .deployments
            .replace_status(self.name(), &PostParams::default(), &self.d)
            .await
            .map_err(|source| SyncError::Status {
                deployment: self.key.to_string(),
                source,
            })?;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }
}
