//! Tests of the state machine's apply and queries, over the in-memory state.

use super::mem::MemState;
use super::*;
use crate::meta::model::{RequestId, DEDUP_WINDOW_MS};
use crate::meta::request::*;

fn record(size: u64) -> ObjectRecord {
    ObjectRecord::for_tests(size as u128, size, format!("etag{size}"), vec![1, 2, 3])
}

fn create_bucket(name: &str, owner: &str) -> Command {
    Command::CreateBucket(CreateBucket {
        name: name.into(),
        id: BucketId(7),
        owner: owner.into(),
        created_ms: 5,
    })
}

/// The ids of the tests' buckets: "b" is 7 (see [`create_bucket`]), "c" is 8.
fn id_of(bucket: &str) -> BucketId {
    match bucket {
        "c" => BucketId(8),
        _ => BucketId(7),
    }
}

fn put(bucket: &str, key: &str) -> Command {
    Command::PutObject(PutObject {
        bucket: id_of(bucket),
        key: key.into(),
        record: record(key.len() as u64),
        condition: None,
    })
}

fn state_with(keys: &[&str]) -> MemState {
    let mut s = MemState::default();
    assert_eq!(
        s.run(&create_bucket("b", "alice")),
        CommandResult::BucketCreated
    );
    for k in keys {
        assert!(matches!(s.run(&put("b", k)), CommandResult::ObjectPut));
    }
    s
}

fn list(
    s: &MemState,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max_keys: usize,
) -> ListObjectsPage {
    let q = ListObjectsQuery {
        bucket: BucketId(7),
        prefix: prefix.into(),
        delimiter: delimiter.map(Into::into),
        start_after: start_after.map(Into::into),
        max_keys,
    };
    match query(s, &Query::ListObjects(ListObjects(q))).expect("listing") {
        QueryResult::Objects(p) => p,
        other => panic!("unexpected {other:?}"),
    }
}

fn names(p: &ListObjectsPage) -> (Vec<String>, Vec<String>) {
    (
        p.objects.iter().map(|o| o.key.clone()).collect(),
        p.common_prefixes.clone(),
    )
}

/// Every entry (objects then prefixes, merged in order) by paging with `max_keys`.
fn list_all_paged(
    s: &MemState,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut start_after: Option<String> = None;
    for _ in 0..1000 {
        let p = list(s, prefix, delimiter, start_after.as_deref(), max_keys);
        assert!(p.objects.len() + p.common_prefixes.len() <= max_keys);
        let mut entries: Vec<String> = names(&p)
            .0
            .into_iter()
            .chain(p.common_prefixes.clone())
            .collect();
        entries.sort();
        out.extend(entries);
        if !p.is_truncated {
            return out;
        }
        start_after = p.next_start_after.clone();
        assert!(start_after.is_some());
    }
    panic!("listing did not end");
}

const KEYS: &[&str] = &[
    "a/1",
    "a/2",
    "a/b/3",
    "ab",
    "b",
    "c/x/y",
    "c/z",
    "d",
    "é/1",
    "é/2",
    "日本/語",
    "日本語",
    "z/",
];

#[test]
fn value_codec_round_trip_and_rejects_garbage() {
    let r = record(3);
    let bytes = encode_value(&r).expect("encode");
    assert_eq!(bytes[0], VALUE_FORMAT_V1);
    assert_eq!(decode_value::<ObjectRecord>(&bytes).expect("decode"), r);
    assert!(decode_value::<ObjectRecord>(&[]).is_err());
    assert!(decode_value::<ObjectRecord>(&[2, 0x90]).is_err());
    assert!(decode_value::<ObjectRecord>(&[1, 0xc1, 0xff]).is_err());
}

#[test]
fn prefix_successor_cases() {
    assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
    assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
    assert_eq!(prefix_successor(b"\xff\xff"), None);
}

