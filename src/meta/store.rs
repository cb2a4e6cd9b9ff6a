//! The metadata node's RocksDB: the Raft log and the state machine in one database, behind
//! openraft's storage-v2 traits. The only module that names `rocksdb::`.
//!
//! Column families: `raft_log` (big-endian index → entry), `raft_meta` (vote, committed, last
//! purged log id), `sm_data` (the keyspace of [`super::state`]), `sm_meta` (last applied log id,
//! last membership). Values carry a format version byte ([`super::state::encode_value`]).
//!
//! Crash consistency:
//! - `append`, `save_vote` and `truncate` write with `sync = true`: they are durable when they
//!   return, and only then does openraft learn the log was flushed.
//! - `apply` writes each entry's state changes together with `last_applied` in one WriteBatch,
//!   without fsync. All column families share one WAL that RocksDB replays in order, so a crash
//!   leaves the state machine at some earlier entry boundary with a matching `last_applied`, never
//!   half an entry; openraft re-applies the rest from the (synced) log on restart. The next synced
//!   log write also makes every earlier apply durable.
//! - `purge` records the last purged id and deletes the entries in one synced batch: a crash
//!   leaves both or neither, and every apply before it is durable first.
//! - Snapshots are files (`<meta dir>/snapshots/<id>.snap`, format in [`super::snapshot`]),
//!   streamed from a RocksDB snapshot when openraft asks for one and kept: the current one is
//!   named in `sm_meta` and reused for every send until the next build, so a lagging follower
//!   never makes the leader rebuild. A received snapshot becomes the current one.
//! - `install_snapshot` streams the file into `sm_data` in bounded batches. It first records
//!   which file it installs (`installing`, synced); the last batch sets `last_applied`, the
//!   membership and the current snapshot and clears the mark (synced). A crash in between
//!   leaves the mark, and [`StateMachineStore::open`] installs the same file again before Raft
//!   starts, so the state machine is never seen half replaced.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, Vote,
};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBRawIterator, Direction,
    IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::dedup;
use super::error::MetaError;
use super::model::{
    CommandResult, GarbageRecord, Proposal, ProposalResult, Query, QueryResult, Write,
};
use super::raft::{Entry, LogId, RaftNodeId, StorageError, StoredMembership, TypeConfig};
use super::snapshot::{self as snapfile, SnapshotHeader, SnapshotReader, SnapshotWriter};
use super::state::{self, decode_value, encode_value, KvCursor, KvEntry, Op, StateRead};

const CF_RAFT_LOG: &str = "raft_log";
const CF_RAFT_META: &str = "raft_meta";
const CF_SM_DATA: &str = "sm_data";
const CF_SM_META: &str = "sm_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
/// `(log id, n)`: the first n commands of that batch entry are applied (see `apply_batch`).
const KEY_BATCH_PROGRESS: &[u8] = b"batch_progress";

/// `raft_meta` key of the database's format: [`META_FORMAT`], written when it is created.
const KEY_FORMAT: &[u8] = b"format";
/// The format of the log entries and records this build writes. 2: typed requests, object
/// commands naming buckets by id (1, unmarked, named them by name).
pub const META_FORMAT: u32 = 2;

/// Bound on the metadata WAL (see [`MetaDb::open`]).
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;

/// `sm_meta` keys of the snapshot files: the current one, and the one being installed.
const KEY_CURRENT_SNAPSHOT: &[u8] = b"current_snapshot";
const KEY_INSTALLING: &[u8] = b"installing_snapshot";
/// Bytes of snapshot entries written per (unsynced) batch while installing.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// A snapshot file and what it is of.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    /// File name in the snapshots directory.
    file: String,
}

/// One node's metadata database.
pub struct MetaDb {
    db: DB,
    /// Where snapshot files live.
    snapshots: PathBuf,
    /// Snapshots built since open (for tests and status).
    builds: AtomicU64,
}

fn storage_err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Storage(e.to_string())
}

