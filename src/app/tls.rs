//! The server's TLS configuration over its life: loaded before any worker
//! starts (bad files refuse the start), reloaded on SIGHUP or
//! [`ServerHandle::reload_tls`] away from the worker loops, and handed to
//! every worker through its mailbox: new handshakes use the new one, live
//! connections keep theirs. A reload that fails keeps the last good
//! configuration, logs why and is counted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::server::ServerHandle;
use super::worker::Command;
use crate::runtime::StartError;
use crate::tls::{self, Tls, TlsError};

/// `not_after` when no certificate's expiry is known.
const UNKNOWN: i64 = i64::MIN;

/// What `/metrics` and `/readyz` say of TLS, and what a reload re-reads.
pub(crate) struct TlsState {
    source: Tls,
    /// The earliest `notAfter` of the certificates in use (Unix seconds).
    not_after: AtomicI64,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl TlsState {
    /// Loads the configuration the server starts with.
    pub(crate) fn start(source: &Tls) -> Result<(TlsState, Arc<rustls::ServerConfig>), StartError> {
        let (config, not_after) = match source {
            Tls::Files(f) => {
                let l = tls::load(f).map_err(|e| StartError::Config(format!("TLS: {e}")))?;
                (l.config, l.not_after)
            }
            Tls::Rustls(c) => (c.clone(), None),
        };
        let state = TlsState {
            source: source.clone(),
            not_after: AtomicI64::new(not_after.unwrap_or(UNKNOWN)),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            reloading: Mutex::new(()),
        };
        Ok((state, config))
    }

    /// The earliest expiry of the certificates in use, if known.
    pub(crate) fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|&t| t != UNKNOWN)
    }
}

impl ServerHandle {
    /// Reads the TLS certificates and keys again (what SIGHUP does under
    /// [`App::run`](super::App::run)) and hands the new configuration to
    /// every worker: connections accepted from then on use it, those open
    /// keep theirs. Blocks on file reads: call it from a thread of your
    /// own, not from a handler. On an error nothing changes: the last good
    /// configuration stays, and the error names the file and the reason.
    /// A server without TLS, or with a rustls configuration of the
    /// application's own, has nothing to reload (`Ok`).
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let Some(state) = &self.shared.tls else {
            return Ok(());
        };
        let Tls::Files(files) = &state.source else {
            return Ok(());
        };
        let _one = state.reloading.lock().unwrap_or_else(|e| e.into_inner());
        match tls::load(files) {
            Ok(l) => {
                for i in 0..self.shared.mailboxes.len() {
                    self.shared.command(i, Command::Tls(l.config.clone()));
                }
                state
                    .not_after
                    .store(l.not_after.unwrap_or(UNKNOWN), Ordering::Relaxed);
                state.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!("TLS: reloaded {}", files.cert.display());
                Ok(())
            }
            Err(e) => {
                state.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("TLS: reload failed, keeping the last good configuration: {e}");
                Err(e)
            }
        }
    }
}
