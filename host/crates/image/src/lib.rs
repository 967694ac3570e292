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
//! - [`ImageRef`] parses skopeo-style references; [`Image::open`] loads the
//!   model (index → per-platform manifests → config + layer descriptors).
//! - [`copy()`] moves images between transports; [`Image::summary`] is what
//!   `caulk image inspect` prints.
//! - [`layer`]: the merged read-only view of a root fs, unpacking into a
//!   content-addressed cache, and the deterministic layer writer.
//! - [`append`]: a new layer over an image whose original blobs stay
//!   byte-identical.

pub mod append;
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
pub use digest::Digest;
pub use error::{Error, Result};
pub use inspect::ImageSummary;
pub use model::{Image, Layer, Platform, PlatformImage};
pub use reference::{ArchiveSelector, ImageRef, RegistryRef};
pub use transport::{ImageDestination, ImageSource, TransportOptions};
