//! kube-rs (the `kube` crate, nobody here wrote it) against keel's API server: typed create,
//! list, get, merge and strategic patches, and its `watcher` carrying on across an API server
//! restart that expired its resourceVersion (a 410 it must answer by relisting). The server
//! runs over an external etcd here, so objects can be written while the API server is down.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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

#[test]
fn kube_rs_client_and_watcher() {
    let mut server = ApiServer::start(Backend::Etcd, &["--watch-cache-size", "5"]);
    let rt = support::runtime();
    rt.block_on(async {
        // The admin.kubeconfig the server wrote, over TLS with its client certificate: what a
        // user of kube-rs would load.
        let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("admin.kubeconfig reads");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("admin.kubeconfig is a kube-rs config");
        let client = Client::try_from(config).expect("a client");
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
        let (events, mut seen) = mpsc::unbounded_channel();
        let stream = watcher(maps.clone(), watcher::Config::default()).default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let text = match item {
                    Ok(watcher::Event::Init) => "init".to_owned(),
                    Ok(watcher::Event::InitApply(c)) => format!("init-apply {}", c.metadata.name.unwrap_or_default()),
                    Ok(watcher::Event::InitDone) => "init-done".to_owned(),
                    Ok(watcher::Event::Apply(c)) => format!("apply {}", c.metadata.name.unwrap_or_default()),
                    Ok(watcher::Event::Delete(c)) => format!("delete {}", c.metadata.name.unwrap_or_default()),
                    Err(e) => format!("error {e}"),
                };
                if events.send(text).is_err() {
                    return;
                }
            }
        });
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
