//! The metadata state machine's logic: the deterministic apply of a [`Command`] and the answer to
//! a [`Query`], over an ordered key-value space reached through [`StateRead`]. Pure: no RocksDB,
//! no clock, no randomness (the store supplies reads and persists the returned [`Op`]s), so it is
//! unit-tested over a `BTreeMap`.
//!
//! Keyspace (`sm_data`):
//! - `b/<bucket name>` → [`BucketRecord`] (the control group's)
//! - `x/<bucket id, 16 hex digits>` → the id: the bucket was deleted (sealed in its partition)
//! - `k/<access key id>` → [`AccessKeyRecord`]
//! - `o/<bucket id, 16 hex digits>/<object key bytes>` → [`ObjectRecord`]: a bucket's objects are
//!   one ordered range, so a listing is a range scan.
//! - `u/<bucket id>/<object key bytes>\0<upload id>` and `p/<bucket id>/<upload id>/<part
//!   number, 8 hex digits>`: multipart uploads in progress and their parts ([`super::uploads`]).
//! - `g/…`: the retire queue of unlinked data ([`super::garbage`]).
//! - `d/…` and `e/…`: results of applied writes, for exactly-once retries ([`super::dedup`]).
//! - `h/…` and `r/stats`: the repair queue and its totals ([`super::repair`]).
//!
//! Values are a 1-byte format version followed by MessagePack with named fields.

use serde::{de::DeserializeOwned, Serialize};

use super::error::MetaError;
use super::model::{
    AccessKeyRecord, BucketRecord, Command, CommandResult, ListObjectsPage, ListObjectsQuery,
    ObjectRecord, ObjectSummary, Query, QueryResult, Write, WriteCondition,
};
use super::{dedup, garbage, repair, uploads};
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

