//! The open-addressing table behind group ids: what a hash aggregation
//! spends most of its time probing when groups are nearly as many as rows.
//!
//! A slot is one `u64`: 32 bits of the key's hash (the tag) and the group
//! id plus one (0 marks an empty slot). Probing is linear from a position
//! taken from the tag, so the table regrows from its own slots (no key is
//! rehashed or even read), and a probe reads a key only when tags match.
//! The table stays at most half full. Callers hash a whole batch first and
//! [`SlotTable::prefetch`] a few rows ahead: with millions of groups nearly
//! every probe would otherwise wait on a cache miss.

/// Bytes per slot.
const SLOT: usize = std::mem::size_of::<u64>();
/// Slots of the first allocation.
const MIN_SLOTS: usize = 64;

#[derive(Default)]
pub struct SlotTable {
    slots: Vec<u64>,
    /// log2 of the slot count (0 while unallocated).
    bits: u32,
    len: usize,
}

/// The tag of a 64-bit key hash.
#[inline]
pub fn tag_of(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn size(&self) -> usize {
        self.slots.capacity() * SLOT
    }

    /// Heap bytes held at the moment the table grows to hold `groups`,
    /// when the old and the new slots are both alive.
    pub fn size_for(&self, groups: usize) -> usize {
        let mut slots = self.slots.len();
        if 2 * groups <= slots {
            return self.size();
        }
        let old = slots;
        slots = slots.max(MIN_SLOTS);
        while 2 * groups > slots {
            slots *= 2;
        }
        (old + slots) * SLOT
    }

    /// Fibonacci hashing of the tag: the top `bits` bits of its product.
    #[inline]
    fn position(&self, tag: u32) -> usize {
        ((tag as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    /// Starts loading the slot a probe for `tag` will read first.
    #[inline]
    pub fn prefetch(&self, tag: u32) {
        if self.bits == 0 {
            return;
        }
        let slot: *const u64 = &self.slots[self.position(tag)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it neither faults nor changes memory.
        unsafe {
            std::arch::x86_64::_mm_prefetch(slot as *const i8, std::arch::x86_64::_MM_HINT_T0)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// The group whose key has `tag` and satisfies `same` (given a group
    /// id, whether that group's key is the probe's), or a new group id
    /// (`len()` before the call) with `true`.
    #[inline]
    pub fn find_or_insert(&mut self, tag: u32, mut same: impl FnMut(u32) -> bool) -> (u32, bool) {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut p = self.position(tag);
        loop {
            let slot = self.slots[p];
            if slot == 0 {
                let group = self.len as u32;
                self.slots[p] = (tag as u64) << 32 | (group as u64 + 1);
                self.len += 1;
                return (group, true);
            }
            if (slot >> 32) as u32 == tag {
                let group = (slot as u32).wrapping_sub(1);
                if same(group) {
                    return (group, false);
                }
            }
            p = (p + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let slots = (2 * self.slots.len()).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        self.bits = slots.trailing_zeros();
        let mask = slots - 1;
        for slot in old.into_iter().filter(|s| *s != 0) {
            let mut p = self.position((slot >> 32) as u32);
            while self.slots[p] != 0 {
                p = (p + 1) & mask;
            }
            self.slots[p] = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_inserted_through_growth_and_tag_collisions() {
        let mut t = SlotTable::default();
        // Keys 0..10_000 with only 97 distinct tags: most probes meet tags
        // of other keys and must ask `same`.
        let tag = |k: u32| k % 97;
        for k in 0..10_000u32 {
            assert_eq!(t.find_or_insert(tag(k), |g| g == k), (k, true));
        }
        for k in (0..10_000u32).rev() {
            t.prefetch(tag(k));
            assert_eq!(t.find_or_insert(tag(k), |g| g == k), (k, false));
        }
        assert_eq!(t.len(), 10_000);
        assert!(t.size() >= 2 * 10_000 * SLOT);
        assert_eq!(t.size_for(10), t.size(), "no growth needed");
        assert!(t.size_for(t.slots.len()) > t.size());
    }
}
