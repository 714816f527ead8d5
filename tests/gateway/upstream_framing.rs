//! Upstream framing: how the gateway reads what an HTTP/1.1 upstream sends back, and how it frames
//! what it sends there, pinned byte for byte on the wire. The upstream client is the gateway's own
//! (its own request head, httparse for the response, its own Content-Length, chunked and
//! close-delimited decoding); these tests hold it to what the client of the gateway gets (status,
//! headers, exact body bytes, a cut-off body read as cut off) and to when an upstream connection
//! may carry a second request, since reusing one whose framing was not followed to the byte is how
//! responses get desynchronised.
//!
//! The upstream is scripted at the byte level (a hyper server would refuse to send most of these
//! answers); the client speaks raw HTTP/1.1 on one kept-alive connection, because each gateway
//! worker has its own upstream connections and only the same client connection stays on one
//! worker. Every test runs the real gateway binary, with tokens from the real test provider.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::{base_config, orders_api};

/// How long any network wait of these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);
/// The gap between the scripted writes of one answer, so the gateway meets them in separate reads.
/// Nothing waits on it: a gateway that reads two writes at once sees the same bytes.
const GAP: Duration = Duration::from_millis(5);

// === The scripted upstream ===

/// One step of an upstream's answer.
#[derive(Clone, Debug)]
enum Step {
    /// These bytes, in one write.
    Send(Vec<u8>),
    /// `GAP` before the next write.
    Pause,
    /// Waits for the test's `open_gate`: the test has seen what the gateway passed on so far.
    Gate,
    /// Closes the connection at once.
    Close,
    /// Ends the write side, then reads (and drops) whatever comes until the gateway hangs up: how a
    /// server closes without resetting a connection that still carries unread input (RFC 9112
    /// §9.6).
    Linger,
    /// Sends nothing more and keeps the connection open until the gateway hangs up: whether the
    /// connection is used again is then the gateway's choice alone.
    Hold,
}

/// The answer to one request: its steps, and whether the request's body is read first.
#[derive(Clone, Debug)]
struct Reply {
    read_body: bool,
    steps: Vec<Step>,
}

impl Reply {
    /// `bytes` in one write; the connection stays open for the next request.
    fn bytes(bytes: impl AsRef<[u8]>) -> Reply {
        Reply::writes(&[bytes.as_ref()])
    }

    /// Each of `parts` in a write of its own.
    fn writes(parts: &[&[u8]]) -> Reply {
        let mut steps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                steps.push(Step::Pause);
            }
            steps.push(Step::Send(part.to_vec()));
        }
        Reply {
            read_body: true,
            steps,
        }
    }

    /// A plain `200` with a Content-Length body `body`.
    fn ok(body: &str) -> Reply {
        Reply::bytes(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn then(mut self, step: Step) -> Reply {
        self.steps.push(step);
        self
    }

    /// Answers as soon as the request head is in, the body unread.
    fn before_the_body(mut self) -> Reply {
        self.read_body = false;
        self
    }
}

/// A request as the upstream read it off the wire.
#[derive(Clone, Debug)]
struct Received {
    /// Which accepted connection it came on, from 1.
    conn: usize,
    /// The head, through its final CRLF CRLF.
    head: Vec<u8>,
    /// The body as framed on the wire (still chunk-encoded if it was chunked).
    body: Vec<u8>,
}

impl Received {
    fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    fn request_line(&self) -> String {
        self.head_text().lines().next().unwrap_or("").to_owned()
    }

    /// Every value of header `name` (any case), in order.
    fn headers_named(&self, name: &str) -> Vec<String> {
        header_values(&self.head_text(), name)
    }
}

struct UpstreamShared {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    accepted: AtomicUsize,
    gate: Semaphore,
}

/// A raw TCP upstream on 127.0.0.1:0 that answers the requests it reads, in arrival order whatever
/// their connection, with the next reply of its script; with the script spent it closes the
/// connection unanswered. It records each request's raw bytes and counts connections accepted.
struct ScriptedUpstream {
    addr: std::net::SocketAddr,
    shared: Arc<UpstreamShared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task too.
        self.server.abort();
    }
}

impl ScriptedUpstream {
    async fn start(script: Vec<Reply>) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("scripted upstream: bind");
        let addr = listener
            .local_addr()
            .expect("scripted upstream: local_addr");
        let shared = Arc::new(UpstreamShared {
            script: Mutex::new(script.into()),
            received: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, shared.clone()));
        ScriptedUpstream {
            addr,
            shared,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .expect("scripted upstream: lock")
            .clone()
    }

