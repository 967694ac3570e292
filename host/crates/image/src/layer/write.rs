//! The layer writer: a deterministic tar of a directory tree (or of an
//! overlayfs upper dir, converted to OCI whiteouts), compressed, with the
//! diff_id and the blob digest computed in the same streaming pass.
//!
//! Determinism: entries sorted bytewise by path, numeric owners only (no
//! user/group names), mtimes clamped, no atime/ctime, fixed PAX header names,
//! xattrs sorted, fixed-size independent gzip blocks. The same tree gives
//! the same digest on any machine and any number of threads.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::pargz::ParGzEncoder;
use super::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::media::Compression;

/// What the directory handed to the writer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerSource {
    /// A plain tree: every file in it goes into the layer.
    #[default]
    Tree,
    /// An overlayfs upper dir: 0/0 character devices are whiteouts and
    /// directories with `trusted.overlay.opaque` or `user.overlay.opaque`
    /// set to `y` are opaque.
    OverlayUpper,
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub compression: Compression,
    /// gzip 1–9 (default 6) or zstd 1–19 (default 3).
    pub level: Option<u32>,
    /// Entries newer than this (seconds since the epoch) get this mtime.
    pub mtime_clamp: Option<u64>,
    /// Paths to leave out, as absolute globs (`/var/lib/apt/lists/**`,
    /// `/var/cache/apt/*.bin`); a matching directory drops its whole tree.
    pub exclude: Vec<String>,
    pub source: LayerSource,
    /// Compression threads; 0 means one per available core.
    pub threads: usize,
    /// Set by the caller (Ctrl-C, a time limit) to stop the writer: it is
    /// checked before each entry and each MiB of a file, and the write then
    /// fails with [`Error::Cancelled`], leaving no file behind.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Gzip,
            level: None,
            mtime_clamp: None,
            exclude: Vec::new(),
            source: LayerSource::Tree,
            threads: 0,
            cancel: None,
        }
    }
}

/// Layers up to this many uncompressed bytes are gzipped at level 1.
pub const SMALL_LAYER: u64 = 128 << 20;

/// The gzip level and worker threads for a layer of about `bytes`
/// uncompressed. A small layer (a patch of a few packages) gets level 1:
/// about three times as fast as 6 for a blob a tenth or so larger, which a
/// small layer barely notices in transfer; larger ones keep 6. Threads: one
/// per [`super::pargz::BLOCK_SIZE`] block, at most `cores`, so a tiny layer
/// starts no workers. The bytes depend on the level alone (blocks are fixed
/// in size), so the same tree still gives the same digest.
pub fn gzip_for_size(bytes: u64, cores: usize) -> (u32, usize) {
    let level = if bytes <= SMALL_LAYER { 1 } else { 6 };
    let blocks = usize::try_from(bytes.div_ceil(super::pargz::BLOCK_SIZE as u64)).unwrap_or(usize::MAX);
    (level, blocks.clamp(1, cores.max(1)))
}

/// A layer written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayer {
    pub path: PathBuf,
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    pub compression: Compression,
    pub entries: u64,
}

/// Digests and sizes of a layer written to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub tar_size: u64,
    pub entries: u64,
}

/// Writes the layer of `root` to `path` (through a temp file in the same
/// directory and a rename).
pub fn write_layer(root: &Path, path: &Path, options: &WriteOptions) -> Result<WrittenLayer> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".caulk-layer-")
        .permissions(crate::transport::oci_layout::output_permissions())
        .tempfile_in(dir)
        .ctx(|| format!("creating a temp file in {}", dir.display()))?;
    let file = tmp.reopen().ctx(|| format!("opening {}", tmp.path().display()))?;
    let digests = write_layer_to(root, BufWriter::with_capacity(1 << 20, file), options)?;
    tmp.persist(path).map_err(|e| Error::io(format!("renaming into {}", path.display()), e.error))?;
    Ok(WrittenLayer {
        path: path.to_owned(),
        digest: digests.digest,
        diff_id: digests.diff_id,
        size: digests.size,
        compression: options.compression,
        entries: digests.entries,
    })
}

