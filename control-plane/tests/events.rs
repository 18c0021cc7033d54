//! core/v1 and events.k8s.io/v1 Events are one resource (issue 15): an Event written through
//! either version is read, listed, watched, selected, patched and deleted through the other,
//! by the real kubectl and kube-rs, as against kube-apiserver.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};
use support::api::{ApiServer, Backend};

const NS: &str = "ev";

/// An old-style Event as client-go's core/v1 recorder (and keel's) writes one.
fn core_event(name: &str, pod: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS, "apiVersion": "v1", "uid": "uid-1"},
        "reason": "Pulled", "message": "Successfully pulled image", "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "reportingComponent": "kubelet", "reportingInstance": "n1",
        "count": 3,
        "firstTimestamp": "2026-12-01T10:00:00Z", "lastTimestamp": "2026-12-01T10:05:00Z"
    })
}

/// A new-style Event as client-go's events/v1 recorder writes one.
fn events_v1_event(name: &str, pod: &str) -> events::Event {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "regarding": {"kind": "Pod", "name": pod, "namespace": NS, "apiVersion": "v1"},
        "reason": "Scheduled", "note": "Successfully assigned ev/web to n1", "type": "Normal",
        "action": "Binding", "eventTime": "2026-12-01T10:00:00.000000Z",
        "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-n1"
    }))
    .expect("an events/v1 Event")
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The next watch event naming `name`, within 20 s: its type.
async fn next_for<K>(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
    name: &str,
) -> String
where
    K: kube::Resource,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("no watch event for {name} in 20 s"))
            .expect("the watch stream")
            .unwrap_or_else(|| panic!("the watch ended before an event for {name}"));
        let (kind, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        };
        if object.meta().name.as_deref() == Some(name) {
            return kind.to_owned();
        }
    }
}

