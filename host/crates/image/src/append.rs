//! Appending a layer: a new config (diff_ids, a history entry, labels) and
//! a new manifest over the original layers, whose blobs are left untouched.
//!
//! Both documents are edited as JSON values rather than through the
//! `oci-spec` structs, because Docker configs carry fields the OCI types do
//! not know (`container_config`, `docker_version`, ...) and a re-serialised
//! struct would silently drop them.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::copy::{CopyOptions, CopyReport, copy_from_source};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer::WrittenLayer;
use crate::media::{self, ManifestKind};
use crate::model::{Image, PlatformImage};
use crate::reference::{ImageRef, RegistryRef};
use crate::transport::{self, BlobDesc, ImageSource, LocalBlob, RawManifest, TransportOptions};

/// A history entry for the new layer.
#[derive(Debug, Clone, Default)]
pub struct HistoryEntry {
    /// RFC 3339 time; also becomes the config's `created`.
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
}

/// What to change in one platform's image.
#[derive(Debug, Clone, Default)]
pub struct AppendSpec {
    /// Remove this many layers from the top first, with their history
    /// entries (to replace an earlier caulk layer instead of stacking).
    pub drop_last: usize,
    /// The layer to add on top, if any.
    pub layer: Option<WrittenLayer>,
    pub history: HistoryEntry,
    /// Labels to set in the config (`config.Labels`).
    pub labels: BTreeMap<String, String>,
    /// Annotations for the new layer's descriptor.
    pub layer_annotations: BTreeMap<String, String>,
}

/// The new documents for one platform.
#[derive(Debug, Clone)]
pub struct Appended {
    pub old_manifest: Digest,
    pub manifest: RawManifest,
    pub config: BlobDesc,
    pub config_bytes: Vec<u8>,
    pub layer: Option<(BlobDesc, PathBuf)>,
}

fn invalid(image: &PlatformImage, what: &str, reason: impl Into<String>) -> Error {
    Error::invalid(format!("image {}", image.manifest.digest), what, reason)
}

