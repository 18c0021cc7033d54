//! apimachinery's own test tables for patch application, run against this crate.
//!
//! `data/apimachinery.json` holds the cases of `pkg/util/strategicpatch/patch_test.go`
//! converted from YAML: each applies a patch to an object and gives a result (or an error
//! containing a phrase). The schema is the Go test's `MergeItem` struct, declared below with
//! the same tags. Results are compared exactly, list order included.

use serde_json::Value;
use strategic_merge_patch::{apply, Field, Schema};

// type MergeItem struct {
//     MergingList           []MergeItem  `patchStrategy:"merge" patchMergeKey:"name"`
//     NonMergingList        []MergeItem
//     MergingIntList        []int        `patchStrategy:"merge"`
//     NonMergingIntList     []int
//     MergeItemPtr          *MergeItem   `patchStrategy:"merge" patchMergeKey:"name"`
//     SimpleMap             map[string]string
//     ReplacingItem         runtime.RawExtension `patchStrategy:"replace"`
//     RetainKeysMap         RetainKeysMergeItem  `patchStrategy:"retainKeys"`
//     RetainKeysMergingList []MergeItem  `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`
//     ... plus untagged scalars name, value, other
// }
static MERGE_ITEM_FIELDS: &[(&str, Field)] = &[
    (
        "mergingList",
        Field::merge_list("name").with_schema(&MERGE_ITEM),
    ),
    ("nonMergingList", Field::replace().with_schema(&MERGE_ITEM)),
    ("mergingIntList", Field::set()),
    ("nonMergingIntList", Field::replace()),
    (
        "mergeItemPtr",
        Field::merge_list("name").with_schema(&MERGE_ITEM),
    ),
    ("replacingItem", Field::replace()),
    (
        "retainKeysMap",
        Field::retain_keys().with_schema(&RETAIN_KEYS_MERGE_ITEM),
    ),
    (
        "retainKeysMergingList",
        Field::merge_list_retain_keys("name").with_schema(&MERGE_ITEM),
    ),
];
static MERGE_ITEM: Schema = Schema::new(MERGE_ITEM_FIELDS);

// type RetainKeysMergeItem struct {
//     SimpleMap      map[string]string
//     MergingIntList []int       `patchStrategy:"merge"`
//     MergingList    []MergeItem `patchStrategy:"merge" patchMergeKey:"name"`
//     NonMergingList []MergeItem
//     ... plus untagged scalars name, value, other
// }
static RETAIN_KEYS_MERGE_ITEM_FIELDS: &[(&str, Field)] = &[
    ("mergingIntList", Field::set()),
    (
        "mergingList",
        Field::merge_list("name").with_schema(&MERGE_ITEM),
    ),
    ("nonMergingList", Field::replace().with_schema(&MERGE_ITEM)),
];
static RETAIN_KEYS_MERGE_ITEM: Schema = Schema::new(RETAIN_KEYS_MERGE_ITEM_FIELDS);

const DATA: &str = include_str!("data/apimachinery.json");

fn text<'v>(case: &'v Value, field: &str) -> &'v str {
    case.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Runs every case of one Go table and reports all failures at once.
fn run_table(table: &str) {
    let data: Value = serde_json::from_str(DATA).expect("the test data is JSON");
    let cases: Vec<&Value> = data["cases"]
        .as_array()
        .expect("the test data has cases")
        .iter()
        .filter(|case| text(case, "table") == table)
        .collect();
    assert!(!cases.is_empty(), "no cases for table {table}");

    let mut failures = Vec::new();
    for case in &cases {
        let name = text(case, "name");
        let outcome = apply(&case["original"], &case["patch"], &MERGE_ITEM);
        match (case.get("error").and_then(Value::as_str), outcome) {
            (Some(wanted), Err(error)) if error.to_string().contains(wanted) => {}
            (Some(wanted), outcome) => failures.push(format!(
                "{name}: expected an error containing {wanted:?}, got {outcome:?}"
            )),
            (None, Ok(result)) if result == case["expected"] => {}
            (None, outcome) => failures.push(format!(
                "{name}:\n  original: {}\n  patch:    {}\n  expected: {}\n  got:      {outcome:?}",
                case["original"], case["patch"], case["expected"]
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases of {table} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn all_cases_are_present() {
    let data: Value = serde_json::from_str(DATA).expect("the test data is JSON");
    let count = data["cases"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 264);
}

#[test]
fn custom_strategic_merge_patch_test_case_data() {
    run_table("customStrategicMergePatchTestCaseData");
}

#[test]
fn custom_strategic_merge_patch_raw_test_cases() {
    run_table("customStrategicMergePatchRawTestCases");
}

#[test]
fn create_strategic_merge_patch_test_case_data() {
    run_table("createStrategicMergePatchTestCaseData");
}

#[test]
fn strategic_merge_patch_raw_test_cases() {
    run_table("strategicMergePatchRawTestCases");
}

#[test]
fn replace_raw_extension_patch_test_cases() {
    run_table("replaceRawExtensionPatchTestCases");
}
