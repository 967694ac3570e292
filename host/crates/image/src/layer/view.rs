//! A read-only merged view of one platform's root file system, built from an
//! index of every layer's tar entries (one streaming pass per layer, nothing
//! unpacked to disk). Whiteouts and opaque directories are applied the way
//! the OCI image spec describes; file contents are fetched on demand by
//! streaming the owning layer again up to the entry's offset.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;

use super::{OPAQUE_MARKER, WHITEOUT_PREFIX, clean_entry_path, drain, open_tar_stream};
use crate::error::{Error, IoContext, Result};
use crate::media::Compression;
use crate::model::{Layer, PlatformImage};
use crate::transport::ImageSource;

/// Symlink hops allowed while resolving a path, as Linux allows.
const MAX_SYMLINK_HOPS: usize = 40;
/// Files larger than this are not read into memory by [`RootFs::read`].
pub const MAX_READ: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// Metadata of one path in the merged view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Absolute path in the image (`/etc/os-release`).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including set-uid/gid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    /// Symlink target, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Index of the layer that provides this entry.
    pub layer: usize,
}

/// Where a regular file's bytes are: layer and offset in its tar stream.
#[derive(Debug, Clone, Copy)]
struct DataRef {
    layer: usize,
    offset: u64,
    size: u64,
}

#[derive(Debug, Clone)]
struct Node {
    info: FileInfo,
    data: Option<DataRef>,
}

/// The merged root fs of one platform image.
pub struct RootFs {
    source: Arc<dyn ImageSource>,
    layers: Vec<Layer>,
    /// Keyed by absolute path; "/" is the root.
    nodes: BTreeMap<String, Node>,
}