/// The seal of a deleted bucket, in its partition.
pub fn sealed_key(bucket: BucketId) -> Vec<u8> {
    format!("x/{:016x}", bucket.0).into_bytes()
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

pub(crate) fn get_bucket(
    state: &dyn StateRead,
    name: &str,
) -> Result<Option<BucketRecord>, MetaError> {
    get_decoded(state, &bucket_key(name))
}

/// Applies one client write proposed at `at_ms`: a write whose id was applied before gets that
/// result again and changes nothing. Deterministic in (state, at_ms, write).
pub fn apply_write(
    state: &dyn StateRead,
    at_ms: i64,
    write: &Write,
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    if let Some(id) = write.id {
        if let Some(result) = dedup::lookup(state, id)? {
            return Ok((result, vec![]));
        }
    }
    let (result, mut ops) = apply(state, at_ms, &write.cmd)?;
    if let Some(id) = write.id {
        ops.extend(dedup::remember_ops(at_ms, id, &result)?);
    }
    Ok((result, ops))
}

/// Applies one command at `at_ms`: its result and the changes to persist. Data the command
/// unlinks goes into the retire queue. Deterministic in (state, at_ms, command).
pub fn apply(
    state: &dyn StateRead,
    at_ms: i64,
    cmd: &Command,
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    // Object-level commands name a bucket by id: a sealed (deleted) bucket refuses them all.
    if let Some(bucket) = bucket_of(cmd) {
        if is_sealed(state, bucket)? {
            return Ok((CommandResult::NoSuchBucket, vec![]));
        }
    }
    match cmd {
        Command::CreateBucket(c) => {
            if let Some(existing) = get_bucket(state, &c.name)? {
                let result = if existing.owner == c.owner {
                    CommandResult::BucketAlreadyOwnedByYou
                } else {
                    CommandResult::BucketAlreadyExists
                };
                return Ok((result, vec![]));
            }
            let record = BucketRecord {
                name: c.name.clone(),
                id: c.id,
                owner: c.owner.clone(),
                created_ms: c.created_ms,
                grants: Default::default(),
                tags: Default::default(),
                cors: Vec::new(),
            };
            Ok((
                CommandResult::BucketCreated,
                vec![Op::Put(bucket_key(&c.name), encode_value(&record)?)],
            ))
        }
        Command::DeleteBucket(c) => match get_bucket(state, &c.name)? {
            // Only the bucket that was sealed: one created again under the name stays.
            Some(b) if b.id == c.id => {
                Ok((CommandResult::Ok, vec![Op::Delete(bucket_key(&c.name))]))
            }
            _ => Ok((CommandResult::NoSuchBucket, vec![])),
        },
        Command::SealBucket(c) => {
            // Uploads in progress hold shards too: a bucket with any is not empty.
            for prefix in [objects_prefix(c.bucket), uploads::uploads_prefix(c.bucket)] {
                if has_prefix(state, &prefix)? {
                    return Ok((CommandResult::BucketNotEmpty, vec![]));
                }
            }
            Ok((
                CommandResult::Ok,
                vec![Op::Put(sealed_key(c.bucket), encode_value(&c.bucket)?)],
            ))
        }
        Command::PutObject(c) => {
            let k = object_key(c.bucket, &c.key);
            let replaced = get_decoded::<ObjectRecord>(state, &k)?;
            if let Some(refused) = check_condition(c.condition.as_ref(), replaced.as_ref()) {
                return Ok((refused, vec![]));
            }
            let record = &c.record;
            let mut ops = repair::degraded_write_ops(at_ms, &k, record.version, &record.data)?;
            ops.push(Op::Put(k, encode_value(record)?));
            if let Some(old) = replaced.filter(|old| old.version != record.version) {
                ops.extend(garbage::retire_ops(at_ms, old.version, &old.data)?);
            }
            Ok((CommandResult::ObjectPut, ops))
        }
        Command::SetObjectTags(c) => {
            let k = object_key(c.bucket, &c.key);
            match get_decoded::<ObjectRecord>(state, &k)? {
                Some(mut r) if r.version == c.version => {
                    r.tags = c.tags.clone();
                    Ok((CommandResult::Ok, vec![Op::Put(k, encode_value(&r)?)]))
                }
                // Overwritten meanwhile: the tags were for a version that is gone.
                Some(_) => Ok((CommandResult::PreconditionFailed, vec![])),
                None => Ok((CommandResult::NoSuchKey, vec![])),
            }
        }
        Command::DeleteAccessKey(c) => {
            let k = access_key_key(&c.key_id);
            if state.get(&k)?.is_none() {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            }
            Ok((CommandResult::Ok, vec![Op::Delete(k)]))
        }
        Command::SetKeyCreateBucket(c) => {
            let k = access_key_key(&c.key_id);
            let Some(mut record) = get_decoded::<AccessKeyRecord>(state, &k)? else {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            };
            record.allow_create_bucket = c.allow;
            Ok((CommandResult::Ok, vec![Op::Put(k, encode_value(&record)?)]))
        }
        Command::SetBucketGrant(c) => {
            if state.get(&access_key_key(&c.key_id))?.is_none() {
                return Ok((CommandResult::NoSuchAccessKey, vec![]));
            }
            update_bucket(state, &c.bucket, |b| {
                if c.rights.any() {
                    b.grants.insert(c.key_id.clone(), c.rights);
                } else {
                    b.grants.remove(&c.key_id);
                }
            })
        }
        Command::SetBucketTags(c) => update_bucket(state, &c.bucket, |b| b.tags = c.tags.clone()),
        Command::SetBucketCors(c) => update_bucket(state, &c.bucket, |b| b.cors = c.rules.clone()),
        Command::CreateUpload(_)
        | Command::PutPart(_)
        | Command::CompleteUpload(_)
        | Command::AbortUpload(_) => uploads::apply(state, at_ms, cmd),
        Command::DeleteObject(c) => {
            let k = object_key(c.bucket, &c.key);
            let mut ops = Vec::new();
            if let Some(old) = get_decoded::<ObjectRecord>(state, &k)? {
                ops.push(Op::Delete(k));
                ops.extend(garbage::retire_ops(at_ms, old.version, &old.data)?);
            }
            Ok((CommandResult::ObjectDeleted, ops))
        }
        Command::CreateAccessKey(c) => {
            let k = access_key_key(&c.record.key_id);
            if state.get(&k)?.is_some() {
                return Ok((CommandResult::AccessKeyExists, vec![]));
            }
            Ok((
                CommandResult::AccessKeyCreated,
                vec![Op::Put(k, encode_value(&c.record)?)],
            ))
        }
        Command::RetireProgress(c) => Ok((
            CommandResult::Ok,
            garbage::progress_ops(state, &c.done, &c.retry)?,
        )),
        Command::QueueHeal(c) => repair::queue_ops(state, at_ms, &c.reports),
        Command::HealProgress(c) => repair::progress_ops(state, at_ms, c.version, &c.result),
        Command::ScrubProgress(c) => repair::scrub_ops(state, at_ms, &c.page),
    }
}

/// The bucket an object-level command acts in (its partition's key).
fn bucket_of(cmd: &Command) -> Option<BucketId> {
    match cmd {
        Command::PutObject(c) => Some(c.bucket),
        Command::DeleteObject(c) => Some(c.bucket),
        Command::SetObjectTags(c) => Some(c.bucket),
        Command::CreateUpload(c) => Some(c.bucket),
        Command::PutPart(c) => Some(c.bucket),
        Command::CompleteUpload(c) => Some(c.bucket),
        Command::AbortUpload(c) => Some(c.bucket),
        // Sealing twice is allowed (a retried delete); the rest are not object-level.
        _ => None,
    }
}

/// Whether bucket `id` was deleted (sealed in its partition).
pub(crate) fn is_sealed(state: &dyn StateRead, id: BucketId) -> Result<bool, MetaError> {
    Ok(state.get(&sealed_key(id))?.is_some())
}

/// Answers a query from the current state.
pub fn query(state: &dyn StateRead, q: &Query) -> Result<QueryResult, MetaError> {
    let bucket = match q {
        Query::GetObject(g) => Some(g.bucket),
        Query::ListObjects(l) => Some(l.0.bucket),
        Query::GetUpload(g) => Some(g.bucket),
        Query::ListParts(l) => Some(l.0.bucket),
        Query::ListUploads(l) => Some(l.0.bucket),
        _ => None,
    };
    if let Some(b) = bucket {
        if is_sealed(state, b)? {
            return Ok(QueryResult::NoSuchBucket);
        }
    }
    match q {
        Query::GetBucket(g) => Ok(QueryResult::Bucket(get_bucket(state, &g.name)?)),
        Query::ListBuckets(_) => Ok(QueryResult::Buckets(scan_prefix(state, BUCKET_PREFIX)?)),
        Query::GetObject(g) => Ok(QueryResult::Object(get_decoded(
            state,
            &object_key(g.bucket, &g.key),
        )?)),
        Query::ListObjects(l) => Ok(QueryResult::Objects(list_objects(state, &l.0)?)),
        Query::GetAccessKey(g) => Ok(QueryResult::AccessKey(get_decoded(
            state,
            &access_key_key(&g.key_id),
        )?)),
        Query::ListAccessKeys(_) => Ok(QueryResult::AccessKeys(scan_prefix::<AccessKeyRecord>(
            state,
            ACCESS_KEY_PREFIX,
        )?)),
        Query::GetUpload(_) | Query::ListParts(_) | Query::ListUploads(_) => {
            uploads::query(state, q)
        }
        Query::RepairStatus(_) => Ok(QueryResult::Repair(repair::report(state)?)),
    }
}

/// Rewrites a bucket's record with `change`; NoSuchBucket if it does not exist.
fn update_bucket(
    state: &dyn StateRead,
    name: &str,
    change: impl FnOnce(&mut BucketRecord),
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    let Some(mut b) = get_bucket(state, name)? else {
        return Ok((CommandResult::NoSuchBucket, vec![]));
    };
    change(&mut b);
    Ok((
        CommandResult::Ok,
        vec![Op::Put(bucket_key(name), encode_value(&b)?)],
    ))
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
pub fn list_objects(
    state: &dyn StateRead,
    q: &ListObjectsQuery,
) -> Result<ListObjectsPage, MetaError> {
    let bucket = q.bucket;
    let mut page = ListObjectsPage::default();
    let max_keys = q.max_keys.min(MAX_KEYS_PER_PAGE);
    if max_keys == 0 {
        return Ok(page);
    }
    let base = objects_prefix(bucket);
    let start_after = q.start_after.as_deref().map(str::as_bytes);
    let mut seek_from = [base.as_slice(), q.prefix.as_bytes()].concat();
    if let Some(sa) = start_after {
        let mut after = [base.as_slice(), sa].concat();
        after.push(0);
        seek_from = seek_from.max(after);
    }
    let truncated = walk_grouped(
        state,
        GroupedScan {
            base: &base,
            prefix: &q.prefix,
            delimiter: q.delimiter.as_deref(),
            seek_from,
            groups_after: start_after,
            max: max_keys,
        },
        |k| Ok(k),
        |listed| {
            match listed {
                Listed::Group(common) => {
                    page.next_start_after = Some(common.clone());
                    page.common_prefixes.push(common);
                }
                Listed::Entry { name, value } => {
                    let key = utf8(name)?;
                    let record: ObjectRecord = decode_value(value)?;
                    page.objects.push(ObjectSummary {
                        key: key.clone(),
                        size: record.size,
                        etag: record.etag,
                        last_modified_ms: record.last_modified_ms,
                    });
                    page.next_start_after = Some(key);
                }
            }
            Ok(())
        },
    )?;
    page.is_truncated = truncated;
    Ok(page)
}

/// A listing scan: keys under `base ++ prefix` from `seek_from`, whose names (what `name_of`
/// makes of a key past `base`) are grouped at the first `delimiter` after the prefix into
/// common prefixes. Groups that sort at or before `groups_after` were listed on an earlier
/// page. At most `max` entries.
pub(crate) struct GroupedScan<'a> {
    pub base: &'a [u8],
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub seek_from: Vec<u8>,
    pub groups_after: Option<&'a [u8]>,
    pub max: usize,
}

/// One entry of a [`GroupedScan`]: a common prefix, or a key's name and value.
pub(crate) enum Listed<'a> {
    Group(String),
    Entry { name: &'a [u8], value: &'a [u8] },
}