#[test]
fn list_without_delimiter_is_all_keys_in_byte_order() {
    let s = state_with(KEYS);
    let p = list(&s, "", None, None, 1000);
    let mut sorted: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(names(&p).0, sorted);
    assert!(!p.is_truncated);
    assert_eq!(p.next_start_after.as_deref(), Some("日本語"));
    assert_eq!(p.objects[0].size, 3);
    assert_eq!(p.objects[0].etag, "etag3");
}

#[test]
fn list_with_prefix() {
    let s = state_with(KEYS);
    assert_eq!(
        names(&list(&s, "a", None, None, 1000)).0,
        vec!["a/1", "a/2", "a/b/3", "ab"]
    );
    assert_eq!(
        names(&list(&s, "日本", None, None, 1000)).0,
        vec!["日本/語", "日本語"]
    );
    assert_eq!(
        names(&list(&s, "nothing", None, None, 1000)).0,
        Vec::<String>::new()
    );
}

#[test]
fn list_with_delimiter_groups_common_prefixes() {
    let s = state_with(KEYS);
    let p = list(&s, "", Some("/"), None, 1000);
    assert_eq!(names(&p).0, vec!["ab", "b", "d", "日本語"]);
    assert_eq!(p.common_prefixes, vec!["a/", "c/", "z/", "é/", "日本/"]);
    let p = list(&s, "a/", Some("/"), None, 1000);
    assert_eq!(
        names(&p),
        (vec!["a/1".into(), "a/2".into()], vec!["a/b/".into()])
    );
    let p = list(&s, "c", Some("/"), None, 1000);
    assert_eq!(names(&p), (vec![], vec!["c/".into()]));
    // A multi-byte delimiter.
    let p = list(&s, "", Some("本/"), None, 1000);
    assert_eq!(p.common_prefixes, vec!["日本/"]);
}

#[test]
fn start_after_a_common_prefix_skips_its_group() {
    let s = state_with(KEYS);
    let p = list(&s, "", Some("/"), Some("a/"), 1000);
    assert_eq!(names(&p).0, vec!["ab", "b", "d", "日本語"]);
    assert_eq!(p.common_prefixes, vec!["c/", "z/", "é/", "日本/"]);
    // Inside a group: the group sorts before start_after, so it is not returned again.
    let p = list(&s, "", Some("/"), Some("a/1"), 2);
    assert_eq!(names(&p), (vec!["ab".into(), "b".into()], vec![]));
    assert!(p.is_truncated);
    assert_eq!(p.next_start_after.as_deref(), Some("b"));
    // Without a delimiter start_after is strict.
    assert_eq!(
        names(&list(&s, "a/", None, Some("a/1"), 1000)).0,
        vec!["a/2", "a/b/3"]
    );
}

#[test]
fn pagination_reproduces_the_full_listing() {
    let s = state_with(KEYS);
    for delimiter in [None, Some("/")] {
        for prefix in ["", "a", "a/", "日本"] {
            let full = list(&s, prefix, delimiter, None, 1000);
            let mut expected: Vec<String> = names(&full)
                .0
                .into_iter()
                .chain(full.common_prefixes)
                .collect();
            expected.sort();
            for max_keys in [1, 2, 3, 5] {
                assert_eq!(
                    list_all_paged(&s, prefix, delimiter, max_keys),
                    expected,
                    "{prefix} {delimiter:?} {max_keys}"
                );
            }
        }
    }
}

#[test]
fn max_keys_one_and_truncation_flag() {
    let s = state_with(&["x", "y"]);
    let p = list(&s, "", None, None, 1);
    assert_eq!(names(&p).0, vec!["x"]);
    assert!(p.is_truncated);
    assert_eq!(p.next_start_after.as_deref(), Some("x"));
    let p = list(&s, "", None, Some("x"), 1);
    assert_eq!(names(&p).0, vec!["y"]);
    assert!(!p.is_truncated, "nothing after y");
    assert_eq!(p.next_start_after.as_deref(), Some("y"));
    let p = list(&s, "", None, None, 2);
    assert!(!p.is_truncated);
    let p = list(&s, "", None, None, 0);
    assert!(p.objects.is_empty() && !p.is_truncated);
}

