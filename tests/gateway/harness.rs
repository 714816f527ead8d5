//! Self-tests of the harness (recording upstream, fake provider, config and log helpers), so a
//! failing capability test points at the gateway and not at its instruments. None needs the gateway.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::fake_idp::{self, FakeIdp, Reply};
use crate::common::gateway::parse_listening;
use crate::common::upstream::{Upstream, UpstreamBehaviour, closed_port_url};
use crate::common::{base_config, client, config_with, raw_http, toml_string};

async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the answer did not end within 5 s")
        .expect("read answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn upstream_records_the_request_as_sent() {
    let upstream = Upstream::start().await;
    let request = b"POST /a/%2e%2E/b;x?q=%2F&q=2&empty HTTP/1.1\r\n\
        Host: example.test\r\n\
        X-Mixed-Case: One\r\n\
        x-rep: 1\r\n\
        x-rep: 2\r\n\
        x-bin: \xff\xfe\r\n\
        Content-Length: 11\r\n\
        Connection: close\r\n\
        \r\n\
        hello\0world";
    let answer = raw_http(upstream.addr(), request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("X-Upstream").as_deref(), Some("yes"));
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json body");
    assert_eq!(body["target"], "/a/%2e%2E/b;x?q=%2F&q=2&empty");

    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/a/%2e%2E/b;x?q=%2F&q=2&empty");
    assert_eq!(seen.body, b"hello\0world");
    assert_eq!(seen.header("X-MIXED-CASE").as_deref(), Some("One"));
    assert!(
        seen.headers.iter().any(|(n, _)| n == "x-mixed-case"),
        "names are lowercase"
    );
    assert_eq!(seen.headers_named("x-rep"), ["1", "2"]);
    assert_eq!(
        seen.headers
            .iter()
            .find(|(n, _)| n == "x-bin")
            .map(|(_, v)| v.as_slice()),
        Some(&b"\xff\xfe"[..]),
        "values are kept as raw bytes"
    );
    assert!(seen.has_header("content-length"));
    assert!(!seen.has_header("x-absent"));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn upstream_echo_answer() {
    let upstream = Upstream::start().await;
    let resp = client()
        .get(format!("{}/orders/1?x=1", upstream.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = resp.json().await.expect("json body");
    assert_eq!(body, json!({"upstream": "ok", "target": "/orders/1?x=1"}));
    let all = upstream.wait_count(1).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].method, "GET");
}

#[tokio::test]
async fn upstream_status_and_delay_behaviours() {
    let teapot = Upstream::start_with(UpstreamBehaviour::Status(418)).await;
    let resp = client().get(teapot.url()).send().await.expect("request");
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.headers()["x-upstream"], "yes");

    let slow = Upstream::start_with(UpstreamBehaviour::Delay(Duration::from_millis(300))).await;
    let started = Instant::now();
    let resp = client().get(slow.url()).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the answer waited"
    );

    // A client that gives up first sees a timeout, and the request was still recorded.
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("client");
    let err = impatient
        .get(slow.url())
        .send()
        .await
        .expect_err("must time out");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(slow.wait_count(2).await.len(), 2);
}

#[tokio::test]
async fn upstream_not_reached_and_last_assertions() {
    let upstream = Upstream::start().await;
    upstream.assert_not_reached();
    let last = catch_unwind(AssertUnwindSafe(|| upstream.last()));
    assert!(last.is_err(), "last() panics when nothing was seen");

    client().get(upstream.url()).send().await.expect("request");
    let reached = catch_unwind(AssertUnwindSafe(|| upstream.assert_not_reached()));
    let message = reached.expect_err("assert_not_reached panics once reached");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("GET /"),
        "the panic lists what was seen: {message}"
    );
}

