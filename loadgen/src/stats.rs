//! What a run counts: messages, bytes, errors and three histograms. Each
//! worker thread keeps its own [`Stats`] (no sharing on the hot path) and
//! sends a [`Snapshot`] of the last second to the main thread once a second;
//! the totals are merged at the end.

use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds, 1 ns to 100 s, 3 significant
/// digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Error counts, by kind. Each is reported; none is dropped silently.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Errors {
    /// TCP connect failed or timed out.
    pub connect: u64,
    /// The server refused or botched the WebSocket handshake.
    pub handshake: u64,
    /// The server broke RFC 6455 (the client failed the connection).
    pub protocol: u64,
    /// An echo differed from what was sent (length, content or order).
    pub mismatch: u64,
    /// The server closed (Close frame or TCP) while the run was going on.
    pub unexpected_close: u64,
    /// Read or write errors.
    pub io: u64,
    /// Broadcast: deliveries that never arrived.
    pub lost: u64,
}

impl Errors {
    /// Every count with its name (as in the JSON), in report order: the one
    /// list the table and the JSON are written from.
    pub fn by_kind(&self) -> [(&'static str, u64); 7] {
        [
            ("connect", self.connect),
            ("handshake", self.handshake),
            ("protocol", self.protocol),
            ("mismatch", self.mismatch),
            ("unexpected_close", self.unexpected_close),
            ("io", self.io),
            ("lost", self.lost),
        ]
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.protocol += o.protocol;
        self.mismatch += o.mismatch;
        self.unexpected_close += o.unexpected_close;
        self.io += o.io;
        self.lost += o.lost;
    }
}

/// One thread's counts for the measured window.
pub struct Stats {
    /// Echoes received and checked in the window.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Errors, over the whole run.
    pub errors: Errors,
    /// Latency from the intended send time (coordinated-omission corrected;
    /// in throughput mode intended and actual are the same).
    pub latency: Histogram<u64>,
    /// Latency from the actual send time (rate mode).
    pub latency_actual: Histogram<u64>,
    /// TCP connect plus handshake time.
    pub connect: Histogram<u64>,
    /// Connections that completed the handshake.
    pub connected: u64,
    /// The first few error messages, to show the user what went wrong.
    pub samples: Vec<String>,
    /// When the last echo in the measured window arrived: the window ends
    /// there when a --messages budget runs out before the duration does.
    pub last_echo: Option<std::time::Instant>,
    /// This second's echoes and latencies, for the progress line.
    pub interval_messages: u64,
    /// This second's latency histogram.
    pub interval_latency: Histogram<u64>,
    /// Over the whole run: payload bytes of the messages sent, and the bytes
    /// they took on the wire (frame headers included; after compression
    /// with `--deflate`).
    pub plain_out: u64,
    pub wire_out: u64,
    /// Likewise for the echoes: payload bytes (inflated), and bytes read.
    pub plain_in: u64,
    pub wire_in: u64,
    /// `--deflate`: connections whose server declined the offer.
    pub deflate_declined: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            messages: 0,
            bytes: 0,
            errors: Errors::default(),
            latency: histogram(),
            latency_actual: histogram(),
            connect: histogram(),
            connected: 0,
            samples: Vec::new(),
            last_echo: None,
            interval_messages: 0,
            interval_latency: histogram(),
            plain_out: 0,
            wire_out: 0,
            plain_in: 0,
            wire_in: 0,
            deflate_declined: 0,
        }
    }
}

impl Stats {
    /// Keeps the first few distinct error messages.
    pub fn sample(&mut self, msg: String) {
        if self.samples.len() < 5 && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    /// Takes the interval counts for a progress snapshot.
    pub fn snapshot(&mut self, second: u64) -> Snapshot {
        let hist = std::mem::replace(&mut self.interval_latency, histogram());
        Snapshot {
            second,
            messages: std::mem::take(&mut self.interval_messages),
            latency: hist,
            errors: self.errors.total(),
            connected: self.connected,
        }
    }

    /// Merges another thread's totals into these.
    pub fn merge(&mut self, o: &Stats) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.errors.add(&o.errors);
        self.latency.add(&o.latency).expect("same bounds");
        self.latency_actual
            .add(&o.latency_actual)
            .expect("same bounds");
        self.connect.add(&o.connect).expect("same bounds");
        self.connected += o.connected;
        self.plain_out += o.plain_out;
        self.wire_out += o.wire_out;
        self.plain_in += o.plain_in;
        self.wire_in += o.wire_in;
        self.deflate_declined += o.deflate_declined;
        self.last_echo = self.last_echo.max(o.last_echo);
        for s in &o.samples {
            self.sample(s.clone());
        }
    }
}

/// One thread's last second, for the progress line.
pub struct Snapshot {
    /// Seconds since the start of the run.
    pub second: u64,
    /// Echoes received in that second (warm-up included).
    pub messages: u64,
    /// Their latencies.
    pub latency: Histogram<u64>,
    /// Errors so far, in total.
    pub errors: u64,
    /// Connections open so far.
    pub connected: u64,
}

// The stats travel from worker threads to the main thread.
const _: () = {
    const fn send<T: Send>() {}
    send::<Stats>();
    send::<Snapshot>();
};
