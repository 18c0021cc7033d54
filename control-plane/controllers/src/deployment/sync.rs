//! One sync of one Deployment (kube's `syncDeployment`): claim its ReplicaSets, then — being
//! deleted: status only; paused or rescaled: scale; otherwise a step of its strategy — and
//! write the status. The decisions are the pure modules'; this carries them out, the writes
//! themselves being in `writes`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use keel_api::label_selector::Selector;
use keel_events::Recorder;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;

use super::annotations::{self, MAX_REV_HISTORY_LENGTH_IN_CHARS};
use super::events;
use super::progress::{self, Requeue};
use super::rolling;
use super::scale::{self, Scale};
use super::template;
use super::util::{self, DeploymentError};
use crate::workqueue::WorkQueue;

/// What the watch tasks and workers share.
pub(super) struct Context {
    pub(super) client: Client,
    pub(super) deployments: Store<Deployment>,
    pub(super) replicasets: Store<ReplicaSet>,
    pub(super) queue: Arc<WorkQueue>,
    /// One wait for the caches, shared by the workers.
    pub(super) synced: crate::informer::CachesSynced,
    /// Events about the Deployments, never waited for.
    pub(super) recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("deployment {deployment}: {source}")]
    Decide {
        deployment: String,
        #[source]
        source: DeploymentError,
    },
    #[error("can't adopt replica sets for {deployment}: {reason}")]
    CannotAdopt { deployment: String, reason: String },
    #[error("adopting replica set {replicaset}: {source}")]
    Adopt {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing replica set {replicaset}: {source}")]
    Release {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating replica set {replicaset}: {source}")]
    Create {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    /// The new ReplicaSet's name is taken by another one: `collisionCount` was raised, the
    /// next sync tries another name.
    #[error("replica set {replicaset} exists with another template (hash collision)")]
    Collision { replicaset: String },
    #[error("updating replica set {replicaset}: {source}")]
    Update {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting replica set {replicaset}: {source}")]
    Delete {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the revision of {deployment}: {source}")]
    Revision {
        deployment: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of {deployment}: {source}")]
    Status {
        deployment: String,
        #[source]
        source: kube::Error,
    },
}

/// One sync in progress: the Deployment as this sync sees and changes it.
pub(super) struct Syncer<'a> {
    pub(super) context: &'a Context,
    pub(super) key: &'a str,
    pub(super) deployments: Api<Deployment>,
    pub(super) replicasets: Api<ReplicaSet>,
    /// The cached Deployment with the API defaults applied; its status, revision and
    /// resourceVersion follow this sync's writes.
    pub(super) d: Deployment,
    /// Whole seconds, as conditions are written.
    pub(super) now: Timestamp,
}

pub(super) fn refs(rss: &[ReplicaSet]) -> Vec<&ReplicaSet> {
    rss.iter().collect()
}

/// Syncs the Deployment with `key`; on success, when to look at it again for its progress
/// deadline.
pub(super) async fn sync(context: &Context, key: &str) -> Result<Requeue, SyncError> {
    let Some((namespace, name)) = key.split_once('/') else {
        tracing::warn!(%key, "not a namespace/name key");
        return Ok(Requeue::Never);
    };
    let Some(cached) = context
        .deployments
        .get(&ObjectRef::new(name).within(namespace))
    else {
        tracing::debug!(%key, "deployment has been deleted");
        return Ok(Requeue::Never);
    };
    let mut d = (*cached).clone();
    util::set_defaults(&mut d);
    let selector = match Selector::new(&d.spec.selector) {
        Ok(selector) => selector,
        Err(error) => {
            // Retrying does not fix a selector; its next update will be synced.
            tracing::warn!(%key, %error, "deployment not synced: invalid selector");
            return Ok(Requeue::Never);
        }
    };
    let mut syncer = Syncer {
        context,
        key,
        deployments: Api::namespaced(context.client.clone(), namespace),
        replicasets: Api::namespaced(context.client.clone(), namespace),
        d,
        now: progress::whole_seconds(Timestamp::now()),
    };
    if selector.is_everything() {
        return syncer.selecting_all().await;
    }
    let rs_list = syncer.claim_replica_sets(&selector).await?;
    if syncer.d.metadata.deletion_timestamp.is_some() {
        return syncer.sync_status_only(&rs_list).await;
    }
    // Recorded before anything else, so that a resumed rollout is not timed out for the
    // time it spent paused.
    if progress::check_paused_conditions(&mut syncer.d, syncer.now) {
        syncer.write_status().await?;
    }
    let (new_rs, old) = syncer
        .replica_sets_and_sync_revision(&rs_list, false)
        .await?;
    let paused = syncer.d.spec.paused.unwrap_or(false);
    if paused || scale::is_scaling_event(&syncer.d, new_rs.as_ref(), &refs(&old)) {
        return syncer.sync_scale(new_rs, old).await;
    }
    let strategy = util::strategy_type(&syncer.d).to_string();
    match strategy.as_str() {
        util::RECREATE => syncer.rollout_recreate(&rs_list, new_rs, old).await,
        util::ROLLING_UPDATE => syncer.rollout_rolling(&rs_list, new_rs, old).await,
        other => Err(syncer.decide_error(DeploymentError::UnsupportedStrategy(other.to_string()))),
    }
}

impl Syncer<'_> {
    /// Records `note` on the Deployment (never waits).
    pub(super) fn record(&self, note: Option<crate::events::Note>) {
        if let Some(note) = note {
            note.record(&self.context.recorder, &keel_events::reference(&self.d));
        }
    }

    pub(super) fn decide_error(&self, source: DeploymentError) -> SyncError {
        SyncError::Decide {
            deployment: self.key.to_string(),
            source,
        }
    }

    /// A Deployment selecting every pod is refused; kube only records that it saw its
    /// generation (a failure to is not retried).
    async fn selecting_all(&mut self) -> Result<Requeue, SyncError> {
        tracing::warn!(
            key = %self.key,
            "this deployment is selecting all pods; a non-empty selector is required"
        );
        self.record(Some(events::selecting_all()));
        let generation = self.d.metadata.generation.unwrap_or(0);
        let status = self.d.status.get_or_insert_with(Default::default);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            if let Err(error) = self.write_status().await {
                tracing::debug!(%error, "recording the observed generation");
            }
        }
        Ok(Requeue::Never)
    }

    /// The old ReplicaSets and the new one, with revisions synced
    /// (`getAllReplicaSetsAndSyncRevision`); the new one is created when `create` is set.
    async fn replica_sets_and_sync_revision(
        &mut self,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let all = refs(rs_list);
        let (_, old) = template::find_old_replica_sets(&self.d, &all);
        let old: Vec<ReplicaSet> = old.into_iter().cloned().collect();
        let new_rs = self.new_replica_set(&all, &old, create).await?;
        Ok((new_rs, old))
    }

    /// The ReplicaSet running the Deployment's template (`getNewReplicaSet`). An existing one
    /// gets the Deployment's annotations, a revision above every old one and its
    /// `minReadySeconds`; the Deployment then takes its revision. A missing one is created
    /// when `create` is set, sized by [`util::new_rs_new_replicas`].
    async fn new_replica_set(
        &mut self,
        rs_list: &[&ReplicaSet],
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let existing = template::find_new_replica_set(&self.d, rs_list).cloned();
        let new_revision = (annotations::max_revision(&refs(old)) + 1).to_string();
        if let Some(mut rs) = existing {
            let annotated = annotations::set_new_replica_set_annotations(
                &self.d,
                &mut rs,
                &new_revision,
                true,
                MAX_REV_HISTORY_LENGTH_IN_CHARS,
                util::replica_annotations(&self.d),
            );
            let min_ready = self.d.spec.min_ready_seconds;
            if annotated || rs.spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                rs.spec.min_ready_seconds = min_ready;
                // As kube: the Deployment takes the revision in the sync this update
                // triggers.
                return self.update_replica_set(&rs).await.map(Some);
            }
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|map| map.get(annotations::REVISION_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let revision_changed = annotations::set_deployment_revision(&mut self.d, &revision);
            // A Deployment that had no Progressing condition starts counting from now.
            let message = format!(
                "Found new replica set {:?}",
                rs.metadata.name.as_deref().unwrap_or_default()
            );
            let status_changed = self.set_progressing_if_missing(&message);
            self.persist(revision_changed, status_changed).await?;
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template::compute_hash(&self.d.spec.template, collision_count);
        let mut rs = template::new_replica_set(&self.d, &hash);
        let replicas = {
            let mut all = refs(old);
            all.push(&rs);
            util::new_rs_new_replicas(&self.d, &all, &rs)
        };
        rs.spec.replicas = Some(replicas.map_err(|error| self.decide_error(error))?);
        annotations::set_new_replica_set_annotations(
            &self.d,
            &mut rs,
            &new_revision,
            false,
            MAX_REV_HISTORY_LENGTH_IN_CHARS,
            util::replica_annotations(&self.d),
        );
        let (created, already_existed) = self.create_replica_set(&rs).await?;
        let replicas = util::rs_replicas(&created);
        let replicaset = created.metadata.name.as_deref().unwrap_or_default();
        let note = events::created(replicaset, replicas, already_existed);
        if note.is_some() {
            tracing::info!(key = %self.key, %replicaset, replicas, "scaled up replica set");
        }
        self.record(note);
        let revision_changed = annotations::set_deployment_revision(&mut self.d, &new_revision);
        let mut status_changed = false;
        if !already_existed && util::has_progress_deadline(&self.d) {
            let message = format!(
                "Created new replica set {:?}",
                created.metadata.name.as_deref().unwrap_or_default()
            );
            let condition = progress::new_condition(
                progress::PROGRESSING,
                progress::TRUE,
                progress::NEW_REPLICA_SET_REASON,
                &message,
                self.now,
            );
            status_changed = self.set_condition(condition);
        }
        self.persist(revision_changed, status_changed).await?;
        Ok(Some(created))
    }

    /// Sets `FoundNewReplicaSet` when there is a deadline and no Progressing condition yet;
    /// returns whether the status changed.
    fn set_progressing_if_missing(&mut self, message: &str) -> bool {
        let status = self.d.status.clone().unwrap_or_default();
        if !util::has_progress_deadline(&self.d)
            || progress::get_condition(&status, progress::PROGRESSING).is_some()
        {
            return false;
        }
        let condition = progress::new_condition(
            progress::PROGRESSING,
            progress::TRUE,
            progress::FOUND_NEW_RS_REASON,
            message,
            self.now,
        );
        self.set_condition(condition)
    }

    /// Sets a condition on the Deployment's status; returns whether it changed.
    pub(super) fn set_condition(&mut self, condition: DeploymentCondition) -> bool {
        let status = self.d.status.get_or_insert_with(Default::default);
        let before = status.clone();
        progress::set_condition(status, condition);
        *status != before
    }

    /// Scales the ReplicaSets and writes the status without rolling out (kube's `sync`):
    /// a paused or rescaled Deployment. A paused one also sheds old revisions.
    async fn sync_scale(
        &mut self,
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let old_refs = refs(&old);
        let mut all = old_refs.clone();
        all.extend(new_rs.as_ref());
        let plan = scale::scale(&self.d, new_rs.as_ref(), &old_refs);
        self.apply_scales(&plan, &all).await?;
        if self.d.spec.paused.unwrap_or(false) {
            self.cleanup(&old).await?;
        }
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }

    /// The status of a Deployment being deleted (`syncStatusOnly`).
    async fn sync_status_only(&mut self, rs_list: &[ReplicaSet]) -> Result<Requeue, SyncError> {
        let (new_rs, old) = self.replica_sets_and_sync_revision(rs_list, false).await?;
        let mut all = refs(&old);
        all.extend(new_rs.as_ref());
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }

    /// Writes the plain status if it changed (`syncDeploymentStatus`).
    async fn sync_deployment_status(
        &mut self,
        all: &[&ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let status = progress::calculate_status(all, new_rs, &self.d, self.now);
        if !progress::status_equal(self.d.status.as_ref(), &status) {
            self.d.status = Some(status);
            self.write_status().await?;
        }
        Ok(Requeue::Never)
    }

    /// Writes the rollout status if it changed (`syncRolloutStatus`); if it did not, the
    /// rollout may be stuck: look again when its deadline runs out.
    async fn sync_rollout_status(
        &mut self,
        all: &[&ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let status = progress::rollout_status(all, new_rs, &self.d, self.now);
        if progress::status_equal(self.d.status.as_ref(), &status) {
            return Ok(progress::requeue_stuck_deployment(
                &self.d, &status, self.now,
            ));
        }
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(Requeue::Never)
    }

    fn complete(&self) -> bool {
        progress::deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default())
    }

    /// The new ReplicaSet, created if missing; `None` (with the old ones) only if creating
    /// it did not give one.
    async fn ensure_new(
        &mut self,
        rs_list: &[ReplicaSet],
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        match new_rs {
            Some(new_rs) => Ok((Some(new_rs), old)),
            None => self.replica_sets_and_sync_revision(rs_list, true).await,
        }
    }

    /// One step of a rolling update (`rolloutRolling`): scale the new ReplicaSet up, or else
    /// the old ones down; once complete, shed old revisions.
    async fn rollout_rolling(
        &mut self,
        rs_list: &[ReplicaSet],
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let (new_rs, old) = self.ensure_new(rs_list, new_rs, old).await?;
        let Some(new_rs) = new_rs else {
            return self.sync_rollout_status(&refs(&old), None).await;
        };
        let old_refs = refs(&old);
        let mut all = old_refs.clone();
        all.push(&new_rs);
        let target = rolling::reconcile_new_replica_set(&all, &new_rs, &self.d)
            .map_err(|error| self.decide_error(error))?;
        if let Some(replicas) = target {
            let plan = [Scale {
                name: new_rs.metadata.name.clone().unwrap_or_default(),
                replicas,
                refresh_annotations: false,
            }];
            if self.apply_scales(&plan, &[&new_rs]).await? {
                return self.sync_rollout_status(&all, Some(&new_rs)).await;
            }
        }
        let active_old = util::active(&old_refs);
        let step = rolling::reconcile_old_replica_sets(&all, &active_old, &new_rs, &self.d);
        self.apply_scales(&step.plan, &active_old).await?;
        if step.scaled {
            return self.sync_rollout_status(&all, Some(&new_rs)).await;
        }
        if self.complete() {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, Some(&new_rs)).await
    }

    /// One step of a Recreate rollout (`rolloutRecreate`): scale the old ReplicaSets to 0,
    /// wait until none of their pods runs, then create and scale up the new one.
    async fn rollout_recreate(
        &mut self,
        rs_list: &[ReplicaSet],
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let waiting = {
            let old_refs = refs(&old);
            let active_old = util::active(&old_refs);
            let plan = scale::scale_down_old_replica_sets_for_recreate(&active_old);
            self.apply_scales(&plan, &active_old).await?
                || scale::old_pods_running(&old_refs).map_err(|error| self.decide_error(error))?
        };
        if waiting {
            let mut all = refs(&old);
            all.extend(new_rs.as_ref());
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        let (new_rs, old) = self.ensure_new(rs_list, new_rs, old).await?;
        let Some(new_rs) = new_rs else {
            return self.sync_rollout_status(&refs(&old), None).await;
        };
        let mut all = refs(&old);
        all.push(&new_rs);
        let plan = [Scale {
            name: new_rs.metadata.name.clone().unwrap_or_default(),
            replicas: util::replicas(&self.d),
            refresh_annotations: false,
        }];
        self.apply_scales(&plan, &[&new_rs]).await?;
        if self.complete() {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, Some(&new_rs)).await
    }
}
