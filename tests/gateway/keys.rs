//! Keys and outages (`validation = "jwt"` and `jwt+introspection`): a key the provider has just
//! published is never answered with 401, however many forgeries with made-up kids spend the refetch
//! throttle; a kid spray still costs the provider at most one JWKS fetch per `jwks_min_refresh`; when
//! the JWKS cannot be fetched an unknown kid is 503 (tollgate cannot know the token is bad) while
//! known kids keep working; a failed first load answers everyone queued behind it at once; and
//! garbage is 401 even before the provider is resolved. JWKS fetches are counted at the provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::fake_idp::{FakeIdp, Reply, now};
use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::jwt::{
    SigningKey, b64url, hs256, okta_claims, sign, sign_with_header, unsigned,
};
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, client, config_with, eventually, orders_api};
use crate::jwt::{Setup, fake_setup};

const AUDIENCE: &str = "api://default";

/// The provider's `request_timeout` in `config_with`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn jwt_orders(upstream: &Upstream) -> String {
    orders_api(
        &upstream.url(),
        &format!("validation = \"jwt\"\naudience = [\"{AUDIENCE}\"]"),
    )
}

async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through the gateway")
}

/// A token the provider never signed, naming a kid nobody published.
fn forgery(issuer: &str, kid: &str) -> String {
    let claims = okta_claims(issuer, "orders-app", &["mulescope"], AUDIENCE, 300);
    sign(&SigningKey::rsa_b(kid), &claims)
}

/// At most one fetch per `interval` in `elapsed`, counting the one at its start.
fn assert_at_most_one_fetch_per_interval(fetches: u64, elapsed: Duration, interval: Duration) {
    let allowed = 1 + (elapsed.as_millis() / interval.as_millis()) as u64;
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches in {elapsed:?} (at most {allowed} with one per {interval:?})"
    );
}

