//! The access rule, checked by s3s after the signature and before the operation runs (so
//! before any request body is read): every request is signed by a known key, and the key holds
//! the right the operation needs on its bucket — read, write or owner — or, for CreateBucket,
//! the create-bucket right. CopyObject and UploadPartCopy also need read on the source bucket,
//! checked by the operation with [`Access::require`]. POST object, served before s3s
//! (`post.rs`), needs write, checked there with [`Access::require`] once the form's signature
//! holds and before its file is read.
//!
//! Bucket records are cached for [`BUCKET_CACHE_TTL`]; a missing bucket is never cached, so a
//! bucket created on another gateway is usable at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baobab::meta::request::GetBucket;
use baobab::meta::{BucketRecord, BucketRights, MetaClient};
use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::S3Result;

use crate::auth::KeyStore;
use crate::error::{access_denied, from_meta, no_such_bucket, unexpected};

/// How long a bucket record (owner, grants) is reused: a changed grant takes effect on every
/// gateway within this time.
pub const BUCKET_CACHE_TTL: Duration = Duration::from_secs(2);
const BUCKET_CACHE_MAX: usize = 10_000;

/// The right an operation needs on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Owner,
}

impl Need {
    fn granted_by(self, r: BucketRights) -> bool {
        match self {
            Need::Read => r.read || r.owner,
            Need::Write => r.write || r.owner,
            Need::Owner => r.owner,
        }
    }
}

/// The right each bucket-level operation needs (s3s operation names).
pub fn need_of(op: &str) -> Need {
    match op {
        "GetObject"
        | "HeadObject"
        | "ListObjects"
        | "ListObjectsV2"
        | "HeadBucket"
        | "GetBucketLocation"
        | "ListParts"
        | "ListMultipartUploads"
        | "GetObjectTagging"
        | "GetObjectAttributes"
        | "GetObjectAcl"
        | "GetBucketAcl"
        | "GetBucketVersioning"
        | "GetBucketTagging"
        | "GetBucketCors"
        | "GetBucketOwnershipControls"
        | "ListObjectVersions"
        | "GetBucketPolicyStatus"
        | "GetBucketEncryption"
        | "GetBucketLifecycleConfiguration"
        | "GetObjectLockConfiguration" => Need::Read,
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "CopyObject"
        | "PutObjectTagging"
        | "DeleteObjectTagging"
        | "PutObjectAcl" => Need::Write,
        _ => Need::Owner,
    }
}

pub struct Access {
    meta: MetaClient,
    keys: Arc<KeyStore>,
    /// Shared records: a request takes a reference, not a copy of grants and CORS rules.
    buckets: Mutex<HashMap<String, (Instant, Arc<BucketRecord>)>>,
}

impl Access {
    pub fn new(meta: MetaClient, keys: Arc<KeyStore>) -> Arc<Self> {
        Arc::new(Access {
            meta,
            keys,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The bucket's record, from the cache when fresh; NoSuchBucket if it does not exist.
    pub async fn bucket(&self, name: &str) -> S3Result<Arc<BucketRecord>> {
        if let Some((at, b)) = self.buckets.lock().expect("bucket cache").get(name) {
            if at.elapsed() < BUCKET_CACHE_TTL {
                return Ok(Arc::clone(b));
            }
        }
        let found = self
            .meta
            .ask(GetBucket {
                name: name.to_string(),
            })
            .await
            .map_err(from_meta)?
            .map_err(|_| unexpected("GetBucket"))?;
        match found {
            Some(b) => {
                let b = Arc::new(b);
                let mut cache = self.buckets.lock().expect("bucket cache");
                if cache.len() >= BUCKET_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(name.to_string(), (Instant::now(), Arc::clone(&b)));
                Ok(b)
            }
            None => {
                self.forget(name);
                Err(no_such_bucket(name))
            }
        }
    }

    /// Drops a cached bucket (after this gateway created or deleted it).
    pub fn forget(&self, name: &str) {
        self.buckets.lock().expect("bucket cache").remove(name);
    }

    /// AccessDenied unless `key_id` holds `need` on `bucket`; NoSuchBucket if it is missing.
    pub async fn require(
        &self,
        key_id: &str,
        bucket: &str,
        need: Need,
    ) -> S3Result<Arc<BucketRecord>> {
        let b = self.bucket(bucket).await?;
        if need.granted_by(b.rights_of(key_id)) {
            Ok(b)
        } else {
            tracing::debug!(key = key_id, bucket, ?need, "access denied");
            Err(access_denied())
        }
    }
}

/// s3s's access hook over a shared [`Access`].
pub struct AccessRule(pub Arc<Access>);

#[async_trait::async_trait]
impl S3Access for AccessRule {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(access_denied());
        };
        let key_id = creds.access_key.clone();
        let op = cx.s3_op().name();
        match cx.s3_path() {
            S3Path::Root => Ok(()),
            S3Path::Bucket { bucket } if op == "CreateBucket" => {
                let _ = bucket;
                if self.0.keys.record(&key_id).await?.allow_create_bucket {
                    Ok(())
                } else {
                    Err(access_denied())
                }
            }
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => {
                let bucket = bucket.to_string();
                self.0
                    .require(&key_id, &bucket, need_of(op))
                    .await
                    .map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_cover_operations() {
        let read = BucketRights {
            read: true,
            ..Default::default()
        };
        let write = BucketRights {
            write: true,
            ..Default::default()
        };
        assert!(need_of("GetObject").granted_by(read));
        assert!(!need_of("PutObject").granted_by(read));
        assert!(need_of("PutObject").granted_by(write));
        assert!(!need_of("ListObjectsV2").granted_by(write));
        assert!(!need_of("DeleteBucket").granted_by(BucketRights {
            read: true,
            write: true,
            owner: false
        }));
        assert!(need_of("DeleteBucket").granted_by(BucketRights::ALL));
        assert!(need_of("UploadPart").granted_by(write));
    }
}
