//! kube-rs (the `kube` crate, nobody here wrote it) against keel's API server: typed create,
//! list, get, merge and strategic patches, and its `watcher` carrying on across an API server
//! restart that expired its resourceVersion (a 410 it must answer by relisting). The server
//! runs over an external etcd here, so objects can be written while the API server is down.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use support::api::{ApiServer, Backend};
use tokio::sync::mpsc;

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "kube-rs"}}, "data": {"k": "v"}}),
    )
    .expect("a ConfigMap")
}

/// Reads the watcher's events into `log` until `want` arrives (true) or 20 s pass (false).
async fn until(
    seen: &mut mpsc::UnboundedReceiver<String>,
    want: &str,
    log: &mut Vec<String>,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, seen.recv()).await {
        log.push(event.clone());
        if event == want {
            return true;
        }
    }
    false
}

/// Runs a kube-rs watcher stream in a task that reports each of its events as a line
/// (`init`, `init-apply NAME`, `init-done`, `apply NAME`, `delete NAME`, `error ...`).
fn narrate<K, S>(stream: S) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<String>)
where
    K: kube::Resource + Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (events, seen) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let name = |object: K| object.meta().name.clone().unwrap_or_default();
            let text = match item {
                Ok(watcher::Event::Init) => "init".to_owned(),
                Ok(watcher::Event::InitApply(c)) => format!("init-apply {}", name(c)),
                Ok(watcher::Event::InitDone) => "init-done".to_owned(),
                Ok(watcher::Event::Apply(c)) => format!("apply {}", name(c)),
                Ok(watcher::Event::Delete(c)) => format!("delete {}", name(c)),
                Err(e) => format!("error {e}"),
            };
            if events.send(text).is_err() {
                return;
            }
        }
    });
    (task, seen)
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
        )
        .await
        .expect("namespace created");
}

/// A kube-rs client from the admin.kubeconfig the server wrote (TLS with its client
/// certificate): what a user of kube-rs would load.
async fn client_of(server: &ApiServer) -> Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("admin.kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("admin.kubeconfig is a kube-rs config");
    Client::try_from(config).expect("a client")
}

#[test]
fn kube_rs_client_and_watcher() {
    let mut server = ApiServer::start(Backend::Etcd, &["--watch-cache-size", "5"]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = client_of(&server).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "kr"}})).expect("ns"))
            .await
            .expect("namespace created");
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kr");
        for name in ["a", "b"] {
            maps.create(&PostParams::default(), &configmap(name)).await.expect("created");
        }
        let listed = maps.list(&ListParams::default().labels("app=kube-rs")).await.expect("listed");
        let names: Vec<String> = listed.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        maps.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "1"}})))
            .await
            .expect("merge patch");
        let patched = maps
            .patch("a", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"labels": {"s": "2"}}})))
            .await
            .expect("strategic patch");
        let data = patched.data.clone().unwrap_or_default();
        assert_eq!(data.get("m").map(String::as_str), Some("1"));
        assert_eq!(patched.metadata.labels.unwrap_or_default().get("s").map(String::as_str), Some("2"));
        let got = maps.get("b").await.expect("get");
        assert!(got.metadata.resource_version.is_some() && got.metadata.uid.is_some());
        let missing = maps.get("zz").await.expect_err("not found");
        assert!(matches!(&missing, kube::Error::Api(s) if s.code == 404), "{missing:?}");

        // The watcher, with backoff as a controller runs it.
        let (task, mut seen) =
            narrate(watcher(maps.clone(), watcher::Config::default()).default_backoff());
        let mut log = Vec::new();
        assert!(until(&mut seen, "init-done", &mut log).await, "{log:?}");
        maps.create(&PostParams::default(), &configmap("c")).await.expect("created");
        assert!(until(&mut seen, "apply c", &mut log).await, "{log:?}");

        // Restart the API server with etcd written behind its back: the new watch cache starts
        // at a revision past the watcher's, which therefore gets 410 and must relist.
        server.stop_api();
        let mut etcd = etcd_client::Client::connect([server.store_endpoint.as_str()], None)
            .await
            .expect("etcd");
        for i in 0..10 {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("direct-{i}"), "namespace": "kr", "uid": format!("u-{i}"),
                             "creationTimestamp": "2026-12-01T00:00:00Z", "labels": {"app": "kube-rs"}}});
            etcd.put(format!("/registry/configmaps/kr/direct-{i}"), object.to_string(), None)
                .await
                .expect("written to etcd");
        }
        server.start_api();
        assert!(until(&mut seen, "init-apply direct-9", &mut log).await, "{log:?}");
        assert!(until(&mut seen, "init-done", &mut log).await, "{log:?}");
        println!("watcher events: {log:?}");
        let relisted = log.iter().rposition(|e| e == "init").expect("a relist");
        let before = log[..relisted].iter().rposition(|e| e == "init-done").expect("the first list");
        assert!(before < relisted, "{log:?}");
        maps.delete("c", &Default::default()).await.expect("deleted");
        assert!(until(&mut seen, "delete c", &mut log).await, "{log:?}");
        task.abort();
    });
}

