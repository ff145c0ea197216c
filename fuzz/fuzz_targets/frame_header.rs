//! The frame header decoder: never panics, and what it decodes re-encodes to
//! the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::proto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, n))) = FrameHeader::decode(data) {
        assert!((2..=MAX_HEADER_LEN).contains(&n));
        let mut out = [0u8; MAX_HEADER_LEN];
        let m = h.encode(&mut out);
        assert_eq!(FrameHeader::decode(&out[..m]), Ok(Some((h, m))));
    }
});
