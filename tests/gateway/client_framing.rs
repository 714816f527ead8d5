//! Client framing: how the gateway's client-facing HTTP/1.1 side reads requests off the wire and
//! frames what it writes back, pinned byte for byte on a raw loopback connection. They hold the
//! gateway's own HTTP/1.1 server to what RFC 9112 (message syntax and framing) and RFC 9110
//! (semantics) ask of a careful proxy. Pipelined requests are answered in order with their bodies intact; a
//! head may arrive in any number of pieces; persistence follows `Connection` and the version; every
//! framing a second reader could read another way (request smuggling, RFC 9112 §11.2) is refused
//! with 400 before anything is forwarded, and the connection is closed so nothing pipelined behind
//! it is read; `Expect: 100-continue` is answered before the body is needed; heads past the limits
//! get 431; responses are framed for the client's version.
//!
//! Every test runs the real gateway binary in front of a recording upstream. Tokens are not the
//! point, so `/orders` is public; `/private` needs a token (for refusals before the body is read),
//! and the provider is the in-process fake, which counts the calls it gets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::fake_idp::FakeIdp;
use crate::common::gateway::Gateway;
use crate::common::upstream::{Upstream, UpstreamBehaviour};
use crate::common::{base_config, orders_api, toml_string, with_listen};

/// How long any network wait of these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// Every method and path under `/orders` without a token.
const PUBLIC: &str = "[[api.rule]]\npaths = [\"/orders/**\"]\npublic = true\n";

// === Setup ===

struct Setup {
    idp: FakeIdp,
    upstream: Upstream,
    gateway: Gateway,
}

/// The fake provider, the echoing upstream, the gateway in front of it.
async fn setup() -> Setup {
    start(Upstream::start().await, "").await
}

/// The fake provider and the gateway in front of `upstream`: `/orders` public, `/private` needing
/// a token; `listen` added to `[listen]`.
async fn start(upstream: Upstream, listen: &str) -> Setup {
    let idp = FakeIdp::start().await;
    let apis = format!(
        "{}\n{}",
        orders_api(&upstream.url(), PUBLIC),
        protected_api(&upstream.url())
    );
    let config = with_listen(&base_config(&idp.issuer(), &apis), listen);
    let gateway = Gateway::start(&config).await;
    gateway.wait_ready().await;
    Setup {
        idp,
        upstream,
        gateway,
    }
}

/// `/private` on `upstream`, requiring a token (no public rule).
fn protected_api(upstream: &str) -> String {
    format!(
        "[[api]]\nname = \"private\"\npath_prefix = \"/private\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
        toml_string(upstream)
    )
}

impl Setup {
    /// `line` (a whole request line, e.g. `GET /orders/1 HTTP/1.1`), `Host`, `fields` (whole
    /// `Name: value` lines), the blank line, `body`: exactly that, no framing added.
    fn request(&self, line: &str, fields: &[&str], body: &[u8]) -> Vec<u8> {
        let mut head = format!("{line}\r\nHost: {}\r\n", self.gateway.proxy);
        for field in fields {
            head.push_str(field);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// A keep-alive `GET target` over HTTP/1.1.
    fn get(&self, target: &str) -> Vec<u8> {
        self.request(&format!("GET {target} HTTP/1.1"), &[], b"")
    }

    /// A keep-alive `POST target` with a Content-Length body.
    fn post(&self, target: &str, body: &[u8]) -> Vec<u8> {
        let length = format!("Content-Length: {}", body.len());
        self.request(&format!("POST {target} HTTP/1.1"), &[&length], body)
    }

    /// A chunked `POST /orders/upload` whose body (after the head) is `body`, then the request
    /// the smuggling tests pipeline behind it.
    fn chunked_post(&self, body: &[u8]) -> Vec<u8> {
        let line = "POST /orders/upload HTTP/1.1";
        let mut bytes = self.request(line, &["Transfer-Encoding: chunked"], body);
        bytes.extend_from_slice(&self.smuggled());
        bytes
    }

    /// The request a smuggling test hides behind a bad one: it must never reach the upstream.
    fn smuggled(&self) -> Vec<u8> {
        self.get("/orders/smuggled")
    }
}

// === A raw upstream ===

/// A raw upstream that answers every request head it reads (bodies are not read: tests send
/// none) with `reply`, byte for byte, then closes when `close` is set: for answers a hyper server
/// will not send (no `Date`, a close-delimited body). It counts the heads it read.
struct RawUpstream {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<usize>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task too.
        self.server.abort();
    }
}

impl RawUpstream {
    async fn start(reply: &'static [u8], close: bool) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("raw upstream: bind");
        let addr = listener.local_addr().expect("raw upstream: local_addr");
        let heads = Arc::new(Mutex::new(0));
        let counted = heads.clone();
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(answer_heads(stream, reply, close, counted.clone()));
            }
        });
        RawUpstream {
            addr,
            heads,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self) -> usize {
        *self.heads.lock().expect("raw upstream: lock")
    }
}

