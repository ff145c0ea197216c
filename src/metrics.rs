//! The Prometheus text exposition format (version 0.0.4) and the process
//! metrics every exporter reports.
//!
//! `/metrics` is built at scrape time from counters the workers keep for
//! themselves, so nothing here runs on the per-message path. The writer
//! appends to one buffer reserved up front and formats numbers in place:
//! a scrape is a handful of syscalls for `ProcessStats::read` and one
//! allocation for the text.
//!
//! The format, in the shape [`Exposition`] writes it:
//!
//! ```text
//! # HELP ringws_messages_received_total Messages received, all workers.
//! # TYPE ringws_messages_received_total counter
//! ringws_messages_received_total{opcode="text"} 1027
//! ringws_messages_received_total{opcode="binary"} 12
//! ```
//!
//! The response's `Content-Type` is `text/plain; version=0.0.4;
//! charset=utf-8`.
//!
//! A counter's family is named with its `_total` suffix, like its samples:
//! in 0.0.4 text a sample belongs to the family in the `# TYPE` line above
//! it only if their names are equal (the Go client's `expfmt` parser and
//! `prometheus_client`'s both read it that way; the latter reports the family without the
//! suffix, OpenMetrics style). `scripts/check_metrics.py` parses a scrape
//! with `prometheus_client` and fails on any sample outside a family.

use std::fmt::Write as _;
use std::io;
use std::ops::Range;

/// The two metric types ringws exports. Histograms and summaries are left
/// out until something needs one: each adds sample suffixes (`_bucket`,
/// `_sum`, `_count`) the writer would have to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (it restarts at 0 with the process); the name ends in
    /// `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// A sample's value: an integer count or a float (seconds, ratios).
pub trait SampleValue: Copy {
    /// Appends the value as Prometheus parses it.
    fn write_to(self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write_to(self, out: &mut String) {
        write_f64(out, self);
    }
}

/// Prometheus text exposition (format 0.0.4) written into one `String`.
///
/// Call [`family`](Self::family) once per metric, then
/// [`sample`](Self::sample) for each of its label sets; families must not
/// repeat (the format requires a family's samples to be contiguous). An
/// application adds its own families to `/metrics` through
/// [`App::metrics`](crate::app::App::metrics).
pub struct Exposition {
    out: String,
    /// Where the current family's name sits in `out`, so that a sample
    /// can be checked against it without keeping a copy of the name.
    family: Range<usize>,
    kind: Option<MetricType>,
}

impl Exposition {
    /// An empty exposition with room for `bytes` of text; about 100 bytes
    /// per sample and per `# HELP`/`# TYPE` pair avoids any regrowth.
    pub(crate) fn with_capacity(bytes: usize) -> Exposition {
        Exposition {
            out: String::with_capacity(bytes),
            family: 0..0,
            kind: None,
        }
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    ///
    /// A counter's `name` ends in `_total`; `help` is one sentence
    /// (backslashes and line feeds are escaped).
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != MetricType::Counter || name.ends_with("_total"),
            "counter {name:?} does not end in _total"
        );
        debug_assert!(!help.is_empty(), "{name} has no help text");
        // A second family of the same name would split its samples, which
        // the format forbids. Checked only in debug builds: the search
        // scans the whole text. Every TYPE line follows its HELP line, and
        // escaped help and label values hold no line feed, so "\n# TYPE "
        // matches real TYPE lines only.
        debug_assert!(
            !self.out.contains(&format!("\n# TYPE {name} ")),
            "family {name:?} written twice"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push_str("\n# TYPE ");
        let start = self.out.len();
        self.out.push_str(name);
        self.family = start..self.out.len();
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        self.kind = Some(kind);
    }

    /// One sample of the current family: `name{label="value",...} value`.
    ///
    /// For counters and gauges the sample's `name` is the family's.
    pub fn sample<V: SampleValue>(&mut self, name: &str, labels: &[(&str, &str)], value: V) {
        debug_assert!(self.kind.is_some(), "sample {name:?} before any family");
        debug_assert_eq!(
            &self.out[self.family.clone()],
            name,
            "sample outside its family"
        );
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(label), "bad label name {label:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// The text so far (the tests read it; a scrape takes the whole).
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.out
    }

