//! What the merge needs to know about an object's fields: the `patchStrategy` and
//! `patchMergeKey` struct tags of the Kubernetes Go types, and the schema of nested objects.
//!
//! Schemas are meant to be `static`: a [`Field`] points at the [`Schema`] of its value (or of its
//! elements) with a `&'static` reference, so recursive types (a field whose elements have the
//! enclosing type) are plain statics referring to each other. Declare the field table as a static
//! slice and the schema next to it:
//!
//! ```
//! use strategic_merge_patch::{Field, Schema};
//!
//! static CONTAINER_FIELDS: &[(&str, Field)] = &[
//!     ("env", Field::merge_list("name")),
//!     ("ports", Field::merge_list("containerPort")),
//! ];
//! static CONTAINER: Schema = Schema::new(CONTAINER_FIELDS);
//!
//! static POD_SPEC_FIELDS: &[(&str, Field)] = &[
//!     ("containers", Field::merge_list("name").with_schema(&CONTAINER)),
//!     ("imagePullSecrets", Field::merge_list("name")),
//! ];
//! static POD_SPEC: Schema = Schema::new(POD_SPEC_FIELDS);
//!
//! assert!(POD_SPEC.field("containers").is_some());
//! ```
//!
//! Schemas built at run time (from OpenAPI, say) fit in a `std::sync::LazyLock<Schema>` through
//! [`Schema::from_map`].

use std::collections::HashMap;
use std::fmt;

/// How a field's value merges: the values of the `patchStrategy` struct tag.
///
/// The merge only looks at the strategy where both the object and the patch hold a value of
/// the same kind, and the meaning depends on that kind:
///
/// | strategy          | list value                    | map value                     |
/// |-------------------|-------------------------------|-------------------------------|
/// | `Replace`         | the patch's list replaces it  | the patch's map replaces it   |
/// | `Merge`           | merged by merge key, or as a set of primitives | merged key by key |
/// | `RetainKeys`      | replaced                      | merged key by key             |
/// | `MergeRetainKeys` | as `Merge`                    | merged key by key             |
///
/// A Go field without the tag behaves as `Replace` when it is a list and as `Merge` when it is
/// a struct or a map: declare it so, or leave it out of the schema (undeclared fields get that
/// behaviour). `$retainKeys` in a patch is honoured wherever it appears, as apimachinery does;
/// the `retainKeys` strategies only document where clients are expected to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// `patchStrategy:"replace"`, or an untagged list.
    Replace,
    /// `patchStrategy:"merge"`, or an untagged struct or map.
    Merge,
    /// `patchStrategy:"retainKeys"` (a struct that is a union, e.g. a Deployment's strategy).
    RetainKeys,
    /// `patchStrategy:"merge,retainKeys"` (a merging list of unions, e.g. a Pod's volumes).
    MergeRetainKeys,
}

impl Strategy {
    pub(crate) fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }

    pub(crate) fn replaces_maps(self) -> bool {
        matches!(self, Strategy::Replace)
    }
}

/// One field of a [`Schema`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// How the field's value merges.
    pub strategy: Strategy,
    /// The `patchMergeKey` of a list of objects: the field that identifies an element.
    pub merge_key: Option<&'static str>,
    /// The schema of the value when it is an object, or of the elements when it is a list of
    /// objects. `None` is the same as [`Schema::empty`].
    pub schema: Option<&'static Schema>,
}

impl Field {
    /// A field with all three properties given.
    pub const fn new(
        strategy: Strategy,
        merge_key: Option<&'static str>,
        schema: Option<&'static Schema>,
    ) -> Field {
        Field {
            strategy,
            merge_key,
            schema,
        }
    }

    /// A list of objects merged element by element on `key` (`patchStrategy:"merge"`,
    /// `patchMergeKey:"<key>"`).
    pub const fn merge_list(key: &'static str) -> Field {
        Field::new(Strategy::Merge, Some(key), None)
    }

