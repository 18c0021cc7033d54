//! What a request asks, as kube-apiserver's authorizer.Attributes: read off the route (or a
//! review's spec), evaluated by every authorizer, and worded into the 403 when all say no.

use super::rbac;
use super::UserInfo;
use crate::request::{ResourceRequest, Verb};
use crate::status::ApiError;

/// What a request asks, owned (the borrowed form is `rbac::Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub path: String,
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
    }
}

impl Request {
    /// The attributes of a resource request, as kube-apiserver's RequestInfoFactory reads
    /// them (a namespace object is "in" itself, so a RoleBinding in `team` may grant reading
    /// namespace `team`).
    pub fn resource(target: &ResourceRequest) -> Self {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let namespace = if info.resource == "namespaces" && info.group.is_empty() {
            name.clone()
        } else {
            target.namespace.clone().unwrap_or_default()
        };
        // A WebSocket `pods/exec` is a GET, but it runs a command: kube-apiserver authorizes
        // it as `create` (AuthorizePodWebsocketUpgradeCreatePermission), as the POST of SPDY.
        let verb = match target.subresource.as_deref() {
            Some("exec" | "attach" | "portforward") if info.resource == "pods" => "create",
            _ => verb_name(target.verb),
        };
        Self {
            verb: verb.into(),
            resource_request: true,
            namespace,
            api_group: info.group.into(),
            resource: info.resource.into(),
            subresource: target.subresource.clone().unwrap_or_default(),
            name,
            path: String::new(),
        }
    }

    /// A request for a path that is not a resource (/version, /healthz, /openapi/v3, …):
    /// the verb is the lower-cased method.
    pub fn non_resource(method: &str, path: &str) -> Self {
        Self {
            verb: method.to_ascii_lowercase(),
            resource_request: false,
            path: path.into(),
            ..Self::default()
        }
    }

    pub fn as_rbac<'a>(&'a self, user: &'a UserInfo) -> rbac::Attributes<'a> {
        rbac::Attributes {
            user,
            verb: &self.verb,
            resource_request: self.resource_request,
            namespace: &self.namespace,
            api_group: &self.api_group,
            resource: &self.resource,
            subresource: &self.subresource,
            name: &self.name,
            path: &self.path,
        }
    }

    /// kube-apiserver's 403 for this request and user.
    pub fn forbidden(&self, user: &UserInfo, reason: &str) -> ApiError {
        let mut message = if !self.resource_request {
            format!(
                "User {:?} cannot {} path {:?}",
                user.name, self.verb, self.path
            )
        } else {
            let mut resource = self.resource.clone();
            if !self.subresource.is_empty() {
                resource = format!("{resource}/{}", self.subresource);
            }
            if self.namespace.is_empty() {
                format!(
                    "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                    user.name, self.verb, resource, self.api_group
                )
            } else {
                format!(
                    "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                    user.name, self.verb, resource, self.api_group, self.namespace
                )
            }
        };
        if !reason.is_empty() {
            message = format!("{message}: {reason}");
        }
        let qualified = if self.api_group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.api_group)
        };
        let full = match (self.resource_request, self.name.is_empty()) {
            (false, _) => format!("forbidden: {message}"),
            (true, true) => format!("{qualified} is forbidden: {message}"),
            (true, false) => format!("{qualified} {:?} is forbidden: {message}", self.name),
        };
        ApiError::forbidden(full, &self.name, &self.api_group, &self.resource)
    }
}
