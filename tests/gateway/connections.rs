//! Connections and streams have bounded lifetimes: silent and half-open sockets cannot hold a
//! `max_connections` slot past `header_read_timeout`, idle keep-alive and HTTP/2 connections end at
//! `idle_timeout`, HTTP/2 announces its stream cap and ages out with GOAWAY, stalled bodies (either
//! way) end at `stream_idle_timeout`, `max_body_bytes` gives 413, broken chunked framing gives 400,
//! a per-address cap, and the admin listener's own cap and timeouts.
//!
//! Every test runs the real gateway binary in front of the recording upstream. Tokens are not
//! what these tests are about, so the API is public (no token) unless a test needs the
//! provider; the provider is the in-process fake, which counts the calls it gets.
//!
//! The gateway holds each bound to within a quarter of itself (its watchdog samples at a quarter
//! of the shortest bound), so a close is asserted between [`EARLY`] of the bound (our clock may
//! start after the server's) and the bound plus a quarter plus [`SLACK`] for a loaded machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::fake_idp::FakeIdp;
use crate::common::gateway::{Gateway, cli};
use crate::common::upstream::{Upstream, UpstreamBehaviour};
use crate::common::{
    RawAnswer, base_config, client, orders_api, raw_http, raw_request, read_until_close,
    with_listen,
};

/// How early, as a fraction of a bound, a close may be seen (our clock starts after the server's).
const EARLY: f64 = 0.8;
/// Scheduling slack on a loaded machine, past a bound and its quarter.
const SLACK: Duration = Duration::from_secs(2);
/// How long any single wait in these tests may take before it fails.
const DEADLINE: Duration = Duration::from_secs(6);

/// Every method and path under `/orders` without a token.
const PUBLIC: &str = "[[api.rule]]\npaths = [\"/orders/**\"]\npublic = true\n";

/// The HTTP/2 connection preface (RFC 9113 §3.4) and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

struct Setup {
    idp: FakeIdp,
    upstream: Upstream,
    gateway: Gateway,
}

/// The fake provider, `upstream`, and the gateway with `listen` added to `[listen]` and the
/// orders API with `api` (its keys, then rules).
async fn start(upstream: Upstream, listen: &str, api: &str) -> Setup {
    let idp = FakeIdp::start().await;
    let config = with_listen(
        &base_config(&idp.issuer(), &orders_api(&upstream.url(), api)),
        listen,
    );
    let gateway = Gateway::start(&config).await;
    gateway.wait_ready().await;
    Setup {
        idp,
        upstream,
        gateway,
    }
}

/// Like `start`, with every path under `/orders` public.
async fn start_public(upstream: Upstream, listen: &str) -> Setup {
    start(upstream, listen, PUBLIC).await
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Asserts `elapsed` lies within `bound` as the gateway holds it (see the module's docs).
fn assert_within(what: &str, elapsed: Duration, bound: Duration) {
    assert!(
        elapsed >= bound.mul_f64(EARLY),
        "{what}: after {elapsed:?}, before the bound of {bound:?}"
    );
    let latest = bound + bound / 4 + SLACK;
    assert!(
        elapsed <= latest,
        "{what}: after {elapsed:?}, later than {latest:?} for a bound of {bound:?}"
    );
}

/// Reads until the gateway closes (or resets) the connection; what arrived and when, counted
/// from `since`. Panics if it stays open for [`DEADLINE`].
async fn closed(stream: &mut TcpStream, since: Instant, what: &str) -> (Vec<u8>, Duration) {
    let got = read_until_close(stream, DEADLINE)
        .await
        .unwrap_or_else(|| panic!("{what}: still open after {DEADLINE:?}"));
    (got, since.elapsed())
}

/// A keep-alive `GET target` (no `Connection: close`).
fn keep_alive_get(gateway: &Gateway, target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", gateway.proxy).into_bytes()
}

/// Reads one HTTP/1.1 answer (head, and a Content-Length or chunked body) off a connection that
/// stays open; returns its head.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            if answer_complete(&got) {
                return;
            }
            let n = stream.read(&mut buf).await.expect("reading an answer");
            assert!(
                n > 0,
                "closed mid-answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        read.is_ok(),
        "no complete answer within {DEADLINE:?}: {text:?}"
    );
    text[..text.find("\r\n\r\n").expect("a head")].to_owned()
}