#[test]
fn listing_is_scoped_to_the_bucket() {
    let mut s = state_with(&["k1"]);
    let other = Command::CreateBucket(CreateBucket {
        name: "c".into(),
        id: BucketId(8),
        owner: "alice".into(),
        created_ms: 1,
    });
    assert_eq!(s.run(&other), CommandResult::BucketCreated);
    assert!(matches!(s.run(&put("c", "k2")), CommandResult::ObjectPut));
    assert_eq!(names(&list(&s, "", None, None, 10)).0, vec!["k1"]);
    // A deleted (sealed) bucket lists as missing.
    let sealed = BucketId(9);
    assert_eq!(
        s.run(&Command::SealBucket(SealBucket { bucket: sealed })),
        CommandResult::Ok
    );
    let q = ListObjectsQuery {
        bucket: sealed,
        prefix: String::new(),
        delimiter: None,
        start_after: None,
        max_keys: 10,
    };
    assert_eq!(
        query(&s, &Query::ListObjects(ListObjects(q))).expect("query"),
        QueryResult::NoSuchBucket
    );
}

#[test]
fn apply_bucket_lifecycle() {
    let mut s = MemState::default();
    let delete = |id| {
        Command::DeleteBucket(DeleteBucket {
            name: "b".into(),
            id: BucketId(id),
        })
    };
    let seal = Command::SealBucket(SealBucket {
        bucket: BucketId(7),
    });
    assert_eq!(s.run(&delete(7)), CommandResult::NoSuchBucket);
    assert_eq!(
        s.run(&create_bucket("b", "alice")),
        CommandResult::BucketCreated
    );
    assert_eq!(
        s.run(&create_bucket("b", "alice")),
        CommandResult::BucketAlreadyOwnedByYou
    );
    assert_eq!(
        s.run(&create_bucket("b", "bob")),
        CommandResult::BucketAlreadyExists
    );
    assert_eq!(s.run(&put("b", "k")), CommandResult::ObjectPut);
    // The partition refuses to seal a bucket that holds an object, and changes nothing.
    assert_eq!(s.run(&seal), CommandResult::BucketNotEmpty);
    assert_eq!(s.run(&put("b", "k2")), CommandResult::ObjectPut);
    for k in ["k", "k2"] {
        let del = Command::DeleteObject(DeleteObject {
            bucket: BucketId(7),
            key: k.into(),
        });
        assert_eq!(s.run(&del), CommandResult::ObjectDeleted);
    }
    assert_eq!(s.run(&seal), CommandResult::Ok);
    assert_eq!(
        s.run(&seal),
        CommandResult::Ok,
        "sealing again (a retry) is done"
    );
    // Once sealed, nothing lands in the bucket, even from a writer that read its record
    // before the delete.
    assert_eq!(s.run(&put("b", "late")), CommandResult::NoSuchBucket);
    // The control group removes the record only for the bucket that was sealed.
    assert_eq!(s.run(&delete(99)), CommandResult::NoSuchBucket);
    assert_eq!(s.run(&delete(7)), CommandResult::Ok);
    assert_eq!(
        query(&s, &Query::GetBucket(GetBucket { name: "b".into() })).expect("q"),
        QueryResult::Bucket(None)
    );
    // A bucket created again under the name is another bucket, which takes writes.
    let again = Command::CreateBucket(CreateBucket {
        name: "b".into(),
        id: BucketId(8),
        owner: "bob".into(),
        created_ms: 6,
    });
    assert_eq!(s.run(&again), CommandResult::BucketCreated);
    assert_eq!(s.run(&put("c", "k")), CommandResult::ObjectPut);
    assert_eq!(s.run(&put("b", "k")), CommandResult::NoSuchBucket);
    let left: Vec<_> =
        s.0.keys()
            .filter(|k| !k.starts_with(b"g/"))
            .cloned()
            .collect();
    assert_eq!(
        left,
        vec![
            bucket_key("b"),
            object_key(BucketId(8), "k"),
            sealed_key(BucketId(7))
        ],
        "the old bucket leaves only its seal (and its data in the retire queue)"
    );
}