#[tokio::test]
async fn upstream_signals_the_first_request_chunk_before_the_body_ends() {
    let upstream = Upstream::streaming().await;
    upstream.release(); // this test is about the request side; let the response finish
    let mut stream = TcpStream::connect(upstream.addr()).await.expect("connect");
    stream
        .write_all(b"PUT /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nconnection: close\r\n\r\nhello")
        .await
        .expect("write head and first half");

    // The second half is not sent yet, so this can only pass if the chunk was seen on its own.
    upstream.first_chunk_seen().await;
    assert_eq!(upstream.count(), 0, "recorded only once the body completes");

    stream.write_all(b"world").await.expect("write second half");
    let answer = read_to_end(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer}");
    assert!(
        answer.contains("first\n") && answer.contains("second\n"),
        "answer: {answer}"
    );
    assert_eq!(upstream.last().body, b"helloworld");
}

#[tokio::test]
async fn upstream_streams_its_answer_until_released() {
    let upstream = Upstream::streaming().await;
    let mut resp = client().get(upstream.url()).send().await.expect("request");
    assert_eq!(resp.status(), 200);

    // "second" is only sent after release, so receiving "first" proves the answer streams.
    let first = resp
        .chunk()
        .await
        .expect("first chunk")
        .expect("a first chunk");
    assert_eq!(&first[..], b"first\n");
    upstream.release();
    let second = resp
        .chunk()
        .await
        .expect("second chunk")
        .expect("a second chunk");
    assert_eq!(&second[..], b"second\n");
    assert!(
        resp.chunk().await.expect("end").is_none(),
        "then the body ends"
    );
}

#[tokio::test]
async fn closed_port_refuses_connections() {
    let url = closed_port_url().await;
    let err = client()
        .get(&url)
        .send()
        .await
        .expect_err("nothing listens");
    assert!(err.is_connect(), "{url}: {err}");
}

#[tokio::test]
async fn fake_idp_discovery() {
    let idp = FakeIdp::start().await;
    let issuer = idp.issuer();
    assert_eq!(issuer, format!("http://{}/oauth2/default", idp.addr()));
    let metadata_url = format!("{issuer}/.well-known/oauth-authorization-server");

    let metadata: serde_json::Value = client()
        .get(&metadata_url)
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(metadata["introspection_endpoint"], idp.introspection_url());
    for (key, path) in [
        ("authorization_endpoint", "authorize"),
        ("token_endpoint", "token"),
        ("jwks_uri", "keys"),
        ("registration_endpoint", "clients"),
    ] {
        assert_eq!(metadata[key], format!("{issuer}/v1/{path}"), "{key}");
    }

    idp.set_discovery(false);
    let resp = client().get(&metadata_url).send().await.expect("discovery");
    assert_eq!(resp.status(), 503);
    idp.set_discovery(true);

    idp.set_metadata_issuer(Some("http://elsewhere.test/oauth2/default".into()));
    let metadata: serde_json::Value = client()
        .get(&metadata_url)
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(metadata["issuer"], "http://elsewhere.test/oauth2/default");

    let fallback = client()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("fallback discovery");
    assert_eq!(fallback.status(), 404, "only RFC 8414 metadata is served");
    assert_eq!(idp.discovery_count(), 4);
    assert_eq!(idp.introspection_count(), 0);
}

#[tokio::test]
async fn fake_idp_records_introspection_calls_and_defaults_to_inactive() {
    let idp = FakeIdp::start().await;
    let resp = client()
        .post(idp.introspection_url())
        .basic_auth("tollgate-introspector", Some("introspector-secret"))
        .form(&[("token", "tok en+1"), ("token_type_hint", "access_token")])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        json!({"active": false})
    );

    let calls = idp.introspections();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.authorization.as_deref(),
        Some("Basic dG9sbGdhdGUtaW50cm9zcGVjdG9yOmludHJvc3BlY3Rvci1zZWNyZXQ=")
    );
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        call.param("token"),
        Some("tok en+1"),
        "form values are decoded"
    );
    assert_eq!(
        call.form,
        [
            ("token".to_owned(), "tok en+1".to_owned()),
            ("token_type_hint".to_owned(), "access_token".to_owned())
        ]
    );
}

