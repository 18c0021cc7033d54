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
