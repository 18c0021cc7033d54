//! get and list. A get reads the store; a list is served from the watch cache (after waiting
//! for it to reach the store's current revision, so it is as fresh as a quorum read) unless
//! it pages (`limit`/`continue`) or asks for an exact old revision, which only the store keeps.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::{name_of, namespace_of, object_reply, partial_metadata, Api, Request};
use crate::cache::Cached;
use crate::reply::{Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::storage::StorageError;

pub(super) async fn get(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    let key = info.key(namespace_of(target), name);
    // resourceVersion=0 lets the server answer from its cache; anything else reads the store.
    let object = if request.query.get("resourceVersion") == Some("0") {
        api.cache(info)
            .get(&key)
            .map(|o| info.from_storage(o.value.clone()))
    } else {
        Some(
            super::read_current(api, info, namespace_of(target), name)
                .await?
                .0,
        )
    };
    let object = object.ok_or_else(|| ApiError::not_found(info, name))?;
    Ok(object_reply(info, 200, object, format))
}

/// Which objects a list or watch selects, matched against the stored form (a field selector
/// of a converted resource is converted too, as kube's field label conversion does).
pub(super) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(info: &ResourceInfo, request: &Request) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse_for(
            request.query.get("fieldSelector").unwrap_or(""),
            &info.qualified(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = match info.stored_as {
            Some(stored) => fields.map_fields(stored.field_label),
            None => fields,
        };
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.labels.matches(labels) && self.fields.matches(object)
    }
}

/// A continue token as kube-apiserver encodes one: base64 of the revision and the last key.
fn encode_continue(revision: i64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String), ApiError> {
    let invalid =
        || ApiError::bad_request("continue key is not valid: the token could not be decoded");
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    // The token must point inside the list's own prefix: a forged one could otherwise read
    // another resource's keys.
    if !start.starts_with(prefix) || revision <= 0 {
        return Err(invalid());
    }
    Ok((revision, start.to_owned()))
}

fn list_body(
    info: &ResourceInfo,
    items: &[Value],
    revision: i64,
    continue_token: Option<String>,
    remaining: Option<i64>,
    format: Format,
) -> Reply {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = &continue_token {
        meta["continue"] = Value::String(token.clone());
    }
    if let Some(n) = remaining.filter(|n| *n > 0) {
        meta["remainingItemCount"] = Value::from(n);
    }
    match format {
        Format::Table => Reply::json(
            200,
            crate::table::to_table(
                info.resource,
                items,
                meta,
                crate::table::IncludeObject::Metadata,
                jiff::Timestamp::now(),
            ),
        ),
        Format::Metadata => Reply::json(
            200,
            json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
            }),
        ),
        Format::Yaml => {
            let list = json!({
                "kind": info.list_kind,
                "apiVersion": info.api_version(),
                "metadata": meta,
                "items": items,
            });
            match serde_yaml_ng::to_string(&list) {
                Ok(text) => Reply::raw(200, text.into_bytes(), "application/yaml"),
                Err(e) => Reply::error(&ApiError::internal(e.to_string())),
            }
        }
        Format::Json => {
            // Each item is serialized straight into the body: building the list as one value
            // first would copy every object once more.
            let mut body = list_head(info, &meta);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut body, item) {
                    return Reply::error(&ApiError::internal(e.to_string()));
                }
            }
            body.extend_from_slice(b"]}");
            Reply::raw(200, body, "application/json")
        }
    }
}

