//! The local executor: host checks (root, bubblewrap, overlayfs), the
//! working folder, and preparing a session over an image's layer dirs.

use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cancel::CancelToken;
use crate::copy;
use crate::error::{Error, IoContext, Result};
use crate::limits::{Limiter, StepLimits};
use crate::merged::MergedReader;
use crate::sandbox::{self, MAX_MOUNT_DATA, OverlayMount};
use crate::seccomp;
use crate::session::{self, Session, SessionDir, Workspace};

/// The host's CA bundle on Debian and its derivatives.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where images keep their CA bundle; the host's bundle is mounted over
/// each of these that is a regular file in the image. The SDK's list, so
/// plugins that point tools at a bundle name the same paths.
pub use caulk_sdk::CA_BUNDLE_PATHS;
/// Proxy settings passed from the host into every step.
pub const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];
/// `PATH` inside the sandbox unless a step sets its own.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// overlayfs stacks at most this many lower dirs.
pub const MAX_LAYERS: usize = 500;
const SESSION_PREFIX: &str = "caulk-exec-";

/// How steps get a writable root fs.
///
/// Measured on this kind of host (2 cores, ext4, a 180 MB Debian 12 root fs,
/// `benches/apt_upgrade.rs`): copy mode's dpkg step is faster (0.5–0.8× the
/// time of overlay's for an 11-package upgrade, overlayfs slowing dpkg's
/// syncs; equal for 2 packages), but merging the layers costs 0.7–10 s of
/// I/O depending on what else the disk does, and comparing afterwards
/// 0.3–3 s, so overlay mode was faster end to end in every run (1.0–4.6×).
/// Auto therefore prefers overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Overlay where it works (the host has overlayfs and it accepts the
    /// layer dirs), else copy, with a warning.
    #[default]
    Auto,
    /// overlayfs over the layer dirs; the upper dir is the diff.
    Overlay,
    /// The layers merged into one directory, compared afterwards.
    Copy,
}

/// Settings of the local executor. [`ExecutorConfig::new`] fills in the
/// host's defaults.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Where sessions keep their dirs (`--working-folder`). Must be on a
    /// file system that can hold an overlayfs upper dir (ext4, xfs, btrfs,
    /// tmpfs).
    pub working_folder: PathBuf,
    pub mode: Mode,
    /// bubblewrap to use; `None` looks for `bwrap` in `search_path`.
    pub bwrap: Option<PathBuf>,
    /// Where to look for `bwrap`; `None` means the host's `PATH`.
    pub search_path: Option<OsString>,
    /// The CA bundle mounted into steps (`--ca-bundle`); `None` means the
    /// host's [`DEFAULT_CA_BUNDLE`] when it exists.
    pub ca_bundle: Option<PathBuf>,
    /// In-image paths to mount the CA bundle over besides
    /// [`CA_BUNDLE_PATHS`] (a certifi `cacert.pem`), when they are regular
    /// files in the image.
    pub extra_ca_paths: Vec<String>,
    /// The host's resolver configuration, mounted at `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Passed into every step (the host's proxy variables by default).
    pub proxy_env: Vec<(String, String)>,
    /// `PATH` inside the sandbox.
    pub path_env: String,
    /// Use overlayfs when the host has it. `false` makes the executor act
    /// as on a host without overlayfs (copy mode, read-only probes).
    pub use_overlay: bool,
    /// Memory and process limits of every step and probe.
    pub limits: StepLimits,
}

impl ExecutorConfig {
    pub fn new(working_folder: impl Into<PathBuf>) -> Self {
        let proxy_env = PROXY_VARIABLES
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
            .collect();
        ExecutorConfig {
            working_folder: working_folder.into(),
            mode: Mode::Auto,
            bwrap: None,
            search_path: None,
            ca_bundle: None,
            extra_ca_paths: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            proxy_env,
            path_env: DEFAULT_PATH.to_owned(),
            use_overlay: true,
            limits: StepLimits::default(),
        }
    }
}

/// What overlayfs accepts on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverlaySupport {
    /// `volatile` (Linux 5.10+): no syncs to the upper dir, which is thrown
    /// away on failure anyway.
    pub volatile: bool,
}

/// Runs plan steps on an image's root fs with bubblewrap, on this host.
#[derive(Debug)]
pub struct LocalExecutor {
    pub(crate) config: ExecutorConfig,
    pub(crate) bwrap: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) overlay: Option<OverlaySupport>,
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) resolv_conf: Option<PathBuf>,
    /// The seccomp program every sandbox gets.
    pub(crate) seccomp: Vec<u8>,
    pub(crate) limiter: Limiter,
}

