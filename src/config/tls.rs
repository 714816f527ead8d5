//! `[listen.tls]`: TLS on the gateway listener. The settings name files (a certificate chain and
//! its key, a default and/or several chosen by SNI; optionally the CAs that sign client
//! certificates); [`load_material`] reads and checks them, both when the configuration is checked
//! and whenever `server::tls` sees the files change, so a rotation is held to the same checks as
//! the file. Errors name the key path and the file, never the content.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer};

use super::ConfigError;
use super::raw::{ClientCertAuth, RawTls};

/// `[listen.tls]`, checked: which files, not their content (that is [`TlsMaterial`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// A TLS listener of its own beside the plain `[listen] address`; `None`: `[listen] address`
    /// serves TLS only.
    pub address: Option<SocketAddr>,
    /// `cert` and `key`: for clients that send no SNI, or a name no `certificate` lists.
    pub default: Option<KeyPairFiles>,
    pub certificates: Vec<SniCertificate>,
    pub client_ca: Option<ClientCa>,
    /// As loaded when the configuration was checked (for the listener's start and `check`).
    pub loaded: Loaded,
}

/// A certificate chain file (leaf first) and its private key file, and the key path they were
/// given at (`listen.tls`, `listen.tls.certificate[1]`), for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairFiles {
    pub at: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[listen.tls.certificate]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    pub files: KeyPairFiles,
    /// Lowercase; exact names or `*.` and a suffix (one label).
    pub server_names: Vec<String>,
}

/// `client_ca` and `client_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCa {
    pub path: PathBuf,
    pub auth: ClientCertAuth,
}

/// The material, shared; compared as equal whatever it holds: a change of content is a rotation
/// (applied without a restart), not a change of settings.
#[derive(Debug, Clone)]
pub struct Loaded(pub Arc<TlsMaterial>);

impl PartialEq for Loaded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The files' content, parsed and checked.
#[derive(Debug)]
pub struct TlsMaterial {
    pub certificates: CertStore,
    pub client_roots: Option<Arc<RootCertStore>>,
    /// Each certificate, for `check`, the expiry gauge and the logs.
    pub summary: Vec<CertSummary>,
}

/// Certificates by server name: exact names, then one-label wildcards, then the default.
#[derive(Debug, Default)]
pub struct CertStore {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

/// What `check` and the expiry gauge say about one certificate.
#[derive(Debug, Clone)]
pub struct CertSummary {
    /// The key path (`listen.tls`, `listen.tls.certificate[0]`).
    pub at: String,
    pub cert: PathBuf,
    pub subject: String,
    pub server_names: Vec<String>,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

// === impl CertStore ===

impl CertStore {
    /// The certificate for `server_name` (SNI, any case): an exact name, else a wildcard for its
    /// parent, else the default. RFC 6125 §6.4.3: a wildcard stands for exactly one label.
    pub fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return Some(found.clone());
        }
        let parent = name.split_once('.').map(|(_, parent)| parent);
        parent
            .and_then(|p| self.wildcard.get(p))
            .or(self.default.as_ref())
            .cloned()
    }
}

pub(super) fn tls(raw: RawTls, plain: SocketAddr) -> Result<TlsSettings, ConfigError> {
    let address = raw
        .address
        .map(|text| {
            text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::at(
                    "listen.tls.address",
                    format!("{text:?} is not an IP:port socket address"),
                )
            })
        })
        .transpose()?;
    if address.is_some_and(|a| a == plain && a.port() != 0) {
        return Err(ConfigError::at(
            "listen.tls.address",
            "is [listen] address: leave it out to serve TLS only there",
        ));
    }
    let default = pair(raw.cert, raw.key, "listen.tls")?;
    let mut certificates = Vec::with_capacity(raw.certificate.len());
    let mut seen = HashSet::new();
    for (i, entry) in raw.certificate.into_iter().enumerate() {
        let at = format!("listen.tls.certificate[{i}]");
        let files = pair(Some(entry.cert), Some(entry.key), &at)?
            .ok_or_else(|| ConfigError::at(&at, "needs cert and key"))?;
        let server_names = server_names(&entry.server_names, &at, &mut seen)?;
        certificates.push(SniCertificate {
            files,
            server_names,
        });
    }
    if default.is_none() && certificates.is_empty() {
        return Err(ConfigError::at(
            "listen.tls",
            "needs cert and key, or at least one [[listen.tls.certificate]]",
        ));
    }
    let client_ca = match (raw.client_ca, raw.client_auth) {
        (Some(path), auth) => Some(ClientCa {
            path: PathBuf::from(path),
            auth: auth.unwrap_or(ClientCertAuth::Required),
        }),
        (None, Some(_)) => {
            return Err(ConfigError::at(
                "listen.tls.client_auth",
                "needs listen.tls.client_ca: the CAs that sign the client certificates",
            ));
        }
        (None, None) => None,
    };
    let mut settings = TlsSettings {
        address,
        default,
        certificates,
        client_ca,
        loaded: Loaded(Arc::new(TlsMaterial {
            certificates: CertStore::default(),
            client_roots: None,
            summary: Vec::new(),
        })),
    };
    settings.loaded = Loaded(Arc::new(load_material(&settings)?));
    Ok(settings)
}

