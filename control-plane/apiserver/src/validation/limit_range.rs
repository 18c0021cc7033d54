//! LimitRange validation, as kube-apiserver's `ValidateLimitRange` refuses: an unknown or
//! repeated item type, a resource name that is not a container resource, `default` or
//! `defaultRequest` on a `Pod` item, a PersistentVolumeClaim item without a storage bound,
//! and bounds out of order (`min ≤ defaultRequest ≤ default ≤ max`, a ratio of at least 1 and
//! at most max/min). Messages and field paths are kube's (`spec.limits[0].default[cpu]`).
//!
//! Two differences, both in what a cause *shows*: kube prints the bad value of a bound as Go's
//! dump of a `resource.Quantity` struct (its `String` has a pointer receiver, so the field
//! error falls back to `%#v`); keel prints the quantity itself, `"2"`. And a quantity that is
//! not one (`1x`) is refused here with apimachinery's words and the field's path, where kube
//! refuses the whole body at decoding (keel decodes quantities as strings).
//!
//! The checks run on the defaulted object (`defaults::limit_range`: a Container item's
//! `default` from `max`, `defaultRequest` from `default` or `min`), as kube validates after
//! defaulting.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use keel_api::validation::is_qualified_name;
use serde_json::Value;

use super::{text, Errors};
use crate::limit_ranger::quantity::Quantity;
use crate::status::Cause;

