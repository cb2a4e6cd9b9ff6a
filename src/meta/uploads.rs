//! Multipart uploads in the state machine: uploads in progress, their parts, and completion
//! (the listed parts become one object record, atomically, with any write condition checked
//! against the object it replaces). Pure, like [`super::state`], whose keyspace and codec it
//! shares.
//!
//! Keys:
//! - `u/<bucket id>/<object key>\0<upload id>` → [`UploadRecord`]: a bucket's uploads in key
//!   order, then upload id order (S3's ListMultipartUploads order; `\0` sorts before any key byte
//!   a client can send in XML).
//! - `p/<bucket id>/<upload id>/<part number, 8 hex digits>` → [`PartRecord`]: an upload's parts
//!   in number order.

use super::error::MetaError;
use super::garbage::retire_ops;
use super::model::{
    Command, CommandResult, ListPartsQuery, ListUploadsQuery, ObjectData, ObjectRecord, PartRecord,
    PartRef, PartsPage, Query, QueryResult, UploadRecord, UploadsPage,
};
use super::request::{CompleteUpload, PutPart};
use super::state::{
    check_condition, decode_value, encode_value, get_decoded, object_key, walk_grouped,
    GroupedScan, Listed, Op, StateRead,
};
use crate::types::{BucketId, MAX_KEYS_PER_PAGE, MAX_PARTS_PER_UPLOAD};

pub fn uploads_prefix(bucket: BucketId) -> Vec<u8> {
    format!("u/{:016x}/", bucket.0).into_bytes()
}

