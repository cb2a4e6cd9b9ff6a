//! Damaged shards that reads come across, queued for healing: a GET that finds a shard file
//! missing or failing its BLAKE3 check still answers (from parity) and reports the shard here.
//! Reports are batched (one metadata write per [`BATCH_WINDOW`]), a version already reported
//! within [`REPEAT_WINDOW`] is not reported again (a hot object read a thousand times costs
//! one report), and when the queue to the batching task is full a report is dropped: the scrub
//! finds the shard later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::coord::DamageHook;
use crate::meta::request::QueueHeal;
use crate::meta::{HealOwner, HealReport, MetaClient, ShardDamage};
use crate::types::BucketId;
use crate::types::VersionId;

/// Reports waiting for the batching task at most.
const QUEUE: usize = 4096;
/// Reports gathered into one metadata write.
const BATCH_WINDOW: Duration = Duration::from_millis(500);
/// A version reported within this time is not reported again.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// One damaged shard seen by a read of `bucket/key`.
struct Finding {
    bucket: BucketId,
    key: Arc<str>,
    version: VersionId,
    shard: u8,
    damage: ShardDamage,
}

/// The gateway's sink for damaged shards its reads find.
#[derive(Clone)]
pub struct DamageReporter {
    tx: mpsc::Sender<Finding>,
}

impl DamageReporter {
    /// Starts the batching task (on the current tokio runtime).
    pub fn start(meta: MetaClient) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(meta, rx));
        DamageReporter { tx }
    }

    /// The hook a read of `key` in bucket `bucket` calls for each damaged shard it finds.
    pub fn hook(&self, bucket: BucketId, key: &str) -> DamageHook {
        let tx = self.tx.clone();
        let key: Arc<str> = key.into();
        Arc::new(move |version, shard, damage| {
            let _ = tx.try_send(Finding {
                bucket,
                key: key.clone(),
                version,
                shard,
                damage,
            });
        })
    }
}

async fn run(meta: MetaClient, mut rx: mpsc::Receiver<Finding>) {
    let mut recent: HashMap<VersionId, Instant> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while let Ok(Some(f)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            batch.push(f);
        }
        recent.retain(|_, at| at.elapsed() < REPEAT_WINDOW);
        // One write per bucket: each goes to its bucket's partition.
        let mut by_bucket: BTreeMap<BucketId, BTreeMap<VersionId, HealReport>> = BTreeMap::new();
        for f in batch {
            if recent.contains_key(&f.version) {
                continue;
            }
            by_bucket
                .entry(f.bucket)
                .or_default()
                .entry(f.version)
                .or_insert_with(|| HealReport {
                    version: f.version,
                    owner: HealOwner::Object {
                        bucket: f.bucket,
                        key: f.key.to_string(),
                    },
                    damage: BTreeMap::new(),
                })
                .damage
                .insert(f.shard, f.damage);
        }
        for reports in by_bucket.into_values() {
            let now = Instant::now();
            recent.extend(reports.keys().map(|v| (*v, now)));
            queue(&meta, reports.into_values().collect()).await;
        }
    }
}

async fn queue(meta: &MetaClient, reports: Vec<HealReport>) {
    let n = reports.len();
    match meta.send(QueueHeal { reports }).await {
        Ok(_) => tracing::info!(
            pieces = n,
            "damaged shards found by reads queued for healing"
        ),
        Err(e) => {
            tracing::warn!(pieces = n, error = %e, "could not queue damaged shards for healing; the scrub will find them")
        }
    }
}
