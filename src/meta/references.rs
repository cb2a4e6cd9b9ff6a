//! Which data versions the state machine still references, for the garbage collector of shard
//! files (`crate::gc`): a version is referenced while an object record (`o/`), a part of an
//! upload in progress (`p/`) or the retire queue (`g/`, which deletes it later itself) names
//! it. Pure and read-only, like [`super::state`].
//!
//! The three ranges are read through one cursor, so over RocksDB one implicit snapshot: a
//! command that moves a version from one range to another (a completion turns parts into an
//! object, an overwrite queues the old object) is seen wholly before or wholly after.

use std::collections::HashSet;

use super::error::MetaError;
use super::garbage::GARBAGE_PREFIX;
use super::model::{GarbageRecord, ObjectData, ObjectRecord, PartRecord};
use super::state::{decode_value, StateRead};
use crate::types::VersionId;

const OBJECTS_PREFIX: &[u8] = b"o/";
const PARTS_PREFIX: &[u8] = b"p/";

/// The members of `candidates` that some record references. Scans every object, part and
/// retire-queue record (stops early once all candidates are found).
pub fn referenced_versions(
    state: &dyn StateRead,
    candidates: &HashSet<VersionId>,
) -> Result<HashSet<VersionId>, MetaError> {
    let mut found = HashSet::new();
    if candidates.is_empty() {
        return Ok(found);
    }
    let mut cursor = state.cursor();
    // Key order, so the cursor only moves forward: g/ < o/ < p/.
    for (prefix, range) in [
        (GARBAGE_PREFIX, Range::Garbage),
        (OBJECTS_PREFIX, Range::Objects),
        (PARTS_PREFIX, Range::Parts),
    ] {
        cursor.seek(prefix);
        while let Some((k, v)) = cursor.current()? {
            if !k.starts_with(prefix) {
                break;
            }
            let named: Vec<VersionId> = match range {
                Range::Garbage => vec![decode_value::<GarbageRecord>(v)?.id.version],
                Range::Objects => {
                    let record: ObjectRecord = decode_value(v)?;
                    versions_of(record.version, &record.data)
                }
                Range::Parts => {
                    let part: PartRecord = decode_value(v)?;
                    versions_of(part.version, &part.data)
                }
            };
            found.extend(named.into_iter().filter(|v| candidates.contains(v)));
            if found.len() == candidates.len() {
                return Ok(found);
            }
            cursor.next();
        }
    }
    Ok(found)
}

/// The record's own version and those of its pieces (a multipart object's parts).
fn versions_of(version: VersionId, data: &ObjectData) -> Vec<VersionId> {
    std::iter::once(version)
        .chain(data.pieces(version).into_iter().map(|(v, _)| v))
        .collect()
}

/// The ranges of the keyspace whose records name data versions.
#[derive(Clone, Copy)]
enum Range {
    Garbage,
    Objects,
    Parts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::model::{Command, CommandResult, ObjectData, ObjectHeaders, UploadRecord};
    use crate::meta::request::*;
    use crate::meta::state::mem::MemState;
    use crate::types::{BucketId, NodeId};

