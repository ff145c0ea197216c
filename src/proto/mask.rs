//! Masking and unmasking of frame payloads (RFC 6455 section 5.3).
//!
//! `j = i MOD 4; transformed-octet-i = original-octet-i XOR masking-key-octet-j`
//!
//! [`apply_mask`] picks the widest implementation the CPU has at run time:
//! AVX2 (32 bytes a step) or SSE2 (16) on x86_64, NEON (16) on aarch64, and a
//! portable 8-bytes-a-step loop elsewhere. [`apply_mask_scalar`] is the plain
//! reference every fast path is tested against, over all lengths 0..=256, every
//! alignment of the buffer and every phase of the key.
//!
//! No path has a loop over the tail. A payload shorter than one step, or
//! the bytes after the last whole step, are masked with two overlapping
//! words (or vectors) covering the first and the last bytes: both are loaded
//! before either is stored, so every byte is masked once from its original
//! value whichever store lands on it. Messages are mostly short, and a
//! 20-byte message took about 84 instructions through a 16-byte step and a
//! byte loop over the rest.
//!
//! The `offset` argument is the position of `buf[0]` within the frame payload:
//! a payload that arrives in several reads is unmasked piece by piece, and each
//! piece must start at the right byte of the key.

/// The key as a little-endian word, rotated so that its low byte applies to
/// payload position `offset`. The key repeats every four bytes, so the key
/// of any later position `p` is this rotated by `8 * (p - offset)` bits.
#[inline]
fn phase(key: [u8; 4], offset: usize) -> u32 {
    u32::from_le_bytes(key).rotate_right(8 * (offset as u32 & 3))
}

/// The reference implementation, one byte at a time.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// Masks fewer than 16 bytes with the phased key `k` (see [`phase`]): two
/// overlapping words, or single bytes below four.
#[inline]
fn mask_short(buf: &mut [u8], k: u32) {
    let n = buf.len();
    debug_assert!(n < 16);
    // The word at `n - w` starts at key phase `(n - w) & 3`, which is
    // `n & 3` for `w` 4 and 8.
    let r = 8 * (n as u32 & 3);
    if n >= 8 {
        let k8 = u64::from(k) | u64::from(k) << 32;
        let a = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(buf[n - 8..].try_into().expect("8 bytes"));
        buf[n - 8..].copy_from_slice(&(b ^ k8.rotate_right(r)).to_le_bytes());
        buf[..8].copy_from_slice(&(a ^ k8).to_le_bytes());
    } else if n >= 4 {
        let a = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
        let b = u32::from_le_bytes(buf[n - 4..].try_into().expect("4 bytes"));
        buf[n - 4..].copy_from_slice(&(b ^ k.rotate_right(r)).to_le_bytes());
        buf[..4].copy_from_slice(&(a ^ k).to_le_bytes());
    } else {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= (k >> (8 * i)) as u8;
        }
    }
}

/// Portable fast path: eight bytes a step through `u64`, no `unsafe`.
pub fn apply_mask_word(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = phase(key, offset);
    let k8 = u64::from(k) | u64::from(k) << 32;
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        // The conversion compiles to one unaligned load and store.
        let v = u64::from_le_bytes((&*c).try_into().expect("chunk of 8")) ^ k8;
        c.copy_from_slice(&v.to_le_bytes());
    }
    // Chunks are 8 bytes long, so the tail starts at key phase 0 of `k8`.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= (k8 >> (8 * i)) as u8;
    }
}

/// Unmasks (or masks: the operation is its own inverse) `buf` in place.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = phase(key, offset);
    if buf.len() < 16 {
        mask_short(buf, k);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if buf.len() >= 64 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above, and
            // `buf` is at least 32 bytes long.
            unsafe { x86::avx2(buf, k) };
        } else {
            // SAFETY: SSE2 is part of the x86_64 baseline; `buf` is at
            // least 16 bytes long.
            unsafe { x86::sse2(buf, k) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is part of the aarch64 baseline; `buf` is at least 16
        // bytes long.
        unsafe { arm::neon(buf, k) };
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    apply_mask_word(buf, key, offset);
}

/// The SSE2 path, exposed for tests and benchmarks.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < 16 {
        return mask_short(buf, phase(key, offset));
    }
    // SAFETY: SSE2 is part of the x86_64 baseline; `buf` is at least 16
    // bytes long.
    unsafe { x86::sse2(buf, phase(key, offset)) }
}

/// The AVX2 path, exposed for tests and benchmarks. Falls back to SSE2 on CPUs
/// without AVX2, and says so with `false`.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) -> bool {
    if buf.len() < 32 {
        apply_mask_sse2(buf, key, offset);
        return std::is_x86_feature_detected!("avx2");
    }
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above, and
        // `buf` is at least 32 bytes long.
        unsafe { x86::avx2(buf, phase(key, offset)) };
        true
    } else {
        apply_mask_sse2(buf, key, offset);
        false
    }
}

