//! The durability seam: the code that writes durably reports what it made durable, and an
//! observer installed once per process (the simulation's crash disk, `sim/src/disk.rs`) keeps
//! track of what a power loss may still take away. Production installs nothing; then every
//! event costs one atomic load.
//!
//! Reported by `fsutil` (durable writes, renames, directory syncs and creations) and by the
//! shard store (temp shard files, their data sync, deletions). Not reported: RocksDB, which
//! does its own IO. Paths are as the caller names them (absolute when the data dir is).
//!
//! Each event is reported right after the operation succeeded, on the thread that did it, so an
//! observer that waits for the blocking pool to drain sees every operation that happened.

use std::path::Path;
use std::sync::{Arc, OnceLock};

/// One durable-write step that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsEvent<'a> {
    /// A new file: its data and its entry in its directory are not durable yet.
    FileCreated(&'a Path),
    /// The file's data (`fsync`/`fdatasync`) is durable up to its current length.
    FileSynced(&'a Path),
    /// A rename, durable once the target's directory is synced.
    Renamed { from: &'a Path, to: &'a Path },
    /// A new directory, durable once its parent is synced.
    DirCreated(&'a Path),
    /// The directory was fsynced: every entry change in it so far is durable.
    DirSynced(&'a Path),
    /// A file was unlinked (observers may treat unlinks as durable at once).
    Removed(&'a Path),
}

/// An observer of durable writes.
pub trait FsJournal: Send + Sync {
    fn record(&self, event: FsEvent<'_>);
}

static JOURNAL: OnceLock<Arc<dyn FsJournal>> = OnceLock::new();

/// A journal was already installed in this process.
#[derive(Debug, thiserror::Error)]
#[error("a file system journal is already installed in this process")]
pub struct JournalAlreadyInstalled;

/// Installs the process's journal; once per process.
pub fn install_journal(journal: Arc<dyn FsJournal>) -> Result<(), JournalAlreadyInstalled> {
    JOURNAL.set(journal).map_err(|_| JournalAlreadyInstalled)
}

/// The installed journal, if any (the simulation checks it installed its own).
pub fn installed_journal() -> Option<&'static Arc<dyn FsJournal>> {
    JOURNAL.get()
}

/// Reports `event` to the installed journal; nothing when none is installed.
#[inline]
pub fn record(event: FsEvent<'_>) {
    if let Some(journal) = JOURNAL.get() {
        journal.record(event);
    }
}
