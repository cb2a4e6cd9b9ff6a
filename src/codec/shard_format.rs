//! The shard file format, version 1. One file holds shard `i` of every block of one object
//! version:
//!
//! ```text
//! header (64 bytes): magic "BAOBABSH" | format version u16 LE | k u8 | m u8 | shard index u8 |
//!                    reserved u8 | block size u32 LE | object version id u128 LE | zero padding
//! then per block b:  shard bytes (shard_len(b)) | BLAKE3 of those bytes (32)
//! ```
//! Every block but the last has the full shard length, so block b starts at a computable offset
//! and a range read touches only the blocks it needs.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{ErasureProfile, VersionId};

pub const MAGIC: &[u8; 8] = b"BAOBABSH";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: u64 = 64;
pub const HASH_LEN: u64 = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardFormatError {
    #[error("not a shard file (bad magic)")]
    BadMagic,
    #[error("shard format version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("shard header too short")]
    Truncated,
    /// A header no writer makes: a layout computed from it would divide by zero (k or block
    /// size 0) or name a shard outside the profile.
    #[error("shard header has an impossible layout (k {k}, m {m}, shard {shard_index}, block size {block_size})")]
    BadLayout {
        k: u8,
        m: u8,
        shard_index: u8,
        block_size: u32,
    },
}

/// The header of one shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub profile: ErasureProfile,
    pub shard_index: u8,
    pub block_size: u32,
    pub version: VersionId,
}

impl ShardHeader {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN as usize);
        b.put_slice(MAGIC);
        b.put_u16_le(FORMAT_VERSION);
        b.put_u8(self.profile.k);
        b.put_u8(self.profile.m);
        b.put_u8(self.shard_index);
        b.put_u8(0);
        b.put_u32_le(self.block_size);
        b.put_u128_le(self.version.0);
        b.resize(HEADER_LEN as usize, 0);
        b.freeze()
    }

    pub fn decode(buf: &[u8]) -> Result<Self, ShardFormatError> {
        if buf.len() < HEADER_LEN as usize {
            return Err(ShardFormatError::Truncated);
        }
        if &buf[..8] != MAGIC {
            return Err(ShardFormatError::BadMagic);
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version != FORMAT_VERSION {
            return Err(ShardFormatError::UnsupportedVersion(version));
        }
        let (k, m, shard_index) = (buf[10], buf[11], buf[12]);
        let block_size = u32::from_le_bytes([buf[14], buf[15], buf[16], buf[17]]);
        if k == 0 || block_size == 0 || u16::from(shard_index) >= u16::from(k) + u16::from(m) {
            return Err(ShardFormatError::BadLayout {
                k,
                m,
                shard_index,
                block_size,
            });
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&buf[18..34]);
        Ok(ShardHeader {
            profile: ErasureProfile { k, m },
            shard_index,
            block_size,
            version: VersionId(u128::from_le_bytes(id)),
        })
    }
}

/// Where things are in the shard files of an object of `object_size` bytes. `k` and
/// `block_size` are at least 1 (a decoded header's are); offsets past `u64::MAX` saturate, so
/// a size no file can have never matches a real file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLayout {
    pub k: u64,
    pub block_size: u64,
    pub object_size: u64,
}

impl ShardLayout {
    pub fn new(k: u8, block_size: u32, object_size: u64) -> Self {
        ShardLayout {
            k: k as u64,
            block_size: block_size as u64,
            object_size,
        }
    }

    pub fn n_blocks(&self) -> u64 {
        self.object_size.div_ceil(self.block_size)
    }

    /// Bytes of the object in block `b`.
    pub fn block_len(&self, b: u64) -> u64 {
        let start = b.saturating_mul(self.block_size);
        self.block_size.min(self.object_size.saturating_sub(start))
    }

    /// Shard bytes per block (without the hash) for block `b`.
    pub fn shard_len(&self, b: u64) -> u64 {
        self.block_len(b).div_ceil(self.k)
    }

    fn full_record_len(&self) -> u64 {
        self.block_size.div_ceil(self.k) + HASH_LEN
    }

    /// Offset of block `b`'s record (shard bytes then hash) in a shard file.
    pub fn record_offset(&self, b: u64) -> u64 {
        HEADER_LEN.saturating_add(b.saturating_mul(self.full_record_len()))
    }

    /// The byte range of the records of blocks `first..end` in a shard file.
    pub fn records_range(&self, first: u64, end: u64) -> (u64, u64) {
        let start = self.record_offset(first);
        let last = end - 1;
        (
            start,
            self.record_offset(last)
                .saturating_add(self.shard_len(last) + HASH_LEN),
        )
    }

    /// Size of a complete shard file.
    pub fn file_len(&self) -> u64 {
        if self.n_blocks() == 0 {
            return HEADER_LEN;
        }
        self.records_range(0, self.n_blocks()).1
    }
}

/// The hash stored after each shard block.
pub fn block_hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// Bytes of one shard's digest (a truncated BLAKE3: 128 bits resist a second preimage).
pub const DIGEST_LEN: usize = 16;

/// What binds a shard file to its object record: BLAKE3 over a domain tag, the version and
/// shard index the file is stored as, and every block's hash in order, truncated to
/// [`DIGEST_LEN`]. The record holds one per shard, so a file replaced on disk by another that
/// is internally consistent (its blocks match their hashes) is still found out: its hashes do
/// not give the record's digest. Erasure coding is deterministic, so a rebuilt shard has the
/// digest of the one it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardDigest(pub [u8; DIGEST_LEN]);