#[test]
fn apply_objects() {
    let mut s = MemState::default();
    let del = Command::DeleteObject(DeleteObject {
        bucket: BucketId(7),
        key: "k".into(),
    });
    assert_eq!(s.run(&del), CommandResult::ObjectDeleted);
    assert_eq!(s.run(&put("b", "k")), CommandResult::ObjectPut);
    let second = Command::PutObject(PutObject {
        bucket: BucketId(7),
        key: "k".into(),
        record: record(9),
        condition: None,
    });
    assert_eq!(s.run(&second), CommandResult::ObjectPut);
    let get = |key: &str| {
        Query::GetObject(GetObject {
            bucket: BucketId(7),
            key: key.into(),
        })
    };
    assert_eq!(
        query(&s, &get("k")).expect("q"),
        QueryResult::Object(Some(record(9)))
    );
    assert_eq!(
        query(&s, &get("missing")).expect("q"),
        QueryResult::Object(None)
    );
    assert_eq!(s.run(&del), CommandResult::ObjectDeleted);
    let seal = Command::SealBucket(SealBucket {
        bucket: BucketId(7),
    });
    assert_eq!(s.run(&seal), CommandResult::Ok);
    assert_eq!(query(&s, &get("k")).expect("q"), QueryResult::NoSuchBucket);
    assert_eq!(s.run(&del), CommandResult::NoSuchBucket);
}

#[test]
fn apply_access_keys_and_list_buckets() {
    let mut s = MemState::default();
    let key = |id: &str| AccessKeyRecord {
        key_id: id.into(),
        secret: "s".into(),
        name: "n".into(),
        created_ms: 1,
        allow_create_bucket: false,
    };
    assert_eq!(
        s.run(&Command::CreateAccessKey(CreateAccessKey {
            record: key("K2")
        })),
        CommandResult::AccessKeyCreated
    );
    assert_eq!(
        s.run(&Command::CreateAccessKey(CreateAccessKey {
            record: key("K2")
        })),
        CommandResult::AccessKeyExists
    );
    assert_eq!(
        s.run(&Command::CreateAccessKey(CreateAccessKey {
            record: key("K1")
        })),
        CommandResult::AccessKeyCreated
    );
    assert_eq!(
        query(&s, &Query::ListAccessKeys(ListAccessKeys)).expect("q"),
        QueryResult::AccessKeys(vec![key("K1"), key("K2")])
    );
    assert_eq!(
        query(
            &s,
            &Query::GetAccessKey(GetAccessKey {
                key_id: "K1".into()
            })
        )
        .expect("q"),
        QueryResult::AccessKey(Some(key("K1")))
    );
    assert_eq!(
        query(
            &s,
            &Query::GetAccessKey(GetAccessKey {
                key_id: "K3".into()
            })
        )
        .expect("q"),
        QueryResult::AccessKey(None)
    );
    for name in ["zeta", "alpha", "mid"] {
        assert_eq!(
            s.run(&create_bucket(name, "alice")),
            CommandResult::BucketCreated
        );
    }
    let QueryResult::Buckets(buckets) = query(&s, &Query::ListBuckets(ListBuckets)).expect("q")
    else {
        panic!("variant")
    };
    let names: Vec<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, vec!["alpha", "mid", "zeta"]);
}

#[test]
fn corrupt_value_is_an_error_not_a_panic() {
    let mut s = state_with(&["k"]);
    s.0.insert(bucket_key("b"), vec![1, 0xc1]);
    assert!(matches!(
        query(&s, &Query::ListBuckets(ListBuckets)),
        Err(MetaError::Codec(_))
    ));
    // A put reads the record it replaces.
    s.0.insert(object_key(BucketId(7), "k"), vec![1, 0xc1]);
    assert!(matches!(
        apply(&s, 1000, &put("b", "k")),
        Err(MetaError::Codec(_))
    ));
}

