//! Upstream protocols: HTTP/2 to the upstream (h2c by prior knowledge, `h2` by ALPN), `TE:
//! trailers` and response trailers passing through, and `https://` upstreams: verification
//! against `upstream_ca`, `upstream_server_name`, mTLS, `insecure_skip_verify`, and the config
//! errors that name their keys.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common::certs::TestCa;
use crate::common::gateway::{Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::{TlsUpstream, Upstream, UpstreamBehaviour};
use crate::common::{
    base_config, client, orders_api, raw_http, raw_request, toml_string, with_listen,
};

struct Setup {
    _idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
    token: String,
}

/// The orders API in front of `upstream` at `url`, with `extra` keys, and a token for it.
async fn setup(upstream: Upstream, url: &str, extra: &str) -> Setup {
    setup_listen(upstream, url, extra, "").await
}

/// `setup` with `listen` keys in `[listen]`.
async fn setup_listen(upstream: Upstream, url: &str, extra: &str, listen: &str) -> Setup {
    let idp = TestIdp::start().await;
    let config = base_config(
        &idp.issuer,
        &orders_api(url, &format!("expose_headers = true\n{extra}")),
    );
    let gateway = Gateway::start(&with_listen(&config, listen)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        _idp: idp,
        upstream,
        gateway,
        token,
    }
}

async fn get(s: &Setup) -> reqwest::Response {
    client()
        .get(s.gateway.url("/orders/1"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request to the gateway")
}

/// A cleartext HTTP/2 exchange with the gateway (prior knowledge): the response's status, body
/// and trailers.
async fn h2_get(s: &Setup, path: &str) -> (u16, Bytes, Option<http::HeaderMap>) {
    let tcp = tokio::net::TcpStream::connect(s.gateway.proxy)
        .await
        .expect("connecting to the gateway");
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2 handshake with the gateway");
    tokio::spawn(connection);
    let req = http::Request::builder()
        .uri(format!("http://{}{path}", s.gateway.proxy))
        .header("authorization", format!("Bearer {}", s.token))
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(req).await.expect("h2 response");
    let status = response.status().as_u16();
    let collected = response
        .into_body()
        .collect()
        .await
        .expect("reading the h2 body");
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}

/// An echoing TLS upstream with `server`'s certificate, asking for a client certificate from
/// `client_ca` when given, offering `alpn` (empty: `h2`, `http/1.1`).
async fn tls_upstream(
    server: &crate::common::certs::Issued,
    client_ca: Option<&TestCa>,
    alpn: &[&[u8]],
) -> Upstream {
    let tls = TlsUpstream {
        server,
        client_ca,
        alpn: alpn.iter().map(|p| p.to_vec()).collect(),
    };
    Upstream::start_tls(UpstreamBehaviour::Echo, tls).await
}

// 1. HTTP/2 on cleartext (h2c) and trailers.

#[tokio::test]
async fn h2c_by_prior_knowledge_reaches_an_http2_only_upstream_on_one_multiplexed_connection() {
    // Each answer's head and first chunk come at once, the rest when the test releases it, so
    // requests stay open together for as long as the test needs. One worker, so one pool: each
    // worker has its own, and the kernel spreads new client connections over the workers, so
    // with more a second worker would rightly open a connection of its own.
    let upstream = Upstream::start_h2c(UpstreamBehaviour::Stream).await;
    let url = upstream.url();
    let s = setup_listen(
        upstream,
        &url,
        "upstream_protocol = \"http2\"",
        "workers = 1",
    )
    .await;
    // The first request makes the connection; the next six share it at once.
    s.upstream.release();
    let first = get(&s).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "first\nsecond\n");
    // All six are answered (their heads) and reach the upstream with none of them finished:
    // they were open together (one connection lent to one request at a time, as HTTP/1.1 is,
    // would have sent only one).
    let six = futures_util::future::join_all((0..6).map(|_| get(&s)));
    let together = tokio::time::timeout(Duration::from_secs(5), six)
        .await
        .expect("six requests open at once");
    let seen = s.upstream.wait_count(7).await;
    for _ in 0..6 {
        s.upstream.release();
    }
    for resp in together {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "first\nsecond\n");
    }
    for request in &seen {
        assert_eq!(request.version, http::Version::HTTP_2, "{request:?}");
        assert!(
            !request.has_header("host"),
            "HTTP/2 carries :authority, not Host"
        );
        assert_eq!(
            request.target,
            format!("http://{}/orders/1", s.upstream.addr()),
            "scheme and authority from the upstream, not the client"
        );
        assert_eq!(
            request.header("x-agw-client_id").as_deref(),
            Some("orders-app")
        );
    }
    assert_eq!(
        s.upstream.connections(),
        1,
        "HTTP/1.1 would have needed six"
    );
}

#[tokio::test]
async fn te_trailers_reaches_an_http2_upstream_and_trailers_come_back_to_an_h2_client() {
    let upstream = Upstream::start_h2c(UpstreamBehaviour::Trailers).await;
    let url = upstream.url();
    let s = setup(upstream, &url, "upstream_protocol = \"http2\"").await;
    let (status, body, trailers) = h2_get(&s, "/orders/1").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello");
    let trailers = trailers.expect("the upstream's trailers reach the client");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(
        trailers.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"abc"[..])
    );
    let seen = s.upstream.last();
    assert_eq!(seen.header("te").as_deref(), Some("trailers"));
}