/// Builds the new config and manifest of `image` per `spec`.
pub fn append(image: &PlatformImage, spec: &AppendSpec) -> Result<Appended> {
    let layer_count = image.layers.len();
    if spec.drop_last > layer_count {
        return Err(invalid(
            image,
            "append",
            format!("cannot drop {} of {layer_count} layers", spec.drop_last),
        ));
    }
    let keep = layer_count - spec.drop_last;

    // Config.
    let mut config: Value =
        serde_json::from_slice(&image.config.bytes).map_err(|e| invalid(image, "config", e.to_string()))?;
    let cfg = config.as_object_mut().ok_or_else(|| invalid(image, "config", "not a JSON object"))?;
    let diff_ids = cfg
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| invalid(image, "config", "no rootfs.diff_ids"))?;
    diff_ids.truncate(keep);
    if let Some(layer) = &spec.layer {
        diff_ids.push(json!(layer.diff_id));
    }
    if let Some(history) = cfg.get_mut("history").and_then(Value::as_array_mut) {
        let mut to_drop = spec.drop_last;
        while to_drop > 0 {
            let Some(last) = history.pop() else { break };
            if !last.get("empty_layer").and_then(Value::as_bool).unwrap_or(false) {
                to_drop -= 1;
            }
        }
    }
    if spec.layer.is_some() {
        let mut entry = Map::new();
        for (key, value) in [
            ("created", &spec.history.created),
            ("created_by", &spec.history.created_by),
            ("comment", &spec.history.comment),
            ("author", &spec.history.author),
        ] {
            if let Some(v) = value {
                entry.insert(key.to_owned(), json!(v));
            }
        }
        match cfg.get_mut("history").and_then(Value::as_array_mut) {
            Some(history) => history.push(Value::Object(entry)),
            None => {
                cfg.insert("history".to_owned(), json!([entry]));
            }
        }
    }
    if let Some(created) = &spec.history.created {
        cfg.insert("created".to_owned(), json!(created));
    }
    if !spec.labels.is_empty() {
        let run = cfg.entry("config").or_insert_with(|| json!({}));
        let run =
            run.as_object_mut().ok_or_else(|| invalid(image, "config", "config.config is not an object"))?;
        let labels = run.entry("Labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| invalid(image, "config", "config.Labels is not an object"))?;
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), json!(v));
        }
    }
    let config_bytes = serde_json::to_vec(&config).expect("a JSON value serialises");
    let config_desc = BlobDesc {
        media_type: image.config.desc.media_type.clone(),
        digest: Digest::of(&config_bytes),
        size: config_bytes.len() as u64,
    };

    // Manifest.
    let mut manifest: Value = serde_json::from_slice(&image.manifest.bytes)
        .map_err(|e| invalid(image, "manifest", e.to_string()))?;
    let m = manifest.as_object_mut().ok_or_else(|| invalid(image, "manifest", "not a JSON object"))?;
    let config_entry = m
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid(image, "manifest", "no config"))?;
    config_entry.insert("digest".to_owned(), json!(config_desc.digest));
    config_entry.insert("size".to_owned(), json!(config_desc.size));
    let layers = m
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| invalid(image, "manifest", "no layers"))?;
    layers.truncate(keep);
    let mut new_layer = None;
    if let Some(layer) = &spec.layer {
        let desc = BlobDesc {
            media_type: media::layer_type(image.family(), layer.compression)?.to_owned(),
            digest: layer.digest.clone(),
            size: layer.size,
        };
        let mut entry = json!({"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size});
        if !spec.layer_annotations.is_empty() {
            entry["annotations"] = json!(spec.layer_annotations);
        }
        layers.push(entry);
        new_layer = Some((desc, layer.path.clone()));
    }
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
    Ok(Appended {
        old_manifest: image.manifest.digest.clone(),
        manifest: RawManifest::new(manifest_bytes, image.manifest.media_type.clone()),
        config: config_desc,
        config_bytes,
        layer: new_layer,
    })
}

/// An image with some platforms replaced, served as an [`ImageSource`] so
/// the ordinary copy writes it (new blobs, then manifests, then the index).
pub struct EditedImage {
    base: Arc<dyn ImageSource>,
    top: RawManifest,
    manifests: HashMap<Digest, RawManifest>,
    configs: HashMap<Digest, Vec<u8>>,
    layers: HashMap<Digest, PathBuf>,
}

impl EditedImage {
    /// Applies `edits` (from [`append`]) to `image`.
    pub fn new(image: &Image, edits: Vec<Appended>) -> Result<Self> {
        let mut replaced: HashMap<Digest, RawManifest> = HashMap::new();
        let mut edited = EditedImage {
            base: Arc::clone(image.source()),
            top: image.top.clone(),
            manifests: HashMap::new(),
            configs: HashMap::new(),
            layers: HashMap::new(),
        };
        for edit in edits {
            edited.configs.insert(edit.config.digest.clone(), edit.config_bytes);
            if let Some((desc, path)) = edit.layer {
                edited.layers.insert(desc.digest, path);
            }
            edited.manifests.insert(edit.manifest.digest.clone(), edit.manifest.clone());
            replaced.insert(edit.old_manifest, edit.manifest);
        }
        edited.top = match media::manifest_kind(&image.top.media_type) {
            Some(ManifestKind::Manifest) => match replaced.remove(&image.top.digest) {
                Some(new) => new,
                None => image.top.clone(),
            },
            Some(ManifestKind::Index) => {
                let mut index: Value = serde_json::from_slice(&image.top.bytes)
                    .map_err(|e| Error::invalid(image.origin(), "index", e.to_string()))?;
                let entries = index
                    .get_mut("manifests")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| Error::invalid(image.origin(), "index", "no manifests array"))?;
                for entry in entries {
                    let Some(old) =
                        entry.get("digest").and_then(Value::as_str).and_then(|d| Digest::parse(d).ok())
                    else {
                        continue;
                    };
                    if let Some(new) = replaced.remove(&old) {
                        entry["digest"] = json!(new.digest);
                        entry["size"] = json!(new.bytes.len());
                    }
                }
                RawManifest::new(
                    serde_json::to_vec(&index).expect("serialisable"),
                    image.top.media_type.clone(),
                )
            }
            None => unreachable!("Image::from_source refuses other top-level types"),
        };
        if let Some(left) = replaced.keys().next() {
            return Err(Error::Unsupported {
                transport: image.origin().to_owned(),
                what: format!(
                    "replacing manifest {left}, which is not a direct entry of the top-level index"
                ),
            });
        }
        Ok(edited)
    }

    /// Writes the edited image to `destination`.
    pub fn write(
        &self,
        destination: &ImageRef,
        options: &CopyOptions,
        transport: &TransportOptions,
    ) -> Result<CopyReport> {
        copy_from_source(self, transport::open_destination(destination, transport)?, options)
    }
}

impl ImageSource for EditedImage {
    fn origin(&self) -> String {
        format!("{} (edited)", self.base.origin())
    }

    fn top(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn manifest(&self, desc: &BlobDesc) -> Result<RawManifest> {
        match self.manifests.get(&desc.digest) {
            Some(m) => Ok(m.clone()),
            None => self.base.manifest(desc),
        }
    }

    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        if let Some(bytes) = self.configs.get(&desc.digest) {
            return Ok(Box::new(std::io::Cursor::new(bytes.clone())));
        }
        if let Some(path) = self.layers.get(&desc.digest) {
            return Ok(Box::new(
                std::fs::File::open(path).ctx(|| format!("opening layer {}", path.display()))?,
            ));
        }
        self.base.blob(desc)
    }

    fn local_blob(&self, desc: &BlobDesc) -> Option<LocalBlob> {
        if let Some(path) = self.layers.get(&desc.digest) {
            return Some(LocalBlob { path: path.clone(), offset: 0 });
        }
        if self.configs.contains_key(&desc.digest) {
            return None;
        }
        self.base.local_blob(desc)
    }

    fn registry(&self) -> Option<&RegistryRef> {
        self.base.registry()
    }
}