async fn answer_heads(mut stream: TcpStream, reply: &[u8], close: bool, heads: Arc<Mutex<usize>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.drain(..end + 4);
            *heads.lock().expect("raw upstream: lock") += 1;
            if stream.write_all(reply).await.is_err() || close {
                // Dropped: a close-delimited body ends here.
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// === The client ===

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An answer as the client read it.
struct Answer {
    status: u16,
    /// The status line and header fields, as sent.
    head: String,
    /// Interim (1xx) statuses read before it.
    informational: Vec<u16>,
    /// The body, de-chunked if it was chunked.
    body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    // The body as text, so a failure shows the bytes the gateway sent in readable form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("head", &self.head)
            .field("informational", &self.informational)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Answer {
    /// The first value of header `name` (any case).
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The request-target the echoing upstream says it was asked for.
    fn echoed_target(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {self:?}"));
        body["target"].as_str().unwrap_or_default().to_owned()
    }

    /// A 200 from the echoing upstream for `target`.
    fn assert_echo(&self, target: &str) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.echoed_target(), target, "{self:?}");
    }
}

/// One raw connection to the gateway; what it read and has not yet handed out is kept.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(s: &Setup) -> Conn {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(s.gateway.proxy))
            .await
            .expect("connecting to the gateway in time")
            .expect("connecting to the gateway");
        // Each write leaves as it is, not merged with the next by Nagle's algorithm.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`. A gateway that has already hung up may refuse them; what it answered
    /// before that is still read, and a missing answer fails there, with what did arrive.
    async fn send(&mut self, bytes: &[u8]) {
        let written = tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await;
        assert!(
            written.is_ok(),
            "the gateway did not take the bytes in {WAIT:?}"
        );
    }

    /// Reads more; `false` once the gateway closed (or reset) the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next head (1xx included), within `WAIT`. It must start right where the previous
    /// answer ended: a stray body byte before it is a framing error.
    async fn next_head(&mut self) -> String {
        let read = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                    return Some(String::from_utf8_lossy(&head[..end]).into_owned());
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await;
        let seen = String::from_utf8_lossy(&self.buf).into_owned();
        let head = match read {
            Ok(Some(head)) => head,
            Ok(None) => panic!("the gateway closed before a whole head; read: {seen:?}"),
            Err(_) => panic!("no whole head within {WAIT:?}; read: {seen:?}"),
        };
        assert!(head.starts_with("HTTP/1."), "not a status line: {head:?}");
        head
    }

    /// The next final answer, skipping (and recording) interim ones.
    async fn answer(&mut self) -> Answer {
        self.read_answer(false).await
    }

    /// The next final answer to a HEAD request: no body, whatever its fields say (RFC 9110 §9.3.2).
    async fn head_answer(&mut self) -> Answer {
        self.read_answer(true).await
    }

    async fn read_answer(&mut self, bodiless: bool) -> Answer {
        let mut informational = Vec::new();
        loop {
            let head = self.next_head().await;
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
            };
            // RFC 9112 §6.3: HEAD, 1xx, 204 and 304 answers end at their head.
            if !(bodiless || status == 204 || status == 304) {
                answer.body = self.read_body(&answer).await;
            }
            return answer;
        }
    }

    /// The body as the answer frames it (RFC 9112 §6.3): chunked, Content-Length, or until close.
    async fn read_body(&mut self, answer: &Answer) -> Vec<u8> {
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        let length = answer.header("content-length").map(|v| {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("a bad Content-Length from the gateway: {answer:?}"))
        });
        let read = tokio::time::timeout(WAIT, async {
            loop {
                if chunked && let Some((body, used)) = dechunk(&self.buf) {
                    self.buf.drain(..used);
                    return body;
                }
                if let Some(n) = length.filter(|n| !chunked && self.buf.len() >= *n) {
                    return self.buf.drain(..n).collect();
                }
                if !self.fill().await {
                    assert!(
                        !chunked && length.is_none(),
                        "the gateway closed mid-body: {answer:?}, read {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return std::mem::take(&mut self.buf);
                }
            }
        })
        .await;
        read.unwrap_or_else(|_| panic!("no whole body within {WAIT:?}: {answer:?}"))
    }

    /// Asserts the gateway closes the connection (within `WAIT`) without sending anything more.
    async fn assert_closed(&mut self, what: &str) {
        let closed = tokio::time::timeout(WAIT, async { while self.fill().await {} }).await;
        assert!(
            closed.is_ok(),
            "{what}: the gateway kept the connection open"
        );
        assert!(
            self.buf.is_empty(),
            "{what}: more after the answer: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// A chunked body at the start of `buf`: its data and the bytes it took (trailer section
/// included), or `None` while incomplete. Only the gateway's framing is read with it, so anything
/// unreadable fails the test.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let line = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
        let size_hex = line.split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("a chunk-size line that is not hex: {line:?}"));
        at = line_end + 2;
        if size == 0 {
            // The trailer section ends at an empty line.
            loop {
                let end = at + find(&buf[at..], b"\r\n")?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some((data, at));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        assert_eq!(
            &buf[at + size..at + size + 2],
            b"\r\n",
            "a chunk without CRLF"
        );
        data.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// Sends `request` on a new connection (a bad request, usually with a good one pipelined behind
/// it in the same write): the answer must be `status`, say `Connection: close` (RFC 9112 §9.6),
/// and be the last thing on the connection, which the gateway then closes; nothing reached the
/// upstream.
async fn assert_refused(s: &Setup, request: &[u8], status: u16, what: &str) -> Answer {
    let mut conn = Conn::open(s).await;
    conn.send(request).await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "{what}: a refusal that ends the connection says so: {answer:?}"
    );
    conn.assert_closed(what).await;
    s.upstream.assert_not_reached();
    answer
}

/// A framing refusal (RFC 9112 §6.3): 400, closed, nothing forwarded, not even what followed.
async fn assert_bad_framing(s: &Setup, request: &[u8], what: &str) {
    assert_refused(s, request, 400, what).await;
}

// === 1. Pipelining ===

/// RFC 9112 §9.3.2: a server MAY process pipelined requests in parallel but MUST send the
/// responses in the order the requests were received.
#[tokio::test]
async fn two_pipelined_gets_are_answered_in_order() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let mut both = s.get("/orders/first");
    both.extend_from_slice(&s.get("/orders/second"));
    conn.send(&both).await;
    conn.answer().await.assert_echo("/orders/first");
    conn.answer().await.assert_echo("/orders/second");
    let targets: Vec<String> = s
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/orders/first", "/orders/second"]);
}

/// A body between two pipelined requests is read to its Content-Length and no further: the
/// upstream gets it whole, and the next request starts right after it.
#[tokio::test]
async fn get_post_get_in_one_write_are_answered_in_order_with_the_body_intact() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let mut all = s.get("/orders/a");
    all.extend_from_slice(&s.post("/orders/b", b"hello, pipelined world"));
    all.extend_from_slice(&s.get("/orders/c"));
    conn.send(&all).await;
    for target in ["/orders/a", "/orders/b", "/orders/c"] {
        conn.answer().await.assert_echo(target);
    }
    let seen = s.upstream.requests();
    let got: Vec<(&str, &str, String)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str(), r.body_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("GET", "/orders/a", String::new()),
            ("POST", "/orders/b", "hello, pipelined world".to_owned()),
            ("GET", "/orders/c", String::new()),
        ]
    );
}

