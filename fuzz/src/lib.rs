//! The checks the fuzz targets run: each takes any bytes and must return without panicking,
//! hanging or allocating without bound. The libFuzzer binaries (`fuzz_targets/`, nightly) and
//! the corpus replay (`tests/replay.rs`, stable) call the same functions.
//!
//! Inputs that carry more than one value are split here: a leading selector byte, a little-endian
//! `u64`, or NUL-separated strings (see each check).

use std::io::Write as _;

use baobab::codec::seal::{self, SealKey};
use baobab::codec::shard_format::{block_hash, ShardHeader, ShardLayout, HASH_LEN, HEADER_LEN};
use baobab::meta::raft::{
    AppendReply, ChunkReply, Entry, LogId, SnapshotChunk, StoredMembership, TypeConfig, VoteReply,
};
use baobab::meta::snapshot::SnapshotReader;
use baobab::meta::{self, dedup::DedupRecord, repair};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::{de::DeserializeOwned, Serialize};

pub mod seeds;

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory of its corpus, the binary's name) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("shard_format", shard_format),
    ("rpc_messages", rpc_messages),
    ("meta_records", meta_records),
    ("config", config),
    ("s3_bodies", s3_bodies),
];

/// A leading little-endian `u64` (zero-padded when short) and the rest.
fn split_u64(data: &[u8]) -> (u64, &[u8]) {
    let n = data.len().min(8);
    let mut le = [0u8; 8];
    le[..n].copy_from_slice(&data[..n]);
    (u64::from_le_bytes(le), &data[n..])
}

/// A shard file as a node reads it back: `object size (u64 LE) ‖ file bytes`. The header, then
/// the walk `shard::verify` does (layout from the header and the record's object size, every
/// block's record and hash) and the byte ranges a ranged read asks for.
pub fn shard_format(data: &[u8]) {
    let (object_size, file) = split_u64(data);
    let Ok(header) = ShardHeader::decode(file) else {
        return;
    };
    let encoded = header.encode();
    assert_eq!(encoded.len() as u64, HEADER_LEN);
    assert_eq!(
        ShardHeader::decode(&encoded),
        Ok(header),
        "header round trip"
    );

    let layout = ShardLayout::new(header.profile.k, header.block_size, object_size);
    let n_blocks = layout.n_blocks();
    if n_blocks > 0 {
        let (start, end) = layout.records_range(n_blocks - 1, n_blocks);
        assert!(start <= end);
        let _ = layout.records_range(0, n_blocks);
    }
    if layout.file_len() != file.len() as u64 {
        return;
    }
    let mut at = HEADER_LEN;
    for b in 0..n_blocks {
        assert_eq!(
            layout.record_offset(b),
            at,
            "block {b} starts where the last ended"
        );
        let len = layout.shard_len(b);
        let record = &file[at as usize..(at + len + HASH_LEN) as usize];
        let (shard, hash) = record.split_at(len as usize);
        let _intact = block_hash(shard) == hash;
        at += len + HASH_LEN;
    }
    assert_eq!(at, file.len() as u64, "the records fill the file");
}

/// Decodes `bytes` as a `T` the way `rpc::decode` does; what decodes must encode and decode again.
fn rpc_round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(value) = baobab::rpc::decode::<T>(bytes) else {
        return;
    };
    let again = baobab::rpc::encode(&value).expect("a decoded message encodes");
    baobab::rpc::decode::<T>(&again).expect("an encoded message decodes");
}

/// The same bytes through every message decoder of the internal RPC: metadata writes and reads
/// and their replies, the Raft messages, the rejoin messages, shard listing pages and checks,
/// node status.
pub fn rpc_messages(data: &[u8]) {
    rpc_round_trip::<meta::Write>(data);
    rpc_round_trip::<meta::WriteReply>(data);
    rpc_round_trip::<meta::Query>(data);
    rpc_round_trip::<meta::ReadReply>(data);
    rpc_round_trip::<AppendEntriesRequest<TypeConfig>>(data);
    rpc_round_trip::<AppendReply>(data);
    rpc_round_trip::<VoteRequest<u64>>(data);
    rpc_round_trip::<VoteReply>(data);
    rpc_round_trip::<SnapshotChunk>(data);
    rpc_round_trip::<ChunkReply>(data);
    rpc_round_trip::<meta::ProbeReply>(data);
    rpc_round_trip::<meta::RejoinRequest>(data);
    rpc_round_trip::<meta::RejoinReply>(data);
    rpc_round_trip::<baobab::shard::ShardListPage>(data);
    rpc_round_trip::<baobab::shard::ShardCheck>(data);
    rpc_round_trip::<baobab_storage_node::NodeStatus>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(name) = baobab::shard::ShardName::parse(s) {
            assert_eq!(name.to_string(), s, "a shard name parses only as it prints");
        }
    }
}

