use std::sync::atomic::AtomicUsize;

use serde_json::json;

use super::*;
use crate::clock::SystemClock;
use crate::validate::Attributes;

/// Active for an hour, except `bad` (inactive); counts its calls.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
}

impl Validator for Counting {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        _: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = if token.expose() == "bad" {
            Err(ValidateError::Invalid(InvalidReason::Inactive))
        } else {
            let exp = SystemClock.now_unix() + 3600;
            let claims = json!({"sub": token.expose(), "exp": exp});
            let principal = Principal::from_claims(claims.as_object().unwrap(), Attributes::Keep);
            Ok(Arc::new(principal.unwrap()))
        };
        Box::pin(async move { answer })
    }
}

fn cached(max_entries: u64, negative_ttl: Duration) -> CachedValidator<Counting> {
    let settings = CacheSettings {
        max_entries,
        max_ttl: Duration::from_secs(3600),
        negative_ttl,
        stale_if_error: Duration::ZERO,
    };
    let leeway = Leeway::new(Duration::ZERO);
    CachedValidator::new(
        "test",
        Counting::default(),
        settings,
        leeway,
        Arc::new(SystemClock),
    )
}

fn calls(cache: &CachedValidator<Counting>) -> usize {
    cache.inner.calls.load(Ordering::SeqCst)
}

async fn subject(cache: &CachedValidator<Counting>, token: &str) -> Option<String> {
    let token = BearerToken::new(token);
    let principal = cache.validate(&token, Caller::LOCAL).await.ok()?;
    principal.subject().map(str::to_owned)
}

#[tokio::test]
async fn a_thread_copy_ends_with_the_verdict() {
    let cache = cached(100, Duration::from_millis(300));
    assert_eq!(subject(&cache, "bad").await, None);
    // The refusal is kept in moka and in this thread's copy, which answers these two.
    assert_eq!(subject(&cache, "bad").await, None);
    assert_eq!(subject(&cache, "bad").await, None);
    assert_eq!(calls(&cache), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(subject(&cache, "bad").await, None);
    assert_eq!(calls(&cache), 2, "the refusal outlived negative_ttl");
}

#[tokio::test]
async fn more_tokens_than_a_thread_keeps_are_still_moka_hits() {
    let cache = cached(10_000, Duration::from_secs(60));
    let count = RECENT_PER_THREAD as usize + 500;
    for round in 0..2 {
        for i in 0..count {
            let token = format!("token-{i}");
            assert_eq!(
                subject(&cache, &token).await.as_deref(),
                Some(token.as_str())
            );
        }
        assert_eq!(calls(&cache), count, "round {round}");
    }
    let kept = cache.recent.get().unwrap().borrow().kept.len();
    assert!(kept <= RECENT_PER_THREAD as usize, "{kept} entries kept");
}

#[tokio::test]
async fn a_thread_keeps_no_more_than_max_entries() {
    let cache = cached(2, Duration::from_secs(60));
    for i in 0..5 {
        let token = format!("token-{i}");
        assert_eq!(
            subject(&cache, &token).await.as_deref(),
            Some(token.as_str())
        );
    }
    assert!(cache.recent.get().unwrap().borrow().kept.len() <= 2);
}

#[tokio::test]
async fn a_thread_copy_has_a_principal_of_its_own() {
    let cache = cached(100, Duration::from_secs(60));
    let token = BearerToken::new("shared");
    let first = cache.validate(&token, Caller::LOCAL).await.unwrap();
    let again = cache.validate(&token, Caller::LOCAL).await.unwrap();
    assert_eq!(first, again);
    // Its reference count is this thread's alone, not the one moka's entry shares.
    assert!(!Arc::ptr_eq(&first, &again));
    assert_eq!(calls(&cache), 1);
}

#[test]
fn digests_that_share_a_prefix_are_still_told_apart() {
    // Two keys whose hashed prefix is equal: the table compares the whole digest.
    let one = BearerToken::new("abc").digest();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&one.prefix().to_le_bytes());
    let mut recent = Recent::default();
    let verdict = |r| Kept::new(Verdict::Invalid(r), Duration::from_secs(60));
    recent
        .kept
        .insert(RecentKey(one), verdict(InvalidReason::Inactive));
    let other = TokenDigest::from_bytes(bytes);
    assert_eq!(other.prefix(), one.prefix());
    assert!(!recent.kept.contains_key(&RecentKey(other)));
    assert!(recent.kept.contains_key(&RecentKey(one)));
}
