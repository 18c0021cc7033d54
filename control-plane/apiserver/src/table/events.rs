//! Events (`printEvent`), from either API: core/v1 and events.k8s.io/v1 are the same stored
//! event under the same plural, and Kubernetes converts both to one internal type before
//! printing, so the two print the same columns from differently named fields.

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, NAME_DESCRIPTION};
use super::duration::{since, timestamp};
use super::fields::{at, int_at, name, str_at};

pub(super) const PRINTER: Printer = Printer {
    columns: COLUMNS,
    row,
};

const COLUMNS: &[Column] = &[
    Column::new(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    Column::new(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    Column::new(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the \
         transition into the object's current status.",
    ),
    Column::new("Object", "string", "The object that this event is about."),
    Column::new("Subobject", "string", FIELD_PATH_DESCRIPTION).wide(),
    Column::new(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    )
    .wide(),
    Column::new(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    Column::new(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in \
         TypeMeta.)",
    )
    .wide(),
    Column::new(
        "Count",
        "string",
        "The number of times this event has occurred.",
    )
    .wide(),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: NAME_DESCRIPTION,
        priority: 1,
    },
];

/// `apiv1.ObjectReference{}.SwaggerDoc()["fieldPath"]`.
const FIELD_PATH_DESCRIPTION: &str = "If referring to a piece of an object instead of an entire \
    object, this string should contain a valid JSON/Go field access statement, such as \
    desiredState.manifest.containers[2]. For example, if the object reference is to a container \
    within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" \
    refers to the name of the container that triggered the event) or if no container name is \
    specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen \
    only to have some well-defined way of referencing a part of an object.";

/// Where each API keeps the fields whose names differ between the two.
struct Fields {
    involved_object: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
}

static CORE_V1: Fields = Fields {
    involved_object: "involvedObject",
    message: "message",
    source: "source",
    // core/v1 serialises ReportingController under its older name.
    reporting_controller: "reportingComponent",
    first_timestamp: "firstTimestamp",
    last_timestamp: "lastTimestamp",
    count: "count",
};

static EVENTS_V1: Fields = Fields {
    involved_object: "regarding",
    message: "note",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
    first_timestamp: "deprecatedFirstTimestamp",
    last_timestamp: "deprecatedLastTimestamp",
    count: "deprecatedCount",
};

fn fields_of(event: &Value) -> &'static Fields {
    let api_version = str_at(event, &["apiVersion"]);
    let new_api = api_version.starts_with("events.k8s.io/")
        || (api_version.is_empty()
            && at(event, &["involvedObject"]).is_none()
            && at(event, &["regarding"]).is_some());
    if new_api {
        &EVENTS_V1
    } else {
        &CORE_V1
    }
}

fn row(event: &Value, now: Timestamp) -> Row {
    let fields = fields_of(event);

    // The first sighting falls back to eventTime, which events.k8s.io events set instead.
    let first_seen = match timestamp(event.get(fields.first_timestamp)) {
        Some(first) => since(Some(first), now),
        None => since(timestamp(event.get("eventTime")), now),
    };
    let mut last_seen = match timestamp(event.get(fields.last_timestamp)) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, &[fields.count]).unwrap_or(0);
    match event.get("series").filter(|series| series.is_object()) {
        Some(series) => {
            last_seen = since(timestamp(series.get("lastObservedTime")), now);
            count = int_at(series, &["count"]).unwrap_or(0);
        }
        // A singleton event of the new API carries no count.
        None if count == 0 => count = 1,
        None => {}
    }

    let kind = str_at(event, &[fields.involved_object, "kind"]).to_lowercase();
    let object = match str_at(event, &[fields.involved_object, "name"]) {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let source = event_source(
        first_non_empty(
            str_at(event, &[fields.source, "component"]),
            str_at(event, &[fields.reporting_controller]),
        ),
        first_non_empty(
            str_at(event, &[fields.source, "host"]),
            str_at(event, &["reportingInstance"]),
        ),
    );

    Row::new(vec![
        last_seen.into(),
        str_at(event, &["type"]).into(),
        str_at(event, &["reason"]).into(),
        object.into(),
        str_at(event, &[fields.involved_object, "fieldPath"]).into(),
        source.into(),
        str_at(event, &[fields.message]).trim().into(),
        first_seen.into(),
        count.into(),
        name(event).into(),
    ])
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> &'a str {
    if first.is_empty() {
        second
    } else {
        first
    }
}

/// `formatEventSource`: the reporting component, then `, host` when the host is known.
fn event_source(component: &str, host: &str) -> String {
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}
