//! The troubleshooting commands as processes: `tollgate token` (client credentials, no Origin
//! header, refusals shown with a hint, the secret never echoed), `tollgate introspect` and
//! `tollgate explain` (each step and the decision, exit status 0 only when it would be forwarded).

use crate::common::gateway::cli;
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::{base_config, config_with};

fn orders(upstream: &str) -> String {
    format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{upstream}"
scopes = ["mulescope"]
clients = ["orders-app", "noscope-app"]

[[api.rule]]
methods = ["DELETE"]
scopes = ["mulescope", "orders:admin"]

[[api.rule]]
methods = ["OPTIONS"]
public = true
"#
    )
}

#[tokio::test]
async fn token_prints_a_working_token_and_never_the_secret() {
    let idp = TestIdp::start().await;
    let config = base_config(&idp.issuer, &orders("http://127.0.0.1:9"));
    let args = [
        "token",
        "--client-id",
        "orders-app",
        "--client-secret",
        "orders-secret",
        "--scope",
        "mulescope",
    ];
    let out = cli(&args, Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    let token = out.stdout.trim();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{out:?}"
    );
    assert!(!out.stdout.contains("orders-secret") && !out.stderr.contains("orders-secret"));
    let seen = cli(&["introspect", token], Some(&config), &[]).await;
    assert_eq!(seen.status, 0, "{seen:?}");
    let answer: serde_json::Value = serde_json::from_str(&seen.stdout).unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "orders-app");
    assert_eq!(answer["scope"], "mulescope");

    // --json, with the secret from the environment.
    let args = [
        "token",
        "--client-id",
        "orders-app",
        "--scope",
        "mulescope",
        "--json",
    ];
    let out = cli(
        &args,
        Some(&config),
        &[("TOLLGATE_CLIENT_SECRET", "orders-secret")],
    )
    .await;
    assert_eq!(out.status, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["access_token"].is_string() && json["expires_in"].is_number());
}