/// A chunked body is followed to its last chunk and trailer section, and not a byte further.
#[tokio::test]
async fn a_pipelined_chunked_post_is_followed_by_the_next_request() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = "POST /orders/chunked HTTP/1.1";
    let mut all = s.request(
        line,
        &["Transfer-Encoding: chunked"],
        b"4\r\nwiki\r\n0\r\n\r\n",
    );
    all.extend_from_slice(&s.get("/orders/after"));
    conn.send(&all).await;
    conn.answer().await.assert_echo("/orders/chunked");
    conn.answer().await.assert_echo("/orders/after");
    let seen = s.upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].body_str(), "wiki");
    assert_eq!(seen[1].target, "/orders/after");
}

// === 2. A head in pieces ===

/// TCP is a byte stream: a head may arrive in any number of reads (RFC 9112 §2.1), and none of
/// them is a request until the empty line.
#[tokio::test]
async fn a_head_arriving_a_byte_at_a_time_is_served() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let request = s.get("/orders/trickled");
    for byte in &request[..20] {
        conn.send(std::slice::from_ref(byte)).await;
    }
    conn.send(&request[20..]).await;
    conn.answer().await.assert_echo("/orders/trickled");
    assert_eq!(s.upstream.count(), 1);
}

/// Cuts inside a field name, between the CR and LF of the empty line, and inside the body.
#[tokio::test]
async fn a_request_cut_at_awkward_places_is_served_whole() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let request = s.post("/orders/cut", b"hello");
    let head_end = find(&request, b"\r\n\r\n").expect("a head") + 4;
    let cuts = [10, 30, head_end - 1, head_end + 2, request.len()];
    let mut from = 0;
    for to in cuts {
        conn.send(&request[from..to]).await;
        from = to;
    }
    conn.answer().await.assert_echo("/orders/cut");
    assert_eq!(s.upstream.last().body_str(), "hello");
}

// === 3. Persistence ===

/// RFC 9112 §9.3: HTTP/1.1 connections are persistent unless `close` is sent.
#[tokio::test]
async fn http11_without_connection_stays_open_for_the_next_request() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    conn.send(&s.get("/orders/one")).await;
    let first = conn.answer().await;
    first.assert_echo("/orders/one");
    assert_ne!(
        first.header("connection").as_deref(),
        Some("close"),
        "{first:?}"
    );
    conn.send(&s.get("/orders/two")).await;
    conn.answer().await.assert_echo("/orders/two");
    assert_eq!(s.upstream.count(), 2);
}

/// RFC 9112 §9.6: a server that receives `close` MUST close after its response, and SHOULD say
/// `close` in it; a request pipelined behind it is not served.
#[tokio::test]
async fn connection_close_is_answered_with_close_and_the_connection_ends() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let mut both = s.request("GET /orders/last HTTP/1.1", &["Connection: close"], b"");
    both.extend_from_slice(&s.get("/orders/never"));
    conn.send(&both).await;
    let answer = conn.answer().await;
    answer.assert_echo("/orders/last");
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "{answer:?}"
    );
    conn.assert_closed("after Connection: close").await;
    let targets: Vec<String> = s
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/orders/last"]);
}

/// RFC 9112 §9.3: an HTTP/1.0 request without `keep-alive` ends its connection.
#[tokio::test]
async fn http10_without_keep_alive_is_closed_after_the_answer() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    conn.send(&s.request("GET /orders/old HTTP/1.0", &[], b""))
        .await;
    conn.answer().await.assert_echo("/orders/old");
    conn.assert_closed("after an HTTP/1.0 answer").await;
}

/// RFC 9112 §9.3 and Appendix C.2.2: an HTTP/1.0 client asking for `keep-alive` keeps its
/// connection only if the answer says `keep-alive`; this one does, and serves a second request.
#[tokio::test]
async fn http10_keep_alive_stays_open_and_says_so() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let keep = s.request("GET /orders/one HTTP/1.0", &["Connection: keep-alive"], b"");
    conn.send(&keep).await;
    let first = conn.answer().await;
    first.assert_echo("/orders/one");
    let connection = first.header("connection").unwrap_or_default();
    assert!(connection.eq_ignore_ascii_case("keep-alive"), "{first:?}");
    let again = s.request("GET /orders/two HTTP/1.0", &["Connection: keep-alive"], b"");
    conn.send(&again).await;
    conn.answer().await.assert_echo("/orders/two");
    assert_eq!(s.upstream.count(), 2);
}

// === 4. Ambiguous framing (request smuggling, RFC 9112 §6.3 and §11.2) ===

/// `Content-Length: 5` then chunked: one reader takes 5 bytes, another the chunked body; the
/// request behind it would be seen by only one of them.
#[tokio::test]
async fn content_length_and_then_chunked_is_refused() {
    let s = setup().await;
    let line = "POST /orders/upload HTTP/1.1";
    let fields = ["Content-Length: 5", "Transfer-Encoding: chunked"];
    let mut request = s.request(line, &fields, b"0\r\n\r\n");
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, "Content-Length, Transfer-Encoding").await;
}

