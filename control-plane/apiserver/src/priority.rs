//! The Priority admission plugin: a pod's `spec.priorityClassName` becomes its
//! `spec.priority` (and `preemptionPolicy`) at creation, from the PriorityClass of that name,
//! or from the class marked `globalDefault` when the pod names none — kube-apiserver's
//! `plugin/pkg/admission/priority`. The scheduler orders its queue and chooses preemption
//! victims by that number, so a pod may not state its own: it must match what its class says.

use serde_json::{json, Value};

use crate::rest::Api;
use crate::status::ApiError;

const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// A class as admission reads it.
struct Class {
    name: String,
    value: i64,
    preemption_policy: Option<String>,
}

fn class_of(value: &Value) -> Class {
    Class {
        name: crate::objects::name_of(value).to_owned(),
        value: value.get("value").and_then(Value::as_i64).unwrap_or(0),
        preemption_policy: value
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

fn forbidden(pod: &Value, message: String) -> ApiError {
    ApiError::pod_forbidden(crate::objects::name_of(pod), message)
}

/// Sets the priority of a pod being created, or refuses it (403, as kube) when it names a
/// class that does not exist or states a priority its class does not give.
pub fn admit_pod(api: &Api, pod: &mut Value) -> Result<(), ApiError> {
    let cache = api.cache_of("scheduling.k8s.io", "priorityclasses")?;
    let info = crate::resources::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not served"))?;
    let named = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    let class = match &named {
        Some(name) => match cache.get(&info.key("", name)) {
            Some(cached) => Some(class_of(&cached.value)),
            None => {
                return Err(forbidden(
                    pod,
                    format!("no PriorityClass with name {name} was found"),
                ))
            }
        },
        // The global default, if one is marked (the newest wins, as kube picks one).
        None => cache
            .list(info.storage_prefix)
            .map(|(items, _)| items)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.value.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .map(|c| class_of(&c.value))
            .max_by_key(|c| c.value),
    };
    let priority = class.as_ref().map_or(0, |c| c.value);
    if let Some(stated) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        if stated != priority {
            return Err(forbidden(
                pod,
                format!(
                    "the integer value of priority ({stated}) must not be provided in pod spec; \
                     priority admission controller computed {priority} from the given PriorityClass name"
                ),
            ));
        }
    }
    let policy = class
        .as_ref()
        .and_then(|c| c.preemption_policy.clone())
        .unwrap_or_else(|| DEFAULT_PREEMPTION_POLICY.to_owned());
    if let Some(stated) = pod
        .pointer("/spec/preemptionPolicy")
        .and_then(Value::as_str)
    {
        if class.is_some() && stated != policy {
            return Err(forbidden(
                pod,
                format!(
                    "the string value of PreemptionPolicy ({stated}) must not be provided in pod spec; \
                     priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    spec.insert("priority".into(), json!(priority));
    if let Some(class) = class {
        spec.insert("priorityClassName".into(), json!(class.name));
    }
    spec.entry("preemptionPolicy").or_insert(json!(policy));
    Ok(())
}
