//! The publisher's decisions, as kube's `publisher_test.go` cases have them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::*;
use crate::api_errors::{refused, refused_terminating};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn config_map(data: Option<&str>, description: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP_NAME.into()),
            namespace: Some("team".into()),
            resource_version: Some("42".into()),
            labels: Some(BTreeMap::from([("owner".into(), "ops".into())])),
            annotations: description.map(|d| {
                BTreeMap::from([
                    (DESCRIPTION_ANNOTATION.into(), d.into()),
                    ("note".into(), "kept".into()),
                ])
            }),
            ..Default::default()
        },
        data: data.map(|d| BTreeMap::from([(DATA_KEY.into(), d.into())])),
        ..Default::default()
    }
}

#[test]
fn a_namespace_without_the_config_map_gets_it_with_kubes_description() {
    let Action::Create(created) = decide(None, CA) else {
        panic!("a create");
    };
    assert_eq!(created.metadata.name.as_deref(), Some("kube-root-ca.crt"));
    assert_eq!(
        created.data,
        Some(BTreeMap::from([("ca.crt".to_string(), CA.to_string())]))
    );
    let annotations = created.metadata.annotations.expect("annotated");
    assert_eq!(
        annotations.get("kubernetes.io/description").map(String::as_str),
        Some(
            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
        )
    );
    assert!(created.metadata.namespace.is_none(), "the API names it");
}

#[test]
fn a_config_map_as_published_is_left_alone() {
    assert_eq!(
        decide(Some(&config_map(Some(CA), Some(DESCRIPTION))), CA),
        Action::Nothing
    );
    // Any description will do, as in kube: only a missing or empty one is put back.
    assert_eq!(
        decide(Some(&config_map(Some(CA), Some("ours"))), CA),
        Action::Nothing
    );
}

#[test]
fn changed_data_or_a_lost_description_is_put_back_keeping_the_rest() {
    for existing in [
        config_map(Some("not a CA"), Some(DESCRIPTION)),
        config_map(None, Some(DESCRIPTION)),
        config_map(Some(CA), None),
        config_map(Some(CA), Some("")),
    ] {
        let Action::Update(updated) = decide(Some(&existing), CA) else {
            panic!("an update of {existing:?}");
        };
        assert_eq!(
            updated.data,
            Some(BTreeMap::from([("ca.crt".to_string(), CA.to_string())]))
        );
        let annotations = updated.metadata.annotations.clone().expect("annotated");
        assert_eq!(
            annotations.get(DESCRIPTION_ANNOTATION).map(String::as_str),
            Some(DESCRIPTION)
        );
        assert_eq!(
            updated.metadata.resource_version.as_deref(),
            Some("42"),
            "a concurrent change must conflict"
        );
        assert_eq!(updated.metadata.labels, existing.metadata.labels);
        if existing.metadata.annotations.is_some() {
            assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
        }
    }
    // A key added beside ca.crt goes: the data is replaced whole.
    let mut extra = config_map(Some(CA), Some(DESCRIPTION));
    if let Some(data) = extra.data.as_mut() {
        data.insert("evil.crt".into(), "x".into());
    }
    let Action::Update(updated) = decide(Some(&extra), CA) else {
        panic!("an update");
    };
    assert_eq!(updated.data.map(|d| d.len()), Some(1));
}

#[test]
fn terminating_namespaces_are_not_active() {
    let namespace = |phase: Option<&str>, deleted: bool| Namespace {
        metadata: ObjectMeta {
            name: Some("team".into()),
            deletion_timestamp: deleted.then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        },
        status: phase.map(|p| NamespaceStatus {
            phase: Some(p.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(is_active(&namespace(None, false)));
    assert!(is_active(&namespace(Some("Active"), false)));
    assert!(!is_active(&namespace(Some("Terminating"), false)));
    assert!(!is_active(&namespace(None, true)));
    assert!(!is_active(&namespace(Some("Active"), true)));
}

#[test]
fn a_create_refused_for_a_gone_namespace_or_an_existing_map_is_not_retried() {
    assert!(create_is_settled(&refused(
        404,
        "NotFound",
        "namespaces \"gone\" not found"
    )));
    assert!(create_is_settled(&refused_terminating()));
    assert!(create_is_settled(&refused(
        409,
        "AlreadyExists",
        "configmaps \"kube-root-ca.crt\" already exists"
    )));
    for retried in [
        refused(403, "Forbidden", "configmaps is forbidden: exceeded quota"),
        refused(409, "Conflict", "the object has been modified"),
        refused(500, "InternalError", "storage: down"),
    ] {
        assert!(!create_is_settled(&retried), "{retried}");
    }
}