#[tokio::test]
async fn chunked_and_then_content_length_is_refused() {
    let s = setup().await;
    let line = "POST /orders/upload HTTP/1.1";
    let fields = ["Transfer-Encoding: chunked", "Content-Length: 5"];
    let mut request = s.request(line, &fields, b"0\r\n\r\n");
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, "Transfer-Encoding, Content-Length").await;
}

/// Two Content-Length fields, even equal: RFC 9110 §8.6 lets a recipient fold equal ones, but a
/// proxy that folds hands the next hop a message other readers see differently.
async fn content_lengths_are_refused(first: &str, second: &str) {
    let s = setup().await;
    let line = "POST /orders/upload HTTP/1.1";
    let mut request = s.request(line, &[first, second], b"hello");
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, &format!("{first} and {second}")).await;
}

#[tokio::test]
async fn two_equal_content_lengths_are_refused() {
    content_lengths_are_refused("Content-Length: 5", "Content-Length: 5").await;
}

#[tokio::test]
async fn two_different_content_lengths_are_refused() {
    content_lengths_are_refused("Content-Length: 5", "Content-Length: 6").await;
}

/// RFC 9112 §6.3 (5): a Content-Length that is not `1*DIGIT` is unrecoverable framing: 400 and
/// close. A sign, a list and trailing garbage are what lenient parsers read three ways.
async fn content_length_value_is_refused(value: &str) {
    let s = setup().await;
    let field = format!("Content-Length:{value}");
    let mut request = s.request("POST /orders/upload HTTP/1.1", &[&field], b"hello");
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, &format!("Content-Length {value:?}")).await;
}

#[tokio::test]
async fn a_signed_content_length_is_refused() {
    content_length_value_is_refused(" +5").await;
}

#[tokio::test]
async fn a_content_length_list_is_refused() {
    content_length_value_is_refused(" 5, 5").await;
}

#[tokio::test]
async fn a_content_length_with_trailing_garbage_is_refused() {
    content_length_value_is_refused("  5x").await;
}

/// RFC 9112 §6.3 (4): in a request whose last transfer coding is not chunked the body's length
/// cannot be determined: the server MUST answer 400 and close.
async fn transfer_encoding_is_refused(fields: &[&str], what: &str) {
    let s = setup().await;
    let mut request = s.request("POST /orders/upload HTTP/1.1", fields, b"0\r\n\r\n");
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, what).await;
}

#[tokio::test]
async fn chunked_that_is_not_the_last_coding_is_refused() {
    transfer_encoding_is_refused(&["Transfer-Encoding: chunked, gzip"], "chunked, gzip").await;
}

#[tokio::test]
async fn a_transfer_coding_without_chunked_is_refused() {
    transfer_encoding_is_refused(&["Transfer-Encoding: gzip"], "gzip alone").await;
}

/// RFC 9112 §6.1: chunked MUST NOT be applied more than once, so a message saying it was is
/// faulty; decoding it once (as today) gives the upstream a body a stricter reader would not.
#[tokio::test]
async fn chunked_twice_in_two_fields_is_refused() {
    let fields = ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"];
    transfer_encoding_is_refused(&fields, "two chunked fields").await;
}

#[tokio::test]
async fn chunked_twice_in_one_field_is_refused() {
    transfer_encoding_is_refused(&["Transfer-Encoding: chunked, chunked"], "chunked, chunked")
        .await;
}

/// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message MUST be treated as faulty framing
/// (even beside a Content-Length), and the connection closed: 1.0 readers do not know chunked.
#[tokio::test]
async fn transfer_encoding_in_http10_is_refused() {
    let s = setup().await;
    let line = "POST /orders/upload HTTP/1.0";
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let mut request = s.request(line, &["Transfer-Encoding: chunked"], body);
    request.extend_from_slice(&s.smuggled());
    assert_bad_framing(&s, &request, "Transfer-Encoding in HTTP/1.0").await;
}

/// RFC 9112 §7.1: chunk-size is `1*HEXDIG`; anything else is unrecoverable framing.
#[tokio::test]
async fn a_chunk_size_that_is_not_hex_is_refused() {
    let s = setup().await;
    let request = s.chunked_post(b"zz\r\nhello\r\n0\r\n\r\n");
    assert_bad_framing(&s, &request, "chunk size zz").await;
}

/// RFC 9112 §7.1: recipients MUST guard against integer overflow in chunk sizes: 2^64 (17 hex
/// digits) does not fit, and must not wrap to something small.
#[tokio::test]
async fn a_chunk_size_past_64_bits_is_refused() {
    let s = setup().await;
    let request = s.chunked_post(b"10000000000000005\r\nhello\r\n0\r\n\r\n");
    assert_bad_framing(&s, &request, "a 2^64 + 5 chunk size").await;
}

/// The chunk's data must be followed by CRLF (RFC 9112 §7.1); a reader that skips whatever is
/// there reads a different next chunk than one that does not.
#[tokio::test]
async fn chunk_data_not_followed_by_crlf_is_refused() {
    let s = setup().await;
    let request = s.chunked_post(b"5\r\nhelloXX0\r\n\r\n");
    assert_bad_framing(&s, &request, "chunk data without CRLF").await;
}

/// Chunk lines end in CRLF (RFC 9112 §7.1); the bare-LF leniency of §2.2 is for the start line
/// and fields, and a chunk line read two ways is how chunked smuggling works.
#[tokio::test]
async fn bare_lf_chunk_lines_are_refused() {
    let s = setup().await;
    let request = s.chunked_post(b"5\nhello\n0\n\n");
    assert_bad_framing(&s, &request, "bare LF chunk lines").await;
}

