//! Several providers (`[[provider]]`, `[[api]] provider`): each API accepts only its provider's
//! tokens, with its own verdict caches and budget; `/readyz` names a provider that is not ready; a
//! reload that changes one provider keeps the others' caches; `check` and `explain` name the
//! provider. Provider calls are counted at each provider.

use crate::common::fake_idp::{FakeIdp, Reply, active};
use crate::common::gateway::{Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::{assert_refusal, assert_rejected, client};

/// One `[[provider]]` table named `name` at `issuer`, with `extra` lines.
fn provider(name: &str, issuer: &str, extra: &str) -> String {
    format!(
        "[[provider]]\nname = \"{name}\"\nissuer = \"{issuer}\"\nintrospection_client_id = \"tollgate-introspector\"\n\
         introspection_client_secret = \"introspector-secret\"\nrequest_timeout = \"2s\"\n{extra}\n"
    )
}

/// An API at `/{name}` whose tokens `provider` validates.
fn api(name: &str, provider: &str, upstream: &Upstream) -> String {
    format!(
        "[[api]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{}\"\nprovider = \"{provider}\"\n\
         scopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
        upstream.url()
    )
}

fn config(parts: &[String]) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n\n{}",
        parts.join("\n")
    )
}

async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Two FakeIdps that call every token active; APIs `a` (provider a) and `b` (provider b), each
/// with its own upstream.
struct Two {
    a: FakeIdp,
    b: FakeIdp,
    up_a: Upstream,
    up_b: Upstream,
}

impl Two {
    async fn start() -> Two {
        let (a, b) = (FakeIdp::start().await, FakeIdp::start().await);
        for idp in [&a, &b] {
            idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
        }
        Two {
            a,
            b,
            up_a: Upstream::start().await,
            up_b: Upstream::start().await,
        }
    }

    fn config(&self, extra_a: &str, extra_b: &str) -> String {
        config(&[
            provider("a", &self.a.issuer(), extra_a),
            provider("b", &self.b.issuer(), extra_b),
            api("a", "a", &self.up_a),
            api("b", "b", &self.up_b),
        ])
    }
}

#[tokio::test]
async fn a_token_of_one_real_provider_is_refused_at_the_other_providers_api() {
    let (idp_a, idp_b) = (TestIdp::start().await, TestIdp::start().await);
    let (up_a, up_b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&config(&[
        provider("a", &idp_a.issuer, ""),
        provider("b", &idp_b.issuer, ""),
        api("orders", "a", &up_a),
        api("users", "b", &up_b),
    ]))
    .await;
    gw.wait_ready().await;
    let from_a = idp_a
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let from_b = idp_b
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let (before_a, before_b) = (idp_a.stats().await, idp_b.stats().await);

    assert_eq!(get(&gw, "/orders/1", &from_a).await.status(), 200);
    // A's verdict is cached for A's APIs only: B is asked, and B never issued the token.
    assert_rejected(
        get(&gw, "/users/1", &from_a).await,
        401,
        Some("invalid_token"),
        &up_b,
    )
    .await;
    assert_eq!(get(&gw, "/users/1", &from_b).await.status(), 200);
    assert_eq!((up_a.count(), up_b.count()), (1, 1));

    let (after_a, after_b) = (idp_a.stats().await, idp_b.stats().await);
    assert_eq!(
        after_a.introspection - before_a.introspection,
        1,
        "A was asked only by A's API"
    );
    assert_eq!(
        after_b.introspection - before_b.introspection,
        2,
        "B was asked by B's API, for both tokens"
    );
}

#[tokio::test]
async fn a_verdict_cached_for_one_provider_never_serves_another() {
    let two = Two::start().await;
    let gw = Gateway::start(&two.config("", "")).await;
    gw.wait_ready().await;
    assert_eq!(get(&gw, "/a/1", "shared-token").await.status(), 200);
    assert_eq!(get(&gw, "/a/2", "shared-token").await.status(), 200);
    assert_eq!(two.a.introspection_count(), 1, "cached at A");
    // B must be asked itself: A's cache entry is not B's, whatever A said.
    two.b
        .on_introspect(|_| Reply::Json(200, serde_json::json!({"active": false})));
    assert_rejected(
        get(&gw, "/b/1", "shared-token").await,
        401,
        Some("invalid_token"),
        &two.up_b,
    )
    .await;
    assert_eq!(two.b.introspection_count(), 1);
    assert_eq!(
        two.a.introspection_count(),
        1,
        "A was not asked for B's API"
    );
}

