//! Deleting a bucket across groups. The bucket record lives in the control group and its
//! objects and uploads in its partition, so no single state machine can check "empty" and
//! remove the record together. Instead:
//!
//! 1. read the record (its id);
//! 2. [`SealBucket`] in the partition: refused if the bucket holds an object or an upload in
//!    progress; otherwise, atomically with that check, every later request naming the id is
//!    refused (NoSuchBucket), so nothing can be written into it after the check;
//! 3. [`DeleteBucket`] in the control group, only if the record still has that id.
//!
//! Each step is idempotent, so a retry after a failure at any point finishes the deletion. A
//! failure between 2 and 3 leaves a record whose partition refuses everything: the bucket
//! answers NoSuchBucket to object requests until the delete is retried.

use super::client::MetaClient;
use super::error::MetaError;
use super::request::{DeleteBucket, GetBucket, Refused, SealBucket};
use crate::types::BucketId;

/// Deletes bucket `name` if it is empty; its id on success.
pub async fn delete_bucket(
    meta: &MetaClient,
    name: &str,
) -> Result<Result<BucketId, Refused>, MetaError> {
    let found = meta
        .ask(GetBucket {
            name: name.to_string(),
        })
        .await?;
    let bucket = match found {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Err(Refused::NoSuchBucket)),
        Err(refused) => return Ok(Err(refused)),
    };
    let id = bucket.id;
    if let Err(refused) = meta.send(SealBucket { bucket: id }).await? {
        return Ok(Err(refused));
    }
    let removed = meta
        .send(DeleteBucket {
            name: name.to_string(),
            id,
        })
        .await?;
    Ok(removed.map(|()| id))
}
