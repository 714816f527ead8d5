//! The dev provider's routes under the issuer path, Okta's layout: metadata (RFC 8414, OpenID
//! Discovery), `/v1/keys` (RFC 7517), `/v1/token` (RFC 6749 §4.4), `/v1/introspect` (RFC 7662) and
//! `/v1/clients` (RFC 7591). Each handler reads its bounded input, decides, and hands the answer or
//! the refusal to `reply`.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::AuthenticatedClient;
use super::form::{Form, client_credentials};
use super::reply::{Caching, OAuthError, json_response};
use super::scopes::{granted_scopes, registered_scopes};
use super::{DevState, ISSUER_PATH};
use crate::body::ProxyBody;

/// Request bodies beyond this are refused unread.
const MAX_BODY: usize = 64 * 1024;
/// How long clients may keep the JWKS: the key never changes while the process runs.
const JWKS_MAX_AGE: u32 = 300;
/// Both client authentication methods are accepted at both endpoints.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];
/// RFC 8414 §3's own location of the metadata: the well-known part before the issuer's path (Okta
/// and tollgate's discovery use the appended form, served too).
const RFC8414_METADATA_PATH: &str = "/.well-known/oauth-authorization-server/oauth2/default";

/// The JSON body of a registration request (RFC 7591 §2); other metadata is ignored, as §2 asks.
#[derive(Debug, Deserialize)]
struct RegistrationRequest {
    client_name: Option<String>,
    scope: Option<String>,
    grant_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
}

/// Answers one request; never fails, never panics: a refusal is a response.
pub(super) async fn answer(req: Request<ProxyBody>, state: &DevState) -> Response<ProxyBody> {
    match route(req, state).await {
        Ok(response) => response,
        Err(error) => {
            if let OAuthError::Internal(detail) = &error {
                tracing::warn!(%detail, "dev provider failed to answer");
            }
            error.into_response()
        }
    }
}

async fn route(
    req: Request<ProxyBody>,
    state: &DevState,
) -> Result<Response<ProxyBody>, OAuthError> {
    let path = req.uri().path();
    let endpoint = if path == RFC8414_METADATA_PATH {
        "/.well-known/oauth-authorization-server"
    } else {
        path.strip_prefix(ISSUER_PATH).ok_or(OAuthError::NotFound)?
    };
    match endpoint {
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
            expect_get(req.method())?;
            Ok(json_response(
                StatusCode::OK,
                &metadata(state),
                Caching::Unspecified,
            ))
        }
        "/v1/keys" => {
            expect_get(req.method())?;
            let jwks = state.key.jwks();
            Ok(json_response(
                StatusCode::OK,
                &jwks,
                Caching::MaxAge(JWKS_MAX_AGE),
            ))
        }
        "/v1/token" => {
            expect_post(req.method())?;
            token(req, state).await
        }
        "/v1/introspect" => {
            expect_post(req.method())?;
            introspect(req, state).await
        }
        "/v1/clients" => {
            expect_post(req.method())?;
            register(req, state).await
        }
        _ => Err(OAuthError::NotFound),
    }
}

fn expect_get(method: &Method) -> Result<(), OAuthError> {
    match *method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(OAuthError::MethodNotAllowed("GET, HEAD")),
    }
}

fn expect_post(method: &Method) -> Result<(), OAuthError> {
    match *method {
        Method::POST => Ok(()),
        _ => Err(OAuthError::MethodNotAllowed("POST")),
    }
}

