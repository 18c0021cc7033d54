//! The LimitRanger admission plugin (kube's `plugin/pkg/admission/limitranger`): the
//! LimitRanges of a namespace give its new pods their missing requests and limits, and refuse
//! pods outside their bounds.
//!
//! Two phases, as kube runs them. [`admit_pod`] mutates, on create, before quota admission
//! counts the pod (so a ResourceQuota on `requests.cpu` sees the request a LimitRange gave):
//! each Container item's `defaultRequest` and `default` fill the requests and limits a
//! container or init container leaves out (a LimitRange's own defaulting has already filled
//! `defaultRequest` from `default`, and `default` from `max`), and the pod is annotated
//! `kubernetes.io/limit-ranger` with what was set. [`validate_pod`] then checks every
//! container against each Container item's `min`, `max` and `maxLimitRequestRatio`, and the
//! pod's total (containers summed, init containers at their peak, sidecars throughout, as
//! kube's `podRequests`/`podLimits`) against each Pod item's; the first LimitRange a pod
//! breaks refuses it, 403, with every broken bound in kube's words.
//!
//! Pod updates are not checked, as kube's `SupportsAttributes` skips them: a pod's containers
//! and their resources cannot change. PersistentVolumeClaim items are validated but enforce
//! nothing, as keel serves no claims. LimitRanges are read from the watch cache, as kube reads
//! its informer; a LimitRange created a moment ago binds once the cache has it. A container
//! quantity that does not parse (keel stores quantities as written) counts as not stated.

pub mod quantity;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::rest::Api;
use crate::status::ApiError;
use quantity::Quantity;

/// The annotation that tells what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// A `ResourceList`: resource name → amount, in name order.
type ResourceList = BTreeMap<String, Quantity>;

/// The readable entries of the resource list at `value` (unreadable ones are not stated).
fn list_of(value: Option<&Value>) -> ResourceList {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, amount)| Some((name.clone(), Quantity::from_json(amount).ok()?)))
        .collect()
}

