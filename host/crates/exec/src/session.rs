//! A session: one image platform's root fs, the steps run on it one after
//! the other, probes in between, and the diff at the end.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{CWD, FileType, FlockOperation, Mode as FsMode};
use tempfile::TempDir;

use crate::cancel::CancelToken;
use crate::copy::{self, Snap};
use crate::error::{Error, IoContext, Result};
use crate::executor::{CA_BUNDLE_PATHS, LocalExecutor, Mode, check_mount_data, session_prefix};
use crate::merged::{EntryKind, MergedReader, is_opaque, is_whiteout};
use crate::privileges;
use crate::sandbox::{self, Finished, Launch, OverlayMount, RunError};
use crate::step::{CacheMount, Probe, ProbeOutput, RunIn, Step, StepOutcome, Stream, ToolingRoot};

/// The directory of one session under the working folder, removed on drop.
/// A lock file held for the session's life tells a later run whether the
/// directory is stale.
#[derive(Debug)]
pub(crate) struct SessionDir {
    dir: TempDir,
    _lock: File,
}

impl SessionDir {
    pub(crate) fn create(folder: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(session_prefix()).tempdir_in(folder).map_err(|e| {
            Error::WorkingFolder {
                path: folder.to_owned(),
                reason: format!("cannot create a session dir: {e}"),
            }
        })?;
        let lock_path = dir.path().join("lock");
        let lock = File::create(&lock_path).ctx(|| format!("creating {}", lock_path.display()))?;
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        Ok(SessionDir { dir, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether no live session holds `path` (a session dir).
    pub(crate) fn is_stale(path: &Path) -> bool {
        match File::open(path.join("lock")) {
            Ok(lock) => rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok(),
            // A session being created has no lock file for a moment;
            // any other error (out of fds) says nothing about it.
            Err(e) if e.kind() != io::ErrorKind::NotFound => false,
            Err(_) => fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_mins(1))),
        }
    }
}

/// Where the steps' changes go.
pub(crate) enum Workspace {
    /// `l/N` link to the lower dirs, `u` is the upper dir, `m` the mount
    /// point (used only inside each step's private mount namespace).
    Overlay { lowers: Vec<PathBuf> },
    /// `root` is the merged copy; `snapshot` what it looked like before.
    Copy { root: PathBuf, snapshot: Snap },
}

/// The root fs of one image platform with the steps run so far. Dropping
/// it removes everything it put in the working folder.
pub struct Session<'e> {
    exec: &'e LocalExecutor,
    dir: SessionDir,
    workspace: Workspace,
    cancel: CancelToken,
    /// Set once cancelled: what is on disk may be half a step.
    poisoned: bool,
    /// The caches as this session's last step writing each left them.
    pins: crate::cache_lock::Pins,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.dir.path())
            .field("mode", &self.mode())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The result of a session: one directory in overlayfs upper-dir form
/// (0/0 character devices for deleted entries, `trusted.overlay.opaque=y`
/// on directories that replace the image's), removed on drop.
#[derive(Debug)]
pub struct Diff {
    dir: SessionDir,
    path: PathBuf,
    mode: Mode,
}

impl Diff {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode that produced it.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The session dir holding the diff (removed with it).
    pub fn session_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A path bwrap creates in the target as a mount point, to be removed
/// after the step so it never reaches the diff.
#[derive(Debug, Clone)]
struct Created {
    /// Relative to the target root.
    rel: PathBuf,
    /// overlay: the upper dir held a whiteout here before (a step deleted
    /// it), which must come back.
    upper_whiteout: bool,
}

/// The existing directory a mount point was created in, and its ancestors,
/// each with whether the upper dir held it before the step (overlay only:
/// creating a file copies the parent up, which must be undone).
#[derive(Debug, Clone)]
struct CopiedUp {
    chain: Vec<(PathBuf, bool)>,
}

/// The bwrap arguments of one run and what to clean up afterwards.
#[derive(Debug, Default)]
struct Planned {
    args: Vec<OsString>,
    created: Vec<Created>,
    copied_up: Vec<CopiedUp>,
}

/// What to run, common to steps and probes.
struct Request<'a> {
    label: &'a str,
    argv: &'a [String],
    cwd: Option<&'a str>,
    env: &'a [(String, String)],
    network: bool,
    run_in: &'a RunIn,
    caches: &'a [CacheMount],
}

/// How the target root fs appears to bwrap for one run.
struct TargetRoot<'a> {
    /// The directory bound into the sandbox.
    dir: PathBuf,
    writable: bool,
    /// The merged view before the run, for existence checks.
    view: MergedReader,
    /// Where created mount points land on disk (overlay upper dir, copy
    /// root); `None` for throwaway roots.
    changes: Option<&'a Path>,
    /// overlay: the lower dirs without the upper, to compare copied-up
    /// directories with.
    lowers: Option<MergedReader>,
}

/// The links to `count` layer dirs in a session dir, top first.
pub(crate) fn lower_names(count: usize) -> Vec<String> {
    if count == 0 {
        return vec!["l/empty".to_owned()];
    }
    (0..count).rev().map(|i| format!("l/{i}")).collect()
}

