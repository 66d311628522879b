//! A hash set of variable-length `u64` keys stored back to back in one arena: Lowe's cache
//! holds millions of short bitset keys, and one allocation per key would dominate the search.

/// Open-addressing set of `[u64]` keys.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    /// Keys as `[len, words...]`, back to back.
    arena: Vec<u64>,
    /// Per slot: (32 high bits of the hash, arena offset + 1); 0 offset means empty.
    slots: Vec<(u32, u32)>,
    len: usize,
}

impl KeySet {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.capacity() * 8 + self.slots.capacity() * 8
    }

    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.slots.clear();
        self.len = 0;
    }

    fn hash(key: &[u64]) -> u64 {
        let mut h: u64 = key.len() as u64;
        for &w in key {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        // Final mix so the low bits (the slot index) depend on every word.
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 32)
    }

    /// Whether `key` is in the set.
    pub(crate) fn contains(&self, key: &[u64]) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let h = Self::hash(key);
        let tag = (h >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (t, off) = self.slots[i];
            if off == 0 {
                return false;
            }
            if t == tag {
                let start = off as usize - 1;
                let len = self.arena[start] as usize;
                if &self.arena[start + 1..start + 1 + len] == key {
                    return true;
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Inserts `key`; returns false when it was already there. Panics past 4 G words of keys,
    /// which the memory budget stops long before.
    pub(crate) fn insert(&mut self, key: &[u64]) -> bool {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let h = Self::hash(key);
        let tag = (h >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (t, off) = self.slots[i];
            if off == 0 {
                let offset = self.arena.len() as u32 + 1;
                self.arena.push(key.len() as u64);
                self.arena.extend_from_slice(key);
                self.slots[i] = (tag, offset);
                self.len += 1;
                return true;
            }
            if t == tag {
                let start = off as usize - 1;
                let len = self.arena[start] as usize;
                if &self.arena[start + 1..start + 1 + len] == key {
                    return false;
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(1024);
        let mut slots = vec![(0u32, 0u32); capacity];
        let mask = capacity - 1;
        for &(tag, off) in &self.slots {
            if off == 0 {
                continue;
            }
            let start = off as usize - 1;
            let len = self.arena[start] as usize;
            let mut i = Self::hash(&self.arena[start + 1..start + 1 + len]) as usize & mask;
            while slots[i].1 != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (tag, off);
        }
        self.slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_each_key_once_across_growth() {
        let mut set = KeySet::default();
        for i in 0..5000u64 {
            assert!(set.insert(&[i, i * 7]));
            assert!(set.insert(&[i]));
        }
        for i in 0..5000u64 {
            assert!(!set.insert(&[i, i * 7]));
            assert!(!set.insert(&[i]));
        }
        assert_eq!(set.len(), 10000);
        assert!(set.contains(&[7, 49]) && !set.contains(&[7, 48]));
        assert!(set.insert(&[]));
        assert!(!set.insert(&[]));
    }
}
