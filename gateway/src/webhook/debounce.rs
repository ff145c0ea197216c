//! Debouncing, sans I/O (time comes in as the items' `at` and a `now`):
//! `member_removed` and `channel_vacated` are held back for `debounce`,
//! and dropped together with the `member_added` or `channel_occupied`
//! that undoes them within it, as on a page reload.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Event, Item};

/// What became of an offered event.
pub(super) enum Offer {
    /// Send it.
    Ready(Item),
    /// Held back until its debounce ends.
    Held,
    /// It cancelled a held removal: neither is sent.
    Cancelled,
}

#[derive(PartialEq, Eq, Hash)]
enum Key {
    Channel(String),
    Member(String, String),
}

/// Removals held back, in arrival order, each cancelled if its return
/// comes before its time.
pub(super) struct Debounce {
    delay: Duration,
    /// (sequence number, the event; `None` once cancelled).
    held: VecDeque<(u64, Option<Item>)>,
    /// The newest held removal per channel or member.
    index: HashMap<Key, u64>,
    next_seq: u64,
}

impl Debounce {
    pub(super) fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            held: VecDeque::new(),
            index: HashMap::new(),
            next_seq: 0,
        }
    }

    pub(super) fn offer(&mut self, item: Item) -> Offer {
        if self.delay.is_zero() {
            return Offer::Ready(item);
        }
        let (key, removal) = match &*item.event {
            Event::ChannelVacated { channel } => (Key::Channel(channel.clone()), true),
            Event::ChannelOccupied { channel } => (Key::Channel(channel.clone()), false),
            Event::MemberRemoved { channel, user_id } => {
                (Key::Member(channel.clone(), user_id.clone()), true)
            }
            Event::MemberAdded { channel, user_id } => {
                (Key::Member(channel.clone(), user_id.clone()), false)
            }
            Event::ClientEvent { .. } => return Offer::Ready(item),
        };
        if removal {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.held.push_back((seq, Some(item)));
            self.index.insert(key, seq);
            return Offer::Held;
        }
        let Some(seq) = self.index.remove(&key) else {
            return Offer::Ready(item);
        };
        // Sequence numbers rise along the queue.
        if let Ok(i) = self.held.binary_search_by_key(&seq, |(s, _)| *s) {
            self.held[i].1 = None;
        }
        Offer::Cancelled
    }

    /// Moves the removals whose time has come by `now` (all of them with
    /// `None`) to `out`.
    pub(super) fn release(&mut self, now: Option<Instant>, out: &mut VecDeque<Item>) {
        while let Some((seq, item)) = self.held.front() {
            if let (Some(now), Some(item)) = (now, item) {
                if item.at + self.delay > now {
                    break;
                }
            }
            let seq = *seq;
            let Some(item) = self.held.pop_front().and_then(|(_, i)| i) else {
                continue;
            };
            let key = match &*item.event {
                Event::ChannelVacated { channel } => Key::Channel(channel.clone()),
                Event::MemberRemoved { channel, user_id } => {
                    Key::Member(channel.clone(), user_id.clone())
                }
                _ => unreachable!("only removals are held"),
            };
            if self.index.get(&key) == Some(&seq) {
                self.index.remove(&key);
            }
            out.push_back(item);
        }
    }

    /// When the oldest held removal is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.held
            .iter()
            .find_map(|(_, i)| i.as_ref().map(|i| i.at + self.delay))
    }

    /// Removals held (not cancelled).
    pub(super) fn len(&self) -> usize {
        self.held.iter().filter(|(_, i)| i.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn item(at: Instant, e: Event) -> Item {
        Item {
            at,
            event: Arc::new(e),
        }
    }

    fn removed(user: &str) -> Event {
        Event::MemberRemoved {
            channel: "presence-a".into(),
            user_id: user.into(),
        }
    }

    fn added(user: &str) -> Event {
        Event::MemberAdded {
            channel: "presence-a".into(),
            user_id: user.into(),
        }
    }

    #[test]
    fn debounce_cancels_a_quick_return() {
        let t = Instant::now();
        let d = Duration::from_secs(3);
        let mut db = Debounce::new(d);
        let mut out = VecDeque::new();
        assert!(matches!(db.offer(item(t, added("a"))), Offer::Ready(_)));
        assert!(matches!(db.offer(item(t, removed("a"))), Offer::Held));
        assert!(matches!(db.offer(item(t, removed("b"))), Offer::Held));
        let vacated = Event::ChannelVacated {
            channel: "presence-a".into(),
        };
        assert!(matches!(db.offer(item(t, vacated.clone())), Offer::Held));
        assert_eq!(db.len(), 3);
        assert_eq!(db.next_due(), Some(t + d));
        // a and the channel come back: their removals go.
        let back = t + Duration::from_secs(1);
        assert!(matches!(db.offer(item(back, added("a"))), Offer::Cancelled));
        let occupied = Event::ChannelOccupied {
            channel: "presence-a".into(),
        };
        assert!(matches!(db.offer(item(back, occupied)), Offer::Cancelled));
        assert_eq!(db.len(), 1);
        db.release(Some(t + d - Duration::from_millis(1)), &mut out);
        assert!(out.is_empty(), "not yet");
        db.release(Some(t + d), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(*out[0].event, removed("b"));
        assert_eq!((db.len(), db.next_due()), (0, None));
        assert!(db.index.is_empty() && db.held.is_empty());
        // A return after the removal was sent is an event of its own.
        assert!(matches!(db.offer(item(back, added("b"))), Offer::Ready(_)));
        // Client events pass; a zero delay passes everything.
        let ce = Event::ClientEvent {
            channel: "private-a".into(),
            event: "client-x".into(),
            data: "1".into(),
            socket_id: "1.1".into(),
            user_id: None,
        };
        assert!(matches!(db.offer(item(t, ce)), Offer::Ready(_)));
        let mut none = Debounce::new(Duration::ZERO);
        assert!(matches!(none.offer(item(t, removed("a"))), Offer::Ready(_)));
    }

    #[test]
    fn debounce_releases_everything_at_a_stop() {
        let t = Instant::now();
        let mut db = Debounce::new(Duration::from_secs(60));
        let mut out = VecDeque::new();
        for u in ["a", "b", "c"] {
            assert!(matches!(db.offer(item(t, removed(u))), Offer::Held));
        }
        assert!(matches!(db.offer(item(t, added("b"))), Offer::Cancelled));
        db.release(None, &mut out);
        let users: Vec<_> = out
            .iter()
            .map(|i| match &*i.event {
                Event::MemberRemoved { user_id, .. } => user_id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(users, ["a", "c"]);
        assert_eq!(db.len(), 0);
    }
}
