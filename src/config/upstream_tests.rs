//! `[[api]] upstream` lists and their keys: what is accepted, and errors naming the key.

use std::collections::HashMap;

use super::super::{ConfigError, parse};

fn config(api: &str) -> String {
    format!(
        "[provider]\nissuer = \"https://idp.test\"\nintrospection_client_id = \"gw\"\n\
         introspection_client_secret = \"s\"\n[[api]]\nname = \"orders\"\n\
         skip_client_id_validation = true\n{api}\n"
    )
}

fn err(api: &str) -> ConfigError {
    match parse(&config(api), &HashMap::<String, String>::new()) {
        Ok(_) => panic!("expected an error for:\n{api}"),
        Err(e) => e,
    }
}

#[test]
fn a_list_of_endpoints_is_compiled_in_order() {
    let s = parse(
        &config("upstream = [\"http://a.test:8080/base\", \"http://b.test:8080/base/\"]"),
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let upstream = &s.apis[0].upstream;
    let endpoints: Vec<&str> = upstream
        .compiled
        .endpoints()
        .iter()
        .map(|e| e.authority.as_str())
        .collect();
    assert_eq!(endpoints, ["a.test:8080", "b.test:8080"]);
    assert_eq!(upstream.base_path, "/base");
}

#[test]
fn endpoints_of_one_api_share_scheme_and_path() {
    let e = err("upstream = [\"http://a.test\", \"https://b.test\"]");
    assert_eq!(e.path, "api[0].upstream[1]");
    let e = err("upstream = [\"http://a.test/v1\", \"http://b.test/v2\"]");
    assert_eq!(e.path, "api[0].upstream[1]");
    let e = err("upstream = []");
    assert_eq!(e.path, "api[0].upstream");
}

#[test]
fn tls_keys_on_a_cleartext_upstream_and_contradictions_name_their_key() {
    let e = err("upstream = \"http://a.test\"\nupstream_server_name = \"a.test\"");
    assert_eq!(e.path, "api[0].upstream_server_name");
    let e =
        err("upstream = \"https://a.test\"\nupstream_ca = \"ca.pem\"\ninsecure_skip_verify = true");
    assert_eq!(e.path, "api[0].insecure_skip_verify");
    let e = err("upstream = \"http://a.test\"\nupstream_balance = \"random\"");
    assert!(e.path.starts_with("api[0].upstream_balance"), "{e}");
}

#[test]
fn check_shows_an_unverified_upstream_and_its_name_and_a_cleartext_one_without_tls() {
    let s = parse(
        &config(
            "upstream = \"https://10.0.0.7:8443\"\nupstream_server_name = \"orders.internal\"\n\
             insecure_skip_verify = true\nupstream_protocol = \"http1\"",
        ),
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let shown = super::super::describe(&s);
    assert!(
        shown.contains("  upstream: protocol http1, balance least_request over 1 endpoint(s)\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "  upstream tls: certificates NOT verified (insecure_skip_verify); server name \
             orders.internal; client certificate none\n"
        ),
        "{shown}"
    );
    let s = parse(
        &config("upstream = \"http://a.test\""),
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let shown = super::super::describe(&s);
    assert!(!shown.contains("upstream tls"), "{shown}");
}
