//! The `local` executor of caulk: runs a plan's steps on top of an image
//! platform's root fs, each in a bubblewrap sandbox, and returns ONE diff.
//!
//! # Contract with the image crate
//!
//! Input: the platform's layers as directories, **bottom first**, each the
//! layer's tar extracted on its own (whiteouts NOT applied across layers) in
//! overlayfs lower-dir form, as `caulk_image::layer::LayerCache` unpacks them
//! with `WhiteoutFormat::OverlayTrusted`:
//! - `.wh.NAME` → a 0/0 character device `NAME`;
//! - `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory;
//! - owners, modes, xattrs and times as in the tar.
//!
//! The executor only reads these directories; they may be shared by
//! concurrent sessions.
//!
//! Output: a [`Diff`], one directory in overlayfs upper-dir form, whichever
//! mode made it: new and changed entries as they are, deleted ones as 0/0
//! character devices, directories that replace the image's (deleted and made
//! again) with `trusted.overlay.opaque=y`. It may carry other
//! `trusted.overlay.*` xattrs (`origin`, `impure`) that the layer writer
//! drops; overlayfs is mounted with `redirect_dir=off,metacopy=off,index=off`
//! so no `redirect`/`metacopy` xattrs appear. The plan's dropped paths are
//! the layer writer's job (`LayerSource::OverlayUpper` plus `exclude`).
//!
//! # How a step runs
//!
//! - overlay mode: a child process enters a private mount namespace
//!   (`unshare(CLONE_NEWNS)`, `/` made rprivate), mounts overlayfs (the layer
//!   dirs as lower dirs through short relative symlinks, so even hundreds of
//!   layers fit in the 4096-byte mount data, the session's upper dir, a fresh
//!   work dir) and execs bubblewrap with the merged dir as `/`. The mount
//!   exists only in that namespace: when the step ends, or caulk dies and
//!   `--die-with-parent` takes bwrap with it, the kernel drops it.
//! - copy mode: the layers are merged once into one directory (reflinked
//!   where the file system can, else copied in the kernel), the steps run
//!   on it with `--bind`, and at the end it is compared with the inode
//!   numbers and ctimes recorded after the copy (see `copy.rs` for why).
//! - bubblewrap: `--proc /proc --dev /dev --perms 1777 --tmpfs /tmp
//!   --unshare-pid --unshare-ipc --unshare-uts --die-with-parent --clearenv`,
//!   `--unshare-net` unless the step asks for network; environment `PATH`,
//!   `HOME=/root`, the host's proxy variables, then the step's; for steps
//!   (and probes) with network, the host's resolv.conf and CA bundle bound
//!   read-only over the image's (the bundle only over bundle files the image
//!   has). Mount points bwrap had to create in the image are removed after
//!   each step, so none reaches the diff.
//! - confinement (see `docs/sandbox.md`): Docker's default capabilities
//!   without `CAP_MKNOD` and `CAP_NET_RAW` (effective, permitted and
//!   bounding), a seccomp filter with the intent of Docker's profile
//!   (`seccomp.rs`), no-new-privileges, `--new-session`,
//!   `--unshare-cgroup-try`, and a cgroup per step with memory and pids
//!   limits ([`StepLimits`], `limits.rs`). With the host as tooling root
//!   only its program and configuration directories are bound, with its
//!   shadow files and private keys hidden.
//!
//! A bundle mounted read-only cannot be replaced: `update-ca-certificates`
//! (the ca-certificates package's postinst) fails with EBUSY when it renames
//! its new bundle over the mount point. Offline steps get the image's own
//! bundle, writable, so a plan that upgrades ca-certificates downloads with
//! network (`apt-get --download-only`) and installs in an offline step.
//!
//! Needs root (overlayfs, file ownership) and `bwrap` (0.8 has no overlay
//! options; the overlay is made by caulk). [`LocalExecutor::new`] refuses
//! clearly otherwise.

mod cache_lock;
mod cancel;
mod copy;
mod error;
mod executor;
mod limits;
mod memory;
mod merged;
mod privileges;
mod sandbox;
mod seccomp;
mod session;
mod step;

pub use cancel::CancelToken;
pub use error::{Error, Result};
pub use executor::{
    CA_BUNDLE_PATHS, DEFAULT_CA_BUNDLE, DEFAULT_PATH, ExecutorConfig, LocalExecutor, MAX_LAYERS, Mode,
    PROXY_VARIABLES,
};
pub use limits::{LimitHit, StepLimits};
pub use memory::MemoryFolder;
pub use merged::{EntryKind, FileInfo, MAX_READ, MergedReader};
pub use privileges::{kept_mask as kept_capabilities_mask, kept_names as kept_capabilities};
pub use seccomp::FilterError;
pub use session::{Diff, Session};

/// Merges `lowers` (layer dirs in overlayfs lower-dir form, bottom first)
/// into the empty directory `dest` as one plain root fs: whiteouts and
/// opaque directories applied, files reflinked where the file system can,
/// else copied. How a tooling image becomes a root to run tools from.
pub fn flatten(lowers: &[std::path::PathBuf], dest: &std::path::Path, cancel: &CancelToken) -> Result<()> {
    copy::merge_copy(&MergedReader::new(lowers.to_vec()), dest, cancel).map(drop)
}
pub use step::{
    CacheMount, PROBE_STDOUT_LIMIT, Probe, ProbeOutput, RunIn, STDERR_TAIL, Step, StepOutcome, Stream,
    ToolingRoot, mark_pins,
};
