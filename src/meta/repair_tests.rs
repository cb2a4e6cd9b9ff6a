use super::*;
use crate::meta::model::{Command, ObjectHeaders, Query, QueryResult, UploadRecord};
use crate::meta::request::*;
use crate::meta::state::mem::MemState;
use crate::meta::state::query;
use crate::types::BucketId;

fn sharded(nodes: &[Option<u64>]) -> ObjectData {
    ObjectData::Sharded {
        k: 2,
        m: 1,
        block_size: 1024,
        shard_nodes: nodes.iter().map(|n| n.map(NodeId)).collect(),
        digests: Default::default(),
    }
}

fn setup() -> MemState {
    let mut s = MemState::default();
    s.run(&Command::CreateBucket(CreateBucket {
        name: "b".into(),
        id: BucketId(7),
        owner: "o".into(),
        created_ms: 1,
    }));
    s
}

fn put(s: &mut MemState, key: &str, version: u128, data: ObjectData) {
    let mut record = ObjectRecord::for_tests(version, 3000, "e".into(), vec![]);
    record.data = data;
    s.run(&Command::PutObject(PutObject {
        bucket: BucketId(7),
        key: key.into(),
        record,
        condition: None,
    }));
}

fn report_of(s: &MemState) -> RepairReport {
    match query(s, &Query::RepairStatus(RepairStatus)).expect("query") {
        QueryResult::Repair(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn shards_of(s: &MemState, key: &str) -> Vec<Option<NodeId>> {
    let record: ObjectRecord = get_decoded(s, &object_key(BucketId(7), key))
        .expect("get")
        .expect("record");
    match record.data {
        ObjectData::Sharded { shard_nodes, .. } => shard_nodes,
        other => panic!("not sharded: {other:?}"),
    }
}

#[test]
fn a_degraded_write_is_queued_with_its_commit() {
    let mut s = setup();
    put(&mut s, "whole", 1, sharded(&[Some(1), Some(2), Some(3)]));
    assert_eq!(report_of(&s).queued_pieces, 0);
    put(&mut s, "degraded", 2, sharded(&[Some(1), None, Some(3)]));
    let r = report_of(&s);
    assert_eq!((r.queued_pieces, r.shards_unplaced), (1, 1));
    assert_eq!(r.pending[0].version, VersionId(2));
    assert_eq!(r.pending[0].owner, object_key(BucketId(7), "degraded"));
    assert_eq!(
        r.pending[0].damage,
        BTreeMap::from([(1u8, ShardDamage::Unplaced)])
    );
    assert_eq!(due(&s, 1000, 10).expect("due").len(), 1);
}

#[test]
fn healing_moves_the_record_only_from_what_the_worker_saw() {
    let mut s = setup();
    put(&mut s, "k", 2, sharded(&[Some(1), None, Some(3)]));
    let before = shards_of(&s, "k");
    let after = vec![Some(NodeId(1)), Some(NodeId(4)), Some(NodeId(3))];
    // A stale view (the record changed meanwhile) is refused and the entry stays.
    let stale = HealResult::Healed {
        before: vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(3))],
        after: after.clone(),
        shards: 1,
        bytes: 10,
    };
    assert_eq!(
        s.run(&Command::HealProgress(HealProgress {
            version: VersionId(2),
            result: stale
        })),
        CommandResult::PreconditionFailed
    );
    assert_eq!(report_of(&s).queued_pieces, 1);
    let healed = HealResult::Healed {
        before,
        after: after.clone(),
        shards: 1,
        bytes: 10,
    };
    let cmd = Command::HealProgress(HealProgress {
        version: VersionId(2),
        result: healed,
    });
    assert_eq!(s.run(&cmd), CommandResult::Ok);
    assert_eq!(shards_of(&s, "k"), after);
    let r = report_of(&s);
    assert_eq!(r.queued_pieces, 0);
    assert_eq!((r.stats.healed_shards, r.stats.healed_pieces), (1, 1));
    // Repeated: no entry, no change.
    assert_eq!(s.run(&cmd), CommandResult::Ok);
    assert_eq!(report_of(&s).stats.healed_shards, 1);
}

#[test]
fn findings_merge_and_stale_ones_are_dropped() {
    let mut s = setup();
    put(&mut s, "k", 5, sharded(&[Some(1), Some(2), Some(3)]));
    let finding = |version: u128, owner: HealOwner, i: u8, d: ShardDamage| HealReport {
        version: VersionId(version),
        owner,
        damage: BTreeMap::from([(i, d)]),
    };
    let by_name = HealOwner::Object {
        bucket: BucketId(7),
        key: "k".into(),
    };
    s.run(&Command::QueueHeal(QueueHeal {
        reports: vec![
            finding(5, by_name.clone(), 0, ShardDamage::Missing),
            // An older version of the key: no record holds it.
            finding(4, by_name.clone(), 1, ShardDamage::Missing),
            // A bucket that does not exist.
            finding(
                5,
                HealOwner::Object {
                    bucket: BucketId(99),
                    key: "k".into(),
                },
                1,
                ShardDamage::Missing,
            ),
        ],
    }));
    s.run(&Command::QueueHeal(QueueHeal {
        reports: vec![finding(
            5,
            HealOwner::Record(object_key(BucketId(7), "k")),
            2,
            ShardDamage::Corrupt,
        )],
    }));
    let r = report_of(&s);
    assert_eq!(
        (r.queued_pieces, r.shards_missing, r.shards_corrupt),
        (1, 1, 1)
    );
    // A failure backs the entry off; new evidence makes it due again.
    s.run_at(
        2000,
        &Command::HealProgress(HealProgress {
            version: VersionId(5),
            result: HealResult::Failed {
                error: "x".repeat(1000),
                retry_at_ms: 60_000,
            },
        }),
    );
    assert!(due(&s, 2000, 10).expect("due").is_empty());
    let entry = &report_of(&s).pending[0];
    assert_eq!(entry.attempts, 1);
    assert!(entry.last_error.as_ref().expect("error").len() < 400);
    s.run_at(
        3000,
        &Command::QueueHeal(QueueHeal {
            reports: vec![finding(5, by_name, 0, ShardDamage::Missing)],
        }),
    );
    assert_eq!(due(&s, 3000, 10).expect("due").len(), 1);
    // Overwritten: the worker reports it gone and the entry goes.
    put(&mut s, "k", 6, sharded(&[Some(1), Some(2), Some(3)]));
    assert_eq!(
        piece(&s, &object_key(BucketId(7), "k"), VersionId(5)).expect("piece"),
        None
    );
    s.run(&Command::HealProgress(HealProgress {
        version: VersionId(5),
        result: HealResult::Gone,
    }));
    assert_eq!(report_of(&s).queued_pieces, 0);
}

#[test]
fn a_completed_upload_takes_its_parts_entries_along() {
    let mut s = setup();
    s.run(&Command::CreateUpload(CreateUpload {
        bucket: BucketId(7),
        upload: UploadRecord {
            upload_id: "u1".into(),
            key: "big".into(),
            initiated_ms: 1,
            initiator: "o".into(),
            headers: ObjectHeaders::default(),
            checksum_algorithm: None,
            checksum_type: None,
        },
    }));
    for (n, nodes) in [
        (1u32, [Some(1), None, Some(3)]),
        (2, [Some(1), Some(2), Some(3)]),
    ] {
        s.run(&Command::PutPart(PutPart {
            bucket: BucketId(7),
            key: "big".into(),
            upload_id: "u1".into(),
            part: PartRecord {
                number: n,
                version: VersionId(100 + n as u128),
                size: 3000,
                etag: "e".into(),
                last_modified_ms: 1,
                checksums: Default::default(),
                data: sharded(&nodes),
            },
        }));
    }
    let r = report_of(&s);
    assert_eq!(r.queued_pieces, 1);
    assert!(r.pending[0].owner.starts_with(b"p/"));
    s.run(&Command::CompleteUpload(CompleteUpload {
        bucket: BucketId(7),
        key: "big".into(),
        upload_id: "u1".into(),
        parts: vec![(1, VersionId(101)), (2, VersionId(102))],
        record: ObjectRecord::for_tests(9, 0, "x-2".into(), vec![]),
        condition: None,
    }));
    let entry = report_of(&s).pending[0].clone();
    let owner = object_key(BucketId(7), "big");
    assert_eq!(entry.owner, owner);
    let p = piece(&s, &owner, VersionId(101))
        .expect("piece")
        .expect("held");
    assert_eq!(p.size, 3000);
    // Healing the part rewrites the part inside the object's record.
    s.run(&Command::HealProgress(HealProgress {
        version: VersionId(101),
        result: HealResult::Healed {
            before: vec![Some(NodeId(1)), None, Some(NodeId(3))],
            after: vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(3))],
            shards: 1,
            bytes: 1500,
        },
    }));
    let p = piece(&s, &owner, VersionId(101))
        .expect("piece")
        .expect("held");
    assert_eq!(p.data, sharded(&[Some(1), Some(2), Some(3)]));
    assert_eq!(report_of(&s).queued_pieces, 0);
}

