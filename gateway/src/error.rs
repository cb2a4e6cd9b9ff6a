//! The one place where internal errors and metadata outcomes become S3 errors (code, status,
//! message; s3s renders the XML body, `server.rs` adds the request id to it).

use baobab::coord::CoordError;
use baobab::meta::MetaError;
use baobab::object::ObjectError;
use s3s::{s3_error, S3Error, S3ErrorCode};

pub fn from_meta(e: MetaError) -> S3Error {
    tracing::warn!(error = %e, "metadata unavailable");
    s3_error!(ServiceUnavailable, "metadata cluster unavailable, retry")
}

pub fn from_coord(e: CoordError) -> S3Error {
    match e {
        CoordError::Body(msg) => {
            // The body stream failed: a bad chunk signature, a malformed aws-chunked frame, a
            // client that went away. s3s reports signature problems through the stream.
            if msg.contains("Signature") || msg.contains("signature") {
                S3Error::with_message(S3ErrorCode::SignatureDoesNotMatch, msg)
            } else {
                S3Error::with_message(S3ErrorCode::IncompleteBody, msg)
            }
        }
        CoordError::TooLarge { .. } => s3_error!(EntityTooLarge),
        CoordError::StorageFull { .. } => storage_full(e),
        CoordError::ClusterTooSmall { .. }
        | CoordError::WriteQuorum { .. }
        | CoordError::ReadUnavailable { .. } => {
            tracing::error!(error = %e, "data path unavailable");
            S3Error::with_message(S3ErrorCode::SlowDown, e.to_string())
        }
        CoordError::Erasure(_)
        | CoordError::Rpc(_)
        | CoordError::Heal(_)
        | CoordError::HealBlocked(_) => {
            tracing::error!(error = %e, "data path failed");
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

/// What MinIO answers for a full disk: 507 Insufficient Storage with `XMinioStorageFull`. AWS
/// has no such error; 507 says what happened, and SDKs do not retry it (they retry 503), so the
/// client learns at once that it has to free space rather than wait.
fn storage_full(e: CoordError) -> S3Error {
    tracing::warn!(error = %e, "write refused: storage nodes are out of space");
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("XMinioStorageFull".into()),
        format!("{e}. Delete objects or add storage nodes to proceed."),
    );
    err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
    err
}

/// An object-service error as S3 states it. `bucket` names the bucket in NoSuchBucket.
pub fn from_object(e: ObjectError, bucket: &str) -> S3Error {
    match e {
        ObjectError::NoSuchBucket => no_such_bucket(bucket),
        ObjectError::NoSuchKey => no_such_key(),
        ObjectError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        ObjectError::PreconditionFailed => precondition_failed(),
        ObjectError::Conflict => s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        ),
        ObjectError::InvalidDigest => s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified was invalid."
        ),
        ObjectError::BadDigest => s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ),
        ObjectError::BadChecksum(a) => S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                a.name().to_uppercase()
            ),
        ),
        ObjectError::InvalidChecksum(a) => S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!(
                "Value for x-amz-checksum-{} header is invalid.",
                a.name()
            ),
        ),
        ObjectError::IncompleteBody => s3_error!(
            IncompleteBody,
            "The request body is shorter or longer than Content-Length"
        ),
        ObjectError::EntityTooLarge { .. } => s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ),
        ObjectError::InvalidPart { .. } => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        ),
        ObjectError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        ),
        ObjectError::EntityTooSmall { .. } => s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ),
        ObjectError::InvalidArgument(msg) => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
        }
        ObjectError::Coord(e) => from_coord(e),
        ObjectError::Meta(e) => from_meta(e),
        ObjectError::Unexpected(what) => unexpected(what),
    }
}

pub fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucket,
        format!("The specified bucket does not exist: {bucket}"),
    )
}

pub fn no_such_key() -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

pub fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

pub fn access_denied() -> S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// 304 with the object's ETag and Last-Modified (no body: hyper sends none for 304).
pub fn not_modified(headers: http::HeaderMap) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_status_code(http::StatusCode::NOT_MODIFIED);
    e.set_headers(headers);
    e
}

pub fn invalid_argument(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg.into())
}

pub fn unexpected(what: &str) -> S3Error {
    tracing::error!(what, "unexpected metadata answer");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        format!("unexpected metadata answer: {what}"),
    )
}

/// `503 SlowDown`: the access key is past its request rate (`[s3] requests_per_sec_per_key`),
/// or the gateway is past its budget of lookups of access keys it does not know. SDKs retry it
/// with backoff.
pub fn slow_down() -> S3Error {
    s3_error!(SlowDown, "Please reduce your request rate.")
}

/// `400 RequestTimeout`, AWS's answer to a request body that stopped coming.
pub fn request_timeout() -> S3Error {
    s3_error!(
        RequestTimeout,
        "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed."
    )
}

/// An aws-chunked chunk larger than the gateway holds (`limits::MAX_AWS_CHUNK_BYTES`).
pub fn chunk_too_large(limit: u64) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        format!("An aws-chunked chunk may be at most {limit} bytes."),
    )
}
