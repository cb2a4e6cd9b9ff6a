//! Valid inputs of every target, made by the real encoders: the start of each corpus
//! (`examples/seeds.rs` writes them to `corpus/<target>/seed-<name>`), and checked by the replay
//! test, so a format change that the seeds no longer follow is noticed.

use std::collections::BTreeMap;

use baobab::codec::checksum::Checksums;
use baobab::codec::shard_format::{block_hash, ShardHeader, ShardLayout};
use baobab::meta::raft::{LogId, SnapshotChunk, StoredMembership, TypeConfig};
use baobab::meta::request::{GetObject, PutObject};
use baobab::meta::snapshot::{SnapshotHeader, SnapshotWriter};
use baobab::meta::state::encode_value;
use baobab::meta::{
    AccessKeyRecord, BucketRecord, Command, CorsRule, GarbageId, GarbageRecord, ObjectData,
    ObjectHeaders, ObjectRecord, PartRef, Query, RequestId, Write,
};
use baobab::types::{BucketId, ErasureProfile, NodeId, VersionId};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership, SnapshotMeta, Vote};
use serde::Serialize;

/// One seed: target, name, bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

fn rpc<T: Serialize>(msg: &T) -> Vec<u8> {
    baobab::rpc::encode(msg).expect("seed encodes").to_vec()
}

fn record<T: Serialize>(value: &T) -> Vec<u8> {
    encode_value(value).expect("seed encodes")
}

/// A complete shard file of shard `index` of an object of `size` bytes, with its size in front.
fn shard_file(k: u8, block_size: u32, size: u64) -> Vec<u8> {
    let header = ShardHeader {
        profile: ErasureProfile { k, m: 1 },
        shard_index: 1,
        block_size,
        version: VersionId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
    };
    let layout = ShardLayout::new(k, block_size, size);
    let mut out = size.to_le_bytes().to_vec();
    out.extend_from_slice(&header.encode());
    for b in 0..layout.n_blocks() {
        let shard = vec![b as u8; layout.shard_len(b) as usize];
        out.extend_from_slice(&shard);
        out.extend_from_slice(&block_hash(&shard));
    }
    out
}

fn object_record(data: ObjectData) -> ObjectRecord {
    let mut headers = ObjectHeaders {
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    headers.user_meta.insert("color".into(), "blue".into());
    headers.tags.insert("k".into(), "v".into());
    ObjectRecord::new(
        VersionId(42),
        5,
        "\"5d41402abc4b2a76b9719d911017c592\"".into(),
        1_700_000_000_000,
        headers,
        Checksums {
            crc32: Some("NhCmhg==".into()),
            ..Default::default()
        },
        data,
    )
}

fn sharded() -> ObjectData {
    ObjectData::Sharded {
        k: 2,
        m: 1,
        block_size: 1 << 20,
        shard_nodes: vec![Some(NodeId(1)), None, Some(NodeId(3))],
        digests: Default::default(),
    }
}

/// Parts inside parts, `depth` deep: no writer makes it, but `ObjectData` is recursive, so a
/// decoder's stack use is bounded only by the MessagePack depth limit (1024 arrays and maps).
fn nested_parts(depth: usize) -> ObjectData {
    let mut data = ObjectData::Inline(b"x".to_vec());
    for n in 0..depth {
        data = ObjectData::Parts(vec![PartRef {
            number: n as u32,
            version: VersionId(n as u128),
            size: 1,
            etag: String::new(),
            data,
        }]);
    }
    data
}

fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> StoredMembership {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|i| (i, BasicNode::new(format!("127.0.0.1:390{i}"))))
        .collect();
    let m = Membership::new(vec![nodes.keys().copied().collect()], nodes);
    StoredMembership::new(Some(log_id(1, 1)), m)
}

fn write_cmd() -> Write {
    Write {
        id: Some(RequestId { client: 7, seq: 1 }),
        cmd: Command::PutObject(PutObject {
            bucket: BucketId(42),
            key: "2024/cat.jpg".into(),
            record: object_record(sharded()),
            condition: None,
        }),
    }
}

/// A snapshot file of two entries, as a follower receives it.
fn snapshot_file() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.snap");
    let header = SnapshotHeader {
        last_applied: Some(log_id(2, 9)),
        last_membership: membership(),
    };
    let mut w = SnapshotWriter::create(&path, &header).expect("create");
    w.push(b"b/photos", &record(&bucket())).expect("push");
    w.push(
        b"o/000000000000002a/cat",
        &record(&object_record(sharded())),
    )
    .expect("push");
    w.finish().expect("finish");
    std::fs::read(&path).expect("read")
}