impl MetaDb {
    /// Opens (creating if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<MetaDb>, MetaError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The WAL is shared by the column families; one that takes few writes (the state
        // machine's `last_applied`) would otherwise never flush and pin every WAL file behind
        // it (measured: 1.7 GB of WAL after ~40k small PUTs). Past this size RocksDB flushes the
        // column families holding the oldest WAL so it can be dropped.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let cfs = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META]
            .into_iter()
            .map(|name| {
                let mut cf_opts = Options::default();
                if name == CF_SM_DATA {
                    // Point lookups dominate (records by key, dedup ids that are mostly
                    // absent): a bloom filter answers a miss without reading data blocks.
                    let mut table = BlockBasedOptions::default();
                    table.set_bloom_filter(10.0, false);
                    cf_opts.set_block_based_table_factory(&table);
                }
                ColumnFamilyDescriptor::new(name, cf_opts)
            });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(storage_err)?;
        let snapshots = snapfile::snapshots_dir(path);
        std::fs::create_dir_all(&snapshots).map_err(storage_err)?;
        let db = MetaDb {
            db,
            snapshots,
            builds: AtomicU64::new(0),
        };
        db.check_format(path)?;
        Ok(Arc::new(db))
    }

    /// Marks a new database with [`META_FORMAT`]; refuses one written in another format (its
    /// log entries would not decode, or decode into something else).
    fn check_format(&self, path: &Path) -> Result<(), MetaError> {
        match self.get_meta::<u32>(CF_RAFT_META, KEY_FORMAT)? {
            Some(META_FORMAT) => Ok(()),
            found => {
                let empty = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META]
                    .into_iter()
                    .all(|cf| {
                        self.db
                            .iterator_cf(self.cf(cf), IteratorMode::Start)
                            .next()
                            .is_none()
                    });
                if found.is_none() && empty {
                    let mut batch = WriteBatch::default();
                    batch.put_cf(
                        self.cf(CF_RAFT_META),
                        KEY_FORMAT,
                        encode_value(&META_FORMAT)?,
                    );
                    return self.write(batch, true);
                }
                Err(MetaError::Format(format!(
                    "{} holds metadata in format {} and this build reads format {META_FORMAT}: \
                     it was written by an older Baobab (no upgrade path exists before 1.0); \
                     start the node on an empty metadata directory",
                    path.display(),
                    found.unwrap_or(1)
                )))
            }
        }
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<T>, MetaError> {
        self.db
            .get_cf(self.cf(cf), key)
            .map_err(storage_err)?
            .map(|v| decode_value(&v))
            .transpose()
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), MetaError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(storage_err)
    }

    /// Whether this node has never taken part in the group (no vote, no log, nothing applied).
    pub fn is_fresh(&self) -> Result<bool, MetaError> {
        let no_vote = self
            .get_meta::<Vote<RaftNodeId>>(CF_RAFT_META, KEY_VOTE)?
            .is_none();
        let no_log = self.last_log_id()?.is_none()
            && self
                .get_meta::<LogId>(CF_RAFT_META, KEY_LAST_PURGED)?
                .is_none();
        let nothing_applied = self
            .get_meta::<LogId>(CF_SM_META, KEY_LAST_APPLIED)?
            .is_none();
        Ok(no_vote && no_log && nothing_applied)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, MetaError> {
        let mut it = self.db.iterator_cf(self.cf(CF_RAFT_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(storage_err(e)),
            Some(Ok((_, v))) => Ok(Some(decode_value::<Entry>(&v)?.log_id)),
        }
    }

    /// Snapshots built since this database was opened.
    #[cfg(test)]
    pub fn snapshot_builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// The path a snapshot being received from the leader is assembled at.
    pub fn received_snapshot_path(&self, snapshot_id: &str) -> Result<PathBuf, MetaError> {
        Ok(self.snapshots.join(snapfile::file_name(snapshot_id, true)?))
    }

    /// Answers a query from the local state machine (the caller ensures linearizability).
    pub fn query(&self, q: &Query) -> Result<QueryResult, MetaError> {
        state::query(&DbState { db: self }, q)
    }

    /// The oldest retire-queue entries retired at or before `before_ms` (local state).
    pub fn due_garbage(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<GarbageRecord>, MetaError> {
        super::garbage::due(&DbState { db: self }, before_ms, limit)
    }

    /// How many entries the retire queue holds (local state).
    pub fn garbage_queued(&self) -> Result<usize, MetaError> {
        super::garbage::queued(&DbState { db: self })
    }

    /// Runs a pure read over the local state machine (the caller decides what staleness is
    /// acceptable).
    pub fn read_state<T>(
        &self,
        read: impl FnOnce(&dyn state::StateRead) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        read(&DbState { db: self })
    }

    /// Which of `candidates` a record references (local state; `references.rs`).
    pub fn referenced_versions(
        &self,
        candidates: &std::collections::HashSet<crate::types::VersionId>,
    ) -> Result<std::collections::HashSet<crate::types::VersionId>, MetaError> {
        super::references::referenced_versions(&DbState { db: self }, candidates)
    }
}

/// Reads of `sm_data` at the current state.
struct DbState<'a> {
    db: &'a MetaDb,
}

struct DbCursor<'a> {
    it: DBRawIterator<'a>,
}

