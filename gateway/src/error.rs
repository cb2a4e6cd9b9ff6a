//! The one place where internal errors and metadata outcomes become S3 errors (code, status,
//! message; s3s renders the XML body).

use baobab::coord::CoordError;
use baobab::meta::MetaError;
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
        CoordError::ClusterTooSmall { .. }
        | CoordError::WriteQuorum { .. }
        | CoordError::ReadUnavailable { .. } => {
            tracing::error!(error = %e, "data path unavailable");
            S3Error::with_message(S3ErrorCode::SlowDown, e.to_string())
        }
        CoordError::Erasure(_) | CoordError::Rpc(_) => {
            tracing::error!(error = %e, "data path failed");
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
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

pub fn unexpected(what: &str) -> S3Error {
    tracing::error!(what, "unexpected metadata answer");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        format!("unexpected metadata answer: {what}"),
    )
}
