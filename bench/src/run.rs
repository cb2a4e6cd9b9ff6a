//! The phases of a run against one endpoint: prepare (create the bucket, write the objects a
//! read workload needs), warm up, measure, clean up. Every loop is bounded by a deadline
//! and/or an operation count.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use crate::cpu;
use crate::payload::{Payloads, SizeSpec};
use crate::s3::{OpError, S3Client};
use crate::stats::{Live, Recorder, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// PUT objects (keys cycle through --keys).
    Put,
    /// GET objects written in the prepare phase.
    Get,
    /// GET and PUT mixed by --get-ratio over the prepared objects.
    Mixed,
    /// Walk the prepared keys with ListObjectsV2, --page-size per page; speed in keys/s.
    List,
    /// DELETE the prepared objects, each once.
    Delete,
    /// Multipart uploads of --size objects in --part-size parts.
    Multipart,
}

/// What to run; identical for every endpoint of a comparison.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub sizes: SizeSpec,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub keys: u64,
    pub prefix: String,
    pub get_ratio: f64,
    pub page_size: u32,
    pub part_size: u64,
    pub warmup: Duration,
    /// Writers in the prepare phase (listing runs at concurrency 1 but needs 100k keys).
    pub prepare_concurrency: usize,
    pub seed: u64,
}

impl Plan {
    pub fn key(&self, i: u64) -> String {
        format!("{}obj-{i:08}", self.prefix)
    }

    /// Whether the workload reads objects that must exist first.
    pub fn needs_objects(&self) -> bool {
        matches!(
            self.workload,
            Workload::Get | Workload::Mixed | Workload::List | Workload::Delete
        )
    }
}

/// One endpoint under test.
pub struct Target {
    pub label: String,
    pub client: S3Client,
    pub server_pids: Vec<u32>,
    /// Next key index for put/multipart/delete; persists across rounds.
    cursor: Arc<AtomicU64>,
}

