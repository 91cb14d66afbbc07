//! A bounded map that lets its oldest entry go first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most `capacity` entries; inserting into a full cache drops the entry inserted first
/// (first in, first out: an entry is not refreshed by use).
pub(crate) struct FifoCache<K, V> {
    entries: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> FifoCache<K, V> {
    /// An empty cache of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value kept for `key`.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).cloned()
    }

    /// Keeps `value` for `key` unless a value is kept for it already, and returns the value kept.
    pub(crate) fn get_or_insert(&mut self, key: K, value: V) -> V {
        if let Some(kept) = self.entries.get(&key) {
            return kept.clone();
        }
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, value.clone());
        value
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_a_kept_value_is_not_replaced() {
        let mut cache = FifoCache::new(2);
        assert_eq!(cache.get_or_insert("a", 1), 1);
        assert_eq!(cache.get_or_insert("b", 2), 2);
        // Kept: the value already there wins, and use does not refresh it.
        assert_eq!(cache.get_or_insert("a", 10), 1);
        assert_eq!(cache.get_or_insert("c", 3), 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.get(&"b"), Some(2));
        assert_eq!(cache.get(&"c"), Some(3));
        assert_eq!(cache.get_or_insert("d", 4), 4);
        assert_eq!(cache.get(&"b"), None);
        assert_eq!(cache.len(), 2);
        // The order kept is the entries', no more.
        assert_eq!(cache.order, ["c", "d"]);
    }
}
