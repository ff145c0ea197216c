//! The `ringws` binary: command line (flags, environment variables, a
//! `--config` file) to [`ringws::Config`] and a `tracing` subscriber, then a
//! running echo server (the library's [`ringws::app::Echo`] on every path),
//! and nothing else.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use std::{fmt, fs, io};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use ringws::app::{App, Echo};
use ringws::tls::{SniCert, Tls, TlsFiles};
use ringws::{BackendKind, Config};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// A WebSocket echo server on io_uring, one thread per core.
///
/// Every flag can also be set with the environment variable shown, or as a
/// key of a --config file. Sizes take K, M or G suffixes (powers of 1024);
/// durations take ms or s (seconds when bare).
#[derive(Parser, Debug)]
#[command(version, after_long_help = AFTER_HELP)]
struct Args {
    /// TOML file of settings, keyed by the long flags (see below).
    #[arg(long, env = "RINGWS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on: an IP address or a host name, with a port. A
    /// name is resolved once at start and the first address the resolver
    /// gives is used (for localhost, ::1 or 127.0.0.1 as /etc/hosts and
    /// /etc/gai.conf order them).
    #[arg(long, env = "RINGWS_LISTEN", default_value = "127.0.0.1:9001", value_parser = listen_addr)]
    listen: SocketAddr,
    /// Worker threads [default: number of available cores].
    #[arg(long, env = "RINGWS_THREADS")]
    threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long, env = "RINGWS_PIN")]
    pin: bool,
    /// Largest message, summed over its fragments (close 1009 past it).
    #[arg(long, env = "RINGWS_MAX_MESSAGE_SIZE", default_value = "64M", value_parser = size)]
    max_message_size: u64,
    /// Largest single frame payload (close 1009 past it).
    #[arg(long, env = "RINGWS_MAX_FRAME_SIZE", default_value = "64M", value_parser = size)]
    max_frame_size: u64,
    /// Largest HTTP request head (431 past it).
    #[arg(long, env = "RINGWS_MAX_HANDSHAKE_SIZE", default_value = "8K", value_parser = size)]
    max_handshake_size: u64,
    /// Most header lines in a request head (431 past it).
    #[arg(long, env = "RINGWS_MAX_HEADERS", default_value_t = 64)]
    max_headers: usize,
    /// Time allowed from accept to a complete request head.
    #[arg(long, env = "RINGWS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    handshake_timeout: Duration,
    /// Time allowed to write one batch of frames; a peer that stops reading
    /// is disconnected after it.
    #[arg(long, env = "RINGWS_WRITE_TIMEOUT", default_value = "30s", value_parser = duration)]
    write_timeout: Duration,
    /// Time to wait for the peer's Close after sending ours.
    #[arg(long, env = "RINGWS_CLOSE_TIMEOUT", default_value = "5s", value_parser = duration)]
    close_timeout: Duration,
    /// Most connections open at once, over all threads (503 past it).
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Size of each pooled read buffer (1K to 1G).
    #[arg(long, env = "RINGWS_READ_BUFFER_SIZE", default_value = "32K", value_parser = size)]
    read_buffer_size: u64,
    /// Pooled read buffers per thread (1 to 32768).
    #[arg(long, env = "RINGWS_READ_BUFFERS", default_value_t = 2048)]
    read_buffers: usize,
    /// io_uring submission queue entries per thread.
    #[arg(long, env = "RINGWS_RING_ENTRIES", default_value_t = 1024)]
    ring_entries: u32,
    /// Listen backlog per thread.
    #[arg(long, env = "RINGWS_BACKLOG", default_value_t = 1024)]
    backlog: u32,
    /// Bytes queued to send on one connection past which reading from it
    /// pauses (until half are sent).
    #[arg(long, env = "RINGWS_MAX_BACKPRESSURE", default_value = "1M", value_parser = size)]
    max_backpressure: u64,
    /// Silence after which a connection is closed (1001), with a Ping sent
    /// halfway; 0 turns it off.
    #[arg(long, env = "RINGWS_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
    idle_timeout: Duration,
    /// permessage-deflate: off, shared (no context takeover, one
    /// compressor per thread) or dedicated (context takeover, a compressor
    /// per connection).
    #[arg(long, env = "RINGWS_DEFLATE", default_value = "off")]
    deflate: ringws::config::DeflateMode,
    /// Dedicated deflate: the server's compression window, 8 to 15 bits.
    #[arg(long, env = "RINGWS_DEFLATE_WINDOW_BITS", default_value_t = 15)]
    deflate_window_bits: u8,
    /// Dedicated deflate: the window asked of clients, 8 to 15 bits.
    #[arg(long, env = "RINGWS_DEFLATE_CLIENT_WINDOW_BITS", default_value_t = 15)]
    deflate_client_window_bits: u8,
    /// Deflate memory level, 1 to 9 (compressor buffers of 7 x 2^(level + 6)
    /// bytes, beside a 128 KiB hash table at any level).
    #[arg(long, env = "RINGWS_DEFLATE_MEM_LEVEL", default_value_t = 8)]
    deflate_mem_level: u8,
    /// Deflate compression level, 0 to 9.
    #[arg(long, env = "RINGWS_DEFLATE_LEVEL", default_value_t = 1)]
    deflate_level: u8,
    /// Messages shorter than this are sent uncompressed.
    #[arg(long, env = "RINGWS_DEFLATE_MIN_SIZE", default_value = "64", value_parser = size)]
    deflate_min_size: u64,
    /// Log a line of counts (messages in and out, writes) this often; 0:
    /// never.
    #[arg(long, env = "RINGWS_STATS_INTERVAL", default_value = "0s", value_parser = duration)]
    stats_interval: Duration,
    /// Kernel interface: auto (io_uring where allowed, else epoll),
    /// io-uring or epoll.
    #[arg(long, env = "RINGWS_BACKEND", default_value = "auto")]
    backend: BackendKind,
    /// Let the kernel fill one read buffer with several reads (io_uring,
    /// Linux 6.12): less of the pool pinned by small messages, but large
    /// ones straddle buffers and are copied.
    #[arg(long, env = "RINGWS_INCREMENTAL_READS")]
    incremental_reads: bool,
    /// Serve /metrics, /livez and /readyz as plain HTTP on this address
    /// (host:port; off when unset).
    #[arg(long, env = "RINGWS_ADMIN_LISTEN", value_parser = listen_addr)]
    admin_listen: Option<SocketAddr>,
    /// How long a worker's loop may go without a turn before /livez
    /// answers 503.
    #[arg(long, env = "RINGWS_STALL_TIMEOUT", default_value = "5s", value_parser = duration)]
    stall_timeout: Duration,
    /// On SIGTERM, how long /readyz answers 503 before connections are
    /// closed (1001).
    #[arg(long, env = "RINGWS_DRAIN_DELAY", default_value = "0s", value_parser = duration)]
    drain_delay: Duration,
    /// Serve wss:// with this certificate chain (PEM, leaf first), with
    /// --tls-key. SIGHUP reads both again. Needs a build with the `tls`
    /// feature.
    #[arg(long, env = "RINGWS_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1; ECDSA,
    /// RSA or Ed25519).
    #[arg(long, env = "RINGWS_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Another certificate and key, for clients that ask for server name
    /// NAME (SNI); repeatable, or several separated by ';' (in a --config
    /// file, an array of strings). Others get --tls-cert.
    #[arg(long, env = "RINGWS_TLS_SNI", value_name = "NAME=CERT,KEY", value_delimiter = ';', value_parser = sni_cert)]
    tls_sni: Vec<SniCert>,
    /// Which lines to log: a level (error, warn, info, debug, trace, off)
    /// or directives as RUST_LOG takes them, each target with its level
    /// ("info,ringws::runtime=debug"). RINGWS_LOG, the old name, is read
    /// when RINGWS_LOG_LEVEL is unset. [default: RUST_LOG, else info]
    #[arg(long, env = "RINGWS_LOG_LEVEL", value_name = "LEVEL|DIRECTIVES", value_parser = log_filter)]
    log_level: Option<String>,
    /// Log lines as text (RFC 3339 UTC time, level, target, message) or as
    /// JSON objects (timestamp, level, message, target), one per line, on
    /// stderr.
    #[arg(long, env = "RINGWS_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

