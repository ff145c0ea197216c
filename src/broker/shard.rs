//! Which Redis instance carries a topic, when several are given: a
//! rendezvous (highest random weight) hash of the topic and each
//! instance's name. Every node given the same instances picks the same one
//! for a topic with no coordination, and adding or removing an instance
//! moves only the topics that instance gains or loses.
//!
//! The hash is written out here (FNV-1a, then a SplitMix64 finaliser) rather
//! than taken from `std`, whose hasher may change between Rust releases:
//! nodes built by different compilers must still agree.

/// The 64-bit FNV-1a hash of `parts`, with a separator between them, mixed
/// by SplitMix64's finaliser (FNV's low bits alone are poorly spread).
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The instance (an index into `names`) that carries `topic`.
pub(crate) fn pick(names: &[String], topic: &str) -> usize {
    if names.len() <= 1 {
        return 0;
    }
    let mut best = (0u64, 0usize);
    for (i, n) in names.iter().enumerate() {
        let w = hash(&[n.as_bytes(), topic.as_bytes()]);
        if i == 0 || w > best.0 {
            best = (w, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 6379 + i)).collect()
    }

    #[test]
    fn spreads_evenly_and_moves_little() {
        let two = names(2);
        let three = names(3);
        let topics: Vec<String> = (0..30_000).map(|i| format!("room-{i}")).collect();
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for t in &topics {
            let a = pick(&two, t);
            let b = pick(&three, t);
            counts[b] += 1;
            if a != b {
                // A topic only ever moves to the new instance.
                assert_eq!(b, 2);
                moved += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert!((9_000..11_000).contains(&moved), "{moved}");
    }

    #[test]
    fn is_stable_across_builds() {
        // Fixed values: a change of hash would split nodes of two builds.
        assert_eq!(pick(&names(4), "news"), pick(&names(4), "news"));
        let got: Vec<usize> = ["a", "b", "news", "room-1", ""]
            .iter()
            .map(|t| pick(&names(4), t))
            .collect();
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [usize; 5] = [2, 2, 2, 3, 0];
}