fn answer_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let body = &got[end + 4..];
    match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        Some(n) => body.len() >= n.trim().parse::<usize>().expect("a Content-Length"),
        None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
        None => true,
    }
}

/// `tollgate_connections_closed_total{reason="<reason>"}` on the admin listener's `/metrics`.
async fn closed_total(gateway: &Gateway, reason: &str) -> u64 {
    let text = gateway.metrics().await;
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with("tollgate_connections_closed_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

// 1. Before the first request.

/// Three sockets sending `first` (then nothing) against `max_connections = 2`: one gives way at
/// the cap after a grace, the other two are closed after `header_read_timeout`, none reaches the
/// upstream, and a request is then served at once.
async fn unfinished_starts_are_closed(first: &'static [u8], gives_way: &str) {
    let timeout = ms(400);
    let s = start_public(
        Upstream::start().await,
        "workers = 1\nmax_connections = 2\nheader_read_timeout = \"400ms\"",
    )
    .await;
    let since = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = TcpStream::connect(s.gateway.proxy).await.expect("connect");
        socket.write_all(first).await.expect("the first bytes");
        sockets.push(socket);
    }
    let ends = join_all(
        sockets
            .iter_mut()
            .map(|socket| closed(socket, since, "an unfinished start")),
    )
    .await;
    for (got, _) in &ends {
        assert!(got.is_empty(), "closed without an answer: {got:?}");
    }
    // At the cap one of the three goes early: a silent newcomer is closed after its grace on
    // probation; one that spoke (half a preface) takes the oldest's slot once that is past its
    // grace. The other two meet the head bound.
    let mut at: Vec<Duration> = ends.iter().map(|(_, at)| *at).collect();
    at.sort();
    assert!(
        at[0] < timeout * 3 / 4,
        "one is closed after the grace, not after {:?}",
        at[0]
    );
    for end in &at[1..] {
        assert_within("an unfinished start's close", *end, timeout);
    }
    for reason in ["silent_at_capacity", "shed_at_capacity"] {
        let want = u64::from(reason == gives_way);
        assert_eq!(
            closed_total(&s.gateway, reason).await,
            want,
            "{reason}: exactly one gave way at the cap, as {gives_way}"
        );
    }

    // With a slot still held it would wait for good; freed, it is served without delay.
    assert_served_at_once(&s, "behind the freed slots").await;
    assert_eq!(
        s.upstream.count(),
        1,
        "only the ordinary request reached it"
    );
}

/// An ordinary request is answered 200 within [`SLACK`].
async fn assert_served_at_once(s: &Setup, what: &str) {
    let asked = Instant::now();
    let resp = client()
        .get(s.gateway.url("/orders/1"))
        .send()
        .await
        .expect("an ordinary request");
    assert_eq!(resp.status(), 200);
    assert!(
        asked.elapsed() < SLACK,
        "{what}: served after {:?}, not at once",
        asked.elapsed()
    );
}

/// The abuse case: silent sockets hold every slot and the head bound is long. A legitimate
/// client is served at once (the oldest silent socket gives way after its grace of at most
/// 250 ms), not after the head bound.
#[tokio::test]
async fn at_capacity_a_new_client_takes_a_silent_sockets_slot() {
    let s = start_public(
        Upstream::start().await,
        "workers = 1\nmax_connections = 2\nheader_read_timeout = \"20s\"",
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(s.gateway.proxy).await.expect("connect"));
    }
    assert_served_at_once(&s, "behind two silent sockets").await;
    let since = Instant::now();
    let (got, _) = closed(&mut silent[0], since, "the oldest silent socket").await;
    assert!(got.is_empty(), "shed without an answer: {got:?}");
    // The second silent socket keeps its slot: one was enough.
    let mut buf = [0u8; 1];
    let still = tokio::time::timeout(ms(300), silent[1].read(&mut buf)).await;
    assert!(still.is_err(), "only one is shed: {still:?}");
    assert_eq!(closed_total(&s.gateway, "shed_at_capacity").await, 1);
    assert_eq!(s.upstream.count(), 1);
}

#[tokio::test]
async fn silent_sockets_beyond_max_connections_are_closed_after_header_read_timeout() {
    // A silent newcomer is closed on probation: it sheds nobody.
    unfinished_starts_are_closed(b"", "silent_at_capacity").await;
}

