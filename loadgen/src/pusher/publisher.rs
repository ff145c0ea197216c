//! The publishers: one thread each, with one keep-alive HTTP/1.1
//! connection (a plain `std` socket) to the HTTP API, publishing events
//! signed as the server SDKs sign them.
//!
//! * Closed loop: `--in-flight` requests are outstanding (pipelined on the
//!   one connection); each response lets the next one go.
//! * Rate: requests go out on a fixed schedule whatever the responses do:
//!   the publisher's thread sleeps until the next one is due and writes
//!   every request due (pipelined), while a second thread reads the
//!   responses (a socket's read timeout is rounded to the kernel's ticks,
//!   8 ms here: too coarse to wake for a schedule). A request's events
//!   carry its intended time, so delivery latency is measured from the
//!   schedule.
//!
//! Publisher `p` sends its n-th event to channel `(p + n) mod K`, with a
//! sequence number of its own per channel; on a 2xx response the
//! request's events count as accepted, and every subscriber of their
//! channels must get them. A request that gets no response (the
//! connection closed under it, or the run ran out of time) counts as
//! unanswered; its events are not expected.
//!
//! Responses are cut out of what is read by [`ResponseReader`], sans-IO.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::event::{self, Stamp};
use super::http::ResponseReader;
use super::{Mode, Plan};
use crate::stats::histogram;

/// One publisher's counts.
pub(super) struct ApiCounts {
    /// Requests and events sent, whole run.
    pub requests: u64,
    pub events: u64,
    /// Requests and events sent in the measured window.
    pub window_requests: u64,
    pub window_events: u64,
    /// Responses by status, whole run.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response.
    pub unanswered: u64,
    /// Connects, reads and writes that failed, and unreadable responses.
    pub io: u64,
    /// Connections opened again after the server closed an idle one.
    pub reconnects: u64,
    /// Request to response, for requests sent in the window: from the
    /// intended send time (the same as the actual one in a closed loop).
    pub latency: Histogram<u64>,
    pub samples: Vec<String>,
}

impl Default for ApiCounts {
    fn default() -> Self {
        ApiCounts {
            requests: 0,
            events: 0,
            window_requests: 0,
            window_events: 0,
            statuses: BTreeMap::new(),
            unanswered: 0,
            io: 0,
            reconnects: 0,
            latency: histogram(),
            samples: Vec::new(),
        }
    }
}

impl ApiCounts {
    fn sample(&mut self, msg: String) {
        if self.samples.len() < 5 && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    /// Responses with a status outside 2xx.
    pub fn refused(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every error: refusals, requests unanswered, I/O failures.
    pub fn errors(&self) -> u64 {
        self.refused() + self.unanswered + self.io
    }

    /// Adds `o` to these counts.
    pub fn merge(&mut self, o: &ApiCounts) {
        self.requests += o.requests;
        self.events += o.events;
        self.window_requests += o.window_requests;
        self.window_events += o.window_events;
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.unanswered += o.unanswered;
        self.io += o.io;
        self.reconnects += o.reconnects;
        self.latency.add(&o.latency).expect("same bounds");
        for s in &o.samples {
            self.sample(s.clone());
        }
    }
}

/// A request sent and not yet answered, with its bytes: a server that
/// answers an earlier one with `Connection: close` does not process it
/// (RFC 9112, 9.6), and it is sent again on the next connection.
struct Pending {
    intended: Instant,
    first_channel: usize,
    events: usize,
    in_window: bool,
    bytes: Vec<u8>,
}

/// How a connection ended while requests were pending.
enum Gone {
    /// The server said `Connection: close` after a response: it read
    /// nothing after it, so what is pending goes again.
    Closed,
    /// Anything else: what is pending may or may not have been processed,
    /// and counts as unanswered.
    Failed(String),
}

/// What a rate publisher's sending thread and the reading thread of its
/// connection share.
#[derive(Default)]
struct Queue {
    /// Requests written (or about to be), oldest first.
    pending: VecDeque<Pending>,
    /// The reader saw the connection end: what is pending is unanswered.
    dead: bool,
    /// ... unless the server closed it after a response (it then read
    /// none of what is pending): sent again on the next connection.
    resend: bool,
    /// Sending is over: the reader stops once nothing is pending.
    done: bool,
}

/// One publisher: its sequence numbers, and its requests' buffers.
pub(super) struct Publisher {
    p: usize,
    plan: Arc<Plan>,
    /// The next sequence number per channel.
    seq: Vec<u32>,
    next_channel: usize,
    path: String,
    out: Vec<u8>,
    body: Vec<u8>,
    data: Vec<u8>,
    /// Connections opened so far.
    connects: u64,
    counts: ApiCounts,
}

/// Counts the publisher done however its thread ends: the subscribers
/// wait for every publisher before they know what to expect.
struct Done<'a>(&'a Plan);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.publishers_done.fetch_add(1, Ordering::Release);
    }
}

