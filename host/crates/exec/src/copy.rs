//! Copy-and-compare: the layer dirs merged into one plain directory (reflinked
//! where the file system can, else copied), and afterwards the difference
//! against that starting point, written in overlayfs upper-dir form so one
//! layer writer serves both modes.
//!
//! Change detection uses the inode number and ctime of every entry, recorded
//! right after the copy. A step cannot set ctime, and replacing a file
//! (dpkg writes `.dpkg-new` and renames it over) gives it a new inode, so
//! every write, chmod, chown, xattr change or replacement shows up without
//! reading file contents; a file rewritten with identical bytes counts as
//! changed, as it would under overlayfs (copy-up). Directories are the
//! exception: adding or removing a child changes their ctime, so a
//! directory counts as changed only when its mode, owner or xattrs differ;
//! it still lands in the diff as the parent of a changed entry. A directory
//! deleted and made again may get the same inode number back (ext4 reuses
//! them at once), so its birth time (statx) tells it apart; it becomes
//! opaque, as overlayfs makes it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use crate::cancel::CancelToken;
use crate::error::{Error, IoContext, Result};
use crate::merged::{DirState, MergedReader, OPAQUE_XATTR};

/// What an entry looked like right after the copy.
#[derive(Debug)]
pub(crate) struct Snap {
    ino: u64,
    ctime: (i64, i64),
    /// `st_mode`, type bits included.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Directories only: their xattrs (sorted), compared when their ctime moved.
    xattrs: Vec<(OsString, Vec<u8>)>,
    /// Directories only: the birth time, which tells a directory deleted and
    /// made again (the file system may hand out the same inode number)
    /// from one that only changed. `None` where the file system lacks it.
    btime: Option<(i64, u32)>,
    children: Option<HashMap<OsString, Snap>>,
}

impl Snap {
    fn of(meta: &Metadata, xattrs: Vec<(OsString, Vec<u8>)>) -> Self {
        Snap {
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            xattrs,
            btime: None,
            children: None,
        }
    }
}

/// The birth time of `path`, when its file system records one.
fn btime(path: &Path) -> Option<(i64, u32)> {
    use rustix::fs::StatxFlags;
    let stx = rustix::fs::statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME).ok()?;
    (stx.stx_mask & StatxFlags::BTIME.bits() != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec))
}

impl Snap {
    fn get_mut(&mut self, rel: &Path) -> Option<&mut Snap> {
        let mut node = self;
        for comp in rel {
            node = node.children.as_mut()?.get_mut(comp)?;
        }
        Some(node)
    }
}

/// Copies the merged view of `reader` into the empty directory `dest`.
/// Returns the state to compare against later.
pub(crate) fn merge_copy(reader: &MergedReader, dest: &Path, cancel: &CancelToken) -> Result<Snap> {
    let mut copier = Copier { reader, reflink: true, links: HashMap::new(), cancel, files: 0, bytes: 0 };
    let root = reader
        .root()?
        .ok_or_else(|| Error::LayerDir { path: dest.to_owned(), reason: "no layers to copy".to_owned() })?;
    let mut snap = copier.copy_dir(&root, dest)?;
    // Each new link to an inode changes its ctime: the names copied before
    // the last link of their inode must be looked at again.
    for names in copier.links.values() {
        for name in names {
            let meta = lstat(name)?;
            let rel = name.strip_prefix(dest).expect("copies go below dest");
            if let Some(node) = snap.get_mut(rel) {
                node.ctime = (meta.ctime(), meta.ctime_nsec());
            }
        }
    }
    tracing::debug!(
        files = copier.files,
        bytes = copier.bytes,
        reflink = copier.reflink,
        "merged the layers"
    );
    Ok(snap)
}

struct Copier<'a> {
    reader: &'a MergedReader,
    /// Cleared at the first refusal, so an ext4 host pays one failed ioctl.
    reflink: bool,
    /// Hard links inside one layer: (layer, inode) → the copies, first
    /// one first.
    links: HashMap<(usize, u64), Vec<PathBuf>>,
    cancel: &'a CancelToken,
    files: u64,
    bytes: u64,
}

