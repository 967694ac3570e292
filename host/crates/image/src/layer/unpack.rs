//! Unpacking layers to disk for the executor: each layer into its own
//! directory of a content-addressed cache (by diff_id), in the form overlayfs
//! takes as a lower dir (whiteouts as 0/0 character devices, opaque
//! directories marked with an xattr).
//!
//! Path safety: names with `..` are refused and a leading `/` is dropped.
//! Every entry is created relative to a handle on its parent directory,
//! reached from the root one component at a time with `O_NOFOLLOW`
//! ([`Tree`]): no entry is ever created through a symlink, and no path
//! handed to the kernel is longer than one component, so entries nested
//! deeper than `PATH_MAX` unpack like any other. Symlink targets are stored
//! as they are; they only mean something inside the container.
//!
//! Extended attributes: only those an image may set on its own files are
//! applied (see [`super::xattr_is_kept`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::{OPAQUE_MARKER, WHITEOUT_PREFIX, clean_entry_path, drain, entry_xattrs, open_tar_stream};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, short_path};
use crate::model::{Layer, PlatformImage};
use crate::transport::ImageSource;

/// How whiteouts and opaque markers land on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// overlayfs as root: 0/0 char devices, `trusted.overlay.opaque=y`.
    OverlayTrusted,
    /// overlayfs with `userxattr` (in a user namespace): 0/0 char devices,
    /// `user.overlay.opaque=y`.
    OverlayUser,
    /// Keep `.wh.` files as plain empty files, as in the tar.
    Keep,
}

impl WhiteoutFormat {
    fn cache_suffix(self) -> &'static str {
        match self {
            WhiteoutFormat::OverlayTrusted => "",
            WhiteoutFormat::OverlayUser => ".userxattr",
            WhiteoutFormat::Keep => ".plain",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutFormat,
    /// Apply the owners recorded in the layer (needs root).
    pub preserve_ownership: bool,
    /// Create device nodes (needs root); when false they are skipped.
    pub device_nodes: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            whiteouts: if root { WhiteoutFormat::OverlayTrusted } else { WhiteoutFormat::OverlayUser },
            preserve_ownership: root,
            device_nodes: root,
        }
    }
}

/// Counts of what one unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
    /// Extended attributes the layer carried and unpacking left out.
    pub dropped_xattrs: u64,
}

struct DeferredDir {
    rel: String,
    mode: u32,
    mtime: u64,
}

/// Why a directory could not be reached.
enum Walk {
    Symlink(String),
    NotDir(String),
    Missing(String),
    Io(String, Errno),
}

/// Handles on the directories of the tree being unpacked, each opened from
/// the root one component at a time, refusing symlinks.
struct Tree {
    root: Rc<OwnedFd>,
    /// The directory used last: tar entries come grouped by directory.
    last: Option<(String, Rc<OwnedFd>)>,
}

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

impl Tree {
    fn open(dest: &Path) -> Result<Self> {
        // `dest` is the caller's choice and may be reached through a
        // symlink; only what lies below it comes from the layer.
        let root =
            rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::io(format!("opening {}", dest.display()), e.into()))?;
        Ok(Tree { root: Rc::new(root), last: None })
    }

    /// The directory `rel` (`""`: the root), creating missing components
    /// when `create`.
    fn dir(&mut self, rel: &str, create: bool) -> std::result::Result<Rc<OwnedFd>, Walk> {
        if rel.is_empty() {
            return Ok(Rc::clone(&self.root));
        }
        if let Some((path, fd)) = &self.last
            && path == rel
        {
            return Ok(Rc::clone(fd));
        }
        let mut dir = Rc::clone(&self.root);
        for (at, part) in components(rel) {
            let opened = match rustix::fs::openat(&*dir, part, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&*dir, part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {
                            rustix::fs::openat(&*dir, part, DIR_FLAGS, Mode::empty())
                        }
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            dir = Rc::new(opened.map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => {
                    match rustix::fs::statat(&*dir, part, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            Walk::Symlink(rel[..at].to_owned())
                        }
                        _ => Walk::NotDir(rel[..at].to_owned()),
                    }
                }
                Errno::NOENT => Walk::Missing(rel[..at].to_owned()),
                e => Walk::Io(rel[..at].to_owned(), e),
            })?);
        }
        self.last = Some((rel.to_owned(), Rc::clone(&dir)));
        Ok(dir)
    }

    /// Forgets handles on `rel` and below, which is about to be removed.
    fn forget(&mut self, rel: &str) {
        if self.last.as_ref().is_some_and(|(path, _)| {
            path == rel || (path.starts_with(rel) && path.as_bytes().get(rel.len()) == Some(&b'/'))
        }) {
            self.last = None;
        }
    }
}

