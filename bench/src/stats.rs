//! What a measurement records: per-worker recorders merged into one summary, plus live
//! counters for the progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, from 1 µs to one hour, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// One worker's record of a phase.
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub ops: u64,
    pub bytes: u64,
    /// Listed keys (list workload) — the unit its speed is quoted in.
    pub items: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency: new_histogram(),
            ops: 0,
            bytes: 0,
            items: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Recorder {
    pub fn ok(&mut self, took: Duration, bytes: u64, items: u64) {
        let us = (took.as_micros() as u64).clamp(1, 3_600_000_000);
        // Values are clamped into the histogram's bounds, so recording cannot fail.
        let _ = self.latency.record(us);
        self.ops += 1;
        self.bytes += bytes;
        self.items += items;
    }

    pub fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.items += other.items;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Counters all workers bump, read by the progress line.
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn add(&self, ops: u64, bytes: u64, errors: u64) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.errors.fetch_add(errors, Ordering::Relaxed);
    }

    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.ops.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LatencyMs {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The numbers of one measured run (or of several rounds merged) against one endpoint.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub mib_per_sec: f64,
    /// Keys listed per second (list workload only; 0 otherwise).
    pub items_per_sec: f64,
    pub latency_ms: LatencyMs,
    pub errors: BTreeMap<String, u64>,
    /// CPU used by this load generator, in cores (1.0 = one core busy the whole time).
    pub client_cpu_cores: f64,
    /// CPU used by the processes given with --server-pid, in cores; absent without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_cores: Option<f64>,
}

impl Summary {
    pub fn from_recorder(
        rec: &Recorder,
        seconds: f64,
        client_cpu: f64,
        server_cpu: Option<f64>,
    ) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &rec.latency;
        let latency_ms = if rec.ops == 0 {
            LatencyMs::default()
        } else {
            LatencyMs {
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            }
        };
        let secs = seconds.max(1e-9);
        Summary {
            seconds,
            ops: rec.ops,
            ops_per_sec: rec.ops as f64 / secs,
            mib_per_sec: rec.bytes as f64 / (1024.0 * 1024.0) / secs,
            items_per_sec: rec.items as f64 / secs,
            latency_ms,
            errors: rec.errors.clone(),
            client_cpu_cores: client_cpu / secs,
            server_cpu_cores: server_cpu.map(|c| c / secs),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for ms in 1..=100u64 {
            a.ok(Duration::from_millis(ms), 10, 0);
        }
        b.ok(Duration::from_secs(2), 10, 0);
        b.error("http_503_SlowDown".into());
        a.merge(&b);
        let s = Summary::from_recorder(&a, 2.0, 0.5, None);
        assert_eq!(s.ops, 101);
        assert!((s.ops_per_sec - 50.5).abs() < 1e-9);
        assert!((s.latency_ms.p50 - 51.0).abs() < 0.1, "{:?}", s.latency_ms);
        assert!((s.latency_ms.max - 2000.0).abs() < 2.0);
        assert_eq!(s.errors.get("http_503_SlowDown"), Some(&1));
        assert!((s.client_cpu_cores - 0.25).abs() < 1e-9);
    }
}
