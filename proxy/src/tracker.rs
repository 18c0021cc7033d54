//! The change tracker: turns Service and EndpointSlice objects into one [`ServiceTable`], and
//! says which frontends changed. It never touches the kernel; proxy backends never read
//! objects.
//!
//! Resolution follows kube-proxy: a service port's backends are the ready addresses of the
//! slices labelled with the service's name, at the slice port whose name and protocol equal the
//! service port's (the endpoints controller has already resolved `targetPort` into it).
//!
//! # Incremental, like kube-proxy's change trackers
//! Objects arrive by *source* — a manifest file, the slices of the node's own pods, one object
//! of the API server — and a source is replaced whole ([`ChangeTracker::set_source`]). The
//! tracker notes which services (namespace, name) the replacement touched, and
//! [`ChangeTracker::update`] re-resolves only those, edits the table in place, and names the
//! frontends that changed. One changed endpoint at 65,536 services costs what it costs at one
//! service: nothing walks the table, and no table is diffed.
//!
//! When two Services claim one frontend, the first in (namespace, name, source, position in the
//! source) order keeps it, whatever order the sources arrived in: the same rule as
//! [`build_table`], which computes the table from scratch and which the tests hold the tracker
//! to.

mod resolve;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
};

use keel_api::{EndpointSlice, Service};

use crate::service_table::{Frontend, ServicePortEntry, ServiceTable, TableChanges};
use resolve::service_claims;

pub use keel_host::cidr::Ipv4Cidr;

/// Something in the objects that keel skipped, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub object: String,
    pub reason: String,
}

/// Where a set of objects comes from. Sources order claims on a shared frontend: manifest
/// files first (by path), then the node's pod slices, then the API server's objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// A manifest file.
    File(PathBuf),
    /// The slices the node keeps for its own pods behind the manifests' selector Services.
    PodSlices,
    /// One object of the API server, named `Kind/namespace/name`.
    Api(String),
}

/// A table that differs from the last one reported, and how.
#[derive(Debug)]
pub struct Update<'a> {
    pub table: &'a ServiceTable,
    pub changes: TableChanges,
    /// Number of (service port, backend) pairs in the table.
    pub backends: usize,
}

/// `(namespace, name)` of a Service, and of the slices that carry its name.
type ServiceKey = (String, String);

/// The objects of one source, in the order the source holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SourceObjects {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

impl SourceObjects {
    fn is_empty(&self) -> bool {
        self.services.is_empty() && self.slices.is_empty()
    }

    /// Whether `other` holds objects of the same services at the same positions: then only
    /// the positions whose objects differ changed, and no position moved.
    fn same_layout(&self, other: &SourceObjects) -> bool {
        self.services.len() == other.services.len()
            && self.slices.len() == other.slices.len()
            && self
                .services
                .iter()
                .zip(&other.services)
                .all(|(a, b)| service_key(a) == service_key(b))
            && self
                .slices
                .iter()
                .zip(&other.slices)
                .all(|(a, b)| slice_key(a) == slice_key(b))
    }

    /// The services whose objects differ between `self` and `new`.
    fn changed_keys(&self, new: &SourceObjects) -> Vec<ServiceKey> {
        if self.same_layout(new) {
            // An edit in place (the common case: an endpoint's readiness): one pass, no maps.
            let services = self.services.iter().zip(&new.services);
            let slices = self.slices.iter().zip(&new.slices);
            return services
                .filter(|(a, b)| a != b)
                .map(|(a, _)| owned(service_key(a)))
                .chain(
                    slices
                        .filter(|(a, b)| a != b)
                        .filter_map(|(a, _)| slice_key(a).map(owned)),
                )
                .collect();
        }
        let (before, after) = (self.by_key(), new.by_key());
        let mut changed: Vec<ServiceKey> = before
            .iter()
            .filter(|(key, objects)| after.get(*key) != Some(objects))
            .map(|(key, _)| owned(*key))
            .collect();
        changed.extend(
            after
                .keys()
                .filter(|key| !before.contains_key(*key))
                .map(|key| owned(*key)),
        );
        changed
    }