#[tokio::test]
async fn fake_idp_reply_kinds() {
    let idp = FakeIdp::start().await;
    let issuer = idp.issuer();
    idp.on_introspect(move |token| match token {
        "good" => {
            let mut answer = fake_idp::active("client-a", "read write", 300);
            answer["iss"] = issuer.clone().into();
            Reply::Json(200, answer)
        }
        "limited" => Reply::Raw(
            429,
            vec![
                ("retry-after".into(), "7".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            "slow down".into(),
        ),
        "slow" => Reply::Delay(
            Duration::from_millis(300),
            Box::new(Reply::Json(500, json!({"error": "server_error"}))),
        ),
        "close" => Reply::Close,
        other => Reply::Json(200, json!({"active": false, "seen": other})),
    });
    let introspect = |token: &'static str| {
        client()
            .post(idp.introspection_url())
            .form(&[("token", token)])
            .send()
    };

    let good: serde_json::Value = introspect("good")
        .await
        .expect("good")
        .json()
        .await
        .expect("json");
    assert_eq!(good["active"], true);
    assert_eq!(good["client_id"], "client-a");
    assert_eq!(good["scope"], "read write");
    assert_eq!(good["iss"], idp.issuer());

    let limited = introspect("limited").await.expect("limited");
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(limited.text().await.expect("body"), "slow down");

    let started = Instant::now();
    let slow = introspect("slow").await.expect("slow");
    assert_eq!(slow.status(), 500);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the reply waited"
    );

    let err = introspect("close")
        .await
        .expect_err("the connection is dropped");
    assert!(!err.is_timeout(), "dropped, not timed out: {err}");

    let other: serde_json::Value = introspect("x")
        .await
        .expect("other")
        .json()
        .await
        .expect("json");
    assert_eq!(other, json!({"active": false, "seen": "x"}));
    assert_eq!(
        idp.introspection_count(),
        5,
        "every call is recorded, even unanswered ones"
    );
}

#[test]
fn active_answer_fields() {
    let before = fake_idp::now();
    let answer = fake_idp::active("client-a", "mulescope", 60);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "client-a");
    assert_eq!(answer["sub"], "client-a");
    assert_eq!(answer["scope"], "mulescope");
    assert_eq!(answer["token_type"], "Bearer");
    let iat = answer["iat"].as_i64().expect("iat");
    assert!(iat >= before && iat <= fake_idp::now());
    assert_eq!(answer["exp"].as_i64(), Some(iat + 60));
    assert!(answer.get("iss").is_none(), "the caller adds iss");
}

#[test]
fn configs_are_valid_toml() {
    let api = "[[api]]\nname = \"orders\"\nupstream = \"http://127.0.0.1:1\"\n";
    let config: toml::Table =
        toml::from_str(&base_config("http://127.0.0.1:1/oauth2/default", api))
            .expect("base_config is TOML");
    assert_eq!(config["listen"]["address"].as_str(), Some("127.0.0.1:0"));
    assert_eq!(
        config["listen"]["admin_address"].as_str(),
        Some("127.0.0.1:0")
    );
    assert_eq!(config["log"]["format"].as_str(), Some("json"));
    assert_eq!(
        config["provider"]["issuer"].as_str(),
        Some("http://127.0.0.1:1/oauth2/default")
    );
    assert_eq!(config["provider"]["request_timeout"].as_str(), Some("2s"));
    assert_eq!(config["api"][0]["name"].as_str(), Some("orders"));

    let config: toml::Table = toml::from_str(&config_with(
        "http://i",
        "introspection_auth = \"client_secret_post\"",
        "[cache]\nmax_ttl = \"1s\"",
    ))
    .expect("config_with is TOML");
    assert_eq!(
        config["provider"]["introspection_auth"].as_str(),
        Some("client_secret_post")
    );
    assert_eq!(config["cache"]["max_ttl"].as_str(), Some("1s"));

    let tricky = "a\"b\\c\u{1}é";
    let parsed: toml::Table =
        toml::from_str(&format!("v = {}", toml_string(tricky))).expect("toml_string");
    assert_eq!(parsed["v"].as_str(), Some(tricky));
}

