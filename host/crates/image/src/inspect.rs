//! A serialisable summary of an image for `caulk image inspect`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::digest::Digest;
use crate::media::Compression;
use crate::model::{Image, PlatformImage};

#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub platforms: Vec<PlatformSummary>,
    /// Index entries that are not runnable images (attestations and such).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_entries: Vec<OtherEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtherEntry {
    pub digest: String,
    pub media_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformSummary {
    pub platform: String,
    pub digest: Digest,
    pub media_type: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub config: ConfigSummary,
    pub layers: Vec<LayerSummary>,
    /// Sum of the layer blob sizes (what a pull transfers).
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub digest: Digest,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub history_entries: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub compression: Compression,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Image {
    pub fn summary(&self) -> ImageSummary {
        let annotations = match &self.index {
            Some(index) => index.annotations().clone().unwrap_or_default().into_iter().collect(),
            None => BTreeMap::new(),
        };
        ImageSummary {
            reference: self.origin().to_owned(),
            digest: self.top.digest.clone(),
            media_type: self.top.media_type.clone(),
            annotations,
            platforms: self.images.iter().map(platform_summary).collect(),
            other_entries: self
                .others
                .iter()
                .map(|d| OtherEntry {
                    digest: d.digest().to_string(),
                    media_type: d.media_type().to_string(),
                })
                .collect(),
        }
    }
}

fn platform_summary(image: &PlatformImage) -> PlatformSummary {
    let cfg = &image.config.parsed;
    let run = cfg.config().as_ref();
    let list = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();
    PlatformSummary {
        platform: image.platform.to_string(),
        digest: image.manifest.digest.clone(),
        media_type: image.manifest.media_type.clone(),
        annotations: image.annotations().into_iter().collect(),
        config: ConfigSummary {
            digest: image.config.desc.digest.clone(),
            media_type: image.config.desc.media_type.clone(),
            created: cfg.created().clone(),
            author: cfg.author().clone(),
            os: cfg.os().to_string(),
            architecture: cfg.architecture().to_string(),
            variant: cfg.variant().clone(),
            user: run.and_then(|r| r.user().clone()).filter(|u| !u.is_empty()),
            env: list(run.and_then(|r| r.env().as_ref())),
            entrypoint: list(run.and_then(|r| r.entrypoint().as_ref())),
            cmd: list(run.and_then(|r| r.cmd().as_ref())),
            working_dir: run.and_then(|r| r.working_dir().clone()).filter(|w| !w.is_empty()),
            labels: run.and_then(|r| r.labels().clone()).unwrap_or_default().into_iter().collect(),
            history_entries: cfg.history().as_ref().map_or(0, Vec::len),
        },
        layers: image
            .layers
            .iter()
            .map(|l| LayerSummary {
                digest: l.desc.digest.clone(),
                diff_id: l.diff_id.clone(),
                media_type: l.desc.media_type.clone(),
                compression: l.compression,
                size: l.desc.size,
                annotations: l.annotations.clone().into_iter().collect(),
            })
            .collect(),
        size: image.layers.iter().map(|l| l.desc.size).sum(),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

impl fmt::Display for ImageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Image:      {}", self.reference)?;
        writeln!(f, "Digest:     {}", self.digest)?;
        writeln!(f, "Media type: {}", self.media_type)?;
        for (k, v) in &self.annotations {
            writeln!(f, "Annotation: {k}={v}")?;
        }
        for p in &self.platforms {
            let c = &p.config;
            writeln!(f)?;
            let layers = if p.layers.len() == 1 { "layer" } else { "layers" };
            writeln!(f, "Platform {}  ({} in {} {layers})", p.platform, human(p.size), p.layers.len())?;
            writeln!(f, "  Manifest: {} ({})", p.digest, p.media_type)?;
            writeln!(f, "  Config:   {}", c.digest)?;
            let mut line = |label: &str, value: String| writeln!(f, "  {label:<9} {value}");
            if let Some(created) = &c.created {
                line("Created:", created.clone())?;
            }
            if let Some(user) = &c.user {
                line("User:", user.clone())?;
            }
            if !c.entrypoint.is_empty() {
                line("Entry:", c.entrypoint.join(" "))?;
            }
            if !c.cmd.is_empty() {
                line("Cmd:", c.cmd.join(" "))?;
            }
            if let Some(w) = &c.working_dir {
                line("Workdir:", w.clone())?;
            }
            for e in &c.env {
                line("Env:", e.clone())?;
            }
            for (k, v) in &c.labels {
                line("Label:", format!("{k}={v}"))?;
            }
            for (i, l) in p.layers.iter().enumerate() {
                let mut s = String::new();
                let _ = write!(s, "{i:>2} {} {:>10} {:?}", l.digest, human(l.size), l.compression);
                writeln!(f, "  Layer {s}")?;
            }
        }
        for o in &self.other_entries {
            writeln!(f, "\nOther entry {} ({})", o.digest, o.media_type)?;
        }
        Ok(())
    }
}
