//! The admin API's endpoints: each parses its path, query and JSON body and calls one
//! [`Registry`] operation, answering in the CLI's `--json` shapes. No registry logic lives here.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::problem::Problem;
use crate::clock::{Clock, SystemClock};
use crate::registry::{
    AppStatus, ContractAction, ContractFilter, ContractStatus, Limit, NewApp, Outcome, Registry,
    RegistryError,
};
use crate::runtime::Runtime;

/// One admitted request, its body read.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
}

type Answer = Result<(StatusCode, Value), Problem>;

/// `POST /v1/apps`: with `client_id` an import, without it a create at the provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppBody {
    name: String,
    /// The provider the client is (to be) at; needed only when several are configured.
    provider: Option<String>,
    client_id: Option<String>,
    grant: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractBody {
    app: String,
    api: String,
    tier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierBody {
    api: String,
    name: String,
    limits: Vec<String>,
    #[serde(default)]
    auto_approve: bool,
}

/// Routes `call` to its operation.
pub async fn dispatch(r: &Registry, runtime: &Runtime, call: &Call) -> Answer {
    let path = call.path.strip_prefix("/v1/").unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["apps", rest @ ..] => apps(r, runtime, call, rest).await,
        ["contracts", rest @ ..] => contracts(r, call, rest).await,
        ["tiers", rest @ ..] => tiers(r, call, rest).await,
        ["audit"] if call.method == Method::GET => audit(r, call).await,
        ["operations"] if call.method == Method::GET => Ok(ok(json!(r.operations().await?))),
        ["audit" | "operations"] => Err(method_not_allowed()),
        _ => Err(not_found(&call.path)),
    }
}

async fn apps(r: &Registry, runtime: &Runtime, call: &Call, rest: &[&str]) -> Answer {
    match (&call.method, rest) {
        (&Method::GET, []) => Ok(ok(json!(r.apps().await?))),
        (&Method::POST, []) => add_app(r, runtime, body(call)?).await,
        (&Method::GET, [name]) => {
            let (app, contracts) = r.app(name).await?;
            Ok(ok(json!({"app": app, "contracts": contracts})))
        }
        (&Method::POST, [name, "disable"]) => Ok(ok(json!(
            r.set_app_status(name, AppStatus::Disabled).await?
        ))),
        (&Method::POST, [name, "enable"]) => {
            Ok(ok(json!(r.set_app_status(name, AppStatus::Active).await?)))
        }
        (&Method::POST, [name, "rotate-secret"]) => {
            let provider = provider_of(runtime, &r.app(name).await?.0.provider)?;
            let registration = provider.registration().map_err(RegistryError::from)?;
            Ok(ok(json!(r.rotate_secret(registration, name).await?)))
        }
        (&Method::DELETE, [name]) => {
            let keep = flag(&query(call, &["keep_idp_client"])?, "keep_idp_client")?;
            let provider = provider_of(runtime, &r.app(name).await?.0.provider).ok();
            // Only a created application's delete needs it; the operation says so when it does.
            let registration = provider.as_ref().and_then(|p| p.registration().ok());
            Ok(ok(json!(
                r.delete_app_and_client(registration, name, keep).await?
            )))
        }
        (_, [] | [_] | [_, "disable" | "enable" | "rotate-secret"]) => Err(method_not_allowed()),
        _ => Err(not_found(&call.path)),
    }
}

async fn add_app(r: &Registry, runtime: &Runtime, body: AppBody) -> Answer {
    let grant = body.grant.clone();
    let mut new = NewApp {
        name: body.name,
        provider: r.provider_for(body.provider.as_deref(), "provider")?,
        client_id: String::new(),
        grant: String::new(),
        redirect_uris: body.redirect_uris,
        description: body.description,
    };
    if let Some(client_id) = body.client_id {
        new.client_id = client_id;
        new.grant = grant.unwrap_or_else(|| "client_credentials".to_owned());
        return Ok((StatusCode::CREATED, json!(r.import_app(new).await?)));
    }
    new.grant = grant.ok_or_else(|| {
        Problem::from(RegistryError::Invalid(
            "grant: client_credentials or authorization_code (or client_id, to import a client)"
                .to_owned(),
        ))
    })?;
    let provider = provider_of(runtime, &new.provider)?;
    let registration = provider.registration().map_err(RegistryError::from)?;
    match r.create_app(registration, new).await? {
        Outcome::Done(credentials) => Ok((StatusCode::CREATED, json!(credentials))),
        Outcome::Pending(why) => Ok((
            StatusCode::ACCEPTED,
            json!({"status": "pending", "detail": why}),
        )),
    }
}

