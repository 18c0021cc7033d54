//! How big the Maglev map is, from the configured limits, and which limits make sense
//! together. Checked before anything is loaded, so that a bad combination fails start-up with
//! the flags to change, not a sync with a full map.

use keel_common::{MaglevChunk, DEFAULT_MAGLEV_MAP_ENTRIES, MAGLEV_CHUNK};
use thiserror::Error;

use super::{maglev::SIZES, Limits};

/// The most chunks the Maglev map may have: 8,388,608 chunks of 128 bytes, 1 GiB of tables
/// when full. The map allocates its elements as tables are written, but the kernel sizes its
/// hash buckets (16 bytes each, the count rounded up to a power of two) when the map is
/// created: at this bound that is 128 MiB of kernel memory before a single service exists,
/// which is as much as a node should give up front to the per-packet path.
pub const MAX_MAGLEV_MAP_ENTRIES: u32 = 8_388_608;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error(
        "--maglev-table-size {0} is not one of {SIZES:?}: the table size must be a prime (every \
         backend's permutation then covers the whole table)"
    )]
    TableSize(u32),
    #[error("--max-maglev-services must be at least 1")]
    NoTables,
    #[error(
        "--max-maglev-services {tables} is more than --max-services {max_services}: only a \
         service has a Maglev table"
    )]
    MoreTablesThanServices { tables: u32, max_services: u32 },
    #[error(
        "--max-maglev-services {tables} with --maglev-table-size {size} ({chunks} chunks a \
         table) needs a Maglev map of {entries} chunks, over the bound of {bound} chunks (1 GiB \
         of tables when full, and 16 bytes of kernel memory per chunk from the start); at most \
         {fit} services fit at this table size"
    )]
    MaglevTooBig {
        tables: u32,
        size: u32,
        chunks: u32,
        entries: u64,
        bound: u32,
        fit: u32,
    },
}

/// Chunks of one table of `size` entries.
pub fn chunks_per_table(size: u32) -> u32 {
    size.div_ceil(MAGLEV_CHUNK as u32)
}

/// How many services get a Maglev table: `max_maglev_services`, or by default as many as the
/// default map holds (2,048 at the default table size, about 128 MiB of tables when full) but no
/// more than there are services.
pub fn maglev_tables(
    limits: Limits,
    max_maglev_services: Option<u32>,
    size: u32,
) -> Result<u32, LimitsError> {
    if !SIZES.contains(&size) {
        return Err(LimitsError::TableSize(size));
    }
    let chunks = chunks_per_table(size);
    let tables = match max_maglev_services {
        Some(0) => return Err(LimitsError::NoTables),
        Some(tables) if tables > limits.max_services => {
            return Err(LimitsError::MoreTablesThanServices {
                tables,
                max_services: limits.max_services,
            })
        }
        Some(tables) => tables,
        None => (DEFAULT_MAGLEV_MAP_ENTRIES / chunks).clamp(1, limits.max_services.max(1)),
    };
    let entries = u64::from(tables) * u64::from(chunks);
    if entries > u64::from(MAX_MAGLEV_MAP_ENTRIES) {
        return Err(LimitsError::MaglevTooBig {
            tables,
            size,
            chunks,
            entries,
            bound: MAX_MAGLEV_MAP_ENTRIES,
            fit: MAX_MAGLEV_MAP_ENTRIES / chunks,
        });
    }
    Ok(tables)
}

/// The Maglev map's `max_entries` for `tables` tables of `size` entries (checked by
/// [`maglev_tables`] to fit in a `u32`).
pub fn maglev_map_entries(tables: u32, size: u32) -> u32 {
    tables.saturating_mul(chunks_per_table(size))
}

const _: () = assert!(std::mem::size_of::<MaglevChunk>() == 128);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::maglev::DEFAULT_SIZE;

    const LIMITS: Limits = Limits {
        max_services: 65_536,
        max_backends: 262_144,
    };

    #[test]
    fn the_default_map_is_the_size_it_always_was() {
        let tables = maglev_tables(LIMITS, None, DEFAULT_SIZE);
        assert_eq!(tables, Ok(2_048));
        assert_eq!(maglev_map_entries(2_048, DEFAULT_SIZE), 1_048_576);
        let few = Limits {
            max_services: 3,
            ..LIMITS
        };
        assert_eq!(maglev_tables(few, None, DEFAULT_SIZE), Ok(3));
    }

    #[test]
    fn bad_combinations_name_the_flag() {
        let error = maglev_tables(LIMITS, None, 16_000).map(|_| ()).unwrap_err();
        assert!(
            error.to_string().contains("--maglev-table-size 16000"),
            "{error}"
        );
        let error = maglev_tables(LIMITS, Some(20_000), DEFAULT_SIZE)
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.to_string().contains("--max-maglev-services 20000")
                && error.to_string().contains("at most 16384 services fit"),
            "{error}"
        );
        let few = Limits {
            max_services: 10,
            ..LIMITS
        };
        let error = maglev_tables(few, Some(11), DEFAULT_SIZE)
            .map(|_| ())
            .unwrap_err();
        assert!(error.to_string().contains("--max-services 10"), "{error}");
        assert_eq!(
            maglev_tables(LIMITS, Some(0), DEFAULT_SIZE),
            Err(LimitsError::NoTables)
        );
        assert_eq!(
            maglev_tables(LIMITS, Some(16_384), DEFAULT_SIZE),
            Ok(16_384)
        );
    }
}
