//! Minimal leveled logging to stderr: one line per event, with a UTC
//! timestamp. The level is process-wide and set once at start.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Failures of the server itself.
    Error = 1,
    /// Conditions an operator should look at (overload, resource limits).
    Warn = 2,
    /// Startup, shutdown, refused handshakes, protocol violations.
    Info = 3,
    /// Per-connection detail.
    Debug = 4,
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!(
                "unknown log level '{s}' (error, warn, info, debug)"
            )),
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level that is written.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Would a line at `level` be written?
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (s, ms) = (t.as_secs(), t.subsec_millis());
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    let name = match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
    };
    eprintln!("{h:02}:{m:02}:{sec:02}.{ms:03}Z {name} {args}");
}

/// Writes a log line at the given level: `log!(Info, "x = {}", x)`.
#[macro_export]
macro_rules! log {
    ($lvl:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::$lvl) {
            $crate::log::write($crate::log::Level::$lvl, format_args!($($arg)*));
        }
    };
}