/// `0\r\n\n`: the last chunk, then a bare LF where the trailer section's empty line belongs.
/// Read strictly that is 400; read leniently the body ends there and the next request follows.
/// Either way the next request is either refused with the body or served: never swallowed.
#[tokio::test]
async fn a_bare_lf_after_the_last_chunk_does_not_swallow_the_next_request() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = "POST /orders/upload HTTP/1.1";
    let mut all = s.request(
        line,
        &["Transfer-Encoding: chunked"],
        b"5\r\nhello\r\n0\r\n\n",
    );
    all.extend_from_slice(&s.get("/orders/next"));
    conn.send(&all).await;
    let first = conn.answer().await;
    if first.status == 400 {
        conn.assert_closed("after a refused chunked body").await;
        s.upstream.assert_not_reached();
        return;
    }
    first.assert_echo("/orders/upload");
    conn.answer().await.assert_echo("/orders/next");
}

/// The same bare LF, then a request hidden as trailer fields, then two Content-Length fields:
/// whichever way the body is read, the request with two lengths must not be forwarded.
#[tokio::test]
async fn a_bare_lf_after_the_last_chunk_cannot_slip_two_content_lengths_through() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = "POST /orders/upload HTTP/1.1";
    let mut all = s.request(
        line,
        &["Transfer-Encoding: chunked"],
        b"5\r\nhello\r\n0\r\n\n",
    );
    all.extend_from_slice(&s.get("/orders/hidden"));
    let twice = ["Content-Length: 5", "Content-Length: 5"];
    all.extend_from_slice(&s.request("POST /orders/twice HTTP/1.1", &twice, b"hello"));
    all.extend_from_slice(&s.get("/orders/last"));
    conn.send(&all).await;
    // Whatever came before, the connection ends in a refusal.
    let mut last = conn.answer().await;
    while last.status != 400 {
        last = conn.answer().await;
    }
    conn.assert_closed("after the refusal").await;
    let targets: Vec<String> = s
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert!(
        !targets
            .iter()
            .any(|t| t == "/orders/twice" || t == "/orders/last"),
        "forwarded past the framing check: {targets:?}"
    );
}

/// RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host field.
#[tokio::test]
async fn two_host_fields_are_refused() {
    let s = setup().await;
    let request = s.request("GET /orders/1 HTTP/1.1", &["Host: elsewhere.example"], b"");
    assert_refused(&s, &request, 400, "two Host fields").await;
}

/// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a Host field.
#[tokio::test]
async fn http11_without_host_is_refused() {
    let s = setup().await;
    let request = b"GET /orders/1 HTTP/1.1\r\n\r\n";
    assert_refused(&s, request, 400, "no Host").await;
}

// === 5. Chunked request bodies ===

/// RFC 9112 §7.1.1: a recipient MUST ignore chunk extensions it does not understand; they are
/// not part of the data.
#[tokio::test]
async fn chunk_extensions_are_accepted_and_not_part_of_the_body() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let body = b"5;ext=1\r\nhello\r\n6;a=b;c=\"d e\"\r\n world\r\n0;last\r\n\r\n";
    let line = "POST /orders/ext HTTP/1.1";
    conn.send(&s.request(line, &["Transfer-Encoding: chunked"], body))
        .await;
    conn.answer().await.assert_echo("/orders/ext");
    assert_eq!(s.upstream.last().body_str(), "hello world");
}

/// RFC 9112 §7.1.2: a trailer section may follow the last chunk; the body before it arrives
/// whole, and the request pipelined after the section's empty line is served.
#[tokio::test]
async fn trailer_fields_are_accepted_and_the_body_arrives_whole() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let body = b"7\r\nchunked\r\n5\r\n body\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let line = "POST /orders/trailers HTTP/1.1";
    let mut all = s.request(line, &["Transfer-Encoding: chunked"], body);
    all.extend_from_slice(&s.get("/orders/after"));
    conn.send(&all).await;
    conn.answer().await.assert_echo("/orders/trailers");
    conn.answer().await.assert_echo("/orders/after");
    let seen = s.upstream.requests();
    assert_eq!(seen[0].body_str(), "chunked body", "{seen:?}");
}

/// RFC 9112 §7: transfer-coding names are case-insensitive.
#[tokio::test]
async fn the_chunked_coding_is_named_in_any_case() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = "POST /orders/case HTTP/1.1";
    let request = s.request(
        line,
        &["Transfer-Encoding: ChUnKeD"],
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    conn.send(&request).await;
    conn.answer().await.assert_echo("/orders/case");
    assert_eq!(s.upstream.last().body_str(), "abc");
}

/// Chunk boundaries are not read boundaries: a body cut inside a size line, inside data and
/// between CR and LF arrives whole.
#[tokio::test]
async fn a_chunked_body_in_small_writes_arrives_whole() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = "POST /orders/pieces HTTP/1.1";
    conn.send(&s.request(line, &["Transfer-Encoding: chunked"], b""))
        .await;
    for piece in [
        &b"1"[..],
        b"0\r",
        b"\n0123456",
        b"789abcdef\r\n",
        b"0\r\n",
        b"\r\n",
    ] {
        conn.send(piece).await;
    }
    conn.answer().await.assert_echo("/orders/pieces");
    assert_eq!(s.upstream.last().body_str(), "0123456789abcdef");
}

// === 6. Expect: 100-continue ===

/// RFC 9110 §10.1.1: a server that will read the body answers `100 (Continue)` before it needs
/// it; the client waits for it before sending the body.
#[tokio::test]
async fn expect_100_continue_gets_100_before_the_body_then_the_answer() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let fields = ["Content-Length: 5", "Expect: 100-continue"];
    conn.send(&s.request("POST /orders/upload HTTP/1.1", &fields, b""))
        .await;
    let interim = conn.next_head().await;
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim:?}");
    assert_eq!(
        s.upstream.count(),
        0,
        "nothing is forwarded before the body"
    );
    conn.send(b"hello").await;
    let answer = conn.answer().await;
    answer.assert_echo("/orders/upload");
    assert!(answer.informational.is_empty(), "one 100 only: {answer:?}");
    assert_eq!(s.upstream.last().body_str(), "hello");
}