enum Compressor<W: Write> {
    None(W),
    Gzip(ParGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// Writes the layer of `root` to `out`.
pub fn write_layer_to<W: Write>(root: &Path, out: W, options: &WriteOptions) -> Result<LayerDigests> {
    let meta = fs::symlink_metadata(root).ctx(|| format!("reading {}", root.display()))?;
    if !meta.is_dir() {
        return Err(Error::Path { path: root.to_owned(), reason: "not a directory".to_owned() });
    }
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        options.threads
    };
    let blob = HashingWriter::new(out);
    let compressor = match options.compression {
        Compression::None => Compressor::None(blob),
        Compression::Gzip => Compressor::Gzip(
            ParGzEncoder::new(blob, options.level.unwrap_or(6).clamp(1, 9), threads)
                .ctx(|| "starting gzip".to_owned())?,
        ),
        Compression::Zstd => {
            let level = i32::try_from(options.level.unwrap_or(3).clamp(1, 19)).expect("small");
            let mut encoder =
                zstd::stream::write::Encoder::new(blob, level).ctx(|| "starting zstd".to_owned())?;
            // zstd's multi-threaded mode cuts the input into jobs of a size
            // that depends on the level, not on the worker count, so the
            // output is the same for any number of threads (a test checks).
            let workers = u32::try_from(threads).unwrap_or(1);
            encoder.multithread(workers).ctx(|| "starting zstd workers".to_owned())?;
            Compressor::Zstd(encoder)
        }
    };
    let exclude = build_globs(&options.exclude)?;
    let mut tar = TarWriter { out: HashingWriter::new(compressor), clamp: options.mtime_clamp, entries: 0 };
    let mut walker =
        Walker { root: root.to_owned(), options, exclude, links: HashMap::new(), buf: vec![0; 1 << 20] };
    walker.walk_dir(&mut tar, root, "")?;
    tar.out.write_all(&[0u8; 1024]).ctx(|| "writing the layer".to_owned())?;
    let entries = tar.entries;
    let (compressor, diff_id, tar_size) = tar.out.finish();
    let blob = compressor.finish().ctx(|| "finishing compression".to_owned())?;
    let (mut inner, digest, size) = blob.finish();
    inner.flush().ctx(|| "writing the layer".to_owned())?;
    Ok(LayerDigests { digest, diff_id, size, tar_size, entries })
}

/// The bytes of the regular files a layer of `root` would carry: what
/// `exclude` drops is not counted, nor whiteouts, nor a hard-linked file
/// twice. What [`gzip_for_size`] should be given, so the level follows
/// what is written.
pub fn content_size(root: &Path, exclude: &[String]) -> Result<u64> {
    fn walk(dir: &Path, rel: &str, exclude: &GlobSet, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
        let mut total = 0u64;
        for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let child_rel = format!("{rel}/{}", name.to_string_lossy());
            if exclude.is_match(&child_rel) {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).ctx(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                total = total.saturating_add(walk(&path, &child_rel, exclude, seen)?);
            } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
                total = total.saturating_add(meta.len());
            }
        }
        Ok(total)
    }
    let exclude = build_globs(exclude)?;
    walk(root, "", &exclude, &mut HashSet::new())
}

