//! The webhook thread: takes each endpoint's queued events, debounces and
//! batches them, signs and POSTs each batch, retries it with backoff, and
//! gives it up after `max_retries`. The only code here that does I/O.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::debounce::{Debounce, Offer};
use super::{add, encode, lock, parse_url, redact, Counters, Inbox, Item, Shared, WebhookConfig};
use crate::sign;

pub(super) fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::config_builder()
        // Statuses are outcomes here, not errors.
        .http_status_as_error(false)
        // A redirected POST would be replayed as a GET: not a delivery.
        .max_redirects(0)
        .user_agent(concat!("ringws-gateway/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// The loop: each endpoint in turn does at most one request per round,
/// then the thread sleeps until the earliest deadline or a push.
pub(super) fn run(shared: &Shared, mut senders: Vec<Sender>, agent: &ureq::Agent) {
    let mut rng = Rng::new();
    loop {
        let stop_at = if shared.stopping.load(Ordering::Acquire) {
            *lock(&shared.stop_at)
        } else {
            None
        };
        let mut sent = false;
        let mut wake_at: Option<Instant> = None;
        let mut idle = true;
        for s in &mut senders {
            let inbox = &shared.inboxes[s.index];
            match s.step(inbox, &shared.counters, agent, stop_at, &mut rng) {
                Step::Sent => {
                    sent = true;
                    idle = false;
                }
                Step::Wait(at) => {
                    if let Some(at) = at {
                        idle = false;
                        wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                    }
                }
            }
        }
        if let Some(end) = stop_at {
            if idle || Instant::now() >= end {
                for s in &mut senders {
                    s.abandon(&shared.inboxes[s.index], &shared.counters);
                }
                return;
            }
        }
        if sent {
            continue;
        }
        match wake_at {
            Some(at) => {
                let now = Instant::now();
                if at > now {
                    thread::park_timeout(at - now);
                }
            }
            None => thread::park(),
        }
    }
}

enum Step {
    /// A request was made: go round again before sleeping.
    Sent,
    /// Nothing to do before this time (`None`: before a push).
    Wait(Option<Instant>),
}

/// One endpoint, as the thread sees it.
pub(super) struct Sender {
    index: usize,
    app: Arc<str>,
    key: Arc<str>,
    secret: Arc<str>,
    cfg: WebhookConfig,
    /// The URL without credentials or query, for the logs.
    shown: String,
    /// Drained from the inbox, waiting for a batch.
    ready: VecDeque<Item>,
    debounce: Debounce,
    retry: Option<Batch>,
    warned: Option<Instant>,
    unlogged: u64,
}

/// A batch being retried: the same bytes each time, so the same signature.
struct Batch {
    body: Vec<u8>,
    signature: String,
    events: usize,
    failures: u32,
    next: Instant,
}

/// Failures logged per endpoint at most once per this (with the count of
/// those not logged).
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Sender {
    pub(super) fn new(
        index: usize,
        app: Arc<str>,
        key: Arc<str>,
        secret: Arc<str>,
        cfg: WebhookConfig,
    ) -> Sender {
        let shown = parse_url(&cfg.url).map(|u| redact(&u)).unwrap_or_default();
        Sender {
            index,
            app,
            key,
            secret,
            debounce: Debounce::new(cfg.debounce),
            cfg,
            shown,
            ready: VecDeque::new(),
            retry: None,
            warned: None,
            unlogged: 0,
        }
    }

    fn step(
        &mut self,
        inbox: &Inbox,
        counters: &Counters,
        agent: &ureq::Agent,
        stop_at: Option<Instant>,
        rng: &mut Rng,
    ) -> Step {
        let now = Instant::now();
        if let Some(b) = &self.retry {
            if stop_at.is_some_and(|end| b.next > end) {
                let b = self.retry.take().expect("checked");
                self.give_up(b, inbox, counters, "the stop deadline came");
            } else if b.next > now {
                return Step::Wait(Some(b.next));
            } else {
                let b = self.retry.take().expect("checked");
                self.attempt(b, inbox, counters, agent, stop_at, rng);
                return Step::Sent;
            }
        }
        // Take what the workers queued. Set `wake` first: a push after
        // the swap below sees it and wakes the thread.
        inbox.wake.store(true, Ordering::SeqCst);
        let new = std::mem::take(&mut *lock(&inbox.queue));
        for item in new {
            match self.debounce.offer(item) {
                Offer::Ready(item) => self.ready.push_back(item),
                Offer::Held => {}
                Offer::Cancelled => {
                    inbox.held.fetch_sub(2, Ordering::Relaxed);
                    add(&counters.events_debounced, 2);
                }
            }
        }
        let release = if stop_at.is_some() { None } else { Some(now) };
        self.debounce.release(release, &mut self.ready);
        let due = self.ready.front().map(|i| i.at + self.cfg.batch_delay);
        if due.is_some_and(|d| d <= now || stop_at.is_some())
            || self.ready.len() >= self.cfg.batch_max
        {
            inbox.wake.store(false, Ordering::SeqCst);
            let n = self.ready.len().min(self.cfg.batch_max);
            let events: Vec<Item> = self.ready.drain(..n).collect();
            let body = encode(now_ms(), events.iter().map(|i| &*i.event));
            let signature = sign::webhook_signature(&self.secret, &body);
            let b = Batch {
                body,
                signature,
                events: n,
                failures: 0,
                next: now,
            };
            self.attempt(b, inbox, counters, agent, stop_at, rng);
            return Step::Sent;
        }
        if due.is_some() {
            // A batch is open: its deadline wakes the thread, or a push
            // that fills the queue to batch_max.
            inbox.wake.store(false, Ordering::SeqCst);
        }
        let next = match (due, self.debounce.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Step::Wait(next)
    }

    fn attempt(
        &mut self,
        mut b: Batch,
        inbox: &Inbox,
        counters: &Counters,
        agent: &ureq::Agent,
        stop_at: Option<Instant>,
        rng: &mut Rng,
    ) {
        let mut timeout = self.cfg.timeout;
        if let Some(end) = stop_at {
            timeout = timeout.min(end.saturating_duration_since(Instant::now()));
            if timeout.is_zero() {
                return self.give_up(b, inbox, counters, "the stop deadline came");
            }
        }
        let r = agent
            .post(&self.cfg.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type("application/json")
            .header("X-Pusher-Key", &*self.key)
            .header("X-Pusher-Signature", &b.signature)
            .send(&b.body[..]);
        let failure = match r {
            Ok(mut resp) => {
                // Read a little of the answer so that the connection can
                // be kept; what it says does not matter.
                let _ = resp.body_mut().with_config().limit(16 << 10).read_to_vec();
                let status = resp.status();
                if status.is_success() {
                    None
                } else {
                    Some(format!("answered {status}"))
                }
            }
            Err(e) => Some(e.to_string()),
        };
        let Some(why) = failure else {
            inbox.held.fetch_sub(b.events, Ordering::Relaxed);
            add(&counters.requests_ok, 1);
            add(&counters.events_sent, b.events);
            tracing::debug!(
                app = &*self.app,
                url = self.shown.as_str(),
                events = b.events,
                "webhook sent"
            );
            return;
        };
        add(&counters.attempts_failed, 1);
        b.failures += 1;
        if b.failures > self.cfg.max_retries {
            return self.give_up(b, inbox, counters, &why);
        }
        let wait = backoff(self.cfg.backoff, b.failures, rng.next());
        b.next = Instant::now() + wait;
        let max = self.cfg.max_retries;
        self.warn(format_args!(
            "{why}; retry {} of {max} in {} ms",
            b.failures,
            wait.as_millis()
        ));
        self.retry = Some(b);
    }

    fn give_up(&mut self, b: Batch, inbox: &Inbox, counters: &Counters, why: &str) {
        inbox.held.fetch_sub(b.events, Ordering::Relaxed);
        add(&counters.batches_failed, 1);
        add(&counters.events_failed, b.events);
        self.warn(format_args!(
            "{why}; gave up on a batch of {} events after {} attempts",
            b.events, b.failures
        ));
    }

    /// At the thread's end: everything still held is given up.
    fn abandon(&mut self, inbox: &Inbox, counters: &Counters) {
        let mut n = self.retry.take().map_or(0, |b| b.events);
        n += self.ready.len() + self.debounce.len();
        n += lock(&inbox.queue).len();
        // Whatever is pushed from now on is dropped at the door
        // (`stopping`), so nothing is left to count after this.
        lock(&inbox.queue).clear();
        if n > 0 {
            inbox.held.fetch_sub(n, Ordering::Relaxed);
            add(&counters.batches_failed, 1);
            add(&counters.events_failed, n);
            self.warn(format_args!("stopped with {n} events unsent"));
        }
    }

    /// A warning at most every WARN_EVERY per endpoint: a dead endpoint
    /// fails on every batch, and the log should say so, not drown in it.
    fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .warned
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        self.warned = Some(now);
        let unlogged = std::mem::take(&mut self.unlogged);
        tracing::warn!(
            app = &*self.app,
            url = self.shown.as_str(),
            unlogged,
            "webhook failed: {msg}"
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The wait before retry number `failures` (1 for the first): `min`
/// doubled per earlier failure, at most `max`, then drawn from its upper
/// half with `random`.
fn backoff((min, max): (Duration, Duration), failures: u32, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let base = min.checked_mul(1u32 << doublings).unwrap_or(max).min(max);
    let half = base / 2;
    let spread = (base - half).as_nanos() as u64;
    half + Duration::from_nanos(if spread == 0 {
        0
    } else {
        random % (spread + 1)
    })
}

/// xorshift64*: jitter needs no more, and no dependency. Seeded from
/// std's randomly keyed hasher.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms());
        Rng(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        let b = (Duration::from_millis(100), Duration::from_secs(10));
        for (failures, base) in [(1, 100), (2, 200), (3, 400), (8, 10_000), (40, 10_000)] {
            let base = Duration::from_millis(base);
            assert_eq!(backoff(b, failures, 0), base / 2, "{failures}");
            let top = (base - base / 2).as_nanos() as u64;
            assert_eq!(backoff(b, failures, top), base, "{failures}");
            let mut rng = Rng::new();
            for _ in 0..100 {
                let w = backoff(b, failures, rng.next());
                assert!(w >= base / 2 && w <= base);
            }
        }
        let tiny = (Duration::from_nanos(1), Duration::from_nanos(1));
        assert_eq!(backoff(tiny, u32::MAX, 7), Duration::from_nanos(1));
        let huge = (Duration::MAX / 2, Duration::MAX);
        assert!(backoff(huge, 5, 0) >= Duration::MAX / 4);
    }
}
