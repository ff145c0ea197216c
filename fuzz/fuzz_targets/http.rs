//! The HTTP codec: parse_head never panics and keeps its limits, and a body
//! decodes the same whole or split at a fuzzer-chosen point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::proto::http::{parse_head, write_error, BodyDecoder, BodyKind, HttpLimits};

const LIMITS: HttpLimits = HttpLimits {
    max_head: 4096,
    max_headers: 16,
    max_body: 1 << 16,
};

/// The body, the bytes consumed, done, or the error, from `pieces` in turn.
fn decode(kind: BodyKind, pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), u16> {
    let mut dec = BodyDecoder::new(kind, &LIMITS);
    let (mut body, mut used) = (Vec::new(), 0);
    for p in pieces {
        let n = dec.decode(p, &mut body).map_err(|e| e.status())?;
        assert!(n <= p.len() && body.len() <= LIMITS.max_body);
        used += n;
        if n < p.len() {
            assert!(dec.is_done());
            break;
        }
    }
    Ok((body, used, dec.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    match parse_head(data, &LIMITS) {
        Ok(Some(head)) => {
            assert!(head.head_len <= data.len() && head.head_len <= LIMITS.max_head);
            let rest = &data[head.head_len..];
            let whole = decode(head.body, &[rest]);
            let at = usize::from(split) * rest.len() / 255;
            assert_eq!(decode(head.body, &[&rest[..at], &rest[at..]]), whole);
            if let (BodyKind::Length(n), Ok((body, _, true))) = (head.body, &whole) {
                assert_eq!(body.len() as u64, n);
            }
        }
        Ok(None) => assert!(data.len() < LIMITS.max_head),
        Err(e) => {
            let mut out = Vec::new();
            write_error(&e, &[], &mut out).unwrap();
            assert!(out.starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
        }
    }
});
