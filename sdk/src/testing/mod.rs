//! Run a plugin through the real `caulk` host from a test.
//!
//! Plugin logic is best unit-tested natively: a [`Scanner`](crate::Scanner)
//! or [`Updater`](crate::Updater) is a plain Rust type, so `MyPlugin::parse(..)`
//! works in `cargo test`. This module covers the rest: it builds the crate
//! into a component and calls it through the `caulk` binary, exactly as a user
//! would run it.
//!
//! ```ignore
//! use caulk_sdk::testing::{build_component, Host};
//!
//! #[test]
//! fn runs_in_caulk() {
//!     let wasm = build_component(env!("CARGO_MANIFEST_DIR")).unwrap();
//!     let findings = Host::find().unwrap().parse(&wasm, b"...").unwrap();
//!     assert_eq!(findings.findings.len(), 1);
//! }
//! ```
//!
//! `Host::find` uses `$CAULK_BIN`, then `caulk` next to the test's own target
//! directory (a plugin inside caulk's workspace), then `caulk` on `PATH`.
//!
//! For an updater's probe rounds run natively, [`files`] answers `files`
//! questions from a directory laid out like an image root, and
//! [`os_release`] reads that root's OS as the host does.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod root;
mod rounds;

pub use root::{entry, files, glob, os_release};
pub use rounds::probe_rounds;

use crate::types::Findings;
use crate::update::{Outcome, PatchPlan, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// What went wrong building or running a plugin.
#[derive(Debug)]
pub enum TestingError {
    /// A process could not be started.
    Spawn { program: String, source: std::io::Error },
    /// `cargo build` failed; its output.
    Build(String),
    /// The build produced no `.wasm`.
    NoArtifact(PathBuf),
    /// No `caulk` binary was found.
    NoHost,
    /// `caulk` exited with an error; its stderr.
    Host { status: Option<i32>, stderr: String },
    /// `caulk` printed something that is not the expected JSON.
    Json(serde_json::Error),
    /// Writing the input failed.
    Io(std::io::Error),
}

impl fmt::Display for TestingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn { program, source } => write!(f, "starting {program}: {source}"),
            Self::Build(out) => write!(f, "building the plugin failed:\n{out}"),
            Self::NoArtifact(dir) => write!(f, "building {} produced no .wasm file", dir.display()),
            Self::NoHost => f.write_str("no caulk binary: set CAULK_BIN or put caulk on PATH"),
            Self::Host { status, stderr } => write!(f, "caulk exited with {status:?}:\n{stderr}"),
            Self::Json(e) => write!(f, "caulk's output is not the expected JSON: {e}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TestingError {}

/// Builds the plugin crate at `manifest_dir` for `wasm32-wasip2` (release
/// profile) and returns the path of the component.
pub fn build_component(manifest_dir: impl AsRef<Path>) -> Result<PathBuf, TestingError> {
    let manifest_dir = manifest_dir.as_ref();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(manifest_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit())
        // Flags for the test's own (native) build must not reach the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|source| TestingError::Spawn { program: cargo.to_string_lossy().into_owned(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(TestingError::Build(stdout.into_owned()));
    }
    let manifest = manifest_dir.join("Cargo.toml");
    let mut wasm = None;
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = msg["manifest_path"].as_str().is_some_and(|p| Path::new(p) == manifest);
        if msg["reason"] == "compiler-artifact"
            && ours
            && let Some(files) = msg["filenames"].as_array()
        {
            wasm = files
                .iter()
                .filter_map(|f| f.as_str())
                .map(PathBuf::from)
                .find(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm")));
        }
    }
    wasm.ok_or_else(|| TestingError::NoArtifact(manifest_dir.to_owned()))
}

/// The `caulk` binary, called the way users call it.
#[derive(Debug, Clone)]
pub struct Host {
    bin: PathBuf,
}

impl Host {
    /// A host at an explicit path.
    pub fn at(bin: impl Into<PathBuf>) -> Self {
        Self { bin: bin.into() }
    }

    /// Finds `caulk`: `$CAULK_BIN`, then beside the current test's target
    /// directory, then on `PATH`.
    pub fn find() -> Result<Self, TestingError> {
        if let Some(bin) = std::env::var_os("CAULK_BIN") {
            return Ok(Self::at(bin));
        }
        // A test binary lives in <target>/<profile>/deps/.
        if let Ok(exe) = std::env::current_exe()
            && let Some(profile_dir) = exe.parent().and_then(Path::parent)
        {
            let candidate = profile_dir.join("caulk");
            if candidate.is_file() {
                return Ok(Self::at(candidate));
            }
        }
        let path = std::env::var_os("PATH").ok_or(TestingError::NoHost)?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("caulk"))
            .find(|p| p.is_file())
            .map(Self::at)
            .ok_or(TestingError::NoHost)
    }

    /// The binary's path.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `caulk plugins call WASM FUNCTION -` with `input` on stdin; the JSON result.
    pub fn call(&self, wasm: &Path, function: &str, input: &[u8]) -> Result<serde_json::Value, TestingError> {
        let mut child = Command::new(&self.bin)
            .args(["plugins", "call"])
            .arg(wasm)
            .arg(function)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TestingError::Spawn { program: self.bin.display().to_string(), source })?;
        let mut stdin = child.stdin.take().expect("piped");
        // Write from a thread so a large input cannot deadlock against output.
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().map_err(TestingError::Io)?;
        let _ = writer.join();
        if !output.status.success() {
            return Err(TestingError::Host {
                status: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        serde_json::from_slice(&output.stdout).map_err(TestingError::Json)
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        wasm: &Path,
        function: &str,
        input: &[u8],
    ) -> Result<T, TestingError> {
        serde_json::from_value(self.call(wasm, function, input)?).map_err(TestingError::Json)
    }

    /// The scanner's confidence that `report` is its format.
    pub fn sniff(&self, wasm: &Path, report: &[u8]) -> Result<u8, TestingError> {
        self.typed(wasm, "sniff", report)
    }

    /// The scanner's findings for `report`.
    pub fn parse(&self, wasm: &Path, report: &[u8]) -> Result<Findings, TestingError> {
        self.typed(wasm, "parse", report)
    }

    /// The updater's questions for `request`.
    pub fn probe(&self, wasm: &Path, request: &ProbeRequest) -> Result<Vec<Question>, TestingError> {
        self.typed(wasm, "probe", &to_json(request)?)
    }

    /// The updater's plan for `request`.
    pub fn plan(&self, wasm: &Path, request: &PlanRequest) -> Result<PatchPlan, TestingError> {
        self.typed(wasm, "plan", &to_json(request)?)
    }

    /// The updater's outcomes for `request`.
    pub fn verify(&self, wasm: &Path, request: &VerifyRequest) -> Result<Vec<Outcome>, TestingError> {
        self.typed(wasm, "verify", &to_json(request)?)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, TestingError> {
    serde_json::to_vec(value).map_err(TestingError::Json)
}
