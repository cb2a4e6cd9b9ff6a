//! SigV4 secrets from the replicated access-key table, cached briefly. The cached record also
//! answers the access layer's "may this key create buckets".
//!
//! Unknown keys cost no metadata read each: a key the leader said does not exist is remembered
//! for [`MISSING_KEY_TTL`] (so a key created afterwards works within that time), and lookups of
//! keys the gateway holds no record of are paced by a token bucket
//! ([`UNKNOWN_KEY_LOOKUPS_PER_SEC`]); past it a request gets `503 SlowDown`, which SDKs retry,
//! rather than an answer about a key nobody checked. A flood of random key ids therefore costs
//! the Raft leader at most that many reads a second per gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baobab::codec::seal::SealKey;
use baobab::meta::request::GetAccessKey;
use baobab::meta::{AccessKeyRecord, MetaClient};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::limits::TokenBucket;

/// How long a looked-up key is trusted before asking the metadata cluster again: a deleted
/// key or a changed right takes effect within this time on every gateway.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Bound on cached keys.
const KEY_CACHE_MAX: usize = 10_000;
/// How long a key the metadata said does not exist is answered `InvalidAccessKeyId` without
/// asking again.
pub const MISSING_KEY_TTL: Duration = Duration::from_secs(2);
/// Bound on remembered missing keys.
const MISSING_KEY_CACHE_MAX: usize = 10_000;
/// Metadata reads a second for keys the gateway holds no record of (new, unknown or forged
/// ids); keys it has a record of, even an expired one, are not paced.
pub const UNKNOWN_KEY_LOOKUPS_PER_SEC: f64 = 50.0;
/// Burst of such reads (a gateway starting under load looks up its clients' keys at once).
const UNKNOWN_KEY_LOOKUPS_BURST: f64 = 200.0;

/// Keys the metadata said do not exist, each for [`MISSING_KEY_TTL`]; bounded.
struct MissingKeys {
    at: HashMap<String, Instant>,
    ttl: Duration,
    max: usize,
}

impl MissingKeys {
    fn new(ttl: Duration, max: usize) -> Self {
        MissingKeys {
            at: HashMap::new(),
            ttl,
            max,
        }
    }

    fn contains(&mut self, key: &str, now: Instant) -> bool {
        match self.at.get(key) {
            Some(t) if now.saturating_duration_since(*t) < self.ttl => true,
            Some(_) => {
                self.at.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: &str, now: Instant) {
        if self.at.len() >= self.max {
            let ttl = self.ttl;
            self.at
                .retain(|_, t| now.saturating_duration_since(*t) < ttl);
            if self.at.len() >= self.max {
                self.at.clear();
            }
        }
        self.at.insert(key.to_string(), now);
    }
}

pub struct KeyStore {
    meta: MetaClient,
    /// Opens the sealed secrets of key records.
    seal: SealKey,
    /// Records with their secrets opened.
    cache: Mutex<HashMap<String, (Instant, Arc<AccessKeyRecord>)>>,
    missing: Mutex<MissingKeys>,
    /// Paces lookups of keys with no record in `cache`.
    unknown_lookups: Mutex<TokenBucket>,
}

impl KeyStore {
    pub fn new(meta: MetaClient, seal: SealKey) -> Arc<Self> {
        Arc::new(KeyStore {
            meta,
            seal,
            cache: Mutex::new(HashMap::new()),
            missing: Mutex::new(MissingKeys::new(MISSING_KEY_TTL, MISSING_KEY_CACHE_MAX)),
            unknown_lookups: Mutex::new(TokenBucket::new(
                UNKNOWN_KEY_LOOKUPS_BURST,
                Instant::now(),
            )),
        })
    }

    /// The key's record, secret opened; `InvalidAccessKeyId` if there is none.
    pub async fn record(&self, access_key: &str) -> S3Result<Arc<AccessKeyRecord>> {
        let known = match self
            .cache
            .lock()
            .expect("key cache lock poisoned")
            .get(access_key)
        {
            Some((at, record)) if at.elapsed() < KEY_CACHE_TTL => return Ok(Arc::clone(record)),
            Some(_) => true,
            None => false,
        };
        if !known {
            let now = Instant::now();
            if self
                .missing
                .lock()
                .expect("missing key cache lock poisoned")
                .contains(access_key, now)
            {
                return Err(invalid_access_key());
            }
            let allowed = self
                .unknown_lookups
                .lock()
                .expect("key lookup budget lock poisoned")
                .try_take(now, UNKNOWN_KEY_LOOKUPS_PER_SEC, UNKNOWN_KEY_LOOKUPS_BURST);
            if !allowed {
                tracing::debug!("unknown access key lookups over budget");
                return Err(crate::error::slow_down());
            }
        }
        let answer = self
            .meta
            .ask(GetAccessKey {
                key_id: access_key.to_string(),
            })
            .await
            .map_err(crate::error::from_meta)?
            .map_err(|_| crate::error::unexpected("GetAccessKey"))?;
        match answer {
            Some(mut record) => {
                record.secret = match record.open_secret(&self.seal) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(key = access_key, error = %e, "an access key's secret does not open");
                        return Err(s3_error!(InternalError, "the access key cannot be used"));
                    }
                };
                let mut cache = self.cache.lock().expect("key cache lock poisoned");
                if cache.len() >= KEY_CACHE_MAX {
                    cache.clear();
                }
                let record = Arc::new(record);
                cache.insert(
                    access_key.to_string(),
                    (Instant::now(), Arc::clone(&record)),
                );
                Ok(record)
            }
            None => {
                self.cache
                    .lock()
                    .expect("key cache lock poisoned")
                    .remove(access_key);
                self.missing
                    .lock()
                    .expect("missing key cache lock poisoned")
                    .insert(access_key, Instant::now());
                Err(invalid_access_key())
            }
        }
    }
}

