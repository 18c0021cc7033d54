//! What a controller needs to know of a refused request: the API server's `Status`, and the
//! few refusals kube's controllers treat apart (gone, conflict, a terminating namespace).

/// The status cause of a create refused because the namespace is being deleted.
const NAMESPACE_TERMINATING_CAUSE: &str = "NamespaceTerminating";

/// The API server's answer, when the request reached it and was refused.
pub(crate) fn status_of(error: &kube::Error) -> Option<&kube::core::Status> {
    match error {
        kube::Error::Api(status) => Some(&**status),
        _ => None,
    }
}

/// What kube's controllers print of a refused request with `%v`: the API server's message,
/// or the error itself when the request got no answer.
pub(crate) fn message_of(error: &kube::Error) -> String {
    match status_of(error) {
        Some(status) if !status.message.is_empty() => status.message.clone(),
        _ => error.to_string(),
    }
}

pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    status_of(error).is_some_and(|status| status.is_not_found())
}

pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    status_of(error).is_some_and(|status| status.is_conflict())
}

/// A create refused because its namespace is being deleted: kube's controllers stop retrying.
pub(crate) fn namespace_terminating(error: &kube::Error) -> bool {
    status_of(error)
        .and_then(|status| status.details.as_ref())
        .is_some_and(|details| {
            details
                .causes
                .iter()
                .any(|cause| cause.reason == NAMESPACE_TERMINATING_CAUSE)
        })
}

/// A refusal as the API server words it, for tests.
#[cfg(test)]
pub(crate) fn refused(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(message, reason)
            .with_code(code)
            .boxed(),
    )
}

/// A create refused because its namespace is being deleted, for tests.
#[cfg(test)]
pub(crate) fn refused_terminating() -> kube::Error {
    let status = kube::core::Status::failure(
        "unable to create new content in namespace gone because it is being terminated",
        "Forbidden",
    )
    .with_code(403)
    .with_details(kube::core::response::StatusDetails {
        name: "gone".into(),
        group: String::new(),
        kind: "namespaces".into(),
        uid: String::new(),
        causes: vec![kube::core::response::StatusCause {
            reason: NAMESPACE_TERMINATING_CAUSE.into(),
            message: "namespace gone is being terminated".into(),
            field: "metadata.namespace".into(),
        }],
        retry_after_seconds: 0,
    });
    kube::Error::Api(status.boxed())
}
