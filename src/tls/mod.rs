//! TLS (`wss://`): what the server is configured with, and (with the
//! `tls` feature) the rustls glue.
//!
//! * [`TlsFiles`]: PEM files, a default certificate and more chosen by
//!   SNI; what `--tls-cert`, `--tls-key` and `--tls-sni` fill in.
//! * `load.rs`: reads them into a rustls `ServerConfig` (TLS 1.3 and 1.2,
//!   ALPN `http/1.1`, tickets shared by every worker), naming the file and
//!   the reason when one is unusable.
//! * `session.rs`: one connection's record layer, the small interface the
//!   runtime calls where reads arrive (`Io::deliver`) and where a turn's
//!   output is sealed (`Io::start_send`).
//!
//! Built without the `tls` feature, a configuration that asks for TLS is
//! refused at start ([`crate::StartError::Config`]).

use std::path::PathBuf;

#[cfg(feature = "tls")]
mod der;
#[cfg(feature = "tls")]
mod load;
#[cfg(feature = "tls")]
pub(crate) mod session;

#[cfg(feature = "tls")]
pub use load::{client_config, load, Loaded, TlsError};
#[cfg(feature = "tls")]
pub use rustls;

/// Certificates and keys in PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first) for clients that send no server
    /// name, or one no other certificate is for.
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC); ECDSA, RSA or
    /// Ed25519.
    pub key: PathBuf,
    /// More certificates, each for the server name (SNI) a client asks for.
    pub sni: Vec<SniCert>,
}

/// A certificate chosen by the server name a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    /// The name, matched without regard to case (`example.com`).
    pub name: String,
    /// Its certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl SniCert {
    /// Parses `NAME=CERT,KEY` (the `--tls-sni` flag).
    pub fn parse(s: &str) -> Result<SniCert, String> {
        let (name, files) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAME=CERT,KEY"))?;
        let (cert, key) = files
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected NAME=CERT,KEY"))?;
        if name.is_empty() || cert.is_empty() || key.is_empty() {
            return Err(format!("{s:?}: expected NAME=CERT,KEY"));
        }
        Ok(SniCert {
            name: name.to_ascii_lowercase(),
            cert: cert.into(),
            key: key.into(),
        })
    }
}

/// How the server gets its TLS configuration ([`crate::Config::tls`]).
#[derive(Debug, Clone)]
pub enum Tls {
    /// From PEM files, read at start and again on each reload (SIGHUP,
    /// [`crate::app::ServerHandle::reload_tls`]).
    Files(TlsFiles),
    /// A rustls configuration the application built. Its ALPN list and
    /// versions are used as they are; a reload has nothing to re-read.
    #[cfg(feature = "tls")]
    Rustls(std::sync::Arc<rustls::ServerConfig>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_flags_parse() {
        let s = SniCert::parse("Example.COM=/a/cert.pem,/a/key.pem").unwrap();
        assert_eq!(s.name, "example.com");
        assert_eq!(s.cert, PathBuf::from("/a/cert.pem"));
        assert_eq!(s.key, PathBuf::from("/a/key.pem"));
        for bad in ["x", "x=a", "=a,b", "x=,b", "x=a,"] {
            assert!(SniCert::parse(bad).is_err(), "{bad}");
        }
    }
}
