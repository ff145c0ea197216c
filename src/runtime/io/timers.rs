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
        // Round up, so a deadline never fires early; 0 means none.
        let d = t.saturating_duration_since(self.epoch);
        u32::try_from(d.as_nanos().div_ceil(TICK.as_nanos()))
            .unwrap_or(u32::MAX - 1)
            .max(1)
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
        let now_tick = self.tick_of(self.now).saturating_sub(1);
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