    /// Lets one waiting `Step::Gate` (or the next one to come) go on.
    fn open_gate(&self) {
        self.shared.gate.add_permits(1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<UpstreamShared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let conn = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_scripted(stream, conn, shared.clone()));
    }
}

/// Reads into `buf`; `false` once the peer closed (or reset) the connection.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn serve_scripted(mut stream: TcpStream, conn: usize, shared: Arc<UpstreamShared>) {
    // Each scripted write leaves as it is, not merged with the next by Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(&mut stream, &mut buf).await {
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let reply = shared
            .script
            .lock()
            .expect("scripted upstream: lock")
            .pop_front();
        let body = match &reply {
            Some(reply) if reply.read_body => {
                match read_request_body(&mut stream, &mut buf, &head).await {
                    Some(body) => body,
                    None => return,
                }
            }
            _ => Vec::new(),
        };
        shared
            .received
            .lock()
            .expect("scripted upstream: lock")
            .push(Received { conn, head, body });
        let Some(reply) = reply else {
            return;
        };
        for step in reply.steps {
            match step {
                Step::Send(bytes) => {
                    // A gateway that hung up mid-answer (an oversized head) ends the connection.
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Pause => tokio::time::sleep(GAP).await,
                Step::Gate => {
                    let Ok(Ok(permit)) = tokio::time::timeout(WAIT, shared.gate.acquire()).await
                    else {
                        return;
                    };
                    permit.forget();
                }
                Step::Close => return,
                Step::Linger => {
                    let _ = stream.shutdown().await;
                    let _ = tokio::time::timeout(WAIT, drain(&mut stream)).await;
                    return;
                }
                Step::Hold => {
                    let _ = tokio::time::timeout(WAIT, drain(&mut stream)).await;
                    return;
                }
            }
        }
    }
}

async fn drain(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    while fill(stream, &mut sink).await {
        sink.clear();
    }
}

/// The body a request head announces (Content-Length or chunked), raw; `None` if the connection
/// ended first.
async fn read_request_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &[u8],
) -> Option<Vec<u8>> {
    let head = String::from_utf8_lossy(head);
    let chunked = header_values(&head, "transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let parsed = parse_chunked(buf);
            if parsed.done {
                return Some(buf.drain(..parsed.len).collect());
            }
            if !fill(stream, buf).await {
                return None;
            }
        }
    }
    let length: usize = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < length {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..length).collect())
}

// === Framing helpers ===

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every value of header `name` (any case) in a head's text, in order.
fn header_values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// A chunked body read from the start of a buffer, as far as it goes.
#[derive(Debug, Default)]
struct Chunked {
    data: Vec<u8>,
    trailers: Vec<String>,
    /// Bytes of whole chunks read (all of the body once `done`).
    len: usize,
    /// The last chunk and the trailer section are in.
    done: bool,
}

/// Decodes the chunked body at the start of `buf`. Only the gateway's framing is read with it, so
/// anything unreadable fails the test.
fn parse_chunked(buf: &[u8]) -> Chunked {
    let mut out = Chunked::default();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return out;
        };
        let line = String::from_utf8_lossy(&buf[at..at + line_end]).into_owned();
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("a chunk-size line that is not hex: {line:?}"));
        let data = at + line_end + 2;
        if size == 0 {
            let mut trailers = Vec::new();
            let mut t = data;
            loop {
                let Some(end) = find(&buf[t..], b"\r\n") else {
                    return out;
                };
                if end == 0 {
                    out.trailers = trailers;
                    out.len = t + 2;
                    out.done = true;
                    return out;
                }
                trailers.push(String::from_utf8_lossy(&buf[t..t + end]).into_owned());
                t += end + 2;
            }
        }
        let available = buf.len() - data;
        if available < size + 2 {
            out.data
                .extend_from_slice(&buf[data..data + available.min(size)]);
            return out;
        }
        assert_eq!(
            &buf[data + size..data + size + 2],
            b"\r\n",
            "a chunk not followed by CRLF in {:?}",
            String::from_utf8_lossy(buf)
        );
        out.data.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
        out.len = at;
    }
}

// === The client ===

