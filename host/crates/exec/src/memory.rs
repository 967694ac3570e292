//! A working folder in memory: a tmpfs caulk mounts with a size limit, for
//! sessions whose changes fit comfortably in RAM. dpkg writes and syncs
//! every file it unpacks; on an upper dir in memory the same install step
//! takes about half the time it takes on ext4.
//!
//! The mount lives in the host's mount namespace (the session dirs must
//! outlive each step's private namespace), so it is unmounted on drop, and
//! one left by a killed run is unmounted by the next: a lock file beside it
//! (`caulk-mem-X.lock` for `caulk-mem-X`) is held for the folder's life.
//! The lock is on the parent's file system and locked before the directory
//! exists, so a run sweeping at the same moment, or one in another mount
//! namespace that shares the parent (where the tmpfs itself is invisible),
//! never takes a live folder for a stale one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::{Error, Result};

const PREFIX: &str = "caulk-mem-";
const LOCK_SUFFIX: &str = ".lock";
/// A lock file before it gets its final name (and so before it counts).
const NEW_PREFIX: &str = ".caulk-mem-new-";

/// A tmpfs of a fixed size mounted on a fresh directory; unmounted and
/// removed on drop.
#[derive(Debug)]
pub struct MemoryFolder {
    path: PathBuf,
    size: u64,
    lock: Option<File>,
    lock_path: PathBuf,
}

impl MemoryFolder {
    /// Mounts a tmpfs of `size` bytes on a new directory in `parent`, after
    /// unmounting those earlier runs left there.
    pub fn mount(parent: &Path, size: u64) -> Result<Self> {
        sweep_stale(parent);
        let fail = |path: &Path, reason: String| Error::WorkingFolder { path: path.to_owned(), reason };
        // Locked under a name the sweep ignores, then renamed into place:
        // whoever sees `caulk-mem-X.lock` finds it locked.
        let new = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempfile_in(parent)
            .map_err(|e| fail(parent, format!("cannot create a lock file for a tmpfs: {e}")))?;
        rustix::fs::flock(new.as_file(), FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io(format!("locking {}", new.path().display()), e))?;
        let unique = new.path().file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(NEW_PREFIX));
        let name = format!("{PREFIX}{}", unique.expect("tempfile keeps the prefix"));
        let path = parent.join(&name);
        let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
        let lock = new
            .persist_noclobber(&lock_path)
            .map_err(|e| fail(&lock_path, format!("cannot name the tmpfs's lock file: {}", e.error)))?;
        let unlock = |lock: File| {
            let _ = fs::remove_file(&lock_path);
            drop(lock);
        };
        if let Err(e) = fs::create_dir(&path) {
            unlock(lock);
            return Err(fail(&path, format!("cannot create a directory for a tmpfs: {e}")));
        }
        let data = std::ffi::CString::new(format!("size={size},mode=0700")).expect("no NUL in digits");
        if let Err(e) = rustix::mount::mount("tmpfs", &path, "tmpfs", MountFlags::empty(), data.as_c_str()) {
            let _ = fs::remove_dir(&path);
            unlock(lock);
            return Err(fail(&path, format!("cannot mount a tmpfs of {size} bytes: {e}")));
        }
        Ok(MemoryFolder { path, size, lock: Some(lock), lock_path })
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
        unmount(&self.path);
        // The lock goes last: until the directory is gone it says "live".
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
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
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with(NEW_PREFIX) {
            // A run died between creating its lock file and naming it.
            if older_than_a_minute(&path) {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let Some(folder) = name.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(LOCK_SUFFIX)) else {
            // A folder whose lock file is gone (its run died while
            // dropping it): only an old bare directory is left over.
            if name.starts_with(PREFIX)
                && !parent.join(format!("{name}{LOCK_SUFFIX}")).exists()
                && !is_mount_point(&path)
                && older_than_a_minute(&path)
            {
                let _ = fs::remove_dir(&path);
            }
            continue;
        };
        let Ok(lock) = File::open(&path) else { continue };
        if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // live
        }
        let dir = parent.join(format!("{PREFIX}{folder}"));
        tracing::info!(path = %dir.display(), "removing a tmpfs working folder left by an earlier run");
        // Errors are not worth a warning: a run that is just ending may
        // unmount it at the same moment.
        if is_mount_point(&dir) {
            let _ = rustix::mount::unmount(&dir, UnmountFlags::DETACH);
        }
        let _ = fs::remove_dir(&dir);
        let _ = fs::remove_file(&path);
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
        // mount and the lock file stay.
        drop(left.lock.take());
        std::mem::forget(left);
        // A run in the middle of mounting (lock taken, no directory yet)
        // is not swept.
        let busy = tempfile::Builder::new().prefix(NEW_PREFIX).tempfile_in(parent.path()).unwrap();
        let busy_lock = parent.path().join(format!("{PREFIX}busy{LOCK_SUFFIX}"));
        rustix::fs::flock(busy.as_file(), FlockOperation::NonBlockingLockExclusive).unwrap();
        let busy_file = busy.persist_noclobber(&busy_lock).unwrap();
        fs::create_dir(parent.path().join(format!("{PREFIX}busy"))).unwrap();
        let held = MemoryFolder::mount(parent.path(), 1 << 20).unwrap();
        let next = MemoryFolder::mount(parent.path(), 1 << 20).unwrap();
        assert!(!left_path.exists(), "the stale tmpfs is gone");
        assert!(held.path().exists() && is_mount_point(held.path()), "a live one stays");
        assert!(parent.path().join(format!("{PREFIX}busy")).is_dir(), "a locked one stays, mounted or not");
        drop((held, next, busy_file));
        fs::remove_dir(parent.path().join(format!("{PREFIX}busy"))).unwrap();
        fs::remove_file(busy_lock).unwrap();
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
