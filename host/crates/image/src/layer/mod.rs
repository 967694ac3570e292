//! Layers in and out: reading a layer's tar stream (verifying both the blob
//! digest and the diff_id as it streams), the merged read-only view of a root
//! fs, unpacking into a content-addressed cache, and the layer writer.

use std::io::{self, BufRead, BufReader, Read};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, short_path};
use crate::media::{self, Compression};
use crate::model::Layer;
use crate::transport::{self, ImageSource};

pub mod pargz;
pub mod unpack;
pub mod view;
pub mod write;

pub use unpack::{LayerCache, UnpackOptions, WhiteoutFormat};
pub use view::{EntryKind, FileInfo, RootFs};
pub use write::{
    LayerSource, WriteOptions, WrittenLayer, content_size, gzip_for_size, write_layer, write_layer_to,
};

/// Name of the marker that makes a directory opaque in an OCI layer.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of whiteout file names in an OCI layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// A reader that checks the uncompressed stream against the diff_id and
/// fails at EOF when it differs.
struct DiffIdReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    layer: Digest,
    origin: String,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let actual = self.hasher.take().expect("checked above").finish();
            if actual != self.expected {
                return Err(Error::DiffIdMismatch {
                    origin: self.origin.clone(),
                    digest: self.layer.clone(),
                    expected: self.expected.clone(),
                    actual,
                }
                .into_io());
            }
        }
        Ok(n)
    }
}

/// The uncompressed tar stream of `layer`, verified against the blob digest
/// and the diff_id: a consumer that reads to EOF without error has read the
/// exact layer the image describes.
pub fn open_tar_stream(source: &dyn ImageSource, layer: &Layer) -> Result<Box<dyn Read + Send>> {
    media::require_layer(&layer.desc.media_type, &source.origin(), &format!("layer {}", layer.desc.digest))?;
    let blob = transport::open_blob(source, &layer.desc)?;
    let tar = decompress(blob, &layer.desc.digest.to_string())?;
    Ok(Box::new(DiffIdReader {
        inner: tar,
        hasher: Some(Hasher::new()),
        expected: layer.diff_id.clone(),
        layer: layer.desc.digest.clone(),
        origin: source.origin(),
    }))
}

/// Wraps `compressed` in the decoder its first bytes call for.
pub fn decompress<R: Read + Send + 'static>(compressed: R, what: &str) -> Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(1 << 16, compressed);
    let head = buffered.fill_buf().map_err(|e| Error::io(format!("reading {what}"), e))?;
    Ok(match media::sniff_compression(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| Error::io(format!("starting zstd for {what}"), e))?,
        ),
    })
}

/// Reads whatever is left of a stream so that verifying readers underneath
/// reach EOF and check what they hashed (tar readers stop at the end-of-
/// archive blocks, which may precede padding).
pub(crate) fn drain(reader: &mut dyn Read, what: &str) -> Result<()> {
    io::copy(reader, &mut io::sink()).map_err(|e| corrupt(what, e))?;
    Ok(())
}

/// An I/O error met while decoding a layer: ours (digest, size) as they
/// are, anything else (a bad gzip checksum, a cut stream) as a corrupt layer.
pub(crate) fn corrupt(layer: &str, e: io::Error) -> Error {
    match Error::io("", e) {
        Error::Io { source, .. } => {
            Error::CorruptLayer { layer: layer.to_owned(), reason: source.to_string() }
        }
        ours => ours,
    }
}

/// Turns a tar entry name into a clean relative path (`a/b/c`, no `.` or
/// empty components, no trailing slash). Leading slashes are dropped, as
/// Docker does; a `..` component is refused.
pub(crate) fn clean_entry_path(raw: &[u8], layer: &str) -> Result<String> {
    let name = std::str::from_utf8(raw).map_err(|_| Error::HostileEntry {
        layer: layer.to_owned(),
        entry: short_path(&String::from_utf8_lossy(raw)).into_owned(),
        reason: "name is not UTF-8".to_owned(),
    })?;
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::HostileEntry {
                    layer: layer.to_owned(),
                    entry: short_path(name).into_owned(),
                    reason: "a `..` component would leave the root".to_owned(),
                });
            }
            p if p.contains('\0') => {
                return Err(Error::HostileEntry {
                    layer: layer.to_owned(),
                    entry: short_path(name).into_owned(),
                    reason: "name contains NUL".to_owned(),
                });
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Whether an extended attribute from a layer is applied on unpack and
/// carried into a written layer: what an image may say about its own files.
///
/// - `user.*`, except `user.overlay.*`: file data of the image's own.
/// - `security.capability`: file capabilities, which setcap'd binaries such
///   as `ping` need to work.
///
/// Everything else is left out. `trusted.overlay.*` and `user.overlay.*`
/// would steer the overlayfs caulk mounts over the unpacked layers (an
/// `opaque` hides lower layers, a `redirect` points a directory at another
/// path); other `trusted.*` is for the host's privileged processes;
/// `security.selinux` and other LSM labels describe the host that wrote the
/// layer, not the image, and applying them could relabel files on this
/// host; `system.*` (ACLs) is not something image tools write.
pub fn xattr_is_kept(name: &str) -> bool {
    name == "security.capability" || (name.starts_with("user.") && !name.starts_with("user.overlay."))
}

/// Pulls the extended attributes out of an entry's PAX records.
pub(crate) fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}
