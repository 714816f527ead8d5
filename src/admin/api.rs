//! The admin API's door (`/v1/*` on the admin listener): the `[admin] token` check, the request
//! body (bounded, JSON only) and `Idempotency-Key` replays, in front of [`super::routes`], which
//! calls the registry's operations. Nothing here changes the registry itself.

use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::problem::{Problem, json_response, replayed};
use super::routes::{self, Call};
use crate::body::ProxyBody;
use crate::clock::{Clock, SystemClock};
use crate::config::Secret;
use crate::registry::{Claim, Registry};
use crate::runtime::Runtime;

/// The largest request body: registry requests are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long an `Idempotency-Key` answer is kept.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// The longest `Idempotency-Key` accepted (a UUID is 36).
const MAX_KEY_CHARS: usize = 255;

/// Answers one `/v1/*` request.
pub async fn answer(req: Request<ProxyBody>, runtime: &Runtime) -> Response<ProxyBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match admitted(req, runtime).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    // Who changed what is in the audit; this line is for the operator (never a header or body).
    tracing::info!(%method, %path, status = response.status().as_u16(), "admin API");
    response
}

async fn admitted(
    req: Request<ProxyBody>,
    runtime: &Runtime,
) -> Result<Response<ProxyBody>, Problem> {
    let token = runtime.admin_token.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "admin-api-disabled",
            "The admin API is disabled",
            "set [admin] token (at least 32 characters, e.g. \"${TOLLGATE_ADMIN_TOKEN}\") to enable /v1"
                .to_owned(),
        )
    })?;
    authenticate(req.headers(), token)?;
    let registry = registry(runtime)?;
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body,
    };
    let key = idempotency_key(&parts.headers)?;
    match (parts.method, key) {
        (Method::POST, Some(key)) => idempotent(registry, runtime, &call, &key).await,
        _ => Ok(respond(routes::dispatch(registry, runtime, &call).await)),
    }
}

/// `Authorization: Bearer <token>`, compared as SHA-256 digests in constant time, so neither
/// the token's bytes nor its length leak through timing.
fn authenticate(headers: &HeaderMap, token: &Secret) -> Result<(), Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The admin token is missing or wrong",
            detail.to_owned(),
        )
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // RFC 6750 §2.1 / RFC 9110 §11.1: the scheme is case-insensitive.
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
        .ok_or_else(|| unauthorized("send Authorization: Bearer <[admin] token>"))?;
    let expected = Sha256::digest(token.expose().as_bytes());
    let given = Sha256::digest(presented.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &given)
        .map_err(|_| unauthorized("the bearer token is not the [admin] token"))
}

fn registry(runtime: &Runtime) -> Result<&Registry, Problem> {
    if runtime.registry.is_none() {
        return Err(Problem::from(crate::registry::RegistryError::NotConfigured));
    }
    runtime.admin_registry.get().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "The registry store is unavailable",
            "the registry store is not open yet: retry shortly (see /readyz)".to_owned(),
        )
    })
}

/// The body, at most [`MAX_BODY_BYTES`]; a non-empty one must be JSON.
async fn read_body(headers: &HeaderMap, body: ProxyBody) -> Result<Vec<u8>, Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The request body is too large",
            format!("at most {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Problem::bad_request("the request body could not be read")
            }
        })?
        .to_bytes();
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !bytes.is_empty() && !json {
        return Err(unsupported_media_type());
    }
    Ok(bytes.to_vec())
}

pub fn unsupported_media_type() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "The request body must be JSON",
        "send Content-Type: application/json".to_owned(),
    )
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS)
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "Idempotency-Key: 1 to {MAX_KEY_CHARS} visible ASCII characters"
            ))
        })
}

/// Runs `call` once per key: the key is claimed in the store before the operation, and its
/// answer recorded after, so a repeat (here or at another gateway) gets the same answer.
async fn idempotent(
    registry: &Registry,
    runtime: &Runtime,
    call: &Call,
    key: &str,
) -> Result<Response<ProxyBody>, Problem> {
    let mut digest = Sha256::new();
    for part in [
        call.method.as_str().as_bytes(),
        call.path.as_bytes(),
        call.query.as_deref().unwrap_or("").as_bytes(),
    ] {
        // Lengths first, so no two different requests hash the same concatenation.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.update(&call.body);
    let digest = hex(&digest.finalize());
    let now = i64::try_from(SystemClock.now_unix()).unwrap_or(i64::MAX);
    let store = registry.store();
    match store
        .claim_idempotent(key, &digest, now, IDEMPOTENCY_TTL_SECS)
        .await?
    {
        Claim::Claimed => {}
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Ok(replayed(status, &body));
        }
        Claim::InProgress => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-in-progress",
                "A request with this Idempotency-Key is under way",
                "retry once it has finished".to_owned(),
            ));
        }
        Claim::Mismatch => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "The Idempotency-Key was used for a different request",
                "use a new key for a new request".to_owned(),
            ));
        }
    }
    let result = routes::dispatch(registry, runtime, call).await;
    let (status, body) = match &result {
        Ok((status, body)) => (*status, stored(body)),
        Err(problem) => (problem.status, problem.body()),
    };
    if let Err(e) = store
        .finish_idempotent(key, status.as_u16(), &body.to_string())
        .await
    {
        // The operation ran: its answer goes out; repeats of the key see it still under way.
        tracing::warn!(error = %e, "cannot record the Idempotency-Key answer");
    }
    Ok(respond(result))
}

/// What a replay gets: the answer without a client secret, which is shown once and never stored.
fn stored(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(secret) = body.get_mut("client_secret") {
        *secret = Value::Null;
    }
    body
}

fn respond(result: Result<(StatusCode, Value), Problem>) -> Response<ProxyBody> {
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(problem) => problem.into_response(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
