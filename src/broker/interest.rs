//! Which topics this node wants from the broker, and which of its workers
//! want each one: the broker thread's table, sans-IO (time comes in as
//! `now`).
//!
//! Workers report a topic going from no local subscriber to one, and from
//! one to none. The first report for a topic subscribes it in Redis; after
//! the last worker leaves, the topic lingers ([`Interest::expire`]) before
//! it is unsubscribed, so a chat room that empties and fills again within
//! the linger costs Redis nothing. Subscribes and unsubscribes collect into
//! batches, sent one command per batch. Only the workers whose bit is set
//! are handed a received message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A set of worker indices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Workers(Vec<u64>);

impl Workers {
    fn set(&mut self, i: usize, on: bool) {
        let (w, b) = (i / 64, i % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        if on {
            self.0[w] |= 1 << b;
        } else {
            self.0[w] &= !(1 << b);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The workers in the set, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

#[derive(Debug)]
struct Entry {
    workers: Workers,
    /// When the last worker left (the linger runs from here).
    empty_since: Option<Instant>,
    /// Has an entry in [`Interest::lingering`]: one at most per topic, so
    /// that a topic emptying and filling fast does not grow the queue.
    queued: bool,
    /// The application listens to it ([`Interest::pin`]): subscribed for
    /// good, whatever the workers say.
    pinned: bool,
}

/// The node's interest in topics (see the module docs).
#[derive(Debug)]
pub(crate) struct Interest {
    topics: HashMap<Arc<str>, Entry>,
    linger: Duration,
    /// Topics that emptied, each with the time it did, at most one entry
    /// per topic (so the queue is bounded by the topics). An entry whose
    /// topic filled since is dropped; one whose topic emptied again later
    /// goes back in at the later time (the order is then only nearly by
    /// time: an unsubscribe may wait up to one more linger).
    lingering: VecDeque<(Instant, Arc<str>)>,
    to_subscribe: Vec<Arc<str>>,
    to_unsubscribe: Vec<Arc<str>>,
}

impl Interest {
    pub(crate) fn new(linger: Duration) -> Interest {
        Interest {
            topics: HashMap::new(),
            linger,
            lingering: VecDeque::new(),
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
        }
    }

    /// Worker `worker` has subscribers for `topic` now (`on`) or no longer.
    pub(crate) fn change(&mut self, worker: usize, topic: &Arc<str>, on: bool, now: Instant) {
        match self.topics.get_mut(&**topic) {
            Some(e) => {
                e.workers.set(worker, on);
                if e.workers.is_empty() && !e.pinned {
                    if e.empty_since.is_none() {
                        e.empty_since = Some(now);
                        if !e.queued {
                            e.queued = true;
                            self.lingering.push_back((now, topic.clone()));
                        }
                    }
                } else {
                    e.empty_since = None;
                }
            }
            None if on => {
                let mut workers = Workers::default();
                workers.set(worker, true);
                self.topics.insert(
                    topic.clone(),
                    Entry {
                        workers,
                        empty_since: None,
                        queued: false,
                        pinned: false,
                    },
                );
                self.to_subscribe.push(topic.clone());
            }
            // Leaving a topic this table does not hold: a report that
            // raced its own subscribe's; nothing to do.
            None => {}
        }
    }

    /// Subscribes `topic` for good: the application listens to it
    /// (`App::on_remote_publish`), subscribers or not.
    pub(crate) fn pin(&mut self, topic: &str) {
        match self.topics.get_mut(topic) {
            Some(e) => {
                e.pinned = true;
                e.empty_since = None;
            }
            None => {
                let topic: Arc<str> = Arc::from(topic);
                self.topics.insert(
                    topic.clone(),
                    Entry {
                        workers: Workers::default(),
                        empty_since: None,
                        queued: false,
                        pinned: true,
                    },
                );
                self.to_subscribe.push(topic);
            }
        }
    }

    /// Unsubscribes the topics empty for the whole linger.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((since, _)) = self.lingering.front() {
            if now < *since + self.linger {
                break;
            }
            let (_, topic) = self.lingering.pop_front().expect("just seen");
            let Some(e) = self.topics.get_mut(&topic) else {
                continue;
            };
            match e.empty_since {
                Some(t) if now >= t + self.linger => {
                    self.topics.remove(&topic);
                    self.to_unsubscribe.push(topic);
                }
                // Emptied again since: wait from then.
                Some(t) => self.lingering.push_back((t, topic)),
                // Filled again.
                None => e.queued = false,
            }
        }
    }

    /// The (un)subscribes decided since the last call, in order.
    pub(crate) fn take_batches(&mut self) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        (
            std::mem::take(&mut self.to_subscribe),
            std::mem::take(&mut self.to_unsubscribe),
        )
    }

    /// The workers to hand a message for `topic` (`None`: none here).
    pub(crate) fn workers(&self, topic: &str) -> Option<(&Arc<str>, &Workers)> {
        self.topics
            .get_key_value(topic)
            .map(|(k, e)| (k, &e.workers))
            .filter(|(_, w)| !w.is_empty())
    }

    /// Every topic subscribed in Redis (lingering ones too): what a
    /// reconnected connection subscribes again.
    pub(crate) fn subscribed(&self) -> impl Iterator<Item = &Arc<str>> {
        self.topics.keys()
    }

    /// Topics subscribed in Redis.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn first_subscriber_subscribes_and_the_last_lingers() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut i = Interest::new(Duration::from_secs(1));
        i.change(0, &t("a"), true, ms(0));
        i.change(1, &t("a"), true, ms(1));
        i.change(1, &t("b"), true, ms(1));
        assert_eq!(i.take_batches(), (vec![t("a"), t("b")], vec![]));
        assert_eq!(i.workers("a").unwrap().1.iter().collect::<Vec<_>>(), [0, 1]);
        i.change(0, &t("a"), false, ms(10));
        i.change(1, &t("a"), false, ms(20));
        assert!(i.workers("a").is_none(), "lingering: no worker is woken");
        i.expire(ms(1019));
        assert_eq!(i.take_batches(), (vec![], vec![]));
        i.expire(ms(1020));
        assert_eq!(i.take_batches(), (vec![], vec![t("a")]));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn a_pinned_topic_stays_subscribed() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut i = Interest::new(Duration::from_secs(1));
        i.pin("ctl");
        assert_eq!(i.take_batches(), (vec![t("ctl")], vec![]));
        assert!(i.workers("ctl").is_none(), "no worker wants it");
        // Workers come and go; it is never unsubscribed.
        i.change(0, &t("ctl"), true, ms(0));
        assert_eq!(i.take_batches(), (vec![], vec![]));
        i.change(0, &t("ctl"), false, ms(1));
        i.expire(ms(10_000));
        assert_eq!(i.take_batches(), (vec![], vec![]));
        assert_eq!(i.subscribed().count(), 1);
        // Pinning a topic workers hold: no second subscribe.
        i.change(1, &t("x"), true, ms(0));
        i.pin("x");
        assert_eq!(i.take_batches(), (vec![t("x")], vec![]));
        i.change(1, &t("x"), false, ms(1));
        i.expire(ms(10_000));
        assert_eq!(i.take_batches(), (vec![], vec![]));
    }

