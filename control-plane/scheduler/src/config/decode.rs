//! Phase one: the document decoded into the schema of kube's `KubeSchedulerConfiguration` v1,
//! strictly (unknown fields and wrong types refused, each at its path), nothing validated yet.

use super::args::{decode_args, PluginArgs};
use super::error::{check, ConfigError, FieldError};
use super::node::{index, object, type_meta, Fields, IntType, Node, API_VERSION};

pub(crate) const KIND: &str = "KubeSchedulerConfiguration";

/// The fields of `KubeSchedulerConfiguration` that keel reads.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) parallelism: Option<i64>,
    pub(crate) percentage_of_nodes_to_score: Option<i64>,
    pub(crate) pod_initial_backoff_seconds: Option<i64>,
    pub(crate) pod_max_backoff_seconds: Option<i64>,
    pub(crate) profiles: Vec<RawProfile>,
}

#[derive(Debug, Default)]
pub(crate) struct RawProfile {
    /// `profiles[i]`.
    pub(crate) path: String,
    pub(crate) scheduler_name: Option<String>,
    pub(crate) percentage_of_nodes_to_score: Option<i64>,
    pub(crate) plugins: RawPlugins,
    pub(crate) plugin_config: Vec<RawPluginConfig>,
}

/// The extension points keel builds; `plugins` of a profile.
#[derive(Debug, Default)]
pub(crate) struct RawPlugins {
    pub(crate) multi_point: PluginSet,
    pub(crate) pre_filter: PluginSet,
    pub(crate) filter: PluginSet,
    pub(crate) pre_score: PluginSet,
    pub(crate) score: PluginSet,
}

#[derive(Debug, Default)]
pub(crate) struct PluginSet {
    pub(crate) enabled: Vec<RawPlugin>,
    pub(crate) disabled: Vec<RawPlugin>,
}

#[derive(Clone, Debug)]
pub(crate) struct RawPlugin {
    /// The entry's path, `profiles[0].plugins.score.enabled[2]`.
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) weight: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct RawPluginConfig {
    /// `profiles[i].pluginConfig[j]`.
    pub(crate) path: String,
    pub(crate) name: String,
    /// Decoded with kube's defaults applied; `None` when `args` is absent.
    pub(crate) args: Option<PluginArgs>,
}

/// The top-level fields: keel's, then kube's that keel accepts or refuses.
const CONFIG_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "parallelism",
    "percentageOfNodesToScore",
    "podInitialBackoffSeconds",
    "podMaxBackoffSeconds",
    "profiles",
    "clientConnection",
    "leaderElection",
    "extenders",
    "enableProfiling",
    "enableContentionProfiling",
    "delayCacheUntilActive",
    "percentageOfPlacementsToScore",
];

const PROFILE_FIELDS: &[&str] = &[
    "schedulerName",
    "percentageOfNodesToScore",
    "plugins",
    "pluginConfig",
    "percentageOfPlacementsToScore",
];

/// kube's extension points keel has no equivalent of; accepted only empty.
const OTHER_POINTS: &[&str] = &[
    "preEnqueue",
    "queueSort",
    "postFilter",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
    "placementGenerate",
    "placementScore",
    "placementFeasible",
    "podGroupPostFilter",
];

const PLUGINS_FIELDS: &[&str] = &[
    "multiPoint",
    "preFilter",
    "filter",
    "preScore",
    "score",
    "preEnqueue",
    "queueSort",
    "postFilter",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
    "placementGenerate",
    "placementScore",
    "placementFeasible",
    "podGroupPostFilter",
];

/// `clientConnection` (component-base's `ClientConnectionConfiguration`).
const CLIENT_CONNECTION_FIELDS: &[&str] = &[
    "kubeconfig",
    "acceptContentTypes",
    "contentType",
    "qps",
    "burst",
];

