//! Walks of the shard directory for the background workers: pages of committed shard files older
//! than an age (what the garbage collector checks against the metadata), and the sweep of stale
//! `*.tmp` files (writes that were reset, aborted or cut off by a crash).
//!
//! Reads only, except the sweep, which deletes temp files no writer can still own: a writer
//! touches its temp file with every batch it writes, and every shard send is bounded by the
//! coordinator's timeouts (seconds), so a temp file untouched for [`TEMP_MIN_AGE`] is abandoned.
//! Committed shard files are never deleted here.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::ShardStore;
use crate::fsutil::TEMP_SUFFIX;
use crate::types::VersionId;

/// Temp files untouched this long are abandoned (far beyond the coordinator's send and commit
/// timeouts of 10 and 30 s, and beyond any stall a live write survives).
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(60 * 60);
/// How often a storage node sweeps its temp files at most (it sweeps more often when the
/// garbage collector is set to run more often, as in tests).
pub const TEMP_SWEEP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The shortest sweep interval (a zero interval would spin).
const MIN_WORKER_INTERVAL: Duration = Duration::from_millis(100);
/// Most shard names one listing page answers.
pub const MAX_LIST_PAGE_SHARDS: usize = 50_000;
/// Most directory entries one listing page looks at (a page of mostly young files ends early,
/// with a cursor, rather than reading the whole store).
pub const MAX_LIST_PAGE_EXAMINED: usize = 200_000;

const _: () = assert!(MAX_LIST_PAGE_SHARDS <= MAX_LIST_PAGE_EXAMINED);

/// One committed shard file: `<version>.<shard index>`. Ordered by version, then index, which
/// is the order of the walk (a version's first two hex digits name its directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardName {
    pub version: VersionId,
    pub shard_index: u8,
}

impl std::fmt::Display for ShardName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.version, self.shard_index)
    }
}

impl ShardName {
    /// Parses a committed shard file's name as the store writes it; None for anything else
    /// (temp files, other spellings of a name).
    pub fn parse(name: &str) -> Option<ShardName> {
        let (version, index) = name.split_once('.')?;
        if version.len() != 32 || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let parsed = ShardName {
            version: VersionId(u128::from_str_radix(version, 16).ok()?),
            shard_index: index.parse().ok()?,
        };
        (parsed.to_string() == name).then_some(parsed)
    }

    /// The shard directory (`00`..`ff`) this name lives in.
    fn dir_index(&self) -> u8 {
        (self.version.0 >> 120) as u8
    }
}

/// A page of old committed shards, in [`ShardName`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardListPage {
    pub shards: Vec<ShardName>,
    /// Where the next page starts (exclusive); None when the walk reached the end.
    pub next_after: Option<ShardName>,
}

impl ShardStore {
    /// The committed shard files after `after` whose last modification is at least `older_than`
    /// before now: at most `limit` (capped at [`MAX_LIST_PAGE_SHARDS`]) names, and at most
    /// [`MAX_LIST_PAGE_EXAMINED`] files looked at.
    pub async fn list_old(
        &self,
        older_than: Duration,
        after: Option<ShardName>,
        limit: usize,
    ) -> std::io::Result<ShardListPage> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            list_old_at(&root, SystemTime::now(), older_than, after, limit)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Deletes the `*.tmp` files untouched for `min_age`; how many it deleted.
    pub async fn sweep_temp_files(&self, min_age: Duration) -> std::io::Result<usize> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep_temp_files_at(&root, SystemTime::now(), min_age))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Sweeps `store`'s temp files every `interval`; runs until the task is dropped or aborted.
pub async fn run_temp_sweep(store: ShardStore, interval: Duration, min_age: Duration) {
    let interval = interval.max(MIN_WORKER_INTERVAL);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.sweep_temp_files(min_age).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed abandoned temp shard files"),
            Err(e) => tracing::warn!(error = %e, "temp shard file sweep failed; retrying later"),
        }
    }
}

/// Whether `meta` was last modified at least `min_age` before `now` (a time in the future is
/// young).
fn is_older(meta: &std::fs::Metadata, now: SystemTime, min_age: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age >= min_age)
}

