//! Reads [`TlsFiles`] into a rustls server configuration.
//!
//! Done away from the worker loops (at start, on the thread that handles
//! SIGHUP, or the caller of `ServerHandle::reload_tls`): reading files and
//! parsing keys blocks. The result is one `Arc<ServerConfig>` that every
//! worker shares; a reload builds a new one and hands it to each worker,
//! whose new handshakes use it while live connections keep the one they
//! started with.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

use super::TlsFiles;

/// Why a TLS configuration could not be loaded.
#[derive(Debug)]
pub struct TlsError {
    /// The file at fault, if one is.
    pub file: Option<PathBuf>,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}: {}", p.display(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for TlsError {}

fn file_err(p: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError {
        file: Some(p.to_owned()),
        reason: reason.to_string(),
    }
}

/// An error that is no file's.
fn general_err(reason: impl fmt::Display) -> TlsError {
    TlsError {
        file: None,
        reason: reason.to_string(),
    }
}

/// What both roles speak: TLS 1.3 and 1.2, HTTP/1.1 over them.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const ALPN: &[u8] = b"http/1.1";

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What every worker's new handshakes use.
    pub config: Arc<ServerConfig>,
    /// The earliest `notAfter` of the leaf certificates, in seconds since
    /// the Unix epoch (`ringws_tls_certificate_expiry_seconds`).
    pub not_after: Option<i64>,
}

/// The provider every configuration uses: aws-lc-rs, rustls's default.
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Session tickets: one ticketer for the life of the process, so a
/// ticket stays good across workers and across reloads.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    static T: OnceLock<Arc<dyn rustls::server::ProducesTickets>> = OnceLock::new();
    if let Some(t) = T.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| general_err(format!("session tickets: {e}")))?;
    Ok(T.get_or_init(|| t).clone())
}

/// Reads the certificates and keys of `files`: TLS 1.3 and 1.2, ALPN
/// `http/1.1` (an offer of only other protocols is refused), tickets on,
/// no client certificates.
pub fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = provider();
    let (default, mut not_after) = certified_key(&provider, &files.cert, &files.key)?;
    let mut by_name = HashMap::new();
    for s in &files.sni {
        let (k, t) = certified_key(&provider, &s.cert, &s.key)?;
        not_after = match (not_after, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        by_name.insert(s.name.to_ascii_lowercase(), k);
    }
    let resolver = Arc::new(Resolver { default, by_name });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(general_err)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.ticketer = ticketer()?;
    // One TLS 1.3 ticket per handshake, not rustls's two: a connection
    // resumes with one, and rustls keeps what it queued for the second
    // (688 bytes more per idle connection, measured with a counting
    // allocator over a handshake; 2,153 bytes with one, 2,841 with two).
    config.send_tls13_tickets = 1;
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// A client configuration for `wss://` that trusts the CA certificates in
/// the PEM files `cas` (at least one certificate in each) and no others:
/// the provider and protocol versions the server uses, ALPN `http/1.1`,
/// rustls's in-memory ticket cache for resumption. For
/// [`crate::runtime::client::Io::connect_tls`] against a server whose
/// certificate a private CA signed (a test CA, a company's own); a
/// client of public servers builds its own from a root store such as
/// `webpki-roots`.
pub fn client_config(cas: &[PathBuf]) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for c in certs_in(ca)? {
            roots
                .add(c)
                .map_err(|e| file_err(ca, format!("not a usable CA certificate: {e}")))?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(general_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<(Arc<CertifiedKey>, Option<i64>), TlsError> {
    let certs = certs_in(cert)?;
    let not_after = super::der::not_after(&certs[0]);
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, pem_reason(e)))?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_err(key, format!("not a usable private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signer);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(file_err(
                key,
                format!("does not belong to {}: {e}", cert.display()),
            ))
        }
    }
    Ok((Arc::new(ck), not_after))
}

/// The certificates in the PEM file `path`: at least one, or why not.
fn certs_in(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate (BEGIN CERTIFICATE) in it"));
    }
    Ok(certs)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(e) => e.to_string(),
        E::NoItemsFound => "no PEM item of the expected kind in it".into(),
        e => format!("not valid PEM: {e:?}"),
    }
}

/// Picks the certificate for the server name a client asks for, and the
/// default one for no name or a name no other is for.
#[derive(Debug)]
struct Resolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|n| {
            // rustls hands over names already lowercased only sometimes.
            if n.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_name.get(&n.to_ascii_lowercase())
            } else {
                self.by_name.get(n)
            }
        });
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA file that is missing, or holds no certificate, is refused by
    /// name; a client never starts trusting nothing.
    #[test]
    fn a_client_configuration_names_the_ca_file_at_fault() {
        let missing = PathBuf::from("/nonexistent/ca.pem");
        let e = client_config(std::slice::from_ref(&missing)).unwrap_err();
        assert_eq!(e.file.as_ref(), Some(&missing));
        let empty =
            std::env::temp_dir().join(format!("ringws-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(std::slice::from_ref(&empty)).unwrap_err();
        std::fs::remove_file(&empty).unwrap();
        assert_eq!(e.file.as_ref(), Some(&empty));
        assert!(e.to_string().contains("certificate"), "{e}");
    }
}