/// Runs a [`GroupedScan`], handing each entry to `emit`; returns whether entries remained
/// (the page is truncated). After a common prefix the cursor seeks past the whole group, so a
/// listing costs O(entries returned) seeks, not O(keys under the prefix).
pub(crate) fn walk_grouped(
    state: &dyn StateRead,
    scan: GroupedScan<'_>,
    name_of: fn(&[u8]) -> Result<&[u8], MetaError>,
    mut emit: impl FnMut(Listed<'_>) -> Result<(), MetaError>,
) -> Result<bool, MetaError> {
    let full_prefix = [scan.base, scan.prefix.as_bytes()].concat();
    let delimiter = scan.delimiter.filter(|d| !d.is_empty()).map(str::as_bytes);
    let mut cursor = state.cursor();
    cursor.seek(&scan.seek_from);
    let mut n_entries = 0usize;
    while let Some((k, v)) = cursor.current()? {
        if !k.starts_with(&full_prefix) {
            return Ok(false);
        }
        let name = name_of(&k[scan.base.len()..])?;
        let remainder = &name[scan.prefix.len()..];
        if let Some(pos) = delimiter.and_then(|d| find(remainder, d).map(|p| p + d.len())) {
            let group_len = scan.prefix.len() + pos;
            let common = &name[..group_len];
            if scan.groups_after.is_none_or(|after| common > after) {
                if n_entries == scan.max {
                    return Ok(true);
                }
                emit(Listed::Group(utf8(common)?))?;
                n_entries += 1;
            }
            match prefix_successor(&k[..scan.base.len() + group_len]) {
                Some(next) => cursor.seek(&next),
                None => return Ok(false),
            }
            continue;
        }
        if n_entries == scan.max {
            return Ok(true);
        }
        emit(Listed::Entry { name, value: v })?;
        n_entries += 1;
        cursor.next();
    }
    Ok(false)
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

        /// Applies `cmd` at time 1000 ms.
        pub fn run(&mut self, cmd: &Command) -> CommandResult {
            self.run_at(1000, cmd)
        }

        pub fn run_at(&mut self, at_ms: i64, cmd: &Command) -> CommandResult {
            let (result, ops) = apply(self, at_ms, cmd).expect("apply over memory cannot fail");
            self.apply_ops(ops);
            result
        }

        /// Applies a client write (with its dedup check) at `at_ms`.
        pub fn write_at(&mut self, at_ms: i64, write: &Write) -> CommandResult {
            let (result, ops) =
                apply_write(self, at_ms, write).expect("apply over memory cannot fail");
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
#[path = "state_tests.rs"]
mod tests;
