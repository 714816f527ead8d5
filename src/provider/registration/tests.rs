//! The pure parts of registration: reading the provider's refusals and its `Link` headers.

use std::time::UNIX_EPOCH;

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::problem::{Credential, failure};
use super::search::next_page;
use super::*;

struct FixedClock(u64);

impl Clock for FixedClock {
    fn now_unix(&self) -> u64 {
        self.0
    }
}

fn classify(
    status: u16,
    headers: &[(&str, &str)],
    body: Value,
    credential: Credential,
) -> RegistrationError {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    failure(
        status,
        &map,
        body.to_string().as_bytes(),
        credential,
        &FixedClock(1_000),
    )
}

#[test]
fn gone_and_broken_are_told_apart_by_the_body_and_whose_credential() {
    let not_found = json!({"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: 0oa1 (AppInstance)", "errorId": "oae1", "errorCauses": []});
    assert!(matches!(
        classify(404, &[], not_found, Credential::Configured),
        RegistrationError::Gone(_)
    ));
    // A 404 that is not Okta's "Not found" is a wrong URL, not a deleted client.
    let wrong = classify(
        404,
        &[],
        json!({"error": "not_found"}),
        Credential::Configured,
    );
    assert!(
        matches!(wrong, RegistrationError::Rejected { status: 404, .. }),
        "{wrong:?}"
    );
    let bad_token = json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided", "errorId": "oae2"});
    let e = classify(401, &[], bad_token, Credential::Configured);
    let RegistrationError::CredentialBroken(problem) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(problem.error_code.as_deref(), Some("E0000011"));
    assert!(
        e.to_string()
            .contains("provider.registration_authorization"),
        "{e}"
    );
    let forbidden = classify(
        403,
        &[],
        json!({"errorCode": "E0000006"}),
        Credential::Configured,
    );
    assert!(matches!(forbidden, RegistrationError::CredentialBroken(_)));
    // RFC 7592 §2.1: a client that is not there is a 401 to its own registration access token.
    let rfc = classify(
        401,
        &[],
        json!({"error": "invalid_token"}),
        Credential::Client,
    );
    assert!(matches!(rfc, RegistrationError::Gone(_)), "{rfc:?}");
}

#[test]
fn rejections_keep_the_providers_fields_and_outages_are_unavailable() {
    let dup = json!({"errorCode": "E0000001", "errorSummary": "Api validation failed: client_name", "errorId": "oae3", "errorCauses": [{"errorSummary": "client_name: already exists"}]});
    let RegistrationError::Rejected {
        status,
        error,
        description,
        problem,
    } = classify(400, &[], dup, Credential::Configured)
    else {
        panic!("not a rejection")
    };
    assert_eq!((status, error.as_deref()), (400, Some("E0000001")));
    assert_eq!(
        description.as_deref(),
        Some("Api validation failed: client_name (client_name: already exists)")
    );
    assert_eq!(problem.error_id.as_deref(), Some("oae3"));
    let passed = serde_json::to_value(&*problem).unwrap();
    assert_eq!(
        passed["errorCauses"],
        json!(["client_name: already exists"])
    );
    let oauth = classify(
        400,
        &[],
        json!({"error": "invalid_redirect_uri", "error_description": "no"}),
        Credential::Configured,
    );
    assert!(
        matches!(oauth, RegistrationError::Rejected { error: Some(ref e), .. } if e == "invalid_redirect_uri")
    );
    let outage = classify(503, &[], json!({}), Credential::Configured);
    assert_eq!(
        outage,
        RegistrationError::Unavailable(ProviderError::Status(503))
    );
}

#[test]
fn a_rate_limit_says_when_it_resets_within_bounds() {
    let at = |headers: &[(&str, &str)]| match classify(
        429,
        headers,
        json!({"errorCode": "E0000047"}),
        Credential::Configured,
    ) {
        RegistrationError::RateLimited { reset, problem } => {
            assert_eq!(problem.error_code.as_deref(), Some("E0000047"));
            reset.map(|r| r.duration_since(UNIX_EPOCH).unwrap().as_secs())
        }
        e => panic!("{e:?}"),
    };
    assert_eq!(at(&[("x-rate-limit-reset", "1042")]), Some(1042));
    assert_eq!(
        at(&[("retry-after", "7"), ("x-rate-limit-reset", "1042")]),
        Some(1007)
    );
    assert_eq!(
        at(&[("x-rate-limit-reset", "99999999")]),
        Some(1_000 + 3600),
        "capped"
    );
    assert_eq!(at(&[]), None);
}

#[test]
fn the_next_page_must_stay_on_the_registration_endpoint() {
    let base = Url::parse("https://org.example/oauth2/v1/clients").unwrap();
    let with = |value: &str| {
        let mut h = HeaderMap::new();
        h.append(LINK_NAME, HeaderValue::from_str(value).unwrap());
        next_page(&h, &base)
    };
    let next = with(
        "<https://org.example/oauth2/v1/clients?limit=200>; rel=\"self\", <https://org.example/oauth2/v1/clients?after=0oa9&limit=200>; rel=\"next\"",
    );
    assert_eq!(next.unwrap().unwrap().query(), Some("after=0oa9&limit=200"));
    assert_eq!(
        with("<https://org.example/oauth2/v1/clients>; rel=\"self\"").unwrap(),
        None
    );
    assert!(with("<https://evil.example/oauth2/v1/clients?after=1>; rel=\"next\"").is_err());
    assert!(with("<https://org.example/api/v1/users?after=1>; rel=\"next\"").is_err());
}

const LINK_NAME: http::HeaderName = http::header::LINK;