const AFTER_HELP: &str = "\
Settings are taken from, first to last: flags, environment variables, the
--config file, defaults. The file is TOML whose keys are the long flags,
with strings, numbers or booleans as values, read by the same parsers as
the flags:

    listen = \"0.0.0.0:9001\"
    threads = 2
    pin = true
    max-message-size = \"64M\"
    idle-timeout = \"90s\"

A key that is no flag, a value of the wrong type or one the flag refuses
stops the server at start, naming the file and the key.";

/// The two shapes of log lines.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// `2026-01-02T03:04:05.678901Z  INFO ringws::app: message`; coloured
    /// only when stderr is a terminal.
    Text,
    /// One JSON object per line, the message's fields at the top level.
    Json,
}

fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, true)
    } else {
        (s.strip_suffix('s').unwrap_or(s), false)
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok(Duration::from_secs_f64(if ms { n / 1000.0 } else { n }))
}

/// `--listen`: `ToSocketAddrs` takes addresses and `host:port` alike; a
/// listener binds one address, so a name's first one is it.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}': {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// `--log-level`: checked here so that a mistake stops the start instead of
/// silencing the log. `EnvFilter` alone would take a misspelt level
/// ("warning") as a target name, logging everything from a target that
/// does not exist and nothing else; so a directive without `=` must be a
/// level.
fn log_filter(s: &str) -> Result<String, String> {
    for d in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !d.contains('=') && d.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "'{d}' is neither a level (error, warn, info, debug, trace, off) \
                 nor a directive (target=level)"
            ));
        }
    }
    EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Where a setting below the command line came from, for errors.
