//! The crash disk: what a simulated crash of a storage node takes from its disk. The node's
//! files are real (a temp dir per node), so by themselves they would survive a crash whole;
//! this journal (the core's `fsutil::journal` seam) follows every durable-write step the node
//! reports and, when the driver crashes the node, rewinds its directory to what a power loss
//! may leave:
//!
//! - directory entry changes not followed by a sync of their directory are undone, newest
//!   first: a rename goes back to its old name, a created file is deleted, a created directory
//!   is removed with its contents;
//! - a file whose data was not synced after it grew is cut back to its durable length plus a
//!   torn tail drawn from the seed: a prefix of the unsynced bytes kept at 4 KiB granularity,
//!   sometimes followed by a page (or the rest of one) of garbage.
//!
//! Simplifications, each on the lenient side unless said: unlinks are durable at once (a
//! resurrected file would only be garbage); a file's data is judged by its length at the last
//! sync, so overwrites in place after a sync are not modelled (nothing reported here writes in
//! place); a rename undone over a file it had replaced leaves neither (harsher than a disk,
//! which keeps one of the two; only healing renames over an existing, corrupt shard); RocksDB
//! does its own IO and reports nothing, so the metadata store is never rewound.
//!
//! Why the rewind cannot race the node's own writes: `turmoil::Sim::crash` drops the host's
//! tokio runtime, and dropping a runtime waits until every `spawn_blocking` task that started
//! has returned (tokio's `Runtime` docs, "Shutdown"; `BlockingPool`'s `Drop`); the shard store
//! and `fsutil` do all their file IO in such tasks and report each step from inside them. So
//! when `crash` returns, every step that happened has been reported and nothing of the node
//! runs until `bounce`.
//!
//! The planning (`NodeDisk`) is pure and unit-tested; `CrashDisk` routes events to the node
//! whose data dir holds the path and applies the plans to the real files.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use baobab::fsutil::journal::{self, FsEvent, FsJournal};
use rand::Rng;

/// The granularity of torn writes (a page).
pub const PAGE_BYTES: u64 = 4096;
/// One crash in this many gets a page of garbage after its kept prefix, per torn file.
const GARBAGE_ONE_IN: u32 = 4;

/// A directory entry change, undone by a crash unless its directories were synced after it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryOp {
    Create(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
    Mkdir(PathBuf),
}

#[derive(Debug, Clone)]
struct Pending {
    op: EntryOp,
    /// The directories whose sync makes it durable (a rename: both of its directories).
    waits_on: BTreeSet<PathBuf>,
}

/// One change a crash makes to a node's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An unsynced rename undone: the file at `from` goes back to `to`.
    RenameBack { from: PathBuf, to: PathBuf },
    /// An unsynced new file.
    Delete(PathBuf),
    /// An unsynced new directory, with everything in it.
    RemoveDir(PathBuf),
    /// Unsynced data torn: the file is cut to `keep` bytes, then `garbage` is written there.
    Cut {
        path: PathBuf,
        keep: u64,
        garbage: Vec<u8>,
    },
}