impl Copier<'_> {
    fn copy_dir(&mut self, node: &DirState, dest: &Path) -> Result<Snap> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled { during: "copying the root fs".to_owned() });
        }
        let src = self.reader.real(node.layer(), node.rel());
        let meta = node.meta();
        chown(dest, meta)?;
        let mut children = HashMap::new();
        for child in self.reader.children(node)? {
            let name = child.rel().file_name().expect("children have names").to_owned();
            let target = dest.join(&name);
            let snap = if child.meta().is_dir() {
                fs::create_dir(&target).ctx(|| format!("creating {}", target.display()))?;
                self.copy_dir(&child, &target)?
            } else {
                match self.copy_leaf(&child, &target)? {
                    Some(snap) => snap,
                    None => continue,
                }
            };
            children.insert(name, snap);
        }
        let xattrs = copy_xattrs(&src, dest)?;
        chmod(dest, meta)?;
        set_times(dest, meta)?;
        let mut snap = Snap::of(&lstat(dest)?, xattrs);
        snap.btime = btime(dest);
        snap.children = Some(children);
        Ok(snap)
    }

    fn copy_leaf(&mut self, node: &DirState, dest: &Path) -> Result<Option<Snap>> {
        let src = self.reader.real(node.layer(), node.rel());
        let meta = node.meta();
        let ft = meta.file_type();
        if meta.nlink() > 1 && !ft.is_dir() {
            let names = self.links.entry((node.layer(), meta.ino())).or_default();
            if let Some(first) = names.first() {
                fs::hard_link(first, dest)
                    .ctx(|| format!("linking {} to {}", dest.display(), first.display()))?;
                names.push(dest.to_owned());
                return Ok(Some(Snap::of(&lstat(dest)?, Vec::new())));
            }
            names.push(dest.to_owned());
        }
        if ft.is_file() {
            self.copy_file(&src, dest, meta)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).ctx(|| format!("reading link {}", src.display()))?;
            symlink(&target, dest).ctx(|| format!("creating symlink {}", dest.display()))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::Fifo
            };
            rustix::fs::mknodat(CWD, dest, kind, Mode::from_raw_mode(meta.mode() & 0o7777), meta.rdev())
                .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        } else {
            // Sockets only mean something to a running process.
            tracing::debug!(path = %src.display(), "not copying a socket");
            return Ok(None);
        }
        chown(dest, meta)?;
        copy_xattrs(&src, dest)?;
        if !ft.is_symlink() {
            chmod(dest, meta)?;
        }
        set_times(dest, meta)?;
        Ok(Some(Snap::of(&lstat(dest)?, Vec::new())))
    }

    fn copy_file(&mut self, src: &Path, dest: &Path, meta: &Metadata) -> Result<()> {
        let from = File::open(src).ctx(|| format!("opening {}", src.display()))?;
        let mut to = File::options()
            .write(true)
            .create_new(true)
            .open(dest)
            .ctx(|| format!("creating {}", dest.display()))?;
        self.files += 1;
        self.bytes += meta.size();
        if self.reflink {
            match rustix::fs::ioctl_ficlone(&to, &from) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "no reflinks here; copying");
                    self.reflink = false;
                }
            }
        }
        // `io::copy` between files uses copy_file_range, in the kernel.
        io::copy(&mut &from, &mut to).ctx(|| format!("copying {} to {}", src.display(), dest.display()))?;
        Ok(())
    }
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).ctx(|| format!("reading {}", path.display()))
}

fn chown(path: &Path, meta: &Metadata) -> Result<()> {
    rustix::fs::chownat(
        CWD,
        path,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(format!("chown {}", path.display()), e))
}

/// After `chown`, which clears set-uid bits.
fn chmod(path: &Path, meta: &Metadata) -> Result<()> {
    rustix::fs::chmod(path, Mode::from_raw_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

fn set_times(path: &Path, meta: &Metadata) -> Result<()> {
    let ts = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(format!("setting the times of {}", path.display()), e))
}

/// The xattrs of `path`, sorted, without overlayfs' own.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    let err = |e: rustix::io::Errno| Error::io(format!("reading xattrs of {}", path.display()), e);
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) | Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(e) => return Err(err(e)),
    };
    let mut names = vec![0u8; size + 256];
    let n = rustix::fs::llistxattr(path, &mut names[..]).map_err(err)?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let name = OsStr::from_bytes(name);
        let len = match rustix::fs::lgetxattr_query(path, name) {
            Ok(len) => len,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(err(e)),
        };
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).map_err(err)?;
        value.truncate(len);
        out.push((name.to_owned(), value));
    }
    out.sort();
    Ok(out)
}

fn copy_xattrs(src: &Path, dest: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    let xattrs = read_xattrs(src)?;
    for (name, value) in &xattrs {
        rustix::fs::lsetxattr(dest, name.as_os_str(), value, XattrFlags::empty()).map_err(|e| {
            Error::io(format!("setting xattr {} on {}", name.to_string_lossy(), dest.display()), e)
        })?;
    }
    Ok(xattrs)
}

/// One change found by [`diff`].
#[derive(Debug)]
enum Change {
    /// A directory whose own metadata changed.
    Dir(PathBuf),
    /// A new or changed entry, moved into the diff with everything below;
    /// `opaque` when it replaces a directory of the base.
    Moved {
        rel: PathBuf,
        opaque: bool,
    },
    Deleted(PathBuf),
}