    /// The objects of each service key, to compare one version of a source with the next.
    fn by_key(&self) -> HashMap<(&str, &str), KeyObjects<'_>> {
        let mut keyed: HashMap<_, (Vec<_>, Vec<_>)> = HashMap::new();
        for service in &self.services {
            keyed
                .entry(service_key(service))
                .or_default()
                .0
                .push(service);
        }
        for slice in &self.slices {
            if let Some(key) = slice_key(slice) {
                keyed.entry(key).or_default().1.push(slice);
            }
        }
        keyed
    }
}

/// The Services and slices of one service key in a source, in source order.
type KeyObjects<'a> = (Vec<&'a Service>, Vec<&'a EndpointSlice>);

fn service_key(service: &Service) -> (&str, &str) {
    (service.metadata.namespace(), &service.metadata.name)
}

fn slice_key(slice: &EndpointSlice) -> Option<(&str, &str)> {
    Some((slice.metadata.namespace(), slice.service_name()?))
}

fn owned((namespace, name): (&str, &str)) -> ServiceKey {
    (namespace.to_owned(), name.to_owned())
}

/// Takes one position off `key`'s inputs, and forgets the key once it has none.
fn unlist(
    inputs: &mut HashMap<ServiceKey, Inputs>,
    key: ServiceKey,
    remove: impl FnOnce(&mut Inputs) -> bool,
) {
    if let Some(entry) = inputs.get_mut(&key) {
        remove(entry);
        if entry.services.is_empty() && entry.slices.is_empty() {
            inputs.remove(&key);
        }
    }
}

/// Where the objects of one service key are: (source, position in it).
#[derive(Debug, Default)]
struct Inputs {
    /// Its definitions; two sources may both define it, and the first claims first.
    services: BTreeSet<(Arc<SourceId>, usize)>,
    slices: BTreeSet<(Arc<SourceId>, usize)>,
}

/// Who asks for a frontend, in the order that decides who gets it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Claimant {
    namespace: String,
    name: String,
    source: Arc<SourceId>,
    /// The definition's position in its source.
    index: usize,
    /// The claim's position among the definition's claims (port order).
    claim: usize,
}

/// Computes the table from sources, keeps it, and reports only real changes, with the
/// frontends they touch.
pub struct ChangeTracker {
    service_cidr: Ipv4Cidr,
    /// Each source's objects. Its id is shared (an `Arc`) by the positions and claims that
    /// name it, so listing a file of 1,000 objects does not copy its path 1,000 times.
    sources: HashMap<Arc<SourceId>, SourceObjects>,
    inputs: HashMap<ServiceKey, Inputs>,
    /// Services whose objects changed since the last update.
    dirty: BTreeSet<ServiceKey>,
    /// Every claim on each frontend; the first is in the table.
    claims: HashMap<Frontend, BTreeMap<Claimant, ServicePortEntry>>,
    /// The frontends each service claims, to withdraw them when it changes.
    claimed: HashMap<ServiceKey, HashSet<Frontend>>,
    /// Frontends with more than one claim: the losers are reported as skipped.
    contested: BTreeSet<Frontend>,
    /// Definitions refused outright (clusterIP outside the service CIDR).
    refused: BTreeMap<ServiceKey, Vec<Skipped>>,
    table: ServiceTable,
    backends: usize,
    /// Frontends whose table entry changed since the last update reported.
    changed: BTreeSet<Frontend>,
    /// The next update reports the whole table: the first one, and the one after
    /// [`ChangeTracker::invalidate`].
    report_all: bool,
    /// Services resolved by the last update: what the tests hold to the size of a change.
    resolved: usize,
}

impl ChangeTracker {
    pub fn new(service_cidr: Ipv4Cidr) -> Self {
        Self {
            service_cidr,
            sources: HashMap::new(),
            inputs: HashMap::new(),
            dirty: BTreeSet::new(),
            claims: HashMap::new(),
            claimed: HashMap::new(),
            contested: BTreeSet::new(),
            refused: BTreeMap::new(),
            table: ServiceTable::default(),
            backends: 0,
            changed: BTreeSet::new(),
            report_all: true,
            resolved: 0,
        }
    }