#[test]
fn listening_event_is_parsed() {
    let json = r#"{"timestamp":"t","level":"INFO","message":"listening","proxy":"127.0.0.1:41234","admin":"127.0.0.1:41235","target":"tollgate::server"}"#;
    let (proxy, admin) = parse_listening(json).expect("json listening line");
    assert_eq!(proxy.port(), 41234);
    assert_eq!(admin.port(), 41235);

    let text = "2025-01-01T00:00:00Z  INFO tollgate::server: listening proxy=127.0.0.1:1 admin=127.0.0.1:2";
    let (proxy, admin) = parse_listening(text).expect("text listening line");
    assert_eq!((proxy.port(), admin.port()), (1, 2));

    assert!(
        parse_listening(r#"{"message":"request","proxy":"127.0.0.1:1","admin":"127.0.0.1:2"}"#)
            .is_none()
    );
    assert!(parse_listening("starting").is_none());
}

#[tokio::test]
async fn refusal_assertions() {
    // The fake provider's raw replies stand in for the gateway's refusals.
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    idp.on_introspect(|token| {
        let json = || ("content-type".to_owned(), "application/json".to_owned());
        let challenge = |value: &str| ("www-authenticate".to_owned(), value.to_owned());
        match token {
            "invalid" => Reply::Raw(
                401,
                vec![
                    json(),
                    challenge(r#"Bearer realm="orders", error="invalid_token", error_description="inactive""#),
                ],
                r#"{"error":"invalid_token","error_description":"the token is not active"}"#.into(),
            ),
            "none" => Reply::Raw(401, vec![challenge(r#"Bearer realm="orders""#)], String::new()),
            "unavailable" => Reply::Raw(
                503,
                vec![json()],
                r#"{"error":"temporarily_unavailable","error_description":"provider down"}"#.into(),
            ),
            _ => Reply::Raw(
                401,
                vec![json(), challenge(r#"Basic realm="orders""#)],
                r#"{"error":"invalid_token","error_description":"x"}"#.into(),
            ),
        }
    });
    let call = |token: &'static str| {
        client()
            .post(idp.introspection_url())
            .form(&[("token", token)])
            .send()
    };

    let body = crate::common::assert_rejected(
        call("invalid").await.expect("invalid"),
        401,
        Some("invalid_token"),
        &upstream,
    )
    .await;
    assert_eq!(body["error_description"], "the token is not active");
    crate::common::assert_rejected(call("none").await.expect("none"), 401, None, &upstream).await;

    // Each of these breaks one rule, so the assertion must panic.
    let cases = [
        ("wrong-scheme", 401, Some("invalid_token")),
        ("invalid", 403, Some("invalid_token")),
        ("invalid", 401, Some("insufficient_scope")),
        ("unavailable", 503, Some("temporarily_unavailable")), // no Retry-After
    ];
    for (token, status, error) in cases {
        let resp = call(token).await.expect("call");
        let outcome =
            tokio::spawn(async move { crate::common::assert_refusal(resp, status, error).await })
                .await;
        assert!(
            outcome.is_err_and(|e| e.is_panic()),
            "{token} as {status} {error:?} must be refused by the assertion"
        );
    }

    client().get(upstream.url()).send().await.expect("reach");
    let resp = call("none").await.expect("none");
    let outcome = tokio::spawn(async move {
        crate::common::assert_rejected(resp, 401, None, &upstream).await;
    })
    .await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "a reached upstream fails the assertion"
    );
}

/// Decodes `token` with `jwk` (a public JWK as `public_jwk()` or a JWKS gives it), checking the
/// signature, `exp`, and `aud`/`iss` when given.
fn verify_with_jwk(
    token: &str,
    jwk: &serde_json::Value,
    alg: jsonwebtoken::Algorithm,
    aud: &str,
    iss: &str,
) -> jsonwebtoken::errors::Result<jsonwebtoken::TokenData<serde_json::Value>> {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("a JWK");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    jsonwebtoken::decode(token, &key, &validation)
}

#[test]
fn signed_tokens_verify_against_the_public_jwks() {
    use crate::common::jwt::{SigningKey, okta_claims, sign};
    use jsonwebtoken::Algorithm;

    let iss = "https://idp.test/oauth2/default";
    for (key, kty) in [
        (SigningKey::rsa_a("kid-a"), "RSA"),
        (SigningKey::rsa_b("kid-b"), "RSA"),
        (SigningKey::ec_p256("kid-ec"), "EC"),
    ] {
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], if kty == "RSA" { "RS256" } else { "ES256" });
        assert!(jwk.get("d").is_none(), "a public JWK has no private part");
        if kty == "EC" {
            assert_eq!(jwk["crv"], "P-256");
        }

        let claims = okta_claims(iss, "orders-app", &["read", "write"], "api://default", 300);
        let token = sign(&key, &claims);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, key.alg);
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));

        let data = verify_with_jwk(&token, &jwk, key.alg, "api://default", iss)
            .unwrap_or_else(|e| panic!("{kty} {}: {e}", key.kid));
        assert_eq!(data.claims, claims);

        // The committed public PEM is the same key.
        let from_pem = match kty {
            "RSA" => jsonwebtoken::DecodingKey::from_rsa_pem(key.public_pem().as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem().as_bytes()),
        }
        .expect("public pem");
        let mut validation = jsonwebtoken::Validation::new(key.alg);
        validation.set_audience(&["api://default"]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &from_pem, &validation)
            .expect("verifies with the public PEM");

        // Wrong audience, and an expired token, are refused.
        assert!(verify_with_jwk(&token, &jwk, key.alg, "api://other", iss).is_err());
        let expired = sign(&key, &okta_claims(iss, "c", &[], "api://default", -600));
        assert!(verify_with_jwk(&expired, &jwk, key.alg, "api://default", iss).is_err());
    }

    // One key's signature does not verify with another's JWK.
    let a = SigningKey::rsa_a("a");
    let b = SigningKey::rsa_b("b");
    let token = sign(&a, &okta_claims(iss, "c", &[], "api://default", 300));
    let err = verify_with_jwk(
        &token,
        &b.public_jwk(),
        Algorithm::RS256,
        "api://default",
        iss,
    )
    .expect_err("rsa-b must not verify rsa-a's signature");
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
}

