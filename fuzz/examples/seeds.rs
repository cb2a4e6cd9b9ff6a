//! Writes the seeds the real encoders make into `corpus/<target>/seed-<name>`:
//! `cargo run --release --manifest-path fuzz/Cargo.toml --example seeds`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, data) in baobab_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), data)?;
    }
    Ok(())
}
