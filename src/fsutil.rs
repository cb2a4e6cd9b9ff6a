//! The one place that writes files durably: temp file → fsync → rename → fsync directory.
//! When `write_durable` returns Ok, the file is complete under its final name across a crash;
//! a crash before that leaves at most a `*.tmp` file, which `remove_stale_temp_files` clears at
//! start-up.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

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
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .await?;
    f.write_all(data).await?;
    f.sync_all().await?;
    drop(f);
    commit_durable(&tmp, path).await
}

/// Renames a synced temp file to its final name and syncs the directory.
pub async fn commit_durable(tmp: &Path, path: &Path) -> std::io::Result<()> {
    tokio::fs::rename(tmp, path).await?;
    sync_dir(path.parent().unwrap_or(Path::new("."))).await
}

/// fsyncs a directory so that renames and creations in it survive a crash.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Makes sure `dir` exists, durably: a directory this call creates is fsynced into its parent,
/// so files renamed into it later are not lost with it in a crash.
pub async fn ensure_dir_durable(dir: &Path) -> std::io::Result<()> {
    match tokio::fs::metadata(dir).await {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::fs::create_dir_all(dir).await?;
    sync_dir(dir.parent().unwrap_or(Path::new("."))).await
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
                    std::fs::remove_file(&inner)?;
                    removed += 1;
                }
            }
        } else if path.to_string_lossy().ends_with(TEMP_SUFFIX) {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}
