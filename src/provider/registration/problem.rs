//! What a registration call's failure means, read from the provider's answer: the status *and* the
//! body, since the same status means different things (Okta's 404 `E0000007` is a client that is
//! gone; a 404 from a wrong `registration_url` is not), and the same refusal means different things
//! depending on whose credential was refused (the configured one, or the client's own RFC 7592
//! registration access token).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::provider::ProviderError;

/// Longer provider strings are cut: they end up in logs and admin answers.
const MAX_FIELD_CHARS: usize = 512;
/// At most this many of Okta's `errorCauses` are kept.
const MAX_CAUSES: usize = 10;
/// The latest a rate limit's reset is believed to be: a provider clock far off must not park the
/// caller for a day.
const MAX_RESET: Duration = Duration::from_secs(3600);

/// The provider's own account of a refusal, as it gave it, so an admin API can pass it through:
/// OAuth's `error`/`error_description` (RFC 7591 §3.2.2) or Okta's `errorCode`, `errorSummary`,
/// `errorId` and `errorCauses`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProviderProblem {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(rename = "errorSummary", skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<String>,
    #[serde(rename = "errorId", skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
    /// Each cause's `errorSummary` (Okta names the offending field there).
    #[serde(rename = "errorCauses", skip_serializing_if = "Vec::is_empty")]
    pub error_causes: Vec<String>,
}

/// Why a registration call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// No endpoint or no credential: nothing was sent.
    #[error("client registration is not configured: {0}")]
    NotConfigured(&'static str),
    /// This provider has no API for it (RFC 7592 has no search, for one); nothing was sent.
    #[error("the provider cannot do this: {0}")]
    Unsupported(&'static str),
    /// `update_in_idp` or `delete_in_idp` is off: nothing was sent.
    #[error("this change is not made at the provider: set {0} = true to allow it")]
    Disabled(&'static str),
    /// The client does not exist at the provider (any more).
    #[error("the client is not at the provider (HTTP {})", .0.status)]
    Gone(Box<ProviderProblem>),
    /// The provider refused `registration_authorization` itself: every registration call fails
    /// the same way until it is fixed, so callers stop rather than retry.
    #[error(
        "the provider refused provider.registration_authorization (HTTP {}{}): fix it (Okta: an active API token of an admin allowed to manage applications, written `SSWS <token>`); no registration call succeeds until then",
        .0.status, code_suffix(.0)
    )]
    CredentialBroken(Box<ProviderProblem>),
    /// 429: come back at `reset` (Okta's `X-Rate-Limit-Reset`, or `Retry-After`), when known.
    #[error("the provider is rate limiting registration calls")]
    RateLimited {
        reset: Option<SystemTime>,
        problem: Box<ProviderProblem>,
    },
    /// The provider refused the request as written (RFC 7591 §3.2.2 `invalid_client_metadata`,
    /// `invalid_redirect_uri`; Okta `E0000001`, a duplicate name among them). Retrying the same
    /// request gets the same answer.
    #[error("the provider refused the request (HTTP {status}): {}", describe(.error, .description))]
    Rejected {
        status: u16,
        error: Option<String>,
        description: Option<String>,
        problem: Box<ProviderProblem>,
    },
    /// Several clients at the provider have this exact name: which one is ours is for a person to
    /// decide.
    #[error("{} clients at the provider have this name: {}", .0.len(), .0.join(", "))]
    Ambiguous(Vec<String>),
    /// No answer, or one that says nothing: a timeout, a 5xx, a dropped connection, a malformed
    /// body. Whether a create took effect is unknown: look it up by name before trying again.
    #[error(transparent)]
    Unavailable(#[from] ProviderError),
}

/// Whose credential a call carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credential {
    /// `registration_authorization` (an Okta API token or an RFC 7591 initial access token).
    Configured,
    /// The client's own registration access token (RFC 7592 §1).
    Client,
}

// === impl RegistrationError ===

impl RegistrationError {
    /// What the provider itself said, when it answered at all.
    pub fn problem(&self) -> Option<&ProviderProblem> {
        match self {
            RegistrationError::Gone(p) | RegistrationError::CredentialBroken(p) => Some(p),
            RegistrationError::RateLimited { problem, .. }
            | RegistrationError::Rejected { problem, .. } => Some(problem),
            RegistrationError::NotConfigured(_)
            | RegistrationError::Unsupported(_)
            | RegistrationError::Disabled(_)
            | RegistrationError::Ambiguous(_)
            | RegistrationError::Unavailable(_) => None,
        }
    }
}

