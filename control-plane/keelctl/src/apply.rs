//! `keelctl apply -f`: kubectl's client-side apply, so kubectl and keelctl can take turns on
//! the same objects.
//!
//! Each object records the configuration it was applied with in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, written as kubectl writes it
//! (compact JSON, keys sorted, Go's escaping, a trailing newline). An object that does not
//! exist is created with it; one that does is sent the three-way merge patch of
//! [`crate::merge_patch`], or nothing when that patch is empty (`unchanged`).
//!
//! The files were parsed and checked before (see [`crate::manifest`]); here each object is
//! applied in turn, and one the server refuses is reported (kubectl's `Error from server`
//! shape) without stopping the others, so the caller can exit 1 at the end.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{json, Value};

use crate::manifest::Manifest;
use crate::merge_patch;
use crate::objects::{ObjectsError, Session};
use crate::resources::{self, Resource};
use crate::table::printable;

/// Where client-side apply keeps the configuration it applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const MERGE_PATCH: &str = "application/merge-patch+json";

/// kubectl's `--dry-run`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DryRun {
    #[default]
    None,
    /// Nothing is sent but the reads: what would be created or patched is only printed.
    Client,
    /// Every request is sent with `dryRun=All`: the server checks and admits it, and stores
    /// nothing.
    Server,
}

impl DryRun {
    /// What kubectl appends to each line.
    fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// How `apply` was asked to apply.
pub struct ApplyOptions<'a> {
    /// The namespace of namespaced objects that name none: `-n`, else the kubeconfig's.
    pub namespace: &'a str,
    pub dry_run: DryRun,
}

/// `keelctl apply`: applies each object in order, writing kubectl's line for each
/// (`configmap/cm1 created`, `deployment.apps/web unchanged`) to `out` and each failure to
/// `err`. The number of objects that failed; an error only when writing fails.
pub async fn apply(
    session: &Session,
    manifests: Vec<Manifest>,
    options: &ApplyOptions<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<usize, ObjectsError> {
    let mut kinds = Kinds::default();
    let mut failed = 0;
    for manifest in manifests {
        match apply_one(session, &mut kinds, manifest, options).await {
            Ok(line) => write_line(out, &line)?,
            Err(line) => {
                failed += 1;
                write_line(err, &line)?;
            }
        }
    }
    Ok(failed)
}

fn write_line(to: &mut dyn Write, line: &str) -> Result<(), ObjectsError> {
    writeln!(to, "{line}")
        .and_then(|()| to.flush())
        .map_err(|e| ObjectsError::Client(format!("writing the output: {e}")))
}

/// The kinds of each group-version a manifest named, read from discovery once.
#[derive(Default)]
struct Kinds {
    served: HashMap<String, Vec<Resource>>,
}

impl Kinds {
    async fn find(
        &mut self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Resource>, kube::Error> {
        let Some((group, version)) = resources::split_api_version(api_version) else {
            return Ok(None);
        };
        if let Some(found) = self
            .served
            .get(api_version)
            .and_then(|served| resources::find_kind(served, group, version, kind))
        {
            return Ok(Some(found.clone()));
        }
        // Not asked yet, or a kind this group-version did not serve when asked: a custom
        // resource definition applied earlier in the same run may have added it since.
        let served = resources::discover_version(client, group, version).await?;
        let found = resources::find_kind(&served, group, version, kind).cloned();
        self.served.insert(api_version.to_owned(), served);
        Ok(found)
    }
}

/// Applies one object: kubectl's line for it, or kubectl's error line.
async fn apply_one(
    session: &Session,
    kinds: &mut Kinds,
    manifest: Manifest,
    options: &ApplyOptions<'_>,
) -> Result<String, String> {
    let name = manifest.name().to_owned();
    let file = printable(&manifest.file);
    let resource = match kinds
        .find(&session.client, manifest.api_version(), manifest.kind())
        .await
    {
        Ok(Some(resource)) => resource,
        Ok(None) => {
            return Err(format!(
                "error: resource mapping not found for name: \"{}\" namespace: \"{}\" from \
                 \"{file}\": no matches for kind \"{}\" in version \"{}\"\n\
                 ensure CRDs are installed first",
                printable(&name),
                printable(manifest.namespace().unwrap_or_default()),
                printable(manifest.kind()),
                printable(manifest.api_version()),
            ))
        }
        Err(e) => return Err(failure(e, &format!("unable to recognize \"{file}\""))),
    };
    let namespace = resource
        .namespaced
        .then(|| manifest.namespace().unwrap_or(options.namespace).to_owned());
    let mut object = manifest.object;
    set_namespace(&mut object, namespace.as_deref());
    let annotation = last_applied(&object).map_err(|e| {
        format!(
            "error: {}/{}: {e}",
            resource.name_prefix(),
            printable(&name)
        )
    })?;
    set_annotation(&mut object, &annotation);

    let shown = format!("{}/{}", resource.name_prefix(), printable(&name));
    let suffix = options.dry_run.suffix();
    let path = resource.path(namespace.as_deref(), Some(&name));
    let live: Value = match resources::get_json(&session.client, &path, resources::JSON).await {
        Ok(live) => live,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            if options.dry_run != DryRun::Client {
                let body = serde_json::to_vec(&object).map_err(|e| format!("error: {e}"))?;
                let collection = resource.path(namespace.as_deref(), None) + &query(options);
                resources::send_json(
                    &session.client,
                    http::Method::POST,
                    &collection,
                    resources::JSON,
                    body,
                )
                .await
                .map_err(|e| failure(e, &format!("error when creating \"{file}\"")))?;
            }
            return Ok(format!("{shown} created{suffix}"));
        }
        Err(e) => {
            return Err(failure(
                e,
                &format!("error when retrieving current configuration of {shown} from \"{file}\""),
            ))
        }
    };

    // What the last apply recorded. Unreadable (edited by hand, or not JSON) means unknown:
    // nothing is deleted, as for an object nobody applied.
    let original: Option<Value> = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok());
    let patch = merge_patch::three_way(original.as_ref(), &object, &live)
        .map_err(|e| format!("error: {shown} from \"{file}\": {e}"))?;
    if patch.is_empty() {
        return Ok(format!("{shown} unchanged{suffix}"));
    }
    if options.dry_run != DryRun::Client {
        let body = serde_json::to_vec(&patch).map_err(|e| format!("error: {e}"))?;
        resources::send_json(
            &session.client,
            http::Method::PATCH,
            &(path + &query(options)),
            MERGE_PATCH,
            body,
        )
        .await
        .map_err(|e| {
            failure(
                e,
                &format!("error when applying patch to {shown} from \"{file}\""),
            )
        })?;
    }
    Ok(format!("{shown} configured{suffix}"))
}

