//! ServiceAccounts for pods, end to end through kube-rs against a `control-plane` with its
//! controllers: a pod created in a new namespace runs as `default` with kube's
//! `kube-api-access-` volume mounted in each of its containers; the root CA publisher puts
//! `kube-root-ca.crt` (the CA `admin.kubeconfig` names) in every namespace, recreates it when
//! deleted and puts its data back when changed; a pod naming a missing ServiceAccount is
//! refused with kube's 403, one that opts out gets no volume, one whose account has pull
//! secrets gets them, and a hostile projected volume is refused by field.

mod support;

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::api::{ApiServer, Backend};
use support::eventually;

const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn api_status(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

/// The cluster CA as `admin.kubeconfig` carries it (PEM).
fn kubeconfig_ca(server: &ApiServer) -> String {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let data = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .expect("certificate-authority-data");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    String::from_utf8(pem).expect("PEM text")
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

#[test]
fn pods_get_their_service_account_token_volume_and_namespaces_the_cluster_ca() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let ca = kubeconfig_ca(&server);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let team: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns");
        namespaces
            .create(&PostParams::default(), &team)
            .await
            .expect("namespace");

        // At once, before the `default` ServiceAccount is sure to exist: admission waits.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
        let created = pods
            .create(
                &PostParams::default(),
                &pod(json!({"metadata": {"name": "web"}, "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})),
            )
            .await
            .expect("pod created");
        let value = serde_json::to_value(&created).expect("json");
        let spec = &value["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        let volumes = spec["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1, "{volumes:?}");
        let name = volumes[0]["name"].as_str().expect("name");
        let suffix = name.strip_prefix("kube-api-access-").expect("kube's prefix");
        assert!(
            suffix.len() == 5
                && suffix
                    .bytes()
                    .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)),
            "{name}"
        );
        assert_eq!(
            volumes[0]["projected"],
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]})
        );
        let mount = json!([{"name": name, "readOnly": true, "mountPath": MOUNT_PATH}]);
        assert_eq!(spec["containers"][0]["volumeMounts"], mount);
        assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);
        // What was stored is what came back.
        let stored = serde_json::to_value(pods.get("web").await.expect("get")).expect("json");
        assert_eq!(stored["spec"]["volumes"], spec["volumes"]);

        // The cluster CA in the new namespace (and in those that existed before).
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
        let published = eventually("kube-root-ca.crt in team", Duration::from_secs(30), || async {
            config_maps.get_opt("kube-root-ca.crt").await.ok().flatten()
        })
        .await;
        let data = published.data.clone().unwrap_or_default();
        assert_eq!(data.get("ca.crt"), Some(&ca));
        assert_eq!(data.len(), 1, "{data:?}");
        let description = published
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get("kubernetes.io/description")
            .cloned()
            .unwrap_or_default();
        assert!(
            description.starts_with("Contains a CA bundle that can be used to verify the kube-apiserver"),
            "{description}"
        );
        let in_default: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        eventually("kube-root-ca.crt in default", Duration::from_secs(30), || async {
            in_default.get_opt("kube-root-ca.crt").await.ok().flatten()
        })
        .await;

        // Deleted: created again (a new object). Changed: put back.
        let first_uid = published.metadata.uid.clone().expect("uid");
        config_maps
            .delete("kube-root-ca.crt", &DeleteParams::default())
            .await
            .expect("delete");
        let again = eventually("kube-root-ca.crt recreated", Duration::from_secs(30), || async {
            config_maps
                .get_opt("kube-root-ca.crt")
                .await
                .ok()
                .flatten()
                .filter(|cm| cm.metadata.uid.as_ref() != Some(&first_uid))
        })
        .await;
        assert_eq!(again.data.unwrap_or_default().get("ca.crt"), Some(&ca));
        config_maps
            .patch(
                "kube-root-ca.crt",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"ca.crt": "forged", "extra": "x"}})),
            )
            .await
            .expect("tamper");
        eventually("kube-root-ca.crt restored", Duration::from_secs(30), || async {
            let cm = config_maps.get_opt("kube-root-ca.crt").await.ok().flatten()?;
            let data = cm.data.unwrap_or_default();
            (data.get("ca.crt") == Some(&ca) && data.len() == 1).then_some(())
        })
        .await;

        // A missing ServiceAccount: kube's 403, with its words.
        let refused = pods
            .create(
                &PostParams::default(),
                &pod(json!({"metadata": {"name": "ghostly"}, "spec": {
                    "serviceAccountName": "ghost",
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})),
            )
            .await
            .map(|_| ())
            .map_err(api_status)
            .expect_err("no such ServiceAccount");
        assert_eq!(refused.code, 403, "{refused:?}");
        assert_eq!(refused.reason, "Forbidden");
        assert_eq!(
            refused.message,
            "pods \"ghostly\" is forbidden: error looking up service account team/ghost: serviceaccount \"ghost\" not found"
        );

        // An account of its own with pull secrets and no automount; a pod may still ask.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
        let robot: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": "robot"},
            "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "registry"}]}))
        .expect("sa");
        accounts
            .create(&PostParams::default(), &robot)
            .await
            .expect("sa created");
        let quiet = pods
            .create(
                &PostParams::default(),
                &pod(json!({"metadata": {"name": "quiet"}, "spec": {
                    "serviceAccountName": "robot",
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})),
            )
            .await
            .expect("created");
        let spec = serde_json::to_value(quiet.spec).expect("json");
        assert!(spec.get("volumes").is_none(), "{spec}");
        assert!(spec["containers"][0].get("volumeMounts").is_none(), "{spec}");
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "registry"}]));
        let asked = pods
            .create(
                &PostParams::default(),
                &pod(json!({"metadata": {"name": "asked"}, "spec": {
                    "serviceAccountName": "robot", "automountServiceAccountToken": true,
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})),
            )
            .await
            .expect("created");
        assert_eq!(
            asked.spec.and_then(|s| s.volumes).map(|v| v.len()),
            Some(1),
            "the pod's choice wins over its account's"
        );

        // A projected volume that would write outside itself is refused by field.
        let hostile = pods
            .create(
                &PostParams::default(),
                &pod(json!({"metadata": {"name": "hostile"}, "spec": {
                    "containers": [{"name": "c", "image": "busybox:1.36"}],
                    "volumes": [{"name": "v", "projected": {"defaultMode": 2048, "sources": [
                        {"configMap": {"name": "x", "items": [{"key": "k", "path": "../../etc/cron.d/x"}]}},
                        {"serviceAccountToken": {"path": "t", "expirationSeconds": 10}}]}}]}})),
            )
            .await
            .map(|_| ())
            .map_err(api_status)
            .expect_err("refused");
        assert_eq!(hostile.code, 422, "{hostile:?}");
        for field in [
            "spec.volumes[0].projected.defaultMode",
            "spec.volumes[0].projected.sources[0].configMap.items[0].path",
            "spec.volumes[0].projected.sources[1].serviceAccountToken.expirationSeconds",
        ] {
            assert!(hostile.message.contains(field), "{field}: {}", hostile.message);
        }
    });
}