    /// The text, for the response body.
    pub(crate) fn into_string(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the data model's metric names (colons are
/// for recording rules, but legal).
fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: label names take no colon (and names that
/// begin with `__` are reserved for Prometheus itself).
fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with("__")
}

/// HELP text: "\\" and "\n" escaped (a double quote is literal there).
fn escape_help(out: &mut String, s: &str) {
    escape(out, s, false);
}

/// Label values: "\\", "\"" and "\n" escaped.
fn escape_label_value(out: &mut String, s: &str) {
    escape(out, s, true);
}

fn escape(out: &mut String, s: &str, quote: bool) {
    // Copies the runs between special bytes whole; all three are ASCII, so
    // every cut falls on a char boundary.
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'"' if quote => "\\\"",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(esc);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// A float as Prometheus (Go's `strconv.ParseFloat`) and `prometheus_client`
/// parse it: `+Inf`, `-Inf`, `NaN`; whole numbers as integers, so that
/// `1e6` reads `1000000`; anything else in Rust's shortest round-trip form,
/// which takes an exponent only far from 1 (`1e-7`, `1.5e300`).
fn write_f64(out: &mut String, v: f64) {
    // 2^63: below it every whole f64 converts to i64 exactly.
    const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < I64_RANGE {
        // -0.0 prints as 0: the sign of a zero means nothing to a metric.
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// The process metrics of the Prometheus client libraries' process
/// collectors, read from `/proc` (Linux only, as ringws is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ProcessStats {
    /// Resident set size, in bytes.
    pub(crate) resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub(crate) virtual_bytes: u64,
    /// Open file descriptors (io_uring direct descriptors are not files
    /// of the process and are not counted).
    pub(crate) open_fds: u64,
    /// The soft `RLIMIT_NOFILE` (`u64::MAX` when unlimited).
    pub(crate) max_fds: u64,
    /// User and system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub(crate) start_time_seconds: f64,
    /// Threads in the process.
    pub(crate) threads: u64,
}

impl ProcessStats {
    /// Reads the calling process's figures.
    ///
    /// Needs `/proc/self/{stat,statm,fd}` and `/proc/stat`: a systemd unit
    /// with `ProcSubset=pid` hides the last, and this fails.
    pub(crate) fn read() -> io::Result<ProcessStats> {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat")?)
            .ok_or_else(|| malformed("/proc/self/stat"))?;
        let (size_pages, resident_pages) =
            parse_statm(&std::fs::read_to_string("/proc/self/statm")?)
                .ok_or_else(|| malformed("/proc/self/statm"))?;
        let boot = boot_time()?;
        let page = sysconf(libc::_SC_PAGESIZE)?;
        let tick = sysconf(libc::_SC_CLK_TCK)? as f64;
        Ok(ProcessStats {
            resident_bytes: resident_pages.saturating_mul(page),
            virtual_bytes: size_pages.saturating_mul(page),
            open_fds: open_fds()?,
            max_fds: max_fds()?,
            cpu_seconds: (stat.utime + stat.stime) as f64 / tick,
            start_time_seconds: boot as f64 + stat.start_ticks as f64 / tick,
            threads: stat.threads,
        })
    }

    /// Writes the seven `ringws_process_*` families.
    pub(crate) fn write_process(&self, exp: &mut Exposition) {
        use MetricType::{Counter, Gauge};
        let u64s = [
            (
                "ringws_process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "ringws_process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            (
                "ringws_process_open_fds",
                "Number of open file descriptors.",
                self.open_fds,
            ),
            (
                "ringws_process_max_fds",
                "Maximum number of open file descriptors.",
                self.max_fds,
            ),
        ];
        for (name, help, value) in u64s {
            exp.family(name, help, Gauge);
            exp.sample(name, &[], value);
        }
        let name = "ringws_process_cpu_seconds_total";
        exp.family(
            name,
            "Total user and system CPU time spent in seconds.",
            Counter,
        );
        exp.sample(name, &[], self.cpu_seconds);
        let name = "ringws_process_start_time_seconds";
        exp.family(
            name,
            "Start time of the process since unix epoch in seconds.",
            Gauge,
        );
        exp.sample(name, &[], self.start_time_seconds);
        let name = "ringws_process_threads";
        exp.family(name, "Number of OS threads in the process.", Gauge);
        exp.sample(name, &[], self.threads);
    }
}

/// The fields of `/proc/self/stat` that [`ProcessStats`] reports.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// Clock ticks in user mode.
    utime: u64,
    /// Clock ticks in kernel mode.
    stime: u64,
    threads: u64,
    /// Clock ticks from boot to the start of the process.
    start_ticks: u64,
}

/// Parses `/proc/[pid]/stat` (proc(5)): `pid (comm) state ppid ...`.
///
/// `comm` is whatever the process named itself, up to 15 bytes, spaces and
/// parentheses included, so the fields start after the *last* `)`: no
/// field after it holds one.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // proc(5) numbers the fields from 1; field 3 (state) is first here.
    let mut fields = rest.split_ascii_whitespace();
    let mut field = |n: usize, after: usize| -> Option<u64> {
        // `nth` consumes, so each call counts from the field after the
        // last one taken.
        fields.nth(n - after - 1)?.parse().ok()
    };
    let utime = field(14, 2)?;
    let stime = field(15, 14)?;
    let threads = field(20, 15)?;
    let start_ticks = field(22, 20)?;
    Some(Stat {
        utime,
        stime,
        threads,
        start_ticks,
    })
}

/// `/proc/[pid]/statm`: total program size and resident set, in pages.
fn parse_statm(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let size = fields.next()?.parse().ok()?;
    let resident = fields.next()?.parse().ok()?;
    Some((size, resident))
}

/// The `btime` line of `/proc/stat`: boot time, seconds since the epoch.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Boot time, read once: it does not change while the system runs, and
/// the kernel builds all of `/proc/stat` (per-CPU times, every interrupt's
/// count) to serve it, which on a large machine is hundreds of kilobytes.
fn boot_time() -> io::Result<u64> {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(&b) = BOOT.get() {
        return Ok(b);
    }
    let b = parse_btime(&std::fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| malformed("/proc/stat"))?;
    Ok(*BOOT.get_or_init(|| b))
}

/// Entries of `/proc/self/fd`, less the descriptor reading the directory.
fn open_fds() -> io::Result<u64> {
    let mut n = 0u64;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        entry?;
        n += 1;
    }
    // The kernel lists the descriptor table as it is while the directory
    // is read, which includes the one `read_dir` opened to read it.
    Ok(n.saturating_sub(1))
}

/// The soft `RLIMIT_NOFILE`: what `open` and `accept` are held to.
fn max_fds() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live, writable rlimit for the duration of the call,
    // and getrlimit writes nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // RLIM_INFINITY is all ones: u64::MAX, as documented on the field.
    Ok(r.rlim_cur)
}

fn sysconf(name: libc::c_int) -> io::Result<u64> {
    // SAFETY: sysconf takes no pointers; an unknown name returns -1.
    let v = unsafe { libc::sysconf(name) };
    // The two names asked for are always defined and positive on Linux.
    u64::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| io::Error::other(format!("sysconf({name}) returned {v}")))
}

fn malformed(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{path}: unexpected format"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, v);
        s
    }

