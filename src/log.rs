//! Logging on `tracing`: every line the library writes is a `tracing`
//! event, and the application chooses where it goes ([`init`] installs a
//! formatter on stderr, as the `ringws` binary and the examples do; an
//! embedder installs its own subscriber, or none and hears nothing).
//!
//! Events carry the module of their call site as their target
//! (`ringws::app::handshake`, `ringws::runtime::io::timers`, ...), which is
//! what `RUST_LOG`-style directives such as `info,ringws::runtime=debug`
//! select. An event about one connection is written inside its span,
//! `conn{id=7 peer=127.0.0.1:50912 route=/chat}` (`conn_event!`): the
//! socket slot, the peer's address and, once routed, the route's path.
//!
//! The span is made only for an event that a subscriber wants: `tracing`
//! checks the level (a static maximum, then the subscriber's cached
//! interest in the call site) before anything is formatted or allocated, so
//! a disabled line on a hot path costs a load and a compare. A span kept
//! with every connection would cost each idle connection its bytes and
//! every callback an enter and exit, for lines that are mostly off.

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

/// A `tracing` event at `$lvl` (`ERROR`, `WARN`, `INFO`, `DEBUG`) about
/// the connection `$id` of the loop `$io`, inside the connection's span
/// (`conn{id peer route}`); `route = PATH,` before the message names the
/// route once known. Nothing is evaluated unless a subscriber wants the
/// event.
macro_rules! conn_event {
    ($lvl:ident, $io:expr, $id:expr, route = $route:expr, $($arg:tt)+) => {
        if ::tracing::enabled!(::tracing::Level::$lvl) {
            let span = ::tracing::span!(
                ::tracing::Level::$lvl,
                "conn",
                id = $id.index(),
                peer = %$io.peer_name($id),
                route = %$route,
            );
            let _entered = span.enter();
            ::tracing::event!(::tracing::Level::$lvl, $($arg)+);
        }
    };
    ($lvl:ident, $io:expr, $id:expr, $($arg:tt)+) => {
        if ::tracing::enabled!(::tracing::Level::$lvl) {
            let span = ::tracing::span!(
                ::tracing::Level::$lvl,
                "conn",
                id = $id.index(),
                peer = %$io.peer_name($id),
            );
            let _entered = span.enter();
            ::tracing::event!(::tracing::Level::$lvl, $($arg)+);
        }
    };
}
pub(crate) use conn_event;

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use crate::runtime::io::SockId;

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

    /// Stands in for the loop: counts how often the peer is looked up.
    struct Loop(std::cell::Cell<u32>);

    impl Loop {
        fn peer_name(&self, _id: SockId) -> &'static str {
            self.0.set(self.0.get() + 1);
            "127.0.0.1:5000"
        }
    }

    /// A connection's line is written in its span, with the route when
    /// given; a line at a level the subscriber does not want looks nothing
    /// up and formats nothing.
    #[test]
    fn connection_lines_carry_their_span_and_cost_nothing_when_off() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(out.clone())
            .finish();
        let io = Loop(std::cell::Cell::new(0));
        let id = SockId { slot: 7, gen: 0 };
        tracing::subscriber::with_default(subscriber, || {
            conn_event!(DEBUG, io, id, "off {}", 1);
            assert_eq!(io.0.get(), 0, "a disabled line looked the peer up");
            conn_event!(INFO, io, id, route = "/chat", "closing with {}", 1001);
            conn_event!(WARN, io, id, "no route");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                "conn{id=7 peer=127.0.0.1:5000 route=/chat}: ringws::log::tests: closing with 1001"
            ),
            "{text}"
        );
        assert!(
            text.contains("conn{id=7 peer=127.0.0.1:5000}: ringws::log::tests: no route"),
            "{text}"
        );
        assert!(!text.contains("off"), "{text}");
    }
}
