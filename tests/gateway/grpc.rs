//! gRPC: refusals reach a real tonic client as gRPC statuses (a Trailers-Only answer), never as an
//! HTTP error it cannot read, and the gRPC server behind the gateway is never called for them;
//! a malformed `grpc-timeout` is refused.
//!
//! The real binary runs between a real tonic client and server (`common::grpc`), with tokens from
//! the real test OpenID provider.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tonic::Code;

use crate::common::gateway::{Gateway, cli};
use crate::common::grpc::{GrpcServer, NotesClient, note};
use crate::common::idp::TestIdp;
use crate::common::postgres::sqlite_url;
use crate::common::{base_config, client, toml_string};

/// The `notes` API in front of `upstream`, for `orders-app` with `mulescope`, then `extra`.
fn notes_api(upstream: &str, extra: &str) -> String {
    format!(
        "[[api]]\nname = \"notes\"\npath_prefix = \"/test.Notes\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(upstream)
    )
}

struct Setup {
    idp: TestIdp,
    server: GrpcServer,
    gateway: Gateway,
}

async fn setup(api_extra: &str) -> Setup {
    let idp = TestIdp::start().await;
    let server = GrpcServer::start().await;
    let gateway = Gateway::start(&base_config(
        &idp.issuer,
        &notes_api(&server.url(), api_extra),
    ))
    .await;
    gateway.wait_ready().await;
    Setup {
        idp,
        server,
        gateway,
    }
}

