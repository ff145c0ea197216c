//! Streaming UTF-8 validation that fails fast.
//!
//! A text message arrives in pieces: several frames, each split across reads.
//! RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
//! finds that the byte stream is not, in fact, a valid UTF-8 stream, that
//! endpoint MUST _Fail the WebSocket Connection_." Autobahn 6.4.x checks that
//! this happens as soon as the bad bytes arrive, not when the frame or message
//! ends, so [`Utf8Validator::feed`] judges every piece on arrival and keeps only
//! the at most three bytes of a code point cut by a piece boundary.
//!
//! The bulk of each piece goes through simdutf8's SIMD validator; only on error
//! does the `compat` validator run, to tell a truly invalid sequence from one
//! that is merely incomplete. Its `error_len() == None` means "a valid prefix
//! that the end of input cut short", exactly like `std::str::from_utf8`, so a
//! prefix that can never become valid (such as `F4 90`) is rejected at once.

/// Invalid UTF-8 was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

/// Validates a byte stream piece by piece. `Default` starts empty.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of a code point cut by the end of the last piece.
    carry: [u8; 4],
    carry_len: u8,
}

/// Length of the sequence a valid lead byte starts.
#[inline]
fn seq_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Below this many bytes simdutf8 does no SIMD work: it hands the input to
/// `std::str::from_utf8` (its `SIMD_CHUNK_SIZE`).
const SHORT: usize = 64;

/// Is `b` (shorter than [`SHORT`]) all ASCII? One OR of 8-byte words, the
/// last one overlapping the one before, and a test of their high bits: 3
/// loads for 20 bytes. `std::str::from_utf8` took about 80 instructions
/// for 20 bytes and `<[u8]>::is_ascii` 37, not inlined (callgrind).
#[inline]
fn short_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    if n < 8 {
        return b.iter().fold(0, |acc, &x| acc | x) < 0x80;
    }
    let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let mut acc = word(n - 8);
    let mut i = 0;
    while i + 8 < n {
        acc |= word(i);
        i += 8;
    }
    acc & HIGH == 0
}

/// Validates a whole buffer in one go (a text message that arrived complete).
///
/// Short ASCII text, the usual small message, is settled by
/// `short_ascii`: simdutf8 would pass it to `std::str::from_utf8`.
/// Anything else takes simdutf8.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<(), Utf8Error> {
    if bytes.len() < SHORT && short_ascii(bytes) {
        return Ok(());
    }
    validate_simd(bytes)
}

/// [`validate`]'s general case, out of line so that the short check
/// inlines into its callers.
#[inline(never)]
fn validate_simd(bytes: &[u8]) -> Result<(), Utf8Error> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| Utf8Error)
}

/// `bytes` as text, without a second validation: for text this module has
/// already judged valid.
///
/// # Safety
/// `bytes` must be valid UTF-8: exactly the bytes [`validate`] or a
/// [`Utf8Validator`] (through [`Utf8Validator::finish`]) accepted, not
/// changed since.
#[inline]
pub(crate) unsafe fn assume_valid(bytes: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: the caller guarantees the bytes were validated as UTF-8 and
    // have not changed since.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// [`assume_valid`] for a message reassembled into its own vector.
///
/// # Safety
/// As for [`assume_valid`].
#[inline]
pub(crate) unsafe fn assume_valid_owned(bytes: Vec<u8>) -> String {
    debug_assert!(std::str::from_utf8(&bytes).is_ok());
    // SAFETY: as above, the caller guarantees the bytes are valid UTF-8.
    unsafe { String::from_utf8_unchecked(bytes) }
}

impl Utf8Validator {
    /// Feeds the next piece of the stream. Fails as soon as the bytes seen so
    /// far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Utf8Error> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = seq_len(self.carry[0]) - have;
            let take = need.min(piece.len());
            self.carry[have..have + take].copy_from_slice(&piece[..take]);
            let now = have + take;
            piece = &piece[take..];
            match simdutf8::compat::from_utf8(&self.carry[..now]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix, so the piece was too short to
                    // complete it (take < need) and is used up.
                    self.carry_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        if simdutf8::basic::from_utf8(piece).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the stream: a code point left incomplete is an error. Resets the
    /// validator for the next message either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.carry_len > 0;
        self.carry_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }

    /// Forgets any carried bytes.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` split at every pair of points and compares the verdict,
    /// and the point of failure, with std's.
    fn check_all_splits(bytes: &[u8]) {
        let want = std::str::from_utf8(bytes);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::default();
                let r = v
                    .feed(&bytes[..a])
                    .and_then(|_| v.feed(&bytes[a..b]))
                    .and_then(|_| v.feed(&bytes[b..]))
                    .and_then(|_| v.finish());
                assert_eq!(r.is_ok(), want.is_ok(), "{bytes:x?} split {a} {b}");
            }
        }
    }

    #[test]
    fn matches_std_for_all_splits() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "\u{10FFFF}\u{7FF}\u{FFFF}a".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", // surrogate
            b"\xf4\x90\x80\x80",                                               // > U+10FFFF
            b"\xc0\xaf",                                                       // overlong
            b"\xe0\x80\xaf",
            b"\x80",
            b"ab\xf0\x9f\x98",           // truncated at the end
            b"\xf0\x9f\x98\x80\xff",     // 0xFF never valid
            b"\xed\x9f\xbf\xee\x80\x80", // around the surrogates, valid
        ];
        for c in cases {
            check_all_splits(c);
        }
    }

    /// `validate` (with its short ASCII path) against std, over every
    /// length around the short limit, every alignment, and one non-ASCII
    /// byte (valid in a pair, or invalid alone) at every position.
    #[test]
    fn validate_matches_std_over_lengths_alignments_and_positions() {
        let mut buf = vec![b'a'; 3 * SHORT + 16];
        for align in 0..8 {
            for len in 0..=2 * SHORT + 1 {
                let region = align..align + len;
                assert_eq!(
                    validate(&buf[region.clone()]),
                    Ok(()),
                    "ascii {align} {len}"
                );
                for at in 0..len {
                    for bad in [&b"\x80"[..], &b"\xff"[..], "é".as_bytes(), &b"\x7f"[..]] {
                        let end = (at + bad.len()).min(len);
                        let saved = buf[align + at..align + end].to_vec();
                        buf[align + at..align + end].copy_from_slice(&bad[..end - at]);
                        let s = &buf[region.clone()];
                        assert_eq!(
                            validate(s).is_ok(),
                            std::str::from_utf8(s).is_ok(),
                            "{align} {len} {at} {bad:x?}"
                        );
                        buf[align + at..align + end].copy_from_slice(&saved);
                    }
                }
            }
        }
    }

    #[test]
    fn fails_fast_before_the_message_ends() {
        // Autobahn 6.4.1: the code point F4 90 80 80 is invalid at its second byte.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));

        // A bad byte inside one piece fails that piece.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"abc\xffdef"), Err(Utf8Error));

        // A truncated lead followed by ASCII fails when the ASCII arrives.
        let mut v = Utf8Validator::default();
        v.feed(b"\xe2\x82").unwrap();
        assert_eq!(v.feed(b"x"), Err(Utf8Error));
    }

    #[test]
    fn incomplete_at_finish_is_an_error() {
        let mut v = Utf8Validator::default();
        v.feed(b"\xe2\x82").unwrap();
        assert_eq!(v.finish(), Err(Utf8Error));
        // finish resets.
        assert_eq!(v.finish(), Ok(()));
    }
}
