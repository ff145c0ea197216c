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
//! The `offset` argument is the position of `buf[0]` within the frame payload:
//! a payload that arrives in several reads is unmasked piece by piece, and each
//! piece must start at the right byte of the key.

/// The key rotated so that its byte 0 applies to payload position `offset`.
#[inline]
fn phase(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
}

/// The reference implementation, one byte at a time.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// Portable fast path: eight bytes a step through `u64`, no `unsafe`.
pub fn apply_mask_word(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = phase(key, offset);
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        // The conversion compiles to one unaligned load and store.
        let v = u64::from_ne_bytes((&*c).try_into().expect("chunk of 8")) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // Chunks are multiples of 4 long, so the tail starts at key phase 0 of `k`.
    apply_mask_scalar(chunks.into_remainder(), k, 0);
}

/// Unmasks (or masks: the operation is its own inverse) `buf` in place.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < 16 {
        apply_mask_scalar(buf, key, offset);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if buf.len() >= 64 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            unsafe { x86::avx2(buf, phase(key, offset)) };
        } else {
            // SAFETY: SSE2 is part of the x86_64 baseline.
            unsafe { x86::sse2(buf, phase(key, offset)) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { arm::neon(buf, phase(key, offset)) };
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    apply_mask_word(buf, key, offset);
}

/// The SSE2 path, exposed for tests and benchmarks.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe { x86::sse2(buf, phase(key, offset)) }
}

/// The AVX2 path, exposed for tests and benchmarks. Falls back to SSE2 on CPUs
/// without AVX2, and says so with `false`.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) -> bool {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
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
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { arm::neon(buf, phase(key, offset)) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support SSE2 (always true on x86_64).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn sse2(buf: &mut [u8], k: [u8; 4]) {
        let key = i32::from_ne_bytes(k);
        let kv = _mm_set1_epi32(key);
        let mut chunks = buf.chunks_exact_mut(16);
        for c in &mut chunks {
            let p = c.as_mut_ptr() as *mut __m128i;
            // SAFETY: `c` is 16 bytes long and exclusively borrowed; the
            // unaligned load and store are valid for any address.
            unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), kv)) };
        }
        // 16 is a multiple of 4: the tail starts at key phase 0.
        super::apply_mask_word(chunks.into_remainder(), k, 0);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(buf: &mut [u8], k: [u8; 4]) {
        let key = i32::from_ne_bytes(k);
        let kv = _mm256_set1_epi32(key);
        let mut chunks = buf.chunks_exact_mut(32);
        for c in &mut chunks {
            let p = c.as_mut_ptr() as *mut __m256i;
            // SAFETY: `c` is 32 bytes long and exclusively borrowed; the
            // unaligned load and store are valid for any address.
            unsafe { _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), kv)) };
        }
        // 32 is a multiple of 4: the tail starts at key phase 0.
        super::apply_mask_word(chunks.into_remainder(), k, 0);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    /// # Safety
    /// The CPU must support NEON (always true on aarch64).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn neon(buf: &mut [u8], k: [u8; 4]) {
        let kv = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(k)));
        let mut chunks = buf.chunks_exact_mut(16);
        for c in &mut chunks {
            let p = c.as_mut_ptr();
            // SAFETY: `c` is 16 bytes long and exclusively borrowed; vld1q/vst1q
            // have no alignment requirement for u8 lanes.
            unsafe { vst1q_u8(p, veorq_u8(vld1q_u8(p), kv)) };
        }
        super::apply_mask_word(chunks.into_remainder(), k, 0);
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
