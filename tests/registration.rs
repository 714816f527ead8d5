//! Client registration at the provider, through the `tollgate` library (no CLI drives it yet):
//! against the real oidc-provider (RFC 7591 registration behind an initial access token, RFC 7592
//! management with rotating registration access tokens) and against a fake of Okta's
//! `/oauth2/v1/clients` with faults on demand. Every outcome is checked at the provider: what it
//! counted, and what clients it holds.

// Panicking is how these tests fail, so unwrap/expect (with messages) are the point, not a smell.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "gateway/common/fake_okta.rs"]
mod fake_okta;
#[allow(dead_code)]
#[path = "gateway/common/idp.rs"]
mod idp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_okta::{FakeOkta, Fault};
use idp::TestIdp;
use serde_json::json;
use tollgate::clock::SystemClock;
use tollgate::config::{self, Settings};
use tollgate::provider::{
    ClientChanges, ClientRequest, Deleted, Provider, ProviderError, RegistrationError, Rotation,
};

const API_TOKEN: &str = "00okta-api-token-under-test";

const API: &str = r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "http://127.0.0.1:9"
clients = ["app"]
"#;

/// A config for `issuer`; `provider_lines` go into `[provider]`. `${TOKEN}` is the Okta API token.
fn settings(issuer: &str, provider_lines: &str) -> Settings {
    let text = format!(
        "[provider]\nissuer = \"{issuer}\"\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"s\"\n{provider_lines}\n{API}"
    );
    let env = HashMap::from([("TOKEN".to_owned(), API_TOKEN.to_owned())]);
    config::parse(&text, &env).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

/// A provider whose endpoints are resolved (configured for the fake, discovered for the real one).
async fn provider(settings: Settings) -> Arc<Provider> {
    let provider =
        Provider::new(settings.providers[0].clone(), false, Arc::new(SystemClock)).unwrap();
    provider.resolve().await.unwrap();
    provider
}

/// The fake Okta's provider: every endpoint configured (only registration is called).
async fn okta(fake: &FakeOkta, lines: &str) -> Arc<Provider> {
    let issuer = fake.issuer();
    provider(settings(
        &issuer,
        &format!(
            "authorize_url = \"{issuer}/v1/authorize\"\ntoken_url = \"{issuer}/v1/token\"\nintrospection_url = \"{issuer}/v1/introspect\"\njwks_url = \"{issuer}/v1/keys\"\nregistration_url = \"{}\"\n{lines}",
            fake.registration_url()
        ),
    ))
    .await
}

const MANAGED: &str =
    "registration_authorization = \"SSWS ${TOKEN}\"\nupdate_in_idp = true\ndelete_in_idp = true";

/// A machine-to-machine client as Okta wants one.
fn service(name: &str) -> ClientRequest {
    ClientRequest {
        name: name.to_owned(),
        grant_types: vec!["client_credentials".to_owned()],
        response_types: vec!["token".to_owned()],
        redirect_uris: vec![],
        application_type: Some("service".to_owned()),
    }
}

#[tokio::test]
async fn okta_create_find_exactly_update_rotate_delete_and_delete_again() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let legacy = fake.add_client("tollgate-orders-legacy");
    let provider = okta(&fake, MANAGED).await;
    let reg = provider.registration().unwrap();

    let created = reg.create(&service("orders")).await.unwrap();
    let secret = created
        .client_secret
        .clone()
        .expect("a new client has a secret");
    let sent = &fake.calls()[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some(format!("SSWS {API_TOKEN}").as_str())
    );
    let body = sent.body.clone().unwrap();
    assert_eq!(body["client_name"], "tollgate-orders");
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["application_type"], "service");
    assert_eq!(
        fake.client_names(),
        ["tollgate-orders-legacy", "tollgate-orders"]
    );

    // One client a page: the search follows `Link: rel="next"` and compares names exactly.
    fake.set_page_size(1);
    let found = reg.find_by_name("orders").await.unwrap().expect("found");
    assert_eq!(found.client_id, created.client_id);
    assert_ne!(found.client_id, legacy);
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.query.as_deref().is_some_and(|q| q.contains("after=")))
    );
    assert_eq!(
        reg.find_by_name("order").await.unwrap(),
        None,
        "a prefix is not a match"
    );

    let uris = vec!["https://orders.example/cb".to_owned()];
    let changes = ClientChanges {
        redirect_uris: Some(uris.clone()),
        ..Default::default()
    };
    let updated = reg.update(&created.to_ref(), &changes).await.unwrap();
    let held = fake
        .clients()
        .into_iter()
        .find(|c| c["client_id"] == created.client_id.as_str())
        .unwrap();
    assert_eq!(held["redirect_uris"], json!(uris));
    assert_eq!(
        held["grant_types"],
        json!(["client_credentials"]),
        "merged, not replaced"
    );
    assert_eq!(held["application_type"], "service");
    assert_eq!(
        held["client_secret"],
        secret.expose(),
        "an update keeps the secret"
    );
    assert_eq!(updated.client_name.as_deref(), Some("tollgate-orders"));

    let Rotation::Rotated(rotated) = reg.rotate_secret(&created.to_ref()).await.unwrap() else {
        panic!("Okta rotates")
    };
    let new_secret = rotated.client_secret.clone().unwrap();
    assert_ne!(new_secret, secret);
    let held = fake
        .clients()
        .into_iter()
        .find(|c| c["client_id"] == created.client_id.as_str())
        .unwrap();
    assert_eq!(held["client_secret"], new_secret.expose());

    assert_eq!(
        reg.delete(&created.to_ref()).await.unwrap(),
        Deleted::Removed
    );
    assert_eq!(fake.client_names(), ["tollgate-orders-legacy"]);
    assert_eq!(
        reg.delete(&created.to_ref()).await.unwrap(),
        Deleted::AlreadyGone
    );
    assert!(matches!(
        reg.read(&created.to_ref()).await,
        Err(RegistrationError::Gone(_))
    ));
    assert_eq!(
        fake.client_names(),
        ["tollgate-orders-legacy"],
        "the hand-made client is untouched"
    );
}

