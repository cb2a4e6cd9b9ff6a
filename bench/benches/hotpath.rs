//! Micro-benchmarks of Baobab's per-byte hot path, on one core, with throughput in bytes so
//! criterion prints MiB/s or GiB/s. Inputs are random (incompressible) bytes.
//!
//! Groups (results land in `$CARGO_TARGET_DIR/criterion/<group>/<function>/`):
//! - `hash`: the checksums and digests the gateway and the shard format compute over every byte,
//!   each over 1 MiB: `md5` (the S3 ETag), `blake3` (the raw BLAKE3 hash), `crc32c`, `crc64nvme`
//!   and `crc32` (the S3 additional checksums, via crc-fast). `sha256` is not measured: `sha2` is
//!   not a dependency of this crate.
//! - `erasure_encode`: `Erasure::encode` of one 1 MiB block for the profiles `2+1`, `4+2`, `8+3`.
//! - `erasure_decode`: `Erasure::decode` of one 1 MiB block per profile, with all data shards
//!   present (`<k+m>/all_data`) and with data shard 0 lost and reconstructed
//!   (`<k+m>/lost_data0`).
//! - `shard_format`: `block_hash` (the BLAKE3 stored after each shard block) of one 512 KiB shard.
//! - `put_pipeline`: `2+1` is all the per-byte CPU work the gateway does for one 1 MiB block of a
//!   PUT, in sequence on one core: MD5 and CRC64NVME updates (streaming states, never
//!   finalized), the copy of the block into a fresh buffer, the 2+1 encode and the `block_hash`
//!   of each of the 3 shards. This is the per-byte CPU limit of the whole PUT pipeline on one
//!   core, the number the PUT throughput target is set against.
//! - `get_pipeline`: `2+1` is the per-byte CPU work for one 1 MiB block of a GET: `block_hash` of
//!   the 2 data shards and a `decode` with all data shards present.
//! - `shard_write`: `64MiB_fsync` is `ShardStore::write` of shard 0 of a 64 MiB 2+1 object (a
//!   64-byte header then 64 records of 512 KiB shard bytes + 32-byte hash) to a temporary
//!   directory, fsync and rename included; the file is deleted (untimed) after each iteration.
//!
//! Run: `cargo bench -p baobab-bench --bench hotpath` (about 2 minutes).

use std::time::{Duration, Instant};

use baobab::codec::erasure::Erasure;
use baobab::codec::shard_format::{block_hash, ShardHeader};
use baobab::shard::ShardStore;
use baobab::types::{ErasureProfile, VersionId};
use bytes::{Bytes, BytesMut};
use crc_fast::CrcAlgorithm;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use md5::Digest as _;
use std::hint::black_box;

const MIB: usize = 1 << 20;
const PROFILES: [(u8, u8); 3] = [(2, 1), (4, 2), (8, 3)];

/// `len` pseudo-random bytes from SplitMix64: incompressible, reproducible, no extra dependency.
fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn erasure(k: u8, m: u8) -> Erasure {
    Erasure::new(ErasureProfile { k, m }).expect("benchmark profiles are valid")
}

fn hash(c: &mut Criterion) {
    let buf = random_bytes(MIB, 1);
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("md5", |b| b.iter(|| md5::Md5::digest(black_box(&buf[..]))));
    g.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(&buf[..]))));
    g.bench_function("crc32c", |b| {
        b.iter(|| crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, black_box(&buf[..])))
    });
    g.bench_function("crc64nvme", |b| {
        b.iter(|| crc_fast::checksum(CrcAlgorithm::Crc64Nvme, black_box(&buf[..])))
    });
    g.bench_function("crc32", |b| {
        b.iter(|| crc_fast::checksum(CrcAlgorithm::Crc32IsoHdlc, black_box(&buf[..])))
    });
    g.finish();
}

fn erasure_encode(c: &mut Criterion) {
    let block = random_bytes(MIB, 2);
    let mut g = c.benchmark_group("erasure_encode");
    g.throughput(Throughput::Bytes(block.len() as u64));
    for (k, m) in PROFILES {
        let e = erasure(k, m);
        g.bench_function(format!("{k}+{m}"), |b| {
            b.iter(|| e.encode(black_box(block.clone())))
        });
    }
    g.finish();
}