#[test]
fn hand_built_tokens() {
    use crate::common::jwt::{
        SigningKey, b64url, hs256, okta_claims, sign_with_header, signing_input, unsigned,
    };
    use jsonwebtoken::Algorithm;

    for (input, want) in [
        (&b""[..], ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"\xfb\xff\xbf", "-_-_"),
    ] {
        assert_eq!(b64url(input), want, "{input:?}");
    }

    let claims = okta_claims(
        "https://idp.test/oauth2/default",
        "orders-app",
        &["read"],
        "api://default",
        300,
    );
    let now = crate::common::fake_idp::now();
    assert_eq!(claims["sub"], "orders-app");
    assert_eq!(claims["cid"], "orders-app");
    assert_eq!(claims["scp"], json!(["read"]));
    assert!((claims["iat"].as_i64().expect("iat") - now).abs() <= 1);
    assert_eq!(
        claims["exp"].as_i64(),
        claims["iat"].as_i64().map(|t| t + 300)
    );
    let other = okta_claims("i", "c", &[], "a", 1);
    assert_ne!(claims["jti"], other["jti"], "every jti is new");

    // Any header, signed with the real key: the signature still checks out over what was sent.
    let key = SigningKey::rsa_a("kid-a");
    let header =
        json!({"alg": "RS256", "kid": "kid-a", "jku": "https://evil.test/jwks", "crit": ["exp"]});
    let token = sign_with_header(&key, header.clone(), &claims);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        format!("{}.{}", parts[0], parts[1]),
        signing_input(&header, &claims)
    );
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let message = format!("{}.{}", parts[0], parts[1]);
    assert!(
        jsonwebtoken::crypto::verify(parts[2], message.as_bytes(), &decoding, Algorithm::RS256)
            .expect("verify")
    );

    // An EC key signs with ES256 whatever the header claims.
    let ec = SigningKey::ec_p256("kid-ec");
    let lying = sign_with_header(&ec, json!({"alg": "RS256", "kid": "kid-ec"}), &claims);
    let parts: Vec<&str> = lying.split('.').collect();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(ec.public_jwk()).expect("jwk");
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let message = format!("{}.{}", parts[0], parts[1]);
    assert!(
        jsonwebtoken::crypto::verify(parts[2], message.as_bytes(), &decoding, Algorithm::ES256)
            .expect("verify")
    );

    // alg none: header.claims. with an empty signature.
    let none = unsigned(json!({"alg": "none"}), &claims);
    assert!(none.ends_with('.'));
    assert_eq!(none.split('.').count(), 3);
    assert_eq!(
        none.trim_end_matches('.'),
        signing_input(&json!({"alg": "none"}), &claims)
    );

    // HS256 keyed with the RSA public key's PEM: verifies as HMAC with exactly those bytes.
    assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    let confused = hs256(
        key.public_pem().as_bytes(),
        json!({"alg": "HS256", "typ": "at+jwt", "kid": "kid-a"}),
        &claims,
    );
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_audience(&["api://default"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &confused,
        &jsonwebtoken::DecodingKey::from_secret(key.public_pem().as_bytes()),
        &validation,
    )
    .expect("an HMAC over the PEM bytes");
}

