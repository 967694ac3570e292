//! `docker-archive:FILE[:REF]`: the format of `docker save` / `docker load`.
//!
//! Such an archive has no manifest in the registry sense, only manifest.json
//! naming a config file and layer files per image. Reading synthesises a
//! Docker v2 schema 2 manifest over those files (layers keep their bytes and
//! so their digests); writing stores config and layers as they are, so an
//! image taken from a registry and loaded into Docker keeps its diff_ids.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::oci_layout::ArchiveWriter;
use super::tar_index::{Span, TarIndex};
use super::{BlobDesc, ImageDestination, ImageSource, LocalBlob, MAX_DOCUMENT_SIZE, RawManifest};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::media::{self, Compression};
use crate::reference::ArchiveSelector;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigRootfs {
    rootfs: Rootfs,
}

#[derive(Deserialize)]
struct Rootfs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// Read side.
pub struct DockerArchiveSource {
    tar: TarIndex,
    origin: String,
    top: RawManifest,
    blobs: HashMap<Digest, Span>,
}

impl DockerArchiveSource {
    pub fn open(file: &Path, selector: Option<&ArchiveSelector>, origin: String) -> Result<Self> {
        let tar = TarIndex::scan(file)?;
        let manifest_bytes = tar
            .read("manifest.json", MAX_DOCUMENT_SIZE)?
            .ok_or_else(|| Error::invalid(&origin, "docker archive", "it has no manifest.json"))?;
        let entries: Vec<ArchiveEntry> = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::invalid(&origin, "manifest.json", e.to_string()))?;
        let tags = |e: &ArchiveEntry| e.repo_tags.clone().unwrap_or_default();
        let all_tags: Vec<String> = entries.iter().flat_map(tags).collect();
        let entry = match selector {
            None => match entries.as_slice() {
                [only] => only,
                [] => return Err(Error::invalid(&origin, "manifest.json", "it lists no images")),
                _ => {
                    return Err(Error::invalid(
                        &origin,
                        "reference",
                        format!(
                            "the archive holds {} images; name one with :NAME:TAG or :@N (tags: {})",
                            entries.len(),
                            all_tags.join(", ")
                        ),
                    ));
                }
            },
            Some(ArchiveSelector::Index(i)) => entries.get(*i).ok_or_else(|| Error::ImageNotFound {
                origin: origin.clone(),
                reference: format!("@{i}"),
                hint: format!(" (the archive holds {} images)", entries.len()),
            })?,
            Some(ArchiveSelector::Tag(wanted)) => entries
                .iter()
                .find(|e| tags(e).iter().any(|t| normalize(t).as_deref() == Some(wanted.as_str())))
                .ok_or_else(|| Error::ImageNotFound {
                    origin: origin.clone(),
                    reference: wanted.clone(),
                    hint: format!(" (tags in the archive: {})", all_tags.join(", ")),
                })?,
        };

        let config_bytes = tar.read(&entry.config, MAX_DOCUMENT_SIZE)?.ok_or_else(|| {
            Error::invalid(&origin, "manifest.json", format!("config {} is not in the archive", entry.config))
        })?;
        let config_digest = Digest::of(&config_bytes);
        let rootfs: ConfigRootfs = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::invalid(&origin, format!("config {}", entry.config), e.to_string()))?;
        let mut blobs = HashMap::new();
        blobs.insert(config_digest.clone(), tar.get(&entry.config).expect("read above"));

        let mut layers = Vec::new();
        let mut any_zstd = false;
        for (i, name) in entry.layers.iter().enumerate() {
            let span = tar.get(name).ok_or_else(|| {
                Error::invalid(&origin, "manifest.json", format!("layer {name} is not in the archive"))
            })?;
            let mut head = [0u8; 4];
            let n =
                read_up_to(&mut tar.open(span)?, &mut head).ctx(|| format!("reading {name} in {origin}"))?;
            let compression = media::sniff_compression(&head[..n]);
            let from_name = name
                .strip_prefix("blobs/sha256/")
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
            // An uncompressed layer's digest is its diff_id; trusting the
            // config (or a content-addressed name) here costs nothing because
            // every read is verified against it anyway.
            let digest = match (compression, rootfs.rootfs.diff_ids.get(i).cloned(), from_name) {
                (_, _, Some(d)) | (Compression::None, Some(d), None) => d,
                _ => {
                    let mut hashing = HashingReader::new(tar.open(span)?);
                    std::io::copy(&mut hashing, &mut std::io::sink())
                        .ctx(|| format!("reading {name} in {origin}"))?;
                    hashing.finish().0
                }
            };
            any_zstd |= compression == Compression::Zstd;
            blobs.insert(digest.clone(), span);
            layers.push((digest, span.size, compression));
        }
        let family = if any_zstd { media::Family::Oci } else { media::Family::Docker };
        let (manifest_type, config_type) = match family {
            media::Family::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
            media::Family::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
        };
        let layer_json: Vec<serde_json::Value> = layers
            .iter()
            .map(|(digest, size, compression)| {
                Ok(serde_json::json!({
                    "mediaType": media::layer_type(family, *compression)?,
                    "size": size,
                    "digest": digest,
                }))
            })
            .collect::<Result<_>>()?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "size": config_bytes.len(), "digest": config_digest},
            "layers": layer_json,
        });
        let bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
        Ok(DockerArchiveSource { tar, origin, top: RawManifest::new(bytes, manifest_type), blobs })
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// RepoTags are written in Docker's short form (`debian:12`); compare them
/// fully qualified.
fn normalize(tag: &str) -> Option<String> {
    let r: oci_spec::distribution::Reference = tag.parse().ok()?;
    Some(format!("{}/{}:{}", r.registry(), r.repository(), r.tag().unwrap_or("latest")))
}