/// An overlay mount made from `base` with the given relative dirs; the work
/// dir is made afresh, since a volatile mount leaves a marker in it that
/// refuses the next mount.
pub(crate) fn overlay_spec(
    base: &Path,
    lower: &[String],
    upper: &str,
    work: &str,
    target: &str,
    volatile: bool,
) -> Result<OverlayMount> {
    let data = sandbox::overlay_data(lower, upper, work, volatile);
    check_mount_data(&data)?;
    let work_dir = base.join(work);
    if work_dir.exists() {
        fs::remove_dir_all(&work_dir).ctx(|| format!("removing {}", work_dir.display()))?;
    }
    fs::create_dir(&work_dir).ctx(|| format!("creating {}", work_dir.display()))?;
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| Error::Path {
            path: String::from_utf8_lossy(s).into_owned(),
            reason: "contains NUL".to_owned(),
        })
    };
    Ok(OverlayMount {
        base: cstr(base.as_os_str().as_bytes())?,
        target: cstr(target.as_bytes())?,
        data: cstr(data.as_bytes())?,
    })
}

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_owned()
}

fn rel_of(abs: &str) -> PathBuf {
    PathBuf::from(abs.trim_start_matches('/'))
}

impl<'e> Session<'e> {
    pub(crate) fn new(
        exec: &'e LocalExecutor,
        dir: SessionDir,
        workspace: Workspace,
        cancel: CancelToken,
    ) -> Self {
        Session { exec, dir, workspace, cancel, poisoned: false, pins: crate::cache_lock::Pins::default() }
    }

