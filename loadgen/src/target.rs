//! What to connect to: the `ws://` URL and the local source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// A parsed `ws://host[:port][/path]` target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// The Host header value (host, plus the port when not 80).
    pub host: String,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = if let Some(r) = url.strip_prefix("ws://") {
            r
        } else if url.starts_with("wss://") {
            return Err(format!("{url}: wss:// (TLS) is not supported; use ws://"));
        } else {
            return Err(format!("{url}: the target must start with ws://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        // "[v6]:port", "[v6]", "host:port" or "host".
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let with_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {with_port} resolves to no address"))?;
        let host = if addr.port() == 80 {
            authority.trim_end_matches(":80").to_string()
        } else {
            authority.to_string()
        };
        Ok(Target { addr, host, path })
    }
}

/// Parses `--source-ips`: a single address, an IPv4 range `a.b.c.d-a.b.c.e`,
/// or a comma-separated list of either.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("'{a}' is not an IPv4 address"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("'{b}' is not an IPv4 address"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 20 {
                return Err(format!("'{part}' is not a usable range"));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("'{part}' is not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("no source address given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:9001/chat?room=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/chat?room=1")
        );
        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!(
            (t.addr.port(), t.host.as_str(), t.path.as_str()),
            (80, "127.0.0.1", "/")
        );
        let t = Target::parse("ws://127.0.0.1:9001?x").unwrap();
        assert_eq!(t.path, "/?x");
        let t = Target::parse("ws://[::1]:9001/").unwrap();
        assert_eq!(t.addr, "[::1]:9001".parse().unwrap());
        assert!(Target::parse("wss://x")
            .unwrap_err()
            .contains("not supported"));
        assert!(Target::parse("http://x").is_err());
    }

    #[test]
    fn source_ranges() {
        let v = parse_source_ips("127.0.0.1-127.0.0.3, 127.0.1.1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        assert!(parse_source_ips("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_source_ips("").is_err());
    }
}
