//! Errors of the local executor. Each names the step (by its summary) or
//! the path it concerns, and what to do when the fix is on the host.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::LimitHit;
use crate::seccomp::FilterError;
use crate::step::StepOutcome;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the local executor needs root (running as uid {euid}): overlayfs mounts and correct file \
         ownership in the new layer need it; run caulk as root (e.g. with sudo)"
    )]
    NotRoot { euid: u32 },

    #[error(
        "bubblewrap (`bwrap`) was not found ({searched}); install it with `apt-get install bubblewrap` \
         (Debian/Ubuntu) or `dnf install bubblewrap`, or name it explicitly"
    )]
    BwrapMissing { searched: String },

    #[error("bubblewrap at {path} cannot be used: {reason}; reinstall it with `apt-get install bubblewrap`")]
    BwrapUnusable { path: PathBuf, reason: String },

    #[error("overlayfs is not usable here ({reason}); enable it with `modprobe overlay` or choose copy mode")]
    OverlayUnavailable { reason: String },

    #[error("working folder {path}: {reason}")]
    WorkingFolder { path: PathBuf, reason: String },

    #[error("CA bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },

    #[error("layer directory {path}: {reason}")]
    LayerDir { path: PathBuf, reason: String },

    #[error("{count} layers is more than overlayfs stacks ({max}); use copy mode")]
    TooManyLayers { count: usize, max: usize },

    #[error("step `{step}` is invalid: {reason}")]
    InvalidStep { step: String, reason: String },

    #[error(
        "step `{step}`: could not start the sandbox (overlay mount or bwrap): {source}; for an overlay \
         mount error the kernel log (`dmesg`) has overlayfs' reason"
    )]
    Spawn {
        step: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "step `{step}`: could not set up its cgroup for the resource limits: {source}; turn the limits \
         off with --step-memory 0 --step-pids 0"
    )]
    Limits {
        step: String,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Filter(#[from] FilterError),

    #[error("step `{step}`: {what}: {source}")]
    Supervise {
        step: String,
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("step `{step}` failed ({status}){}", stderr_excerpt(&outcome.stderr_tail))]
    StepFailed { step: String, status: String, outcome: Box<StepOutcome> },

    #[error("step `{step}` failed ({status}): {}{}", hit.describe(), stderr_excerpt(&outcome.stderr_tail))]
    StepLimit { step: String, status: String, hit: LimitHit, outcome: Box<StepOutcome> },

    #[error("step `{step}` did not finish within {}s and was killed", timeout.as_secs_f64())]
    StepTimedOut { step: String, timeout: Duration, outcome: Box<StepOutcome> },

    #[error(
        "{what} needs overlay mode (this run uses copy mode: overlayfs is unavailable or --executor-mode copy)"
    )]
    NeedsOverlay { what: String },

    #[error("cancelled {during}")]
    Cancelled { during: String },

    #[error("step `{step}`: cache {path}: {reason}")]
    Cache { step: String, path: PathBuf, reason: String },

    #[error("step `{step}`: mount point {path}: {reason}")]
    MountPoint { step: String, path: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("tooling image {image}: {reason}")]
    ToolingImage { image: String, reason: String },

    #[error("path {path} in the root fs: {reason}")]
    Path { path: String, reason: String },

    #[error("glob {pattern}: {reason}")]
    BadGlob { pattern: String, reason: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io { context: context.into(), source: source.into() }
    }

    /// The step outcome carried by a failed or timed-out step.
    pub fn outcome(&self) -> Option<&StepOutcome> {
        match self {
            Error::StepFailed { outcome, .. }
            | Error::StepLimit { outcome, .. }
            | Error::StepTimedOut { outcome, .. } => Some(outcome),
            _ => None,
        }
    }
}

/// The last lines of stderr, to make a failure readable without `-v`.
fn stderr_excerpt(tail: &str) -> String {
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(5);
    format!(": {}", lines[start..].join(" | "))
}

/// Attaches a description to `std::io` results.
pub(crate) trait IoContext<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