/// Docker's short form of a fully qualified name.
pub(crate) fn familiar(name: &str) -> String {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_owned()
}

impl ImageSource for DockerArchiveSource {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn top(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        let span = self.blobs.get(&desc.digest).ok_or_else(|| Error::BlobNotFound {
            origin: self.origin.clone(),
            digest: desc.digest.clone(),
        })?;
        Ok(Box::new(self.tar.open(*span)?))
    }

    fn local_blob(&self, desc: &BlobDesc) -> Option<LocalBlob> {
        self.blobs
            .get(&desc.digest)
            .map(|span| LocalBlob { path: self.tar.path.clone(), offset: span.offset })
    }
}

/// Write side: one image per archive, built in a temp file and renamed
/// into place at commit.
pub struct DockerArchiveDestination {
    archive: ArchiveWriter,
    file: PathBuf,
    tag: Option<String>,
    names: HashMap<Digest, String>,
}

impl DockerArchiveDestination {
    pub fn create(file: &Path, tag: Option<String>) -> Result<Self> {
        Ok(DockerArchiveDestination {
            archive: ArchiveWriter::create(file)?,
            file: file.to_owned(),
            tag,
            names: HashMap::new(),
        })
    }

    /// Writes the archive to `writer`'s file and returns it, for the daemon
    /// transport, which loads the archive rather than keeping it.
    pub(crate) fn finish_manifest(&mut self, top: &RawManifest) -> Result<()> {
        if media::manifest_kind(&top.media_type) != Some(media::ManifestKind::Manifest) {
            return Err(Error::Unsupported {
                transport: "docker-archive".to_owned(),
                what: format!("a top-level {}", top.media_type),
            });
        }
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&top.bytes)
            .map_err(|e| Error::invalid(self.origin(), "manifest", e.to_string()))?;
        let name_of = |d: &oci_spec::image::Descriptor| {
            let digest = Digest::from(d.digest());
            self.names
                .get(&digest)
                .cloned()
                .ok_or_else(|| Error::BlobNotFound { origin: self.origin(), digest })
        };
        let entry = ArchiveEntry {
            config: name_of(manifest.config())?,
            repo_tags: Some(self.tag.iter().map(|t| familiar(t)).collect()),
            layers: manifest.layers().iter().map(name_of).collect::<Result<_>>()?,
        };
        let bytes = serde_json::to_vec(&[entry]).expect("serialisable");
        self.archive.add_file("manifest.json", bytes.len() as u64, &mut bytes.as_slice())
    }
}

impl ImageDestination for DockerArchiveDestination {
    fn origin(&self) -> String {
        format!(
            "docker-archive:{}{}",
            self.file.display(),
            self.tag.as_ref().map(|t| format!(":{}", familiar(t))).unwrap_or_default()
        )
    }

    fn accepts_index(&self) -> bool {
        false
    }

    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool> {
        Ok(self.names.contains_key(&desc.digest))
    }

    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()> {
        let suffix = if media::layer_compression(&desc.media_type).is_some() { "tar" } else { "json" };
        let name = format!("{}.{suffix}", desc.digest.hex());
        self.archive.add_file(&name, desc.size, data)?;
        self.names.insert(desc.digest.clone(), name);
        Ok(())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        Err(Error::Unsupported {
            transport: "docker-archive".to_owned(),
            what: format!("storing manifest {} of an index", manifest.digest),
        })
    }

    fn commit(mut self: Box<Self>, top: &RawManifest) -> Result<()> {
        self.finish_manifest(top)?;
        self.archive.finish()
    }
}
