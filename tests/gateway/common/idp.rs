//! The real OpenID provider: `tests/idp/server.mjs` (oidc-provider configured like an Okta custom
//! authorization server, issuer `http://127.0.0.1:<port>/oauth2/default`), one child process per
//! `TestIdp`. The child holds the read end of a pipe we keep; when the `TestIdp` drops, the pipe
//! closes and the provider exits (and `kill_on_drop` covers the rest).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

/// How long the provider may take to print its ready line (it usually takes well under a second).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running test provider. Default clients (all client_credentials, secret via Basic or POST):
/// `tollgate-introspector`/`introspector-secret` (scope `openid`), `orders-app`/`orders-secret`
/// (`mulescope orders:admin mulescopeX`), `other-app`/`other-secret` (`mulescope other`),
/// `noscope-app`/`noscope-secret` (`other mulescopeX`).
pub struct TestIdp {
    pub issuer: String,
    pub port: u16,
    /// With `"registration": true`: the initial access token registration takes (RFC 7591 §3).
    pub initial_access_token: Option<String>,
    client: reqwest::Client,
    output: Arc<Mutex<Vec<u8>>>,
    // Declared before `_child` so it drops first: EOF on the provider's stdin makes it exit cleanly.
    _stdin: ChildStdin,
    _child: Child,
}

/// Requests the provider has received, by endpoint (`GET /__stats`; reading them is not counted).
/// `discovery_oauth` counts `/.well-known/oauth-authorization-server` requests (suffix and RFC 8414
/// path-insertion forms), which this provider answers with 404. With registration enabled,
/// `registration` counts calls to `<issuer>/v1/clients` and `registration_management` those to
/// `<issuer>/v1/clients/<id>` (RFC 7592).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdpStats {
    pub total: u64,
    pub token: u64,
    pub introspection: u64,
    pub jwks: u64,
    pub discovery_openid: u64,
    pub discovery_oauth: u64,
    #[serde(default)]
    pub registration: u64,
    #[serde(default)]
    pub registration_management: u64,
}

impl TestIdp {
    /// A provider with the default clients, opaque access tokens and a 3600 s token lifetime.
    pub async fn start() -> TestIdp {
        TestIdp::start_with(serde_json::json!({})).await
    }