    #[test]
    fn small_exposition() {
        let mut e = Exposition::with_capacity(512);
        let c = "ringws_connections_accepted_total";
        e.family(c, "Connections accepted.", MetricType::Counter);
        e.sample(c, &[("worker", "0")], 3u64);
        e.sample(c, &[("worker", "1")], 4u64);
        let g = "ringws_connections_open";
        e.family(g, "Connections open now.", MetricType::Gauge);
        e.sample(g, &[], 7u64);
        let r = "ringws_ratio";
        e.family(r, "A float.", MetricType::Gauge);
        e.sample(r, &[("a", "x"), ("b", "y")], 0.25);
        assert_eq!(
            e.as_str(),
            "# HELP ringws_connections_accepted_total Connections accepted.\n\
             # TYPE ringws_connections_accepted_total counter\n\
             ringws_connections_accepted_total{worker=\"0\"} 3\n\
             ringws_connections_accepted_total{worker=\"1\"} 4\n\
             # HELP ringws_connections_open Connections open now.\n\
             # TYPE ringws_connections_open gauge\n\
             ringws_connections_open 7\n\
             # HELP ringws_ratio A float.\n\
             # TYPE ringws_ratio gauge\n\
             ringws_ratio{a=\"x\",b=\"y\"} 0.25\n"
        );
    }

    #[test]
    fn escaping() {
        let mut e = Exposition::with_capacity(256);
        e.family("m", "back\\slash, \"quotes\",\nline two", MetricType::Gauge);
        e.sample("m", &[("path", "C:\\dir\n\"x\"é")], 1u64);
        assert_eq!(
            e.into_string(),
            "# HELP m back\\\\slash, \"quotes\",\\nline two\n\
             # TYPE m gauge\n\
             m{path=\"C:\\\\dir\\n\\\"x\\\"é\"} 1\n"
        );
        let mut s = String::new();
        escape_label_value(&mut s, "");
        escape_label_value(&mut s, "plain");
        escape_label_value(&mut s, "\\\\");
        assert_eq!(s, "plain\\\\\\\\");
    }

