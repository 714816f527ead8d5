//! Gaps closed after the TLS, upstream and gRPC work: the upstream failure log names the endpoint
//! that failed (and the retry's), not every endpoint of the API; and a browser's gRPC-Web client
//! behind `[api.cors]` may read `grpc-status` and `grpc-message`, on refusals and answers alike.

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::{Upstream, closed_port_url};
use crate::common::{base_config, client, orders_api, toml_string};

const ORIGIN: &str = "https://app.example.com";
const FAILED: &str = "upstream request failed";

/// The warnings `upstream request failed`, once `n` of them are logged.
async fn failure_logs(gateway: &Gateway, n: usize) -> Vec<serde_json::Value> {
    gateway
        .wait_log("the upstream failures", |_| {
            let found = gateway.json_logs();
            found.iter().filter(|l| l["message"] == FAILED).count() >= n
        })
        .await;
    let logs = gateway.json_logs();
    logs.into_iter()
        .filter(|l| l["message"] == FAILED)
        .collect()
}

#[tokio::test]
async fn the_failure_log_names_the_endpoint_that_failed_and_the_retrys() {
    let idp = TestIdp::start().await;
    let (a, b) = (closed_port_url().await, closed_port_url().await);
    let api = format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = [{}, {}]\nupstream_balance = \"round_robin\"\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
        toml_string(&a),
        toml_string(&b)
    );
    let gateway = Gateway::start(&base_config(&idp.issuer, &api)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    // A GET that cannot connect tries the other endpoint once: both are named, in order (round
    // robin starts at the first).
    let resp = client()
        .get(gateway.url("/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request to the gateway");
    assert_eq!(resp.status(), 502);
    let (a, b) = (
        a.trim_start_matches("http://"),
        b.trim_start_matches("http://"),
    );
    let line = failure_logs(&gateway, 1).await.remove(0);
    assert_eq!(line["upstream"], a, "{line}");
    assert_eq!(line["retry_upstream"], b, "{line}");
    for field in ["error", "retry_error"] {
        let text = line[field].as_str().unwrap_or_default();
        assert!(text.contains("connect"), "{field}: {line}");
    }
    // A POST is never sent twice: one endpoint, no retry fields.
    let resp = client()
        .post(gateway.url("/orders"))
        .bearer_auth(&token)
        .body("order")
        .send()
        .await
        .expect("request to the gateway");
    assert_eq!(resp.status(), 502);
    let line = failure_logs(&gateway, 2).await.remove(1);
    let named = line["upstream"].as_str().unwrap_or_default();
    assert!(named == a || named == b, "one endpoint: {line}");
    assert!(line.get("retry_upstream").is_none(), "{line}");
    assert!(
        !gateway.render_logs().contains(&token),
        "the token is never logged"
    );
}

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
