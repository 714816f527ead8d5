//! Verdicts that mean what they say, end to end: only `"active": true` is active (anything else is a
//! cached 401, and only a failure to answer is a 503); refresh tokens, ID tokens and other JWTs are
//! not access tokens (Okta-shaped answers from the fake provider, and real tokens minted by
//! oidc-provider); key-bound tokens are refused; a revoked token stays revoked through
//! `stale_if_error`; `leeway` means the same in the validators and the cache; `check` warns about an
//! introspection API without an audience.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::fake_idp::{FakeIdp, Reply, active, now};
use crate::common::gateway::{Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::jwt::{SigningKey, okta_claims, sign, sign_with_header};
use crate::common::upstream::Upstream;
use crate::common::{
    assert_refusal, assert_rejected, base_config, client, config_with, toml_string,
};

const AUDIENCE: &str = "api://default";

/// One API: `/<name>` on `upstream`, by `validation`, `mulescope` from `orders-app`, then `extra`.
fn api(name: &str, validation: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[api]]\nname = {}\npath_prefix = {}\nupstream = {}\nvalidation = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(name),
        toml_string(&format!("/{name}")),
        toml_string(&upstream.url()),
        toml_string(validation),
    )
}

fn audience(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| toml_string(v)).collect();
    format!("audience = [{}]", quoted.join(", "))
}

async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through the gateway")
}

/// Asserts a 401 `invalid_token` (RFC 6750 §3.1) that did not reach the upstream (which may have
/// served accepted requests before), and the access log's `reason`. The path gets a unique suffix
/// so the request's own log line is found, whatever order earlier lines are written in.
async fn refused(gw: &Gateway, upstream: &Upstream, path: &str, token: &str, reason: &str) {
    static REQUESTS: AtomicUsize = AtomicUsize::new(0);
    let path = format!("{path}-{}", REQUESTS.fetch_add(1, Ordering::Relaxed));
    let served = upstream.count();
    let resp = get(gw, &path, token).await;
    assert_refusal(resp, 401, Some("invalid_token")).await;
    assert_eq!(
        upstream.count(),
        served,
        "{path}: a refusal must not reach the upstream"
    );
    let line = gw
        .wait_log(&path, |v| {
            v["message"] == "request" && v["path"] == path.as_str()
        })
        .await;
    assert_eq!(line["reason"], reason, "{path}: {line}");
}

/// An active answer for `orders-app` with `mulescope`, this provider's `iss`, then `extra`.
fn answer(idp: &FakeIdp, extra: Value) -> Value {
    let mut v = active("orders-app", "mulescope", 3600);
    v["iss"] = idp.issuer().into();
    for (name, value) in extra.as_object().expect("extra is an object") {
        v[name] = value.clone();
    }
    v
}

