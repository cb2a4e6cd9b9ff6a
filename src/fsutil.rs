//! The one place that writes files durably: temp file → fsync → rename → fsync directory.
//! When `write_durable` returns Ok, the file is complete under its final name across a crash;
//! a crash before that leaves at most a `*.tmp` file, which `remove_stale_temp_files` clears at
//! start-up. A directory `ensure_dir_durable` returns is durable in its parent.
//!
//! Every step reports itself to the durability journal (`journal.rs`) right after it succeeded,
//! inside the same blocking call, so the simulation's crash disk knows what a power loss may
//! still undo.

pub mod journal;

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use journal::FsEvent;

/// Suffix of files being written; never read as data.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A temp path beside `path`, unique to this writer.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{:016x}{TEMP_SUFFIX}", rand::random::<u64>()));
    path.with_file_name(name)
}

/// Writes `data` to `path` durably.
pub async fn write_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_durable_mode(path, data, 0o644).await
}

/// Writes a file only its owner may read (secrets, credentials) durably: mode 0600 from its
/// creation, so no other user can open it even for a moment.
pub async fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_durable_mode(path, data, 0o600).await
}

async fn write_durable_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_path(path);
    // Small files (configs, secrets, markers): one copy buys one blocking call for the lot.
    let data = data.to_vec();
    let tmp_written = tmp.clone();
    blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp_written)?;
        journal::record(FsEvent::FileCreated(&tmp_written));
        f.write_all(&data)?;
        f.sync_all()?;
        journal::record(FsEvent::FileSynced(&tmp_written));
        Ok(())
    })
    .await?;
    commit_durable(&tmp, path).await
}

/// Renames a synced temp file to its final name and syncs the directory.
pub async fn commit_durable(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let (from, to) = (tmp.to_path_buf(), path.to_path_buf());
    blocking(move || {
        std::fs::rename(&from, &to)?;
        journal::record(FsEvent::Renamed {
            from: &from,
            to: &to,
        });
        Ok(())
    })
    .await?;
    sync_dir(parent_of(path)).await
}

/// fsyncs a directory so that renames and creations in it survive a crash.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || sync_dir_blocking(&dir)).await
}

fn sync_dir_blocking(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    journal::record(FsEvent::DirSynced(dir));
    Ok(())
}

/// Makes sure `dir` exists, durably: every directory this call creates is fsynced into its
/// parent, and so is `dir` when it already existed (a concurrent caller may have created it
/// and not synced it yet), so files renamed into it later are not lost with it in a crash.
pub async fn ensure_dir_durable(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || ensure_dir_durable_blocking(&dir)).await
}

/// [`ensure_dir_durable`] for code that is not async (start-up).
pub fn ensure_dir_durable_blocking(dir: &Path) -> std::io::Result<()> {
    // The missing levels, deepest first.
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} exists and is not a directory",
                    at.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for level in missing.iter().rev() {
        match std::fs::create_dir(level) {
            Ok(()) => journal::record(FsEvent::DirCreated(level)),
            // A concurrent caller made it; its parent is synced below all the same.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if missing.is_empty() {
        return sync_dir_blocking(parent_of(dir));
    }
    for level in missing {
        sync_dir_blocking(parent_of(level))?;
    }
    Ok(())
}

/// Directories a long-lived writer has made durable, so it syncs each one's parent once per
/// process rather than once per file. Bounded by the directories it writes into (a shard
/// store: 256 prefix directories).
#[derive(Debug, Default)]
pub struct DurableDirs(Mutex<HashSet<PathBuf>>);

impl DurableDirs {
    /// [`ensure_dir_durable`], at most once per directory.
    pub async fn ensure(&self, dir: &Path) -> std::io::Result<()> {
        if self.lock().contains(dir) {
            return Ok(());
        }
        ensure_dir_durable(dir).await?;
        self.lock().insert(dir.to_path_buf());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        // The set holds no invariant a panic could break.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes a file; the unlink is reported to the journal.
pub async fn remove_file(path: &Path) -> std::io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || remove_file_blocking(&path)).await
}

/// [`remove_file`] for code that is not async (drop guards, start-up).
pub fn remove_file_blocking(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    journal::record(FsEvent::Removed(path));
    Ok(())
}

/// Deletes `*.tmp` files under `dir` (one level of subdirectories), left by a crash mid-write.
pub fn remove_stale_temp_files(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path)? {
                let inner = inner?.path();
                if inner.to_string_lossy().ends_with(TEMP_SUFFIX) {
                    remove_file_blocking(&inner)?;
                    removed += 1;
                }
            }
        } else if path.to_string_lossy().ends_with(TEMP_SUFFIX) {
            remove_file_blocking(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ensure_dir_durable_creates_levels_and_accepts_existing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a").join("b");
        ensure_dir_durable(&deep).await.expect("create");
        assert!(deep.is_dir());
        ensure_dir_durable(&deep).await.expect("exists");
        let file = dir.path().join("f");
        write_durable(&file, b"x").await.expect("write");
        assert!(ensure_dir_durable(&file).await.is_err());
        let dirs = DurableDirs::default();
        dirs.ensure(&dir.path().join("c")).await.expect("cached");
        dirs.ensure(&dir.path().join("c")).await.expect("cached");
        assert!(dir.path().join("c").is_dir());
    }
}
