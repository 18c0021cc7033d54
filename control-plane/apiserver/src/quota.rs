//! ResourceQuota admission, exact under concurrency. kube-apiserver's quota admission reads a
//! quota, checks `used + this object <= hard`, and writes the new `status.used` with a
//! compare-and-swap before the object is stored; keel goes one step further and writes the
//! quota and the object in one transaction, compared on the quota's revision, so two creates
//! that both read "9 of 10" cannot both land: the second transaction fails, reads again and is
//! refused. Usage is recounted from the store at each admission, so deletions are seen without
//! a controller having run.
//!
//! Tracked: `pods`, `services`, `configmaps`, `secrets`, `resourcequotas`,
//! `services.nodeports`, `services.loadbalancers`, `count/<resource>[.<group>]`, and for pods
//! `requests.cpu`/`cpu`, `requests.memory`/`memory`, `limits.cpu`, `limits.memory`,
//! `requests.ephemeral-storage`, `limits.ephemeral-storage`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::objects::name_of;
use crate::resources::{self, ResourceInfo};
use crate::status::ApiError;
use crate::storage::{Guard, Storage};

/// Amounts in thousandths of the unit (millicores, milli-bytes, milli-objects), so every
/// quantity Kubernetes accepts compares exactly.
type Milli = i128;

/// A quantity in thousandths: `500m` → 500, `2` → 2000, `1Ki` → 1,024,000, `1e3` → 1,000,000.
/// Finer than a thousandth rounds up, as Kubernetes rounds quantities it cannot hold.
pub fn to_milli(text: &str) -> Option<Milli> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.len() > 40 {
        return None;
    }
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // value = (whole.fraction) × multiplier, in thousandths: numerator / 10^fraction_len.
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale: i128 = 10i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let (multiplier, divisor): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1_000_000, 1),
        "G" => (1000 * 1_000_000_000, 1),
        "T" => (1000 * 1_000_000_000_000, 1),
        "P" => (1000 * 1_000_000_000_000_000, 1),
        "E" => (1000 * 1_000_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        exponent => {
            let power: u32 = exponent
                .strip_prefix(['e', 'E'])?
                .parse::<i32>()
                .ok()
                .filter(|p| (0..=18).contains(p))?
                .try_into()
                .ok()?;
            (1000 * 10i128.checked_pow(power)?, 1)
        }
    };
    let numerator = mantissa.checked_mul(multiplier)?;
    let denominator = scale.checked_mul(divisor)?;
    let value = (numerator + denominator - 1) / denominator;
    Some(if negative { -value } else { value })
}

/// A usage as Kubernetes prints it in `status.used`: whole units where they are whole,
/// thousandths (`m`) otherwise.
pub fn format_milli(value: Milli) -> String {
    if value % 1000 == 0 {
        (value / 1000).to_string()
    } else {
        format!("{value}m")
    }
}