/// Makes `idp` answer `replies[token]`, and `{"active": false}` for other tokens.
fn answer_with(idp: &FakeIdp, replies: Vec<(&'static str, Reply)>) {
    idp.on_introspect(move |token| {
        replies
            .iter()
            .find(|(t, _)| *t == token)
            .map_or(Reply::Json(200, json!({"active": false})), |(_, r)| {
                r.clone()
            })
    });
}

/// Makes `idp` answer each token with `reply(token, answer)`, where `answer` is an active answer
/// for `orders-app` with `mulescope`, this provider's `iss` and `aud` `api://default`.
fn answer_shaped(idp: &FakeIdp, reply: impl Fn(&str, Value) -> Reply + Send + Sync + 'static) {
    let base = answer(idp, json!({"aud": AUDIENCE}));
    idp.on_introspect(move |token| reply(token, base.clone()));
}

/// A gateway with one introspection API `/orders` on `upstream`, after `cache` (a `[cache]`
/// table, or nothing), ready.
async fn introspection_gateway(idp: &FakeIdp, upstream: &Upstream, cache: &str) -> Gateway {
    let apis = api("orders", "introspection", upstream, "");
    let gw = Gateway::start(&base_config(&idp.issuer(), &format!("{cache}\n{apis}"))).await;
    gw.wait_ready().await;
    gw
}

/// A fake provider answering like `answer_with`.
async fn fake_answering(replies: Vec<(&'static str, Reply)>) -> FakeIdp {
    let idp = FakeIdp::start().await;
    answer_with(&idp, replies);
    idp
}

// === 1. `active` must be true; only a failure to answer is a provider failure ===

#[tokio::test]
async fn an_active_that_is_not_true_is_a_cached_verdict_of_inactive() {
    let idp = FakeIdp::start().await;
    answer_shaped(&idp, |token, mut v| {
        match token {
            "missing" => {
                v.as_object_mut().expect("an object").remove("active");
            }
            "null" => v["active"] = Value::Null,
            "string" => v["active"] = "true".into(),
            "one" => v["active"] = 1.into(),
            "false" => v["active"] = false.into(),
            _ => {}
        }
        Reply::Json(200, v)
    });
    let upstream = Upstream::start().await;
    let gw = introspection_gateway(&idp, &upstream, "").await;

    for token in ["missing", "null", "string", "one", "false"] {
        let calls = idp.introspection_count();
        refused(&gw, &upstream, "/orders/1", token, "token_inactive").await;
        refused(&gw, &upstream, "/orders/1", token, "token_inactive").await;
        assert_eq!(
            idp.introspection_count(),
            calls + 1,
            "{token}: a verdict, remembered for negative_ttl: the second request asks no one"
        );
    }
    let resp = get(&gw, "/orders/1", "really-active").await;
    assert_eq!(
        resp.status(),
        200,
        "the same answer with `active: true` passes"
    );
}

#[tokio::test]
async fn only_a_failure_to_answer_is_a_503_and_it_is_never_cached() {
    let active_body = json!({"active": true, "client_id": "orders-app", "scope": "mulescope"});
    let raw = |body: &str| {
        Reply::Raw(
            200,
            vec![("content-type".into(), "application/json".into())],
            body.into(),
        )
    };
    let idp = fake_answering(vec![
        ("status-500", Reply::Json(500, active_body.clone())),
        (
            "status-302",
            Reply::Raw(
                302,
                vec![("location".into(), "/elsewhere".into())],
                String::new(),
            ),
        ),
        ("not-json", raw("active=true")),
        ("array", raw("[{\"active\": true}]")),
        ("string", raw("\"active\"")),
        ("empty-204", Reply::Raw(204, vec![], String::new())),
        ("dropped", Reply::Close),
        (
            "slow",
            Reply::Delay(
                Duration::from_secs(3),
                Box::new(Reply::Json(200, active_body)),
            ),
        ),
    ])
    .await;
    let upstream = Upstream::start().await;
    let gw = introspection_gateway(&idp, &upstream, "").await;

    for token in [
        "status-500",
        "status-302",
        "not-json",
        "array",
        "string",
        "empty-204",
        "dropped",
        "slow",
    ] {
        for attempt in 1..=2 {
            let calls = idp.introspection_count();
            let resp = get(&gw, "/orders/1", token).await;
            assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
            assert_eq!(
                idp.introspection_count(),
                calls + 1,
                "{token} (attempt {attempt}): no verdict, so nothing cached: the provider is asked again"
            );
        }
    }
}

#[tokio::test]
async fn a_2xx_other_than_200_is_read_like_200() {
    let idp = FakeIdp::start().await;
    answer_shaped(&idp, |token, v| match token {
        "created" => Reply::Json(201, v),
        "non-authoritative" => Reply::Json(203, v),
        _ => Reply::Json(202, json!({"active": false})),
    });
    let upstream = Upstream::start().await;
    let gw = introspection_gateway(&idp, &upstream, "").await;
    for token in ["created", "non-authoritative"] {
        assert_eq!(get(&gw, "/orders/1", token).await.status(), 200, "{token}");
    }
    assert_eq!(upstream.count(), 2);
    refused(&gw, &upstream, "/orders/1", "inactive", "token_inactive").await;
}

// === 2. refresh and ID tokens are not access tokens ===

#[tokio::test]
async fn introspection_answers_naming_another_kind_of_token_are_refused() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    // Okta's documented answers (developer.okta.com, /introspect): an access token, a refresh token
    // today ("token_type": "Bearer", no `aud`/`iss`/`iat`/`jti`) and in the older docs
    // ("token_type": "refresh token"); then the RFC 8693 and other spellings.
    let okta_access = answer(
        &idp,
        json!({"token_type": "Bearer", "username": "john.doe@example.com", "aud": AUDIENCE,
        "jti": "AT.7P4KlczB", "uid": "00uid4Bx", "sub": "john.doe@example.com"}),
    );
    let okta_refresh = json!({"active": true, "token_type": "Bearer", "scope": "openid mulescope",
        "client_id": "orders-app", "username": "john.doe@example.com", "exp": now() + 3600,
        "sub": "john.doe@example.com", "device_id": "q4SZgrA9sOeHkfst5uaa"});
    let mut replies = vec![
        ("okta-access", Reply::Json(200, okta_access)),
        ("okta-refresh", Reply::Json(200, okta_refresh)),
    ];
    let kinds = [
        ("okta-refresh-old", json!({"token_type": "refresh token"})),
        ("refresh_token", json!({"token_type": "refresh_token"})),
        (
            "urn-refresh",
            json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
        ),
        (
            "urn-id",
            json!({"token_type": "urn:ietf:params:oauth:token-type:id_token"}),
        ),
        ("n_a", json!({"token_type": "N_A"})),
        (
            "hydra-refresh",
            json!({"token_type": "Bearer", "token_use": "refresh_token"}),
        ),
        ("keycloak-id", json!({"typ": "ID"})),
    ];
    for (token, mut kind) in kinds.clone() {
        kind["aud"] = AUDIENCE.into();
        replies.push((token, Reply::Json(200, answer(&idp, kind))));
    }
    answer_with(&idp, replies);
    let gw = Gateway::start(&base_config(
        &idp.issuer(),
        &api("orders", "introspection", &upstream, &audience(&[AUDIENCE])),
    ))
    .await;
    gw.wait_ready().await;

    assert_eq!(get(&gw, "/orders/1", "okta-access").await.status(), 200);
    let seen = upstream.count();
    // Okta's refresh token says nothing of its kind; its missing `aud` is what refuses it.
    refused(
        &gw,
        &upstream,
        "/orders/1",
        "okta-refresh",
        "token_wrong_audience",
    )
    .await;
    for (token, _) in kinds {
        refused(&gw, &upstream, "/orders/1", token, "token_wrong_type").await;
    }
    assert_eq!(upstream.count(), seen);
    let calls = idp.introspection_count();
    refused(
        &gw,
        &upstream,
        "/orders/1",
        "refresh_token",
        "token_wrong_type",
    )
    .await;
    assert_eq!(
        idp.introspection_count(),
        calls,
        "a wrong type is a cached verdict"
    );
    assert!(
        idp.introspections()
            .iter()
            .all(|c| c.param("token_type_hint") == Some("access_token")),
        "tollgate only ever asks about access tokens"
    );
}

/// A fake provider publishing `key`, and a gateway with `/jwt` (local), `/both`
/// (jwt+introspection) and `/orders` (introspection) for `audiences`.
async fn jwt_gateway(key: &SigningKey, audiences: &[&str]) -> (FakeIdp, Upstream, Gateway) {
    let idp = FakeIdp::start().await;
    idp.set_jwks(vec![key.public_jwk()]);
    let upstream = Upstream::start().await;
    let aud = audience(audiences);
    let apis = format!(
        "{}{}{}",
        api("jwt", "jwt", &upstream, &aud),
        api("both", "jwt+introspection", &upstream, &aud),
        api("orders", "introspection", &upstream, &aud),
    );
    let gw = Gateway::start(&config_with(&idp.issuer(), r#"leeway = "30s""#, &apis)).await;
    gw.wait_ready().await;
    (idp, upstream, gw)
}

/// Okta's access token claims (the `jwt` helper's plus `ver` and `uid`) for `orders-app`.
fn okta(idp: &FakeIdp, exp_in_secs: i64) -> Value {
    let mut claims = okta_claims(
        &idp.issuer(),
        "orders-app",
        &["mulescope"],
        AUDIENCE,
        exp_in_secs,
    );
    claims["ver"] = 1.into();
    claims["uid"] = "00uid4BxXw6I6TV4m0g3".into();
    claims
}

#[tokio::test]
async fn jwts_that_are_not_access_tokens_are_refused_and_okta_ones_pass() {
    let key = SigningKey::rsa_a("k1");
    let (idp, upstream, gw) = jwt_gateway(&key, &[AUDIENCE, "orders-app"]).await;
    let okta_header = json!({"alg": "RS256", "kid": "k1"});
    let with = |extra: Value| {
        let mut claims = okta(&idp, 3600);
        for (name, value) in extra.as_object().expect("an object") {
            claims[name] = value.clone();
        }
        claims
    };
    // Okta: `kid` and `alg`, no `typ`; oidc-provider and RFC 9068: `typ: at+jwt`.
    assert_eq!(
        get(
            &gw,
            "/jwt/1",
            &sign_with_header(&key, okta_header.clone(), &okta(&idp, 3600))
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(&gw, "/jwt/1", &sign(&key, &okta(&idp, 3600)))
            .await
            .status(),
        200
    );
    let seen = upstream.count();

    for typ in [
        "logout+jwt",
        "secevent+jwt",
        "dpop+jwt",
        "id_token",
        "application/token-introspection+jwt",
    ] {
        let header = json!({"alg": "RS256", "kid": "k1", "typ": typ});
        refused(
            &gw,
            &upstream,
            "/jwt/1",
            &sign_with_header(&key, header, &okta(&idp, 3600)),
            "token_wrong_type",
        )
        .await;
    }
    // An ID token as Okta or oidc-provider sign one: `aud` the client, `nonce`, `at_hash`, no scopes.
    let mut id_token = with(
        json!({"aud": "orders-app", "nonce": "n-0S6", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "amr": ["pwd"], "idp": "00ok1u7AsAkrwdZL3z0g", "auth_time": now()}),
    );
    id_token.as_object_mut().expect("claims").remove("scp");
    let shapes = [
        id_token.clone(),
        with(json!({"c_hash": "LDktKdoQak3Pk0cnXxCltA"})),
        {
            let mut v = with(json!({"nonce": "n-0S6"}));
            v.as_object_mut().expect("claims").remove("scp");
            v
        },
        with(json!({"token_use": "id"})),
        with(json!({"typ": "Refresh"})),
    ];
    for claims in shapes {
        refused(
            &gw,
            &upstream,
            "/jwt/1",
            &sign_with_header(&key, okta_header.clone(), &claims),
            "token_wrong_type",
        )
        .await;
    }
    // jwt+introspection: refused by the local check, before any provider call.
    refused(
        &gw,
        &upstream,
        "/both/1",
        &sign_with_header(&key, okta_header, &id_token),
        "token_wrong_type",
    )
    .await;
    assert_eq!(idp.introspection_count(), 0);
    assert_eq!(upstream.count(), seen);
}

#[tokio::test]
async fn the_real_providers_refresh_and_id_tokens_are_refused() {
    let idp = TestIdp::start_with(json!({"accessTokenFormat": "jwt", "mint": true})).await;
    let upstream = Upstream::start().await;
    // `orders-app` as an audience too, so an ID token (whose `aud` is the client) is refused for
    // what it is, not only for its audience.
    let aud = audience(&[AUDIENCE, "orders-app"]);
    let apis = format!(
        "{}{}{}",
        api("orders", "introspection", &upstream, &audience(&[AUDIENCE])),
        api("jwt", "jwt", &upstream, &aud),
        api("both", "jwt+introspection", &upstream, &aud),
    );
    let gw = Gateway::start(&base_config(&idp.issuer, &apis)).await;
    gw.wait_ready().await;

    let access = idp.token("orders-app", "orders-secret", "mulescope").await;
    for path in ["/orders/1", "/jwt/1", "/both/1"] {
        assert_eq!(get(&gw, path, &access).await.status(), 200, "{path}");
    }
    let seen = upstream.count();
    let refresh = idp.mint("refresh_token", &access).await;
    let id_token = idp.mint("id_token", &access).await;

    // oidc-provider introspects the refresh token as active with no `token_type` and no `aud`:
    // the API's audience refuses it.
    refused(
        &gw,
        &upstream,
        "/orders/1",
        &refresh,
        "token_wrong_audience",
    )
    .await;
    refused(&gw, &upstream, "/jwt/1", &refresh, "token_malformed").await;
    // The ID token is a JWT the provider signed (header `typ: JWT`, `nonce`, `at_hash`).
    refused(&gw, &upstream, "/jwt/1", &id_token, "token_wrong_type").await;
    let before = idp.stats().await.introspection;
    refused(&gw, &upstream, "/both/1", &id_token, "token_wrong_type").await;
    assert_eq!(
        idp.stats().await.introspection,
        before,
        "refused locally, before introspection"
    );
    // The test provider introspects any JWT it signed as an access token (standing in for Okta,
    // which introspects its JWTs); the ID token's `aud`, the client, is not the API's.
    refused(
        &gw,
        &upstream,
        "/orders/1",
        &id_token,
        "token_wrong_audience",
    )
    .await;
    assert_eq!(upstream.count(), seen);
}

// === 6. tokens bound to a key or certificate ===

#[tokio::test]
async fn bound_tokens_are_refused_in_every_mode() {
    let key = SigningKey::rsa_a("k1");
    let (idp, upstream, gw) = jwt_gateway(&key, &[AUDIENCE]).await;
    answer_shaped(&idp, |token, mut v| {
        match token {
            // oidc-provider's answer for a DPoP-bound token (RFC 9449 §9).
            "dpop" => {
                v["token_type"] = "DPoP".into();
                v["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
            }
            "mtls" => v["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            "dpop-no-cnf" => v["token_type"] = "dpop".into(),
            _ => {}
        }
        Reply::Json(200, v)
    });
    assert_eq!(get(&gw, "/orders/1", "bearer").await.status(), 200);
    for token in ["dpop", "mtls", "dpop-no-cnf"] {
        refused(
            &gw,
            &upstream,
            "/orders/1",
            token,
            "token_binding_unverified",
        )
        .await;
    }
    let mut claims = okta(&idp, 3600);
    claims["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let bound = sign(&key, &claims);
    refused(&gw, &upstream, "/jwt/1", &bound, "token_binding_unverified").await;
    let calls = idp.introspection_count();
    refused(
        &gw,
        &upstream,
        "/both/1",
        &bound,
        "token_binding_unverified",
    )
    .await;
    assert_eq!(
        idp.introspection_count(),
        calls,
        "refused before introspection"
    );
    assert_eq!(upstream.count(), 1);
}

// === 4. revoked stays revoked ===

#[tokio::test]
async fn a_revoked_token_stays_revoked_while_the_provider_fails() {
    let idp = FakeIdp::start().await;
    answer_shaped(&idp, |_, v| Reply::Json(200, v));
    let upstream = Upstream::start().await;
    let cache = "[cache]\nmax_ttl = \"300ms\"\nnegative_ttl = \"300ms\"\nstale_if_error = \"1h\"\n";
    let gw = introspection_gateway(&idp, &upstream, cache).await;

    assert_eq!(get(&gw, "/orders/1", "t").await.status(), 200);
    assert_eq!(idp.introspection_count(), 1);
    // The stale copy at work first: the verdict expires, the provider fails, the token passes.
    idp.on_introspect(|_| Reply::Json(503, json!({"error": "temporarily_unavailable"})));
    let status = status_at_next_call(&gw, &idp, "t").await;
    assert_eq!(
        status, 200,
        "stale_if_error: a recently valid token passes while the provider fails"
    );

    // Revoked: the next time the provider is asked, it says inactive.
    let served = upstream.count();
    idp.on_introspect(|_| Reply::Json(200, json!({"active": false})));
    assert_eq!(status_at_next_call(&gw, &idp, "t").await, 401);
    // The provider fails again once the negative verdict has expired: still refused.
    idp.on_introspect(|_| Reply::Json(503, json!({"error": "temporarily_unavailable"})));
    assert_eq!(
        status_at_next_call(&gw, &idp, "t").await,
        401,
        "revoked stays revoked, never 200"
    );
    refused(&gw, &upstream, "/orders/1", "t", "token_inactive").await;
    assert_eq!(
        upstream.count(),
        served,
        "nothing reached it since the revocation"
    );
}

/// Requests with `token` until one makes the provider be asked again (the cached verdict has
/// expired), and returns that request's status; every request before it was answered from cache.
async fn status_at_next_call(gw: &Gateway, idp: &FakeIdp, token: &str) -> u16 {
    let calls = idp.introspection_count();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(gw, "/orders/1", token).await.status().as_u16();
        if idp.introspection_count() > calls {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the cached verdict never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === 5. leeway ===

#[tokio::test]
async fn leeway_applies_to_exp_in_the_validators_and_the_cache() {
    let key = SigningKey::rsa_a("k1");
    let (idp, upstream, gw) = jwt_gateway(&key, &[AUDIENCE]).await;
    let recent = sign(&key, &okta(&idp, -5));
    for attempt in 1..=3 {
        assert_eq!(
            get(&gw, "/jwt/1", &recent).await.status(),
            200,
            "5 s past exp, leeway 30 s (attempt {attempt})"
        );
    }
    refused(
        &gw,
        &upstream,
        "/jwt/2",
        &sign(&key, &okta(&idp, -40)),
        "token_expired",
    )
    .await;

    answer_shaped(&idp, |token, mut v| {
        v["exp"] = (now() + if token == "recent" { -5 } else { -40 }).into();
        Reply::Json(200, v)
    });
    for attempt in 1..=3 {
        assert_eq!(
            get(&gw, "/orders/1", "recent").await.status(),
            200,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        idp.introspection_count(),
        1,
        "kept in the cache until exp + leeway"
    );
    refused(&gw, &upstream, "/orders/2", "old", "token_expired").await;
}

// === 3. `check` warns about an introspection API without an audience ===

#[tokio::test]
async fn check_warns_when_an_introspection_api_has_no_audience() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let apis = format!(
        "{}{}",
        api("with", "introspection", &upstream, &audience(&[AUDIENCE])),
        api("without", "introspection", &upstream, ""),
    );
    let out = cli(&["check"], Some(&base_config(&idp.issuer(), &apis)), &[]).await;
    assert_eq!(out.status, 0, "a warning, not an error: {out:?}");
    assert!(out.stdout.contains("configuration OK"), "{out:?}");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{out:?}");
    assert!(
        warnings[0].contains("api[1].audience") && warnings[0].contains("\"without\""),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("warning"),
        "warnings go to stderr: {out:?}"
    );

    let quiet = cli(
        &["check"],
        Some(&base_config(
            &idp.issuer(),
            &api("with", "introspection", &upstream, &audience(&[AUDIENCE])),
        )),
        &[],
    )
    .await;
    assert_eq!(quiet.status, 0, "{quiet:?}");
    assert!(!quiet.stderr.contains("warning"), "{quiet:?}");
}