/// Decodes the document. `apiVersion` and `kind` are checked first and alone: a document of
/// another kind is not read further, as kube's decoder would not know its schema.
pub(crate) fn decode(root: &Node) -> Result<RawConfig, ConfigError> {
    let mut unknown = Vec::new();
    let fields = match root {
        Node::Map(_) => object(
            root,
            "",
            "KubeSchedulerConfiguration",
            CONFIG_FIELDS,
            &mut unknown,
        ),
        _ => None,
    };
    let Some(fields) = fields else {
        return Err(ConfigError::NotAnObject {
            found: describe(root),
        });
    };
    let mut errors = Vec::new();
    type_meta(&fields, API_VERSION, KIND, &mut errors);
    check(errors)?;

    // The unknown fields count only now that the kind is known to be this one.
    let mut errors = unknown;
    let mut config = RawConfig {
        parallelism: fields.int("parallelism", IntType::I32, &mut errors),
        percentage_of_nodes_to_score: fields.int(
            "percentageOfNodesToScore",
            IntType::I32,
            &mut errors,
        ),
        pod_initial_backoff_seconds: fields.int(
            "podInitialBackoffSeconds",
            IntType::I64,
            &mut errors,
        ),
        pod_max_backoff_seconds: fields.int("podMaxBackoffSeconds", IntType::I64, &mut errors),
        ..RawConfig::default()
    };
    if let Some(profiles) = fields.list("profiles", "[]KubeSchedulerProfile", &mut errors) {
        let path = fields.at("profiles");
        for (i, profile) in profiles.iter().enumerate() {
            if let Some(profile) = decode_profile(profile, &index(&path, i), &mut errors) {
                config.profiles.push(profile);
            }
        }
    }
    client_connection(&fields, &mut errors);
    // keel's scheduler is handed its API client by the process that runs it, so
    // clientConnection (kubeconfig, QPS, content type) has nothing to configure: it is read
    // for its shape and otherwise ignored. The fields below would change what the scheduler
    // does, and keel does not do it: they are refused unless they ask for nothing.
    fields.forbid_unless_inert(
        "leaderElection",
        "keel's scheduler does not implement leader election settings",
        &mut errors,
    );
    fields.forbid_unless_inert(
        "extenders",
        "keel's scheduler does not call scheduler extenders",
        &mut errors,
    );
    fields.forbid_unless_inert(
        "enableProfiling",
        "keel's scheduler serves no profiling endpoints",
        &mut errors,
    );
    fields.forbid_unless_inert(
        "enableContentionProfiling",
        "keel's scheduler serves no profiling endpoints",
        &mut errors,
    );
    fields.forbid_unless_inert(
        "delayCacheUntilActive",
        "keel's scheduler does not implement leader election settings",
        &mut errors,
    );
    fields.forbid_unless_inert(
        "percentageOfPlacementsToScore",
        "keel's scheduler does not schedule pod groups",
        &mut errors,
    );
    check(errors)?;
    Ok(config)
}

fn client_connection(fields: &Fields<'_>, errors: &mut Vec<FieldError>) {
    let Some(node) = fields.get("clientConnection") else {
        return;
    };
    let path = fields.at("clientConnection");
    if let Some(connection) = object(
        node,
        &path,
        "ClientConnectionConfiguration",
        CLIENT_CONNECTION_FIELDS,
        errors,
    ) {
        connection.string("kubeconfig", errors);
        connection.string("acceptContentTypes", errors);
        connection.string("contentType", errors);
        connection.float("qps", errors);
        connection.int("burst", IntType::I32, errors);
    }
}

