//! Finding a client by its exact name, so a create whose answer was lost can be adopted rather
//! than made twice. Okta's `GET /oauth2/v1/clients?q=` matches names by prefix and pages with
//! `Link: <...>; rel="next"` (RFC 8288); RFC 7591/7592 define no search at all.

use http::HeaderMap;
use http::header::LINK;
use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::{ClientRef, RegisteredClient, Registration, RegistrationError, malformed};

/// Pages followed at most. `q=` narrows the list to names starting with the whole name, so
/// even one page is a lot; past this the answer is not trusted to be complete.
const MAX_PAGES: usize = 10;
/// Okta's largest page.
const PAGE_LIMIT: &str = "200";

impl Registration {
    /// The client whose `client_name` is exactly `client_name(application)`, if there is one.
    /// Several with that name are [`RegistrationError::Ambiguous`]: adopting one of them could
    /// take over a client someone made by hand.
    pub async fn find_by_name(
        &self,
        application: &str,
    ) -> Result<Option<RegisteredClient>, RegistrationError> {
        let name = self.client_name(application);
        one(self.search(&name, |n| n == name).await?)
    }

    /// Every client whose `client_name` starts with `client_name_prefix`: the ones tollgate may
    /// have made (for `tollgate idp reconcile`).
    pub async fn list_prefixed(&self) -> Result<Vec<RegisteredClient>, RegistrationError> {
        let prefix = self.client_name("");
        self.search(&prefix, |n| n.starts_with(&prefix)).await
    }

    /// Okta's `q=` search (a prefix match), with `keep` deciding on each exact name.
    async fn search(
        &self,
        query: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<RegisteredClient>, RegistrationError> {
        if !self.okta {
            return Err(RegistrationError::Unsupported(
                "RFC 7591/7592 have no search by name; only Okta's API (an `SSWS` registration_authorization) does",
            ));
        }
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("limit", PAGE_LIMIT);
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self
                .call(Method::GET, &self.configured(url), None, &[200])
                .await?;
            let Value::Array(items) = reply.json else {
                return Err(malformed("the client list is not a JSON array"));
            };
            for item in items {
                if item
                    .get("client_name")
                    .and_then(Value::as_str)
                    .is_some_and(&keep)
                {
                    found.push(RegisteredClient::from_answer(item, None::<&ClientRef>)?);
                }
            }
            match next_page(&reply.headers, &self.url)? {
                Some(next) => url = next,
                None => return Ok(found),
            }
        }
        Err(malformed("the client list runs past the pages followed"))
    }
}

fn one(mut found: Vec<RegisteredClient>) -> Result<Option<RegisteredClient>, RegistrationError> {
    if found.len() > 1 {
        return Err(RegistrationError::Ambiguous(
            found.into_iter().map(|c| c.client_id).collect(),
        ));
    }
    Ok(found.pop())
}

/// The `rel="next"` target of the `Link` headers, if any. It must be the registration endpoint
/// itself (same origin and path, another query): the API token goes with it.
pub(super) fn next_page(headers: &HeaderMap, base: &Url) -> Result<Option<Url>, RegistrationError> {
    let links = headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for link in links {
        let mut parts = link.split(';').map(str::trim);
        let Some(target) = parts
            .next()
            .and_then(|t| t.strip_prefix('<'))
            .and_then(|t| t.strip_suffix('>'))
        else {
            continue;
        };
        let next = parts.any(|p| {
            p.strip_prefix("rel=").is_some_and(|rel| {
                rel.trim_matches('"')
                    .split(' ')
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if !next {
            continue;
        }
        let url = base
            .join(target)
            .map_err(|_| malformed("the next page's link is not a URL"))?;
        if url.origin() != base.origin() || url.path() != base.path() {
            return Err(malformed(
                "the next page's link leads away from the registration endpoint",
            ));
        }
        return Ok(Some(url));
    }
    Ok(None)
}
