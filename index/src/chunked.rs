//! A compact ordered map for the index's large, mostly idle tables (1:1 memberships, delivered
//! watermarks): sorted chunks of at most [`CHUNK_MAX`] entries (fewer for large entries, see
//! [`ChunkedMap::MAX`]) in exactly sized vectors, found through a B-tree of their first keys.
//!
//! `std`'s `BTreeMap` holds 11 entries per node and leaves nodes about half full when keys
//! arrive in order (as they do here: new users, new chats), so a 40-byte entry cost ~80 bytes.
//! Here an entry costs its own size plus ~1/8 spare room and a few bytes of chunk overhead; an
//! insert or update is a B-tree lookup and a binary search, plus a move of at most a chunk.
//!
//! Lookups in a large map are cache misses, not instructions: the B-tree over the chunks is
//! small enough to stay cached, the binary search in a chunk is not. So a chunk holds at most
//! [`CHUNK_BYTES`] (~32 cache lines), and a lookup descends the B-tree once (an insert that
//! keeps its chunk's first key, the common case, twice, the second time through cached nodes).

use std::collections::BTreeMap;

/// Entries per chunk before it splits in two, at most (small entries).
pub(crate) const CHUNK_MAX: usize = 128;

/// Bytes of entries per chunk before it splits in two: with 40-byte delivered watermarks, 128
/// entries spread a chunk's binary search over 80 cache lines, most probes a miss; at 51 entries,
/// 32 lines and a probe or two fewer, for ~2 bytes per entry of extra chunk overhead.
pub(crate) const CHUNK_BYTES: usize = 2048;

/// An ordered map of `Copy` keys and values. See the [module documentation](self).
#[derive(Clone, Debug)]
pub(crate) struct ChunkedMap<K, V> {
    /// Each chunk under its first key; chunks are sorted, non-empty and do not overlap.
    chunks: BTreeMap<K, Vec<(K, V)>>,
    len: usize,
}

impl<K, V> Default for ChunkedMap<K, V> {
    fn default() -> Self {
        ChunkedMap {
            chunks: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy, V: Copy> ChunkedMap<K, V> {
    /// Entries per chunk before it splits: [`CHUNK_BYTES`] worth, between 16 and
    /// [`CHUNK_MAX`].
    pub(crate) const MAX: usize = {
        let fit = match CHUNK_BYTES.checked_div(std::mem::size_of::<(K, V)>()) {
            Some(fit) => fit,
            None => CHUNK_MAX,
        };
        if fit > CHUNK_MAX {
            CHUNK_MAX
        } else if fit < 16 {
            16
        } else {
            fit
        }
    };

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first key of the chunk that holds `key` or would: the last chunk starting at or
    /// before it, else the first chunk.
    fn home(&self, key: &K) -> Option<K> {
        self.chunks
            .range(..=key)
            .next_back()
            .or_else(|| self.chunks.iter().next())
            .map(|(first, _)| *first)
    }

    /// A map of `entries`, which must be sorted by key without repeats (else `None`): chunks
    /// filled to 7/8 with room for 1/8 more, allocated once each. Loading a checkpoint this way
    /// costs no B-tree searches and leaves no holes in the heap from chunks grown step by step.
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = (K, V)>) -> Option<Self> {
        let fill = Self::MAX * 7 / 8;
        let mut map = ChunkedMap::default();
        let mut chunk: Vec<(K, V)> = Vec::with_capacity(fill + fill / 8);
        let mut last: Option<K> = None;
        for (key, value) in entries {
            if last.is_some_and(|last| last >= key) {
                return None;
            }
            last = Some(key);
            if chunk.len() == fill {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(fill + fill / 8));
                map.chunks.insert(full[0].0, full);
            }
            chunk.push((key, value));
            map.len += 1;
        }
        if let Some(&(first, _)) = chunk.first() {
            chunk.shrink_to(chunk.len() + chunk.len() / 8);
            map.chunks.insert(first, chunk);
        }
        Some(map)
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        // One descent. No chunk starting at or before the key: it is below the smallest.
        let (_, chunk) = self.chunks.range(..=key).next_back()?;
        let at = chunk.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(chunk[at].1)
    }

    /// The value under `key`, inserting `default` first if there is none.
    pub(crate) fn get_or_insert(&mut self, key: K, default: V) -> &mut V {
        // The common cases: the key is in its chunk, or goes into it without changing its first
        // key or splitting it. Decided in one descent and done in a second through the nodes
        // just visited (returning from the first would hold `self.chunks` borrowed for the
        // rarer paths below: borrow checking cannot tell the paths apart).
        let in_place = self
            .chunks
            .range(..=key)
            .next_back()
            .is_some_and(|(_, chunk)| {
                chunk.len() < Self::MAX || chunk.binary_search_by(|(k, _)| k.cmp(&key)).is_ok()
            });
        if in_place {
            let (_, chunk) = self
                .chunks
                .range_mut(..=key)
                .next_back()
                .expect("found above");
            let at = match chunk.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(at) => at,
                Err(at) => {
                    self.len += 1;
                    if chunk.len() == chunk.capacity() {
                        chunk.reserve_exact((chunk.len() / 8).max(2));
                    }
                    chunk.insert(at, (key, default));
                    at
                }
            };
            return &mut chunk[at].1;
        }
        let Some(first) = self.home(&key) else {
            self.len += 1;
            return &mut self
                .chunks
                .entry(key)
                .or_insert_with(|| vec![(key, default)])[0]
                .1;
        };
        let at = match self.chunks[&first].binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => at,
            // A new smallest key (the chunk is re-keyed) or a full chunk (it splits).
            Err(at) => {
                self.len += 1;
                let mut chunk = self.chunks.remove(&first).expect("the home chunk exists");
                if chunk.len() == chunk.capacity() {
                    chunk.reserve_exact((chunk.len() / 8).max(2));
                }
                chunk.insert(at, (key, default));
                let first = chunk[0].0;
                if chunk.len() > Self::MAX {
                    let mut upper = chunk.split_off(chunk.len() / 2);
                    upper.shrink_to(upper.len() + upper.len() / 8);
                    chunk.shrink_to(chunk.len() + chunk.len() / 8);
                    self.chunks.insert(upper[0].0, upper);
                }
                self.chunks.insert(first, chunk);
                // Where the key went: one of the (possibly split) chunks around it.
                let first = self.home(&key).expect("just inserted");
                let chunk = self.chunks.get_mut(&first).expect("just inserted");
                let at = chunk
                    .binary_search_by(|(k, _)| k.cmp(&key))
                    .expect("just inserted");
                return &mut chunk[at].1;
            }
        };
        &mut self.chunks.get_mut(&first).expect("the home chunk exists")[at].1
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        *self.get_or_insert(key, value) = value;
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let first = self.home(key)?;
        let chunk = self.chunks.get_mut(&first)?;
        let at = chunk.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        let (_, value) = chunk.remove(at);
        self.len -= 1;
        if at == 0 || chunk.is_empty() {
            let chunk = self.chunks.remove(&first).expect("the home chunk exists");
            if let Some((new_first, _)) = chunk.first() {
                self.chunks.insert(*new_first, chunk);
            }
        }
        Some(value)
    }

    /// The entries with keys in `low..=high`, in key order.
    pub(crate) fn range(&self, low: K, high: K) -> impl Iterator<Item = (K, V)> + '_ {
        let start = self.home(&low);
        // No home: the map is empty.
        let chunks = match start {
            Some(first) => self.chunks.range(first..),
            None => self.chunks.range(..),
        };
        chunks
            .flat_map(|(_, chunk)| chunk.iter().copied())
            .skip_while(move |(k, _)| *k < low)
            .take_while(move |(k, _)| *k <= high)
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.chunks.values().flat_map(|chunk| chunk.iter().copied())
    }
}

