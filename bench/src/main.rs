//! `baobab-bench`: an S3 load generator for any endpoint (Baobab or another), with
//! percentiles, its own CPU share, and alternating A/B comparison of two endpoints.

mod cpu;
mod payload;
mod report;
mod run;
mod s3;
mod stats;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use payload::{parse_bytes, Payloads, SizeSpec};
use report::{EndpointResult, Machine, Report};
use run::{Budget, Measured, Plan, Progress, Target, Workload};

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 30s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_bytes(s)
}

/// S3 load generator. Credentials come from flags or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
#[derive(Parser, Debug)]
#[command(name = "baobab-bench", version)]
struct Args {
    /// Workload to run.
    #[arg(value_enum)]
    workload: Workload,
    /// S3 endpoint, http://host:port or https://host:port (path-style requests).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: String,
    /// CA certificates (PEM) that https:// endpoints' certificates must chain to (also for
    /// --compare); nothing else is trusted.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_file: Option<std::path::PathBuf>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Bucket (created when missing).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Object size: `4KiB`, a uniform range `1KiB..1MiB`, or weighted `4KiB:70,1MiB:30`.
    #[arg(long, default_value = "4KiB")]
    size: SizeSpec,
    /// Requests in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Measure for this long (`30s`, `2m`). Default 10s unless --ops is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Measure this many operations (the run also stops at --duration if given).
    #[arg(long)]
    ops: Option<u64>,
    /// Key space: objects written for get/mixed/list/delete, and the cycle for put/multipart.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Key prefix.
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Share of GETs in the mixed workload.
    #[arg(long, default_value_t = 0.7)]
    get_ratio: f64,
    /// Keys per ListObjectsV2 page.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Part size for the multipart workload.
    #[arg(long, default_value = "8MiB", value_parser = parse_size_arg)]
    part_size: u64,
    /// Unmeasured run before measuring (not for delete).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Requests in flight while writing the objects to read, and while cleaning up.
    #[arg(long, default_value_t = 32)]
    prepare_concurrency: usize,
    /// Keep the objects written (default: delete them at the end).
    #[arg(long)]
    no_cleanup: bool,
    /// Skip writing the objects a read workload needs (they exist from an earlier --no-cleanup run).
    #[arg(long)]
    no_prepare: bool,
    /// Report the CPU used by these processes (the server) next to the client's.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Second endpoint: run the same workload against both, alternating A B A B.
    #[arg(long)]
    compare: Option<String>,
    #[arg(long)]
    compare_access_key: Option<String>,
    #[arg(long, hide_env_values = true)]
    compare_secret_key: Option<String>,
    #[arg(long)]
    compare_bucket: Option<String>,
    #[arg(long = "compare-server-pid")]
    compare_server_pids: Vec<u32>,
    /// Measurement rounds per endpoint when comparing (each gets 1/rounds of the budget).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Print the report as JSON on stdout, no progress.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Seed for sizes, keys and payloads.
    #[arg(long, default_value_t = 0x0ba0bab)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baobab-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_main(args)) {
        Ok(true) => ExitCode::SUCCESS,
        // Ran, but some operations failed: the report says which.
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("baobab-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.keys > 0, "--keys must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.get_ratio),
        "--get-ratio must be between 0 and 1"
    );
    anyhow::ensure!(args.page_size > 0, "--page-size must be at least 1");
    anyhow::ensure!(args.part_size > 0, "--part-size must be at least 1 byte");
    anyhow::ensure!(
        args.size.max() <= 5 << 30,
        "--size above 5 GiB is not a single S3 object"
    );
    let duration = match (args.duration, args.ops) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let plan = Plan {
        workload: args.workload,
        sizes: args.size.clone(),
        concurrency: args.concurrency,
        duration,
        ops: args.ops,
        keys: args.keys,
        prefix: args.prefix.clone(),
        get_ratio: args.get_ratio,
        page_size: args.page_size,
        part_size: args.part_size,
        warmup: args.warmup,
        prepare_concurrency: args.prepare_concurrency,
        seed: args.seed,
    };
    let pool = args.concurrency.max(args.prepare_concurrency) * 2;
    let a = s3::S3Client::new(
        &args.endpoint,
        &args.bucket,
        &args.access_key,
        &args.secret_key,
        &args.region,
        pool,
        args.timeout,
        args.ca_file.as_deref(),
    )?;
    let mut targets = vec![Target::new("A", a, args.server_pids.clone())];
    if let Some(ep) = &args.compare {
        let b = s3::S3Client::new(
            ep,
            args.compare_bucket.as_deref().unwrap_or(&args.bucket),
            args.compare_access_key
                .as_deref()
                .unwrap_or(&args.access_key),
            args.compare_secret_key
                .as_deref()
                .unwrap_or(&args.secret_key),
            &args.region,
            pool,
            args.timeout,
            args.ca_file.as_deref(),
        )?;
        targets.push(Target::new("B", b, args.compare_server_pids.clone()));
    }
    let rounds = if targets.len() > 1 { args.rounds } else { 1 };
    let progress = Progress::new(!(args.json || args.quiet));
    let payloads = Payloads::new(args.size.max(), args.seed);

    for t in &targets {
        t.client
            .ensure_bucket()
            .await
            .map_err(|e| anyhow::anyhow!("{}: create bucket: {e}", t.label))?;
        if !args.no_prepare {
            run::prepare(t, &plan, &payloads, &progress).await?;
        }
    }
    if !plan.warmup.is_zero() && plan.workload != Workload::Delete {
        for t in &targets {
            let budget = Budget {
                duration: Some(plan.warmup),
                ops: None,
            };
            run::measure(
                t,
                &plan,
                &payloads,
                budget,
                format!("{} warm-up", t.label),
                &progress,
            )
            .await;
        }
    }

    // Measure: A B A B … so that drift of a noisy machine hits both alike.
    let per_round = Budget {
        duration: plan.duration.map(|d| d / rounds),
        ops: plan.ops.map(|n| n.div_ceil(rounds as u64)),
    };
    let mut acc: Vec<Measured> = targets.iter().map(|_| Measured::empty()).collect();
    for round in 0..rounds {
        for (t, acc) in targets.iter().zip(acc.iter_mut()) {
            let label = if rounds > 1 {
                format!("{} round {}/{rounds}", t.label, round + 1)
            } else {
                t.label.clone()
            };
            let m = run::measure(t, &plan, &payloads, per_round, label, &progress).await;
            acc.add(&m);
        }
    }

    let results: Vec<EndpointResult> = targets
        .iter()
        .zip(&acc)
        .map(|(t, m)| EndpointResult {
            label: t.label.clone(),
            endpoint: t.client.endpoint().to_string(),
            summary: m.summary(),
        })
        .collect();

    if !args.no_cleanup {
        for t in &targets {
            let failed = run::cleanup(t, &plan, &progress).await;
            if failed > 0 {
                eprintln!(
                    "baobab-bench: {}: {failed} objects could not be deleted",
                    t.label
                );
            }
        }
    }

    let (cpus, cpu_model) = cpu::machine();
    let ratio_b_over_a = match results.as_slice() {
        [a, b] => Some(report::ratios(&a.summary, &b.summary)),
        _ => None,
    };
    let all_ok = results.iter().all(|r| r.summary.error_count() == 0);
    let report = Report {
        tool: "baobab-bench",
        version: env!("CARGO_PKG_VERSION"),
        workload: plan.workload,
        size: plan.sizes.to_string(),
        concurrency: plan.concurrency,
        duration_s: plan.duration.map(|d| d.as_secs_f64()),
        ops_limit: plan.ops,
        keys: plan.keys,
        rounds,
        machine: Machine { cpus, cpu_model },
        results,
        ratio_b_over_a,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_parses() {
        let a = Args::try_parse_from([
            "baobab-bench",
            "mixed",
            "--endpoint",
            "http://127.0.0.1:9000",
            "--access-key",
            "a",
            "--secret-key",
            "b",
            "--size",
            "4KiB:70,1MiB:30",
            "-c",
            "8",
            "--ops",
            "100",
        ])
        .expect("parses");
        assert_eq!(a.workload, Workload::Mixed);
        assert_eq!(a.concurrency, 8);
        assert!(Args::try_parse_from(["baobab-bench", "teleport"]).is_err());
    }
}
