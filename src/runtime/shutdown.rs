//! Graceful shutdown.
//!
//! The [`crate::runtime::Server`] handle tells every worker through a
//! `watch` channel, which only the accept loops wait on. Each worker then
//! trips its thread-local [`LocalShutdown`], which every connection of that
//! thread watches. A connection's [`ShutdownWait`] lives as long as the
//! connection and re-registers its waker only when it changes, so watching
//! costs no lock and no allocation per message.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// A worker thread's shutdown flag and the connections waiting on it.
#[derive(Default)]
pub struct LocalShutdown {
    tripped: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl LocalShutdown {
    /// Trips the flag and wakes every waiting connection.
    pub fn trip(&self) {
        self.tripped.set(true);
        for w in self.waiters.borrow_mut().drain() {
            w.wake();
        }
    }

    /// A future that completes once shutdown begins.
    pub fn wait(self: &Rc<Self>) -> ShutdownWait {
        ShutdownWait {
            shared: self.clone(),
            key: None,
        }
    }
}

/// Completes when the thread's shutdown begins. Poll it again and again (it
/// keeps its registration); drop it to deregister.
pub struct ShutdownWait {
    shared: Rc<LocalShutdown>,
    key: Option<usize>,
}

impl Future for ShutdownWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.tripped.get() {
            self.key = None; // `trip` drained the registration
            return Poll::Ready(());
        }
        let mut waiters = self.shared.waiters.borrow_mut();
        match self.key {
            Some(k) => {
                let w = &mut waiters[k];
                if !w.will_wake(cx.waker()) {
                    w.clone_from(cx.waker());
                }
            }
            None => {
                let k = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.key = Some(k);
            }
        }
        Poll::Pending
    }
}

impl Drop for ShutdownWait {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            if !self.shared.tripped.get() {
                self.shared.waiters.borrow_mut().try_remove(k);
            }
        }
    }
}
