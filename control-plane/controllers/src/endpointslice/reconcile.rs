//! kube's EndpointSlice reconciler (`staging/src/k8s.io/endpointslice/reconciler.go`) as a
//! pure function: from a service, its pods and the slices that exist, the slices to create,
//! rewrite and delete.
//!
//! kube walks Go maps, so which slice receives which endpoint varies between runs; here every
//! choice is made in a fixed order (slices by name, endpoints by pod), so the same inputs
//! always give the same plan.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::endpoints::{
    address_types, endpoint_key, endpoint_ports, equal_beyond_key, new_endpoint_slice, owned_by,
    placeholder_equal, pod_to_endpoint, port_key, service_selector, should_be_in_endpoints,
    slice_labels, sort_ports, EndpointKey, PortKey,
};

/// The writes that bring a service's slices to the desired state.
///
/// `create` slices have no name (they carry `generateName`); `update` slices carry the name
/// and `resourceVersion` of the slice they replace; `delete` slices are the existing ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    /// Nothing to write: the slices already say what the pods say.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    fn append(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }
}

/// Computes the writes for `service` (kube's `Reconciler.Reconcile` and `finalize`, with the
/// sync's filtering folded in).
///
/// - `pods`: any pods; those of the service's namespace that its selector matches count, if
///   they are not finished and have an IP (terminating ones included);
/// - `existing`: the slices managed by this controller for the service (by the
///   `kubernetes.io/service-name` label); those being deleted are left alone, those owned by
///   another incarnation of the service (another UID) are replaced.
///
/// A service without a selector, or of type ExternalName, gets an empty plan: kube leaves
/// such a service's slices to the user.
pub fn reconcile<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    existing: impl IntoIterator<Item = &'a EndpointSlice>,
    max_endpoints_per_slice: usize,
) -> Plan {
    let Some(selector) = service_selector(service) else {
        return Plan::default();
    };
    let max = max_endpoints_per_slice.max(1);
    let pods: Vec<&Pod> = pods
        .into_iter()
        .filter(|pod| {
            pod.metadata.namespace == service.metadata.namespace
                && selector.matches_optional(pod.metadata.labels.as_ref())
                && should_be_in_endpoints(pod)
        })
        .collect();
    // kube drops slices pending deletion so that a slow finalizer cannot wedge the sync.
    let mut existing: Vec<&EndpointSlice> = existing
        .into_iter()
        .filter(|slice| slice.metadata.deletion_timestamp.is_none())
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let types = address_types(service);
    let mut plan = Plan::default();
    let mut unsupported = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let address_type = slice.address_type.as_str();
        if types.contains(&address_type) {
            by_type.entry(address_type).or_default().push(slice);
        } else {
            // An address type the service no longer has (or the deprecated "IP"): its slices
            // go; they cannot be rewritten since a slice's address type is immutable.
            unsupported.push(slice.clone());
        }
    }
    for address_type in types {
        let slices = by_type.remove(address_type).unwrap_or_default();
        let mut typed = reconcile_address_type(service, &pods, &slices, address_type, max);
        recycle(service, &mut typed);
        plan.append(typed);
    }
    plan.delete.extend(unsupported);
    // A service being deleted gets no new slices: the garbage collector would race them.
    if service.metadata.deletion_timestamp.is_some() {
        plan.create.clear();
    }
    plan
}

/// The endpoints one set of ports should have, by [`EndpointKey`].
struct Desired {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// `reconcileByAddressType`: the plan for the slices of one address type.
fn reconcile_address_type(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    address_type: &str,
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut existing_by_ports: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            let ports = slice.ports.as_deref().unwrap_or(&[]);
            existing_by_ports
                .entry(port_key(ports))
                .or_default()
                .push(*slice);
        } else {
            // Left by an earlier service of the same name.
            plan.delete.push((*slice).clone());
        }
    }

    let mut desired: BTreeMap<PortKey, Desired> = BTreeMap::new();
    for pod in pods {
        let mut ports = endpoint_ports(service, pod);
        let key = port_key(&ports);
        sort_ports(&mut ports);
        // The group exists even when the pod has no address of this type, as in kube: its
        // slices then lose their endpoints rather than count as a port set gone.
        let group = desired.entry(key).or_insert_with(|| Desired {
            ports,
            endpoints: BTreeMap::new(),
        });
        let endpoint = pod_to_endpoint(pod, service, address_type);
        if !endpoint.addresses.is_empty() {
            group.endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    // Port sets no pod resolves any more: their slices go.
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            plan.delete
                .extend(slices.iter().map(|slice| (*slice).clone()));
        }
    }
    for (key, group) in desired {
        let slices = existing_by_ports
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        plan.append(reconcile_ports(service, slices, group, address_type, max));
    }

    // A service that selects nothing keeps one empty slice, so that consumers can tell "no
    // endpoints" from "not synced yet".
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_endpoint_slice(service, Vec::new(), address_type);
        let already = plan.delete.len() == 1 && placeholder_equal(&plan.delete[0], &placeholder);
        if already {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Unchanged,
    Update,
    Delete,
}

