//! What the executor runs: plan steps (whose changes make the new layer) and
//! probe commands (whose changes are thrown away), and what comes back.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::LimitHit;

/// The most of a step's stderr kept in its outcome.
pub const STDERR_TAIL: usize = 64 * 1024;
/// The most of a probe's stdout kept by default.
pub const PROBE_STDOUT_LIMIT: usize = 16 * 1024 * 1024;

/// The root file system a command runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunIn {
    /// The image's own root fs, read-write, with its own tools.
    #[default]
    Target,
    /// A tooling root fs, read-only, with the image's root fs mounted
    /// read-write at `mount_point` (an absolute path): for images without
    /// the package manager a step needs.
    Tooling { root: ToolingRoot, mount_point: String },
}

/// Where a tooling root fs comes from. This is what an engine matches on:
/// the local executor runs `Host` and `Dir`; an `Image` is the engine's to
/// resolve (the local engine unpacks it into its cache and passes `Dir`;
/// the BuildKit engine runs the image as the exec's root and refuses
/// `Host`, which a daemon cannot use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolingRoot {
    /// The host's own `/`, restricted to its program and configuration
    /// directories.
    Host,
    /// A directory holding a root fs (an unpacked tooling image).
    Dir(PathBuf),
    /// An image reference as the user or the plugin wrote it (any transport
    /// caulk reads: `docker://…`, `oci:DIR:TAG`, `docker-archive:…`, …),
    /// run read-only for the platform of the host.
    Image(String),
}

/// A host directory mounted into a step, never part of the diff (package
/// indexes and downloads shared between runs). A step that may write it
/// holds an exclusive `flock` on `host_dir` while it runs, so it runs alone
/// and no other step sees it half-written. A step that only reads it
/// (`read_only`) waits only while a snapshot of it is taken (under a shared
/// lock; see `cache_lock`) and reads the snapshot, or takes no lock at all
/// where its session pinned one ([`Step::pin_caches`]): readers of one
/// cache, in one caulk or several, run side by side, and a writer does not
/// wait for their steps to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// Created when missing.
    pub host_dir: PathBuf,
    /// Absolute path inside the root the step runs in.
    pub path: String,
    /// The step reads what earlier steps left there (as it was when the
    /// step started), and nothing it runs can change the host-side
    /// directory: a step in the image sees a copy-on-write view whose
    /// changes are thrown away, a tooling step a read-only bind. Without
    /// overlayfs a step in the image gets the live dir writable instead,
    /// under the exclusive lock (npm writes its cache even to read it).
    pub read_only: bool,
}

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step does, for people; names the step in errors.
    pub summary: String,
    /// `argv[0]` is looked up in the sandbox's `PATH`; no shell is involved.
    pub argv: Vec<String>,
    /// The directory inside the sandbox the step starts in; `/` when none.
    pub cwd: Option<String>,
    /// Added to the clean environment (after `PATH`, `HOME` and the proxy
    /// variables, so a step may override them).
    pub env: Vec<(String, String)>,
    /// Whether the step shares the host's network.
    pub network: bool,
    /// Whether a failure is reported in the outcome rather than as an error.
    pub tolerate_failure: bool,
    pub run_in: RunIn,
    pub caches: Vec<CacheMount>,
    /// Killed (the whole sandbox) when it runs longer.
    pub timeout: Option<Duration>,
    /// Keep, for the session's later read-only steps, a snapshot of the
    /// caches this step writes, taken before it lets go of them (see
    /// [`mark_pins`]).
    pub pin_caches: bool,
}

impl Step {
    pub fn new(summary: impl Into<String>, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Step {
            summary: summary.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: Vec::new(),
            network: false,
            tolerate_failure: false,
            run_in: RunIn::Target,
            caches: Vec::new(),
            timeout: None,
            pin_caches: false,
        }
    }

    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    #[must_use]
    pub fn network(mut self, network: bool) -> Self {
        self.network = network;
        self
    }

    #[must_use]
    pub fn tolerate_failure(mut self, tolerate: bool) -> Self {
        self.tolerate_failure = tolerate;
        self
    }

    #[must_use]
    pub fn run_in(mut self, run_in: RunIn) -> Self {
        self.run_in = run_in;
        self
    }

    /// Starts it in `dir` inside the sandbox instead of `/`.
    #[must_use]
    pub fn cwd(mut self, dir: Option<String>) -> Self {
        self.cwd = dir;
        self
    }

    #[must_use]
    pub fn cache(mut self, host_dir: impl Into<PathBuf>, path: impl Into<String>) -> Self {
        self.caches.push(CacheMount { host_dir: host_dir.into(), path: path.into(), read_only: false });
        self
    }