    /// Replaces every object of `source` (none: the source is gone). Costs the size of the
    /// source; only services whose objects differ are resolved again at the next update.
    pub fn set_source(
        &mut self,
        source: SourceId,
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
    ) {
        let new = SourceObjects { services, slices };
        let (source, old) = self
            .sources
            .remove_entry(&source)
            .unwrap_or_else(|| (Arc::new(source), SourceObjects::default()));
        if old != new {
            self.dirty.extend(old.changed_keys(&new));
            self.reindex(&source, &old, &new);
        }
        if !new.is_empty() {
            self.sources.insert(source, new);
        }
    }

    /// Moves the positions of `source`'s objects from `old` to `new`. A position that holds
    /// an object of the same service in both is left as it is.
    fn reindex(&mut self, source: &Arc<SourceId>, old: &SourceObjects, new: &SourceObjects) {
        let inputs = &mut self.inputs;
        let at = |index: usize| (source.clone(), index);
        for (index, service) in old.services.iter().enumerate() {
            let key = service_key(service);
            if new.services.get(index).map(service_key) != Some(key) {
                unlist(inputs, owned(key), |e| e.services.remove(&at(index)));
            }
        }
        for (index, slice) in old.slices.iter().enumerate() {
            let Some(key) = slice_key(slice) else {
                continue;
            };
            if new.slices.get(index).and_then(slice_key) != Some(key) {
                unlist(inputs, owned(key), |e| e.slices.remove(&at(index)));
            }
        }
        for (index, service) in new.services.iter().enumerate() {
            let key = service_key(service);
            if old.services.get(index).map(service_key) != Some(key) {
                let entry = inputs.entry(owned(key)).or_default();
                entry.services.insert(at(index));
            }
        }
        for (index, slice) in new.slices.iter().enumerate() {
            let Some(key) = slice_key(slice) else {
                continue;
            };
            if old.slices.get(index).and_then(slice_key) != Some(key) {
                let entry = inputs.entry(owned(key)).or_default();
                entry.slices.insert(at(index));
            }
        }
    }

    /// Resolves the services that changed since the last call. Returns the table when it
    /// differs from the one last reported (always the first time, and after
    /// [`ChangeTracker::invalidate`], then with [`TableChanges::All`]), and everything skipped.
    pub fn update(&mut self) -> (Option<Update<'_>>, Vec<Skipped>) {
        let dirty = std::mem::take(&mut self.dirty);
        self.resolved = dirty.len();
        for key in dirty {
            self.resolve(&key);
        }
        let skipped = self.skipped();
        let changes = if std::mem::take(&mut self.report_all) {
            self.changed.clear();
            TableChanges::All
        } else if self.changed.is_empty() {
            return (None, skipped);
        } else {
            TableChanges::Frontends(std::mem::take(&mut self.changed))
        };
        let update = Update {
            table: &self.table,
            changes,
            backends: self.backends,
        };
        (Some(update), skipped)
    }

    /// Makes the next update report the whole table, even if nothing changed (a full resync
    /// after a failed sync).
    pub fn invalidate(&mut self) {
        self.report_all = true;
    }

    /// The table as of the last update.
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// Number of (service port, backend) pairs in the table, kept as it changes.
    pub fn backend_count(&self) -> usize {
        self.backends
    }