    /// A list of unions merged on `key` (`patchStrategy:"merge,retainKeys"`).
    pub const fn merge_list_retain_keys(key: &'static str) -> Field {
        Field::new(Strategy::MergeRetainKeys, Some(key), None)
    }

    /// A list of primitives merged as an ordered set (`patchStrategy:"merge"` without a merge
    /// key, e.g. `metadata.finalizers`).
    pub const fn set() -> Field {
        Field::new(Strategy::Merge, None, None)
    }

    /// A list (untagged, or `patchStrategy:"replace"`) or a map (`patchStrategy:"replace"`)
    /// that the patch's value replaces whole.
    pub const fn replace() -> Field {
        Field::new(Strategy::Replace, None, None)
    }

    /// A struct or map merged key by key, whose own fields `schema` describes.
    pub const fn object(schema: &'static Schema) -> Field {
        Field::new(Strategy::Merge, None, Some(schema))
    }

    /// A union struct (`patchStrategy:"retainKeys"`), merged key by key.
    pub const fn retain_keys() -> Field {
        Field::new(Strategy::RetainKeys, None, None)
    }

    /// The same field, with `schema` describing its value or its elements.
    pub const fn with_schema(self, schema: &'static Schema) -> Field {
        Field {
            strategy: self.strategy,
            merge_key: self.merge_key,
            schema: Some(schema),
        }
    }
}

enum Fields {
    Static(&'static [(&'static str, Field)]),
    Owned(HashMap<&'static str, Field>),
}

/// The merge-relevant fields of an object type. Fields it does not name behave as untagged Go
/// fields: maps merge key by key (schema-less below), lists are replaced whole.
pub struct Schema {
    fields: Fields,
    /// For a map whose keys are data (`additionalProperties`): the field every key resolves to.
    values: Option<Field>,
}

static EMPTY: Schema = Schema::new(&[]);

impl Schema {
    /// A schema over a static table of fields; usable in a `static` initializer. When a name
    /// appears twice the first entry wins.
    pub const fn new(fields: &'static [(&'static str, Field)]) -> Schema {
        Schema {
            fields: Fields::Static(fields),
            values: None,
        }
    }

    /// A schema over fields gathered at run time.
    pub fn from_map(fields: HashMap<&'static str, Field>) -> Schema {
        Schema {
            fields: Fields::Owned(fields),
            values: None,
        }
    }

    /// The schema of a map whose keys are data and whose values are objects of schema `values`
    /// (Go's `map[string]T`, OpenAPI's `additionalProperties`): every key merges as an object
    /// of that schema.
    pub const fn map_values(values: &'static Schema) -> Schema {
        Schema {
            fields: Fields::Static(&[]),
            values: Some(Field::object(values)),
        }
    }

    /// The schema that knows nothing: every map merges recursively, every list is replaced.
    pub fn empty() -> &'static Schema {
        &EMPTY
    }

    /// How the field `name` merges, if the schema says.
    pub fn field(&self, name: &str) -> Option<&Field> {
        let declared = match &self.fields {
            Fields::Static(fields) => fields
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, field)| field),
            Fields::Owned(fields) => fields.get(name),
        };
        declared.or(self.values.as_ref())
    }
}

impl Default for Schema {
    fn default() -> Schema {
        Schema::new(&[])
    }
}

impl FromIterator<(&'static str, Field)> for Schema {
    fn from_iter<I: IntoIterator<Item = (&'static str, Field)>>(fields: I) -> Schema {
        Schema::from_map(fields.into_iter().collect())
    }
}

// By hand: a derived Debug would follow `Field::schema` into recursive schemas forever.
impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = match &self.fields {
            Fields::Static(fields) => fields.iter().map(|(name, _)| *name).collect(),
            Fields::Owned(fields) => fields.keys().copied().collect(),
        };
        names.sort_unstable();
        f.debug_struct("Schema")
            .field("fields", &names)
            .field("map_values", &self.values.is_some())
            .finish()
    }
}