    /// A provider with `config`: `{"clients": [{"client_id", "client_secret", "scope"}],
    /// "accessTokenTtl": seconds, "accessTokenFormat": "opaque" | "jwt", "jwksMaxAge": seconds}`,
    /// every key optional. Clients are added to the defaults (same `client_id`: replaced). With
    /// `"jwt"`, client_credentials tokens are RS256 JWTs (header `typ: at+jwt` and the signing key's
    /// `kid`) for audience `api://default`, and remain introspectable. With `"jwksMaxAge": N` the JWKS
    /// answers `Cache-Control: max-age=N`; without it, no `Cache-Control` (oidc-provider sends none).
    /// With `"mint": true`, `mint` works (and the refresh_token grant is enabled). With
    /// `"registration": true`, see [`TestIdp::start_with_registration`].
    pub async fn start_with(config: serde_json::Value) -> TestIdp {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            panic!(
                "the test OpenID provider is not installed: run `npm ci --prefix tests/idp` (or `bash tests/run`)"
            );
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(config.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("tests need Node.js 20: install it (e.g. apt-get install nodejs npm) ({e})")
            });
        let stdin = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("idp: no stdin pipe"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("idp: no stdout pipe"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("idp: no stderr pipe"));

        // Drain stderr for the provider's whole life so the pipe never fills and blocks it.
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stderr_task = drain(stderr, output.clone());

        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(START_DEADLINE, stdout.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            let what = match read {
                Err(_) => format!("no ready line within {START_DEADLINE:?}"),
                Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                Ok(Ok(_)) => format!("it exited before it was ready ({:?})", child.try_wait()),
            };
            // On exit, let the drain catch up so the panic shows everything the provider said.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut stderr_task).await;
            panic!(
                "the test OpenID provider did not start: {what}; its stderr:\n{}",
                text(&output)
            );
        }
        // Nothing else is expected on stdout; drain it anyway, so a stray write cannot fail.
        drain(stdout, output.clone());

        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("the test OpenID provider's ready line is not JSON ({e}): {line:?}")
        });
        let (Some(issuer), Some(port)) = (ready["issuer"].as_str(), ready["port"].as_u64()) else {
            panic!("the test OpenID provider's ready line lacks issuer/port: {line:?}");
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("idp: building an HTTP client: {e}"));
        TestIdp {
            initial_access_token: ready["initialAccessToken"].as_str().map(str::to_owned),
            issuer: issuer.to_owned(),
            port: u16::try_from(port).unwrap_or_else(|_| panic!("idp: bad port in {line:?}")),
            client,
            output,
            _stdin: stdin,
            _child: child,
        }
    }

    /// A provider that also registers clients (RFC 7591) at `registration_url()`, behind
    /// `initial_access_token` (as `Bearer <iat>` or `SSWS <iat>`), and manages them (RFC 7592) with
    /// the registration access token it issues and rotates on every update.
    pub async fn start_with_registration() -> TestIdp {
        TestIdp::start_with(serde_json::json!({"registration": true})).await
    }

    pub fn registration_url(&self) -> String {
        format!("{}/v1/clients", self.issuer)
    }

    /// The status of a client_credentials grant for this client: 200 if the provider knows it
    /// with this secret, 401 (`invalid_client`) if not.
    pub async fn token_status(&self, client_id: &str, client_secret: &str) -> u16 {
        self.client
            .post(self.token_url())
            .basic_auth(client_id, Some(client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp token request for {client_id}: {e}"))
            .status()
            .as_u16()
    }

    pub fn token_url(&self) -> String {
        format!("{}/v1/token", self.issuer)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/v1/introspect", self.issuer)
    }

    pub fn revocation_url(&self) -> String {
        format!("{}/v1/revoke", self.issuer)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/keys", self.issuer)
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// What the provider has written to stderr (and stray stdout) so far, for diagnostics.
    pub fn stderr(&self) -> String {
        text(&self.output)
    }

    /// A client_credentials access token via client_secret_basic (`scope` empty: none requested).
    /// Panics with the provider's error body on failure.
    pub async fn token(&self, client_id: &str, client_secret: &str, scope: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let resp = self
            .client
            .post(self.token_url())
            .basic_auth(client_id, Some(client_secret))
            .form(&form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp token request for {client_id}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("idp refused a token for {client_id} (scope {scope:?}): {status} {body}");
        }
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("idp token response is not JSON ({e}): {body}"));
        json["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("idp token response lacks access_token: {body}"))
            .to_owned()
    }

    /// Revokes `token` as its owner `client_id` (RFC 7009); panics unless the provider answers 200.
    pub async fn revoke(&self, client_id: &str, client_secret: &str, token: &str) {
        let resp = self
            .client
            .post(self.revocation_url())
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp revocation request: {e}"));
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            panic!("idp refused to revoke for {client_id}: {status} {body}");
        }
    }

    /// Rotates the signing key (`POST /__rotate`): a new RSA key signs every token issued from now on,
    /// and the JWKS publishes it first, followed by every earlier key (they stay, as during a real
    /// provider's rotation; JWTs signed with them stay introspectable). Returns the new `kid`.
    /// Clients, issued opaque tokens and the stats carry over.
    pub async fn rotate(&self) -> String {
        self.control("/__rotate", "kid").await
    }

    /// A token client_credentials never yields (`POST /__mint`; needs `"mint": true` in the start
    /// config): `"refresh_token"` (user `alice` of `orders-app`, introspectable, active) or
    /// `"id_token"` (signed like the provider's own: header `typ: JWT`, `aud` `orders-app`, with a
    /// `nonce` and the `at_hash` of `access_token`).
    pub async fn mint(&self, kind: &str, access_token: &str) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("kind", kind)
            .append_pair("access_token", access_token)
            .finish();
        self.control(&format!("/__mint?{query}"), "token").await
    }

    /// POSTs to a test control and returns the string `field` of its JSON answer.
    async fn control(&self, path_and_query: &str, field: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path_and_query}", self.port);
        let resp = self
            .client
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp control {path_and_query}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("idp control {path_and_query} refused: {status} {body}");
        }
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("idp control answer is not JSON ({e}): {body}"));
        json[field]
            .as_str()
            .unwrap_or_else(|| panic!("idp control answer lacks {field}: {body}"))
            .to_owned()
    }

    /// The JWKS as the provider serves it (`GET /v1/keys`; this request is counted in the stats).
    pub async fn jwks(&self) -> serde_json::Value {
        let resp = self
            .client
            .get(self.jwks_url())
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp jwks request: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("idp jwks answer: {status} {body}");
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("idp jwks answer is not JSON ({e}): {body}"))
    }

    pub async fn stats(&self) -> IdpStats {
        let url = format!("http://127.0.0.1:{}/__stats", self.port);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("idp stats request: {e}"));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("idp stats are not the expected JSON: {e}"))
    }
}

/// Copies `from` into `into` until EOF, in the background.
fn drain(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

fn text(output: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