#[derive(Debug, Clone)]
enum Origin {
    /// The `--config` file.
    File(PathBuf),
    /// An environment variable clap does not read itself (`RINGWS_LOG`).
    Env(&'static str),
}

/// Why the settings could not be gathered. Every one ends the process
/// with exit code 2, as clap's own errors do.
#[derive(Debug)]
enum SettingsError {
    /// A flag or environment variable clap refused, or `--help` or
    /// `--version`, which clap prints itself.
    Clap(clap::Error),
    /// The config file could not be read.
    Read { file: PathBuf, err: io::Error },
    /// The config file is not TOML.
    Toml { file: PathBuf, err: toml::de::Error },
    /// A key that names no flag, or one a file may not set (`config`).
    UnknownKey { file: PathBuf, key: String },
    /// A table, an array or a date where a flag takes one value.
    WrongType {
        file: PathBuf,
        key: String,
        found: &'static str,
    },
    /// A value the flag's own parser refused.
    BadValue {
        origin: Origin,
        key: String,
        value: String,
        reason: String,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Clap(e) => write!(f, "{e}"),
            SettingsError::Read { file, err } => {
                write!(f, "cannot read config file {}: {err}", file.display())
            }
            SettingsError::Toml { file, err } => {
                write!(f, "{} is not valid TOML: {err}", file.display())
            }
            SettingsError::UnknownKey { file, key } => {
                write!(f, "{}: unknown key '{key}'", file.display())?;
                if key == "config" {
                    return write!(f, " (a config file cannot name another)");
                }
                let dashed = key.replace('_', "-");
                if dashed != *key && file_arg(&Args::command(), &dashed).is_some() {
                    write!(f, " (did you mean '{dashed}'?)")?;
                }
                Ok(())
            }
            SettingsError::WrongType { file, key, found } => write!(
                f,
                "{}: key '{key}': expected a string, number or boolean, found {found}",
                file.display()
            ),
            SettingsError::BadValue {
                origin,
                key,
                value,
                reason,
            } => match origin {
                Origin::File(file) => write!(
                    f,
                    "{}: key '{key}': invalid value '{value}': {reason}",
                    file.display()
                ),
                Origin::Env(name) => write!(f, "{name}: invalid value '{value}': {reason}"),
            },
        }
    }
}

impl std::error::Error for SettingsError {}

/// The flag a file key sets: any long flag that takes a value or is a
/// switch, except `--config` (a file naming another file would be a chain
/// to follow, for no use) and clap's `--help` and `--version`.
fn file_arg<'a>(cmd: &'a clap::Command, key: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(key)
            && a.get_id() != "config"
            && matches!(a.get_action(), ArgAction::Set | ArgAction::SetTrue)
    })
}

/// A file value as the flag's text: TOML types carry no meaning of their
/// own here, the flag's parser gives it one (`"64M"` and `67108864` alike).
/// `--tls-sni NAME=CERT,KEY`.
fn sni_cert(s: &str) -> Result<SniCert, String> {
    SniCert::parse(s)
}

fn value_text(file: &std::path::Path, key: &str, v: &toml::Value) -> Result<String, SettingsError> {
    let found = match v {
        toml::Value::String(s) => return Ok(s.clone()),
        toml::Value::Integer(i) => return Ok(i.to_string()),
        toml::Value::Float(x) => return Ok(x.to_string()),
        toml::Value::Boolean(b) => return Ok(b.to_string()),
        toml::Value::Datetime(_) => "a date",
        // Values of a repeatable flag (--tls-sni), in its delimiter.
        toml::Value::Array(a) if a.iter().all(toml::Value::is_str) => {
            let items: Vec<&str> = a.iter().filter_map(toml::Value::as_str).collect();
            return Ok(items.join(";"));
        }
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    };
    Err(SettingsError::WrongType {
        file: file.to_owned(),
        key: key.to_owned(),
        found,
    })
}

