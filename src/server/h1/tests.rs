use super::*;

fn head(bytes: &[u8]) -> Result<Option<Head>, Refusal> {
    parse_head(&mut BytesMut::from(bytes), 8192)
}

fn parsed(bytes: &[u8]) -> Head {
    head(bytes).expect("a valid head").expect("a whole head")
}

#[test]
fn a_head_is_parsed_in_place_and_taken_out() {
    let mut read =
        BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\nGET /next"[..]);
    let head = parse_head(&mut read, 8192).unwrap().unwrap();
    assert_eq!(head.parts.method, Method::GET);
    assert_eq!(head.parts.uri, "/a?b=1");
    assert_eq!(head.parts.version, Version::HTTP_11);
    assert_eq!(head.parts.headers["x-y"], "z");
    assert!(head.body.is_none() && head.keep_alive && !head.head_only);
    assert_eq!(
        &read[..],
        b"GET /next",
        "the next request stays in the buffer"
    );
    assert!(parse_head(&mut read, 8192).unwrap().is_none(), "partial");
}

#[test]
fn heads_past_the_limits_are_431_and_bad_versions_505() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert!(matches!(head(big.as_bytes()), Err(Refusal::TooLarge(_))));
    assert!(
        matches!(head(&big.as_bytes()[..8500]), Err(Refusal::TooLarge(_))),
        "partial too"
    );
    let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert!(matches!(head(many.as_bytes()), Err(Refusal::TooLarge(_))));
    assert_eq!(
        head(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n").err(),
        Some(Refusal::Version)
    );
    assert_eq!(
        head(b"GET / HTTP/1.x\r\nHost: x\r\n\r\n").err(),
        Some(Refusal::Version)
    );
    let later = parsed(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n");
    assert_eq!(later.parts.version, Version::HTTP_11, "RFC 9110 §2.5");
    for bad in [
        &b"GET /\r\n\r\n"[..],
        b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\rX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ] {
        assert!(
            matches!(head(bad), Err(Refusal::BadRequest(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn request_framing_is_strict() {
    let framing = |fields: &str, version: &str| {
        let text = format!("POST / {version}\r\nHost: x\r\n{fields}\r\n");
        head(text.as_bytes()).map(|h| {
            let h = h.expect("whole");
            (h.body, h.ambiguous, h.keep_alive)
        })
    };
    let http11 = "HTTP/1.1";
    assert_eq!(
        framing("Content-Length: 5\r\n", http11),
        Ok((Some(Decoder::Length(5)), None, true))
    );
    assert_eq!(
        framing("Content-Length: 0\r\n", http11),
        Ok((None, None, true))
    );
    assert_eq!(
        framing("Transfer-Encoding: gzip, chunked\r\n", http11),
        Ok((Some(Decoder::ChunkSize), None, true))
    );
    for bad in [
        "Content-Length: +5\r\n",
        "Content-Length: 5x\r\n",
        "Content-Length:\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\n",
    ] {
        assert!(
            matches!(framing(bad, http11), Err(Refusal::BadRequest(_))),
            "{bad}"
        );
    }
    let ambiguous = |fields: &str, version: &str| framing(fields, version).unwrap().1;
    for (fields, version) in [
        ("Content-Length: 5\r\nContent-Length: 5\r\n", http11),
        ("Content-Length: 5, 5\r\n", http11),
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            http11,
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            http11,
        ),
        ("Transfer-Encoding: chunked\r\n", "HTTP/1.0"),
    ] {
        assert!(ambiguous(fields, version).is_some(), "{fields}");
        assert!(
            !framing(fields, version).unwrap().2,
            "closes after: {fields}"
        );
    }
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let keep = |text: &[u8]| parsed(text).keep_alive;
    assert!(keep(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    let expect =
        parsed(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert!(expect.expect_continue);
    let upgrade = parsed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n");
    assert!(upgrade.upgrade);
}

/// The head `encode_head` writes, and how it frames the body.
fn written(
    status: u16,
    headers: &[(&str, &str)],
    body: &ProxyBody,
    head_only: bool,
    version: Version,
) -> (String, Outgoing, bool) {
    let (io, _peer) = tokio::io::duplex(64);
    let mut wire = Wire {
        io,
        read: BytesMut::new(),
        write: Vec::new(),
        written: 0,
    };
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let status = StatusCode::from_u16(status).unwrap();
    let asked = Asked { head_only, version };
    let mut keep_alive = true;
    let (out, _) = wire.encode_head(status, &map, body, asked, &mut keep_alive);
    let head = String::from_utf8(wire.write).unwrap();
    (head, out, keep_alive)
}

#[test]
fn responses_are_framed_by_their_length_or_chunked() {
    let full = crate::body::full("abc");
    let empty = ProxyBody::default();
    let (streamed, _feed) = ClientBody::channel(Decoder::ChunkSize, false);
    let streamed = streamed.boxed();
    let v11 = Version::HTTP_11;
    let length = |n| Outgoing::Length { length: n, sent: 0 };

    let (head, out, keep) = written(200, &[("x-a", "1")], &full, false, v11);
    assert_eq!(out, length(3));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 3\r\ndate: "));
    assert!(head.ends_with(" GMT\r\n\r\n") && keep, "{head}");
    assert_eq!(written(200, &[], &empty, false, v11).1, length(0));
    let (head, out, _) = written(204, &[("content-length", "3")], &full, false, v11);
    assert_eq!(out, Outgoing::None);
    assert!(!head.contains("content-length"), "{head}");
    let (head, out, _) = written(200, &[], &full, true, v11);
    assert_eq!(out, Outgoing::None, "HEAD");
    assert!(head.contains("content-length: 3\r\n"), "{head}");
    let (head, out, _) = written(200, &[("transfer-encoding", "gzip")], &streamed, false, v11);
    assert_eq!(out, Outgoing::Chunked);
    assert!(head.contains("transfer-encoding: chunked\r\n") && !head.contains("gzip"));
    let (head, out, keep) = written(200, &[], &streamed, false, Version::HTTP_10);
    assert_eq!(out, Outgoing::Close);
    assert!(!keep && head.contains("connection: close\r\n"), "{head}");
    let (_, out, _) = written(200, &[("content-length", "7")], &streamed, false, v11);
    assert_eq!(out, length(7));
    let (head, out, _) = written(304, &[("content-length", "7")], &empty, false, v11);
    assert_eq!(out, Outgoing::None);
    assert!(head.contains("content-length: 7\r\n"), "{head}");
    let (head, _, keep) = written(
        200,
        &[("connection", "close"), ("date", "x")],
        &full,
        false,
        v11,
    );
    assert!(!keep && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(head.matches("date:").count(), 1, "{head}");
}