/// `standardLimitRangeTypes`.
const TYPES: [&str; 3] = ["Pod", "Container", "PersistentVolumeClaim"];
/// `standardContainerResources` (hugepages-* too).
const CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
/// `standardResources` (hugepages-* and requests.hugepages-* too).
const STANDARD_RESOURCES: [&str; 20] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `IsNativeResource`: unprefixed, or in a `kubernetes.io/` domain.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsExtendedResourceName`: a resource of another domain whose quota name
/// (`requests.<name>`) is a qualified name.
fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

/// `IsOvercommitAllowed`: a request below the limit is allowed for native resources other
/// than huge pages.
fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_huge_pages(name)
}

/// `validateLimitRangeTypeName`.
fn type_name(errors: &mut Errors, field: &str, value: &str) {
    let messages = is_qualified_name(value);
    if !messages.is_empty() {
        for message in messages {
            errors.invalid(field, value, &message);
        }
        return;
    }
    if !value.contains('/') && !TYPES.contains(&value) {
        errors.invalid(
            field,
            value,
            "must be a standard limit type or fully qualified",
        );
    }
}

/// `validateResourceName`, then for Pod and Container items `validateContainerResourceName`.
fn resource_name(errors: &mut Errors, kind: &str, field: &str, name: &str) {
    let messages = is_qualified_name(name);
    let qualified = messages.is_empty();
    for message in messages {
        errors.invalid(field, name, &message);
    }
    let unprefixed = !name.contains('/');
    if qualified
        && unprefixed
        && !(STANDARD_RESOURCES.contains(&name)
            || is_huge_pages(name)
            || name.starts_with("requests.hugepages-"))
    {
        errors.invalid(
            field,
            name,
            "must be a standard resource type or fully qualified",
        );
        // kube's validateResourceName returns here; the container check still runs.
    }
    if kind != "Pod" && kind != "Container" {
        return;
    }
    if unprefixed {
        if !CONTAINER_RESOURCES.contains(&name) && !is_huge_pages(name) {
            errors.invalid(field, name, "must be a standard resource for containers");
        }
    } else if !is_native(name) && !is_extended(name) {
        errors.invalid(
            field,
            name,
            "doesn't follow extended resource name standard",
        );
    }
}

/// One of an item's resource lists: each name checked, each quantity parsed; the readable ones.
fn section(
    errors: &mut Errors,
    at: &str,
    item: &Value,
    key: &str,
    kind: &str,
) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    let Some(entries) = item.get(key).and_then(Value::as_object) else {
        return out;
    };
    for (name, value) in entries {
        let field = format!("{at}.{key}[{name}]");
        resource_name(errors, kind, &field, name);
        match Quantity::from_json(value) {
            Ok(quantity) => {
                out.insert(name.clone(), quantity);
            }
            Err(message) => errors.invalid(&field, &text(Some(value)), message),
        }
    }
    out
}

fn is_set(item: &Value, key: &str) -> bool {
    item.get(key)
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

fn push(errors: &mut Errors, reason: &'static str, field: String, message: String) {
    errors.0.push(Cause {
        reason,
        message,
        field,
    });
}

/// `ValidateLimitRange` (the metadata is checked with every kind's).
pub(super) fn validate(errors: &mut Errors, object: &Value) {
    let limits = super::items(object.pointer("/spec/limits"));
    let mut types = HashSet::new();
    for (i, item) in limits.iter().enumerate() {
        let at = format!("spec.limits[{i}]");
        let kind = text(item.get("type"));
        type_name(errors, &format!("{at}.type"), &kind);
        if !types.insert(kind.clone()) {
            errors.duplicate(&format!("{at}.type"), &kind);
        }
        let max = section(errors, &at, item, "max", &kind);
        let min = section(errors, &at, item, "min", &kind);
        let (default, default_request) = if kind == "Pod" {
            for key in ["default", "defaultRequest"] {
                if is_set(item, key) {
                    push(
                        errors,
                        "FieldValueForbidden",
                        format!("{at}.{key}"),
                        "Forbidden: may not be specified when `type` is 'Pod'".into(),
                    );
                }
            }
            (BTreeMap::new(), BTreeMap::new())
        } else {
            (
                section(errors, &at, item, "default", &kind),
                section(errors, &at, item, "defaultRequest", &kind),
            )
        };
        if kind == "PersistentVolumeClaim"
            && item.pointer("/min/storage").is_none()
            && item.pointer("/max/storage").is_none()
        {
            push(
                errors,
                "FieldValueRequired",
                format!("{at}.limits"),
                "Required value: either minimum or maximum storage value is required, but neither was provided".into(),
            );
        }
        let ratios = section(errors, &at, item, "maxLimitRequestRatio", &kind);
        let names: BTreeSet<&String> = [&max, &min, &default, &default_request, &ratios]
            .into_iter()
            .flat_map(|list| list.keys())
            .collect();
        for name in names {
            let bounds = Bounds {
                min: min.get(name),
                max: max.get(name),
                default: default.get(name),
                default_request: default_request.get(name),
                ratio: ratios.get(name),
            };
            bounds.check(errors, &at, name);
        }
    }
}

/// One resource's bounds within one item.
struct Bounds<'a> {
    min: Option<&'a Quantity>,
    max: Option<&'a Quantity>,
    default: Option<&'a Quantity>,
    default_request: Option<&'a Quantity>,
    ratio: Option<&'a Quantity>,
}

impl Bounds<'_> {
    /// kube's checks, in its order; `shown` is the quantity each cause names as the bad value.
    fn check(&self, errors: &mut Errors, at: &str, name: &str) {
        let mut invalid = |key: &str, shown: &Quantity, detail: String| {
            errors.invalid(&format!("{at}.{key}[{name}]"), &shown.canonical(), &detail);
        };
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                invalid(
                    "min",
                    min,
                    format!("min value {min} is greater than max value {max}"),
                );
            }
        }
        if let Some(request) = self.default_request {
            if let Some(min) = self.min.filter(|min| *min > request) {
                invalid(
                    "defaultRequest",
                    request,
                    format!("min value {min} is greater than default request value {request}"),
                );
            }
            if let Some(max) = self.max.filter(|max| request > *max) {
                invalid(
                    "defaultRequest",
                    request,
                    format!("default request value {request} is greater than max value {max}"),
                );
            }
            if let Some(default) = self.default.filter(|default| request > *default) {
                invalid(
                    "defaultRequest",
                    request,
                    format!(
                        "default request value {request} is greater than default limit value {default}"
                    ),
                );
            }
        }
        if let Some(default) = self.default {
            if let Some(min) = self.min.filter(|min| *min > default) {
                invalid(
                    "default",
                    min,
                    format!("min value {min} is greater than default value {default}"),
                );
            }
            if let Some(max) = self.max.filter(|max| default > *max) {
                invalid(
                    "default",
                    max,
                    format!("default value {default} is greater than max value {max}"),
                );
            }
        }
        if let Some(ratio) = self.ratio {
            if *ratio < Quantity::from_units(1) {
                invalid(
                    "maxLimitRequestRatio",
                    ratio,
                    format!("ratio {ratio} is less than 1"),
                );
            }
            if let (Some(min), Some(max)) = (self.min, self.max) {
                // kube divides in thousandths (as floats; max/0 is +Inf, which nothing exceeds).
                let limit = max.milli() as f64 / min.milli() as f64;
                if ratio.milli() as f64 / 1000.0 > limit {
                    invalid(
                        "maxLimitRequestRatio",
                        ratio,
                        format!("ratio {ratio} is greater than max/min = {limit:.6}"),
                    );
                }
            }
        }
        if let (Some(default), Some(request)) = (self.default, self.default_request) {
            if !overcommit_allowed(name) && default != request {
                invalid(
                    "defaultRequest",
                    request,
                    format!(
                        "default value {default} must equal to defaultRequest value {request} in {name}"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::validation::tests::causes;

    fn limits(items: Value) -> Vec<String> {
        causes(
            "",
            "limitranges",
            json!({"metadata": {"name": "limits", "namespace": "team"}, "spec": {"limits": items}}),
        )
    }

    fn has(got: &[String], want: &str) {
        assert!(got.iter().any(|g| g == want), "{want:?} not in {got:#?}");
    }

    #[test]
    fn bounds_in_order_are_valid() {
        assert_eq!(
            limits(json!([
                {"type": "Container", "min": {"cpu": "100m", "memory": "64Mi"}, "max": {"cpu": "2", "memory": "1Gi"},
                 "default": {"cpu": "1", "memory": "512Mi"}, "defaultRequest": {"cpu": "500m", "memory": "256Mi"},
                 "maxLimitRequestRatio": {"cpu": "4"}},
                {"type": "Pod", "max": {"cpu": "4", "hugepages-2Mi": "1Gi"}},
                {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}},
                {"type": "example.com/widget", "max": {"example.com/gpu": "1"}},
                {"type": "Container2", "max": {}},
            ])),
            ["spec.limits[4].type: Invalid value: \"Container2\": must be a standard limit type or fully qualified"]
        );
        assert!(limits(json!([])).is_empty());
        assert!(causes("", "limitranges", json!({"metadata": {"name": "x"}})).is_empty());
    }

    #[test]
    fn bounds_out_of_order_are_refused_at_their_field() {
        let got = limits(json!([{"type": "Container",
            "min": {"cpu": "2", "memory": "512Mi"}, "max": {"cpu": "1", "memory": "1Gi"},
            "default": {"memory": "2Gi"}, "defaultRequest": {"memory": "256Mi"}}]));
        has(&got, "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1");
        // kube names max as the bad value of this one, and min as that of the next.
        has(&got, "spec.limits[0].default[memory]: Invalid value: \"1Gi\": default value 2Gi is greater than max value 1Gi");
        has(&got, "spec.limits[0].defaultRequest[memory]: Invalid value: \"256Mi\": min value 512Mi is greater than default request value 256Mi");
        assert_eq!(got.len(), 3, "{got:#?}");
        let got = limits(json!([{"type": "Container",
            "min": {"cpu": "1"}, "max": {"cpu": "2"}, "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "3"}}]));
        has(&got, "spec.limits[0].default[cpu]: Invalid value: \"1\": min value 1 is greater than default value 500m");
        has(&got, "spec.limits[0].defaultRequest[cpu]: Invalid value: \"3\": default request value 3 is greater than max value 2");
        has(&got, "spec.limits[0].defaultRequest[cpu]: Invalid value: \"3\": default request value 3 is greater than default limit value 500m");
        assert_eq!(got.len(), 3, "{got:#?}");
    }

    #[test]
    fn ratios_below_one_or_above_max_over_min_are_refused() {
        has(
            &limits(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "0.5"}}])),
            "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"500m\": ratio 500m is less than 1",
        );
        assert_eq!(
            limits(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "20"}}])),
            ["spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"20\": ratio 20 is greater than max/min = 10.000000"]
        );
        assert!(limits(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "10"}}])).is_empty());
        // A zero min makes max/min infinite: any ratio fits, as in kube's float arithmetic.
        assert!(limits(json!([{"type": "Pod", "min": {"cpu": "0"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "1000"}}])).is_empty());
    }

    #[test]
    fn types_must_be_known_or_qualified_and_unique() {
        let got = limits(json!([
            {"type": "Container"}, {"type": "Node"}, {"type": "Container"}, {"type": ""}, {"type": "a/b/c"},
        ]));
        has(&got, "spec.limits[1].type: Invalid value: \"Node\": must be a standard limit type or fully qualified");
        has(&got, "spec.limits[2].type: Duplicate value: \"Container\"");
        assert!(
            got.iter().any(|g| g.starts_with(
                "spec.limits[3].type: Invalid value: \"\": name part must be non-empty"
            )),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|g| g
                .starts_with("spec.limits[4].type: Invalid value: \"a/b/c\": a valid label key")),
            "{got:#?}"
        );
    }

    #[test]
    fn quantities_that_are_not_quantities_name_their_field() {
        let got = limits(
            json!([{"type": "Container", "max": {"cpu": "1x", "memory": "1Mb"}, "min": {"cpu": ""}}]),
        );
        has(&got, "spec.limits[0].max[cpu]: Invalid value: \"1x\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        has(&got, "spec.limits[0].max[memory]: Invalid value: \"1Mb\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        has(&got, "spec.limits[0].min[cpu]: Invalid value: \"\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        assert_eq!(
            got.len(),
            3,
            "an unreadable bound is compared with nothing: {got:#?}"
        );
        has(
            &limits(json!([{"type": "Container", "max": {"cpu": "1mm"}}])),
            "spec.limits[0].max[cpu]: Invalid value: \"1mm\": unable to parse quantity's suffix",
        );
    }

    #[test]
    fn defaults_only_for_containers_and_storage_bounds_for_claims() {
        let got = limits(json!([
            {"type": "Pod", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}, "max": {"cpu": "1"}},
            {"type": "PersistentVolumeClaim", "max": {"cpu": "1"}},
        ]));
        assert_eq!(
            got,
            [
                "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'",
                "spec.limits[0].defaultRequest: Forbidden: may not be specified when `type` is 'Pod'",
                "spec.limits[1].limits: Required value: either minimum or maximum storage value is required, but neither was provided",
            ]
        );
        // Empty default lists are not "specified".
        assert!(limits(json!([{"type": "Pod", "default": {}}])).is_empty());
    }

    #[test]
    fn resource_names_must_suit_the_item() {
        let got = limits(json!([{"type": "Container", "max": {
            "pods": "1", "gpu": "1", "example.com/gpu": "1", "kubernetes.io/thing": "1", "Bad Name": "1",
        }}]));
        has(&got, "spec.limits[0].max[pods]: Invalid value: \"pods\": must be a standard resource for containers");
        has(&got, "spec.limits[0].max[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified");
        has(&got, "spec.limits[0].max[gpu]: Invalid value: \"gpu\": must be a standard resource for containers");
        assert!(got.iter().any(|g| g.starts_with("spec.limits[0].max[Bad Name]: Invalid value: \"Bad Name\": name part must consist of")), "{got:#?}");
        assert!(
            !got.iter()
                .any(|g| g.contains("example.com/gpu") || g.contains("kubernetes.io/thing")),
            "{got:#?}"
        );
        // A claim's item takes any standard resource name.
        assert!(limits(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi", "pods": "1"}}])
        )
        .is_empty());
    }

    #[test]
    fn resources_that_cannot_overcommit_need_equal_defaults() {
        assert_eq!(
            limits(json!([{"type": "Container",
                "default": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi", "cpu": "2"},
                "defaultRequest": {"example.com/gpu": "1", "hugepages-2Mi": "2Mi", "cpu": "1"}}])),
            [
                "spec.limits[0].defaultRequest[example.com/gpu]: Invalid value: \"1\": default value 2 must equal to defaultRequest value 1 in example.com/gpu",
                "spec.limits[0].defaultRequest[hugepages-2Mi]: Invalid value: \"2Mi\": default value 4Mi must equal to defaultRequest value 2Mi in hugepages-2Mi",
            ]
        );
    }

    #[test]
    fn the_defaulted_object_is_what_is_checked() {
        // A Container item with only max and min: defaulting makes default = max and
        // defaultRequest = default, so a min above max is reported against both.
        let mut range = json!({"metadata": {"name": "x"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]}});
        crate::defaults::apply("LimitRange", &mut range);
        let got = causes("", "limitranges", range);
        assert_eq!(
            got,
            [
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
                "spec.limits[0].defaultRequest[cpu]: Invalid value: \"1\": min value 2 is greater than default request value 1",
                "spec.limits[0].default[cpu]: Invalid value: \"2\": min value 2 is greater than default value 1",
            ]
        );
    }
}