/// The query of a write: strict field validation, as kubectl asks by default, so a
/// misspelt field is refused rather than dropped; `dryRun=All` for `--dry-run=server`.
fn query(options: &ApplyOptions<'_>) -> String {
    let mut query = "?fieldValidation=Strict".to_owned();
    if options.dry_run == DryRun::Server {
        query.push_str("&dryRun=All");
    }
    query
}

/// kubectl's error line for a failed request: `Error from server (Reason): doing: message`.
fn failure(error: kube::Error, doing: &str) -> String {
    match error {
        kube::Error::Api(status) if status.reason.is_empty() => {
            format!("Error from server: {doing}: {}", printable(&status.message))
        }
        kube::Error::Api(status) => format!(
            "Error from server ({}): {doing}: {}",
            printable(&status.reason),
            printable(&status.message)
        ),
        other => format!("error: {doing}: {}", printable(&other.to_string())),
    }
}

/// Namespaced objects are applied in `namespace` (kubectl writes it into the object, and so
/// into the annotation); cluster-scoped ones have none, whatever the file says.
fn set_namespace(object: &mut Value, namespace: Option<&str>) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match namespace {
        Some(namespace) => {
            metadata.insert("namespace".into(), json!(namespace));
        }
        None => {
            metadata.remove("namespace");
        }
    }
}

