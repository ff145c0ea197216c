//! Redis URLs: `redis://[[user]:password@]host[:port][/db]` for one
//! instance, `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master`
//! for a master found through Sentinels. The user and password are the
//! master's (percent-encoded where needed). Sentinels that require a
//! password of their own (`requirepass` or an ACL user in sentinel.conf)
//! get it from the query: `?sentinel_password=P`, with
//! `&sentinel_user=U` for an ACL user; without it they are asked without
//! one. Pub/sub ignores the database number, which is accepted and
//! dropped. `rediss://` (TLS to Redis) and unknown query parameters are
//! refused by name.

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
    /// The Sentinels' own user and password (Sentinel URLs only).
    pub(crate) sentinel_user: Option<String>,
    pub(crate) sentinel_password: Option<String>,
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
                write!(f, "redis+sentinel://{auth}{}/{master}", sentinels.join(","))?;
                let mut sep = '?';
                if let Some(u) = &self.sentinel_user {
                    write!(f, "{sep}sentinel_user={u}")?;
                    sep = '&';
                }
                if self.sentinel_password.is_some() {
                    write!(f, "{sep}sentinel_password=***")?;
                }
                Ok(())
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
        url: hide_passwords(url),
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
    // The authority ends at the path, the query or the fragment
    // (`redis://h?x` has a query and no path).
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let tail = tail.split('#').next().unwrap_or("");
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let path = path.strip_prefix('/').unwrap_or(path);
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
    let (mut sentinel_user, mut sentinel_password) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v).ok_or_else(|| err("bad percent-encoding in a query parameter"))?;
        let slot = match k {
            "sentinel_user" => &mut sentinel_user,
            "sentinel_password" => &mut sentinel_password,
            _ => {
                return Err(err(
                    "unknown query parameter (sentinel_user and sentinel_password are known)",
                ))
            }
        };
        if !sentinel {
            return Err(err(
                "sentinel_user and sentinel_password are for redis+sentinel:// URLs",
            ));
        }
        *slot = Some(v);
    }
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
        sentinel_user,
        sentinel_password,
    })
}

/// `url` with its passwords (the userinfo's and `sentinel_password`'s)
/// replaced by `***`, for an error message.
fn hide_passwords(url: &str) -> String {
    let mut shown = match url.rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &url[..url.find("://").map_or(0, |i| i + 3)],
            &url[at..]
        ),
        None => url.to_owned(),
    };
    const KEY: &str = "sentinel_password=";
    if let Some(i) = shown.find(KEY) {
        let from = i + KEY.len();
        let to = shown[from..]
            .find(['&', '#'])
            .map_or(shown.len(), |j| from + j);
        shown.replace_range(from..to, "***");
    }
    shown
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
        assert_eq!((u.sentinel_user, u.sentinel_password), (None, None));
    }

    #[test]
    fn sentinel_credentials_come_from_the_query() {
        let u = parse("redis+sentinel://:pw@h/mymaster?sentinel_password=s%26cret").unwrap();
        assert_eq!(u.sentinel_password.as_deref(), Some("s&cret"));
        assert_eq!(u.sentinel_user, None);
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(
            u.to_string(),
            "redis+sentinel://:***@h:26379/mymaster?sentinel_password=***"
        );
        assert!(!format!("{u:?}").contains("cret"));
        let u = parse("redis+sentinel://h/m?sentinel_user=watch&sentinel_password=x#frag").unwrap();
        assert_eq!(
            (u.sentinel_user.as_deref(), u.sentinel_password.as_deref()),
            (Some("watch"), Some("x"))
        );
        assert_eq!(
            u.location,
            Location::Sentinel {
                sentinels: vec!["h:26379".into()],
                master: "m".into()
            }
        );
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
            ("redis://h?sentinel_password=x", "for redis+sentinel"),
            ("redis+sentinel://h/m?timeout=5", "unknown query parameter"),
            ("redis+sentinel://h/m?sentinel_user=%zz", "percent"),
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        let e = parse("rediss://user:hunter2@h").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("redis+sentinel://h?sentinel_password=hunter2&x=1")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("hunter2") && e.contains("sentinel_password=***&x=1"),
            "{e}"
        );
    }
}
