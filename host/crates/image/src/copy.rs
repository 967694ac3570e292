//! Copying an image between transports: blobs first (skipping what the
//! destination has, mounting across repositories of one registry), then
//! child manifests, then the top-level document in `commit`. A destination
//! that reads only OCI media types gets Docker manifests converted, as
//! skopeo does, unless digests are to be preserved.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use oci_spec::image::ImageManifest;
use serde::Serialize;

use crate::convert;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{self, ManifestKind};
use crate::model::{Platform, parse_index};
use crate::reference::ImageRef;
use crate::transport::{self, BlobDesc, ImageDestination, ImageSource, RawManifest, TransportOptions};

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy only these platforms of an index (`None`: all of them). A
    /// destination that holds one platform takes the first match, or the
    /// host's platform when this is `None`.
    pub platforms: Option<Vec<Platform>>,
    /// Attempts per blob when a transfer fails in a way that may pass.
    pub attempts: u32,
    /// Pause before the first retry; doubles each time.
    pub retry_delay: Duration,
    /// Keep every manifest byte for byte (skopeo's `--preserve-digests`),
    /// even where the destination reads only OCI media types and a Docker
    /// manifest would otherwise be converted.
    pub preserve_digests: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: None,
            attempts: 3,
            retry_delay: Duration::from_millis(250),
            preserve_digests: false,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub destination: String,
    /// Digest of the manifest or index written at the destination.
    pub digest: Option<Digest>,
    pub media_type: String,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub bytes_copied: u64,
    /// Whether Docker media types were converted to OCI ones on the way.
    pub converted_to_oci: bool,
}

/// Copies `src` to `dst`.
pub fn copy(
    src: &ImageRef,
    dst: &ImageRef,
    options: &CopyOptions,
    transport: &TransportOptions,
) -> Result<CopyReport> {
    let source = transport::open_source(src, transport)?;
    let destination = transport::open_destination(dst, transport)?;
    copy_from_source(source.as_ref(), destination, options)
}

/// Copies what `source` serves into `destination`.
pub fn copy_from_source(
    source: &dyn ImageSource,
    destination: Box<dyn ImageDestination>,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let top = source.top()?;
    let to_oci = destination.oci_only() && !options.preserve_digests;
    let mut copier = Copier {
        source,
        destination,
        options,
        to_oci,
        done: HashSet::new(),
        children: HashMap::new(),
        report: CopyReport::default(),
    };
    copier.report.destination = copier.destination.origin();
    let top = copier.copy_top(top)?;
    if copier.destination.oci_only() && convert::needed(&top.media_type) {
        tracing::warn!(
            "{} keeps Docker media types (digests preserved): skopeo 1.9, podman and buildah will not find it there",
            copier.report.destination
        );
    }
    copier.report.digest = Some(top.digest.clone());
    copier.report.media_type.clone_from(&top.media_type);
    let Copier { destination, report, .. } = copier;
    destination.commit(&top)?;
    Ok(report)
}

struct Copier<'a> {
    source: &'a dyn ImageSource,
    destination: Box<dyn ImageDestination>,
    options: &'a CopyOptions,
    /// Convert Docker manifests to OCI ones for this destination.
    to_oci: bool,
    /// Blobs handled so far.
    done: HashSet<Digest>,
    /// Child manifests written so far, by their source digest: what was written.
    children: HashMap<Digest, BlobDesc>,
    report: CopyReport,
}