/// RFC 9110 §10.1.1: a server may answer with a final status instead of 100 when it will not
/// read the body; a request refused on its head (no token: 401) gets that, and no 100.
#[tokio::test]
async fn expect_100_continue_refused_on_its_head_gets_the_final_status_only() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let fields = ["Content-Length: 5", "Expect: 100-continue"];
    conn.send(&s.request("POST /private/upload HTTP/1.1", &fields, b""))
        .await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.informational.is_empty(),
        "no 100 before a refusal: {answer:?}"
    );
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"private\""),
        "{answer:?}"
    );
    s.upstream.assert_not_reached();
    assert_eq!(s.idp.introspection_count(), 0, "no token, no introspection");
}

/// RFC 9110 §10.1.1: a server answering before the whole body SHOULD say whether it closes the
/// connection or reads and discards the body. Either is fine; closing without `close` is not.
#[tokio::test]
async fn a_refusal_before_the_body_says_whether_the_connection_stays() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let fields = ["Content-Length: 5", "Expect: 100-continue"];
    conn.send(&s.request("POST /private/upload HTTP/1.1", &fields, b""))
        .await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, 401, "{answer:?}");
    if answer.header("connection").as_deref() == Some("close") {
        conn.assert_closed("after a refusal that said close").await;
        return;
    }
    // It stays: the body is read and dropped, and the next request is served.
    let mut rest = b"hello".to_vec();
    rest.extend_from_slice(&s.get("/orders/next"));
    conn.send(&rest).await;
    conn.answer().await.assert_echo("/orders/next");
}

/// RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request (a
/// 1.0 client does not know 1xx).
#[tokio::test]
async fn expect_100_continue_in_http10_is_ignored() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let fields = ["Content-Length: 5", "Expect: 100-continue"];
    conn.send(&s.request("POST /orders/old HTTP/1.0", &fields, b"hello"))
        .await;
    let answer = conn.answer().await;
    answer.assert_echo("/orders/old");
    assert!(answer.informational.is_empty(), "no 1xx to 1.0: {answer:?}");
    assert_eq!(s.upstream.last().body_str(), "hello");
}

// === 7. Head limits and malformed heads ===

/// RFC 6585 §5: a head larger than the server will read is 431; one within it is served.
#[tokio::test]
async fn a_head_over_max_header_bytes_is_431() {
    let s = start(Upstream::start().await, "max_header_bytes = 8192").await;
    let over = format!("X-Filler: {}", "a".repeat(12_000));
    let request = s.request("GET /orders/big HTTP/1.1", &[&over], b"");
    assert_refused(&s, &request, 431, "a 12 KB head").await;

    let within = format!("X-Filler: {}", "a".repeat(4_000));
    let mut conn = Conn::open(&s).await;
    conn.send(&s.request("GET /orders/fits HTTP/1.1", &[&within], b""))
        .await;
    conn.answer().await.assert_echo("/orders/fits");
}

/// The field count is bounded as well as the bytes: 101 fields (Host and 100 more) is 431; 60
/// are served.
#[tokio::test]
async fn more_than_100_header_fields_is_431() {
    let s = setup().await;
    let fields: Vec<String> = (0..100).map(|i| format!("X-Field-{i}: v")).collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let request = s.request("GET /orders/many HTTP/1.1", &fields, b"");
    assert_refused(&s, &request, 431, "101 fields").await;

    let mut conn = Conn::open(&s).await;
    conn.send(&s.request("GET /orders/some HTTP/1.1", &fields[..59], b""))
        .await;
    conn.answer().await.assert_echo("/orders/some");
    assert!(s.upstream.last().has_header("x-field-58"));
}

/// RFC 9112 §3: request-line = method SP request-target SP HTTP-version, and a recipient of an
/// invalid one SHOULD answer 400. (Runs of spaces are not tested: §3 lets a recipient split on
/// whitespace.)
async fn request_line_is_refused(line: &str) {
    let s = setup().await;
    let request = s.request(line, &[], b"");
    assert_refused(&s, &request, 400, &format!("request line {line:?}")).await;
}

#[tokio::test]
async fn a_request_line_without_a_version_is_400() {
    let s = setup().await;
    assert_refused(&s, b"GET /\r\n\r\n", 400, "GET / alone").await;
}

#[tokio::test]
async fn a_request_line_with_an_extra_word_is_400() {
    request_line_is_refused("GET /orders/1 HTTP/1.1 extra").await;
}

#[tokio::test]
async fn a_method_with_a_separator_in_it_is_400() {
    request_line_is_refused("GE(T /orders/1 HTTP/1.1").await;
}

/// A version the gateway does not speak in HTTP/1.1 syntax is refused, not guessed at; which
/// status is `an_unsupported_major_version_is_505`'s business.
#[tokio::test]
async fn an_unsupported_major_version_is_refused() {
    let s = setup().await;
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let mut conn = Conn::open(&s).await;
        conn.send(&s.request(&format!("GET /orders/1 {version}"), &[], b""))
            .await;
        let answer = conn.answer().await;
        assert!([400, 505].contains(&answer.status), "{version}: {answer:?}");
        conn.assert_closed(version).await;
    }
    s.upstream.assert_not_reached();
}

/// RFC 9110 §15.6.6: 505 is the answer to a major version the server does not support.
#[tokio::test]
async fn an_unsupported_major_version_is_505() {
    let s = setup().await;
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let request = s.request(&format!("GET /orders/1 {version}"), &[], b"");
        assert_refused(&s, &request, 505, version).await;
    }
}

