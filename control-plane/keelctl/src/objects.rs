//! `keelctl get | delete | logs`: kubectl's verbs for a host that has no kubectl, over the
//! same kube-rs client the node daemon uses.
//!
//! Tables are the API server's own (`as=Table`, the server-side printing kubectl asks for),
//! so there is no second implementation of columns here: this module only lays out what the
//! server sent, picks the columns `-o wide` adds, and puts the namespace first for `-A`.

use std::io::Write;
use std::path::Path;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams};
use serde_json::{json, Value};

use crate::resources::{self, Resource};
use crate::table::{printable, Table};

/// The Accept header of kubectl's `get`: a server-side Table, or plain JSON from a server
/// that has none.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("{0}")]
    Resolve(#[from] resources::ResolveError),
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(String),
    /// kubectl's shape: `Error from server (NotFound): pods "x" not found`.
    #[error("Error from server ({reason}): {message}")]
    Server { reason: String, message: String },
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    Usage(String),
}

impl From<kube::Error> for ObjectsError {
    fn from(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => ObjectsError::Server {
                reason: status.reason.clone(),
                message: printable(&status.message),
            },
            other => ObjectsError::Client(other.to_string()),
        }
    }
}

/// A client of the API and the namespace its kubeconfig's context names.
pub struct Session {
    pub client: kube::Client,
    pub default_namespace: String,
    /// What the kubeconfig said: the server and the CA, for kubeconfigs made from this one.
    pub config: kube::Config,
}

impl Session {
    /// From `kubeconfig`, or as kubectl finds one ($KUBECONFIG, ~/.kube/config).
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Session, ObjectsError> {
        let failed = |e: &dyn std::fmt::Display| ObjectsError::Kubeconfig(e.to_string());
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| failed(&e))?;
                kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| failed(&e))?
            }
            None => kube::Config::infer().await.map_err(|e| failed(&e))?,
        };
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config.clone()).map_err(|e| failed(&e))?;
        Ok(Session {
            client,
            default_namespace,
            config,
        })
    }

    /// The API server's URL, as the kubeconfig names it.
    pub fn server(&self) -> String {
        self.config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned()
    }

    /// The certificate authorities the kubeconfig trusts, as PEM; None when it names none.
    pub fn ca_pem(&self) -> Option<String> {
        use base64::Engine as _;
        let certificates = self.config.root_cert.as_ref()?;
        let mut pem = String::new();
        for der in certificates {
            let encoded = base64::engine::general_purpose::STANDARD.encode(der);
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        (!pem.is_empty()).then_some(pem)
    }

    /// `namespace` when given (`-n`), else the kubeconfig context's.
    pub fn namespace(&self, namespace: Option<&str>) -> String {
        namespace.map_or_else(|| self.default_namespace.clone(), str::to_owned)
    }

    /// The kind `input` names, through the server's discovery.
    pub(crate) async fn resource(&self, input: &str) -> Result<Resource, ObjectsError> {
        let served = resources::discover(&self.client).await?;
        Ok(resources::resolve(&served, input)?.clone())
    }
}

/// kubectl's `KIND/NAME` form (`po/web`, `deployment.apps/web`): the kind and the names to
/// use; other arguments are returned as they are.
pub fn split_kind_name(resource: &str, names: &[String]) -> (String, Vec<String>) {
    match resource.split_once('/') {
        Some((kind, name)) if names.is_empty() && !kind.is_empty() && !name.is_empty() => {
            (kind.to_owned(), vec![name.to_owned()])
        }
        _ => (resource.to_owned(), names.to_vec()),
    }
}

/// How `get` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Name,
    Json,
    Yaml,
}

/// What `get` was asked.
pub struct GetRequest<'a> {
    pub resource: &'a str,
    pub names: &'a [String],
    /// `None`: every namespace (`-A`).
    pub namespace: Option<&'a str>,
    pub selector: Option<&'a str>,
    pub format: Format,
}

/// `keelctl get`: the text to print on standard output, and kubectl's "No resources found"
/// line for standard error when nothing matched.
pub async fn get(
    session: &Session,
    request: &GetRequest<'_>,
) -> Result<(String, Option<String>), ObjectsError> {
    let resource = session.resource(request.resource).await?;
    let namespace = request.namespace;
    let query = request
        .selector
        .map(|s| format!("?labelSelector={}", resources::encode(s)))
        .unwrap_or_default();
    let targets: Vec<String> = if request.names.is_empty() {
        vec![resource.path(namespace, None) + &query]
    } else {
        if namespace.is_none() && resource.namespaced {
            return Err(ObjectsError::Usage(
                "a resource cannot be retrieved by name across all namespaces".into(),
            ));
        }
        request
            .names
            .iter()
            .map(|name| resource.path(namespace, Some(name)))
            .collect()
    };
    let table = matches!(request.format, Format::Table | Format::Wide);
    let mut answers = Vec::new();
    for path in &targets {
        answers.push(fetch(&session.client, path, table).await?);
    }
    let all_namespaces = namespace.is_none() && resource.namespaced;
    let text = match request.format {
        Format::Table | Format::Wide => {
            render_tables(&answers, request.format == Format::Wide, all_namespaces)
        }
        Format::Name => render_names(&resource, &objects_of(&answers)),
        Format::Json => render_json(&objects_of(&answers), !request.names.is_empty())?,
        Format::Yaml => {
            let value = as_one_or_list(&objects_of(&answers), !request.names.is_empty());
            serde_yaml_ng::to_string(&value).map_err(|e| ObjectsError::Client(e.to_string()))?
        }
    };
    let nothing = text.is_empty().then(|| match namespace {
        Some(ns) if resource.namespaced => format!("No resources found in {ns} namespace."),
        _ => "No resources found".to_owned(),
    });
    Ok((text, nothing))
}