fn build_globs(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob =
            GlobBuilder::new(p).literal_separator(true).backslash_escape(true).build().map_err(|e| {
                Error::InvalidReference { input: p.clone(), reason: format!("bad glob: {e}") }
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| Error::InvalidReference { input: patterns.join(" "), reason: e.to_string() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    HardLink,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

struct EntryHeader<'a> {
    name: &'a str,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: Option<&'a str>,
    device: (u32, u32),
    xattrs: &'a [(String, Vec<u8>)],
}

#[derive(Clone, Copy)]
struct Raw<'a> {
    name: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    device: (u32, u32),
}

struct TarWriter<W: Write> {
    out: HashingWriter<W>,
    clamp: Option<u64>,
    entries: u64,
}

/// Writes `value` as a NUL-terminated octal number filling `field`;
/// `false` if it does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // The length prefix counts itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl<W: Write> TarWriter<W> {
    fn raw_header(&mut self, r: &Raw<'_>) -> io::Result<()> {
        let Raw { name, flag, mode, uid, gid, size, mtime, link, device } = *r;
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], uid);
        octal(&mut h[116..124], gid);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], mtime);
        h[156] = flag;
        let l = link.len().min(100);
        h[157..157 + l].copy_from_slice(&link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if matches!(flag, b'3' | b'4') {
            octal(&mut h[329..337], u64::from(device.0));
            octal(&mut h[337..345], u64::from(device.1));
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        h[155] = b' ';
        self.out.write_all(&h)
    }

    fn header(&mut self, e: &EntryHeader<'_>) -> io::Result<()> {
        let mtime = self.clamp.map_or(e.mtime, |c| e.mtime.min(c));
        let mut pax = Vec::new();
        let mut probe = [0u8; 12];
        if e.name.len() > 100 {
            pax_record(&mut pax, "path", e.name.as_bytes());
        }
        if let Some(link) = e.link
            && link.len() > 100
        {
            pax_record(&mut pax, "linkpath", link.as_bytes());
        }
        let (mut uid, mut gid, mut size) = (e.uid, e.gid, e.size);
        if !octal(&mut probe[..8], uid) {
            pax_record(&mut pax, "uid", uid.to_string().as_bytes());
            uid = 0;
        }
        if !octal(&mut probe[..8], gid) {
            pax_record(&mut pax, "gid", gid.to_string().as_bytes());
            gid = 0;
        }
        if !octal(&mut probe, size) {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
            size = 0;
        }
        for (name, value) in e.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{name}"), value);
        }
        if !pax.is_empty() {
            self.raw_header(&Raw {
                name: b"././@PaxHeader",
                flag: b'x',
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: pax.len() as u64,
                mtime: 0,
                link: b"",
                device: (0, 0),
            })?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.entries += 1;
        self.raw_header(&Raw {
            name: e.name.as_bytes(),
            flag: e.kind.flag(),
            mode: e.mode,
            uid,
            gid,
            size,
            mtime,
            link: e.link.unwrap_or("").as_bytes(),
            device: e.device,
        })
    }

    fn pad(&mut self, written: u64) -> io::Result<()> {
        let rem = usize::try_from(written % 512).expect("< 512");
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

struct Walker<'a> {
    root: PathBuf,
    options: &'a WriteOptions,
    exclude: GlobSet,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), String>,
    buf: Vec<u8>,
}