/// `cert` and `key`: both or neither.
fn pair(
    cert: Option<String>,
    key: Option<String>,
    at: &str,
) -> Result<Option<KeyPairFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(KeyPairFiles {
            at: at.to_owned(),
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        })),
        (Some(_), None) => Err(ConfigError::at(format!("{at}.key"), "cert needs a key")),
        (None, Some(_)) => Err(ConfigError::at(format!("{at}.cert"), "key needs a cert")),
        (None, None) => Ok(None),
    }
}

/// Server names as SNI carries them (RFC 6066 §3: DNS host names, no IP addresses), lowercase;
/// a wildcard is `*.` and a name of at least two labels. No name may be listed twice.
fn server_names(
    names: &[String],
    at: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::at(
            format!("{at}.server_names"),
            "at least one name is required (the default certificate is listen.tls cert and key)",
        ));
    }
    let mut out = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let key = format!("{at}.server_names[{j}]");
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        let valid = !host.contains('*')
            && host.parse::<std::net::IpAddr>().is_err()
            && DnsName::try_from(host).is_ok()
            && (host.len() == lower.len() || host.contains('.'));
        if !valid {
            return Err(ConfigError::at(
                key,
                format!(
                    "{name:?} is not a DNS name or a one-label wildcard (*.example.com); SNI carries no IP addresses"
                ),
            ));
        }
        if !seen.insert(lower.clone()) {
            return Err(ConfigError::at(key, format!("{name:?} is listed twice")));
        }
        out.push(lower);
    }
    Ok(out)
}

/// Reads and checks every file the settings name: each chain parses (leaf first), each key
/// loads and matches its leaf, the client CAs parse.
pub fn load_material(settings: &TlsSettings) -> Result<TlsMaterial, ConfigError> {
    let mut store = CertStore::default();
    let mut summary = Vec::new();
    if let Some(files) = &settings.default {
        let (key, about) = load_pair(files, &[])?;
        store.default = Some(key);
        summary.push(about);
    }
    for entry in &settings.certificates {
        let (key, about) = load_pair(&entry.files, &entry.server_names)?;
        for name in &entry.server_names {
            match name.strip_prefix("*.") {
                Some(suffix) => store.wildcard.insert(suffix.to_owned(), key.clone()),
                None => store.exact.insert(name.clone(), key.clone()),
            };
        }
        summary.push(about);
    }
    let client_roots = settings
        .client_ca
        .as_ref()
        .map(|ca| load_roots(&ca.path).map(Arc::new))
        .transpose()?;
    Ok(TlsMaterial {
        certificates: store,
        client_roots,
        summary,
    })
}

fn load_pair(
    files: &KeyPairFiles,
    names: &[String],
) -> Result<(Arc<CertifiedKey>, CertSummary), ConfigError> {
    let cert_at = format!("{}.cert", files.at);
    let key_at = format!("{}.key", files.at);
    let chain = load_chain(&files.cert, &cert_at)?;
    let (subject, not_after) = leaf_facts(&chain[0])
        .map_err(|why| ConfigError::at(&cert_at, format!("{}: {why}", files.cert.display())))?;
    let key = load_key(&files.key, &key_at)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the key in {} does not match the certificate in {}",
                files.key.display(),
                files.cert.display()
            ),
            // rustls's words say what kind of key it could not use, nothing of the key itself.
            other => format!("{}: unusable key ({other})", files.key.display()),
        };
        ConfigError::at(&key_at, why)
    })?;
    let about = CertSummary {
        at: files.at.clone(),
        cert: files.cert.clone(),
        subject,
        server_names: names.to_vec(),
        not_after,
    };
    Ok((Arc::new(certified), about))
}