async fn fetch(client: &kube::Client, path: &str, table: bool) -> Result<Value, ObjectsError> {
    let accept = if table { TABLE_ACCEPT } else { resources::JSON };
    Ok(resources::get_json(client, path, accept).await?)
}

/// The objects of each answer: a list's items, or the object itself.
fn objects_of(answers: &[Value]) -> Vec<Value> {
    let mut objects = Vec::new();
    for answer in answers {
        match answer.get("items").and_then(Value::as_array) {
            Some(items) => objects.extend(items.iter().cloned()),
            None => objects.push(answer.clone()),
        }
    }
    objects
}

/// One object alone when it was asked by a single name, otherwise kubectl's `List`.
fn as_one_or_list(objects: &[Value], by_name: bool) -> Value {
    if by_name && objects.len() == 1 {
        return objects[0].clone();
    }
    json!({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}})
}

fn render_json(objects: &[Value], by_name: bool) -> Result<String, ObjectsError> {
    serde_json::to_string_pretty(&as_one_or_list(objects, by_name))
        .map(|text| text + "\n")
        .map_err(|e| ObjectsError::Client(e.to_string()))
}

/// `-o name`: `pod/web`, `deployment.apps/web`.
pub fn render_names(resource: &Resource, objects: &[Value]) -> String {
    let prefix = resource.name_prefix();
    objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .map(|name| format!("{prefix}/{}\n", printable(name)))
        .collect()
}