#[tokio::test]
async fn an_invalid_api_token_is_a_broken_credential_not_a_gone_client() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, MANAGED).await;
    let reg = provider.registration().unwrap();
    let created = reg.create(&service("orders")).await.unwrap();

    fake.fail_next(Fault::InvalidToken);
    let e = reg.delete(&created.to_ref()).await.unwrap_err();
    let RegistrationError::CredentialBroken(problem) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(problem.error_code.as_deref(), Some("E0000011"));
    assert_eq!(
        problem.error_summary.as_deref(),
        Some("Invalid token provided")
    );
    assert!(e.to_string().contains("fix it"), "{e}");
    assert_eq!(
        fake.clients().len(),
        1,
        "the refused delete deleted nothing"
    );

    // A token the provider does not know, without any fault: the same.
    let wrong = okta(&fake, "registration_authorization = \"SSWS not-the-token\"").await;
    let e = wrong
        .registration()
        .unwrap()
        .create(&service("billing"))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistrationError::CredentialBroken(_)), "{e:?}");
    assert!(!format!("{e:?}{e}").contains("not-the-token"));
    assert_eq!(fake.client_names(), ["tollgate-orders"]);
}

#[tokio::test]
async fn a_429_is_rate_limited_with_okta_s_reset_and_changes_nothing() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, MANAGED).await;
    let reg = provider.registration().unwrap();
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 42;
    fake.fail_next(Fault::RateLimited { reset });

    let e = reg.create(&service("orders")).await.unwrap_err();
    let RegistrationError::RateLimited {
        reset: Some(at),
        problem,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*at, UNIX_EPOCH + Duration::from_secs(reset));
    assert_eq!(problem.error_code.as_deref(), Some("E0000047"));
    assert!(fake.clients().is_empty());

    reg.create(&service("orders")).await.unwrap();
    assert_eq!(fake.client_names(), ["tollgate-orders"]);
    assert_eq!(fake.call_count(), 2);
}