/// The running provider an application belongs to.
fn provider_of(
    runtime: &Runtime,
    name: &str,
) -> Result<std::sync::Arc<crate::provider::Provider>, Problem> {
    runtime.provider(name).cloned().ok_or_else(|| {
        Problem::from(RegistryError::Invalid(format!(
            "provider {name:?} is not configured on this gateway"
        )))
    })
}

async fn contracts(r: &Registry, call: &Call, rest: &[&str]) -> Answer {
    let action = match (&call.method, rest) {
        (&Method::GET, []) => {
            let q = query(call, &["api", "app", "status"])?;
            let status = match value(&q, "status") {
                Some(s) => Some(ContractStatus::parse(s).ok_or_else(|| {
                    Problem::bad_request("status: pending, approved, rejected or revoked")
                })?),
                None => None,
            };
            let filter = ContractFilter {
                api: value(&q, "api").map(str::to_owned),
                app: value(&q, "app").map(str::to_owned),
                status,
            };
            return Ok(ok(json!(r.contracts(&filter).await?)));
        }
        (&Method::POST, []) => {
            let b: ContractBody = body(call)?;
            let c = r
                .request_contract(&b.app, &b.api, b.tier.as_deref())
                .await?;
            return Ok((StatusCode::CREATED, json!(c)));
        }
        (&Method::POST, [_, _, "approve"]) => ContractAction::Approve,
        (&Method::POST, [_, _, "reject"]) => ContractAction::Reject,
        (&Method::POST, [_, _, "revoke"]) => ContractAction::Revoke,
        (&Method::POST, [_, _, "restore"]) => ContractAction::Restore,
        (&Method::DELETE, [_, _]) => ContractAction::Delete,
        (_, [] | [_, _] | [_, _, "approve" | "reject" | "revoke" | "restore"]) => {
            return Err(method_not_allowed());
        }
        _ => return Err(not_found(&call.path)),
    };
    let (app, api) = (rest[0], rest[1]);
    Ok(ok(match r.change_contract(app, api, action).await? {
        Some(c) => json!(c),
        None => json!({"app": app, "api": api, "status": "deleted"}),
    }))
}

async fn tiers(r: &Registry, call: &Call, rest: &[&str]) -> Answer {
    match (&call.method, rest) {
        (&Method::GET, []) => {
            let q = query(call, &["api"])?;
            Ok(ok(json!(r.tiers(value(&q, "api")).await?)))
        }
        (&Method::POST, []) => {
            let b: TierBody = body(call)?;
            let limits = b
                .limits
                .iter()
                .map(|l| l.parse::<Limit>())
                .collect::<Result<Vec<_>, _>>()?;
            let t = r
                .create_tier(&b.api, &b.name, limits, b.auto_approve)
                .await?;
            Ok((StatusCode::CREATED, json!(t)))
        }
        (&Method::POST, [api, name, "deprecate"]) => {
            Ok(ok(json!(r.deprecate_tier(api, name).await?)))
        }
        (&Method::DELETE, [api, name]) => Ok(ok(json!(r.delete_tier(api, name).await?))),
        (_, [] | [_, _] | [_, _, "deprecate"]) => Err(method_not_allowed()),
        _ => Err(not_found(&call.path)),
    }
}

async fn audit(r: &Registry, call: &Call) -> Answer {
    let q = query(call, &["since", "app"])?;
    let now = i64::try_from(SystemClock.now_unix()).unwrap_or(i64::MAX);
    let since = crate::registry::since(value(&q, "since").unwrap_or("24h"), now)?;
    Ok(ok(json!(r.audit(since, value(&q, "app")).await?)))
}

fn ok(body: Value) -> (StatusCode, Value) {
    (StatusCode::OK, body)
}

/// The JSON body as `T`; unknown fields are refused, as in the configuration.
fn body<T: DeserializeOwned>(call: &Call) -> Result<T, Problem> {
    if call.body.is_empty() {
        return Err(super::api::unsupported_media_type());
    }
    serde_json::from_slice(&call.body)
        .map_err(|e| Problem::bad_request(format!("the JSON body: {e}")))
}

/// The query's parameters, each at most once and each one of `known`.
fn query(call: &Call, known: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(call.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(Problem::bad_request(format!(
                "unknown query parameter {name:?} (known: {})",
                known.join(", ")
            )));
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(Problem::bad_request(format!("{name:?} given twice")));
        }
    }
    Ok(pairs)
}

fn value<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, Problem> {
    match value(pairs, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Problem::bad_request(format!(
            "{name}={other:?}: true or false"
        ))),
    }
}

fn not_found(path: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-such-endpoint",
        "No such endpoint",
        format!("{path:?} is not an admin API endpoint (see the README's Admin API)"),
    )
}

fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "The endpoint does not take this method",
        "see the README's Admin API for each endpoint's methods".to_owned(),
    )
}