#[test]
fn core_and_events_k8s_io_events_are_one_resource() {
    let server = ApiServer::start(Backend::Keel, &[]);
    server.kubectl_ok(&["create", "namespace", NS]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let core_api: Api<core::Event> = Api::namespaced(client.clone(), NS);
        let events_api: Api<events::Event> = Api::namespaced(client.clone(), NS);

        // Watches on both versions, from before any Event exists.
        let mut core_watch = core_api
            .watch(&WatchParams::default(), "0")
            .await
            .expect("core/v1 watch")
            .boxed();
        let mut events_watch = events_api
            .watch(&WatchParams::default(), "0")
            .await
            .expect("events.k8s.io/v1 watch")
            .boxed();

        // core/v1 in (kubectl create -f), events.k8s.io/v1 out.
        let file = server.dir.path().join("core-event.json");
        std::fs::write(&file, core_event("pulled.1", "web").to_string()).expect("written");
        server.kubectl_ok(&["create", "-f", &file.display().to_string()]);
        let listed = json_of(&server.kubectl_ok(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            NS,
            "-o",
            "json",
        ]));
        assert_eq!(names(&listed), ["pulled.1"], "{listed}");
        let item = &listed["items"][0];
        assert_eq!(item["apiVersion"], "events.k8s.io/v1", "{item}");
        assert_eq!(item["regarding"]["name"], "web", "{item}");
        assert_eq!(item["regarding"]["kind"], "Pod", "{item}");
        assert_eq!(item["note"], "Successfully pulled image", "{item}");
        assert_eq!(item["reportingController"], "kubelet", "{item}");
        assert_eq!(item["reportingInstance"], "n1", "{item}");
        assert_eq!(item["deprecatedCount"], 3, "{item}");
        assert_eq!(item["deprecatedSource"]["host"], "n1", "{item}");
        assert_eq!(
            item["deprecatedLastTimestamp"], "2026-12-01T10:05:00Z",
            "{item}"
        );
        assert!(
            item.get("message").is_none() && item.get("involvedObject").is_none(),
            "{item}"
        );
        assert_eq!(next_for(&mut events_watch, "pulled.1").await, "ADDED");
        assert_eq!(next_for(&mut core_watch, "pulled.1").await, "ADDED");
        // kube-rs' typed events/v1 get reads it too.
        let got = events_api
            .get("pulled.1")
            .await
            .expect("events/v1 get of a core Event");
        assert_eq!(got.note.as_deref(), Some("Successfully pulled image"));

        // events.k8s.io/v1 in (kube-rs), core/v1 out.
        events_api
            .create(
                &PostParams::default(),
                &events_v1_event("scheduled.1", "web"),
            )
            .await
            .expect("events/v1 create");
        let read = core_api
            .get("scheduled.1")
            .await
            .expect("core/v1 get of an events/v1 Event");
        assert_eq!(read.involved_object.name.as_deref(), Some("web"));
        assert_eq!(
            read.message.as_deref(),
            Some("Successfully assigned ev/web to n1")
        );
        assert_eq!(
            read.reporting_component.as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(
            read.reporting_instance.as_deref(),
            Some("default-scheduler-n1")
        );
        assert_eq!(read.action.as_deref(), Some("Binding"));
        assert!(read.event_time.is_some());
        assert_eq!(next_for(&mut core_watch, "scheduled.1").await, "ADDED");
        assert_eq!(next_for(&mut events_watch, "scheduled.1").await, "ADDED");
        let core_list = json_of(&server.kubectl_ok(&["get", "events", "-n", NS, "-o", "json"]));
        assert_eq!(
            names(&core_list),
            ["pulled.1", "scheduled.1"],
            "{core_list}"
        );

        // One object each, counted once: under the stored resource, not per version.
        let metrics = server.kubectl_ok(&["get", "--raw", "/metrics"]);
        assert!(
            metrics
                .lines()
                .any(|l| l == "apiserver_storage_objects{resource=\"events\"} 2"),
            "{}",
            metrics
                .lines()
                .filter(|l| l.contains("storage_objects"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!metrics.contains("apiserver_storage_objects{resource=\"events.events.k8s.io\"}"));

        // Pages (limit and continue) are read from the store, not the cache: converted too.
        let paged = json_of(&server.kubectl_ok(&[
            "get", "events.v1.events.k8s.io", "-n", NS, "--chunk-size=1", "-o", "json",
        ]));
        assert_eq!(names(&paged), ["pulled.1", "scheduled.1"], "{paged}");
        assert!(
            paged["items"].as_array().is_some_and(|items| items
                .iter()
                .all(|i| i["regarding"]["name"] == "web" && i.get("involvedObject").is_none())),
            "{paged}"
        );

        // `kubectl events` and the Table of `kubectl get` list both.
        let printed = server.kubectl_ok(&["events", "-n", NS]);
        assert!(printed.contains("Successfully pulled image"), "{printed}");
        assert!(
            printed.contains("Successfully assigned ev/web to n1"),
            "{printed}"
        );
        let table = server.kubectl_ok(&["get", "events.v1.events.k8s.io", "-n", NS]);
        assert!(
            table.contains("REASON") && table.contains("pod/web"),
            "{table}"
        );
        assert!(
            table.contains("Pulled") && table.contains("Scheduled"),
            "{table}"
        );

        // Field selectors in each version's own spelling, kube's label conversion between.
        for (selector, want) in [
            ("reportingController=default-scheduler", vec!["scheduled.1"]),
            ("regarding.name=web,reason=Pulled", vec!["pulled.1"]),
            ("source=kubelet", vec!["pulled.1"]),
        ] {
            let list = json_of(&server.kubectl_ok(&[
                "get",
                "events.v1.events.k8s.io",
                "-n",
                NS,
                "--field-selector",
                selector,
                "-o",
                "json",
            ]));
            assert_eq!(names(&list), want, "{selector}: {list}");
        }
        let list = core_api
            .list(&ListParams::default().fields("reportingComponent=default-scheduler"))
            .await
            .expect("core/v1 field selector");
        assert_eq!(list.items.len(), 1);
        let refused = server.kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            NS,
            "--field-selector",
            "involvedObject.name=web",
        ]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("field label not supported: involvedObject.name"),
            "{stderr}"
        );

        // Patches apply in the request's version: events.k8s.io may change the series, not
        // the note; core/v1 (legacy rules) may change its message.
        let series =
            json!({"series": {"count": 2, "lastObservedTime": "2026-12-01T10:01:00.000000Z"}});
        let patched = events_api
            .patch(
                "scheduled.1",
                &PatchParams::default(),
                &Patch::Merge(&series),
            )
            .await
            .expect("events/v1 merge patch of the series");
        assert_eq!(patched.series.map(|s| s.count), Some(2));
        // A JSON patch (kubectl's) addresses the events.k8s.io paths.
        let patched = json_of(&server.kubectl_ok(&[
            "patch", "events.v1.events.k8s.io", "scheduled.1", "-n", NS, "--type", "json", "-o", "json",
            "-p", r#"[{"op":"test","path":"/regarding/name","value":"web"},{"op":"replace","path":"/series/count","value":3}]"#,
        ]));
        assert_eq!(patched["series"]["count"], 3, "{patched}");
        assert_eq!(
            core_api
                .get("scheduled.1")
                .await
                .expect("get")
                .series
                .and_then(|s| s.count),
            Some(3)
        );
        let refused = events_api
            .patch(
                "scheduled.1",
                &PatchParams::default(),
                &Patch::Merge(json!({"note": "changed"})),
            )
            .await
            .expect_err("an events/v1 note is immutable");
        let text = format!("{refused:?}");
        assert!(
            text.contains("message: Invalid value") && text.contains("field is immutable"),
            "{text}"
        );
        let changed = core_api
            .patch(
                "scheduled.1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"message": "rebound"})),
            )
            .await
            .expect("a core/v1 patch of the message");
        assert_eq!(changed.message.as_deref(), Some("rebound"));
        assert_eq!(
            events_api
                .get("scheduled.1")
                .await
                .expect("get")
                .note
                .as_deref(),
            Some("rebound")
        );

        // An events.k8s.io Event without its reporter: kube's strict rules and field path.
        let mut bad = serde_json::to_value(events_v1_event("bad.1", "web")).expect("json");
        bad.as_object_mut().map(|m| m.remove("reportingController"));
        let bad: events::Event = serde_json::from_value(bad).expect("an Event");
        let refused = events_api
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("refused without reportingController");
        match &refused {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(
                    status
                        .message
                        .contains("reportingController: Required value"),
                    "{status:?}"
                );
            }
            other => panic!("not a Status: {other:?}"),
        }

        // Delete through one version: gone in the other, and both watches hear it.
        events_api
            .delete("pulled.1", &DeleteParams::default())
            .await
            .expect("events/v1 delete");
        let missing = core_api
            .get("pulled.1")
            .await
            .expect_err("gone through core/v1");
        assert!(
            matches!(&missing, kube::Error::Api(s) if s.code == 404),
            "{missing:?}"
        );
        assert_eq!(next_for(&mut core_watch, "pulled.1").await, "DELETED");
        core_api
            .delete("scheduled.1", &DeleteParams::default())
            .await
            .expect("core/v1 delete");
        let missing = events_api
            .get("scheduled.1")
            .await
            .expect_err("gone through events/v1");
        assert!(
            matches!(&missing, kube::Error::Api(s) if s.code == 404),
            "{missing:?}"
        );
        for _patch in 0..3 {
            assert_eq!(next_for(&mut events_watch, "scheduled.1").await, "MODIFIED");
        }
        assert_eq!(next_for(&mut events_watch, "scheduled.1").await, "DELETED");
        let empty = json_of(&server.kubectl_ok(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            NS,
            "-o",
            "json",
        ]));
        assert_eq!(names(&empty), Vec::<String>::new(), "{empty}");
    });
}