#[tokio::test]
async fn a_lost_201_is_found_by_name_and_adopted_leaving_one_client() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, MANAGED).await;
    let reg = provider.registration().unwrap();
    fake.fail_next(Fault::LoseAnswer);

    let e = reg.create(&service("orders")).await.unwrap_err();
    assert!(matches!(e, RegistrationError::Unavailable(_)), "{e:?}");
    assert_eq!(fake.clients().len(), 1, "the provider made it all the same");

    let adopted = reg
        .find_by_name("orders")
        .await
        .unwrap()
        .expect("adoptable");
    assert_eq!(
        adopted.client_id,
        fake.clients()[0]["client_id"].as_str().unwrap()
    );
    assert!(adopted.client_secret.is_none(), "a list shows no secret");
    let Rotation::Rotated(known) = reg.rotate_secret(&adopted.to_ref()).await.unwrap() else {
        panic!("Okta rotates")
    };
    let held = fake.clients();
    assert_eq!(held.len(), 1, "exactly one client at the provider");
    assert_eq!(
        held[0]["client_secret"],
        known.client_secret.unwrap().expose()
    );
    let creates = fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/clients"))
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn a_duplicate_name_is_rejected_with_okta_s_fields() {
    let fake = FakeOkta::start(API_TOKEN).await;
    fake.add_client("tollgate-orders");
    let provider = okta(&fake, MANAGED).await;
    let e = provider
        .registration()
        .unwrap()
        .create(&service("orders"))
        .await
        .unwrap_err();
    let RegistrationError::Rejected {
        status,
        error,
        description,
        problem,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((*status, error.as_deref()), (400, Some("E0000001")));
    assert!(
        description.as_deref().unwrap().contains("already exists"),
        "{description:?}"
    );
    assert!(problem.error_id.is_some());
    assert_eq!(
        problem.error_summary.as_deref(),
        Some("Api validation failed: client_name")
    );
    assert_eq!(fake.clients().len(), 1);
}

#[tokio::test]
async fn several_clients_with_the_exact_name_are_ambiguous() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, MANAGED).await;
    let reg = provider.registration().unwrap();
    reg.create(&service("orders")).await.unwrap();
    // Okta itself refuses the duplicate; one made before the rule (or by another path) is not.
    fake.add_client("tollgate-billing");
    fake.add_client("tollgate-billing");
    let e = reg.find_by_name("billing").await.unwrap_err();
    assert!(
        matches!(&e, RegistrationError::Ambiguous(ids) if ids.len() == 2),
        "{e:?}"
    );
    assert_eq!(fake.clients().len(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_after_registration_timeout() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(
        &fake,
        &format!("{MANAGED}\nregistration_timeout = \"300ms\""),
    )
    .await;
    let reg = provider.registration().unwrap();
    let created = reg.create(&service("orders")).await.unwrap();
    fake.fail_next(Fault::Slow(Duration::from_secs(5)));
    let started = Instant::now();
    let e = reg.read(&created.to_ref()).await.unwrap_err();
    assert_eq!(e, RegistrationError::Unavailable(ProviderError::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.client_names(), ["tollgate-orders"]);
}

#[tokio::test]
async fn updates_and_deletes_stay_off_the_provider_unless_enabled() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, "registration_authorization = \"SSWS ${TOKEN}\"").await;
    let reg = provider.registration().unwrap();
    let created = reg.create(&service("orders")).await.unwrap();
    let changes = ClientChanges {
        name: Some("renamed".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        reg.update(&created.to_ref(), &changes).await.unwrap_err(),
        RegistrationError::Disabled("provider.update_in_idp")
    );
    assert_eq!(
        reg.delete(&created.to_ref()).await.unwrap_err(),
        RegistrationError::Disabled("provider.delete_in_idp")
    );
    assert_eq!(fake.call_count(), 1, "only the create reached the provider");
    assert_eq!(fake.client_names(), ["tollgate-orders"]);
}

#[tokio::test]
async fn secrets_never_show_in_debug() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, MANAGED).await;
    let created = provider
        .registration()
        .unwrap()
        .create(&service("orders"))
        .await
        .unwrap();
    let secret = created.client_secret.clone().unwrap();
    let shown = format!("{created:?}{:?}", created.to_ref());
    assert!(!shown.contains(secret.expose()), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!format!("{:?}", provider.settings).contains(API_TOKEN));
}

#[tokio::test]
async fn registration_needs_an_endpoint_and_a_credential() {
    let fake = FakeOkta::start(API_TOKEN).await;
    let provider = okta(&fake, "").await;
    assert!(matches!(
        provider.registration(),
        Err(RegistrationError::NotConfigured(_))
    ));
    assert_eq!(fake.call_count(), 0);
}

#[test]
fn the_registration_keys_have_defaults_and_are_checked() {
    let s = settings("https://idp.test/oauth2/default", "");
    let r = &s.providers[0].registration;
    assert_eq!(r.timeout, Duration::from_secs(5));
    assert!(!r.update_in_idp && !r.delete_in_idp);
    assert_eq!(r.client_name_prefix, "tollgate-");
    for (line, path) in [
        ("client_name_prefix = \"\"", "provider.client_name_prefix"),
        (
            "client_name_prefix = \"tg app\"",
            "provider.client_name_prefix",
        ),
        (
            "client_name_prefix = \"tollgate-tollgate-tollgate-tollgate\"",
            "provider.client_name_prefix",
        ),
        (
            "registration_timeout = \"0s\"",
            "provider.registration_timeout",
        ),
        ("update_in_idp = \"yes\"", "provider.update_in_idp"),
    ] {
        let text = format!(
            "[provider]\nissuer = \"https://idp.test/oauth2/default\"\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"s\"\n{line}\n{API}"
        );
        let e = config::parse(&text, &HashMap::new()).unwrap_err();
        assert_eq!(e.path, path, "{line}: {e}");
    }
}