#[tokio::test]
async fn trailers_from_an_http2_upstream_reach_an_http1_client_that_accepts_them() {
    let upstream = Upstream::start_h2c(UpstreamBehaviour::Trailers).await;
    let url = upstream.url();
    let s = setup(upstream, &url, "upstream_protocol = \"http2\"").await;
    let auth = format!("Authorization: Bearer {}", s.token);
    let request = raw_request(
        &s.gateway,
        "GET",
        "/orders/1",
        &[&auth, "TE: trailers"],
        b"",
    );
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = String::from_utf8_lossy(&answer.body).to_ascii_lowercase();
    assert!(
        answer.header("transfer-encoding").as_deref() == Some("chunked"),
        "{answer:?}"
    );
    assert!(body.contains("hello"), "{body}");
    assert!(
        body.contains("grpc-status: 0"),
        "trailers in the chunked body: {body}"
    );
    assert!(body.contains("x-checksum: abc"), "{body}");
}

#[tokio::test]
async fn te_trailers_does_not_reach_an_http1_upstream() {
    let upstream = Upstream::start().await;
    let url = upstream.url();
    let s = setup(upstream, &url, "").await;
    let auth = format!("Authorization: Bearer {}", s.token);
    let request = raw_request(
        &s.gateway,
        "GET",
        "/orders/1",
        &[&auth, "TE: trailers"],
        b"",
    );
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert!(!seen.has_header("te"), "TE is hop-by-hop on HTTP/1.1");
}

// 2. HTTPS upstreams.

fn tls_keys(ca: &TestCa, extra: &str) -> String {
    format!(
        "upstream_ca = {}\n{extra}",
        toml_string(&ca.ca_path().display().to_string())
    )
}

