//! SigV4 secrets from the replicated access-key table, cached briefly. The cached record also
//! answers the access layer's "may this key create buckets".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baobab::codec::seal::SealKey;
use baobab::meta::{AccessKeyRecord, MetaClient, Query, QueryResult};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// How long a looked-up key is trusted before asking the metadata cluster again: a deleted
/// key or a changed right takes effect within this time on every gateway.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Bound on cached keys.
const KEY_CACHE_MAX: usize = 10_000;

pub struct KeyStore {
    meta: MetaClient,
    /// Opens the sealed secrets of key records.
    seal: SealKey,
    /// Records with their secrets opened.
    cache: Mutex<HashMap<String, (Instant, Arc<AccessKeyRecord>)>>,
}

impl KeyStore {
    pub fn new(meta: MetaClient, seal: SealKey) -> Arc<Self> {
        Arc::new(KeyStore {
            meta,
            seal,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The key's record, secret opened; `InvalidAccessKeyId` if there is none.
    pub async fn record(&self, access_key: &str) -> S3Result<Arc<AccessKeyRecord>> {
        if let Some((at, record)) = self
            .cache
            .lock()
            .expect("key cache lock poisoned")
            .get(access_key)
        {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(Arc::clone(record));
            }
        }
        let answer = self
            .meta
            .read(Query::GetAccessKey {
                key_id: access_key.to_string(),
            })
            .await
            .map_err(crate::error::from_meta)?;
        match answer {
            QueryResult::AccessKey(Some(mut record)) => {
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
            QueryResult::AccessKey(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
            _ => Err(crate::error::unexpected("GetAccessKey")),
        }
    }
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