/// An answer as the client read it.
#[derive(Debug)]
struct Answer {
    /// 0 when the connection closed before a whole head arrived.
    status: u16,
    /// The status line and headers.
    head: String,
    /// Interim (1xx) statuses read before it.
    informational: Vec<u16>,
    /// The body, de-chunked, as far as it came.
    body: Vec<u8>,
    trailers: Vec<String>,
    /// The framing said the body ended (for a close-delimited body: the connection closed).
    complete: bool,
    /// The gateway closed the connection.
    closed: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        header_values(&self.head, name).into_iter().next()
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The gateway's own refusal, 502 `bad_gateway`.
    fn assert_bad_gateway(&self, what: &str) {
        assert_eq!(self.status, 502, "{what}: {self:?}");
        assert!(self.complete, "{what}: a whole 502: {self:?}");
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: the 502 body is not JSON ({e}): {self:?}"));
        assert_eq!(body["error"], "bad_gateway", "{what}: {self:?}");
    }
}

/// One raw HTTP/1.1 connection to the gateway, kept alive, with a bearer token.
struct Client {
    read: OwnedReadHalf,
    write: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
    host: String,
    token: String,
}

impl Client {
    async fn connect(s: &Setup) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(s.gateway.proxy))
            .await
            .expect("connecting to the gateway in time")
            .expect("connecting to the gateway");
        let (read, write) = stream.into_split();
        Client {
            read,
            write: Some(write),
            buf: Vec::new(),
            host: s.gateway.proxy.to_string(),
            token: s.token.clone(),
        }
    }

    /// A request: `Host`, the token, `headers` (whole `Name: value` lines), and a Content-Length
    /// for a non-empty `body` unless `headers` frame it.
    fn request(&self, method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n",
            self.host, self.token
        );
        crate::common::framed_request(head, headers, body, "")
    }

    async fn send(&mut self, bytes: &[u8]) {
        let write = self.write.as_mut().expect("the write side is still ours");
        tokio::time::timeout(WAIT, write.write_all(bytes))
            .await
            .expect("the gateway takes the request in time")
            .expect("writing the request");
    }

    /// Sends a request and reads its answer.
    async fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Answer {
        let request = self.request(method, target, headers, body);
        self.send(&request).await;
        self.answer(method == "HEAD").await
    }

    async fn get(&mut self, target: &str) -> Answer {
        self.exchange("GET", target, &[], b"").await
    }

    /// Writes `bytes` from a task of its own (ignoring a refusal to take them all), so the answer
    /// can be read meanwhile.
    fn send_in_background(&mut self, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let mut write = self.write.take().expect("the write side is still ours");
        tokio::spawn(async move {
            let _ = tokio::time::timeout(WAIT, write.write_all(&bytes)).await;
            // Held until the answer is read: dropping it would half-close the connection.
            let _ = tokio::time::timeout(WAIT, std::future::pending::<()>()).await;
        })
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.read.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads until `needle` has arrived (within `WAIT`).
    async fn wait_for(&mut self, needle: &[u8]) {
        let found = tokio::time::timeout(WAIT, async {
            while find(&self.buf, needle).is_none() {
                if !self.fill().await {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "waited for {:?}, got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// The next answer (`bodiless`: to a HEAD), within `WAIT`.
    async fn answer(&mut self, bodiless: bool) -> Answer {
        match tokio::time::timeout(WAIT, self.read_answer(bodiless)).await {
            Ok(answer) => answer,
            Err(_) => panic!(
                "no whole answer within {WAIT:?}; read so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    async fn read_answer(&mut self, bodiless: bool) -> Answer {
        let mut informational = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break Some(i + 4);
                }
                if !self.fill().await {
                    break None;
                }
            };
            let Some(head_end) = head_end else {
                return Answer {
                    status: 0,
                    head: String::from_utf8_lossy(&self.buf).into_owned(),
                    informational,
                    body: Vec::new(),
                    trailers: Vec::new(),
                    complete: false,
                    closed: true,
                };
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
            self.buf.drain(..head_end);
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status in {head:?}"));
            if (100..200).contains(&status) && status != 101 {
                informational.push(status);
                continue;
            }
            let mut answer = Answer {
                status,
                head,
                informational,
                body: Vec::new(),
                trailers: Vec::new(),
                complete: false,
                closed: false,
            };
            let chunked = answer
                .header("transfer-encoding")
                .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
            let length: Option<usize> = answer.header("content-length").map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("a bad Content-Length from the gateway: {v:?}"))
            });
            if bodiless || status == 204 || status == 304 {
                answer.complete = true;
            } else if chunked {
                loop {
                    let parsed = parse_chunked(&self.buf);
                    if parsed.done {
                        self.buf.drain(..parsed.len);
                        answer.body = parsed.data;
                        answer.trailers = parsed.trailers;
                        answer.complete = true;
                        break;
                    }
                    if !self.fill().await {
                        answer.body = parsed.data;
                        answer.closed = true;
                        break;
                    }
                }
            } else if let Some(length) = length {
                loop {
                    if self.buf.len() >= length {
                        answer.body = self.buf.drain(..length).collect();
                        answer.complete = true;
                        break;
                    }
                    if !self.fill().await {
                        answer.body = std::mem::take(&mut self.buf);
                        answer.closed = true;
                        break;
                    }
                }
            } else {
                while self.fill().await {}
                answer.body = std::mem::take(&mut self.buf);
                answer.complete = true;
                answer.closed = true;
            }
            return answer;
        }
    }
}

// === Setup ===

struct Setup {
    _idp: TestIdp,
    upstream: ScriptedUpstream,
    gateway: Gateway,
    token: String,
}

/// The provider, the scripted upstream, the gateway with the orders API in front of it, a token.
async fn setup(script: Vec<Reply>) -> Setup {
    let idp = TestIdp::start().await;
    let upstream = ScriptedUpstream::start(script).await;
    let gateway = Gateway::start(&base_config(&idp.issuer, &orders_api(&upstream.url(), ""))).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        _idp: idp,
        upstream,
        gateway,
        token,
    }
}

/// The connections each request came on, in order.
fn conns(s: &Setup) -> Vec<usize> {
    s.upstream.received().iter().map(|r| r.conn).collect()
}

fn assert_ok(answer: &Answer, body: &str) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.complete, "a whole answer: {answer:?}");
    assert_eq!(answer.body_text(), body, "{answer:?}");
}

