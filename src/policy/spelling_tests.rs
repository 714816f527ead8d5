//! Properties over random paths, methods and rule sets: the path rules see is the path forwarded,
//! and spellings an upstream treats alike (one trailing `/`, merged slashes, dot segments,
//! percent-encoding, HEAD for GET, case under `case_insensitive_paths`) meet the same rule of the
//! same API as their canonical form, so none gets a weaker one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

use super::{Rejection, check_method, matching_rule, plan};
use crate::config::{ApiSettings, parse};
use crate::routing::{Route, Router, normalise_path};

/// Patterns the rule sets draw from: slashes on either side, `*` and `**`, case, alternatives.
const PATTERNS: &[&str] = &[
    "/orders/*",
    "/orders/*/",
    "/orders/**",
    "/orders/1",
    "/orders/a/",
    "/ORDERS/*",
    "/orders/admin/**",
    "/orders/{1,b}/*",
    "/**",
    "/orders",
];
const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT", "OPTIONS"];
/// Segments of the canonical paths.
const SEGMENTS: &[&str] = &["orders", "Orders", "1", "a", "B", "admin", "x-y", "é", "~"];

/// The settings of an API named `name` on `prefix` with these rules (`(methods, patterns, scope)`).
fn api(name: &str, prefix: &str, folds: bool, rules: &[(Vec<usize>, Vec<usize>)]) -> ApiSettings {
    let mut text = format!(
        "[provider]\nissuer = \"https://idp.test/oauth2/default\"\nintrospection_client_id = \"gw\"\n\
         introspection_client_secret = \"s\"\n[[api]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\n\
         upstream = \"http://127.0.0.1:9000\"\nskip_client_id_validation = true\n\
         case_insensitive_paths = {folds}\n"
    );
    for (i, (methods, patterns)) in rules.iter().enumerate() {
        text.push_str("[[api.rule]]\n");
        text.push_str(&toml_list("methods", methods, METHODS));
        text.push_str(&toml_list("paths", patterns, PATTERNS));
        text.push_str(&format!("scopes = [\"rule{i}\"]\n"));
    }
    let mut settings = parse(&text, &HashMap::<String, String>::new()).expect("generated config");
    settings.apis.remove(0)
}

/// `key = [...]` of the `chosen` entries of `from`; nothing when none is chosen (the key is absent).
fn toml_list(key: &str, chosen: &[usize], from: &[&str]) -> String {
    if chosen.is_empty() {
        return String::new();
    }
    let items: Vec<_> = chosen.iter().map(|i| format!("{:?}", from[*i])).collect();
    format!("{key} = [{}]\n", items.join(", "))
}

fn rules() -> impl Strategy<Value = Vec<(Vec<usize>, Vec<usize>)>> {
    let methods = prop::collection::vec(0..METHODS.len(), 0..3);
    let patterns = prop::collection::vec(0..PATTERNS.len(), 0..3);
    prop::collection::vec((methods, patterns), 0..5)
}

/// A canonical path: segments and whether it ends in `/`.
fn canonical() -> impl Strategy<Value = (Vec<usize>, bool)> {
    (
        prop::collection::vec(0..SEGMENTS.len(), 0..4),
        any::<bool>(),
    )
}

