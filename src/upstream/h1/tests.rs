use super::*;
use crate::http1::{MAX_CHUNK_LINE, chunk_size};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The response's framing, with the fields it has noted as the head parser would.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    head_only: bool,
) -> Result<(Decoder, bool), Error> {
    let seen = Seen {
        connection: headers.contains_key(CONNECTION),
        content_length: headers.contains_key(CONTENT_LENGTH),
        transfer_encoding: headers.contains_key(TRANSFER_ENCODING),
    };
    super::framing(status, version, headers, head_only, seen)
}

#[test]
fn chunk_size_lines_are_read_strictly() {
    assert_eq!(chunk_size(b"5\r\nhello").unwrap(), Some((3, 5)));
    assert_eq!(chunk_size(b"1A;name=v\r\n").unwrap(), Some((11, 26)));
    assert_eq!(chunk_size(b"ff \t;x\r\n").unwrap(), Some((8, 255)));
    assert_eq!(chunk_size(b"0\r\n").unwrap(), Some((3, 0)));
    assert_eq!(chunk_size(b"12").unwrap(), None, "no line end yet");
    assert_eq!(
        chunk_size(b"ffffffffffffffff\r\n").unwrap(),
        Some((18, u64::MAX))
    );
    for bad in [
        &b"zz\r\n"[..],
        b"\r\n",
        b";ext\r\n",
        b"5\n",
        b"5 x\r\n",
        b"-5\r\n",
        b"1ffffffffffffffff\r\n",
    ] {
        assert!(
            chunk_size(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [b"1;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
    assert!(
        chunk_size(&long).is_err(),
        "an endless extension is refused"
    );
}

#[test]
fn content_lengths_are_plain_decimal_numbers() {
    assert_eq!(parse_length(b"0"), Some(0));
    assert_eq!(parse_length(b"1234"), Some(1234));
    assert_eq!(
        parse_length(b"9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    for bad in [
        &b""[..],
        b"+1",
        b"-1",
        b"1 2",
        b"0x10",
        b"12345678901234567890",
        b" 1",
    ] {
        assert_eq!(
            parse_length(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn headers(fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn frame(fields: &[(&str, &str)]) -> Result<(Decoder, bool), Error> {
    framing(
        StatusCode::OK,
        Version::HTTP_11,
        &mut headers(fields),
        false,
    )
}

#[test]
fn the_body_length_follows_rfc_9112() {
    use Decoder::*;
    assert_eq!(
        frame(&[("content-length", "5")]).unwrap(),
        (Length(5), true)
    );
    assert_eq!(frame(&[("content-length", "0")]).unwrap(), (Done, true));
    assert_eq!(
        frame(&[]).unwrap(),
        (Close, false),
        "no framing: until close"
    );
    assert_eq!(
        frame(&[("transfer-encoding", "gzip, Chunked")]).unwrap(),
        (ChunkSize, true)
    );
    assert_eq!(
        frame(&[("transfer-encoding", "gzip")]).unwrap(),
        (Close, false),
        "chunked not last: until close"
    );
    // Both: chunked wins, and the connection carries nothing more.
    assert_eq!(
        frame(&[("content-length", "5"), ("transfer-encoding", "chunked")]).unwrap(),
        (ChunkSize, false)
    );
    for bad in [
        &[("transfer-encoding", "chunked, gzip")][..],
        &[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ],
        &[("content-length", "5"), ("content-length", "6")],
        &[("content-length", "5, 6")],
        &[("content-length", "-1")],
        &[("content-length", "abc")],
        &[("content-length", "")],
    ] {
        assert!(frame(bad).is_err(), "{bad:?}");
    }
    let mut same = headers(&[("content-length", "5, 5"), ("content-length", "5")]);
    let framed = framing(StatusCode::OK, Version::HTTP_11, &mut same, false).unwrap();
    assert_eq!(framed, (Length(5), true));
    assert_eq!(same.get_all(CONTENT_LENGTH).iter().count(), 1, "normalised");

    assert_eq!(
        frame(&[("connection", "keep-alive, Close"), ("content-length", "1")]).unwrap(),
        (Length(1), false)
    );
    let mut old = headers(&[("content-length", "1")]);
    assert_eq!(
        framing(StatusCode::OK, Version::HTTP_10, &mut old, false).unwrap(),
        (Length(1), false)
    );
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
        let mut h = headers(&[("content-length", "10")]);
        assert_eq!(
            framing(status, Version::HTTP_11, &mut h, false).unwrap(),
            (Done, true)
        );
    }
    let mut head = headers(&[("content-length", "10")]);
    assert_eq!(
        framing(StatusCode::OK, Version::HTTP_11, &mut head, true).unwrap(),
        (Done, true)
    );
}

/// A connection to a one-shot upstream that reads one request head and writes `answer`, then
/// keeps the socket open until the test ends (or closes it, with `close`). Returns the request
/// bytes it read.
async fn exchange(answer: &'static [u8], close: bool) -> (Conn, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        for piece in answer.chunks(7) {
            socket.write_all(piece).await.unwrap();
            socket.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        if !close {
            let _ = socket.read(&mut buf).await;
        }
        got
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    (Conn::new(Stream::Plain(stream)), server)
}

fn get(target: &str) -> Request<ProxyBody> {
    let mut req = Request::new(crate::body::empty());
    *req.uri_mut() = target.parse().unwrap();
    // The endpoint's Host is the connection's to write: one in the map is never sent.
    req.headers_mut()
        .insert(HOST, HeaderValue::from_static("client.example"));
    req
}

const UP: HeaderValue = HeaderValue::from_static("up.example");

fn added() -> Added<'static> {
    static FIELDS: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> =
        std::sync::LazyLock::new(|| {
            vec![(
                HeaderName::from_static("x-added"),
                HeaderValue::from_static("1"),
            )]
        });
    static HOST_VALUE: HeaderValue = UP;
    Added {
        host: &HOST_VALUE,
        fields: &FIELDS,
    }
}

/// One exchange on `conn`, its connection released to a pool of its own.
async fn send(conn: Conn, req: Request<ProxyBody>) -> Result<Response<ProxyBody>, Failed> {
    let release = Release {
        pool: UpstreamPool::default(),
        key: "k".into(),
    };
    conn.send(req, added(), Duration::from_secs(5), release)
        .await
}

async fn answer(
    conn: Conn,
    req: Request<ProxyBody>,
    pool: &UpstreamPool,
    key: &Arc<str>,
) -> (StatusCode, HeaderMap, Vec<u8>, Option<HeaderMap>) {
    let release = Release {
        pool: pool.clone(),
        key: key.clone(),
    };
    let response = match conn
        .send(req, added(), Duration::from_secs(5), release)
        .await
    {
        Ok(response) => response,
        Err(failed) => panic!("exchange failed: {}", failed.error),
    };
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("a whole body");
    let trailers = collected.trailers().cloned();
    (
        parts.status,
        parts.headers,
        collected.to_bytes().to_vec(),
        trailers,
    )
}

#[tokio::test]
async fn a_chunked_answer_with_trailers_is_decoded_and_its_connection_kept() {
    let (conn, server) = exchange(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
          5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 42\r\n\r\n",
        false,
    )
    .await;
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (status, _, body, trailers) = answer(conn, get("/a?b=c"), &pool, &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"hello, world");
    assert_eq!(trailers.unwrap().get("x-sum").unwrap(), "42");
    assert!(
        pool.checkout(&key).is_some(),
        "the connection went back to the pool"
    );
    let request = server.await.unwrap();
    let request = String::from_utf8(request).unwrap();
    assert!(request.starts_with("GET /a?b=c HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("\r\nhost: up.example\r\n"), "{request}");
    assert!(!request.contains("client.example"), "{request}");
    assert!(
        request.ends_with("\r\nx-added: 1\r\n\r\n"),
        "added last: {request}"
    );
    assert!(
        !request.to_ascii_lowercase().contains("content-length"),
        "{request}"
    );
}

#[tokio::test]
async fn this_hops_fields_stay_here() {
    let (conn, _server) = exchange(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
          Transfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        false,
    )
    .await;
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (_, headers, body, _) = answer(conn, get("/"), &pool, &key).await;
    assert_eq!(body, b"ok");
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert!(headers.contains_key("x-kept"));
    assert!(pool.checkout(&key).is_some());

    // `Connection: close` is heeded though not passed on; one naming a field is passed on, for
    // the forwarder to remove it and the field.
    let (conn, _server) = exchange(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .await;
    let (_, headers, _, _) = answer(conn, get("/"), &pool, &key).await;
    assert!(!headers.contains_key(CONNECTION), "{headers:?}");
    assert!(pool.checkout(&key).is_none(), "closed after its answer");
    let (conn, _server) = exchange(
        b"HTTP/1.1 200 OK\r\nConnection: x-hop, close\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .await;
    let (_, headers, _, _) = answer(conn, get("/"), &pool, &key).await;
    assert!(headers.contains_key(CONNECTION) && headers.contains_key("x-hop"));
    assert!(pool.checkout(&key).is_none(), "closed after its answer");
}

#[tokio::test]
async fn informational_answers_are_skipped() {
    let (conn, _server) = exchange(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n\
          HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        false,
    )
    .await;
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (status, headers, body, _) = answer(conn, get("/"), &pool, &key).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        !headers.contains_key("link"),
        "the 103's fields stay with it"
    );
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn bytes_past_the_answer_keep_the_connection_out_of_the_pool() {
    let (conn, _server) = exchange(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n",
        false,
    )
    .await;
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (_, _, body, _) = answer(conn, get("/"), &pool, &key).await;
    assert_eq!(body, b"hello");
    assert!(
        pool.checkout(&key).is_none(),
        "a desynchronised connection is closed"
    );
}

#[tokio::test]
async fn an_answer_until_close_is_read_to_the_end_and_not_kept() {
    let (conn, _server) = exchange(b"HTTP/1.0 200 OK\r\n\r\nall of it", true).await;
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (_, _, body, _) = answer(conn, get("/"), &pool, &key).await;
    assert_eq!(body, b"all of it");
    assert!(pool.checkout(&key).is_none());
}

#[tokio::test]
async fn a_connection_closed_unanswered_gives_back_a_bodiless_request() {
    let (conn, _server) = exchange(b"", true).await;
    let failed = send(conn, get("/again")).await.expect_err("no answer");
    assert!(matches!(failed.error, Error::Closed), "{}", failed.error);
    let again = failed.request.expect("bodiless: it may be sent again");
    assert_eq!(again.uri(), "/again");
    assert_eq!(again.headers().len(), 1, "the request's own fields, whole");
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_an_end() {
    let (conn, _server) =
        exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", true).await;
    let response = send(conn, get("/")).await.expect("a head");
    let err = response.into_body().collect().await.expect_err("cut short");
    assert!(matches!(err, BodyError::Upstream(_)), "{err}");
}

#[tokio::test]
async fn malformed_heads_are_refused() {
    for bad in [
        &b"HTTP/1.1 2OO OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        let (conn, _server) = exchange(bad, true).await;
        let failed = send(conn, get("/")).await.expect_err("refused");
        assert!(
            matches!(failed.error, Error::Head(_)),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            failed.error
        );
        assert!(
            failed.request.is_none(),
            "an answer came: not to be sent again"
        );
    }
}

#[tokio::test]
async fn a_request_body_is_framed_by_its_length_or_chunked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        // Open until the client lets go.
        let _ = socket.read(&mut buf).await;
        got
    });
    let conn = Conn::new(Stream::Plain(TcpStream::connect(addr).await.unwrap()));
    let stream = futures_util::stream::iter([
        Ok::<_, BodyError>(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::data(Bytes::from_static(b"defgh"))),
    ]);
    let mut req = get("/up");
    *req.method_mut() = Method::POST;
    req.headers_mut()
        .insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
    *req.body_mut() = http_body_util::StreamBody::new(stream).boxed();
    let pool = UpstreamPool::default();
    let key: Arc<str> = "k".into();
    let (status, _, _, _) = answer(conn, req, &pool, &key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(pool.checkout(&key).is_some(), "both messages ended: kept");
    let got = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(got.starts_with("POST /up HTTP/1.1\r\n"), "{got}");
    assert!(got.contains("\r\ntransfer-encoding: chunked\r\n"), "{got}");
    assert!(
        !got.contains("gzip"),
        "the request's own framing header is replaced: {got}"
    );
    assert!(
        got.ends_with("\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{got}"
    );
}