/// The NEON path, exposed for tests and benchmarks.
#[cfg(target_arch = "aarch64")]
pub fn apply_mask_neon(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < 16 {
        return mask_short(buf, phase(key, offset));
    }
    // SAFETY: NEON is part of the aarch64 baseline; `buf` is at least 16
    // bytes long.
    unsafe { arm::neon(buf, phase(key, offset)) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support SSE2 (always true on x86_64), and `buf` must be
    /// at least 16 bytes long.
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn sse2(buf: &mut [u8], k: u32) {
        let n = buf.len();
        debug_assert!(n >= 16);
        let p = buf.as_mut_ptr();
        // x86 is little-endian: lane bytes are the key's in order.
        let kv = _mm_set1_epi32(k as i32);
        // SAFETY: `n >= 16`, so `p + n - 16 .. p + n` lies inside `buf`,
        // which is exclusively borrowed; unaligned loads and stores are
        // valid at any address. The last 16 bytes are masked from their
        // original value here, before the loop below changes any of them,
        // and stored after it (see the module's comment).
        unsafe {
            let last = _mm_loadu_si128(p.add(n - 16) as *const __m128i);
            let last = _mm_xor_si128(
                last,
                _mm_set1_epi32(k.rotate_right(8 * (n as u32 & 3)) as i32),
            );
            let mut i = 0;
            while i + 16 <= n {
                let q = p.add(i) as *mut __m128i;
                _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), kv));
                i += 16;
            }
            _mm_storeu_si128(p.add(n - 16) as *mut __m128i, last);
        }
    }

    /// # Safety
    /// The CPU must support AVX2, and `buf` must be at least 32 bytes long.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(buf: &mut [u8], k: u32) {
        let n = buf.len();
        debug_assert!(n >= 32);
        let p = buf.as_mut_ptr();
        let kv = _mm256_set1_epi32(k as i32);
        // SAFETY: as in `sse2`, with 32-byte steps and `n >= 32`.
        unsafe {
            let last = _mm256_loadu_si256(p.add(n - 32) as *const __m256i);
            let last = _mm256_xor_si256(
                last,
                _mm256_set1_epi32(k.rotate_right(8 * (n as u32 & 3)) as i32),
            );
            let mut i = 0;
            while i + 32 <= n {
                let q = p.add(i) as *mut __m256i;
                _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), kv));
                i += 32;
            }
            _mm256_storeu_si256(p.add(n - 32) as *mut __m256i, last);
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    /// # Safety
    /// The CPU must support NEON (always true on aarch64), and `buf` must be
    /// at least 16 bytes long.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn neon(buf: &mut [u8], k: u32) {
        let n = buf.len();
        debug_assert!(n >= 16);
        let p = buf.as_mut_ptr();
        // Lanes hold the key's bytes in memory order on either endianness.
        let lane = |k: u32| vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(k.to_le_bytes())));
        let kv = lane(k);
        // SAFETY: as in the x86 `sse2`: `p + n - 16 .. p + n` lies inside
        // `buf`, exclusively borrowed; vld1q/vst1q have no alignment
        // requirement for u8 lanes.
        unsafe {
            let last = veorq_u8(
                vld1q_u8(p.add(n - 16)),
                lane(k.rotate_right(8 * (n as u32 & 3))),
            );
            let mut i = 0;
            while i + 16 <= n {
                let q = p.add(i);
                vst1q_u8(q, veorq_u8(vld1q_u8(q), kv));
                i += 16;
            }
            vst1q_u8(p.add(n - 16), last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type MaskFn = fn(&mut [u8], [u8; 4], usize);

    fn fast_paths() -> Vec<(&'static str, MaskFn)> {
        #[allow(unused_mut, reason = "mutated only on x86_64 and aarch64")]
        let mut v: Vec<(&'static str, MaskFn)> =
            vec![("dispatch", apply_mask), ("word", apply_mask_word)];
        #[cfg(target_arch = "x86_64")]
        {
            v.push(("sse2", apply_mask_sse2));
            v.push(("avx2", |b, k, o| {
                apply_mask_avx2(b, k, o);
            }));
        }
        #[cfg(target_arch = "aarch64")]
        v.push(("neon", apply_mask_neon));
        v
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
        let mut b = *b"Hello";
        apply_mask(&mut b, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(b, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn fast_paths_match_reference_every_length_alignment_and_phase() {
        let key = [0x12, 0x9a, 0xe7, 0x41];
        let src: Vec<u8> = (0..256 + 64).map(|i| (i * 7 + 3) as u8).collect();
        for (name, f) in fast_paths() {
            for len in 0..=256 {
                for align in 0..32 {
                    for off in 0..4 {
                        let mut want = src[align..align + len].to_vec();
                        apply_mask_scalar(&mut want, key, off);
                        let mut backing = src.clone();
                        f(&mut backing[align..align + len], key, off);
                        assert_eq!(
                            &backing[align..align + len],
                            &want[..],
                            "{name} len={len} align={align} offset={off}"
                        );
                        // Bytes around the slice are untouched.
                        assert_eq!(&backing[..align], &src[..align], "{name} prefix");
                        assert_eq!(
                            &backing[align + len..],
                            &src[align + len..],
                            "{name} suffix"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole, "split at {split}");
        }
    }
}
