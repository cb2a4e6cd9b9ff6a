//! Replays every committed corpus input (seeds, inputs libFuzzer kept, and the reproducers of
//! fixed findings) and every seed the encoders make today through its target's check, on the
//! stable toolchain: `cargo test --release --manifest-path fuzz/Cargo.toml`.

use std::path::Path;
use std::time::{Duration, Instant};

/// One input's check must not take longer than this (a hang is a finding too; libFuzzer's own
/// limit is its `-timeout`).
const MAX_INPUT_TIME: Duration = Duration::from_secs(10);

fn run(
    target: &str,
    check: baobab_fuzz::Check,
    name: &str,
    data: &[u8],
    failures: &mut Vec<String>,
) {
    let start = Instant::now();
    if std::panic::catch_unwind(|| check(data)).is_err() {
        failures.push(format!("{target}/{name}: panicked"));
    }
    let took = start.elapsed();
    if took > MAX_INPUT_TIME {
        failures.push(format!("{target}/{name}: took {took:?}"));
    }
}

#[test]
fn every_corpus_input_passes_its_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failures = Vec::new();
    for &(target, check) in baobab_fuzz::TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a corpus)", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let name = path.file_name().expect("a file name").to_string_lossy();
            run(target, check, &name, &data, &mut failures);
            n += 1;
        }
        assert!(n > 0, "{target}: empty corpus");
        eprintln!("{target}: {n} inputs replayed");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_seed_passes_its_check_and_is_committed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failures = Vec::new();
    for (target, name, data) in baobab_fuzz::seeds::all() {
        let (_, check) = baobab_fuzz::TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .expect("a seed names a target");
        run(target, *check, name, &data, &mut failures);
        let file = root.join(target).join(format!("seed-{name}"));
        if !file.exists() {
            failures.push(format!(
                "{}: missing (cargo run --release --manifest-path fuzz/Cargo.toml --example seeds)",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