impl Args {
    /// Flags, then environment variables, then the `--config` file, then
    /// defaults.
    ///
    /// clap does the first two and the last: a first parse tells, by each
    /// argument's value source, which settings the command line and the
    /// environment left at their defaults. The lower layers (`RINGWS_LOG`,
    /// then the file) are checked whole with each flag's own value parser,
    /// so errors name their file and key, and those still unset are passed
    /// to a second parse as `--key=value`: one path from text to value for
    /// every source.
    fn gather(argv: Vec<OsString>) -> Result<Args, SettingsError> {
        let cmd = Args::command();
        let m = cmd
            .clone()
            .try_get_matches_from(&argv)
            .map_err(SettingsError::Clap)?;
        let mut lower: Vec<(Origin, String, String)> = Vec::new();
        // The old name of RINGWS_LOG_LEVEL, below it and above the file.
        if let Some(v) = std::env::var_os("RINGWS_LOG").filter(|v| !v.is_empty()) {
            let v = v.to_string_lossy().into_owned();
            lower.push((Origin::Env("RINGWS_LOG"), "log-level".into(), v));
        }
        if let Some(file) = m.get_one::<PathBuf>("config") {
            let text = fs::read_to_string(file).map_err(|err| SettingsError::Read {
                file: file.clone(),
                err,
            })?;
            let table: toml::Table = text.parse().map_err(|err| SettingsError::Toml {
                file: file.clone(),
                err,
            })?;
            for (key, v) in &table {
                if file_arg(&cmd, key).is_none() {
                    return Err(SettingsError::UnknownKey {
                        file: file.clone(),
                        key: key.clone(),
                    });
                }
                let v = value_text(file, key, v)?;
                lower.push((Origin::File(file.clone()), key.clone(), v));
            }
        }
        let mut injected = Vec::new();
        let mut taken = Vec::new();
        for (origin, key, value) in lower {
            let arg = file_arg(&cmd, &key).expect("checked above");
            check_value(arg, &value).map_err(|e| SettingsError::BadValue {
                origin,
                key: key.clone(),
                value: value.clone(),
                reason: reason(&e),
            })?;
            if set_above(&m, arg.get_id().as_str()) || taken.contains(&key) {
                continue;
            }
            match arg.get_action() {
                // A switch takes no value: `pin = false` is its default.
                ArgAction::SetTrue if value == "true" => injected.push(format!("--{key}")),
                ArgAction::SetTrue => {}
                _ => injected.push(format!("--{key}={value}")),
            }
            taken.push(key);
        }
        if injected.is_empty() {
            return Args::from_arg_matches(&m).map_err(SettingsError::Clap);
        }
        let mut argv = argv.into_iter();
        let argv: Vec<OsString> = argv
            .next()
            .into_iter()
            .chain(injected.into_iter().map(OsString::from))
            .chain(argv)
            .collect();
        Args::try_parse_from(argv).map_err(SettingsError::Clap)
    }