/// Each component of a clean relative path with the length of the path up
/// to and including it.
fn components(rel: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut end = 0;
    rel.split('/').map(move |part| {
        end += part.len() + usize::from(end > 0);
        (end, part)
    })
}

/// Unpacks the tar stream `tar` into the existing directory `dest`.
pub fn unpack(tar: &mut dyn Read, dest: &Path, layer: &str, options: &UnpackOptions) -> Result<UnpackStats> {
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<DeferredDir> = Vec::new();
    let mut tree = Tree::open(dest)?;
    let mut archive = tar::Archive::new(tar);
    let corrupt = |e: io::Error| super::corrupt(layer, e);
    let hostile = |entry: &str, reason: String| Error::HostileEntry {
        layer: layer.to_owned(),
        entry: short_path(entry).into_owned(),
        reason,
    };
    let walk_error = |entry: &str, walk: Walk| match walk {
        Walk::Symlink(at) => hostile(
            entry,
            format!("its parent {} is a symlink; writing through it could escape the root", short_path(&at)),
        ),
        Walk::NotDir(at) => hostile(entry, format!("its parent {} is not a directory", short_path(&at))),
        Walk::Missing(at) => hostile(entry, format!("its parent {} is missing", short_path(&at))),
        Walk::Io(at, e) => os_error(layer, "opening directory", &at, e),
    };

    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let raw_name = entry.path_bytes().into_owned();
        let rel = clean_entry_path(&raw_name, layer)?;
        let header = entry.header();
        let mode = header.mode().map_err(corrupt)? & 0o7777;
        let owner = owner(header.uid().map_err(corrupt)?, header.gid().map_err(corrupt)?, *options)
            .map_err(|reason| hostile(&rel, reason))?;
        let mtime = header.mtime().map_err(corrupt)?;
        // Only device entries carry meaningful numbers; other writers leave
        // the fields blank.
        let device = if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            (
                header.device_major().map_err(corrupt)?.unwrap_or(0),
                header.device_minor().map_err(corrupt)?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let link = entry.link_name_bytes().map(std::borrow::Cow::into_owned);
        let mut xattrs = entry_xattrs(&mut entry).map_err(corrupt)?;
        let carried = xattrs.len();
        xattrs.retain(|(name, _)| super::xattr_is_kept(name));
        stats.dropped_xattrs += (carried - xattrs.len()) as u64;
        let fail = |what: &str, e: Errno| os_error(layer, what, &rel, e);

        if rel.is_empty() {
            if kind == tar::EntryType::Directory {
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(&*tree.root, Some(uid), Some(gid)).map_err(|e| fail("chown", e))?;
                }
                dirs.push(DeferredDir { rel: String::new(), mode, mtime });
            }
            continue;
        }
        let (parent_rel, base) = match rel.rfind('/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => ("", rel.as_str()),
        };
        let parent = tree.dir(parent_rel, true).map_err(|w| walk_error(&rel, w))?;

        if base == OPAQUE_MARKER {
            match options.whiteouts {
                WhiteoutFormat::OverlayTrusted => set_xattr(&parent, "trusted.overlay.opaque", b"y")
                    .map_err(|e| os_error(layer, "marking opaque", parent_rel, e))?,
                WhiteoutFormat::OverlayUser => set_xattr(&parent, "user.overlay.opaque", b"y")
                    .map_err(|e| os_error(layer, "marking opaque", parent_rel, e))?,
                WhiteoutFormat::Keep => drop(create_file(&parent, base).map_err(|e| fail("creating", e))?),
            }
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX)
            && options.whiteouts != WhiteoutFormat::Keep
        {
            // `.wh..` and `.wh...` would whiteout the directory itself or
            // its parent: removing those would reach above the entry.
            if matches!(hidden, "" | "." | "..") {
                return Err(hostile(&rel, format!("whiteout of {hidden:?} names no entry")));
            }
            let hidden_rel =
                if parent_rel.is_empty() { hidden.to_owned() } else { format!("{parent_rel}/{hidden}") };
            tree.forget(&hidden_rel);
            remove_at(&parent, hidden).map_err(|e| os_error(layer, "removing", &hidden_rel, e))?;
            rustix::fs::mknodat(
                &*parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| os_error(layer, "creating whiteout", &hidden_rel, e))?;
            stats.whiteouts += 1;
            continue;
        }

        // A later entry for the same path replaces the earlier one, except
        // that a directory stays (with new metadata) if a directory follows.
        let existing = rustix::fs::statat(&*parent, base, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode));
        let keep_dir = kind == tar::EntryType::Directory && existing == Some(FileType::Directory);
        if existing.is_some() && !keep_dir {
            tree.forget(&rel);
            remove_at(&parent, base).map_err(|e| fail("removing", e))?;
        }
        // An open handle on what was created, for the metadata: regular
        // files and directories only (the kernel keeps `user.*` xattrs to
        // those two, and opening a device or fifo could block or act).
        let handle: Option<OwnedFd> = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = File::from(create_file(&parent, base).map_err(|e| fail("creating", e))?);
                stats.bytes += io::copy(&mut entry, &mut file).map_err(corrupt)?;
                Some(file.into())
            }
            tar::EntryType::Directory => {
                if !keep_dir {
                    rustix::fs::mkdirat(&*parent, base, Mode::from_raw_mode(0o755))
                        .map_err(|e| fail("creating", e))?;
                }
                let dir = rustix::fs::openat(&*parent, base, DIR_FLAGS, Mode::empty())
                    .map_err(|e| fail("opening", e))?;
                Some(dir)
            }
            tar::EntryType::Symlink => {
                let to = link.ok_or_else(|| hostile(&rel, "symlink without a target".to_owned()))?;
                let to = std::str::from_utf8(&to)
                    .map_err(|_| hostile(&rel, "symlink target is not UTF-8".to_owned()))?;
                rustix::fs::symlinkat(to, &*parent, base).map_err(|e| fail("creating symlink", e))?;
                None
            }
            tar::EntryType::Link => {
                let to = link.ok_or_else(|| hostile(&rel, "hard link without a target".to_owned()))?;
                let to_rel = clean_entry_path(&to, layer)?;
                let (to_parent, to_base) = match to_rel.rfind('/') {
                    Some(i) => (&to_rel[..i], &to_rel[i + 1..]),
                    None => ("", to_rel.as_str()),
                };
                if to_base.is_empty() {
                    return Err(hostile(&rel, "hard link to the root".to_owned()));
                }
                let absent = || {
                    hostile(
                        &rel,
                        format!("hard link to {}, which this layer does not contain", short_path(&to_rel)),
                    )
                };
                let to_dir = tree.dir(to_parent, false).map_err(|_| absent())?;
                match rustix::fs::statat(&*to_dir, to_base, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(hostile(&rel, format!("hard link to directory {}", short_path(&to_rel))));
                    }
                    Ok(_) => {}
                    Err(_) => return Err(absent()),
                }
                rustix::fs::linkat(&*to_dir, to_base, &*parent, base, AtFlags::empty())
                    .map_err(|e| fail("linking", e))?;
                stats.entries += 1;
                continue; // metadata belongs to the shared inode
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !options.device_nodes {
                    stats.skipped_devices += 1;
                    continue;
                }
                rustix::fs::mknodat(
                    &*parent,
                    base,
                    file_type,
                    Mode::from_raw_mode(mode),
                    rustix::fs::makedev(device.0, device.1),
                )
                .map_err(|e| fail("creating", e))?;
                None
            }
            other => {
                return Err(Error::CorruptLayer {
                    layer: layer.to_owned(),
                    reason: format!("entry {} has unsupported tar type {other:?}", short_path(&rel)),
                });
            }
        };
        stats.entries += 1;
        if let Some((uid, gid)) = owner {
            match &handle {
                Some(fd) => rustix::fs::fchown(fd, Some(uid), Some(gid)),
                None => rustix::fs::chownat(&*parent, base, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(|e| fail("chown", e))?;
        }
        match &handle {
            Some(fd) => {
                for (name, value) in &xattrs {
                    set_xattr(fd, name, value).map_err(|e| fail(&format!("setting xattr {name} on"), e))?;
                }
            }
            None => stats.dropped_xattrs += xattrs.len() as u64,
        }
        match (kind, &handle) {
            (tar::EntryType::Directory, _) => dirs.push(DeferredDir { rel: rel.clone(), mode, mtime }),
            (_, Some(fd)) => {
                // After chown, which clears set-uid bits.
                rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| fail("chmod", e))?;
                rustix::fs::futimens(fd, &timestamps(mtime)).map_err(|e| fail("setting the time of", e))?;
            }
            (_, None) => {
                if kind != tar::EntryType::Symlink {
                    // A node this unpack just made in a directory only it
                    // writes: the name still means that node.
                    rustix::fs::chmodat(&*parent, base, Mode::from_raw_mode(mode), AtFlags::empty())
                        .map_err(|e| fail("chmod", e))?;
                }
                rustix::fs::utimensat(&*parent, base, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail("setting the time of", e))?;
            }
        }
    }
    // Directory modes and times last: creating children changes the times,
    // and a read-only directory would refuse them.
    // A directory listed twice takes its last entry's metadata, as tar does.
    let mut done = std::collections::HashSet::new();
    for dir in dirs.iter().rev() {
        if !done.insert(dir.rel.as_str()) {
            continue;
        }
        let fd = match tree.dir(&dir.rel, false) {
            Ok(fd) => fd,
            Err(Walk::Io(at, e)) => return Err(os_error(layer, "opening directory", &at, e)),
            // A later entry replaced it (or a parent) with something else.
            Err(_) => continue,
        };
        rustix::fs::fchmod(&*fd, Mode::from_raw_mode(dir.mode))
            .map_err(|e| os_error(layer, "chmod", &dir.rel, e))?;
        rustix::fs::futimens(&*fd, &timestamps(dir.mtime))
            .map_err(|e| os_error(layer, "setting the time of", &dir.rel, e))?;
    }
    if stats.dropped_xattrs > 0 {
        tracing::debug!("layer {layer}: left out {} extended attributes", stats.dropped_xattrs);
    }
    Ok(stats)
}

