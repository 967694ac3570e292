//! Transports: where image bytes come from and go to.
//!
//! Every transport is a pair of small traits. An [`ImageSource`] hands out
//! the top-level manifest (or index) and streams blobs; an
//! [`ImageDestination`] takes blobs, then child manifests, then the top-level
//! document in [`ImageDestination::commit`], which is the only step that makes
//! the new image visible (renaming an archive into place, rewriting
//! index.json, pushing the tag). Anything that fails before `commit` leaves
//! the destination as it was, apart from unreferenced content-addressed blobs
//! (and, when the process is killed, `.caulk-tmp-*` files beside the
//! destination that nothing refers to). Two processes committing to one OCI
//! layout at the same moment are not serialised: the later index.json wins.

use std::io::Read;
use std::sync::Arc;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::reference::{ImageRef, RegistryRef};

pub mod daemon;
pub mod docker_archive;
pub mod oci_layout;
pub mod registry;
mod tar_index;

pub use registry::RegistryOptions;

/// Manifests and configs larger than this are refused rather than loaded
/// into memory: real ones are a few KiB.
pub const MAX_DOCUMENT_SIZE: u64 = 8 << 20;

/// A content descriptor reduced to what moving bytes needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobDesc {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl BlobDesc {
    pub fn from_oci(d: &oci_spec::image::Descriptor) -> Self {
        BlobDesc { media_type: d.media_type().to_string(), digest: Digest::from(d.digest()), size: d.size() }
    }
}

/// A manifest or index exactly as stored: its bytes are never re-serialised,
/// so its digest is preserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl RawManifest {
    pub fn new(bytes: Vec<u8>, media_type: impl Into<String>) -> Self {
        let digest = Digest::of(&bytes);
        RawManifest { bytes, media_type: media_type.into(), digest }
    }

    pub fn desc(&self) -> BlobDesc {
        BlobDesc {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }

    /// The media type a manifest declares in its own `mediaType` field, the
    /// fallback when its descriptor does not say.
    pub(crate) fn declared_media_type(bytes: &[u8]) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            config: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).ok()?;
        probe.media_type.or_else(|| {
            // OCI allows omitting mediaType; the shape tells index from manifest.
            if probe.manifests.is_some() {
                Some(crate::media::OCI_INDEX.to_owned())
            } else if probe.config.is_some() {
                Some(crate::media::OCI_MANIFEST.to_owned())
            } else {
                None
            }
        })
    }
}

/// Where a blob sits on local disk, for readers that want to seek.
#[derive(Debug, Clone)]
pub struct LocalBlob {
    pub path: std::path::PathBuf,
    pub offset: u64,
}

/// Read side of a transport.
pub trait ImageSource: Send + Sync {
    /// The reference this source was opened from, for messages.
    fn origin(&self) -> String;

    /// The manifest or index the reference names.
    fn top(&self) -> Result<RawManifest>;

    /// The raw bytes of a blob, not yet verified: use [`open_blob`] or
    /// [`read_blob`], which check size and digest.
    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>>;

    /// A blob's place on local disk when the transport has one.
    fn local_blob(&self, _desc: &BlobDesc) -> Option<LocalBlob> {
        None
    }

    /// The registry repository behind this source, for cross-repository
    /// blob mounts.
    fn registry(&self) -> Option<&RegistryRef> {
        None
    }

    /// A child manifest (from an index) by descriptor, verified.
    fn manifest(&self, desc: &BlobDesc) -> Result<RawManifest> {
        let bytes = read_blob(self, desc)?;
        Ok(RawManifest { bytes, media_type: desc.media_type.clone(), digest: desc.digest.clone() })
    }
}

/// Write side of a transport.
pub trait ImageDestination: Send {
    fn origin(&self) -> String;

    /// Whether the destination can hold an image index (archives of the
    /// Docker format and the Docker Engine hold one platform).
    fn accepts_index(&self) -> bool {
        true
    }

    /// Whether the destination is read only through OCI media types, so a
    /// Docker manifest is converted on the way in (skopeo 1.9, podman and
    /// buildah find nothing else in an OCI layout).
    fn oci_only(&self) -> bool {
        false
    }

    /// Whether writes go over a network (and so are worth retrying).
    fn is_remote(&self) -> bool {
        false
    }

    /// Whether the blob is already there, so copying it can be skipped.
    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool>;

    /// Tries to make a blob from another repository of the same registry
    /// appear here without transferring it; `Ok(false)` when not possible.
    fn mount_blob(&mut self, _desc: &BlobDesc, _from: &RegistryRef) -> Result<bool> {
        Ok(false)
    }

    /// Stores a blob. `data` is a verifying reader: an implementation must
    /// not make the blob visible unless `data` reached end of file without
    /// error.
    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()>;

    /// Stores a manifest referenced from an index (by digest, untagged).
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()>;

    /// Makes the image visible under the destination's name: the atomic
    /// last step.
    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()>;
}

