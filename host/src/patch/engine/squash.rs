//! Folding overlayfs upper dirs into one, in order: the BuildKit engine's
//! difference from the image goes over an earlier caulk layer's changes,
//! and caulk writes one layer of both. An upper dir holds what
//! a layer changes: 0/0 character devices are whiteouts and directories
//! marked `trusted.overlay.opaque` hide everything below them.

use std::fs::{self, FileTimes, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const OPAQUE: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
#[error("squashing the steps' layers: {what} {}: {source}", path.display())]
pub struct SquashError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn fail(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SquashError + use<> {
    let path = path.to_owned();
    move |source| SquashError { what, path, source }
}

/// Applies `upper` on top of `into` as a later layer would, moving its
/// entries (so `upper` is used up): a later entry replaces an earlier one,
/// directories present in both merge unless the later one is opaque.
pub fn fold(upper: &Path, into: &Path) -> Result<(), SquashError> {
    for entry in fs::read_dir(upper).map_err(fail("reading", upper))? {
        let entry = entry.map_err(fail("reading", upper))?;
        let from = entry.path();
        let to = into.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(fail("reading", &from))?;
        let existing = match fs::symlink_metadata(&to) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail("reading", &to)(e)),
        };
        let merge = meta.is_dir() && !is_opaque(&from)? && existing.as_ref().is_some_and(Metadata::is_dir);
        if merge {
            fold(&from, &to)?;
            copy_dir_metadata(&meta, &to)?;
            continue;
        }
        if let Some(existing) = &existing {
            remove(&to, existing)?;
        }
        fs::rename(&from, &to).map_err(fail("moving", &from))?;
        // A directory made again after an earlier step deleted it must keep
        // hiding what the image had there, as the deletion did.
        if meta.is_dir() && existing.as_ref().is_some_and(is_whiteout) {
            rustix::fs::lsetxattr(&to, OPAQUE, b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| fail("marking opaque", &to)(e.into()))?;
        }
    }
    Ok(())
}

pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> Result<bool, SquashError> {
    let mut value = [0u8; 4];
    match rustix::fs::lgetxattr(dir, OPAQUE, &mut value) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(false),
        Err(e) => Err(fail("reading the xattrs of", dir)(e.into())),
    }
}

fn remove(path: &Path, meta: &Metadata) -> Result<(), SquashError> {
    if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
        .map_err(fail("removing", path))
}

/// The later layer's owner, mode and mtime for a directory both have (set
/// last: moving entries into it changed its mtime).
fn copy_dir_metadata(meta: &Metadata, dir: &Path) -> Result<(), SquashError> {
    std::os::unix::fs::lchown(dir, Some(meta.uid()), Some(meta.gid())).map_err(fail("chown", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(fail("chmod", dir))?;
    let times = FileTimes::new()
        .set_modified(meta.modified().map_err(fail("reading", dir))?)
        .set_accessed(meta.accessed().map_err(fail("reading", dir))?);
    fs::File::open(dir).and_then(|f| f.set_times(times)).map_err(fail("setting times of", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .unwrap();
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn later_layers_win_and_directories_merge() {
        if !root() {
            eprintln!("skipped: whiteouts and trusted xattrs need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (into, second, third) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        for d in [&into, &second, &third] {
            fs::create_dir_all(d.join("etc/kept")).unwrap();
        }
        fs::write(into.join("etc/kept/old"), "1").unwrap();
        fs::write(into.join("etc/replaced"), "1").unwrap();
        fs::create_dir(into.join("gone")).unwrap();
        fs::write(into.join("gone/x"), "1").unwrap();
        fs::create_dir_all(into.join("opaque")).unwrap();
        fs::write(into.join("opaque/hidden"), "1").unwrap();

        fs::write(second.join("etc/kept/new"), "2").unwrap();
        fs::write(second.join("etc/replaced"), "2").unwrap();
        whiteout(&second.join("gone"));
        fs::create_dir(second.join("opaque")).unwrap();
        rustix::fs::lsetxattr(second.join("opaque"), OPAQUE, b"y", rustix::fs::XattrFlags::empty()).unwrap();
        fs::write(second.join("opaque/shown"), "2").unwrap();
        // The third step makes again what the second deleted.
        fs::create_dir(third.join("gone")).unwrap();
        fs::write(third.join("gone/y"), "3").unwrap();

        fold(&second, &into).unwrap();
        assert!(is_whiteout(&fs::symlink_metadata(into.join("gone")).unwrap()));
        fold(&third, &into).unwrap();

        assert_eq!(fs::read_to_string(into.join("etc/kept/old")).unwrap(), "1");
        assert_eq!(fs::read_to_string(into.join("etc/kept/new")).unwrap(), "2");
        assert_eq!(fs::read_to_string(into.join("etc/replaced")).unwrap(), "2");
        assert!(!into.join("opaque/hidden").exists());
        assert!(is_opaque(&into.join("opaque")).unwrap());
        assert!(!into.join("gone/x").exists());
        assert_eq!(fs::read_to_string(into.join("gone/y")).unwrap(), "3");
        assert!(is_opaque(&into.join("gone")).unwrap(), "re-made after a deletion: hides the image's");
        assert!(!is_opaque(&into.join("etc")).unwrap());
    }
}
