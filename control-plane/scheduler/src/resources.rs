//! Resource quantities as kube-scheduler counts them: a pod's requests and the [`Resources`]
//! totals a node is compared with.
//!
//! A pod asks for the sum of its containers, or for its largest init container if that is more
//! (init containers run one at a time, before the others); sidecars (init containers with
//! `restartPolicy: Always`) keep running and add to both; pod-level requests
//! (`spec.resources`) replace the containers' CPU, memory and hugepages; the runtime class's
//! overhead comes on top. This is `resourcehelper.PodRequests` of Kubernetes'
//! component-helpers, which kube-scheduler and the kubelet's admission share, so that a pod the
//! scheduler placed is never refused by the node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::labels::is_qualified_name;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";
const HUGEPAGES_PREFIX: &str = "hugepages-";
const ATTACHABLE_VOLUMES_PREFIX: &str = "attachable-volumes-";
/// Quota's prefix for requests; an extended resource's name must stay valid behind it.
const REQUESTS_PREFIX: &str = "requests.";

/// What a container that names no CPU request counts for when nodes are scored (0.1 core), as
/// kube-scheduler's `schedutil.DefaultMilliCPURequest`: without it a node full of pods that
/// request nothing would look empty.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What a container that names no memory request counts for when nodes are scored (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Resource name → amount: millicores for `cpu`, whole units (bytes, pods, devices) for the
/// rest. A name present with 0 was asked for explicitly, which is not the same as absent.
pub type ResourceList = BTreeMap<String, i64>;

/// A quantity keel could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {message}")]
pub struct QuantityError {
    pub resource: String,
    pub message: String,
}

/// Amounts of the resources the scheduler accounts for, as kube-scheduler's
/// `framework.Resource`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// How many pods fit (a node's `allocatable.pods`); pods never request it.
    pub allowed_pod_number: i64,
    /// Extended resources (`example.com/gadget`), hugepages, `kubernetes.io/` resources and
    /// attachable volumes, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn from_list(list: &ResourceList) -> Resources {
        let mut resources = Resources::default();
        resources.add_list(list);
        resources
    }

    /// Adds a list, keeping the resources kube-scheduler's `Resource.Add` keeps.
    pub fn add_list(&mut self, list: &ResourceList) {
        for (name, value) in list {
            match name.as_str() {
                CPU => self.milli_cpu = self.milli_cpu.saturating_add(*value),
                MEMORY => self.memory = self.memory.saturating_add(*value),
                EPHEMERAL_STORAGE => {
                    self.ephemeral_storage = self.ephemeral_storage.saturating_add(*value)
                }
                PODS => self.allowed_pod_number = self.allowed_pod_number.saturating_add(*value),
                other if is_scalar_resource_name(other) => {
                    let amount = self.scalar.entry(other.to_string()).or_insert(0);
                    *amount = amount.saturating_add(*value);
                }
                _ => {}
            }
        }
    }

    /// The amount of `name`: 0 for a resource these do not hold.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// A resource counted as a scalar: extended, hugepages, `kubernetes.io/`-prefixed or an
/// attachable volume (kube-scheduler's `schedutil.IsScalarResourceName`).
pub fn is_scalar_resource_name(name: &str) -> bool {
    is_extended_resource_name(name)
        || name.starts_with(HUGEPAGES_PREFIX)
        || is_prefixed_native_resource(name)
        || name.starts_with(ATTACHABLE_VOLUMES_PREFIX)
}

/// A resource outside Kubernetes' own namespace (`example.com/gadget`), which device plugins
/// advertise and the node filter may be told to ignore.
pub fn is_extended_resource_name(name: &str) -> bool {
    if is_native_resource(name) || name.starts_with(REQUESTS_PREFIX) {
        return false;
    }
    is_qualified_name(&format!("{REQUESTS_PREFIX}{name}"))
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || is_prefixed_native_resource(name)
}

fn is_prefixed_native_resource(name: &str) -> bool {
    name.contains("kubernetes.io/")
}

/// A resource the scheduler counts. Others in a list are ignored and never parsed, so that a
/// quantity keel cannot read in a resource nothing looks at blocks nothing.
fn is_accounted(name: &str) -> bool {
    matches!(name, CPU | MEMORY | EPHEMERAL_STORAGE | PODS) || is_scalar_resource_name(name)
}

/// Reads one quantity: CPU in millicores, anything else in whole units, both rounded up as
/// Kubernetes' `MilliValue()` and `Value()` round.
pub fn quantity_value(resource: &str, quantity: &Quantity) -> Result<i64, QuantityError> {
    let parsed = keel_api::quantity::Quantity::new(quantity.0.as_str());
    let value = if resource == CPU {
        parsed.millicores()
    } else {
        parsed.bytes()
    };
    value
        // No cluster has 2^63 bytes of anything: saturate rather than fail.
        .map(|value| i64::try_from(value).unwrap_or(i64::MAX))
        .map_err(|message| QuantityError {
            resource: resource.to_string(),
            message,
        })
}

/// Reads the accounted resources of a `ResourceList` (requests, allocatable, overhead).
pub fn parse_list(
    list: Option<&BTreeMap<String, Quantity>>,
) -> Result<ResourceList, QuantityError> {
    let mut parsed = ResourceList::new();
    for (name, quantity) in list.into_iter().flatten() {
        if is_accounted(name) {
            parsed.insert(name.clone(), quantity_value(name, quantity)?);
        }
    }
    Ok(parsed)
}