/// Settings shared by all transports.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Docker Engine address; `None` means `$DOCKER_HOST`, then
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    pub registry: RegistryOptions,
    /// Where to spool data that must touch disk (daemon exports); `None`
    /// means the system temp dir.
    pub tmp_dir: Option<std::path::PathBuf>,
}

/// Opens the read side of a reference.
pub fn open_source(reference: &ImageRef, options: &TransportOptions) -> Result<Arc<dyn ImageSource>> {
    Ok(match reference {
        ImageRef::OciLayout { dir, name } => Arc::new(oci_layout::OciSource::open_dir(dir, name.as_deref())?),
        ImageRef::OciArchive { file, name } => {
            Arc::new(oci_layout::OciSource::open_archive(file, name.as_deref())?)
        }
        ImageRef::DockerArchive { file, name } => {
            Arc::new(docker_archive::DockerArchiveSource::open(file, name.as_ref(), reference.to_string())?)
        }
        ImageRef::DockerDaemon { name } => Arc::new(daemon::open_source(name, options)?),
        ImageRef::Registry(r) => Arc::new(registry::RegistrySource::open(r, &options.registry)?),
    })
}

/// What writing to a reference would replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// An image under that name: its manifest digest (its image ID for the
    /// Docker Engine).
    Image(String),
    /// An archive file with no single image caulk can name (several, or
    /// none it reads); writing replaces the whole file.
    File,
}

/// What `reference` names now, reading no layers: `None` when writing there
/// replaces nothing. A registry that cannot be asked counts as empty.
pub fn existing(reference: &ImageRef, options: &TransportOptions) -> Option<Existing> {
    match reference {
        ImageRef::OciLayout { dir, .. } if !dir.join("index.json").exists() => None,
        ImageRef::OciArchive { file, .. } | ImageRef::DockerArchive { file, .. } if !file.exists() => None,
        // An archive is rewritten whole, whatever name it held.
        ImageRef::OciArchive { file, .. } | ImageRef::DockerArchive { file, .. } => {
            let whole = match reference {
                ImageRef::OciArchive { .. } => ImageRef::OciArchive { file: file.clone(), name: None },
                _ => ImageRef::DockerArchive { file: file.clone(), name: None },
            };
            Some(match open_source(&whole, options).and_then(|s| s.top()) {
                Ok(top) => Existing::Image(top.digest.to_string()),
                Err(_) => Existing::File,
            })
        }
        ImageRef::DockerDaemon { name } => {
            daemon::image_id(name, options).ok().flatten().map(Existing::Image)
        }
        ImageRef::OciLayout { .. } | ImageRef::Registry(_) => open_source(reference, options)
            .and_then(|s| s.top())
            .ok()
            .map(|t| Existing::Image(t.digest.to_string())),
    }
}

/// Opens the write side of a reference.
pub fn open_destination(
    reference: &ImageRef,
    options: &TransportOptions,
) -> Result<Box<dyn ImageDestination>> {
    Ok(match reference {
        ImageRef::OciLayout { dir, name } => {
            Box::new(oci_layout::OciDirDestination::create(dir, name.clone())?)
        }
        ImageRef::OciArchive { file, name } => {
            Box::new(oci_layout::OciArchiveDestination::create(file, name.clone())?)
        }
        ImageRef::DockerArchive { file, name } => {
            let tag = match name {
                Some(crate::reference::ArchiveSelector::Tag(t)) => Some(t.clone()),
                Some(crate::reference::ArchiveSelector::Index(_)) => {
                    return Err(Error::InvalidReference {
                        input: reference.to_string(),
                        reason: "an @N selector only makes sense when reading".to_owned(),
                    });
                }
                None => None,
            };
            Box::new(docker_archive::DockerArchiveDestination::create(file, tag)?)
        }
        ImageRef::DockerDaemon { name } => Box::new(daemon::open_destination(name, options)?),
        ImageRef::Registry(r) => Box::new(registry::RegistryDestination::open(r, &options.registry)?),
    })
}

/// A blob's bytes, checked against size and digest as they stream.
pub fn open_blob<S: ImageSource + ?Sized>(
    source: &S,
    desc: &BlobDesc,
) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
    let raw = source.blob(desc)?;
    Ok(VerifyingReader::new(raw, desc.digest.clone(), Some(desc.size), source.origin()))
}

/// A small blob (manifest, config) read whole and verified.
pub fn read_blob<S: ImageSource + ?Sized>(source: &S, desc: &BlobDesc) -> Result<Vec<u8>> {
    if desc.size > MAX_DOCUMENT_SIZE {
        return Err(Error::invalid(
            source.origin(),
            format!("descriptor of {}", desc.digest),
            format!("{} bytes is too large for a manifest or config", desc.size),
        ));
    }
    let mut reader = open_blob(source, desc)?;
    let mut bytes = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
    reader.read_to_end(&mut bytes).ctx(|| format!("{}: reading blob {}", source.origin(), desc.digest))?;
    Ok(bytes)
}