impl LocalExecutor {
    /// Checks the host and settles the mode. Refuses when not root or when
    /// bubblewrap is missing; without overlayfs, [`Mode::Auto`] falls back
    /// to copy mode with a warning and [`Mode::Overlay`] is refused.
    pub fn new(config: ExecutorConfig) -> Result<Self> {
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(Error::NotRoot { euid: euid.as_raw() });
        }
        let bwrap = find_bwrap(config.bwrap.as_deref(), config.search_path.as_ref())?;
        check_bwrap(&bwrap)?;
        let seccomp = seccomp::program()?;
        let limiter = Limiter::new(config.limits);

        let folder = &config.working_folder;
        fs::create_dir_all(folder).map_err(|e| Error::WorkingFolder {
            path: folder.clone(),
            reason: format!("cannot create it: {e}"),
        })?;
        let folder = fs::canonicalize(folder)
            .map_err(|e| Error::WorkingFolder { path: folder.clone(), reason: e.to_string() })?;
        sweep_stale_sessions(&folder);

        let ca_bundle = match &config.ca_bundle {
            Some(path) => Some(check_ca_bundle(path)?),
            None if Path::new(DEFAULT_CA_BUNDLE).is_file() => Some(PathBuf::from(DEFAULT_CA_BUNDLE)),
            None => {
                tracing::warn!(
                    "the host has no CA bundle at {DEFAULT_CA_BUNDLE}; steps use the image's own \
                     (name one with --ca-bundle)"
                );
                None
            }
        };
        let resolv_conf = match fs::canonicalize(&config.resolv_conf) {
            Ok(p) if p.is_file() => Some(p),
            _ => {
                tracing::warn!(
                    path = %config.resolv_conf.display(),
                    "no resolver configuration on the host; steps use the image's own"
                );
                None
            }
        };