impl KvCursor for DbCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.it.seek(key);
    }
    fn current(&self) -> Result<Option<KvEntry<'_>>, MetaError> {
        match self.it.item() {
            Some(item) => Ok(Some(item)),
            None => self.it.status().map(|()| None).map_err(storage_err),
        }
    }
    fn next(&mut self) {
        self.it.next();
    }
}

impl StateRead for DbState<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        self.db
            .db
            .get_cf(self.db.cf(CF_SM_DATA), key)
            .map_err(storage_err)
    }
    fn cursor(&self) -> Box<dyn KvCursor + '_> {
        // An iterator reads one implicit snapshot of the database: listings are consistent.
        Box::new(DbCursor {
            it: self.db.db.raw_iterator_cf(self.db.cf(CF_SM_DATA)),
        })
    }
}

fn io_err(e: MetaError) -> StorageIOError<RaftNodeId> {
    StorageIOError::write(&e)
}

fn read_err(e: MetaError) -> StorageError {
    StorageIOError::read(&e).into()
}

fn write_err(e: MetaError) -> StorageError {
    io_err(e).into()
}

/// The Raft log half of the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<MetaDb>,
}

impl LogStore {
    pub fn new(db: Arc<MetaDb>) -> Self {
        LogStore { db }
    }

    fn put_meta_sync<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_RAFT_META), key, encode_value(value)?);
        self.db.write(batch, true)
    }
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + openraft::OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let from = log_key(start);
        let mut out = Vec::new();
        for item in self.db.db.iterator_cf(
            self.db.cf(CF_RAFT_LOG),
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| read_err(storage_err(e)))?;
            let index =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    read_err(MetaError::Codec("raft log key is not 8 bytes".into()))
                })?);
            if !range.contains(&index) {
                break;
            }
            out.push(decode_value::<Entry>(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self
            .db
            .get_meta::<LogId>(CF_RAFT_META, KEY_LAST_PURGED)
            .map_err(read_err)?;
        let last_log_id = self
            .db
            .last_log_id()
            .map_err(read_err)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError> {
        self.put_meta_sync(KEY_VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError> {
        self.db.get_meta(CF_RAFT_META, KEY_VOTE).map_err(read_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_RAFT_META),
            KEY_COMMITTED,
            encode_value(&committed).map_err(write_err)?,
        );
        self.db.write(batch, false).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .db
            .get_meta::<Option<LogId>>(CF_RAFT_META, KEY_COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(
                self.db.cf(CF_RAFT_LOG),
                log_key(entry.log_id.index),
                encode_value(&entry).map_err(write_err)?,
            );
        }
        // The fsync runs off the async threads; openraft awaits it before the next log IO.
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || db.write(batch, true))
            .await
            .unwrap_or_else(|e| Err(MetaError::Storage(format!("log write task failed: {e}"))));
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            log_key(log_id.index),
            log_key(u64::MAX),
        );
        batch.delete_cf(self.db.cf(CF_RAFT_LOG), log_key(u64::MAX));
        self.db.write(batch, true).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_RAFT_META),
            KEY_LAST_PURGED,
            encode_value(&log_id).map_err(write_err)?,
        );
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            log_key(0),
            log_key(log_id.index.saturating_add(1)),
        );
        // Synced: the WAL is shared by all column families, so syncing here also makes every
        // earlier (unsynced) apply durable before the log entries it came from disappear. Without
        // it, a flushed raft_log memtable could outlive lost applies across a crash.
        self.db.write(batch, true).map_err(write_err)
    }
}

/// The state machine half of the database.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<MetaDb>,
}

impl StateMachineStore {
    /// Opens the state machine, finishing a snapshot install a crash interrupted.
    pub fn open(db: Arc<MetaDb>) -> Result<Self, MetaError> {
        let sm = StateMachineStore { db };
        if let Some(pending) = sm.db.get_meta::<SnapshotFile>(CF_SM_META, KEY_INSTALLING)? {
            tracing::warn!(snapshot_id = %pending.meta.snapshot_id, "finishing a snapshot install interrupted by a crash");
            sm.install(&pending.meta, &pending.file)?;
        }
        Ok(sm)
    }