/// RFC 9110 §2.5: a recipient SHOULD process a higher minor version of a major version it
/// implements as the highest minor version it conforms to.
#[tokio::test]
async fn a_higher_minor_version_is_served_as_http11() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    conn.send(&s.request("GET /orders/later HTTP/1.2", &[], b""))
        .await;
    conn.answer().await.assert_echo("/orders/later");
}

/// RFC 9112 §5.1: a server MUST reject with 400 a request with whitespace between a field name
/// and its colon: some readers take `Host ` as another field than `Host`.
#[tokio::test]
async fn whitespace_before_the_colon_is_400() {
    let s = setup().await;
    for field in ["Host : elsewhere.example", "X-Test : 1", "X-Test\t: 1"] {
        let request = s.request("GET /orders/1 HTTP/1.1", &[field], b"");
        assert_refused(&s, &request, 400, field).await;
    }
}

/// RFC 9112 §5.2: obs-fold (a line starting with space or tab continues the field before) is
/// rejected with 400 or unfolded; a proxy refuses it, so no hop reads it another way.
#[tokio::test]
async fn an_obs_fold_continuation_line_is_400() {
    let s = setup().await;
    for fold in [" folded", "\tfolded"] {
        let fields = ["X-Test: first", fold];
        let request = s.request("GET /orders/1 HTTP/1.1", &fields, b"");
        assert_refused(&s, &request, 400, &format!("obs-fold {fold:?}")).await;
    }
}

/// RFC 9112 §2.2: whitespace between the request line and the first field MUST be rejected or
/// the line ignored; taking it as a field (`Host` here) would route by a hidden host.
#[tokio::test]
async fn whitespace_before_the_first_field_is_400() {
    let s = setup().await;
    let host = format!("Host: {}", s.gateway.proxy);
    let request = format!("GET /orders/1 HTTP/1.1\r\n Host: elsewhere.example\r\n{host}\r\n\r\n");
    assert_refused(&s, request.as_bytes(), 400, "space before the first field").await;
}

/// RFC 9110 §5.5: a field value with NUL (or CR, LF) MUST be rejected or those replaced by SP;
/// a proxy rejects it. A line without a colon, or without a name, is not a field at all.
#[tokio::test]
async fn malformed_field_lines_are_400() {
    let s = setup().await;
    for field in ["X-Test: a\0b", "X-Test no colon", ": no name"] {
        let request = s.request("GET /orders/1 HTTP/1.1", &[field], b"");
        assert_refused(&s, &request, 400, &format!("{field:?}")).await;
    }
}

/// RFC 9112 §3.2.2: a server MUST accept the absolute form of the target; the upstream gets
/// the origin form.
#[tokio::test]
async fn an_absolute_form_target_is_served() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let line = format!("GET http://{}/orders/absolute HTTP/1.1", s.gateway.proxy);
    conn.send(&s.request(&line, &[], b"")).await;
    conn.answer().await.assert_echo("/orders/absolute");
}

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line (some
/// clients send a CRLF after a POST body).
#[tokio::test]
async fn an_empty_line_before_the_request_line_is_ignored() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let mut request = b"\r\n".to_vec();
    request.extend_from_slice(&s.get("/orders/after-crlf"));
    conn.send(&request).await;
    conn.answer().await.assert_echo("/orders/after-crlf");
}

// === 8. Responses ===

/// RFC 9110 §9.3.2: a HEAD answer has no body, whatever Content-Length it carries; the next
/// answer begins right after its head (`next_head` fails on a stray byte).
#[tokio::test]
async fn a_head_answer_has_no_body_and_the_next_answer_follows_it() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let mut both = s.request("HEAD /orders/head HTTP/1.1", &[], b"");
    both.extend_from_slice(&s.get("/orders/then"));
    conn.send(&both).await;
    let head = conn.head_answer().await;
    assert_eq!(head.status, 200, "{head:?}");
    conn.answer().await.assert_echo("/orders/then");
    let methods: Vec<String> = s
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

/// RFC 9110 §15.3.5: a 204 ends at its head; RFC 9110 §8.6 and RFC 9112 §6.1: it carries
/// neither Content-Length nor Transfer-Encoding.
#[tokio::test]
async fn a_204_from_the_upstream_has_no_body() {
    let s = start(
        Upstream::start_with(UpstreamBehaviour::Status(204)).await,
        "",
    )
    .await;
    let mut conn = Conn::open(&s).await;
    let mut both = s.get("/orders/one");
    both.extend_from_slice(&s.get("/orders/two"));
    conn.send(&both).await;
    for _ in 0..2 {
        let answer = conn.answer().await;
        assert_eq!(answer.status, 204, "{answer:?}");
        assert_eq!(answer.header("content-length"), None, "{answer:?}");
        assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");
    }
    assert_eq!(s.upstream.count(), 2);
}

/// What a close-delimited upstream answer sends: no Content-Length, no chunked, then close.
const UNKNOWN_LENGTH: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\na body of unknown length";

/// The gateway in front of a raw upstream that answers every request with `reply`.
async fn in_front_of(reply: &'static [u8], close: bool) -> (Setup, RawUpstream) {
    let raw = RawUpstream::start(reply, close).await;
    // The recording upstream only serves as the config's `/private`; nothing is sent there.
    let recording = Upstream::start().await;
    let idp = FakeIdp::start().await;
    let apis = format!(
        "{}\n{}",
        orders_api(&raw.url(), PUBLIC),
        protected_api(&recording.url())
    );
    let gateway = Gateway::start(&base_config(&idp.issuer(), &apis)).await;
    gateway.wait_ready().await;
    let s = Setup {
        idp,
        upstream: recording,
        gateway,
    };
    (s, raw)
}

