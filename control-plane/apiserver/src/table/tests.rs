//! The Table's shape, `includeObject`, ages, the default table and hostile input. The cells of
//! each resource are tested beside it, in `tests/<printer module>.rs`.

mod apps;
mod events;
mod network;
mod nodes;
mod pods;
mod simple;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{CREATION_TIMESTAMP_DESCRIPTION, NAME_DESCRIPTION};
use super::duration::human_duration;
use super::{to_table, IncludeObject};

/// The fixed "now" every test prints at.
fn now() -> Timestamp {
    "2026-12-01T21:00:00Z".parse().expect("valid timestamp")
}

/// The RFC 3339 time `seconds` before [`now`].
fn ago(seconds: i64) -> String {
    Timestamp::from_second(now().as_second() - seconds)
        .expect("timestamp in range")
        .to_string()
}

/// An object of the given kind named `name`, created `age_seconds` ago, with `body` merged in.
fn object(api_version: &str, kind: &str, name: &str, age_seconds: i64, body: Value) -> Value {
    let mut object = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age_seconds)},
    });
    if let (Some(object), Value::Object(body)) = (object.as_object_mut(), body) {
        object.extend(body);
    }
    object
}

fn table_of(resource: &str, items: &[Value], include: IncludeObject) -> Value {
    to_table(resource, items, json!({}), include, now())
}

/// The cells of the one row `item` prints as.
fn cells(resource: &str, item: Value) -> Value {
    table_of(resource, &[item], IncludeObject::None)["rows"][0]["cells"].clone()
}

fn column_names(resource: &str) -> Vec<String> {
    let table = table_of(resource, &[], IncludeObject::None);
    table["columnDefinitions"]
        .as_array()
        .expect("column definitions")
        .iter()
        .map(|column| column["name"].as_str().expect("column name").to_string())
        .collect()
}

fn running_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "7c1e6f3a-0d4b-4f0e-9a59-1f2d3c4b5a69",
            "resourceVersion": "1042",
            "creationTimestamp": ago(3600),
            "labels": {"app": "web"},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app", "image": "nginx"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": ago(3500)}},
            }],
        },
    })
}

#[test]
fn a_table_carries_kind_list_metadata_columns_and_rows() {
    let list_meta = json!({
        "resourceVersion": "1042",
        "continue": "eyJydiI6MTA0Mn0",
        "remainingItemCount": 7,
        "selfLink": "/api/v1/pods",
    });
    let table = to_table(
        "pods",
        &[running_pod()],
        list_meta,
        IncludeObject::None,
        now(),
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["metadata"],
        json!({"resourceVersion": "1042", "continue": "eyJydiI6MTA0Mn0", "remainingItemCount": 7})
    );
    assert_eq!(
        table["columnDefinitions"][0],
        json!({
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_DESCRIPTION,
            "priority": 0,
        })
    );
    assert_eq!(
        table["columnDefinitions"][4],
        json!({
            "name": "Age",
            "type": "string",
            "format": "",
            "description": CREATION_TIMESTAMP_DESCRIPTION,
            "priority": 0,
        })
    );
    let priorities: Vec<i64> = table["columnDefinitions"]
        .as_array()
        .expect("column definitions")
        .iter()
        .map(|column| column["priority"].as_i64().expect("priority"))
        .collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    let row = table["rows"][0].as_object().expect("row");
    assert!(
        !row.contains_key("conditions"),
        "a running pod has no row conditions"
    );
    assert_eq!(row["cells"].as_array().map(Vec::len), Some(9));
}

#[test]
fn an_empty_list_is_a_table_without_rows() {
    let table = to_table(
        "pods",
        &[],
        json!({"resourceVersion": ""}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(table["rows"], json!([]));
    assert_eq!(table["metadata"], json!({}));
    assert_eq!(table["columnDefinitions"].as_array().map(Vec::len), Some(9));
}

#[test]
fn include_object_none_leaves_a_null_object() {
    let table = table_of("pods", &[running_pod()], IncludeObject::None);
    let row = table["rows"][0].as_object().expect("row");
    assert_eq!(row.get("object"), Some(&Value::Null));
}

#[test]
fn include_object_metadata_is_partial_object_metadata() {
    let pod = running_pod();
    let table = table_of("pods", std::slice::from_ref(&pod), IncludeObject::Metadata);
    assert_eq!(
        table["rows"][0]["object"],
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": pod["metadata"],
        })
    );
}

#[test]
fn include_object_object_is_the_whole_object() {
    let pod = running_pod();
    let table = table_of("pods", std::slice::from_ref(&pod), IncludeObject::Object);
    assert_eq!(table["rows"][0]["object"], pod);
}