pub fn upload_key(bucket: BucketId, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = uploads_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

fn parts_prefix(bucket: BucketId, upload_id: &str) -> Vec<u8> {
    format!("p/{:016x}/{upload_id}/", bucket.0).into_bytes()
}

fn part_key(bucket: BucketId, upload_id: &str, number: u32) -> Vec<u8> {
    let mut k = parts_prefix(bucket, upload_id);
    k.extend_from_slice(format!("{number:08x}").as_bytes());
    k
}

/// Every part of an upload, in number order.
fn all_parts(
    state: &dyn StateRead,
    bucket: BucketId,
    upload_id: &str,
) -> Result<Vec<PartRecord>, MetaError> {
    super::state::scan_prefix(state, &parts_prefix(bucket, upload_id))
}

/// The state-machine key of an upload in progress, or NoSuchUpload. (The caller checked that
/// the bucket is not sealed.)
fn existing_upload(
    state: &dyn StateRead,
    bucket: BucketId,
    key: &str,
    upload_id: &str,
) -> Result<Result<Vec<u8>, CommandResult>, MetaError> {
    let uk = upload_key(bucket, key, upload_id);
    if state.get(&uk)?.is_none() {
        return Ok(Err(CommandResult::NoSuchUpload));
    }
    Ok(Ok(uk))
}

pub fn apply(
    state: &dyn StateRead,
    at_ms: i64,
    cmd: &Command,
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    match cmd {
        Command::CreateUpload(c) => {
            let upload = &c.upload;
            let k = upload_key(c.bucket, &upload.key, &upload.upload_id);
            Ok((CommandResult::Ok, vec![Op::Put(k, encode_value(upload)?)]))
        }
        Command::PutPart(c) => {
            let PutPart {
                bucket,
                key,
                upload_id,
                part,
            } = c;
            if let Err(refused) = existing_upload(state, *bucket, key, upload_id)? {
                return Ok((refused, vec![]));
            }
            let k = part_key(*bucket, upload_id, part.number);
            let replaced = get_decoded::<PartRecord>(state, &k)?;
            let mut ops = super::repair::degraded_write_ops(at_ms, &k, part.version, &part.data)?;
            ops.push(Op::Put(k, encode_value(part)?));
            if let Some(old) = replaced.filter(|old| old.version != part.version) {
                ops.extend(retire_ops(at_ms, old.version, &old.data)?);
            }
            Ok((CommandResult::PartPut, ops))
        }
        Command::CompleteUpload(c) => {
            let CompleteUpload {
                bucket,
                key,
                upload_id,
                parts,
                record,
                condition,
            } = c;
            let bucket = *bucket;
            let uk = match existing_upload(state, bucket, key, upload_id)? {
                Ok(found) => found,
                Err(refused) => return Ok((refused, vec![])),
            };
            let ok = object_key(bucket, key);
            let replaced = get_decoded::<ObjectRecord>(state, &ok)?;
            if let Some(refused) = check_condition(condition.as_ref(), replaced.as_ref()) {
                return Ok((refused, vec![]));
            }
            let stored = all_parts(state, bucket, upload_id)?;
            let mut used = Vec::with_capacity(parts.len());
            for (number, version) in parts {
                match stored.iter().find(|p| p.number == *number) {
                    Some(p) if p.version == *version => used.push(p),
                    _ => return Ok((CommandResult::PartsChanged, vec![])),
                }
            }
            let mut record = record.clone();
            record.completed_upload = Some(upload_id.clone());
            record.data = ObjectData::Parts(
                used.iter()
                    .map(|p| PartRef {
                        number: p.number,
                        version: p.version,
                        size: p.size,
                        etag: p.etag.clone(),
                        data: p.data.clone(),
                    })
                    .collect(),
            );
            record.size = used.iter().map(|p| p.size).sum();
            // Parts queued for healing are healed in the object's record from now on.
            let mut ops = super::repair::reown_ops(state, used.iter().map(|p| p.version), &ok)?;
            ops.push(Op::Delete(uk));
            ops.push(Op::Put(ok, encode_value(&record)?));
            ops.extend(
                stored
                    .iter()
                    .map(|p| Op::Delete(part_key(bucket, upload_id, p.number))),
            );
            // The parts the completion left out, and the object it replaces, are garbage.
            for p in stored
                .iter()
                .filter(|p| !parts.iter().any(|(n, _)| *n == p.number))
            {
                ops.extend(retire_ops(at_ms, p.version, &p.data)?);
            }
            if let Some(old) = replaced {
                ops.extend(retire_ops(at_ms, old.version, &old.data)?);
            }
            Ok((CommandResult::UploadCompleted, ops))
        }
        Command::AbortUpload(c) => {
            let uk = match existing_upload(state, c.bucket, &c.key, &c.upload_id)? {
                Ok(found) => found,
                Err(refused) => return Ok((refused, vec![])),
            };
            let parts = all_parts(state, c.bucket, &c.upload_id)?;
            let mut ops = vec![Op::Delete(uk)];
            for p in &parts {
                ops.push(Op::Delete(part_key(c.bucket, &c.upload_id, p.number)));
                ops.extend(retire_ops(at_ms, p.version, &p.data)?);
            }
            Ok((CommandResult::UploadAborted, ops))
        }
        _ => Err(MetaError::Codec(
            "not a multipart upload command".to_string(),
        )),
    }
}

pub fn query(state: &dyn StateRead, q: &Query) -> Result<QueryResult, MetaError> {
    match q {
        Query::GetUpload(g) => Ok(QueryResult::Upload(get_decoded(
            state,
            &upload_key(g.bucket, &g.key, &g.upload_id),
        )?)),
        Query::ListParts(l) => Ok(QueryResult::Parts(list_parts(state, l.0.bucket, &l.0)?)),
        Query::ListUploads(l) => Ok(QueryResult::Uploads(list_uploads(state, l.0.bucket, &l.0)?)),
        _ => Err(MetaError::Codec("not a multipart upload query".to_string())),
    }
}

fn list_parts(
    state: &dyn StateRead,
    bucket: BucketId,
    q: &ListPartsQuery,
) -> Result<PartsPage, MetaError> {
    let mut page = PartsPage {
        upload: get_decoded(state, &upload_key(bucket, &q.key, &q.upload_id))?,
        ..Default::default()
    };
    if page.upload.is_none() {
        return Ok(page);
    }
    let max = q.max_parts.min(MAX_PARTS_PER_UPLOAD);
    let prefix = parts_prefix(bucket, &q.upload_id);
    let mut cursor = state.cursor();
    cursor.seek(&part_key(bucket, &q.upload_id, q.after.saturating_add(1)));
    while let Some((k, v)) = cursor.current()? {
        if !k.starts_with(&prefix) {
            break;
        }
        let part: PartRecord = decode_value(v)?;
        if part.number > q.after {
            if page.parts.len() == max {
                page.is_truncated = true;
                break;
            }
            page.parts.push(part);
        }
        cursor.next();
    }
    Ok(page)
}

fn list_uploads(
    state: &dyn StateRead,
    bucket: BucketId,
    q: &ListUploadsQuery,
) -> Result<UploadsPage, MetaError> {
    let mut page = UploadsPage::default();
    let max = q.max_uploads.min(MAX_KEYS_PER_PAGE);
    if max == 0 {
        return Ok(page);
    }
    let base = uploads_prefix(bucket);
    let mut seek_from = [base.as_slice(), q.prefix.as_bytes()].concat();
    let key_marker = q.key_marker.as_deref().filter(|k| !k.is_empty());
    // As S3: with an upload-id-marker, uploads of key-marker after that id; without, keys
    // strictly after key-marker.
    if let Some(km) = key_marker {
        let after = match q.upload_id_marker.as_deref().filter(|u| !u.is_empty()) {
            Some(uid) => {
                let mut k = upload_key(bucket, km, uid);
                k.push(0);
                k
            }
            None => {
                let mut k = [base.as_slice(), km.as_bytes()].concat();
                k.push(1);
                k
            }
        };
        seek_from = seek_from.max(after);
    }
    let truncated = walk_grouped(
        state,
        GroupedScan {
            base: &base,
            prefix: &q.prefix,
            delimiter: q.delimiter.as_deref(),
            seek_from,
            groups_after: key_marker.map(str::as_bytes),
            max,
        },
        // An upload's name is its object key, before the `\0` and the upload id.
        |k| {
            k.iter()
                .position(|b| *b == 0)
                .map(|nul| &k[..nul])
                .ok_or_else(|| MetaError::Codec("upload key without separator".into()))
        },
        |listed| {
            match listed {
                Listed::Group(common) => {
                    page.next_key_marker = Some(common.clone());
                    page.next_upload_id_marker = None;
                    page.common_prefixes.push(common);
                }
                Listed::Entry { value, .. } => {
                    let upload: UploadRecord = decode_value(value)?;
                    page.next_key_marker = Some(upload.key.clone());
                    page.next_upload_id_marker = Some(upload.upload_id.clone());
                    page.uploads.push(upload);
                }
            }
            Ok(())
        },
    )?;
    page.is_truncated = truncated;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::meta::model::{ObjectHeaders, WriteCondition};
    use crate::meta::request::*;
    use crate::meta::state::mem::MemState;
    use crate::types::{NodeId, VersionId};

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

    fn upload(key: &str, id: &str) -> Command {
        Command::CreateUpload(CreateUpload {
            bucket: BucketId(7),
            upload: UploadRecord {
                upload_id: id.into(),
                key: key.into(),
                initiated_ms: 1,
                initiator: "o".into(),
                headers: ObjectHeaders::default(),
                checksum_algorithm: None,
                checksum_type: None,
            },
        })
    }

    fn part(key: &str, id: &str, number: u32, version: u128) -> Command {
        Command::PutPart(PutPart {
            bucket: BucketId(7),
            key: key.into(),
            upload_id: id.into(),
            part: PartRecord {
                number,
                version: VersionId(version),
                size: 10,
                etag: format!("e{version}"),
                last_modified_ms: 1,
                checksums: Default::default(),
                data: sharded(),
            },
        })
    }

    fn sharded() -> ObjectData {
        ObjectData::Sharded {
            k: 2,
            m: 1,
            block_size: 1024,
            shard_nodes: vec![Some(NodeId(1)), Some(NodeId(2)), None],
            digests: Default::default(),
        }
    }

    /// The versions in the retire queue, oldest first.
    fn garbage_versions(s: &MemState) -> Vec<u128> {
        crate::meta::garbage::due(s, i64::MAX, 1000)
            .expect("due")
            .iter()
            .map(|g| g.id.version.0)
            .collect()
    }

    fn complete(
        key: &str,
        id: &str,
        parts: &[(u32, u128)],
        cond: Option<WriteCondition>,
    ) -> Command {
        Command::CompleteUpload(CompleteUpload {
            bucket: BucketId(7),
            key: key.into(),
            upload_id: id.into(),
            parts: parts.iter().map(|(n, v)| (*n, VersionId(*v))).collect(),
            record: ObjectRecord::for_tests(99, 0, "x-2".into(), vec![]),
            condition: cond,
        })
    }

    #[test]
    fn complete_assembles_listed_parts_and_frees_the_rest() {
        let mut s = setup();
        s.run(&upload("k", "u1"));
        s.run(&part("k", "u1", 1, 11));
        s.run(&part("k", "u1", 2, 12));
        assert_eq!(s.run(&part("k", "u1", 2, 22)), CommandResult::PartPut);
        assert_eq!(
            garbage_versions(&s),
            vec![12],
            "the replaced part is queued"
        );
        // The same part again (a resent write without an id) queues nothing.
        assert_eq!(s.run(&part("k", "u1", 2, 22)), CommandResult::PartPut);
        assert_eq!(garbage_versions(&s), vec![12]);
        s.run(&part("k", "u1", 3, 13));
        // Part 2 was replaced by version 22: a completion listing version 12 is refused.
        assert_eq!(
            s.run(&complete("k", "u1", &[(1, 11), (2, 12)], None)),
            CommandResult::PartsChanged
        );
        assert_eq!(
            s.run(&complete("k", "u1", &[(1, 11), (2, 22)], None)),
            CommandResult::UploadCompleted
        );
        // Part 3 was left out: queued with the commit.
        assert_eq!(garbage_versions(&s), vec![12, 13]);
        let QueryResult::Object(Some(o)) = crate::meta::state::query(
            &s,
            &Query::GetObject(GetObject {
                bucket: BucketId(7),
                key: "k".into(),
            }),
        )
        .expect("q") else {
            panic!("no object")
        };
        assert_eq!(o.size, 20);
        assert_eq!(o.parts_count(), Some(2));
        // Upload and every part record are gone.
        assert!(!s
            .0
            .keys()
            .any(|k| k.starts_with(b"u/") || k.starts_with(b"p/")));
        assert_eq!(
            s.run(&complete("k", "u1", &[(1, 11)], None)),
            CommandResult::NoSuchUpload
        );
    }

    #[test]
    fn conditional_completion_and_abort() {
        let mut s = setup();
        s.run(&upload("k", "u1"));
        s.run(&part("k", "u1", 1, 11));
        s.run(&upload("k", "u2"));
        s.run(&part("k", "u2", 1, 21));
        assert!(matches!(
            s.run(&complete(
                "k",
                "u1",
                &[(1, 11)],
                Some(WriteCondition::IfNoneMatchAny)
            )),
            CommandResult::UploadCompleted
        ));
        assert_eq!(
            s.run(&complete(
                "k",
                "u2",
                &[(1, 21)],
                Some(WriteCondition::IfNoneMatchAny)
            )),
            CommandResult::PreconditionFailed
        );
        let r = s.run(&Command::AbortUpload(AbortUpload {
            bucket: BucketId(7),
            key: "k".into(),
            upload_id: "u2".into(),
        }));
        assert_eq!(r, CommandResult::UploadAborted);
        assert_eq!(
            garbage_versions(&s),
            vec![21],
            "the aborted upload's part is queued"
        );
        assert_eq!(s.run(&part("k", "u2", 2, 22)), CommandResult::NoSuchUpload);
        assert!(!s
            .0
            .keys()
            .any(|k| k.starts_with(b"u/") || k.starts_with(b"p/")));
    }

    #[test]
    fn bucket_with_an_upload_is_not_empty() {
        let mut s = setup();
        s.run(&upload("k", "u1"));
        let seal = Command::SealBucket(SealBucket {
            bucket: BucketId(7),
        });
        assert_eq!(s.run(&seal), CommandResult::BucketNotEmpty);
    }

    fn list_uploads_q(s: &MemState, q: ListUploadsQuery) -> UploadsPage {
        match crate::meta::state::query(s, &Query::ListUploads(ListUploads(q))).expect("q") {
            QueryResult::Uploads(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_uploads_orders_groups_and_pages() {
        let mut s = setup();
        for (k, id) in [
            ("a/1", "x"),
            ("a/2", "y"),
            ("b", "z2"),
            ("b", "z1"),
            ("c", "w"),
        ] {
            s.run(&upload(k, id));
        }
        let q = |prefix: &str, delim: Option<&str>, km: Option<&str>, um: Option<&str>, max| {
            ListUploadsQuery {
                bucket: BucketId(7),
                prefix: prefix.into(),
                delimiter: delim.map(str::to_string),
                key_marker: km.map(str::to_string),
                upload_id_marker: um.map(str::to_string),
                max_uploads: max,
            }
        };
        let all = list_uploads_q(&s, q("", None, None, None, 1000));
        let got: Vec<(String, String)> = all
            .uploads
            .iter()
            .map(|u| (u.key.clone(), u.upload_id.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a/1".into(), "x".into()),
                ("a/2".into(), "y".into()),
                ("b".into(), "z1".into()),
                ("b".into(), "z2".into()),
                ("c".into(), "w".into())
            ]
        );
        let grouped = list_uploads_q(&s, q("", Some("/"), None, None, 1000));
        assert_eq!(grouped.common_prefixes, vec!["a/".to_string()]);
        assert_eq!(grouped.uploads.len(), 3);
        // Paging one at a time reproduces the full order.
        let mut seen = Vec::new();
        let (mut km, mut um) = (None::<String>, None::<String>);
        loop {
            let p = list_uploads_q(&s, q("", None, km.as_deref(), um.as_deref(), 1));
            seen.extend(
                p.uploads
                    .iter()
                    .map(|u| (u.key.clone(), u.upload_id.clone())),
            );
            if !p.is_truncated {
                break;
            }
            km = p.next_key_marker;
            um = p.next_upload_id_marker;
        }
        assert_eq!(seen, got);
        // key-marker alone: keys strictly after it.
        let after_b = list_uploads_q(&s, q("", None, Some("b"), None, 1000));
        assert_eq!(
            after_b
                .uploads
                .iter()
                .map(|u| u.key.as_str())
                .collect::<Vec<_>>(),
            vec!["c"]
        );
        let _ = BTreeMap::<u8, u8>::new();
    }

    #[test]
    fn list_parts_pages_by_number() {
        let mut s = setup();
        s.run(&upload("k", "u1"));
        for n in [1, 2, 3, 10, 300] {
            s.run(&part("k", "u1", n, n as u128));
        }
        let q = |after, max| {
            Query::ListParts(ListParts(ListPartsQuery {
                bucket: BucketId(7),
                key: "k".into(),
                upload_id: "u1".into(),
                after,
                max_parts: max,
            }))
        };
        let QueryResult::Parts(p) = crate::meta::state::query(&s, &q(2, 2)).expect("q") else {
            panic!()
        };
        assert_eq!(
            p.parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![3, 10]
        );
        assert!(p.is_truncated);
        let QueryResult::Parts(p) = crate::meta::state::query(&s, &q(10, 2)).expect("q") else {
            panic!()
        };
        assert_eq!(
            p.parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![300]
        );
        assert!(!p.is_truncated);
        let bad = Query::ListParts(ListParts(ListPartsQuery {
            bucket: BucketId(7),
            key: "other".into(),
            upload_id: "u1".into(),
            after: 0,
            max_parts: 10,
        }));
        let QueryResult::Parts(p) = crate::meta::state::query(&s, &bad).expect("q") else {
            panic!()
        };
        assert!(p.upload.is_none());
    }
}