/// RFC 9112 §7: an HTTP/1.1 client gets a body of unknown length chunked, and keeps its
/// connection.
#[tokio::test]
async fn a_body_of_unknown_length_reaches_http11_chunked() {
    let (s, raw) = in_front_of(UNKNOWN_LENGTH, true).await;
    let mut conn = Conn::open(&s).await;
    conn.send(&s.get("/orders/stream")).await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let te = answer.header("transfer-encoding").unwrap_or_default();
    assert!(te.eq_ignore_ascii_case("chunked"), "{answer:?}");
    assert_eq!(answer.body, b"a body of unknown length", "{answer:?}");
    conn.send(&s.get("/orders/again")).await;
    assert_eq!(conn.answer().await.status, 200);
    assert_eq!(raw.count(), 2);
}

/// RFC 9112 §6.1: chunked MUST NOT be sent to an HTTP/1.0 client; a body of unknown length is
/// delimited by closing the connection (RFC 9112 §6.3 (8)).
#[tokio::test]
async fn a_body_of_unknown_length_reaches_http10_close_delimited() {
    let (s, raw) = in_front_of(UNKNOWN_LENGTH, true).await;
    let mut conn = Conn::open(&s).await;
    conn.send(&s.request("GET /orders/stream HTTP/1.0", &[], b""))
        .await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");
    assert_eq!(answer.body, b"a body of unknown length", "{answer:?}");
    conn.assert_closed("after a close-delimited body").await;
    assert_eq!(raw.count(), 1);
}

/// An HTTP/1.0 client asked for keep-alive, but a body of unknown length can only end by
/// closing: the answer MUST NOT promise `keep-alive` (RFC 9112 Appendix C.2.2) unless it gives
/// a Content-Length.
#[tokio::test]
async fn a_body_of_unknown_length_to_a_keep_alive_http10_client_promises_no_keep_alive() {
    let (s, _raw) = in_front_of(UNKNOWN_LENGTH, true).await;
    let mut conn = Conn::open(&s).await;
    let keep = ["Connection: keep-alive"];
    conn.send(&s.request("GET /orders/stream HTTP/1.0", &keep, b""))
        .await;
    let answer = conn.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");
    let keeps = answer
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive"));
    assert!(
        !keeps || answer.header("content-length").is_some(),
        "keep-alive promised on a close-delimited body: {answer:?}"
    );
    assert_eq!(answer.body, b"a body of unknown length", "{answer:?}");
}

/// What an upstream without a clock sends: no Date.
const NO_DATE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/// RFC 9110 §6.6.1: a server with a clock MUST send Date in 2xx, 3xx and 4xx answers, and a
/// recipient forwarding an answer without one MUST add it. So: a forwarded answer that had none,
/// the gateway's own 401, a parse error's 400 and a 431.
#[tokio::test]
async fn every_answer_carries_a_date() {
    let (s, _raw) = in_front_of(NO_DATE, false).await;
    let oversized = format!("X-Filler: {}", "a".repeat(20_000));
    let requests = [
        ("forwarded", s.get("/orders/dated")),
        ("401", s.get("/private/1")),
        (
            "400",
            s.request("GET /orders/1 HTTP/1.1", &["X-Test : 1"], b""),
        ),
        (
            "431",
            s.request("GET /orders/1 HTTP/1.1", &[&oversized], b""),
        ),
    ];
    for (what, request) in requests {
        let mut conn = Conn::open(&s).await;
        conn.send(&request).await;
        let answer = conn.answer().await;
        let date = answer.header("date").unwrap_or_default();
        // IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
        assert!(
            date.len() == 29 && date.ends_with(" GMT"),
            "{what}: {answer:?}"
        );
    }
}

// === 9. Line endings ===

/// RFC 9112 §2.2: a recipient MAY take a bare LF as a line terminator in the start line and
/// fields. Either reading is fine here (today: served), but it is one of the two, at once.
#[tokio::test]
async fn bare_lf_line_endings_are_served_or_refused_never_half_read() {
    let s = setup().await;
    let mut conn = Conn::open(&s).await;
    let request = format!("GET /orders/lf HTTP/1.1\nHost: {}\n\n", s.gateway.proxy);
    conn.send(request.as_bytes()).await;
    let answer = conn.answer().await;
    if answer.status == 400 {
        conn.assert_closed("after a bare-LF refusal").await;
        s.upstream.assert_not_reached();
    } else {
        answer.assert_echo("/orders/lf");
    }
}

/// RFC 9112 §2.2: a bare CR (not followed by LF) anywhere but in content MUST be taken as
/// invalid or replaced by SP before anything else reads it; a proxy refuses it: 400.
#[tokio::test]
async fn a_bare_cr_in_the_head_is_400() {
    let s = setup().await;
    let host = format!("Host: {}", s.gateway.proxy);
    let cases = [
        (
            "in a value",
            format!("GET /orders/1 HTTP/1.1\r\n{host}\r\nX-Test: a\rb\r\n\r\n"),
        ),
        (
            "ending the request line",
            format!("GET /orders/1 HTTP/1.1\r{host}\r\n\r\n"),
        ),
        (
            "before CRLF",
            format!("GET /orders/1 HTTP/1.1\r\r\n{host}\r\n\r\n"),
        ),
        (
            "starting a line",
            format!("GET /orders/1 HTTP/1.1\r\n{host}\r\n\rX-Test: 1\r\n\r\n"),
        ),
        (
            "between fields",
            format!("GET /orders/1 HTTP/1.1\r\n{host}\r\nX-A: 1\rX-B: 2\r\n\r\n"),
        ),
    ];
    for (what, request) in cases {
        assert_refused(&s, request.as_bytes(), 400, &format!("a bare CR {what}")).await;
    }
}

/// The same where the empty line belongs: `\r\r\n` after the last field.
#[tokio::test]
async fn a_bare_cr_ending_the_head_is_400() {
    let s = setup().await;
    let request = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: {}\r\n\r\r\n",
        s.gateway.proxy
    );
    assert_refused(
        &s,
        request.as_bytes(),
        400,
        "a bare CR before the empty line",
    )
    .await;
}