#[test]
fn include_object_parses_the_query_parameter() {
    assert_eq!(IncludeObject::from_param(""), Some(IncludeObject::Metadata));
    assert_eq!(IncludeObject::from_param("None"), Some(IncludeObject::None));
    assert_eq!(
        IncludeObject::from_param("Metadata"),
        Some(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::from_param("Object"),
        Some(IncludeObject::Object)
    );
    assert_eq!(IncludeObject::from_param("object"), None);
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn other_resources_get_name_and_age() {
    let widget = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "creationTimestamp": ago(12_000)},
    });
    let table = table_of("widgets", &[widget], IncludeObject::None);
    assert_eq!(
        table["columnDefinitions"],
        json!([
            {"name": "Name", "type": "string", "format": "name",
             "description": NAME_DESCRIPTION, "priority": 0},
            {"name": "Age", "type": "date", "format": "",
             "description": CREATION_TIMESTAMP_DESCRIPTION, "priority": 0},
        ])
    );
    assert_eq!(table["rows"][0]["cells"], json!(["w1", "3h20m"]));
}

#[test]
fn ages_of_unset_future_and_ancient_timestamps() {
    let age = |timestamp: Value| {
        cells(
            "widgets",
            json!({"metadata": {"name": "w", "creationTimestamp": timestamp}}),
        )[1]
        .clone()
    };
    assert_eq!(age(Value::Null), "<unknown>");
    assert_eq!(age(json!("0001-01-01T00:00:00Z")), "<unknown>");
    assert_eq!(age(json!("not a time")), "<unknown>");
    assert_eq!(age(json!(ago(-1))), "0s");
    assert_eq!(age(json!(ago(-5))), "<invalid>");
    assert_eq!(age(json!(ago(5))), "5s");
    // Go's time.Since saturates at about 292 years.
    assert_eq!(age(json!("0001-01-02T00:00:00Z")), "292y");
    assert_eq!(age(json!("2026-12-01T20:59:30.123456Z")), "29s");
}

const NS: i64 = 1;
const MS: i64 = 1_000_000;
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const YEAR: i64 = 365 * DAY;

/// apimachinery's `TestHumanDuration`.
#[test]
fn human_duration_examples() {
    let cases = [
        (SECOND, "1s"),
        (70 * SECOND, "70s"),
        (190 * SECOND, "3m10s"),
        (70 * MINUTE, "70m"),
        (47 * HOUR, "47h"),
        (49 * HOUR, "2d1h"),
        ((8 * 24 + 2) * HOUR, "8d"),
        (367 * DAY, "367d"),
        ((365 * 2 * 24 + 25) * HOUR, "2y1d"),
        ((365 * 8 * 24 + 2) * HOUR, "8y"),
    ];
    for (nanos, want) in cases {
        assert_eq!(human_duration(nanos), want, "{nanos}ns");
    }
}

/// apimachinery's `TestHumanDurationBoundaries`.
#[test]
fn human_duration_boundaries() {
    let cases = [
        (-2 * SECOND, "<invalid>"),
        (-2 * SECOND + NS, "0s"),
        (0, "0s"),
        (SECOND - MS, "0s"),
        (2 * MINUTE - MS, "119s"),
        (2 * MINUTE, "2m"),
        (2 * MINUTE + SECOND, "2m1s"),
        (10 * MINUTE - MS, "9m59s"),
        (10 * MINUTE, "10m"),
        (10 * MINUTE + SECOND, "10m"),
        (3 * HOUR - MS, "179m"),
        (3 * HOUR, "3h"),
        (3 * HOUR + MINUTE, "3h1m"),
        (8 * HOUR - MS, "7h59m"),
        (8 * HOUR, "8h"),
        (8 * HOUR + 59 * MINUTE, "8h"),
        (2 * DAY - MS, "47h"),
        (2 * DAY, "2d"),
        (2 * DAY + HOUR, "2d1h"),
        (8 * DAY - MS, "7d23h"),
        (8 * DAY, "8d"),
        (8 * DAY + 23 * HOUR, "8d"),
        (2 * YEAR - MS, "729d"),
        (2 * YEAR, "2y"),
        (2 * YEAR + 23 * HOUR, "2y"),
        (2 * YEAR + 23 * HOUR + 59 * MINUTE, "2y"),
        (2 * YEAR + DAY - MS, "2y"),
        (2 * YEAR + DAY, "2y1d"),
        (3 * YEAR, "3y"),
        (4 * YEAR, "4y"),
        (5 * YEAR, "5y"),
        (6 * YEAR, "6y"),
        (7 * YEAR, "7y"),
        (8 * YEAR - MS, "7y364d"),
        (8 * YEAR, "8y"),
        (8 * YEAR + 364 * DAY, "8y"),
        (9 * YEAR, "9y"),
    ];
    for (nanos, want) in cases {
        assert_eq!(human_duration(nanos), want, "{nanos}ns");
    }
}

