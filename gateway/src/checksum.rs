//! Additional checksums (`x-amz-checksum-*`) of a request: which ones it asks for (values sent
//! as headers, `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`, names in
//! `x-amz-trailer`), and the values it claims — headers now, aws-chunked trailers once the body
//! has ended. Computing and verifying them is the object service's (`baobab::codec::checksum`).

use baobab::codec::checksum::{ChecksumAlgorithm, ChecksumSelection, Checksums};
use s3s::{s3_error, S3Result, TrailingHeaders};

/// The five `checksum_*` fields of an s3s input or part as [`Checksums`].
macro_rules! claimed_checksums {
    ($i:expr) => {
        baobab::codec::checksum::Checksums {
            crc32: $i.checksum_crc32.clone(),
            crc32c: $i.checksum_crc32c.clone(),
            crc64nvme: $i.checksum_crc64nvme.clone(),
            sha1: $i.checksum_sha1.clone(),
            sha256: $i.checksum_sha256.clone(),
        }
    };
}
pub(crate) use claimed_checksums;

/// The algorithms a request wants: those it sent values for, names in `algorithm` and in the
/// `x-amz-trailer` header.
pub fn selection(
    claimed: &Checksums,
    algorithm: Option<&str>,
    headers: &http::HeaderMap,
) -> S3Result<ChecksumSelection> {
    let mut sel = ChecksumSelection::default();
    for a in claimed.algorithms() {
        sel.add(a);
    }
    if let Some(name) = algorithm {
        let a = ChecksumAlgorithm::parse(name)
            .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm not supported"))?;
        sel.add(a);
    }
    if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        for name in trailer.split(',') {
            if let Some(a) = ChecksumAlgorithm::parse(name) {
                sel.add(a);
            }
        }
    }
    Ok(sel)
}

/// Claimed values: headers first, then trailers (read once the body has ended).
pub fn claims_with_trailers(
    headers: Checksums,
    trailers: Option<TrailingHeaders>,
) -> impl FnOnce() -> Checksums {
    move || {
        let mut out = headers;
        let Some(t) = trailers else {
            return out;
        };
        for a in ChecksumAlgorithm::ALL {
            if out.get(a).is_some() {
                continue;
            }
            let name = format!("x-amz-checksum-{}", a.name());
            *out.slot(a) = t
                .read(|h| {
                    h.get(name.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten();
        }
        out
    }
}

/// Stored values shown when a client asks for them (`x-amz-checksum-mode: ENABLED`).
pub fn shown(mode: Option<&s3s::dto::ChecksumMode>, whole: bool, stored: &Checksums) -> Checksums {
    let enabled = mode.is_some_and(|m| m.as_str() == s3s::dto::ChecksumMode::ENABLED);
    if enabled && whole {
        stored.clone()
    } else {
        Checksums::default()
    }
}

/// S3 outputs that carry the five `checksum_*` fields: set them from one [`Checksums`].
pub trait WithChecksums: Sized {
    fn with_checksums(self, cs: Checksums) -> Self;
}

macro_rules! impl_with_checksums {
    ($($ty:ty),* $(,)?) => {$(
        impl WithChecksums for $ty {
            fn with_checksums(mut self, cs: Checksums) -> Self {
                self.checksum_crc32 = cs.crc32;
                self.checksum_crc32c = cs.crc32c;
                self.checksum_crc64nvme = cs.crc64nvme;
                self.checksum_sha1 = cs.sha1;
                self.checksum_sha256 = cs.sha256;
                self
            }
        }
    )*};
}

impl_with_checksums!(
    s3s::dto::PutObjectOutput,
    s3s::dto::UploadPartOutput,
    s3s::dto::CopyPartResult,
    s3s::dto::CopyObjectResult,
    s3s::dto::CompleteMultipartUploadOutput,
    s3s::dto::Part,
    s3s::dto::Checksum,
    s3s::dto::GetObjectOutput,
    s3s::dto::HeadObjectOutput,
);
