//! TLS on the gateway listener (`[listen.tls]`): real rustls handshakes against the real binary,
//! certificates from the tests' own CA. HTTP/1.1 and h2 by ALPN, SNI choosing the certificate,
//! TLS 1.2+ only, plain and TLS side by side, `https` as the forwarded scheme, rotation of the
//! files without a restart, client certificates (required, optional with a rule), the identity
//! headers they give and the forged copies that never pass, the handshake under
//! `header_read_timeout`, and configuration errors.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::certs::{self, Issued, TestCa};
use crate::common::gateway::{Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::{Seen, Upstream};
use crate::common::{base_config, client, eventually, read_until_close, sample, toml_string};

const WAIT: Duration = Duration::from_secs(10);

/// `/orders` on `upstream`, needing `mulescope` from `orders-app`, then `extra` keys.
fn orders_api(upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(&upstream.url())
    )
}

/// `[listen.tls]` with `cert` and `key` from `issued`, then `extra` keys (and tables).
fn tls_table(issued: &Issued, extra: &str) -> String {
    format!(
        "[listen.tls]\ncert = {}\nkey = {}\n{extra}\n",
        path_str(&issued.cert_path),
        path_str(&issued.key_path)
    )
}

fn path_str(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

struct Setup {
    idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
    token: String,
}

/// A provider, an upstream, the orders API (plus `api_extra`), then `tls` (tables at the end).
async fn setup(api_extra: &str, tls: &str) -> Setup {
    setup_listen("", api_extra, tls).await
}

/// `setup`, with `listen_extra` keys in `[listen]`.
async fn setup_listen(listen_extra: &str, api_extra: &str, tls: &str) -> Setup {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let api = format!("{}\n{tls}", orders_api(&upstream, api_extra));
    let anchor = "admin_address = \"127.0.0.1:0\"\n";
    let config =
        base_config(&idp.issuer, &api).replacen(anchor, &format!("{anchor}{listen_extra}\n"), 1);
    let gateway = Gateway::start(&config).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        idp,
        upstream,
        gateway,
        token,
    }
}

/// A TLS connection to `addr` trusting `ca`, offering `alpn`, naming `sni`.
async fn connect(
    addr: SocketAddr,
    ca: &TestCa,
    alpn: &[&[u8]],
    sni: &str,
    identity: Option<&Issued>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(certs::client_config(ca, alpn, identity));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("a server name");
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the handshake ends in time")
}

/// The leaf the server presented, in DER.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a server chain")[0]
        .to_vec()
}

fn leaf(issued: &Issued) -> Vec<u8> {
    issued.identity().0[0].to_vec()
}

