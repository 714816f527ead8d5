//! A contract's tier limits, enforced per request: GCRA (the generic cell rate algorithm), one
//! theoretical arrival time per window, so there is no boundary burst as with fixed windows. A
//! request passes only if every window has room, and only a request that passes is counted, so a
//! client hammering past its limit does not push its own reset further away.
//!
//! Written here rather than taken from `governor` (which the provider budget uses): a tier has
//! several windows (`100/1s` and `10000/1d`) that must admit or refuse a request together, and
//! governor's limiters each count on their own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::model::Limit;

/// The limits of one contract and how much of them is spent.
#[derive(Debug)]
pub struct Limiter {
    /// The tier's name (the `RateLimit` policy name) and its limits.
    pub tier: String,
    limits: Vec<Window>,
    /// Per window, the theoretical arrival time, in nanoseconds since `epoch`.
    tats: Mutex<Vec<u64>>,
    epoch: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    limit: Limit,
    /// The emission interval: the window over the count.
    interval: u64,
    /// How far ahead of now the arrival time may run: a whole window's count at once.
    tolerance: u64,
}

/// A refusal: which limit, and when the next request may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub tier: String,
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Limiter {
    pub fn new(tier: &str, limits: &[Limit]) -> Self {
        let windows = limits
            .iter()
            .map(|l| {
                let per = u64::try_from(l.per.as_nanos()).unwrap_or(u64::MAX);
                let interval = (per / l.count.max(1)).max(1);
                Window {
                    limit: *l,
                    interval,
                    tolerance: per.saturating_sub(interval),
                }
            })
            .collect::<Vec<_>>();
        Limiter {
            tier: tier.to_owned(),
            tats: Mutex::new(vec![0; windows.len()]),
            limits: windows,
            epoch: Instant::now(),
        }
    }

    /// Whether these limits are `limits` (a refresh keeps the state of unchanged contracts).
    pub fn same(&self, tier: &str, limits: &[Limit]) -> bool {
        self.tier == tier
            && self.limits.len() == limits.len()
            && self.limits.iter().zip(limits).all(|(w, l)| w.limit == *l)
    }

    /// Counts one request now, or refuses it without counting it.
    pub fn check(&self) -> Result<(), Exceeded> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), Exceeded> {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut tats = self
            .tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut refusal: Option<(u64, &Window)> = None;
        for (w, tat) in self.limits.iter().zip(tats.iter()) {
            let tat = (*tat).max(now);
            // GCRA: the request conforms if its arrival time is within the tolerance of now.
            let ahead = tat - now;
            if ahead > w.tolerance {
                let wait = ahead - w.tolerance;
                if refusal.is_none_or(|(longest, _)| wait > longest) {
                    refusal = Some((wait, w));
                }
            }
        }
        if let Some((wait, w)) = refusal {
            return Err(Exceeded {
                tier: self.tier.clone(),
                limit: w.limit,
                retry_after: Duration::from_nanos(wait),
            });
        }
        for (w, tat) in self.limits.iter().zip(tats.iter_mut()) {
            *tat = (*tat).max(now).saturating_add(w.interval);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text: &[&str]) -> Vec<Limit> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_window_admits_its_count_then_one_per_interval() {
        let l = Limiter::new("gold", &limits(&["10/1s"]));
        let t0 = l.epoch + Duration::from_secs(5);
        for _ in 0..10 {
            assert!(l.check_at(t0).is_ok());
        }
        let refused = l.check_at(t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert!(l.check_at(t0 + Duration::from_millis(99)).is_err());
        assert!(l.check_at(t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn refused_requests_are_not_counted_and_every_window_must_agree() {
        let l = Limiter::new("silver", &limits(&["5/1s", "6/1h"]));
        let t0 = l.epoch + Duration::from_secs(1);
        for _ in 0..5 {
            assert!(l.check_at(t0).is_ok());
        }
        // Hammering while refused does not push the next turn further away.
        for _ in 0..100 {
            assert!(l.check_at(t0).is_err());
        }
        let t1 = t0 + Duration::from_millis(200);
        assert!(l.check_at(t1).is_ok(), "the second's window has room again");
        // The hour's window has 6: the next is refused by it, with its own wait.
        let refused = l.check_at(t1 + Duration::from_millis(200)).unwrap_err();
        assert_eq!(refused.limit, "6/1h".parse().unwrap());
        assert!(
            refused.retry_after > Duration::from_secs(500),
            "{refused:?}"
        );
        assert!(l.same("silver", &limits(&["5/1s", "6/1h"])));
        assert!(!l.same("silver", &limits(&["5/1s"])));
    }
}