    /// [`Mode::Overlay`] or [`Mode::Copy`].
    pub fn mode(&self) -> Mode {
        match self.workspace {
            Workspace::Overlay { .. } => Mode::Overlay,
            Workspace::Copy { .. } => Mode::Copy,
        }
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn check_cancel(&mut self, during: impl FnOnce() -> String) -> Result<()> {
        if self.poisoned || self.cancel.is_cancelled() {
            self.poisoned = true;
            return Err(Error::Cancelled { during: during() });
        }
        Ok(())
    }

    /// Lets go of the snapshots kept for read-only steps ([`crate::mark_pins`]):
    /// once the steps are done, probes do not read them, and they keep
    /// replaced index files alive.
    pub fn drop_pins(&mut self) {
        self.pins.clear();
    }

    /// The steps' changes so far, in the form [`Session::finish`] hands
    /// them over, while the session lives: overlay mode only (copy mode
    /// finds its changes by comparing the copy at the end). Nothing writes
    /// to it between steps (probes stack their own scratch upper dir on
    /// top), so the layer can be written from it while probes run.
    pub fn changes_dir(&self) -> Option<PathBuf> {
        match &self.workspace {
            Workspace::Overlay { .. } if !self.poisoned => Some(self.base().join("u")),
            _ => None,
        }
    }

    /// The root fs as it is now (the layers plus every step's changes),
    /// read in userspace: for probes after the steps.
    pub fn reader(&self) -> MergedReader {
        match &self.workspace {
            Workspace::Overlay { lowers } => {
                let mut layers = lowers.clone();
                layers.push(self.base().join("u"));
                MergedReader::new(layers)
            }
            Workspace::Copy { root, .. } => MergedReader::new(vec![root.clone()]),
        }
    }

    /// Lower dirs for a mount made from the session dir, top first.
    fn lower_names(&self) -> Vec<String> {
        match &self.workspace {
            Workspace::Overlay { lowers } => lower_names(lowers.len()),
            Workspace::Copy { .. } => vec!["root".to_owned()],
        }
    }

    fn overlay_mount(&self, lower: &[String], upper: &str, work: &str, target: &str) -> Result<OverlayMount> {
        let volatile = self.exec.overlay.is_some_and(|o| o.volatile);
        overlay_spec(self.base(), lower, upper, work, target, volatile)
    }

    /// How a step gets its caches. Without overlayfs a step in the image
    /// gets its read-only caches writable, under the exclusive lock: the
    /// only read-only form left there is a bind, and npm's offline install
    /// writes its cache even to read it (`ENOTCACHED` from a read-only
    /// one). Such steps then take turns on the cache, and what they write
    /// stays, as before read-only caches existed. A tooling step's stay
    /// read-only (see [`Self::cache_views`]).
    fn cache_access(&self, run_in: &RunIn, caches: &[CacheMount]) -> Vec<CacheMount> {
        let tooling = matches!(run_in, RunIn::Tooling { .. });
        if tooling || self.exec.overlay.is_some() {
            return caches.to_vec();
        }
        caches.iter().map(|c| CacheMount { read_only: false, ..c.clone() }).collect()
    }

    /// The read-only caches of a step in the image as copy-on-write views
    /// where overlayfs works: each a throwaway overlay on its snapshot (see
    /// `cache_lock`), so a tool that writes its cache even to read it (npm
    /// records reads, apt locks and chmods) still works, and nothing it
    /// writes outlives the step. A tooling step's stay read-only binds:
    /// what it writes there came through a link the image planted (dpkg
    /// `--root` following `usr/share/doc/x -> /caulk/work`), and failing
    /// says so, where a view would silently drop files meant for the image.
    /// So does a dir the same step also mounts writable: it is the live dir
    /// (no snapshot), and an overlay's lower dir must not change under it.
    /// The views live in the returned dir, removed on drop.
    fn cache_views(
        &self,
        run_in: &RunIn,
        caches: &[CacheMount],
        overlays: &mut Vec<OverlayMount>,
    ) -> Result<(Vec<CacheMount>, Option<TempDir>)> {
        let tooling = matches!(run_in, RunIn::Tooling { .. });
        if tooling || self.exec.overlay.is_none() || !caches.iter().any(|c| c.read_only) {
            return Ok((caches.to_vec(), None));
        }
        let views = tempfile::Builder::new()
            .prefix("c-")
            .tempdir_in(self.base())
            .ctx(|| format!("creating a cache view dir in {}", self.base().display()))?;
        let dir = views.path();
        let name = dir.file_name().expect("temp dirs have names").to_string_lossy().into_owned();
        let mut out = Vec::with_capacity(caches.len());
        let written = |dir: &Path| caches.iter().any(|c| !c.read_only && c.host_dir == dir);
        for (i, cache) in caches.iter().enumerate() {
            if !cache.read_only || written(&cache.host_dir) {
                out.push(cache.clone());
                continue;
            }
            // A link as the lower dir: the mount data then never holds the
            // cache's own path, whatever characters it has.
            let lower = dir.join(format!("{i}l"));
            std::os::unix::fs::symlink(&cache.host_dir, &lower)
                .ctx(|| format!("linking {}", lower.display()))?;
            for sub in ["u", "m"] {
                let made = dir.join(format!("{i}{sub}"));
                fs::create_dir(&made).ctx(|| format!("creating {}", made.display()))?;
            }
            let sub = |what: &str| format!("{name}/{i}{what}");
            overlays.push(self.overlay_mount(&[sub("l")], &sub("u"), &sub("w"), &sub("m"))?);
            out.push(CacheMount {
                host_dir: dir.join(format!("{i}m")),
                path: cache.path.clone(),
                read_only: false,
            });
        }
        Ok((out, Some(views)))
    }

    /// Makes `top`'s entries (upper-dir form: whiteouts and opaque markers
    /// included) the first changes of this session.
    pub(crate) fn seed_changes(&mut self, top: &Path) -> Result<()> {
        let Workspace::Overlay { .. } = self.workspace else {
            return Err(Error::NeedsOverlay { what: "starting from an earlier diff".to_owned() });
        };
        let upper = self.base().join("u");
        // cp keeps what the upper dir needs: 0/0 character devices (as
        // root), trusted.overlay.* xattrs (as root), owners, modes, times.
        let status = std::process::Command::new("cp")
            .args(["-a", "--reflink=auto", "--no-target-directory"])
            .arg(top)
            .arg(&upper)
            .status()
            .ctx(|| "running cp".to_owned())?;
        if !status.success() {
            return Err(Error::io(
                format!("copying {} into the session", top.display()),
                io::Error::other(format!("cp exited with {status}")),
            ));
        }
        Ok(())
    }

    /// Runs one step on the root fs. A failure (or timeout) of a step that
    /// does not tolerate it is an error carrying the outcome; the session
    /// stays usable (for verify probes), unless cancelled.
    pub fn run_step(&mut self, step: &Step, on_output: &mut dyn FnMut(Stream, &str)) -> Result<StepOutcome> {
        let label = step.summary.as_str();
        self.check_cancel(|| format!("before step `{label}`"))?;
        validate(label, &step.argv, &step.env, &step.run_in, &step.caches)?;
        let caches = self.cache_access(&step.run_in, &step.caches);
        self.pins.forget(caches.iter().filter(|c| !c.read_only).map(|c| c.host_dir.as_path()));
        let held = crate::cache_lock::hold(label, &caches, &self.pins, &self.cancel)?;
        self.check_cancel(|| format!("before step `{label}`"))?;

        let (root_dir, changes, overlay) = match &self.workspace {
            Workspace::Overlay { .. } => {
                let overlay = self.overlay_mount(&self.lower_names(), "u", "w", "m")?;
                (self.base().join("m"), self.base().join("u"), Some(overlay))
            }
            Workspace::Copy { root, .. } => (root.clone(), root.clone(), None),
        };
        let mut overlays: Vec<OverlayMount> = overlay.into_iter().collect();
        let (caches, views) = self.cache_views(&step.run_in, &held.caches, &mut overlays)?;
        let lowers = match &self.workspace {
            Workspace::Overlay { lowers } => Some(MergedReader::new(lowers.clone())),
            Workspace::Copy { .. } => None,
        };
        let target = TargetRoot {
            dir: root_dir,
            writable: true,
            view: self.reader(),
            changes: Some(&changes),
            lowers,
        };
        let request = Request {
            label,
            argv: &step.argv,
            cwd: step.cwd.as_deref(),
            env: &step.env,
            network: step.network,
            run_in: &step.run_in,
            caches: &caches,
        };
        let planned = self.plan(&request, &target)?;
        tracing::info!(step = label, argv = ?step.argv, network = step.network, "running step");
        let result = sandbox::run(
            Launch {
                label,
                bwrap: &self.exec.bwrap,
                args: planned.args.clone(),
                overlays,
                timeout: step.timeout,
                cancel: &self.cancel,
                stdout_limit: 0,
                seccomp: &self.exec.seccomp,
                limiter: &self.exec.limiter,
            },
            on_output,
        );
        // Mount points go whatever happened to the step.
        let cleaned = clean_mount_points(&planned, &target);
        let finished = result.map_err(|e| run_error(label, e))?;
        cleaned?;
        if finished.cancelled {
            self.poisoned = true;
            return Err(Error::Cancelled { during: format!("during step `{label}`") });
        }
        let outcome = StepOutcome {
            summary: step.summary.clone(),
            exit_code: finished.exit_code,
            signal: finished.signal,
            duration: finished.duration,
            stderr_tail: String::from_utf8_lossy(&finished.stderr_tail).into_owned(),
            timed_out: finished.timed_out,
            limit_hit: finished.limit_hit,
        };
        tracing::info!(
            step = label,
            status = %outcome.status_text(),
            elapsed_ms = outcome.duration.as_millis(),
            "step finished"
        );
        if let Some(hit) = outcome.limit_hit {
            tracing::warn!(step = label, "{}", hit.describe());
        }
        drop(views);
        // Only when the session goes on after this step. Without overlayfs
        // a reader in the image takes the live dir and leaves the pin
        // unused, but one in a tooling root (apt's distroless install)
        // still reads snapshots, so the pin is taken all the same.
        if step.pin_caches && (outcome.success() || step.tolerate_failure) {
            if let Err(e) = held.release_pinning(label, &mut self.pins, &self.cancel) {
                self.poisoned = true;
                return Err(e);
            }
        } else {
            drop(held);
        }
        if outcome.success() {
            return Ok(outcome);
        }
        if step.tolerate_failure {
            tracing::warn!(step = label, status = %outcome.status_text(), "step failed; going on as it allows");
            return Ok(outcome);
        }
        if outcome.timed_out {
            let timeout = step.timeout.unwrap_or_default();
            return Err(Error::StepTimedOut {
                step: step.summary.clone(),
                timeout,
                outcome: Box::new(outcome),
            });
        }
        if let Some(hit) = outcome.limit_hit {
            return Err(Error::StepLimit {
                step: step.summary.clone(),
                status: outcome.status_text(),
                hit,
                outcome: Box::new(outcome),
            });
        }
        Err(Error::StepFailed {
            step: step.summary.clone(),
            status: outcome.status_text(),
            outcome: Box::new(outcome),
        })
    }

    /// Runs `steps` in order, stopping at the first failure that is not
    /// tolerated. `on_output` gets the index of the step with each line.
    pub fn run_steps(
        &mut self,
        steps: &[Step],
        on_output: &mut dyn FnMut(usize, Stream, &str),
    ) -> Result<Vec<StepOutcome>> {
        let mut outcomes = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            outcomes.push(self.run_step(step, &mut |stream, line| on_output(i, stream, line))?);
        }
        Ok(outcomes)
    }

