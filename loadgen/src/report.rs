//! The end-of-run table, `--json` and `--hgrm` outputs.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::Stats;

/// Percentiles shown in the table and the JSON.
pub const PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// The parameters of a run, echoed into the JSON.
pub struct Params {
    /// The target URL.
    pub url: String,
    /// Connections.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// Payload bytes.
    pub size: usize,
    /// "text" or "binary".
    pub kind: &'static str,
    /// Frames per message.
    pub fragments: usize,
    /// Messages in flight per connection (throughput mode).
    pub in_flight: usize,
    /// Target rate (rate mode).
    pub rate: Option<f64>,
    /// Measured window.
    pub duration: Duration,
    /// Warm-up before it.
    pub warmup: Duration,
    /// "pattern" or "json".
    pub payload: &'static str,
    /// permessage-deflate was offered.
    pub deflate: bool,
}

/// One finished run.
pub struct RunResult {
    /// Its parameters.
    pub params: Params,
    /// Merged counts.
    pub stats: Stats,
}

impl RunResult {
    /// Messages per second over the measured window.
    pub fn msgs_per_sec(&self) -> f64 {
        self.stats.messages as f64 / self.params.duration.as_secs_f64()
    }

    /// Payload megabytes (10^6) per second, one way.
    pub fn mb_per_sec(&self) -> f64 {
        self.stats.bytes as f64 / self.params.duration.as_secs_f64() / 1e6
    }
}

fn pct(h: &Histogram<u64>, p: f64) -> u64 {
    if h.is_empty() {
        0
    } else if p >= 100.0 {
        h.max()
    } else {
        h.value_at_quantile(p / 100.0)
    }
}

/// Nanoseconds, human-scaled.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{:.2}us", ns as f64 / 1e3),
        10_000..=9_999_999 => format!("{:.0}us", ns as f64 / 1e3),
        _ => format!("{:.1}ms", ns as f64 / 1e6),
    }
}

/// The final table.
pub fn table(r: &RunResult) -> String {
    let s = &r.stats;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{} connections, {} threads, {} B {} messages{}, {} ({} warm-up)",
        r.params.connections,
        r.params.threads,
        r.params.size,
        r.params.kind,
        match r.params.rate {
            Some(rate) => format!(", open loop at {rate:.0} msg/s"),
            None => format!(", {} in flight per connection", r.params.in_flight),
        },
        humantime(r.params.duration),
        humantime(r.params.warmup),
    );
    let _ = writeln!(t, "  messages/s   {:>12.0}", r.msgs_per_sec());
    let _ = writeln!(
        t,
        "  MB/s         {:>12.2}   (payload, each way)",
        r.mb_per_sec()
    );
    let _ = writeln!(t, "  messages     {:>12}", s.messages);
    let mut rows = Vec::new();
    if r.params.rate.is_some() {
        rows.push(("from intended send", &s.latency));
        rows.push(("from actual send", &s.latency_actual));
    } else {
        rows.push(("round trip", &s.latency));
    }
    rows.push(("connect + handshake", &s.connect));
    t += &latency_rows("latency", &rows);
    if r.params.deflate {
        t += &deflate_line(s);
    }
    t += &errors(s);
    t
}

/// `--deflate`: what the messages took on the wire each way, and how many
/// servers declined.
fn deflate_line(s: &Stats) -> String {
    let per = |plain: u64, wire: u64| {
        if plain == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", wire as f64 / plain as f64)
        }
    };
    let mut t = format!(
        "  wire/payload {:>12}   sent, {} echoes (frame headers included; over the run)\n",
        per(s.plain_out, s.wire_out),
        per(s.plain_in, s.wire_in),
    );
    if s.deflate_declined > 0 {
        let _ = writeln!(
            t,
            "  deflate declined by the server on {} connections: sent uncompressed",
            s.deflate_declined
        );
    }
    t
}

/// Latency rows under a header of [`PERCENTILES`].
pub fn latency_rows(title: &str, rows: &[(&str, &Histogram<u64>)]) -> String {
    let mut t = format!("  {title:<22}");
    for p in PERCENTILES {
        let h = if p >= 100.0 {
            "max".into()
        } else {
            format!("p{p}")
        };
        let _ = write!(t, "{h:>10}");
    }
    t.push('\n');
    for (name, h) in rows {
        let _ = write!(t, "  {name:<22}");
        for p in PERCENTILES {
            let _ = write!(t, "{:>10}", fmt_ns(pct(h, p)));
        }
        t.push('\n');
    }
    t
}

/// The error counts by kind, and the first few messages.
pub fn errors(s: &Stats) -> String {
    let e = &s.errors;
    let kinds: Vec<String> = e
        .by_kind()
        .iter()
        .map(|(name, n)| format!("{} {n}", name.replace('_', " ")))
        .collect();
    let mut t = format!(
        "  errors       {:>12}   ({})\n",
        e.total(),
        kinds.join(", ")
    );
    for m in &s.samples {
        let _ = writeln!(t, "    e.g. {m}");
    }
    t
}

