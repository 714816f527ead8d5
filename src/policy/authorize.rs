//! Authorisation, pure: may this principal pass this policy? Required scopes are exact tokens
//! (`mulescopeX` does not satisfy `mulescope`), all or any of them; then the client contract.
//! Comparisons are byte for byte: nothing is trimmed or case-folded.

use super::Rejection;
use crate::config::{ClientCheck, PolicySettings, ScopeMatch};
use crate::registry::ContractIndex;
#[cfg(test)]
use crate::validate::Attributes;
use crate::validate::{InvalidReason, Principal};

/// The registry's contracts for one API, as far as this request is concerned.
#[derive(Clone, Copy)]
pub struct Contracts<'a> {
    pub api: &'a str,
    /// The API's provider: the one that validated the token, so the one its client id is of.
    pub provider: &'a str,
    /// The index in force; `None` while a configured registry has not loaded one yet.
    pub index: Option<&'a ContractIndex>,
}

pub fn authorize(
    audience: &[String],
    policy: &PolicySettings,
    principal: &Principal,
    contracts: Contracts<'_>,
) -> Result<(), Rejection> {
    // RFC 7519 §4.1.3 / RFC 9068 §4: the token must be meant for this API.
    if !audience.is_empty()
        && !principal
            .audience()
            .any(|a| audience.iter().any(|x| x == a))
    {
        return Err(Rejection::InvalidToken(InvalidReason::WrongAudience));
    }
    let held = |scope: &String| principal.has_scope(scope);
    let scopes_ok = match policy.scope_match {
        ScopeMatch::All => policy.scopes.iter().all(held),
        ScopeMatch::Any => policy.scopes.is_empty() || policy.scopes.iter().any(held),
    };
    if !scopes_ok {
        return Err(Rejection::InsufficientScope {
            required: policy.scopes.join(" "),
        });
    }
    match &policy.clients {
        ClientCheck::Skip => Ok(()),
        ClientCheck::Contracts { listed, registry } => {
            let Some(id) = principal.client_id() else {
                return Err(Rejection::NoContract);
            };
            if listed.contains(id) {
                return Ok(());
            }
            if !registry {
                return Err(Rejection::NoContract);
            }
            match contracts.index {
                Some(index) if index.grant(contracts.api, contracts.provider, id).is_some() => {
                    Ok(())
                }
                Some(_) => Err(Rejection::NoContract),
                // No index yet: tollgate cannot know whether the client holds a contract.
                None => Err(Rejection::RegistryUnavailable),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a registry.
    fn authorize(
        audience: &[String],
        policy: &PolicySettings,
        principal: &Principal,
    ) -> Result<(), Rejection> {
        let none = Contracts {
            api: "orders",
            provider: "default",
            index: None,
        };
        super::authorize(audience, policy, principal, none)
    }

    #[test]
    fn a_registry_contract_admits_a_client_the_static_list_does_not() {
        let mut p = policy(&[], ScopeMatch::All, Some(&["listed"]));
        p.clients = ClientCheck::Contracts {
            listed: ["listed".to_owned()].into(),
            registry: true,
        };
        let row = crate::registry::ApprovedContract {
            api: "orders".into(),
            provider: "default".into(),
            client_id: "registered".into(),
            app: "shop".into(),
            tier: None,
            limits: Vec::new(),
        };
        let index = ContractIndex::new(1, [row], None);
        let on = |api, index| Contracts {
            api,
            provider: "default",
            index,
        };
        let who = |c| principal(&[], Some(c));
        let check = |c, contracts| super::authorize(&[], &p, &who(c), contracts);
        assert_eq!(
            check("listed", on("orders", None)),
            Ok(()),
            "the static list needs no index"
        );
        assert_eq!(check("registered", on("orders", Some(&index))), Ok(()));
        let elsewhere = Contracts {
            provider: "other",
            ..on("orders", Some(&index))
        };
        assert_eq!(
            check("registered", elsewhere),
            Err(Rejection::NoContract),
            "the same client id at another provider holds no contract"
        );
        assert_eq!(
            check("registered", on("payments", Some(&index))),
            Err(Rejection::NoContract)
        );
        assert_eq!(
            check("stranger", on("orders", Some(&index))),
            Err(Rejection::NoContract)
        );
        assert_eq!(
            check("registered", on("orders", None)),
            Err(Rejection::RegistryUnavailable),
            "no index loaded yet: 503, not a verdict"
        );
    }

    fn policy(scopes: &[&str], m: ScopeMatch, clients: Option<&[&str]>) -> PolicySettings {
        PolicySettings {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scope_match: m,
            clients: match clients {
                None => ClientCheck::Skip,
                Some(c) => ClientCheck::Contracts {
                    listed: c.iter().map(|s| s.to_string()).collect(),
                    registry: false,
                },
            },
        }
    }

    fn principal(scopes: &[&str], client: Option<&str>) -> Principal {
        let claims = serde_json::json!({"scp": scopes, "client_id": client});
        Principal::from_claims(claims.as_object().unwrap(), Attributes::Drop).unwrap()
    }

    #[test]
    fn scopes_are_exact_tokens() {
        let all = policy(&["mulescope", "b"], ScopeMatch::All, None);
        assert!(authorize(&[], &all, &principal(&["b", "mulescope"], None)).is_ok());
        assert!(authorize(&[], &all, &principal(&["mulescope"], None)).is_err());
        assert!(authorize(&[], &all, &principal(&["mulescopeX", "b"], None)).is_err());
        assert!(authorize(&[], &all, &principal(&["Mulescope", "b"], None)).is_err());
        let any = policy(&["mulescope", "b"], ScopeMatch::Any, None);
        assert!(authorize(&[], &any, &principal(&["b"], None)).is_ok());
        assert_eq!(
            authorize(&[], &any, &principal(&["mulescopeX"], None)),
            Err(Rejection::InsufficientScope {
                required: "mulescope b".into()
            })
        );
        assert!(
            authorize(
                &[],
                &policy(&[], ScopeMatch::Any, None),
                &principal(&[], None)
            )
            .is_ok()
        );
    }

    #[test]
    fn audience_is_one_of_the_api_values_exactly() {
        let p = policy(&[], ScopeMatch::All, None);
        let aud = ["api://default".to_owned()];
        let with = |a: &[&str]| {
            let claims = serde_json::json!({ "aud": a });
            Principal::from_claims(claims.as_object().unwrap(), Attributes::Drop).unwrap()
        };
        assert!(authorize(&aud, &p, &with(&["x", "api://default"])).is_ok());
        for bad in [&[][..], &["api://default/"][..], &["API://default"][..]] {
            assert_eq!(
                authorize(&aud, &p, &with(bad)),
                Err(Rejection::InvalidToken(InvalidReason::WrongAudience))
            );
        }
        assert!(authorize(&[], &p, &with(&[])).is_ok());
    }

    #[test]
    fn client_ids_are_exact() {
        let p = policy(&[], ScopeMatch::All, Some(&["0oaABC"]));
        assert!(authorize(&[], &p, &principal(&[], Some("0oaABC"))).is_ok());
        for other in [Some("0oaabc"), Some(" 0oaABC"), Some("0oaABC "), None] {
            assert_eq!(
                authorize(&[], &p, &principal(&[], other)),
                Err(Rejection::NoContract)
            );
        }
    }
}