/// kube-rs controllers write with server-side apply (`Patch::Apply`), to objects and to their
/// status: create by apply, a conflict kube-rs reports as a 409 `Conflict`, forcing, and the
/// status subresource applied apart from the spec.
#[test]
fn kube_rs_server_side_apply() {
    use k8s_openapi::api::apps::v1::Deployment;

    let server = ApiServer::start(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = client_of(&server).await;
        let deployments: Api<Deployment> = Api::namespaced(client, "default");
        let desired = |replicas: i64, image: &str| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "ctl"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "ctl"}},
                    "template": {"metadata": {"labels": {"app": "ctl"}},
                                 "spec": {"containers": [{"name": "c", "image": image}]}}
                }
            })
        };
        let owner = PatchParams::apply("ctl-operator");
        let created = deployments
            .patch("ctl", &owner, &Patch::Apply(desired(1, "busybox:1.36")))
            .await
            .expect("created by apply");
        assert_eq!(created.spec.replicas, Some(1));
        let managed = created.metadata.managed_fields.clone().unwrap_or_default();
        assert_eq!(managed.len(), 1, "{managed:?}");
        assert_eq!(managed[0].manager.as_deref(), Some("ctl-operator"));
        assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

        let other = PatchParams::apply("intruder");
        let refused = deployments
            .patch("ctl", &other, &Patch::Apply(desired(3, "busybox:1.36")))
            .await
            .expect_err("a conflict");
        match &refused {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 409, "{status:?}");
                assert_eq!(status.reason, "Conflict", "{status:?}");
                assert_eq!(
                    status.message,
                    "Apply failed with 1 conflict: conflict with \"ctl-operator\": .spec.replicas"
                );
            }
            other => panic!("not a Status: {other:?}"),
        }
        let forced = deployments
            .patch("ctl", &other.clone().force(), &Patch::Apply(desired(3, "busybox:1.36")))
            .await
            .expect("forced");
        assert_eq!(forced.spec.replicas, Some(3));

        // The status subresource: a controller applies status without touching the spec.
        let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ctl"},
                            "status": {"observedGeneration": 1}});
        let after = deployments
            .patch_status("ctl", &PatchParams::apply("ctl-status"), &Patch::Apply(status))
            .await
            .expect("status applied");
        assert_eq!(after.status.as_ref().and_then(|s| s.observed_generation), Some(1));
        assert_eq!(after.spec.replicas, Some(3));
        let mut entries: Vec<(String, String)> = after
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.manager.unwrap_or_default(), e.subresource.unwrap_or_default()))
            .collect();
        // kube orders them by operation, time and manager; which applier came first within
        // one second is not this test's business.
        entries.sort();
        assert_eq!(
            entries,
            [
                ("ctl-operator".to_owned(), String::new()),
                ("ctl-status".to_owned(), "status".to_owned()),
                ("intruder".to_owned(), String::new())
            ]
        );

        let managers_of = |object: &Deployment| -> Vec<String> {
            let entries = object.metadata.managed_fields.iter().flatten();
            entries.map(|e| e.manager.clone().unwrap_or_default()).collect()
        };
        // A client may write the record itself (kubectl's upgrade from client-side apply
        // does, with a JSON patch): a valid record replaces the live one, and the next apply
        // conflicts with whom it names.
        let handed = json!({"metadata": {"managedFields": [{
            "manager": "handed-over", "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}});
        let rewritten = deployments
            .patch("ctl", &PatchParams::default(), &Patch::Merge(handed))
            .await
            .expect("record written");
        assert_eq!(managers_of(&rewritten), ["handed-over"]);
        let refused = deployments
            .patch("ctl", &owner, &Patch::Apply(desired(5, "busybox:1.36")))
            .await
            .expect_err("a conflict with the handed-over record");
        assert!(
            matches!(&refused, kube::Error::Api(s) if s.code == 409
                && s.message.contains("conflict with \"handed-over\": .spec.replicas")),
            "{refused:?}"
        );
        // A record that does not decode is ignored, as kube ignores it: the live one stays.
        let garbage = json!({"metadata": {"managedFields": [{
            "manager": "x", "operation": "Update", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"nonsense": 1}}]}});
        let kept = deployments
            .patch("ctl", &PatchParams::default(), &Patch::Merge(garbage))
            .await
            .expect("patched");
        assert_eq!(managers_of(&kept), ["handed-over"]);
    });
}

/// kube-rs's streaming list (`sendInitialEvents`, the WatchList feature): the initial state
/// arrives as watch events — more of them than one write of the server carries — and ends with
/// the bookmark annotated `k8s.io/initial-events-end`, which is what kube-rs waits for to say
/// `InitDone`. Then a label selector's transitions: an object leaving the selector is a
/// deletion to that watcher, and one entering it an addition.
#[test]
fn kube_rs_streaming_list_and_selector_transitions() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = client_of(&server).await;
        create_namespace(&client, "sl").await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "sl");
        // 300 objects of about 2 KiB: 600 KiB of initial events, past the 256 KiB a watch
        // writes at once, so the initial state spans several writes.
        let filler = "x".repeat(2048);
        for i in 0..300 {
            let object: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("m-{i:03}"), "labels": {"app": "sl"}},
                "data": {"filler": filler},
            }))
            .expect("a ConfigMap");
            maps.create(&PostParams::default(), &object)
                .await
                .expect("created");
        }

        let config = watcher::Config::default()
            .labels("app=sl")
            .streaming_lists();
        let (task, mut seen) = narrate(watcher(maps.clone(), config));
        let mut log = Vec::new();
        assert!(
            until(&mut seen, "init-done", &mut log).await,
            "{:?}",
            &log[log.len().saturating_sub(5)..]
        );
        let initial: Vec<&String> = log
            .iter()
            .filter(|e| e.starts_with("init-apply "))
            .collect();
        let expected: Vec<String> = (0..300).map(|i| format!("init-apply m-{i:03}")).collect();
        assert_eq!(
            initial.len(),
            300,
            "every object once: {:?}",
            &log[..log.len().min(5)]
        );
        assert!(
            initial.iter().zip(&expected).all(|(a, b)| *a == b),
            "in key order"
        );
        assert!(log.iter().all(|e| !e.starts_with("error")), "{log:?}");

        // Leaving the selector is a deletion to this watcher; coming back, an addition.
        let relabel = |app: &'static str| {
            let maps = maps.clone();
            async move {
                let labels = json!({"metadata": {"labels": {"app": app}}});
                maps.patch("m-007", &PatchParams::default(), &Patch::Merge(labels))
                    .await
                    .expect("relabelled");
            }
        };
        relabel("other").await;
        assert!(until(&mut seen, "delete m-007", &mut log).await, "{log:?}");
        relabel("sl").await;
        assert!(until(&mut seen, "apply m-007", &mut log).await, "{log:?}");
        // Objects outside the selector are never seen; the one after them is.
        for (name, app) in [
            ("outside", "other"),
            ("outside-too", "kube-rs"),
            ("last", "sl"),
        ] {
            let object: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}}))
                    .expect("a ConfigMap");
            maps.create(&PostParams::default(), &object)
                .await
                .expect("created");
        }
        assert!(until(&mut seen, "apply last", &mut log).await, "{log:?}");
        assert!(!log.iter().any(|e| e.contains(" outside")), "{log:?}");
        task.abort();
    });
}