// === impl ProviderProblem ===

impl ProviderProblem {
    /// Reads an error body in either dialect; a body that is not a JSON object leaves only the status.
    pub fn read(status: u16, body: &[u8]) -> Self {
        let json: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
        let text = |key: &str| {
            json.as_ref()
                .and_then(|b| b.get(key))
                .and_then(Value::as_str)
                .map(cut)
        };
        let causes = json
            .as_ref()
            .and_then(|b| b.get("errorCauses"))
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .filter_map(|c| c.get("errorSummary").and_then(Value::as_str))
                    .take(MAX_CAUSES)
                    .map(cut)
                    .collect()
            })
            .unwrap_or_default();
        ProviderProblem {
            status,
            error: text("error"),
            error_description: text("error_description"),
            error_code: text("errorCode"),
            error_summary: text("errorSummary"),
            error_id: text("errorId"),
            error_causes: causes,
        }
    }

    /// The error code in whichever dialect the provider spoke.
    pub fn code(&self) -> Option<&str> {
        self.error.as_deref().or(self.error_code.as_deref())
    }

    /// The description in whichever dialect, with Okta's causes after it.
    pub fn description(&self) -> Option<String> {
        let summary = self
            .error_description
            .as_deref()
            .or(self.error_summary.as_deref())?;
        if self.error_causes.is_empty() {
            return Some(summary.to_owned());
        }
        Some(format!("{summary} ({})", self.error_causes.join("; ")))
    }
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD_CHARS).collect()
}

fn code_suffix(p: &ProviderProblem) -> String {
    match (p.code(), p.description()) {
        (Some(code), Some(d)) => format!(" {code}: {d}"),
        (Some(code), None) => format!(" {code}"),
        (None, Some(d)) => format!(": {d}"),
        (None, None) => String::new(),
    }
}

fn describe(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(s), None) | (None, Some(s)) => s.clone(),
        (None, None) => "no reason given".to_owned(),
    }
}

// === classification ===

/// The error a non-success answer stands for.
pub(super) fn failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    credential: Credential,
    clock: &dyn Clock,
) -> RegistrationError {
    let problem = Box::new(ProviderProblem::read(status, body));
    match (status, credential) {
        (429, _) => RegistrationError::RateLimited {
            reset: reset(headers, clock),
            problem,
        },
        // Okta answers a bad or under-privileged API token with 401 E0000011 / 403 E0000006; an
        // RFC 7591 server a bad initial access token with 401 `invalid_token` (RFC 6750 §3.1).
        (401 | 403, Credential::Configured) => RegistrationError::CredentialBroken(problem),
        // RFC 7592 §2.1-§2.3: a client that does not exist is answered 401 and its registration
        // access token revoked, so with the client's own token a 401 means the client is gone.
        (401, Credential::Client) | (404, Credential::Client) => RegistrationError::Gone(problem),
        // Gone only when the body says so: a 404 without Okta's "Not found" is a wrong URL, and
        // taking it for "already deleted" would forget a client that still exists.
        (404, Credential::Configured) if problem.error_code.as_deref() == Some("E0000007") => {
            RegistrationError::Gone(problem)
        }
        (400..=499, _) => RegistrationError::Rejected {
            status,
            error: problem.code().map(str::to_owned),
            description: problem.description(),
            problem,
        },
        _ => RegistrationError::Unavailable(ProviderError::Status(status)),
    }
}

/// When a 429 ends: `Retry-After` (seconds) or Okta's `X-Rate-Limit-Reset` (Unix time), capped.
fn reset(headers: &HeaderMap, clock: &dyn Clock) -> Option<SystemTime> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let now = clock.now_unix();
    let at = number("retry-after")
        .map(|secs| now.saturating_add(secs))
        .or_else(|| number("x-rate-limit-reset"))?;
    let at = at.clamp(now, now.saturating_add(MAX_RESET.as_secs()));
    Some(UNIX_EPOCH + Duration::from_secs(at))
}