    #[test]
    fn a_topic_that_fills_again_within_the_linger_costs_nothing() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut i = Interest::new(Duration::from_secs(1));
        i.change(3, &t("room"), true, ms(0));
        i.take_batches();
        i.change(3, &t("room"), false, ms(100));
        i.change(70, &t("room"), true, ms(500));
        i.expire(ms(5000));
        assert_eq!(i.take_batches(), (vec![], vec![]));
        assert_eq!(
            i.workers("room").unwrap().1.iter().collect::<Vec<_>>(),
            [70]
        );
        // Empties again: only the newest emptying counts, and the queue
        // holds one entry for the topic however often it churns.
        for k in 0..1000 {
            i.change(70, &t("room"), true, ms(5000 + k));
            i.change(70, &t("room"), false, ms(5000 + k));
        }
        assert_eq!(i.lingering.len(), 1);
        i.change(70, &t("room"), true, ms(5999));
        i.change(70, &t("room"), false, ms(6000));
        i.expire(ms(6999));
        assert_eq!(i.take_batches(), (vec![], vec![]));
        i.expire(ms(7000));
        assert_eq!(i.take_batches(), (vec![], vec![t("room")]));
        // And a new subscriber after that subscribes again.
        i.change(0, &t("room"), true, ms(7001));
        assert_eq!(i.take_batches(), (vec![t("room")], vec![]));
        assert_eq!(i.subscribed().count(), 1);
    }

    #[test]
    fn a_stray_leave_is_ignored() {
        let mut i = Interest::new(Duration::ZERO);
        i.change(0, &t("x"), false, Instant::now());
        assert_eq!(i.len(), 0);
        assert_eq!(i.take_batches(), (vec![], vec![]));
    }
}