#[tokio::test]
async fn fake_idp_serves_the_jwks_and_counts() {
    use crate::common::jwt::{SigningKey, okta_claims, sign};

    let idp = FakeIdp::start().await;
    let get = || client().get(idp.jwks_url()).send();
    let metadata: serde_json::Value = client()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            idp.issuer()
        ))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(metadata["jwks_uri"], idp.jwks_url());
    assert_eq!(idp.jwks_count(), 0);

    // Default: an empty set, no Cache-Control.
    let resp = get().await.expect("jwks");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("cache-control").is_none());
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        json!({"keys": []})
    );

    // The keys it is given, usable to verify a token.
    let a = SigningKey::rsa_a("kid-a");
    let ec = SigningKey::ec_p256("kid-ec");
    idp.set_jwks(vec![a.public_jwk(), ec.public_jwk()]);
    idp.set_jwks_cache_control(Some("max-age=60".into()));
    let resp = get().await.expect("jwks");
    assert_eq!(resp.headers()["cache-control"], "max-age=60");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let set: jsonwebtoken::jwk::JwkSet = resp.json().await.expect("a JWK set");
    assert_eq!(set.keys.len(), 2);
    let token = sign(
        &ec,
        &okta_claims(&idp.issuer(), "c", &[], "api://default", 60),
    );
    let jwk = set.find("kid-ec").expect("kid-ec published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["api://default"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key"),
        &validation,
    )
    .expect("verifies with the served key");

    // Faults: a 500 (still with the Cache-Control), garbage, a delay, a dropped connection.
    idp.set_jwks_reply(Reply::Json(500, json!({"error": "server_error"})));
    let resp = get().await.expect("jwks");
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["cache-control"], "max-age=60");
    idp.set_jwks_cache_control(None);
    idp.set_jwks_reply(Reply::Raw(
        200,
        vec![("content-type".into(), "application/json".into())],
        "{not json".into(),
    ));
    let resp = get().await.expect("jwks");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("cache-control").is_none());
    assert_eq!(resp.text().await.expect("body"), "{not json");
    idp.set_jwks_reply(Reply::Delay(
        Duration::from_millis(300),
        Box::new(Reply::Json(200, json!({"keys": []}))),
    ));
    let started = Instant::now();
    let resp = get().await.expect("jwks");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        json!({"keys": []})
    );
    idp.set_jwks_reply(Reply::Close);
    get().await.expect_err("the connection is dropped");

    idp.clear_jwks_reply();
    let body: serde_json::Value = get().await.expect("jwks").json().await.expect("json");
    assert_eq!(body["keys"][0]["kid"], "kid-a");
    assert_eq!(body["keys"][1]["kid"], "kid-ec");

    assert_eq!(idp.jwks_count(), 7, "every request counts, answered or not");
    assert_eq!(idp.introspection_count(), 0);
    assert_eq!(idp.discovery_count(), 1);
}

