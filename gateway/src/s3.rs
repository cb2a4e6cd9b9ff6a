//! The S3 operations s3s routes to us: one dispatch table. Each family lives in its own module
//! (`buckets`, `objects`, `multipart`, `listing`); the access rule ran before any of them
//! (`access`), and errors become S3 errors in `error`.

use std::sync::Arc;

use baobab::object::ObjectService;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

use crate::access::Access;
use crate::error::access_denied;

pub struct Gateway {
    pub objects: ObjectService,
    pub access: Arc<Access>,
    pub region: String,
}

impl Gateway {
    /// The id of bucket `name` (from the access rule's cache: the record it just checked).
    pub(crate) async fn bucket_id(&self, name: &str) -> S3Result<baobab::types::BucketId> {
        Ok(self.access.bucket(name).await?.id)
    }
}

/// The access key that signed the request (the access rule refused anonymous ones).
pub fn caller<T>(req: &S3Request<T>) -> S3Result<String> {
    req.credentials
        .as_ref()
        .map(|c| c.access_key.clone())
        .ok_or_else(access_denied)
}

/// One line per operation: `op(InputType, OutputType) => handler`. Each answer is counted and
/// timed by operation (`baobab::metrics`).
macro_rules! dispatch {
    ($($op:ident($input:ident, $output:ident);)*) => {
        #[async_trait::async_trait]
        impl S3 for Gateway {
            $(
                #[tracing::instrument(level = "debug", skip_all, fields(op = stringify!($op)))]
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    let started = std::time::Instant::now();
                    let answer = Gateway::$op(self, req).await;
                    let status = match &answer {
                        Ok(r) => r.status.map_or(200, |s| s.as_u16()),
                        Err(e) => e.status_code().map_or(500, |s| s.as_u16()),
                    };
                    baobab::metrics::global().s3_request(stringify!($op), status, started.elapsed());
                    answer
                }
            )*
        }
    };
}

dispatch! {
    list_buckets(ListBucketsInput, ListBucketsOutput);
    create_bucket(CreateBucketInput, CreateBucketOutput);
    head_bucket(HeadBucketInput, HeadBucketOutput);
    get_bucket_location(GetBucketLocationInput, GetBucketLocationOutput);
    delete_bucket(DeleteBucketInput, DeleteBucketOutput);
    get_bucket_versioning(GetBucketVersioningInput, GetBucketVersioningOutput);
    get_bucket_acl(GetBucketAclInput, GetBucketAclOutput);
    put_bucket_acl(PutBucketAclInput, PutBucketAclOutput);
    get_object_acl(GetObjectAclInput, GetObjectAclOutput);
    put_object_acl(PutObjectAclInput, PutObjectAclOutput);
    put_bucket_cors(PutBucketCorsInput, PutBucketCorsOutput);
    get_bucket_cors(GetBucketCorsInput, GetBucketCorsOutput);
    delete_bucket_cors(DeleteBucketCorsInput, DeleteBucketCorsOutput);
    put_bucket_tagging(PutBucketTaggingInput, PutBucketTaggingOutput);
    get_bucket_tagging(GetBucketTaggingInput, GetBucketTaggingOutput);
    delete_bucket_tagging(DeleteBucketTaggingInput, DeleteBucketTaggingOutput);
    get_bucket_ownership_controls(GetBucketOwnershipControlsInput, GetBucketOwnershipControlsOutput);
    put_object(PutObjectInput, PutObjectOutput);
    get_object(GetObjectInput, GetObjectOutput);
    head_object(HeadObjectInput, HeadObjectOutput);
    delete_object(DeleteObjectInput, DeleteObjectOutput);
    delete_objects(DeleteObjectsInput, DeleteObjectsOutput);
    copy_object(CopyObjectInput, CopyObjectOutput);
    get_object_tagging(GetObjectTaggingInput, GetObjectTaggingOutput);
    put_object_tagging(PutObjectTaggingInput, PutObjectTaggingOutput);
    delete_object_tagging(DeleteObjectTaggingInput, DeleteObjectTaggingOutput);
    get_object_attributes(GetObjectAttributesInput, GetObjectAttributesOutput);
    create_multipart_upload(CreateMultipartUploadInput, CreateMultipartUploadOutput);
    upload_part(UploadPartInput, UploadPartOutput);
    upload_part_copy(UploadPartCopyInput, UploadPartCopyOutput);
    complete_multipart_upload(CompleteMultipartUploadInput, CompleteMultipartUploadOutput);
    abort_multipart_upload(AbortMultipartUploadInput, AbortMultipartUploadOutput);
    list_parts(ListPartsInput, ListPartsOutput);
    list_multipart_uploads(ListMultipartUploadsInput, ListMultipartUploadsOutput);
    list_objects(ListObjectsInput, ListObjectsOutput);
    list_objects_v2(ListObjectsV2Input, ListObjectsV2Output);
}
