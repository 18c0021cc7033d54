//! A namespace's deletion as Kubernetes does it, against the API server and the namespace
//! controller (the only controller `ApiServer::start` runs): the namespace turns
//! `Terminating` and refuses new content, a second delete is a conflict, plain updates cannot
//! drop its `kubernetes` finalizer, its content goes kind by kind, a pod's grace period and a
//! foreign finalizer hold it (and its conditions say so), and once nothing is left it goes and
//! its name can be taken again.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::api::{ApiServer, Backend};
use support::eventually;

fn api_status(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

fn condition(namespace: &Namespace, type_: &str) -> Option<(String, String, String)> {
    namespace
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[test]
fn a_deleted_namespace_terminates_empties_and_goes() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = server.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = "doomed";
        let created = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await
            .expect("create the namespace");
        assert_eq!(
            created.spec.and_then(|s| s.finalizers),
            Some(vec!["kubernetes".to_string()]),
            "a new namespace carries the namespace controller's finalizer"
        );

        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        for cm in [
            json!({"metadata": {"name": "plain"}, "data": {"a": "1"}}),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
        ] {
            config_maps
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(cm).expect("cm"),
                )
                .await
                .expect("create a configmap");
        }
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "web"},
                    "spec": {"ports": [{"port": 80}]}}))
                .expect("svc"),
            )
            .await
            .expect("create a service");
        // Bound to a node, so its deletion waits for that node's kubelet (the test plays it).
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bound"},
                "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "c", "image": "busybox"}]}}))
            .expect("pod"),
        )
        .await
        .expect("create a pod");

        namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .expect("delete the namespace");
        let terminating = namespaces.get(ns).await.expect("still there");
        assert!(terminating.metadata.deletion_timestamp.is_some());
        assert_eq!(
            terminating.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Terminating")
        );

        // NamespaceLifecycle: no new content in a namespace being deleted.
        let refused = config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "late"}})).expect("cm"),
            )
            .await
            .map(|_| ())
            .map_err(api_status)
            .expect_err("a terminating namespace takes no new content");
        assert_eq!(refused.code, 403, "{refused:?}");
        assert!(
            refused.message.contains("because it is being terminated"),
            "{}",
            refused.message
        );
        // A second delete is kube's conflict, with kube's words.
        let again = namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(api_status)
            .expect_err("deleting a terminating namespace again");
        assert_eq!(again.code, 409, "{again:?}");
        assert!(
            again
                .message
                .contains("The system is ensuring all content is removed from this namespace"),
            "{}",
            again.message
        );
        // Only `finalize` changes spec.finalizers: a plain update keeps them.
        let mut stripped = namespaces.get(ns).await.expect("get");
        stripped
            .spec
            .get_or_insert_with(Default::default)
            .finalizers = Some(Vec::new());
        let kept = namespaces
            .replace(ns, &PostParams::default(), &stripped)
            .await
            .expect("a plain update");
        assert_eq!(
            kept.spec.and_then(|s| s.finalizers),
            Some(vec!["kubernetes".to_string()])
        );
        // A finalizer no controller could ever match is refused by field.
        let mut hostile = namespaces.get(ns).await.expect("get");
        hostile.spec.get_or_insert_with(Default::default).finalizers =
            Some(vec!["kubernetes".into(), "-j ACCEPT\n".into()]);
        let invalid = namespaces
            .replace_subresource("finalize", ns, &PostParams::default(), &hostile)
            .await
            .map(|_| ())
            .map_err(api_status)
            .expect_err("a hostile finalizer name");
        assert_eq!(invalid.code, 422, "{invalid:?}");
        assert!(
            invalid.message.contains("spec.finalizers[1]"),
            "{}",
            invalid.message
        );

        // The controller deletes what it can; the pod and the held configmap remain, and the
        // namespace's conditions say why.
        let held = eventually(
            "the content is deleted",
            Duration::from_secs(30),
            || async {
                let plain = config_maps.get_opt("plain").await.expect("get cm");
                let service = services.get_opt("web").await.expect("get svc");
                let pod = pods.get_opt("bound").await.expect("get pod")?;
                let held = config_maps.get_opt("held").await.expect("get cm")?;
                (plain.is_none()
                    && service.is_none()
                    && pod.metadata.deletion_timestamp.is_some()
                    && held.metadata.deletion_timestamp.is_some())
                .then_some(held)
            },
        )
        .await;
        assert!(held.metadata.deletion_timestamp.is_some());
        let namespace = eventually(
            "conditions are written",
            Duration::from_secs(30),
            || async {
                let namespace = namespaces.get(ns).await.expect("get ns");
                condition(&namespace, "NamespaceFinalizersRemaining")
                    .is_some_and(|c| c.0 == "True")
                    .then_some(namespace)
            },
        )
        .await;
        let (status, reason, message) =
            condition(&namespace, "NamespaceFinalizersRemaining").expect("condition");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "SomeFinalizersRemain")
        );
        assert!(
            message.contains("example.com/hold in 1 resource instances"),
            "{message}"
        );
        let (status, reason, _) =
            condition(&namespace, "NamespaceContentRemaining").expect("condition");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "SomeResourcesRemain")
        );

        // The kubelet's part: the pod stopped; then the finalizer's owner lets go.
        pods.delete(
            "bound",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("finish the pod's deletion");
        config_maps
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .expect("release the configmap");

        eventually("the namespace is gone", Duration::from_secs(40), || async {
            namespaces
                .get_opt(ns)
                .await
                .expect("get ns")
                .is_none()
                .then_some(())
        })
        .await;
        // Its name is free again, for an empty, active namespace.
        let reborn = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await
            .expect("the name is free again");
        assert_eq!(
            reborn.status.and_then(|s| s.phase),
            Some("Active".to_string())
        );
        assert!(config_maps.get_opt("held").await.expect("get").is_none());
    });
}
