//! The text of a request line: label and field selectors (`?labelSelector=`,
//! `?fieldSelector=`), the path with its query, and the `Accept` header. All of it is the
//! attacker's: parsers must end in an error, never a panic, and a parsed selector must match
//! without one.
//!
//! Input: any bytes, read as text (lossily, as the HTTP layer decodes a query).

#![no_main]

use std::sync::LazyLock;

use keel_apiserver::reply::negotiate;
use keel_apiserver::request::{route, Query};
use keel_apiserver::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// What the selectors are matched against: a Pod with labels and the fields `pods` allows.
static POD: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "labels": {"app": "web", "tier": "a", "version": "3"}
        },
        "spec": {
            "nodeName": "node-1",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "hostNetwork": false,
            "containers": [{"name": "web", "image": "nginx:1.27"}]
        },
        "status": {"phase": "Running", "podIP": "10.0.0.5"}
    })
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let pod = &*POD;

    if let Ok(selector) = LabelSelector::parse(text) {
        let labels = pod
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let _ = selector.matches(labels);
        let _ = selector.matches(None);
        let _ = selector.exact("app");
    }
    if let Ok(selector) = FieldSelector::parse_for(text, "pods") {
        let _ = selector.matches(pod);
        let _ = selector.exact("metadata.name");
    }

    // As a request line's target: the path up to `?`, the query after it (or the whole text
    // as both, so that selector-shaped inputs reach the query parser too).
    let (path, query) = text.split_once('?').unwrap_or((text, text));
    let query = Query::parse(query);
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let _ = route(method, path, &query);
    }

    let _ = negotiate(Some(text));
});