/// A gRPC status with `code` and a non-empty message, and the server never called.
fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    server: &GrpcServer,
) -> tonic::Status {
    let status = result.expect_err("a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
    assert_eq!(server.calls(), 0, "a refused call reached the server");
    status
}

#[tokio::test]
async fn refusals_are_grpc_statuses_and_never_reach_the_server() {
    let s = setup("[[api.rule]]\npaths = [\"/test.Notes/Join\"]\nscopes = [\"notes:admin\"]").await;
    let mut anonymous = NotesClient::connect(s.gateway.proxy, None).await;
    let status = assert_status(
        anonymous.echo(note("hi", 1)).await,
        Code::Unauthenticated,
        &s.server,
    );
    assert_eq!(status.message(), "an access token is required");
    let challenge = status.metadata().get("www-authenticate").unwrap();
    assert_eq!(challenge, "Bearer realm=\"notes\"");

    let mut forged = NotesClient::connect(s.gateway.proxy, Some("not-a-live-token")).await;
    assert_status(
        forged.echo(note("hi", 1)).await,
        Code::Unauthenticated,
        &s.server,
    );

    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    let mut allowed = NotesClient::connect(s.gateway.proxy, Some(&token)).await;
    let status = assert_status(
        allowed.join(vec![note("a", 0)]).await,
        Code::PermissionDenied,
        &s.server,
    );
    // Percent-decoded by the client: the parentheses and spaces went through as sent.
    assert_eq!(
        status.message(),
        "the access token lacks the required scope (notes:admin)"
    );

    // The access log keeps the reason and the HTTP status each refusal stands for.
    let logs = s.gateway.wait_access_logs(3).await;
    let seen: Vec<_> = logs
        .iter()
        .map(|l| {
            (
                l["status"].clone(),
                l["grpc_status"].clone(),
                l["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (401.into(), 16.into(), "missing_token".into()),
            (401.into(), 16.into(), "token_inactive".into()),
            (403.into(), 7.into(), "insufficient_scope".into()),
        ]
    );
}

#[tokio::test]
async fn a_provider_outage_is_unavailable() {
    let Setup {
        idp,
        server,
        gateway,
    } = setup("").await;
    let port = idp.port;
    drop(idp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(Instant::now() < deadline, "the provider did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = NotesClient::connect(gateway.proxy, Some("unseen-token")).await;
    let status = assert_status(client.echo(note("hi", 1)).await, Code::Unavailable, &server);
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
}

#[tokio::test]
async fn a_spent_tier_is_resource_exhausted() {
    let idp = TestIdp::start().await;
    let server = GrpcServer::start().await;
    let store = sqlite_url();
    let registry = format!(
        "[registry]\nstore = {}\nrefresh_interval = \"200ms\"\n",
        toml_string(&store.url)
    );
    let api = notes_api(&server.url(), "upstream_protocol = \"http2\"")
        .replace("clients = [\"orders-app\"]\n", "");
    let config = base_config(&idp.issuer, &format!("{registry}\n{api}"));
    for args in [
        &["app", "import", "shop", "--client-id", "orders-app"][..],
        &[
            "tier",
            "create",
            "notes",
            "bronze",
            "--limit",
            "1/1h",
            "--auto-approve",
        ],
        &["contract", "request", "shop", "notes", "--tier", "bronze"],
    ] {
        let out = cli(args, Some(&config), &[]).await;
        assert_eq!(out.status, 0, "tollgate {args:?}: {out:?}");
    }
    let gateway = Gateway::start(&config).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let mut client = NotesClient::connect(gateway.proxy, Some(&token)).await;
    let first = client
        .echo(note("first", 1))
        .await
        .expect("the tier allows one");
    assert_eq!(first.into_inner(), note("first", 1));
    assert_eq!(server.calls(), 1);
    let status = client
        .echo(note("second", 1))
        .await
        .expect_err("over the tier");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
    assert!(
        status.metadata().get("ratelimit-policy").is_some(),
        "{status:?}"
    );
    assert_eq!(server.calls(), 1, "the refused call reached the server");
}

/// `grpc-timeout` per the gRPC spec, or refused as INVALID_ARGUMENT before anything is forwarded.
#[tokio::test]
async fn a_malformed_grpc_timeout_is_invalid_argument_and_grpc_is_told_by_post_and_content_type() {
    let s = setup("").await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    for bad in ["", "1", "123456789m", "1.5S", "5s", "-1S"] {
        let resp = client()
            .post(s.gateway.url("/test.Notes/Echo"))
            .bearer_auth(&token)
            .header("content-type", "application/grpc")
            .header("grpc-timeout", bad)
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .expect("a request");
        assert_eq!(resp.status(), 200, "{bad:?}");
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "3", "{bad:?}");
        let message = resp.headers()["grpc-message"].to_str().unwrap().to_owned();
        assert!(message.contains("grpc-timeout"), "{message}");
        assert!(
            resp.bytes().await.unwrap().is_empty(),
            "Trailers-Only: no body"
        );
    }
    // gRPC-Web is answered in its own family; a GET is never taken for gRPC.
    let resp = client()
        .post(s.gateway.url("/test.Notes/Echo"))
        .header("content-type", "application/grpc-web+proto")
        .send()
        .await
        .expect("a request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc-web");
    assert_eq!(resp.headers()["grpc-status"], "16");
    let resp = client()
        .get(s.gateway.url("/test.Notes/Echo"))
        .header("content-type", "application/grpc")
        .send()
        .await
        .expect("a request");
    assert_eq!(resp.status(), 401);
    assert!(!resp.headers().contains_key("grpc-status"));
    assert_eq!(s.server.calls(), 0);
    // A plain HTTP client is refused as before, in JSON.
    let resp = client()
        .post(s.gateway.url("/test.Notes/Echo"))
        .send()
        .await
        .expect("a request");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/json");
}

/// RFC 9110 §10.1.4: `TE: trailers` is forwarded to an HTTP/2 upstream (gRPC needs it), any other
/// TE value is not.
#[tokio::test]
async fn te_trailers_alone_is_forwarded() {
    use crate::common::upstream::{Upstream, UpstreamBehaviour};
    let idp = TestIdp::start().await;
    // HTTP/2: on HTTP/1.1 TE is this hop's alone, and never forwarded.
    let upstream = Upstream::start_h2c(UpstreamBehaviour::Echo).await;
    let api = notes_api(&upstream.url(), "upstream_protocol = \"http2\"");
    let gateway = Gateway::start(&base_config(&idp.issuer, &api)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    for (te, forwarded) in [
        ("trailers", Some("trailers")),
        ("Trailers", Some("trailers")),
        ("trailers, gzip", None),
        ("gzip", None),
    ] {
        let resp = client()
            .get(gateway.url("/test.Notes/x"))
            .bearer_auth(&token)
            .header("te", te)
            .send()
            .await
            .expect("a request");
        assert_eq!(resp.status(), 200);
        assert_eq!(upstream.last().header("te").as_deref(), forwarded, "{te:?}");
    }
}
