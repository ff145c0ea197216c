//! What to connect to: the `ws://` or `wss://` URL and the local source
//! addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Args;
use ringws::runtime::client::{Io, SockId};

/// How a `wss://` target's certificate is checked.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Trust the CA certificates in this PEM file (repeatable) instead of
    /// the system's, for wss:// targets.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not check the server's certificate at all (wss:// to a test
    /// server); the handshake's signatures are still checked.
    #[arg(long)]
    pub insecure: bool,
}

/// A parsed `ws[s]://host[:port][/path]` target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// The Host header value (host, plus the port when not the scheme's).
    pub host: String,
    /// Path and query, starting with '/'.
    pub path: String,
    /// wss://: the TLS client configuration and the server name (SNI).
    #[cfg(feature = "tls")]
    tls: Option<(
        std::sync::Arc<ringws::tls::rustls::ClientConfig>,
        ringws::tls::rustls::pki_types::ServerName<'static>,
    )>,
}

impl Target {
    /// Parses and resolves `url`; a `wss://` one takes its trust from
    /// `tls`, and resumes TLS sessions.
    pub fn parse(url: &str, tls: &TlsArgs) -> Result<Target, String> {
        Target::parse_with(url, tls, true)
    }

    /// [`Target::parse`], with TLS session resumption on or off
    /// (`loadgen connect --no-resumption`: every handshake a full one).
    pub fn parse_with(url: &str, tls: &TlsArgs, resumption: bool) -> Result<Target, String> {
        let (rest, secure) = if let Some(r) = url.strip_prefix("ws://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (r, true)
        } else {
            return Err(format!("{url}: the target must start with ws:// or wss://"));
        };
        #[cfg(not(feature = "tls"))]
        if secure {
            let _ = (tls, resumption);
            return Err(format!(
                "{url}: this loadgen is built without TLS (cargo build -p loadgen --features tls)"
            ));
        }
        let default_port = if secure { 443 } else { 80 };
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
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {with_port} resolves to no address"))?;
        let default_suffix = format!(":{default_port}");
        let host = if addr.port() == default_port {
            authority
                .trim_end_matches(default_suffix.as_str())
                .to_string()
        } else {
            authority.to_string()
        };
        #[cfg(feature = "tls")]
        let tls = if secure {
            // The name without the port (or the brackets of an IPv6
            // address): what the certificate must be for.
            let name = if let Some(v6) = authority.strip_prefix('[') {
                v6.split(']').next().unwrap_or(v6)
            } else {
                authority.split(':').next().unwrap_or(authority)
            };
            let name = ringws::tls::rustls::pki_types::ServerName::try_from(name.to_owned())
                .map_err(|e| format!("{url}: {name}: {e}"))?;
            Some((tls_client::config(tls, resumption)?, name))
        } else {
            None
        };
        Ok(Target {
            addr,
            host,
            path,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// Starts a connection to the target from `source` (TLS for wss://).
    pub fn connect(&self, io: &mut Io, source: Option<IpAddr>) -> std::io::Result<SockId> {
        #[cfg(feature = "tls")]
        if let Some((cfg, name)) = &self.tls {
            return io.connect_tls(self.addr, source, cfg, name.clone());
        }
        io.connect(self.addr, source)
    }
}

#[cfg(feature = "tls")]
mod tls_client {
    //! The rustls client configuration of a wss:// run.

    use std::sync::Arc;

    use ringws::tls::rustls;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::TlsArgs;

    /// TLS 1.3 and 1.2, ALPN http/1.1, trusting `--ca` files, or the
    /// system's store, or (`--insecure`) anything. With `resumption`,
    /// sessions are resumed from rustls's in-memory cache, shared by every
    /// connection of the run; without, every handshake is a full one.
    pub(super) fn config(args: &TlsArgs, resumption: bool) -> Result<Arc<ClientConfig>, String> {
        let mut cfg = if args.insecure || args.ca.is_empty() {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?;
            let mut cfg = if args.insecure {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth()
            } else {
                let mut roots = RootCertStore::empty();
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err("no trusted CA in the system's store: give --ca FILE".into());
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            };
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            cfg
        } else {
            // The library's: trusting these files and nothing else.
            ringws::tls::client_config(&args.ca).map_err(|e| format!("--ca {e}"))?
        };
        if !resumption {
            cfg.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(cfg))
    }

    /// `--insecure`: any certificate is taken; the handshake's signatures
    /// are checked all the same (the server must hold the key of the
    /// certificate it sent).
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
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
        let t = Target::parse("ws://127.0.0.1:9001/chat?room=1", &TlsArgs::default()).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/chat?room=1")
        );
        let t = Target::parse("ws://127.0.0.1", &TlsArgs::default()).unwrap();
        assert_eq!(
            (t.addr.port(), t.host.as_str(), t.path.as_str()),
            (80, "127.0.0.1", "/")
        );
        let t = Target::parse("ws://127.0.0.1:9001?x", &TlsArgs::default()).unwrap();
        assert_eq!(t.path, "/?x");
        let t = Target::parse("ws://[::1]:9001/", &TlsArgs::default()).unwrap();
        assert_eq!(t.addr, "[::1]:9001".parse().unwrap());
        assert!(Target::parse("http://x", &TlsArgs::default()).is_err());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn wss_needs_the_tls_feature() {
        let e = Target::parse("wss://127.0.0.1", &TlsArgs::default()).unwrap_err();
        assert!(e.contains("--features tls"), "{e}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn wss_urls() {
        let insecure = TlsArgs {
            insecure: true,
            ..TlsArgs::default()
        };
        let t = Target::parse("wss://localhost/x", &insecure).unwrap();
        assert_eq!((t.addr.port(), t.host.as_str()), (443, "localhost"));
        assert_eq!(format!("{:?}", t.tls.unwrap().1), "DnsName(\"localhost\")");
        let t = Target::parse("wss://127.0.0.1:9443", &insecure).unwrap();
        assert_eq!(t.host, "127.0.0.1:9443");
        assert!(t.tls.is_some());
        let missing = TlsArgs {
            ca: vec!["/nonexistent/ca.pem".into()],
            insecure: false,
        };
        let e = Target::parse("wss://127.0.0.1:9443", &missing).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
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