        let support = if config.use_overlay {
            probe_overlay(&bwrap, &folder)
        } else {
            Err("turned off in the configuration".to_owned())
        };
        let overlay = match support {
            Ok(support) => Some(support),
            Err(reason) => {
                if config.mode == Mode::Overlay {
                    return Err(Error::OverlayUnavailable { reason });
                }
                if config.mode == Mode::Auto {
                    tracing::warn!(%reason, "overlayfs is not usable here; using copy mode (slower on big images)");
                }
                None
            }
        };
        let mode = match (config.mode, overlay) {
            (Mode::Copy, _) | (Mode::Auto, None) => Mode::Copy,
            _ => Mode::Overlay,
        };
        tracing::debug!(bwrap = %bwrap.display(), ?mode, ?overlay, limits = ?limiter, "local executor ready");
        let config = ExecutorConfig { working_folder: folder, ..config };
        Ok(LocalExecutor { config, bwrap, mode, overlay, ca_bundle, resolv_conf, seccomp, limiter })
    }

    /// The mode sessions of this executor use ([`Mode::Overlay`] or
    /// [`Mode::Copy`]).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// Like [`prepare`](Self::prepare), with `top` (an earlier diff in
    /// overlayfs upper-dir form, such as a previous caulk layer unpacked by
    /// the image crate) as the start of this session's changes: the steps see
    /// the layers with `top` applied, and the diff that comes out holds
    /// `top`'s changes and theirs together, ready to replace `top`. Needs
    /// overlay mode.
    pub fn prepare_on(
        &self,
        layers: &[PathBuf],
        top: Option<&Path>,
        cancel: CancelToken,
    ) -> Result<Session<'_>> {
        self.prepare_on_in(&self.config.working_folder, layers, top, cancel)
    }

    /// [`LocalExecutor::prepare_on`] with the session dir in `folder`
    /// instead of the working folder: a [`crate::MemoryFolder`] chosen for
    /// this image.
    pub fn prepare_on_in(
        &self,
        folder: &Path,
        layers: &[PathBuf],
        top: Option<&Path>,
        cancel: CancelToken,
    ) -> Result<Session<'_>> {
        let mut session = self.prepare_in(folder, layers, cancel)?;
        if let Some(top) = top {
            session.seed_changes(top)?;
        }
        Ok(session)
    }

    /// A session over an image platform's root fs: `layers` are the layer
    /// dirs bottom first, in overlayfs lower-dir form (see the crate docs).
    /// In copy mode this merges them into the working folder first.
    pub fn prepare(&self, layers: &[PathBuf], cancel: CancelToken) -> Result<Session<'_>> {
        self.prepare_in(&self.config.working_folder, layers, cancel)
    }

    fn prepare_in(&self, folder: &Path, layers: &[PathBuf], cancel: CancelToken) -> Result<Session<'_>> {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled { during: "preparing the root fs".to_owned() });
        }
        let mut mode = self.mode;
        if mode == Mode::Overlay && layers.len() > MAX_LAYERS {
            if self.config.mode == Mode::Overlay {
                return Err(Error::TooManyLayers { count: layers.len(), max: MAX_LAYERS });
            }
            tracing::warn!(layers = layers.len(), "more layers than overlayfs stacks; using copy mode");
            mode = Mode::Copy;
        }
        let mut lowers = Vec::with_capacity(layers.len());
        for layer in layers {
            let path = fs::canonicalize(layer)
                .map_err(|e| Error::LayerDir { path: layer.clone(), reason: e.to_string() })?;
            if !path.is_dir() {
                return Err(Error::LayerDir { path: layer.clone(), reason: "not a directory".to_owned() });
            }
            lowers.push(path);
        }
        // Copy mode copies the whole root fs: that belongs in the working
        // folder on disk, never in a memory folder sized for the changes.
        let copy_folder = &self.config.working_folder;
        if mode == Mode::Copy {
            let dir = SessionDir::create(copy_folder)?;
            let workspace = copy_workspace(dir.path(), &lowers, &cancel)?;
            return Ok(Session::new(self, dir, workspace, cancel));
        }
        let dir = SessionDir::create(folder)?;
        match self.overlay_workspace(dir.path(), &lowers) {
            Ok(workspace) => Ok(Session::new(self, dir, workspace, cancel)),
            Err(reason) if self.config.mode == Mode::Auto => {
                // The layer dirs may sit where overlayfs cannot use them
                // (a lower dir on overlayfs itself, inside a container).
                tracing::warn!(%reason, "overlayfs refused these layer dirs; using copy mode");
                drop(dir);
                let dir = SessionDir::create(copy_folder)?;
                let workspace = copy_workspace(dir.path(), &lowers, &cancel)?;
                Ok(Session::new(self, dir, workspace, cancel))
            }
            Err(reason) => Err(Error::OverlayUnavailable { reason }),
        }
    }

    /// Links to the lower dirs, the upper dir and the mount point, checked
    /// with a trial mount (as a step makes it) so that a refusal shows now
    /// and not in the middle of a plan.
    fn overlay_workspace(&self, base: &Path, lowers: &[PathBuf]) -> std::result::Result<Workspace, String> {
        let io = |e: Error| e.to_string();
        let links = base.join("l");
        fs::create_dir(&links).ctx(|| format!("creating {}", links.display())).map_err(io)?;
        for (i, lower) in lowers.iter().enumerate() {
            let link = links.join(i.to_string());
            std::os::unix::fs::symlink(lower, &link)
                .ctx(|| format!("creating {}", link.display()))
                .map_err(io)?;
        }
        if lowers.is_empty() {
            // overlayfs needs one lower dir.
            fs::create_dir(links.join("empty")).ctx(|| "creating an empty lower dir").map_err(io)?;
        }
        for sub in ["u", "m"] {
            fs::create_dir(base.join(sub))
                .ctx(|| format!("creating {}/{sub}", base.display()))
                .map_err(io)?;
        }
        copy::root_like(&base.join("u"), lowers.last().map(PathBuf::as_path)).map_err(io)?;
        let volatile = self.overlay.is_some_and(|o| o.volatile);
        let spec = session::overlay_spec(base, &session::lower_names(lowers.len()), "u", "w", "m", volatile)
            .map_err(io)?;
        sandbox::probe_mount(&self.bwrap, spec)
            .map_err(|e| format!("mounting overlayfs over the layers failed: {e}"))?;
        Ok(Workspace::Overlay { lowers: lowers.to_vec() })
    }
}