impl ShardDigest {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        // Hex digits only: `from_str_radix` would take a sign (`+f`).
        if s.len() != 2 * DIGEST_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; DIGEST_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ShardDigest(out))
    }
}

impl std::fmt::Display for ShardDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Builds a [`ShardDigest`] from a shard's block hashes, in block order.
#[derive(Debug, Clone)]
pub struct DigestBuilder(blake3::Hasher);

impl DigestBuilder {
    pub fn new(version: VersionId, shard_index: u8) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"baobab shard digest v1\0");
        h.update(&version.0.to_le_bytes());
        h.update(&[shard_index]);
        DigestBuilder(h)
    }

    pub fn block(&mut self, hash: &[u8]) {
        self.0.update(hash);
    }

    pub fn finish(&self) -> ShardDigest {
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(&self.0.finalize().as_bytes()[..DIGEST_LEN]);
        ShardDigest(out)
    }
}

/// The digests of every shard of a piece, by shard index, as the record stores them (one byte
/// string, [`DIGEST_LEN`] bytes per shard). Empty in records written before digests existed:
/// their shards are checked block by block only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ShardDigests(#[serde(with = "serde_bytes")] Vec<u8>);

impl ShardDigests {
    pub fn new(digests: impl IntoIterator<Item = ShardDigest>) -> Self {
        ShardDigests(digests.into_iter().flat_map(|d| d.0).collect())
    }

    /// Shard `index`'s digest; None for records without digests (or a malformed list).
    pub fn get(&self, index: usize) -> Option<ShardDigest> {
        let bytes = self.0.get(index * DIGEST_LEN..(index + 1) * DIGEST_LEN)?;
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(bytes);
        Some(ShardDigest(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = ShardHeader {
            profile: ErasureProfile { k: 4, m: 2 },
            shard_index: 5,
            block_size: 1 << 20,
            version: VersionId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
        };
        let enc = h.encode();
        assert_eq!(enc.len() as u64, HEADER_LEN);
        assert_eq!(ShardHeader::decode(&enc), Ok(h));
        let mut bad = enc.to_vec();
        bad[0] = b'X';
        assert_eq!(ShardHeader::decode(&bad), Err(ShardFormatError::BadMagic));
        let mut newer = enc.to_vec();
        newer[8] = 9;
        assert_eq!(
            ShardHeader::decode(&newer),
            Err(ShardFormatError::UnsupportedVersion(9))
        );
        assert_eq!(
            ShardHeader::decode(&enc[..10]),
            Err(ShardFormatError::Truncated)
        );
    }

    #[test]
    fn digests_bind_version_index_and_every_block() {
        let hashes = [block_hash(b"a"), block_hash(b"b")];
        let digest = |v: u128, i: u8, hs: &[[u8; 32]]| {
            let mut d = DigestBuilder::new(VersionId(v), i);
            hs.iter().for_each(|h| d.block(h));
            d.finish()
        };
        let base = digest(7, 1, &hashes);
        assert_ne!(base, digest(8, 1, &hashes));
        assert_ne!(base, digest(7, 2, &hashes));
        assert_ne!(base, digest(7, 1, &hashes[..1]));
        assert_ne!(base, digest(7, 1, &[hashes[1], hashes[0]]));
        assert_eq!(ShardDigest::from_hex(&base.to_hex()), Some(base));
        assert_eq!(ShardDigest::from_hex("zz"), None);
        assert_eq!(
            ShardDigest::from_hex(&format!("+f{}", &base.to_hex()[2..])),
            None
        );
        assert_eq!(ShardDigest::from_hex(&"é".repeat(16)), None);
        let all = ShardDigests::new([base, digest(7, 2, &hashes)]);
        assert_eq!(all.get(0), Some(base));
        assert_eq!(all.get(2), None);
        assert_eq!(ShardDigests::default().get(0), None);
    }

    /// A header with k = 0 or a block size of 0 made
    /// the reader's layout divide by zero (`shard::verify` panicked on such a file; reproducers
    /// in `fuzz/corpus/shard_format/crash-*`).
    #[test]
    fn impossible_layouts_are_refused() {
        let good = ShardHeader {
            profile: ErasureProfile { k: 2, m: 1 },
            shard_index: 2,
            block_size: 1024,
            version: VersionId(1),
        };
        assert_eq!(ShardHeader::decode(&good.encode()), Ok(good));
        for bad in [
            ShardHeader {
                profile: ErasureProfile { k: 0, m: 3 },
                ..good
            },
            ShardHeader {
                block_size: 0,
                ..good
            },
            ShardHeader {
                shard_index: 3,
                ..good
            },
        ] {
            assert!(matches!(
                ShardHeader::decode(&bad.encode()),
                Err(ShardFormatError::BadLayout { .. })
            ));
        }
    }

    /// An object size near `u64::MAX` overflowed the
    /// offsets; they saturate now, and a saturated length matches no file.
    #[test]
    fn huge_sizes_saturate() {
        let l = ShardLayout::new(1, 1, u64::MAX);
        assert_eq!(l.file_len(), u64::MAX);
        assert_eq!(l.record_offset(u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn layout_offsets() {
        let l = ShardLayout::new(2, 1024, 2500);
        assert_eq!(l.n_blocks(), 3);
        assert_eq!(l.block_len(2), 452);
        assert_eq!(l.shard_len(0), 512);
        assert_eq!(l.shard_len(2), 226);
        assert_eq!(l.record_offset(1), 64 + 544);
        assert_eq!(l.records_range(1, 3), (64 + 544, 64 + 2 * 544 + 226 + 32));
        assert_eq!(l.file_len(), 64 + 2 * 544 + 226 + 32);
    }
}
