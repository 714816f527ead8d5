//! RFC 6750 §3.1's classification, exactly: a credential that is present but is not a well-formed
//! `b64token` is `invalid_token` (401, and the provider is never asked); a malformed *request* (two
//! credentials, a scheme with no token, a header that cannot be parsed) is `invalid_request` (400);
//! `Bearer` followed by several spaces is a valid token (`1*SP`). The same for `access_token` in the
//! query and the form.
//!
//! The real gateway binary in front of the recording upstream, with the real test provider; its
//! introspections are counted at the provider.

use http::HeaderValue;

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, base_config, client};

struct Setup {
    idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
}

/// `/orders`, taking tokens from the header, the query and the form.
async fn setup() -> Setup {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let api = format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\ntoken_sources = [\"header\", \"query\", \"form\"]\n",
        upstream.url()
    );
    let gateway = Gateway::start(&base_config(&idp.issuer, &api)).await;
    gateway.wait_ready().await;
    Setup {
        idp,
        upstream,
        gateway,
    }
}

impl Setup {
    /// A GET of `target` with these `Authorization` values (raw bytes: obs-text included).
    async fn get(&self, target: &str, authorizations: &[&[u8]]) -> reqwest::Response {
        let mut request = client().get(self.gateway.url(target));
        for value in authorizations {
            let value = HeaderValue::from_bytes(value).expect("a sendable header value");
            request = request.header("authorization", value);
        }
        request.send().await.expect("request")
    }

    async fn introspections(&self) -> u64 {
        self.idp.stats().await.introspection
    }

    /// The access log's reasons, once `n` requests are logged.
    async fn reasons(&self, n: usize) -> Vec<String> {
        self.gateway
            .wait_access_logs(n)
            .await
            .iter()
            .map(|l| l["reason"].as_str().unwrap_or("-").to_owned())
            .collect()
    }
}

#[tokio::test]
async fn a_malformed_token_is_invalid_token_and_never_reaches_the_provider() {
    let s = setup().await;
    let malformed: [&[u8]; 6] = [
        b"Bearer a b",
        b"Bearer \"abc\"",
        b"Bearer {\"a\":1}",
        b"Bearer t\xc3\xa9t\xc3\xa9",
        b"Bearer a,b",
        b"bearer ===",
    ];
    for value in malformed {
        let resp = s.get("/orders/1", &[value]).await;
        let body = assert_rejected(resp, 401, Some("invalid_token"), &s.upstream).await;
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("malformed")),
            "{body}"
        );
    }
    // The query and the form are judged the same way.
    let resp = s.get("/orders/1?access_token=%22abc%22", &[]).await;
    assert_rejected(resp, 401, Some("invalid_token"), &s.upstream).await;
    let resp = client()
        .post(s.gateway.url("/orders/1"))
        .form(&[("access_token", "a b"), ("x", "1")])
        .send()
        .await
        .expect("request");
    assert_rejected(resp, 401, Some("invalid_token"), &s.upstream).await;

    assert_eq!(
        s.introspections().await,
        0,
        "no provider call for a malformed token"
    );
    let reasons = s.reasons(8).await;
    assert!(
        reasons.iter().all(|r| r == "token_not_b64token"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn several_spaces_after_bearer_still_carry_a_valid_token() {
    let s = setup().await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let resp = s
        .get("/orders/1", &[format!("Bearer    {token}").as_bytes()])
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(s.upstream.last().target, "/orders/1");
    assert_eq!(s.introspections().await, 1);
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let s = setup().await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let bearer = format!("Bearer {token}");
    let cases: Vec<(&str, Vec<&[u8]>)> = vec![
        // A scheme with no token.
        ("/orders/1", vec![b"Bearer"]),
        ("/orders/1", vec![b"Bearer    "]),
        // Headers that cannot be parsed: a tab for the space, no readable scheme.
        ("/orders/1", vec![b"Bearer\tabc"]),
        ("/orders/1", vec![b"\"Bearer\" abc"]),
        // Two credentials, well-formed or not.
        ("/orders/1", vec![bearer.as_bytes(), bearer.as_bytes()]),
        ("/orders/1", vec![bearer.as_bytes(), b"Basic dXNlcjpwYXNz"]),
        ("/orders/1?access_token=abc", vec![bearer.as_bytes()]),
        ("/orders/1?access_token=abc", vec![b"Bearer a b"]),
        ("/orders/1?access_token=abc&access_token=def", vec![]),
        // A query parameter with no token.
        ("/orders/1?access_token=", vec![]),
    ];
    let count = cases.len();
    for (target, authorizations) in cases {
        let resp = s.get(target, &authorizations).await;
        let body = assert_rejected(resp, 400, Some("invalid_request"), &s.upstream).await;
        assert!(body["error_description"].is_string(), "{target}: {body}");
    }
    // A form token beside a header token.
    let resp = client()
        .post(s.gateway.url("/orders/1"))
        .bearer_auth(&token)
        .form(&[("access_token", token.as_str())])
        .send()
        .await
        .expect("request");
    assert_rejected(resp, 400, Some("invalid_request"), &s.upstream).await;

    assert_eq!(
        s.introspections().await,
        0,
        "a malformed request asks no one"
    );
    let reasons = s.reasons(count + 1).await;
    assert!(
        reasons.iter().all(|r| r == "invalid_request"),
        "{reasons:?}"
    );
}