fn decode_profile(node: &Node, path: &str, errors: &mut Vec<FieldError>) -> Option<RawProfile> {
    let fields = object(node, path, "KubeSchedulerProfile", PROFILE_FIELDS, errors)?;
    let mut profile = RawProfile {
        path: path.to_owned(),
        scheduler_name: fields.string("schedulerName", errors),
        percentage_of_nodes_to_score: fields.int("percentageOfNodesToScore", IntType::I32, errors),
        ..RawProfile::default()
    };
    fields.forbid_unless_inert(
        "percentageOfPlacementsToScore",
        "keel's scheduler does not schedule pod groups",
        errors,
    );
    if let Some(plugins) = fields.get("plugins") {
        profile.plugins = decode_plugins(plugins, &fields.at("plugins"), errors);
    }
    if let Some(configs) = fields.list("pluginConfig", "[]PluginConfig", errors) {
        let path = fields.at("pluginConfig");
        for (i, config) in configs.iter().enumerate() {
            if let Some(config) = decode_plugin_config(config, &index(&path, i), errors) {
                profile.plugin_config.push(config);
            }
        }
    }
    Some(profile)
}

fn decode_plugins(node: &Node, path: &str, errors: &mut Vec<FieldError>) -> RawPlugins {
    let mut plugins = RawPlugins::default();
    let Some(fields) = object(node, path, "Plugins", PLUGINS_FIELDS, errors) else {
        return plugins;
    };
    plugins.multi_point = plugin_set(&fields, "multiPoint", errors);
    plugins.pre_filter = plugin_set(&fields, "preFilter", errors);
    plugins.filter = plugin_set(&fields, "filter", errors);
    plugins.pre_score = plugin_set(&fields, "preScore", errors);
    plugins.score = plugin_set(&fields, "score", errors);
    for point in OTHER_POINTS {
        let set = plugin_set(&fields, point, errors);
        if !set.enabled.is_empty() || !set.disabled.is_empty() {
            errors.push(FieldError::forbidden(
                fields.at(point),
                format!("keel's scheduler has no {point} extension point"),
            ));
        }
    }
    plugins
}

fn plugin_set(fields: &Fields<'_>, key: &str, errors: &mut Vec<FieldError>) -> PluginSet {
    let mut set = PluginSet::default();
    let Some(node) = fields.get(key) else {
        return set;
    };
    let path = fields.at(key);
    let Some(set_fields) = object(node, &path, "PluginSet", &["enabled", "disabled"], errors)
    else {
        return set;
    };
    set.enabled = plugin_list(&set_fields, "enabled", errors);
    set.disabled = plugin_list(&set_fields, "disabled", errors);
    set
}

fn plugin_list(fields: &Fields<'_>, key: &str, errors: &mut Vec<FieldError>) -> Vec<RawPlugin> {
    let Some(items) = fields.list(key, "[]Plugin", errors) else {
        return Vec::new();
    };
    let path = fields.at(key);
    let mut plugins = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = index(&path, i);
        let Some(plugin) = object(item, &path, "Plugin", &["name", "weight"], errors) else {
            continue;
        };
        plugins.push(RawPlugin {
            name: plugin.string("name", errors).unwrap_or_default(),
            weight: plugin.int("weight", IntType::I32, errors),
            path,
        });
    }
    plugins
}

fn decode_plugin_config(
    node: &Node,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<RawPluginConfig> {
    let fields = object(node, path, "PluginConfig", &["name", "args"], errors)?;
    let name = fields.string("name", errors).unwrap_or_default();
    // Which args type applies depends on the name: an unknown name is refused here, since keel
    // could not tell its args' schema (kube would keep them undecoded, and unused).
    let args = match decode_args(&name, fields.get("args"), &fields.at("args"), errors) {
        Ok(args) => args,
        Err(supported) => {
            errors.push(FieldError::not_supported(
                fields.at("name"),
                &name,
                &supported,
            ));
            None
        }
    };
    Some(RawPluginConfig {
        path: path.to_owned(),
        name,
        args,
    })
}

/// The document's type, for [`ConfigError::NotAnObject`].
fn describe(root: &Node) -> &'static str {
    match root {
        Node::Null => "an empty document",
        Node::Bool(_) => "a bool",
        Node::Int(_) | Node::Float(_) => "a number",
        Node::Str(_) => "a string",
        Node::Seq(_) => "a list",
        Node::Map(_) => "an object",
    }
}