#[test]
fn a_quota_counts_an_event_once_whichever_version_made_it() {
    let server = ApiServer::start(Backend::Keel, &[]);
    server.kubectl_ok(&["create", "namespace", NS]);
    server.kubectl_ok(&[
        "create",
        "quota",
        "events",
        "-n",
        NS,
        "--hard=count/events=2,count/events.events.k8s.io=2",
    ]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let core_api: Api<core::Event> = Api::namespaced(client.clone(), NS);
        let events_api: Api<events::Event> = Api::namespaced(client.clone(), NS);
        let core_one: core::Event = serde_json::from_value(core_event("a", "web")).expect("Event");
        core_api
            .create(&PostParams::default(), &core_one)
            .await
            .expect("first, core/v1");
        events_api
            .create(&PostParams::default(), &events_v1_event("b", "web"))
            .await
            .expect("second, events/v1");
        for (version, result) in [
            (
                "events/v1",
                events_api
                    .create(&PostParams::default(), &events_v1_event("c", "web"))
                    .await
                    .map(|_| ()),
            ),
            (
                "core/v1",
                core_api
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(core_event("d", "web")).expect("Event"),
                    )
                    .await
                    .map(|_| ()),
            ),
        ] {
            let refused = result.expect_err("a third Event exceeds the quota");
            let text = format!("{refused:?}");
            assert!(text.contains("exceeded quota"), "{version}: {text}");
        }
    });
    let quota = json_of(&server.kubectl_ok(&["get", "quota", "events", "-n", NS, "-o", "json"]));
    assert_eq!(quota["status"]["used"]["count/events"], "2", "{quota}");
    assert_eq!(
        quota["status"]["used"]["count/events.events.k8s.io"], "2",
        "{quota}"
    );
}