/// The annotation's text for `object`, as kubectl's `GetModifiedConfiguration` writes it:
/// the object without the annotation itself (and with an `annotations` map, if only an empty
/// one), as Go's `json.Encoder` writes it — compact, map keys sorted, `<`, `>` and `&`
/// escaped, a newline at the end. The same text from the same file whichever tool applied
/// it, so the two see each other's applies as `unchanged`.
pub fn last_applied(object: &Value) -> Result<String, String> {
    let mut object = object.clone();
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err("metadata is not an object".into());
    };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if annotations.is_null() {
        *annotations = json!({});
    }
    let Some(annotations) = annotations.as_object_mut() else {
        return Err("metadata.annotations is not a map".into());
    };
    annotations.remove(LAST_APPLIED);
    // serde_json's maps are sorted (no `preserve_order` in this build; a test holds it).
    let text = serde_json::to_string(&object).map_err(|e| e.to_string())?;
    Ok(go_escape(&text) + "\n")
}

/// Go's JSON encoder escapes what could be taken for HTML, and the two line separators
/// JavaScript does not allow in strings. In JSON text these can only occur inside strings,
/// so they are replaced wherever they are.
fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out
}

fn set_annotation(object: &mut Value, text: &str) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(LAST_APPLIED.into(), json!(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_is_written_as_kubectl_writes_it() {
        let object = json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "cm1", "namespace": "default"},
            "data": {"z": "1", "a": "<b>&</b>", "sep": "\u{2028}"},
        });
        assert_eq!(
            last_applied(&object).expect("text"),
            "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"\\u003cb\\u003e\\u0026\\u003c/b\\u003e\",\
             \"sep\":\"\\u2028\",\"z\":\"1\"},\"kind\":\"ConfigMap\",\
             \"metadata\":{\"annotations\":{},\"name\":\"cm1\",\"namespace\":\"default\"}}\n"
        );
        // The previous annotation is not part of the next one; other annotations are.
        let annotated = json!({"metadata": {"name": "a", "annotations": {
            LAST_APPLIED: "{\"old\":1}\n", "team": "x"}}});
        assert_eq!(
            last_applied(&annotated).expect("text"),
            "{\"metadata\":{\"annotations\":{\"team\":\"x\"},\"name\":\"a\"}}\n"
        );
        let null_annotations = json!({"metadata": {"name": "a", "annotations": null}});
        assert_eq!(
            last_applied(&null_annotations).expect("text"),
            "{\"metadata\":{\"annotations\":{},\"name\":\"a\"}}\n"
        );
        // It reads back as the object it was made from.
        let text = last_applied(&object).expect("text");
        let back: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(back["data"], object["data"]);
        assert!(last_applied(&json!({"metadata": "x"})).is_err());
    }

    #[test]
    fn the_annotation_goes_into_the_object_and_namespaces_follow_the_scope() {
        let mut object = json!({"metadata": {"name": "a", "namespace": "ignored"}});
        set_namespace(&mut object, None);
        assert_eq!(object, json!({"metadata": {"name": "a"}}));
        set_namespace(&mut object, Some("shop"));
        set_annotation(&mut object, "{}\n");
        assert_eq!(
            object,
            json!({"metadata": {"name": "a", "namespace": "shop",
                                "annotations": {LAST_APPLIED: "{}\n"}}})
        );
    }

    #[test]
    fn a_second_apply_of_the_same_object_patches_nothing() {
        // The live object as the server would return it after the first apply.
        let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "a", "namespace": "default"},
                                "data": {"k": "v"}});
        let text = last_applied(&object).expect("text");
        set_annotation(&mut object, &text);
        let mut live = object.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let original: Value = serde_json::from_str(&text).expect("JSON");
        let patch = merge_patch::three_way(Some(&original), &object, &live).expect("patch");
        assert!(patch.is_empty(), "{patch:?}");
    }

    #[test]
    fn server_errors_take_kubectls_shape() {
        let status = kube::core::Status::failure("configmaps \"a\" is invalid\u{1b}[2J", "Invalid");
        let line = failure(
            kube::Error::Api(status.boxed()),
            "error when creating \"f.yaml\"",
        );
        assert_eq!(
            line,
            "Error from server (Invalid): error when creating \"f.yaml\": \
             configmaps \"a\" is invalid\\u{1b}[2J"
        );
        assert_eq!(DryRun::Server.suffix(), " (server dry run)");
        assert_eq!(
            query(&ApplyOptions {
                namespace: "default",
                dry_run: DryRun::Server
            }),
            "?fieldValidation=Strict&dryRun=All"
        );
    }
}
