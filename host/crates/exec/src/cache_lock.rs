//! How steps of concurrent sessions (in one caulk or several) share a
//! host-side cache dir.
//!
//! A step that may write a cache dir holds an exclusive `flock` on it while
//! it runs. A step that only reads it gets a snapshot: under a shared lock
//! (so no writer is halfway), the dir is copied as hard links into a
//! sibling dir, the lock is let go, and the step reads the snapshot. Readers
//! then never wait for each other, and a writer (another job's `apt-get
//! update`) waits only while a snapshot is taken, not for a reader's whole
//! step.
//!
//! After the last step to write a cache before a read-only step of the same
//! session ([`crate::mark_pins`]), the session keeps a snapshot of it taken
//! before the lock is let go ([`Pins`]), and its later steps that only read
//! the cache read that one: a job's install then sees the package indexes
//! and downloads its own refresh and fetch left, even if another job has
//! refreshed the indexes since (a mirror that moved on in between would
//! otherwise leave the install wanting versions it never downloaded).
//!
//! Small files (under [`COPY_BELOW`]) are copied into the snapshot, larger
//! ones hard-linked, except in the dirs of [`APPENDED_DIRS`], whose files
//! are copied up to [`MAX_APPENDED`]. Those are the files tools change in
//! place: npm's cacache appends an entry to an `index-v5` bucket on every
//! write (a long-lived cache's bucket for a busy package outgrows the small
//! files' limit), and lock and stamp files are rewritten; a link would let
//! a later writer's append reach a reader's snapshot, naming content the
//! snapshot lacks. The caches are written by image code, so what a snapshot
//! copies is bounded ([`MAX_COPIED`] of each kind): past that, files are
//! linked, which only a cache filled on purpose reaches. The large files
//! are downloads, which every tool caulk drives writes whole and renames
//! into place (apt's `partial/`, cacache's `tmp/`) and deletes by
//! unlinking, so a snapshot's link keeps what it was when taken.

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
use crate::session::SessionDir;
use crate::step::CacheMount;

/// Where snapshots of the caches in a dir are made: beside them, so hard
/// links reach.
const SNAPSHOTS: &str = ".caulk-snapshots";

/// A step's hold on its caches, let go when dropped.
pub(crate) struct Held {
    /// The mounts to make: read-only ones point at their snapshot.
    pub caches: Vec<CacheMount>,
    /// The dirs held exclusively (the step may write them).
    written: Vec<PathBuf>,
    _locks: Vec<File>,
    _snapshots: Vec<Snapshot>,
}

impl Held {
    /// Lets go of the caches, first pinning a snapshot of each the step
    /// wrote for the session's later readers. A dir that cannot be
    /// snapshotted has no pin: later readers take their own.
    pub(crate) fn release_pinning(self, label: &str, pins: &mut Pins, cancel: &CancelToken) -> Result<()> {
        for dir in &self.written {
            match snapshot(dir, cancel) {
                Ok(snap) => {
                    pins.0.insert(dir.clone(), snap);
                }
                Err(_) if cancel.is_cancelled() => {
                    return Err(Error::Cancelled {
                        during: format!("taking a snapshot of cache {}", dir.display()),
                    });
                }
                Err(e) => {
                    tracing::warn!(step = label, cache = %dir.display(), "no snapshot to pin ({e}); later steps read it afresh");
                }
            }
        }
        Ok(())
    }
}

/// A session's snapshots of the caches its steps wrote, by dir: what its
/// later read-only steps read (see the module docs).
#[derive(Default)]
pub(crate) struct Pins(BTreeMap<PathBuf, Snapshot>);

