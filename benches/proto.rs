//! Micro-benchmarks of the protocol core, no I/O: masking (scalar reference
//! against the SIMD paths), UTF-8 validation (ours against std), frame
//! header decoding, handshake parsing, and a whole echo through the core.
//!
//! `cargo bench --bench proto`; `-- mask` and so on to pick a group.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws::proto::frame::FrameHeader;
use ringws::proto::handshake::{parse_request, HandshakeLimits};
use ringws::proto::mask;
use ringws::proto::utf8::{self, Utf8Validator};
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};

const SIZES: [usize; 6] = [16, 64, 1024, 16 << 10, 64 << 10, 1 << 20];

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    let key = [0x12, 0x34, 0x56, 0x78];
    for size in SIZES {
        let mut buf = vec![0xA5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("scalar", size), &size, |b, _| {
            b.iter(|| mask::apply_mask_scalar(black_box(&mut buf), key, 0))
        });
        g.bench_with_input(BenchmarkId::new("word", size), &size, |b, _| {
            b.iter(|| mask::apply_mask_word(black_box(&mut buf), key, 0))
        });
        g.bench_with_input(BenchmarkId::new("dispatch", size), &size, |b, _| {
            b.iter(|| mask::apply_mask(black_box(&mut buf), key, 0))
        });
        #[cfg(target_arch = "x86_64")]
        {
            g.bench_with_input(BenchmarkId::new("sse2", size), &size, |b, _| {
                b.iter(|| mask::apply_mask_sse2(black_box(&mut buf), key, 0))
            });
            g.bench_with_input(BenchmarkId::new("avx2", size), &size, |b, _| {
                b.iter(|| mask::apply_mask_avx2(black_box(&mut buf), key, 0))
            });
        }
    }
    g.finish();
}

fn utf8_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (name, unit) in [("ascii", "hello world "), ("mixed", "κόσμε héllo 世界 ")] {
        for size in [64usize, 4096, 64 << 10] {
            let text: Vec<u8> = unit.as_bytes().iter().copied().cycle().take(size).collect();
            // Cut on a character boundary, so every input is valid.
            let text = String::from_utf8_lossy(&text).into_owned().into_bytes();
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("std/{name}"), size),
                &text,
                |b, t| b.iter(|| std::str::from_utf8(black_box(t)).is_ok()),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("whole/{name}"), size),
                &text,
                |b, t| b.iter(|| utf8::validate(black_box(t)).is_ok()),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("streaming-4-pieces/{name}"), size),
                &text,
                |b, t| {
                    b.iter(|| {
                        let mut v = Utf8Validator::default();
                        let q = t.len() / 4;
                        for piece in [&t[..q], &t[q..2 * q], &t[2 * q..3 * q], &t[3 * q..]] {
                            v.feed(black_box(piece)).unwrap();
                        }
                        v.finish().is_ok()
                    })
                },
            );
        }
    }
    g.finish();
}

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    let cases: [(&str, &[u8]); 3] = [
        ("7-bit", b"\x81\x94\x01\x02\x03\x04"),
        ("16-bit", b"\x82\xFE\x40\x00\x01\x02\x03\x04"),
        (
            "64-bit",
            b"\x82\xFF\x00\x00\x00\x00\x00\x10\x00\x00\x01\x02\x03\x04",
        ),
    ];
    for (name, bytes) in cases {
        g.bench_function(name, |b| b.iter(|| FrameHeader::decode(black_box(bytes))));
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\nUser-Agent: bench\r\n\r\n";
    c.bench_function("handshake/parse_and_respond", |b| {
        b.iter(|| {
            let a = parse_request(black_box(req), HandshakeLimits::default())
                .unwrap()
                .unwrap();
            a.response()
        })
    });
}

/// A masked client frame carrying `payload`.
fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut c = Connection::client(Limits::default(), 99);
    let mut out = Vec::new();
    let kind = if op == 1 {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    c.write_message(kind, payload, &mut out).unwrap();
    out
}

fn echo_through_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo");
    for (name, op, size) in [
        ("binary-20B", 2u8, 20usize),
        ("text-20B", 1, 20),
        ("binary-16KiB", 2, 16 << 10),
        ("text-16KiB", 1, 16 << 10),
    ] {
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let wire = client_frame(op, &payload);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(name, |b| {
            let mut conn = Connection::server(Limits::default());
            let mut input = wire.clone();
            let mut out = Vec::with_capacity(64);
            let now = Instant::now();
            b.iter(|| {
                // Each iteration decodes a fresh copy: unmasking is in place.
                input.copy_from_slice(&wire);
                out.clear();
                let (n, ev) = conn.read(black_box(&mut input), now);
                let Ok(Some(Event::Message {
                    kind,
                    payload: Payload::Input(r),
                })) = ev
                else {
                    panic!("a whole message");
                };
                conn.send_message(kind, r.len() as u64, &mut out).unwrap();
                black_box((n, &input[r], &out));
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    masking,
    utf8_validation,
    frame_header,
    handshake,
    echo_through_core
);
criterion_main!(benches);
