//! The simulation's seeds. `BAOBAB_SIM_SEED=<n>` runs that one seed; otherwise seeds
//! 1..=`BAOBAB_SIM_SEEDS` (default [`DEFAULT_SEEDS`], sized for CI's 2 cores) run.

use baobab_sim::{run, SimOptions};

const DEFAULT_SEEDS: u64 = 8;

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("BAOBAB_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("BAOBAB_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

#[test]
fn seeded_runs_lose_nothing() {
    let mut failures = Vec::new();
    for seed in seeds() {
        let outcome = run(seed, &SimOptions::default()).expect("the simulation ran");
        eprintln!(
            "seed {seed}: {} acked, {} failed, {} reads checked, {} faults, {:?} simulated in {:?}",
            outcome.report.ops_acked,
            outcome.report.ops_failed,
            outcome.report.reads_checked,
            outcome.faults.len(),
            outcome.simulated,
            outcome.real
        );
        if !outcome.passed() {
            eprintln!("{}", outcome.failure_message());
            failures.push(seed);
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