/// Whether a pod still counts against a quota (terminal pods do not, as Kubernetes).
fn pod_counts(pod: &Value) -> bool {
    !matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn container_amount(container: &Value, section: &str, resource: &str) -> Option<Milli> {
    let read = |s: &str| {
        container
            .pointer(&format!("/resources/{s}/{resource}"))
            .and_then(|v| match v {
                Value::String(s) => to_milli(s),
                Value::Number(n) => to_milli(&n.to_string()),
                _ => None,
            })
    };
    // A request left out defaults to the limit, as Kubernetes' defaulting sets it.
    match section {
        "requests" => read("requests").or_else(|| read("limits")),
        _ => read("limits"),
    }
}

/// A pod's effective amount of `resource` in `section`: the containers' sum or the largest
/// init container, whichever is more (the init containers run before, one at a time); None
/// when a container does not say (so a quota on it must refuse the pod).
fn pod_amount(pod: &Value, section: &str, resource: &str) -> Result<Milli, Vec<String>> {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut missing = Vec::new();
    let mut sum: Milli = 0;
    for c in &containers {
        match container_amount(c, section, resource) {
            Some(v) => sum += v,
            None => missing.push(
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let init_max = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| container_amount(c, section, resource))
        .max()
        .unwrap_or(0);
    Ok(sum.max(init_max))
}

/// The quota names an object of `info` counts toward, with its amount: `pods` → 1000 milli,
/// `requests.cpu` → its millicores, and so on. A compute resource a container leaves out is
/// in `missing` (quota names such a pod "must specify").
struct Delta {
    amounts: BTreeMap<String, Milli>,
    missing: BTreeMap<String, Vec<String>>,
}

fn count_name(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        format!("count/{}", info.resource)
    } else {
        format!("count/{}.{}", info.resource, info.group)
    }
}

fn delta_of(info: &ResourceInfo, object: &Value) -> Delta {
    let mut amounts = BTreeMap::new();
    let mut missing = BTreeMap::new();
    let one = 1000;
    // An object served in several versions is one object (an Event, through core/v1 or
    // events.k8s.io/v1): each version's count names it once, so `count/events` and
    // `count/events.events.k8s.io` count the same Events.
    let stored = |r: &ResourceInfo| {
        r.stored_as
            .map_or((r.group, r.resource), |s| (s.group, s.resource))
    };
    for served in resources::RESOURCES
        .iter()
        .filter(|r| stored(r) == stored(info))
    {
        amounts.insert(count_name(served), one);
    }
    if info.group.is_empty()
        && matches!(
            info.resource,
            "pods" | "services" | "configmaps" | "secrets" | "resourcequotas"
        )
    {
        amounts.insert(info.resource.to_owned(), one);
    }
    if info.kind == "Service" {
        match object.pointer("/spec/type").and_then(Value::as_str) {
            Some("NodePort") => {
                let ports = object
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                amounts.insert("services.nodeports".into(), one * ports as Milli);
            }
            Some("LoadBalancer") => {
                amounts.insert("services.loadbalancers".into(), one);
            }
            _ => {}
        }
    }
    if info.kind == "Pod" && pod_counts(object) {
        for (name, alias, section, resource) in [
            ("requests.cpu", Some("cpu"), "requests", "cpu"),
            ("requests.memory", Some("memory"), "requests", "memory"),
            ("limits.cpu", None, "limits", "cpu"),
            ("limits.memory", None, "limits", "memory"),
            (
                "requests.ephemeral-storage",
                Some("ephemeral-storage"),
                "requests",
                "ephemeral-storage",
            ),
            (
                "limits.ephemeral-storage",
                None,
                "limits",
                "ephemeral-storage",
            ),
        ] {
            let names: Vec<&str> = std::iter::once(name).chain(alias).collect();
            match pod_amount(object, section, resource) {
                Ok(v) => {
                    for n in names {
                        amounts.insert(n.to_owned(), v);
                    }
                }
                Err(containers) => {
                    for n in names {
                        missing.insert(n.to_owned(), containers.clone());
                    }
                }
            }
        }
    }
    Delta { amounts, missing }
}

/// The resource a quota name counts, and whether it counts objects (`pods`, `count/…`) or
/// sums pod resources.
fn counted_info(name: &str) -> Option<&'static ResourceInfo> {
    let (resource, group) = match name.strip_prefix("count/") {
        Some(rest) => rest.split_once('.').unwrap_or((rest, "")),
        None => match name {
            "pods" | "services" | "configmaps" | "secrets" | "resourcequotas" => (name, ""),
            "services.nodeports" | "services.loadbalancers" => ("services", ""),
            _ => ("pods", ""),
        },
    };
    resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.resource == resource)
}

async fn objects_in(
    storage: &Storage,
    info: &ResourceInfo,
    namespace: &str,
) -> Result<Vec<Value>, ApiError> {
    let page = storage
        .list(&info.list_prefix(Some(namespace)), None, 0, 0)
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect())
}

/// The current usage of quota name `name` in `namespace`, recounted from the store.
async fn usage(
    storage: &Storage,
    cache: &mut BTreeMap<&'static str, Vec<Value>>,
    name: &str,
    namespace: &str,
) -> Result<Milli, ApiError> {
    let Some(info) = counted_info(name) else {
        return Ok(0);
    };
    if !cache.contains_key(info.resource) {
        let objects = objects_in(storage, info, namespace).await?;
        cache.insert(info.resource, objects);
    }
    let objects = cache.get(info.resource).map(Vec::as_slice).unwrap_or(&[]);
    Ok(objects
        .iter()
        .filter(|o| info.kind != "Pod" || pod_counts(o))
        .map(|o| delta_of(info, o).amounts.get(name).copied().unwrap_or(0))
        .sum())
}