/// An HTTP client connection over TLS, HTTP/2 if ALPN chose it.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    async fn open(stream: TlsStream<TcpStream>) -> Conn {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http/1.1 handshake");
            tokio::spawn(conn);
            Conn::H1(send)
        }
    }

    /// GET `path` with `token` and `headers`: the status and body, or the error.
    async fn get(
        &mut self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), hyper::Error> {
        let mut req = Request::get(format!("https://localhost{path}"))
            .header("authorization", format!("Bearer {token}"));
        if let Conn::H1(_) = self {
            req = req.header("host", "localhost");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Empty::new()).expect("a request");
        let resp = match self {
            Conn::H1(send) => send.send_request(req).await?,
            Conn::H2(send) => send.send_request(req).await?,
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One request on a new connection; the upstream's view of it.
async fn tls_get(
    s: &Setup,
    addr: SocketAddr,
    ca: &TestCa,
    identity: Option<&Issued>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let stream = connect(addr, ca, &[b"h2", b"http/1.1"], "localhost", identity)
        .await
        .expect("handshake");
    Conn::open(stream)
        .await
        .get(path, &s.token, headers)
        .await
        .expect("a response")
}

/// The address the `listening` event gives as `tls`.
fn tls_addr(gateway: &Gateway) -> SocketAddr {
    gateway
        .json_logs()
        .iter()
        .find(|v| v["message"] == "listening" || v["fields"]["message"] == "listening")
        .and_then(|v| {
            v["tls"]
                .as_str()
                .or(v["fields"]["tls"].as_str())?
                .parse()
                .ok()
        })
        .expect("a listening event with a tls address")
}

fn assert_https(seen: &Seen) {
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let forwarded = seen.header("forwarded").expect("Forwarded");
    assert!(forwarded.contains("proto=https"), "{forwarded}");
}

#[tokio::test]
async fn http1_and_h2_over_tls_reach_the_upstream_as_https_with_a_cached_token() {
    let ca = TestCa::new("tls test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let s = setup("", &tls_table(&server, "")).await;
    let addr = s.gateway.proxy;

    let h1 = connect(addr, &ca, &[b"http/1.1"], "localhost", None)
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(presented(&h1), leaf(&server));
    let mut h1 = Conn::open(h1).await;
    let forged = [("x-forwarded-proto", "http"), ("forwarded", "proto=http")];
    let (status, body) = h1.get("/orders/1", &s.token, &forged).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_https(&s.upstream.last());

    let h2 = connect(addr, &ca, &[b"h2", b"http/1.1"], "localhost", None)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = Conn::open(h2).await;
    let (status, body) = h2.get("/orders/2", &s.token, &forged).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/2");
    assert_https(&seen);
    // The second request was answered from the cache: one introspection for both.
    assert_eq!(s.idp.stats().await.introspection, 1);

    // No ALPN at all: HTTP/1.1.
    let none = connect(addr, &ca, &[], "localhost", None).await.unwrap();
    assert_eq!(none.get_ref().1.alpn_protocol(), None);
    let (status, _) = Conn::open(none)
        .await
        .get("/orders/3", &s.token, &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(s.upstream.count(), 3);
}

#[tokio::test]
async fn sni_picks_the_certificate_and_an_unknown_name_fails_without_a_default() {
    let ca = TestCa::new("sni CA");
    let api = ca.server(&["api.example.test"]);
    let wild = ca.server(&["*.apps.example.test"]);
    let tls = format!(
        "[listen.tls]\n[[listen.tls.certificate]]\ncert = {}\nkey = {}\nserver_names = [\"api.example.test\"]\n[[listen.tls.certificate]]\ncert = {}\nkey = {}\nserver_names = [\"*.apps.example.test\"]\n",
        path_str(&api.cert_path),
        path_str(&api.key_path),
        path_str(&wild.cert_path),
        path_str(&wild.key_path),
    );
    let s = setup("", &tls).await;
    let addr = s.gateway.proxy;
    let exact = connect(addr, &ca, &[], "API.example.test", None)
        .await
        .unwrap();
    assert_eq!(presented(&exact), leaf(&api));
    let one_label = connect(addr, &ca, &[], "billing.apps.example.test", None)
        .await
        .unwrap();
    assert_eq!(presented(&one_label), leaf(&wild));
    // A wildcard stands for one label only, and there is no default.
    for unknown in ["a.b.apps.example.test", "other.example.test"] {
        let refused = connect(addr, &ca, &[], unknown, None).await;
        assert!(refused.is_err(), "{unknown} must fail the handshake");
    }
    let metrics = s.gateway.metrics().await;
    let failures = sample(
        &metrics,
        "tollgate_tls_handshake_failures_total",
        &[("reason", "unknown_server_name")],
    );
    assert_eq!(failures, Some(2.0), "{metrics}");
    s.upstream.assert_not_reached();
}

/// A TLS 1.1 ClientHello (no supported_versions extension), by hand: rustls clients cannot
/// offer it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA / RSA AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hello = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).unwrap()];
    hello.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, u8::try_from(hello.len()).unwrap()];
    record.extend_from_slice(&hello);
    record
}

#[tokio::test]
async fn a_tls_1_1_only_client_is_refused_and_a_stalled_handshake_is_closed() {
    let ca = TestCa::new("versions CA");
    let server = ca.server(&["localhost"]);
    let s = setup_listen("header_read_timeout = \"1s\"", "", &tls_table(&server, "")).await;
    let (gateway, upstream) = (&s.gateway, &s.upstream);

    let mut old = TcpStream::connect(gateway.proxy).await.unwrap();
    old.write_all(&tls11_client_hello()).await.unwrap();
    let answer = read_until_close(&mut old, WAIT).await.expect("closed");
    // An alert (content type 21), never a ServerHello (22).
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");

    // Half a ClientHello, then nothing: closed at header_read_timeout, not before.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(gateway.proxy).await.unwrap();
    stalled
        .write_all(&tls11_client_hello()[..20])
        .await
        .unwrap();
    assert!(
        read_until_close(&mut stalled, WAIT).await.is_some(),
        "closed"
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let metrics = gateway.metrics().await;
    let incompatible = sample(
        &metrics,
        "tollgate_tls_handshake_failures_total",
        &[("reason", "incompatible")],
    );
    assert_eq!(incompatible, Some(1.0), "{metrics}");
    let timed_out = sample(
        &metrics,
        "tollgate_connections_closed_total",
        &[("reason", "header_read_timeout")],
    );
    assert_eq!(timed_out, Some(1.0), "{metrics}");
    upstream.assert_not_reached();
}

#[tokio::test]
async fn plain_and_tls_side_by_side() {
    let ca = TestCa::new("side CA");
    let server = ca.server(&["localhost"]);
    let s = setup("", &tls_table(&server, "address = \"127.0.0.1:0\"")).await;
    let tls = tls_addr(&s.gateway);
    assert_ne!(tls, s.gateway.proxy);

    let resp = client()
        .get(s.gateway.url("/orders/plain"))
        .bearer_auth(&s.token)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));

    let (status, body) = tls_get(&s, tls, &ca, None, "/orders/tls", &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/tls");
    assert_https(&seen);
}

/// Writes `text` to `path` whole (aside, then renamed), as a secret volume swaps its files.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn rotated_files_serve_new_handshakes_and_a_broken_rewrite_keeps_the_old() {
    let ca = TestCa::new("rotation CA");
    let first = ca.server(&["localhost"]);
    let cert = ca.dir().join("tls.crt");
    let key = ca.dir().join("tls.key");
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let tls = format!(
        "[listen.tls]\ncert = {}\nkey = {}\n",
        path_str(&cert),
        path_str(&key)
    );
    let s = setup("", &tls).await;
    let addr = s.gateway.proxy;
    let open = connect(addr, &ca, &[b"h2"], "localhost", None)
        .await
        .unwrap();
    assert_eq!(presented(&open), leaf(&first));
    let mut open = Conn::open(open).await;
    assert_eq!(open.get("/orders/1", &s.token, &[]).await.unwrap().0, 200);

    let second = ca.server(&["localhost"]);
    replace(&key, &second.key_pem);
    replace(&cert, &second.cert_pem);
    eventually(
        WAIT,
        "a new handshake presents the rotated leaf",
        || async {
            let fresh = connect(addr, &ca, &[], "localhost", None).await.unwrap();
            presented(&fresh) == leaf(&second)
        },
    )
    .await;
    // The connection made before the rotation goes on.
    assert_eq!(open.get("/orders/2", &s.token, &[]).await.unwrap().0, 200);

    let before = sample(
        &s.gateway.metrics().await,
        "tollgate_tls_reload_failures_total",
        &[],
    )
    .unwrap_or(0.0);
    replace(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    eventually(WAIT, "the broken rewrite is counted", || async {
        let now = sample(
            &s.gateway.metrics().await,
            "tollgate_tls_reload_failures_total",
            &[],
        );
        now.is_some_and(|n| n > before)
    })
    .await;
    let still = connect(addr, &ca, &[], "localhost", None).await.unwrap();
    assert_eq!(
        presented(&still),
        leaf(&second),
        "the old certificate stays"
    );
    let logs = s.gateway.render_logs();
    assert!(
        logs.contains("tls.crt"),
        "the warning names the file: {logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "no key material in the logs");
    assert_eq!(s.upstream.count(), 2);
}

/// `[listen.tls]` asking for client certificates from `ca` (`auth`: its `client_auth`).
fn mtls_table(ca: &TestCa, server: &Issued, auth: &str) -> String {
    tls_table(
        server,
        &format!(
            "client_ca = {}\nclient_auth = \"{auth}\"",
            path_str(&ca.ca_path())
        ),
    )
}

/// Does a connection with `identity` fail before any answer? With TLS 1.3 the client may finish
/// first and learn of the refusal on its first read.
async fn refused(s: &Setup, ca: &TestCa, identity: Option<&Issued>) -> bool {
    match connect(s.gateway.proxy, ca, &[], "localhost", identity).await {
        Err(_) => true,
        Ok(stream) => Conn::open(stream)
            .await
            .get("/orders/1", &s.token, &[])
            .await
            .is_err(),
    }
}

#[tokio::test]
async fn required_client_certificates_refuse_a_handshake_without_one() {
    let ca = TestCa::new("mtls CA");
    let server = ca.server(&["localhost"]);
    let alice = ca.client("alice", &["uri:spiffe://test/alice"]);
    let s = setup("", &mtls_table(&ca, &server, "required")).await;
    let addr = s.gateway.proxy;

    assert!(refused(&s, &ca, None).await, "no certificate, no request");
    // A certificate from another CA is refused as well.
    let stranger = TestCa::new("stranger CA").client("mallory", &[]);
    assert!(
        refused(&s, &ca, Some(&stranger)).await,
        "an unknown CA's certificate, no request"
    );
    s.upstream.assert_not_reached();
    assert_eq!(s.idp.stats().await.introspection, 0);

    let (status, body) = tls_get(&s, addr, &ca, Some(&alice), "/orders/1", &[]).await;
    assert_eq!(status, 200, "{body}");
    let metrics = s.gateway.metrics().await;
    let missing = sample(
        &metrics,
        "tollgate_tls_handshake_failures_total",
        &[("reason", "no_client_certificate")],
    );
    assert_eq!(missing, Some(1.0), "{metrics}");
}

const FORGED: &[(&str, &str)] = &[
    ("x-client-cert-subject", "CN=mallory"),
    ("x_client_cert_san_uri", "spiffe://test/mallory"),
    ("X-Client-Cert-San-Email", "mallory@example.test"),
];

fn assert_no_forgery(seen: &Seen) {
    for (name, value) in [
        ("x-client-cert-subject", "CN=mallory"),
        ("x_client_cert_san_uri", "spiffe://test/mallory"),
        ("x-client-cert-san-uri", "spiffe://test/mallory"),
        ("x-client-cert-san-email", "mallory@example.test"),
    ] {
        assert!(
            !seen.headers_named(name).iter().any(|v| v.contains(value)),
            "{name} forged: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn optional_client_certificates_give_identity_headers_and_rules_can_require_one() {
    let ca = TestCa::new("optional CA");
    let server = ca.server(&["localhost"]);
    let alice = ca.client(
        "alice",
        &[
            "uri:spiffe://test/alice",
            "email:alice@example.test",
            "alice.example.test",
        ],
    );
    let api_extra = "client_cert_headers = true\n[[api.rule]]\npaths = [\"/orders/secure/**\"]\nclient_certificate = \"required\"\n";
    let s = setup(api_extra, &mtls_table(&ca, &server, "optional")).await;
    let addr = s.gateway.proxy;

    // No certificate: the rule refuses through the renderer, before any token check.
    let (status, body) = tls_get(&s, addr, &ca, None, "/orders/secure/1", FORGED).await;
    assert_eq!(status, 403, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "client_certificate_required");
    s.upstream.assert_not_reached();
    assert_eq!(s.idp.stats().await.introspection, 0);

    // No certificate, no rule: forwarded with no client-cert headers at all, forged ones gone.
    let (status, _) = tls_get(&s, addr, &ca, None, "/orders/1", FORGED).await;
    assert_eq!(status, 200);
    let seen = s.upstream.last();
    assert_no_forgery(&seen);
    assert!(
        !seen
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("x-client-cert") || n.starts_with("x_client_cert")),
        "{:?}",
        seen.headers
    );

    // A verified certificate: its identity, never the forged one.
    let (status, body) = tls_get(&s, addr, &ca, Some(&alice), "/orders/secure/1", FORGED).await;
    assert_eq!(status, 200, "{body}");
    let seen = s.upstream.last();
    assert_no_forgery(&seen);
    assert_eq!(seen.headers_named("x-client-cert-subject"), ["CN=alice"]);
    assert_eq!(
        seen.header("x-client-cert-san-uri").as_deref(),
        Some("spiffe://test/alice")
    );
    assert_eq!(
        seen.header("x-client-cert-san-email").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(
        seen.header("x-client-cert-san-dns").as_deref(),
        Some("alice.example.test")
    );
}

/// `check` on `tls`: exit 2, the key path named, no key material printed.
async fn assert_tls_config_error(tls: &str, key_path: &str) {
    let config = base_config(
        "http://127.0.0.1:9",
        &format!("[[api]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n{tls}"),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains(key_path), "{key_path}: {out:?}");
    assert!(!out.stderr.contains("PRIVATE KEY") && !out.stdout.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn bad_tls_configurations_exit_2_naming_the_key() {
    let ca = TestCa::new("config CA");
    let one = ca.server(&["localhost"]);
    let two = ca.server(&["localhost"]);
    let missing = ca.dir().join("missing.pem");
    let missing_cert = format!(
        "[listen.tls]\ncert = {}\nkey = {}\n",
        path_str(&missing),
        path_str(&one.key_path)
    );
    assert_tls_config_error(&missing_cert, "listen.tls.cert").await;
    let mismatched = format!(
        "[listen.tls]\ncert = {}\nkey = {}\n",
        path_str(&one.cert_path),
        path_str(&two.key_path)
    );
    assert_tls_config_error(&mismatched, "listen.tls.key").await;
    let no_ca = tls_table(&one, "client_auth = \"optional\"");
    assert_tls_config_error(&no_ca, "listen.tls.client_auth").await;
    let twice = format!(
        "[listen.tls]\n[[listen.tls.certificate]]\ncert = {c}\nkey = {k}\nserver_names = [\"a.test\"]\n[[listen.tls.certificate]]\ncert = {c}\nkey = {k}\nserver_names = [\"A.test\"]\n",
        c = path_str(&one.cert_path),
        k = path_str(&one.key_path)
    );
    assert_tls_config_error(&twice, "listen.tls.certificate[1].server_names[0]").await;
}

#[tokio::test]
async fn check_prints_the_tls_files_names_expiry_and_client_auth() {
    let ca = TestCa::new("check CA");
    let default = ca.server(&["localhost"]);
    let api = ca.server(&["api.example.test"]);
    let idp = TestIdp::start().await;
    let tls = format!(
        "{}[[listen.tls.certificate]]\ncert = {}\nkey = {}\nserver_names = [\"api.example.test\"]\n",
        mtls_table(&ca, &default, "optional"),
        path_str(&api.cert_path),
        path_str(&api.key_path)
    );
    let config = base_config(
        &idp.issuer,
        &format!("{}\n{tls}", orders_api(&Upstream::start().await, "")),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    for needle in [
        "tls: on 127.0.0.1:0 (no cleartext)",
        &default.cert_path.display().to_string(),
        "listen.tls.certificate[0]",
        "for api.example.test; expires ",
        "client certificates: Optional",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    assert!(!out.stdout.contains("PRIVATE KEY"));
}

/// A client config trusting `ca` with only `version`, presenting `identity`; its session store
/// is kept by the config, so a second connection with it can resume.
fn client_with_version(
    ca: &TestCa,
    version: &'static rustls::SupportedProtocolVersion,
    identity: &Issued,
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    let (chain, key) = identity.identity();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn sessions_resume_on_tls_1_3_and_1_2_and_keep_their_client_certificate() {
    let ca = TestCa::new("resumption CA");
    let server = ca.server_rsa(&["localhost"]);
    let alice = ca.client("alice", &["uri:spiffe://test/alice"]);
    let s = setup(
        "client_cert_headers = true",
        &mtls_table(&ca, &server, "optional"),
    )
    .await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let connector = TlsConnector::from(client_with_version(&ca, version, &alice));
        let mut kinds = Vec::new();
        for n in 0..2 {
            let tcp = TcpStream::connect(s.gateway.proxy).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let stream = connector.connect(name, tcp).await.unwrap();
            kinds.push(stream.get_ref().1.handshake_kind());
            // A request, so the client reads the TLS 1.3 tickets the server sent.
            let (status, body) = Conn::open(stream)
                .await
                .get(&format!("/orders/{n}"), &s.token, FORGED)
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
            let seen = s.upstream.last();
            assert_no_forgery(&seen);
            assert_eq!(seen.headers_named("x-client-cert-subject"), ["CN=alice"]);
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_client_hello_sheds_a_silent_socket() {
    let ca = TestCa::new("cap CA");
    let server = ca.server(&["localhost"]);
    // One worker, so connections are taken in the order they were made; a head timeout far
    // longer than the test may wait.
    let listen = "max_connections = 1\nworkers = 1\nheader_read_timeout = \"30s\"";
    let s = setup_listen(listen, "", &tls_table(&server, "")).await;
    let (gateway, token) = (&s.gateway, &s.token);

    let mut silent = TcpStream::connect(gateway.proxy).await.unwrap();
    let started = Instant::now();
    let stream = connect(gateway.proxy, &ca, &[b"h2"], "localhost", None)
        .await
        .expect("the speaking client is served");
    let (status, _) = Conn::open(stream)
        .await
        .get("/orders/1", token, &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served long before header_read_timeout: {:?}",
        started.elapsed()
    );
    assert!(
        read_until_close(&mut silent, WAIT).await.is_some(),
        "the silent socket was closed"
    );
    let metrics = gateway.metrics().await;
    let shed = sample(
        &metrics,
        "tollgate_connections_closed_total",
        &[("reason", "shed_at_capacity")],
    )
    .unwrap_or(0.0)
        + sample(
            &metrics,
            "tollgate_connections_closed_total",
            &[("reason", "silent_at_capacity")],
        )
        .unwrap_or(0.0);
    assert_eq!(shed, 1.0, "{metrics}");
}

/// Rewrites `issued`'s PKCS#8 key file in `format` ("sec1" for EC, "pkcs1" for RSA), as openssl's
/// older tools and some issuers write keys, with Node.js's crypto (the tests need Node.js anyway).
fn rewrite_key(issued: &Issued, format: &str) -> String {
    let script = "const c = require('crypto'), fs = require('fs'); const [file, type] = process.argv.slice(1); \
                  fs.writeFileSync(file, c.createPrivateKey(fs.readFileSync(file)).export({ type, format: 'pem' }));";
    let status = std::process::Command::new("node")
        .args(["-e", script])
        .arg(&issued.key_path)
        .arg(format)
        .status()
        .expect("node runs (install Node.js 20)");
    assert!(
        status.success(),
        "node could not rewrite the key as {format}"
    );
    std::fs::read_to_string(&issued.key_path).expect("the rewritten key")
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_serve_handshakes() {
    let ca = TestCa::new("key formats CA");
    let cases = [
        (
            ca.server(&["localhost"]),
            "sec1",
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            ca.server_rsa(&["localhost"]),
            "pkcs1",
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
    ];
    for (issued, format, first_line) in &cases {
        let pem = rewrite_key(issued, format);
        assert!(pem.starts_with(first_line), "{format}: {pem:.40}");
        let s = setup("", &tls_table(issued, "")).await;
        let stream = connect(s.gateway.proxy, &ca, &[], "localhost", None)
            .await
            .unwrap_or_else(|e| panic!("a handshake with a {format} key: {e}"));
        assert_eq!(presented(&stream), leaf(issued), "{format}");
    }
}
