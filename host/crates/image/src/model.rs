//! The image model: an optional index, one [`PlatformImage`] per platform
//! (manifest → config + layers), each document kept as the exact bytes the
//! source served next to its parsed `oci-spec` form.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{self, Compression, ManifestKind};
use crate::reference::ImageRef;
use crate::transport::{self, BlobDesc, ImageSource, RawManifest, TransportOptions};

/// An OS/architecture/variant triple.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(input: &str) -> Result<Self> {
        let parts: Vec<&str> = input.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).filter(|v| !v.is_empty()).map(|v| (*v).to_owned()),
            }),
            _ => Err(Error::InvalidReference {
                input: input.to_owned(),
                reason: "a platform is OS/ARCH[/VARIANT], e.g. linux/arm64/v8".to_owned(),
            }),
        }
    }

    /// The platform of the machine caulk runs on, in Go's vocabulary.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: "linux".to_owned(), architecture: architecture.to_owned(), variant: None }
    }

    /// Whether an image of platform `self` satisfies `wanted` (a missing
    /// variant in `wanted` accepts any).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }

    fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A layer of one platform's image.
#[derive(Debug, Clone)]
pub struct Layer {
    pub desc: BlobDesc,
    /// Digest of the uncompressed tar, from the config.
    pub diff_id: Digest,
    pub compression: Compression,
    pub annotations: HashMap<String, String>,
}

/// An image config blob.
#[derive(Debug, Clone)]
pub struct ConfigBlob {
    pub desc: BlobDesc,
    pub bytes: Vec<u8>,
    pub parsed: ImageConfiguration,
}

impl ConfigBlob {
    /// A label from the container config (`config.Labels`).
    pub fn label(&self, key: &str) -> Option<&str> {
        self.parsed
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }
}

/// One platform's image: manifest, config, layers.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// From the index entry, else from the config.
    pub platform: Platform,
    /// The index entry this image was reached through, if any.
    pub index_entry: Option<Descriptor>,
    pub manifest: RawManifest,
    pub parsed: ImageManifest,
    pub config: ConfigBlob,
    pub layers: Vec<Layer>,
}

impl PlatformImage {
    pub fn family(&self) -> media::Family {
        media::family(&self.manifest.media_type)
    }

    pub fn annotations(&self) -> HashMap<String, String> {
        self.parsed.annotations().clone().unwrap_or_default()
    }
}

/// An opened image.
pub struct Image {
    origin: String,
    pub top: RawManifest,
    /// The parsed top-level index when the reference names one.
    pub index: Option<ImageIndex>,
    /// Every image manifest reachable from the top, index order.
    pub images: Vec<PlatformImage>,
    /// Index entries that are not runnable images (attestations, artifacts):
    /// copied along, never patched.
    pub others: Vec<Descriptor>,
    pub(crate) source: Arc<dyn ImageSource>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("origin", &self.origin)
            .field("top", &self.top.digest)
            .field("images", &self.images.len())
            .finish_non_exhaustive()
    }
}

/// Nested indexes deeper than this are refused (a cycle, or abuse).
const MAX_INDEX_DEPTH: usize = 4;

impl Image {
    /// Opens `reference` and loads its manifests and configs (not layers).
    pub fn open(reference: &ImageRef, options: &TransportOptions) -> Result<Self> {
        Self::from_source(transport::open_source(reference, options)?)
    }

    pub fn from_source(source: Arc<dyn ImageSource>) -> Result<Self> {
        let top = source.top()?;
        let origin = source.origin();
        let mut image =
            Image { origin, top: top.clone(), index: None, images: Vec::new(), others: Vec::new(), source };
        match media::manifest_kind(&top.media_type) {
            Some(ManifestKind::Index) => {
                let index = parse_index(&image.origin, &top)?;
                image.walk_index(&index, 0)?;
                image.index = Some(index);
            }
            Some(ManifestKind::Manifest) => {
                let loaded = image.load_manifest(top, None)?;
                image.images.push(loaded);
            }
            None => {
                return Err(Error::UnsupportedMediaType {
                    origin: image.origin.clone(),
                    what: "the image's top-level manifest".to_owned(),
                    media_type: top.media_type,
                });
            }
        }
        Ok(image)
    }

