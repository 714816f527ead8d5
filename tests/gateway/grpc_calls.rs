//! gRPC end to end over HTTP/2 upstreams (`upstream_protocol = "http2"`): unary and every
//! streaming kind pass with one cached token, trailers (status and custom metadata) reach the
//! client, the server sees the identity headers, and a `grpc-timeout` shorter than the API's
//! `timeout` ends the call with DEADLINE_EXCEEDED in about that time.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tonic::Code;

use crate::common::gateway::Gateway;
use crate::common::grpc::{GrpcServer, Note, NotesClient, note};
use crate::common::idp::TestIdp;
use crate::common::{base_config, toml_string};

struct Setup {
    idp: TestIdp,
    server: GrpcServer,
    gateway: Gateway,
    token: String,
}

/// The `notes` API over h2c to the tonic server, identity headers on, `timeout = "10s"`.
async fn setup() -> Setup {
    let idp = TestIdp::start().await;
    let server = GrpcServer::start().await;
    let api = format!(
        "[[api]]\nname = \"notes\"\npath_prefix = \"/test.Notes\"\nupstream = {}\nupstream_protocol = \"http2\"\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\nexpose_headers = true\ntimeout = \"10s\"\n",
        toml_string(&server.url())
    );
    let gateway = Gateway::start(&base_config(&idp.issuer, &api)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        idp,
        server,
        gateway,
        token,
    }
}

async fn collect(stream: tonic::Streaming<Note>) -> Vec<Note> {
    stream.map(|n| n.expect("a note")).collect().await
}

#[tokio::test]
async fn unary_and_every_streaming_kind_pass_with_one_cached_token() {
    let s = setup().await;
    let before = s.idp.stats().await.introspection;
    let mut client = NotesClient::connect(s.gateway.proxy, Some(&s.token)).await;

    let echoed = client.echo(note("hello", 7)).await.expect("unary");
    assert_eq!(echoed.into_inner(), note("hello", 7));

    let repeated = client
        .repeat(note("again", 3))
        .await
        .expect("server streaming");
    let notes = collect(repeated.into_inner()).await;
    assert_eq!(
        notes,
        [note("again", 0), note("again", 1), note("again", 2)]
    );

    let joined = client
        .join(vec![note("a", 0), note("b", 0), note("c", 0)])
        .await
        .expect("client streaming");
    assert_eq!(joined.into_inner(), note("a b c", 3));

    let outbound = futures_util::stream::iter([note("x", 1), note("y", 2)]);
    let chat = client.chat(outbound).await.expect("bidi streaming");
    assert_eq!(
        collect(chat.into_inner()).await,
        [note("x", 1), note("y", 2)]
    );

    assert_eq!(s.server.calls(), 4);
    for headers in s.server.headers() {
        assert_eq!(headers["x-agw-client_id"], "orders-app", "{headers:?}");
        assert_eq!(headers["te"], "trailers", "{headers:?}");
        assert_eq!(headers["content-type"], "application/grpc", "{headers:?}");
    }
    let introspected = s.idp.stats().await.introspection - before;
    assert_eq!(introspected, 1, "one introspection for four calls");
    let logs = s.gateway.wait_access_logs(4).await;
    assert!(logs.iter().all(|l| l["decision"] == "allowed"), "{logs:?}");
}

#[tokio::test]
async fn trailers_carry_the_status_and_custom_metadata_to_the_client() {
    let s = setup().await;
    let mut client = NotesClient::connect(s.gateway.proxy, Some(&s.token)).await;
    let response = client
        .repeat(note("fail", 2))
        .await
        .expect("the stream starts");
    let mut stream = response.into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap(), note("fail", 0));
    assert_eq!(stream.next().await.unwrap().unwrap(), note("fail", 1));
    // After messages, the status can only have come in the trailers.
    let status = stream
        .next()
        .await
        .unwrap()
        .expect_err("the stream's status");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert_eq!(status.message(), "the stream ends badly");
    assert_eq!(status.metadata().get("x-checksum").unwrap(), "c0ffee");

    // And a clean end: OK in the trailers, no error.
    let ok = client.repeat(note("fine", 1)).await.expect("the stream");
    assert_eq!(collect(ok.into_inner()).await, [note("fine", 0)]);
}

/// A gRPC message frame: uncompressed, its length, the encoded message.
fn frame(message: &Note) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// A raw HTTP/2 call: tonic's channel enforces the same deadline on its own and would answer
/// CANCELLED first, so the DEADLINE_EXCEEDED here can only be the gateway's.
#[tokio::test]
async fn a_grpc_timeout_shorter_than_the_api_timeout_ends_the_call_in_about_that_time() {
    let s = setup().await;
    let tcp = tokio::net::TcpStream::connect(s.gateway.proxy)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2c to the gateway");
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/test.Notes/Slow", s.gateway.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "400m")
        .header("authorization", format!("Bearer {}", s.token))
        .body(Full::new(frame(&note("slow", 5000))))
        .unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.expect("an answer");
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert!(took >= Duration::from_millis(350), "after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "the API's 10 s is not what ended it: {took:?}"
    );

    // The server was told the time left, never more than the client asked for.
    let seen = s.server.headers();
    let sent = seen[0]["grpc-timeout"].to_str().unwrap().to_owned();
    let (digits, unit) = sent.split_at(sent.len() - 1);
    let nanos: u64 = digits.parse::<u64>().unwrap()
        * match unit {
            "n" => 1,
            "u" => 1_000,
            "m" => 1_000_000,
            other => panic!("unit {other}"),
        };
    assert!(nanos <= 400_000_000 && nanos > 100_000_000, "{sent}");

    let log = s
        .gateway
        .wait_log("the timed-out call", |l| l["reason"] == "upstream_timeout")
        .await;
    assert_eq!(log["status"], 504);
    assert_eq!(log["grpc_status"], 4);
}
