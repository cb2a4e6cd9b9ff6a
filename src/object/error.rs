//! What an object operation can fail with, by meaning. The gateway maps each to its S3 error
//! in one place (`gateway/src/error.rs`).

use crate::codec::checksum::ChecksumAlgorithm;
use crate::coord::CoordError;
use crate::meta::{MetaError, Refused};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("a write condition did not hold")]
    PreconditionFailed,
    #[error("the object changed during the operation")]
    Conflict,
    #[error("Content-MD5 is not valid base64 of 16 bytes")]
    InvalidDigest,
    #[error("Content-MD5 did not match the body")]
    BadDigest,
    #[error("the {0:?} checksum did not match the body")]
    BadChecksum(ChecksumAlgorithm),
    #[error("the {0:?} checksum is malformed")]
    InvalidChecksum(ChecksumAlgorithm),
    #[error("the body is shorter or longer than Content-Length")]
    IncompleteBody,
    #[error("the body is larger than {limit} bytes")]
    EntityTooLarge { limit: u64 },
    #[error("part {number} was not uploaded or its ETag or checksum differs")]
    InvalidPart { number: u32 },
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    #[error("part {number} is smaller than the minimum part size")]
    EntityTooSmall { number: u32 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("data path: {0}")]
    Coord(#[from] CoordError),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("unexpected metadata answer to {0}")]
    Unexpected(&'static str),
}

impl From<Refused> for ObjectError {
    /// A metadata refusal of an object request (the caller adds context where it has some,
    /// e.g. which part changed).
    fn from(r: Refused) -> Self {
        match r {
            Refused::NoSuchBucket => ObjectError::NoSuchBucket,
            Refused::NoSuchKey => ObjectError::NoSuchKey,
            Refused::NoSuchUpload => ObjectError::NoSuchUpload,
            Refused::PreconditionFailed => ObjectError::PreconditionFailed,
            Refused::PartsChanged => ObjectError::InvalidPart { number: 0 },
            Refused::BucketAlreadyOwnedByYou
            | Refused::BucketAlreadyExists
            | Refused::BucketNotEmpty
            | Refused::NoSuchAccessKey
            | Refused::AccessKeyExists => ObjectError::Unexpected("a bucket or key refusal"),
        }
    }
}
