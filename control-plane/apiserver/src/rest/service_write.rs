//! The write of a Service update: the object and the reservation keys it takes and gives back
//! (`service_update::allocate`) in one store transaction on the revision `guaranteed_update`
//! read, so no key is ever held without its Service or by two, whatever races: a node port
//! the allocator chose that another write took meanwhile is chosen again; one the client
//! asked for is refused, naming its field.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::Api;
use crate::objects;
use crate::resources::ResourceInfo;
use crate::service_update::{self, Allocation, Draw};
use crate::status::ApiError;
use crate::storage::StorageError;

/// Writes before the client hears the ranges are full (each try whose chosen key was taken
/// chooses again).
const ALLOCATION_ATTEMPTS: u32 = 64;

fn seed() -> u32 {
    u32::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .unwrap_or_default(),
    )
}

fn allocate(
    api: &Api,
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
    ip_start: u32,
    attempt: u32,
) -> Result<Allocation, ApiError> {
    let mut draw = seed;
    service_update::allocate(
        info,
        old,
        new,
        &api.config.service_ip_range,
        &api.config.node_port_range,
        Draw {
            ip_start,
            attempt,
            seed: &mut draw,
        },
    )
}

/// The first key the client asked for that is held (by another Service: the stored one's
/// are never acquired), as its 422.
async fn requested_taken(
    api: &Api,
    info: &ResourceInfo,
    allocation: &Allocation,
) -> Result<Option<ApiError>, ApiError> {
    for key in allocation
        .acquire
        .iter()
        .filter(|k| !allocation.picked.contains(*k))
    {
        if api.storage.get(key).await?.is_some() {
            return Ok(Some(service_update::taken(info, &allocation.service, key)));
        }
    }
    Ok(None)
}

async fn any_held(api: &Api, keys: &BTreeSet<String>) -> Result<bool, ApiError> {
    for key in keys {
        if api.storage.get(key).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes `new` over `old` (read at `revision`) with the reservations the change takes and
/// gives back. The store's answer for `guaranteed_update` to judge (Conflict: read again),
/// or the client's 422 for a requested address or node port that is taken.
pub(super) async fn write(
    api: &Arc<Api>,
    info: &ResourceInfo,
    key: &str,
    old: &Value,
    new: Value,
    revision: i64,
) -> Result<Result<(Value, i64), StorageError>, ApiError> {
    let ip_start = seed();
    for attempt in 0..ALLOCATION_ATTEMPTS {
        let allocation = allocate(api, info, old, &new, ip_start, attempt)?;
        let value = objects::to_stored(&allocation.service)?;
        match api
            .storage
            .update_reserving(
                key,
                value,
                revision,
                &allocation.acquire,
                &allocation.release,
            )
            .await
        {
            Ok(rv) => return Ok(Ok((allocation.service, rv))),
            Err(StorageError::Taken) => {
                if let Some(refused) = requested_taken(api, info, &allocation).await? {
                    return Err(refused);
                }
                // A chosen key lost a race (or a requested one was freed since): again.
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Err(full(api))
}

/// A dry run's answer: what the write would store, with the values the allocator would
/// choose, reserving nothing; a requested key that is taken is refused as the write would.
pub(super) async fn preview(
    api: &Arc<Api>,
    info: &ResourceInfo,
    old: &Value,
    new: Value,
) -> Result<Value, ApiError> {
    let ip_start = seed();
    for attempt in 0..ALLOCATION_ATTEMPTS {
        let allocation = allocate(api, info, old, &new, ip_start, attempt)?;
        if let Some(refused) = requested_taken(api, info, &allocation).await? {
            return Err(refused);
        }
        if !any_held(api, &allocation.picked).await? {
            return Ok(allocation.service);
        }
    }
    Err(full(api))
}

fn full(api: &Api) -> ApiError {
    ApiError::internal(format!(
        "failed to allocate a serviceIP or nodePort: range {} or {} is full",
        api.config.service_ip_range, api.config.node_port_range
    ))
}
