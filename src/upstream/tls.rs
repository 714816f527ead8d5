//! TLS to `https://` upstreams: one rustls `ClientConfig` per API, built when the config is
//! compiled (its files are read then, so a bad one stops the start, not a request). It trusts the
//! system's roots, loaded once per process when an API first needs them, or only the CAs of
//! `upstream_ca`; it offers the ALPN protocols of `upstream_protocol`, and a client certificate
//! for mTLS. Verification is off only with `insecure_skip_verify`, which the caller warns about.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What to build an API's upstream TLS from (checked config values).
pub struct TlsOptions<'a> {
    pub ca: Option<&'a Path>,
    /// Certificate chain and key files, for mTLS to the upstream.
    pub identity: Option<(&'a Path, &'a Path)>,
    pub insecure_skip_verify: bool,
    pub alpn: &'a [&'a [u8]],
}

/// Why an API's upstream TLS could not be built; `key` says which config key is to blame.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{0}")]
    Ca(String),
    #[error("{0}")]
    ClientCert(String),
    #[error("{0}")]
    ClientKey(String),
    #[error("{0}")]
    SystemRoots(String),
    #[error("{0}")]
    Protocol(String),
}

impl TlsConfigError {
    /// The `[[api]]` key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TlsConfigError::Ca(_) => "upstream_ca",
            TlsConfigError::ClientCert(_) | TlsConfigError::Protocol(_) => "upstream_client_cert",
            TlsConfigError::ClientKey(_) => "upstream_client_key",
            TlsConfigError::SystemRoots(_) => "upstream",
        }
    }
}

/// The client configuration for one API's `https://` upstream.
pub fn client_config(options: &TlsOptions<'_>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // TLS 1.2 and 1.3: the provider's safe defaults.
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Protocol(e.to_string()))?;
    let builder = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
    } else {
        let roots = match options.ca {
            Some(path) => Arc::new(roots_from(path)?),
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match options.identity {
        Some((cert, key)) => {
            let chain = certificates(cert).map_err(TlsConfigError::ClientCert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                TlsConfigError::ClientKey(format!("{}: no usable private key: {e}", key.display()))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsConfigError::ClientKey(format!("does not fit the certificate: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
    // Session resumption is on by default (an in-memory cache of tickets per server name).
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path).map_err(TlsConfigError::Ca)? {
        roots.add(cert).map_err(|e| {
            TlsConfigError::Ca(format!(
                "{}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The system's trust store, read once per process, and only if some API needs it.
fn system_roots() -> Result<Arc<RootCertStore>, TlsConfigError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "https:// upstream without upstream_ca, but the system has no trusted \
                     roots: set upstream_ca"
                        .to_owned(),
                );
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(TlsConfigError::SystemRoots)
}

/// `insecure_skip_verify`: any certificate, any name. Handshake signatures are still checked, so
/// the peer holds the key of the certificate it sent (which proves nothing about who it is).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
