//! Media types caulk recognises, OCI and Docker v2 schema 2 alike. Media
//! types travel through the crate as the exact strings the source used; the
//! only rewrite is [`oci_equivalent`], for destinations that read nothing but
//! OCI types.

use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Media types a registry is asked to serve for a manifest request.
pub const MANIFEST_ACCEPT: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Which family of media types an image uses; a new layer must match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Oci,
    Docker,
}

/// What a manifest-ish document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Index,
    Manifest,
}

pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Manifest),
        _ => None,
    }
}

pub fn family(media_type: &str) -> Family {
    if media_type.starts_with("application/vnd.docker.") { Family::Docker } else { Family::Oci }
}

/// The OCI media type that means what `media_type` means, for converting a
/// Docker v2 schema 2 document as skopeo does for `oci:` destinations; OCI
/// types map to themselves, anything else to `None`.
pub fn oci_equivalent(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        DOCKER_LIST | OCI_INDEX => OCI_INDEX,
        DOCKER_MANIFEST | OCI_MANIFEST => OCI_MANIFEST,
        DOCKER_CONFIG | OCI_CONFIG => OCI_CONFIG,
        DOCKER_LAYER | OCI_LAYER => OCI_LAYER,
        DOCKER_LAYER_GZIP | OCI_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER | OCI_LAYER_ND_GZIP => OCI_LAYER_ND_GZIP,
        OCI_LAYER_ZSTD => OCI_LAYER_ZSTD,
        OCI_LAYER_ND => OCI_LAYER_ND,
        OCI_LAYER_ND_ZSTD => OCI_LAYER_ND_ZSTD,
        _ => return None,
    })
}

/// How a layer blob is compressed, as declared by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares; `None` for types that are
/// not filesystem layers at all (so the caller can name the layer in its
/// error).
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER | OCI_LAYER_ND | DOCKER_LAYER => Some(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_ND_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_ND_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// Checks that `media_type` is a filesystem layer type.
pub fn require_layer(media_type: &str, origin: &str, what: &str) -> Result<Compression> {
    layer_compression(media_type).ok_or_else(|| Error::UnsupportedMediaType {
        origin: origin.to_owned(),
        what: what.to_owned(),
        media_type: media_type.to_owned(),
    })
}

/// The layer media type for new layers in an image of `family`.
pub fn layer_type(family: Family, compression: Compression) -> Result<&'static str> {
    Ok(match (family, compression) {
        (Family::Oci, Compression::None) => OCI_LAYER,
        (Family::Oci, Compression::Gzip) => OCI_LAYER_GZIP,
        (Family::Oci, Compression::Zstd) => OCI_LAYER_ZSTD,
        (Family::Docker, Compression::None) => DOCKER_LAYER,
        (Family::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
        (Family::Docker, Compression::Zstd) => {
            return Err(Error::Unsupported {
                transport: "Docker v2 schema 2 manifests".to_owned(),
                what: "a zstd-compressed layer".to_owned(),
            });
        }
    })
}

/// Sniffs the compression of a stream from its first bytes; media types are
/// not trusted for this because archives written by Docker and skopeo label
/// uncompressed layers as gzip.
pub fn sniff_compression(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}
