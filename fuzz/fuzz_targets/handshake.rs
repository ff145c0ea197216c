//! The handshake parser: never panics, needs-more is stable under more input
//! only until the limit, and an accepted head lies inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::proto::handshake::{parse_request, refusal, HandshakeLimits};

fuzz_target!(|data: &[u8]| {
    let limits = HandshakeLimits {
        max_head: 4096,
        max_headers: 16,
    };
    match parse_request(data, limits) {
        Ok(Some(a)) => {
            assert!(a.head_len <= data.len() && a.head_len <= 4096);
            assert!(a.response().starts_with(b"HTTP/1.1 101 "));
        }
        Ok(None) => assert!(data.len() < 4096),
        Err(e) => {
            let r = refusal(e);
            assert!(r.starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
        }
    }
});
