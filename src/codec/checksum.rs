//! S3's additional checksums (`x-amz-checksum-*`) as one typed set: which algorithms a request
//! wants, computing them while a body streams (each byte hashed once), and combining part
//! checksums into a multipart object's checksum (COMPOSITE: a hash of the parts' hashes, "-N";
//! FULL_OBJECT: the CRC of the whole object, combined from the parts' CRCs). Pure.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// The algorithms S3 defines, in the order of [`Checksums`]' fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// Lower-case name as in `x-amz-checksum-<name>`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }

    /// Parses `CRC32`, `crc32c`, `x-amz-checksum-sha256`, ... (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix("x-amz-checksum-").unwrap_or(&s);
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Whether the whole-object checksum can be derived from the parts' (CRCs only).
    pub fn supports_full_object(self) -> bool {
        matches!(
            self,
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc64Nvme
        )
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }

    fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }
}

/// How a multipart object's checksum was formed (S3's `x-amz-checksum-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumType {
    /// A hash of the parts' hashes, shown as `<base64>-<parts>`.
    Composite,
    /// The checksum of the whole object's bytes.
    FullObject,
}

impl ChecksumType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumType::Composite => "COMPOSITE",
            ChecksumType::FullObject => "FULL_OBJECT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "COMPOSITE" => Some(ChecksumType::Composite),
            "FULL_OBJECT" => Some(ChecksumType::FullObject),
            _ => None,
        }
    }
}

/// Checksum values, base64 as S3 shows them; one slot per algorithm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

impl Checksums {
    pub fn get(&self, a: ChecksumAlgorithm) -> Option<&String> {
        match a {
            ChecksumAlgorithm::Crc32 => self.crc32.as_ref(),
            ChecksumAlgorithm::Crc32c => self.crc32c.as_ref(),
            ChecksumAlgorithm::Crc64Nvme => self.crc64nvme.as_ref(),
            ChecksumAlgorithm::Sha1 => self.sha1.as_ref(),
            ChecksumAlgorithm::Sha256 => self.sha256.as_ref(),
        }
    }

    pub fn slot(&mut self, a: ChecksumAlgorithm) -> &mut Option<String> {
        match a {
            ChecksumAlgorithm::Crc32 => &mut self.crc32,
            ChecksumAlgorithm::Crc32c => &mut self.crc32c,
            ChecksumAlgorithm::Crc64Nvme => &mut self.crc64nvme,
            ChecksumAlgorithm::Sha1 => &mut self.sha1,
            ChecksumAlgorithm::Sha256 => &mut self.sha256,
        }
    }

    pub fn is_empty(&self) -> bool {
        ChecksumAlgorithm::ALL
            .iter()
            .all(|a| self.get(*a).is_none())
    }

    /// The algorithms with a value.
    pub fn algorithms(&self) -> impl Iterator<Item = ChecksumAlgorithm> + '_ {
        ChecksumAlgorithm::ALL
            .into_iter()
            .filter(|a| self.get(*a).is_some())
    }
}

/// A set of algorithms to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSelection([bool; 5]);

impl ChecksumSelection {
    pub fn add(&mut self, a: ChecksumAlgorithm) {
        self.0[index(a)] = true;
    }

    pub fn contains(&self, a: ChecksumAlgorithm) -> bool {
        self.0[index(a)]
    }

    pub fn iter(&self) -> impl Iterator<Item = ChecksumAlgorithm> + '_ {
        ChecksumAlgorithm::ALL
            .into_iter()
            .filter(|a| self.contains(*a))
    }

    pub fn hasher(&self) -> ChecksumHasher {
        ChecksumHasher {
            crcs: self
                .iter()
                .filter_map(|a| a.crc().map(|c| (a, crc_fast::Digest::new(c))))
                .collect(),
            sha1: self.contains(ChecksumAlgorithm::Sha1).then(sha1::Sha1::new),
            sha256: self
                .contains(ChecksumAlgorithm::Sha256)
                .then(sha2::Sha256::new),
        }
    }
}

fn index(a: ChecksumAlgorithm) -> usize {
    ChecksumAlgorithm::ALL
        .iter()
        .position(|x| *x == a)
        .expect("every algorithm is in ALL")
}

/// Computes the selected checksums over a stream of chunks.
pub struct ChecksumHasher {
    crcs: Vec<(ChecksumAlgorithm, crc_fast::Digest)>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
}

