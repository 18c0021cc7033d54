//! `deployment_util_test.go`'s template cases (`TestEqualIgnoreHash`, `TestFindNewReplicaSet`,
//! `TestFindOldReplicaSets`), and the template hash and new ReplicaSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::super::template;
use super::super::util;
use super::{at, labels, new_deployment, new_replica_set, refs};

fn pod_template(
    name: &str,
    node: &str,
    annotations: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(labels(annotations)),
            labels: Some(labels(pairs)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            ..PodSpec::default()
        }),
    }
}

// TestEqualIgnoreHash
#[test]
fn templates_equal_but_for_the_hash_as_kube() {
    let hash = util::POD_TEMPLATE_HASH_LABEL;
    let t = pod_template;
    let cases = [
        (
            "same spec, same labels",
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-1"), ("something", "else")],
            ),
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-1"), ("something", "else")],
            ),
            true,
        ),
        (
            "only hash differs",
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-1"), ("something", "else")],
            ),
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-2"), ("something", "else")],
            ),
            true,
        ),
        (
            "former has no hash",
            t("foo", "foo-node", &[], &[("something", "else")]),
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-2"), ("something", "else")],
            ),
            true,
        ),
        (
            "labels differ, former without hash",
            t("foo", "foo-node", &[], &[("something", "else")]),
            t("foo", "foo-node", &[], &[(hash, "value-2")]),
            false,
        ),
        (
            "labels differ, latter without hash",
            t("foo", "foo-node", &[], &[(hash, "value-1")]),
            t("foo", "foo-node", &[], &[("something", "else")]),
            false,
        ),
        (
            "labels differ, same hash",
            t("foo", "foo-node", &[], &[(hash, "value-1")]),
            t(
                "foo",
                "foo-node",
                &[],
                &[(hash, "value-1"), ("something", "else")],
            ),
            false,
        ),
        (
            "different spec, same labels",
            t(
                "foo",
                "foo-node",
                &[("former", "value")],
                &[(hash, "value-1"), ("something", "else")],
            ),
            t(
                "foo",
                "foo-node",
                &[("latter", "value")],
                &[(hash, "value-1"), ("something", "else")],
            ),
            false,
        ),
        (
            "different spec and hash",
            t(
                "foo-1",
                "foo-node",
                &[],
                &[(hash, "value-1"), ("something", "else")],
            ),
            t(
                "foo-2",
                "foo-node",
                &[],
                &[(hash, "value-2"), ("something", "else")],
            ),
            false,
        ),
        (
            "different spec, former without hash",
            t("foo-1", "foo-node-1", &[], &[("something", "else")]),
            t(
                "foo-2",
                "foo-node-2",
                &[],
                &[(hash, "value-2"), ("something", "else")],
            ),
            false,
        ),
        (
            "different spec, different labels",
            t("foo", "foo-node-1", &[], &[("something", "else")]),
            t("foo", "foo-node-2", &[], &[("nothing", "else")]),
            false,
        ),
    ];
    for (name, former, latter, expected) in cases {
        assert_eq!(
            template::equal_ignore_hash(&former, &latter),
            expected,
            "{name}"
        );
        assert_eq!(
            template::equal_ignore_hash(&latter, &former),
            expected,
            "{name} (reversed)"
        );
    }
    // Go's semantic equality: no map and an empty one are the same.
    let mut bare = t("foo", "n", &[], &[("a", "b")]);
    if let Some(meta) = bare.metadata.as_mut() {
        meta.annotations = None;
    }
    assert!(template::equal_ignore_hash(
        &bare,
        &t("foo", "n", &[], &[("a", "b")])
    ));
}