    fn sharded() -> ObjectData {
        ObjectData::Sharded {
            k: 2,
            m: 1,
            block_size: 1 << 20,
            shard_nodes: vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(3))],
            digests: Default::default(),
        }
    }

    fn record(version: u128, data: ObjectData) -> ObjectRecord {
        ObjectRecord::new(
            VersionId(version),
            10,
            "etag".into(),
            1,
            ObjectHeaders::default(),
            Default::default(),
            data,
        )
    }

    fn put(key: &str, version: u128) -> Command {
        Command::PutObject(PutObject {
            bucket: BucketId(1),
            key: key.into(),
            record: record(version, sharded()),
            condition: None,
        })
    }

    fn part(upload_id: &str, number: u32, version: u128) -> Command {
        Command::PutPart(PutPart {
            bucket: BucketId(1),
            key: "multi".into(),
            upload_id: upload_id.into(),
            part: PartRecord {
                number,
                version: VersionId(version),
                size: 10,
                etag: format!("etag{number}"),
                last_modified_ms: 1,
                checksums: Default::default(),
                data: sharded(),
            },
        })
    }

    fn referenced(state: &MemState, versions: &[u128]) -> Vec<u128> {
        let candidates = versions.iter().map(|v| VersionId(*v)).collect();
        let mut found: Vec<u128> = referenced_versions(state, &candidates)
            .expect("scan")
            .into_iter()
            .map(|v| v.0)
            .collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn objects_parts_and_the_retire_queue_reference_their_versions() {
        let mut state = MemState::default();
        let r = state.run(&Command::CreateBucket(CreateBucket {
            name: "b".into(),
            id: BucketId(1),
            owner: "owner".into(),
            created_ms: 1,
        }));
        assert_eq!(r, CommandResult::BucketCreated);
        assert_eq!(state.run(&put("single", 10)), CommandResult::ObjectPut);
        // Overwritten: 11 goes to the retire queue, 12 is the object.
        assert_eq!(state.run(&put("over", 11)), CommandResult::ObjectPut);
        assert_eq!(state.run(&put("over", 12)), CommandResult::ObjectPut);
        // An inline object references nothing on disk, but naming it is harmless.
        let inline = Command::PutObject(PutObject {
            bucket: BucketId(1),
            key: "small".into(),
            record: record(13, ObjectData::Inline(b"hi".to_vec())),
            condition: None,
        });
        assert_eq!(state.run(&inline), CommandResult::ObjectPut);

        // An upload in progress with two parts, and one completed from parts 30 and 31.
        for (upload_id, versions) in [("up1", [20u128, 21]), ("up2", [30, 31])] {
            let create = Command::CreateUpload(CreateUpload {
                bucket: BucketId(1),
                upload: UploadRecord {
                    upload_id: upload_id.into(),
                    key: "multi".into(),
                    initiated_ms: 1,
                    initiator: "owner".into(),
                    headers: ObjectHeaders::default(),
                    checksum_algorithm: None,
                    checksum_type: None,
                },
            });
            assert_eq!(state.run(&create), CommandResult::Ok, "{upload_id}");
            for (i, v) in versions.iter().enumerate() {
                assert_eq!(
                    state.run(&part(upload_id, i as u32 + 1, *v)),
                    CommandResult::PartPut
                );
            }
        }
        let complete = Command::CompleteUpload(CompleteUpload {
            bucket: BucketId(1),
            key: "multi".into(),
            upload_id: "up2".into(),
            parts: vec![(1, VersionId(30)), (2, VersionId(31))],
            record: record(32, ObjectData::Parts(vec![])),
            condition: None,
        });
        assert_eq!(state.run(&complete), CommandResult::UploadCompleted);

        let all = [10, 11, 12, 13, 20, 21, 30, 31, 32, 40, 41];
        assert_eq!(
            referenced(&state, &all),
            vec![10, 11, 12, 13, 20, 21, 30, 31, 32],
            "only 40 and 41 are orphans"
        );
        assert_eq!(referenced(&state, &[40, 41]), Vec::<u128>::new());
        assert_eq!(referenced(&state, &[]), Vec::<u128>::new());

        // Deleted, then retired by the worker: no longer referenced.
        state.run(&Command::DeleteObject(DeleteObject {
            bucket: BucketId(1),
            key: "single".into(),
        }));
        assert_eq!(referenced(&state, &[10]), vec![10], "queued for retirement");
        let queued = crate::meta::garbage::due(&state, i64::MAX, 100).expect("due");
        state.run(&Command::RetireProgress(RetireProgress {
            done: queued.iter().map(|g| g.id).collect(),
            retry: vec![],
        }));
        assert_eq!(referenced(&state, &[10, 11, 12]), vec![12]);
    }
}