fn bucket() -> BucketRecord {
    BucketRecord {
        name: "photos".into(),
        id: BucketId(42),
        owner: "BKIDOWNER".into(),
        created_ms: 1_700_000_000_000,
        grants: BTreeMap::new(),
        tags: [("team".to_string(), "a".to_string())].into(),
        cors: vec![CorsRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into()],
            ..Default::default()
        }],
    }
}

fn append_request() -> openraft::raft::AppendEntriesRequest<TypeConfig> {
    openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 8)),
        entries: vec![
            openraft::Entry {
                log_id: log_id(2, 9),
                payload: EntryPayload::Normal(baobab::meta::Proposal::Writes {
                    at_ms: 1_700_000_000_000,
                    writes: vec![write_cmd()],
                }),
            },
            openraft::Entry {
                log_id: log_id(2, 10),
                payload: EntryPayload::Membership(membership().membership().clone()),
            },
        ],
        leader_commit: Some(log_id(2, 8)),
    }
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out: Vec<Seed> = vec![
        ("shard_format", "three-blocks", shard_file(2, 1024, 2500)),
        ("shard_format", "empty-object", shard_file(4, 1 << 20, 0)),
        ("shard_format", "one-byte", shard_file(1, 64, 1)),
        ("rpc_messages", "write-put-object", rpc(&write_cmd())),
        (
            "rpc_messages",
            "query-get-object",
            rpc(&Query::GetObject(GetObject {
                bucket: BucketId(42),
                key: "a".into(),
            })),
        ),
        (
            "rpc_messages",
            "write-reply",
            rpc(&baobab::meta::WriteReply::NotLeader { leader: Some(2) }),
        ),
        ("rpc_messages", "append-entries", rpc(&append_request())),
        (
            "rpc_messages",
            "vote",
            rpc(&openraft::raft::VoteRequest::<u64>::new(
                Vote::new(3, 2),
                Some(log_id(2, 10)),
            )),
        ),
        (
            "rpc_messages",
            "snapshot-chunk",
            rpc(&SnapshotChunk {
                vote: Vote::new_committed(2, 1),
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(2, 9)),
                    last_membership: membership(),
                    snapshot_id: "2-9-1".into(),
                },
                offset: 0,
                data: b"BBSNAP\x02".to_vec(),
                done: false,
            }),
        ),
        (
            "rpc_messages",
            "rejoin",
            rpc(&baobab::meta::RejoinRequest {
                node: 3,
                addr: "127.0.0.1:3903".into(),
                step: baobab::meta::RejoinStep::Demote,
            }),
        ),
        (
            "rpc_messages",
            "shard-list-page",
            rpc(&baobab::shard::ShardListPage {
                shards: vec![baobab::shard::ShardName {
                    version: VersionId(5),
                    shard_index: 2,
                }],
                next_after: None,
            }),
        ),
        (
            "rpc_messages",
            "node-status",
            rpc(&baobab_storage_node::NodeStatus {
                node_id: 1,
                leader: Some(2),
                raft_fatal: None,
            }),
        ),
        (
            "rpc_messages",
            "shard-name",
            b"0123456789abcdef0123456789abcdef.3".to_vec(),
        ),
        ("meta_records", "bucket", record(&bucket())),
        (
            "meta_records",
            "object-sharded",
            record(&object_record(sharded())),
        ),
        (
            "meta_records",
            "object-parts",
            record(&object_record(ObjectData::Parts(vec![PartRef {
                number: 1,
                version: VersionId(43),
                size: 5,
                etag: "\"e\"".into(),
                data: ObjectData::Inline(b"hello".to_vec()),
            }]))),
        ),
        (
            "meta_records",
            "access-key",
            record(&AccessKeyRecord {
                key_id: "BKIDFUZZ".into(),
                secret: baobab::codec::seal::seal(
                    &baobab::codec::seal::SealKey::new([7; 32]),
                    "fuzz",
                    "secret",
                    [1; 12],
                ),
                name: "fuzz".into(),
                created_ms: 1,
                allow_create_bucket: true,
            }),
        ),
        (
            "meta_records",
            "garbage",
            record(&GarbageRecord {
                id: GarbageId {
                    retired_ms: 5,
                    version: VersionId(6),
                },
                shard_nodes: vec![Some(NodeId(1)), None, Some(NodeId(3))],
            }),
        ),
        (
            "meta_records",
            "object-parts-nested-past-the-depth-limit",
            record(&object_record(nested_parts(400))),
        ),
        ("meta_records", "membership", record(&membership())),
        ("meta_records", "log-id", record(&log_id(3, 99))),
        ("meta_records", "snapshot-file", snapshot_file()),
    ];
    out.extend(config_seeds());
    out.extend(s3_seeds());
    out
}

