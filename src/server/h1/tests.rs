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

#[test]
fn responses_are_framed_by_their_length_or_chunked() {
    let mut headers = HeaderMap::new();
    let full = crate::body::full("abc");
    let empty = ProxyBody::default();
    let v11 = Version::HTTP_11;
    let framing = |status: u16, headers: &HeaderMap, body: &ProxyBody, head_only, version| {
        let status = StatusCode::from_u16(status).unwrap();
        response_framing(status, headers, body, head_only, version)
    };
    let length = |n| Outgoing::Length { length: n, sent: 0 };
    assert_eq!(
        framing(200, &headers, &full, false, v11),
        (length(3), Some(3))
    );
    assert_eq!(
        framing(200, &headers, &empty, false, v11),
        (length(0), Some(0))
    );
    assert_eq!(
        framing(204, &headers, &full, false, v11),
        (Outgoing::None, None)
    );
    assert_eq!(
        framing(200, &headers, &full, true, v11),
        (Outgoing::None, Some(3))
    );
    let (streamed, _) = ClientBody::channel(Decoder::ChunkSize, false);
    let streamed = streamed.boxed();
    assert_eq!(
        framing(200, &headers, &streamed, false, v11),
        (Outgoing::Chunked, None)
    );
    let v10 = Version::HTTP_10;
    assert_eq!(
        framing(200, &headers, &streamed, false, v10),
        (Outgoing::Close, None)
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("7"));
    assert_eq!(
        framing(200, &headers, &streamed, false, v11),
        (length(7), Some(7))
    );
    assert_eq!(
        framing(304, &headers, &empty, false, v11),
        (Outgoing::None, Some(7))
    );
}
