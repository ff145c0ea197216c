//! One coarse timing wheel per thread, for every connection timeout
//! (handshake, close, write).
//!
//! A connection has at most one entry: an intrusive node (12 bytes) in
//! `nodes`, linked into the bucket of its due tick. Arming, re-arming and
//! cancelling are O(1) and allocate nothing, so a write deadline can be set
//! and cleared on every send. A tick visits only its own bucket; an entry due
//! more than one lap ahead stays in its bucket and is looked at once per lap.
//! Nothing is done for a connection without a deadline, idle or not. The
//! loop sleeps until the next non-empty bucket (a bitmap finds it), so the
//! deadline rides on the wait itself: no timer op, no periodic tick. The
//! loop asks for that bucket every turn, and the answer is kept until a
//! change may alter it, so a turn with no deadline near costs no scan.

use std::cell::Cell;

const NONE: u32 = u32::MAX;
/// `Wheel::next` before a scan: not known.
const UNKNOWN: u32 = 0;
/// `Wheel::next` after a scan that found every bucket empty.
const EMPTY: u32 = u32::MAX;
/// Buckets per lap (a power of two).
const BUCKETS: usize = 1024;

/// A slot's entry. Linked (into the bucket `due % BUCKETS`) exactly when
/// `due != 0`: tick 0 is never a deadline, since `arm` puts every one at
/// least a tick ahead.
#[derive(Debug, Clone, Copy)]
struct Node {
    due: u32,
    prev: u32,
    next: u32,
}

const FREE: Node = Node {
    due: 0,
    prev: NONE,
    next: NONE,
};

