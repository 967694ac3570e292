//! How steps of concurrent sessions (in one caulk or several) share a
//! host-side cache dir.
//!
//! A step that may write a cache dir holds an exclusive `flock` on it while
//! it runs. A step that only reads it gets a snapshot: under a shared lock
//! (so no writer is halfway), the dir is copied as hard links into a
//! sibling dir, the lock is let go, and the step reads the snapshot. Readers
//! then never wait for each other, and a writer (another job's `apt-get
//! update`) waits only while a snapshot is taken, not for a reader's whole
//! step. A snapshot stays what it was when taken because the package
//! managers that fill caches replace files (download to `partial/`, then
//! rename) rather than rewrite them, and delete them by unlinking, which
//! leaves the snapshot's link.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use tempfile::TempDir;

use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::step::CacheMount;

/// Where snapshots of the caches in a dir are made: beside them, so hard
/// links reach.
const SNAPSHOTS: &str = ".caulk-snapshots";

/// A step's hold on its caches, let go when dropped.
pub(crate) struct Held {
    /// The mounts to make: read-only ones point at their snapshot.
    pub caches: Vec<CacheMount>,
    _locks: Vec<File>,
    _snapshots: Vec<TempDir>,
}

/// Takes the step's caches: an exclusive lock on each dir the step may
/// write (some mount of it is writable), a snapshot of each dir it only
/// reads. Locks are taken in path order, so two processes with overlapping
/// caches cannot deadlock; waiting watches the cancel flag.
pub(crate) fn hold(label: &str, caches: &[CacheMount], cancel: &CancelToken) -> Result<Held> {
    let mut dirs: BTreeMap<&Path, bool> = BTreeMap::new();
    for cache in caches {
        *dirs.entry(cache.host_dir.as_path()).or_default() |= !cache.read_only;
    }
    let mut locks = Vec::new();
    let mut snapshots: BTreeMap<&Path, TempDir> = BTreeMap::new();
    for (dir, writes) in dirs {
        let err = |reason: String| Error::Cache { step: label.to_owned(), path: dir.to_owned(), reason };
        fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
        let file = File::open(dir).map_err(|e| err(format!("cannot open it: {e}")))?;
        if writes {
            lock(label, dir, &file, FlockOperation::NonBlockingLockExclusive, cancel)?;
            locks.push(file);
            continue;
        }
        lock(label, dir, &file, FlockOperation::NonBlockingLockShared, cancel)?;
        match snapshot(dir) {
            Ok(snap) => {
                snapshots.insert(dir, snap);
            }
            // A dir whose entries cannot be linked (another file system
            // mounted inside it) is read in place, held for the whole step.
            Err(e) => {
                tracing::warn!(step = label, cache = %dir.display(), "no snapshot ({e}); reading it in place");
                locks.push(file);
            }
        }
    }
    let caches = caches
        .iter()
        .map(|cache| match snapshots.get(cache.host_dir.as_path()) {
            Some(snap) => CacheMount { host_dir: snap.path().to_owned(), ..cache.clone() },
            None => cache.clone(),
        })
        .collect();
    Ok(Held { caches, _locks: locks, _snapshots: snapshots.into_values().collect() })
}

fn lock(label: &str, dir: &Path, file: &File, operation: FlockOperation, cancel: &CancelToken) -> Result<()> {
    let how = if operation == FlockOperation::NonBlockingLockShared { "shared" } else { "exclusive" };
    let mut waiting: Option<Instant> = None;
    loop {
        match rustix::fs::flock(file, operation) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if waiting.is_none() {
                    tracing::info!(step = label, cache = %dir.display(), lock = how, "waiting for another step using this cache");
                    waiting = Some(Instant::now());
                }
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled { during: format!("waiting for cache {}", dir.display()) });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(Error::Cache {
                    step: label.to_owned(),
                    path: dir.to_owned(),
                    reason: format!("cannot lock it: {e}"),
                });
            }
        }
    }
    if let Some(since) = waiting {
        tracing::info!(step = label, cache = %dir.display(), lock = how, waited_ms = since.elapsed().as_millis(), "cache locked");
    }
    Ok(())
}

/// `dir` copied as hard links into a new dir beside it, removed on drop.
fn snapshot(dir: &Path) -> io::Result<TempDir> {
    let parent = dir.parent().ok_or_else(|| io::Error::other("it has no parent dir"))?;
    let name = dir.file_name().map_or_else(|| "cache".into(), |n| n.to_string_lossy().into_owned());
    let place = parent.join(SNAPSHOTS);
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&place)?;
    let snap = tempfile::Builder::new().prefix(&format!("{name}.")).tempdir_in(&place)?;
    link_tree(dir, snap.path(), 0)?;
    let meta = fs::metadata(dir)?;
    std::os::unix::fs::chown(snap.path(), Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(snap.path(), fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    Ok(snap)
}

/// Deeper than any package manager's cache: a tree past it was made by an
/// image's step, and is read in place rather than walked.
const MAX_DEPTH: usize = 32;

/// Recreates the tree under `from` in `to`: dirs (with owner and mode),
/// files as hard links, symlinks as symlinks. Anything else (a socket or
/// FIFO a tool left) is not cache content and is left out.
fn link_tree(from: &Path, to: &Path, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!("it is more than {MAX_DEPTH} dirs deep")));
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, dest): (PathBuf, PathBuf) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir(&dest)?;
            link_tree(&source, &dest, depth + 1)?;
            let meta = entry.metadata()?;
            std::os::unix::fs::lchown(&dest, Some(meta.uid()), Some(meta.gid()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else if kind.is_file() {
            fs::hard_link(&source, &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_links_the_files_and_keeps_them_when_the_cache_replaces_them() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("lists");
        fs::create_dir_all(cache.join("partial")).unwrap();
        fs::write(cache.join("Packages"), "old").unwrap();
        std::os::unix::fs::symlink("Packages", cache.join("link")).unwrap();
        fs::set_permissions(cache.join("partial"), fs::Permissions::from_mode(0o700)).unwrap();

        let snap = snapshot(&cache).unwrap();
        assert!(snap.path().starts_with(top.path().join(SNAPSHOTS)));
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&snap.path().join("Packages")), ino(&cache.join("Packages")), "a link, not a copy");
        assert_eq!(fs::read_link(snap.path().join("link")).unwrap(), Path::new("Packages"));
        assert_eq!(fs::metadata(snap.path().join("partial")).unwrap().mode() & 0o777, 0o700);

        // apt replaces an index by renaming a new file over it.
        fs::write(cache.join("Packages.new"), "new").unwrap();
        fs::rename(cache.join("Packages.new"), cache.join("Packages")).unwrap();
        assert_eq!(fs::read_to_string(snap.path().join("Packages")).unwrap(), "old");
        let path = snap.path().to_owned();
        drop(snap);
        assert!(!path.exists());
    }

    #[test]
    fn a_tree_deeper_than_any_cache_is_not_walked() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("work");
        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 2).collect();
        fs::create_dir_all(cache.join(&deep)).unwrap();
        let err = snapshot(&cache).unwrap_err();
        assert!(err.to_string().contains("dirs deep"), "{err}");
        assert_eq!(
            fs::read_dir(top.path().join(SNAPSHOTS)).unwrap().count(),
            0,
            "the partial snapshot is gone"
        );
    }
}