/// kube-rs' metadata-only API (`Api<PartialObjectMeta<K>>`, what kube's metadata informers and
/// keel's garbage collector use): list, get and watch carry metadata and nothing else, the
/// watch's bookmarks included, in the `PartialObjectMetadata` representation.
#[test]
fn kube_rs_metadata_only_list_get_and_watch() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = client_of(&server).await;
        create_namespace(&client, "km").await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "km");
        maps.create(&PostParams::default(), &configmap("first"))
            .await
            .expect("created");
        let metas: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "km");
        let listed = metas.list(&ListParams::default()).await.expect("listed");
        let names: Vec<_> = listed
            .items
            .iter()
            .filter_map(|m| m.metadata.name.clone())
            .collect();
        assert_eq!(names, ["first"]);
        let got = metas.get("first").await.expect("get");
        assert_eq!(
            got.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("kube-rs")
        );

        // The watcher kube's metadata informers run.
        let (task, mut seen) = narrate(watcher(metas.clone(), watcher::Config::default()));
        let mut log = Vec::new();
        assert!(until(&mut seen, "init-done", &mut log).await, "{log:?}");
        maps.create(&PostParams::default(), &configmap("second"))
            .await
            .expect("created");
        assert!(until(&mut seen, "apply second", &mut log).await, "{log:?}");
        maps.delete("second", &Default::default())
            .await
            .expect("deleted");
        assert!(until(&mut seen, "delete second", &mut log).await, "{log:?}");
        assert!(log.iter().all(|e| !e.starts_with("error")), "{log:?}");
        task.abort();

        // On the wire: every event (the initial state, and the bookmark that ends it) is
        // metadata alone.
        let request = http::Request::get(
            "/api/v1/namespaces/km/configmaps?watch=1&allowWatchBookmarks=true\
             &sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
        )
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .expect("a request");
        let text = client.request_text(request).await.expect("a watch");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON event"))
            .collect();
        assert!(
            lines
                .iter()
                .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "first"),
            "{text}"
        );
        assert!(lines.iter().any(|e| e["type"] == "BOOKMARK"), "{text}");
        for event in &lines {
            let object = &event["object"];
            assert_eq!(object["kind"], "PartialObjectMetadata", "{event}");
            assert_eq!(object["apiVersion"], "meta.k8s.io/v1", "{event}");
            assert!(object.get("data").is_none(), "metadata only: {event}");
        }
    });
}
