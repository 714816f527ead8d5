//! The upstream failure log names the endpoint that failed (and the retry's), not every endpoint
//! of the API.

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::closed_port_url;
use crate::common::{base_config, client, toml_string};

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
