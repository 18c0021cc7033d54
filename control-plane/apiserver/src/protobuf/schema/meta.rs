//! meta/v1 of k8s.io/apimachinery: object metadata, label selectors, conditions and
//! DeleteOptions, which the kinds in the other files embed or refer to.

use super::Ty::*;
use super::{field, omitempty, Message, META};

pub(super) static OBJECT_META: Message = Message::new(
    META,
    "ObjectMeta",
    &[
        omitempty(1, "name", Str),
        omitempty(2, "generateName", Str),
        omitempty(3, "namespace", Str),
        omitempty(4, "selfLink", Str),
        omitempty(5, "uid", Str),
        omitempty(6, "resourceVersion", Str),
        omitempty(7, "generation", Int64),
        field(8, "creationTimestamp", Time),
        field(9, "deletionTimestamp", Time),
        field(10, "deletionGracePeriodSeconds", Int64),
        field(11, "labels", StringMap),
        field(12, "annotations", StringMap),
        field(13, "ownerReferences", Objects(&OWNER_REFERENCE)),
        field(14, "finalizers", Strings),
        field(17, "managedFields", Objects(&MANAGED_FIELDS_ENTRY)),
    ],
);

pub(super) static DELETE_OPTIONS: Message = Message::new(
    META,
    "DeleteOptions",
    &[
        field(1, "gracePeriodSeconds", Int64),
        field(2, "preconditions", Object(&PRECONDITIONS)),
        field(3, "orphanDependents", Bool),
        field(4, "propagationPolicy", Str),
        field(5, "dryRun", Strings),
        field(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
    ],
);

pub(super) static LABEL_SELECTOR: Message = Message::new(
    META,
    "LabelSelector",
    &[
        field(1, "matchLabels", StringMap),
        field(2, "matchExpressions", Objects(&LABEL_SELECTOR_REQUIREMENT)),
    ],
);

pub(super) static CONDITION: Message = Message::new(
    META,
    "Condition",
    &[
        field(1, "type", Str),
        field(2, "status", Str),
        omitempty(3, "observedGeneration", Int64),
        field(4, "lastTransitionTime", Time),
        field(5, "reason", Str),
        field(6, "message", Str),
    ],
);

pub(super) static OWNER_REFERENCE: Message = Message::new(
    META,
    "OwnerReference",
    &[
        field(5, "apiVersion", Str),
        field(1, "kind", Str),
        field(3, "name", Str),
        field(4, "uid", Str),
        field(6, "controller", Bool),
        field(7, "blockOwnerDeletion", Bool),
    ],
);

pub(super) static MANAGED_FIELDS_ENTRY: Message = Message::new(
    META,
    "ManagedFieldsEntry",
    &[
        omitempty(1, "manager", Str),
        omitempty(2, "operation", Str),
        omitempty(3, "apiVersion", Str),
        field(4, "time", Time),
        omitempty(6, "fieldsType", Str),
        field(7, "fieldsV1", FieldsV1),
        omitempty(8, "subresource", Str),
    ],
);

pub(super) static PRECONDITIONS: Message = Message::new(
    META,
    "Preconditions",
    &[field(1, "uid", Str), field(2, "resourceVersion", Str)],
);

pub(super) static LABEL_SELECTOR_REQUIREMENT: Message = Message::new(
    META,
    "LabelSelectorRequirement",
    &[
        field(1, "key", Str),
        field(2, "operator", Str),
        field(3, "values", Strings),
    ],
);

pub(super) static FIELD_SELECTOR_REQUIREMENT: Message = Message::new(
    META,
    "FieldSelectorRequirement",
    &[
        field(1, "key", Str),
        field(2, "operator", Str),
        field(3, "values", Strings),
    ],
);
