//! Endpoint discovery from the issuer's metadata: RFC 8414 `oauth-authorization-server` first, then
//! OpenID Discovery `openid-configuration` (Okta custom authorization servers serve both, appended to
//! the issuer path). The document's `issuer` must equal the configured one exactly (RFC 8414 §3.3).

use serde::Deserialize;
use url::Url;

use super::{Endpoints, ProviderError, ProviderHttp};
use crate::config::ProviderSettings;

const WELL_KNOWN: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    jwks_uri: Option<String>,
    registration_endpoint: Option<String>,
}

/// Resolves the endpoints: configured ones win; the metadata fills the rest. No request is made
/// when every endpoint is configured.
pub async fn discover(
    http: &ProviderHttp,
    settings: &ProviderSettings,
) -> Result<Endpoints, ProviderError> {
    let all_set = settings.authorize_url.is_some()
        && settings.token_url.is_some()
        && settings.introspection_url.is_some()
        && settings.jwks_url.is_some();
    let metadata = if all_set {
        None
    } else {
        Some(fetch_metadata(http, &settings.issuer).await?)
    };
    let pick =
        |configured: &Option<Url>, found: Option<&String>, name: &str| match (configured, found) {
            (Some(u), _) => Ok(Some(u.clone())),
            (None, Some(s)) => Url::parse(s)
                .map(Some)
                .map_err(|_| ProviderError::Malformed(format!("metadata {name} is not a URL"))),
            (None, None) => Ok(None),
        };
    let m = metadata.as_ref();
    let introspection = pick(
        &settings.introspection_url,
        m.and_then(|m| m.introspection_endpoint.as_ref()),
        "introspection_endpoint",
    )?
    .ok_or_else(|| {
        ProviderError::Malformed(
            "the metadata names no introspection_endpoint: set provider.introspection_url"
                .to_owned(),
        )
    })?;
    Ok(Endpoints {
        authorize: pick(
            &settings.authorize_url,
            m.and_then(|m| m.authorization_endpoint.as_ref()),
            "authorization_endpoint",
        )?,
        token: pick(
            &settings.token_url,
            m.and_then(|m| m.token_endpoint.as_ref()),
            "token_endpoint",
        )?,
        introspection,
        jwks: pick(
            &settings.jwks_url,
            m.and_then(|m| m.jwks_uri.as_ref()),
            "jwks_uri",
        )?,
        registration: pick(
            &settings.registration_url,
            m.and_then(|m| m.registration_endpoint.as_ref()),
            "registration_endpoint",
        )?,
    })
}

async fn fetch_metadata(http: &ProviderHttp, issuer: &str) -> Result<Metadata, ProviderError> {
    let base = issuer.trim_end_matches('/');
    let mut last_error = ProviderError::NotReady;
    for suffix in WELL_KNOWN {
        let url = format!("{base}{suffix}");
        match fetch_one(http, &url).await {
            Ok(metadata) => {
                // RFC 8414 §3.3 / OpenID Discovery §4.3: exact match, no normalisation.
                if metadata.issuer != issuer {
                    return Err(ProviderError::Malformed(format!(
                        "the metadata at {url} names issuer {:?}, not the configured {issuer:?}",
                        metadata.issuer
                    )));
                }
                return Ok(metadata);
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "metadata not found here");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

async fn fetch_one(http: &ProviderHttp, url: &str) -> Result<Metadata, ProviderError> {
    let answer = http
        .send(
            http.get(url)
                .header(http::header::ACCEPT, "application/json"),
        )
        .await?;
    if answer.status != reqwest::StatusCode::OK {
        return Err(ProviderError::Status(answer.status.as_u16()));
    }
    let body = answer.body?;
    serde_json::from_slice(&body)
        .map_err(|e| ProviderError::Malformed(format!("metadata is not the expected JSON: {e}")))
}
