//! Redis URLs: `redis://[[user]:password@]host[:port][/db]` for one
//! instance, `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master`
//! for a master found through Sentinels. The user and password are the
//! master's (percent-encoded where needed); Sentinels are asked without
//! them. Pub/sub ignores the database number, which is accepted and
//! dropped. `rediss://` (TLS to Redis) is refused by name.

use std::fmt;

/// Where an instance is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// One address, `host:port`.
    Direct(String),
    /// The current master named `master`, as any of `sentinels` reports it.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// A parsed Redis URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) location: Location,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never reaches a log line.
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisUrl {
    /// The URL without its password: what logs and errors show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match (&self.user, &self.password) {
            (Some(u), _) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        match &self.location {
            Location::Direct(a) => write!(f, "redis://{auth}{a}"),
            Location::Sentinel { sentinels, master } => {
                write!(f, "redis+sentinel://{auth}{}/{master}", sentinels.join(","))
            }
        }
    }
}

impl RedisUrl {
    /// The instance's name for sharding: the same on every node given the
    /// same URL, whatever its password.
    pub(crate) fn shard_name(&self) -> String {
        match &self.location {
            Location::Direct(a) => a.clone(),
            Location::Sentinel { master, .. } => format!("sentinel/{master}"),
        }
    }
}

/// What is wrong with a Redis URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    url: String,
    why: &'static str,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad Redis URL {:?}: {}", self.url, self.why)
    }
}

impl std::error::Error for UrlError {}

impl UrlError {
    /// A broker given no URL at all.
    pub(crate) fn none() -> UrlError {
        UrlError {
            url: String::new(),
            why: "no Redis URL given",
        }
    }
}

pub(crate) fn parse(url: &str) -> Result<RedisUrl, UrlError> {
    let err = |why| UrlError {
        // Never echo a password back.
        url: match url.rfind('@') {
            Some(at) => format!(
                "{}***{}",
                &url[..url.find("://").map_or(0, |i| i + 3)],
                &url[at..]
            ),
            None => url.to_owned(),
        },
        why,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("no scheme (redis://host:port)"))?;
    let sentinel = match scheme {
        "redis" => false,
        "redis+sentinel" => true,
        "rediss" => {
            return Err(err(
                "TLS to Redis (rediss://) is not supported; use redis://",
            ))
        }
        _ => return Err(err("the scheme must be redis:// or redis+sentinel://")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            let u = decode(u).ok_or_else(|| err("bad percent-encoding in the user"))?;
            let p = match p {
                Some(p) => {
                    Some(decode(p).ok_or_else(|| err("bad percent-encoding in the password"))?)
                }
                None => None,
            };
            match (u.is_empty(), p) {
                // `redis://:pass@host`: requirepass, the default user.
                (true, p) => (None, p),
                // `redis://pass@host` is how some clients spell a password
                // alone; Redis's own docs put a user first. Take the user.
                (false, p) => (Some(u), p),
            }
        }
    };
    let default_port = if sentinel { 26379 } else { 6379 };
    let mut addrs = Vec::new();
    for h in hosts.split(',') {
        addrs.push(
            host_port(h, default_port)
                .ok_or_else(|| err("a host must be host, host:port or [v6]:port"))?,
        );
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let location = if sentinel {
        if path.is_empty() {
            return Err(err(
                "a Sentinel URL names its master: redis+sentinel://host:26379/mymaster",
            ));
        }
        Location::Sentinel {
            sentinels: addrs,
            master: decode(path).ok_or_else(|| err("bad percent-encoding in the master name"))?,
        }
    } else {
        if addrs.len() != 1 {
            return Err(err(
                "one host per redis:// URL (give --redis again for another instance)",
            ));
        }
        if !path.is_empty() && path.parse::<u32>().is_err() {
            return Err(err("the path is a database number"));
        }
        Location::Direct(addrs.pop().expect("one"))
    };
    Ok(RedisUrl {
        location,
        user,
        password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as `host:port`.
fn host_port(s: &str, default_port: u16) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{h}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            Some(_) => return None,
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    Some(format!("{host}:{port}"))
}

/// Percent-decodes `s` (as UTF-8).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_urls() {
        let u = parse("redis://127.0.0.1").unwrap();
        assert_eq!(u.location, Location::Direct("127.0.0.1:6379".into()));
        assert_eq!((u.user, u.password), (None, None));
        let u = parse("redis://:s%40cret@localhost:7000/3").unwrap();
        assert_eq!(u.location, Location::Direct("localhost:7000".into()));
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (None, Some("s@cret"))
        );
        assert_eq!(u.to_string(), "redis://:***@localhost:7000");
        assert!(!format!("{u:?}").contains("cret"));
        let u = parse("redis://app:pw@[::1]:6380").unwrap();
        assert_eq!(u.location, Location::Direct("[::1]:6380".into()));
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.shard_name(), "[::1]:6380");
    }

    #[test]
    fn sentinel_urls() {
        let u = parse("redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/mymaster").unwrap();
        assert_eq!(
            u.location,
            Location::Sentinel {
                sentinels: vec!["10.0.0.1:26379".into(), "10.0.0.2:26380".into()],
                master: "mymaster".into()
            }
        );
        assert_eq!(u.shard_name(), "sentinel/mymaster");
    }

    #[test]
    fn refusals_name_the_problem_and_hide_the_password() {
        for (url, why) in [
            ("localhost:6379", "no scheme"),
            ("http://x", "scheme"),
            ("rediss://x", "TLS"),
            ("redis://", "a host"),
            ("redis://h:0", "a host"),
            ("redis://h:99999", "a host"),
            ("redis://a,b", "one host"),
            ("redis://h/x", "database"),
            ("redis+sentinel://h", "names its master"),
            ("redis://:%zz@h", "percent"),
            ("redis://::1", "a host"),
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        let e = parse("rediss://user:hunter2@h").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