/// Runs publisher `p` until its last response, or the time allowed.
pub(super) fn run(p: usize, plan: Arc<Plan>) -> ApiCounts {
    let done = Done(&plan);
    let mut pb = Publisher {
        p,
        seq: vec![0; plan.channels],
        next_channel: p % plan.channels,
        path: format!(
            "/apps/{}/{}",
            plan.app_id,
            if plan.batch.is_some() {
                "batch_events"
            } else {
                "events"
            }
        ),
        out: Vec::new(),
        body: Vec::new(),
        data: Vec::new(),
        connects: 0,
        counts: ApiCounts::default(),
        plan: plan.clone(),
    };
    if let Some(go) = wait_for_go(&plan) {
        let end = plan.end().expect("started");
        // Half the drain for the last responses, the rest for the last
        // deliveries they stand for.
        let give_up = end + plan.drain / 2;
        match plan.mode {
            Mode::Closed(n) => pb.closed_loop(n as usize, end, give_up),
            Mode::Rate(r) => {
                let per_request = plan.batch.unwrap_or(1) as f64;
                let interval = Duration::from_secs_f64(plan.publishers as f64 * per_request / r);
                // The publishers spread over one interval.
                let first = go + interval.mul_f64(p as f64 / plan.publishers as f64);
                pb.open_loop(interval, first, end, give_up);
            }
        }
    }
    drop(done);
    pb.counts
}