impl ChecksumHasher {
    pub fn update(&mut self, data: &[u8]) {
        for (_, d) in self.crcs.iter_mut() {
            d.update(data);
        }
        if let Some(h) = self.sha1.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(data);
        }
    }

    pub fn finalize(self) -> Checksums {
        let mut out = Checksums::default();
        for (a, d) in self.crcs {
            *out.slot(a) = Some(encode_crc(a, d.finalize()));
        }
        if let Some(h) = self.sha1 {
            out.sha1 = Some(b64(&h.finalize()));
        }
        if let Some(h) = self.sha256 {
            out.sha256 = Some(b64(&h.finalize()));
        }
        out
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn encode_crc(a: ChecksumAlgorithm, value: u64) -> String {
    match a.digest_len() {
        4 => b64(&(value as u32).to_be_bytes()),
        _ => b64(&value.to_be_bytes()),
    }
}

/// Decodes a base64 checksum of `a`'s length; None if malformed.
pub fn decode(a: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    (raw.len() == a.digest_len()).then_some(raw)
}

/// COMPOSITE: `base64(H(raw part checksums concatenated))-N`. None if a part lacks a
/// well-formed value.
pub fn composite(a: ChecksumAlgorithm, parts: &[&str]) -> Option<String> {
    let mut sel = ChecksumSelection::default();
    sel.add(a);
    let mut h = sel.hasher();
    for p in parts {
        h.update(&decode(a, p)?);
    }
    let v = h.finalize().get(a).cloned()?;
    Some(format!("{v}-{}", parts.len()))
}

/// FULL_OBJECT for CRCs: the CRC of the concatenation, from each part's CRC and length.
pub fn full_object_crc(a: ChecksumAlgorithm, parts: &[(&str, u64)]) -> Option<String> {
    let crc = a.crc()?;
    let mut acc: Option<u64> = None;
    for (value, len) in parts {
        let raw = decode(a, value)?;
        let v = raw.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
        acc = Some(match acc {
            None => v,
            Some(prev) => crc_fast::checksum_combine(crc, prev, v, *len),
        });
    }
    Some(encode_crc(a, acc?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(a: ChecksumAlgorithm, data: &[u8]) -> String {
        let mut sel = ChecksumSelection::default();
        sel.add(a);
        let mut h = sel.hasher();
        h.update(data);
        h.finalize().get(a).cloned().expect("computed")
    }

    #[test]
    fn known_vectors() {
        // crc32("123456789") = 0xcbf43926, crc32c = 0xe3069283 (check values of the CRC catalogue).
        assert_eq!(
            of(ChecksumAlgorithm::Crc32, b"123456789"),
            b64(&0xcbf43926u32.to_be_bytes())
        );
        assert_eq!(
            of(ChecksumAlgorithm::Crc32c, b"123456789"),
            b64(&0xe3069283u32.to_be_bytes())
        );
        assert_eq!(
            of(ChecksumAlgorithm::Sha256, b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            of(ChecksumAlgorithm::Sha1, b""),
            "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
        );
    }

    #[test]
    fn full_object_crc_equals_crc_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for a in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let cuts = [0usize, 30_000, 30_001, 99_000, 100_000];
            let parts: Vec<(String, u64)> = cuts
                .windows(2)
                .map(|w| (of(a, &data[w[0]..w[1]]), (w[1] - w[0]) as u64))
                .collect();
            let refs: Vec<(&str, u64)> = parts.iter().map(|(v, l)| (v.as_str(), *l)).collect();
            assert_eq!(full_object_crc(a, &refs), Some(of(a, &data)), "{a:?}");
        }
    }

    #[test]
    fn composite_is_hash_of_raw_part_hashes() {
        let a = ChecksumAlgorithm::Sha256;
        let p1 = of(a, b"hello ");
        let p2 = of(a, b"world");
        let mut raw = decode(a, &p1).expect("p1");
        raw.extend(decode(a, &p2).expect("p2"));
        assert_eq!(
            composite(a, &[&p1, &p2]),
            Some(format!("{}-2", of(a, &raw)))
        );
        assert_eq!(composite(a, &["not base64!"]), None);
    }

    #[test]
    fn parse_names() {
        assert_eq!(
            ChecksumAlgorithm::parse("CRC64NVME"),
            Some(ChecksumAlgorithm::Crc64Nvme)
        );
        assert_eq!(
            ChecksumAlgorithm::parse("x-amz-checksum-sha1"),
            Some(ChecksumAlgorithm::Sha1)
        );
        assert_eq!(ChecksumAlgorithm::parse("md5"), None);
    }
}
