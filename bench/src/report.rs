//! The run's report: a human table, or JSON with `--json`. With two endpoints the table adds a
//! B/A ratio per metric (for latencies, below 1 means B is faster).

use serde::Serialize;

use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
}

#[derive(Debug, Serialize)]
pub struct EndpointResult {
    pub label: String,
    pub endpoint: String,
    pub summary: Summary,
}

#[derive(Debug, Serialize, Default)]
pub struct Ratios {
    pub ops_per_sec: f64,
    pub mib_per_sec: f64,
    pub items_per_sec: f64,
    pub latency_p50: f64,
    pub latency_p90: f64,
    pub latency_p99: f64,
    pub latency_max: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub workload: crate::run::Workload,
    pub size: String,
    pub concurrency: usize,
    pub duration_s: Option<f64>,
    pub ops_limit: Option<u64>,
    pub keys: u64,
    pub rounds: u32,
    pub machine: Machine,
    pub results: Vec<EndpointResult>,
    /// B / A, present when two endpoints were compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_b_over_a: Option<Ratios>,
}

fn ratio(b: f64, a: f64) -> f64 {
    if a > 0.0 {
        b / a
    } else {
        0.0
    }
}

pub fn ratios(a: &Summary, b: &Summary) -> Ratios {
    Ratios {
        ops_per_sec: ratio(b.ops_per_sec, a.ops_per_sec),
        mib_per_sec: ratio(b.mib_per_sec, a.mib_per_sec),
        items_per_sec: ratio(b.items_per_sec, a.items_per_sec),
        latency_p50: ratio(b.latency_ms.p50, a.latency_ms.p50),
        latency_p90: ratio(b.latency_ms.p90, a.latency_ms.p90),
        latency_p99: ratio(b.latency_ms.p99, a.latency_ms.p99),
        latency_max: ratio(b.latency_ms.max, a.latency_ms.max),
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let bound = match (self.duration_s, self.ops_limit) {
            (Some(d), Some(n)) => format!("{d:.0}s or {n} ops"),
            (Some(d), None) => format!("{d:.0}s"),
            (None, Some(n)) => format!("{n} ops"),
            (None, None) => "until done".into(),
        };
        out.push_str(&format!(
            "{:?} {}  concurrency {}  {}  keys {}{}  ({} CPUs, {})\n",
            self.workload,
            self.size,
            self.concurrency,
            bound,
            self.keys,
            if self.rounds > 1 {
                format!("  {} rounds A/B", self.rounds)
            } else {
                String::new()
            },
            self.machine.cpus,
            self.machine.cpu_model
        ));
        let header = [
            "",
            "ops",
            "ops/s",
            "MiB/s",
            "keys/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "client CPU",
            "server CPU",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for r in &self.results {
            let s = &r.summary;
            rows.push(vec![
                format!("{} {}", r.label, r.endpoint),
                s.ops.to_string(),
                format!("{:.1}", s.ops_per_sec),
                format!("{:.1}", s.mib_per_sec),
                if s.items_per_sec > 0.0 {
                    format!("{:.0}", s.items_per_sec)
                } else {
                    "-".into()
                },
                format!("{:.2}", s.latency_ms.p50),
                format!("{:.2}", s.latency_ms.p90),
                format!("{:.2}", s.latency_ms.p99),
                format!("{:.1}", s.latency_ms.max),
                s.error_count().to_string(),
                format!("{:.2} cores", s.client_cpu_cores),
                s.server_cpu_cores
                    .map(|c| format!("{c:.2} cores"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        if let Some(x) = &self.ratio_b_over_a {
            rows.push(vec![
                "B/A".into(),
                String::new(),
                format!("{:.3}", x.ops_per_sec),
                format!("{:.3}", x.mib_per_sec),
                if x.items_per_sec > 0.0 {
                    format!("{:.3}", x.items_per_sec)
                } else {
                    "-".into()
                },
                format!("{:.3}", x.latency_p50),
                format!("{:.3}", x.latency_p90),
                format!("{:.3}", x.latency_p99),
                format!("{:.3}", x.latency_max),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if c == 0 {
                        format!("{v:<w$}", w = widths[c])
                    } else {
                        format!("{v:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        for r in &self.results {
            if !r.summary.errors.is_empty() {
                let kinds: Vec<String> = r
                    .summary
                    .errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                out.push_str(&format!("errors at {}: {}\n", r.label, kinds.join(", ")));
            }
        }
        out
    }
}