fn load_chain(path: &Path, at: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(path, at)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::at(at, format!("{}: not PEM ({e})", path.display())))?;
    if chain.is_empty() {
        return Err(ConfigError::at(
            at,
            format!("{}: no CERTIFICATE in it", path.display()),
        ));
    }
    Ok(chain)
}

/// PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`): cert-manager writes the last
/// two.
fn load_key(path: &Path, at: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read(path, at)?;
    // The parser's error names the PEM problem, never the bytes.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        ConfigError::at(
            at,
            format!("{}: no usable private key in it ({e})", path.display()),
        )
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let at = "listen.tls.client_ca";
    let mut roots = RootCertStore::empty();
    for cert in load_chain(path, at)? {
        roots.add(cert).map_err(|e| {
            ConfigError::at(
                at,
                format!("{}: not a usable CA certificate ({e})", path.display()),
            )
        })?;
    }
    Ok(roots)
}

fn read(path: &Path, at: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::at(at, format!("cannot read {}: {e}", path.display())))
}

/// The leaf's subject and notAfter.
fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(String, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the first certificate is not X.509 ({e})"))?;
    Ok((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

impl TlsSettings {
    /// Every file to watch for a rotation.
    pub fn files(&self) -> Vec<PathBuf> {
        let pairs = self
            .default
            .iter()
            .chain(self.certificates.iter().map(|c| &c.files));
        let mut files: Vec<PathBuf> = pairs
            .flat_map(|p| [p.cert.clone(), p.key.clone()])
            .collect();
        files.extend(self.client_ca.iter().map(|ca| ca.path.clone()));
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `[listen]` extras plus `tls` (tables after the API) give.
    fn error(api_extra: &str, tls: &str) -> ConfigError {
        let text = format!(
            "[provider]\nissuer = \"https://idp.test\"\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"s\"\n[[api]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\nskip_client_id_validation = true\n{api_extra}\n{tls}"
        );
        match crate::config::parse(&text, &HashMap::<String, String>::new()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn settings_errors_name_their_key() {
        let cases = [
            ("", "[listen.tls]\n", "listen.tls"),
            ("", "[listen.tls]\ncert = \"c.pem\"\n", "listen.tls.key"),
            ("", "[listen.tls]\nkey = \"k.pem\"\n", "listen.tls.cert"),
            (
                "",
                "[listen.tls]\ncert = \"c\"\nkey = \"k\"\nclient_auth = \"required\"\n",
                "listen.tls.client_auth",
            ),
            (
                "",
                "[listen.tls]\naddress = \"nowhere\"\ncert = \"c\"\nkey = \"k\"\n",
                "listen.tls.address",
            ),
            (
                "",
                "[[listen.tls.certificate]]\ncert = \"c\"\nkey = \"k\"\nserver_names = []\n",
                "listen.tls.certificate[0].server_names",
            ),
            (
                "[[api.rule]]\nclient_certificate = \"required\"\n",
                "",
                "api[0].rule[0].client_certificate",
            ),
            (
                "client_cert_headers = true\n",
                "",
                "api[0].client_cert_headers",
            ),
        ];
        for (api, tls, key) in cases {
            assert_eq!(error(api, tls).path, key, "{api}{tls}");
        }
    }

    #[test]
    fn server_names_are_dns_names_or_one_label_wildcards_listed_once() {
        let mut seen = HashSet::new();
        let ok = server_names(
            &["API.example.com".into(), "*.example.com".into()],
            "t",
            &mut seen,
        )
        .unwrap();
        assert_eq!(ok, ["api.example.com", "*.example.com"]);
        for bad in ["*.com", "a.*.example.com", "127.0.0.1", "x..y", "*"] {
            let e = server_names(&[bad.into()], "t", &mut HashSet::new()).unwrap_err();
            assert_eq!(e.path, "t.server_names[0]", "{bad}");
        }
        let e = server_names(&["api.example.com".into()], "u", &mut seen).unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
    }
}
