//! Name lookups for the broker thread, off that thread.
//!
//! `getaddrinfo` blocks, for as long as the system's resolver lets it (five
//! seconds per try and server by glibc's defaults) when DNS is slow or gone,
//! which is when a broker in a container or a cluster (`redis://redis:6379`)
//! most needs to keep going: its loop also reads the subscribing
//! connections, sends the publishes, runs the probes and answers
//! `/readyz`. So the broker thread never calls it: [`Resolver::lookup`]
//! answers an address literal at once and hands a name to a thread of its
//! own, and the broker thread asks again on a later tick until the answer
//! is there.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

/// Names waiting for the lookup thread; more wait for a later tick. The
/// broker asks for a handful at most (an address per instance, the
/// Sentinels, a new master), each once until answered.
const QUEUE: usize = 16;

/// Names asked for and not collected since (a Sentinel may name a new
/// master before the last one's answer is in): past this many, the
/// uncollected answers are forgotten, so a Sentinel naming one host after
/// another cannot grow them without bound. A name still wanted is simply
/// looked up again.
const MAX_PENDING: usize = 64;

type Answers = Arc<Mutex<HashMap<String, io::Result<SocketAddr>>>>;

/// Lookups of `host:port` names on a thread of their own, started at the
/// first name (a broker given addresses never starts it).
pub(crate) struct Resolver {
    tx: Option<SyncSender<String>>,
    answers: Answers,
    /// Names sent and not yet answered.
    pending: HashSet<String>,
}

impl Resolver {
    pub(crate) fn new() -> Resolver {
        Resolver {
            tx: None,
            answers: Arc::new(Mutex::new(HashMap::new())),
            pending: HashSet::new(),
        }
    }

    /// The first address of `hp` (`host:port`), if known now: at once for
    /// an address literal, else once the lookup thread has answered (the
    /// answer is handed out once; the next call looks the name up again,
    /// so a name that moves is followed). `None`: ask again later.
    pub(crate) fn lookup(&mut self, hp: &str) -> Option<io::Result<SocketAddr>> {
        if let Ok(a) = hp.parse() {
            return Some(Ok(a));
        }
        let answer = self.lock().remove(hp);
        if let Some(answer) = answer {
            self.pending.remove(hp);
            return Some(answer);
        }
        if self.pending.contains(hp) {
            return None;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
            self.lock().clear();
        }
        let tx = match &self.tx {
            Some(tx) => tx,
            None => match self.start() {
                Ok(tx) => self.tx.insert(tx),
                Err(e) => return Some(Err(e)),
            },
        };
        match tx.try_send(hp.to_owned()) {
            Ok(()) => {
                self.pending.insert(hp.to_owned());
                None
            }
            Err(TrySendError::Full(_)) => None,
            Err(TrySendError::Disconnected(_)) => {
                self.tx = None;
                Some(Err(io::Error::other("the lookup thread is gone")))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, io::Result<SocketAddr>>> {
        // Only inserts and removes happen under the lock: a panic there
        // leaves the map whole.
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the lookup thread. It ends when the resolver is dropped
    /// (after the lookup it is in, which nobody waits for).
    fn start(&self) -> io::Result<SyncSender<String>> {
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        let answers = self.answers.clone();
        std::thread::Builder::new()
            .name("ringws-broker-dns".into())
            .spawn(move || {
                for hp in rx {
                    let answer = hp.to_socket_addrs().and_then(|mut a| {
                        a.next()
                            .ok_or_else(|| io::Error::other("no address for the name"))
                    });
                    answers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(hp, answer);
                }
            })?;
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Asks until answered, as the broker's ticks do.
    fn wait(r: &mut Resolver, hp: &str) -> io::Result<SocketAddr> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(a) = r.lookup(hp) {
                return a;
            }
            assert!(Instant::now() < until, "no answer for {hp}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn literals_are_answered_at_once_without_a_thread() {
        let mut r = Resolver::new();
        let a = r.lookup("127.0.0.1:6379").unwrap().unwrap();
        assert_eq!(a, "127.0.0.1:6379".parse().unwrap());
        let a = r.lookup("[::1]:26379").unwrap().unwrap();
        assert_eq!(a.port(), 26379);
        assert!(r.tx.is_none());
    }

    #[test]
    fn names_are_answered_later_and_once() {
        let mut r = Resolver::new();
        // localhost comes from /etc/hosts: no DNS needed on a test machine.
        assert!(r.lookup("localhost:6379").is_none(), "a name waits");
        let a = wait(&mut r, "localhost:6379").unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(a.port(), 6379);
        // Handed out once: the next call looks it up again.
        assert!(r.pending.is_empty());
        assert!(wait(&mut r, "localhost:6379").is_ok());
    }

    #[test]
    fn uncollected_answers_are_bounded() {
        let mut r = Resolver::new();
        // Names never asked for again, as a Sentinel naming one host after
        // another would leave them.
        for i in 0..3 * MAX_PENDING {
            let _ = r.lookup(&format!("localhost:{}", 1000 + i));
            assert!(r.pending.len() <= MAX_PENDING);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(r.lock().len() <= MAX_PENDING + QUEUE + 1);
        // A name still wanted is answered all the same.
        assert!(wait(&mut r, "localhost:6379").is_ok());
    }

    #[test]
    fn a_bad_name_is_an_error_not_a_wait() {
        let mut r = Resolver::new();
        // A port that is no number fails in the lookup itself, without DNS.
        assert!(wait(&mut r, "localhost:notaport").is_err());
        assert!(wait(&mut r, "no-port-at-all").is_err());
    }
}
