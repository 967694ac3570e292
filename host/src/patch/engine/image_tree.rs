//! An image's merged root fs as the tree BuildKit pulls for a `local://`
//! source: its unpacked layers read through [`MergedReader`] (whiteouts
//! and opaque directories applied), each entry with its owner, mode,
//! nanosecond mtime, device numbers, link target and extended attributes,
//! and a second name of an inode sent as a hard link to the first.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use caulk_buildkit::Entry;
use caulk_buildkit::filesync::go_mode;
use caulk_buildkit::pb::fsutil::Stat;
use caulk_exec::{EntryKind, MergedReader};
use caulk_image::layer::xattr_is_kept;

/// The extended attributes of `path` (not following a symlink) that an
/// image layer keeps: overlayfs's own steer the mount and security labels
/// or ACLs describe the host that unpacked the layer, so neither goes to
/// the daemon.
pub(super) fn xattrs(path: &Path) -> std::io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if !xattr_is_kept(&name) {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        match rustix::fs::lgetxattr(path, name.as_str(), &mut value) {
            Ok(len) => {
                value.truncate(len);
                out.insert(name, value);
            }
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The fsutil stat of the real file `real`, named `rel` in the tree.
pub(super) fn stat_of(
    rel: &str,
    real: &Path,
    link_target: Option<&str>,
) -> std::io::Result<(Stat, std::fs::Metadata)> {
    let meta = std::fs::symlink_metadata(real)?;
    let mode = go_mode(meta.mode());
    let is_dir = meta.is_dir();
    let is_device = meta.file_type().is_char_device_or_block();
    let rdev = meta.rdev();
    let stat = Stat {
        path: rel.to_owned(),
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        size: if is_dir { 0 } else { i64::try_from(meta.size()).unwrap_or(i64::MAX) },
        mod_time: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        linkname: link_target.unwrap_or_default().to_owned(),
        devmajor: if is_device { i64::from(rustix::fs::major(rdev)) } else { 0 },
        devminor: if is_device { i64::from(rustix::fs::minor(rdev)) } else { 0 },
        xattrs: xattrs(real)?,
    };
    Ok((stat, meta))
}

trait DeviceType {
    fn is_char_device_or_block(&self) -> bool;
}

impl DeviceType for std::fs::FileType {
    fn is_char_device_or_block(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device() || self.is_block_device()
    }
}

/// fsutil's paths and link targets are protobuf strings, so a name that
/// is not UTF-8 cannot cross; the reader's lossy copy of it would name
/// nothing or point elsewhere.
fn not_utf8(path: &str, real: &Path, link_target: Option<&str>) -> Result<(), String> {
    const LOST: char = char::REPLACEMENT_CHARACTER;
    let refuse = |what: &str| {
        Err(format!("{path}: its {what} is not UTF-8, which BuildKit's file transfer cannot carry"))
    };
    if path.contains(LOST) && std::fs::symlink_metadata(real).is_err() {
        return refuse("name");
    }
    if link_target.is_some_and(|t| t.contains(LOST))
        && std::fs::read_link(real).is_ok_and(|t| t.to_str().is_none())
    {
        return refuse("link target");
    }
    Ok(())
}

/// An image's layers, shared with the daemon.
pub struct ImageTree {
    reader: MergedReader,
}

impl ImageTree {
    pub fn new(layers: Vec<PathBuf>) -> Self {
        ImageTree { reader: MergedReader::new(layers) }
    }

    fn walk(
        &self,
        dir: &str,
        out: &mut Vec<Entry>,
        links: &mut HashMap<(usize, u64), String>,
    ) -> Result<(), String> {
        let children = self.reader.list(dir).map_err(|e| e.to_string())?;
        for child in children {
            // `list` gives absolute paths below the root; fsutil's are relative.
            let rel = child.path.trim_start_matches('/').to_owned();
            let real = self.reader.layers()[child.layer].join(&rel);
            not_utf8(&child.path, &real, child.link_target.as_deref())?;
            let (mut stat, meta) = stat_of(&rel, &real, child.link_target.as_deref())
                .map_err(|e| format!("reading {}: {e}", real.display()))?;
            let mut data = None;
            if child.kind == EntryKind::File {
                if meta.nlink() > 1 {
                    // Hard links live within one layer dir.
                    match links.get(&(child.layer, meta.ino())) {
                        Some(first) => {
                            stat.linkname.clone_from(first);
                            stat.size = 0;
                        }
                        None => {
                            links.insert((child.layer, meta.ino()), rel.clone());
                        }
                    }
                }
                if stat.linkname.is_empty() {
                    data = Some(real);
                }
            }
            out.push(Entry { stat, data });
            if child.kind == EntryKind::Dir {
                self.walk(&child.path, out, links)?;
            }
        }
        Ok(())
    }
}

impl caulk_buildkit::Tree for ImageTree {
    fn entries(&self) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        self.walk("/", &mut out, &mut HashMap::new())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use caulk_buildkit::Tree;

    use super::*;

    #[test]
    fn names_that_are_not_utf8_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let bad = OsStr::from_bytes(b"bad\xff");
        std::fs::write(dir.path().join(bad), "x").unwrap();
        let refused = ImageTree::new(vec![dir.path().to_owned()]).entries().unwrap_err();
        assert!(refused.contains("its name is not UTF-8"), "{refused}");

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(bad, dir.path().join("link")).unwrap();
        let refused = ImageTree::new(vec![dir.path().to_owned()]).entries().unwrap_err();
        assert!(refused.starts_with("/link: its link target is not UTF-8"), "{refused}");
    }
}