/// The layers merged into `base/root`, and what it looked like after.
fn copy_workspace(base: &Path, lowers: &[PathBuf], cancel: &CancelToken) -> Result<Workspace> {
    let root = base.join("root");
    fs::create_dir(&root).ctx(|| format!("creating {}", root.display()))?;
    let started = std::time::Instant::now();
    let snapshot = if lowers.is_empty() {
        copy::empty_snapshot(&root)?
    } else {
        copy::merge_copy(&MergedReader::new(lowers.to_vec()), &root, cancel)?
    };
    tracing::info!(
        layers = lowers.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "copied the root fs for copy mode"
    );
    // A change made in the same clock tick as the snapshot would keep its
    // ctime on kernels without fine-grained timestamps.
    std::thread::sleep(Duration::from_millis(10));
    Ok(Workspace::Copy { root, snapshot })
}

fn find_bwrap(explicit: Option<&Path>, search_path: Option<&OsString>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return match fs::metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path.to_owned()),
            Ok(_) => Err(Error::BwrapUnusable {
                path: path.to_owned(),
                reason: "not an executable file".to_owned(),
            }),
            Err(e) => Err(Error::BwrapMissing { searched: format!("{}: {e}", path.display()) }),
        };
    }
    let host_path = std::env::var_os("PATH");
    let search = search_path.or(host_path.as_ref()).cloned().unwrap_or_default();
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join("bwrap");
        if fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Ok(candidate);
        }
    }
    Err(Error::BwrapMissing { searched: format!("searched PATH={}", search.to_string_lossy()) })
}

fn check_bwrap(bwrap: &Path) -> Result<()> {
    let output = Command::new(bwrap)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(|e| Error::BwrapUnusable { path: bwrap.to_owned(), reason: e.to_string() })?;
    if !output.status.success() {
        return Err(Error::BwrapUnusable {
            path: bwrap.to_owned(),
            reason: format!(
                "`bwrap --version` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    tracing::debug!(version = %String::from_utf8_lossy(&output.stdout).trim(), "found bubblewrap");
    Ok(())
}

fn check_ca_bundle(path: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(path)
        .map_err(|e| Error::CaBundle { path: path.to_owned(), reason: format!("cannot read it: {e}") })?;
    if !meta.is_file() {
        return Err(Error::CaBundle { path: path.to_owned(), reason: "not a regular file".to_owned() });
    }
    File::open(path)
        .map_err(|e| Error::CaBundle { path: path.to_owned(), reason: format!("cannot open it: {e}") })?;
    fs::canonicalize(path).map_err(|e| Error::CaBundle { path: path.to_owned(), reason: e.to_string() })
}

/// Mounts a tiny overlay the way steps do (in a child's own mount
/// namespace) and reports what this host's overlayfs accepts.
fn probe_overlay(bwrap: &Path, folder: &Path) -> std::result::Result<OverlaySupport, String> {
    let dir = tempfile::Builder::new()
        .prefix(".caulk-overlay-probe-")
        .tempdir_in(folder)
        .map_err(|e| format!("cannot create a probe dir in {}: {e}", folder.display()))?;
    for sub in ["l", "u", "m"] {
        fs::create_dir(dir.path().join(sub)).map_err(|e| e.to_string())?;
    }
    let attempt = |volatile: bool| -> std::result::Result<(), String> {
        let work = dir.path().join("w");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir(&work).map_err(|e| e.to_string())?;
        let data = sandbox::overlay_data(&["l".to_owned()], "u", "w", volatile);
        let mount = OverlayMount {
            base: CString::new(dir.path().as_os_str().as_bytes()).map_err(|e| e.to_string())?,
            target: c"m".to_owned(),
            data: CString::new(data).map_err(|e| e.to_string())?,
        };
        sandbox::probe_mount(bwrap, mount).map_err(|e| format!("mounting overlayfs failed: {e}"))
    };
    match attempt(true) {
        Ok(()) => Ok(OverlaySupport { volatile: true }),
        Err(first) => match attempt(false) {
            Ok(()) => Ok(OverlaySupport { volatile: false }),
            Err(_) => Err(first),
        },
    }
}

/// Removes session dirs that no live process holds (left by a crash or a
/// SIGKILL; the mounts went with their namespaces, the files stay).
fn sweep_stale_sessions(folder: &Path) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(SESSION_PREFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        if SessionDir::is_stale(&path) {
            tracing::info!(path = %path.display(), "removing a session dir left by an earlier run");
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a stale session dir");
            }
        }
    }
}

pub(crate) fn session_prefix() -> &'static str {
    SESSION_PREFIX
}

/// The overlay mount data for `lower` (top first) fits the kernel's page.
pub(crate) fn check_mount_data(data: &str) -> Result<()> {
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::TooManyLayers { count: data.matches(':').count() + 1, max: MAX_LAYERS });
    }
    Ok(())
}