    #[test]
    fn floats() {
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(1e6), "1000000");
        assert_eq!(f(1e18), "1000000000000000000");
        // 2^53 + 2: past the last integer with every neighbour exact, still
        // printed as the integer the float is.
        assert_eq!(f(9_007_199_254_740_994.0), "9007199254740994");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(-2.75), "-2.75");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1.5e300), "1.5e300");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(f64::MAX), "1.7976931348623157e308");
        // Round trip through the parser Prometheus's is compatible with.
        for v in [0.1, 1.0 / 3.0, 123.456, 1e-300, 6.02e23, f64::MIN_POSITIVE] {
            assert_eq!(f(v).parse::<f64>(), Ok(v));
        }
    }

    #[test]
    fn u64_values() {
        let mut s = String::new();
        u64::MAX.write_to(&mut s);
        assert_eq!(s, "18446744073709551615");
    }

    #[test]
    fn names() {
        for ok in ["a", "_x", "ringws_a_total", "job:rate5m", "A9_:"] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "é", "a.b"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        assert!(is_label_name("worker_1"));
        for bad in ["", "a:b", "__name__", "1a", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "sample outside its family")]
    fn sample_of_another_family() {
        let mut e = Exposition::with_capacity(64);
        e.family("a_total", "A.", MetricType::Counter);
        e.sample("a", &[], 1u64);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "written twice")]
    fn family_twice() {
        let mut e = Exposition::with_capacity(64);
        e.family("a", "A.", MetricType::Gauge);
        e.family("b", "B.", MetricType::Gauge);
        e.family("a", "A.", MetricType::Gauge);
    }

    /// A stat line as proc(5) lays it out, after the command name.
    const STAT_TAIL: &str = "S 1 2 3 0 -1 4194560 500 0 0 0 \
        150 25 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 \
        1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_line() {
        let want = Some(Stat {
            utime: 150,
            stime: 25,
            threads: 7,
            start_ticks: 123456,
        });
        assert_eq!(parse_stat(&format!("42 (ringws) {STAT_TAIL}\n")), want);
        // A name with a space and a ")" in it: split at the last ")".
        assert_eq!(parse_stat(&format!("42 ((a) b)) {STAT_TAIL}\n")), want);
        assert_eq!(parse_stat(&format!("42 (a) b) {STAT_TAIL}")), want);
        assert_eq!(parse_stat(&format!("42 (x 1 2 3) {STAT_TAIL}")), want);
        assert_eq!(parse_stat("42 (ringws) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(
            parse_stat(&format!("42 (x) {}", STAT_TAIL.replace("150", "x"))),
            None
        );
    }

    #[test]
    fn statm_and_btime() {
        assert_eq!(
            parse_statm("25600 640 320 100 0 900 0\n"),
            Some((25600, 640))
        );
        assert_eq!(parse_statm("25600"), None);
        let stat = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5 0 1\nctxt 99\n\
                    btime 1700000000\nprocesses 12\n";
        assert_eq!(parse_btime(stat), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }

    #[test]
    fn this_process() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes > 0, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        // stdin, stdout and stderr at least.
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.max_fds >= s.open_fds, "{s:?}");
        assert!(s.cpu_seconds >= 0.0, "{s:?}");
        assert!(s.threads >= 1, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started before now (a tick of rounding either way), after 2020.
        assert!(s.start_time_seconds <= now + 1.0, "{s:?} now {now}");
        assert!(s.start_time_seconds > 1.6e9, "{s:?}");
    }

    /// The process families through `prometheus_client`'s parser with
    /// `scripts/check_metrics.py`, when python3 has the package; skipped
    /// (with a note) otherwise, since the unit tests need only cargo.
    #[test]
    fn real_parser() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let has_parser = Command::new("python3")
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_parser {
            eprintln!("skipped: no python3 with prometheus_client");
            return;
        }
        let mut e = Exposition::with_capacity(2048);
        ProcessStats::read().unwrap().write_process(&mut e);
        let c = "ringws_test_messages_total";
        e.family(c, "Esc \\ and\nnewline.", MetricType::Counter);
        e.sample(c, &[("opcode", "text"), ("odd", "a\"b\\c\nd")], 5u64);
        let g = "ringws_test_floats";
        e.family(g, "Floats.", MetricType::Gauge);
        for (i, v) in [f64::INFINITY, f64::NEG_INFINITY, 1e-7, 2.5, 1e300]
            .into_iter()
            .enumerate()
        {
            e.sample(g, &[("i", &i.to_string())], v);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_metrics.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(e.as_str().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr),
            e.as_str()
        );
        for line in [
            "ringws_test_messages_total{odd=\"a\\\"b\\\\c\\nd\",opcode=\"text\"} 5",
            "ringws_test_floats{i=\"0\"} inf",
            "ringws_test_floats{i=\"1\"} -inf",
            "ringws_test_floats{i=\"2\"} 1e-07",
            "ringws_test_floats{i=\"3\"} 2.5",
        ] {
            assert!(
                stdout.lines().any(|l| l == line),
                "{line:?} not in\n{stdout}"
            );
        }
        for name in [
            "ringws_process_resident_memory_bytes",
            "ringws_process_virtual_memory_bytes",
            "ringws_process_open_fds",
            "ringws_process_max_fds",
            "ringws_process_cpu_seconds_total",
            "ringws_process_start_time_seconds",
            "ringws_process_threads",
        ] {
            assert!(
                stdout.lines().any(|l| l.starts_with(&format!("{name} "))),
                "{name} not in\n{stdout}"
            );
        }
    }
}