impl Copier<'_> {
    fn copy_top(&mut self, top: RawManifest) -> Result<RawManifest> {
        match media::manifest_kind(&top.media_type) {
            Some(ManifestKind::Manifest) => {
                self.copy_manifest_blobs(&top)?;
                self.for_destination(top)
            }
            Some(ManifestKind::Index) if !self.destination.accepts_index() => {
                let chosen = self.single_platform(&top)?;
                self.copy_manifest_blobs(&chosen)?;
                self.for_destination(chosen)
            }
            Some(ManifestKind::Index) => {
                let top = match &self.options.platforms {
                    Some(wanted) => filter_index(&self.source.origin(), &top, wanted)?,
                    None => top,
                };
                self.copy_index_children(&top, 0)
            }
            None => Err(Error::UnsupportedMediaType {
                origin: self.source.origin(),
                what: "the image's top-level manifest".to_owned(),
                media_type: top.media_type,
            }),
        }
    }

    /// For destinations that hold one image: the manifest for the wanted
    /// (or host) platform out of an index.
    fn single_platform(&self, top: &RawManifest) -> Result<RawManifest> {
        let index = parse_index(&self.source.origin(), top)?;
        let wanted =
            self.options.platforms.as_ref().and_then(|p| p.first().cloned()).unwrap_or_else(Platform::host);
        let mut available = Vec::new();
        for entry in index.manifests() {
            let Some(p) = entry.platform() else { continue };
            let platform = Platform {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            };
            if platform.satisfies(&wanted)
                && media::manifest_kind(entry.media_type().as_ref()) == Some(ManifestKind::Manifest)
            {
                return self.source.manifest(&BlobDesc::from_oci(entry));
            }
            available.push(platform.to_string());
        }
        Err(Error::NoMatchingPlatform {
            origin: self.source.origin(),
            wanted: wanted.to_string(),
            available: available.join(", "),
        })
    }

    /// An image manifest as the destination should get it: converted to
    /// OCI media types where the destination needs them.
    fn for_destination(&mut self, manifest: RawManifest) -> Result<RawManifest> {
        if self.to_oci && convert::needed(&manifest.media_type) {
            self.report.converted_to_oci = true;
            return convert::manifest_to_oci(&self.source.origin(), &manifest);
        }
        Ok(manifest)
    }

    /// Copies an index's children and returns the index to write: the one
    /// read, or one pointing at converted children.
    fn copy_index_children(&mut self, index_raw: &RawManifest, depth: usize) -> Result<RawManifest> {
        let index = parse_index(&self.source.origin(), index_raw)?;
        let mut replaced = HashMap::new();
        for entry in index.manifests() {
            let desc = BlobDesc::from_oci(entry);
            if let Some(written) = self.children.get(&desc.digest) {
                if written.digest != desc.digest {
                    replaced.insert(desc.digest.clone(), written.clone());
                }
                continue;
            }
            let child = self.source.manifest(&desc)?;
            let written = match media::manifest_kind(&desc.media_type) {
                Some(ManifestKind::Manifest) => {
                    self.copy_manifest_blobs(&child)?;
                    self.for_destination(child)?
                }
                Some(ManifestKind::Index) if depth < 4 => self.copy_index_children(&child, depth + 1)?,
                _ => {
                    return Err(Error::UnsupportedMediaType {
                        origin: self.source.origin(),
                        what: format!("index entry {}", desc.digest),
                        media_type: desc.media_type,
                    });
                }
            };
            self.destination.put_manifest(&written)?;
            if written.digest != desc.digest {
                replaced.insert(desc.digest.clone(), written.desc());
            }
            self.children.insert(desc.digest, written.desc());
        }
        let to_oci = self.to_oci && convert::needed(&index_raw.media_type);
        if replaced.is_empty() && !to_oci {
            return Ok(index_raw.clone());
        }
        self.report.converted_to_oci |= to_oci;
        convert::index_with(&self.source.origin(), index_raw, &replaced, to_oci)
    }

    fn copy_manifest_blobs(&mut self, raw: &RawManifest) -> Result<()> {
        let manifest: ImageManifest = serde_json::from_slice(&raw.bytes).map_err(|e| {
            Error::invalid(self.source.origin(), format!("manifest {}", raw.digest), e.to_string())
        })?;
        // Config first: a destination that writes an archive can then name
        // files by role, and a registry sees the small blob fail fast.
        self.copy_blob(&BlobDesc::from_oci(manifest.config()))?;
        for layer in manifest.layers() {
            self.copy_blob(&BlobDesc::from_oci(layer))?;
        }
        Ok(())
    }

    fn copy_blob(&mut self, desc: &BlobDesc) -> Result<()> {
        if !self.done.insert(desc.digest.clone()) {
            return Ok(());
        }
        if self.destination.has_blob(desc)? {
            self.report.blobs_present += 1;
            return Ok(());
        }
        if let Some(from) = self.source.registry()
            && self.destination.mount_blob(desc, from)?
        {
            self.report.blobs_mounted += 1;
            return Ok(());
        }
        let mut delay = self.options.retry_delay;
        // Only a network can heal by itself; a bad local file stays bad.
        let remote = self.source.registry().is_some() || self.destination.is_remote();
        let attempts = if remote { self.options.attempts.max(1) } else { 1 };
        let mut attempt = 1;
        loop {
            let result = transport::open_blob(self.source, desc)
                .and_then(|mut reader| self.destination.put_blob(desc, &mut reader));
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::warn!(blob = %desc.digest, attempt, error = %e, "blob transfer failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) if e.is_transient() && attempts > 1 => {
                    return Err(Error::RetriesExhausted {
                        origin: self.source.origin(),
                        attempts,
                        last: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        self.report.blobs_copied += 1;
        self.report.bytes_copied += desc.size;
        Ok(())
    }
}

/// An index reduced to the entries for `wanted` platforms; other fields and
/// annotations are kept as they were.
fn filter_index(origin: &str, top: &RawManifest, wanted: &[Platform]) -> Result<RawManifest> {
    let mut value: serde_json::Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| Error::invalid(origin, format!("index {}", top.digest), e.to_string()))?;
    let Some(entries) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Err(Error::invalid(origin, format!("index {}", top.digest), "it has no manifests array"));
    };
    let mut available = Vec::new();
    entries.retain(|entry| {
        let Some(p) = entry.get("platform").and_then(|p| serde_json::from_value::<Platform>(p.clone()).ok())
        else {
            return false;
        };
        available.push(p.to_string());
        wanted.iter().any(|w| p.satisfies(w))
    });
    if entries.is_empty() {
        return Err(Error::NoMatchingPlatform {
            origin: origin.to_owned(),
            wanted: wanted.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            available: available.join(", "),
        });
    }
    let bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
    Ok(RawManifest::new(bytes, top.media_type.clone()))
}