    /// Withdraws every claim of `key` and makes them again from its current objects.
    fn resolve(&mut self, key: &ServiceKey) {
        let mut touched = self.claimed.remove(key).unwrap_or_default();
        for frontend in &touched {
            if let Some(claims) = self.claims.get_mut(frontend) {
                claims.retain(|c, _| (&c.namespace, &c.name) != (&key.0, &key.1));
            }
        }
        self.refused.remove(key);
        if let Some(inputs) = self.inputs.get(key) {
            let sources = &self.sources;
            let slices: Vec<&EndpointSlice> = inputs
                .slices
                .iter()
                .filter_map(|(source, index)| sources.get(source)?.slices.get(*index))
                .collect();
            for (source, index) in &inputs.services {
                let Some(service) = sources.get(source).and_then(|s| s.services.get(*index)) else {
                    continue;
                };
                match service_claims(self.service_cidr, service, &slices) {
                    Err(skipped) => self.refused.entry(key.clone()).or_default().push(skipped),
                    Ok(claims) => {
                        for (claim, (frontend, entry)) in claims.into_iter().enumerate() {
                            let claimant = Claimant {
                                namespace: key.0.clone(),
                                name: key.1.clone(),
                                source: source.clone(),
                                index: *index,
                                claim,
                            };
                            self.claims
                                .entry(frontend)
                                .or_default()
                                .insert(claimant, entry);
                            self.claimed
                                .entry(key.clone())
                                .or_default()
                                .insert(frontend);
                            touched.insert(frontend);
                        }
                    }
                }
            }
        }
        for frontend in touched {
            self.settle(frontend);
        }
    }

    /// Puts the first claim on `frontend` (or nothing) in the table.
    fn settle(&mut self, frontend: Frontend) {
        let claims = self.claims.get(&frontend).map_or(0, BTreeMap::len);
        if claims == 0 {
            self.claims.remove(&frontend);
        }
        if claims > 1 {
            self.contested.insert(frontend);
        } else {
            self.contested.remove(&frontend);
        }
        let winner = self
            .claims
            .get(&frontend)
            .and_then(|claims| claims.values().next());
        let current = self.table.services.get(&frontend);
        if current == winner {
            return;
        }
        self.backends -= current.map_or(0, |e| e.backends.len());
        self.backends += winner.map_or(0, |e| e.backends.len());
        match winner.cloned() {
            Some(entry) => self.table.services.insert(frontend, entry),
            None => self.table.services.remove(&frontend),
        };
        self.changed.insert(frontend);
    }

    /// Refused definitions and the losers of contested frontends.
    fn skipped(&self) -> Vec<Skipped> {
        let mut skipped: Vec<Skipped> = self.refused.values().flatten().cloned().collect();
        for frontend in &self.contested {
            let Some(claims) = self.claims.get(frontend) else {
                continue;
            };
            let mut claims = claims.iter();
            let Some((_, owner)) = claims.next() else {
                continue;
            };
            for (loser, _) in claims {
                skipped.push(Skipped {
                    object: format!("Service {}/{}", loser.namespace, loser.name),
                    reason: format!("{frontend} is already served by {}", owner.name),
                });
            }
        }
        skipped
    }
}

/// Builds the table from scratch, from every object at once. Services are visited in
/// namespace/name order, so when two services claim the same frontend the outcome does not
/// depend on input order. The tracker's tests hold [`ChangeTracker`] to this, and the timing
/// test measures it.
pub fn build_table<'a>(
    service_cidr: Ipv4Cidr,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> (ServiceTable, Vec<Skipped>) {
    let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(key) = slice_key(slice) {
            slices_by_service.entry(key).or_default().push(slice);
        }
    }
    let mut services: Vec<&Service> = services.into_iter().collect();
    // Stable: two Services of one namespace and name (a manifest's and the API's) keep the
    // order they came in, so the first always wins a frontend they share, whatever else
    // the set holds.
    services.sort_by(|a, b| service_key(a).cmp(&service_key(b)));

    let mut table = ServiceTable::default();
    let mut skipped = Vec::new();
    for service in services {
        let slices = slices_by_service
            .get(&service_key(service))
            .map_or(&[][..], Vec::as_slice);
        let claims = match service_claims(service_cidr, service, slices) {
            Ok(claims) => claims,
            Err(refused) => {
                skipped.push(refused);
                continue;
            }
        };
        for (frontend, entry) in claims {
            match table.services.get(&frontend) {
                Some(owner) => skipped.push(Skipped {
                    object: format!(
                        "Service {}/{}",
                        service.metadata.namespace(),
                        service.metadata.name
                    ),
                    reason: format!("{frontend} is already served by {}", owner.name),
                }),
                None => {
                    table.services.insert(frontend, entry);
                }
            }
        }
    }
    (table, skipped)
}
