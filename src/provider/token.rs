//! The token endpoint, for the troubleshooting commands: a client-credentials grant (RFC 6749 §4.4)
//! sent server-side with no `Origin` header, so Okta treats it as the confidential client it is
//! rather than a browser that owes it PKCE.

use serde_json::{Map, Value};
use url::form_urlencoded::byte_serialize;

use super::{Provider, ProviderError};

/// The provider's refusal (RFC 6749 §5.2), or an Okta API error (`errorCode`, `errorSummary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the provider refused (HTTP {})", .0.status)]
    Refused(Refusal),
}

impl Provider {
    /// A client-credentials token response (the whole JSON object).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<Map<String, Value>, TokenRequestError> {
        let endpoints = self.resolve().await?;
        let url = endpoints.token.clone().ok_or_else(|| {
            ProviderError::Malformed(
                "the metadata names no token_endpoint: set provider.token_url".to_owned(),
            )
        })?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let request = self
            .http
            .post(url)
            .header(http::header::ACCEPT, "application/json")
            // RFC 6749 §2.3.1: form-encode before Basic.
            .basic_auth(
                byte_serialize(client_id.as_bytes()).collect::<String>(),
                Some(byte_serialize(client_secret.as_bytes()).collect::<String>()),
            )
            .form(&form);
        let answer = self.http.send(request).await?;
        let status = answer.status.as_u16();
        let body = answer.body?;
        let json: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
        match (status, json) {
            (200, Some(map)) if map.get("access_token").is_some_and(Value::is_string) => Ok(map),
            (200, _) => Err(ProviderError::Malformed(
                "the token response has no access_token".to_owned(),
            )
            .into()),
            (status, json) => Err(TokenRequestError::Refused(refusal(status, json.as_ref()))),
        }
    }
}

/// Reads an error body in either dialect: OAuth (`error`, `error_description`) or Okta's
/// management API (`errorCode`, `errorSummary`).
pub fn refusal(status: u16, body: Option<&Map<String, Value>>) -> Refusal {
    let text = |key: &str| {
        body.and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Refusal {
        status,
        error: text("error").or_else(|| text("errorCode")),
        description: text("error_description").or_else(|| text("errorSummary")),
    }
}

impl Refusal {
    /// A hint for the failures people hit setting up Okta and Anypoint.
    pub fn hint(&self) -> Option<&'static str> {
        let description = self.description.as_deref().unwrap_or("");
        if description.contains("Proof Key for Code Exchange") || description.contains("PKCE") {
            return Some(
                "the provider took the request for a browser's (it carried an Origin header, as Postman \
                 and browsers send) and demands PKCE; `tollgate token` sends no Origin header — from \
                 Postman, remove the Origin header or use this command",
            );
        }
        match self.error.as_deref() {
            Some("invalid_client") => Some(
                "check the client id and secret, and that the client authenticates with a client \
                 secret (client_secret_basic) at this authorization server",
            ),
            Some("invalid_scope") => Some(
                "the scope is not defined on this authorization server, or an access policy rule does \
                 not grant it to this client (Okta: Security → API → Authorization Servers → Scopes \
                 and Access Policies)",
            ),
            Some("unauthorized_client") => Some(
                "the client may not use the client_credentials grant: enable it in the application's \
                 grant types (and in the authorization server's access policy rule)",
            ),
            Some("E0000011") | Some("invalid_token") if self.status == 401 => Some(
                "the Authorization header was refused: Okta's API wants `SSWS <api token>` (not \
                 `Bearer`), and the token must be an active API token",
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn from(status: u16, v: Value) -> Refusal {
        refusal(status, v.as_object())
    }

    #[test]
    fn hints_for_known_refusals() {
        let pkce = from(
            400,
            json!({"error": "invalid_request", "error_description": "Browser requests to the token endpoint must use Proof Key for Code Exchange."}),
        );
        assert!(pkce.hint().unwrap().contains("Origin"));
        assert!(
            from(401, json!({"error": "invalid_client"}))
                .hint()
                .unwrap()
                .contains("secret")
        );
        assert!(
            from(400, json!({"error": "invalid_scope"}))
                .hint()
                .unwrap()
                .contains("scope")
        );
        let okta = from(
            401,
            json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"}),
        );
        assert_eq!(okta.description.as_deref(), Some("Invalid token provided"));
        assert!(okta.hint().unwrap().contains("SSWS"));
        assert_eq!(from(500, json!({})).hint(), None);
    }
}
