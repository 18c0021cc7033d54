//! `keelctl describe`: kubectl's describe, implemented once for every kind as kubectl's
//! generic describer (the one it uses for custom resources): the name, namespace, labels and
//! annotations, then every other field of the object (`fields`), then its events
//! (`events`), aligned as Go's tabwriter aligns them (`tabwriter`).
//!
//! kubectl has hand-written describers for about thirty built-in kinds that pick and
//! arrange fields (a pod's containers as a table, for instance); those are not reproduced.
//! The generic shape shows the same fields under their own names.

mod events;
mod fields;
mod tabwriter;

use std::io::Write;

use jiff::Timestamp;
use serde_json::Value;

use self::tabwriter::TabWriter;
use crate::objects::{ObjectsError, Session};
use crate::resources::{self, Resource};
use crate::table::printable;

/// What `describe` was asked.
pub struct DescribeRequest<'a> {
    pub resource: &'a str,
    /// The objects; every object of the kind in the namespace when empty.
    pub names: &'a [String],
    /// Ignored for cluster-scoped kinds.
    pub namespace: &'a str,
    /// Only with no names: a label selector.
    pub selector: Option<&'a str>,
}

/// `keelctl describe`: each object's description to `out` (kubectl separates them with
/// blank lines), an error line to `err` for each name that could not be read, and kubectl's
/// "No resources found" there when a listing is empty. The number of names that failed.
pub async fn describe(
    session: &Session,
    request: &DescribeRequest<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<usize, ObjectsError> {
    if !request.names.is_empty() && request.selector.is_some() {
        return Err(ObjectsError::Usage(
            "name cannot be provided when a selector is specified".into(),
        ));
    }
    let resource = session.resource(request.resource).await?;
    let namespace = resource.namespaced.then_some(request.namespace);
    let mut printed = 0;
    let mut failed = 0;
    let mut print = |out: &mut dyn Write, text: String| {
        let separator = if printed == 0 { "" } else { "\n\n" };
        printed += 1;
        write_text(out, &format!("{separator}{text}"))
    };
    if request.names.is_empty() {
        let query = request
            .selector
            .map(|s| format!("?labelSelector={}", resources::encode(s)))
            .unwrap_or_default();
        let list: Value = resources::get_json(
            &session.client,
            &(resource.path(namespace, None) + &query),
            resources::JSON,
        )
        .await?;
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            let nothing = match namespace {
                Some(ns) => format!("No resources found in {} namespace.\n", printable(ns)),
                None => "No resources found\n".to_owned(),
            };
            write_text(err, &nothing)?;
            return Ok(0);
        }
        for object in &items {
            print(&mut *out, describe_object(session, &resource, object).await)?;
        }
    } else {
        for name in request.names {
            let path = resource.path(namespace, Some(name));
            match resources::get_json::<Value>(&session.client, &path, resources::JSON).await {
                Ok(object) => print(
                    &mut *out,
                    describe_object(session, &resource, &object).await,
                )?,
                Err(e) => {
                    failed += 1;
                    // kubectl's shapes: `Error from server (NotFound): …`, else `error: …`.
                    let line = match ObjectsError::from(e) {
                        server @ ObjectsError::Server { .. } => format!("{server}\n"),
                        other => format!("error: {other}\n"),
                    };
                    write_text(err, &line)?;
                }
            }
        }
    }
    Ok(failed)
}

fn write_text(to: &mut dyn Write, text: &str) -> Result<(), ObjectsError> {
    to.write_all(text.as_bytes())
        .and_then(|()| to.flush())
        .map_err(|e| ObjectsError::Client(format!("writing the output: {e}")))
}

async fn describe_object(session: &Session, resource: &Resource, object: &Value) -> String {
    let events = list_events(&session.client, resource, object).await;
    render(
        object,
        resource.namespaced,
        events.as_deref(),
        Timestamp::now(),
    )
}