fn access_key(id: &str) -> Command {
    Command::CreateAccessKey(CreateAccessKey {
        record: AccessKeyRecord {
            key_id: id.into(),
            secret: "s".into(),
            name: "n".into(),
            created_ms: 1,
            allow_create_bucket: false,
        },
    })
}

fn bucket_record(s: &MemState, name: &str) -> BucketRecord {
    match query(s, &Query::GetBucket(GetBucket { name: name.into() })).expect("q") {
        QueryResult::Bucket(Some(b)) => b,
        other => panic!("{other:?}"),
    }
}

#[test]
fn grants_and_key_rights() {
    use crate::meta::model::BucketRights;
    let mut s = MemState::default();
    s.run(&create_bucket("b", "OWNER"));
    let read = BucketRights {
        read: true,
        ..Default::default()
    };
    let grant = |key: &str, rights| {
        Command::SetBucketGrant(SetBucketGrant {
            bucket: "b".into(),
            key_id: key.into(),
            rights,
        })
    };
    // Grants name existing keys only.
    assert_eq!(s.run(&grant("K", read)), CommandResult::NoSuchAccessKey);
    s.run(&access_key("K"));
    assert_eq!(s.run(&grant("K", read)), CommandResult::Ok);
    let b = bucket_record(&s, "b");
    assert_eq!(b.rights_of("K"), read);
    assert_eq!(b.rights_of("OWNER"), BucketRights::ALL);
    assert!(!b.rights_of("nobody").any());
    // All-false rights remove the grant.
    assert_eq!(
        s.run(&grant("K", BucketRights::default())),
        CommandResult::Ok
    );
    assert!(bucket_record(&s, "b").grants.is_empty());
    assert_eq!(
        s.run(&Command::SetBucketGrant(SetBucketGrant {
            bucket: "nope".into(),
            key_id: "K".into(),
            rights: read
        })),
        CommandResult::NoSuchBucket
    );
    // The create-bucket right and key deletion.
    assert_eq!(
        s.run(&Command::SetKeyCreateBucket(SetKeyCreateBucket {
            key_id: "K".into(),
            allow: true
        })),
        CommandResult::Ok
    );
    let QueryResult::AccessKey(Some(k)) = query(
        &s,
        &Query::GetAccessKey(GetAccessKey { key_id: "K".into() }),
    )
    .expect("q") else {
        panic!("key")
    };
    assert!(k.allow_create_bucket);
    assert_eq!(
        s.run(&Command::DeleteAccessKey(DeleteAccessKey {
            key_id: "K".into()
        })),
        CommandResult::Ok
    );
    assert_eq!(
        s.run(&Command::DeleteAccessKey(DeleteAccessKey {
            key_id: "K".into()
        })),
        CommandResult::NoSuchAccessKey
    );
    assert_eq!(
        s.run(&Command::SetKeyCreateBucket(SetKeyCreateBucket {
            key_id: "K".into(),
            allow: true
        })),
        CommandResult::NoSuchAccessKey
    );
}