// === 1. Bodies the framing delimits ===

#[tokio::test]
async fn content_length_body_in_small_writes_arrives_exact_and_the_connection_is_reused() {
    let s = setup(vec![
        // The head is cut inside a header line, the body three times.
        Reply::writes(&[
            b"HTTP/1.1 200 OK\r\nContent-Ty",
            b"pe: text/plain\r\nX-Up: 1\r\nContent-Len",
            b"gth: 11\r\n\r\nhel",
            b"lo w",
            b"orld",
        ]),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "hello world");
    assert_eq!(first.header("content-length").as_deref(), Some("11"));
    assert_eq!(first.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(first.header("x-up").as_deref(), Some("1"));
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(
        conns(&s),
        [1, 1],
        "the second request reuses the connection"
    );
}

#[tokio::test]
async fn chunked_body_with_extensions_arrives_exact_and_the_connection_is_reused() {
    let s = setup(vec![
        Reply::writes(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
            b"lo\r\n6;a=b;q=\"x y\"\r\n wor",
            b"ld\r\n1\r\n",
            b"!\r\n0\r\n",
            b"\r\n",
        ]),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "hello world!");
    assert_eq!(
        first.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "a body of unknown length goes on chunked"
    );
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(
        conns(&s),
        [1, 1],
        "the second request reuses the connection"
    );
}

/// A chunked answer carrying `X-Trail: v` in its trailer section, announced in a `Trailer` header
/// when `announced`.
fn trailer_reply(announced: bool) -> Reply {
    let trailer = if announced {
        "Trailer: X-Trail\r\n"
    } else {
        ""
    };
    Reply::writes(&[
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{trailer}\r\n5\r\nhello\r\n")
            .as_bytes(),
        b"0\r\nX-Trail: v\r\n\r\n",
    ])
}

#[tokio::test]
async fn chunked_trailers_reach_an_http11_client_only_when_announced_and_asked_for() {
    let s = setup(vec![
        trailer_reply(true),
        trailer_reply(true),
        trailer_reply(false),
        Reply::ok("after"),
    ])
    .await;
    let mut client = Client::connect(&s).await;

    let asked = client
        .exchange("GET", "/orders/1", &["TE: trailers"], b"")
        .await;
    assert_ok(&asked, "hello");
    assert_eq!(asked.header("trailer").as_deref(), Some("X-Trail"));
    assert_eq!(
        asked.trailers,
        ["x-trail: v"],
        "announced and asked for: the trailer is passed on"
    );

    let not_asked = client.get("/orders/2").await;
    assert_ok(&not_asked, "hello");
    assert!(
        not_asked.trailers.is_empty(),
        "a client that did not send `TE: trailers` gets none: {not_asked:?}"
    );

    let unannounced = client
        .exchange("GET", "/orders/3", &["TE: trailers"], b"")
        .await;
    assert_ok(&unannounced, "hello");
    assert!(
        unannounced.trailers.is_empty(),
        "a trailer the upstream did not announce is dropped: {unannounced:?}"
    );

    assert_ok(&client.get("/orders/4").await, "after");
    // `TE` is this hop's: the HTTP/1.1 upstream is not told.
    assert!(s.upstream.received()[0].headers_named("te").is_empty());
}

#[tokio::test]
async fn a_trailer_section_ends_the_body_and_the_connection_is_reused() {
    let s = setup(vec![trailer_reply(true), Reply::ok("after")]).await;
    let mut client = Client::connect(&s).await;
    let first = client
        .exchange("GET", "/orders/1", &["TE: trailers"], b"")
        .await;
    assert_ok(&first, "hello");
    assert_ok(&client.get("/orders/2").await, "after");
    assert_eq!(
        conns(&s),
        [1, 1],
        "a trailer section ends the body like any last chunk"
    );
}

#[tokio::test]
async fn close_delimited_body_is_read_to_the_close_and_the_next_request_opens_a_connection() {
    let s = setup(vec![
        Reply::writes(&[
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ",
            b"the ",
            b"close",
        ])
        .then(Step::Close),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "until the close");
    assert_eq!(
        first.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "the client's connection is not closed to end the body: it is chunked"
    );
    assert!(!first.closed);
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(conns(&s), [1, 2]);
}

// === 2. When a connection may not carry another request ===

#[tokio::test]
async fn http10_response_is_passed_on_and_its_connection_is_not_reused() {
    // The upstream keeps the connection open: not reusing it is the gateway's doing.
    let s = setup(vec![
        Reply::bytes("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").then(Step::Hold),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "hello");
    // The client connection stays open: the upstream's version is not the client's.
    assert!(!first.closed);
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(
        conns(&s),
        [1, 2],
        "an HTTP/1.0 answer without keep-alive ends its connection"
    );
}

#[tokio::test]
async fn http10_response_goes_on_in_the_gateways_own_version() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").then(Step::Hold),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let answer = client.get("/orders/1").await;
    assert_ok(&answer, "hello");
    assert!(answer.head.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
}

#[tokio::test]
async fn connection_close_ends_the_upstream_connection_not_the_clients() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
            .then(Step::Hold),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "hello");
    assert_eq!(first.header("connection"), None, "hop-by-hop: {first:?}");
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(conns(&s), [1, 2]);
}

// === 3. Answers without a body ===

#[tokio::test]
async fn head_answer_with_a_content_length_has_no_body_and_the_connection_is_reused() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"),
        Reply::ok("next"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let head = client.exchange("HEAD", "/orders/1", &[], b"").await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-length").as_deref(),
        Some("100"),
        "the length a GET would get"
    );
    assert!(
        s.upstream.received()[0]
            .request_line()
            .starts_with("HEAD /orders/1 ")
    );
    // Had the gateway waited for 100 body bytes, or taken the next answer for them, this would
    // not be `next`.
    let next = client.get("/orders/2").await;
    assert_ok(&next, "next");
    assert!(
        client.buf.is_empty(),
        "nothing beyond the answers: {:?}",
        client.buf
    );
    assert_eq!(conns(&s), [1, 1]);
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body_and_the_connection_is_reused() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.1 204 No Content\r\nX-Up: 204\r\n\r\n"),
        // A 304 may carry the length the 200 would have had (RFC 9110 §8.6): no body follows.
        Reply::bytes("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"),
        Reply::ok("fresh"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let none = client.exchange("DELETE", "/orders/1", &[], b"").await;
    assert_eq!(none.status, 204, "{none:?}");
    assert_eq!(none.header("x-up").as_deref(), Some("204"));
    let same = client
        .exchange("GET", "/orders/2", &["If-None-Match: \"v1\""], b"")
        .await;
    assert_eq!(same.status, 304, "{same:?}");
    assert_eq!(same.header("etag").as_deref(), Some("\"v1\""));
    assert_ok(&client.get("/orders/3").await, "fresh");
    assert!(
        client.buf.is_empty(),
        "no body bytes after a 204 or 304: {:?}",
        client.buf
    );
    assert_eq!(conns(&s), [1, 1, 1]);
}

// === 4. Ambiguous and invalid answers ===

/// Both framings at once; a Content-Length reading would take `4\r\nh` as the body.
const CL_AND_CHUNKED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

#[tokio::test]
async fn content_length_with_chunked_goes_on_whole_without_the_length_and_ends_the_connection() {
    let s = setup(vec![
        Reply::bytes(CL_AND_CHUNKED).then(Step::Hold),
        Reply::ok("second"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let first = client.get("/orders/1").await;
    assert_ok(&first, "hello world");
    assert_ne!(
        first.header("content-length").as_deref(),
        Some("4"),
        "{first:?}"
    );
    assert_ok(&client.get("/orders/2").await, "second");
    assert_eq!(
        conns(&s),
        [1, 2],
        "a connection with ambiguous framing is not reused"
    );
}

#[tokio::test]
async fn invalid_response_heads_are_502_and_their_connection_is_dropped() {
    let bad: [(&str, &str); 6] = [
        (
            "a Content-Length that is no number",
            "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
        ),
        (
            "two different Content-Lengths",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "a negative Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        ),
        (
            "a garbage status code",
            "HTTP/1.1 2OO OK\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "a header line without a colon",
            "HTTP/1.1 200 OK\r\nX-Broken header\r\nContent-Length: 5\r\n\r\nhello",
        ),
        ("no status line at all", "hello\r\n\r\n"),
    ];
    let mut script = Vec::new();
    for (_, reply) in bad {
        // Held open by the upstream: dropping it is the gateway's call.
        script.push(Reply::bytes(reply).then(Step::Hold));
        script.push(Reply::ok("sane"));
    }
    let s = setup(script).await;
    let mut client = Client::connect(&s).await;
    for (i, (what, _)) in bad.iter().enumerate() {
        client
            .get(&format!("/orders/bad/{i}"))
            .await
            .assert_bad_gateway(what);
        let received = s.upstream.received();
        assert_eq!(
            received.len(),
            2 * i + 1,
            "{what}: the upstream got the request"
        );
        assert!(
            received[2 * i]
                .request_line()
                .starts_with(&format!("GET /orders/bad/{i} "))
        );
        assert_ok(&client.get(&format!("/orders/sane/{i}")).await, "sane");
        let received = s.upstream.received();
        assert_ne!(
            received[2 * i + 1].conn,
            received[2 * i].conn,
            "{what}: the connection of a bad head is not used again"
        );
    }
    assert_eq!(s.upstream.connections(), bad.len() + 1);
}

#[tokio::test]
async fn obs_fold_in_a_response_head_is_502() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok")
            .then(Step::Hold),
        Reply::ok("sane"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    // A gateway must either refuse a folded response with a 502 or unfold it (RFC 9112 §5.2);
    // it refuses.
    client.get("/orders/1").await.assert_bad_gateway("obs-fold");
    assert_ok(&client.get("/orders/2").await, "sane");
    assert_eq!(conns(&s), [1, 2]);
}

#[tokio::test]
async fn response_head_past_a_mebibyte_is_502_without_waiting_for_its_end() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut n = 0;
    while head.len() <= 1024 * 1024 {
        head.extend_from_slice(format!("X-Filler-{n}: {}\r\n", "a".repeat(1000)).as_bytes());
        n += 1;
    }
    // Never ended: no blank line, and the connection is held open.
    let s = setup(vec![Reply::bytes(head).then(Step::Hold), Reply::ok("sane")]).await;
    let mut client = Client::connect(&s).await;
    let started = Instant::now();
    client
        .get("/orders/1")
        .await
        .assert_bad_gateway("an endless head");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused when too large, not after a timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(s.upstream.received().len(), 1);
    assert_ok(&client.get("/orders/2").await, "sane");
    assert_eq!(conns(&s), [1, 2]);
}

#[tokio::test]
async fn invalid_chunk_size_after_the_head_aborts_the_answer() {
    let bad: [(&str, &[u8]); 2] = [
        ("a chunk size that is not hex", b"zz\r\n"),
        ("a chunk size past u64", b"ffffffffffffffffff\r\n"),
    ];
    let mut script = Vec::new();
    for (_, line) in bad {
        script.push(
            Reply::bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .then(Step::Gate)
                .then(Step::Send(line.to_vec()))
                .then(Step::Hold),
        );
        script.push(Reply::ok("sane"));
    }
    let s = setup(script).await;
    for (i, (what, _)) in bad.iter().enumerate() {
        let mut client = Client::connect(&s).await;
        let request = client.request("GET", "/orders/1", &[], b"");
        client.send(&request).await;
        // The head and the first chunk are passed on before the bad size line is sent.
        client.wait_for(b"hello\r\n").await;
        s.upstream.open_gate();
        let answer = client.answer(false).await;
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
        assert_eq!(
            answer.header("transfer-encoding").as_deref(),
            Some("chunked")
        );
        assert_eq!(answer.body_text(), "hello", "{what}: {answer:?}");
        assert!(
            !answer.complete && answer.closed,
            "{what}: no last chunk, the connection closed: {answer:?}"
        );

        // The closed client connection's successor may be served by another worker: only the
        // broken upstream connection is known not to be the one used.
        let mut again = Client::connect(&s).await;
        assert_ok(&again.get("/orders/2").await, "sane");
        let received = s.upstream.received();
        assert_eq!(received.len(), 2 * i + 2);
        assert_ne!(
            received[2 * i + 1].conn,
            received[2 * i].conn,
            "{what}: the broken connection is not reused"
        );
    }
}

#[tokio::test]
async fn invalid_chunk_size_in_the_first_read_gives_the_client_nothing() {
    // Head and broken body in one write: the gateway has the head when the body fails.
    let s = setup(vec![
        Reply::bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .then(Step::Hold),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let answer = client.get("/orders/1").await;
    // Not even the head: it was still unsent when the body failed, and the connection is closed.
    assert_eq!(answer.status, 0, "nothing at all: {answer:?}");
    assert!(answer.head.is_empty() && answer.closed, "{answer:?}");
    assert_eq!(s.upstream.received().len(), 1);
}

#[tokio::test]
async fn upstream_closing_inside_a_content_length_body_aborts_the_answer() {
    let s = setup(vec![
        Reply::bytes("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
            .then(Step::Gate)
            .then(Step::Close),
        Reply::ok("sane"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let request = client.request("GET", "/orders/1", &[], b"");
    client.send(&request).await;
    client.wait_for(b"hello").await;
    s.upstream.open_gate();
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-length").as_deref(), Some("11"));
    assert_eq!(
        answer.body_text(),
        "hello",
        "the 5 bytes sent, neither padded nor completed: {answer:?}"
    );
    assert!(!answer.complete && answer.closed, "{answer:?}");

    let mut again = Client::connect(&s).await;
    assert_ok(&again.get("/orders/2").await, "sane");
    assert_eq!(conns(&s), [1, 2]);
}

// === 5. Interim answers, early answers, bytes past the answer ===

#[tokio::test]
async fn interim_responses_are_skipped_and_the_final_one_passed_on() {
    let s = setup(vec![
        Reply::writes(&[
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncontinued",
        ]),
        Reply::bytes(
            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhinted",
        ),
        Reply::ok("third"),
    ])
    .await;
    let mut client = Client::connect(&s).await;
    let continued = client.get("/orders/1").await;
    assert_ok(&continued, "continued");
    assert!(continued.informational.is_empty(), "{continued:?}");
    let hinted = client.get("/orders/2").await;
    assert_ok(&hinted, "hinted");
    assert!(
        hinted.informational.is_empty(),
        "the 103 is not passed on: {hinted:?}"
    );
    assert_eq!(
        hinted.header("link"),
        None,
        "nor its Link, on the 200: {hinted:?}"
    );
    assert_ok(&client.get("/orders/3").await, "third");
    assert_eq!(conns(&s), [1, 1, 1]);
}

const EARLY_413: &str =
    "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!";

#[tokio::test]
async fn early_413_to_a_large_upload_reaches_the_client_in_bounded_time() {
    let s = setup(vec![
        Reply::bytes(EARLY_413).before_the_body().then(Step::Linger),
        // Closed with the upload unread: the upstream's kernel resets the connection, and the
        // reset may overtake the 413.
        Reply::bytes(EARLY_413).before_the_body().then(Step::Close),
        Reply::ok("sane"),
    ])
    .await;
    let body = vec![b'u'; 1_000_000];
    for graceful in [true, false] {
        let mut client = Client::connect(&s).await;
        let request = client.request("POST", "/orders/upload", &[], &body);
        let started = Instant::now();
        let writer = client.send_in_background(request);
        let answer = client.answer(false).await;
        writer.abort();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        if graceful {
            assert_eq!(answer.status, 413, "{answer:?}");
            assert_eq!(answer.body_text(), "too big!", "{answer:?}");
            assert!(answer.complete, "{answer:?}");
        } else if answer.status == 413 {
            assert_eq!(answer.body_text(), "too big!", "{answer:?}");
        } else {
            // The reset may lose the 413: the request fails, never hangs.
            answer.assert_bad_gateway("a reset after an early 413");
        }
        let received = s.upstream.received();
        assert_eq!(
            received.last().map(|r| r.headers_named("content-length")),
            Some(vec!["1000000".to_owned()])
        );
    }

    let mut again = Client::connect(&s).await;
    assert_ok(&again.get("/orders/2").await, "sane");
    assert_eq!(conns(&s), [1, 2, 3]);
}

#[tokio::test]
async fn bytes_after_a_complete_answer_never_answer_the_next_request() {
    let extras = [
        ("garbage", "EXTRA"),
        (
            "a whole second answer",
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
        ),
    ];
    let mut script = Vec::new();
    for (_, extra) in extras {
        script.push(Reply::bytes(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello{extra}"
        )));
        script.push(Reply::ok("fresh"));
    }
    let s = setup(script).await;
    let mut client = Client::connect(&s).await;
    let mut fresh = 0;
    for (i, (what, _)) in extras.iter().enumerate() {
        assert_ok(&client.get("/orders/1").await, "hello");
        let next = client.get("/orders/2").await;
        assert!(
            !next.body_text().contains("EXTRA") && !next.body_text().contains("SMUGGLED"),
            "{what}: the next request was answered from the leftover bytes: {next:?}"
        );
        // Either a fresh exchange or the gateway's own 502; never an answer read off the
        // desynchronised connection, even the upstream's real one: where the leftovers end is
        // unknowable.
        if next.status == 200 {
            assert_ok(&next, "fresh");
            fresh += 1;
            let received = s.upstream.received();
            assert_ne!(
                received[2 * i + 1].conn,
                received[2 * i].conn,
                "{what}: a connection with leftover bytes carried the next request"
            );
        } else {
            next.assert_bad_gateway(what);
        }
    }
    // That is a fresh exchange every time: the second answer with leftovers comes on the
    // connection the first one's successor opened, and ends it too.
    if fresh == extras.len() {
        assert_eq!(conns(&s), [1, 2, 2, 3]);
    }
}

// === 6. What the upstream receives ===

#[tokio::test]
async fn request_framing_as_the_upstream_receives_it() {
    let s = setup(vec![Reply::ok("a"), Reply::ok("b"), Reply::ok("c")]).await;
    let host = s.upstream.addr.to_string();
    let mut client = Client::connect(&s).await;

    assert_ok(&client.get("/orders/get").await, "a");
    assert_ok(
        &client
            .exchange(
                "POST",
                "/orders/sized",
                &["Content-Type: text/plain"],
                b"hello",
            )
            .await,
        "b",
    );
    assert_ok(
        &client
            .exchange(
                "POST",
                "/orders/chunked",
                &["Transfer-Encoding: chunked"],
                b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
            .await,
        "c",
    );

    let received = s.upstream.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert!(r.head.ends_with(b"\r\n\r\n"), "{:?}", r.head_text());
        assert!(
            r.request_line().ends_with(" HTTP/1.1"),
            "{}",
            r.request_line()
        );
        assert_eq!(
            r.headers_named("host"),
            [host.as_str()],
            "{:?}",
            r.head_text()
        );
        // Lines end in CRLF, never a bare CR or LF, and each header line is `name: value`.
        let head = r.head_text();
        assert!(!head.replace("\r\n", "").contains(['\r', '\n']), "{head:?}");
        for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            assert!(line.contains(':'), "{line:?}");
        }
    }

    let get = &received[0];
    assert_eq!(get.request_line(), "GET /orders/get HTTP/1.1");
    assert!(
        get.headers_named("content-length").is_empty(),
        "{:?}",
        get.head_text()
    );
    assert!(
        get.headers_named("transfer-encoding").is_empty(),
        "{:?}",
        get.head_text()
    );
    assert!(get.body.is_empty());

    let sized = &received[1];
    assert_eq!(sized.request_line(), "POST /orders/sized HTTP/1.1");
    assert_eq!(sized.headers_named("content-length"), ["5"]);
    assert!(
        sized.headers_named("transfer-encoding").is_empty(),
        "{:?}",
        sized.head_text()
    );
    assert_eq!(sized.body, b"hello");

    let chunked = &received[2];
    assert_eq!(chunked.request_line(), "POST /orders/chunked HTTP/1.1");
    assert_eq!(chunked.headers_named("transfer-encoding"), ["chunked"]);
    assert!(
        chunked.headers_named("content-length").is_empty(),
        "{:?}",
        chunked.head_text()
    );
    let decoded = parse_chunked(&chunked.body);
    assert!(
        decoded.done && decoded.len == chunked.body.len(),
        "{decoded:?}"
    );
    assert_eq!(decoded.data, b"hello world");
    assert!(chunked.body.ends_with(b"0\r\n\r\n"));

    assert_eq!(conns(&s), [1, 1, 1]);
}
