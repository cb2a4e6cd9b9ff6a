//! Additional checksums (`x-amz-checksum-*`): which ones a request asks for, computing them while
//! the body streams (each byte hashed once, beside MD5), and checking the client's values —
//! sent as headers or as aws-chunked trailers — before the object is committed.

use baobab::meta::Checksums;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, PutObjectInput};
use s3s::{s3_error, S3Request, S3Result, TrailingHeaders};

const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// The algorithms a request wants computed (index into [`ALGORITHMS`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestedChecksums {
    enabled: [bool; 5],
}

fn algorithm_index(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("x-amz-checksum-").unwrap_or(&name);
    ALGORITHMS.iter().position(|a| *a == name)
}

impl RequestedChecksums {
    pub fn from_request(req: &S3Request<PutObjectInput>) -> S3Result<Self> {
        let mut r = RequestedChecksums::default();
        let i = &req.input;
        let present = [
            i.checksum_crc32.is_some(),
            i.checksum_crc32c.is_some(),
            i.checksum_crc64nvme.is_some(),
            i.checksum_sha1.is_some(),
            i.checksum_sha256.is_some(),
        ];
        for (slot, p) in r.enabled.iter_mut().zip(present) {
            *slot |= p;
        }
        if let Some(alg) = &i.checksum_algorithm {
            let idx = algorithm_index(alg.as_str())
                .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm not supported"))?;
            r.enabled[idx] = true;
        }
        if let Some(trailer) = req
            .headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
        {
            for name in trailer.split(',') {
                if let Some(idx) = algorithm_index(name) {
                    r.enabled[idx] = true;
                }
            }
        }
        Ok(r)
    }

    pub fn hasher(&self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        if self.enabled[0] {
            h.crc32 = Some(Default::default());
        }
        if self.enabled[1] {
            h.crc32c = Some(Default::default());
        }
        if self.enabled[2] {
            h.crc64nvme = Some(Default::default());
        }
        if self.enabled[3] {
            h.sha1 = Some(Default::default());
        }
        if self.enabled[4] {
            h.sha256 = Some(Default::default());
        }
        h
    }

    /// Checks claimed values (headers, then trailers) against the computed ones; returns what to
    /// store. A mismatch is `BadDigest`.
    pub fn verify(
        &self,
        headers: &Checksums,
        trailers: Option<&TrailingHeaders>,
        computed: &Checksum,
    ) -> S3Result<Checksums> {
        let trailer_values: Vec<Option<String>> = ALGORITHMS
            .iter()
            .map(|a| {
                trailers.and_then(|t| {
                    t.read(|h| {
                        h.get(format!("x-amz-checksum-{a}").as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .flatten()
                })
            })
            .collect();
        let claimed = [
            &headers.crc32,
            &headers.crc32c,
            &headers.crc64nvme,
            &headers.sha1,
            &headers.sha256,
        ];
        let got = [
            &computed.checksum_crc32,
            &computed.checksum_crc32c,
            &computed.checksum_crc64nvme,
            &computed.checksum_sha1,
            &computed.checksum_sha256,
        ];
        let mut stored: [Option<String>; 5] = Default::default();
        for idx in 0..ALGORITHMS.len() {
            if !self.enabled[idx] {
                continue;
            }
            let claim = claimed[idx].clone().or_else(|| trailer_values[idx].clone());
            if let Some(claim) = &claim {
                if Some(claim) != got[idx].as_ref() {
                    return Err(s3_error!(
                        BadDigest,
                        "The {} you specified did not match the calculated checksum.",
                        ALGORITHMS[idx].to_uppercase()
                    ));
                }
            }
            stored[idx] = got[idx].clone();
        }
        let [crc32, crc32c, crc64nvme, sha1, sha256] = stored;
        Ok(Checksums {
            crc32,
            crc32c,
            crc64nvme,
            sha1,
            sha256,
        })
    }
}
