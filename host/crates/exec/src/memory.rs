//! A working folder in memory: a tmpfs caulk mounts with a size limit, for
//! sessions whose changes fit comfortably in RAM. dpkg writes and syncs
//! every file it unpacks; on an upper dir in memory the same install step
//! takes about half the time it takes on ext4.
//!
//! The mount lives in the host's mount namespace (the session dirs must
//! outlive each step's private namespace), so it is unmounted on drop, and
//! one left by a killed run is unmounted by the next: a lock file inside it
//! is held for the folder's life, as session dirs do.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::{Error, IoContext as _, Result};

const PREFIX: &str = "caulk-mem-";
const LOCK: &str = ".caulk-lock";

/// A tmpfs of a fixed size mounted on a fresh directory; unmounted and
/// removed on drop.
#[derive(Debug)]
pub struct MemoryFolder {
    path: PathBuf,
    size: u64,
    lock: Option<File>,
}

impl MemoryFolder {
    /// Mounts a tmpfs of `size` bytes on a new directory in `parent`, after
    /// unmounting those earlier runs left there.
    pub fn mount(parent: &Path, size: u64) -> Result<Self> {
        sweep_stale(parent);
        let fail = |path: &Path, reason: String| Error::WorkingFolder { path: path.to_owned(), reason };
        let path = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(parent)
            .map_err(|e| fail(parent, format!("cannot create a directory for a tmpfs: {e}")))?
            .keep();
        let data = std::ffi::CString::new(format!("size={size},mode=0700")).expect("no NUL in digits");
        if let Err(e) = rustix::mount::mount("tmpfs", &path, "tmpfs", MountFlags::empty(), data.as_c_str()) {
            let _ = fs::remove_dir(&path);
            return Err(fail(&path, format!("cannot mount a tmpfs of {size} bytes: {e}")));
        }
        // From here on the drop unmounts it, whatever fails next.
        let mut folder = MemoryFolder { path, size, lock: None };
        let lock_path = folder.path.join(LOCK);
        let lock = File::create(&lock_path).ctx(|| format!("creating {}", lock_path.display()))?;
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        folder.lock = Some(lock);
        Ok(folder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tmpfs's size limit in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether less than 1 MiB is left: what a writer that hit ENOSPC and
    /// then gave up leaves behind when it did not clean up.
    pub fn nearly_full(&self) -> bool {
        rustix::fs::statvfs(&self.path).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) < 1 << 20)
    }
}

impl Drop for MemoryFolder {
    fn drop(&mut self) {
        drop(self.lock.take());
        unmount(&self.path);
    }
}

fn unmount(path: &Path) {
    // Detached: a process still inside (a step's sandbox being torn down)
    // does not keep the directory from going.
    if let Err(e) = rustix::mount::unmount(path, UnmountFlags::DETACH) {
        tracing::warn!(path = %path.display(), error = %e, "could not unmount a tmpfs working folder");
        return;
    }
    if let Err(e) = fs::remove_dir(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a tmpfs working folder");
    }
}

/// Unmounts the tmpfs folders in `parent` whose run is gone (no one holds
/// their lock), so memory a killed run held comes back.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(PREFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let stale = match File::open(path.join(LOCK)) {
            Ok(lock) => rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok(),
            // Not mounted any more, or not yet (another run between its
            // mkdir and its mount): only an old bare directory is left over.
            Err(_) => !is_mount_point(&path) && older_than_a_minute(&path),
        };
        if !stale {
            continue;
        }
        tracing::info!(path = %path.display(), "removing a tmpfs working folder left by an earlier run");
        // Errors are not worth a warning: a run that is just ending may
        // unmount it at the same moment.
        if is_mount_point(&path) {
            let _ = rustix::mount::unmount(&path, UnmountFlags::DETACH);
        }
        let _ = fs::remove_dir(&path);
    }
}

fn older_than_a_minute(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_mins(1)))
}

/// Whether `path` is on another device than its parent.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (fs::symlink_metadata(path), fs::symlink_metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn mounts_a_limited_tmpfs_and_removes_it() {
        if !root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        let folder = MemoryFolder::mount(parent.path(), 4 << 20).unwrap();
        let path = folder.path().to_owned();
        assert!(is_mount_point(&path));
        assert!(!folder.nearly_full());
        // Filling it stops at the limit with ENOSPC, not later.
        let big = vec![7u8; 8 << 20];
        let err = fs::write(path.join("big"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(folder.nearly_full());
        drop(folder);
        assert!(!path.exists());
    }

    #[test]
    fn a_folder_nobody_holds_is_unmounted_by_the_next_run() {
        if !root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        let mut left = MemoryFolder::mount(parent.path(), 1 << 20).unwrap();
        let left_path = left.path().to_owned();
        // As if its run was killed: the lock goes with the process, the
        // mount stays.
        drop(left.lock.take());
        std::mem::forget(left);
        let held = MemoryFolder::mount(parent.path(), 1 << 20).unwrap();
        let next = MemoryFolder::mount(parent.path(), 1 << 20).unwrap();
        assert!(!left_path.exists(), "the stale tmpfs is gone");
        assert!(held.path().exists() && is_mount_point(held.path()), "a live one stays");
        drop((held, next));
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
