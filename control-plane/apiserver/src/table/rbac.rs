//! The printers of the RBAC kinds and ServiceAccounts: roles show when they were created
//! (`printRole`, `printClusterRole`), bindings the role they grant and, wide, to whom
//! (`printRoleBinding`, `printClusterRoleBinding`), service accounts their secrets
//! (`printServiceAccount`).

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, CREATION_TIMESTAMP_DESCRIPTION, NAME};
use super::duration::age;
use super::fields::{items_at, len_at, name, str_at};

pub(super) const ROLES: Printer = Printer {
    columns: &[
        NAME,
        Column::new("Created At", "date", CREATION_TIMESTAMP_DESCRIPTION),
    ],
    row: role_row,
};

pub(super) const BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        Column::new(
            "Role",
            "string",
            "Role references the role the binding grants.",
        ),
        AGE,
        Column::new("Users", "string", "Users in the binding.").wide(),
        Column::new("Groups", "string", "Groups in the binding.").wide(),
        Column::new(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the binding.",
        )
        .wide(),
    ],
    row: binding_row,
};

pub(super) const SERVICE_ACCOUNTS: Printer = Printer {
    columns: &[
        NAME,
        Column::new(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using \
             this ServiceAccount are allowed to use.",
        ),
        AGE,
    ],
    row: service_account_row,
};

fn role_row(role: &Value, _now: Timestamp) -> Row {
    Row::new(vec![
        name(role).into(),
        str_at(role, &["metadata", "creationTimestamp"]).into(),
    ])
}

fn binding_row(binding: &Value, now: Timestamp) -> Row {
    let subjects = items_at(binding, &["subjects"]);
    let of_kind = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| str_at(s, &["kind"]) == kind)
            .map(|s| {
                if kind == "ServiceAccount" {
                    format!("{}/{}", str_at(s, &["namespace"]), str_at(s, &["name"]))
                } else {
                    str_at(s, &["name"]).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Row::new(vec![
        name(binding).into(),
        format!(
            "{}/{}",
            str_at(binding, &["roleRef", "kind"]),
            str_at(binding, &["roleRef", "name"])
        )
        .into(),
        age(binding, now).into(),
        of_kind("User").into(),
        of_kind("Group").into(),
        of_kind("ServiceAccount").into(),
    ])
}

fn service_account_row(account: &Value, now: Timestamp) -> Row {
    Row::new(vec![
        name(account).into(),
        len_at(account, &["secrets"]).into(),
        age(account, now).into(),
    ])
}