/// Decodes `bytes` as a stored `T` (`state::decode_value`); what decodes must encode and
/// decode again to an equal value.
fn record_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Option<T> {
    let value = meta::state::decode_value::<T>(bytes).ok()?;
    let again = meta::state::encode_value(&value).expect("a decoded record encodes");
    let back = meta::state::decode_value::<T>(&again).expect("an encoded record decodes");
    assert_eq!(back, value, "record round trip");
    Some(value)
}

/// Decodes `bytes` as a stored `T` that has no `PartialEq`.
fn record_decodes<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = meta::state::decode_value::<T>(bytes) {
        let again = meta::state::encode_value(&value).expect("a decoded record encodes");
        meta::state::decode_value::<T>(&again).expect("an encoded record decodes");
    }
}

/// The same bytes through every record decoder of what RocksDB holds (state machine records,
/// Raft log entries and metadata), the sealed secret of an access key, and, when they start
/// like one, the snapshot file format.
pub fn meta_records(data: &[u8]) {
    record_round_trip::<meta::BucketRecord>(data);
    if let Some(key) = record_round_trip::<meta::AccessKeyRecord>(data) {
        let _ = seal::open(&SealKey::new([7; 32]), "fuzz", &key.secret);
    }
    record_round_trip::<meta::ObjectRecord>(data);
    record_round_trip::<meta::UploadRecord>(data);
    record_round_trip::<meta::PartRecord>(data);
    record_round_trip::<meta::GarbageRecord>(data);
    record_round_trip::<DedupRecord>(data);
    record_round_trip::<repair::HealRecord>(data);
    record_round_trip::<repair::RepairStats>(data);
    record_round_trip::<LogId>(data);
    record_round_trip::<Option<LogId>>(data);
    record_round_trip::<(LogId, u64)>(data);
    record_round_trip::<StoredMembership>(data);
    record_decodes::<Entry>(data);
    record_decodes::<openraft::Vote<u64>>(data);
    record_decodes::<openraft::SnapshotMeta<u64, openraft::BasicNode>>(data);
    if data.starts_with(b"BBSNAP") {
        snapshot_file(data);
    }
}

/// Reads `data` as a snapshot file to its end or its first error.
fn snapshot_file(data: &[u8]) {
    let mut file = tempfile::tempfile().expect("a temp file for the snapshot");
    file.write_all(data).expect("write the snapshot");
    std::io::Seek::rewind(&mut file).expect("rewind");
    let Ok((mut reader, _header)) = SnapshotReader::open(file) else {
        return;
    };
    // Every frame has a 4-byte length, so a file of n bytes has fewer than n frames.
    for _ in 0..=data.len() {
        match reader.next_batch() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
    panic!("a snapshot file of {} bytes did not end", data.len());
}

/// A `baobab.toml` as `baobab server` reads it: parsed, validated, and, when valid, turned into
/// what the roles are started with (members, placement view, worker settings).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = toml::from_str::<baobab_cli::config::Config>(text) else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    let _ = cfg.members();
    let _ = cfg.cluster_view();
    let _ = cfg.gc();
    let _ = cfg.repair();
}

/// NUL-separated UTF-8 strings (None if not UTF-8).
fn strings(data: &[u8]) -> Option<Vec<&str>> {
    std::str::from_utf8(data)
        .ok()
        .map(|s| s.split('\0').collect())
}

/// The S3 request bodies and headers the gateway parses: the first byte picks the parser.
pub fn s3_bodies(data: &[u8]) {
    use baobab_gateway::fuzzing as g;
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 9 {
        // chunk length ‖ multipart/form-data body
        0 => {
            if let Some((&chunk, body)) = rest.split_first() {
                g::post_form(body, usize::from(chunk) + 1);
            }
        }
        // policy JSON \0 fields (`name=value` lines)
        1 => {
            if let Some(s) = strings(rest) {
                g::post_policy(s[0], s.get(1).copied().unwrap_or(""));
            }
        }
        2 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                g::tagging_header(s);
            }
        }
        // object size (u64 LE) ‖ Range or x-amz-copy-source-range value
        3 => {
            let (size, value) = split_u64(rest);
            if let Ok(s) = std::str::from_utf8(value) {
                g::ranges(s, size);
            }
        }
        4 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                g::copy_source(s);
            }
        }
        // document kind ‖ XML
        5 => {
            if let Some((&kind, xml)) = rest.split_first() {
                g::xml_body(kind, xml);
            }
        }
        // origin \0 method \0 requested headers \0 rule patterns...
        6 => {
            if let Some(s) = strings(rest) {
                if s.len() >= 3 {
                    g::cors_preflight(s[0], s[1], s[2], &s[3..]);
                }
            }
        }
        // method \0 URI \0 header lines
        7 => {
            if let Some(s) = strings(rest) {
                if s.len() >= 3 {
                    g::request_head(s[0], s[1], s[2]);
                }
            }
        }
        // part length (u64 LE) ‖ algorithm name \0 value
        _ => {
            let (len, rest) = split_u64(rest);
            if let Some(s) = strings(rest) {
                g::checksum_value(s[0], s.get(1).copied().unwrap_or(""), len);
            }
        }
    }
}