/// A quota's `spec.hard` (an unreadable one limits nothing: it was validated on the way in).
fn hard_of(quota: &Value) -> BTreeMap<String, String> {
    quota
        .pointer("/spec/hard")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default()
}

/// Checks a create of `object` against every ResourceQuota of `namespace` and returns the
/// quotas to write beside it (their new `status`), each guarded by the revision it was read
/// at. Refusals are kube-apiserver's 403 "exceeded quota".
///
/// `cached`: the watch cache of ResourceQuotas. A namespace the cache shows without quotas is
/// not read from the store (kube-apiserver's quota admission reads its informer the same
/// way): creates in the namespaces that have none pay nothing, and a quota made a moment ago
/// binds from the moment the cache has it.
pub async fn admit(
    storage: &Storage,
    cached: &crate::cache::Cacher,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
) -> Result<Vec<Guard>, ApiError> {
    let Some(quotas_info) = resources::lookup("", "v1", "resourcequotas") else {
        return Ok(Vec::new());
    };
    let none_cached = cached
        .list(&quotas_info.list_prefix(Some(namespace)))
        .map(|(quotas, _)| quotas.is_empty())
        .unwrap_or(false);
    if none_cached {
        return Ok(Vec::new());
    }
    let page = storage
        .list(&quotas_info.list_prefix(Some(namespace)), None, 0, 0)
        .await?;
    if page.items.is_empty() {
        return Ok(Vec::new());
    }
    let delta = delta_of(info, object);
    let mut counted: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    let mut guards = Vec::new();
    for stored in &page.items {
        let Ok(mut quota) = serde_json::from_slice::<Value>(&stored.value) else {
            continue;
        };
        let quota_name = name_of(&quota).to_owned();
        let hard = hard_of(&quota);
        let touched: Vec<&String> = hard
            .keys()
            .filter(|k| delta.amounts.contains_key(*k) || delta.missing.contains_key(*k))
            .collect();
        if touched.is_empty() {
            continue;
        }
        let mut must_specify = Vec::new();
        for name in &touched {
            if let Some(containers) = delta.missing.get(*name) {
                must_specify.push(format!("{name} for: {}", containers.join(",")));
            }
        }
        if !must_specify.is_empty() {
            return Err(forbidden(
                info,
                object,
                format!(
                    "failed quota: {quota_name}: must specify {}",
                    must_specify.join("; ")
                ),
            ));
        }
        let mut used: BTreeMap<String, Value> = quota
            .pointer("/status/used")
            .and_then(|u| serde_json::from_value(u.clone()).ok())
            .unwrap_or_default();
        let mut exceeded = Vec::new();
        for name in &touched {
            let limit = hard.get(*name).and_then(|h| to_milli(h)).unwrap_or(0);
            let now = usage(storage, &mut counted, name, namespace).await?;
            let wanted = delta.amounts.get(*name).copied().unwrap_or(0);
            if now + wanted > limit {
                exceeded.push(Exceeded {
                    name: name.to_string(),
                    wanted,
                    used: now,
                    limit,
                });
            }
            used.insert((*name).clone(), json!(format_milli(now + wanted)));
        }
        if !exceeded.is_empty() {
            let list = |pick: fn(&Exceeded) -> Milli| {
                exceeded
                    .iter()
                    .map(|e| format!("{}={}", e.name, format_milli(pick(e))))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(forbidden(
                info,
                object,
                format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    list(|e| e.wanted),
                    list(|e| e.used),
                    list(|e| e.limit),
                ),
            ));
        }
        quota["status"] = json!({"hard": hard, "used": used});
        guards.push(Guard {
            key: stored.key.clone(),
            value: serde_json::to_vec(&quota).map_err(|e| ApiError::internal(e.to_string()))?,
            expected: stored.mod_revision,
        });
    }
    Ok(guards)
}

