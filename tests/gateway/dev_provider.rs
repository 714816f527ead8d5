//! The embedded dev provider of `tollgate dev` (`tollgate::dev::provider`), in process: discovery,
//! keys, the client-credentials grant and its RFC 6749 §5.2 errors, introspection, registration —
//! then the real gateway binary in front of a recording upstream (and of the built-in echo
//! upstream) validating its tokens, locally as JWTs and by introspection.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tollgate::dev::echo::EchoUpstream;
use tollgate::dev::provider::{DevClient, DevProvider, DevProviderSettings, DevTokenFormat};

use crate::common::gateway::Gateway;
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, client, config_with, eventually};

const AUDIENCE: &str = "api://default";
const TTL: Duration = Duration::from_secs(600);

fn dev_client(id: &str, secret: &str, scopes: &[&str]) -> DevClient {
    DevClient {
        client_id: id.to_owned(),
        client_secret: secret.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// orders-app holds mulescope and read, noscope-app only read; tollgate-introspector (the client
/// `config_with` gives the gateway) holds nothing and only introspects.
fn settings(token_format: DevTokenFormat) -> DevProviderSettings {
    DevProviderSettings {
        clients: vec![
            dev_client("orders-app", "orders-secret", &["mulescope", "read"]),
            dev_client("noscope-app", "noscope-secret", &["read"]),
            dev_client("tollgate-introspector", "introspector-secret", &[]),
        ],
        scopes: ["mulescope", "read", "write"].map(str::to_owned).to_vec(),
        token_format,
        token_ttl: TTL,
        audience: AUDIENCE.to_owned(),
    }
}

async fn start_with(settings: DevProviderSettings) -> DevProvider {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    DevProvider::start(listener, settings)
        .await
        .expect("starting the dev provider")
}

async fn start(token_format: DevTokenFormat) -> DevProvider {
    start_with(settings(token_format)).await
}

/// POSTs a client-credentials request authenticated with HTTP Basic.
async fn request_token(
    dev: &DevProvider,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend(scope.map(|s| ("scope", s)));
    client()
        .post(dev.token_url())
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token request")
}

/// A token the provider must grant.
async fn access_token(dev: &DevProvider, id: &str, secret: &str, scope: Option<&str>) -> String {
    let resp = request_token(dev, id, secret, scope).await;
    assert_eq!(resp.status(), 200, "token for {id}");
    let body: Value = resp.json().await.expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn introspect(dev: &DevProvider, id: &str, secret: &str, token: &str) -> reqwest::Response {
    client()
        .post(dev.introspection_url())
        .basic_auth(id, Some(secret))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .expect("introspection request")
}

async fn introspection(dev: &DevProvider, token: &str) -> Value {
    let resp = introspect(dev, "tollgate-introspector", "introspector-secret", token).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("introspection JSON")
}

/// Asserts an RFC 6749 §5.2 error answer; returns its `error_description`.
async fn assert_oauth_error(resp: reqwest::Response, status: u16, error: &str) -> String {
    assert_eq!(resp.status(), status, "expected {status} {error}");
    let challenge = resp.headers().get("www-authenticate").cloned();
    if error == "invalid_client" {
        assert_eq!(
            challenge.as_ref().and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"tollgate-dev\"")
        );
    }
    let body: Value = resp.json().await.expect("an error body is JSON");
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"]
        .as_str()
        .expect("error_description");
    assert!(!description.is_empty());
    description.to_owned()
}

async fn get_json(url: &str) -> (reqwest::header::HeaderMap, Value) {
    let resp = client().get(url).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "GET {url}");
    let headers = resp.headers().clone();
    (headers, resp.json().await.expect("JSON"))
}

// === the provider alone ===

#[tokio::test]
async fn discovery_names_the_exact_issuer_and_every_endpoint() {
    let dev = start(DevTokenFormat::Jwt).await;
    assert_eq!(
        dev.issuer(),
        format!("http://{}/oauth2/default", dev.addr())
    );
    for well_known in [
        format!("{}/.well-known/openid-configuration", dev.issuer()),
        format!("{}/.well-known/oauth-authorization-server", dev.issuer()),
        // RFC 8414 §3's own placement, before the issuer's path.
        format!(
            "http://{}/.well-known/oauth-authorization-server/oauth2/default",
            dev.addr()
        ),
    ] {
        let (_, m) = get_json(&well_known).await;
        assert_eq!(m["issuer"], dev.issuer(), "{well_known}");
        assert_eq!(m["token_endpoint"], dev.token_url());
        assert_eq!(m["introspection_endpoint"], dev.introspection_url());
        assert_eq!(m["jwks_uri"], dev.jwks_url());
        assert_eq!(m["registration_endpoint"], dev.registration_url());
        assert_eq!(
            m["authorization_endpoint"],
            format!("{}/v1/authorize", dev.issuer())
        );
        assert_eq!(m["grant_types_supported"], json!(["client_credentials"]));
        let methods = json!(["client_secret_basic", "client_secret_post"]);
        assert_eq!(m["token_endpoint_auth_methods_supported"], methods);
        assert_eq!(m["introspection_endpoint_auth_methods_supported"], methods);
        assert_eq!(m["scopes_supported"], json!(["mulescope", "read", "write"]));
        assert_eq!(m["response_types_supported"], json!([]));
    }
}

#[tokio::test]
async fn one_fresh_rsa_key_is_published_with_a_max_age() {
    let dev = start(DevTokenFormat::Jwt).await;
    let (headers, jwks) = get_json(&dev.jwks_url()).await;
    assert_eq!(headers["cache-control"], "max-age=300");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["e"], "AQAB");
    assert!(
        keys[0]["n"].as_str().is_some_and(|n| n.len() == 342),
        "2048-bit modulus"
    );

    let other = start(DevTokenFormat::Jwt).await;
    let (_, other_jwks) = get_json(&other.jwks_url()).await;
    assert_ne!(other_jwks["keys"][0]["kid"], keys[0]["kid"]);
    assert_ne!(
        other_jwks["keys"][0]["n"], keys[0]["n"],
        "a fresh key per start"
    );
}