#[tokio::test]
async fn test_idp_rotates_its_signing_key() {
    use crate::common::idp::TestIdp;

    let idp = TestIdp::start_with(json!({"accessTokenFormat": "jwt"})).await;
    let kid_of = |token: &str| {
        jsonwebtoken::decode_header(token)
            .expect("a JWT access token")
            .kid
            .expect("with a kid")
    };
    let jwk_for = |jwks: &serde_json::Value, kid: &str| {
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid)
            .cloned()
            .unwrap_or_else(|| panic!("{kid} not in {jwks}"))
    };

    let before = idp.token("orders-app", "orders-secret", "mulescope").await;
    let old_kid = kid_of(&before);
    let resp = client().get(idp.jwks_url()).send().await.expect("jwks");
    assert!(
        resp.headers().get("cache-control").is_none(),
        "oidc-provider sends no Cache-Control on its JWKS"
    );
    let jwks: serde_json::Value = resp.json().await.expect("jwks json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], old_kid.as_str());

    let new_kid = idp.rotate().await;
    assert_ne!(new_kid, old_kid);
    let after = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_eq!(
        kid_of(&after),
        new_kid,
        "new tokens are signed with the new key"
    );

    let jwks = idp.jwks().await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        [new_kid.as_str(), old_kid.as_str()],
        "new first, old kept"
    );
    for (token, kid) in [(&before, &old_kid), (&after, &new_kid)] {
        let data = verify_with_jwk(
            token,
            &jwk_for(&jwks, kid),
            jsonwebtoken::Algorithm::RS256,
            "api://default",
            &idp.issuer,
        )
        .unwrap_or_else(|e| panic!("a token signed by {kid}: {e}"));
        assert_eq!(data.claims["client_id"], "orders-app");
        assert_eq!(data.claims["scope"], "mulescope");
    }

    // Both stay introspectable, and the stats carried over the rotation.
    for token in [&before, &after] {
        let answer: serde_json::Value = client()
            .post(idp.introspection_url())
            .basic_auth("tollgate-introspector", Some("introspector-secret"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["active"], true, "{answer}");
    }
    let stats = idp.stats().await;
    assert_eq!((stats.token, stats.jwks, stats.introspection), (2, 2, 2));

    // A second rotation keeps every earlier key published.
    let third = idp.rotate().await;
    let jwks = idp.jwks().await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(3), "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], third.as_str());
}

#[tokio::test]
async fn test_idp_jwks_max_age() {
    use crate::common::idp::TestIdp;

    let idp = TestIdp::start_with(json!({"jwksMaxAge": 120})).await;
    let resp = client().get(idp.jwks_url()).send().await.expect("jwks");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "max-age=120");
    idp.rotate().await;
    let resp = client().get(idp.jwks_url()).send().await.expect("jwks");
    assert_eq!(resp.headers()["cache-control"], "max-age=120");
    let jwks: serde_json::Value = resp.json().await.expect("jwks json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
}
