//! A userspace reader of a stack of overlayfs layer directories: what a
//! real overlay mount of them would show, without mounting anything.
//!
//! Rules, as overlayfs applies them (with `redirect_dir=off` and
//! `metacopy=off`, which is how the executor mounts): the topmost layer
//! holding a name decides; a 0/0 character device is a whiteout hiding the
//! name in every layer below; a directory merges with the directories of
//! the same name below it until one of them is opaque
//! (`trusted.overlay.opaque=y`), a non-directory or a whiteout.
//!
//! Symlinks are followed inside the root only: an absolute target restarts
//! from the root of the stack and `..` stops at it.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

/// Symlink hops allowed while resolving one path, as Linux allows.
const MAX_SYMLINK_HOPS: usize = 40;
/// The largest file [`MergedReader::read`] loads into memory.
pub const MAX_READ: u64 = 256 << 20;

pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl EntryKind {
    fn of(meta: &Metadata) -> Self {
        let ft = meta.file_type();
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::CharDevice
        } else if ft.is_block_device() {
            EntryKind::BlockDevice
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else {
            EntryKind::File
        }
    }
}

/// Metadata of one path of the merged root fs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path in the root fs (`/etc/os-release`).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including set-uid/gid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    /// Target of a symlink, as stored.
    pub link_target: Option<String>,
    /// Index of the layer dir that provides the entry, bottom first.
    pub layer: usize,
}

/// Whether an entry of a layer dir is an overlayfs whiteout.
pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether a directory of a layer dir is opaque.
pub(crate) fn is_opaque(path: &Path) -> Result<bool> {
    let mut value = [0u8; 4];
    match rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut value) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(false),
        Err(e) => Err(Error::io(format!("reading xattrs of {}", path.display()), e)),
    }
}

/// One name as the merged view resolves it.
#[derive(Debug, Clone)]
struct Found {
    /// Index into `layers` (bottom first).
    layer: usize,
    meta: Metadata,
}

/// A directory of the merged view and the layers that contribute to it
/// (top first).
#[derive(Debug, Clone)]
pub(crate) struct DirState {
    /// Path relative to the root, empty for the root.
    rel: PathBuf,
    found: Found,
    layers: Vec<usize>,
}

impl DirState {
    pub(crate) fn rel(&self) -> &Path {
        &self.rel
    }

    pub(crate) fn meta(&self) -> &Metadata {
        &self.found.meta
    }

    pub(crate) fn layer(&self) -> usize {
        self.found.layer
    }
}

/// A read-only merged view over layer directories.
#[derive(Debug, Clone)]
pub struct MergedReader {
    /// Bottom first.
    layers: Vec<PathBuf>,
}

fn abs(rel: &Path) -> String {
    format!("/{}", rel.to_string_lossy())
}

fn split_abs<'p>(path: &'p str, what: &str) -> Result<Vec<&'p str>> {
    if !path.starts_with('/') {
        return Err(Error::Path { path: path.to_owned(), reason: format!("{what} must be absolute") });
    }
    if path.contains('\0') {
        return Err(Error::Path { path: path.to_owned(), reason: "contains NUL".to_owned() });
    }
    Ok(path.split('/').filter(|c| !c.is_empty() && *c != ".").collect())
}

