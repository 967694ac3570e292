//! Unpacking layers to disk for the executor: each layer into its own
//! directory of a content-addressed cache (by diff_id), in the form overlayfs
//! takes as a lower dir (whiteouts as 0/0 character devices, opaque
//! directories marked with an xattr).
//!
//! Path safety: names with `..` are refused, leading `/` is dropped, and no
//! entry is ever created through a symlink, because every parent directory
//! of an entry is checked with `lstat` before use. Symlink targets are stored
//! as they are; they only mean something inside the container.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use super::{OPAQUE_MARKER, WHITEOUT_PREFIX, clean_entry_path, drain, entry_xattrs, open_tar_stream};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
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
}

struct DeferredDir {
    path: PathBuf,
    mode: u32,
    mtime: u64,
}

/// Unpacks the tar stream `tar` into the existing directory `dest`.
pub fn unpack(tar: &mut dyn Read, dest: &Path, layer: &str, options: &UnpackOptions) -> Result<UnpackStats> {
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<DeferredDir> = Vec::new();
    let mut archive = tar::Archive::new(tar);
    let corrupt = |e: io::Error| match Error::io("", e) {
        Error::Io { source, .. } => {
            Error::CorruptLayer { layer: layer.to_owned(), reason: source.to_string() }
        }
        ours => ours,
    };
    let hostile = |entry: &str, reason: String| Error::HostileEntry {
        layer: layer.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    // Directories known to be real (not symlinks) in `dest`.
    let mut checked: HashSet<PathBuf> = HashSet::new();
    checked.insert(dest.to_owned());

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
        let uid = header.uid().map_err(corrupt)?;
        let gid = header.gid().map_err(corrupt)?;
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
        let xattrs = entry_xattrs(&mut entry).map_err(corrupt)?;

        if rel.is_empty() {
            if kind == tar::EntryType::Directory {
                set_owner(dest, uid, gid, *options)?;
                dirs.push(DeferredDir { path: dest.to_owned(), mode, mtime });
            }
            continue;
        }
        let (parent_rel, base) = match rel.rfind('/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => ("", rel.as_str()),
        };
        let parent = ensure_real_dir(dest, parent_rel, &mut checked, &hostile, &rel)?;
        let target = parent.join(base);

        if base == OPAQUE_MARKER {
            match options.whiteouts {
                WhiteoutFormat::OverlayTrusted => set_xattr(&parent, "trusted.overlay.opaque", b"y")?,
                WhiteoutFormat::OverlayUser => set_xattr(&parent, "user.overlay.opaque", b"y")?,
                WhiteoutFormat::Keep => {
                    File::create(&target).ctx(|| format!("creating {}", target.display()))?;
                }
            }
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX)
            && options.whiteouts != WhiteoutFormat::Keep
        {
            let hidden_path = parent.join(hidden);
            remove_existing(&hidden_path)?;
            rustix::fs::mknodat(
                CWD,
                &hidden_path,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| Error::io(format!("creating whiteout {}", hidden_path.display()), e.into()))?;
            stats.whiteouts += 1;
            continue;
        }

        // A later entry for the same path replaces the earlier one, except
        // that a directory stays (with new metadata) if a directory follows.
        let existing = fs::symlink_metadata(&target).ok();
        let keep_dir =
            kind == tar::EntryType::Directory && existing.as_ref().is_some_and(fs::Metadata::is_dir);
        if existing.is_some() && !keep_dir {
            remove_existing(&target)?;
            checked.remove(&target);
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .ctx(|| format!("creating {}", target.display()))?;
                stats.bytes += io::copy(&mut entry, &mut file).map_err(corrupt)?;
            }
            tar::EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(&target).ctx(|| format!("creating {}", target.display()))?;
                }
                checked.insert(target.clone());
            }
            tar::EntryType::Symlink => {
                let to = link.ok_or_else(|| hostile(&rel, "symlink without a target".to_owned()))?;
                let to = std::str::from_utf8(&to)
                    .map_err(|_| hostile(&rel, "symlink target is not UTF-8".to_owned()))?;
                symlink(to, &target).ctx(|| format!("creating symlink {}", target.display()))?;
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
                let to_path = existing_real_dir(dest, to_parent, &mut checked)
                    .ok_or_else(|| {
                        hostile(&rel, format!("hard link to {to_rel}, which this layer does not contain"))
                    })?
                    .join(to_base);
                match fs::symlink_metadata(&to_path) {
                    Ok(m) if m.is_dir() => {
                        return Err(hostile(&rel, format!("hard link to directory {to_rel}")));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(hostile(
                            &rel,
                            format!("hard link to {to_rel}, which this layer does not contain"),
                        ));
                    }
                }
                fs::hard_link(&to_path, &target)
                    .ctx(|| format!("linking {} to {}", target.display(), to_path.display()))?;
                stats.entries += 1;
                continue; // metadata belongs to the shared inode
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                if !options.device_nodes {
                    stats.skipped_devices += 1;
                    continue;
                }
                let file_type = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                rustix::fs::mknodat(
                    CWD,
                    &target,
                    file_type,
                    Mode::from_bits_truncate(mode),
                    rustix::fs::makedev(device.0, device.1),
                )
                .map_err(|e| Error::io(format!("creating device {}", target.display()), e.into()))?;
            }
            tar::EntryType::Fifo => {
                rustix::fs::mknodat(CWD, &target, FileType::Fifo, Mode::from_bits_truncate(mode), 0)
                    .map_err(|e| Error::io(format!("creating fifo {}", target.display()), e.into()))?;
            }
            other => {
                return Err(Error::CorruptLayer {
                    layer: layer.to_owned(),
                    reason: format!("entry {rel} has unsupported tar type {other:?}"),
                });
            }
        }
        stats.entries += 1;
        set_owner(&target, uid, gid, *options)?;
        for (name, value) in &xattrs {
            set_xattr(&target, name, value)?;
        }
        if kind == tar::EntryType::Directory {
            dirs.push(DeferredDir { path: target, mode, mtime });
        } else {
            if kind != tar::EntryType::Symlink {
                // After chown, which clears set-uid bits.
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .ctx(|| format!("chmod {}", target.display()))?;
            }
            set_mtime(&target, mtime)?;
        }
    }
    // Directory modes and times last: creating children changes the times,
    // and a read-only directory would refuse them.
    for dir in dirs.iter().rev() {
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode))
            .ctx(|| format!("chmod {}", dir.path.display()))?;
        set_mtime(&dir.path, dir.mtime)?;
    }
    Ok(stats)
}