/// Forgeries with fresh random kids from `tasks` clients until `stop`; every answer must be 401.
fn spray(
    gw: &Gateway,
    issuer: &str,
    tasks: usize,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|t| {
            let (url, issuer) = (gw.url("/orders/1"), issuer.to_owned());
            let (stop, answered) = (stop.clone(), answered.clone());
            tokio::spawn(async move {
                let client = client();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let token = forgery(&issuer, &format!("spray-{t}-{i}-{}", now()));
                    let resp = client.get(&url).bearer_auth(&token).send().await;
                    let status = resp.expect("a forgery is answered").status();
                    assert_eq!(status, 401, "a forgery with a made-up kid");
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn a_rotated_key_is_accepted_at_once_while_forgeries_spray_random_kids() {
    let idp = TestIdp::start_with(json!({"accessTokenFormat": "jwt"})).await;
    let upstream = Upstream::start().await;
    let interval = Duration::from_secs(1);
    let config = config_with(
        &idp.issuer,
        r#"jwks_min_refresh = "1s""#,
        &jwt_orders(&upstream),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let before = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_eq!(get(&gw, "/orders/1", &before).await.status(), 200);

    let fetched_before = idp.stats().await.jwks;
    let started = Instant::now();
    let (stop, answered) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sprayers = spray(&gw, &idp.issuer, 4, &stop, &answered);
    for round in 1..=2 {
        // Forgeries have just spent the throttle: a refetch is not allowed for up to a second.
        let seen = answered.load(Ordering::SeqCst);
        eventually(Duration::from_secs(10), "forgeries answered", || async {
            answered.load(Ordering::SeqCst) > seen
        })
        .await;
        idp.rotate().await;
        let fresh = idp.token("orders-app", "orders-secret", "mulescope").await;
        let asked = Instant::now();
        // One attempt, no retry loop: the new key is never refused.
        assert_eq!(
            get(&gw, "/orders/1", &fresh).await.status(),
            200,
            "round {round}"
        );
        assert!(asked.elapsed() < interval + REQUEST_TIMEOUT + Duration::from_secs(1));
    }
    stop.store(true, Ordering::SeqCst);
    for sprayer in sprayers {
        sprayer.await.expect("a sprayer saw only 401s");
    }
    let elapsed = started.elapsed();
    let fetches = idp.stats().await.jwks - fetched_before;
    assert_at_most_one_fetch_per_interval(fetches, elapsed, interval);
    assert!(answered.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        upstream.count(),
        3,
        "only the provider's own tokens got through"
    );
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch_per_interval() {
    let Setup {
        idp, upstream, gw, ..
    } = fake_setup("jwt", r#"jwks_min_refresh = "1s""#).await;
    let interval = Duration::from_secs(1);
    let at_start = idp.jwks_count();
    let started = Instant::now();
    for wave in 0..3 {
        let requests = (0..32).map(|i| {
            let token = forgery(&idp.issuer(), &format!("made-up-{wave}-{i}"));
            let gw = &gw;
            async move { get(gw, "/orders/1", &token).await }
        });
        for resp in join_all(requests).await {
            let body = assert_rejected(resp, 401, Some("invalid_token"), &upstream).await;
            assert_eq!(
                body["error_description"],
                "the access token is signed with an unknown key"
            );
        }
    }
    let fetches = (idp.jwks_count() - at_start) as u64;
    assert!(fetches >= 1, "an unknown kid is looked up at the provider");
    assert_at_most_one_fetch_per_interval(fetches, started.elapsed(), interval);
}

#[tokio::test]
async fn a_key_published_after_the_last_fetch_waits_for_the_next_one_instead_of_401() {
    let Setup {
        idp,
        upstream,
        gw,
        key: first,
    } = fake_setup("jwt", r#"jwks_min_refresh = "2s""#).await;
    let second = SigningKey::rsa_b("key-b");
    // Someone else's forgery spends the refetch...
    let spent = get(&gw, "/orders/1", &forgery(&idp.issuer(), "key-b")).await;
    assert_rejected(spent, 401, Some("invalid_token"), &upstream).await;
    assert_eq!(idp.jwks_count(), 2);
    // ...then the provider publishes a key and issues a token with it.
    idp.set_jwks(vec![first.public_jwk(), second.public_jwk()]);
    let claims = okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300);
    let asked = Instant::now();
    assert_eq!(
        get(&gw, "/orders/1", &sign(&second, &claims))
            .await
            .status(),
        200
    );
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(2) + REQUEST_TIMEOUT,
        "waited {waited:?}"
    );
    assert_eq!(
        idp.jwks_count(),
        3,
        "one more fetch, once the throttle allowed it"
    );
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn an_unknown_kid_is_503_while_the_jwks_fails_and_known_kids_keep_working() {
    let Setup {
        idp,
        upstream,
        gw,
        key,
    } = fake_setup("jwt", r#"jwks_min_refresh = "2s""#).await;
    idp.set_jwks_reply(Reply::Json(500, json!({})));

    // The refetch fails: no verdict on the token, so 503 and not 401.
    let body = assert_rejected(
        get(&gw, "/orders/1", &forgery(&idp.issuer(), "rotated-1")).await,
        503,
        Some("temporarily_unavailable"),
        &upstream,
    )
    .await;
    assert_eq!(body["error"], "temporarily_unavailable");
    let fetched = idp.jwks_count();
    assert_eq!(fetched, 2);
    // Within the interval after the failure: 503 at once, and the provider is left alone.
    let asked = Instant::now();
    assert_rejected(
        get(&gw, "/orders/1", &forgery(&idp.issuer(), "rotated-2")).await,
        503,
        Some("temporarily_unavailable"),
        &upstream,
    )
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(idp.jwks_count(), fetched);
    // A known kid needs no fetch: the last good set still verifies it.
    let claims = okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300);
    assert_eq!(
        get(&gw, "/orders/1", &sign(&key, &claims)).await.status(),
        200
    );
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn a_failed_first_load_answers_every_request_behind_it_at_once() {
    let idp = FakeIdp::start().await;
    let key = SigningKey::rsa_a("key-a");
    idp.set_jwks(vec![key.public_jwk()]);
    // The JWKS hangs past the request timeout.
    let hang = Reply::Delay(
        Duration::from_secs(30),
        Box::new(Reply::Json(500, json!({}))),
    );
    idp.set_jwks_reply(hang);
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&config_with(&idp.issuer(), "", &jwt_orders(&upstream))).await;
    eventually(Duration::from_secs(10), "the first JWKS fetch", || async {
        idp.jwks_count() >= 1
    })
    .await;

    let asked = Instant::now();
    let requests = (0..6).map(|i| {
        let mut claims = okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300);
        claims["jti"] = json!(format!("queued-{i}"));
        let token = sign(&key, &claims);
        let gw = &gw;
        async move { get(gw, "/orders/1", &token).await }
    });
    for resp in join_all(requests).await {
        assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    }
    let took = asked.elapsed();
    // One timeout for all of them, not one each in turn (6 x 2 s).
    assert!(
        took < REQUEST_TIMEOUT + Duration::from_millis(1500),
        "took {took:?}"
    );
    assert_eq!(idp.jwks_count(), 1, "they shared the one fetch");

    // Asked again within the interval (5 s by default) after the failure: 503 at once, no fetch.
    let asked = Instant::now();
    let again = sign(
        &key,
        &okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300),
    );
    let resp = get(&gw, "/orders/1", &again).await;
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(idp.jwks_count(), 1);
}

/// Tokens no key can save: each is refused on its shape, header or `exp` alone.
fn garbage(issuer: &str) -> Vec<(&'static str, String)> {
    let key = SigningKey::rsa_a("key-a");
    let good = okta_claims(issuer, "orders-app", &["mulescope"], AUDIENCE, 300);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let mut no_exp = good.clone();
    no_exp.as_object_mut().map(|c| c.remove("exp"));
    let header = json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"]});
    vec![
        ("not a JWT", "not-a-jwt".to_owned()),
        ("header not JSON", "a.b.c".to_owned()),
        (
            "JWE-shaped",
            format!("{}.a.b.c.d", b64url(br#"{"alg":"RSA-OAEP"}"#)),
        ),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "key-a"}), &good),
        ),
        (
            "HS256",
            hs256(b"secret", json!({"alg": "HS256", "kid": "key-a"}), &good),
        ),
        ("crit", sign_with_header(&key, header, &good)),
        (
            "claims not JSON",
            format!("{}.bm90LWpzb24.c2ln", b64url(br#"{"alg":"RS256"}"#)),
        ),
        (
            "long expired",
            sign(&key, &with("exp", json!(now() - 3600))),
        ),
        (
            "string exp",
            sign(&key, &with("exp", json!((now() + 300).to_string()))),
        ),
        ("no exp", sign(&key, &no_exp)),
        (
            "oversize",
            sign(&key, &with("pad", json!("x".repeat(9000)))),
        ),
    ]
}

#[tokio::test]
async fn garbage_is_401_even_before_the_provider_is_resolved() {
    let idp = FakeIdp::start().await;
    idp.set_discovery(false);
    let upstream = Upstream::start().await;
    let apis = format!(
        "{}\n[[api]]\nname = \"both\"\npath_prefix = \"/both\"\nupstream = \"{}\"\nvalidation = \"jwt+introspection\"\naudience = [\"{AUDIENCE}\"]\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
        jwt_orders(&upstream),
        upstream.url()
    );
    let gw = Gateway::start(&config_with(&idp.issuer(), "", &apis)).await;
    eventually(Duration::from_secs(10), "a failed discovery", || async {
        idp.discovery_count() >= 1
    })
    .await;
    for path in ["/orders/1", "/both/1"] {
        for (what, token) in garbage(&idp.issuer()) {
            let resp = get(&gw, path, &token).await;
            let status = resp.status();
            assert_eq!(status, 401, "{what} on {path}");
            assert_rejected(resp, 401, Some("invalid_token"), &upstream).await;
        }
        // A token that may well be good: only the provider's keys can tell.
        let key = SigningKey::rsa_a("key-a");
        let plausible = okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300);
        let resp = get(&gw, path, &sign(&key, &plausible)).await;
        assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    }
    assert_eq!(idp.jwks_count(), 0);
    assert_eq!(idp.introspection_count(), 0);
}