#[tokio::test]
async fn a_spent_budget_of_one_provider_does_not_refuse_the_others_misses() {
    let two = Two::start().await;
    let text = two.config("introspection_rate = \"1/h\"\nbudget_wait = \"100ms\"", "");
    let gw = Gateway::start(&text).await;
    gw.wait_ready().await;
    assert_eq!(get(&gw, "/a/1", "first").await.status(), 200);
    assert_refusal(
        get(&gw, "/a/1", "second").await,
        503,
        Some("temporarily_unavailable"),
    )
    .await;
    assert_eq!(
        two.up_a.count(),
        1,
        "the refused request reached no upstream"
    );
    for i in 0..3 {
        let status = get(&gw, "/b/1", &format!("b-token-{i}")).await.status();
        assert_eq!(status, 200, "B's misses spend B's budget");
    }
    assert_eq!(two.a.introspection_count(), 1);
    assert_eq!(two.b.introspection_count(), 3);
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_provider_budget_refusals_total")
                && l.contains("provider=\"a\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn readyz_waits_for_a_provider_that_is_down_and_names_it() {
    let two = Two::start().await;
    two.b.set_discovery(false);
    let gw = Gateway::start(&two.config("", "")).await;
    // A is ready and serves; the gateway is not ready until B is, and says it is B.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if get(&gw, "/a/1", "tok").await.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A never served");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let readyz = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    let body = readyz.text().await.unwrap();
    assert!(body.contains("provider b"), "{body}");
    assert_refusal(
        get(&gw, "/b/1", "tok").await,
        503,
        Some("temporarily_unavailable"),
    )
    .await;
    assert_eq!(two.up_b.count(), 0);
    two.b.set_discovery(true);
    gw.wait_ready().await;
    assert_eq!(get(&gw, "/b/1", "tok").await.status(), 200);
}

#[tokio::test]
async fn a_reload_that_changes_one_provider_keeps_the_others_cache() {
    let two = Two::start().await;
    let gw = Gateway::start(&two.config("", "")).await;
    gw.wait_ready().await;
    assert_eq!(get(&gw, "/a/1", "tok").await.status(), 200);
    assert_eq!(get(&gw, "/b/1", "tok").await.status(), 200);
    assert_eq!(
        (two.a.introspection_count(), two.b.introspection_count()),
        (1, 1)
    );

    gw.rewrite_config(&two.config("", "introspection_auth = \"client_secret_post\""));
    gw.signal("HUP").await;
    gw.wait_log("b rebuilt", |l| {
        l["message"] == "configuration reloaded"
            && l["provider"] == "b"
            && l["kept_provider"] == false
    })
    .await;
    gw.wait_log("a kept", |l| {
        l["message"] == "configuration reloaded" && l["provider"] == "a" && l["kept_caches"] == true
    })
    .await;
    assert_eq!(get(&gw, "/a/2", "tok").await.status(), 200);
    assert_eq!(get(&gw, "/b/2", "tok").await.status(), 200);
    assert_eq!(
        two.a.introspection_count(),
        1,
        "A's cached verdict still serves"
    );
    assert_eq!(two.b.introspection_count(), 2, "B's new caches asked again");
    let last = two.b.introspections().pop().expect("B was asked");
    assert_eq!(
        last.param("client_id"),
        Some("tollgate-introspector"),
        "B's new settings"
    );
}

#[tokio::test]
async fn check_and_explain_name_the_provider() {
    let two = Two::start().await;
    let unused = provider("spare", &two.a.issuer(), "");
    let text = format!("{}\n{unused}", two.config("", ""));
    let out = cli(&["check"], Some(&text), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("provider a: issuer"), "{out:?}");
    assert!(out.stdout.contains("validates for APIs: b"), "{out:?}");
    assert!(out.stdout.contains("provider b endpoints"), "{out:?}");
    assert!(
        out.stderr
            .contains("warning: provider[2]: provider \"spare\" validates no API"),
        "{out:?}"
    );
    let out = cli(&["explain", "--api", "b", "tok"], Some(&text), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("at provider b"), "{out:?}");
    assert_eq!(two.a.introspection_count(), 0, "explain asked only B");
}

#[tokio::test]
async fn bad_provider_configurations_exit_2_naming_the_key() {
    let two = Two::start().await;
    let cases = [
        (
            two.config("", "").replace("provider = \"b\"\n", ""),
            "api[1].provider",
        ),
        (
            two.config("", "")
                .replace("provider = \"b\"\n", "provider = \"c\"\n"),
            "api[1].provider",
        ),
        (
            two.config("", "introspection_url = \"ftp://x\""),
            "provider[1].introspection_url",
        ),
        (
            two.config("", "")
                .replacen("name = \"b\"", "name = \"a\"", 1),
            "provider[1].name",
        ),
    ];
    for (text, key) in cases {
        let out = cli(&["check"], Some(&text), &[]).await;
        assert_eq!(out.status, 2, "{key}: {out:?}");
        assert!(out.stderr.contains(key), "{key}: {out:?}");
    }
    assert_eq!(two.a.introspection_count() + two.b.introspection_count(), 0);
}

#[tokio::test]
async fn dev_validates_every_api_of_a_file_with_several_providers_by_its_sandbox_provider() {
    let (okta, upstream) = (FakeIdp::start().await, Upstream::start().await);
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n\n\
         [dev]\nprovider_address = \"127.0.0.1:0\"\n\n{}{}",
        provider("okta", &okta.issuer(), ""),
        api("orders", "okta", &upstream)
            .replace("clients = [\"orders-app\"]", "clients = [\"dev-app\"]"),
    );
    let gw = Gateway::start_dev(&text, &[]).await;
    gw.wait_ready().await;
    let token = gw
        .dev_token(("dev-app", "dev-secret"), Some("mulescope"))
        .await;
    assert_eq!(get(&gw, "/orders/1", &token).await.status(), 200);
    assert_eq!(upstream.count(), 1);
    assert_eq!(
        okta.introspection_count() + okta.discovery_count(),
        0,
        "the file's provider is not used"
    );
}