#[test]
fn walk_pages_through_objects_then_parts() {
    let mut s = setup();
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        put(
            &mut s,
            key,
            10 + i as u128,
            sharded(&[Some(1), Some(2), Some(3)]),
        );
    }
    let mut inline = ObjectRecord::for_tests(20, 3, "e".into(), b"abc".to_vec());
    inline.data = ObjectData::Inline(b"abc".to_vec());
    s.run(&Command::PutObject(PutObject {
        bucket: BucketId(7),
        key: "d-inline".into(),
        record: inline,
        condition: None,
    }));
    let (page, cursor) = walk(&s, None, 2).expect("walk");
    assert_eq!(
        page.iter().map(|p| p.version.0).collect::<Vec<_>>(),
        vec![10, 11]
    );
    let (page, cursor) = walk(&s, cursor.as_deref(), 2).expect("walk");
    assert_eq!(
        page.iter().map(|p| p.version.0).collect::<Vec<_>>(),
        vec![12]
    );
    let (page, cursor) = walk(&s, cursor.as_deref(), 2).expect("walk");
    assert!(page.is_empty());
    assert_eq!(cursor, None);
}

#[test]
fn scrub_passes_accumulate_and_close() {
    let mut s = setup();
    let page = |started: i64, cursor: Option<&[u8]>, verified: u64, bad: u64| ScrubPage {
        pass_started_ms: started,
        cursor: cursor.map(|c| c.to_vec()),
        counts: ScrubCounts {
            shards_verified: verified,
            bytes_verified: verified * 10,
            shards_bad: bad,
            shards_unchecked: 0,
        },
    };
    s.run(&Command::ScrubProgress(ScrubProgress {
        page: page(100, Some(b"o/x"), 3, 1),
    }));
    s.run_at(
        5000,
        &Command::ScrubProgress(ScrubProgress {
            page: page(100, None, 2, 0),
        }),
    );
    let st = report_of(&s).stats.scrub;
    assert_eq!(st.passes_completed, 1);
    let last = st.last_pass.expect("a pass");
    assert_eq!(
        (
            last.counts.shards_verified,
            last.counts.shards_bad,
            last.finished_ms
        ),
        (5, 1, 5000)
    );
    // A new pass starts from zero; a late page of the old one is refused.
    s.run(&Command::ScrubProgress(ScrubProgress {
        page: page(200, Some(b"o/y"), 1, 0),
    }));
    assert_eq!(
        s.run(&Command::ScrubProgress(ScrubProgress {
            page: page(100, Some(b"o/z"), 9, 9),
        })),
        CommandResult::PreconditionFailed
    );
    let st = report_of(&s).stats.scrub;
    assert_eq!((st.counts.shards_verified, st.passes_completed), (1, 1));
}
