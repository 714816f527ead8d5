//! TLS termination on the gateway listener (`[listen.tls]`): rustls with the aws-lc-rs provider,
//! TLS 1.2 and 1.3 only, ALPN `h2` then `http/1.1`, certificates chosen by SNI, session resumption
//! (tickets and a server-side cache, shared by every worker), optional or required client
//! certificates.
//!
//! The handshake runs in the connection's own task, after the accept loop admitted it (the
//! ClientHello is the client's first bytes, so "clients that speak win" holds unchanged), and it
//! counts against `header_read_timeout` from accept: a client that opens TCP and stalls the
//! handshake is closed like one that never sends a head. A failed handshake is a debug log and
//! `tollgate_tls_handshake_failures_total{reason}`.
//!
//! Rotation: [`watch_files`] reads the certificate, key and CA files every second and, when their
//! content changed (which also sees a Kubernetes secret's `..data` symlink swap), checks them as
//! the configuration is checked and swaps them in: new handshakes use them, open connections keep
//! their session. A broken file keeps the old material (a warning naming the file, and
//! `tollgate_tls_reload_failures_total`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::aws_lc_rs;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::connection::{ConnectionState, until_shed};
use crate::client_cert::ClientCertificate;
use crate::config::{ClientCertAuth, TlsMaterial, TlsSettings, load_material};
use crate::measure;

/// Sessions remembered server-side (TLS 1.2 session IDs, TLS 1.3 stateful resumption), for
/// clients that do not take tickets.
const SESSION_CACHE: usize = 16 * 1024;
/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// One TLS listener's state, shared by every worker: the current certificates and the current
/// rustls configuration, each swapped whole on a rotation.
pub struct TlsEndpoint {
    settings: TlsSettings,
    config: RwLock<Arc<ServerConfig>>,
    shared: Shared,
}

/// What every configuration of one listener shares: the certificates, and the session cache and
/// ticket keys, so a CA rotation does not end every resumable session.
struct Shared {
    resolver: Arc<SniResolver>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

/// Picks the certificate by SNI from the current material (`CertStore::pick`); `None` (no
/// default and an unknown name) fails the handshake.
#[derive(Debug)]
struct SniResolver {
    material: RwLock<Arc<TlsMaterial>>,
}

/// A completed handshake: the stream, whether ALPN chose HTTP/2, and the verified client
/// certificate, parsed once for the connection's life.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    pub http2: bool,
    pub client_cert: Option<Arc<ClientCertificate>>,
}

// === impl SniResolver ===

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let material = self
            .material
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        material.certificates.pick(hello.server_name())
    }
}

// === impl TlsEndpoint ===

impl TlsEndpoint {
    /// From the material loaded when the configuration was checked.
    pub fn new(settings: &TlsSettings) -> Result<Arc<Self>, rustls::Error> {
        let material = settings.loaded.0.clone();
        let resolver = Arc::new(SniResolver {
            material: RwLock::new(material.clone()),
        });
        let shared = Shared {
            resolver,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE),
            ticketer: aws_lc_rs::Ticketer::new()?,
        };
        let config = build_config(&shared, &material, settings)?;
        Ok(Arc::new(TlsEndpoint {
            settings: settings.clone(),
            config: RwLock::new(Arc::new(config)),
            shared,
        }))
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Swaps in freshly loaded material.
    fn apply(&self, material: TlsMaterial) -> Result<(), rustls::Error> {
        let material = Arc::new(material);
        // The client CAs live in the configuration's verifier: a new one is built for them.
        if material.client_roots.is_some() {
            let config = build_config(&self.shared, &material, &self.settings)?;
            *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        }
        *self
            .shared
            .resolver
            .material
            .write()
            .unwrap_or_else(|e| e.into_inner()) = material;
        Ok(())
    }

