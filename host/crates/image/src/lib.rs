//! Container images for caulk: the OCI model, transports, and layers in and out.
//!
//! # Sync API, async inside
//!
//! Everything public is synchronous. Most of the work is file and pipe I/O
//! that gains nothing from async, and the rest of caulk is synchronous. Only
//! the registry transport is async (it is built on `oci-client`, which runs
//! on tokio); it owns a private multi-threaded runtime and bridges with
//! `block_on` from the calling thread. So: do not call into this crate from
//! inside a tokio runtime's worker thread (use `spawn_blocking`).
//!
//! # Map
//!
//! ```no_run
//! use caulk_image::append::{AppendSpec, EditedImage, append};
//! use caulk_image::layer::{LayerCache, LayerSource, RootFs, UnpackOptions, WriteOptions, write_layer};
//! use caulk_image::{CopyOptions, Image, ImageRef, TransportOptions};
//! # fn main() -> caulk_image::Result<()> {
//! let transport = TransportOptions::default();
//! let image = Image::open(&ImageRef::parse("docker://127.0.0.1:5000/app:1")?, &transport)?;
//! let platform = image.image_for(None)?; // the only one, or the host's
//!
//! // Probes: read files and globs without unpacking.
//! let fs = RootFs::open(image.source().clone(), platform)?;
//! let status = fs.read("/var/lib/dpkg/status")?;
//! let metadata = fs.glob("/usr/lib/python3*/site-packages/*.dist-info/METADATA")?;
//!
//! // Executor: layers as overlayfs lower dirs (bottom first).
//! let cache = LayerCache::new("/var/cache/caulk/layers")?;
//! let lowers = cache.unpack_image(image.source().as_ref(), platform, &UnpackOptions::default())?;
//! // ... mount overlay, run the plan's steps, unmount ...
//! let options = WriteOptions { source: LayerSource::OverlayUpper, exclude: vec!["/var/lib/apt/lists".into()], ..Default::default() };
//! let layer = write_layer("/tmp/upper".as_ref(), "/tmp/layer.tar.gz".as_ref(), &options)?;
//!
//! // One new layer on top; a re-patch would set drop_last from a label.
//! let appended = append(platform, &AppendSpec { layer: Some(layer), ..Default::default() })?;
//! EditedImage::new(&image, vec![appended])?
//!     .write(&ImageRef::parse("oci:/tmp/out:patched")?, &CopyOptions::default(), &transport)?;
//! # let _ = (status, metadata, lowers);
//! # Ok(())
//! # }
//! ```
//!
//! - [`ImageRef`] parses skopeo-style references; [`Image::open`] loads the
//!   model (index → per-platform manifests → config + layer descriptors).
//! - [`copy()`] moves images between transports; [`Image::summary`] is what
//!   `caulk image inspect` prints.
//! - [`layer`]: the merged read-only view of a root fs, unpacking into a
//!   content-addressed cache, and the deterministic layer writer.
//! - [`append`]: a new layer over an image whose original blobs stay
//!   byte-identical.

pub mod append;
mod convert;
pub mod copy;
pub mod digest;
pub mod error;
pub mod inspect;
pub mod layer;
pub mod media;
pub mod model;
pub mod reference;
pub mod transport;

pub use copy::{CopyOptions, CopyReport, copy, copy_from_source};

/// Opens an image and summarises it: what `caulk image inspect` prints
/// (`Display` for people, `Serialize` for `--json`).
pub fn inspect(reference: &ImageRef, transport: &TransportOptions) -> Result<ImageSummary> {
    Ok(Image::open(reference, transport)?.summary())
}
pub use digest::Digest;
pub use error::{Error, Result};
pub use inspect::ImageSummary;
pub use model::{Image, Layer, Platform, PlatformImage};
pub use reference::{ArchiveSelector, ImageRef, RegistryRef};
pub use transport::{Existing, ImageDestination, ImageSource, TransportOptions};