/// The core/v1 events about `object`, found as kubectl's `searchEvents` finds them: by kind,
/// name, namespace and uid, in the object's namespace (every namespace for a cluster-scoped
/// object). `None` when they cannot be listed; kubectl then prints no events section.
async fn list_events(
    client: &kube::Client,
    resource: &Resource,
    object: &Value,
) -> Option<Vec<Value>> {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let namespace = text("/metadata/namespace");
    let selector = events::selector(
        &resource.kind,
        text("/metadata/name"),
        namespace,
        text("/metadata/uid"),
    );
    let collection = if resource.namespaced && !namespace.is_empty() {
        format!(
            "/api/v1/namespaces/{}/events",
            resources::segment(namespace)
        )
    } else {
        "/api/v1/events".to_owned()
    };
    let path = format!(
        "{collection}?fieldSelector={}",
        resources::encode(&selector)
    );
    let list: Value = resources::get_json(client, &path, resources::JSON)
        .await
        .ok()?;
    Some(
        list.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    )
}

/// One object's description, as kubectl's generic describer writes it. `events`: `None` to
/// leave the section out.
pub fn render(
    object: &Value,
    namespaced: bool,
    events: Option<&[Value]>,
    now: Timestamp,
) -> String {
    let mut w = TabWriter::default();
    let metadata = object.get("metadata");
    let text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .map(fields::go_value)
            .unwrap_or_default()
    };
    w.line(0, &format!("Name:\t{}", printable(&text("name"))));
    if namespaced {
        w.line(0, &format!("Namespace:\t{}", printable(&text("namespace"))));
    }
    fields::labels(&mut w, metadata.and_then(|m| m.get("labels")));
    fields::annotations(&mut w, metadata.and_then(|m| m.get("annotations")));
    if let Some(map) = object.as_object() {
        fields::content(&mut w, 0, map, "");
    }
    events::section(&mut w, events, now);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::LAST_APPLIED;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "default", "uid": "u-1", "generation": 1,
                "resourceVersion": "42", "creationTimestamp": "2026-12-02T11:00:00Z",
                "labels": {"app": "web"},
                "annotations": {"deployment.kubernetes.io/revision": "1", LAST_APPLIED: "{}\n"},
                "managedFields": [{"manager": "kube-controller-manager"}],
            },
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 3},
        })
    }

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().expect("a timestamp")
    }

    #[test]
    fn a_deployment_reads_as_kubectls_generic_describer_prints_it() {
        let events = [json!({
            "type": "Normal", "reason": "ScalingReplicaSet",
            "source": {"component": "deployment-controller"},
            "message": "Scaled up replica set web-abc from 0 to 3",
            "firstTimestamp": "2026-12-02T11:59:50Z", "lastTimestamp": "2026-12-02T11:59:50Z",
            "count": 1,
        })];
        let text = render(&deployment(), true, Some(&events), now());
        let expected = "\
Name:         web
Namespace:    default
Labels:       app=web
Annotations:  deployment.kubernetes.io/revision: 1
API Version:  apps/v1
Kind:         Deployment
Metadata:
  Creation Timestamp:  2026-12-02T11:00:00Z
  Generation:          1
  Resource Version:    42
  UID:                 u-1
Spec:
  Replicas:  3
  Selector:
    Match Labels:
      App:  web
Status:
  Replicas:  3
Events:
  Type    Reason             Age   From                   Message
  ----    ------             ----  ----                   -------
  Normal  ScalingReplicaSet  10s   deployment-controller  Scaled up replica set web-abc from 0 to 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace_line_and_no_events_read_none() {
        // `Events:` aligns with the block it follows; here `Metadata:` (no value) ends it.
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
        let text = render(&node, false, Some(&[]), now());
        assert_eq!(
            text,
            "Name:         n1\n\
             Labels:       <none>\n\
             Annotations:  <none>\n\
             API Version:  v1\n\
             Kind:         Node\n\
             Metadata:\n\
             Events:  <none>\n"
        );
    }

    #[test]
    fn hostile_names_and_values_are_escaped() {
        let object = json!({"metadata": {"name": "x\u{1b}[2J\nName:\tforged"},
                            "spec": {"a": "\u{7}"}});
        let text = render(&object, false, None, now());
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Name:")).count(),
            1,
            "{text}"
        );
        // Not an object at all: a name line and the empty sections, no panic.
        let text = render(&json!("not an object"), true, None, now());
        assert!(text.starts_with("Name:"), "{text}");
    }
}
