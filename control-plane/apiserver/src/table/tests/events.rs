//! Event rows of both event APIs, cell for cell as `kubectl get -o wide` shows them.

use serde_json::json;

use super::{ago, cells, column_names, object};

#[test]
fn core_event() {
    assert_eq!(
        column_names("events"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    let event = object(
        "v1",
        "Event",
        "web.17f2a",
        600,
        json!({
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled",
            "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(60),
            "count": 3,
            "type": "Normal",
        }),
    );
    assert_eq!(
        cells("events", event),
        json!([
            "60s",
            "Normal",
            "Pulled",
            "pod/web",
            "spec.containers{app}",
            "kubelet, node-1",
            "Successfully pulled image \"nginx\"",
            "10m",
            3,
            "web.17f2a"
        ])
    );
}

#[test]
fn events_k8s_io_event() {
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web.17f2b", "namespace": "default", "creationTimestamp": ago(30)},
        "eventTime": "2026-12-01T20:59:30.123456Z",
        "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-node-1",
        "action": "Binding",
        "reason": "Scheduled",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web"},
        "note": "Successfully assigned default/web to node-1",
        "type": "Normal",
    });
    assert_eq!(
        cells("events", event),
        json!([
            "29s",
            "Normal",
            "Scheduled",
            "pod/web",
            "",
            "default-scheduler, default-scheduler-node-1",
            "Successfully assigned default/web to node-1",
            "29s",
            1,
            "web.17f2b"
        ])
    );
}

#[test]
fn event_series() {
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web.17f2c"},
        "eventTime": ago(3600),
        "series": {"count": 12, "lastObservedTime": "2026-12-01T20:59:00.000000Z"},
        "reportingController": "kubelet",
        "reason": "BackOff",
        "regarding": {"kind": "Node"},
        "note": "Back-off restarting failed container",
        "type": "Warning",
    });
    let row = cells("events", event);
    assert_eq!(row[0], "60s");
    assert_eq!(row[3], "node");
    assert_eq!(row[5], "kubelet");
    assert_eq!(row[7], "60m");
    assert_eq!(row[8], 12);
}