fn list_old_at(
    root: &Path,
    now: SystemTime,
    older_than: Duration,
    after: Option<ShardName>,
    limit: usize,
) -> std::io::Result<ShardListPage> {
    let limit = limit.clamp(1, MAX_LIST_PAGE_SHARDS);
    let mut page = ShardListPage::default();
    let mut examined = 0usize;
    let first_dir = after.map_or(0, |a| a.dir_index());
    for dir_index in first_dir..=u8::MAX {
        let dir = root.join(format!("{dir_index:02x}"));
        let mut names = match std::fs::read_dir(&dir) {
            Ok(entries) => {
                let mut names = Vec::new();
                for entry in entries {
                    let name = entry?.file_name();
                    if let Some(n) = name.to_str().and_then(ShardName::parse) {
                        if after.is_none_or(|a| n > a) && n.dir_index() == dir_index {
                            names.push(n);
                        }
                    }
                }
                names
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort_unstable();
        for name in names {
            if page.shards.len() == limit || examined == MAX_LIST_PAGE_EXAMINED {
                return Ok(page);
            }
            examined += 1;
            // The cursor moves past every name looked at, old or not.
            page.next_after = Some(name);
            let path = dir.join(name.to_string());
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() && is_older(&meta, now, older_than) => {
                    page.shards.push(name)
                }
                Ok(_) => {}
                // Deleted meanwhile (retired, or by the collector): nothing to report.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    page.next_after = None;
    Ok(page)
}

fn sweep_temp_files_at(root: &Path, now: SystemTime, min_age: Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    for dir in dirs {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() || !is_older(&meta, now, min_age) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Creates a file under `root` named as the store names it, modified `age` ago.
    fn plant(root: &Path, name: &str, age: Duration) {
        let dir = root.join(&name[..2]);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = std::fs::File::create(dir.join(name)).expect("create");
        file.set_modified(SystemTime::now() - age)
            .expect("set mtime");
    }

    fn name(version: u128, shard_index: u8) -> ShardName {
        ShardName {
            version: VersionId(version),
            shard_index,
        }
    }

    #[test]
    fn names_parse_and_print() {
        let n = name((0xab << 120) | 7, 12);
        assert_eq!(ShardName::parse(&n.to_string()), Some(n));
        assert_eq!(n.dir_index(), 0xab);
        for bad in [
            "",
            "abc.1",
            "ab000000000000000000000000000007",
            "ab000000000000000000000000000007.",
            "ab000000000000000000000000000007.1.0123456789abcdef.tmp",
            "ab000000000000000000000000000007.256",
            "xb000000000000000000000000000007.1",
            "AB000000000000000000000000000007.1",
            "ab000000000000000000000000000007.01",
            "+b000000000000000000000000000007.1",
        ] {
            assert_eq!(ShardName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_walk_every_old_shard_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut old = Vec::new();
        // Versions spread over several directories, some with many shards, some young.
        for i in 0..40u128 {
            let version = ((i % 5) << 122) | i;
            for shard_index in [0u8, 2, 10] {
                let n = name(version, shard_index);
                if i % 4 == 3 {
                    plant(root, &n.to_string(), Duration::ZERO);
                } else {
                    plant(root, &n.to_string(), 2 * HOUR);
                    old.push(n);
                }
            }
        }
        // Neither temp files nor strangers are listed.
        plant(
            root,
            &format!("{}.0123456789abcdef.tmp", name(1, 0)),
            2 * HOUR,
        );
        plant(root, "00-not-a-shard", 2 * HOUR);
        old.sort();

        let now = SystemTime::now();
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = list_old_at(root, now, HOUR, after, 7).expect("list");
            assert!(page.shards.len() <= 7);
            seen.extend(page.shards.iter().copied());
            pages += 1;
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, old);
        assert!(pages >= old.len() / 7, "{pages} pages");

        // One page large enough takes everything and ends the walk.
        let all = list_old_at(root, now, HOUR, None, 1000).expect("list");
        assert_eq!(all.shards, old);
        assert_eq!(all.next_after, None);

        // Everything is young for a minimum age beyond the oldest.
        let none = list_old_at(root, now, 3 * HOUR, None, 1000).expect("list");
        assert!(none.shards.is_empty());
        assert_eq!(none.next_after, None);
    }

    #[test]
    fn listing_an_empty_or_missing_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let page = list_old_at(dir.path(), SystemTime::now(), HOUR, None, 10).expect("list");
        assert_eq!(page, ShardListPage::default());
    }

    #[test]
    fn sweep_removes_only_old_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let shard = name(0x42 << 120, 1).to_string();
        let old_tmp = format!("{shard}.00000000000000aa.tmp");
        let fresh_tmp = format!("{shard}.00000000000000bb.tmp");
        plant(root, &shard, 2 * HOUR);
        plant(root, &old_tmp, 2 * HOUR);
        plant(root, &fresh_tmp, Duration::ZERO);
        std::fs::File::create(root.join("top.tmp"))
            .expect("create")
            .set_modified(SystemTime::now() - 2 * HOUR)
            .expect("mtime");

        let removed = sweep_temp_files_at(root, SystemTime::now(), HOUR).expect("sweep");
        assert_eq!(removed, 2);
        let sub = root.join(&shard[..2]);
        assert!(sub.join(&shard).exists(), "a committed shard was swept");
        assert!(sub.join(&fresh_tmp).exists(), "a fresh temp file was swept");
        assert!(!sub.join(&old_tmp).exists());
        assert!(!root.join("top.tmp").exists());
    }
}