    fn put_applied(&self, batch: &mut WriteBatch, log_id: &LogId) -> Result<(), MetaError> {
        batch.put_cf(
            self.db.cf(CF_SM_META),
            KEY_LAST_APPLIED,
            encode_value(log_id)?,
        );
        Ok(())
    }

    /// Stages `ops` in `batch`.
    fn stage(&self, batch: &mut WriteBatch, ops: Vec<Op>) {
        let cf = self.db.cf(CF_SM_DATA);
        for op in ops {
            match op {
                Op::Put(k, v) => batch.put_cf(cf, k, v),
                Op::Delete(k) => batch.delete_cf(cf, k),
            }
        }
    }

    /// Applies a proposal one write at a time: each write's changes are written (not synced)
    /// before the next reads the state, together with how many writes are done, so replaying
    /// the entry after a crash skips them instead of applying them twice. The final write
    /// expires old dedup records and moves `last_applied`.
    fn apply_writes(
        &self,
        log_id: LogId,
        at_ms: i64,
        writes: Vec<Write>,
    ) -> Result<ProposalResult, MetaError> {
        let done = match self
            .db
            .get_meta::<(LogId, u64)>(CF_SM_META, KEY_BATCH_PROGRESS)?
        {
            Some((id, n)) if id == log_id => n as usize,
            _ => 0,
        };
        let state = DbState { db: &self.db };
        let mut results = Vec::with_capacity(writes.len());
        for (j, write) in writes.iter().enumerate() {
            if j < done {
                // Applied before a restart: its remembered result, if it had an id.
                let seen = match write.id {
                    Some(id) => dedup::lookup(&state, id)?,
                    None => None,
                };
                results.push(seen.unwrap_or(CommandResult::Ok));
                continue;
            }
            let (result, ops) = state::apply_write(&state, at_ms, write)?;
            let mut batch = WriteBatch::default();
            self.stage(&mut batch, ops);
            batch.put_cf(
                self.db.cf(CF_SM_META),
                KEY_BATCH_PROGRESS,
                encode_value(&(log_id, (j + 1) as u64))?,
            );
            self.db.write(batch, false)?;
            results.push(result);
        }
        let mut batch = WriteBatch::default();
        self.stage(&mut batch, dedup::expire_ops(&state, at_ms)?);
        self.put_applied(&mut batch, &log_id)?;
        self.db.write(batch, false)?;
        Ok(ProposalResult(results))
    }