/// Another spelling of the canonical path, as a client could send it, steered by `choices`.
fn spelling(segments: &[usize], trailing: bool, folds: bool, choices: &[u8]) -> String {
    let mut pick = choices.iter().cycle().copied();
    let mut next = move || pick.next().unwrap_or(0);
    let mut out = String::new();
    for s in segments {
        out.push_str(match next() % 6 {
            0 => "//",
            1 => "/./",
            2 => "/zz/../",
            3 => "/%2e/",
            4 => "/q/%2E%2e/",
            _ => "/",
        });
        for c in SEGMENTS[*s].chars() {
            let c = match next() % 3 {
                0 if folds => c.to_uppercase().next().unwrap_or(c),
                1 if folds => c.to_lowercase().next().unwrap_or(c),
                _ => c,
            };
            if next() % 4 == 0 {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    // Either spelling of the trailing slash, whichever the canonical form has.
    if (trailing != (next() % 2 == 0)) || out.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_text(segments: &[usize], trailing: bool) -> String {
    let mut out: String = segments
        .iter()
        .map(|s| format!("/{}", SEGMENTS[*s]))
        .collect();
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a client sends, the upstream decodes exactly the path the rules were given.
    #[test]
    fn the_path_rules_see_is_the_path_forwarded(raw in "(/|//|\\.|\\.\\.|%2[eE]|%41|%25|%C3%A9|a|B|é| |\\?|;|%|~)*") {
        let raw = format!("/{raw}");
        if let Ok(path) = normalise_path(&raw) {
            let settings = api("orders", "/", false, &[]);
            let plan = plan(&settings, Duration::from_secs(30), &path, None, None, None).expect("planned");
            let forwarded = plan.path_and_query.path();
            let decoded = percent_decode_str(forwarded).decode_utf8().expect("UTF-8");
            prop_assert_eq!(&*decoded, path.as_str(), "sent {:?}, forwarded {:?}", raw, forwarded);
            // The upstream's own normalisation, were it tollgate's, changes nothing.
            let again = normalise_path(forwarded);
            prop_assert_eq!(again.as_deref(), Ok(path.as_str()));
        }
    }

    /// Every spelling meets the canonical form's API and rule; HEAD meets GET's.
    #[test]
    fn spellings_an_upstream_treats_alike_get_one_decision(
        (segments, trailing) in canonical(),
        rules in rules(),
        folds in any::<bool>(),
        choices in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let orders = Arc::new(api("orders", "/orders", folds, &rules));
        let root = Arc::new(api("root", "/", false, &[]));
        let router = Router::new([
            Route { host: None, prefix: "/".into(), case_insensitive: false, api: root },
            Route { host: None, prefix: "/orders".into(), case_insensitive: folds, api: orders },
        ]);
        let canonical = canonical_text(&segments, trailing);
        let sent = spelling(&segments, trailing, folds, &choices);
        let path = normalise_path(&sent).expect("a spelling normalises");
        let decide = |path: &str, method: &Method| {
            let api = router.route(None, path).expect("the root API catches all");
            (api.name.clone(), matching_rule(api, method, path).map(|(i, _)| i))
        };
        for (canonical_method, method) in [
            (Method::GET, Method::GET),
            (Method::GET, Method::HEAD),
            (Method::DELETE, Method::DELETE),
            (Method::POST, Method::POST),
        ] {
            prop_assert_eq!(
                decide(&canonical, &canonical_method),
                decide(&path, &method),
                "{} {} vs {} {} (sent {:?})", canonical_method, canonical, method, path, sent
            );
        }
    }

    /// A standard method in any other case is refused; the exact one and other methods are not.
    #[test]
    fn standard_methods_in_another_case_are_refused(
        which in 0..9usize,
        mask in any::<u16>(),
        other in "[A-Za-z]{1,8}",
    ) {
        let standard = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"][which];
        let spelt: String = standard
            .chars()
            .enumerate()
            .map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_lowercase() } else { c })
            .collect();
        let method = Method::from_bytes(spelt.as_bytes()).expect("a token");
        let verdict = check_method(&method);
        if spelt == standard {
            prop_assert_eq!(verdict, Ok(()));
        } else {
            prop_assert_eq!(verdict, Err(Rejection::BadMethod));
        }
        let other = Method::from_bytes(other.as_bytes()).expect("a token");
        let is_standard_name = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(other.as_str()));
        prop_assert_eq!(check_method(&other).is_ok(), !is_standard_name || other.as_str().bytes().all(|b| b.is_ascii_uppercase()));
    }
}

/// The case, and the rest of the spelling rules, on the shipped rule shape.
#[test]
fn the_shipped_delete_rule_holds_for_every_spelling() {
    // (methods, patterns): rule 0 OPTIONS public-ish on /orders/**, rule 1 DELETE on /orders/*.
    let settings = api(
        "orders",
        "/orders",
        false,
        &[(vec![4], vec![2]), (vec![2], vec![0])],
    );
    let rule = |m: Method, p: &str| matching_rule(&settings, &m, p).map(|(i, _)| i);
    assert_eq!(rule(Method::DELETE, "/orders/1"), Some(1));
    assert_eq!(rule(Method::DELETE, "/orders/1/"), Some(1));
    assert_eq!(rule(Method::DELETE, "/orders/1/items"), None);
    // `/orders/**` covers `/orders` itself, with or without its slash.
    assert_eq!(rule(Method::OPTIONS, "/orders"), Some(0));
    assert_eq!(rule(Method::OPTIONS, "/orders/"), Some(0));
    let get = api("orders", "/orders", true, &[(vec![0], vec![0])]);
    assert!(
        get.rules[0]
            .methods
            .as_ref()
            .unwrap()
            .contains(&Method::HEAD)
    );
    assert_eq!(
        matching_rule(&get, &Method::HEAD, "/ORDERS/1/").map(|(i, _)| i),
        Some(0)
    );
    // An extension method meets the rule that lists it, in any case.
    let purge = parse(
        "[provider]\nissuer = \"https://idp.test/x\"\nintrospection_client_id = \"gw\"\n\
         introspection_client_secret = \"s\"\n[[api]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n\
         skip_client_id_validation = true\n[[api.rule]]\nmethods = [\"purge\"]\nscopes = [\"x\"]\n",
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let purge = &purge.apis[0];
    let method = Method::from_bytes(b"purge").unwrap();
    assert_eq!(matching_rule(purge, &method, "/").map(|(i, _)| i), Some(0));
}