/// Deadlines in ticks, keyed by slot.
pub(crate) struct Wheel {
    nodes: Vec<Node>,
    heads: Box<[u32; BUCKETS]>,
    /// One bit per non-empty bucket.
    bits: [u64; BUCKETS / 64],
    /// The last tick processed.
    now: u32,
    /// What `next_due` answered, kept while it holds: a tick after `now`
    /// whose bucket holds an entry and that is no later than any entry's
    /// due tick; or `EMPTY`; or `UNKNOWN` once a change may have
    /// altered it (an unlink from that bucket, an advance past it).
    next: Cell<u32>,
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            nodes: Vec::new(),
            heads: Box::new([NONE; BUCKETS]),
            bits: [0; BUCKETS / 64],
            now: 0,
            next: Cell::new(UNKNOWN),
        }
    }

    /// The last tick processed.
    pub(crate) fn now(&self) -> u32 {
        self.now
    }

    /// Sets `slot`'s deadline to tick `due` (at the earliest the next tick).
    pub(crate) fn arm(&mut self, slot: u32, due: u32) {
        let due = due.max(self.now + 1);
        let i = slot as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, FREE);
        }
        let n = self.nodes[i];
        if n.due != 0 {
            if n.due == due {
                return;
            }
            self.unlink(slot);
        }
        self.nodes[i].due = due;
        self.link(slot, due as usize % BUCKETS);
        let next = self.next.get();
        if next == EMPTY || (next != UNKNOWN && due < next) {
            // Its bucket now holds this entry, due before any other.
            self.next.set(due);
        }
    }

    /// The tick `slot` is armed for, if it is.
    #[inline]
    pub(crate) fn due(&self, slot: u32) -> Option<u32> {
        self.nodes
            .get(slot as usize)
            .filter(|n| n.due != 0)
            .map(|n| n.due)
    }

    /// Clears `slot`'s deadline, if any.
    pub(crate) fn cancel(&mut self, slot: u32) {
        if self.nodes.get(slot as usize).is_some_and(|n| n.due != 0) {
            self.unlink(slot);
        }
    }

    /// A tick after the last one processed, no later than the next
    /// deadline (an entry in its bucket may be due laps later), if any
    /// entry is armed. Scans the buckets only when the last answer may
    /// have changed since.
    #[inline]
    pub(crate) fn next_due(&self) -> Option<u32> {
        let next = match self.next.get() {
            UNKNOWN => {
                let n = self.scan_next().unwrap_or(EMPTY);
                self.next.set(n);
                n
            }
            n => n,
        };
        (next != EMPTY).then_some(next)
    }

    /// The tick of the next non-empty bucket, if any, found by scanning
    /// the bitmap (what `next_due` answers when it knows nothing newer).
    fn scan_next(&self) -> Option<u32> {
        let start = (self.now as usize + 1) % BUCKETS;
        // Words from the one holding `start`, wrapping once around.
        for k in 0..=BUCKETS / 64 {
            let w = (start / 64 + k) % (BUCKETS / 64);
            let mut word = self.bits[w];
            if k == 0 {
                word &= !0u64 << (start % 64);
            } else if k == BUCKETS / 64 {
                word &= !(!0u64 << (start % 64));
            }
            if word != 0 {
                let b = w * 64 + word.trailing_zeros() as usize;
                let ahead = (b + BUCKETS - start) % BUCKETS;
                return Some(self.now + 1 + ahead as u32);
            }
        }
        None
    }

    /// Advances to tick `now`, appending the slots now due to `fired`
    /// (their deadlines cleared).
    pub(crate) fn advance(&mut self, now: u32, fired: &mut Vec<u32>) {
        if now <= self.now {
            return;
        }
        // Past a whole lap every bucket is visited once.
        let steps = (now - self.now).min(BUCKETS as u32);
        for t in 1..=steps {
            let b = (self.now.wrapping_add(t)) as usize % BUCKETS;
            let mut cur = self.heads[b];
            while cur != NONE {
                let next = self.nodes[cur as usize].next;
                if self.nodes[cur as usize].due <= now {
                    self.unlink(cur);
                    fired.push(cur);
                }
                cur = next;
            }
        }
        self.now = now;
        if self.next.get() != EMPTY && self.next.get() <= now {
            self.next.set(UNKNOWN);
        }
    }

    fn link(&mut self, slot: u32, b: usize) {
        let head = self.heads[b];
        self.nodes[slot as usize] = Node {
            due: self.nodes[slot as usize].due,
            prev: NONE,
            next: head,
        };
        if head != NONE {
            self.nodes[head as usize].prev = slot;
        }
        self.heads[b] = slot;
        self.bits[b / 64] |= 1 << (b % 64);
    }

    fn unlink(&mut self, slot: u32) {
        let n = self.nodes[slot as usize];
        let b = n.due as usize % BUCKETS;
        let next = self.next.get();
        if next != EMPTY && next as usize % BUCKETS == b {
            // Maybe the bucket's last entry, which `next` stood for.
            self.next.set(UNKNOWN);
        }
        if n.prev != NONE {
            self.nodes[n.prev as usize].next = n.next;
        } else {
            self.heads[b] = n.next;
            if n.next == NONE {
                self.bits[b / 64] &= !(1 << (b % 64));
            }
        }
        if n.next != NONE {
            self.nodes[n.next as usize].prev = n.prev;
        }
        self.nodes[slot as usize] = FREE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires each slot at its tick, never early, re-arming and cancelling in
    /// between, across several laps; the next-due hint is never late.
    #[test]
    fn fires_at_the_due_tick_and_not_before() {
        let mut w = Wheel::new();
        let dues: Vec<u32> = (0..500).map(|i| 1 + (i * 7919) % 5000).collect();
        for (s, &d) in dues.iter().enumerate() {
            w.arm(s as u32, d);
        }
        // Re-arm some later, cancel others.
        w.arm(3, 4321);
        w.cancel(4);
        let mut fired = Vec::new();
        let mut seen = vec![None; dues.len()];
        let mut t = 0;
        while t < 6000 {
            let next = w.next_due().unwrap_or(6000).min(6000);
            assert!(next > t);
            // Jump straight to the hinted tick, or step by 3.
            t = if t % 2 == 0 { next } else { (t + 3).min(next) };
            fired.clear();
            w.advance(t, &mut fired);
            for &s in &fired {
                assert!(seen[s as usize].is_none(), "slot {s} fired twice");
                seen[s as usize] = Some(t);
            }
        }
        for (s, &d) in dues.iter().enumerate() {
            let want = match s {
                3 => Some(4321),
                4 => None,
                _ => Some(d),
            };
            match (want, seen[s]) {
                (None, got) => assert_eq!(got, None, "slot {s}"),
                (Some(d), Some(got)) => {
                    assert!(got >= d && got <= d + 3, "slot {s} due {d} fired {got}")
                }
                (Some(d), None) => panic!("slot {s} due {d} never fired"),
            }
        }
        assert_eq!(w.next_due(), None);
    }

    /// The kept answer of `next_due` against a fresh scan and the armed
    /// entries, after every arm, cancel and advance of a random mix: never
    /// later than the earliest due tick, never before the scan's bucket,
    /// always after `now`, and `None` exactly when nothing is armed.
    #[test]
    fn next_due_kept_agrees_with_a_scan() {
        let mut w = Wheel::new();
        let mut dues = [0u32; 64];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as u32
        };
        let mut fired = Vec::new();
        for _ in 0..20_000 {
            let slot = rnd(64);
            match rnd(8) {
                0..=3 => {
                    let due = w.now() + 1 + rnd(3000);
                    w.arm(slot, due);
                    dues[slot as usize] = w.due(slot).unwrap();
                }
                4 => {
                    w.cancel(slot);
                    dues[slot as usize] = 0;
                }
                _ => {
                    let to = w.now() + rnd(40);
                    fired.clear();
                    w.advance(to, &mut fired);
                    for &s in &fired {
                        assert!(dues[s as usize] <= to, "slot {s} fired early");
                        dues[s as usize] = 0;
                    }
                }
            }
            let min = dues.iter().copied().filter(|&d| d != 0).min();
            let (kept, scan) = (w.next_due(), w.scan_next());
            assert_eq!(kept.is_some(), min.is_some());
            if let (Some(k), Some(s), Some(m)) = (kept, scan, min) {
                assert!(k > w.now() && s <= k && k <= m, "kept {k} scan {s} min {m}");
            }
        }
    }

    /// A jump of more than one lap still fires everything due.
    #[test]
    fn long_jumps_fire_everything_due() {
        let mut w = Wheel::new();
        w.arm(0, 10);
        w.arm(1, 5000);
        w.arm(2, 9000);
        let mut fired = Vec::new();
        w.advance(6000, &mut fired);
        fired.sort();
        assert_eq!(fired, vec![0, 1]);
        assert!(w.next_due().is_some());
        fired.clear();
        w.advance(9000, &mut fired);
        assert_eq!(fired, vec![2]);
    }
}
