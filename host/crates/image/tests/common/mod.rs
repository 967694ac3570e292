//! Shared helpers for the integration tests: real test images built by the
//! scripts under tests/images, and the real tools (skopeo, docker-registry)
//! that check what caulk writes.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod registry;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

/// Runs a command and returns its output, failing the test with its
/// stderr when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn skopeo(args: &[&str]) -> Output {
    run(Command::new("/usr/bin/skopeo").args(args))
}

pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&skopeo(args).stdout).expect("skopeo prints JSON")
}

/// The synthetic OCI layout of tests/images/synthetic.sh, built once per
/// version of the script into the test cache (a rename publishes it, so
/// concurrent test processes never see half of one).
pub fn synthetic() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("tests/images/synthetic.sh");
        let version = caulk_image::Digest::of(&std::fs::read(&script).unwrap());
        let dir = test_cache().join(format!("synthetic-{}", &version.hex()[..16]));
        if !dir.join("index.json").exists() {
            let tmp = test_cache().join(format!(".synthetic-{}", std::process::id()));
            run(Command::new("bash").arg(&script).arg(&tmp));
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp); // another process won
            }
        }
        dir
    })
}

/// A copy of the synthetic layout that a test may damage.
pub fn synthetic_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("syn");
    run(Command::new("cp").arg("-a").arg(synthetic()).arg(&dir));
    dir
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("caulk-image-").tempdir().unwrap()
}

/// Cache for expensive fixtures (the Debian root fs), kept between runs and
/// outside the repository.
pub fn test_cache() -> PathBuf {
    let dir = std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/tmp/caulk-test-cache"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Debian image of tests/images/debian.sh (built once, then cached).
pub fn debian() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = run(Command::new("bash")
            .arg(repo_root().join("tests/images/debian.sh"))
            .env("CAULK_TEST_CACHE", test_cache()));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

pub fn sha256_hex(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}