impl std::fmt::Debug for RootFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootFs")
            .field("layers", &self.layers.len())
            .field("entries", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

fn abs(rel: &str) -> String {
    format!("/{rel}")
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

/// Removes `path` and everything below it.
fn remove_tree(nodes: &mut BTreeMap<String, Node>, path: &str) {
    nodes.remove(path);
    remove_children(nodes, path);
}

fn remove_children(nodes: &mut BTreeMap<String, Node>, dir: &str) {
    let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
    let doomed: Vec<String> = nodes
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        nodes.remove(&k);
    }
}

impl RootFs {
    /// Indexes every layer of `image` from `source`.
    pub fn open(source: Arc<dyn ImageSource>, image: &PlatformImage) -> Result<Self> {
        let mut fs = RootFs { source, layers: image.layers.clone(), nodes: BTreeMap::new() };
        fs.nodes.insert(
            "/".to_owned(),
            Node {
                info: FileInfo {
                    path: "/".to_owned(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    mtime: 0,
                    link_target: None,
                    layer: 0,
                },
                data: None,
            },
        );
        for i in 0..fs.layers.len() {
            fs.apply_layer(i)?;
        }
        Ok(fs)
    }

    fn apply_layer(&mut self, index: usize) -> Result<()> {
        let layer = self.layers[index].clone();
        let name = layer.desc.digest.to_string();
        let mut stream = open_tar_stream(self.source.as_ref(), &layer)?;
        let mut opaque = Vec::new();
        let mut whiteouts = Vec::new();
        let mut added: Vec<Node> = Vec::new();
        // Regular files of this layer by path, to resolve hard links.
        let mut files: HashMap<String, DataRef> = HashMap::new();
        {
            let mut archive = tar::Archive::new(&mut stream);
            let corrupt = |e: io::Error| match Error::io("", e) {
                Error::Io { source, .. } => {
                    Error::CorruptLayer { layer: name.clone(), reason: source.to_string() }
                }
                ours => ours,
            };
            for entry in archive.entries().map_err(corrupt)? {
                let entry = entry.map_err(corrupt)?;
                let rel = clean_entry_path(&entry.path_bytes(), &name)?;
                if rel.is_empty() {
                    continue; // the root itself
                }
                let path = abs(&rel);
                let (dir, base) = (parent_of(&path).to_owned(), &path[parent_of(&path).len()..]);
                let base = base.trim_start_matches('/');
                if base == OPAQUE_MARKER {
                    opaque.push(dir);
                    continue;
                }
                if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
                    whiteouts.push(join(&dir, hidden));
                    continue;
                }
                let header = entry.header();
                let kind = header.entry_type();
                let mode = header.mode().map_err(corrupt)? & 0o7777;
                let uid = header.uid().map_err(corrupt)?;
                let gid = header.gid().map_err(corrupt)?;
                let mtime = header.mtime().map_err(corrupt)?;
                let size = entry.size();
                let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
                let offset = entry.raw_file_position();
                let (kind, data) = match kind {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let data = DataRef { layer: index, offset, size };
                        files.insert(path.clone(), data);
                        (EntryKind::File, Some(data))
                    }
                    tar::EntryType::Link => {
                        let target = abs(&clean_entry_path(link.as_deref().unwrap_or("").as_bytes(), &name)?);
                        let data = files.get(&target).copied().or_else(|| {
                            // A link to a file of a lower layer.
                            self.nodes.get(&target).and_then(|n| n.data)
                        });
                        let Some(data) = data else {
                            return Err(Error::HostileEntry {
                                layer: name,
                                entry: path,
                                reason: format!("hard link to {target}, which is not a regular file"),
                            });
                        };
                        files.insert(path.clone(), data);
                        (EntryKind::File, Some(data))
                    }
                    tar::EntryType::Directory => (EntryKind::Dir, None),
                    tar::EntryType::Symlink => (EntryKind::Symlink, None),
                    tar::EntryType::Char => (EntryKind::CharDevice, None),
                    tar::EntryType::Block => (EntryKind::BlockDevice, None),
                    tar::EntryType::Fifo => (EntryKind::Fifo, None),
                    other => {
                        return Err(Error::CorruptLayer {
                            layer: name,
                            reason: format!("entry {path} has unsupported tar type {other:?}"),
                        });
                    }
                };
                let size = data.map_or(0, |d| d.size);
                added.push(Node {
                    info: FileInfo {
                        path,
                        kind,
                        mode,
                        uid,
                        gid,
                        size,
                        mtime,
                        link_target: if kind == EntryKind::Symlink { link } else { None },
                        layer: index,
                    },
                    data,
                });
            }
        }
        drain(&mut stream, &name)?;
        // Whiteouts and opaque markers hide lower layers only, so apply them
        // before this layer's own entries.
        for dir in &opaque {
            remove_children(&mut self.nodes, dir);
        }
        for path in &whiteouts {
            remove_tree(&mut self.nodes, path);
        }
        for node in added {
            if node.info.kind != EntryKind::Dir {
                remove_children(&mut self.nodes, &node.info.path);
            }
            self.ensure_parents(&node.info.path, index);
            self.nodes.insert(node.info.path.clone(), node);
        }
        Ok(())
    }

    /// Tar streams may omit parent directories; the view makes them up
    /// (and replaces a lower non-directory in the way, as extraction would).
    fn ensure_parents(&mut self, path: &str, layer: usize) {
        let mut missing = Vec::new();
        let mut dir = parent_of(path);
        while dir != "/" {
            match self.nodes.get(dir) {
                Some(n) if n.info.kind == EntryKind::Dir => break,
                _ => missing.push(dir.to_owned()),
            }
            dir = parent_of(dir);
        }
        for dir in missing {
            self.nodes.insert(
                dir.clone(),
                Node {
                    info: FileInfo {
                        path: dir,
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        size: 0,
                        mtime: 0,
                        link_target: None,
                        layer,
                    },
                    data: None,
                },
            );
        }
    }

    fn not_found(&self, path: &str) -> Error {
        Error::Path {
            path: path.into(),
            reason: format!("no such file or directory in {}", self.source.origin()),
        }
    }

    /// Resolves `path` through symlinks in the image (absolute targets are
    /// relative to the image root; `..` never goes above it).
    fn resolve(&self, path: &str, follow_last: bool) -> Result<String> {
        let mut pending: Vec<String> =
            path.split('/').filter(|p| !p.is_empty()).rev().map(str::to_owned).collect();
        let mut current = "/".to_owned();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    current = parent_of(&current).to_owned();
                    continue;
                }
                _ => {}
            }
            let next = join(&current, &part);
            let node = self.nodes.get(&next).ok_or_else(|| self.not_found(path))?;
            let is_last = pending.is_empty();
            if node.info.kind == EntryKind::Symlink && (!is_last || follow_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::Path {
                        path: path.into(),
                        reason: "too many levels of symbolic links".to_owned(),
                    });
                }
                let target = node.info.link_target.clone().unwrap_or_default();
                if target.starts_with('/') {
                    "/".clone_into(&mut current);
                }
                pending.extend(target.split('/').filter(|p| !p.is_empty()).rev().map(str::to_owned));
            } else {
                current = next;
            }
        }
        Ok(current)
    }

    /// Metadata of `path` without following a final symlink; `None` when it
    /// does not exist.
    pub fn stat(&self, path: &str) -> Option<FileInfo> {
        let resolved = self.resolve(path, false).ok()?;
        self.nodes.get(&resolved).map(|n| n.info.clone())
    }

    /// Whether `path` exists (following symlinks).
    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path, true).is_ok_and(|p| self.nodes.contains_key(&p))
    }

    /// The entries of directory `path` (following symlinks), sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<FileInfo>> {
        let dir = self.resolve(path, true)?;
        let node = self.nodes.get(&dir).ok_or_else(|| self.not_found(path))?;
        if node.info.kind != EntryKind::Dir {
            return Err(Error::Path { path: path.into(), reason: "not a directory".to_owned() });
        }
        let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
        Ok(self
            .nodes
            .range::<str, _>((Bound::Excluded(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(_, n)| n.info.clone())
            .collect())
    }

    /// Every path matching a glob (`*` and `?` within one component,
    /// `[...]` classes, `**` across components), sorted. Symlinked
    /// directories are not descended into.
    pub fn glob(&self, pattern: &str) -> Result<Vec<FileInfo>> {
        let matcher = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::InvalidReference {
                input: pattern.to_owned(),
                reason: format!("bad glob: {e}"),
            })?
            .compile_matcher();
        // Only paths under the literal prefix can match.
        let literal_end = pattern.find(['*', '?', '[', '{', '\\']).unwrap_or(pattern.len());
        let prefix = &pattern[..pattern[..literal_end].rfind('/').map_or(0, |i| i + 1)];
        Ok(self
            .nodes
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| matcher.is_match(k.as_str()))
            .map(|(_, n)| n.info.clone())
            .collect())
    }

    /// All entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = &FileInfo> {
        self.nodes.values().map(|n| &n.info)
    }

    /// The content of a regular file (following symlinks).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.read_many(&[path]).pop().expect("one result per path").1
    }

    /// Contents of several files with one pass over each layer involved.
    pub fn read_many(&self, paths: &[&str]) -> Vec<(String, Result<Vec<u8>>)> {
        let mut results: Vec<(String, Result<Vec<u8>>)> = Vec::with_capacity(paths.len());
        let mut wanted: BTreeMap<usize, Vec<(u64, u64, usize)>> = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let located = self.resolve(path, true).and_then(|p| {
                let node = self.nodes.get(&p).ok_or_else(|| self.not_found(path))?;
                node.data.ok_or_else(|| Error::Path {
                    path: (*path).into(),
                    reason: "not a regular file".to_owned(),
                })
            });
            match located {
                Ok(d) if d.size > MAX_READ => results.push((
                    (*path).to_owned(),
                    Err(Error::Path {
                        path: (*path).into(),
                        reason: format!("{} bytes is too large to read", d.size),
                    }),
                )),
                Ok(d) => {
                    wanted.entry(d.layer).or_default().push((d.offset, d.size, i));
                    results.push(((*path).to_owned(), Ok(Vec::new())));
                }
                Err(e) => results.push(((*path).to_owned(), Err(e))),
            }
        }
        for (layer, mut spans) in wanted {
            spans.sort_unstable();
            if let Err(e) = self.read_spans(layer, &spans, &mut results) {
                let msg = e.to_string();
                for &(_, _, i) in &spans {
                    results[i].1 =
                        Err(Error::Path { path: results[i].0.clone().into(), reason: msg.clone() });
                }
            }
        }
        results
    }

    fn read_spans(
        &self,
        layer: usize,
        spans: &[(u64, u64, usize)],
        out: &mut [(String, Result<Vec<u8>>)],
    ) -> Result<()> {
        let l = &self.layers[layer];
        // An uncompressed layer on local disk is read with seeks; the index
        // pass already verified its digest.
        if l.compression == Compression::None
            && let Some(local) = self.source.local_blob(&l.desc)
        {
            let mut file =
                std::fs::File::open(&local.path).ctx(|| format!("opening {}", local.path.display()))?;
            for &(offset, size, i) in spans {
                file.seek(SeekFrom::Start(local.offset + offset))
                    .ctx(|| format!("seeking in {}", local.path.display()))?;
                let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                (&mut file)
                    .take(size)
                    .read_to_end(&mut buf)
                    .ctx(|| format!("reading {}", local.path.display()))?;
                out[i].1 = Ok(buf);
            }
            return Ok(());
        }
        let what = l.desc.digest.to_string();
        let mut stream = open_tar_stream(self.source.as_ref(), l)?;
        let mut position = 0u64;
        for &(offset, size, i) in spans {
            if offset < position {
                // Two paths sharing data (hard links): copy the earlier read.
                let earlier = spans.iter().find(|s| s.0 == offset).map(|s| s.2).expect("same offset seen");
                out[i].1 = match &out[earlier].1 {
                    Ok(b) => Ok(b.clone()),
                    Err(e) => Err(Error::Path { path: out[i].0.clone().into(), reason: e.to_string() }),
                };
                continue;
            }
            io::copy(&mut (&mut stream).take(offset - position), &mut io::sink())
                .map_err(|e| Error::io(format!("reading layer {what}"), e))?;
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            (&mut stream)
                .take(size)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(format!("reading layer {what}"), e))?;
            if (buf.len() as u64) < size {
                return Err(Error::CorruptLayer {
                    layer: what,
                    reason: "stream ended inside a file".to_owned(),
                });
            }
            position = offset + size;
            out[i].1 = Ok(buf);
        }
        Ok(())
    }
}
