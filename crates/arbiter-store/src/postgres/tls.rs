//! TLS to PostgreSQL with rustls (no OpenSSL), following libpq's `sslmode`:
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | not checked |
//! | `require` | always | not checked (checked as `verify-ca` when `sslrootcert` is given, like libpq) |
//! | `verify-ca` | always | signed by a root; any host name |
//! | `verify-full` | always | signed by a root and valid for the host name |
//!
//! The roots are the system's (`rustls-native-certs`) unless `sslrootcert=FILE` names a PEM
//! file (`sslrootcert=system`: the system's). `sslcert`/`sslkey` (PEM) are sent when the
//! server asks for a client certificate; the key must not be readable by group or others.
//! Files are read when the store is opened: a missing or bad one is bad input naming the
//! option. A failed handshake says which check failed, for which host, under which mode.

use std::path::Path;
use std::sync::Arc;

use arbiter_core::{Error, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::url::{PgOptions, SslMode};

/// A client TLS configuration for one store.
pub(crate) struct Tls {
    connector: tokio_rustls::TlsConnector,
    mode: SslMode,
    /// Where the roots came from, for messages.
    roots: String,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Chain,
    ChainAndName,
}

impl Tls {
    /// The TLS settings of `options`; `None` for `sslmode=disable`.
    pub(crate) fn new(options: &PgOptions) -> Result<Option<Tls>> {
        let mode = options.sslmode;
        let check = match mode {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer => Check::None,
            SslMode::Require if options.sslrootcert.is_some() => Check::Chain,
            SslMode::Require => Check::None,
            SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndName,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (verifier, roots): (Arc<dyn ServerCertVerifier>, String) = match check {
            Check::None => (
                Arc::new(NoCheck(provider.clone())),
                "no roots (not checked)".to_string(),
            ),
            Check::Chain | Check::ChainAndName => {
                let (store, roots) = load_roots(options.sslrootcert.as_deref(), mode)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| Error::bad_input(format!("sslrootcert: {e}")))?;
                let verifier: Arc<dyn ServerCertVerifier> = if check == Check::Chain {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                };
                (verifier, roots)
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&options.sslcert, &options.sslkey) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "sslcert")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| Error::bad_input(format!("sslcert/sslkey: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            mode,
            roots,
        }))
    }

    /// The handshake over `tcp` with the server `host`; the error says what failed.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
        at: &str,
    ) -> std::result::Result<TlsStream<TcpStream>, String> {
        let mode = self.mode.as_str();
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{at}: sslmode={mode}: {host:?} is not a valid TLS server name: {e}"))?;
        self.connector.connect(name, tcp).await.map_err(|e| {
            let why = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            match why {
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => format!("{at}: sslmode={mode}: certificate for host {host} not valid: {e}"),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                )) => format!(
                    "{at}: sslmode={mode}: the server's certificate is not signed by a root in {}: {e}",
                    self.roots
                ),
                Some(rustls::Error::InvalidCertificate(_)) => {
                    format!("{at}: sslmode={mode}: the server's certificate is not valid: {e}")
                }
                _ => format!("{at}: sslmode={mode}: TLS handshake failed: {e}"),
            }
        })
    }
}

/// The roots to verify against, and where they came from.
fn load_roots(sslrootcert: Option<&str>, mode: SslMode) -> Result<(RootCertStore, String)> {
    let mut store = RootCertStore::empty();
    match sslrootcert {
        Some(path) if path != "system" => {
            let (added, _) = store.add_parsable_certificates(read_certs(Path::new(path), "sslrootcert")?);
            if added == 0 {
                return Err(Error::bad_input(format!(
                    "sslrootcert={path}: no usable certificate in it"
                )));
            }
            Ok((store, format!("sslrootcert={path}")))
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::bad_input(format!(
                    "sslmode={}: no system root certificates were found; name the server's root with sslrootcert=FILE",
                    mode.as_str()
                )));
            }
            Ok((store, "the system's roots".to_string()))
        }
    }
}

fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |why: String| Error::bad_input(format!("{option}={}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bad = |why: String| Error::bad_input(format!("sslkey={}: {why}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let metadata = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mode = metadata.permissions().mode();
        // libpq's rule: private to its owner, or also group-readable if root owns it.
        let allowed = if metadata.uid() == 0 { 0o037 } else { 0o077 };
        if mode & allowed != 0 {
            return Err(bad(format!(
                "it is readable by others (mode {:o}); run chmod 600 {}",
                mode & 0o777,
                path.display()
            )));
        }
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| bad(format!("not a PEM private key: {e}")))
}

/// `verify-ca`: the chain must lead to a root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require`: encryption without checking who the server is (libpq's behaviour);
/// the handshake's signatures are still verified.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
