//! One definition of "expired" and "not yet valid", with the clock skew `[provider] leeway`
//! allows. The JWT checks, the introspection judge and the verdict cache all ask this, so a token
//! within the leeway passes all three or none (RFC 7519 §4.1.4 and §4.1.5 allow "some small
//! leeway, usually no more than a few minutes, to account for clock skew").

use std::time::Duration;

/// The allowed clock skew, in whole seconds (NumericDates are seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leeway(u64);

// === impl Leeway ===

impl Leeway {
    pub fn new(skew: Duration) -> Self {
        Leeway(skew.as_secs())
    }

    /// RFC 7519 §4.1.4: a token must not be accepted on or after `exp`; the leeway moves that
    /// instant later.
    pub fn expired(self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.0) <= now
    }

    /// RFC 7519 §4.1.5 (`nbf`), and an `iat` in the future: later than now plus the leeway.
    pub fn not_yet_valid(self, time: u64, now: u64) -> bool {
        time > now.saturating_add(self.0)
    }

    /// How long until `expired(exp, ..)` holds: the longest a verdict of active may be kept.
    pub fn remaining(self, exp: u64, now: u64) -> Duration {
        Duration::from_secs(exp.saturating_add(self.0).saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_questions_agree_at_the_edges() {
        let none = Leeway::default();
        let thirty = Leeway::new(Duration::from_secs(30));
        assert!(
            none.expired(1000, 1000),
            "on exp is expired (RFC 7519 §4.1.4)"
        );
        assert!(!none.expired(1001, 1000));
        assert!(!thirty.expired(980, 1000), "20 s past exp, within 30 s");
        assert!(thirty.expired(970, 1000), "30 s past exp is the edge");
        assert_eq!(thirty.remaining(980, 1000), Duration::from_secs(10));
        assert_eq!(thirty.remaining(900, 1000), Duration::ZERO);
        assert!(!thirty.not_yet_valid(1030, 1000));
        assert!(thirty.not_yet_valid(1031, 1000));
        assert!(!Leeway::new(Duration::from_secs(u64::MAX)).expired(u64::MAX, 0));
    }
}
