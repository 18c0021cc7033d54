//! The pieces every printer is made of: column definitions (`metav1.TableColumnDefinition`),
//! the row a printer produces, and the columns most resources share.

use jiff::Timestamp;
use serde_json::{json, Value};

/// One column of the table. `kind` is the OpenAPI type Kubernetes declares (`string`, `integer`,
/// `date`); it describes the column, not the cells, which follow the Go printer's values (a few
/// `string` columns hold integers, as in Kubernetes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Column {
    pub(super) name: &'static str,
    pub(super) kind: &'static str,
    pub(super) format: &'static str,
    pub(super) description: &'static str,
    pub(super) priority: i32,
}

impl Column {
    pub(super) const fn new(
        name: &'static str,
        kind: &'static str,
        description: &'static str,
    ) -> Column {
        Column {
            name,
            kind,
            format: "",
            description,
            priority: 0,
        }
    }

    /// The same column shown only by `kubectl get -o wide`.
    pub(super) const fn wide(self) -> Column {
        Column {
            name: self.name,
            kind: self.kind,
            format: self.format,
            description: self.description,
            priority: 1,
        }
    }

    /// The JSON definition; Go encodes `format`, `description` and `priority` even when empty.
    pub(super) fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// What a printer makes of one object: one cell per column, and the row conditions (only pods
/// have any: `Completed` once they have run to the end).
pub(super) struct Row {
    pub(super) cells: Vec<Value>,
    pub(super) conditions: Vec<Value>,
}

impl Row {
    pub(super) fn new(cells: Vec<Value>) -> Row {
        Row {
            cells,
            conditions: Vec::new(),
        }
    }
}

/// A resource's columns and the function that fills them for one object.
#[derive(Clone, Copy)]
pub(super) struct Printer {
    pub(super) columns: &'static [Column],
    pub(super) row: fn(&Value, Timestamp) -> Row,
}

/// `metav1.ObjectMeta{}.SwaggerDoc()["name"]`.
pub(super) const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required \
    when creating resources, although some resources may allow a client to request the \
    generation of an appropriate name automatically. Name is primarily intended for creation \
    idempotence and configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]`.
pub(super) const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp \
    representing the server time when this object was created. It is not guaranteed to be set \
    in happens-before order across separate operations. Clients may not set this value. It is \
    represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for \
    lists. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The first column of every table; the `name` format tells clients it identifies the object.
pub(super) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
};

pub(super) const AGE: Column = Column::new("Age", "string", CREATION_TIMESTAMP_DESCRIPTION);

/// The wide columns of the workload controllers, listing their pod template's containers.
pub(super) const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    "Names of each container in the template.",
)
.wide();
pub(super) const IMAGES: Column = Column::new(
    "Images",
    "string",
    "Images referenced by each container in the template.",
)
.wide();
