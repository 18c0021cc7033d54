//! The `Events:` section, as kubectl's `DescribeEvents` prints it: core/v1 events about the
//! object, oldest first, with their age as kubectl's printers give it (the API server's own
//! port of `translateTimestampSince`, so `get events` and `describe` agree).

use jiff::Timestamp;
use keel_apiserver::table::duration::{since, timestamp};
use serde_json::Value;

use super::tabwriter::TabWriter;
use crate::table::printable;

/// The section for `events`; nothing at all when they could not be listed (`None`), as
/// kubectl leaves it out when its search fails.
pub(super) fn section(w: &mut TabWriter, events: Option<&[Value]>, now: Timestamp) {
    let Some(events) = events else {
        return;
    };
    if events.is_empty() {
        // Part of the block above it, as in kubectl.
        w.line(0, "Events:\t<none>");
        return;
    }
    // The table aligns on its own.
    w.flush();
    let mut sorted: Vec<&Value> = events.iter().collect();
    // kubectl sorts by lastTimestamp; events.k8s.io-style events carry eventTime instead.
    sorted.sort_by_key(|event| {
        timestamp(event.get("lastTimestamp"))
            .or_else(|| timestamp(event.get("eventTime")))
            .or_else(|| timestamp(event.get("firstTimestamp")))
    });
    w.line(0, "Events:");
    w.line(1, "Type\tReason\tAge\tFrom\tMessage");
    w.line(1, "----\t------\t----\t----\t-------");
    for event in sorted {
        let text = |key: &str| printable(event.get(key).and_then(Value::as_str).unwrap_or(""));
        let source = event
            .pointer("/source/component")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| event.get("reportingComponent").and_then(Value::as_str))
            .unwrap_or("");
        let message = event.get("message").and_then(Value::as_str).unwrap_or("");
        w.line(
            1,
            &format!(
                "{}\t{}\t{}\t{}\t{}",
                text("type"),
                text("reason"),
                age(event, now),
                printable(source),
                printable(message.trim())
            ),
        );
    }
}

/// The Age cell: since the first sighting, and for a repeated event since the last one too
/// (`10s (x3 over 2m)`).
fn age(event: &Value, now: Timestamp) -> String {
    let first = match timestamp(event.get("eventTime")) {
        Some(time) => since(Some(time), now),
        None => since(timestamp(event.get("firstTimestamp")), now),
    };
    let count = |value: Option<&Value>| value.and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = event.get("series").filter(|s| s.is_object()) {
        return format!(
            "{} (x{} over {first})",
            since(timestamp(series.get("lastObservedTime")), now),
            count(series.get("count"))
        );
    }
    let repeats = count(event.get("count"));
    if repeats > 1 {
        return format!(
            "{} (x{repeats} over {first})",
            since(timestamp(event.get("lastTimestamp")), now)
        );
    }
    first
}

/// The field selector kubectl's `searchEvents` lists an object's events with, its values
/// escaped as `fields.EscapeValue` does.
pub(super) fn selector(kind: &str, name: &str, namespace: &str, uid: &str) -> String {
    let escape = |value: &str| {
        value
            .replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=")
    };
    let mut terms = Vec::new();
    if !kind.is_empty() {
        terms.push(format!("involvedObject.kind={}", escape(kind)));
    }
    terms.push(format!("involvedObject.name={}", escape(name)));
    terms.push(format!("involvedObject.namespace={}", escape(namespace)));
    if !uid.is_empty() {
        terms.push(format!("involvedObject.uid={}", escape(uid)));
    }
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().expect("a timestamp")
    }

    fn rendered(events: Option<&[Value]>) -> String {
        let mut w = TabWriter::default();
        w.line(0, "Status:\tok");
        section(&mut w, events, now());
        w.finish()
    }

    #[test]
    fn no_events_is_none_and_a_failed_search_no_section() {
        assert_eq!(rendered(Some(&[])), "Status:  ok\nEvents:  <none>\n");
        assert_eq!(rendered(None), "Status:  ok\n");
    }

    #[test]
    fn events_are_a_table_oldest_first_with_kubectls_ages() {
        let events = [
            json!({"type": "Normal", "reason": "ScalingReplicaSet",
                   "source": {"component": "deployment-controller"},
                   "message": "Scaled up replica set web-abc from 0 to 3\n",
                   "firstTimestamp": "2026-12-02T11:58:00Z", "lastTimestamp": "2026-12-02T11:59:50Z",
                   "count": 3}),
            json!({"type": "Warning", "reason": "Failed", "reportingComponent": "kubelet",
                   "source": {}, "message": "evil\u{1b}[2J\tcolumn",
                   "firstTimestamp": "2026-12-02T07:00:00Z", "lastTimestamp": "2026-12-02T07:00:00Z",
                   "count": 1}),
            json!({"type": "Normal", "reason": "Series",
                   "eventTime": "2026-12-01T12:00:00.000000Z",
                   "series": {"count": 4, "lastObservedTime": "2026-12-02T11:57:00.000000Z"},
                   "reportingComponent": "scheduler", "message": "m"}),
        ];
        let text = rendered(Some(&events));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "Status:  ok",
                "Events:",
                "  Type     Reason             Age               From                   Message",
                "  ----     ------             ----              ----                   -------",
                "  Normal   Series             3m (x4 over 24h)  scheduler              m",
                "  Warning  Failed             5h                kubelet                evil\\u{1b}[2J\\tcolumn",
                "  Normal   ScalingReplicaSet  10s (x3 over 2m)  deployment-controller  Scaled up replica set web-abc from 0 to 3",
            ],
            "{text}"
        );
    }

    #[test]
    fn ages_without_times_are_unknown() {
        assert_eq!(age(&json!({"count": 1}), now()), "<unknown>");
        assert_eq!(
            age(&json!({"firstTimestamp": "2026-12-02T11:59:58Z"}), now()),
            "2s"
        );
    }

    #[test]
    fn the_selector_escapes_its_values() {
        assert_eq!(
            selector("Deployment", "web", "default", "u-1"),
            "involvedObject.kind=Deployment,involvedObject.name=web,\
             involvedObject.namespace=default,involvedObject.uid=u-1"
        );
        assert_eq!(
            selector("", "a,b=c\\", "", ""),
            "involvedObject.name=a\\,b\\=c\\\\,involvedObject.namespace="
        );
    }
}