/// An OS error on entry `rel` of `layer`, the path cut for display.
fn os_error(layer: &str, what: &str, rel: &str, e: Errno) -> Error {
    let shown = if rel.is_empty() { "/".into() } else { short_path(rel) };
    Error::io(format!("layer {layer}: {what} {shown}"), e.into())
}

/// The owner to apply, when ownership is preserved.
fn owner(uid: u64, gid: u64, options: UnpackOptions) -> std::result::Result<Option<(Uid, Gid)>, String> {
    if !options.preserve_ownership {
        return Ok(None);
    }
    match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => Ok(Some((Uid::from_raw(u), Gid::from_raw(g)))),
        _ => Err(format!("owner {uid}:{gid} out of range")),
    }
}

fn create_file(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
}

/// Removes `name` in `dir`, a whole tree if it is a directory, never
/// following a symlink.
fn remove_at(dir: &OwnedFd, name: &str) -> rustix::io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            let mut names = Vec::new();
            for child in rustix::fs::Dir::read_from(&sub)? {
                let child = child?;
                let child_name = child.file_name().to_bytes();
                if child_name != b"." && child_name != b".." {
                    names.push(String::from_utf8_lossy(child_name).into_owned());
                }
            }
            for child in names {
                remove_at(&sub, &child)?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> rustix::io::Result<()> {
    rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// Unpacked layers by diff_id, each a directory usable as an overlayfs
/// lower dir. A directory appears (by rename) only once complete and
/// verified, so concurrent or interrupted runs never see half a layer.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["sha256", "tmp", "locks"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        Ok(LayerCache { root })
    }

    pub fn path(&self, diff_id: &Digest, format: WhiteoutFormat) -> PathBuf {
        self.root.join("sha256").join(format!("{}{}", diff_id.hex(), format.cache_suffix()))
    }

    /// The directory of `layer`, unpacking it first if needed.
    pub fn unpack(
        &self,
        source: &dyn ImageSource,
        layer: &Layer,
        options: &UnpackOptions,
    ) -> Result<PathBuf> {
        let final_path = self.path(&layer.diff_id, options.whiteouts);
        if final_path.is_dir() {
            return Ok(final_path);
        }
        // Jobs of one fleet, or two caulk processes, patching images of one
        // base: the first unpacks each layer, the others wait and use it
        // rather than download and unpack the same blob again.
        let _lock = self.lock(&layer.diff_id, options.whiteouts)?;
        if final_path.is_dir() {
            return Ok(final_path);
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}-", layer.diff_id.hex()))
            .tempdir_in(self.root.join("tmp"))
            .ctx(|| format!("creating a temp dir in {}", self.root.display()))?;
        let name = layer.desc.digest.to_string();
        let mut stream = open_tar_stream(source, layer)?;
        unpack(&mut stream, tmp.path(), &name, options)?;
        // Verification happens at EOF: nothing is published before it.
        drain(&mut stream, &name)?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &final_path) {
            Ok(()) => Ok(final_path),
            Err(_) if final_path.is_dir() => {
                // Someone else finished the same layer first.
                let _ = fs::remove_dir_all(&tmp_path);
                Ok(final_path)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                Err(Error::io(format!("renaming into {}", final_path.display()), e))
            }
        }
    }

    /// An exclusive `flock` on the layer's lock file, held until dropped.
    /// Lock files stay (removing one would race with its next taker).
    fn lock(&self, diff_id: &Digest, format: WhiteoutFormat) -> Result<File> {
        let path = self.root.join("locks").join(format!("{}{}.lock", diff_id.hex(), format.cache_suffix()));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", path.display()), e.into()))?;
        Ok(file)
    }

    /// All layers of `image`, bottom first (overlayfs wants `lowerdir`
    /// top first: reverse this).
    pub fn unpack_image(
        &self,
        source: &dyn ImageSource,
        image: &PlatformImage,
        options: &UnpackOptions,
    ) -> Result<Vec<PathBuf>> {
        image.layers.iter().map(|l| self.unpack(source, l, options)).collect()
    }
}