/// `dest/rel` as a real directory, creating missing components; refuses
/// to go through a symlink.
fn ensure_real_dir(
    dest: &Path,
    rel: &str,
    checked: &mut HashSet<PathBuf>,
    hostile: &dyn Fn(&str, String) -> Error,
    entry: &str,
) -> Result<PathBuf> {
    let mut dir = dest.to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        if checked.contains(&dir) {
            continue;
        }
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(hostile(
                    entry,
                    format!("its parent {part} is a symlink; writing through it could escape the root"),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(hostile(entry, format!("its parent {part} is not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
            }
            Err(e) => return Err(Error::io(format!("checking {}", dir.display()), e)),
        }
        checked.insert(dir.clone());
    }
    Ok(dir)
}

/// Like [`ensure_real_dir`] but creates nothing: `None` if a component is
/// missing or not a real directory.
fn existing_real_dir(dest: &Path, rel: &str, checked: &mut HashSet<PathBuf>) -> Option<PathBuf> {
    let mut dir = dest.to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        if checked.contains(&dir) {
            continue;
        }
        let m = fs::symlink_metadata(&dir).ok()?;
        if !m.is_dir() || m.file_type().is_symlink() {
            return None;
        }
        checked.insert(dir.clone());
    }
    Some(dir)
}

fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display())),
        Ok(_) => fs::remove_file(path).ctx(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

fn set_owner(path: &Path, uid: u64, gid: u64, options: UnpackOptions) -> Result<()> {
    if !options.preserve_ownership {
        return Ok(());
    }
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(Error::Path { path: path.to_owned(), reason: format!("owner {uid}:{gid} out of range") });
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .map_err(|e| Error::io(format!("setting xattr {name} on {}", path.display()), e.into()))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let t = Timespec { tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps { last_access: t, last_modification: t },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(format!("setting the time of {}", path.display()), e.into()))
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
        for sub in ["sha256", "tmp"] {
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
