//! The metadata state machine's logic: the deterministic apply of a [`Command`] and the answer to
//! a [`Query`], over an ordered key-value space reached through [`StateRead`]. Pure: no RocksDB,
//! no clock, no randomness (the store supplies reads and persists the returned [`Op`]s), so it is
//! unit-tested over a `BTreeMap`.
//!
//! Keyspace (`sm_data`):
//! - `b/<bucket name>` → [`BucketRecord`]
//! - `k/<access key id>` → [`AccessKeyRecord`]
//! - `o/<bucket id, 16 hex digits>/<object key bytes>` → [`ObjectRecord`]: a bucket's objects are
//!   one ordered range, so a listing is a range scan.
//! - `u/<bucket id>/<object key bytes>\0<upload id>` and `p/<bucket id>/<upload id>/<part
//!   number, 8 hex digits>`: multipart uploads in progress and their parts ([`super::uploads`]).
//!
//! Values are a 1-byte format version followed by MessagePack with named fields.

use serde::{de::DeserializeOwned, Serialize};

use super::error::MetaError;
use super::model::{
    AccessKeyRecord, BucketRecord, Command, CommandResult, ListObjectsPage, ListObjectsQuery,
    ObjectRecord, ObjectSummary, Query, QueryResult, WriteCondition,
};
use super::uploads;
use crate::types::{BucketId, MAX_KEYS_PER_PAGE};

/// The format version byte in front of every stored value.
pub const VALUE_FORMAT_V1: u8 = 1;