impl Target {
    pub fn new(label: &str, client: S3Client, server_pids: Vec<u32>) -> Self {
        Target {
            label: label.into(),
            client,
            server_pids,
            cursor: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// When a phase ends: whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
}

/// The outcome of one measured phase, or of several rounds added up.
pub struct Measured {
    pub recorder: Recorder,
    pub seconds: f64,
    pub client_cpu: f64,
    /// None when the server processes could not be read (or were not given).
    pub server_cpu: Option<f64>,
}

impl Measured {
    /// Zero rounds.
    pub fn empty() -> Self {
        Measured {
            recorder: Recorder::default(),
            seconds: 0.0,
            client_cpu: 0.0,
            server_cpu: Some(0.0),
        }
    }

    pub fn add(&mut self, round: &Measured) {
        self.recorder.merge(&round.recorder);
        self.seconds += round.seconds;
        self.client_cpu += round.client_cpu;
        self.server_cpu = self.server_cpu.zip(round.server_cpu).map(|(a, b)| a + b);
    }

    pub fn summary(&self) -> Summary {
        Summary::from_recorder(
            &self.recorder,
            self.seconds,
            self.client_cpu,
            self.server_cpu,
        )
    }
}

/// Live progress on stderr: a rewritten line on a terminal, a line every 5 s otherwise.
pub struct Progress {
    enabled: bool,
    tty: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn spawn(
        &self,
        label: String,
        live: Arc<Live>,
        stop: Arc<AtomicBool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled {
            return None;
        }
        let tty = self.tty;
        Some(tokio::spawn(async move {
            let start = Instant::now();
            let every = if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            };
            let mut last = (0u64, 0u64, Instant::now());
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if last.2.elapsed() < every && !stop.load(Ordering::Relaxed) {
                    continue;
                }
                let (ops, bytes, errors) = live.read();
                let dt = last.2.elapsed().as_secs_f64().max(1e-9);
                let line = format!(
                    "{label} {:>5.1}s  ops {ops:>8}  {:>9.1} ops/s  {:>8.1} MiB/s  errors {errors}",
                    start.elapsed().as_secs_f64(),
                    (ops - last.0) as f64 / dt,
                    (bytes - last.1) as f64 / 1048576.0 / dt,
                );
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
                last = (ops, bytes, Instant::now());
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
        }))
    }
}

fn progress_line(p: &Progress, text: &str) {
    if p.enabled {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

/// Calls `op(i)` for every key index below `keys` from `workers` tasks. A worker stops at its
/// first error; the last error seen is returned.
async fn for_each_key<F, Fut>(workers: usize, keys: u64, op: F) -> Result<(), OpError>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), OpError>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys {
                        return Ok(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    let mut result = Ok(());
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(OpError::Protocol(format!("worker failed: {e}"))),
        }
    }
    result
}

/// For read workloads, writes the objects they read (not measured).
pub async fn prepare(
    target: &Target,
    plan: &Plan,
    payloads: &Payloads,
    progress: &Progress,
) -> anyhow::Result<()> {
    if !plan.needs_objects() {
        return Ok(());
    }
    progress_line(
        progress,
        &format!(
            "{}: writing {} objects of {}",
            target.label, plan.keys, plan.sizes
        ),
    );
    let live = Arc::new(Live::default());
    let stop = Arc::new(AtomicBool::new(false));
    let bar = progress.spawn(
        format!("{} prepare", target.label),
        live.clone(),
        stop.clone(),
    );
    let (client, shared_plan, payloads) = (target.client.clone(), plan.clone(), payloads.clone());
    let put_one = move |i: u64| {
        let (client, plan, payloads, live) = (
            client.clone(),
            shared_plan.clone(),
            payloads.clone(),
            live.clone(),
        );
        async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(plan.seed ^ i.rotate_left(32));
            let body = payloads.body(plan.sizes.sample(&mut rng), &mut rng);
            let n = body.len() as u64;
            // A transient error gets a few retries; preparation must complete.
            let mut attempt = 0;
            loop {
                match client.put(&plan.key(i), body.clone()).await {
                    Ok(()) => break,
                    Err(_) if attempt < 3 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            live.add(1, n, 0);
            Ok(())
        }
    };
    let result = for_each_key(plan.prepare_concurrency, plan.keys, put_one).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.await;
    }
    result.map_err(|e| anyhow::anyhow!("{}: writing objects to read: {e}", target.label))
}

/// Runs the workload against one target until the budget is spent.
pub async fn measure(
    target: &Target,
    plan: &Plan,
    payloads: &Payloads,
    budget: Budget,
    label: String,
    progress: &Progress,
) -> Measured {
    let live = Arc::new(Live::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started_ops = Arc::new(AtomicU64::new(0));
    let bar = progress.spawn(label, live.clone(), stop.clone());
    let cpu0 = cpu::self_cpu_seconds();
    let server0 = cpu::pids_cpu_seconds(&target.server_pids);
    let start = Instant::now();
    let deadline = budget.duration.map(|d| start + d);

    let mut tasks = Vec::new();
    for w in 0..plan.concurrency.max(1) {
        let ctx = Worker {
            client: target.client.clone(),
            plan: plan.clone(),
            payloads: payloads.clone(),
            live: live.clone(),
            started_ops: started_ops.clone(),
            cursor: target.cursor.clone(),
            budget,
            deadline,
            seed: plan
                .seed
                .wrapping_add(w as u64 * 7919)
                .wrapping_add(start.elapsed().as_nanos() as u64),
        };
        tasks.push(tokio::spawn(ctx.run()));
    }
    let mut recorder = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(r) => recorder.merge(&r),
            Err(e) => recorder.error(format!("worker_panic: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let client_cpu = cpu::self_cpu_seconds() - cpu0;
    let server_cpu = match (server0, cpu::pids_cpu_seconds(&target.server_pids)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.await;
    }
    Measured {
        recorder,
        seconds,
        client_cpu,
        server_cpu,
    }
}

struct Worker {
    client: S3Client,
    plan: Plan,
    payloads: Payloads,
    live: Arc<Live>,
    started_ops: Arc<AtomicU64>,
    cursor: Arc<AtomicU64>,
    budget: Budget,
    deadline: Option<Instant>,
    seed: u64,
}

impl Worker {
    fn may_start(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.budget.ops {
            Some(limit) => self.started_ops.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }

    async fn run(self) -> Recorder {
        let mut rec = Recorder::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(self.seed);
        let plan = &self.plan;
        let mut list_token: Option<String> = None;
        while self.may_start() {
            let t0 = Instant::now();
            let result: Result<(u64, u64), OpError> = match plan.workload {
                Workload::Put => {
                    let i = self.cursor.fetch_add(1, Ordering::Relaxed) % plan.keys.max(1);
                    let body = self.payloads.body(plan.sizes.sample(&mut rng), &mut rng);
                    let n = body.len() as u64;
                    self.client.put(&plan.key(i), body).await.map(|()| (n, 0))
                }
                Workload::Get => {
                    let i = rng.random_range(0..plan.keys.max(1));
                    self.client.get(&plan.key(i)).await.map(|n| (n, 0))
                }
                Workload::Mixed => {
                    let i = rng.random_range(0..plan.keys.max(1));
                    if rng.random_bool(plan.get_ratio.clamp(0.0, 1.0)) {
                        self.client.get(&plan.key(i)).await.map(|n| (n, 0))
                    } else {
                        let body = self.payloads.body(plan.sizes.sample(&mut rng), &mut rng);
                        let n = body.len() as u64;
                        self.client.put(&plan.key(i), body).await.map(|()| (n, 0))
                    }
                }
                Workload::List => {
                    match self
                        .client
                        .list_page(&plan.prefix, plan.page_size, list_token.as_deref())
                        .await
                    {
                        Ok(page) => {
                            list_token = page.next_token;
                            Ok((0, page.keys))
                        }
                        Err(e) => {
                            list_token = None;
                            Err(e)
                        }
                    }
                }
                Workload::Delete => {
                    let i = self.cursor.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.keys {
                        break;
                    }
                    self.client.delete(&plan.key(i)).await.map(|()| (0, 0))
                }
                Workload::Multipart => {
                    let i = self.cursor.fetch_add(1, Ordering::Relaxed) % plan.keys.max(1);
                    let body = self.payloads.body(plan.sizes.sample(&mut rng), &mut rng);
                    let n = body.len() as u64;
                    let parts = split_parts(&body, plan.part_size);
                    self.client
                        .multipart(&plan.key(i), &parts)
                        .await
                        .map(|()| (n, 0))
                }
            };
            match result {
                Ok((bytes, items)) => {
                    rec.ok(t0.elapsed(), bytes, items);
                    self.live.add(1, bytes, 0);
                }
                Err(e) => {
                    rec.error(e.kind());
                    self.live.add(0, 0, 1);
                }
            }
        }
        rec
    }
}

/// Cuts a body into parts of `part_size` (the last one shorter; at least one part).
pub fn split_parts(body: &Bytes, part_size: u64) -> Vec<Bytes> {
    let part = part_size.max(1) as usize;
    if body.is_empty() {
        return vec![Bytes::new()];
    }
    (0..body.len())
        .step_by(part)
        .map(|s| body.slice(s..(s + part).min(body.len())))
        .collect()
}

/// Deletes every key the run may have written (bounded by --keys); returns how many
/// deletes failed.
pub async fn cleanup(target: &Target, plan: &Plan, progress: &Progress) -> u64 {
    progress_line(
        progress,
        &format!("{}: deleting up to {} objects", target.label, plan.keys),
    );
    let failed = Arc::new(AtomicU64::new(0));
    let (client, shared_plan, counter) = (target.client.clone(), plan.clone(), failed.clone());
    let delete_one = move |i: u64| {
        let (client, plan, failed) = (client.clone(), shared_plan.clone(), counter.clone());
        async move {
            if client.delete(&plan.key(i)).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    };
    // Failures are counted, not returned: cleanup goes on past them.
    let _ = for_each_key(plan.prepare_concurrency.min(64), plan.keys, delete_one).await;
    failed.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_body() {
        let body = Bytes::from(vec![7u8; 10]);
        let parts = split_parts(&body, 4);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(split_parts(&Bytes::new(), 4).len(), 1);
    }
}
