//! Compress and decompress JSON-like messages of 20 B to 64 KiB with each
//! candidate backend, the way permessage-deflate uses them:
//!
//! * shared: no context takeover, the compressor reset for every message
//!   (one per thread); sync-flushed, the trailing `00 00 ff ff` cut off;
//! * dedicated: context takeover, one compressor kept across a stream of
//!   different messages (zlib-rs and zlib-ng only: libdeflate has no
//!   streaming, so it cannot sync-flush and keep its window).
//!
//! Prints nanoseconds per message (median of rounds) and the ratio
//! (compressed / original) as a Markdown table.

use std::hint::black_box;
use std::time::Instant;

const SIZES: [usize; 7] = [20, 64, 256, 512, 2048, 8192, 65536];
/// Messages per size, cycled (different content, like a real feed).
const KINDS: usize = 64;
const ROUNDS: usize = 7;

/// Messages of about `size` bytes: ticker and chat objects with varying
/// numbers, as a feed or a chat sends.
fn messages(size: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const SYMBOLS: [&str; 6] = [
        "BTC-USD", "ETH-USD", "SOL-USD", "ADA-EUR", "DOT-GBP", "XRP-USD",
    ];
    const WORDS: [&str; 12] = [
        "hello", "anyone", "seen", "the", "release", "notes", "yes", "later", "thanks", "ok",
        "meeting", "now",
    ];
    (0..KINDS)
        .map(|_| {
            let mut m = String::from("[");
            while m.len() < size {
                let r = rnd();
                if r % 3 == 0 {
                    let words: Vec<&str> =
                        (0..3 + r % 6).map(|k| WORDS[((r >> (k * 4)) % 12) as usize]).collect();
                    m.push_str(&format!(
                        "{{\"type\":\"chat\",\"room\":\"general\",\"from\":\"user{}\",\"text\":\"{}\",\"ts\":{}}},",
                        r % 1000,
                        words.join(" "),
                        1_764_633_600_000 + r % 100_000
                    ));
                } else {
                    m.push_str(&format!(
                        "{{\"type\":\"ticker\",\"symbol\":\"{}\",\"price\":\"{}.{:02}\",\"size\":\"0.{:04}\",\"side\":\"{}\",\"seq\":{}}},",
                        SYMBOLS[(r % 6) as usize],
                        20_000 + r % 30_000,
                        r % 100,
                        r % 10_000,
                        if r & 1 == 0 { "buy" } else { "sell" },
                        r % 10_000_000
                    ));
                }
            }
            let mut b = m.into_bytes();
            b.truncate(size);
            b
        })
        .collect()
}

trait Codec {
    fn name(&self) -> &'static str;
    /// Compresses one message into `out` (the deflate bytes of one
    /// permessage-deflate message, trailer cut).
    fn compress(&mut self, m: &[u8], out: &mut Vec<u8>);
    /// Inflates one message (trailer put back) into `out`.
    fn decompress(&mut self, c: &[u8], out: &mut Vec<u8>);
}

struct ZlibRs {
    d: zlib_rs::Deflate,
    i: zlib_rs::Inflate,
    takeover: bool,
}

impl ZlibRs {
    fn new(takeover: bool) -> Self {
        ZlibRs {
            d: zlib_rs::Deflate::new(1, false, 15),
            i: zlib_rs::Inflate::new(false, 15),
            takeover,
        }
    }
}

const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];