/// Compares `root` with the snapshot taken after the copy and moves what
/// changed into the empty directory `diff`, in overlayfs upper-dir form:
/// deleted entries as 0/0 character devices, replaced directories opaque.
/// `root` is left incomplete: it is meant to be thrown away afterwards.
pub(crate) fn diff(root: &Path, snap: &Snap, diff: &Path) -> Result<usize> {
    let mut changes = Vec::new();
    walk(root, Path::new(""), snap, &mut changes)?;
    let count = changes.len();
    let mut writer = DiffWriter { root, diff, made: HashMap::new() };
    for change in &changes {
        match change {
            Change::Dir(rel) => writer.ensure_dir(rel)?,
            Change::Moved { rel, opaque } => {
                writer.ensure_dir(rel.parent().unwrap_or(Path::new("")))?;
                let from = root.join(rel);
                let to = diff.join(rel);
                fs::rename(&from, &to).ctx(|| format!("moving {} to {}", from.display(), to.display()))?;
                if *opaque {
                    rustix::fs::lsetxattr(&to, OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| Error::io(format!("marking {} opaque", to.display()), e))?;
                }
            }
            Change::Deleted(rel) => {
                writer.ensure_dir(rel.parent().unwrap_or(Path::new("")))?;
                let to = diff.join(rel);
                rustix::fs::mknodat(
                    CWD,
                    &to,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| Error::io(format!("creating whiteout {}", to.display()), e))?;
            }
        }
    }
    writer.finish()?;
    Ok(count)
}

fn walk(root: &Path, rel: &Path, snap: &Snap, changes: &mut Vec<Change>) -> Result<bool> {
    let dir = root.join(rel);
    let mut names: Vec<OsString> = fs::read_dir(&dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .ctx(|| format!("listing {}", dir.display()))?;
    names.sort();
    let empty = HashMap::new();
    let before = snap.children.as_ref().unwrap_or(&empty);
    let mut changed = false;
    for name in &names {
        let child = rel.join(name);
        let meta = lstat(&root.join(&child))?;
        let Some(old) = before.get(name) else {
            changes.push(Change::Moved { rel: child, opaque: false });
            changed = true;
            continue;
        };
        let same_type = (meta.mode() & 0o170_000) == (old.mode & 0o170_000);
        let reborn = meta.is_dir()
            && same_type
            && (meta.ctime(), meta.ctime_nsec()) != old.ctime
            && old.btime.is_some()
            && btime(&root.join(&child)) != old.btime;
        if !same_type || meta.ino() != old.ino || reborn {
            let opaque = meta.is_dir() && same_type;
            changes.push(Change::Moved { rel: child, opaque });
            changed = true;
        } else if meta.is_dir() {
            let own = (meta.ctime(), meta.ctime_nsec()) != old.ctime
                && (meta.mode() != old.mode
                    || meta.uid() != old.uid
                    || meta.gid() != old.gid
                    || read_xattrs(&root.join(&child))? != old.xattrs);
            let below = walk(root, &child, old, changes)?;
            if own && !below {
                changes.push(Change::Dir(child));
            }
            changed |= own || below;
        } else if (meta.ctime(), meta.ctime_nsec()) != old.ctime {
            changes.push(Change::Moved { rel: child, opaque: false });
            changed = true;
        }
    }
    let mut gone: Vec<&OsString> = before.keys().filter(|n| names.binary_search(n).is_err()).collect();
    gone.sort();
    for name in gone {
        changes.push(Change::Deleted(rel.join(name)));
        changed = true;
    }
    Ok(changed)
}

/// Creates the directories of the diff as copies of the root's (owner,
/// mode, xattrs); their times are set last, once nothing moves into them.
struct DiffWriter<'a> {
    root: &'a Path,
    diff: &'a Path,
    made: HashMap<PathBuf, Metadata>,
}

impl DiffWriter<'_> {
    fn ensure_dir(&mut self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() || self.made.contains_key(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let src = self.root.join(rel);
        let to = self.diff.join(rel);
        // Read before anything is moved out of it, which changes its times.
        let meta = lstat(&src)?;
        fs::create_dir(&to).ctx(|| format!("creating {}", to.display()))?;
        chown(&to, &meta)?;
        copy_xattrs(&src, &to)?;
        chmod(&to, &meta)?;
        self.made.insert(rel.to_owned(), meta);
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let mut dirs: Vec<(&PathBuf, &Metadata)> = self.made.iter().collect();
        // Deepest first: setting a child's times does not touch its parent's.
        dirs.sort_by(|a, b| b.0.cmp(a.0));
        for (rel, meta) in dirs {
            set_times(&self.diff.join(rel), meta)?;
        }
        Ok(())
    }
}

/// Whether a directory tree exists and holds nothing.
pub(crate) fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// The snapshot of an empty root (an image without layers).
pub(crate) fn empty_snapshot(root: &Path) -> Result<Snap> {
    let mut snap = Snap::of(&lstat(root)?, Vec::new());
    snap.btime = btime(root);
    snap.children = Some(HashMap::new());
    Ok(snap)
}

/// Gives `dir` (an upper or diff dir, which becomes the root of the view)
/// the owner and mode of `like`, the image's root dir: created under the
/// caller's umask it could be 0700, and apt's `_apt` user must traverse /.
pub(crate) fn root_like(dir: &Path, like: Option<&Path>) -> Result<()> {
    match like {
        Some(like) => {
            let meta = lstat(like)?;
            chown(dir, &meta)?;
            chmod(dir, &meta)
        }
        None => rustix::fs::chmod(dir, Mode::from_raw_mode(0o755))
            .map_err(|e| Error::io(format!("chmod {}", dir.display()), e)),
    }
}
