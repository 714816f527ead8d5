use super::*;

fn line() -> AccessLine<'static> {
    AccessLine {
        api: Some("orders"),
        method: "GET",
        path: "/orders/1",
        decision: "allowed",
        reason: "none",
        client: Some("127.0.0.1"),
        client_id: Some("orders-app"),
        status: 200,
        grpc_status: None,
        latency: Duration::from_micros(1_234),
    }
}

#[test]
fn json_lines_parse_with_every_documented_field() {
    let mut buf = String::new();
    json(&mut buf, "2026-12-02T03:40:00.123456Z", &line());
    let v: serde_json::Value = serde_json::from_str(&buf).expect("a JSON object");
    assert_eq!(v["timestamp"], "2026-12-02T03:40:00.123456Z");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "request");
    assert_eq!(v["target"], "tollgate::access");
    assert_eq!(v["api"], "orders");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/orders/1");
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["reason"], "none");
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["client_id"], "orders-app");
    assert_eq!(v["status"], 200);
    assert_eq!(v["latency_ms"], 1.234);
    assert!(v.get("grpc_status").is_none(), "only when there is one");
}

#[test]
fn json_lines_mark_missing_values_and_carry_grpc_status() {
    let mut buf = String::new();
    json(
        &mut buf,
        "2026-12-02T03:40:00.123456Z",
        &AccessLine {
            api: None,
            client: None,
            client_id: None,
            grpc_status: Some(16),
            ..line()
        },
    );
    let v: serde_json::Value = serde_json::from_str(&buf).expect("a JSON object");
    assert_eq!(v["api"], "-");
    assert_eq!(v["client"], "-");
    assert_eq!(v["client_id"], "-");
    assert_eq!(v["grpc_status"], 16);
}

#[test]
fn json_strings_escape_what_a_path_may_carry() {
    // A path is visible ASCII (and UTF-8 past it) by the time it is logged, but the escaping
    // must hold for anything: serde_json's own escaping is the reference.
    for s in [
        "/a\"b",
        "/a\\b",
        "/tab\there",
        "/nl\nx\r",
        "\u{1}\u{1f}",
        "/caf\u{e9}/\u{1f600}",
        "",
        "\"",
    ] {
        let mut buf = String::new();
        json_string(&mut buf, s);
        let back: String = serde_json::from_str(&buf).expect("a JSON string");
        assert_eq!(back, s, "{buf}");
    }
}

#[test]
fn text_lines_read_as_tracing_subscribers_do() {
    let mut buf = String::new();
    text(&mut buf, "2026-12-02T03:40:00.123456Z", &line(), false);
    assert_eq!(
        buf,
        "2026-12-02T03:40:00.123456Z  INFO tollgate::access: request api=\"orders\" method=GET \
         path=/orders/1 decision=\"allowed\" reason=\"none\" client=\"127.0.0.1\" \
         client_id=\"orders-app\" status=200 latency_ms=1.234"
    );
}

#[test]
fn milliseconds_keep_microseconds() {
    for (micros, text) in [
        (0, "0.000"),
        (7, "0.007"),
        (1_000, "1.000"),
        (12_345_678, "12345.678"),
    ] {
        let mut buf = String::new();
        milliseconds(&mut buf, Duration::from_micros(micros));
        assert_eq!(buf, text);
    }
}

#[test]
fn text_quoting_is_debugs() {
    for s in [
        "orders-app",
        "a\"b",
        "a\\b",
        "tab\t",
        "caf\u{e9}",
        "",
        "~ !",
        "\u{7f}",
        "\u{1}",
    ] {
        let mut buf = String::new();
        text_quoted(&mut buf, " f=", s);
        assert_eq!(buf, format!(" f={s:?}"));
    }
}

#[test]
fn the_timestamp_is_tracing_subscribers_shape() {
    let stamp = humantime::format_rfc3339_micros(
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_646_800_123_456),
    );
    assert_eq!(stamp.to_string(), "2025-12-02T03:40:00.123456Z");
}

#[test]
fn the_cached_stamp_is_humantimes_every_microsecond_and_second() {
    let mut stamp = Stamp {
        second: None,
        text: String::new(),
    };
    let base = 1_764_646_800_000_000u64;
    // Within a second, across seconds, back in time, and the first and last microsecond.
    for micros in [
        123_456,
        0,
        999_999,
        1_000_000,
        1_000_007,
        59_999_999,
        60_000_000,
        5,
        86_400_000_001,
    ] {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(base + micros);
        let expected = humantime::format_rfc3339_micros(at).to_string();
        assert_eq!(stamp.at(at), expected, "{micros}");
    }
}

#[test]
fn numbers_are_padded_only_as_asked() {
    for (n, width, text) in [
        (0, 0, "0"),
        (200, 0, "200"),
        (7, 3, "007"),
        (1234, 3, "1234"),
        (5, 6, "000005"),
    ] {
        let mut buf = String::new();
        zero_padded(&mut buf, n, width);
        assert_eq!(buf, text);
    }
}