/// The authorization server metadata (RFC 8414 §2), also valid OpenID Discovery: both well-known
/// documents are this one.
fn metadata(state: &DevState) -> Value {
    let issuer = &state.issuer;
    json!({
        "issuer": issuer,
        // Not served (client credentials need no browser), but OpenID Discovery requires the field.
        "authorization_endpoint": format!("{issuer}/v1/authorize"),
        "token_endpoint": format!("{issuer}/v1/token"),
        "introspection_endpoint": format!("{issuer}/v1/introspect"),
        "jwks_uri": format!("{issuer}/v1/keys"),
        "registration_endpoint": format!("{issuer}/v1/clients"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": state.known_scopes,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

/// RFC 6749 §4.4.2–§4.4.3: client credentials in, access token out (`Cache-Control: no-store`).
async fn token(
    req: Request<ProxyBody>,
    state: &DevState,
) -> Result<Response<ProxyBody>, OAuthError> {
    let (parts, body) = req.into_parts();
    let form = read_form(&parts.headers, body).await?;
    let client = authenticate(&parts.headers, &form, state)?;
    match form.get("grant_type") {
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
        None => {
            return Err(OAuthError::InvalidRequest(
                "grant_type is required".to_owned(),
            ));
        }
    }
    let scopes = granted_scopes(form.get("scope"), &client.scopes, &state.known_scopes)?;
    let scope = scopes.join(" ");
    let access_token = state.issue(&client.client_id, scopes)?;
    let answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.token_ttl_secs,
        "scope": scope,
    });
    Ok(json_response(StatusCode::OK, &answer, Caching::NoStore))
}

/// RFC 7662 §2: any known client may ask; a token that is unknown, expired, foreign or garbage is
/// simply `{"active": false}` (§2.2), never an error.
async fn introspect(
    req: Request<ProxyBody>,
    state: &DevState,
) -> Result<Response<ProxyBody>, OAuthError> {
    let (parts, body) = req.into_parts();
    let form = read_form(&parts.headers, body).await?;
    authenticate(&parts.headers, &form, state)?;
    let token = form.get("token").ok_or_else(|| {
        OAuthError::InvalidRequest("token is required (RFC 7662 §2.1)".to_owned())
    })?;
    let answer = state.find_token(token).map_or_else(
        || json!({ "active": false }),
        |record| record.introspection(),
    );
    Ok(json_response(StatusCode::OK, &answer, Caching::NoStore))
}

/// RFC 7591 §3: open registration (development only, loopback only) of a client-credentials client.
async fn register(
    req: Request<ProxyBody>,
    state: &DevState,
) -> Result<Response<ProxyBody>, OAuthError> {
    let body = read_body(req.into_body()).await?;
    let request: RegistrationRequest = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::InvalidClientMetadata(format!(
            "the body is not a JSON object of client metadata: {e}"
        ))
    })?;
    let grant_types = request.grant_types.unwrap_or_default();
    if grant_types.iter().any(|g| g != "client_credentials") {
        return Err(OAuthError::InvalidClientMetadata(
            "only the client_credentials grant type is supported".to_owned(),
        ));
    }
    let auth_method = request
        .token_endpoint_auth_method
        .unwrap_or_else(|| AUTH_METHODS[0].to_owned());
    if !AUTH_METHODS.contains(&auth_method.as_str()) {
        return Err(OAuthError::InvalidClientMetadata(
            "token_endpoint_auth_method must be client_secret_basic or client_secret_post"
                .to_owned(),
        ));
    }
    let scopes = registered_scopes(request.scope.as_deref(), &state.known_scopes)?;
    let scope = scopes.join(" ");
    let registration = state.clients.register(scopes)?;
    let mut answer = json!({
        "client_id": registration.client_id,
        "client_secret": registration.client_secret,
        "client_id_issued_at": state.clock.now_unix(),
        "client_secret_expires_at": 0,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": auth_method,
        "scope": scope,
    });
    if let Some(name) = request.client_name {
        answer["client_name"] = Value::String(name);
    }
    Ok(json_response(
        StatusCode::CREATED,
        &answer,
        Caching::NoStore,
    ))
}

/// The client's credentials, checked against the registry.
fn authenticate(
    headers: &HeaderMap,
    form: &Form,
    state: &DevState,
) -> Result<AuthenticatedClient, OAuthError> {
    let credentials = client_credentials(headers.get(AUTHORIZATION), form)?;
    state.clients.authenticate(&credentials)
}

/// A form body (RFC 6749 Appendix B); another media type is `invalid_request`.
async fn read_form(headers: &HeaderMap, body: ProxyBody) -> Result<Form, OAuthError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".to_owned(),
        ));
    }
    Form::parse(&read_body(body).await?)
}

/// The whole body, up to [`MAX_BODY`].
async fn read_body(body: ProxyBody) -> Result<Bytes, OAuthError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(OAuthError::PayloadTooLarge)
        }
        Err(_) => Err(OAuthError::InvalidRequest(
            "the request body could not be read".to_owned(),
        )),
    }
}