fn invalid_access_key() -> s3s::S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS access key Id you provided does not exist in our records."
    )
}

/// s3s asks for secrets through this; an `Arc` so the access layer shares the cache.
pub struct SharedKeyStore(pub Arc<KeyStore>);

#[async_trait::async_trait]
impl S3Auth for SharedKeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        Ok(SecretKey::from(
            self.0.record(access_key).await?.secret.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_expire() {
        let t0 = Instant::now();
        let mut m = MissingKeys::new(Duration::from_secs(2), 100);
        assert!(!m.contains("a", t0));
        m.insert("a", t0);
        assert!(m.contains("a", t0 + Duration::from_millis(1900)));
        // A key created meanwhile is looked up again after the TTL.
        assert!(!m.contains("a", t0 + Duration::from_secs(2)));
        assert!(!m.contains("a", t0));
    }

    #[test]
    fn missing_keys_stay_bounded() {
        let t0 = Instant::now();
        let mut m = MissingKeys::new(Duration::from_secs(2), 100);
        for i in 0..1000 {
            m.insert(&format!("k{i}"), t0);
            assert!(m.at.len() <= 100);
        }
        assert!(m.contains("k999", t0));
        // Expired entries go first when full.
        let mut m = MissingKeys::new(Duration::from_secs(2), 3);
        m.insert("old", t0);
        m.insert("b", t0 + Duration::from_secs(3));
        m.insert("c", t0 + Duration::from_secs(3));
        m.insert("d", t0 + Duration::from_secs(3));
        assert!(m.contains("b", t0 + Duration::from_secs(3)));
        assert!(!m.contains("old", t0 + Duration::from_secs(3)));
    }

    #[test]
    fn unknown_key_budget_paces_a_flood() {
        // What a flood of random key ids gets through to the metadata in 10 s: the burst and
        // then the rate.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(UNKNOWN_KEY_LOOKUPS_BURST, t0);
        let mut reads = 0;
        for ms in 0..10_000u64 {
            for _ in 0..10 {
                if b.try_take(
                    t0 + Duration::from_millis(ms),
                    UNKNOWN_KEY_LOOKUPS_PER_SEC,
                    UNKNOWN_KEY_LOOKUPS_BURST,
                ) {
                    reads += 1;
                }
            }
        }
        let bound = UNKNOWN_KEY_LOOKUPS_BURST + 10.0 * UNKNOWN_KEY_LOOKUPS_PER_SEC;
        assert!(f64::from(reads) <= bound + 1.0, "{reads} reads > {bound}");
        assert!(f64::from(reads) >= bound - 2.0, "{reads} reads");
    }
}