/// Equal when they hold the same entries, however they are chunked.
impl<K: Ord + Copy, V: Copy + PartialEq> PartialEq for ChunkedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy, V: Copy + Eq> Eq for ChunkedMap<K, V> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_a_btree_map(ops in prop::collection::vec((0u8..4, 0u16..600, any::<u32>()), 0..3000)) {
            let mut ours = ChunkedMap::default();
            let mut model = BTreeMap::new();
            for (op, key, value) in ops {
                match op {
                    0 | 1 => {
                        ours.insert(key, value);
                        model.insert(key, value);
                    }
                    2 => prop_assert_eq!(ours.remove(&key), model.remove(&key)),
                    _ => {
                        let low = key.saturating_sub(40);
                        let got: Vec<_> = ours.range(low, key).collect();
                        let want: Vec<_> = model.range(low..=key).map(|(k, v)| (*k, *v)).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(ours.get(&key), model.get(&key).copied());
                prop_assert_eq!(ours.len(), model.len());
            }
            let all: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(ours.iter().collect::<Vec<_>>(), all);
            for chunk in ours.chunks.values() {
                prop_assert!(!chunk.is_empty() && chunk.len() <= ChunkedMap::<u16, u32>::MAX);
            }
            // Built at once from its sorted entries, it is the same map and keeps working.
            let mut bulk = ChunkedMap::from_sorted(ours.iter()).expect("sorted");
            prop_assert!(bulk == ours);
            for (key, value) in [(0u16, 1u32), (300, 2), (599, 3)] {
                bulk.insert(key, value);
                ours.insert(key, value);
            }
            prop_assert!(bulk == ours);
        }

        #[test]
        fn from_sorted_refuses_unsorted_or_repeated_keys(mut keys in prop::collection::vec(0u16..50, 2..100)) {
            keys.sort_unstable();
            let repeated = keys.windows(2).any(|w| w[0] == w[1]);
            let built = ChunkedMap::from_sorted(keys.iter().map(|k| (*k, ())));
            prop_assert_eq!(built.is_some(), !repeated);
            keys.dedup();
            if keys.len() > 1 {
                keys.swap(0, 1);
                prop_assert!(ChunkedMap::from_sorted(keys.iter().map(|k| (*k, ()))).is_none());
            }
        }
    }

    #[test]
    fn in_order_inserts_leave_chunks_nearly_full() {
        let mut map = ChunkedMap::default();
        for key in 0..100_000u64 {
            map.insert(key, key);
        }
        let capacity: usize = map.chunks.values().map(Vec::capacity).sum();
        assert!(
            capacity < map.len() * 6 / 5,
            "{capacity} slots for {}",
            map.len()
        );
    }
}