#[tokio::test]
async fn half_h2_prefaces_beyond_max_connections_are_closed_after_header_read_timeout() {
    // One that spoke takes the slot of the oldest that has not started.
    unfinished_starts_are_closed(&H2_START[..10], "shed_at_capacity").await;
}

// 2. HTTP/2 frames, read raw.

/// One frame: its type, flags and payload; `None` once the connection ends.
async fn next_frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((header[3], header[4], payload))
}

/// A raw HTTP/2 connection that has sent the preface and SETTINGS.
async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(H2_START).await.expect("the preface");
    stream
}

/// What a client must send back for a frame (RFC 9113 §6.5.3 SETTINGS, §6.7 PING, the latter
/// only with `pong`), if anything.
fn ack_for(kind: u8, flags: u8, payload: &[u8], pong: bool) -> Option<Vec<u8>> {
    match kind {
        SETTINGS if flags & 1 == 0 => Some(vec![0, 0, 0, SETTINGS, 1, 0, 0, 0, 0]),
        PING if pong && flags & 1 == 0 => {
            Some([&[0, 0, 8, PING, 1, 0, 0, 0, 0][..], payload].concat())
        }
        _ => None,
    }
}

/// Plays a client that acknowledges SETTINGS and (with `pong`) PINGs until the server closes;
/// each frame type received and when, from `since`, and when it closed.
async fn h2_until_close(
    stream: &mut TcpStream,
    since: Instant,
    pong: bool,
) -> (Vec<(u8, Duration)>, Duration) {
    let mut frames = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some((kind, flags, payload)) = next_frame(stream).await {
            frames.push((kind, since.elapsed()));
            if let Some(ack) = ack_for(kind, flags, &payload, pong)
                && stream.write_all(&ack).await.is_err()
            {
                return;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection stayed open; frames so far: {frames:?}"
    );
    (frames, since.elapsed())
}

fn first_of(frames: &[(u8, Duration)], kind: u8) -> Option<Duration> {
    frames.iter().find(|(k, _)| *k == kind).map(|(_, at)| *at)
}

/// A gateway with `listen`; a raw HTTP/2 connection with no streams gets GOAWAY, then is closed,
/// both within `bound` of its start (`what` ended it).
async fn assert_h2_graceful_close(listen: &str, bound: Duration, what: &str) -> Setup {
    let s = start_public(Upstream::start().await, listen).await;
    let since = Instant::now();
    let mut stream = h2_connect(s.gateway.proxy).await;
    let (frames, end) = h2_until_close(&mut stream, since, true).await;
    let goaway = first_of(&frames, GOAWAY)
        .unwrap_or_else(|| panic!("{what}: a graceful close sends GOAWAY: {frames:?}"));
    assert_within(&format!("{what}: GOAWAY"), goaway, bound);
    assert_within(&format!("{what}: the close"), end, bound);
    s
}

#[tokio::test]
async fn h2_preface_and_settings_end_the_head_timer_and_idle_timeout_closes() {
    let s = assert_h2_graceful_close(
        "header_read_timeout = \"300ms\"\nidle_timeout = \"1500ms\"",
        ms(1500),
        "idle_timeout",
    )
    .await;
    s.upstream.assert_not_reached();
}

#[tokio::test]
async fn h2_peer_that_does_not_answer_keepalive_pings_is_closed() {
    let (interval, timeout) = (ms(400), ms(400));
    let s = start_public(
        Upstream::start().await,
        "http2_keepalive_interval = \"400ms\"\nhttp2_keepalive_timeout = \"400ms\"\nidle_timeout = \"30s\"",
    )
    .await;
    let since = Instant::now();
    let mut stream = h2_connect(s.gateway.proxy).await;
    let (frames, end) = h2_until_close(&mut stream, since, false).await;
    let ping = first_of(&frames, PING)
        .unwrap_or_else(|| panic!("a keep-alive PING every interval: {frames:?}"));
    assert_within("the keep-alive PING", ping, interval);
    // Long before idle_timeout (30 s): the unanswered PING closed it.
    assert_within("the close for an unanswered PING", end, interval + timeout);
}

#[tokio::test]
async fn h2_settings_announce_max_concurrent_streams() {
    let s = start_public(Upstream::start().await, "max_concurrent_streams = 7").await;
    let mut stream = h2_connect(s.gateway.proxy).await;
    let (kind, flags, payload) = tokio::time::timeout(DEADLINE, next_frame(&mut stream))
        .await
        .expect("the server's first frame in time")
        .expect("the server's first frame");
    assert_eq!(
        (kind, flags & 1),
        (SETTINGS, 0),
        "RFC 9113 §3.4: SETTINGS first"
    );
    let announced = payload.chunks(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    });
    assert_eq!(announced, Some(7), "SETTINGS payload {payload:?}");
}