    fn current(&self) -> Arc<TlsMaterial> {
        self.shared
            .resolver
            .material
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// TLS 1.3 and 1.2 only, ALPN, resumption, and the client certificate verifier over the
/// material's CAs.
fn build_config(
    shared: &Shared,
    material: &TlsMaterial,
    settings: &TlsSettings,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?;
    let auth = settings.client_ca.as_ref().map(|ca| ca.auth);
    let builder = match (&material.client_roots, auth) {
        (Some(roots), Some(auth)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
            let verifier = match auth {
                ClientCertAuth::Optional => verifier.allow_unauthenticated(),
                ClientCertAuth::Required => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(shared.resolver.clone());
    // RFC 7301: HTTP/2 first (RFC 9113 §3.2), then HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = shared.sessions.clone();
    config.ticketer = shared.ticketer.clone();
    Ok(config)
}

/// The TLS handshake of an admitted connection, bounded by `header_read_timeout` from accept and
/// given up when the accept loop sheds the connection; `None`: it failed (logged and counted).
pub async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    state: &ConnectionState,
    head_timeout: Duration,
) -> Option<Accepted> {
    let deadline = state.origin() + head_timeout;
    let closed = |reason: &'static str| {
        tracing::debug!(reason, "closing connection during the TLS handshake");
        metrics::counter!(measure::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
        None
    };
    let done = tokio::select! {
        done = acceptor.accept(stream) => done,
        () = tokio::time::sleep_until(deadline) => return closed("header_read_timeout"),
        () = until_shed(state) => return closed("shed_at_capacity"),
    };
    let stream = match done {
        Ok(stream) => stream,
        Err(e) => {
            let reason = failure_reason(&e);
            tracing::debug!(reason, error = %e, "TLS handshake failed");
            metrics::counter!(measure::TLS_HANDSHAKE_FAILURES, "reason" => reason).increment(1);
            return None;
        }
    };
    let (_, session) = stream.get_ref();
    let http2 = session.alpn_protocol() == Some(b"h2");
    // Present only if the verifier accepted it (or the session it resumes did).
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| ClientCertificate::from_der(leaf.as_ref()))
        .map(Arc::new);
    Some(Accepted {
        stream,
        http2,
        client_cert,
    })
}

/// The metric's `reason`: a few stable words, never the peer's data.
fn failure_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) => "bad_client_certificate",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::NoApplicationProtocol => "no_application_protocol",
        // The resolver found no certificate for the client's SNI (and there is no default).
        rustls::Error::General(_) => "unknown_server_name",
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => "bad_message",
        _ => "other",
    }
}

/// Watches the files until the task is dropped; also keeps the expiry gauge current.
pub async fn watch_files(endpoint: Arc<TlsEndpoint>) {
    let files = endpoint.settings.files();
    let mut seen = fingerprint(&files);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        set_expiry(&endpoint.current());
        let now = fingerprint(&files);
        if now == seen {
            continue;
        }
        seen = now;
        reload(&endpoint);
    }
}

/// One rotation attempt: the new files whole and valid, or the old material stays.
fn reload(endpoint: &TlsEndpoint) {
    let refused = |error: String| {
        tracing::warn!(error = %error, "TLS files changed but are not usable: the running certificates stay");
        metrics::counter!(measure::TLS_RELOAD_FAILURES).increment(1);
    };
    let material = match load_material(&endpoint.settings) {
        Ok(material) => material,
        Err(e) => return refused(e.to_string()),
    };
    let names: Vec<String> = material.summary.iter().map(|s| s.subject.clone()).collect();
    match endpoint.apply(material) {
        Ok(()) => tracing::info!(certificates = ?names, "TLS files reloaded"),
        Err(e) => refused(e.to_string()),
    }
}

/// Each file's content digest (`None` while it cannot be read).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    files
        .iter()
        .map(|f| std::fs::read(f).ok().map(|b| Sha256::digest(&b).into()))
        .collect()
}

/// `tollgate_tls_certificate_expiry_seconds{name}`: until each certificate's notAfter.
pub fn set_expiry(material: &TlsMaterial) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for cert in &material.summary {
        metrics::gauge!(measure::TLS_CERT_EXPIRY, "name" => cert.at.clone())
            .set((cert.not_after - now) as f64);
    }
}