    /// A cache the step can read and not change.
    #[must_use]
    pub fn read_only_cache(mut self, host_dir: impl Into<PathBuf>, path: impl Into<String>) -> Self {
        self.caches.push(CacheMount { host_dir: host_dir.into(), path: path.into(), read_only: true });
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    #[must_use]
    pub fn pin_caches(mut self, pin: bool) -> Self {
        self.pin_caches = pin;
        self
    }
}

/// Sets [`Step::pin_caches`] on each step that is the last to write a cache
/// dir before a later step reads it read-only: that reader then sees the
/// dir as this session left it, not as another session's writer changed it
/// in between (a fleet job's install reads the indexes and downloads of its
/// own refresh and fetch). Other writers take no snapshot: nothing of this
/// session would read it.
pub fn mark_pins(steps: &mut [Step]) {
    for i in 0..steps.len() {
        let written: Vec<&PathBuf> =
            steps[i].caches.iter().filter(|c| !c.read_only).map(|c| &c.host_dir).collect();
        let read_later = written.iter().any(|dir| {
            steps[i + 1..]
                .iter()
                .find(|s| s.caches.iter().any(|c| &c.host_dir == *dir))
                .is_some_and(|next| next.caches.iter().filter(|c| &c.host_dir == *dir).all(|c| c.read_only))
        });
        steps[i].pin_caches = read_later;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_writer_before_a_reader_pins() {
        let lists = "/c/lists";
        let npm = "/c/npm";
        let write = |dir: &str| Step::new("w", ["true"]).cache(dir, "/x");
        let read = |dir: &str| Step::new("r", ["true"]).read_only_cache(dir, "/x");
        let mut steps = vec![
            write(lists),                              // refresh: the fetch writes next
            write(lists),                              // fetch: the install reads next
            read(lists),                               // install
            write(npm),                                // nobody reads npm after it
            write(lists).read_only_cache(lists, "/y"), // both ways is a writer...
            read(lists),                               // ...read after
            Step::new("none", ["true"]),
        ];
        mark_pins(&mut steps);
        let pinned: Vec<bool> = steps.iter().map(|s| s.pin_caches).collect();
        assert_eq!(pinned, [false, true, false, false, true, false, false]);
    }
}

/// A read-only command: it sees the root fs as it is now (after the steps
/// run so far) and whatever it changes is discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub argv: Vec<String>,
    /// The directory inside the sandbox the probe starts in; `/` when none.
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub network: bool,
    pub run_in: RunIn,
    /// Host directories bound read-write: the one thing a probe writes that
    /// outlives it. Not locked as steps' caches are: probes run side by
    /// side, and what they share must stand concurrent writers.
    pub caches: Vec<CacheMount>,
    pub timeout: Option<Duration>,
    /// Stdout beyond this many bytes is dropped (and flagged).
    pub stdout_limit: usize,
}

impl Probe {
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Probe {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: Vec::new(),
            network: false,
            run_in: RunIn::Target,
            caches: Vec::new(),
            timeout: None,
            stdout_limit: PROBE_STDOUT_LIMIT,
        }
    }

    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    #[must_use]
    pub fn network(mut self, network: bool) -> Self {
        self.network = network;
        self
    }

    #[must_use]
    pub fn run_in(mut self, run_in: RunIn) -> Self {
        self.run_in = run_in;
        self
    }

    /// Starts it in `dir` inside the sandbox instead of `/`.
    #[must_use]
    pub fn cwd(mut self, dir: Option<String>) -> Self {
        self.cwd = dir;
        self
    }

    #[must_use]
    pub fn cache(mut self, host_dir: impl Into<PathBuf>, path: impl Into<String>) -> Self {
        self.caches.push(CacheMount { host_dir: host_dir.into(), path: path.into(), read_only: false });
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The name a probe goes by in errors and logs.
    pub(crate) fn label(&self) -> String {
        format!("probe {}", self.argv.join(" "))
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub summary: String,
    /// Exit status; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub duration: Duration,
    /// The last [`STDERR_TAIL`] bytes of stderr (lossy UTF-8).
    pub stderr_tail: String,
    /// Killed because it ran past its timeout.
    pub timed_out: bool,
    /// The resource limit it ran into, if any (it may have coped).
    pub limit_hit: Option<LimitHit>,
}

impl StepOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The exit status as the plugin interface carries it: -1 when killed.
    pub fn exit_code_or_minus_one(&self) -> i32 {
        self.exit_code.unwrap_or(-1)
    }

    pub(crate) fn status_text(&self) -> String {
        match (self.exit_code, self.signal) {
            _ if self.timed_out => "timed out".to_owned(),
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_owned(),
        }
    }
}

/// What a probe printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutput {
    /// Exit status; `None` when killed by a signal (or the timeout).
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    /// Whether stdout went past the probe's limit and was cut.
    pub stdout_truncated: bool,
    /// The last [`STDERR_TAIL`] bytes of stderr.
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub duration: Duration,
    /// The resource limit it ran into, if any.
    pub limit_hit: Option<LimitHit>,
}

impl ProbeOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
