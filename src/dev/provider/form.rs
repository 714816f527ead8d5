//! The input of the token and introspection endpoints: the `application/x-www-form-urlencoded` body
//! (RFC 6749 §3.2, Appendix B) and the client's credentials, carried either in HTTP Basic or as
//! `client_id` + `client_secret` in the body (RFC 6749 §2.3.1). Pure parsing; whether the
//! credentials are right is the client registry's business.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderValue;
use percent_encoding::percent_decode_str;

use super::reply::OAuthError;

/// Base64 for Basic credentials, lenient about `=` padding: some clients drop it, and nothing is
/// ambiguous without it.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The parameters of a form body.
#[derive(Debug, Default)]
pub(super) struct Form {
    params: HashMap<String, String>,
}

/// A client id and the secret it presented; not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

// === impl Form ===

impl Form {
    /// RFC 6749 §3.2: a parameter without a value counts as omitted, and one sent twice makes the
    /// request invalid.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if params.contains_key(name.as_ref()) {
                return Err(OAuthError::InvalidRequest(format!(
                    "parameter {name:?} is given more than once (RFC 6749 §3.2)"
                )));
            }
            params.insert(name.into_owned(), value.into_owned());
        }
        Ok(Form { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

// === impl ClientCredentials ===

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// The client's credentials from the `Authorization` header or the body. RFC 6749 §2.3: a client
/// uses one method per request, so a Basic header beside a `client_secret` in the body is
/// `invalid_request`; missing or unreadable credentials are `invalid_client`.
pub(super) fn client_credentials(
    authorization: Option<&HeaderValue>,
    form: &Form,
) -> Result<ClientCredentials, OAuthError> {
    let posted_secret = form.get("client_secret");
    let Some(authorization) = authorization else {
        return match (form.get("client_id"), posted_secret) {
            (Some(client_id), Some(client_secret)) => Ok(ClientCredentials {
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
            }),
            _ => Err(OAuthError::InvalidClient(
                "client authentication is required: HTTP Basic, or client_id and client_secret in the body",
            )),
        };
    };
    if posted_secret.is_some() {
        return Err(OAuthError::InvalidRequest(
            "use one client authentication method, HTTP Basic or client_secret in the body, not both (RFC 6749 §2.3)"
                .to_owned(),
        ));
    }
    let credentials = basic_credentials(authorization).ok_or(OAuthError::InvalidClient(
        "the Authorization header is not HTTP Basic client authentication (RFC 6749 §2.3.1)",
    ))?;
    // A client may repeat its id in the body; a different one is a contradiction.
    if form
        .get("client_id")
        .is_some_and(|id| id != credentials.client_id)
    {
        return Err(OAuthError::InvalidRequest(
            "client_id in the body is not the client authenticated by HTTP Basic".to_owned(),
        ));
    }
    Ok(credentials)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, the scheme name in any case (RFC 7617).
fn basic_credentials(value: &HeaderValue) -> Option<ClientCredentials> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASIC_BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let client_id = form_decode(id)?;
    if client_id.is_empty() {
        return None;
    }
    Some(ClientCredentials {
        client_id,
        client_secret: form_decode(secret)?,
    })
}

/// RFC 6749 §2.3.1: the id and secret are `application/x-www-form-urlencoded` before going into
/// Basic, so `+` is a space and `%XX` a byte.
fn form_decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    use super::*;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    fn basic(engine: &GeneralPurpose, raw: &str, scheme: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("{scheme} {}", engine.encode(raw))).unwrap()
    }

    fn creds(id: &str, secret: &str) -> ClientCredentials {
        ClientCredentials {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        }
    }

    #[test]
    fn form_parameters_are_decoded_empty_ones_omitted_repeats_refused() {
        let f = form("grant_type=client_credentials&scope=a+b%20c&audience=");
        assert_eq!(f.get("scope"), Some("a b c"));
        assert_eq!(f.get("audience"), None);
        assert!(matches!(
            Form::parse(b"scope=a&scope=b"),
            Err(OAuthError::InvalidRequest(_))
        ));
        // An empty repeat is an omission, not a repeat.
        assert_eq!(form("scope=a&scope=").get("scope"), Some("a"));
    }

    #[test]
    fn basic_credentials_are_form_decoded_any_case_with_or_without_padding() {
        let raw = "my+app:p%3Ass%25w+rd";
        for header in [
            basic(&STANDARD, raw, "Basic"),
            basic(&STANDARD, raw, "bAsIc"),
            basic(&STANDARD_NO_PAD, raw, "Basic"),
        ] {
            assert_eq!(
                client_credentials(Some(&header), &Form::default()).unwrap(),
                creds("my app", "p:ss%w rd")
            );
        }
    }

    #[test]
    fn posted_credentials_are_read_from_the_body() {
        let f = form("client_id=app&client_secret=s%2Bs");
        assert_eq!(client_credentials(None, &f).unwrap(), creds("app", "s+s"));
    }

    #[test]
    fn missing_or_unreadable_credentials_are_invalid_client() {
        let invalid_client = |r: Result<ClientCredentials, OAuthError>| {
            matches!(r, Err(OAuthError::InvalidClient(_)))
        };
        assert!(invalid_client(client_credentials(None, &Form::default())));
        assert!(invalid_client(client_credentials(
            None,
            &form("client_id=app")
        )));
        for header in [
            "Bearer abc",
            "Basic",
            "Basic !!!",
            "Basic bm9jb2xvbg",   // "nocolon"
            "Basic OnNlY3JldA==", // ":secret": no id
            "Basic YTol/w==",     // "a:%ff"-like raw byte: not UTF-8
        ] {
            let value = HeaderValue::from_str(header).unwrap();
            assert!(
                invalid_client(client_credentials(Some(&value), &Form::default())),
                "{header}"
            );
        }
    }

    #[test]
    fn two_methods_or_two_ids_are_invalid_request() {
        let header = basic(&STANDARD, "app:secret", "Basic");
        let both = client_credentials(Some(&header), &form("client_id=app&client_secret=secret"));
        assert!(matches!(both, Err(OAuthError::InvalidRequest(_))));
        let other_id = client_credentials(Some(&header), &form("client_id=other"));
        assert!(matches!(other_id, Err(OAuthError::InvalidRequest(_))));
        let same_id = client_credentials(Some(&header), &form("client_id=app"));
        assert_eq!(same_id.unwrap(), creds("app", "secret"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert!(!format!("{:?}", creds("app", "hunter2")).contains("hunter2"));
    }
}
