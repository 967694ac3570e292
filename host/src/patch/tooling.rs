//! Tooling images for the local engine: an image named by reference is
//! pulled once, its layers unpacked into the layer cache and merged into one
//! read-only root fs under `CACHE/tooling/sha256/HEX` (HEX: the digest of
//! the manifest for the host's platform), where later runs find it.
//!
//! A root appears (by rename) only when complete, as layers do in the layer
//! cache; an exclusive `flock` on `CACHE/tooling/HEX.lock` keeps two caulk
//! processes from merging the same image at once. Within a run each
//! reference is resolved once.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use caulk_exec::CancelToken;
use caulk_image::layer::{LayerCache, UnpackOptions, WhiteoutFormat};
use caulk_image::{Image, ImageRef, TransportOptions};

/// Tooling images by reference, unpacked on first use.
pub struct ToolingImages {
    root: PathBuf,
    layers: PathBuf,
    transport: TransportOptions,
    /// One slot per reference, so that a pull of one image does not hold
    /// up commands that need another.
    resolved: Mutex<HashMap<String, Arc<Mutex<Option<PathBuf>>>>>,
}

impl ToolingImages {
    /// Tooling roots under `cache_dir/tooling`, their layers in
    /// `cache_dir/layers` (shared with the images being patched).
    pub fn new(cache_dir: &Path, transport: TransportOptions) -> Self {
        Self {
            root: cache_dir.join("tooling"),
            layers: cache_dir.join("layers"),
            transport,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The unpacked root fs of `reference`, pulling and unpacking it first
    /// if no run has. Errors name the image.
    pub fn root(&self, reference: &str, cancel: &CancelToken) -> caulk_exec::Result<PathBuf> {
        let fail = |reason: String| caulk_exec::Error::ToolingImage { image: reference.to_owned(), reason };
        let slot = {
            let mut slots = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(reference.to_owned()).or_default())
        };
        // Held while resolving: commands that ask for this image at once
        // wait for one pull.
        let mut resolved = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = resolved.as_ref() {
            return Ok(dir.clone());
        }
        let parsed = ImageRef::parse(reference).map_err(|e| fail(e.to_string()))?;
        let image = Image::open(&parsed, &self.transport).map_err(|e| fail(e.to_string()))?;
        let platform = image.image_for(None).map_err(|e| fail(e.to_string()))?;
        let hex = platform.manifest.digest.hex().to_owned();
        let dir = self.root.join("sha256").join(&hex);
        if !dir.is_dir() {
            let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
            fs::create_dir_all(self.root.join("sha256")).map_err(|e| io("creating the tooling cache", e))?;
            let lock = File::create(self.root.join(format!("{hex}.lock")))
                .map_err(|e| io("creating its lock file", e))?;
            lock.lock().map_err(|e| io("locking it", e))?;
            if !dir.is_dir() {
                tracing::info!(image = reference, digest = %platform.manifest.digest, "unpacking the tooling image");
                let cache = LayerCache::new(&self.layers).map_err(|e| fail(e.to_string()))?;
                let options = UnpackOptions {
                    whiteouts: WhiteoutFormat::OverlayTrusted,
                    preserve_ownership: true,
                    device_nodes: true,
                };
                let lowers = cache
                    .unpack_image(image.source().as_ref(), platform, &options)
                    .map_err(|e| fail(e.to_string()))?;
                if lowers.is_empty() {
                    return Err(fail("it has no layers: there are no tools to run".to_owned()));
                }
                let tmp = self.root.join(format!("{hex}.tmp"));
                if tmp.exists() {
                    // Left by a run that died while holding the lock.
                    fs::remove_dir_all(&tmp).map_err(|e| io("removing an unfinished unpack", e))?;
                }
                fs::create_dir(&tmp).map_err(|e| io("creating its root dir", e))?;
                if let Err(e) = caulk_exec::flatten(&lowers, &tmp, cancel) {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(match e {
                        caulk_exec::Error::Cancelled { .. } => e,
                        other => fail(format!("merging its layers: {other}")),
                    });
                }
                fs::rename(&tmp, &dir).map_err(|e| io("publishing its root dir", e))?;
            }
        }
        *resolved = Some(dir.clone());
        Ok(dir)
    }
}
