//! Path normalisation, prefixes, case folding and the route table's precedence.

use super::*;

#[test]
fn normalises_dots_and_decoding() {
    let ok = |raw: &str| normalise_path(raw).unwrap();
    assert_eq!(ok("/orders/../admin"), "/admin");
    assert_eq!(ok("/orders/%2e%2e/admin"), "/admin");
    assert_eq!(ok("/orders/%2E%2E/%2e/admin/"), "/admin/");
    assert_eq!(ok("/a/./b/../../.."), "/");
    assert_eq!(ok("//orders///1"), "/orders/1");
    assert_eq!(ok("/"), "/");
    assert_eq!(ok("/%41b%20c"), "/Ab c");
    assert_eq!(ok("/orders/"), "/orders/");
    assert_eq!(ok("/orders/."), "/orders/");
    // Already normal: returned as is.
    assert_eq!(ok("/orders/1"), "/orders/1");
    assert_eq!(ok("/a..b/c.d/~x"), "/a..b/c.d/~x");
}

#[test]
fn refuses_ambiguous_paths() {
    let err = |raw: &str| normalise_path(raw).unwrap_err();
    assert_eq!(err("/a%2fb"), PathError::EncodedSeparator);
    assert_eq!(err("/a%5Cb"), PathError::EncodedSeparator);
    assert_eq!(err("/a\\b"), PathError::Backslash);
    assert_eq!(err("/a;jsessionid=1"), PathError::Semicolon);
    assert_eq!(err("/a%3bx"), PathError::Semicolon);
    assert_eq!(err("/a%00"), PathError::Control);
    assert_eq!(err("/a%252e%252e"), PathError::DoubleEncoding);
    // Escapes that only form one once decoded.
    assert_eq!(err("/a/%25%32%65%25%32%65/b"), PathError::DoubleEncoding);
    assert_eq!(err("/a/%2541"), PathError::DoubleEncoding);
    assert_eq!(err("/a/%%34%31"), PathError::BadEncoding);
    assert_eq!(err("/a%2"), PathError::BadEncoding);
    assert_eq!(err("/a%zz"), PathError::BadEncoding);
    assert_eq!(err("/a%ff"), PathError::NotUtf8);
    assert_eq!(err("a"), PathError::NotAbsolute);
}

#[test]
fn encoding_round_trips() {
    for raw in ["/Ab c", "/x%y", "/é/q?x#f", "/a:b@c!$&'()*+,="] {
        let wire = encode_path(raw);
        assert_eq!(normalise_path(&wire).unwrap(), raw, "{wire}");
    }
}

fn route(
    host: Option<&str>,
    prefix: &str,
    case_insensitive: bool,
    name: &'static str,
) -> Route<&'static str> {
    Route {
        host: host.map(str::to_owned),
        prefix: prefix.to_owned(),
        case_insensitive,
        api: Arc::new(name),
    }
}

#[test]
fn routes_longest_prefix_on_segment_boundaries() {
    let router = Router::new([
        route(None, "/", false, "root"),
        route(None, "/orders", false, "orders"),
        route(None, "/orders/admin", false, "admin"),
    ]);
    let to = |p: &str| router.route(None, p).map(|a| **a);
    assert_eq!(to("/orders/1"), Some("orders"));
    assert_eq!(to("/orders"), Some("orders"));
    assert_eq!(to("/ordersX"), Some("root"));
    assert_eq!(to("/orders/admin/x"), Some("admin"));
    assert_eq!(to("/orders/adminX"), Some("orders"));
    // Depth counts, not the order given.
    let reversed = Router::new([
        route(None, "/orders/admin", false, "admin"),
        route(None, "/", false, "root"),
        route(None, "/orders", false, "orders"),
    ]);
    assert_eq!(
        reversed.route(None, "/orders/1").map(|a| **a),
        Some("orders")
    );
    assert_eq!(request_host("API.test:8080"), "API.test");
    assert_eq!(request_host("[::1]:80"), "[::1]");
    assert_eq!(request_host("api.test.:80"), "api.test");
}

#[test]
fn the_host_chooses_before_the_prefix() {
    let router = Router::new([
        route(None, "/", false, "root"),
        route(None, "/orders/public", false, "public"),
        route(Some("api.test"), "/orders", false, "host-orders"),
        route(Some("other.test"), "/", false, "other-root"),
    ]);
    let to = |h: Option<&str>, p: &str| router.route(h, p).map(|a| **a);
    // A longer host-less prefix does not beat the host's own API…
    assert_eq!(
        to(Some("api.test"), "/orders/public/1"),
        Some("host-orders")
    );
    assert_eq!(to(Some("API.Test"), "/orders"), Some("host-orders"));
    // …and a host with APIs but none for the path is a 404, not the host-less root.
    assert_eq!(to(Some("api.test"), "/inventory"), None);
    assert_eq!(to(Some("other.test"), "/orders/public"), Some("other-root"));
    // Hosts no API names, and requests without a host, use the host-less APIs.
    assert_eq!(to(Some("unknown.test"), "/orders/public/1"), Some("public"));
    assert_eq!(to(None, "/orders/1"), Some("root"));
    let names: Vec<_> = router.iter().map(|a| **a).collect();
    assert_eq!(names, ["root", "public", "host-orders", "other-root"]);
}

#[test]
fn case_insensitive_prefixes_fold_and_strip_by_segments() {
    let router = Router::new([
        route(None, "/Orders", true, "orders"),
        route(None, "/admin", false, "admin"),
    ]);
    let to = |p: &str| router.route(None, p).map(|a| **a);
    assert_eq!(to("/ORDERS/1"), Some("orders"));
    assert_eq!(to("/orders"), Some("orders"));
    assert_eq!(to("/ADMIN"), None);
    assert_eq!(after_prefix("/Orders", "/ORDERS/1"), "/1");
    assert_eq!(after_prefix("/Orders", "/orders"), "");
    assert_eq!(after_prefix("/a/b", "/A/B/"), "/");
    assert_eq!(after_prefix("/", "/x/y"), "/x/y");
    // A folded character may change length; segments still line up.
    assert_eq!(after_prefix("/ss", "/ß/x"), "/x");
}

#[test]
fn case_folding_covers_what_upstreams_fold() {
    assert_eq!(fold_case("/orders/1"), "/orders/1");
    assert!(matches!(fold_case("/orders/1"), Cow::Borrowed(_)));
    assert_eq!(fold_case("/ORDERS/Ab"), "/orders/ab");
    // Dotless i and long s (.NET's OrdinalIgnoreCase), Kelvin sign, sharp s, Greek final sigma.
    assert_eq!(fold_case("/adm\u{131}n"), "/admin");
    assert_eq!(fold_case("/\u{17f}ecret"), "/secret");
    assert_eq!(fold_case("/\u{212a}ey"), "/key");
    assert_eq!(fold_case("/stra\u{df}e"), fold_case("/STRASSE"));
    assert_eq!(fold_case("/\u{3c2}"), fold_case("/\u{3a3}"));
    assert_eq!(fold_case("/Caf\u{c9}"), "/caf\u{e9}");
    assert_eq!(match_form("/A", false), "/A");
}