    /// The server's settings.
    fn config(self) -> Result<Config, String> {
        let defaults = Config::default();
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::Files(TlsFiles {
                cert,
                key,
                sni: self.tls_sni,
            })),
            (None, None) if self.tls_sni.is_empty() => None,
            (None, None) => return Err("--tls-sni needs --tls-cert and --tls-key".into()),
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
        };
        Ok(Config {
            listen: self.listen,
            threads: self.threads.unwrap_or(defaults.threads),
            pin: self.pin,
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            max_handshake_size: usize::try_from(self.max_handshake_size).unwrap_or(usize::MAX),
            max_headers: self.max_headers,
            // The binary serves no plain HTTP routes.
            max_http_body: defaults.max_http_body,
            handshake_timeout: self.handshake_timeout,
            write_timeout: self.write_timeout,
            close_timeout: self.close_timeout,
            max_connections: self.max_connections,
            read_buffer_size: usize::try_from(self.read_buffer_size).unwrap_or(usize::MAX),
            read_buffers: self.read_buffers,
            ring_entries: self.ring_entries,
            backlog: self.backlog,
            max_backpressure: usize::try_from(self.max_backpressure).unwrap_or(usize::MAX),
            backend: self.backend,
            incremental_reads: self.incremental_reads,
            admin_listen: self.admin_listen,
            stall_timeout: self.stall_timeout,
            drain_delay: self.drain_delay,
            idle_timeout: self.idle_timeout,
            // Only sends from other threads use mailboxes; the echo has none.
            max_mailbox_bytes: defaults.max_mailbox_bytes,
            stats_interval: self.stats_interval,
            deflate: self.deflate,
            deflate_window_bits: self.deflate_window_bits,
            deflate_client_window_bits: self.deflate_client_window_bits,
            deflate_mem_level: self.deflate_mem_level,
            deflate_level: self.deflate_level,
            deflate_min_size: usize::try_from(self.deflate_min_size).unwrap_or(usize::MAX),
            tls,
        })
    }

    /// Installs the process's `tracing` subscriber: the filter of
    /// `--log-level`, else `RUST_LOG`, else `info`, and the format of
    /// `--log-format`, on stderr.
    fn init_logging(&self) {
        // log_filter checked the directives already.
        ringws::log::init(
            self.log_level.as_deref(),
            matches!(self.log_format, LogFormat::Json),
        );
    }
}

/// Did the command line or clap's own environment variable set `id`?
fn set_above(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Runs `value` through `arg`'s own value parser, by clap itself: a command
/// of that one argument, without its environment variable and default, and
/// taking a value even where the flag is a switch (its parser is then
/// `bool`'s: `true` or `false`). clap keeps `ValueParser::parse_ref` to
/// itself.
fn check_value(arg: &clap::Arg, value: &str) -> Result<(), clap::Error> {
    let probe = arg
        .clone()
        .action(ArgAction::Set)
        .env(None)
        .default_value(None)
        .required(false);
    let long = arg.get_long().unwrap_or_default();
    clap::Command::new("ringws")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(probe)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
}

/// What a value parser said, without clap's "invalid value ... for
/// '--flag'" framing, which would name the flag rather than the key.
fn reason(e: &clap::Error) -> String {
    if let Some(inner) = std::error::Error::source(e) {
        return inner.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

fn main() -> ExitCode {
    let args = match Args::gather(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(SettingsError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    args.init_logging();
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The echo is one handler on the library's API, like any other.
    match App::new(cfg).route_prefix("/", Echo).run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("8k"), Ok(8192));
        assert_eq!(size("100"), Ok(100));
        assert!(size("x").is_err());
        assert!(size("99999999999G").is_err());
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert!(duration("-1").is_err());
    }

    /// Every flag's variable is RINGWS_ and its long name in capitals, so
    /// that none has to be looked up; `--help` and `--version` have none.
    #[test]
    fn every_flag_has_its_environment_variable() {
        let cmd = Args::command();
        let mut n = 0;
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("every flag is long");
            let want = format!("RINGWS_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
            n += 1;
        }
        assert!(n > 20, "{n} flags");
    }

    /// Every long flag but `--config` is a file key, switches included.
    #[test]
    fn file_keys_are_the_flags() {
        let cmd = Args::command();
        assert!(file_arg(&cmd, "max-message-size").is_some());
        assert!(file_arg(&cmd, "pin").is_some());
        assert!(file_arg(&cmd, "config").is_none());
        assert!(file_arg(&cmd, "help").is_none());
        assert!(file_arg(&cmd, "max_message_size").is_none());
    }

    /// Levels and `target=level` directives pass; a bare word that is no
    /// level would silence everything else, so it is refused.
    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,ringws::runtime=debug",
            "ringws=trace",
        ] {
            assert_eq!(log_filter(ok).as_deref(), Ok(ok));
        }
        for bad in ["warning", "ringws", "info,ringws::runtime=loud"] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
    }

    /// A file value goes through the flag's own parser, switches too.
    #[test]
    fn values_are_checked_by_the_flags_parsers() {
        let cmd = Args::command();
        let arg = |k| file_arg(&cmd, k).unwrap();
        assert!(check_value(arg("max-message-size"), "64M").is_ok());
        let e = check_value(arg("max-message-size"), "lots").unwrap_err();
        assert_eq!(reason(&e), "'lots' is not a size");
        assert!(check_value(arg("pin"), "true").is_ok());
        assert!(check_value(arg("pin"), "3").is_err());
        assert!(check_value(arg("listen"), "localhost:9001").is_ok());
        assert!(check_value(arg("log-format"), "xml").is_err());
    }
}
