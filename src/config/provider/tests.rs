//! `[provider]` and `[[provider]]`: names, the APIs' `provider`, and key paths in errors.

use std::collections::HashMap;

use crate::config::{ConfigError, Settings, parse};

const TWO: &str = r#"
[[provider]]
name = "okta"
issuer = "https://okta.test/oauth2/default"
introspection_client_id = "gw"
introspection_client_secret = "s"

[[provider]]
name = "entra-2"
issuer = "https://entra.test/v2.0"
introspection_client_id = "gw2"
introspection_client_secret = "s2"
"#;

fn api(name: &str, provider: Option<&str>) -> String {
    let provider = provider.map_or(String::new(), |p| format!("provider = \"{p}\"\n"));
    format!(
        "[[api]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"http://127.0.0.1:9000\"\n\
         skip_client_id_validation = true\n{provider}"
    )
}

fn parse_ok(text: &str) -> Settings {
    parse(text, &HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> ConfigError {
    match parse(text, &HashMap::<String, String>::new()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn a_single_table_is_the_default_provider_and_apis_need_not_name_it() {
    let text = format!(
        "[provider]\nissuer = \"https://idp.test\"\nintrospection_client_id = \"gw\"\n\
         introspection_client_secret = \"s\"\n{}",
        api("orders", None)
    );
    let s = parse_ok(&text);
    assert_eq!(s.providers.len(), 1);
    assert_eq!(s.providers[0].name, "default");
    assert_eq!(s.apis[0].provider, "default");
    assert_eq!(s.provider_key("default"), "provider");
}

#[test]
fn several_providers_each_api_names_its_own() {
    let s = parse_ok(&format!(
        "{TWO}{}{}",
        api("orders", Some("okta")),
        api("users", Some("entra-2"))
    ));
    let names: Vec<&str> = s.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["okta", "entra-2"]);
    assert_eq!(s.apis[0].provider, "okta");
    assert_eq!(s.apis[1].provider, "entra-2");
    assert_eq!(s.provider_key("entra-2"), "provider[1]");
    assert_eq!(
        s.provider("entra-2").map(|p| p.issuer.as_str()),
        Some("https://entra.test/v2.0")
    );
}

#[test]
fn provider_errors_name_the_key_path() {
    let unnamed = TWO.replacen("name = \"entra-2\"\n", "", 1);
    let cases = [
        (
            format!("{TWO}{}", api("orders", None)),
            "api[0].provider",
            "okta, entra-2",
        ),
        (
            format!("{TWO}{}", api("orders", Some("auth0"))),
            "api[0].provider",
            "no provider is named \"auth0\" (configured: okta, entra-2)",
        ),
        (
            format!("{unnamed}{}", api("orders", Some("okta"))),
            "provider[1].name",
            "needs a name",
        ),
        (
            format!(
                "{}{}",
                TWO.replace("entra-2", "okta"),
                api("orders", Some("okta"))
            ),
            "provider[1].name",
            "duplicate provider name",
        ),
        (
            format!(
                "{}{}",
                TWO.replace("entra-2", "Entra"),
                api("orders", Some("okta"))
            ),
            "provider[1].name",
            "a-z, 0-9",
        ),
        (
            format!(
                "{}introspection_url = \"ftp://x\"\n{}",
                TWO,
                api("orders", Some("okta"))
            ),
            "provider[1].introspection_url",
            "http(s)",
        ),
        (
            format!(
                "{}jwt_algorithms = [\"RS256\", 7]\n{}",
                TWO,
                api("orders", Some("okta"))
            ),
            "provider[1].jwt_algorithms[1]",
            "invalid type",
        ),
        (
            format!("{}colour = 1\n{}", TWO, api("orders", Some("okta"))),
            "provider[1].colour",
            "unknown field",
        ),
        (
            format!("provider = 3\n{}", api("orders", None)),
            "provider",
            "[[provider]]",
        ),
    ];
    for (text, path, reason) in cases {
        let e = err(&text);
        assert_eq!(e.path, path, "{e}\n{text}");
        assert!(e.reason.contains(reason), "{e} (wanted {reason:?})");
    }
}

#[test]
fn a_provider_no_api_uses_is_a_warning_not_an_error() {
    let s = parse_ok(&format!("{TWO}{}", api("orders", Some("okta"))));
    let warnings = crate::config::warnings(&s);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("provider[1]:") && w.contains("\"entra-2\"")),
        "{warnings:?}"
    );
    let summary = crate::config::describe(&s);
    assert!(
        summary.contains(
            "provider okta: issuer https://okta.test/oauth2/default, validates for APIs: orders"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(
            "provider entra-2: issuer https://entra.test/v2.0, validates for APIs: (none)"
        ),
        "{summary}"
    );
}