fn lstat(path: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

impl MergedReader {
    /// A view of `layers`, bottom first (the last one wins), each a
    /// directory in overlayfs lower-dir form.
    pub fn new(layers: Vec<PathBuf>) -> Self {
        MergedReader { layers }
    }

    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    pub(crate) fn real(&self, layer: usize, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() { self.layers[layer].clone() } else { self.layers[layer].join(rel) }
    }

    pub(crate) fn root(&self) -> Result<Option<DirState>> {
        let top_first: Vec<usize> = (0..self.layers.len()).rev().collect();
        let Some(&top) = top_first.first() else { return Ok(None) };
        let meta = lstat(&self.layers[top])?.ok_or_else(|| Error::LayerDir {
            path: self.layers[top].clone(),
            reason: "does not exist".to_owned(),
        })?;
        Ok(Some(DirState { rel: PathBuf::new(), found: Found { layer: top, meta }, layers: top_first }))
    }

    /// The entry `name` of `dir`, and its own contributing layers when it
    /// is a directory.
    fn child(&self, dir: &DirState, name: &OsStr) -> Result<Option<DirState>> {
        let rel = dir.rel.join(name);
        let mut found: Option<Found> = None;
        let mut layers = Vec::new();
        for &i in &dir.layers {
            let real = self.real(i, &rel);
            let Some(meta) = lstat(&real)? else { continue };
            if is_whiteout(&meta) || (found.is_some() && !meta.is_dir()) {
                break;
            }
            let is_dir = meta.is_dir();
            if found.is_none() {
                found = Some(Found { layer: i, meta });
            }
            if !is_dir {
                break;
            }
            layers.push(i);
            if is_opaque(&real)? {
                break;
            }
        }
        Ok(found.map(|found| DirState { rel, found, layers }))
    }

    /// Resolves `path`: symlinks in the middle are always followed, the
    /// final one only with `follow`. `Ok(None)` when it does not exist.
    pub(crate) fn resolve(&self, path: &str, follow: bool) -> Result<Option<DirState>> {
        let comps = split_abs(path, "path")?;
        let Some(root) = self.root()? else { return Ok(None) };
        let mut stack = vec![root];
        let mut pending: Vec<OsString> = comps.iter().rev().map(OsString::from).collect();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let current = stack.last().expect("the root stays on the stack");
            if !current.found.meta.is_dir() {
                return Ok(None);
            }
            let Some(next) = self.child(current, &comp)? else { return Ok(None) };
            if next.found.meta.file_type().is_symlink() && (follow || !pending.is_empty()) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::Path {
                        path: path.to_owned(),
                        reason: "too many levels of symbolic links".to_owned(),
                    });
                }
                let target = fs::read_link(self.real(next.found.layer, &next.rel))
                    .map_err(|e| Error::io(format!("reading link {}", abs(&next.rel)), e))?;
                let target = target.as_os_str().as_bytes();
                if target.starts_with(b"/") {
                    stack.truncate(1);
                }
                pending.extend(
                    target
                        .split(|b| *b == b'/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(|c| OsStr::from_bytes(c).to_owned()),
                );
                continue;
            }
            stack.push(next);
        }
        Ok(stack.pop())
    }

    fn info(&self, state: &DirState) -> Result<FileInfo> {
        let meta = &state.found.meta;
        let kind = EntryKind::of(meta);
        let link_target = if kind == EntryKind::Symlink {
            let target = fs::read_link(self.real(state.found.layer, &state.rel))
                .map_err(|e| Error::io(format!("reading link {}", abs(&state.rel)), e))?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(FileInfo {
            path: abs(&state.rel),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: meta.mtime(),
            link_target,
            layer: state.found.layer,
        })
    }

    /// Metadata of `path` without following a final symlink; `None` when
    /// it does not exist.
    pub fn stat(&self, path: &str) -> Result<Option<FileInfo>> {
        self.resolve(path, false)?.map(|s| self.info(&s)).transpose()
    }

    /// Whether `path` exists, following symlinks.
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.resolve(path, true)?.is_some())
    }

    /// `path` with every symlink resolved inside the root, and its metadata
    /// (`None` when the resolved path does not exist).
    pub fn canonicalize(&self, path: &str) -> Result<Option<FileInfo>> {
        self.resolve(path, true)?.map(|s| self.info(&s)).transpose()
    }

    /// The real file behind `path` (following symlinks) in one of the layer
    /// dirs, for callers that need to open it.
    pub fn real_path(&self, path: &str) -> Result<Option<PathBuf>> {
        Ok(self.resolve(path, true)?.map(|s| self.real(s.found.layer, &s.rel)))
    }

    /// The contents of the regular file `path` (following symlinks).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let state = self
            .resolve(path, true)?
            .ok_or_else(|| Error::Path { path: path.to_owned(), reason: "does not exist".to_owned() })?;
        let meta = &state.found.meta;
        if !meta.is_file() {
            return Err(Error::Path { path: path.to_owned(), reason: "not a regular file".to_owned() });
        }
        if meta.size() > MAX_READ {
            return Err(Error::Path {
                path: path.to_owned(),
                reason: format!("{} bytes is too large to read", meta.size()),
            });
        }
        let real = self.real(state.found.layer, &state.rel);
        let mut data = Vec::with_capacity(usize::try_from(meta.size()).unwrap_or(0));
        fs::File::open(&real)
            .and_then(|f| f.take(MAX_READ + 1).read_to_end(&mut data))
            .map_err(|e| Error::io(format!("reading {path}"), e))?;
        Ok(data)
    }

    /// The merged entries of directory `path` (following symlinks), sorted
    /// by name.
    pub fn list(&self, path: &str) -> Result<Vec<FileInfo>> {
        let state = self
            .resolve(path, true)?
            .ok_or_else(|| Error::Path { path: path.to_owned(), reason: "does not exist".to_owned() })?;
        if !state.found.meta.is_dir() {
            return Err(Error::Path { path: path.to_owned(), reason: "not a directory".to_owned() });
        }
        self.children(&state)?.iter().map(|c| self.info(c)).collect()
    }

    /// The visible children of a merged directory, sorted by name.
    pub(crate) fn children(&self, dir: &DirState) -> Result<Vec<DirState>> {
        let mut names: BTreeSet<OsString> = BTreeSet::new();
        for &i in &dir.layers {
            let real = self.real(i, &dir.rel);
            let entries =
                fs::read_dir(&real).map_err(|e| Error::io(format!("listing {}", real.display()), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("listing {}", real.display()), e))?;
                names.insert(entry.file_name());
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            if let Some(child) = self.child(dir, name)? {
                out.push(child);
            }
        }
        Ok(out)
    }

    /// Every path matching `pattern` (`*`, `?` and `[...]` within one
    /// component, `{a,b}` alternatives, `**` across components), sorted.
    /// Matching is on the paths as stored: symlinked directories are not
    /// descended into, as the image crate's merged view does.
    pub fn glob(&self, pattern: &str) -> Result<Vec<FileInfo>> {
        let bad = |reason: String| Error::BadGlob { pattern: pattern.to_owned(), reason };
        let segments = split_abs(pattern, "glob").map_err(|_| bad("must be absolute".to_owned()))?;
        let full = compile(pattern).map_err(bad)?;
        let mut compiled = Vec::with_capacity(segments.len());
        for seg in &segments {
            compiled.push(if seg.contains("**") {
                Segment::Recursive
            } else if seg.contains(['*', '?', '[', '{', '\\']) {
                Segment::Pattern(compile(seg).map_err(bad)?)
            } else {
                Segment::Literal((*seg).to_owned())
            });
        }
        let mut out = Vec::new();
        if let Some(root) = self.root()? {
            if compiled.is_empty() {
                out.push(self.info(&root)?);
            } else {
                self.glob_walk(&root, &compiled, &full, &mut out)?;
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    fn glob_walk(
        &self,
        dir: &DirState,
        segments: &[Segment],
        full: &GlobMatcher,
        out: &mut Vec<FileInfo>,
    ) -> Result<()> {
        let Some((segment, rest)) = segments.split_first() else { return Ok(()) };
        let matched: Vec<DirState> = match segment {
            Segment::Literal(name) => self.child(dir, OsStr::new(name))?.into_iter().collect(),
            Segment::Pattern(m) => self
                .children(dir)?
                .into_iter()
                .filter(|c| c.rel.file_name().is_some_and(|n| m.is_match(n)))
                .collect(),
            Segment::Recursive => {
                // Everything below (and the dir itself, for `/a/**/b`
                // matching `/a/b`) is a candidate for the whole pattern.
                let mut todo = vec![dir.clone()];
                while let Some(d) = todo.pop() {
                    if !d.rel.as_os_str().is_empty() && full.is_match(Path::new("/").join(&d.rel)) {
                        out.push(self.info(&d)?);
                    }
                    if d.found.meta.is_dir() {
                        todo.extend(self.children(&d)?);
                    }
                }
                return Ok(());
            }
        };
        for m in matched {
            if rest.is_empty() {
                out.push(self.info(&m)?);
            } else if m.found.meta.is_dir() {
                self.glob_walk(&m, rest, full, out)?;
            }
        }
        Ok(())
    }

    /// Every entry below (and including) `path`, depth first, sorted by
    /// path; symlinks are listed, not followed.
    pub fn walk(&self, path: &str) -> Result<Vec<FileInfo>> {
        let Some(start) = self.resolve(path, true)? else {
            return Err(Error::Path { path: path.to_owned(), reason: "does not exist".to_owned() });
        };
        let mut out = Vec::new();
        let mut todo = vec![start];
        while let Some(d) = todo.pop() {
            out.push(self.info(&d)?);
            if d.found.meta.is_dir() {
                todo.extend(self.children(&d)?);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

enum Segment {
    Literal(String),
    Pattern(GlobMatcher),
    Recursive,
}

fn compile(pattern: &str) -> std::result::Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}