#[tokio::test]
async fn token_refusals_show_the_error_and_a_hint() {
    let idp = TestIdp::start().await;
    let config = base_config(&idp.issuer, &orders("http://127.0.0.1:9"));
    let wrong = "not-the-secret-7c1";
    let out = cli(
        &[
            "token",
            "--client-id",
            "orders-app",
            "--client-secret",
            wrong,
        ],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("error: invalid_client"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: check the client id and secret"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));

    let args = [
        "token",
        "--client-id",
        "orders-app",
        "--client-secret",
        "orders-secret",
        "--scope",
        "other",
    ];
    let out = cli(&args, Some(&config), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("error: invalid_scope"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: the scope is not defined"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn token_requests_carry_no_origin_header() {
    // A recording server stands in for the token endpoint, to see exactly what is sent.
    let endpoint = Upstream::start().await;
    let base = endpoint.url();
    let provider = format!(
        "authorize_url = \"{base}/authorize\"\ntoken_url = \"{base}/token\"\nintrospection_url = \"{base}/introspect\"\njwks_url = \"{base}/keys\""
    );
    let config = config_with(
        "https://idp.invalid/oauth2/default",
        &provider,
        &orders("http://127.0.0.1:9"),
    );
    let args = [
        "token",
        "--client-id",
        "orders-app",
        "--client-secret",
        "orders-secret",
        "--scope",
        "mulescope",
    ];
    let out = cli(&args, Some(&config), &[]).await;
    assert_eq!(
        out.status, 1,
        "the stand-in answers no access_token: {out:?}"
    );
    let seen = endpoint.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/token");
    assert!(!seen.has_header("origin"), "{:?}", seen.headers);
    // base64("orders-app:orders-secret")
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Basic b3JkZXJzLWFwcDpvcmRlcnMtc2VjcmV0")
    );
    assert_eq!(
        seen.body_str(),
        "grant_type=client_credentials&scope=mulescope"
    );
}

#[tokio::test]
async fn introspect_shows_an_inactive_answer_too() {
    let idp = TestIdp::start().await;
    let config = base_config(&idp.issuer, &orders("http://127.0.0.1:9"));
    let out = cli(&["introspect", "no-such-token"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn a_token_that_begins_with_a_dash_is_a_token_not_an_option() {
    // base64url tokens begin with `-` one time in 64.
    let idp = TestIdp::start().await;
    let config = base_config(&idp.issuer, &orders("http://127.0.0.1:9"));
    for args in [
        vec!["introspect", "-_not-an-option"],
        vec!["explain", "--api", "orders", "-_not-an-option"],
    ] {
        let out = cli(&args, Some(&config), &[]).await;
        assert!(!out.stderr.contains("unexpected argument"), "{out:?}");
        assert!(
            out.stdout.contains("active") || out.stdout.contains("not active"),
            "{out:?}"
        );
    }
    // introspect asks once; explain shows the raw answer, then validates.
    assert_eq!(
        idp.stats().await.introspection,
        3,
        "every one reached the provider"
    );
}

#[tokio::test]
async fn explain_walks_through_each_step_to_the_decision() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let config = base_config(&idp.issuer, &orders(&upstream.url()));
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;

    let out = cli(
        &["explain", "--api", "orders", "--path", "/orders/1", &token],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 0, "{out:?}");
    for expected in [
        "ok   route",
        "no rule matches",
        "an opaque token",
        "active=true",
        "ok   scopes",
        "\"orders-app\" holds a contract",
        "decision: allowed, forwarded to",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains(&token),
        "the token is not echoed:\n{}",
        out.stdout
    );

    let out = cli(
        &[
            "explain",
            "--api",
            "orders",
            "--method",
            "delete",
            "--path",
            "/orders/1",
            &token,
        ],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stdout.contains("rule 0 applies"), "{}", out.stdout);
    assert!(
        out.stdout.contains("FAIL scopes") && out.stdout.contains("missing [orders:admin]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("decision: 403 insufficient_scope"),
        "{}",
        out.stdout
    );

    let other = idp.token("other-app", "other-secret", "mulescope").await;
    let out = cli(&["explain", "--api", "orders", &other], Some(&config), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stdout.contains("\"other-app\" holds no contract"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("decision: 403 access_denied"),
        "{}",
        out.stdout
    );

    let out = cli(
        &[
            "explain", "--api", "orders", "--method", "OPTIONS", "whatever",
        ],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("public"), "{}", out.stdout);

    let out = cli(&["explain", "--api", "orders", "bogus"], Some(&config), &[]).await;
    assert_eq!(out.status, 1);
    assert!(
        out.stdout.contains("FAIL introspection")
            && out.stdout.contains("decision: 401 invalid_token"),
        "{}",
        out.stdout
    );

    let out = cli(
        &["explain", "--api", "payments", &token],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains("no API named \"payments\" (configured: orders)"),
        "{out:?}"
    );
    upstream.assert_not_reached();
    assert_eq!(
        idp.stats().await.token,
        2,
        "explain asked for no token itself"
    );
}

#[tokio::test]
async fn explain_shows_jwt_claims_and_the_audience_check() {
    let idp = TestIdp::start_with(serde_json::json!({"accessTokenFormat": "jwt"})).await;
    let api = orders("http://127.0.0.1:9").replace(
        "scopes = [\"mulescope\"]\nclients",
        "validation = \"jwt\"\naudience = [\"api://payments\"]\nscopes = [\"mulescope\"]\nclients",
    );
    let config = base_config(&idp.issuer, &api);
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let out = cli(&["explain", "--api", "orders", "-"], Some(&config), &[]).await;
    // `-` reads standard input, empty here.
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("no token on standard input"), "{out:?}");
    let out = cli(&["explain", "--api", "orders", &token], Some(&config), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    for expected in [
        "a JWT",
        "alg=RS256",
        "aud=api://default",
        "FAIL audience",
        "accepted [api://payments]; token's [api://default]",
        "decision: 401 invalid_token",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in:\n{}",
            out.stdout
        );
    }
}