/// What one node's disk may still lose: pure bookkeeping over the reported events.
#[derive(Debug, Default)]
pub struct NodeDisk {
    /// Entry changes not yet durable, oldest first.
    pending: Vec<Pending>,
    /// Files created since the last crash, by current name, with the length their data is
    /// durable up to (0 until their first sync).
    files: BTreeMap<PathBuf, u64>,
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl NodeDisk {
    /// Takes in one event; `synced_len` is the file's length when a `FileSynced` is reported.
    pub fn record(&mut self, event: FsEvent<'_>, synced_len: Option<u64>) {
        match event {
            FsEvent::FileCreated(p) => {
                self.files.insert(p.to_path_buf(), 0);
                self.push(EntryOp::Create(p.to_path_buf()), [parent(p)]);
            }
            FsEvent::FileSynced(p) => {
                // A file created before tracking began is durable as far as we know.
                if let (Some(durable), Some(len)) = (self.files.get_mut(p), synced_len) {
                    *durable = len;
                }
            }
            FsEvent::Renamed { from, to } => {
                // A file renamed over is gone; its tracking with it.
                self.files.remove(to);
                if let Some(durable) = self.files.remove(from) {
                    self.files.insert(to.to_path_buf(), durable);
                }
                let op = EntryOp::Rename {
                    from: from.to_path_buf(),
                    to: to.to_path_buf(),
                };
                self.push(op, [parent(from), parent(to)]);
            }
            FsEvent::DirCreated(d) => self.push(EntryOp::Mkdir(d.to_path_buf()), [parent(d)]),
            FsEvent::DirSynced(d) => {
                for p in &mut self.pending {
                    p.waits_on.remove(d);
                }
                self.pending.retain(|p| !p.waits_on.is_empty());
            }
            // Unlinks count as durable at once (see the module header).
            FsEvent::Removed(p) => {
                self.files.remove(p);
            }
        }
    }

    fn push(&mut self, op: EntryOp, dirs: impl IntoIterator<Item = PathBuf>) {
        self.pending.push(Pending {
            op,
            waits_on: dirs.into_iter().collect(),
        });
    }

    /// The undo of every entry change not yet durable, newest first; the tracked files
    /// follow (a file renamed back is tracked under its old name, a deleted one no more).
    pub fn undo_entries(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        for p in std::mem::take(&mut self.pending).into_iter().rev() {
            match p.op {
                EntryOp::Rename { from, to } => {
                    if let Some(durable) = self.files.remove(&to) {
                        self.files.insert(from.clone(), durable);
                    }
                    steps.push(Step::RenameBack { from: to, to: from });
                }
                EntryOp::Create(path) => {
                    self.files.remove(&path);
                    steps.push(Step::Delete(path));
                }
                EntryOp::Mkdir(dir) => {
                    self.files.retain(|f, _| !f.starts_with(&dir));
                    steps.push(Step::RemoveDir(dir));
                }
            }
        }
        steps
    }

    /// The tears of files whose data grew past what was synced; `len_of` gives a file's
    /// length now (None: it is gone). Call after the entry undo is applied.
    pub fn tear_files(
        &self,
        len_of: impl Fn(&Path) -> Option<u64>,
        rng: &mut impl Rng,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for (path, &durable) in &self.files {
            let Some(len) = len_of(path) else { continue };
            if let Some((keep, garbage)) = torn_tail(durable, len, rng) {
                steps.push(Step::Cut {
                    path: path.clone(),
                    keep,
                    garbage,
                });
            }
        }
        steps
    }
}

/// What survives of a file of `len` bytes whose first `durable` bytes were synced: a kept
/// length (`durable`, a page boundary past it, or `len`) and garbage written after it. None
/// when nothing changes.
pub fn torn_tail(durable: u64, len: u64, rng: &mut impl Rng) -> Option<(u64, Vec<u8>)> {
    if len <= durable {
        return None;
    }
    // The cut points: `durable`, every page boundary strictly between, and `len`.
    let first_boundary = (durable / PAGE_BYTES + 1) * PAGE_BYTES;
    let inner = if first_boundary < len {
        (len - 1 - first_boundary) / PAGE_BYTES + 1
    } else {
        0
    };
    let pick = rng.random_range(0..inner + 2);
    let keep = match pick {
        0 => durable,
        p if p <= inner => first_boundary + (p - 1) * PAGE_BYTES,
        _ => len,
    };
    let mut garbage = Vec::new();
    if keep < len && rng.random_range(0..GARBAGE_ONE_IN) == 0 {
        let page_end = (keep / PAGE_BYTES + 1) * PAGE_BYTES;
        garbage = vec![0u8; (page_end.min(len) - keep) as usize];
        rng.fill_bytes(&mut garbage);
    }
    (keep < len).then_some((keep, garbage))
}

/// Applies steps to the real files. A file or directory already gone is skipped (an unlink
/// after the change, durable at once).
pub fn apply(steps: &[Step]) -> std::io::Result<()> {
    fn gone_is_ok(r: std::io::Result<()>) -> std::io::Result<()> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
    for step in steps {
        match step {
            Step::RenameBack { from, to } => gone_is_ok(std::fs::rename(from, to))?,
            Step::Delete(path) => gone_is_ok(std::fs::remove_file(path))?,
            Step::RemoveDir(dir) => gone_is_ok(std::fs::remove_dir_all(dir))?,
            Step::Cut {
                path,
                keep,
                garbage,
            } => gone_is_ok(cut(path, *keep, garbage))?,
        }
    }
    Ok(())
}

fn cut(path: &Path, keep: u64, garbage: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(keep)?;
    f.write_all_at(garbage, keep)?;
    f.sync_all()
}

/// The process's crash disk: one [`NodeDisk`] per registered node data dir. Events under no
/// registered dir (another run's finished nodes, tests of the core) are ignored.
#[derive(Debug, Default)]
pub struct CrashDisk {
    nodes: Mutex<BTreeMap<PathBuf, NodeDisk>>,
}

/// What a crash did to one node's disk, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    pub entries_undone: usize,
    pub files_torn: usize,
}