/// A cell as kubectl prints it: strings as they are, numbers, `<none>` for null.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "<none>".to_owned(),
        // Table::row escapes what a terminal would act on.
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Server-side Tables laid out as one: the columns of priority 0 (all with `wide`), the
/// namespace first across namespaces. Empty when there are no rows.
pub fn render_tables(tables: &[Value], wide: bool, all_namespaces: bool) -> String {
    let Some(first) = tables.first() else {
        return String::new();
    };
    let columns: Vec<(usize, String)> = first["columnDefinitions"]
        .as_array()
        .map(|defs| {
            defs.iter()
                .enumerate()
                .filter(|(_, d)| wide || d["priority"].as_i64().unwrap_or(0) == 0)
                .map(|(i, d)| (i, d["name"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut headers: Vec<&str> = Vec::new();
    if all_namespaces {
        headers.push("namespace");
    }
    headers.extend(columns.iter().map(|(_, name)| name.as_str()));
    let mut table = Table::new(&headers);
    let mut rows = 0;
    for answer in tables {
        for row in answer["rows"].as_array().into_iter().flatten() {
            let cells = row["cells"].as_array().cloned().unwrap_or_default();
            let mut shown = Vec::new();
            if all_namespaces {
                shown.push(cell(
                    row.pointer("/object/metadata/namespace")
                        .unwrap_or(&Value::Null),
                ));
            }
            shown.extend(
                columns
                    .iter()
                    .map(|(i, _)| cells.get(*i).map(cell).unwrap_or_default()),
            );
            table.row(shown);
            rows += 1;
        }
    }
    if rows == 0 {
        return String::new();
    }
    table.render()
}

/// `keelctl delete`: kubectl's `pod "web" deleted` line per object.
pub async fn delete(
    session: &Session,
    resource: &str,
    names: &[String],
    namespace: &str,
) -> Result<String, ObjectsError> {
    if names.is_empty() {
        return Err(ObjectsError::Usage(
            "resource(s) were provided, but no name was specified".into(),
        ));
    }
    let resource = session.resource(resource).await?;
    let api_resource = kube::api::ApiResource {
        group: resource.group.clone(),
        version: resource.version.clone(),
        api_version: if resource.group.is_empty() {
            resource.version.clone()
        } else {
            format!("{}/{}", resource.group, resource.version)
        },
        kind: resource.kind.clone(),
        plural: resource.name.clone(),
    };
    let api: Api<kube::api::DynamicObject> = if resource.namespaced {
        Api::namespaced_with(session.client.clone(), namespace, &api_resource)
    } else {
        Api::all_with(session.client.clone(), &api_resource)
    };
    let mut out = String::new();
    for name in names {
        api.delete(name, &DeleteParams::default()).await?;
        out.push_str(&format!(
            "{} \"{}\" deleted\n",
            resource.name_prefix(),
            printable(name)
        ));
    }
    Ok(out)
}

/// What `logs` was asked.
pub struct LogsRequest<'a> {
    pub pod: &'a str,
    pub namespace: &'a str,
    pub container: Option<&'a str>,
    pub previous: bool,
    pub tail: Option<i64>,
    pub follow: bool,
}

/// `keelctl logs`: the container's log, through the API server's `pods/log`, written to
/// `out` as it comes (line by line with `--follow`).
pub async fn logs(
    session: &Session,
    request: &LogsRequest<'_>,
    out: &mut (dyn Write + Send),
) -> Result<(), ObjectsError> {
    let pods: Api<Pod> = Api::namespaced(session.client.clone(), request.namespace);
    let params = LogParams {
        container: request.container.map(str::to_owned),
        previous: request.previous,
        tail_lines: request.tail,
        follow: request.follow,
        ..LogParams::default()
    };
    let write = |out: &mut (dyn Write + Send), bytes: &[u8]| {
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| ObjectsError::Client(format!("writing the log: {e}")))
    };
    if !request.follow {
        let text = pods.logs(request.pod, &params).await?;
        return write(out, text.as_bytes());
    }
    let mut lines = pods.log_stream(request.pod, &params).await?.lines();
    while let Some(line) = lines
        .try_next()
        .await
        .map_err(|e| ObjectsError::Client(format!("reading the log: {e}")))?
    {
        write(out, format!("{line}\n").as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "string", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Node", "type": "string", "priority": 1},
            ],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 0, "5m", "10.200.0.5", "n0"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default"}}},
                {"cells": ["evil\u{1b}[2J\nforged", "0/1", "Pending", 0, "1s", null, null],
                 "object": {"metadata": {"name": "evil", "namespace": "team-a"}}},
            ]
        })
    }

    #[test]
    fn tables_show_kubectls_columns_and_escape_what_the_server_sent() {
        let text = render_tables(&[pods_table()], false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[0].ends_with("AGE"), "{text}");
        assert!(!lines[0].contains("NODE"), "wide columns hidden: {text}");
        assert!(lines[2].contains("evil\\u{1b}[2J\\nforged"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no raw escape reaches the terminal"
        );

        let wide = render_tables(&[pods_table()], true, true);
        let header = wide.lines().next().unwrap_or_default();
        assert!(header.starts_with("NAMESPACE"), "{wide}");
        assert!(header.contains("NODE"), "{wide}");
        assert!(wide.contains("<none>"), "a null cell: {wide}");
        assert!(
            wide.lines()
                .nth(2)
                .unwrap_or_default()
                .starts_with("team-a"),
            "{wide}"
        );
    }

    #[test]
    fn kind_slash_name_splits_as_kubectl_does() {
        assert_eq!(
            split_kind_name("po/web", &[]),
            ("po".into(), vec!["web".into()])
        );
        let names = vec!["a".to_string()];
        // With names given, or with an empty side, the argument stays whole (and fails to
        // resolve, naming itself).
        assert_eq!(
            split_kind_name("po/web", &names),
            ("po/web".into(), names.clone())
        );
        assert_eq!(split_kind_name("po/", &[]), ("po/".into(), vec![]));
        assert_eq!(split_kind_name("/web", &[]), ("/web".into(), vec![]));
    }

    #[test]
    fn no_rows_print_nothing() {
        let mut empty = pods_table();
        empty["rows"] = json!([]);
        assert_eq!(render_tables(&[empty], false, false), "");
        assert_eq!(render_tables(&[], false, false), "");
        // A malformed answer prints nothing rather than panicking.
        assert_eq!(render_tables(&[json!({"rows": "x"})], false, false), "");
    }

    #[test]
    fn names_json_and_lists_take_kubectls_shapes() {
        let deploy = Resource {
            group: "apps".into(),
            version: "v1".into(),
            name: "deployments".into(),
            singular: "deployment".into(),
            kind: "Deployment".into(),
            namespaced: true,
            short_names: vec!["deploy".into()],
            verbs: vec![],
        };
        let objects = vec![
            json!({"metadata": {"name": "web"}}),
            json!({"metadata": {"name": "a\nb"}}),
        ];
        assert_eq!(
            render_names(&deploy, &objects),
            "deployment.apps/web\ndeployment.apps/a\\nb\n"
        );
        let list: Value =
            serde_json::from_str(&render_json(&objects, false).expect("json")).expect("valid JSON");
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
        let one: Value = serde_json::from_str(&render_json(&objects[..1], true).expect("json"))
            .expect("valid JSON");
        assert_eq!(one["metadata"]["name"], "web");
        assert_eq!(
            resources::encode("app=web,tier!=db"),
            "app%3Dweb%2Ctier%21%3Ddb"
        );
    }
}