/// Waits until publishing starts; None if the run is aborted first, or
/// no client subscribed (there is nothing to measure).
fn wait_for_go(plan: &Plan) -> Option<Instant> {
    loop {
        if plan.abort.load(Ordering::Acquire) {
            return None;
        }
        if let Some(&g) = plan.go.get() {
            let now = Instant::now();
            if now >= g {
                return (plan.subscribed.load(Ordering::Acquire) > 0).then_some(g);
            }
            std::thread::sleep(g - now);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long a blocking read waits before the reader looks at the clock:
/// only for giving up, so coarse (the kernel rounds it to its ticks).
const READ_TICK: Duration = Duration::from_millis(100);

impl Publisher {
    /// Closed loop, on this thread alone: `n` requests outstanding, the
    /// next written as each response is read.
    fn closed_loop(&mut self, n: usize, end: Instant, give_up: Instant) {
        let mut conn: Option<(TcpStream, ResponseReader)> = None;
        let mut pending = VecDeque::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let now = Instant::now();
            self.out.clear();
            if now < end {
                while pending.len() < n {
                    pending.push_back(self.request(now));
                }
            }
            if conn.is_none() && !pending.is_empty() {
                match self.connect() {
                    Some(s) => conn = Some((s, ResponseReader::new())),
                    None => {
                        self.unanswered(&mut pending, "no connection");
                        return;
                    }
                }
                // A new connection: everything pending goes on it (what
                // the last one's server closed on unread, then the new
                // requests).
                self.out.clear();
                for r in &pending {
                    self.out.extend_from_slice(&r.bytes);
                }
            }
            if !self.out.is_empty() {
                let (s, _) = conn.as_mut().expect("connected above");
                if let Err(e) = s.write_all(&self.out) {
                    self.failed(format!("API write failed: {e}"));
                    self.unanswered(&mut pending, "the connection failed");
                    conn = None;
                    continue;
                }
            }
            if pending.is_empty() && now >= end {
                return;
            }
            if now >= give_up {
                self.unanswered(&mut pending, "the time allowed ran out");
                return;
            }
            let Some((s, reader)) = conn.as_mut() else {
                continue;
            };
            let mut gone = None;
            match s.read(&mut buf) {
                Ok(0) => gone = Some(Gone::Failed("the server closed the connection".into())),
                Ok(k) => {
                    reader.feed(&buf[..k]);
                    let mut queue = || pending.pop_front();
                    gone = take_responses(&self.plan, &mut self.counts, reader, &mut queue);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed(format!("API read failed: {e}"));
                    gone = Some(Gone::Failed("the connection failed".into()));
                }
            }
            match gone {
                // What is pending goes again at the top, on a new
                // connection.
                Some(Gone::Closed) => conn = None,
                Some(Gone::Failed(why)) => {
                    self.unanswered(&mut pending, &why);
                    conn = None;
                }
                None => {}
            }
        }
    }

    /// Rate: this thread sleeps until each request is due and writes it
    /// (and any others due by then); a thread per connection reads the
    /// responses, so a slow server delays no request.
    fn open_loop(&mut self, interval: Duration, mut due: Instant, end: Instant, give_up: Instant) {
        let queue = Mutex::new(Queue::default());
        let plan = self.plan.clone();
        std::thread::scope(|scope| {
            let mut conn: Option<(TcpStream, ScopedJoinHandle<'_, ApiCounts>)> = None;
            let mut fresh = Vec::new();
            while due < end {
                let now = Instant::now();
                if due > now {
                    // nanosleep: precise to tens of microseconds, where a
                    // socket timeout is rounded to the kernel's ticks.
                    std::thread::sleep(due - now);
                    continue;
                }
                self.out.clear();
                while due <= now && due < end {
                    fresh.push(self.request(due));
                    due += interval;
                }
                let dead = lock(&queue).dead;
                if conn.is_none() || dead {
                    if let Some((s, reader)) = conn.take() {
                        let _ = s.shutdown(Shutdown::Both);
                        self.join_reader(reader, &queue);
                    }
                    // What the server closed on without reading goes first
                    // on the new connection, in its order.
                    let resent: Vec<u8> = lock(&queue)
                        .pending
                        .iter()
                        .flat_map(|r| r.bytes.iter().copied())
                        .collect();
                    self.out.splice(0..0, resent);
                    let Some(s) = self.connect() else {
                        self.counts.unanswered += fresh.len() as u64;
                        return;
                    };
                    let r = match s.try_clone() {
                        Ok(r) => r,
                        Err(e) => {
                            self.failed(format!("API socket: {e}"));
                            self.counts.unanswered += fresh.len() as u64;
                            return;
                        }
                    };
                    let (plan, queue) = (&*plan, &queue);
                    conn = Some((s, scope.spawn(move || read_loop(plan, r, queue, give_up))));
                }
                lock(&queue).pending.extend(fresh.drain(..));
                let (s, _) = conn.as_mut().expect("connected above");
                if s.write_all(&self.out).is_err() {
                    // Not counted here: the reader sees the end and judges
                    // it (a close the server announced after a response,
                    // which sends the rest again, or a failure, which
                    // counts it unanswered); the next request opens
                    // another connection.
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
            // The last responses; and what a server without keep-alive
            // closed on unread, sent again until answered or out of time.
            loop {
                let idle = {
                    let mut q = lock(&queue);
                    q.done = true;
                    q.pending.is_empty()
                };
                let Some((s, reader)) = conn.take() else {
                    break;
                };
                if idle {
                    // Wakes the reader from its blocking read at once,
                    // rather than at its next tick.
                    let _ = s.shutdown(Shutdown::Both);
                }
                if !self.join_reader(reader, &queue) {
                    break;
                }
                if Instant::now() >= give_up {
                    let mut q = lock(&queue);
                    self.counts.unanswered += q.pending.len() as u64;
                    q.pending.clear();
                    break;
                }
                self.out.clear();
                for p in &lock(&queue).pending {
                    self.out.extend_from_slice(&p.bytes);
                }
                let Some(s) = self.connect() else {
                    let mut q = lock(&queue);
                    self.counts.unanswered += q.pending.len() as u64;
                    q.pending.clear();
                    break;
                };
                let Ok(r) = s.try_clone() else { break };
                let (plan, queue) = (&*plan, &queue);
                let reader = scope.spawn(move || read_loop(plan, r, queue, give_up));
                let mut s = s;
                let _ = s.write_all(&self.out);
                conn = Some((s, reader));
            }
            let mut q = lock(&queue);
            if !q.pending.is_empty() {
                self.counts.unanswered += q.pending.len() as u64;
                q.pending.clear();
            }
        });
    }

    /// Waits for a reader to end; what it left pending is unanswered,
    /// unless the server closed after a response: then it stays pending,
    /// to be sent again, and this returns true.
    fn join_reader(
        &mut self,
        reader: ScopedJoinHandle<'_, ApiCounts>,
        queue: &Mutex<Queue>,
    ) -> bool {
        match reader.join() {
            Ok(c) => self.counts.merge(&c),
            Err(_) => self.failed("an API reader thread panicked".into()),
        }
        let mut q = lock(queue);
        q.dead = false;
        if std::mem::take(&mut q.resend) && !q.pending.is_empty() {
            return true;
        }
        let n = q.pending.len() as u64;
        if n > 0 {
            q.pending.clear();
            self.counts.unanswered += n;
            self.counts.sample(format!(
                "API: {n} requests unanswered when the reader stopped"
            ));
        }
        false
    }

    fn failed(&mut self, why: String) {
        self.counts.io += 1;
        self.counts.sample(why);
    }

    /// The requests in `pending` will get no response.
    fn unanswered(&mut self, pending: &mut VecDeque<Pending>, why: &str) {
        if !pending.is_empty() {
            self.counts.unanswered += pending.len() as u64;
            self.counts
                .sample(format!("API: {why}, {} requests unanswered", pending.len()));
            pending.clear();
        }
    }

    /// A new connection to the API (the first, or after the server closed
    /// one, as it may an idle keep-alive connection).
    fn connect(&mut self) -> Option<TcpStream> {
        let plan = &*self.plan;
        let target = plan.api_target(self.p);
        match TcpStream::connect_timeout(&target.addr, plan.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                // A server that stops reading must not hang the run.
                let _ = s.set_write_timeout(Some(plan.drain));
                let _ = s.set_read_timeout(Some(READ_TICK));
                if self.connects > 0 {
                    self.counts.reconnects += 1;
                }
                self.connects += 1;
                Some(s)
            }
            Err(e) => {
                let why = format!("API connect to {} failed: {e}", target.addr);
                self.failed(why);
                None
            }
        }
    }

    /// Appends one request to `out`, intended at `intended`: one event, or
    /// a batch of them on consecutive channels.
    fn request(&mut self, intended: Instant) -> Pending {
        let plan = &*self.plan;
        let now = Instant::now();
        let start = self.out.len();
        let n = plan.batch.unwrap_or(1);
        let first_channel = self.next_channel;
        self.body.clear();
        if plan.batch.is_some() {
            self.body.extend_from_slice(b"{\"batch\":[");
        }
        for j in 0..n {
            let k = self.next_channel;
            self.next_channel = (k + 1) % plan.channels;
            let stamp = Stamp {
                channel: k as u32,
                publisher: self.p as u16,
                seq: self.seq[k],
                intended: ns(intended.saturating_duration_since(plan.start)),
                actual: ns(now.saturating_duration_since(plan.start)),
            };
            self.seq[k] = self.seq[k].wrapping_add(1);
            self.data.clear();
            event::encode(&stamp, &plan.template, &mut self.data);
            if j > 0 {
                self.body.push(b',');
            }
            self.body
                .extend_from_slice(b"{\"name\":\"bench\",\"channel\":\"");
            self.body.extend_from_slice(plan.channel_name(k).as_bytes());
            self.body.extend_from_slice(b"\",\"data\":\"");
            self.body.extend_from_slice(&self.data);
            self.body.extend_from_slice(b"\"}");
        }
        if plan.batch.is_some() {
            self.body.extend_from_slice(b"]}");
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let query = ringws_gateway::sign::sign_api_request(
            &plan.app_key,
            &plan.app_secret,
            "POST",
            &self.path,
            &[],
            &self.body,
            timestamp,
        );
        let host = &plan.api_target(self.p).host;
        let _ = write!(
            self.out,
            "POST {}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.body.len()
        );
        self.out.extend_from_slice(&self.body);
        let bytes = self.out[start..].to_vec();
        let in_window = match (plan.measure_from(), plan.end()) {
            (Some(from), Some(end)) => intended >= from && intended < end,
            _ => false,
        };
        self.counts.requests += 1;
        self.counts.events += n as u64;
        if in_window {
            self.counts.window_requests += 1;
            self.counts.window_events += n as u64;
        }
        Pending {
            intended,
            first_channel,
            events: n,
            in_window,
            bytes,
        }
    }
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panicking reader leaves the queue as consistent as ever.
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// A rate publisher's reading thread: takes each response for the oldest
/// pending request until sending is done and nothing is pending, the
/// connection ends (it is then marked dead), or the time allowed runs out.
fn read_loop(plan: &Plan, mut s: TcpStream, queue: &Mutex<Queue>, give_up: Instant) -> ApiCounts {
    let mut counts = ApiCounts::default();
    let mut reader = ResponseReader::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut pop = || lock(queue).pending.pop_front();
    loop {
        {
            let q = lock(queue);
            if q.done && q.pending.is_empty() {
                return counts;
            }
        }
        if Instant::now() >= give_up {
            return counts;
        }
        let gone = match s.read(&mut buf) {
            Ok(0) => Some(Gone::Failed("the server closed the connection".into())),
            Ok(k) => {
                reader.feed(&buf[..k]);
                take_responses(plan, &mut counts, &mut reader, &mut pop)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == ErrorKind::Interrupted => None,
            Err(e) => {
                counts.io += 1;
                counts.sample(format!("API read failed: {e}"));
                Some(Gone::Failed("the connection failed".into()))
            }
        };
        if let Some(g) = gone {
            let mut q = lock(queue);
            match g {
                Gone::Closed => q.resend = true,
                Gone::Failed(why) => {
                    if !(q.done && q.pending.is_empty()) {
                        counts.sample(format!("API: {why}"));
                    }
                }
            }
            q.dead = true;
            return counts;
        }
    }
}

/// Takes every whole response `reader` has, each for the request `pop`
/// gives (the oldest pending). Some if the connection is beyond use.
fn take_responses(
    plan: &Plan,
    counts: &mut ApiCounts,
    reader: &mut ResponseReader,
    pop: &mut impl FnMut() -> Option<Pending>,
) -> Option<Gone> {
    loop {
        let r = match reader.next() {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                counts.io += 1;
                counts.sample(format!("API response: {e}"));
                return Some(Gone::Failed("an unreadable response".into()));
            }
        };
        let now = Instant::now();
        let Some(req) = pop() else {
            counts.io += 1;
            counts.sample(format!("API: a {} response to no request", r.status));
            return Some(Gone::Failed("a response to no request".into()));
        };
        *counts.statuses.entry(r.status).or_default() += 1;
        if req.in_window {
            counts
                .latency
                .saturating_record(ns(now.saturating_duration_since(req.intended)));
        }
        if (200..300).contains(&r.status) {
            for j in 0..req.events {
                let k = (req.first_channel + j) % plan.channels;
                plan.accepted[k].fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let text = String::from_utf8_lossy(&r.body);
            counts.sample(format!("API answered {}: {}", r.status, text.trim()));
        }
        if r.close {
            // A server without keep-alive (sockudo's API) says so on every
            // response: a reconnect, counted as such, not an error.
            return Some(Gone::Closed);
        }
    }
}