#[test]
fn human_duration_at_the_extremes() {
    assert_eq!(human_duration(i64::MIN), "<invalid>");
    assert_eq!(human_duration(i64::MAX), "292y");
}

const RESOURCES: &[&str] = &[
    "pods",
    "deployments",
    "replicasets",
    "services",
    "endpointslices",
    "nodes",
    "events",
    "namespaces",
    "configmaps",
    "secrets",
    "leases",
    "resourcequotas",
    "limitranges",
    "widgets",
];

/// Objects no API server would store: wrong types everywhere, nulls, extreme numbers.
fn hostile_items() -> Vec<Value> {
    vec![
        Value::Null,
        json!(42),
        json!("pod"),
        json!([1, 2]),
        json!({}),
        json!({"metadata": 5, "spec": "x", "status": [], "series": 3, "apiVersion": "events.k8s.io/v1"}),
        json!({
            "apiVersion": 7,
            "metadata": {
                "name": 7,
                "creationTimestamp": "yesterday",
                "deletionTimestamp": {},
                "labels": {"node-role.kubernetes.io/": "", "kubernetes.io/role": 5},
            },
            "spec": {
                "containers": {},
                "initContainers": [5, {"name": [], "restartPolicy": 3}, {"restartPolicy": "Always"}],
                "replicas": "three",
                "selector": {"matchLabels": {"a": 1}, "matchExpressions": [null, {"operator": "In"}]},
                "ports": [{"port": "80", "nodePort": -1}, null],
                "type": 5,
                "clusterIPs": [5],
                "externalIPs": {},
                "readinessGates": [null, {"conditionType": []}],
                "template": [],
                "unschedulable": "yes",
                "holderIdentity": 5,
            },
            "status": {
                "phase": 3,
                "reason": "NodeLost",
                "containerStatuses": [
                    null,
                    5,
                    {"state": {"terminated": "x", "waiting": 1}, "lastState": {"terminated": {"finishedAt": 12}}},
                    {"state": {"waiting": {"reason": 5}, "terminated": {"exitCode": "1", "signal": i64::MIN}}},
                    {"restartCount": i64::MAX, "lastState": {"terminated": {"finishedAt": "9999-12-31T23:59:59Z"}}},
                    {"restartCount": i64::MAX},
                ],
                "initContainerStatuses": [
                    {"restartCount": i64::MAX, "state": null, "started": "yes"},
                    {"restartCount": i64::MAX, "name": []},
                    {"restartCount": i64::MIN},
                ],
                "conditions": [null, 3, {"type": []}, {"type": "Initialized", "status": "True"}],
                "podIPs": [3],
                "hard": [],
                "used": 4,
                "loadBalancer": {"ingress": [null, 4, {"ip": 3}]},
                "addresses": "x",
                "nodeInfo": 3,
            },
            "series": {"count": "many", "lastObservedTime": 5},
            "involvedObject": [],
            "regarding": "x",
            "source": 3,
            "data": "x",
            "binaryData": [],
            "type": {},
            "endpoints": [null, {"addresses": [1, null]}, {"addresses": "x"}],
            "ports": "x",
            "count": -5,
            "firstTimestamp": "0001-01-01T00:00:00Z",
            "lastTimestamp": "9999-12-31T23:59:59Z",
            "eventTime": "2026-13-45T99:99:99Z",
        }),
        json!({"metadata": {"name": "ancient", "creationTimestamp": "0001-01-02T00:00:00Z"}}),
        json!({"metadata": {"name": "future", "creationTimestamp": "9999-12-31T23:59:59Z"}}),
    ]
}

#[test]
fn hostile_objects_print_a_full_row_without_panicking() {
    let items = hostile_items();
    for resource in RESOURCES {
        for include in [
            IncludeObject::None,
            IncludeObject::Metadata,
            IncludeObject::Object,
        ] {
            let table = to_table(resource, &items, json!(null), include, now());
            let columns = table["columnDefinitions"].as_array().map_or(0, Vec::len);
            let rows = table["rows"].as_array().expect("rows");
            assert_eq!(rows.len(), items.len(), "{resource}");
            for row in rows {
                assert_eq!(
                    row["cells"].as_array().map(Vec::len),
                    Some(columns),
                    "{resource}: {row}"
                );
                if include == IncludeObject::Metadata {
                    assert!(row["object"]["metadata"].is_object(), "{resource}: {row}");
                }
            }
        }
    }
}

#[test]
fn every_printer_fills_every_column() {
    for resource in RESOURCES {
        let columns = column_names(resource);
        assert_eq!(
            columns.first().map(String::as_str),
            Some(if *resource == "events" {
                "Last Seen"
            } else {
                "Name"
            })
        );
        let row = cells(resource, running_pod());
        assert_eq!(
            row.as_array().map(Vec::len),
            Some(columns.len()),
            "{resource}"
        );
    }
}