const OVERLAY_OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let err = |e: rustix::io::Errno| Error::io(format!("reading xattrs of {}", path.display()), e.into());
    let mut names = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 256];
        let n = loop {
            match rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(rustix::io::Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(err(e)),
            }
        };
        if n != usize::MAX {
            value.truncate(n);
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

impl Walker<'_> {
    fn check_cancel(&self) -> Result<()> {
        if self.options.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err(Error::Cancelled { what: format!("writing the layer of {}", self.root.display()) });
        }
        Ok(())
    }

    fn walk_dir<W: Write>(&mut self, tar: &mut TarWriter<W>, dir: &Path, rel: &str) -> Result<()> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
            .ctx(|| format!("listing {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(|| format!("listing {}", dir.display()))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let Some(name) = name.to_str() else {
                return Err(Error::Path {
                    path: dir.join(&name),
                    reason: "file name is not UTF-8".to_owned(),
                });
            };
            let child_rel = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            if self.exclude.is_match(format!("/{child_rel}")) {
                continue;
            }
            self.check_cancel()?;
            self.entry(tar, &dir.join(name), &child_rel)?;
        }
        Ok(())
    }

    fn entry<W: Write>(&mut self, tar: &mut TarWriter<W>, path: &Path, rel: &str) -> Result<()> {
        let io_err = |e: io::Error| Error::io(format!("writing {} into the layer", path.display()), e);
        let meta = fs::symlink_metadata(path).ctx(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        let overlay = self.options.source == LayerSource::OverlayUpper;
        if overlay && ft.is_char_device() && meta.rdev() == 0 {
            let (parent, base) = rel.rsplit_once('/').map_or(("", rel), |(p, b)| (p, b));
            let name = if parent.is_empty() {
                format!("{WHITEOUT_PREFIX}{base}")
            } else {
                format!("{parent}/{WHITEOUT_PREFIX}{base}")
            };
            return tar
                .header(&EntryHeader {
                    name: &name,
                    kind: Kind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    mtime: meta.mtime().max(0).cast_unsigned(),
                    link: None,
                    device: (0, 0),
                    xattrs: &[],
                })
                .map_err(io_err);
        }
        let mut xattrs = read_xattrs(path)?;
        let mut opaque = false;
        if overlay {
            if let Some((name, _)) = xattrs
                .iter()
                .find(|(n, _)| n.ends_with(".overlay.redirect") || n.ends_with(".overlay.metacopy"))
            {
                return Err(Error::Path {
                    path: path.to_owned(),
                    reason: format!(
                        "overlay xattr {name} cannot be expressed in a layer; mount with redirect_dir=off,metacopy=off"
                    ),
                });
            }
            opaque = xattrs.iter().any(|(n, v)| OVERLAY_OPAQUE.contains(&n.as_str()) && v == b"y");
        }
        // What unpacking would apply and nothing more: host security labels
        // say nothing about the image, overlay xattrs are the mount's own.
        xattrs.retain(|(n, _)| super::xattr_is_kept(n));
        let mode = meta.mode() & 0o7777;
        let mtime = meta.mtime().max(0).cast_unsigned();
        let (uid, gid) = (u64::from(meta.uid()), u64::from(meta.gid()));
        let base = EntryHeader {
            name: rel,
            kind: Kind::File,
            mode,
            uid,
            gid,
            size: 0,
            mtime,
            link: None,
            device: (0, 0),
            xattrs: &xattrs,
        };
        if ft.is_dir() {
            let name = format!("{rel}/");
            tar.header(&EntryHeader { name: &name, kind: Kind::Dir, ..base }).map_err(io_err)?;
            if opaque {
                let marker = format!("{rel}/{OPAQUE_MARKER}");
                tar.header(&EntryHeader {
                    name: &marker,
                    kind: Kind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    xattrs: &[],
                    ..base
                })
                .map_err(io_err)?;
            }
            return self.walk_dir(tar, path, rel);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).ctx(|| format!("reading {}", path.display()))?;
            let target = target.to_str().ok_or_else(|| Error::Path {
                path: path.to_owned(),
                reason: "symlink target is not UTF-8".to_owned(),
            })?;
            return tar
                .header(&EntryHeader { kind: Kind::Symlink, link: Some(target), ..base })
                .map_err(io_err);
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                return tar
                    .header(&EntryHeader { kind: Kind::HardLink, link: Some(&first), xattrs: &[], ..base })
                    .map_err(io_err);
            }
            self.links.insert(key, rel.to_owned());
        }
        if ft.is_file() {
            let size = meta.len();
            tar.header(&EntryHeader { size, ..base }).map_err(io_err)?;
            let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
            let mut copied = 0u64;
            loop {
                let n = file.read(&mut self.buf).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                let n = n.min(usize::try_from(size - copied).unwrap_or(usize::MAX));
                tar.out.write_all(&self.buf[..n]).map_err(io_err)?;
                copied += n as u64;
                if copied == size {
                    break;
                }
                self.check_cancel()?;
            }
            if copied != size {
                return Err(Error::Path {
                    path: path.to_owned(),
                    reason: format!("file shrank from {size} to {copied} bytes while being written"),
                });
            }
            return tar.pad(size).map_err(io_err);
        }
        let rdev = meta.rdev();
        let device = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let kind = if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            // Sockets cannot live in a layer.
            return Ok(());
        };
        tar.header(&EntryHeader { kind, device, ..base }).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_layers_get_the_fast_level_and_few_threads() {
        assert_eq!(gzip_for_size(0, 4), (1, 1));
        assert_eq!(gzip_for_size(3 << 20, 4), (1, 3));
        assert_eq!(gzip_for_size((3 << 20) + 1, 8), (1, 4));
        assert_eq!(gzip_for_size(SMALL_LAYER, 2), (1, 2));
        assert_eq!(gzip_for_size(SMALL_LAYER + 1, 2), (6, 2));
        assert_eq!(gzip_for_size(u64::MAX, 0), (6, 1));
    }

    /// Files of pseudo-random (incompressible) bytes.
    fn tree(files: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for (name, len) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes: Vec<u8> = (0..*len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            fs::write(path, bytes).unwrap();
        }
        dir
    }

    #[test]
    fn the_size_counts_what_the_layer_carries() {
        let dir = tree(&[("usr/lib/a", 3000), ("usr/lib/b", 5000), ("var/lib/apt/lists/big", 1 << 20)]);
        fs::hard_link(dir.path().join("usr/lib/a"), dir.path().join("usr/lib/a2")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("usr/lib/link")).unwrap();
        // The dropped index is not counted, the hard link once.
        assert_eq!(content_size(dir.path(), &["/var/lib/apt/lists/**".to_owned()]).unwrap(), 8000);
        assert_eq!(content_size(dir.path(), &[]).unwrap(), 8000 + (1 << 20));
        // What is counted is what is written.
        let options = WriteOptions {
            exclude: vec!["/var/lib/apt/lists/**".to_owned()],
            compression: Compression::None,
            ..WriteOptions::default()
        };
        let written = write_layer_to(dir.path(), io::sink(), &options).unwrap();
        assert!(written.tar_size < 8000 + 16 * 1024, "{}", written.tar_size);
    }

    /// A sink that sets the cancel flag once `after` bytes went through.
    struct CancelAfter {
        seen: usize,
        after: usize,
        flag: Arc<AtomicBool>,
    }

    impl Write for CancelAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.seen += buf.len();
            if self.seen >= self.after {
                self.flag.store(true, Ordering::SeqCst);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_cancelled_write_stops_mid_layer() {
        // Sixteen files of 4 MiB: once the first compressed MiB is out, the
        // writer must stop long before the rest is read.
        let names: Vec<String> = (0..16).map(|i| format!("f{i:02}")).collect();
        let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 4 << 20)).collect();
        let dir = tree(&files);
        let flag = Arc::new(AtomicBool::new(false));
        let options = WriteOptions {
            level: Some(1),
            threads: 2,
            cancel: Some(Arc::clone(&flag)),
            ..WriteOptions::default()
        };
        let mut sink = CancelAfter { seen: 0, after: 1 << 20, flag: Arc::clone(&flag) };
        let err = write_layer_to(dir.path(), &mut sink, &options).unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(err.to_string().ends_with("cancelled"), "{err}");
        // Incompressible: what reached the sink is about what was read.
        assert!(sink.seen < 16 << 20, "stopped after {} of 64 MiB", sink.seen);
    }

    #[test]
    fn a_cancelled_layer_file_leaves_nothing_behind() {
        let dir = tree(&[("a", 2 << 20), ("b", 2 << 20), ("c", 2 << 20), ("d", 2 << 20)]);
        let out = tempfile::tempdir().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let options = WriteOptions { cancel: Some(Arc::clone(&flag)), ..WriteOptions::default() };
        let watcher = {
            let (flag, out) = (Arc::clone(&flag), out.path().to_owned());
            // Cancels as soon as the writer's temp file exists: mid-write.
            std::thread::spawn(move || {
                while fs::read_dir(&out).unwrap().next().is_none() {
                    std::thread::yield_now();
                }
                flag.store(true, Ordering::SeqCst);
            })
        };
        let result = write_layer(dir.path(), &out.path().join("layer.tar.gz"), &options);
        watcher.join().unwrap();
        assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0, "no layer file, no temp file");
    }
}
