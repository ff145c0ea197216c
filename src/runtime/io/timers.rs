//! Time: the loop's 10 ms ticks, per-socket deadlines on the timing wheel
//! (the handler's and the write timeout), and firing them.

use std::time::{Duration, Instant};

use super::*;
use crate::log::conn_event;

/// `d` in loop ticks (10 ms), rounded up.
pub(crate) fn ticks_of(d: Duration) -> u32 {
    ticks(d)
}

pub(super) fn ticks(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(TICK.as_nanos())).unwrap_or(u32::MAX / 2)
}

/// A tick in nanoseconds.
const TICK_NS: u64 = TICK.as_nanos() as u64;

/// `d` in nanoseconds, saturating (at 584 years).
#[inline]
pub(super) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The tick of `ns` nanoseconds after the epoch, rounded up, so a deadline
/// never fires early; at least 1 (0 means none). A division of a u64 by a
/// constant, which compiles to a multiply, where the `u128` of
/// `Duration::as_nanos` took a call to a 128-bit division.
#[inline]
pub(super) fn tick_of_ns(ns: u64) -> u32 {
    u32::try_from(ns.div_ceil(TICK_NS))
        .unwrap_or(u32::MAX - 1)
        .max(1)
}

/// The tick `ns` stands for, as a nanosecond count.
#[inline]
pub(super) fn ns_of_tick(tick: u32) -> u64 {
    u64::from(tick) * TICK_NS
}

impl Io {
    /// The loop's clock in ticks (10 ms), for handlers that keep a time per
    /// connection in 4 bytes.
    pub(crate) fn now_ticks(&self) -> u32 {
        self.now_tick
    }

    /// The instant `ticks` stands for (see [`Io::now_ticks`]).
    pub(crate) fn instant_of(&self, ticks: u32) -> Instant {
        self.epoch + TICK * ticks
    }

    /// The instant tick 0 stands for.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Reads the clock: the turn's `now`, and the same in nanoseconds and
    /// ticks since the epoch. Once per turn, after the wait.
    #[inline]
    pub(super) fn read_clock(&mut self) {
        self.now_ns = epoll::monotonic_ns().saturating_sub(self.epoch_ns);
        self.now_tick = tick_of_ns(self.now_ns);
    }

    /// How long the next wait may last for the timers (`None`: no limit
    /// of theirs before the backend's own longest wait), given the handler's
    /// next deadline.
    #[inline]
    pub(super) fn timer_wait(&self, deadline: Option<Instant>) -> Option<Duration> {
        let mut until = self.wheel.next_due().map(ns_of_tick);
        for t in [deadline, self.accept_retry].into_iter().flatten() {
            let ns = nanos(t.saturating_duration_since(self.epoch));
            until = Some(until.map_or(ns, |u| u.min(ns)));
        }
        let until = until?;
        // The clock read at the start of the turn is behind by the turn's
        // work. Both backends wait at most a second (`FAR` is twice that),
        // so a deadline this far from that reading cannot come before the
        // wait ends, unless the turn took over a second: no need to read
        // the clock again.
        if until > self.now_ns.saturating_add(nanos(FAR)) {
            return None;
        }
        let now = epoll::monotonic_ns().saturating_sub(self.epoch_ns);
        Some(Duration::from_nanos(until.saturating_sub(now)))
    }

    /// Sets (or clears) the deadline at which [`Handler::timer`] runs for
    /// `id`. Coarse: it fires up to one tick (10 ms) late, never early.
    pub fn set_deadline(&mut self, id: SockId, at: Option<Instant>) {
        let due = at.map_or(0, |t| self.tick_of(t));
        if let Some(s) = self.sock_mut(id) {
            if s.user_due != due {
                s.user_due = due;
                self.rearm(id.slot);
            }
        }
    }

    pub(super) fn tick_of(&self, t: Instant) -> u32 {
        tick_of_ns(nanos(t.saturating_duration_since(self.epoch)))
    }

    /// Makes sure the wheel wakes `slot` no later than its earliest
    /// deadline. Lazy: an entry due earlier is left in place (when it fires,
    /// `fire_timers` finds nothing due and arms the real deadline), and a
    /// cleared deadline is not cancelled. So the write deadline, set on
    /// every send and cleared on every completion, costs the wheel nothing
    /// while the entry armed for an earlier send is still ahead.
    #[inline]
    pub(super) fn rearm(&mut self, slot: u32) {
        let s = &self.socks[slot as usize];
        let due = match (s.user_due, s.write_due) {
            (0, 0) => return,
            (0, w) => w,
            (u, 0) => u,
            (u, w) => u.min(w),
        };
        if self.wheel.due(slot).is_none_or(|d| d > due) {
            self.wheel.arm(slot, due);
        }
    }

    pub(super) fn fire_timers<H: Handler>(&mut self, h: &mut H) {
        let now_tick = self.now_tick.saturating_sub(1);
        if now_tick <= self.wheel.now() {
            // The wheel is at this tick already: nothing more is due.
            return;
        }
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now_tick, &mut fired);
        for &slot in &fired {
            let s = &mut self.socks[slot as usize];
            if s.flags & (IN_USE | CLOSING) != IN_USE {
                continue;
            }
            let id = SockId { slot, gen: s.gen };
            let (write_due, user_due) = (s.write_due, s.user_due);
            if write_due != 0 && write_due <= now_tick {
                conn_event!(
                    INFO,
                    self,
                    id,
                    "write timed out after {:?} (the peer is not reading); closed",
                    self.cfg.write_timeout
                );
                self.close_for(id, Gone::WriteTimeout);
            } else if user_due != 0 && user_due <= now_tick {
                self.socks[slot as usize].user_due = 0;
                self.rearm(slot);
                h.timer(self, id);
            } else {
                self.rearm(slot);
            }
        }
        fired.clear();
        self.fired = fired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tick_of_ns(nanos(d))` against the `u128` division it replaced,
    /// on and either side of tick boundaries, up to and past `u32::MAX`
    /// ticks and `u64::MAX` nanoseconds.
    #[test]
    fn ticks_from_nanoseconds_match_the_u128_reference() {
        let reference = |d: Duration| {
            u32::try_from(d.as_nanos().div_ceil(TICK.as_nanos()))
                .unwrap_or(u32::MAX - 1)
                .max(1)
        };
        let mut cases = vec![Duration::MAX, Duration::from_nanos(u64::MAX)];
        let max = u64::from(u32::MAX);
        for t in [0, 1, 2, 99, 100, 12_345, max - 2, max - 1, max, max + 1] {
            for ns in [t * TICK_NS - t.min(1), t * TICK_NS, t * TICK_NS + 1] {
                cases.push(Duration::from_nanos(ns));
            }
        }
        for d in cases {
            assert_eq!(tick_of_ns(nanos(d)), reference(d), "{d:?}");
        }
        assert_eq!(ns_of_tick(3), 30_000_000);
    }
}