/// An init container that keeps running beside the others (a sidecar).
pub(crate) fn is_restartable(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// What the pod asks for: containers summed, the init containers' high-water mark if higher,
/// pod-level requests, overhead. Containers that ask for nothing add nothing: this is what
/// NodeResourcesFit's filter compares with the node's free room, and what a node's
/// [`NodeInfo::requested`](crate::NodeInfo::requested) adds up.
pub fn pod_requests(pod: &Pod) -> Result<ResourceList, QuantityError> {
    pod_requests_with(pod, &ResourceList::new())
}

/// The pod's requests with each container that names no CPU or memory request counted at
/// [`DEFAULT_MILLI_CPU_REQUEST`] and [`DEFAULT_MEMORY_REQUEST`], as the resource scorers
/// count the incoming pod. A request written as 0 stays 0.
pub fn non_zero_pod_requests(pod: &Pod) -> Result<ResourceList, QuantityError> {
    pod_requests_with(pod, &default_requests())
}

fn default_requests() -> ResourceList {
    ResourceList::from([
        (CPU.to_string(), DEFAULT_MILLI_CPU_REQUEST),
        (MEMORY.to_string(), DEFAULT_MEMORY_REQUEST),
    ])
}

/// What one pod adds to its node's totals (kube-scheduler's `PodInfo.CalculateResource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodResource {
    /// The pod's requests, as [`pod_requests`].
    pub requests: Resources,
    /// CPU with the defaults for containers that name none.
    pub non_zero_milli_cpu: i64,
    /// Memory with the defaults for containers that name none.
    pub non_zero_memory: i64,
}

pub fn pod_resource(pod: &Pod) -> Result<PodResource, QuantityError> {
    let requests = pod_requests(pod)?;
    let pod_level_set = match pod.spec.as_ref() {
        Some(spec) => pod_level_requests(spec)?.is_some(),
        None => false,
    };
    // With pod-level requests, a default applies only to a resource neither the pod nor any
    // container names (the API server copies a container-level request up to the pod level).
    let mut defaults = ResourceList::new();
    if !(pod_level_set && requests.contains_key(CPU)) {
        defaults.insert(CPU.to_string(), DEFAULT_MILLI_CPU_REQUEST);
    }
    if !(pod_level_set && requests.contains_key(MEMORY)) {
        defaults.insert(MEMORY.to_string(), DEFAULT_MEMORY_REQUEST);
    }
    let non_zero = if defaults.is_empty() {
        None
    } else {
        Some(pod_requests_with(pod, &defaults)?)
    };
    let non_zero = non_zero.as_ref().unwrap_or(&requests);
    let non_zero_milli_cpu = non_zero.get(CPU).copied().unwrap_or(0);
    let non_zero_memory = non_zero.get(MEMORY).copied().unwrap_or(0);
    Ok(PodResource {
        requests: Resources::from_list(&requests),
        non_zero_milli_cpu,
        non_zero_memory,
    })
}

/// `resourcehelper.PodRequests`: `defaults` fill in what a container does not name (an
/// explicit 0 is named).
fn pod_requests_with(pod: &Pod, defaults: &ResourceList) -> Result<ResourceList, QuantityError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(ResourceList::new());
    };
    let mut total = ResourceList::new();
    for container in &spec.containers {
        add_into(&mut total, &container_requests(container, defaults)?);
    }

    // The KEP-753 formula: while init container i runs, the sidecars started before it run
    // too; the pod needs the highest of those moments, and the sidecars also run beside the
    // regular containers for the pod's whole life.
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for container in spec.init_containers.iter().flatten() {
        let own = container_requests(container, defaults)?;
        let running = if is_restartable(container) {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut running = own;
            add_into(&mut running, &sidecars);
            running
        };
        max_into(&mut init_peak, &running);
    }
    max_into(&mut total, &init_peak);

    if let Some(pod_level) = pod_level_requests(spec)? {
        total.extend(pod_level);
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        add_into(&mut total, &parse_list(Some(overhead))?);
    }
    Ok(total)
}

fn container_requests(
    container: &Container,
    defaults: &ResourceList,
) -> Result<ResourceList, QuantityError> {
    let named = container
        .resources
        .as_ref()
        .and_then(|resources| resources.requests.as_ref());
    let mut requests = parse_list(named)?;
    for (name, value) in defaults {
        if !named.is_some_and(|named| named.contains_key(name)) {
            requests.insert(name.clone(), *value);
        }
    }
    Ok(requests)
}

/// The resources a pod may request at the pod level (PodLevelResources, on by default since
/// Kubernetes 1.34).
fn is_pod_level_resource(name: &str) -> bool {
    name == CPU || name == MEMORY || name.starts_with(HUGEPAGES_PREFIX)
}

/// The pod-level requests that replace the containers' sums, or None when `spec.resources`
/// requests none of the pod-level resources.
fn pod_level_requests(spec: &PodSpec) -> Result<Option<ResourceList>, QuantityError> {
    let Some(requests) = spec
        .resources
        .as_ref()
        .and_then(|resources| resources.requests.as_ref())
    else {
        return Ok(None);
    };
    let mut pod_level = ResourceList::new();
    for (name, quantity) in requests {
        if is_pod_level_resource(name) {
            pod_level.insert(name.clone(), quantity_value(name, quantity)?);
        }
    }
    Ok((!pod_level.is_empty()).then_some(pod_level))
}

fn add_into(total: &mut ResourceList, more: &ResourceList) {
    for (name, value) in more {
        let amount = total.entry(name.clone()).or_insert(0);
        *amount = amount.saturating_add(*value);
    }
}

fn max_into(peak: &mut ResourceList, candidate: &ResourceList) {
    for (name, value) in candidate {
        let amount = peak.entry(name.clone()).or_insert(*value);
        *amount = (*amount).max(*value);
    }
}

#[cfg(test)]
mod tests;