/// Encodes a stored value: version byte, then MessagePack with named fields.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    let mut out = vec![VALUE_FORMAT_V1];
    rmp_serde::encode::write_named(&mut out, value).map_err(|e| MetaError::Codec(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode_value`]; an unknown version or bad bytes is an error.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MetaError> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT_V1, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| MetaError::Codec(e.to_string()))
        }
        Some((v, _)) => Err(MetaError::Codec(format!(
            "unknown value format version {v}"
        ))),
        None => Err(MetaError::Codec("empty value".to_string())),
    }
}

const BUCKET_PREFIX: &[u8] = b"b/";
const ACCESS_KEY_PREFIX: &[u8] = b"k/";

pub fn bucket_key(name: &str) -> Vec<u8> {
    [BUCKET_PREFIX, name.as_bytes()].concat()
}

pub fn access_key_key(key_id: &str) -> Vec<u8> {
    [ACCESS_KEY_PREFIX, key_id.as_bytes()].concat()
}

/// The prefix of all of a bucket's object keys.
pub fn objects_prefix(bucket: BucketId) -> Vec<u8> {
    format!("o/{:016x}/", bucket.0).into_bytes()
}

pub fn object_key(bucket: BucketId, key: &str) -> Vec<u8> {
    let mut k = objects_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// A key and its value, borrowed from a cursor.
pub type KvEntry<'a> = (&'a [u8], &'a [u8]);

/// A forward cursor over the ordered keyspace (RocksDB's raw iterator has this shape).
pub trait KvCursor {
    /// Positions at the first key `>= key`.
    fn seek(&mut self, key: &[u8]);
    /// The entry under the cursor, `None` at the end.
    fn current(&self) -> Result<Option<KvEntry<'_>>, MetaError>;
    /// Moves to the next key.
    fn next(&mut self);
}

/// Consistent reads of the state machine's data.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError>;
    fn cursor(&self) -> Box<dyn KvCursor + '_>;
}

/// One change to persist; a command's changes are applied together and in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

pub(crate) fn get_decoded<T: DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, MetaError> {
    state.get(key)?.map(|v| decode_value(&v)).transpose()
}

pub(crate) fn get_bucket(state: &dyn StateRead, name: &str) -> Result<Option<BucketRecord>, MetaError> {
    get_decoded(state, &bucket_key(name))
}

/// Applies one command: its result and the changes to persist. Deterministic in (state, command).
pub fn apply(state: &dyn StateRead, cmd: &Command) -> Result<(CommandResult, Vec<Op>), MetaError> {
    match cmd {
        Command::CreateBucket {
            name,
            id,
            owner,
            created_ms,
        } => {
            if let Some(existing) = get_bucket(state, name)? {
                let result = if existing.owner == *owner {
                    CommandResult::BucketAlreadyOwnedByYou
                } else {
                    CommandResult::BucketAlreadyExists
                };
                return Ok((result, vec![]));
            }
            let record = BucketRecord {
                name: name.clone(),
                id: *id,
                owner: owner.clone(),
                created_ms: *created_ms,
                grants: Default::default(),
                tags: Default::default(),
                cors: Vec::new(),
            };
            Ok((
                CommandResult::BucketCreated,
                vec![Op::Put(bucket_key(name), encode_value(&record)?)],
            ))
        }
        Command::DeleteBucket { name } => {
            let Some(bucket) = get_bucket(state, name)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            // Uploads in progress hold shards too: a bucket with any is not empty.
            for prefix in [objects_prefix(bucket.id), uploads::uploads_prefix(bucket.id)] {
                if has_prefix(state, &prefix)? {
                    return Ok((CommandResult::BucketNotEmpty, vec![]));
                }
            }
            Ok((CommandResult::Ok, vec![Op::Delete(bucket_key(name))]))
        }
        Command::PutObject {
            bucket,
            key,
            record,
            condition,
        } => {
            let Some(b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            let k = object_key(b.id, key);
            let replaced = get_decoded::<ObjectRecord>(state, &k)?;
            if let Some(refused) = check_condition(condition.as_ref(), replaced.as_ref()) {
                return Ok((refused, vec![]));
            }
            Ok((
                CommandResult::ObjectPut { replaced },
                vec![Op::Put(k, encode_value(record)?)],
            ))
        }
        Command::SetObjectTags {
            bucket,
            key,
            version,
            tags,
        } => {
            let Some(b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            let k = object_key(b.id, key);
            match get_decoded::<ObjectRecord>(state, &k)? {
                Some(mut r) if r.version == *version => {
                    r.tags = tags.clone();
                    Ok((CommandResult::Ok, vec![Op::Put(k, encode_value(&r)?)]))
                }
                // Overwritten meanwhile: the tags were for a version that is gone.
                Some(_) => Ok((CommandResult::PreconditionFailed, vec![])),
                None => Ok((CommandResult::NoSuchKey, vec![])),
            }
        }
        Command::DeleteAccessKey { key_id } => {
            let k = access_key_key(key_id);
            if state.get(&k)?.is_none() {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            }
            Ok((CommandResult::Ok, vec![Op::Delete(k)]))
        }
        Command::SetKeyCreateBucket { key_id, allow } => {
            let k = access_key_key(key_id);
            let Some(mut record) = get_decoded::<AccessKeyRecord>(state, &k)? else {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            };
            record.allow_create_bucket = *allow;
            Ok((CommandResult::Ok, vec![Op::Put(k, encode_value(&record)?)]))
        }
        Command::SetBucketGrant {
            bucket,
            key_id,
            rights,
        } => {
            let Some(mut b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            if state.get(&access_key_key(key_id))?.is_none() {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            }
            if rights.any() {
                b.grants.insert(key_id.clone(), *rights);
            } else {
                b.grants.remove(key_id);
            }
            Ok((
                CommandResult::Ok,
                vec![Op::Put(bucket_key(bucket), encode_value(&b)?)],
            ))
        }
        Command::SetBucketTags { bucket, tags } => {
            let Some(mut b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            b.tags = tags.clone();
            Ok((
                CommandResult::Ok,
                vec![Op::Put(bucket_key(bucket), encode_value(&b)?)],
            ))
        }
        Command::SetBucketCors { bucket, rules } => {
            let Some(mut b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            b.cors = rules.clone();
            Ok((
                CommandResult::Ok,
                vec![Op::Put(bucket_key(bucket), encode_value(&b)?)],
            ))
        }
        Command::CreateUpload { .. }
        | Command::PutPart { .. }
        | Command::CompleteUpload { .. }
        | Command::AbortUpload { .. } => uploads::apply(state, cmd),
        Command::DeleteObject { bucket, key } => {
            let Some(b) = get_bucket(state, bucket)? else {
                return Ok((CommandResult::NoSuchBucket, vec![]));
            };
            let k = object_key(b.id, key);
            let removed = get_decoded::<ObjectRecord>(state, &k)?;
            let ops = if removed.is_some() {
                vec![Op::Delete(k)]
            } else {
                vec![]
            };
            Ok((CommandResult::ObjectDeleted { removed }, ops))
        }
        Command::CreateAccessKey { record } => {
            let k = access_key_key(&record.key_id);
            if state.get(&k)?.is_some() {
                return Ok((CommandResult::AccessKeyExists, vec![]));
            }
            Ok((
                CommandResult::AccessKeyCreated,
                vec![Op::Put(k, encode_value(record)?)],
            ))
        }
        // The store applies a batch command by command (each must see the writes of the one
        // before); reaching here means a nested batch, which no writer produces.
        Command::Batch(_) => Err(MetaError::Codec(
            "a command batch cannot be applied as one command".into(),
        )),
    }
}

/// Answers a query from the current state.
pub fn query(state: &dyn StateRead, q: &Query) -> Result<QueryResult, MetaError> {
    match q {
        Query::GetBucket { name } => Ok(QueryResult::Bucket(get_bucket(state, name)?)),
        Query::ListBuckets => Ok(QueryResult::Buckets(scan_prefix(state, BUCKET_PREFIX)?)),
        Query::GetObject { bucket, key } => {
            let Some(b) = get_bucket(state, bucket)? else {
                return Ok(QueryResult::NoSuchBucket);
            };
            Ok(QueryResult::Object(get_decoded(
                state,
                &object_key(b.id, key),
            )?))
        }
        Query::ListObjects(lq) => {
            let Some(b) = get_bucket(state, &lq.bucket)? else {
                return Ok(QueryResult::NoSuchBucket);
            };
            Ok(QueryResult::Objects(list_objects(state, b.id, lq)?))
        }
        Query::GetAccessKey { key_id } => Ok(QueryResult::AccessKey(get_decoded(
            state,
            &access_key_key(key_id),
        )?)),
        Query::ListAccessKeys => Ok(QueryResult::AccessKeys(scan_prefix::<AccessKeyRecord>(
            state,
            ACCESS_KEY_PREFIX,
        )?)),
        Query::GetUpload { .. } | Query::ListParts(_) | Query::ListUploads(_) => {
            uploads::query(state, q)
        }
    }
}

/// None if `condition` holds on `current`; the refusal otherwise.
pub(crate) fn check_condition(
    condition: Option<&WriteCondition>,
    current: Option<&ObjectRecord>,
) -> Option<CommandResult> {
    match (condition, current) {
        (None, _) => None,
        (Some(WriteCondition::IfNoneMatchAny), None) => None,
        (Some(WriteCondition::IfNoneMatchAny), Some(_)) => Some(CommandResult::PreconditionFailed),
        (Some(WriteCondition::IfMatch(_)), None) => Some(CommandResult::NoSuchKey),
        (Some(WriteCondition::IfMatch(etag)), Some(r)) => {
            (r.etag != *etag).then_some(CommandResult::PreconditionFailed)
        }
    }
}

/// Whether any key starts with `prefix`.
pub(crate) fn has_prefix(state: &dyn StateRead, prefix: &[u8]) -> Result<bool, MetaError> {
    let mut cursor = state.cursor();
    cursor.seek(prefix);
    Ok(matches!(cursor.current()?, Some((k, _)) if k.starts_with(prefix)))
}

/// Every record under `prefix`, in key order (bucket and access-key counts are small).
pub(crate) fn scan_prefix<T: DeserializeOwned>(
    state: &dyn StateRead,
    prefix: &[u8],
) -> Result<Vec<T>, MetaError> {
    let mut out = Vec::new();
    let mut cursor = state.cursor();
    cursor.seek(prefix);
    while let Some((k, v)) = cursor.current()? {
        if !k.starts_with(prefix) {
            break;
        }
        out.push(decode_value(v)?);
        cursor.next();
    }
    Ok(out)
}

/// One page of a bucket's listing (see [`ListObjectsQuery`]). `max_keys` is capped at
/// [`MAX_KEYS_PER_PAGE`]; `max_keys == 0` answers an empty, untruncated page (as S3 does).
/// After a common prefix the cursor seeks past the whole group: a listing costs O(entries
/// returned) seeks, not O(keys under the prefix).
pub fn list_objects(
    state: &dyn StateRead,
    bucket: BucketId,
    q: &ListObjectsQuery,
) -> Result<ListObjectsPage, MetaError> {
    let mut page = ListObjectsPage::default();
    let max_keys = q.max_keys.min(MAX_KEYS_PER_PAGE);
    if max_keys == 0 {
        return Ok(page);
    }
    let base = objects_prefix(bucket);
    let full_prefix = [base.as_slice(), q.prefix.as_bytes()].concat();
    let delimiter = q
        .delimiter
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(str::as_bytes);
    let start_after = q.start_after.as_deref().map(str::as_bytes);

    let mut seek_from = full_prefix.clone();
    if let Some(sa) = start_after {
        let mut after = [base.as_slice(), sa].concat();
        after.push(0);
        seek_from = seek_from.max(after);
    }
    let mut cursor = state.cursor();
    cursor.seek(&seek_from);
    let mut n_entries = 0usize;
    while let Some((k, v)) = cursor.current()? {
        if !k.starts_with(&full_prefix) {
            break;
        }
        let key = &k[base.len()..];
        let remainder = &key[q.prefix.len()..];
        if let Some(pos) = delimiter.and_then(|d| find(remainder, d).map(|p| p + d.len())) {
            let common = &key[..q.prefix.len() + pos];
            // A group that sorts at or before start_after was returned on an earlier page.
            if start_after.is_none_or(|sa| common > sa) {
                if n_entries == max_keys {
                    page.is_truncated = true;
                    break;
                }
                let common = utf8(common)?;
                page.common_prefixes.push(common.clone());
                page.next_start_after = Some(common);
                n_entries += 1;
            }
            match prefix_successor(&k[..base.len() + q.prefix.len() + pos]) {
                Some(next) => cursor.seek(&next),
                None => break,
            }
            continue;
        }
        if n_entries == max_keys {
            page.is_truncated = true;
            break;
        }
        let key = utf8(key)?;
        let record: ObjectRecord = decode_value(v)?;
        page.objects.push(ObjectSummary {
            key: key.clone(),
            size: record.size,
            etag: record.etag,
            last_modified_ms: record.last_modified_ms,
        });
        page.next_start_after = Some(key);
        n_entries += 1;
        cursor.next();
    }
    Ok(page)
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<String, MetaError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|e| MetaError::Codec(format!("object key is not UTF-8: {e}")))
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An in-memory state for tests of this module and of callers.
#[cfg(test)]
pub(crate) mod mem {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    pub struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

    impl MemState {
        pub fn apply_ops(&mut self, ops: Vec<Op>) {
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        self.0.insert(k, v);
                    }
                    Op::Delete(k) => {
                        self.0.remove(&k);
                    }
                }
            }
        }

        pub fn run(&mut self, cmd: &Command) -> CommandResult {
            let (result, ops) = apply(self, cmd).expect("apply over memory cannot fail");
            self.apply_ops(ops);
            result
        }
    }

    pub struct MemCursor<'a> {
        entries: Vec<(&'a [u8], &'a [u8])>,
        pos: usize,
    }

    impl KvCursor for MemCursor<'_> {
        fn seek(&mut self, key: &[u8]) {
            self.pos = self.entries.partition_point(|(k, _)| *k < key);
        }
        fn current(&self) -> Result<Option<KvEntry<'_>>, MetaError> {
            Ok(self.entries.get(self.pos).copied())
        }
        fn next(&mut self) {
            self.pos += 1;
        }
    }

    impl StateRead for MemState {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
            Ok(self.0.get(key).cloned())
        }
        fn cursor(&self) -> Box<dyn KvCursor + '_> {
            let entries = self
                .0
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            Box::new(MemCursor { entries, pos: 0 })
        }
    }
}

#[cfg(test)]
mod tests {

    use super::mem::MemState;
    use super::*;

    fn record(size: u64) -> ObjectRecord {
        ObjectRecord::for_tests(size as u128, size, format!("etag{size}"), vec![1, 2, 3])
    }

    fn create_bucket(name: &str, owner: &str) -> Command {
        Command::CreateBucket {
            name: name.into(),
            id: BucketId(7),
            owner: owner.into(),
            created_ms: 5,
        }
    }

    fn put(bucket: &str, key: &str) -> Command {
        Command::PutObject {
            bucket: bucket.into(),
            key: key.into(),
            record: record(key.len() as u64),
            condition: None,
        }
    }

    fn state_with(keys: &[&str]) -> MemState {
        let mut s = MemState::default();
        assert_eq!(
            s.run(&create_bucket("b", "alice")),
            CommandResult::BucketCreated
        );
        for k in keys {
            assert!(matches!(
                s.run(&put("b", k)),
                CommandResult::ObjectPut { replaced: None }
            ));
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
            bucket: "b".into(),
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: start_after.map(Into::into),
            max_keys,
        };
        match query(s, &Query::ListObjects(q)).expect("listing") {
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
        let other = Command::CreateBucket {
            name: "c".into(),
            id: BucketId(8),
            owner: "alice".into(),
            created_ms: 1,
        };
        assert_eq!(s.run(&other), CommandResult::BucketCreated);
        assert!(matches!(
            s.run(&put("c", "k2")),
            CommandResult::ObjectPut { .. }
        ));
        assert_eq!(names(&list(&s, "", None, None, 10)).0, vec!["k1"]);
        let q = ListObjectsQuery {
            bucket: "nope".into(),
            prefix: String::new(),
            delimiter: None,
            start_after: None,
            max_keys: 10,
        };
        assert_eq!(
            query(&s, &Query::ListObjects(q)).expect("query"),
            QueryResult::NoSuchBucket
        );
    }

    #[test]
    fn apply_bucket_lifecycle() {
        let mut s = MemState::default();
        assert_eq!(
            s.run(&Command::DeleteBucket { name: "b".into() }),
            CommandResult::NoSuchBucket
        );
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
        assert_eq!(
            s.run(&put("b", "k")),
            CommandResult::ObjectPut { replaced: None }
        );
        assert_eq!(
            s.run(&Command::DeleteBucket { name: "b".into() }),
            CommandResult::BucketNotEmpty
        );
        assert_eq!(
            s.run(&Command::DeleteObject {
                bucket: "b".into(),
                key: "k".into()
            }),
            CommandResult::ObjectDeleted {
                removed: Some(record(1))
            }
        );
        assert_eq!(
            s.run(&Command::DeleteBucket { name: "b".into() }),
            CommandResult::Ok
        );
        assert_eq!(
            query(&s, &Query::GetBucket { name: "b".into() }).expect("q"),
            QueryResult::Bucket(None)
        );
        assert!(s.0.is_empty(), "nothing left behind");
    }

    #[test]
    fn apply_objects() {
        let mut s = MemState::default();
        assert_eq!(s.run(&put("b", "k")), CommandResult::NoSuchBucket);
        assert_eq!(
            s.run(&Command::DeleteObject {
                bucket: "b".into(),
                key: "k".into()
            }),
            CommandResult::NoSuchBucket
        );
        assert_eq!(
            s.run(&create_bucket("b", "alice")),
            CommandResult::BucketCreated
        );
        assert_eq!(
            s.run(&Command::DeleteObject {
                bucket: "b".into(),
                key: "k".into()
            }),
            CommandResult::ObjectDeleted { removed: None }
        );
        assert_eq!(
            s.run(&put("b", "k")),
            CommandResult::ObjectPut { replaced: None }
        );
        let second = Command::PutObject {
            bucket: "b".into(),
            key: "k".into(),
            record: record(9),
            condition: None,
        };
        assert_eq!(
            s.run(&second),
            CommandResult::ObjectPut {
                replaced: Some(record(1))
            }
        );
        let got = query(
            &s,
            &Query::GetObject {
                bucket: "b".into(),
                key: "k".into(),
            },
        )
        .expect("q");
        assert_eq!(got, QueryResult::Object(Some(record(9))));
        let got = query(
            &s,
            &Query::GetObject {
                bucket: "b".into(),
                key: "missing".into(),
            },
        )
        .expect("q");
        assert_eq!(got, QueryResult::Object(None));
        let got = query(
            &s,
            &Query::GetObject {
                bucket: "x".into(),
                key: "k".into(),
            },
        )
        .expect("q");
        assert_eq!(got, QueryResult::NoSuchBucket);
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
            s.run(&Command::CreateAccessKey { record: key("K2") }),
            CommandResult::AccessKeyCreated
        );
        assert_eq!(
            s.run(&Command::CreateAccessKey { record: key("K2") }),
            CommandResult::AccessKeyExists
        );
        assert_eq!(
            s.run(&Command::CreateAccessKey { record: key("K1") }),
            CommandResult::AccessKeyCreated
        );
        assert_eq!(
            query(&s, &Query::ListAccessKeys).expect("q"),
            QueryResult::AccessKeys(vec![key("K1"), key("K2")])
        );
        assert_eq!(
            query(
                &s,
                &Query::GetAccessKey {
                    key_id: "K1".into()
                }
            )
            .expect("q"),
            QueryResult::AccessKey(Some(key("K1")))
        );
        assert_eq!(
            query(
                &s,
                &Query::GetAccessKey {
                    key_id: "K3".into()
                }
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
        let QueryResult::Buckets(buckets) = query(&s, &Query::ListBuckets).expect("q") else {
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
            query(&s, &Query::ListBuckets),
            Err(MetaError::Codec(_))
        ));
        assert!(matches!(
            apply(&s, &put("b", "x")),
            Err(MetaError::Codec(_))
        ));
    }
}