#[tokio::test]
async fn h2_connection_gets_goaway_after_max_connection_age() {
    assert_h2_graceful_close(
        "max_connection_age = \"800ms\"\nidle_timeout = \"30s\"",
        ms(800),
        "max_connection_age",
    )
    .await;
}

#[tokio::test]
async fn max_connection_age_lets_an_open_stream_finish() {
    let s = start_public(
        Upstream::start_with(UpstreamBehaviour::Delay(ms(1500))).await,
        "max_connection_age = \"500ms\"",
    )
    .await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(DEADLINE)
        .build()
        .expect("an h2c client");
    let resp = h2
        .get(s.gateway.url("/orders/slow"))
        .send()
        .await
        .expect("the stream open at max_connection_age is answered");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        resp.status(),
        200,
        "GOAWAY is graceful: the open stream finishes"
    );
    assert_eq!(s.upstream.count(), 1);
}

// 3. Idle HTTP/1 connections and later heads.

/// A keep-alive connection that has been served once (so it holds its place).
async fn served_connection(gateway: &Gateway) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.proxy).await.expect("connect");
    stream
        .write_all(&keep_alive_get(gateway, "/orders/held"))
        .await
        .expect("request");
    let head = read_answer(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

#[tokio::test]
async fn http1_keep_alive_connection_is_closed_after_idle_timeout() {
    let idle = ms(1200);
    let s = start_public(
        Upstream::start().await,
        "header_read_timeout = \"300ms\"\nidle_timeout = \"1200ms\"",
    )
    .await;
    let mut stream = served_connection(&s.gateway).await;
    let since = Instant::now();
    let (got, end) = closed(&mut stream, since, "an idle keep-alive connection").await;
    assert!(got.is_empty(), "nothing more was sent: {got:?}");
    assert_within("the idle keep-alive connection's close", end, idle);
}

#[tokio::test]
async fn request_in_flight_outlives_idle_timeout() {
    let s = start_public(
        Upstream::start_with(UpstreamBehaviour::Delay(ms(1500))).await,
        "header_read_timeout = \"300ms\"\nidle_timeout = \"400ms\"",
    )
    .await;
    let since = Instant::now();
    let resp = client()
        .get(s.gateway.url("/orders/slow"))
        .send()
        .await
        .expect("the request in flight is answered, not cut at idle_timeout");
    assert_eq!(resp.status(), 200);
    assert!(since.elapsed() >= ms(1500), "it waited for the upstream");
    assert_eq!(s.upstream.count(), 1);
}

#[tokio::test]
async fn later_partial_head_is_closed_after_header_read_timeout() {
    let head_timeout = ms(400);
    let s = start_public(
        Upstream::start().await,
        "header_read_timeout = \"400ms\"\nidle_timeout = \"5s\"",
    )
    .await;
    let mut stream = served_connection(&s.gateway).await;
    let partial = format!("GET /orders/2 HTTP/1.1\r\nHost: {}\r\n", s.gateway.proxy);
    stream
        .write_all(partial.as_bytes())
        .await
        .expect("half a head");
    let since = Instant::now();
    let (got, end) = closed(&mut stream, since, "a stalled second head").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    // Well before idle_timeout (5 s): it is the head's bound that closed it.
    assert_within("the stalled second head's close", end, head_timeout);
    assert_eq!(
        s.upstream.count(),
        1,
        "the partial request was not forwarded"
    );
}

// 4. Stalled bodies.

/// Asserts a raw answer is the gateway's refusal `status`/`error` that closes the connection.
fn assert_closing_refusal(answer: &RawAnswer, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "{answer:?}"
    );
    let body: serde_json::Value =
        serde_json::from_slice(&crate::common::raw_body(answer)).expect("a JSON refusal");
    assert_eq!(body["error"], error, "{answer:?}");
}

