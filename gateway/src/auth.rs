//! SigV4 secrets from the replicated access-key table (cached briefly), and the access rule:
//! every request must be signed by a known key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baobab::meta::{MetaClient, Query, QueryResult};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// How long a looked-up secret is trusted before asking the metadata cluster again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// Bound on cached keys.
const KEY_CACHE_MAX: usize = 10_000;

pub struct KeyStore {
    meta: MetaClient,
    cache: Mutex<HashMap<String, (Instant, String)>>,
}

impl KeyStore {
    pub fn new(meta: MetaClient) -> Self {
        KeyStore {
            meta,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if let Some((at, secret)) = self
            .cache
            .lock()
            .expect("key cache lock poisoned")
            .get(access_key)
        {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(SecretKey::from(secret.clone()));
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
            QueryResult::AccessKey(Some(record)) => {
                let mut cache = self.cache.lock().expect("key cache lock poisoned");
                if cache.len() >= KEY_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(
                    access_key.to_string(),
                    (Instant::now(), record.secret.clone()),
                );
                Ok(SecretKey::from(record.secret))
            }
            QueryResult::AccessKey(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
            _ => Err(crate::error::unexpected("GetAccessKey")),
        }
    }
}

/// Every operation needs a valid signature; per-bucket permissions come later.
pub struct SignedOnly;

#[async_trait::async_trait]
impl S3Access for SignedOnly {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Access Denied")),
        }
    }
}
