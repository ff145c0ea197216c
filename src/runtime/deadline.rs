//! Coarse per-thread deadlines for in-flight writes.
//!
//! A `tokio::time::Timeout` around every write would put a full timer in
//! every connection's future, idle or not, and register it in the timer
//! wheel on every message. Write timeouts need no precision, so each worker
//! runs one ticker instead: [`Deadlines::tick`] advances a counter every
//! `resolution` and wakes the writes whose deadline tick has passed. A write
//! registers a [`Deadline`] (a slab slot with its waker, no allocation once
//! the slab has grown) and deregisters it when done.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

struct Entry {
    due: u64,
    waker: Option<Waker>,
}

/// A worker thread's write deadlines.
pub struct Deadlines {
    now: Cell<u64>,
    resolution: Duration,
    /// The one timeout these deadlines serve, in ticks: worked out once,
    /// not on every write (it takes a 128-bit division).
    span: u64,
    entries: RefCell<Slab<Entry>>,
}

impl Deadlines {
    /// Deadlines `timeout` from when each is armed, checked every
    /// `resolution`: one fires between `timeout` and `timeout + resolution`
    /// after it was armed.
    pub fn new(resolution: Duration, timeout: Duration) -> Rc<Deadlines> {
        let span = timeout.as_nanos().div_ceil(resolution.as_nanos().max(1));
        Rc::new(Deadlines {
            now: Cell::new(0),
            resolution,
            span: u64::try_from(span).unwrap_or(u64::MAX / 2),
            entries: RefCell::new(Slab::new()),
        })
    }

    /// How often [`Deadlines::tick`] should run.
    pub fn resolution(&self) -> Duration {
        self.resolution
    }

    /// A deadline `timeout` from now. Borrows the set rather than holding an
    /// `Rc` of it: the write that arms it runs on this thread, within the
    /// lifetime of the thread's context.
    pub fn arm(&self) -> Deadline<'_> {
        // +1: the current tick is already partly over.
        let due = self.now.get() + self.span + 1;
        let key = self.entries.borrow_mut().insert(Entry { due, waker: None });
        Deadline { owner: self, key }
    }

    /// Advances time by one resolution and wakes what is due.
    pub fn tick(&self) {
        let now = self.now.get() + 1;
        self.now.set(now);
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if e.due <= now {
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// Deadlines registered (for tests).
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// No deadlines registered?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Completes when its deadline passes; deregisters when dropped.
pub struct Deadline<'a> {
    owner: &'a Deadlines,
    key: usize,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.owner.now.get();
        let mut entries = self.owner.entries.borrow_mut();
        let e = &mut entries[self.key];
        if e.due <= now {
            return Poll::Ready(());
        }
        match &mut e.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.owner.entries.borrow_mut().remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn fires_after_its_ticks_and_not_before() {
        let d = Deadlines::new(Duration::from_millis(100), Duration::from_millis(250));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut dl = d.arm(); // 3 ticks + 1
        for _ in 0..3 {
            assert!(Pin::new(&mut dl).poll(&mut cx).is_pending());
            d.tick();
        }
        assert!(Pin::new(&mut dl).poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        d.tick();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(Pin::new(&mut dl).poll(&mut cx).is_ready());
        assert_eq!(d.len(), 1);
        drop(dl);
        assert!(d.is_empty());
    }
}