impl CrashDisk {
    /// The crash disk, installed as the process's journal on first use.
    pub fn installed() -> anyhow::Result<Arc<CrashDisk>> {
        static DISK: OnceLock<Result<Arc<CrashDisk>, String>> = OnceLock::new();
        DISK.get_or_init(|| {
            let disk = Arc::new(CrashDisk::default());
            journal::install_journal(disk.clone())
                .map(|()| disk)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("the crash disk is not the file system journal: {e}"))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, NodeDisk>> {
        // Bookkeeping only: a panic mid-update loses fidelity, not memory safety.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the files under `data_dir` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, data_dir: PathBuf) -> Registration {
        self.lock().insert(data_dir.clone(), NodeDisk::default());
        Registration {
            disk: self.clone(),
            data_dir,
        }
    }

    /// Rewinds `data_dir` to what a power loss may leave. The node must not be running.
    pub fn crash(&self, data_dir: &Path, rng: &mut impl Rng) -> std::io::Result<Rewind> {
        let mut node = match self.lock().get_mut(data_dir) {
            Some(node) => std::mem::take(node),
            None => return Ok(Rewind::default()),
        };
        let undo = node.undo_entries();
        apply(&undo)?;
        let len_of = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
        let tears = node.tear_files(len_of, rng);
        apply(&tears)?;
        Ok(Rewind {
            entries_undone: undo.len(),
            files_torn: tears.len(),
        })
    }
}

impl FsJournal for CrashDisk {
    fn record(&self, event: FsEvent<'_>) {
        let path = match event {
            FsEvent::FileCreated(p)
            | FsEvent::FileSynced(p)
            | FsEvent::DirCreated(p)
            | FsEvent::DirSynced(p)
            | FsEvent::Removed(p) => p,
            FsEvent::Renamed { to, .. } => to,
        };
        let synced_len = match event {
            FsEvent::FileSynced(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            _ => None,
        };
        let mut nodes = self.lock();
        if let Some((_, node)) = nodes.iter_mut().find(|(dir, _)| path.starts_with(dir)) {
            node.record(event, synced_len);
        }
    }
}

/// A node's data dir followed by the crash disk; dropping it stops that.
pub struct Registration {
    disk: Arc<CrashDisk>,
    data_dir: PathBuf,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.disk.lock().remove(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// The temp-write-rename protocol of one shard, with `sync_data` and `sync_dir` chosen.
    fn shard_write(disk: &mut NodeDisk, sync_data: bool, sync_dir: bool, len: u64) {
        disk.record(FsEvent::FileCreated(&p("/n/s/ab/v.0.x.tmp")), None);
        if sync_data {
            disk.record(FsEvent::FileSynced(&p("/n/s/ab/v.0.x.tmp")), Some(len));
        }
        disk.record(
            FsEvent::Renamed {
                from: &p("/n/s/ab/v.0.x.tmp"),
                to: &p("/n/s/ab/v.0"),
            },
            None,
        );
        if sync_dir {
            disk.record(FsEvent::DirSynced(&p("/n/s/ab")), None);
        }
    }

    #[test]
    fn a_synced_shard_survives_whole() {
        let mut disk = NodeDisk::default();
        shard_write(&mut disk, true, true, 10_000);
        assert_eq!(disk.undo_entries(), vec![]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(disk.tear_files(|_| Some(10_000), &mut rng), vec![]);
    }

    #[test]
    fn a_rename_without_its_dir_sync_goes_back_and_the_file_is_deleted() {
        let mut disk = NodeDisk::default();
        shard_write(&mut disk, true, false, 10_000);
        assert_eq!(
            disk.undo_entries(),
            vec![
                Step::RenameBack {
                    from: p("/n/s/ab/v.0"),
                    to: p("/n/s/ab/v.0.x.tmp"),
                },
                Step::Delete(p("/n/s/ab/v.0.x.tmp")),
            ]
        );
        assert!(disk.files.is_empty());
    }

    #[test]
    fn a_renamed_file_without_its_data_sync_is_torn() {
        let mut disk = NodeDisk::default();
        shard_write(&mut disk, false, true, 0);
        assert_eq!(disk.undo_entries(), vec![]);
        let len = 10 * PAGE_BYTES + 100;
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            for step in disk.tear_files(|_| Some(len), &mut rng) {
                let Step::Cut {
                    path,
                    keep,
                    garbage,
                } = step
                else {
                    panic!("not a cut: {step:?}");
                };
                assert_eq!(path, p("/n/s/ab/v.0"));
                assert!(keep == len || keep.is_multiple_of(PAGE_BYTES), "{keep}");
                assert!(keep + garbage.len() as u64 <= len);
                assert!(garbage.len() as u64 <= PAGE_BYTES);
            }
        }
    }

    #[test]
    fn an_unsynced_new_dir_is_removed_with_its_files() {
        let mut disk = NodeDisk::default();
        disk.record(FsEvent::DirCreated(&p("/n/s/ab")), None);
        shard_write(&mut disk, true, true, 10);
        let steps = disk.undo_entries();
        assert_eq!(steps, vec![Step::RemoveDir(p("/n/s/ab"))]);
        assert!(disk.files.is_empty());
        // Once its parent is synced the directory stays.
        let mut disk = NodeDisk::default();
        disk.record(FsEvent::DirCreated(&p("/n/s/ab")), None);
        disk.record(FsEvent::DirSynced(&p("/n/s")), None);
        assert_eq!(disk.undo_entries(), vec![]);
    }

    #[test]
    fn an_unlink_is_durable_at_once() {
        let mut disk = NodeDisk::default();
        shard_write(&mut disk, false, true, 0);
        disk.record(FsEvent::Removed(&p("/n/s/ab/v.0")), None);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(disk.tear_files(|_| Some(100), &mut rng), vec![]);
    }

    #[test]
    fn torn_tails_keep_the_synced_prefix_and_cut_at_pages() {
        let mut seen_keeps = BTreeSet::new();
        let mut garbage_seen = false;
        for seed in 0..500 {
            let mut rng = StdRng::seed_from_u64(seed);
            let durable = PAGE_BYTES + 10;
            let len = 4 * PAGE_BYTES + 7;
            let Some((keep, garbage)) = torn_tail(durable, len, &mut rng) else {
                continue;
            };
            assert!(keep >= durable && keep + garbage.len() as u64 <= len);
            seen_keeps.insert(keep);
            garbage_seen |= !garbage.is_empty();
        }
        // durable, the three page boundaries past it, and the whole length.
        let want: BTreeSet<u64> = [
            PAGE_BYTES + 10,
            2 * PAGE_BYTES,
            3 * PAGE_BYTES,
            4 * PAGE_BYTES,
            4 * PAGE_BYTES + 7,
        ]
        .into();
        assert!(
            seen_keeps.is_subset(&want) && seen_keeps.len() >= 4,
            "{seen_keeps:?}"
        );
        assert!(garbage_seen);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(torn_tail(100, 100, &mut rng), None);
        assert_eq!(torn_tail(100, 50, &mut rng), None);
    }

    /// The whole crash on real files: a synced shard stays, an unsynced rename goes back, an
    /// unsynced file's data is torn.
    #[test]
    fn crash_rewinds_real_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("node1");
        let shards = root.join("shards");
        std::fs::create_dir_all(&shards).expect("mkdir");
        let disk = Arc::new(CrashDisk::default());
        let _reg = disk.register(root.clone());
        let write = |name: &str, len: usize, sync_data: bool, sync_dir: bool| {
            let tmp = shards.join(format!("{name}.tmp"));
            let fin = shards.join(name);
            std::fs::write(&tmp, vec![7u8; len]).expect("write");
            disk.record(FsEvent::FileCreated(&tmp));
            if sync_data {
                disk.record(FsEvent::FileSynced(&tmp));
            }
            std::fs::rename(&tmp, &fin).expect("rename");
            disk.record(FsEvent::Renamed {
                from: &tmp,
                to: &fin,
            });
            if sync_dir {
                disk.record(FsEvent::DirSynced(&shards));
            }
        };
        write("durable", 3 * PAGE_BYTES as usize, true, true);
        write("torn", 40 * PAGE_BYTES as usize, false, true);
        write("unnamed", 100, true, false);
        let mut rng = StdRng::seed_from_u64(3);
        let rewind = disk.crash(&root, &mut rng).expect("crash");
        assert_eq!(rewind.entries_undone, 2);
        assert_eq!(
            std::fs::read(shards.join("durable")).expect("read"),
            vec![7u8; 3 * PAGE_BYTES as usize]
        );
        assert!(!shards.join("unnamed").exists() && !shards.join("unnamed.tmp").exists());
        let torn = std::fs::read(shards.join("torn")).expect("read");
        assert_ne!(
            torn,
            vec![7u8; 40 * PAGE_BYTES as usize],
            "seed 3 keeps it whole"
        );
        // A second crash with nothing new changes nothing.
        assert_eq!(
            disk.crash(&root, &mut rng).expect("crash"),
            Rewind::default()
        );
    }
}
