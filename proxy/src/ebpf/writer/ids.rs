//! Service and backend ids: small integers, reused, bounded by the maps' sizes.

use std::collections::BTreeSet;

use crate::ProxyError;

/// Hands out ids `1..=limit`, lowest released id first.
pub(super) struct IdAllocator {
    what: &'static str,
    limit: u32,
    /// Every id at or above `next` is free.
    next: u32,
    /// Free ids below `next`.
    free: BTreeSet<u32>,
}

impl IdAllocator {
    pub(super) fn new(what: &'static str, limit: u32) -> Self {
        Self {
            what,
            limit,
            next: 1,
            free: BTreeSet::new(),
        }
    }

    /// Marks `id` as taken (adoption). False if it is out of range or already taken.
    pub(super) fn reserve(&mut self, id: u32) -> bool {
        if id == 0 || id > self.limit {
            return false;
        }
        if id >= self.next {
            self.free.extend(self.next..id);
            self.next = id + 1;
            return true;
        }
        self.free.remove(&id)
    }

    pub(super) fn allocate(&mut self) -> Result<u32, ProxyError> {
        if let Some(id) = self.free.pop_first() {
            return Ok(id);
        }
        if self.next > self.limit {
            return Err(ProxyError::Exhausted {
                what: self.what,
                limit: self.limit,
            });
        }
        self.next += 1;
        Ok(self.next - 1)
    }

    /// How many ids [`Self::allocate`] can still hand out.
    pub(super) fn available(&self) -> u32 {
        // `next - 1` ids were handed out at some point; the free ones among them come back.
        self.limit.saturating_add(1).saturating_sub(self.next) + self.free.len() as u32
    }

    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    pub(super) fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_and_bounded() {
        let mut ids = IdAllocator::new("test ids", 2);
        assert_eq!(ids.available(), 2);
        assert_eq!(ids.allocate().ok(), Some(1));
        assert_eq!(ids.allocate().ok(), Some(2));
        assert_eq!(ids.available(), 0);
        assert!(matches!(
            ids.allocate(),
            Err(ProxyError::Exhausted { limit: 2, .. })
        ));
        ids.release(1);
        assert_eq!(ids.available(), 1);
        assert_eq!(ids.allocate().ok(), Some(1));

        let mut ids = IdAllocator::new("test ids", 10);
        assert!(ids.reserve(5) && ids.reserve(2));
        assert!(!ids.reserve(5) && !ids.reserve(0) && !ids.reserve(11));
        assert_eq!(ids.available(), 8);
        let handed: Vec<u32> = (0..8).filter_map(|_| ids.allocate().ok()).collect();
        assert_eq!(handed, [1, 3, 4, 6, 7, 8, 9, 10]);
    }
}