    /// Runs a read-only command on the root fs as it is now; whatever it
    /// changes is thrown away with a scratch upper dir stacked on top (in
    /// copy mode without overlayfs the root is bound read-only instead).
    pub fn probe(&self, probe: &Probe) -> Result<ProbeOutput> {
        let label = probe.label();
        if self.poisoned || self.cancel.is_cancelled() {
            return Err(Error::Cancelled { during: format!("before {label}") });
        }
        validate(&label, &probe.argv, &probe.env, &probe.run_in, &probe.caches)?;
        for cache in &probe.caches {
            fs::create_dir_all(&cache.host_dir).map_err(|e| Error::Cache {
                step: label.clone(),
                path: cache.host_dir.clone(),
                reason: format!("cannot create it: {e}"),
            })?;
        }
        let scratch = match (&self.workspace, self.exec.overlay) {
            (Workspace::Copy { .. }, None) => None,
            _ => Some(
                tempfile::Builder::new()
                    .prefix("p-")
                    .tempdir_in(self.base())
                    .ctx(|| format!("creating a probe dir in {}", self.base().display()))?,
            ),
        };
        let (target, overlay) = if let Some(scratch) = &scratch {
            let name =
                scratch.path().file_name().expect("temp dirs have names").to_string_lossy().into_owned();
            for sub in ["u", "m"] {
                fs::create_dir(scratch.path().join(sub)).ctx(|| format!("creating {name}/{sub}"))?;
            }
            let top = self.reader().layers().last().cloned();
            copy::root_like(&scratch.path().join("u"), top.as_deref())?;
            let mut lower = self.lower_names();
            if let Workspace::Overlay { .. } = self.workspace {
                lower.insert(0, "u".to_owned());
            }
            let overlay =
                self.overlay_mount(&lower, &format!("{name}/u"), &format!("{name}/w"), &format!("{name}/m"))?;
            let target = TargetRoot {
                dir: scratch.path().join("m"),
                writable: true,
                view: self.reader(),
                changes: None,
                lowers: None,
            };
            (target, Some(overlay))
        } else {
            let Workspace::Copy { root, .. } = &self.workspace else { unreachable!("matched above") };
            let target = TargetRoot {
                dir: root.clone(),
                writable: false,
                view: self.reader(),
                changes: None,
                lowers: None,
            };
            (target, None)
        };
        let request = Request {
            label: &label,
            argv: &probe.argv,
            cwd: probe.cwd.as_deref(),
            env: &probe.env,
            network: probe.network,
            run_in: &probe.run_in,
            caches: &probe.caches,
        };
        let planned = self.plan(&request, &target)?;
        tracing::debug!(probe = %label, "running probe");
        let finished: Finished = sandbox::run(
            Launch {
                label: &label,
                bwrap: &self.exec.bwrap,
                args: planned.args,
                overlays: overlay.into_iter().collect(),
                timeout: probe.timeout,
                cancel: &self.cancel,
                stdout_limit: probe.stdout_limit,
                seccomp: &self.exec.seccomp,
                limiter: &self.exec.limiter,
            },
            &mut |stream, line| {
                if stream == Stream::Stderr {
                    tracing::trace!(probe = %label, "{line}");
                }
            },
        )
        .map_err(|e| run_error(&label, e))?;
        drop(scratch);
        if finished.cancelled {
            return Err(Error::Cancelled { during: label });
        }
        if let Some(hit) = finished.limit_hit {
            tracing::warn!(probe = %label, "{}", hit.describe());
        }
        Ok(ProbeOutput {
            exit_code: finished.exit_code,
            signal: finished.signal,
            stdout: finished.stdout,
            stdout_truncated: finished.stdout_truncated,
            stderr: finished.stderr_tail,
            timed_out: finished.timed_out,
            duration: finished.duration,
            limit_hit: finished.limit_hit,
        })
    }