#[tokio::test]
async fn stalled_upload_is_408_and_closes() {
    let stall = ms(500);
    let s = start_public(Upstream::start().await, "stream_idle_timeout = \"500ms\"").await;
    let request = raw_request(
        &s.gateway,
        "POST",
        "/orders/1",
        &["Content-Length: 100"],
        b"0123456789",
    );
    let since = Instant::now();
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_closing_refusal(&answer, 408, "request_timeout");
    assert_within("the 408 for a stalled upload", since.elapsed(), stall);
    // The head may have been forwarded (bodies stream); the body never completed there.
    assert_eq!(
        s.upstream.count(),
        0,
        "the upstream saw no complete request"
    );
}

#[tokio::test]
async fn stalled_form_body_is_408_without_asking_the_provider() {
    let stall = ms(500);
    let s = start(
        Upstream::start().await,
        "stream_idle_timeout = \"500ms\"",
        "token_sources = [\"form\"]",
    )
    .await;
    let request = raw_request(
        &s.gateway,
        "POST",
        "/orders/1",
        &[
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Length: 100",
        ],
        b"access_token=abc",
    );
    let since = Instant::now();
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_closing_refusal(&answer, 408, "request_timeout");
    assert_within("the 408 for a stalled form", since.elapsed(), stall);
    assert_eq!(s.idp.introspection_count(), 0, "the provider was not asked");
    assert_eq!(s.upstream.connections(), 0, "nothing went upstream");
}

#[tokio::test]
async fn client_that_stops_reading_is_disconnected_after_stream_idle_timeout() {
    const SIZE: usize = 16 << 20;
    let stall = ms(500);
    let s = start_public(
        Upstream::start_with(UpstreamBehaviour::Large(SIZE)).await,
        "stream_idle_timeout = \"500ms\"",
    )
    .await;
    // A small receive window, so the gateway's writes block long before the body is out.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(s.gateway.proxy).await.expect("connect");
    let request = raw_request(&s.gateway, "GET", "/orders/big", &[], b"");
    stream.write_all(&request).await.expect("request");
    let since = Instant::now();
    crate::common::eventually(DEADLINE, "a close for stream_idle_timeout", || async {
        closed_total(&s.gateway, "stream_idle_timeout").await >= 1
    })
    .await;
    // The write began blocking after the request, so the close is at least one bound later.
    assert_within(
        "the close of a client that stopped reading",
        since.elapsed(),
        stall,
    );
    let (got, _) = closed(&mut stream, since, "a client that stopped reading").await;
    assert!(
        got.starts_with(b"HTTP/1.1 200") && got.len() < SIZE,
        "the answer was cut off: {} bytes of a {SIZE}-byte body",
        got.len()
    );
}

#[tokio::test]
async fn upstream_stalled_after_its_head_is_cut_off_after_stream_idle_timeout() {
    let stall = ms(500);
    let s = start_public(
        Upstream::streaming().await,
        "stream_idle_timeout = \"500ms\"",
    )
    .await;
    let mut resp = client()
        .get(s.gateway.url("/orders/stream"))
        .send()
        .await
        .expect("the head");
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(DEADLINE, resp.chunk())
        .await
        .expect("the first chunk in time")
        .expect("the first chunk");
    assert_eq!(first.as_deref(), Some(&b"first\n"[..]));
    let since = Instant::now();
    let rest = tokio::time::timeout(DEADLINE, resp.chunk())
        .await
        .expect("the stalled body is cut off, not left hanging");
    assert!(
        rest.is_err(),
        "a cut-off body must read as broken, not complete: {rest:?}"
    );
    assert_within("the cut of a stalled upstream body", since.elapsed(), stall);
}

