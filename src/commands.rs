//! The troubleshooting commands behind `tollgate token`, `introspect` and `explain`: each returns
//! what to print, so the binary stays a thin parser. Provider refusals are shown with their
//! `error`, `error_description` and a hint for the known cases; a secret is never echoed back
//! (the token `token` was asked for excepted).

use std::fmt::Write;
use std::sync::Arc;

use http::Method;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::explain::{Decision, Question, explain};
use crate::provider::{Provider, Refusal, TokenRequestError};
use crate::runtime::Runtime;
use crate::validate::BearerToken;

/// What a command prints, and whether it succeeded.
pub struct Outcome {
    pub stdout: String,
    pub success: bool,
}

fn runtime(settings: &Settings) -> Result<Runtime, String> {
    Runtime::build(settings, Arc::new(SystemClock)).map_err(|e| e.to_string())
}

/// The provider `--provider` names; without it, the only one configured.
pub fn pick_provider(runtime: &Runtime, name: Option<&str>) -> Result<Arc<Provider>, String> {
    let names: Vec<&str> = runtime
        .providers
        .iter()
        .map(|p| p.settings.name.as_str())
        .collect();
    let chosen = crate::config::choose_provider(&names, name, "--provider", "the one to ask")
        .map_err(|e| e.to_string())?;
    runtime
        .provider(&chosen)
        .cloned()
        .ok_or_else(|| format!("--provider: no provider is named {chosen:?}"))
}

/// `tollgate token`: a client-credentials token (or the whole response with `json`).
pub async fn token(
    settings: &Settings,
    provider: Option<&str>,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
    json: bool,
) -> Result<Outcome, String> {
    let runtime = runtime(settings)?;
    match pick_provider(&runtime, provider)?
        .client_credentials(client_id, client_secret, scope)
        .await
    {
        Ok(response) => {
            let stdout = if json {
                serde_json::to_string_pretty(&response).map_err(|e| e.to_string())? + "\n"
            } else {
                let token = response
                    .get("access_token")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                format!("{token}\n")
            };
            Ok(Outcome {
                stdout,
                success: true,
            })
        }
        Err(TokenRequestError::Refused(refusal)) => {
            Err(render_refusal("the token endpoint", &refusal))
        }
        Err(TokenRequestError::Provider(e)) => {
            Err(format!("the token endpoint could not answer: {e}"))
        }
    }
}

/// A provider's refusal as a person reads it.
fn render_refusal(what: &str, r: &Refusal) -> String {
    let mut out = format!("{what} refused the request (HTTP {})", r.status);
    if let Some(error) = &r.error {
        let _ = write!(out, "\n  error: {error}");
    }
    if let Some(description) = &r.description {
        let _ = write!(out, "\n  error_description: {description}");
    }
    if let Some(hint) = r.hint() {
        let _ = write!(out, "\n  hint: {hint}");
    }
    out
}

/// `tollgate introspect`: the provider's RFC 7662 answer, pretty-printed.
pub async fn introspect(
    settings: &Settings,
    provider: Option<&str>,
    token: &str,
) -> Result<Outcome, String> {
    let runtime = runtime(settings)?;
    let provider = pick_provider(&runtime, provider)?;
    provider.resolve().await.map_err(|e| {
        format!(
            "cannot resolve the endpoints of provider {}: {e}",
            provider.settings.name
        )
    })?;
    let client = provider.introspection().map_err(|e| e.to_string())?;
    let answer = client
        .introspect(&BearerToken::new(token))
        .await
        .map_err(|e| format!("the introspection endpoint gave no verdict: {e}"))?;
    let stdout = serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())? + "\n";
    Ok(Outcome {
        stdout,
        success: true,
    })
}

/// `tollgate explain`: the gateway's decision for one request, step by step. Succeeds when the
/// request would be forwarded.
pub async fn explain_request(
    settings: &Settings,
    api: &str,
    method: &str,
    path: Option<&str>,
    token: &str,
) -> Result<Outcome, String> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let runtime = runtime(settings)?;
    // Only the provider that would validate the request is asked.
    if let Some(a) = runtime.router.iter().find(|a| &*a.name == api) {
        a.provider.resolve().await.map_err(|e| {
            format!(
                "cannot resolve the endpoints of provider {}: {e}",
                a.provider.settings.name
            )
        })?;
    }
    // The contracts in the registry now, as a gateway would have them loaded.
    if let (Some(config), Some(handle)) = (&settings.registry, &runtime.registry) {
        let store = crate::registry::Store::open(&config.store)
            .await
            .map_err(|e| e.to_string())?;
        let index = crate::registry::load_index(&store, None)
            .await
            .map_err(|e| e.to_string())?;
        handle.replace(Arc::new(index));
    }
    let question = Question {
        api,
        method,
        path,
        token: BearerToken::new(token),
        now: SystemClock.now_unix(),
    };
    let explanation = explain(&runtime, question).await?;
    let success = matches!(explanation.decision, Decision::Allowed { .. });
    Ok(Outcome {
        stdout: explanation.render(),
        success,
    })
}