struct Working {
    slice: EndpointSlice,
    state: State,
}

fn endpoint_count(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}

/// Moves endpoints from `desired` (first by key) into `slice` until it holds `max`.
fn fill(slice: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    let endpoints = slice.endpoints.get_or_insert_with(Vec::new);
    while endpoints.len() < max {
        let Some((_, endpoint)) = desired.pop_first() else {
            break;
        };
        endpoints.push(endpoint);
    }
}

/// `reconcileByPortMapping`: the plan for the slices of one port set.
///
/// 1. Each existing slice keeps the endpoints still desired (in their current order, in their
///    desired form); it is rewritten if one changed or left, deleted if none is left, and
///    rewritten for the service's labels alone if only those changed.
/// 2. Slices being rewritten anyway take the remaining endpoints, fullest first.
/// 3. What remains goes into the unchanged slice it fills best when fewer than a slice's
///    worth remain, else into new slices.
fn reconcile_ports(
    service: &Service,
    existing: &[&EndpointSlice],
    group: Desired,
    address_type: &str,
    max: usize,
) -> Plan {
    let Desired {
        ports,
        endpoints: mut desired,
    } = group;
    let mut working: Vec<Working> = Vec::with_capacity(existing.len());
    for slice in existing {
        let current = slice.endpoints.as_deref().unwrap_or(&[]);
        let mut kept = Vec::with_capacity(current.len());
        let mut changed = false;
        for endpoint in current {
            if let Some(wanted) = desired.remove(&endpoint_key(endpoint)) {
                changed |= !equal_beyond_key(&wanted, endpoint);
                kept.push(wanted);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), service);
        let mut slice = (*slice).clone();
        let state = if changed || kept.len() != current.len() {
            if kept.is_empty() {
                State::Delete
            } else {
                slice.endpoints = Some(kept);
                slice.metadata.labels = Some(labels);
                State::Update
            }
        } else if labels_changed {
            slice.metadata.labels = Some(labels);
            State::Update
        } else {
            State::Unchanged
        };
        working.push(Working { slice, state });
    }

    // 2. Fill the slices being rewritten, fullest first (ties by name: `existing` is sorted
    //    and the sort is stable).
    if !desired.is_empty() {
        let mut order: Vec<usize> = (0..working.len())
            .filter(|&i| working[i].state == State::Update)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(endpoint_count(&working[i].slice)));
        for i in order {
            fill(&mut working[i].slice, &mut desired, max);
        }
    }

    // 3. The rest: the unchanged slice closest to full after taking them all, or new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let target = if desired.len() < max {
            slice_to_fill(&working, desired.len(), max)
        } else {
            None
        };
        match target {
            Some(i) => {
                fill(&mut working[i].slice, &mut desired, max);
                working[i].state = State::Update;
            }
            None => {
                let mut slice = new_endpoint_slice(service, ports.clone(), address_type);
                fill(&mut slice, &mut desired, max);
                create.push(slice);
            }
        }
    }

    let mut plan = Plan {
        create,
        ..Plan::default()
    };
    for Working { slice, state } in working {
        match state {
            State::Unchanged => {}
            State::Update => plan.update.push(slice),
            State::Delete => plan.delete.push(slice),
        }
    }
    plan
}

/// `getSliceToFill`: among the unchanged slices, the one left closest to full after taking
/// `count` endpoints, if any can take them all.
fn slice_to_fill(working: &[Working], count: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, entry) in working.iter().enumerate() {
        if entry.state != State::Unchanged {
            continue;
        }
        let Some(room) = max.checked_sub(count + endpoint_count(&entry.slice)) else {
            continue;
        };
        if best.is_none_or(|(_, best_room)| room < best_room) {
            best = Some((i, room));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The first half of kube's `finalize`: a slice about to be deleted while another of the same
/// address type is created is rewritten into the new one instead — one write, not two.
fn recycle(service: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() {
        let Some(last) = plan.create.last() else {
            break;
        };
        // Only the service's own slices: one left by an earlier service of the same name is
        // on its way to the garbage collector.
        if plan.delete[i].address_type == last.address_type && owned_by(&plan.delete[i], service) {
            let old = plan.delete.remove(i);
            if let Some(mut slice) = plan.create.pop() {
                slice.metadata.name = old.metadata.name;
                // Written as a replace conditional on the version read.
                slice.metadata.resource_version = old.metadata.resource_version;
                plan.update.push(slice);
            }
        } else {
            i += 1;
        }
    }
}
