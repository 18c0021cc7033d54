//! Why a patch was refused.
//!
//! The texts keep the phrases of apimachinery's errors (`does not contain declared merge key`,
//! `unknown patch type`, `doesn't match`, `invalid patch format of ...`) so that clients and
//! tests written against Kubernetes recognise them, and prefix each with the field path.

use serde_json::{Map, Value};

use crate::path::{kind_name, snippet, snippet_map, Path};
use crate::MAX_DEPTH;

/// A refused patch. Every variant but [`Error::NotAnObject`] names the field path where the
/// problem is, e.g. `spec.containers[name=web].ports`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The original object or the patch is not a JSON object (nor null).
    #[error("invalid JSON document: the {document} is a {found}, expected a map")]
    NotAnObject {
        /// `"original"` or `"patch"`.
        document: &'static str,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A value has the wrong JSON type where the patch format requires one.
    #[error("{path}: invalid type: expected a {expected}, but received a {found}")]
    WrongType {
        /// Where.
        path: String,
        /// The JSON type required.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// The documents nest deeper than [`MAX_DEPTH`].
    #[error("{path}: nesting deeper than {limit} levels is refused")]
    TooDeep {
        /// Where the limit was crossed.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// `$patch` carries a value that is not a directive valid in that place.
    #[error("{path}: unknown patch type: {value} in map: {map}")]
    UnknownPatchType {
        /// The map holding the directive.
        path: String,
        /// The directive's value, as JSON.
        value: String,
        /// The map, as JSON (shortened).
        map: String,
    },
    /// `$patch: merge` in an element of a list: apimachinery knows `merge` only as a struct
    /// tag and refuses it in patches.
    #[error("{path}: merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList {
        /// The list.
        path: String,
    },
    /// An element of a merging list lacks the list's merge key (or has it null).
    #[error("{path}: merge key {key:?} missing: map: {element} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The element.
        path: String,
        /// The merge key the schema declares.
        key: String,
        /// The element, as JSON (shortened).
        element: String,
    },
    /// A list of maps is merged (or ordered) but its schema declares no merge key.
    #[error("{path}: cannot merge lists without merge key")]
    NoMergeKey {
        /// The list.
        path: String,
    },
    /// A merging list holds lists.
    #[error("{path}: lists of lists are not supported")]
    ListOfLists {
        /// The list.
        path: String,
    },
    /// A merging list holds elements of different JSON types.
    #[error("{path}: list element types are not identical")]
    MixedElementTypes {
        /// The list.
        path: String,
    },
    /// A key starting with `$setElementOrder` or `$deleteFromPrimitiveList` lacks its
    /// `/<field>` part.
    #[error("{path}: invalid patch format: directive key {key:?} must have the form \"{prefix}/<field>\"")]
    MalformedDirectiveKey {
        /// The map holding the key.
        path: String,
        /// The key.
        key: String,
        /// The directive it starts with.
        prefix: &'static str,
    },
    /// `$deleteFromPrimitiveList/<field>` is not a list.
    #[error("{path}: invalid patch format of primitive list: the patch list for field {field:?} is not a list")]
    PrimitiveListNotAList {
        /// The map holding the directive.
        path: String,
        /// The list field the directive names.
        field: String,
    },
    /// `$deleteFromPrimitiveList/<field>` names a list of maps.
    #[error("{path}: invalid patch format of primitive list: $deleteFromPrimitiveList/{field} names a list of maps")]
    PrimitiveListOfMaps {
        /// The map holding the directive.
        path: String,
        /// The list field the directive names.
        field: String,
    },
    /// `$setElementOrder/<field>` is not a list.
    #[error("{path}: invalid patch format of setElementOrder list: $setElementOrder/{field} is not a list")]
    SetElementOrderNotAList {
        /// The map holding the directive.
        path: String,
        /// The list field the directive names.
        field: String,
    },
    /// The patch list names elements in another order than its `$setElementOrder` list, or
    /// names elements that list lacks.
    #[error("{path}: the order in the patch list doesn't match the $setElementOrder list")]
    SetElementOrderMismatch {
        /// The list.
        path: String,
    },
    /// `$retainKeys` is not a list of field names.
    #[error(
        "{path}: invalid patch format of retainKeys: $retainKeys must be a list of field names"
    )]
    RetainKeysNotAList {
        /// The map holding the directive.
        path: String,
    },
    /// The patch sets a field that its own `$retainKeys` list would clear.
    #[error("{path}: patch content doesn't match retainKeys list: field {field:?} is not in $retainKeys")]
    RetainKeysMismatch {
        /// The map holding the directive.
        path: String,
        /// The field.
        field: String,
    },
}

impl Error {
    /// The field path the error names (`<root>` for the document itself), or `None` when the
    /// whole document was refused.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::NotAnObject { .. } => None,
            Error::WrongType { path, .. }
            | Error::TooDeep { path, .. }
            | Error::UnknownPatchType { path, .. }
            | Error::MergeDirectiveInList { path }
            | Error::MissingMergeKey { path, .. }
            | Error::NoMergeKey { path }
            | Error::ListOfLists { path }
            | Error::MixedElementTypes { path }
            | Error::MalformedDirectiveKey { path, .. }
            | Error::PrimitiveListNotAList { path, .. }
            | Error::PrimitiveListOfMaps { path, .. }
            | Error::SetElementOrderNotAList { path, .. }
            | Error::SetElementOrderMismatch { path }
            | Error::RetainKeysNotAList { path }
            | Error::RetainKeysMismatch { path, .. } => Some(path),
        }
    }

    pub(crate) fn not_an_object(document: &'static str, found: &Value) -> Error {
        Error::NotAnObject {
            document,
            found: kind_name(found),
        }
    }

    pub(crate) fn wrong_type(path: &Path<'_>, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            path: path.render(),
            expected,
            found: kind_name(found),
        }
    }

    pub(crate) fn unknown_patch_type(
        path: &Path<'_>,
        value: &Value,
        map: &Map<String, Value>,
    ) -> Error {
        Error::UnknownPatchType {
            path: path.render(),
            value: snippet(value),
            map: snippet_map(map),
        }
    }

    pub(crate) fn missing_merge_key(path: &Path<'_>, key: &str, element: &Value) -> Error {
        Error::MissingMergeKey {
            path: path.render(),
            key: key.to_owned(),
            element: snippet(element),
        }
    }
}

/// Refuses to descend past [`MAX_DEPTH`]: the input is untrusted and every level is a stack frame.
pub(crate) fn check_depth(path: &Path<'_>) -> Result<(), Error> {
    if path.depth() > MAX_DEPTH {
        return Err(Error::TooDeep {
            path: path.render(),
            limit: MAX_DEPTH,
        });
    }
    Ok(())
}