    fn apply_one(&self, entry: Entry) -> Result<ProposalResult, MetaError> {
        let mut batch = WriteBatch::default();
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(Proposal::Writes { at_ms, writes }) => {
                return self.apply_writes(entry.log_id, at_ms, writes);
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                batch.put_cf(
                    self.db.cf(CF_SM_META),
                    KEY_LAST_MEMBERSHIP,
                    encode_value(&stored)?,
                );
            }
        }
        self.put_applied(&mut batch, &entry.log_id)?;
        self.db.write(batch, false)?;
        Ok(ProposalResult::default())
    }

    /// Writes the whole state at one RocksDB snapshot into a new snapshot file, streaming,
    /// and makes it the current snapshot.
    fn build(&self) -> Result<Snapshot<TypeConfig>, MetaError> {
        let snap = self.db.db.snapshot();
        let get = |cf: &str, key: &[u8]| -> Result<Option<Vec<u8>>, MetaError> {
            snap.get_cf(self.db.cf(cf), key).map_err(storage_err)
        };
        let last_applied: Option<LogId> = get(CF_SM_META, KEY_LAST_APPLIED)?
            .map(|v| decode_value(&v))
            .transpose()?;
        let last_membership: StoredMembership = get(CF_SM_META, KEY_LAST_MEMBERSHIP)?
            .map(|v| decode_value(&v))
            .transpose()?
            .unwrap_or_default();
        let header = SnapshotHeader {
            last_applied,
            last_membership: last_membership.clone(),
        };
        let tmp = self
            .db
            .snapshots
            .join(format!("build-{:016x}.tmp", rand::random::<u64>()));
        let mut writer = SnapshotWriter::create(&tmp, &header)?;
        for item in snap.iterator_cf(self.db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item.map_err(storage_err)?;
            writer.push(&k, &v)?;
        }
        let n_keys = writer.entries;
        let size = writer.finish()?;
        let snapshot_id = match &last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, size),
            None => format!("empty-{size}"),
        };
        let file = snapfile::file_name(&snapshot_id, false)?;
        std::fs::rename(&tmp, self.db.snapshots.join(&file)).map_err(storage_err)?;
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id: snapshot_id.clone(),
        };
        self.set_current(&SnapshotFile {
            meta: meta.clone(),
            file,
        })?;
        self.db.builds.fetch_add(1, Ordering::Relaxed);
        info!(%snapshot_id, n_keys, size_bytes = size, "metadata snapshot built");
        self.open_snapshot(meta)
    }

    /// Records `current` as the current snapshot (synced) and removes every other file.
    fn set_current(&self, current: &SnapshotFile) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_SM_META),
            KEY_CURRENT_SNAPSHOT,
            encode_value(current)?,
        );
        self.db.write(batch, true)?;
        self.remove_snapshot_files_except(&current.file);
        Ok(())
    }

    /// Best effort: a file left behind is removed by the next call. (A send still reading an
    /// unlinked file keeps reading it.)
    fn remove_snapshot_files_except(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.db.snapshots) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = name.ends_with(".snap") || name.starts_with("build-");
            if stale && name != keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn open_snapshot(
        &self,
        meta: SnapshotMeta<RaftNodeId, BasicNode>,
    ) -> Result<Snapshot<TypeConfig>, MetaError> {
        let file = snapfile::file_name(&meta.snapshot_id, false)?;
        let f = std::fs::File::open(self.db.snapshots.join(file)).map_err(storage_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        })
    }

    /// The current snapshot, if its file is there.
    fn current(&self) -> Result<Option<Snapshot<TypeConfig>>, MetaError> {
        let Some(current) = self
            .db
            .get_meta::<SnapshotFile>(CF_SM_META, KEY_CURRENT_SNAPSHOT)?
        else {
            return Ok(None);
        };
        if !self.db.snapshots.join(&current.file).exists() {
            return Ok(None);
        }
        self.open_snapshot(current.meta).map(Some)
    }

    /// Replaces the state with the snapshot in `file` (named `name` in the snapshots
    /// directory), streaming, crash-safe (see the module doc).
    fn install(
        &self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        name: &str,
    ) -> Result<(), MetaError> {
        let record = SnapshotFile {
            meta: meta.clone(),
            file: name.to_string(),
        };
        let path = self.db.snapshots.join(name);
        let open = || -> Result<SnapshotReader, MetaError> {
            let f = std::fs::File::open(&path).map_err(storage_err)?;
            let (reader, header) = SnapshotReader::open(f)?;
            if header.last_applied != meta.last_log_id {
                return Err(MetaError::Codec(format!(
                    "snapshot data is at {:?} but its meta says {:?}",
                    header.last_applied, meta.last_log_id
                )));
            }
            Ok(reader)
        };
        // Read it through once before touching the state: a bad file is refused whole.
        let mut check = open()?;
        while check.next_batch()?.is_some() {}
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_SM_META),
            KEY_INSTALLING,
            encode_value(&record)?,
        );
        self.db.write(batch, true)?;

        let mut reader = open()?;
        let data_cf = self.db.cf(CF_SM_DATA);
        let mut batch = WriteBatch::default();
        // Every key starts with a printable prefix byte: [0] .. [0xff] covers them.
        batch.delete_range_cf(data_cf, [0u8].as_slice(), [0xffu8].as_slice());
        let mut bytes = 0usize;
        let mut n_keys = 0u64;
        while let Some(entries) = reader.next_batch()? {
            for (k, v) in entries {
                bytes += k.len() + v.len();
                n_keys += 1;
                batch.put_cf(data_cf, k, v);
            }
            if bytes >= INSTALL_BATCH_BYTES {
                self.db.write(std::mem::take(&mut batch), false)?;
                bytes = 0;
            }
        }
        let meta_cf = self.db.cf(CF_SM_META);
        batch.put_cf(
            meta_cf,
            KEY_LAST_MEMBERSHIP,
            encode_value(&meta.last_membership)?,
        );
        match &meta.last_log_id {
            Some(l) => self.put_applied(&mut batch, l)?,
            None => batch.delete_cf(meta_cf, KEY_LAST_APPLIED),
        }
        batch.delete_cf(meta_cf, KEY_BATCH_PROGRESS);
        batch.put_cf(meta_cf, KEY_CURRENT_SNAPSHOT, encode_value(&record)?);
        batch.delete_cf(meta_cf, KEY_INSTALLING);
        self.db.write(batch, true)?;
        self.remove_snapshot_files_except(name);
        info!(snapshot_id = %meta.snapshot_id, n_keys, "metadata snapshot installed");
        Ok(())
    }

    /// Takes over a received snapshot file (renamed to its final name) and installs it.
    fn install_received(
        &self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
    ) -> Result<(), MetaError> {
        let received = self.db.received_snapshot_path(&meta.snapshot_id)?;
        let name = snapfile::file_name(&meta.snapshot_id, false)?;
        if received.exists() {
            std::fs::rename(&received, self.db.snapshots.join(&name)).map_err(storage_err)?;
        }
        self.install(meta, &name)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let last_applied = self
            .db
            .get_meta(CF_SM_META, KEY_LAST_APPLIED)
            .map_err(read_err)?;
        let membership = self
            .db
            .get_meta(CF_SM_META, KEY_LAST_MEMBERSHIP)
            .map_err(read_err)?
            .unwrap_or_default();
        Ok((last_applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut results = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let result = self
                .apply_one(entry)
                .map_err(|e| StorageIOError::apply(log_id, &e))?;
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachineStore {
        self.clone()
    }

    /// Only for openraft's chunked transfer, which is not used: snapshots arrive through
    /// `/v1/raft/snapshot/chunk` into [`MetaDb::received_snapshot_path`].
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self
            .db
            .snapshots
            .join(format!("build-{:016x}.tmp", rand::random::<u64>()));
        let f = tokio::fs::File::create(&path)
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Box::new(f))
    }

    /// Installs a snapshot received into [`MetaDb::received_snapshot_path`] (the file handle
    /// openraft passes is that file).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let fail = |e: MetaError| StorageIOError::write_snapshot(Some(meta.signature()), &e).into();
        let received = self
            .db
            .received_snapshot_path(&meta.snapshot_id)
            .map_err(fail)?;
        if !received.exists() {
            // Handed over some other way: copy it where a received snapshot lives.
            use tokio::io::AsyncSeekExt;
            let copy = async {
                snapshot.seek(std::io::SeekFrom::Start(0)).await?;
                let mut out = tokio::fs::File::create(&received).await?;
                tokio::io::copy(&mut snapshot, &mut out).await?;
                out.sync_all().await
            };
            copy.await.map_err(|e| fail(storage_err(e)))?;
        }
        self.install_received(meta).map_err(fail)
    }

    /// The current snapshot (built once, reused until the next build); built now if there is
    /// none yet.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let read_err = |e: MetaError| StorageError::from(StorageIOError::read_state_machine(&e));
        let snapshot = match self.current().map_err(read_err)? {
            Some(s) => s,
            None => self.build().map_err(read_err)?,
        };
        Ok(snapshot.meta.last_log_id.is_some().then_some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::model::Command;
    use crate::meta::request::*;
    use crate::types::BucketId;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64, cmd: Command) -> Entry {
        batch_entry(term, index, vec![cmd])
    }

    fn batch_entry(term: u64, index: u64, cmds: Vec<Command>) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Proposal::Writes {
                at_ms: 1000,
                writes: cmds
                    .into_iter()
                    .map(|cmd| Write { id: None, cmd })
                    .collect(),
            }),
        }
    }

    /// Every result of `results`, flattened.
    fn flat(results: Vec<ProposalResult>) -> Vec<CommandResult> {
        results.into_iter().flat_map(|r| r.0).collect()
    }

    fn bucket(name: &str) -> Command {
        Command::CreateBucket(CreateBucket {
            name: name.into(),
            id: BucketId(1),
            owner: "o".into(),
            created_ms: 0,
        })
    }

    #[tokio::test]
    async fn log_survives_reopen_and_truncate_purge_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = MetaDb::open(dir.path()).expect("open");
            assert!(db.is_fresh().expect("fresh"));
            let mut log = LogStore::new(db.clone());
            let entries: Vec<Entry> = (1..=5)
                .map(|i| entry(1, i, bucket(&format!("b{i}"))))
                .collect();
            let mut batch = WriteBatch::default();
            for e in &entries {
                batch.put_cf(
                    db.cf(CF_RAFT_LOG),
                    log_key(e.log_id.index),
                    encode_value(e).expect("enc"),
                );
            }
            db.write(batch, true).expect("write");
            log.save_vote(&Vote::new(1, 1)).await.expect("vote");
            log.truncate(log_id(1, 4)).await.expect("truncate");
            log.purge(log_id(1, 1)).await.expect("purge");
        }
        let db = MetaDb::open(dir.path()).expect("reopen");
        assert!(!db.is_fresh().expect("fresh"));
        let mut log = LogStore::new(db);
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(1, 1)));
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
        let got = log.try_get_log_entries(0..10).await.expect("read");
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(log.try_get_log_entries(3..=3).await.expect("read").len(), 1);
    }

    #[tokio::test]
    async fn apply_then_snapshot_install_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let mut sm = StateMachineStore::open(db.clone()).expect("open sm");
        let members: BTreeMap<u64, BasicNode> = [(1, BasicNode::new("a:1"))].into();
        let membership = Membership::new(vec![BTreeSet::from([1])], members);
        let entries = vec![
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(membership),
            },
            entry(1, 2, bucket("x")),
            entry(1, 3, bucket("x")),
        ];
        let results = flat(sm.apply(entries).await.expect("apply"));
        assert_eq!(
            results,
            vec![
                CommandResult::BucketCreated,
                CommandResult::BucketAlreadyOwnedByYou
            ]
        );
        let (applied, m) = sm.applied_state().await.expect("applied");
        assert_eq!(applied, Some(log_id(1, 3)));
        assert_eq!(m.log_id(), &Some(log_id(1, 1)));

        let snap = sm
            .get_current_snapshot()
            .await
            .expect("snap")
            .expect("some");
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));

        let dir2 = tempfile::tempdir().expect("tempdir");
        let db2 = MetaDb::open(dir2.path()).expect("open");
        let mut sm2 = StateMachineStore::open(db2.clone()).expect("open sm");
        sm2.apply(vec![entry(1, 1, bucket("stale"))])
            .await
            .expect("apply");
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("install");
        assert_eq!(
            sm2.applied_state().await.expect("applied").0,
            Some(log_id(1, 3))
        );
        let QueryResult::Buckets(b) = db2.query(&Query::ListBuckets(ListBuckets)).expect("query")
        else {
            panic!("variant")
        };
        assert_eq!(
            b.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            vec!["x"]
        );

        let bad = SnapshotMeta {
            last_log_id: Some(log_id(9, 9)),
            ..snap.meta.clone()
        };
        let bytes = sm.build().expect("build").snapshot;
        assert!(sm2.install_snapshot(&bad, bytes).await.is_err());
        let garbage_path = dir2.path().join("garbage");
        std::fs::write(&garbage_path, [1u8, 0xc1]).expect("write");
        let garbage = tokio::fs::File::open(&garbage_path).await.expect("open");
        let garbage_meta = SnapshotMeta {
            snapshot_id: "9-9-2".into(),
            ..snap.meta.clone()
        };
        assert!(sm2
            .install_snapshot(&garbage_meta, Box::new(garbage))
            .await
            .is_err());
        // Refused whole: the state is still the installed snapshot's, and reopening is clean.
        drop(sm2);
        let sm2 = StateMachineStore::open(db2.clone()).expect("reopen");
        assert_eq!(
            {
                let mut sm2 = sm2;
                sm2.applied_state().await.expect("applied").0
            },
            Some(log_id(1, 3))
        );
        assert!(db2.snapshot_builds() == 0, "a follower never built one");
    }

    fn put(key: &str, version: u128) -> Command {
        let mut record =
            crate::meta::model::ObjectRecord::for_tests(version, 1, "e".into(), vec![]);
        record.data = crate::meta::model::ObjectData::Sharded {
            k: 1,
            m: 0,
            block_size: 1024,
            shard_nodes: vec![Some(crate::types::NodeId(1))],
            digests: Default::default(),
        };
        Command::PutObject(PutObject {
            bucket: BucketId(1),
            key: key.into(),
            record,
            condition: None,
        })
    }

    /// The versions in the retire queue, oldest first.
    fn queued(db: &MetaDb) -> Vec<u128> {
        db.due_garbage(i64::MAX, 100)
            .expect("due")
            .iter()
            .map(|g| g.id.version.0)
            .collect()
    }

    /// Commands of a batch see the changes of those before them, and a batch half applied
    /// before a crash is finished on replay without applying its first half twice.
    #[tokio::test]
    async fn batch_applies_in_order_and_resumes_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let mut sm = StateMachineStore::open(db.clone()).expect("open sm");
        let batch = batch_entry(1, 1, vec![bucket("b"), put("k", 1), put("k", 2)]);
        let r = flat(sm.apply(vec![batch]).await.expect("apply"));
        assert_eq!(
            r,
            vec![
                CommandResult::BucketCreated,
                CommandResult::ObjectPut,
                CommandResult::ObjectPut
            ]
        );
        assert_eq!(queued(&db), vec![1], "the second put replaced the first");
        assert_eq!(
            sm.applied_state().await.expect("applied").0,
            Some(log_id(1, 1))
        );

        // A crash after the first two commands of entry 2 had been written: the progress
        // marker says 2 are done, last_applied still names entry 1.
        let mut w = WriteBatch::default();
        w.put_cf(
            db.cf(CF_SM_META),
            KEY_BATCH_PROGRESS,
            encode_value(&(log_id(1, 2), 2u64)).expect("enc"),
        );
        db.write(w, true).expect("write");
        // The replay skips the first two commands (they change nothing now): k is still
        // version 2 when the third command replaces it.
        let replay = batch_entry(1, 2, vec![put("k", 3), put("x", 4), put("k", 5)]);
        let r = flat(sm.apply(vec![replay]).await.expect("apply"));
        assert_eq!(r[0], CommandResult::Ok, "skipped: applied before the crash");
        assert_eq!(r[1], CommandResult::Ok);
        assert_eq!(r[2], CommandResult::ObjectPut);
        assert_eq!(
            queued(&db),
            vec![1, 2],
            "version 2 replaced, 3 never applied"
        );
        assert_eq!(
            sm.applied_state().await.expect("applied").0,
            Some(log_id(1, 2))
        );
    }

    /// A write resent with the same id (a client retry after a lost reply) is answered with
    /// the first result and changes nothing, even after a newer write to the same key: the
    /// older data never comes back and the newer is never retired.
    #[tokio::test]
    async fn a_retried_write_is_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let mut sm = StateMachineStore::open(db.clone()).expect("open sm");
        let id = |seq| Some(crate::meta::model::RequestId { client: 7, seq });
        let entry_of = |index, at_ms, writes: Vec<Write>| Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Proposal::Writes { at_ms, writes }),
        };
        let v1 = Write {
            id: id(1),
            cmd: put("k", 1),
        };
        let v2 = Write {
            id: id(2),
            cmd: put("k", 2),
        };
        sm.apply(vec![
            entry_of(
                1,
                1000,
                vec![
                    Write {
                        id: None,
                        cmd: bucket("b"),
                    },
                    v1.clone(),
                ],
            ),
            entry_of(2, 2000, vec![v2]),
            // The retry of v1 (its first reply was lost), after v2.
            entry_of(3, 3000, vec![v1.clone()]),
        ])
        .await
        .expect("apply");
        let QueryResult::Object(Some(o)) = db
            .query(&Query::GetObject(GetObject {
                bucket: BucketId(1),
                key: "k".into(),
            }))
            .expect("q")
        else {
            panic!("no object")
        };
        assert_eq!(o.version.0, 2, "the retry did not bring version 1 back");
        assert_eq!(queued(&db), vec![1], "only version 1 is retired");

        // Past the dedup window the record expires (and the same id would apply again).
        let late = crate::meta::model::DEDUP_WINDOW_MS + 10_000;
        sm.apply(vec![entry_of(4, late, vec![])])
            .await
            .expect("apply");
        assert!(dedup::lookup(
            &DbState { db: &db },
            crate::meta::model::RequestId { client: 7, seq: 1 }
        )
        .expect("lookup")
        .is_none());
    }

    fn dir_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Disk use follows live data: 200 MB of overwrites of a few keys leave far less than that
    /// on disk (the WAL of a rarely written column family no longer pins every WAL file).
    #[tokio::test]
    async fn metadata_disk_use_stays_bounded_under_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let mut sm = StateMachineStore::open(db.clone()).expect("open sm");
        sm.apply(vec![entry(1, 1, bucket("b"))])
            .await
            .expect("apply");
        let value = vec![7u8; 16 * 1024];
        for i in 0..12_800u64 {
            let record = crate::meta::model::ObjectRecord::for_tests(
                u128::from(i),
                value.len() as u64,
                "e".into(),
                value.clone(),
            );
            let cmd = Command::PutObject(PutObject {
                bucket: BucketId(1),
                key: format!("k{}", i % 16),
                record,
                condition: None,
            });
            sm.apply(vec![entry(1, i + 2, cmd)]).await.expect("apply");
        }
        let used = dir_bytes(dir.path());
        assert!(
            used < 2 * MAX_TOTAL_WAL_BYTES + (32 << 20),
            "metadata dir holds {} MiB for ~256 KiB of live data",
            used >> 20
        );
    }
}
