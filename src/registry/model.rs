//! The registry's records — applications, SLA tiers, contracts, audit entries — and the rules
//! that need no store: names, limits, and the contract state machine (as Anypoint has it:
//! pending, approved, rejected, revoked).

use std::time::Duration;

use serde::Serialize;

use super::RegistryError;

/// A client application: one client at the provider, identified there by `client_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub name: String,
    /// The provider the client is registered at (a `[[provider]]` name): its tokens alone can
    /// use the application's contracts, and only with APIs of that provider.
    pub provider: String,
    pub client_id: String,
    /// `client_credentials` or `authorization_code`.
    pub grant: String,
    pub redirect_uris: Vec<String>,
    pub description: String,
    pub status: AppStatus,
    /// `created` (registered at the provider by tollgate) or `imported` (adopted as it was).
    pub origin: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Active,
    /// Its contracts admit nothing until it is enabled again.
    Disabled,
}

/// An SLA tier of one API: the limits its contracts get, and whether requests auto-approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub api: String,
    pub name: String,
    pub limits: Vec<Limit>,
    pub auto_approve: bool,
    pub status: TierStatus,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TierStatus {
    Active,
    /// Kept for the contracts that have it; new contracts cannot choose it.
    Deprecated,
}

/// So many requests per window, written `100/1s`, `10000/1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u64,
    pub per: Duration,
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl std::str::FromStr for Limit {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| {
            RegistryError::Invalid(format!(
                "limit {text:?}: {why}; write COUNT/WINDOW, e.g. 100/1s or 10000/1d"
            ))
        };
        let (count, per) = text.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let count: u64 = count.trim().parse().map_err(|_| bad("not a count"))?;
        let per = humantime::parse_duration(per.trim()).map_err(|_| bad("not a window"))?;
        if count == 0 {
            return Err(bad("a count of at least 1"));
        }
        if per < Duration::from_millis(1) || per > Duration::from_secs(366 * 86_400) {
            return Err(bad("a window between 1ms and 366 days"));
        }
        Ok(Limit { count, per })
    }
}

/// An application's contract with an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contract {
    pub app: String,
    pub api: String,
    pub tier: Option<String>,
    pub status: ContractStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractStatus {
    Pending,
    Approved,
    Rejected,
    Revoked,
}

impl ContractStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractStatus::Pending => "pending",
            ContractStatus::Approved => "approved",
            ContractStatus::Rejected => "rejected",
            ContractStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => ContractStatus::Pending,
            "approved" => ContractStatus::Approved,
            "rejected" => ContractStatus::Rejected,
            "revoked" => ContractStatus::Revoked,
            _ => return None,
        })
    }
}

/// What can be done to a contract once it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractAction {
    Approve,
    Reject,
    Revoke,
    Restore,
    Delete,
}

impl ContractAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractAction::Approve => "approve",
            ContractAction::Reject => "reject",
            ContractAction::Revoke => "revoke",
            ContractAction::Restore => "restore",
            ContractAction::Delete => "delete",
        }
    }

    /// The state after this action from `from` (`None`: the contract is gone), or why not.
    pub fn apply(self, from: ContractStatus) -> Result<Option<ContractStatus>, &'static str> {
        use ContractStatus::{Approved, Pending, Rejected, Revoked};
        match (self, from) {
            (ContractAction::Approve, Pending | Rejected) => Ok(Some(Approved)),
            (ContractAction::Reject, Pending) => Ok(Some(Rejected)),
            (ContractAction::Revoke, Approved) => Ok(Some(Revoked)),
            (ContractAction::Restore, Revoked) => Ok(Some(Approved)),
            (ContractAction::Delete, Pending | Rejected | Revoked) => Ok(None),
            (ContractAction::Delete, Approved) => Err("revoke it first"),
            (ContractAction::Approve, Approved | Revoked) => {
                Err("only a pending or rejected contract is approved (restore a revoked one)")
            }
            (ContractAction::Reject, Approved | Rejected | Revoked) => {
                Err("only a pending contract is rejected (revoke an approved one)")
            }
            (ContractAction::Revoke, Pending | Rejected | Revoked) => {
                Err("only an approved contract is revoked")
            }
            (ContractAction::Restore, Pending | Approved | Rejected) => {
                Err("only a revoked contract is restored")
            }
        }
    }
}

/// One change to the registry: who made it, and the record before and after (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub revision: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Names of applications and tiers: they end up in the provider's `client_name` and in URLs, so
/// 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(what: &str, name: &str) -> Result<(), RegistryError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{what} name {name:?}: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_state_machine_is_anypoints() {
        use ContractAction::*;
        use ContractStatus::*;
        assert_eq!(Approve.apply(Pending), Ok(Some(Approved)));
        assert_eq!(Approve.apply(Rejected), Ok(Some(Approved)));
        assert_eq!(Reject.apply(Pending), Ok(Some(Rejected)));
        assert_eq!(Revoke.apply(Approved), Ok(Some(Revoked)));
        assert_eq!(Restore.apply(Revoked), Ok(Some(Approved)));
        assert_eq!(Delete.apply(Revoked), Ok(None));
        assert_eq!(Delete.apply(Approved), Err("revoke it first"));
        for (action, from) in [(Revoke, Pending), (Restore, Approved), (Reject, Approved)] {
            assert!(action.apply(from).is_err(), "{action:?} from {from:?}");
        }
    }

    #[test]
    fn limits_and_names_are_checked() {
        let l: Limit = "100/1s".parse().unwrap();
        assert_eq!((l.count, l.per), (100, Duration::from_secs(1)));
        assert_eq!(
            "10000/1d".parse::<Limit>().unwrap().to_string(),
            "10000/1day"
        );
        for bad in ["100", "0/1s", "x/1s", "5/0s", "5/forever"] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
        assert!(check_name("app", "shop-app_1.v2").is_ok());
        for bad in ["", "-x", "a b", "é", &"x".repeat(65)] {
            assert!(check_name("app", bad).is_err(), "{bad:?}");
        }
    }
}
