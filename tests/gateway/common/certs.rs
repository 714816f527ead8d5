//! Certificates made by the tests (rcgen): a CA of their own, server certificates for names and
//! loopback addresses, and client certificates, written as PEM files into a temp dir that goes
//! when the value is dropped. Nothing here is trusted by anything but the test that made it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A test certificate authority: its certificate as a PEM file, and the key to sign with.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    dir: TempDir,
    issued: std::sync::atomic::AtomicUsize,
}

/// One issued certificate (leaf only, or leaf + CA as a chain) and its PKCS#8 key, as PEM text
/// and as files.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (its subject's common name), EC P-256.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = TempDir(super::private_dir("tollgate-certs"));
        let pem = cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &pem).expect("writing the CA");
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
            dir,
            issued: Default::default(),
        }
    }

    /// The CA certificate's PEM file (for `client_ca`, `upstream_ca`, or a client's roots).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// The CA's certificate in DER, for a rustls root store.
    pub fn ca_der(&self) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM")
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as "127.0.0.1"), its
    /// file holding the leaf then the CA (a chain, as cert-manager writes `tls.crt`).
    pub fn server(&self, names: &[&str]) -> Issued {
        let mut params = leaf_params(names);
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, true)
    }

    /// A client certificate with common name `name` and the given SANs (DNS names, IPs, or
    /// `uri:spiffe://...` and `email:...` forms).
    pub fn client(&self, name: &str, sans: &[&str]) -> Issued {
        let mut params = leaf_params(sans);
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, false)
    }

    /// An RSA server certificate (2048 bits) for `names`, for the RSA key path.
    pub fn server_rsa(&self, names: &[&str]) -> Issued {
        let mut params = leaf_params(names);
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        self.write(params, key, true)
    }

    fn issue(&self, params: CertificateParams, chain: bool) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        self.write(params, key, chain)
    }

    fn write(&self, params: CertificateParams, key: KeyPair, chain: bool) -> Issued {
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        let mut cert_pem = cert.pem();
        if chain {
            cert_pem.push_str(&self.pem);
        }
        let key_pem = key.serialize_pem();
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("cert-{n}.pem"));
        let key_path = self.dir.path().join(format!("key-{n}.pem"));
        std::fs::write(&cert_path, &cert_pem).expect("writing a certificate");
        std::fs::write(&key_path, &key_pem).expect("writing a key");
        Issued {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
        }
    }

    /// A directory of the CA's, for files a test writes itself (a rotated cert, a broken one).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn leaf_params(sans: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn san(text: &str) -> SanType {
    if let Some(uri) = text.strip_prefix("uri:") {
        return SanType::URI(uri.try_into().expect("a URI SAN"));
    }
    if let Some(email) = text.strip_prefix("email:") {
        return SanType::Rfc822Name(email.try_into().expect("an email SAN"));
    }
    match text.parse() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(text.try_into().expect("a DNS SAN")),
    }
}

impl Issued {
    /// The leaf and key as a rustls client identity (for mTLS clients in tests).
    pub fn identity(
        &self,
    ) -> (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ) {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("key PEM");
        (chain, key)
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rustls client config trusting only `ca` (TLS 1.2 and 1.3, ALPN as given), with an optional
/// client identity.
pub fn client_config(
    ca: &TestCa,
    alpn: &[&[u8]],
    identity: Option<&Issued>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).expect("adding the CA");
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(issued) => {
            let (chain, key) = issued.identity();
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    /// The helper's own check: a chain it issues verifies against its CA in rustls, and a
    /// client identity loads.
    #[test]
    fn issued_chains_verify_against_the_ca() {
        let ca = TestCa::new("test CA");
        let server = ca.server(&["localhost", "127.0.0.1"]);
        let (chain, _) = server.identity();
        assert_eq!(chain.len(), 2, "leaf then CA");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der()).expect("CA");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .expect("the issued chain verifies");
        let client = ca.client("alice", &["uri:spiffe://test/alice"]);
        assert_eq!(client.identity().0.len(), 1);
    }
}