fn items_of(range: &Value) -> &[Value] {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn type_of(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The LimitRanges of `namespace`, in name order.
fn ranges_in(api: &Api, namespace: &str) -> Result<Vec<Value>, ApiError> {
    let cache = api.cache_of("", "limitranges")?;
    let (items, _) = cache.list(&cache.info.list_prefix(Some(namespace)))?;
    Ok(items.iter().map(|cached| cached.value.clone()).collect())
}

/// The mutating phase, for a pod being created: the defaults of every LimitRange of
/// `namespace`.
pub fn admit_pod(api: &Api, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    for range in ranges_in(api, namespace)? {
        default_pod(&range, pod);
    }
    Ok(())
}

/// The validating phase, for a pod being created: refused (403) by the first LimitRange of
/// `namespace` whose bounds it breaks.
pub fn validate_pod(api: &Api, namespace: &str, pod: &Value) -> Result<(), ApiError> {
    for range in ranges_in(api, namespace)? {
        let broken = check_pod(&range, pod);
        if !broken.is_empty() {
            return Err(ApiError::pod_forbidden(
                crate::objects::name_of(pod),
                aggregate(&broken),
            ));
        }
    }
    Ok(())
}

/// Go's `utilerrors.NewAggregate(...).Error()`: one message alone, several (repeats dropped)
/// in brackets.
fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for message in messages {
        if !seen.contains(&message.as_str()) {
            seen.push(message);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// `PodMutateLimitFunc` for one LimitRange: fills what each container leaves out from the
/// Container items' defaults, and annotates the pod when anything was set.
pub fn default_pod(range: &Value, pod: &mut Value) {
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    for item in items_of(range).iter().filter(|i| type_of(i) == "Container") {
        requests.extend(list_of(item.get("defaultRequest")));
        limits.extend(list_of(item.get("default")));
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for container in containers {
            default_container(container, &requests, &limits, label, &mut notes);
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = crate::objects::meta_mut(pod);
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

/// `mergeContainerResources`: the requests, then the limits, a container leaves out; a note
/// for each that was set ("cpu, memory request for container web").
fn default_container(
    container: &mut Value,
    requests: &ResourceList,
    limits: &ResourceList,
    label: &str,
    notes: &mut Vec<String>,
) {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(container) = container.as_object_mut() else {
        return;
    };
    let resources = container
        .entry("resources")
        .or_insert_with(|| Value::Object(Map::new()));
    if !resources.is_object() {
        *resources = Value::Object(Map::new());
    }
    let Some(resources) = resources.as_object_mut() else {
        return;
    };
    let set_limits = fill(resources, "limits", limits);
    let set_requests = fill(resources, "requests", requests);
    if !set_requests.is_empty() {
        notes.push(format!(
            "{} request for {label} {name}",
            set_requests.join(", ")
        ));
    }
    if !set_limits.is_empty() {
        notes.push(format!(
            "{} limit for {label} {name}",
            set_limits.join(", ")
        ));
    }
}

/// Puts each of `defaults` the `section` lacks into it, in canonical form (as kube writes a
/// quantity); the names set, sorted.
fn fill(resources: &mut Map<String, Value>, section: &str, defaults: &ResourceList) -> Vec<String> {
    let mut set = Vec::new();
    for (name, amount) in defaults {
        let list = resources
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if !list.is_object() {
            *list = Value::Object(Map::new());
        }
        if let Some(list) = list.as_object_mut() {
            if !list.contains_key(name) {
                list.insert(name.clone(), json!(amount.canonical()));
                set.push(name.clone());
            }
        }
    }
    set
}

/// A container's requests and limits.
fn requirements(container: &Value) -> (ResourceList, ResourceList) {
    (
        list_of(container.pointer("/resources/requests")),
        list_of(container.pointer("/resources/limits")),
    )
}

/// `PodValidateLimitFunc` for one LimitRange: every bound `pod` breaks, in kube's words.
pub fn check_pod(range: &Value, pod: &Value) -> Vec<String> {
    let mut broken = Vec::new();
    let containers = |list: &str| {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    for item in items_of(range) {
        let bounds = Bounds {
            kind: type_of(item),
            min: list_of(item.get("min")),
            max: list_of(item.get("max")),
            ratio: list_of(item.get("maxLimitRequestRatio")),
        };
        match bounds.kind {
            "Container" => {
                for container in containers("containers")
                    .iter()
                    .chain(containers("initContainers"))
                {
                    let (requests, limits) = requirements(container);
                    bounds.check(&requests, &limits, &mut broken);
                }
            }
            "Pod" => {
                let requests = pod_total(
                    containers("containers"),
                    containers("initContainers"),
                    "requests",
                );
                let limits = pod_total(
                    containers("containers"),
                    containers("initContainers"),
                    "limits",
                );
                bounds.check(&requests, &limits, &mut broken);
            }
            _ => {}
        }
    }
    broken
}

fn add_into(list: &mut ResourceList, more: &ResourceList) {
    for (name, amount) in more {
        let sum = match list.get(name) {
            Some(have) => *have + *amount,
            None => *amount,
        };
        list.insert(name.clone(), sum);
    }
}

fn max_into(list: &mut ResourceList, other: &ResourceList) {
    for (name, amount) in other {
        if list.get(name).is_none_or(|have| amount > have) {
            list.insert(name.clone(), *amount);
        }
    }
}

/// kube's `podRequests`/`podLimits` (`section` is `requests` or `limits`): the containers'
/// sum, raised to what the init containers need at their peak — each init container runs
/// alone beside the sidecars (`restartPolicy: Always`) started before it, and the sidecars
/// keep running beside the containers.
fn pod_total(containers: &[Value], init_containers: &[Value], section: &str) -> ResourceList {
    let of = |c: &Value| list_of(c.pointer(&format!("/resources/{section}")));
    let mut total = ResourceList::new();
    for container in containers {
        add_into(&mut total, &of(container));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for container in init_containers {
        let own = of(container);
        let running = if container.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            add_into(&mut with_sidecars, &sidecars);
            with_sidecars
        };
        max_into(&mut init_peak, &running);
    }
    max_into(&mut total, &init_peak);
    total
}

/// One item's bounds, for a container or a pod.
struct Bounds<'a> {
    kind: &'a str,
    min: ResourceList,
    max: ResourceList,
    ratio: ResourceList,
}

impl Bounds<'_> {
    /// `minConstraint`, `maxConstraint` and `limitRequestRatioConstraint` over every resource
    /// the item bounds. Amounts compare in thousandths, rounded up (`MilliValue`).
    fn check(&self, requests: &ResourceList, limits: &ResourceList, broken: &mut Vec<String>) {
        let kind = self.kind;
        for (name, min) in &self.min {
            let request = requests.get(name);
            let limit = limits.get(name);
            match request {
                None => broken.push(format!(
                    "minimum {name} usage per {kind} is {min}.  No request is specified"
                )),
                Some(request) if request.milli() < min.milli() => broken.push(format!(
                    "minimum {name} usage per {kind} is {min}, but request is {request}"
                )),
                Some(_) => match limit {
                    Some(limit) if limit.milli() < min.milli() => broken.push(format!(
                        "minimum {name} usage per {kind} is {min}, but limit is {limit}"
                    )),
                    _ => {}
                },
            }
        }
        for (name, max) in &self.max {
            let request = requests.get(name);
            match limits.get(name) {
                None => broken.push(format!(
                    "maximum {name} usage per {kind} is {max}.  No limit is specified"
                )),
                Some(limit) if limit.milli() > max.milli() => broken.push(format!(
                    "maximum {name} usage per {kind} is {max}, but limit is {limit}"
                )),
                Some(_) => match request {
                    Some(request) if request.milli() > max.milli() => broken.push(format!(
                        "maximum {name} usage per {kind} is {max}, but request is {request}"
                    )),
                    _ => {}
                },
            }
        }
        for (name, ratio) in &self.ratio {
            let request = requests.get(name).map(Quantity::milli).unwrap_or(0);
            let limit = limits.get(name).map(Quantity::milli).unwrap_or(0);
            if request == 0 {
                broken.push(format!(
                    "{name} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"
                ));
            } else if limit == 0 {
                broken.push(format!(
                    "{name} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"
                ));
            } else {
                // kube's arithmetic, in floats: the ratio in thousandths against the bound's.
                let observed = limit as f64 / request as f64;
                if observed * 1000.0 > ratio.milli() as f64 {
                    broken.push(format!(
                        "{name} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}"
                    ));
                }
            }
        }
    }
}
