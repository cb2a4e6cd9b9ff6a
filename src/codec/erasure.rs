//! Reed-Solomon erasure coding of one block into k data + m parity shards, and back.
//!
//! A block of `len` bytes is cut into k data shards of `shard_len(len)` bytes each (the last
//! one zero-padded); m parity shards of the same length are computed from them. Any k of the
//! k + m shards give the block back.

use bytes::{Bytes, BytesMut};
use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::types::ErasureProfile;

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("invalid erasure profile {k}+{m}")]
    InvalidProfile { k: u8, m: u8 },
    #[error("only {have} of the {need} shards needed to decode a block")]
    TooFewShards { have: usize, need: usize },
    #[error("shard length mismatch")]
    ShardLength,
}

/// An encoder/decoder for one profile. Cheap to share.
pub struct Erasure {
    profile: ErasureProfile,
    /// None when m == 0 (plain striping, nothing to compute).
    rs: Option<ReedSolomon>,
}

impl Erasure {
    pub fn new(profile: ErasureProfile) -> Result<Self, ErasureError> {
        let invalid = ErasureError::InvalidProfile {
            k: profile.k,
            m: profile.m,
        };
        if profile.k == 0 || profile.n_shards() > 255 {
            return Err(invalid);
        }
        let rs = if profile.m == 0 {
            None
        } else {
            Some(ReedSolomon::new(profile.k as usize, profile.m as usize).map_err(|_| invalid)?)
        };
        Ok(Erasure { profile, rs })
    }

    pub fn profile(&self) -> ErasureProfile {
        self.profile
    }

    /// Bytes per shard for a block of `block_len` bytes.
    pub fn shard_len(&self, block_len: usize) -> usize {
        block_len.div_ceil(self.profile.k as usize)
    }

    /// Encodes one block into k + m shards. Data shards share the block's memory when the block
    /// divides evenly; otherwise the block is copied once into a padded buffer.
    pub fn encode(&self, block: Bytes) -> Vec<Bytes> {
        let k = self.profile.k as usize;
        let shard_len = self.shard_len(block.len());
        let padded = if block.len() == shard_len * k {
            block
        } else {
            let mut buf = BytesMut::zeroed(shard_len * k);
            buf[..block.len()].copy_from_slice(&block);
            buf.freeze()
        };
        let mut shards: Vec<Bytes> = (0..k)
            .map(|i| padded.slice(i * shard_len..(i + 1) * shard_len))
            .collect();
        if let Some(rs) = &self.rs {
            let mut parity: Vec<Vec<u8>> = vec![vec![0u8; shard_len]; self.profile.m as usize];
            let data: Vec<&[u8]> = shards.iter().map(|s| s.as_ref()).collect();
            let mut parity_refs: Vec<&mut [u8]> =
                parity.iter_mut().map(|p| p.as_mut_slice()).collect();
            rs.encode_sep(&data, &mut parity_refs)
                .expect("shard counts and lengths match the profile by construction");
            shards.extend(parity.into_iter().map(Bytes::from));
        }
        shards
    }

    /// Decodes a block of `block_len` bytes from its shards (index = shard number; None = missing).
    /// Uses the data shards directly when all are present; reconstructs otherwise.
    pub fn decode(
        &self,
        mut shards: Vec<Option<Bytes>>,
        block_len: usize,
    ) -> Result<Bytes, ErasureError> {
        let k = self.profile.k as usize;
        let n = self.profile.n_shards();
        let shard_len = self.shard_len(block_len);
        if shards.len() != n {
            return Err(ErasureError::ShardLength);
        }
        if shards.iter().flatten().any(|s| s.len() != shard_len) {
            return Err(ErasureError::ShardLength);
        }
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < k {
            return Err(ErasureError::TooFewShards { have, need: k });
        }
        if shards[..k].iter().any(|s| s.is_none()) {
            let rs = self
                .rs
                .as_ref()
                .ok_or(ErasureError::TooFewShards { have, need: n })?;
            let mut owned: Vec<Option<Vec<u8>>> = shards
                .iter()
                .map(|s| s.as_ref().map(|b| b.to_vec()))
                .collect();
            rs.reconstruct_data(&mut owned)
                .map_err(|_| ErasureError::TooFewShards { have, need: k })?;
            for (slot, rebuilt) in shards.iter_mut().zip(owned).take(k) {
                if slot.is_none() {
                    *slot = rebuilt.map(Bytes::from);
                }
            }
        }
        if k == 1 {
            let only = shards[0]
                .take()
                .ok_or(ErasureError::TooFewShards { have: 0, need: 1 })?;
            return Ok(only.slice(..block_len));
        }
        let mut out = BytesMut::with_capacity(shard_len * k);
        for s in shards.iter().take(k) {
            out.extend_from_slice(
                s.as_ref()
                    .ok_or(ErasureError::TooFewShards { have, need: k })?,
            );
        }
        out.truncate(block_len);
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn profiles() -> Vec<ErasureProfile> {
        vec![
            ErasureProfile { k: 1, m: 0 },
            ErasureProfile { k: 2, m: 1 },
            ErasureProfile { k: 4, m: 2 },
            ErasureProfile { k: 8, m: 3 },
        ]
    }

    /// Every loss pattern of up to m shards decodes to the original block.
    #[test]
    fn round_trip_every_loss_pattern() {
        for profile in profiles() {
            let e = Erasure::new(profile).expect("valid profile");
            let n = profile.n_shards();
            for len in [1usize, 7, 1000, 4096, 65537] {
                let block: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let shards = e.encode(Bytes::from(block.clone()));
                assert_eq!(shards.len(), n);
                for mask in 0u32..(1 << n) {
                    let lost = mask.count_ones() as usize;
                    let input: Vec<Option<Bytes>> = (0..n)
                        .map(|i| {
                            if mask & (1 << i) != 0 {
                                None
                            } else {
                                Some(shards[i].clone())
                            }
                        })
                        .collect();
                    let out = e.decode(input, len);
                    if lost <= profile.m as usize {
                        assert_eq!(
                            out.expect("decodable").as_ref(),
                            &block[..],
                            "{profile:?} len {len} mask {mask:b}"
                        );
                    } else {
                        assert!(out.is_err());
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip_random(data in proptest::collection::vec(any::<u8>(), 1..20000), lose in 0usize..3) {
            let e = Erasure::new(ErasureProfile { k: 2, m: 1 }).expect("valid profile");
            let shards = e.encode(Bytes::from(data.clone()));
            let input: Vec<Option<Bytes>> = (0..3).map(|i| if i == lose { None } else { Some(shards[i].clone()) }).collect();
            let out = e.decode(input, data.len()).expect("decodable");
            prop_assert_eq!(out.as_ref(), &data[..]);
        }
    }
}