#[tokio::test]
async fn https_upstream_verified_against_upstream_ca_speaks_h2_under_auto() {
    let ca = TestCa::new("upstream CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let upstream = tls_upstream(&server, None, &[]).await;
    let url = upstream.https_url();
    let s = setup(upstream, &url, &tls_keys(&ca, "")).await;
    let resp = get(&s).await;
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert!(seen.tls);
    assert_eq!(seen.version, http::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(
        seen.header("x-agw-client_id").as_deref(),
        Some("orders-app")
    );
    assert!(seen.client_cert.is_none());
}

#[tokio::test]
async fn https_upstream_offering_only_http1_gets_http1_under_auto() {
    let ca = TestCa::new("upstream CA");
    let server = ca.server(&["localhost"]);
    let upstream = tls_upstream(&server, None, &[b"http/1.1"]).await;
    let url = upstream.https_url();
    let s = setup(upstream, &url, &tls_keys(&ca, "")).await;
    assert_eq!(get(&s).await.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.header("host"),
        Some(format!("localhost:{}", s.upstream.addr().port()))
    );
}

#[tokio::test]
async fn an_upstream_certificate_from_another_ca_is_a_502_and_the_handler_is_not_reached() {
    let ca = TestCa::new("upstream CA");
    let other = TestCa::new("some other CA");
    let server = ca.server(&["localhost"]);
    let upstream = tls_upstream(&server, None, &[]).await;
    let url = upstream.https_url();
    let s = setup(upstream, &url, &tls_keys(&other, "")).await;
    let resp = get(&s).await;
    assert_eq!(resp.status(), 502);
    s.upstream.assert_not_reached();
    assert!(s.upstream.connections() >= 1, "the handshake was tried");
    let logged = s
        .gateway
        .wait_log("the verification failure", |l| {
            l.to_string().contains("invalid peer certificate")
        })
        .await;
    assert!(!logged.to_string().contains(&s.token));
}

#[tokio::test]
async fn upstream_server_name_is_the_name_sent_and_verified() {
    let ca = TestCa::new("upstream CA");
    let server = ca.server(&["orders.internal"]);
    let upstream = tls_upstream(&server, None, &[]).await;
    // Reached by address; the certificate names only orders.internal.
    let url = format!("https://{}", upstream.addr());
    let named = tls_keys(&ca, "upstream_server_name = \"orders.internal\"");
    let s = setup(upstream, &url, &named).await;
    assert_eq!(get(&s).await.status(), 200);
    assert!(s.upstream.last().tls);

    // Without it the address is verified, and the certificate does not name it.
    let ca2 = TestCa::new("upstream CA");
    let server2 = ca2.server(&["orders.internal"]);
    let upstream2 = tls_upstream(&server2, None, &[]).await;
    let url2 = format!("https://{}", upstream2.addr());
    let s2 = setup(upstream2, &url2, &tls_keys(&ca2, "")).await;
    assert_eq!(get(&s2).await.status(), 502);
    s2.upstream.assert_not_reached();
}

#[tokio::test]
async fn mtls_to_the_upstream_presents_the_client_certificate() {
    let ca = TestCa::new("upstream CA");
    let server = ca.server(&["localhost"]);
    let identity = ca.client("tollgate", &["tollgate.internal"]);
    let upstream = tls_upstream(&server, Some(&ca), &[]).await;
    let url = upstream.https_url();
    let keys = tls_keys(
        &ca,
        &format!(
            "upstream_client_cert = {}\nupstream_client_key = {}",
            toml_string(&identity.cert_path.display().to_string()),
            toml_string(&identity.key_path.display().to_string())
        ),
    );
    let s = setup(upstream, &url, &keys).await;
    assert_eq!(get(&s).await.status(), 200);
    let seen = s.upstream.last();
    let presented = seen
        .client_cert
        .expect("the upstream saw a client certificate");
    use rustls_pki_types::pem::PemObject;
    let ours = rustls_pki_types::CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
        .expect("client cert PEM");
    assert_eq!(presented, ours.to_vec());
}

#[tokio::test]
async fn an_upstream_requiring_a_client_certificate_refuses_tollgate_without_one() {
    let ca = TestCa::new("upstream CA");
    let server = ca.server(&["localhost"]);
    let upstream = tls_upstream(&server, Some(&ca), &[]).await;
    let url = upstream.https_url();
    let s = setup(upstream, &url, &tls_keys(&ca, "")).await;
    assert_eq!(get(&s).await.status(), 502);
    s.upstream.assert_not_reached();
}

#[tokio::test]
async fn insecure_skip_verify_reaches_an_unverifiable_upstream_and_check_warns() {
    let ca = TestCa::new("nobody trusts this CA");
    let server = ca.server(&["localhost"]);
    let upstream = tls_upstream(&server, None, &[]).await;
    let url = upstream.https_url();
    let s = setup(upstream, &url, "insecure_skip_verify = true").await;
    assert_eq!(get(&s).await.status(), 200);
    assert!(s.upstream.last().tls);
    s.gateway
        .wait_log("the start-up warning", |l| {
            l["level"] == "WARN" && l.to_string().contains("insecure_skip_verify")
        })
        .await;

    let config = base_config(
        &s._idp.issuer,
        &orders_api(&url, "insecure_skip_verify = true"),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("WARNING") && l.contains("api[0].insecure_skip_verify")),
        "{out:?}"
    );
}

// 3. Config errors name their keys.

async fn refused(api_extra: &str, upstream: &str, key: &str) {
    let config = base_config("http://127.0.0.1:1", &orders_api(upstream, api_extra));
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(
        out.stderr.contains(key),
        "expected {key} in: {}",
        out.stderr
    );
}

#[tokio::test]
async fn upstream_config_errors_exit_2_naming_the_key() {
    let ca = TestCa::new("ca");
    let cert = ca.client("x", &["x"]);
    let cert_path = toml_string(&cert.cert_path.display().to_string());
    let key_path = toml_string(&cert.key_path.display().to_string());
    let missing = toml_string(&ca.dir().join("missing.pem").display().to_string());
    let not_pem = ca.dir().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = toml_string(&not_pem.display().to_string());
    let https = "https://localhost:8443";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("upstream_ca = {missing}"),
            https,
            "api[0].upstream_ca",
        ),
        (
            format!("upstream_ca = {not_pem}"),
            https,
            "api[0].upstream_ca",
        ),
        (
            format!("upstream_client_cert = {cert_path}"),
            https,
            "api[0].upstream_client_key",
        ),
        (
            format!("upstream_client_key = {key_path}"),
            https,
            "api[0].upstream_client_cert",
        ),
        (
            format!("upstream_client_cert = {cert_path}\nupstream_client_key = {key_path}"),
            "http://127.0.0.1:9",
            "api[0].upstream_client_cert",
        ),
        (
            format!("upstream_ca = {cert_path}"),
            "http://127.0.0.1:9",
            "api[0].upstream_ca",
        ),
        (
            "insecure_skip_verify = true".to_owned(),
            "http://127.0.0.1:9",
            "api[0].insecure_skip_verify",
        ),
        (
            "upstream_protocol = \"spdy\"".to_owned(),
            https,
            "api[0].upstream_protocol",
        ),
        (
            "upstream_server_name = \"not a name!\"".to_owned(),
            https,
            "api[0].upstream_server_name",
        ),
        (String::new(), "ftp://127.0.0.1:9", "api[0].upstream"),
    ];
    for (extra, upstream, key) in cases {
        refused(&extra, upstream, key).await;
    }
}