/// A HEADERS frame opening stream 1 with `GET path` for `authority`, no body (HPACK, RFC 7541:
/// indexed `:method GET` and `:scheme http`, literal `:path` and `:authority` with indexed names).
fn h2_get(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    for (name_index, value) in [(0x04u8, path), (0x01, authority)] {
        block.push(name_index);
        block.push(u8::try_from(value.len()).expect("a short value"));
        block.extend_from_slice(value.as_bytes());
    }
    let len = u32::try_from(block.len())
        .expect("a short block")
        .to_be_bytes();
    // Type HEADERS, flags END_STREAM | END_HEADERS, stream 1.
    let mut frame = vec![len[1], len[2], len[3], 0x1, 0x5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test]
async fn h2_client_that_grants_no_window_is_cut_off_after_stream_idle_timeout() {
    const RST_STREAM: u8 = 0x3;
    let stall = ms(500);
    let s = start_public(
        Upstream::start_with(UpstreamBehaviour::Large(1 << 20)).await,
        "stream_idle_timeout = \"500ms\"\nidle_timeout = \"30s\"",
    )
    .await;
    let mut stream = h2_connect(s.gateway.proxy).await;
    let authority = s.gateway.proxy.to_string();
    stream
        .write_all(&h2_get(&authority, "/orders/big"))
        .await
        .expect("HEADERS");
    // The server may send the 65,535 bytes of the initial window, then must wait for a
    // WINDOW_UPDATE that never comes; the client answers PINGs, so only a stall bound ends it.
    let mut data = 0;
    let mut since = None;
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some((kind, flags, payload)) = next_frame(&mut stream).await {
            match kind {
                0x0 => {
                    data += payload.len();
                    since = Some(Instant::now());
                }
                RST_STREAM | GOAWAY => return Some(kind),
                _ => {}
            }
            if let Some(ack) = ack_for(kind, flags, &payload, true) {
                stream.write_all(&ack).await.ok()?;
            }
        }
        None
    })
    .await;
    let ended = ended.unwrap_or_else(|_| {
        panic!("a stream stalled on its window stays open past {DEADLINE:?} ({data} bytes sent)")
    });
    let since = since.expect("some DATA before the window closed");
    assert!(data < 1 << 20, "cut off: {data} bytes ({ended:?})");
    assert_within("the cut of a stream with no window", since.elapsed(), stall);
}

// 5. Body size.

/// A public orders API with `max_body_bytes = 1000`.
async fn start_limited() -> Setup {
    let api = format!("max_body_bytes = 1000\n{PUBLIC}");
    start(Upstream::start().await, "", &api).await
}

/// `POST /orders/1` with `headers` and `body`, byte for byte; the answer.
async fn post(gateway: &Gateway, headers: &[&str], body: &[u8]) -> RawAnswer {
    let request = raw_request(gateway, "POST", "/orders/1", headers, body);
    raw_http(gateway.proxy, &request).await
}

#[tokio::test]
async fn content_length_over_max_body_bytes_is_413_before_forwarding() {
    let s = start_limited().await;
    // The head alone: the refusal must not wait for the body.
    let answer = post(&s.gateway, &["Content-Length: 2000"], b"").await;
    assert_closing_refusal(&answer, 413, "payload_too_large");
    assert_eq!(s.upstream.connections(), 0, "nothing went upstream");
}

#[tokio::test]
async fn chunked_body_outgrowing_max_body_bytes_is_413_and_aborted() {
    let s = start_limited().await;
    let chunk = format!("258\r\n{}\r\n", "a".repeat(600));
    let body = format!("{chunk}{chunk}0\r\n\r\n");
    let answer = post(&s.gateway, &["Transfer-Encoding: chunked"], body.as_bytes()).await;
    assert_closing_refusal(&answer, 413, "payload_too_large");
    assert_eq!(s.upstream.count(), 0, "the upstream saw no complete body");
}

#[tokio::test]
async fn body_within_max_body_bytes_is_forwarded() {
    let s = start_limited().await;
    let body = "b".repeat(1000);
    let answer = post(&s.gateway, &[], body.as_bytes()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.last().body_str(), body);
}

// 6. Broken body framing.