fn config_seeds() -> Vec<Seed> {
    let storage = r#"roles = ["storage", "gateway"]
node_id = 1
rpc_listen = "0.0.0.0:3901"
data_dir = "/var/lib/baobab"
cluster_secret = "0123456789abcdef0123456789abcdef"

[erasure]
k = 2
m = 1

[s3]
listen = "0.0.0.0:3900"
region = "garage"

[[nodes]]
id = 1
site = "paris"
rpc_addr = "10.0.0.1:3901"

[[nodes]]
id = 2
site = "lyon"
rpc_addr = "10.0.0.2:3901"

[[nodes]]
id = 3
site = "lille"
rpc_addr = "10.0.0.3:3901"
weight = 2
"#;
    vec![("config", "three-sites", storage.as_bytes().to_vec())]
}

fn s3_seed(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(body);
    out
}

/// An XML body seed: selector 5, the document kind, the document.
fn xml(kind: u8, doc: &str) -> Vec<u8> {
    let mut out = vec![5u8, kind];
    out.extend_from_slice(doc.as_bytes());
    out
}

fn s3_seeds() -> Vec<Seed> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let policy = r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{"bucket":"bucket"},["starts-with","$key","user/"],["content-length-range",1,1048576],["eq","$content-type","image/png"]]}"#;
    let b = baobab_gateway::fuzzing::FORM_BOUNDARY;
    let form = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuser/${{filename}}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"Content-Type\"\r\n\r\nimage/png\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"x-amz-meta-color\"\r\n\r\nblue\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"tagging\"\r\n\r\n<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"x-amz-algorithm\"\r\n\r\nAWS4-HMAC-SHA256\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"x-amz-credential\"\r\n\r\nBKID/20260101/garage/s3/aws4_request\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"x-amz-date\"\r\n\r\n20260101T000000Z\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\n{}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"x-amz-signature\"\r\n\r\n00ff\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\dir\\\\cat.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n\
         --{b}--\r\n",
        b64(policy.as_bytes())
    );
    let mut post = vec![0u8, 13];
    post.extend_from_slice(form.as_bytes());
    let mut range = vec![3u8];
    range.extend_from_slice(&1000u64.to_le_bytes());
    range.extend_from_slice(b"bytes=0-499");
    let mut suffix = vec![3u8];
    suffix.extend_from_slice(&1000u64.to_le_bytes());
    suffix.extend_from_slice(b"bytes=-200");
    let mut checksum = vec![8u8];
    checksum.extend_from_slice(&(5u64 << 20).to_le_bytes());
    checksum.extend_from_slice(b"CRC32\0NhCmhg==");
    vec![
        ("s3_bodies", "post-form", post),
        (
            "s3_bodies",
            "post-policy",
            s3_seed(1, format!("{policy}\0key=user/a\ncontent-type=image/png").as_bytes()),
        ),
        ("s3_bodies", "tagging-header", s3_seed(2, b"a=1&b%20c=d%2Fe&empty=")),
        ("s3_bodies", "range", range),
        ("s3_bodies", "range-suffix", suffix),
        (
            "s3_bodies",
            "copy-source",
            s3_seed(4, b"/photos/2024/cat%20one.jpg?versionId=abc"),
        ),
        (
            "s3_bodies",
            "xml-complete-multipart",
            xml(0, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag><ChecksumCRC32>NhCmhg==</ChecksumCRC32></Part></CompleteMultipartUpload>"),
        ),
        (
            "s3_bodies",
            "xml-delete",
            xml(1, "<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object><Object><Key>b&amp;c</Key><VersionId>null</VersionId></Object></Delete>"),
        ),
        (
            "s3_bodies",
            "xml-tagging",
            xml(2, "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"),
        ),
        (
            "s3_bodies",
            "xml-cors",
            xml(3, "<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader><MaxAgeSeconds>300</MaxAgeSeconds></CORSRule></CORSConfiguration>"),
        ),
        (
            "s3_bodies",
            "xml-create-bucket",
            xml(4, "<CreateBucketConfiguration><LocationConstraint>garage</LocationConstraint></CreateBucketConfiguration>"),
        ),
        (
            "s3_bodies",
            "cors-preflight",
            s3_seed(6, b"https://app.example.com\0PUT\0Content-Type, X-Amz-Date\0https://*.example.com\0*"),
        ),
        (
            "s3_bodies",
            "request-head",
            s3_seed(7, b"GET\0/photos/cat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z&X-Amz-Expires=86400\0host: photos.s3.example.com\ndate: Thu, 01 Jan 2026 00:00:00 GMT"),
        ),
        ("s3_bodies", "checksum", checksum),
    ]
}
