//! Which keys and record ids an upload has brought so far in this run, for applying a list to
//! an organisation whose replica DB was empty when the run took it up (its first, largest
//! load): then a key or record id the list has not brought before cannot be registered yet,
//! and the look-up of existing rows is left out for it.
//!
//! A Bloom filter over the 64-bit fingerprints the producer already takes: its "not brought
//! before" is certain; its "maybe" is wrong now and then, which only costs that entry the
//! look-up it would have had anyway. Its size follows the upload's entries, within bounds, so
//! a very large list degrades towards looking every entry up rather than towards memory.

/// Bits per value held (two values, key and record id, per entry).
const BITS_PER_VALUE: usize = 16;
/// Bits set and tested per value: about 0.1 % wrong "maybe"s at 16 bits per value.
const PROBES: u64 = 6;
const MIN_BITS: usize = 1 << 16;
/// 64 MiB.
const MAX_BITS: usize = 1 << 29;

pub struct SeenBefore {
    words: Vec<u64>,
    /// Number of bits − 1 (a power of two).
    mask: u64,
}

impl SeenBefore {
    /// Room for an upload of `entries` entries.
    pub fn for_entries(entries: usize) -> Self {
        let bits = entries
            .saturating_mul(2 * BITS_PER_VALUE)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two();
        SeenBefore {
            words: vec![0; bits / 64],
            mask: bits as u64 - 1,
        }
    }

    /// Adds a fingerprint; false when it was certainly not added before.
    pub fn check_and_add(&mut self, fingerprint: u64) -> bool {
        // Double hashing: the probes step through the filter by the fingerprint's other half.
        let first = fingerprint & 0xffff_ffff;
        let step = (fingerprint >> 32) | 1;
        let mut before = true;
        for i in 0..PROBES {
            let bit = first.wrapping_add(i.wrapping_mul(step)) & self.mask;
            let (word, mask) = ((bit >> 6) as usize, 1u64 << (bit & 63));
            if let Some(w) = self.words.get_mut(word)
                && *w & mask == 0
            {
                before = false;
                *w |= mask;
            }
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher as _, RandomState};

    use super::*;

    #[test]
    fn what_was_added_is_always_seen_and_little_else_is() {
        let hasher = RandomState::new();
        let mut seen = SeenBefore::for_entries(50_000);
        for i in 0..100_000u32 {
            seen.check_and_add(hasher.hash_one(("added", i)));
        }
        for i in 0..100_000u32 {
            assert!(seen.check_and_add(hasher.hash_one(("added", i))), "{i}");
        }
        let wrong = (0..100_000u32)
            .filter(|i| seen.check_and_add(hasher.hash_one(("other", *i))))
            .count();
        // About 0.1 % at the intended load; well under 1 % whatever the hash draws.
        assert!(
            wrong < 1_000,
            "{wrong} of 100000 values never added were 'maybe'"
        );
    }
}
