//! Logging: [`log!`](crate::log!) is a thin alias of `tracing`'s level
//! macros, so every line the library writes is a `tracing` event and the
//! application chooses where it goes (the `ringws` binary installs a
//! `tracing-subscriber` formatter on stderr; an embedder installs its own, or
//! none and hears nothing).
//!
//! Events carry the module of their call site as their target
//! (`ringws::app::worker`, `ringws::runtime::io`, ...), which is what
//! `RUST_LOG`-style directives such as `info,ringws::runtime=debug` select.
//!
//! The alias exists so the call sites did not all change at once: each
//! `log!(Info, ...)` is exactly `tracing::info!(...)`, so replacing them is
//! a mechanical rewrite, after which this file goes.

/// `tracing`, for [`log!`](crate::log!) to name through `$crate` wherever it
/// expands: in this crate, in its examples, in applications that do not
/// depend on `tracing` themselves.
#[doc(hidden)]
pub use tracing as __tracing;

/// Emits a `tracing` event at the given level: `log!(Info, "x = {}", x)` is
/// `tracing::info!("x = {}", x)`; the levels are `Error`, `Warn`, `Info`,
/// `Debug` and `Trace`.
///
/// ```
/// let peers = 3;
/// ringws::log!(Info, "{peers} peers, {} of them idle", peers - 1);
/// ```
///
/// The arguments are formatted, and evaluated, only when a subscriber wants
/// the event: `tracing` checks the level (a static maximum, then the
/// subscriber's cached interest in this call site) before it builds the
/// `format_args!`, so a disabled `log!(Debug, ...)` on a hot path costs a
/// load and a compare, never a format or an allocation.
#[macro_export]
macro_rules! log {
    (Error, $($arg:tt)+) => { $crate::log::__tracing::error!($($arg)+) };
    (Warn, $($arg:tt)+) => { $crate::log::__tracing::warn!($($arg)+) };
    (Info, $($arg:tt)+) => { $crate::log::__tracing::info!($($arg)+) };
    (Debug, $($arg:tt)+) => { $crate::log::__tracing::debug!($($arg)+) };
    (Trace, $($arg:tt)+) => { $crate::log::__tracing::trace!($($arg)+) };
}

/// Installs a `tracing` subscriber writing to stderr, for binaries and
/// examples (an application with a subscriber of its own skips this):
/// `filter` (a level or `RUST_LOG`-style directives such as
/// `info,ringws::runtime=debug`), else `RUST_LOG`, else `info`; text lines
/// with an RFC 3339 UTC timestamp (colours only on a terminal), or one
/// JSON object per line. Does nothing if a subscriber is installed already.
pub fn init(filter: Option<&str>, json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let filter = match filter {
        Some(dirs) => EnvFilter::builder().parse_lossy(dirs),
        // RUST_LOG is shared with other programs, so its directives are
        // taken as tracing takes them: one it cannot parse is reported on
        // stderr and skipped, not a reason to refuse to start.
        None => EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .from_env_lossy(),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An error only says a subscriber is there already: keep that one.
    let _ = if json {
        fmt.json().flatten_event(true).try_init()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

/// [`init`] with the filter in `RINGWS_LOG_LEVEL` (or its old name
/// `RINGWS_LOG`), in text: what the examples call first.
pub fn init_from_env() {
    let filter = std::env::var("RINGWS_LOG_LEVEL")
        .or_else(|_| std::env::var("RINGWS_LOG"))
        .ok();
    init(filter.as_deref(), false);
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fmt;
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// Counts how often it is formatted.
    struct Counted<'a>(&'a Cell<u32>);

    impl fmt::Display for Counted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.set(self.0.get() + 1);
            f.write_str("counted")
        }
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// A line at a level the subscriber does not want is neither formatted
    /// nor are its arguments evaluated; one it wants arrives, at its level,
    /// with this module as its target.
    #[test]
    fn disabled_levels_cost_no_formatting() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(out.clone())
            .finish();
        let formatted = Cell::new(0);
        let evaluated = Cell::new(0);
        let arg = || {
            evaluated.set(evaluated.get() + 1);
            Counted(&formatted)
        };
        tracing::subscriber::with_default(subscriber, || {
            crate::log!(Debug, "off: {}", arg());
            crate::log!(Trace, "off: {}", arg());
            assert_eq!((evaluated.get(), formatted.get()), (0, 0));
            let n = 7;
            crate::log!(Warn, "on: {} {n}", arg());
            assert_eq!((evaluated.get(), formatted.get()), (1, 1));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(" WARN ringws::log::tests: on: counted 7"),
            "{text}"
        );
        assert!(!text.contains("off"), "{text}");
    }
}