/// The real provider, with `authorization` as the registration credential; updates and deletes on.
async fn real(idp: &TestIdp, authorization: &str) -> Arc<Provider> {
    provider(settings(
        &idp.issuer,
        &format!("registration_authorization = \"{authorization}\"\nupdate_in_idp = true\ndelete_in_idp = true"),
    ))
    .await
}

/// A machine-to-machine client as RFC 7591 servers want one.
fn m2m(name: &str) -> ClientRequest {
    ClientRequest {
        name: name.to_owned(),
        grant_types: vec!["client_credentials".to_owned()],
        ..Default::default()
    }
}

#[tokio::test]
async fn rfc7592_lifecycle_at_the_real_provider() {
    let idp = TestIdp::start_with_registration().await;
    let iat = idp.initial_access_token.clone().unwrap();
    let provider = real(&idp, &format!("Bearer {iat}")).await;
    let reg = provider.registration().unwrap();

    let created = reg.create(&m2m("orders")).await.unwrap();
    let secret = created.client_secret.clone().unwrap();
    assert!(
        created.registration_access_token.is_some() && created.registration_client_uri.is_some()
    );
    assert_eq!(
        idp.token_status(&created.client_id, secret.expose()).await,
        200
    );
    assert!(matches!(
        reg.find_by_name("orders").await,
        Err(RegistrationError::Unsupported(_))
    ));

    let renamed = ClientChanges {
        name: Some("orders-renamed".to_owned()),
        ..Default::default()
    };
    let updated = reg.update(&created.to_ref(), &renamed).await.unwrap();
    assert_ne!(
        updated.registration_access_token, created.registration_access_token,
        "rotated on update"
    );
    let read = reg.read(&updated.to_ref()).await.unwrap();
    assert_eq!(read.client_name.as_deref(), Some("tollgate-orders-renamed"));
    assert_eq!(
        read.metadata["grant_types"],
        json!(["client_credentials"]),
        "merged"
    );
    assert_eq!(
        idp.token_status(&created.client_id, secret.expose()).await,
        200,
        "secret kept"
    );

    // oidc-provider keeps the secret on a PUT without one (RFC 7592 §2.2 lets it): Kept, with
    // the client's new registration access token.
    let Rotation::Kept(kept) = reg.rotate_secret(&read.to_ref()).await.unwrap() else {
        panic!("oidc-provider keeps secrets")
    };
    assert_eq!(kept.client_secret, Some(secret.clone()));

    assert_eq!(reg.delete(&kept.to_ref()).await.unwrap(), Deleted::Removed);
    assert_eq!(
        idp.token_status(&created.client_id, secret.expose()).await,
        401,
        "gone at the provider"
    );
    assert_eq!(
        reg.delete(&kept.to_ref()).await.unwrap(),
        Deleted::AlreadyGone
    );
    let stats = idp.stats().await;
    assert_eq!(
        (stats.registration, stats.registration_management),
        (1, 7),
        "{stats:?}"
    );
}

#[tokio::test]
async fn the_real_provider_takes_ssws_as_initial_access_token_and_refuses_a_wrong_one() {
    let idp = TestIdp::start_with_registration().await;
    let iat = idp.initial_access_token.clone().unwrap();
    let provider = real(&idp, &format!("SSWS {iat}")).await;
    let created = provider
        .registration()
        .unwrap()
        .create(&m2m("orders"))
        .await
        .unwrap();
    // Managed through RFC 7592 all the same: the client carries its own credential.
    let read = provider
        .registration()
        .unwrap()
        .read(&created.to_ref())
        .await
        .unwrap();
    assert_eq!(read.client_id, created.client_id);

    let wrong = real(&idp, "Bearer not-the-initial-access-token").await;
    let e = wrong
        .registration()
        .unwrap()
        .create(&m2m("billing"))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistrationError::CredentialBroken(_)), "{e:?}");
    let stats = idp.stats().await;
    assert_eq!(
        (stats.registration, stats.registration_management),
        (2, 1),
        "{stats:?}"
    );
}