/// One quota name a create would take past its limit.
struct Exceeded {
    name: String,
    wanted: Milli,
    used: Milli,
    limit: Milli,
}

fn forbidden(info: &ResourceInfo, object: &Value, reason: String) -> ApiError {
    let name = name_of(object);
    ApiError::forbidden(
        format!("{} {name:?} is forbidden: {reason}", info.qualified()),
        name,
        info.group,
        info.resource,
    )
}

/// A new ResourceQuota's `status`: its hard limits and what the namespace already uses, so
/// `kubectl describe quota` is right from the start.
pub async fn initial_status(
    storage: &Storage,
    namespace: &str,
    quota: &mut Value,
) -> Result<(), ApiError> {
    let hard = hard_of(quota);
    let mut counted = BTreeMap::new();
    let mut used = BTreeMap::new();
    for name in hard.keys() {
        let now = usage(storage, &mut counted, name, namespace).await?;
        used.insert(name.clone(), json!(format_milli(now)));
    }
    quota["status"] = json!({"hard": hard, "used": used});
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_thousandths() {
        for (text, milli) in [
            ("1", 1000),
            ("500m", 500),
            ("0.5", 500),
            ("1.5", 1500),
            ("2k", 2_000_000),
            ("1Ki", 1_024_000),
            ("64Mi", 64 * 1024 * 1024 * 1000),
            ("1e3", 1_000_000),
            ("0.0001", 1),
            ("10", 10_000),
        ] {
            assert_eq!(to_milli(text), Some(milli), "{text}");
        }
        for bad in [
            "",
            "m",
            "1x",
            "1.2.3",
            "--1",
            "1e99",
            "ten",
            &"9".repeat(60),
        ] {
            assert_eq!(to_milli(bad), None, "{bad:?}");
        }
        assert_eq!(format_milli(10_000), "10");
        assert_eq!(format_milli(1500), "1500m");
    }

    #[test]
    fn a_pod_counts_its_containers_or_its_largest_init_container() {
        let pods = resources::lookup("", "v1", "pods").expect("served");
        let pod = json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}}
        ]}});
        let delta = delta_of(pods, &pod);
        assert_eq!(delta.amounts.get("pods"), Some(&1000));
        assert_eq!(delta.amounts.get("count/pods"), Some(&1000));
        // max(500m + 250m (b's request defaults to its limit), 2 of the init container)
        assert_eq!(delta.amounts.get("requests.cpu"), Some(&2000));
        assert_eq!(delta.amounts.get("cpu"), Some(&2000));
        assert_eq!(
            delta.amounts.get("requests.memory"),
            Some(&(96 * 1024 * 1024 * 1000))
        );
        // a has no memory limit: a quota on limits.memory must refuse this pod.
        assert_eq!(
            delta.missing.get("limits.memory"),
            Some(&vec!["a".to_owned()])
        );
        let done = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        assert!(!delta_of(pods, &done).amounts.contains_key("requests.cpu"));
    }

    #[test]
    fn an_event_counts_once_under_each_version_s_name() {
        for group in ["", "events.k8s.io"] {
            let events = resources::lookup(group, "v1", "events").expect("served");
            let delta = delta_of(events, &json!({"metadata": {"name": "e"}}));
            assert_eq!(delta.amounts.get("count/events"), Some(&1000), "{group}");
            assert_eq!(
                delta.amounts.get("count/events.events.k8s.io"),
                Some(&1000),
                "{group}"
            );
            assert_eq!(delta.amounts.len(), 2, "{group}");
        }
        let pods = resources::lookup("", "v1", "pods").expect("served");
        assert!(!delta_of(pods, &json!({}))
            .amounts
            .contains_key("count/events"));
    }

    #[test]
    fn names_map_to_the_resources_they_count() {
        assert_eq!(counted_info("pods").map(|i| i.resource), Some("pods"));
        assert_eq!(
            counted_info("count/deployments.apps").map(|i| i.qualified()),
            Some("deployments.apps".to_owned())
        );
        assert_eq!(
            counted_info("requests.cpu").map(|i| i.resource),
            Some("pods")
        );
        assert!(counted_info("count/widgets.example.com").is_none());
    }
}
