//! Puts the commit the binary is built from into `BAOBAB_COMMIT` (for `baobab --version`):
//! `BAOBAB_COMMIT` from the environment if set (a build from a source tarball), else
//! `git rev-parse HEAD` of the checkout, else "unknown". (Uncommitted changes are not marked:
//! a build script cannot see every edit without rerunning on each build.)

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BAOBAB_COMMIT");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest);
    let commit = match std::env::var("BAOBAB_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => match git(dir, &["rev-parse", "HEAD"]) {
            Some(head) => {
                // Rebuilt when HEAD moves (a commit, a checkout); the ref files it may point at.
                if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
                    let git_dir = Path::new(&git_dir);
                    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
                    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
                        let common = git(dir, &["rev-parse", "--git-common-dir"])
                            .map(|c| dir.join(c))
                            .unwrap_or_else(|| git_dir.to_path_buf());
                        println!("cargo:rerun-if-changed={}", common.join(&r).display());
                        println!(
                            "cargo:rerun-if-changed={}",
                            common.join("packed-refs").display()
                        );
                    }
                }
                head
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=BAOBAB_COMMIT={commit}");
}