#[test]
fn conditional_puts_and_tags() {
    use crate::meta::model::WriteCondition;
    let mut s = MemState::default();
    s.run(&create_bucket("b", "o"));
    let put = |v: u128, cond: Option<WriteCondition>| {
        Command::PutObject(PutObject {
            bucket: BucketId(7),
            key: "k".into(),
            record: ObjectRecord::for_tests(v, 1, format!("e{v}"), vec![1]),
            condition: cond,
        })
    };
    assert_eq!(
        s.run(&put(1, Some(WriteCondition::IfMatch("e1".into())))),
        CommandResult::NoSuchKey
    );
    assert!(matches!(
        s.run(&put(1, Some(WriteCondition::IfNoneMatchAny))),
        CommandResult::ObjectPut
    ));
    assert_eq!(
        s.run(&put(2, Some(WriteCondition::IfNoneMatchAny))),
        CommandResult::PreconditionFailed
    );
    assert_eq!(
        s.run(&put(2, Some(WriteCondition::IfMatch("zzz".into())))),
        CommandResult::PreconditionFailed
    );
    assert!(matches!(
        s.run(&put(2, Some(WriteCondition::IfMatch("e1".into())))),
        CommandResult::ObjectPut
    ));
    let tags: std::collections::BTreeMap<String, String> =
        [("a".to_string(), "1".to_string())].into();
    let set = |v: u128| {
        Command::SetObjectTags(SetObjectTags {
            bucket: BucketId(7),
            key: "k".into(),
            version: crate::types::VersionId(v),
            tags: tags.clone(),
        })
    };
    // Tags meant for the overwritten version 1 are refused; version 2 takes them.
    assert_eq!(s.run(&set(1)), CommandResult::PreconditionFailed);
    assert_eq!(s.run(&set(2)), CommandResult::Ok);
    let QueryResult::Object(Some(o)) = query(
        &s,
        &Query::GetObject(GetObject {
            bucket: BucketId(7),
            key: "k".into(),
        }),
    )
    .expect("q") else {
        panic!("object")
    };
    assert_eq!(o.tags, tags);
    // Bucket tags and CORS rules replace the previous ones.
    s.run(&Command::SetBucketTags(SetBucketTags {
        bucket: "b".into(),
        tags: tags.clone(),
    }));
    s.run(&Command::SetBucketCors(SetBucketCors {
        bucket: "b".into(),
        rules: vec![crate::meta::model::CorsRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            ..Default::default()
        }],
    }));
    let b = bucket_record(&s, "b");
    assert_eq!((b.tags.len(), b.cors.len()), (1, 1));
}

/// A resent write (same request id) gets its first result again and changes nothing: a
/// retried `PutObject` after a newer one does not point the key back at the older record,
/// and a retried `CreateBucket` that succeeded still says so.
#[test]
fn a_write_with_a_seen_id_is_answered_from_memory() {
    let mut s = MemState::default();
    let id = |seq| Some(RequestId { client: 3, seq });
    let create = Write {
        id: id(1),
        cmd: create_bucket("b", "alice"),
    };
    assert_eq!(s.write_at(1000, &create), CommandResult::BucketCreated);
    assert_eq!(s.write_at(1100, &create), CommandResult::BucketCreated);
    let v1 = Write {
        id: id(2),
        cmd: put("b", "k"),
    };
    let mut newer = record(7);
    newer.version = crate::types::VersionId(77);
    let v2 = Write {
        id: id(3),
        cmd: Command::PutObject(PutObject {
            bucket: BucketId(7),
            key: "k".into(),
            record: newer.clone(),
            condition: None,
        }),
    };
    assert_eq!(s.write_at(2000, &v1), CommandResult::ObjectPut);
    assert_eq!(s.write_at(2001, &v2), CommandResult::ObjectPut);
    assert_eq!(s.write_at(2002, &v1), CommandResult::ObjectPut);
    let got = query(
        &s,
        &Query::GetObject(GetObject {
            bucket: BucketId(7),
            key: "k".into(),
        }),
    )
    .expect("q");
    assert_eq!(got, QueryResult::Object(Some(newer)));
    // A refused write is remembered as refused.
    let again = Write {
        id: id(4),
        cmd: create_bucket("b", "bob"),
    };
    assert_eq!(s.write_at(3000, &again), CommandResult::BucketAlreadyExists);
    assert_eq!(s.write_at(3001, &again), CommandResult::BucketAlreadyExists);
    // Expiry: past the window, the expiry pass forgets them all.
    let ops = crate::meta::dedup::expire_ops(&s, 3001 + DEDUP_WINDOW_MS + 1).expect("expire");
    s.apply_ops(ops);
    assert!(!s
        .0
        .keys()
        .any(|k| k.starts_with(b"d/") || k.starts_with(b"e/")));
}