#[tokio::test]
async fn a_client_credentials_jwt_verifies_against_the_served_jwk() {
    let dev = start(DevTokenFormat::Jwt).await;
    let resp = request_token(&dev, "orders-app", "orders-secret", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], TTL.as_secs());
    assert_eq!(
        body["scope"], "mulescope read",
        "no scope asked: all the client holds"
    );
    let token = body["access_token"].as_str().unwrap();

    let (_, jwks) = get_json(&dev.jwks_url()).await;
    let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[dev.issuer()]);
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .expect("the token verifies with the served key");
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(data.header.kid, jwk.common.key_id);
    let c = &data.claims;
    assert_eq!(c["iss"], dev.issuer());
    assert_eq!(c["sub"], "orders-app");
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["client_id"], "orders-app");
    assert_eq!(c["cid"], "orders-app");
    assert_eq!(c["scope"], "mulescope read");
    assert_eq!(c["scp"], json!(["mulescope", "read"]));
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, TTL.as_secs());

    // A subset on request; and client_secret_post authenticates as well as Basic.
    let resp = client()
        .post(dev.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mulescope"),
            ("client_id", "orders-app"),
            ("client_secret", "orders-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["scope"], "mulescope");
}

#[tokio::test]
async fn token_refusals_follow_rfc_6749() {
    let dev = start(DevTokenFormat::Jwt).await;
    let wrong_secret = request_token(&dev, "orders-app", "nope", None).await;
    assert_oauth_error(wrong_secret, 401, "invalid_client").await;
    let unknown = request_token(&dev, "nobody", "orders-secret", None).await;
    assert_oauth_error(unknown, 401, "invalid_client").await;
    let anonymous = client()
        .post(dev.token_url())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(anonymous, 401, "invalid_client").await;

    let unknown_scope = request_token(&dev, "orders-app", "orders-secret", Some("admin")).await;
    let description = assert_oauth_error(unknown_scope, 400, "invalid_scope").await;
    assert!(description.contains("admin"), "{description}");
    let unheld_scope =
        request_token(&dev, "noscope-app", "noscope-secret", Some("mulescope")).await;
    assert_oauth_error(unheld_scope, 400, "invalid_scope").await;

    let password = client()
        .post(dev.token_url())
        .basic_auth("orders-app", Some("orders-secret"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(password, 400, "unsupported_grant_type").await;
    let no_grant = client()
        .post(dev.token_url())
        .basic_auth("orders-app", Some("orders-secret"))
        .form(&[("scope", "read")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(no_grant, 400, "invalid_request").await;
    let json_body = client()
        .post(dev.token_url())
        .basic_auth("orders-app", Some("orders-secret"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(json_body, 400, "invalid_request").await;
}

#[tokio::test]
async fn oversized_bodies_wrong_methods_and_unknown_paths_get_json_errors() {
    let dev = start(DevTokenFormat::Jwt).await;
    let huge = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let resp = client()
        .post(dev.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_oauth_error(resp, 413, "invalid_request").await;

    let resp = client().get(dev.token_url()).send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "POST");
    assert_oauth_error(resp, 405, "invalid_request").await;
    for path in ["/oauth2/default/v1/authorize", "/oauth2/other/v1/keys", "/"] {
        let resp = client()
            .get(format!("http://{}{path}", dev.addr()))
            .send()
            .await
            .unwrap();
        assert_oauth_error(resp, 404, "not_found").await;
    }
}

#[tokio::test]
async fn introspection_knows_its_tokens_and_requires_a_client() {
    let dev = start(DevTokenFormat::Jwt).await;
    let token = access_token(&dev, "orders-app", "orders-secret", Some("mulescope")).await;
    let resp = introspect(&dev, "tollgate-introspector", "introspector-secret", &token).await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], "orders-app");
    assert_eq!(answer["sub"], "orders-app");
    assert_eq!(answer["scope"], "mulescope");
    assert_eq!(answer["aud"], AUDIENCE);
    assert_eq!(answer["iss"], dev.issuer());
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["exp"].as_u64().unwrap() > answer["iat"].as_u64().unwrap());
    assert!(answer["jti"].is_string());

    // Any configured client may introspect, with either authentication method.
    let posted = client()
        .post(dev.introspection_url())
        .form(&[
            ("token", token.as_str()),
            ("client_id", "noscope-app"),
            ("client_secret", "noscope-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.json::<Value>().await.unwrap()["active"], true);

    // One signature character changed (mid-signature, so all six of its bits count).
    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let another_providers = access_token(
        &start(DevTokenFormat::Jwt).await,
        "orders-app",
        "orders-secret",
        None,
    )
    .await;
    for inactive in [
        tampered.as_str(),
        "garbage",
        "a.b.c",
        another_providers.as_str(),
    ] {
        assert_eq!(
            introspection(&dev, inactive).await,
            json!({"active": false}),
            "{inactive}"
        );
    }

    let anonymous = client()
        .post(dev.introspection_url())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(anonymous, 401, "invalid_client").await;
    let wrong = introspect(&dev, "tollgate-introspector", "wrong", &token).await;
    assert_oauth_error(wrong, 401, "invalid_client").await;
}

#[tokio::test]
async fn opaque_tokens_mean_something_only_to_introspection() {
    let dev = start(DevTokenFormat::Opaque).await;
    let token = access_token(&dev, "noscope-app", "noscope-secret", None).await;
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    assert!(!token.contains('.'));
    let answer = introspection(&dev, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "noscope-app");
    assert_eq!(answer["scope"], "read");
    let other = access_token(&dev, "noscope-app", "noscope-secret", None).await;
    assert_ne!(other, token);
    assert_eq!(
        introspection(&dev, &format!("{token}x")).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn an_expired_token_turns_inactive() {
    let dev = start_with(DevProviderSettings {
        token_ttl: Duration::from_secs(1),
        ..settings(DevTokenFormat::Opaque)
    })
    .await;
    let token = access_token(&dev, "orders-app", "orders-secret", None).await;
    eventually(
        Duration::from_secs(5),
        "the 1 s token to expire",
        || async { introspection(&dev, &token).await == json!({"active": false}) },
    )
    .await;
}

#[tokio::test]
async fn a_registered_client_gets_tokens_for_its_scopes() {
    let dev = start(DevTokenFormat::Jwt).await;
    let resp = client()
        .post(dev.registration_url())
        .json(&json!({"client_name": "my app", "scope": "mulescope", "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let reg: Value = resp.json().await.unwrap();
    assert_eq!(reg["client_name"], "my app");
    assert_eq!(reg["scope"], "mulescope");
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert_eq!(reg["grant_types"], json!(["client_credentials"]));
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert!(reg["client_id_issued_at"].is_u64());
    let (id, secret) = (
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
    );

    let resp = request_token(&dev, id, secret, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["scope"], "mulescope");
    let beyond = request_token(&dev, id, secret, Some("write")).await;
    assert_oauth_error(beyond, 400, "invalid_scope").await;

    // Without a scope, a client may ask for any scope the provider knows.
    let resp = client()
        .post(dev.registration_url())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let open: Value = resp.json().await.unwrap();
    assert_eq!(open["scope"], "mulescope read write");
    let token = access_token(
        &dev,
        open["client_id"].as_str().unwrap(),
        open["client_secret"].as_str().unwrap(),
        Some("write"),
    )
    .await;
    assert_eq!(introspection(&dev, &token).await["scope"], "write");

    for bad in [
        json!({"grant_types": ["authorization_code"]}),
        json!({"scope": "admin"}),
        json!({"token_endpoint_auth_method": "private_key_jwt"}),
        json!(["not", "an", "object"]),
    ] {
        let resp = client()
            .post(dev.registration_url())
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_oauth_error(resp, 400, "invalid_client_metadata").await;
    }
}

#[tokio::test]
async fn dropping_the_provider_stops_it() {
    let dev = start(DevTokenFormat::Jwt).await;
    let url = dev.jwks_url();
    get_json(&url).await;
    drop(dev);
    eventually(
        Duration::from_secs(5),
        "the dropped provider to stop answering",
        || async { client().get(&url).send().await.is_err() },
    )
    .await;
}

// === the real gateway in front of it ===

fn orders_api(upstream_url: &str, validation: &str) -> String {
    format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{upstream_url}"
validation = "{validation}"
audience = ["{AUDIENCE}"]
scopes = ["mulescope"]
clients = ["orders-app", "noscope-app"]
expose_headers = true
"#
    )
}

async fn get(gw: &Gateway, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url("/orders/1"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request through the gateway")
}

/// mulescope → 200 and the upstream reached with the identity headers; a token without it → 403;
/// no token → 401 without an error code; a token of no provider → 401 invalid_token.
async fn assert_enforced(dev: &DevProvider, gw: &Gateway, upstream: &Upstream) {
    let narrow = access_token(dev, "noscope-app", "noscope-secret", None).await;
    assert_rejected(
        get(gw, Some(&narrow)).await,
        403,
        Some("insufficient_scope"),
        upstream,
    )
    .await;
    assert_rejected(get(gw, None).await, 401, None, upstream).await;
    assert_rejected(
        get(gw, Some("not-a-dev-token")).await,
        401,
        Some("invalid_token"),
        upstream,
    )
    .await;

    let token = access_token(dev, "orders-app", "orders-secret", Some("mulescope")).await;
    let resp = get(gw, Some(&token)).await;
    assert_eq!(resp.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.target, "/orders/1");
    assert_eq!(
        seen.header("x-agw-client_id").as_deref(),
        Some("orders-app")
    );
    assert_eq!(seen.header("x-agw-iss").as_deref(), Some(dev.issuer()));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn the_gateway_validates_dev_jwts_locally() {
    let dev = start(DevTokenFormat::Jwt).await;
    let upstream = Upstream::start().await;
    let config = config_with(
        dev.issuer(),
        r#"jwt_typ = "at+jwt""#,
        &orders_api(&upstream.url(), "jwt"),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    assert_enforced(&dev, &gw, &upstream).await;
    assert_eq!(
        upstream.last().header("x-agw-aud").as_deref(),
        Some(AUDIENCE)
    );
}

#[tokio::test]
async fn the_gateway_validates_dev_tokens_by_introspection() {
    // Opaque tokens leave introspection as the only way; the gateway's introspection client is
    // tollgate-introspector, one of the dev clients.
    let dev = start(DevTokenFormat::Opaque).await;
    let upstream = Upstream::start().await;
    let config = config_with(
        dev.issuer(),
        "",
        &orders_api(&upstream.url(), "introspection"),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    assert_enforced(&dev, &gw, &upstream).await;
    assert_eq!(
        upstream.last().header("x-agw-active").as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn the_echo_upstream_shows_what_the_gateway_forwarded() {
    let dev = start(DevTokenFormat::Jwt).await;
    let echo = EchoUpstream::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let config = config_with(dev.issuer(), "", &orders_api(&echo.url(), "jwt"));
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let token = access_token(&dev, "orders-app", "orders-secret", Some("mulescope")).await;
    let resp = client()
        .post(gw.url("/orders/1?page=2"))
        .bearer_auth(&token)
        .header("x-agw-client_id", "forged")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/orders/1");
    assert_eq!(echoed["query"], "page=2");
    assert_eq!(echoed["body_bytes"], 12);
    let headers = &echoed["headers"];
    assert_eq!(
        headers["x-agw-client_id"], "orders-app",
        "the forged copy is stripped: {headers}"
    );
    assert_eq!(headers["x-agw-aud"], AUDIENCE);
    assert!(headers["x-forwarded-for"].is_string(), "{headers}");
}