impl Codec for ZlibRs {
    fn name(&self) -> &'static str {
        if self.takeover {
            "zlib-rs dedicated"
        } else {
            "zlib-rs shared"
        }
    }
    fn compress(&mut self, m: &[u8], out: &mut Vec<u8>) {
        if !self.takeover {
            self.d.reset();
        }
        out.clear();
        out.reserve(m.len() + 64);
        let mut input = m;
        loop {
            let start_in = self.d.total_in();
            let start_out = self.d.total_out();
            self.d
                .compress_uninit(
                    input,
                    out.spare_capacity_mut(),
                    zlib_rs::DeflateFlush::SyncFlush,
                )
                .unwrap();
            let used = (self.d.total_in() - start_in) as usize;
            let wrote = (self.d.total_out() - start_out) as usize;
            // SAFETY: the compressor initialised the first `wrote` bytes of
            // the spare capacity.
            unsafe { out.set_len(out.len() + wrote) };
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() && out.ends_with(&TRAILER) {
                break;
            }
            out.reserve(64);
        }
        out.truncate(out.len() - 4);
    }
    fn decompress(&mut self, c: &[u8], out: &mut Vec<u8>) {
        if !self.takeover {
            self.i.reset(false);
        }
        out.clear();
        for input in [c, &TRAILER[..]] {
            let mut input = input;
            while !input.is_empty() {
                // Into the spare capacity, as flate2's decompress_vec does
                // for zlib-ng: no zeroing of the output buffer first.
                out.reserve(16384);
                let start_in = self.i.total_in();
                let start_out = self.i.total_out();
                self.i
                    .decompress_uninit(
                        input,
                        out.spare_capacity_mut(),
                        zlib_rs::InflateFlush::SyncFlush,
                    )
                    .unwrap();
                let used = (self.i.total_in() - start_in) as usize;
                let wrote = (self.i.total_out() - start_out) as usize;
                // SAFETY: the inflater initialised the first `wrote` bytes
                // of the spare capacity.
                unsafe { out.set_len(out.len() + wrote) };
                input = &input[used..];
            }
        }
    }
}

struct ZlibNg {
    d: flate2::Compress,
    i: flate2::Decompress,
    takeover: bool,
}

impl ZlibNg {
    fn new(takeover: bool) -> Self {
        ZlibNg {
            d: flate2::Compress::new(flate2::Compression::new(1), false),
            i: flate2::Decompress::new(false),
            takeover,
        }
    }
}