impl Pins {
    /// Drops the pins of `dirs`, before a step writes them: a step that
    /// errors out halfway leaves no pin older than what it wrote.
    pub(crate) fn forget<'d>(&mut self, dirs: impl IntoIterator<Item = &'d Path>) {
        for dir in dirs {
            self.0.remove(dir);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Takes the step's caches: an exclusive lock on each dir the step may
/// write (some mount of it is writable), a snapshot of each dir it only
/// reads, or the session's pinned one. Locks are taken in path order, so
/// two processes with overlapping caches cannot deadlock; waiting watches
/// the cancel flag.
pub(crate) fn hold(label: &str, caches: &[CacheMount], pins: &Pins, cancel: &CancelToken) -> Result<Held> {
    let mut dirs: BTreeMap<&Path, bool> = BTreeMap::new();
    for cache in caches {
        *dirs.entry(cache.host_dir.as_path()).or_default() |= !cache.read_only;
    }
    let mut locks = Vec::new();
    let mut written = Vec::new();
    let mut snapshots: BTreeMap<&Path, Snapshot> = BTreeMap::new();
    let mut pinned: BTreeMap<&Path, PathBuf> = BTreeMap::new();
    for (dir, writes) in dirs {
        if !writes && let Some(pin) = pins.0.get(dir) {
            pinned.insert(dir, pin.tree());
            continue;
        }
        let err = |reason: String| Error::Cache { step: label.to_owned(), path: dir.to_owned(), reason };
        fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
        let file = File::open(dir).map_err(|e| err(format!("cannot open it: {e}")))?;
        if writes {
            lock(label, dir, &file, FlockOperation::NonBlockingLockExclusive, cancel)?;
            locks.push(file);
            written.push(dir.to_owned());
            continue;
        }
        lock(label, dir, &file, FlockOperation::NonBlockingLockShared, cancel)?;
        match snapshot(dir, cancel) {
            Ok(snap) => {
                snapshots.insert(dir, snap);
            }
            Err(_) if cancel.is_cancelled() => {
                return Err(Error::Cancelled {
                    during: format!("taking a snapshot of cache {}", dir.display()),
                });
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
        .map(|cache| {
            let dir = cache.host_dir.as_path();
            match (snapshots.get(dir), pinned.get(dir)) {
                (Some(snap), _) => CacheMount { host_dir: snap.tree(), ..cache.clone() },
                (None, Some(tree)) => CacheMount { host_dir: tree.clone(), ..cache.clone() },
                (None, None) => cache.clone(),
            }
        })
        .collect();
    Ok(Held { caches, written, _locks: locks, _snapshots: snapshots.into_values().collect() })
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

/// A snapshot of a cache: `tree` under a dir of `.caulk-snapshots/` that
/// also holds a `lock` file, locked while the snapshot is in use, so that a
/// later caulk can tell one left by a killed caulk (see [`sweep`]).
pub(crate) struct Snapshot {
    dir: TempDir,
    _lock: File,
}

impl Snapshot {
    /// The copy of the cache, to mount.
    pub(crate) fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }
}

/// `dir` copied (small files) and hard-linked (the others) into a new dir
/// beside it, removed on drop.
fn snapshot(dir: &Path, cancel: &CancelToken) -> io::Result<Snapshot> {
    let parent = dir.parent().ok_or_else(|| io::Error::other("it has no parent dir"))?;
    let name = dir.file_name().map_or_else(|| "cache".into(), |n| n.to_string_lossy().into_owned());
    let place = parent.join(SNAPSHOTS);
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&place)?;
    sweep(&place);
    let snap = tempfile::Builder::new().prefix(&format!("{name}.")).tempdir_in(&place)?;
    // Locked before it takes its name, so a sweep never sees it unlocked.
    let lock = File::create(snap.path().join("lock.new"))?;
    rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)?;
    fs::rename(snap.path().join("lock.new"), snap.path().join("lock"))?;
    let snap = Snapshot { dir: snap, _lock: lock };
    let tree = snap.tree();
    fs::create_dir(&tree)?;
    copy_tree(dir, &tree, cancel)?;
    let meta = fs::metadata(dir)?;
    std::os::unix::fs::chown(&tree, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(&tree, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    Ok(snap)
}

/// Removes the snapshots in `place` that no live step holds: a killed
/// caulk leaves its snapshots behind, and nothing else would remove them.
fn sweep(place: &Path) {
    let Ok(entries) = fs::read_dir(place) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if SessionDir::is_stale(&path)
            && let Err(e) = fs::remove_dir_all(&path)
        {
            tracing::warn!(snapshot = %path.display(), "cannot remove a stale cache snapshot: {e}");
        }
    }
}

/// Regular files smaller than this are copied into a snapshot, not linked:
/// index buckets and lock or stamp files, which tools change in place.
const COPY_BELOW: u64 = 64 * 1024;

/// Dirs (by name, at any depth) whose files are copied into a snapshot up
/// to [`MAX_APPENDED`]: cacache's index, whose buckets npm appends to in
/// place and never renames.
const APPENDED_DIRS: &[&str] = &["index-v5"];

/// The largest file of [`APPENDED_DIRS`] copied: a bucket of some 16,000
/// entries, far past what npm writes for one key.
const MAX_APPENDED: u64 = 16 << 20;

/// Bytes one snapshot copies at most, from [`APPENDED_DIRS`] and of small
/// files each. Image code writes the caches: planted files (a sparse one
/// costs nothing to make) must not make every snapshot fill the disk, or
/// hold the shared lock while it does.
const MAX_COPIED: u64 = 256 << 20;

/// Deeper than any package manager's cache: a tree past it was made by an
/// image's step, and is read in place rather than walked.
const MAX_DEPTH: usize = 32;

/// Recreates the tree under `from` in `to`: dirs (with owner and mode),
/// small files and those under [`APPENDED_DIRS`] as copies (within
/// [`MAX_COPIED`]) and the others as hard links, symlinks as symlinks.
/// Anything else (a socket or FIFO a tool left) is not cache content and is
/// left out. Walked with a stack, not recursion: the tree was written by
/// image code.
fn copy_tree(from: &Path, to: &Path, cancel: &CancelToken) -> io::Result<()> {
    // (source dir, its copy, depth, whether its files are appended to in place)
    let mut pending = vec![(from.to_owned(), to.to_owned(), 0, false)];
    // Bytes copied from APPENDED_DIRS and the rest, budgeted apart: a cache
    // of many small downloads (npm's content-v2) must not use up the copies
    // the index buckets need, whichever the walk meets first.
    let (mut copied_appended, mut copied_small) = (0, 0);
    // Owner and mode are set once a dir is filled: a read-only dir could
    // not take its entries.
    let mut dirs = Vec::new();
    while let Some((from, to, depth, appended)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(io::Error::other(format!("it is more than {MAX_DEPTH} dirs deep")));
        }
        for entry in fs::read_dir(&from)? {
            if cancel.is_cancelled() {
                return Err(io::Error::other("cancelled"));
            }
            let entry = entry?;
            let (source, dest): (PathBuf, PathBuf) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type()?;
            if kind.is_dir() {
                fs::create_dir(&dest)?;
                dirs.push((dest.clone(), entry.metadata()?));
                let appended = appended || APPENDED_DIRS.iter().any(|d| entry.file_name() == **d);
                pending.push((source, dest, depth + 1, appended));
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                let len = meta.len();
                let budget = if appended && len <= MAX_APPENDED {
                    Some(&mut copied_appended)
                } else if len < COPY_BELOW {
                    Some(&mut copied_small)
                } else {
                    None
                };
                if let Some(copied) = budget.filter(|copied| **copied + len <= MAX_COPIED) {
                    *copied += len;
                    copy_file(&source, &dest, &meta)?;
                } else {
                    fs::hard_link(&source, &dest)?;
                }
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&source)?, &dest)?;
            }
        }
    }
    for (dest, meta) in dirs.iter().rev() {
        std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// A copy of `source` with its owner, mode and times: tools compare a
/// file's mtime with a stamp (apt's cache with its lists).
fn copy_file(source: &Path, dest: &Path, meta: &fs::Metadata) -> io::Result<()> {
    fs::copy(source, dest)?;
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
    // After the chown, which clears set-id bits.
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let times = fs::FileTimes::new().set_accessed(meta.accessed()?).set_modified(meta.modified()?);
    // futimens with given times needs ownership (or CAP_FOWNER), not write access.
    File::open(dest)?.set_times(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> CancelToken {
        CancelToken::default()
    }

    #[test]
    fn a_snapshot_links_the_large_files_and_keeps_them_when_the_cache_replaces_them() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("lists");
        fs::create_dir_all(cache.join("partial")).unwrap();
        let old = vec![b'o'; 100_000];
        fs::write(cache.join("Packages"), &old).unwrap();
        std::os::unix::fs::symlink("Packages", cache.join("link")).unwrap();
        fs::set_permissions(cache.join("partial"), fs::Permissions::from_mode(0o700)).unwrap();

        let snap = snapshot(&cache, &never()).unwrap();
        let tree = snap.tree();
        assert!(tree.starts_with(top.path().join(SNAPSHOTS)));
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&tree.join("Packages")), ino(&cache.join("Packages")), "a link, not a copy");
        assert_eq!(fs::read_link(tree.join("link")).unwrap(), Path::new("Packages"));
        assert_eq!(fs::metadata(tree.join("partial")).unwrap().mode() & 0o777, 0o700);

        // apt replaces an index by renaming a new file over it.
        fs::write(cache.join("Packages.new"), "new").unwrap();
        fs::rename(cache.join("Packages.new"), cache.join("Packages")).unwrap();
        assert_eq!(fs::read(tree.join("Packages")).unwrap(), old);
        let path = tree.clone();
        drop(snap);
        assert!(!path.exists());
    }

    #[test]
    fn a_write_in_place_to_a_small_file_after_a_snapshot_does_not_reach_it() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("npm");
        let bucket = Path::new("index-v5/ab/cd/0123");
        fs::create_dir_all(cache.join(bucket.parent().unwrap())).unwrap();
        fs::write(cache.join(bucket), "first entry\n").unwrap();
        fs::set_permissions(cache.join(bucket), fs::Permissions::from_mode(0o640)).unwrap();
        let stamp = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options().write(true).open(cache.join(bucket)).unwrap().set_modified(stamp).unwrap();

        let snap = snapshot(&cache, &never()).unwrap();
        // cacache appends an entry to the bucket in place (`fs.appendFile`).
        let mut live = File::options().append(true).open(cache.join(bucket)).unwrap();
        io::Write::write_all(&mut live, b"second entry\n").unwrap();

        let copy = snap.tree().join(bucket);
        assert_eq!(fs::read_to_string(&copy).unwrap(), "first entry\n");
        let meta = fs::metadata(&copy).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.modified().unwrap(), stamp, "the copy keeps the mtime tools compare");
    }

    #[test]
    fn a_large_index_bucket_is_copied_and_a_later_append_does_not_reach_it() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("npm");
        let bucket = Path::new("_cacache/index-v5/ab/cd/0123");
        let content = Path::new("_cacache/content-v2/sha512/ab/cd/ef");
        for file in [bucket, content] {
            fs::create_dir_all(cache.join(file.parent().unwrap())).unwrap();
        }
        // A bucket a long-lived cache has grown past the size rule.
        let entries = "entry\n".repeat(usize::try_from(COPY_BELOW).unwrap());
        fs::write(cache.join(bucket), &entries).unwrap();
        fs::write(cache.join(content), vec![b't'; 100_000]).unwrap();

        let snap = snapshot(&cache, &never()).unwrap();
        let mut live = File::options().append(true).open(cache.join(bucket)).unwrap();
        io::Write::write_all(&mut live, b"newer entry\n").unwrap();

        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(fs::read_to_string(snap.tree().join(bucket)).unwrap(), entries);
        assert_ne!(ino(&snap.tree().join(bucket)), ino(&cache.join(bucket)), "a copy, not a link");
        assert_eq!(ino(&snap.tree().join(content)), ino(&cache.join(content)), "content is still linked");
    }

    #[test]
    fn many_small_downloads_leave_the_buckets_their_copies() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("npm");
        let (content, index) = (cache.join("_cacache/content-v2"), cache.join("_cacache/index-v5"));
        fs::create_dir_all(&content).unwrap();
        fs::create_dir_all(&index).unwrap();
        // Sparse small files: past the whole budget, for nothing on disk.
        let small = COPY_BELOW - 1;
        for i in 0..=MAX_COPIED / small {
            File::create(content.join(format!("t{i}"))).unwrap().set_len(small).unwrap();
        }
        fs::write(index.join("bucket"), "entry\n".repeat(20_000)).unwrap();
        let snap = snapshot(&cache, &never()).unwrap();
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let bucket = snap.tree().join("_cacache/index-v5/bucket");
        assert_ne!(ino(&bucket), ino(&index.join("bucket")), "the bucket is still a copy");
    }

    #[test]
    fn planted_buckets_cannot_make_a_snapshot_copy_without_end() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("npm");
        let index = cache.join("_cacache/index-v5/ab");
        fs::create_dir_all(&index).unwrap();
        // Sparse: no blocks, any length.
        File::create(index.join("huge")).unwrap().set_len(1 << 40).unwrap();
        for i in 0..20 {
            File::create(index.join(format!("big-{i}"))).unwrap().set_len(MAX_APPENDED).unwrap();
        }

        let snap = snapshot(&cache, &never()).unwrap();
        let linked = |name: &str| {
            let (copy, live) = (snap.tree().join("_cacache/index-v5/ab").join(name), index.join(name));
            fs::metadata(copy).unwrap().ino() == fs::metadata(live).unwrap().ino()
        };
        assert!(linked("huge"), "past the size of any real bucket");
        let copied = (0..20).filter(|i| !linked(&format!("big-{i}"))).count();
        assert_eq!(u64::try_from(copied).unwrap(), MAX_COPIED / MAX_APPENDED, "copies stop at the budget");
    }

    #[test]
    fn a_snapshot_left_by_a_killed_caulk_is_removed_by_the_next_one() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("lists");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("Release"), "r").unwrap();
        let live = snapshot(&cache, &never()).unwrap();
        // A killed caulk's snapshot: its lock file is no longer locked.
        let Snapshot { dir: dead, _lock: dead_lock } = snapshot(&cache, &never()).unwrap();
        let dead_path = dead.keep();
        drop(dead_lock);

        let next = snapshot(&cache, &never()).unwrap();
        assert!(!dead_path.exists(), "the stale snapshot is swept");
        assert!(live.tree().join("Release").exists(), "a live one is kept");
        assert!(next.tree().join("Release").exists());
    }

    #[test]
    fn a_cancelled_snapshot_stops() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("lists");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("Release"), "r").unwrap();
        let cancel = CancelToken::default();
        cancel.cancel();
        let caches = [CacheMount { host_dir: cache.clone(), path: "/c".into(), read_only: true }];
        let Err(err) = hold("step", &caches, &Pins::default(), &cancel) else {
            panic!("a cancelled hold goes on")
        };
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    }

    #[test]
    fn a_tree_deeper_than_any_cache_is_not_walked() {
        let top = tempfile::tempdir().unwrap();
        let cache = top.path().join("work");
        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 2).collect();
        fs::create_dir_all(cache.join(&deep)).unwrap();
        let Err(err) = snapshot(&cache, &never()) else { panic!("a deep tree was walked") };
        assert!(err.to_string().contains("dirs deep"), "{err}");
        assert_eq!(
            fs::read_dir(top.path().join(SNAPSHOTS)).unwrap().count(),
            0,
            "the partial snapshot is gone"
        );
    }
}
