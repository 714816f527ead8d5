//! A browser's gRPC-Web client behind `[api.cors]` may read `grpc-status` and `grpc-message`, on
//! refusals and answers alike.

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::{base_config, client, orders_api, toml_string};
const ORIGIN: &str = "https://app.example.com";

struct CorsSetup {
    idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
}

async fn cors_setup(expose: &str) -> CorsSetup {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let cors = format!(
        "[api.cors]\nallowed_origins = [{}]\nallowed_headers = [\"authorization\", \"content-type\", \"x-grpc-web\"]\n{expose}",
        toml_string(ORIGIN)
    );
    let config = base_config(&idp.issuer, &orders_api(&upstream.url(), &cors));
    let gateway = Gateway::start(&config).await;
    gateway.wait_ready().await;
    CorsSetup {
        idp,
        upstream,
        gateway,
    }
}

/// A gRPC-Web call from the browser origin, with `token` if any.
async fn grpc_web(s: &CorsSetup, token: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(s.gateway.url("/orders/test.Notes/Echo"))
        .header("origin", ORIGIN)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(&b"\0\0\0\0\0"[..]);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request to the gateway")
}

fn exposed(resp: &reqwest::Response) -> Vec<String> {
    let value = resp.headers().get("access-control-expose-headers");
    let text = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    text.split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

#[tokio::test]
async fn grpc_web_answers_expose_grpc_status_and_message_to_the_browser() {
    let s = cors_setup("expose_headers = [\"x-request-id\", \"grpc-status\"]").await;
    // A refusal (no token): a Trailers-Only gRPC-Web status the script can read.
    let refused = grpc_web(&s, None).await;
    assert_eq!(refused.status(), 200);
    assert_eq!(refused.headers()["grpc-status"], "16");
    assert_eq!(refused.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(
        exposed(&refused),
        ["x-request-id", "grpc-status", "grpc-message"],
        "the configured list, then gRPC's status headers, each once"
    );
    s.upstream.assert_not_reached();

    // An allowed call: the upstream's answer carries the same grant.
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let allowed = grpc_web(&s, Some(&token)).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(s.upstream.count(), 1);
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(
        exposed(&allowed),
        ["x-request-id", "grpc-status", "grpc-message"]
    );

    // Not gRPC: the configured list alone, as before.
    let plain = client()
        .get(s.gateway.url("/orders/1"))
        .header("origin", ORIGIN)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request to the gateway");
    assert_eq!(plain.status(), 200);
    assert_eq!(exposed(&plain), ["x-request-id", "grpc-status"]);
}

#[tokio::test]
async fn grpc_web_refusals_expose_grpc_status_even_with_no_expose_headers_configured() {
    let s = cors_setup("").await;
    let refused = grpc_web(&s, None).await;
    assert_eq!(refused.headers()["grpc-status"], "16");
    assert_eq!(exposed(&refused), ["grpc-status", "grpc-message"]);
    s.upstream.assert_not_reached();
    // A plain refusal still exposes nothing.
    let plain = client()
        .get(s.gateway.url("/orders/1"))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("request to the gateway");
    assert_eq!(plain.status(), 401);
    assert!(exposed(&plain).is_empty(), "{:?}", plain.headers());
    s.upstream.assert_not_reached();
}