/// The scheduler records through core/v1 (keel-events); events.k8s.io readers see its Events.
#[test]
fn the_schedulers_core_events_are_read_through_events_k8s_io() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    server.kubectl_ok(&["create", "namespace", NS]);
    let file = server.dir.path().join("pod.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely", "namespace": NS},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    )
    .expect("written");
    server.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    let rt = support::runtime();
    rt.block_on(async {
        // No node: the scheduler records FailedScheduling.
        let item = support::eventually(
            "a FailedScheduling event through events.k8s.io",
            Duration::from_secs(20),
            || async {
                let list = json_of(&server.kubectl_ok(&[
                    "get",
                    "events.v1.events.k8s.io",
                    "-n",
                    NS,
                    "--field-selector",
                    "regarding.name=lonely,reason=FailedScheduling",
                    "-o",
                    "json",
                ]));
                list["items"].get(0).cloned()
            },
        )
        .await;
        assert_eq!(item["apiVersion"], "events.k8s.io/v1", "{item}");
        assert_eq!(item["regarding"]["kind"], "Pod", "{item}");
        assert_eq!(item["type"], "Warning", "{item}");
        assert_eq!(item["reportingController"], "default-scheduler", "{item}");
        assert_eq!(
            item["deprecatedSource"]["component"], "default-scheduler",
            "{item}"
        );
        assert_eq!(
            item["note"], "no nodes available to schedule pods",
            "{item}"
        );
        let client = server.client().await;
        let events_api: Api<events::Event> = Api::namespaced(client, NS);
        let typed = events_api
            .list(&ListParams::default().fields("reportingController=default-scheduler"))
            .await
            .expect("kube-rs events/v1 list");
        assert!(
            typed
                .items
                .iter()
                .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("lonely")),
            "{:?}",
            typed.items
        );
    });
}

/// An older keel kept events.k8s.io Events under a prefix of their own; a start moves them to
/// `/registry/events/` in the core form, and keeps (never drops) one whose name is taken.
#[test]
fn events_an_older_keel_stored_apart_are_moved_at_start() {
    let mut server = ApiServer::start(Backend::Keel, &[]);
    server.kubectl_ok(&["create", "namespace", NS]);
    let file = server.dir.path().join("taken.json");
    std::fs::write(&file, core_event("taken.1", "db").to_string()).expect("written");
    server.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    let rt = support::runtime();
    rt.block_on(async {
        let mut etcd = etcd_client::Client::connect([server.store_endpoint.as_str()], None)
            .await
            .expect("the store's etcd API");
        for (name, uid) in [("legacy.1", "uid-legacy"), ("taken.1", "uid-other")] {
            let mut old = serde_json::to_value(events_v1_event(name, "web")).expect("json");
            old["apiVersion"] = json!("events.k8s.io/v1");
            old["kind"] = json!("Event");
            old["metadata"]["uid"] = json!(uid);
            old["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
            etcd.put(
                format!("/registry/events.k8s.io/events/{NS}/{name}"),
                old.to_string(),
                None,
            )
            .await
            .expect("written the old way");
        }
    });
    server.stop_api();
    server.start_api();
    let output = server.output().join("\n");
    assert!(
        output.contains("moved the events.k8s.io Events")
            && output.contains("moved=1")
            && output.contains("kept=1"),
        "{output}"
    );
    rt.block_on(async {
        let client = server.client().await;
        let core_api: Api<core::Event> = Api::namespaced(client.clone(), NS);
        let moved = core_api
            .get("legacy.1")
            .await
            .expect("moved under /registry/events/");
        assert_eq!(
            moved.message.as_deref(),
            Some("Successfully assigned ev/web to n1")
        );
        assert_eq!(
            moved.reporting_component.as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(moved.metadata.uid.as_deref(), Some("uid-legacy"));
        let taken = core_api.get("taken.1").await.expect("the core Event stays");
        assert_eq!(taken.involved_object.name.as_deref(), Some("db"));
        let mut etcd = etcd_client::Client::connect([server.store_endpoint.as_str()], None)
            .await
            .expect("the store's etcd API");
        let gone = etcd
            .get(
                format!("/registry/events.k8s.io/events/{NS}/legacy.1"),
                None,
            )
            .await
            .expect("get");
        assert!(
            gone.kvs().is_empty(),
            "the moved Event is still under the old prefix"
        );
        let kept = etcd
            .get(format!("/registry/events.k8s.io/events/{NS}/taken.1"), None)
            .await
            .expect("get");
        assert_eq!(
            kept.kvs().len(),
            1,
            "an Event whose name is taken is kept, not dropped"
        );
    });
}