pub(crate) fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// A JSON string literal.
pub(crate) fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub(crate) fn js_hist(h: &Histogram<u64>) -> String {
    let mut o = String::from("{");
    for (i, p) in PERCENTILES.iter().enumerate() {
        let key = if *p >= 100.0 {
            "max".to_string()
        } else {
            format!("p{p}")
        };
        let _ = write!(
            o,
            "{}{}: {}",
            if i > 0 { ", " } else { "" },
            js(&key),
            pct(h, *p)
        );
    }
    let _ = write!(o, ", \"mean\": {:.1}, \"count\": {}}}", h.mean(), h.len());
    o
}

/// The machine the run was made on.
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// The CPU model name.
    pub cpu: String,
    /// Available cores.
    pub cores: usize,
}

impl Machine {
    /// Reads /proc.
    pub fn probe() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        Machine {
            kernel,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The JSON document for `--json`: all runs, their parameters, the machine.
/// Latencies in nanoseconds.
pub fn json(runs: &[RunResult], machine: &Machine) -> String {
    let mut o = String::from("{\n  \"tool\": \"loadgen\",\n");
    let _ = writeln!(o, "  \"version\": {},", js(env!("CARGO_PKG_VERSION")));
    let _ = writeln!(
        o,
        "  \"machine\": {{\"kernel\": {}, \"cpu\": {}, \"cores\": {}}},",
        js(&machine.kernel),
        js(&machine.cpu),
        machine.cores
    );
    o.push_str("  \"runs\": [\n");
    for (i, r) in runs.iter().enumerate() {
        let p = &r.params;
        let s = &r.stats;
        let e = &s.errors;
        let _ = write!(
            o,
            "    {{\"params\": {{\"url\": {}, \"connections\": {}, \"threads\": {}, \"size\": {}, \"kind\": {}, \"fragments\": {}, \"in_flight\": {}, \"rate\": {}, \"duration_s\": {}, \"warmup_s\": {}, \"payload\": {}, \"deflate\": {}}},\n     \"wire\": {{\"plain_out\": {}, \"wire_out\": {}, \"plain_in\": {}, \"wire_in\": {}, \"deflate_declined\": {}}},\n     \"messages\": {}, \"bytes\": {}, \"msgs_per_sec\": {:.1}, \"mb_per_sec\": {:.3}, \"connected\": {},\n     \"latency_ns\": {},\n     \"latency_actual_ns\": {},\n     \"connect_ns\": {},\n     \"errors\": {{\"total\": {}{}}},\n     \"error_samples\": [{}]}}",
            js(&p.url),
            p.connections,
            p.threads,
            p.size,
            js(p.kind),
            p.fragments,
            p.in_flight,
            p.rate.map_or("null".to_string(), |r| format!("{r}")),
            p.duration.as_secs_f64(),
            p.warmup.as_secs_f64(),
            js(p.payload),
            p.deflate,
            s.plain_out,
            s.wire_out,
            s.plain_in,
            s.wire_in,
            s.deflate_declined,
            s.messages,
            s.bytes,
            r.msgs_per_sec(),
            r.mb_per_sec(),
            s.connected,
            js_hist(&s.latency),
            js_hist(&s.latency_actual),
            js_hist(&s.connect),
            e.total(),
            e.by_kind().iter().map(|(k, n)| format!(", {}: {n}", js(k))).collect::<String>(),
            s.samples.iter().map(|m| js(m)).collect::<Vec<_>>().join(", "),
        );
        o.push_str(if i + 1 < runs.len() { ",\n" } else { "\n" });
    }
    o.push_str("  ]\n}\n");
    o
}

/// HdrHistogram's percentile distribution text format (as printed by
/// `outputPercentileDistribution`, values in milliseconds), which common
/// HdrHistogram plotters read.
pub fn hgrm(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1e6; // ns per ms
    let mut o = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if h.is_empty() {
        return o;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / SCALE;
        if q < 1.0 {
            let _ = writeln!(
                o,
                "{value:12.3} {q:2.12} {:10} {:14.2}",
                v.count_since_last_iteration(),
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                o,
                "{value:12.3} {q:2.12} {:10}",
                v.count_since_last_iteration()
            );
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    // HdrHistogram's sub-bucket count: the power of two that holds
    // 2 * 10^significant-digits values.
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2();
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_format() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let out = hgrm(&h);
        let mut lines = out.lines();
        assert!(lines.next().unwrap().trim_start().starts_with("Value"));
        assert_eq!(lines.next(), Some(""));
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        assert!(out.contains("#[Max     =        1.000"));
        assert!(out.contains("SubBuckets     =         2048]"), "{out}");
        // Percentiles rise to 1.
        let qs: Vec<f64> = out
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(qs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*qs.last().unwrap(), 1.0);
    }

    #[test]
    fn json_strings() {
        assert_eq!(js("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