fn generated(name: &str, container: &str, hash: &str, created: &str) -> ReplicaSet {
    let mut d = new_deployment(name, 1, None, None, None, &[("name", "nginx")]);
    if let Some(spec) = d.spec.template.spec.as_mut() {
        spec.containers[0].name = container.to_string();
    }
    let mut rs = new_replica_set(&d, &format!("{name}-{hash}"), 0);
    rs.metadata.creation_timestamp = Some(Time(at(created)));
    rs.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(util::POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    rs
}

// TestFindNewReplicaSet, TestFindOldReplicaSets
#[test]
fn new_and_old_replica_sets_as_kube() {
    let d = new_deployment("nginx", 1, None, None, None, &[("name", "nginx")]);
    let mut new_rs = generated("nginx", "", "hash", "2024-01-01T00:01:00Z");
    new_rs.spec.replicas = Some(1);
    let new_dup = generated("nginx", "", "different-hash", "2024-01-01T00:00:00Z");
    let old = generated("nginx", "nginx-old-1", "old", "2023-12-31T23:59:00Z");
    let name = |rs: Option<&ReplicaSet>| rs.and_then(|rs| rs.metadata.name.clone());
    let names = |rss: Vec<&ReplicaSet>| -> Vec<String> {
        rss.into_iter()
            .filter_map(|rs| rs.metadata.name.clone())
            .collect()
    };

    let list = [new_rs.clone(), old.clone()];
    assert_eq!(
        name(template::find_new_replica_set(&d, &refs(&list))),
        new_rs.metadata.name
    );
    let (required, all) = template::find_old_replica_sets(&d, &refs(&list));
    assert_eq!(names(all), vec!["nginx-old".to_string()]);
    assert!(required.is_empty(), "the old one has no replicas");

    // The oldest of two with the template is the new one; the other is old.
    let list = [new_rs.clone(), old.clone(), new_dup.clone()];
    assert_eq!(
        name(template::find_new_replica_set(&d, &refs(&list))),
        new_dup.metadata.name
    );
    let (required, all) = template::find_old_replica_sets(&d, &refs(&list));
    assert_eq!(
        names(all),
        vec!["nginx-old".to_string(), "nginx-hash".to_string()]
    );
    assert_eq!(names(required), vec!["nginx-hash".to_string()]);

    let list = [old.clone()];
    assert_eq!(name(template::find_new_replica_set(&d, &refs(&list))), None);
    let (_, all) = template::find_old_replica_sets(&d, &refs(&list));
    assert_eq!(names(all), vec!["nginx-old".to_string()]);

    let list = [new_rs];
    let (_, all) = template::find_old_replica_sets(&d, &refs(&list));
    assert!(all.is_empty());
}

#[test]
fn template_hash_uses_kubes_alphabet_and_collision_count() {
    // Each decimal digit maps to one letter: '0' is byte 48, 48 % 27 = 21 → '4'.
    assert_eq!(template::safe_encode("0123456789"), "456789bcdf");
    let d = new_deployment("web", 3, None, None, None, &[("app", "web")]);
    let hash = template::compute_hash(&d.spec.template, None);
    assert!(hash.chars().all(|c| "456789bcdf".contains(c)), "{hash}");
    assert_eq!(hash, template::compute_hash(&d.spec.template, None));
    assert_ne!(hash, template::compute_hash(&d.spec.template, Some(1)));
    assert_ne!(
        template::compute_hash(&d.spec.template, Some(1)),
        template::compute_hash(&d.spec.template, Some(2))
    );
    // The hash label does not change the hash.
    let rs = template::new_replica_set(&d, &hash);
    let rs_template = rs.spec.template.clone().unwrap_or_default();
    assert_eq!(template::compute_hash(&rs_template, None), hash);
    assert_eq!(rs.metadata.name, Some(format!("web-{hash}")));
    let with_hash = labels(&[
        ("app", "web"),
        (util::POD_TEMPLATE_HASH_LABEL, hash.as_str()),
    ]);
    assert_eq!(rs.metadata.labels.as_ref(), Some(&with_hash));
    assert_eq!(rs.spec.selector.match_labels.as_ref(), Some(&with_hash));
    let template_labels = rs_template.metadata.and_then(|meta| meta.labels);
    assert_eq!(template_labels.as_ref(), Some(&with_hash));
    let owner = rs.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].controller, Some(true));
    assert_eq!(owner[0].kind, "Deployment");
    assert!(template::equal_ignore_hash(
        &d.spec.template,
        &rs.spec.template.unwrap_or_default()
    ));
}