fn erasure_decode(c: &mut Criterion) {
    let block = random_bytes(MIB, 3);
    let mut g = c.benchmark_group("erasure_decode");
    g.throughput(Throughput::Bytes(block.len() as u64));
    for (k, m) in PROFILES {
        let e = erasure(k, m);
        let shards = e.encode(block.clone());
        let all: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
        let mut lost = all.clone();
        lost[0] = None;
        // Both inputs must give the block back, or the numbers mean nothing.
        for input in [&all, &lost] {
            let out = e
                .decode(input.clone(), block.len())
                .expect("decodable with at most m shards lost");
            assert_eq!(out, block, "{k}+{m} decode round trip");
        }
        let name = format!("{k}+{m}");
        g.bench_function(BenchmarkId::new(&name, "all_data"), |b| {
            b.iter(|| {
                e.decode(black_box(all.clone()), block.len())
                    .expect("all data shards present")
            })
        });
        g.bench_function(BenchmarkId::new(&name, "lost_data0"), |b| {
            b.iter(|| {
                e.decode(black_box(lost.clone()), block.len())
                    .expect("one shard lost, m >= 1")
            })
        });
    }
    g.finish();
}

fn shard_format(c: &mut Criterion) {
    let shard = random_bytes(MIB / 2, 4);
    let mut g = c.benchmark_group("shard_format");
    g.throughput(Throughput::Bytes(shard.len() as u64));
    g.bench_function("block_hash", |b| {
        b.iter(|| block_hash(black_box(&shard[..])))
    });
    g.finish();
}

fn put_pipeline(c: &mut Criterion) {
    let block = random_bytes(MIB, 5);
    let e = erasure(2, 1);
    let mut g = c.benchmark_group("put_pipeline");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("2+1", |b| {
        // Streaming states, as in a PUT: updated per block, finalized once per object (never here).
        let mut md5 = md5::Md5::new();
        let mut crc = crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme);
        b.iter(|| {
            let body = black_box(&block[..]);
            md5.update(body);
            crc.update(body);
            let mut buf = BytesMut::with_capacity(MIB);
            buf.extend_from_slice(body);
            let shards = e.encode(buf.freeze());
            for shard in &shards {
                black_box(block_hash(shard));
            }
            shards
        });
        black_box((md5.finalize(), crc.finalize()));
    });
    g.finish();
}

fn get_pipeline(c: &mut Criterion) {
    let block = random_bytes(MIB, 6);
    let e = erasure(2, 1);
    let shards = e.encode(block.clone());
    let input: Vec<Option<Bytes>> = vec![Some(shards[0].clone()), Some(shards[1].clone()), None];
    let mut g = c.benchmark_group("get_pipeline");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("2+1", |b| {
        b.iter(|| {
            let input = black_box(input.clone());
            for shard in input.iter().take(2).flatten() {
                black_box(block_hash(shard));
            }
            e.decode(input, block.len())
                .expect("all data shards present")
        })
    });
    g.finish();
}

fn shard_write(c: &mut Criterion) {
    const BLOCKS: usize = 64;
    let profile = ErasureProfile { k: 2, m: 1 };
    let shard = random_bytes(MIB / 2, 7);
    let hash = Bytes::copy_from_slice(&block_hash(&shard));
    let mut body: Vec<Bytes> = Vec::with_capacity(2 * BLOCKS);
    for _ in 0..BLOCKS {
        body.push(shard.clone());
        body.push(hash.clone());
    }
    let header_len = ShardHeader {
        profile,
        shard_index: 0,
        block_size: MIB as u32,
        version: VersionId(0),
    }
    .encode()
    .len();
    let total = (header_len + BLOCKS * (shard.len() + hash.len())) as u64;

    let dir = tempfile::tempdir().expect("create a temporary directory for the shard store");
    let store = ShardStore::open(dir.path()).expect("open the shard store");
    let rt = tokio::runtime::Runtime::new().expect("start a tokio runtime");
    let mut next_version: u128 = 1;

    let mut g = c.benchmark_group("shard_write");
    g.throughput(Throughput::Bytes(total))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("64MiB_fsync", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let version = VersionId(next_version);
                next_version += 1;
                let header = ShardHeader {
                    profile,
                    shard_index: 0,
                    block_size: MIB as u32,
                    version,
                }
                .encode();
                let chunks = std::iter::once(header)
                    .chain(body.iter().cloned())
                    .map(Ok::<Bytes, std::io::Error>);
                let stream = futures::stream::iter(chunks);
                let start = Instant::now();
                let written = rt
                    .block_on(store.write(version, 0, stream))
                    .expect("write the shard file");
                elapsed += start.elapsed();
                assert_eq!(written, total, "shard bytes written");
                rt.block_on(store.delete(version, 0))
                    .expect("delete the shard file");
            }
            elapsed
        })
    });
    g.finish();
    drop(rt);
    dir.close().expect("remove the temporary shard directory");
}

criterion_group! {
    name = hotpath;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hash, erasure_encode, erasure_decode, shard_format, put_pipeline, get_pipeline,
        shard_write
}
criterion_main!(hotpath);