/// Sends `request`, then (with `half_close`) ends the write side, and reads the answer.
async fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> RawAnswer {
    if !half_close {
        return raw_http(addr, request).await;
    }
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("request");
    stream.shutdown().await.expect("half-close");
    let (got, _) = closed(&mut stream, Instant::now(), "a truncated body's answer").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let split = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    RawAnswer {
        status: text[9..12]
            .parse()
            .unwrap_or_else(|_| panic!("no status: {text:?}")),
        head: text[..split].to_owned(),
        body: got[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn broken_chunked_framing_is_400_and_closes() {
    let s = start_public(Upstream::start().await, "").await;
    let cases: [(&str, &[u8], bool); 3] = [
        ("an invalid chunk size", b"5\r\nhello\r\nzz\r\n", false),
        ("a truncated chunk", b"10\r\nabc", true),
        (
            "an oversize chunk size",
            b"ffffffffffffffffff\r\nabc",
            false,
        ),
    ];
    for (what, body, half_close) in cases {
        let request = raw_request(
            &s.gateway,
            "POST",
            "/orders/1",
            &["Transfer-Encoding: chunked"],
            body,
        );
        let answer = exchange(s.gateway.proxy, &request, half_close).await;
        assert_eq!(answer.status, 400, "{what}: 400, never 502: {answer:?}");
        assert_closing_refusal(&answer, 400, "invalid_request");
        assert_eq!(
            s.upstream.count(),
            0,
            "{what}: the upstream saw no complete body"
        );
    }
}

// 7. Per-address cap.

#[tokio::test]
async fn third_connection_from_one_address_is_closed_at_once() {
    let s = start_public(Upstream::start().await, "max_connections_per_ip = 2").await;
    let first = served_connection(&s.gateway).await;
    let _second = served_connection(&s.gateway).await;

    let request = raw_request(&s.gateway, "GET", "/orders/third", &[], b"");
    let mut third = TcpStream::connect(s.gateway.proxy).await.expect("connect");
    third.write_all(&request).await.ok();
    let since = Instant::now();
    let (got, end) = closed(&mut third, since, "a third connection").await;
    assert!(got.is_empty(), "closed without an answer: {got:?}");
    assert!(end < SLACK, "closed at once, not after {end:?}");
    assert_eq!(s.upstream.count(), 2, "the third request was not forwarded");
    assert!(closed_total(&s.gateway, "max_connections_per_ip").await >= 1);

    drop(first);
    crate::common::eventually(DEADLINE, "a connection once one closed", || async {
        let mut stream = TcpStream::connect(s.gateway.proxy).await.expect("connect");
        stream.write_all(&request).await.ok();
        let got = read_until_close(&mut stream, DEADLINE)
            .await
            .unwrap_or_default();
        got.starts_with(b"HTTP/1.1 200")
    })
    .await;
    assert_eq!(s.upstream.last().target, "/orders/third");
}

// 8. The admin listener.

#[tokio::test]
async fn admin_listener_caps_connections_and_closes_silent_ones() {
    let timeout = ms(500);
    let s = start_public(
        Upstream::start().await,
        "admin_max_connections = 2\nheader_read_timeout = \"500ms\"",
    )
    .await;
    let since = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(s.gateway.admin).await.expect("connect"));
    }
    // The cap is reached (the harness's readiness client may hold a slot too): a real request
    // takes a silent connection's slot after its grace, rather than waiting for the head bound.
    let answer = raw_http(
        s.gateway.admin,
        b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        since.elapsed() < timeout * 3 / 4,
        "/healthz took a silent connection's slot after its grace, not after {:?}",
        since.elapsed()
    );
    // Every silent one is closed without an answer: shed, or at header_read_timeout.
    for socket in &mut silent {
        let (got, end) = closed(socket, since, "a silent admin connection").await;
        assert!(got.is_empty(), "{got:?}");
        assert!(end <= timeout + timeout / 4 + SLACK, "closed after {end:?}");
    }
    let gave_way = closed_total(&s.gateway, "shed_at_capacity").await
        + closed_total(&s.gateway, "silent_at_capacity").await;
    assert!(
        gave_way >= 1,
        "the cap was reached and a silent one gave way"
    );
}

// 9. Configuration errors.

#[tokio::test]
async fn connection_limit_config_errors_name_their_key() {
    let cases = [
        ("idle_timeout = \"0s\"", "listen.idle_timeout"),
        (
            "max_concurrent_streams = 0",
            "listen.max_concurrent_streams",
        ),
        ("admin_max_connections = 0", "listen.admin_max_connections"),
    ];
    for (line, key) in cases {
        let config = with_listen(
            &base_config(
                "http://127.0.0.1:9/oauth2/default",
                &orders_api("http://127.0.0.1:8081", ""),
            ),
            line,
        );
        let out = cli(&["check"], Some(&config), &[]).await;
        assert_eq!(
            out.status, 2,
            "{line}: a bad configuration exits 2: {out:?}"
        );
        assert!(out.stderr.contains(key), "{line}: must name {key}: {out:?}");
    }
}
