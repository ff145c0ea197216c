//! One thread's subscription tables: topic name to subscribers, kept so
//! that a publish walks a dense vector and a subscriber leaves in O(1).

use std::collections::HashMap;
use std::sync::Arc;

use crate::runtime::io::SockId;

struct Topic {
    name: Arc<str>,
    /// Subscribers, in no particular order.
    subs: Vec<SockId>,
    /// Where each subscriber is in `subs`.
    pos: HashMap<SockId, u32>,
}

/// Topics of one worker thread. Topic ids are indices, reused once a topic
/// has no subscriber left (an empty topic is dropped: churn of topic names
/// does not grow the table).
#[derive(Default)]
pub(crate) struct Topics {
    ids: HashMap<Arc<str>, u32>,
    topics: Vec<Option<Topic>>,
    free: Vec<u32>,
    /// With a broker: topics that gained their first subscriber here
    /// (`true`) or lost their last (`false`) since the worker last handed
    /// them on ([`Topics::take_changes`]).
    changes: Option<Vec<(Arc<str>, bool)>>,
}

impl Topics {
    /// Tables that record their topics' first and last subscribers, for a
    /// broker.
    pub(crate) fn tracking() -> Topics {
        Topics {
            changes: Some(Vec::new()),
            ..Topics::default()
        }
    }

    /// The changes recorded since the last call, if any.
    pub(crate) fn changes(&mut self) -> Option<&mut Vec<(Arc<str>, bool)>> {
        self.changes.as_mut().filter(|c| !c.is_empty())
    }

    /// Adds `id` to `name`; its topic id, or `None` if it was subscribed.
    pub(crate) fn subscribe(&mut self, id: SockId, name: &str) -> Option<u32> {
        let t = match self.ids.get(name) {
            Some(&t) => t,
            None => {
                let name: Arc<str> = Arc::from(name);
                let topic = Topic {
                    name: name.clone(),
                    subs: Vec::new(),
                    pos: HashMap::new(),
                };
                let t = match self.free.pop() {
                    Some(t) => {
                        self.topics[t as usize] = Some(topic);
                        t
                    }
                    None => {
                        self.topics.push(Some(topic));
                        (self.topics.len() - 1) as u32
                    }
                };
                if let Some(c) = &mut self.changes {
                    c.push((name.clone(), true));
                }
                self.ids.insert(name, t);
                t
            }
        };
        let topic = self.topics[t as usize].as_mut().expect("a live topic");
        if topic.pos.contains_key(&id) {
            return None;
        }
        topic.pos.insert(id, topic.subs.len() as u32);
        topic.subs.push(id);
        Some(t)
    }

    /// Removes `id` from `name`; the topic id, or `None` if not subscribed.
    pub(crate) fn unsubscribe(&mut self, id: SockId, name: &str) -> Option<u32> {
        let t = *self.ids.get(name)?;
        self.remove(id, t).then_some(t)
    }

    /// Removes `id` from topic `t`. Returns whether it was there.
    pub(crate) fn remove(&mut self, id: SockId, t: u32) -> bool {
        let Some(Some(topic)) = self.topics.get_mut(t as usize) else {
            return false;
        };
        let Some(i) = topic.pos.remove(&id) else {
            return false;
        };
        topic.subs.swap_remove(i as usize);
        if let Some(&moved) = topic.subs.get(i as usize) {
            topic.pos.insert(moved, i);
        }
        if topic.subs.is_empty() {
            let name = topic.name.clone();
            self.ids.remove(&name);
            if let Some(c) = &mut self.changes {
                c.push((name, false));
            }
            self.topics[t as usize] = None;
            self.free.push(t);
        }
        true
    }

    pub(crate) fn is_subscribed(&self, id: SockId, name: &str) -> bool {
        self.ids
            .get(name)
            .and_then(|&t| self.topics[t as usize].as_ref())
            .is_some_and(|topic| topic.pos.contains_key(&id))
    }

    /// The subscribers of `name` (none if nobody here subscribes).
    pub(crate) fn subscribers(&self, name: &str) -> &[SockId] {
        self.ids
            .get(name)
            .and_then(|&t| self.topics[t as usize].as_ref())
            .map_or(&[], |topic| &topic.subs)
    }

    /// How many topics have subscribers here.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Topics;
    use crate::runtime::io::SockId;

    fn id(slot: u32) -> SockId {
        SockId { slot, gen: 0 }
    }

    #[test]
    fn subscribe_unsubscribe_and_reuse() {
        let mut t = Topics::default();
        let a = t.subscribe(id(1), "news").unwrap();
        assert_eq!(t.subscribe(id(1), "news"), None, "twice is once");
        assert_eq!(t.subscribe(id(2), "news"), Some(a));
        assert_eq!(t.subscribe(id(3), "news"), Some(a));
        assert_eq!(t.subscribers("news").len(), 3);
        // The last one moves into the first one's place.
        assert!(t.remove(id(1), a));
        assert!(!t.remove(id(1), a));
        let mut subs = t.subscribers("news").to_vec();
        subs.sort();
        assert_eq!(subs, vec![id(2), id(3)]);
        assert!(t.is_subscribed(id(3), "news"));
        assert_eq!(t.unsubscribe(id(3), "news"), Some(a));
        assert_eq!(t.unsubscribe(id(2), "news"), Some(a));
        // Empty topics are dropped, their ids reused.
        assert_eq!(t.len(), 0);
        assert!(t.subscribers("news").is_empty());
        assert_eq!(t.subscribe(id(9), "other"), Some(a));
    }
}
