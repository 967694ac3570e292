//! What a fleet run did, per job: patched, skipped, up to date, failed or
//! not run, and why; a table for people and `caulk.fleet/v1` JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::config::ImageSpec;
use super::{Job, Shard};
use crate::patch::PatchSummary;
use crate::patch::summary::Result as PatchResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetStatus {
    Patched,
    /// Skip detection found nothing newer to fix, or a `list` tag is missing.
    Skipped,
    /// Patched nothing: no package had an update.
    UpToDate,
    Failed,
    /// Not started (`--fail-fast` after a failure, or cancelled).
    NotRun,
}

impl FleetStatus {
    fn word(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Skipped => "skipped",
            Self::UpToDate => "up-to-date",
            Self::Failed => "failed",
            Self::NotRun => "not-run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    /// The config entry's name.
    pub name: String,
    /// The source image with its tag (`-` when the entry yielded none).
    pub source: String,
    /// The patched image written, or the existing one a skip relied on.
    pub target: Option<String>,
    pub status: FleetStatus,
    pub details: String,
    /// The job's own `caulk patch` summary, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Box<PatchSummary>>,
}

impl FleetRow {
    pub(super) fn finished(job: &Job, summary: PatchSummary) -> Self {
        let (status, details) = match summary.result {
            PatchResult::Patched => {
                // A multi-platform run keeps its rows per platform.
                let patched = std::iter::once(&summary)
                    .chain(&summary.platforms)
                    .flat_map(|s| &s.rows)
                    .filter(|r| r.status == crate::patch::RowStatus::Patched)
                    .count();
                (
                    FleetStatus::Patched,
                    format!(
                        "{}; {}",
                        crate::patch::summary::counted(patched, "package updated", "packages updated"),
                        job.why
                    ),
                )
            }
            PatchResult::NothingToPatch => {
                (FleetStatus::UpToDate, "no package had an update; nothing was written".to_owned())
            }
            PatchResult::Failed => (FleetStatus::Failed, "updates failed; nothing was written".to_owned()),
        };
        Self {
            name: job.name.clone(),
            source: job.source_name.clone(),
            target: Some(job.target_name.clone()),
            status,
            details,
            patch: Some(Box::new(summary)),
        }
    }

    pub(super) fn failed(job: &Job, message: &str) -> Self {
        Self {
            name: job.name.clone(),
            source: job.source_name.clone(),
            target: Some(job.target_name.clone()),
            status: FleetStatus::Failed,
            details: message.to_owned(),
            patch: None,
        }
    }

    pub(super) fn not_run(job: &Job, why: &str) -> Self {
        Self { status: FleetStatus::NotRun, ..Self::failed(job, why) }
    }

    pub(super) fn skipped(spec: &ImageSpec, source: &str, existing: &str, why: &str) -> Self {
        Self {
            name: spec.name.clone(),
            source: source.to_owned(),
            target: Some(existing.strip_prefix("oci:").unwrap_or(existing).to_owned()),
            status: FleetStatus::Skipped,
            details: why.to_owned(),
            patch: None,
        }
    }

    pub(super) fn missing(spec: &ImageSpec, source: &str) -> Self {
        Self {
            name: spec.name.clone(),
            source: source.to_owned(),
            target: None,
            status: FleetStatus::Skipped,
            details: "the tag is not in the repository".to_owned(),
            patch: None,
        }
    }

    pub(super) fn config_failed(spec: &ImageSpec, why: &str) -> Self {
        Self {
            name: spec.name.clone(),
            source: spec.image.clone(),
            target: None,
            status: FleetStatus::Failed,
            details: why.to_owned(),
            patch: None,
        }
    }

    /// An entry with no job, not as a failure (Copa's empty tag match).
    pub(super) fn config_skipped(spec: &ImageSpec, why: &str) -> Self {
        Self { status: FleetStatus::Skipped, ..Self::config_failed(spec, why) }
    }

    pub(super) fn job_failed(spec: &ImageSpec, source: &str, target: Option<String>, why: &str) -> Self {
        Self { source: source.to_owned(), target, ..Self::config_failed(spec, why) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary {
    pub schema: &'static str,
    /// `I/N` under `--shard`.
    pub shard: Option<String>,
    pub rows: Vec<FleetRow>,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl FleetSummary {
    pub(super) fn new(shard: Option<Shard>) -> Self {
        Self {
            schema: "caulk.fleet/v1",
            shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
            rows: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn count(&self, status: FleetStatus) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// The table and a closing line of totals.
    pub fn render_text(&self) -> String {
        let mut rows = vec![["NAME", "STATUS", "SOURCE", "TARGET", "DETAILS"].map(str::to_owned).to_vec()];
        for row in &self.rows {
            rows.push(vec![
                row.name.clone(),
                row.status.word().to_owned(),
                row.source.clone(),
                row.target.clone().unwrap_or_else(|| "-".to_owned()),
                row.details.replace('\n', " "),
            ]);
        }
        let mut out = Vec::new();
        let _ = crate::table::write(&mut out, &rows);
        let mut text = String::from_utf8_lossy(&out).into_owned();
        let totals: Vec<String> = [
            FleetStatus::Patched,
            FleetStatus::Skipped,
            FleetStatus::UpToDate,
            FleetStatus::Failed,
            FleetStatus::NotRun,
        ]
        .into_iter()
        .map(|s| (s, self.count(s)))
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.word()))
        .collect();
        let shard = self.shard.as_ref().map(|s| format!(" (shard {s})")).unwrap_or_default();
        let _ = writeln!(
            text,
            "{}{shard} in {:.1}s: {}",
            crate::patch::summary::counted(self.rows.len(), "image", "images"),
            self.elapsed.as_secs_f64(),
            if totals.is_empty() { "nothing to do".to_owned() } else { totals.join(", ") }
        );
        text
    }
}