    /// The steps' changes as one directory in overlayfs upper-dir form.
    /// Refused after a cancellation: nothing half-written comes out.
    pub fn finish(mut self) -> Result<Diff> {
        self.check_cancel(|| "before collecting the diff".to_owned())?;
        let mode = self.mode();
        let Session { dir, workspace, .. } = self;
        let path = match workspace {
            Workspace::Overlay { .. } => dir.path().join("u"),
            Workspace::Copy { root, snapshot } => {
                let started = Instant::now();
                let diff = dir.path().join("diff");
                fs::create_dir(&diff).ctx(|| format!("creating {}", diff.display()))?;
                copy::root_like(&diff, Some(&root))?;
                let changes = copy::diff(&root, &snapshot, &diff)?;
                drop(snapshot);
                fs::remove_dir_all(&root).ctx(|| format!("removing {}", root.display()))?;
                tracing::info!(changes, elapsed_ms = started.elapsed().as_millis(), "compared the copy");
                diff
            }
        };
        Ok(Diff { dir, path, mode })
    }

    /// The bwrap arguments for one run and the mount points it creates.
    fn plan(&self, req: &Request<'_>, target: &TargetRoot<'_>) -> Result<Planned> {
        let mut planned = Planned::default();
        let exec = self.exec;
        let label = req.label;
        let mut binds: Vec<OsString> = Vec::new();
        match req.run_in {
            RunIn::Target => {
                let root_flag = if target.writable { "--bind" } else { "--ro-bind" };
                planned.args.extend([os(root_flag), os(&target.dir), os("/")]);
                let mut basics = Vec::new();
                let mut tmp = String::new();
                for (flag, dest) in [("--proc", "/proc"), ("--dev", "/dev"), ("--tmpfs", "/tmp")] {
                    let dest = Self::target_dest(label, target, dest, &mut planned)?;
                    if flag == "--tmpfs" {
                        basics.extend([os("--perms"), os("1777")]);
                        tmp.clone_from(&dest);
                    }
                    if flag == "--proc" {
                        let proc_dest = dest.clone();
                        basics.extend([os(flag), os(dest)]);
                        basics.extend(self.proc_masks(&proc_dest)?);
                    } else {
                        basics.extend([os(flag), os(dest)]);
                    }
                }
                planned.args.extend(basics);
                // Name resolution and the host's CA only matter with the
                // host's network. Leaving them out of offline steps also lets
                // a package replace its bundle (ca-certificates renames a new
                // one over it, which a mount point refuses with EBUSY).
                let resolv = exec.resolv_conf.as_ref().filter(|_| req.network);
                if let Some(resolv) = resolv {
                    match resolv_dest(&target.view)? {
                        ResolvDest::Existing(dest) => {
                            binds.extend([os("--ro-bind"), os(resolv), os(dest)]);
                        }
                        ResolvDest::Missing if target.writable => {
                            let dest = Self::target_dest(label, target, "/etc/resolv.conf", &mut planned)?;
                            binds.extend([os("--ro-bind"), os(resolv), os(dest)]);
                        }
                        ResolvDest::Missing | ResolvDest::Unusable => {
                            tracing::debug!(
                                run = label,
                                "not mounting resolv.conf: the image has no place for it"
                            );
                        }
                    }
                }
                if let Some(bundle) = exec.ca_bundle.as_ref().filter(|_| req.network) {
                    for dest in ca_dests(&target.view, &exec.config.extra_ca_paths)? {
                        binds.extend([os("--ro-bind"), os(bundle), os(dest)]);
                    }
                }
                for cache in req.caches {
                    // Below /tmp the mount point is made in the sandbox's
                    // own tmpfs by bwrap, never in the root (which may be
                    // read-only, as a probe's is in copy mode).
                    let dest = match cache
                        .path
                        .strip_prefix("/tmp/")
                        .filter(|rest| !rest.split('/').any(|c| c == ".."))
                    {
                        Some(rest) if !rest.is_empty() => format!("{tmp}/{rest}"),
                        _ => Self::target_dest(label, target, &cache.path, &mut planned)?,
                    };
                    binds.extend([os(cache_flag(cache)), os(&cache.host_dir), os(dest)]);
                }
            }
            RunIn::Tooling { root, mount_point } => {
                let tooling = match root {
                    ToolingRoot::Host => PathBuf::from("/"),
                    ToolingRoot::Dir(dir) => dir.clone(),
                    ToolingRoot::Image(image) => return Err(unresolved(image)),
                };
                let tview = MergedReader::new(vec![tooling.clone()]);
                let host = matches!(root, ToolingRoot::Host);
                let skip = ["proc", "dev", "tmp"];
                let entries =
                    fs::read_dir(&tooling).ctx(|| format!("listing tooling root {}", tooling.display()))?;
                let mut names: Vec<OsString> = entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<_>>()
                    .ctx(|| format!("listing tooling root {}", tooling.display()))?;
                names.sort();
                for name in names {
                    if skip.iter().any(|s| OsStr::new(s) == name) || (host && !host_tooling_dir(&name)) {
                        continue;
                    }
                    let src = tooling.join(&name);
                    let dest = Path::new("/").join(&name);
                    let meta = fs::symlink_metadata(&src).ctx(|| format!("reading {}", src.display()))?;
                    if meta.file_type().is_symlink() {
                        let to = fs::read_link(&src).ctx(|| format!("reading {}", src.display()))?;
                        planned.args.extend([os("--symlink"), os(to), os(dest)]);
                    } else if meta.is_dir() || meta.is_file() {
                        planned.args.extend([os("--ro-bind"), os(src), os(dest)]);
                    }
                }
                planned.args.extend([
                    os("--proc"),
                    os("/proc"),
                    os("--dev"),
                    os("/dev"),
                    os("--perms"),
                    os("1777"),
                    os("--tmpfs"),
                    os("/tmp"),
                ]);
                planned.args.extend(self.proc_masks("/proc")?);
                if host {
                    planned.args.extend(self.host_secret_masks()?);
                }
                check_tooling_mount_point(label, &tview, host, mount_point, "the target")?;
                let flag = if target.writable { "--bind" } else { "--ro-bind" };
                planned.args.extend([os(flag), os(&target.dir), os(mount_point)]);
                if let Some(resolv) = exec.resolv_conf.as_ref().filter(|_| req.network)
                    && let ResolvDest::Existing(dest) = resolv_dest(&tview)?
                {
                    binds.extend([os("--ro-bind"), os(resolv), os(dest)]);
                }
                if let Some(bundle) = exec.ca_bundle.as_ref().filter(|_| req.network) {
                    for dest in ca_dests(&tview, &exec.config.extra_ca_paths)? {
                        binds.extend([os("--ro-bind"), os(bundle), os(dest)]);
                    }
                }
                let inside = format!("{}/", mount_point.trim_end_matches('/'));
                for cache in req.caches {
                    let dest = if let Some(rest) = cache.path.strip_prefix(&inside) {
                        let in_target = Self::target_dest(label, target, &format!("/{rest}"), &mut planned)?;
                        format!("{}{}", inside.trim_end_matches('/'), in_target)
                    } else {
                        check_tooling_mount_point(label, &tview, host, &cache.path, "a cache")?;
                        cache.path.clone()
                    };
                    binds.extend([os(cache_flag(cache)), os(&cache.host_dir), os(dest)]);
                }
            }
        }
        planned.args.extend(binds);
        planned.args.extend([
            os("--unshare-pid"),
            os("--unshare-ipc"),
            os("--unshare-uts"),
            os("--unshare-cgroup-try"),
        ]);
        if !req.network {
            planned.args.push(os("--unshare-net"));
        }
        // A session of its own: no controlling terminal to push input into
        // (TIOCSTI) or to open as /dev/tty.
        planned.args.extend([os("--new-session"), os("--die-with-parent"), os("--clearenv")]);
        planned.args.extend(privileges::bwrap_args());
        let mut env: Vec<(&str, &str)> = vec![("PATH", exec.config.path_env.as_str()), ("HOME", "/root")];
        env.extend(exec.config.proxy_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (name, value) in env {
            planned.args.extend([os("--setenv"), os(name), os(value)]);
        }
        planned.args.extend([os("--chdir"), os(req.cwd.unwrap_or("/")), os("--")]);
        planned.args.extend(req.argv.iter().map(os));
        Ok(planned)
    }

    /// An empty file in the session dir, bound over files a step must not
    /// read.
    fn empty_file(&self) -> Result<PathBuf> {
        let empty = self.base().join("empty");
        if !empty.exists() {
            File::create(&empty).ctx(|| format!("creating {}", empty.display()))?;
        }
        Ok(empty)
    }

    /// bwrap arguments that make the kernel's knobs under the sandbox's
    /// `/proc` (mounted at `dest`) read-only and hide what Docker masks.
    /// As uid 0 a step could otherwise write `/proc/sys/kernel/core_pattern`
    /// or `modprobe`, and the host would run a program of the image's as
    /// root; bubblewrap 0.8 leaves them writable for root. The host's own
    /// entries are bound: the same kernel settings, with the per-network
    /// ones still looked up in the reader's namespace.
    fn proc_masks(&self, dest: &str) -> Result<Vec<OsString>> {
        let dest = dest.trim_end_matches('/');
        let mut args = Vec::new();
        for name in PROC_READ_ONLY {
            let host = Path::new("/proc").join(name);
            if host.exists() {
                args.extend([os("--ro-bind"), os(&host), os(format!("{dest}/{name}"))]);
            }
        }
        for name in PROC_MASKED {
            if Path::new("/proc").join(name).is_file() {
                args.extend([os("--ro-bind"), os(self.empty_file()?), os(format!("{dest}/{name}"))]);
            }
        }
        Ok(args)
    }

    /// bwrap arguments hiding [`HOST_SECRET_DIRS`] and [`HOST_SECRET_FILES`]
    /// where the host has them (as real directories and files: a symlink
    /// would be followed by bwrap to somewhere else).
    fn host_secret_masks(&self) -> Result<Vec<OsString>> {
        let mut args = Vec::new();
        let is = |path: &str, dir: bool| {
            fs::symlink_metadata(path).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
        };
        for dir in HOST_SECRET_DIRS.iter().filter(|d| is(d, true)) {
            args.extend([os("--tmpfs"), os(dir)]);
        }
        for file in HOST_SECRET_FILES.iter().filter(|f| is(f, false)) {
            args.extend([os("--ro-bind"), os(self.empty_file()?), os(file)]);
        }
        Ok(args)
    }

    /// Resolves `dest` (absolute, in the target) for bwrap and records what
    /// bwrap will create for it, to be removed after the run.
    fn target_dest(
        label: &str,
        target: &TargetRoot<'_>,
        dest: &str,
        planned: &mut Planned,
    ) -> Result<String> {
        let mount_err =
            |reason: String| Error::MountPoint { step: label.to_owned(), path: dest.to_owned(), reason };
        let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if !dest.starts_with('/') || comps.is_empty() || comps.contains(&"..") {
            return Err(mount_err("must be an absolute path below / without `..`".to_owned()));
        }
        let mut prefix = String::from("/");
        for (i, comp) in comps.iter().enumerate() {
            let candidate = if prefix == "/" { format!("/{comp}") } else { format!("{prefix}/{comp}") };
            match target.view.canonicalize(&candidate)? {
                Some(info) if info.kind == EntryKind::Dir => prefix = info.path,
                Some(info) if i + 1 == comps.len() => return Ok(info.path),
                Some(info) => return Err(mount_err(format!("{} is not a directory", info.path))),
                None => {
                    if target.view.stat(&candidate)?.is_some() {
                        return Err(mount_err(format!("{candidate} is a dangling symlink")));
                    }
                    if !target.writable {
                        return Err(mount_err("does not exist and the root is read-only here".to_owned()));
                    }
                    let mut path = prefix.clone();
                    for missing in &comps[i..] {
                        if !path.ends_with('/') {
                            path.push('/');
                        }
                        path.push_str(missing);
                        let rel = rel_of(&path);
                        let upper_whiteout = target.changes.is_some_and(|c| {
                            fs::symlink_metadata(c.join(&rel)).is_ok_and(|m| is_whiteout(&m))
                        });
                        planned.created.push(Created { rel, upper_whiteout });
                    }
                    if let (Some(changes), Some(_)) = (target.changes, &target.lowers) {
                        let mut chain = Vec::new();
                        let mut dir = rel_of(&prefix);
                        while !dir.as_os_str().is_empty() {
                            let held = fs::symlink_metadata(changes.join(&dir)).is_ok();
                            chain.push((dir.clone(), held));
                            dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                        }
                        planned.copied_up.push(CopiedUp { chain });
                    }
                    return Ok(path);
                }
            }
        }
        Ok(prefix)
    }
}

/// Removes the mount points bwrap created in the target (restoring a
/// whiteout the upper dir held there) and, in overlay mode, parents that
/// were copied up only to hold them.
fn clean_mount_points(planned: &Planned, target: &TargetRoot<'_>) -> Result<()> {
    let Some(changes) = target.changes else { return Ok(()) };
    let mut created = planned.created.clone();
    created.sort_by_key(|c| std::cmp::Reverse(c.rel.components().count()));
    let mut seen = BTreeSet::new();
    for c in created {
        if !seen.insert(c.rel.clone()) {
            continue;
        }
        let path = changes.join(&c.rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = fs::remove_dir(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a mount point dir");
                    continue;
                }
            }
            Ok(_) => fs::remove_file(&path).ctx(|| format!("removing mount point {}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        if c.upper_whiteout {
            rustix::fs::mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                FsMode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| Error::io(format!("restoring whiteout {}", path.display()), e))?;
        }
    }
    let Some(lowers) = &target.lowers else { return Ok(()) };
    for copied in &planned.copied_up {
        for (rel, held_before) in &copied.chain {
            if *held_before {
                break;
            }
            let path = changes.join(rel);
            let Ok(meta) = fs::symlink_metadata(&path) else { break };
            if !meta.is_dir() || !copy::is_empty_dir(&path) || is_opaque(&path)? {
                break;
            }
            let lower = lowers.stat(&format!("/{}", rel.to_string_lossy()))?;
            let same = lower.is_some_and(|l| {
                l.kind == EntryKind::Dir
                    && l.mode == meta.mode() & 0o7777
                    && l.uid == meta.uid()
                    && l.gid == meta.gid()
            });
            if !same {
                break;
            }
            fs::remove_dir(&path).ctx(|| format!("removing copied-up {}", path.display()))?;
        }
    }
    Ok(())
}

enum ResolvDest {
    Existing(String),
    Missing,
    Unusable,
}

/// Where the host's resolv.conf goes: over the image's (through symlinks
/// inside the root), or at `/etc/resolv.conf` when the image has none.
fn resolv_dest(view: &MergedReader) -> Result<ResolvDest> {
    const PATH: &str = "/etc/resolv.conf";
    match view.canonicalize(PATH)? {
        Some(info) if info.kind == EntryKind::File => Ok(ResolvDest::Existing(info.path)),
        Some(_) => Ok(ResolvDest::Unusable),
        None if view.stat(PATH)?.is_some() => Ok(ResolvDest::Unusable),
        None => Ok(ResolvDest::Missing),
    }
}

/// The image's CA bundle files (symlinks resolved, each once).
fn ca_dests(view: &MergedReader, extra: &[String]) -> Result<Vec<String>> {
    let mut dests = BTreeSet::new();
    for path in CA_BUNDLE_PATHS.iter().copied().chain(extra.iter().map(String::as_str)) {
        match view.canonicalize(path) {
            Ok(Some(info)) if info.kind == EntryKind::File => {
                dests.insert(info.path);
            }
            Ok(_) | Err(Error::Path { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(dests.into_iter().collect())
}

/// Entries of `/proc` bound read-only, as Docker has them.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// Entries of `/proc` Docker masks: kernel memory, keys, scheduler and
/// timer internals.
const PROC_MASKED: &[&str] = &["kcore", "keys", "timer_list", "sched_debug"];

/// The host's top-level directories a step with the host as its tooling
/// root sees (read-only): the programs and libraries and their
/// configuration. Not `/run`, `/var`, `/home`, `/root` and the rest: host
/// sockets there (a container engine's, systemd's) would let a step out of
/// the sandbox, and users' files are none of its business.
const HOST_TOOLING_DIRS: &[&str] = &["bin", "etc", "lib", "lib32", "lib64", "libx32", "opt", "sbin", "usr"];

fn host_tooling_dir(name: &OsStr) -> bool {
    HOST_TOOLING_DIRS.iter().any(|d| OsStr::new(d) == name)
}

/// Host secrets under `/etc` hidden from steps run with the host's tools:
/// directories get an empty tmpfs, files an empty file.
const HOST_SECRET_DIRS: &[&str] =
    &["/etc/ssh", "/etc/ssl/private", "/etc/credstore", "/etc/credstore.encrypted"];
const HOST_SECRET_FILES: &[&str] = &["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"];

/// A mount point in a read-only tooling root must exist as a directory,
/// or hang off a top-level name the root lacks (then bwrap creates it in
/// its own tmpfs root).
fn check_tooling_mount_point(
    label: &str,
    tview: &MergedReader,
    host: bool,
    path: &str,
    what: &str,
) -> Result<()> {
    let err = |reason: String| Error::MountPoint { step: label.to_owned(), path: path.to_owned(), reason };
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if !path.starts_with('/') || comps.is_empty() || comps.contains(&"..") {
        return Err(err(format!("{what} needs an absolute path below / without `..`")));
    }
    if ["proc", "dev", "tmp"].contains(&comps[0]) && comps[0] != "tmp" {
        return Err(err(format!("{what} cannot go under /{}", comps[0])));
    }
    let unbound = host && !host_tooling_dir(OsStr::new(comps[0]));
    if comps[0] == "tmp" || unbound || tview.stat(&format!("/{}", comps[0]))?.is_none() {
        return Ok(());
    }
    match tview.canonicalize(path)? {
        Some(info) if info.kind == EntryKind::Dir => Ok(()),
        _ => Err(err(format!(
            "{what} must go at an existing directory of the read-only tooling root, or under a top-level \
             name it lacks (such as /target)"
        ))),
    }
}

/// A tooling image reaches the executor only unpacked, as a directory.
fn unresolved(image: &str) -> Error {
    Error::ToolingImage {
        image: image.to_owned(),
        reason: "the engine must unpack it and pass its directory (ToolingRoot::Dir)".to_owned(),
    }
}

fn run_error(label: &str, e: RunError) -> Error {
    match e {
        RunError::Spawn(source) => Error::Spawn { step: label.to_owned(), source },
        RunError::Limits(source) => Error::Limits { step: label.to_owned(), source },
        RunError::Supervise(what, source) => {
            Error::Supervise { step: label.to_owned(), what: what.to_owned(), source }
        }
    }
}

/// bubblewrap's bind option for `cache`.
fn cache_flag(cache: &CacheMount) -> &'static str {
    if cache.read_only { "--ro-bind" } else { "--bind" }
}

fn validate(
    label: &str,
    argv: &[String],
    env: &[(String, String)],
    run_in: &RunIn,
    caches: &[CacheMount],
) -> Result<()> {
    let invalid = |reason: String| Error::InvalidStep { step: label.to_owned(), reason };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(invalid("argv is empty".to_owned()));
    }
    if let Some(arg) = argv.iter().find(|a| a.contains('\0')) {
        return Err(invalid(format!("argument {arg:?} contains NUL")));
    }
    for (name, value) in env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(invalid(format!("environment variable name {name:?} is not valid")));
        }
        if value.contains('\0') {
            return Err(invalid(format!("environment variable {name} contains NUL")));
        }
    }
    if let RunIn::Tooling { root, mount_point } = run_in {
        if !mount_point.starts_with('/') || mount_point.trim_matches('/').is_empty() {
            return Err(invalid(format!(
                "tooling mount point {mount_point:?} must be an absolute path below /"
            )));
        }
        if let ToolingRoot::Dir(dir) = root
            && !dir.is_dir()
        {
            return Err(invalid(format!("tooling root {} is not a directory", dir.display())));
        }
        if let ToolingRoot::Image(image) = root {
            return Err(unresolved(image));
        }
    }
    for cache in caches {
        if !cache.path.starts_with('/') {
            return Err(invalid(format!("cache path {:?} must be absolute", cache.path)));
        }
        // bwrap runs in another directory, so a relative host dir would
        // name a different place there than where it was created.
        if !cache.host_dir.is_absolute() {
            return Err(invalid(format!("cache dir {} must be an absolute path", cache.host_dir.display())));
        }
    }
    Ok(())
}