    fn walk_index(&mut self, index: &ImageIndex, depth: usize) -> Result<()> {
        for entry in index.manifests() {
            let desc = BlobDesc::from_oci(entry);
            match media::manifest_kind(&desc.media_type) {
                Some(ManifestKind::Index) if depth < MAX_INDEX_DEPTH => {
                    let raw = self.source.manifest(&desc)?;
                    let nested = parse_index(&self.origin, &raw)?;
                    self.walk_index(&nested, depth + 1)?;
                }
                Some(ManifestKind::Manifest) => {
                    let is_unknown_platform =
                        entry.platform().as_ref().is_some_and(|p| p.os().to_string() == "unknown");
                    if is_unknown_platform {
                        self.others.push(entry.clone());
                        continue;
                    }
                    let raw = self.source.manifest(&desc)?;
                    let loaded = self.load_manifest(raw, Some(entry.clone()))?;
                    self.images.push(loaded);
                }
                _ => {
                    return Err(Error::UnsupportedMediaType {
                        origin: self.origin.clone(),
                        what: format!("index entry {}", desc.digest),
                        media_type: desc.media_type,
                    });
                }
            }
        }
        Ok(())
    }

    fn load_manifest(&self, raw: RawManifest, entry: Option<Descriptor>) -> Result<PlatformImage> {
        let parsed: ImageManifest = serde_json::from_slice(&raw.bytes)
            .map_err(|e| Error::invalid(&self.origin, format!("manifest {}", raw.digest), e.to_string()))?;
        let config_desc = BlobDesc::from_oci(parsed.config());
        let is_config = matches!(config_desc.media_type.as_str(), media::OCI_CONFIG | media::DOCKER_CONFIG);
        if !is_config {
            return Err(Error::UnsupportedMediaType {
                origin: self.origin.clone(),
                what: format!("the config of manifest {}", raw.digest),
                media_type: config_desc.media_type,
            });
        }
        let bytes = transport::read_blob(self.source.as_ref(), &config_desc)?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(&self.origin, format!("config {}", config_desc.digest), e.to_string())
        })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != parsed.layers().len() {
            return Err(Error::invalid(
                &self.origin,
                format!("manifest {}", raw.digest),
                format!(
                    "it lists {} layers but its config lists {} diff_ids",
                    parsed.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (descriptor, diff_id) in parsed.layers().iter().zip(diff_ids) {
            let desc = BlobDesc::from_oci(descriptor);
            let compression =
                media::require_layer(&desc.media_type, &self.origin, &format!("layer {}", desc.digest))?;
            layers.push(Layer {
                diff_id: Digest::parse(diff_id).map_err(|e| {
                    Error::invalid(&self.origin, format!("config {}", config_desc.digest), e.to_string())
                })?,
                compression,
                annotations: descriptor.annotations().clone().unwrap_or_default(),
                desc,
            });
        }
        let platform = entry.as_ref().and_then(|e| e.platform().as_ref()).map_or_else(
            || Platform {
                os: config.os().to_string(),
                architecture: config.architecture().to_string(),
                variant: config.variant().clone(),
            },
            Platform::from_oci,
        );
        Ok(PlatformImage {
            platform,
            index_entry: entry,
            manifest: raw,
            parsed,
            config: ConfigBlob { desc: config_desc, bytes, parsed: config },
            layers,
        })
    }

    /// The reference this image was opened from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn source(&self) -> &Arc<dyn ImageSource> {
        &self.source
    }

    pub fn platforms(&self) -> Vec<Platform> {
        self.images.iter().map(|i| i.platform.clone()).collect()
    }

    /// The image for `wanted`, or the only image when `wanted` is `None`
    /// (for an index with several, the host's platform).
    pub fn image_for(&self, wanted: Option<&Platform>) -> Result<&PlatformImage> {
        let choose = |p: &Platform| self.images.iter().find(|i| i.platform.satisfies(p));
        let found = match wanted {
            Some(p) => choose(p),
            None if self.images.len() == 1 => self.images.first(),
            None => choose(&Platform::host()),
        };
        found.ok_or_else(|| Error::NoMatchingPlatform {
            origin: self.origin.clone(),
            wanted: wanted.map_or_else(|| format!("{} (host)", Platform::host()), ToString::to_string),
            available: self.platforms().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        })
    }

    /// All distinct blobs (configs and layers) of the image.
    pub fn blobs(&self) -> Vec<BlobDesc> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for image in &self.images {
            for desc in std::iter::once(&image.config.desc).chain(image.layers.iter().map(|l| &l.desc)) {
                if seen.insert(desc.digest.clone()) {
                    out.push(desc.clone());
                }
            }
        }
        out
    }
}

pub(crate) fn parse_index(origin: &str, raw: &RawManifest) -> Result<ImageIndex> {
    serde_json::from_slice(&raw.bytes)
        .map_err(|e| Error::invalid(origin, format!("index {}", raw.digest), e.to_string()))
}
