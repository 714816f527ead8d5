//! Local JWT validation (`validation = "jwt"`) and `jwt+introspection`, end to end: tokens from the
//! real provider (signed JWT access tokens, key rotation without a restart), and forgeries crafted
//! with test keys against the fake provider's JWKS — each refused with 401 before the upstream, and
//! for `jwt+introspection` before any provider call.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_idp::{FakeIdp, Reply, now};
use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::jwt::{
    SigningKey, b64url, hs256, okta_claims, sign, sign_with_header, unsigned,
};
use crate::common::provider::{Kind, Provider};
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, client, config_with, eventually};

const AUDIENCE: &str = "api://default";

fn jwt_api(upstream: &Upstream, validation: &str) -> String {
    format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
validation = "{validation}"
audience = ["{AUDIENCE}"]
scopes = ["mulescope"]
clients = ["orders-app"]
expose_headers = true
"#,
        upstream.url()
    )
}

async fn get(gw: &Gateway, token: &str) -> reqwest::Response {
    client()
        .get(gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through the gateway")
}

// === the real providers: oidc-provider, and tollgate's own dev provider ===

crate::against_both_providers!(
    real_provider_jwts_are_validated_locally_without_introspection,
    a_token_for_another_audience_is_refused,
);

async fn real_provider_jwts_are_validated_locally_without_introspection(kind: Kind) {
    let idp = Provider::start(kind, true).await;
    let upstream = Upstream::start().await;
    let config = config_with(
        &idp.issuer(),
        r#"jwt_typ = "at+jwt""#,
        &jwt_api(&upstream, "jwt"),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    for _ in 0..3 {
        assert_eq!(get(&gw, &token).await.status(), 200);
    }
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-agw-client_id").as_deref(),
        Some("orders-app")
    );
    assert_eq!(seen.header("x-agw-aud").as_deref(), Some(AUDIENCE));
    if let Some(stats) = idp.stats().await {
        assert_eq!(stats.introspection, 0, "{stats:?}");
        assert_eq!(
            stats.jwks, 1,
            "one JWKS fetch at start, none per request: {stats:?}"
        );
    }

    // Scopes come from RFC 9068's `scope` string here, and are still exact tokens.
    let narrow = idp
        .token("noscope-app", "noscope-secret", "mulescopeX")
        .await;
    assert_rejected(
        get(&gw, &narrow).await,
        403,
        Some("insufficient_scope"),
        &Upstream::start().await,
    )
    .await;
    assert_eq!(upstream.count(), 3);
}

async fn a_token_for_another_audience_is_refused(kind: Kind) {
    let idp = Provider::start(kind, true).await;
    let upstream = Upstream::start().await;
    let api = jwt_api(&upstream, "jwt").replace(AUDIENCE, "api://payments");
    let gw = Gateway::start(&config_with(&idp.issuer(), "", &api)).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let body = assert_rejected(
        get(&gw, &token).await,
        401,
        Some("invalid_token"),
        &upstream,
    )
    .await;
    assert_eq!(
        body["error_description"],
        "the access token is not meant for this API"
    );
}

#[tokio::test]
async fn the_provider_rotates_its_key_and_new_tokens_validate_without_a_restart() {
    let idp = TestIdp::start_with(json!({"accessTokenFormat": "jwt"})).await;
    let upstream = Upstream::start().await;
    let config = config_with(
        &idp.issuer,
        r#"jwks_min_refresh = "200ms""#,
        &jwt_api(&upstream, "jwt"),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let before = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_eq!(get(&gw, &before).await.status(), 200);

    idp.rotate().await;
    let after = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_ne!(before, after);
    // The new kid is unknown until one (rate-limited) refetch finds it.
    eventually(
        Duration::from_secs(5),
        "the rotated key to be accepted",
        || async { get(&gw, &after).await.status() == 200 },
    )
    .await;
    assert_eq!(
        get(&gw, &before).await.status(),
        200,
        "the old key is still published"
    );
    let jwks = idp.stats().await.jwks;
    assert!((2..=4).contains(&jwks), "JWKS fetched {jwks} times");
}

// === forgeries, against the fake provider's JWKS ===

/// A fake provider publishing `key-a` (kid `key-a`), and a ready gateway for `/orders`.
pub(crate) struct Setup {
    pub(crate) idp: FakeIdp,
    pub(crate) upstream: Upstream,
    pub(crate) gw: Gateway,
    pub(crate) key: SigningKey,
}

pub(crate) async fn fake_setup(validation: &str, provider_extra: &str) -> Setup {
    let idp = FakeIdp::start().await;
    let key = SigningKey::rsa_a("key-a");
    idp.set_jwks(vec![key.public_jwk()]);
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&config_with(
        &idp.issuer(),
        provider_extra,
        &jwt_api(&upstream, validation),
    ))
    .await;
    gw.wait_ready().await;
    Setup {
        idp,
        upstream,
        gw,
        key,
    }
}

fn claims(s: &Setup) -> Value {
    okta_claims(&s.idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300)
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

#[tokio::test]
async fn forged_and_broken_tokens_are_refused_before_the_upstream() {
    let s = fake_setup("jwt", "").await;
    let good = claims(&s);
    assert_eq!(get(&s.gw, &sign(&s.key, &good)).await.status(), 200);
    let reached = s.upstream.count();

    let attacker = SigningKey::rsa_b("key-a");
    let header = |extra: Value| {
        let mut h = json!({"alg": "RS256", "typ": "at+jwt", "kid": "key-a"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    let valid = sign(&s.key, &good);
    let (signing_input, signature) = valid.rsplit_once('.').unwrap();
    let flipped = {
        let mut sig: Vec<char> = signature.chars().collect();
        sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
        format!("{signing_input}.{}", sig.into_iter().collect::<String>())
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "key-a"}), &good),
            "signing algorithm",
        ),
        (
            "HS256 keyed with the RSA public key",
            hs256(
                s.key.public_pem().as_bytes(),
                header(json!({"alg": "HS256"})),
                &good,
            ),
            "signing algorithm",
        ),
        ("bad signature", flipped, "signature is invalid"),
        (
            "stripped signature",
            format!("{signing_input}."),
            "signature is invalid",
        ),
        (
            "signed by another key",
            sign(&attacker, &good),
            "signature is invalid",
        ),
        (
            "expired",
            sign(&s.key, &with(good.clone(), "exp", json!(now() - 120))),
            "has expired",
        ),
        (
            "future nbf",
            sign(&s.key, &with(good.clone(), "nbf", json!(now() + 120))),
            "not valid yet",
        ),
        (
            "future iat",
            sign(&s.key, &with(good.clone(), "iat", json!(now() + 120))),
            "not valid yet",
        ),
        (
            "string exp",
            sign(
                &s.key,
                &with(good.clone(), "exp", json!((now() + 300).to_string())),
            ),
            "claims are malformed",
        ),
        (
            "no exp",
            sign(&s.key, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "claims are malformed",
        ),
        (
            "wrong iss",
            sign(
                &s.key,
                &with(
                    good.clone(),
                    "iss",
                    json!("https://evil.test/oauth2/default"),
                ),
            ),
            "another issuer",
        ),
        (
            "wrong aud",
            sign(&s.key, &with(good.clone(), "aud", json!("api://other"))),
            "not meant for this API",
        ),
        (
            "embedded jwk",
            sign_with_header(
                &attacker,
                header(json!({"jwk": attacker.public_jwk(), "kid": "attacker"})),
                &good,
            ),
            "unknown key",
        ),
        (
            "unknown crit",
            sign_with_header(&s.key, header(json!({"crit": ["exp"]})), &good),
            "malformed",
        ),
        (
            "JWE-shaped",
            format!(
                "{}.a.b.c.d",
                b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ),
            "malformed",
        ),
        (
            "oversize",
            sign(&s.key, &with(good.clone(), "pad", json!("x".repeat(9000)))),
            "too large",
        ),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
    ];
    for (what, token, description) in &cases {
        let body = assert_rejected(
            get(&s.gw, token).await,
            401,
            Some("invalid_token"),
            &Upstream::start().await,
        )
        .await;
        let said = body["error_description"].as_str().unwrap_or_default();
        assert!(said.contains(description), "{what}: {said:?}");
    }
    assert_eq!(
        s.upstream.count(),
        reached,
        "no forgery reached the upstream"
    );
    assert_eq!(s.idp.introspection_count(), 0);
}

#[tokio::test]
async fn a_jku_header_is_never_followed() {
    let s = fake_setup("jwt", "").await;
    let attacker = SigningKey::rsa_b("evil");
    let lure = Upstream::start().await;
    let header = json!({"alg": "RS256", "kid": "evil", "jku": format!("{}/jwks.json", lure.url()),
        "x5u": format!("{}/cert.pem", lure.url())});
    let token = sign_with_header(&attacker, header, &claims(&s));
    assert_rejected(
        get(&s.gw, &token).await,
        401,
        Some("invalid_token"),
        &s.upstream,
    )
    .await;
    lure.assert_not_reached();
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_min_refresh() {
    let s = fake_setup("jwt", "").await;
    let at_start = s.idp.jwks_count();
    assert_eq!(at_start, 1);
    let c = claims(&s);
    // At once: each waits for the next allowed fetch (within jwks_min_refresh, 5s by default),
    // and they all share it.
    let requests = (0..20).map(|i| {
        let token = sign(&SigningKey::rsa_a(&format!("made-up-{i}")), &c);
        let gw = &s.gw;
        async move { get(gw, &token).await }
    });
    for resp in futures_util::future::join_all(requests).await {
        assert_rejected(resp, 401, Some("invalid_token"), &s.upstream).await;
    }
    assert!(
        s.idp.jwks_count() <= at_start + 1,
        "JWKS fetched {} times",
        s.idp.jwks_count()
    );
}

#[tokio::test]
async fn a_key_added_to_the_jwks_is_found_by_its_kid() {
    let s = fake_setup("jwt", r#"jwks_min_refresh = "0s""#).await;
    let second = SigningKey::rsa_b("key-b");
    let token = sign(&second, &claims(&s));
    // Not published yet: refused, and the verdict is not cached...
    assert_rejected(
        get(&s.gw, &token).await,
        401,
        Some("invalid_token"),
        &s.upstream,
    )
    .await;
    s.idp
        .set_jwks(vec![s.key.public_jwk(), second.public_jwk()]);
    // ...so once it is, the same token passes.
    assert_eq!(get(&s.gw, &token).await.status(), 200);
    // With two keys a token must name its kid.
    let mut no_kid = json!({"alg": "RS256", "typ": "at+jwt"});
    no_kid.as_object_mut().unwrap().remove("kid");
    let token = sign_with_header(&s.key, no_kid, &claims(&s));
    let resp = get(&s.gw, &token).await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn es256_is_accepted_only_when_configured() {
    let ec = SigningKey::ec_p256("ec-1");
    for (algorithms, expected) in [("", 401), (r#"jwt_algorithms = ["RS256", "ES256"]"#, 200)] {
        let idp = FakeIdp::start().await;
        idp.set_jwks(vec![
            SigningKey::rsa_a("key-a").public_jwk(),
            ec.public_jwk(),
        ]);
        let upstream = Upstream::start().await;
        let gw = Gateway::start(&config_with(
            &idp.issuer(),
            algorithms,
            &jwt_api(&upstream, "jwt"),
        ))
        .await;
        gw.wait_ready().await;
        let token = sign(
            &ec,
            &okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300),
        );
        assert_eq!(
            get(&gw, &token).await.status(),
            expected,
            "with {algorithms:?}"
        );
        assert_eq!(upstream.count(), usize::from(expected == 200));
    }
}

#[tokio::test]
async fn jwt_plus_introspection_refuses_revoked_tokens_and_spares_the_provider_forgeries() {
    let s = fake_setup("jwt+introspection", "").await;
    let live = sign(&s.key, &claims(&s));
    let revoked = sign(&s.key, &with(claims(&s), "jti", json!("revoked-1")));
    let (live_t, revoked_t) = (live.clone(), revoked.clone());
    s.idp.on_introspect(move |token| {
        if token == live_t {
            Reply::Json(200, json!({"active": true, "client_id": "orders-app", "scope": "mulescope", "exp": now() + 300}))
        } else {
            assert_eq!(token, revoked_t, "only verified tokens are introspected");
            Reply::Json(200, json!({"active": false}))
        }
    });
    assert_eq!(get(&s.gw, &live).await.status(), 200);
    let body = assert_rejected(
        get(&s.gw, &revoked).await,
        401,
        Some("invalid_token"),
        &Upstream::start().await,
    )
    .await;
    assert_eq!(body["error_description"], "the access token is not active");
    assert_eq!(s.idp.introspection_count(), 2);

    let forged = sign(&SigningKey::rsa_b("key-a"), &claims(&s));
    assert_rejected(
        get(&s.gw, &forged).await,
        401,
        Some("invalid_token"),
        &Upstream::start().await,
    )
    .await;
    assert_eq!(
        s.idp.introspection_count(),
        2,
        "a forgery costs no introspection"
    );
    assert_eq!(s.upstream.count(), 1);
}

#[tokio::test]
async fn readiness_waits_for_the_jwks_and_a_failed_refresh_keeps_the_last_keys() {
    let idp = FakeIdp::start().await;
    let key = SigningKey::rsa_a("key-a");
    idp.set_jwks(vec![key.public_jwk()]);
    idp.set_jwks_reply(Reply::Json(500, json!({})));
    let upstream = Upstream::start().await;
    let extra = r#"jwks_refresh = "1s"
jwks_refresh_min = "1s"
jwks_min_refresh = "0s""#;
    let gw = Gateway::start(&config_with(
        &idp.issuer(),
        extra,
        &jwt_api(&upstream, "jwt"),
    ))
    .await;
    eventually(Duration::from_secs(5), "a failed JWKS fetch", || async {
        idp.jwks_count() >= 1
    })
    .await;
    let ready = client()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 503);
    let token = sign(
        &key,
        &okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300),
    );
    assert_rejected(
        get(&gw, &token).await,
        503,
        Some("temporarily_unavailable"),
        &upstream,
    )
    .await;

    idp.clear_jwks_reply();
    gw.wait_ready().await;
    assert_eq!(get(&gw, &token).await.status(), 200);

    // The provider fails again: refreshes fail, the keys in hand still verify new tokens.
    idp.set_jwks_reply(Reply::Json(500, json!({})));
    let fetched = idp.jwks_count();
    eventually(Duration::from_secs(5), "a failed refresh", || async {
        idp.jwks_count() > fetched
    })
    .await;
    let fresh = sign(
        &key,
        &with(
            okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300),
            "jti",
            json!("fresh"),
        ),
    );
    assert_eq!(get(&gw, &fresh).await.status(), 200);
}

#[tokio::test]
async fn the_jwks_is_refreshed_as_its_max_age_says() {
    let idp = FakeIdp::start().await;
    idp.set_jwks(vec![SigningKey::rsa_a("key-a").public_jwk()]);
    idp.set_jwks_cache_control(Some("public, max-age=1".to_owned()));
    let upstream = Upstream::start().await;
    let extra = r#"jwks_refresh = "1h"
jwks_refresh_min = "1s""#;
    let gw = Gateway::start(&config_with(
        &idp.issuer(),
        extra,
        &jwt_api(&upstream, "jwt"),
    ))
    .await;
    gw.wait_ready().await;
    // No request needs it: the refresh follows max-age=1 rather than the 1h default.
    eventually(
        Duration::from_secs(6),
        "two scheduled refreshes",
        || async { idp.jwks_count() >= 3 },
    )
    .await;
}

#[tokio::test]
async fn forgeries_do_not_spend_a_clients_share_of_misses() {
    let s = fake_setup("jwt+introspection", "misses_per_client = \"1/h\"").await;
    s.idp.on_introspect(|_| {
        Reply::Json(200, json!({"active": true, "client_id": "orders-app", "scope": "mulescope", "exp": now() + 300}))
    });
    for i in 0..5 {
        let forged = sign(
            &SigningKey::rsa_b("key-a"),
            &with(claims(&s), "jti", json!(i)),
        );
        let resp = get(&s.gw, &forged).await;
        assert_eq!(resp.status(), 401, "refused locally, not counted as a miss");
    }
    assert_eq!(get(&s.gw, &sign(&s.key, &claims(&s))).await.status(), 200);
    let second = sign(&s.key, &with(claims(&s), "jti", json!("second")));
    assert_eq!(
        get(&s.gw, &second).await.status(),
        429,
        "the share is one miss"
    );
    assert_eq!(s.idp.introspection_count(), 1);
    assert_eq!(s.upstream.count(), 1);
}