pub(super) async fn list(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let filter = Filter::parse(info, request)?;
    let query = &request.query;
    let prefix = info.list_prefix(target.namespace.as_deref());
    let limit = query.int("limit")?.unwrap_or(0).max(0);
    let rv_param = query.get("resourceVersion").unwrap_or("");
    let rv_match = query.get("resourceVersionMatch").unwrap_or("");
    if !matches!(rv_match, "" | "Exact" | "NotOlderThan") {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {rv_match:?}: supported values: \"Exact\", \"NotOlderThan\""
        )));
    }
    let requested_rv = match rv_param {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {text:?}: must be an integer"
            ))
        })?),
    };
    if !rv_match.is_empty() && requested_rv.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }

    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        if requested_rv.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (revision, after) = decode_continue(token, &prefix)?;
        return list_from_store(
            api,
            info,
            &prefix,
            Some(after),
            limit,
            revision,
            &filter,
            format,
        )
        .await;
    }
    let exact = rv_match == "Exact" && requested_rv.is_some_and(|rv| rv > 0);
    if exact || (limit > 0 && requested_rv.is_none()) {
        let revision = if exact { requested_rv.unwrap_or(0) } else { 0 };
        return list_from_store(api, info, &prefix, None, limit, revision, &filter, format).await;
    }

    let cache = api.cache(info);
    match requested_rv {
        // "0": any state the server has; no wait.
        Some(0) => {}
        Some(rv) => cache.wait_for(rv).await?,
        // Unset: as fresh as a quorum read.
        None => cache.wait_for(api.storage.revision().await?).await?,
    }
    // A field selector that pins the name reads one key instead of the whole prefix.
    let (items, revision) = cache.list(&prefix)?;
    let selected: Vec<&Arc<Cached>> = items.iter().filter(|o| filter.matches(o)).collect();
    if format == Format::Json && info.stored_as.is_none() {
        return Ok(encoded_list(info, &selected, revision));
    }
    let values: Vec<Value> = selected
        .iter()
        .map(|o| info.from_storage(o.value.clone()))
        .collect();
    Ok(list_body(info, &values, revision, None, None, format))
}

/// `{"kind":…,"apiVersion":…,"metadata":{…},"items":[`: a JSON list up to its first item.
fn list_head(info: &ResourceInfo, meta: &Value) -> Vec<u8> {
    let head = json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version(),
        "metadata": meta,
    })
    .to_string();
    let mut body = Vec::with_capacity(head.len() + 16);
    // The head without its closing brace, then the items array.
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    body
}

/// A list from the cache in JSON: the objects' bytes as the cache encoded them, concatenated.
fn encoded_list(info: &ResourceInfo, items: &[&Arc<Cached>], revision: i64) -> Reply {
    let mut body = list_head(info, &json!({"resourceVersion": revision.to_string()}));
    body.reserve(items.iter().map(|o| o.json.len() + 1).sum::<usize>() + 2);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item.json);
    }
    body.extend_from_slice(b"]}");
    Reply::raw(200, body, "application/json")
}

#[allow(clippy::too_many_arguments)]
async fn list_from_store(
    api: &Arc<Api>,
    info: &ResourceInfo,
    prefix: &str,
    mut after: Option<String>,
    limit: i64,
    mut revision: i64,
    filter: &Filter,
    format: Format,
) -> Result<Reply, ApiError> {
    let mut items = Vec::new();
    let mut remaining;
    let mut last_key;
    // Filtering happens after reading, so keep reading pages until the page is full or the
    // range ends, as kube-apiserver does.
    loop {
        let page = api
            .storage
            .list(prefix, after.as_deref(), limit, revision)
            .await
            .map_err(|e| match e {
                StorageError::Compacted { .. } => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => other.into(),
            })?;
        revision = page.revision;
        remaining = page.remaining;
        last_key = page.items.last().map(|s| s.key.clone());
        for stored in page.items {
            let object = super::decode_stored(&stored)?;
            if filter.matches(&object) {
                items.push(info.from_storage(object));
            }
        }
        if limit == 0 || remaining == 0 || items.len() as i64 >= limit {
            break;
        }
        after = last_key.clone();
    }
    let continue_token = match (&last_key, remaining > 0 && limit > 0) {
        (Some(key), true) => Some(encode_continue(revision, key)),
        _ => None,
    };
    let remaining_count = if filter.labels.is_empty() && filter.fields.is_empty() {
        Some(remaining)
    } else {
        None
    };
    Ok(list_body(
        info,
        &items,
        revision,
        continue_token,
        remaining_count,
        format,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_inside_their_prefix() {
        let token = encode_continue(42, "/registry/pods/default/web-3");
        assert_eq!(
            decode_continue(&token, "/registry/pods/").ok(),
            Some((42, "/registry/pods/default/web-3".to_owned()))
        );
        assert!(decode_continue(&token, "/registry/secrets/").is_err());
        assert!(decode_continue("%%%", "/registry/pods/").is_err());
        let forged = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"rv":-1,"start":"/registry/pods/x"}"#);
        assert!(decode_continue(&forged, "/registry/pods/").is_err());
    }
}
