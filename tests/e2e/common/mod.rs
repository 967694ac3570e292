//! Small helpers for caulk's end-to-end tests: run the built binary in an
//! isolated environment, build test plugins to components.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Debian's docker-registry, the same harness the image crate's tests use.
#[path = "../../../host/crates/image/tests/common/registry.rs"]
pub mod registry;

/// The `caulk` binary under test.
pub fn caulk_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_caulk"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The repository's real scanner reports and Copa test data (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    workspace().join("tests").join("fixtures")
}

/// The target dir the binary under test was built in.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| caulk_bin().parent().and_then(Path::parent).unwrap().to_path_buf(), PathBuf::from)
}

/// A temporary home for one test: its own data and config directories, so
/// tests neither share state nor touch the user's. The compiled-plugin and
/// layer caches are shared by the tests of a run (caulk keeps them safe for
/// concurrent processes; compiling every built-in in every test of a debug
/// build costs minutes) unless a test asks for a private one.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    private_cache: bool,
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), private_cache: false }
    }

    /// A sandbox whose caches start empty, for tests of the caches.
    pub fn with_private_cache() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), private_cache: true }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache_dir(&self) -> PathBuf {
        if self.private_cache { self.path().join("cache") } else { target_dir().join("test-cache") }
    }

    /// A `caulk` command with the sandbox's environment.
    pub fn caulk(&self) -> Command {
        let mut cmd = Command::new(caulk_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("CAULK_CACHE_DIR", self.cache_dir())
            .current_dir(self.path());
        cmd
    }

    /// A fresh directory inside the sandbox.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Runs and returns the output, with stdout and stderr shown on failure of
/// the test's own assertions.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Asserts exit code `code` and returns stderr.
#[track_caller]
pub fn failure(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(out), stderr(out));
    stderr(out)
}

/// Builds a workspace package to a `wasm32-wasip2` component (the profile the
/// built-ins use) and returns its path. Each package is built once per test
/// process.
pub fn wasm_of(package: &str) -> PathBuf {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let target = target_dir().join("plugin-wasm");
    let wasm = target.join("wasm32-wasip2/plugin").join(format!("{}.wasm", package.replace('-', "_")));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace())
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "plugin", "-p", package])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo");
    assert!(status.success(), "building {package} for wasm32-wasip2 failed");
    assert!(wasm.is_file(), "{} was not produced", wasm.display());
    wasm
}

/// The OCI layout a `tests/images/SCRIPT` builds (or finds in the test
/// cache), run once per test process.
pub fn image_layout(script: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(s, _)| s == script) {
        return path.clone();
    }
    let out = Command::new(workspace().join("tests/images").join(script))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    built.push((script.to_owned(), path.clone()));
    path
}

/// A copy of the layout `script` builds in the sandbox, to patch without
/// touching the cached one.
pub fn layout_copy(sandbox: &Sandbox, script: &str) -> PathBuf {
    let dest = sandbox.path().join("layout");
    assert!(Command::new("cp").arg("-a").arg(image_layout(script)).arg(&dest).status().unwrap().success());
    dest
}

/// Reading what a patched Debian image holds, shared by the test files that
/// compare package versions and blobs.
pub mod dpkg {
    use std::collections::BTreeMap;
    use std::process::Command;

    use caulk_image::Image;

    /// `Package: → Version:` of dpkg control paragraphs (a status file or
    /// status.d entries joined with blank lines).
    pub fn versions_in(status: &str) -> BTreeMap<String, String> {
        status
            .split("\n\n")
            .filter_map(|stanza| {
                let field = |name: &str| {
                    stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                Some((field("Package:")?, field("Version:")?))
            })
            .collect()
    }

    /// Whether `a` is at or above `b` in dpkg's own order.
    pub fn dpkg_ge(a: &str, b: &str) -> bool {
        Command::new("dpkg").args(["--compare-versions", a, "ge", b]).status().unwrap().success()
    }

    /// The layer digests of the image's first platform, bottom first.
    pub fn layer_digests(image: &Image) -> Vec<String> {
        image.images[0].layers.iter().map(|l| l.desc.digest.to_string()).collect()
    }

    /// The config of the image's first platform.
    pub fn config(image: &Image) -> serde_json::Value {
        serde_json::from_slice(&image.images[0].config.bytes).unwrap()
    }
}

/// The summary row of `name` at `location` in a `caulk.patch/v1` document.
pub fn row_at<'a>(summary: &'a serde_json::Value, name: &str, location: &str) -> &'a serde_json::Value {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name && r["location"] == location)
        .unwrap_or_else(|| panic!("no row for {name} at {location}: {summary:#}"))
}