impl Codec for ZlibNg {
    fn name(&self) -> &'static str {
        if self.takeover {
            "zlib-ng dedicated"
        } else {
            "zlib-ng shared"
        }
    }
    fn compress(&mut self, m: &[u8], out: &mut Vec<u8>) {
        if !self.takeover {
            self.d.reset();
        }
        out.clear();
        out.reserve(m.len() + 64);
        let mut input = m;
        loop {
            let before = self.d.total_in();
            self.d
                .compress_vec(input, out, flate2::FlushCompress::Sync)
                .unwrap();
            input = &input[(self.d.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() && out.ends_with(&TRAILER) {
                break;
            }
            out.reserve(64);
        }
        out.truncate(out.len() - 4);
    }
    fn decompress(&mut self, c: &[u8], out: &mut Vec<u8>) {
        if !self.takeover {
            self.i.reset(false);
        }
        out.clear();
        for input in [c, &TRAILER[..]] {
            let mut input = input;
            while !input.is_empty() {
                out.reserve(16384);
                let before = self.i.total_in();
                self.i
                    .decompress_vec(input, out, flate2::FlushDecompress::Sync)
                    .unwrap();
                input = &input[(self.i.total_in() - before) as usize..];
            }
        }
    }
}

struct Libdeflate {
    d: libdeflater::Compressor,
    i: libdeflater::Decompressor,
}

impl Codec for Libdeflate {
    fn name(&self) -> &'static str {
        "libdeflate shared"
    }
    fn compress(&mut self, m: &[u8], out: &mut Vec<u8>) {
        // A whole raw deflate stream ending in a final block: valid without
        // context takeover (the receiver's trailer follows the end).
        out.resize(self.d.deflate_compress_bound(m.len()), 0);
        let n = self.d.deflate_compress(m, out).unwrap();
        out.truncate(n);
    }
    fn decompress(&mut self, c: &[u8], out: &mut Vec<u8>) {
        // libdeflate needs the inflated size or a buffer that holds it.
        out.resize(70_000, 0);
        let n = self.i.deflate_decompress(c, out).unwrap();
        out.truncate(n);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    println!("| size | backend | compress ns/msg | decompress ns/msg | ratio |");
    println!("|---|---|---|---|---|");
    for size in SIZES {
        let msgs = messages(size, size as u64 * 7919);
        let reps = (4_000_000 / size).clamp(200, 100_000) / KINDS + 1;
        let mut codecs: Vec<Box<dyn Codec>> = vec![
            Box::new(ZlibRs::new(false)),
            Box::new(ZlibNg::new(false)),
            Box::new(Libdeflate {
                d: libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap()),
                i: libdeflater::Decompressor::new(),
            }),
            Box::new(ZlibRs::new(true)),
            Box::new(ZlibNg::new(true)),
        ];
        for c in codecs.iter_mut() {
            let (mut out, mut back) = (Vec::new(), Vec::new());
            // Round trip check, and the compressed stream for the
            // decompression timing (in order: takeover needs it).
            let mut compressed = Vec::new();
            let mut total = (0usize, 0usize);
            for m in &msgs {
                c.compress(m, &mut out);
                compressed.push(out.clone());
                total.0 += m.len();
                total.1 += out.len();
            }
            let mut fresh: Box<dyn Codec> = match c.name() {
                "zlib-rs shared" => Box::new(ZlibRs::new(false)),
                "zlib-rs dedicated" => Box::new(ZlibRs::new(true)),
                "zlib-ng shared" => Box::new(ZlibNg::new(false)),
                "zlib-ng dedicated" => Box::new(ZlibNg::new(true)),
                _ => Box::new(Libdeflate {
                    d: libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap()),
                    i: libdeflater::Decompressor::new(),
                }),
            };
            for (m, z) in msgs.iter().zip(&compressed) {
                fresh.decompress(z, &mut back);
                assert_eq!(&back, m, "{} round trip at {size}", c.name());
            }
            let takeover = c.name().ends_with("dedicated");
            let mut ct = Vec::new();
            let mut dt = Vec::new();
            for _ in 0..ROUNDS {
                // Dedicated: a fresh pair per round, so the decompressor
                // sees the stream the compressor made.
                if takeover {
                    *c = match c.name() {
                        "zlib-rs dedicated" => Box::new(ZlibRs::new(true)),
                        _ => Box::new(ZlibNg::new(true)),
                    };
                }
                // Dedicated: the stream is kept (one buffer and its offsets,
                // no allocation per message) for the decompressor.
                let (mut stream, mut ends) = (Vec::new(), Vec::new());
                if takeover {
                    stream.reserve(total.1 * reps + 64);
                    ends.reserve(msgs.len() * reps);
                }
                let t = Instant::now();
                for _ in 0..reps {
                    for m in &msgs {
                        c.compress(black_box(m), &mut out);
                        if takeover {
                            stream.extend_from_slice(&out);
                            ends.push(stream.len());
                        }
                    }
                }
                ct.push(t.elapsed().as_nanos() as f64 / (reps * msgs.len()) as f64);
                let mut d: Box<dyn Codec> = if takeover {
                    match c.name() {
                        "zlib-rs dedicated" => Box::new(ZlibRs::new(true)),
                        _ => Box::new(ZlibNg::new(true)),
                    }
                } else {
                    std::mem::replace(&mut fresh, Box::new(ZlibRs::new(false)))
                };
                let t = Instant::now();
                if takeover {
                    let mut start = 0;
                    for &end in &ends {
                        d.decompress(black_box(&stream[start..end]), &mut back);
                        start = end;
                    }
                } else {
                    for _ in 0..reps {
                        for z in &compressed {
                            d.decompress(black_box(z), &mut back);
                        }
                    }
                }
                dt.push(t.elapsed().as_nanos() as f64 / (reps * msgs.len()) as f64);
                if !takeover {
                    fresh = d;
                }
            }
            println!(
                "| {size} | {} | {:.0} | {:.0} | {:.3} |",
                c.name(),
                median(ct),
                median(dt),
                total.1 as f64 / total.0 as f64
            );
        }
    }
}
