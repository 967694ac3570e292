//! What a patch run did: per package its outcome, the layer, the timings.
//! `--json` prints it as the `caulk.patch/v1` document.

use std::fmt::Write as _;
use std::time::Duration;

use caulk_image::PlatformImage;
use serde::{Serialize, Serializer};

use super::PatchRequest;
use super::dest::Destination;
use crate::model::{Outcome, OutcomeStatus, SelectedUpdate, SkippedUpdate, UpdateMode, VersionTarget};
use crate::scan::Scanned;
use crate::updates::PackageUpdate;

pub const SCHEMA: &str = "caulk.patch/v1";

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Result {
    Patched,
    NothingToPatch,
    Failed,
}

/// What became of one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowStatus {
    /// Now at a fixed version.
    Patched,
    /// Already at a fixed version.
    AlreadyFixed,
    /// The updater did not try (not installed, held, no candidate, ...).
    Skipped,
    /// Tried and not fixed.
    Failed,
    /// Not handed to any updater (package type not asked for, no updater).
    LeftOut,
}

impl RowStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::AlreadyFixed => "already fixed",
            Self::Skipped => "skipped",
            Self::Failed => "FAILED",
            Self::LeftOut => "left out",
        }
    }
}

/// One package's line in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub ecosystem: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub updater: Option<String>,
    pub from: String,
    /// The version installed now (patched), or aimed for.
    pub to: Option<String>,
    pub status: RowStatus,
    pub vulnerabilities: Vec<String>,
    /// Why, for anything but a plain success.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The rule that chose the version (library updates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// Candidates considered and not chosen, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<(String, String)>,
    /// Checks the updater made after patching.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<(String, bool, String)>,
    /// Vulnerabilities the version now installed does not fix (its fixes
    /// are on another release line): left out of the VEX document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_open: Vec<String>,
    /// Each vulnerability's fixed versions, from the report.
    #[serde(skip)]
    pub fixes: Vec<(String, Vec<String>)>,
}

impl Row {
    pub fn left_out(update: &PackageUpdate, why: &str) -> Self {
        Self {
            ecosystem: update.ecosystem.clone(),
            name: update.name.clone(),
            location: update.location.clone(),
            updater: None,
            from: update.installed_version.clone(),
            to: None,
            status: RowStatus::LeftOut,
            vulnerabilities: update.vulnerabilities.iter().map(|v| v.id.clone()).collect(),
            detail: why.to_owned(),
            rationale: None,
            passed_over: Vec::new(),
            checks: Vec::new(),
            still_open: Vec::new(),
            fixes: Vec::new(),
        }
    }

    pub fn skipped(updater: &str, skipped: &SkippedUpdate, update: Option<&PackageUpdate>) -> Self {
        Self {
            ecosystem: skipped.ecosystem.clone(),
            name: skipped.name.clone(),
            location: skipped.location.clone(),
            updater: Some(updater.to_owned()),
            from: skipped
                .installed_version
                .clone()
                .or_else(|| update.map(|u| u.installed_version.clone()))
                .unwrap_or_default(),
            to: None,
            status: if skipped.already_fixed { RowStatus::AlreadyFixed } else { RowStatus::Skipped },
            vulnerabilities: update
                .map(|u| u.vulnerabilities.iter().map(|v| v.id.clone()).collect())
                .unwrap_or_default(),
            detail: skipped.reason.clone(),
            rationale: None,
            passed_over: Vec::new(),
            checks: Vec::new(),
            still_open: Vec::new(),
            fixes: Vec::new(),
        }
    }

    pub fn verified(
        updater: &str,
        selected: &SelectedUpdate,
        verdict: Option<&Outcome>,
        update: Option<&PackageUpdate>,
    ) -> Self {
        let aimed = match &selected.target {
            VersionTarget::AtLeast(v) | VersionTarget::Exactly(v) => Some(v.clone()),
            VersionTarget::Newest => None,
        };
        let (status, to, detail, checks) = match verdict {
            Some(o) => (
                match o.status {
                    OutcomeStatus::Patched => RowStatus::Patched,
                    OutcomeStatus::AlreadyFixed => RowStatus::AlreadyFixed,
                    OutcomeStatus::Failed => RowStatus::Failed,
                },
                o.to.clone().or(aimed),
                o.detail.clone(),
                o.checks.iter().map(|c| (c.name.clone(), c.passed, c.detail.clone())).collect(),
            ),
            None => (
                RowStatus::Failed,
                aimed,
                "the updater did not report on this package".to_owned(),
                Vec::new(),
            ),
        };
        let mut vulnerabilities = selected.vulnerabilities.clone();
        if vulnerabilities.is_empty()
            && let Some(u) = update
        {
            vulnerabilities = u.vulnerabilities.iter().map(|v| v.id.clone()).collect();
        }
        let fixes: Vec<(String, Vec<String>)> = update
            .map(|u| u.vulnerabilities.iter().map(|v| (v.id.clone(), v.fixed_versions.clone())).collect())
            .unwrap_or_default();
        let still_open = match (&to, status) {
            (Some(now), RowStatus::Patched) => vulnerabilities
                .iter()
                .filter(|id| {
                    fixes.iter().find(|(v, _)| v == *id).is_some_and(|(_, fixed)| {
                        !crate::updates::fixes_vulnerability(&selected.ecosystem, now, fixed)
                    })
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        Self {
            ecosystem: selected.ecosystem.clone(),
            name: selected.name.clone(),
            location: selected.location.clone(),
            updater: Some(updater.to_owned()),
            from: selected.from.clone(),
            to,
            status,
            vulnerabilities,
            detail,
            rationale: selected.rationale.clone(),
            passed_over: selected.passed_over.iter().map(|p| (p.version.clone(), p.reason.clone())).collect(),
            checks,
            still_open,
            fixes,
        }
    }

    /// The vulnerabilities this row fixed: none unless patched, and not those
    /// the version now installed leaves open.
    pub fn fixed_vulnerabilities(&self) -> Vec<String> {
        if self.status != RowStatus::Patched {
            return Vec::new();
        }
        self.vulnerabilities.iter().filter(|v| !self.still_open.contains(v)).cloned().collect()
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    #[serde(serialize_with = "millis", rename = "total_ms")]
    pub total: Duration,
    /// Inside package-manager steps.
    #[serde(serialize_with = "millis", rename = "steps_ms")]
    pub steps: Duration,
    /// Waiting for commands and package-index look-ups run to answer
    /// updaters' questions (pip's dry runs, `pip check`), wall time.
    #[serde(serialize_with = "millis", rename = "probes_ms")]
    pub probes: Duration,
    /// Writing the layer and the image.
    #[serde(serialize_with = "millis", rename = "write_ms")]
    pub write: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub entries: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct PatchSummary {
    pub schema: &'static str,
    pub image: String,
    pub destination: String,
    /// Digest of what was written at the destination.
    pub digest: Option<String>,
    pub platform: String,
    pub mode: &'static str,
    pub report: Option<String>,
    pub scanner: Option<String>,
    pub result: Result,
    pub rows: Vec<Row>,
    pub layer: Option<LayerInfo>,
    pub vex: Option<String>,
    pub timings: Timings,
}

impl PatchSummary {
    pub fn new(
        request: &PatchRequest,
        destination: &Destination,
        image: &PlatformImage,
        mode: UpdateMode,
        scanned: Option<&Scanned>,
    ) -> Self {
        let p = &image.platform;
        Self {
            schema: SCHEMA,
            image: request.image.to_string(),
            destination: destination.reference.to_string(),
            digest: None,
            platform: match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            },
            mode: match mode {
                UpdateMode::Report => "report",
                UpdateMode::All => "all",
            },
            report: request.report.as_ref().map(|p| p.display().to_string()),
            scanner: scanned.map(|s| s.scanner.name.clone()),
            result: Result::NothingToPatch,
            rows: Vec::new(),
            layer: None,
            vex: None,
            timings: Timings::default(),
        }
    }

    pub fn sort_rows(&mut self) {
        self.rows
            .sort_by(|a, b| (&a.ecosystem, &a.name, &a.location).cmp(&(&b.ecosystem, &b.name, &b.location)));
    }

    pub fn count(&self, status: RowStatus) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// The table and closing lines for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if !self.rows.is_empty() {
            let mut rows = vec![[
                "PACKAGE".to_owned(),
                "FROM".into(),
                "TO".into(),
                "VULNERABILITIES".into(),
                "OUTCOME".into(),
            ]];
            // In update-all mode most packages are already current: count them.
            let quiet_current = self.mode == "all";
            for r in self.rows.iter().filter(|r| !(quiet_current && r.status == RowStatus::AlreadyFixed)) {
                let vulns = if r.vulnerabilities.len() > 3 {
                    format!("{} (+{})", r.vulnerabilities[..3].join(", "), r.vulnerabilities.len() - 3)
                } else {
                    r.vulnerabilities.join(", ")
                };
                let mut outcome = r.status.label().to_owned();
                if !r.detail.is_empty() && r.status != RowStatus::Patched {
                    let _ = write!(outcome, ": {}", r.detail);
                }
                rows.push([
                    r.name.clone(),
                    r.from.clone(),
                    r.to.clone().unwrap_or_else(|| "-".into()),
                    vulns,
                    outcome,
                ]);
            }
            let mut table = Vec::new();
            crate::cli::write_table(&mut table, &rows).expect("writing to memory");
            out.push_str(&String::from_utf8_lossy(&table));
            for r in self.rows.iter().filter(|r| r.rationale.is_some() || !r.passed_over.is_empty()) {
                let _ = write!(out, "  {}: {}", r.name, r.rationale.as_deref().unwrap_or(""));
                for (v, why) in &r.passed_over {
                    let _ = write!(out, "; passed over {v}: {why}");
                }
                out.push('\n');
            }
            for r in self.rows.iter().filter(|r| !r.still_open.is_empty()) {
                let _ = writeln!(
                    out,
                    "  {} {}: still open (fixed only on another release line): {}",
                    r.name,
                    r.to.as_deref().unwrap_or(""),
                    r.still_open.join(", ")
                );
            }
        }
        let patched = self.count(RowStatus::Patched);
        let failed = self.count(RowStatus::Failed);
        let current = self.count(RowStatus::AlreadyFixed);
        if self.mode == "all" && current > 0 {
            let _ = writeln!(out, "{current} other packages were already up to date");
        }
        match self.result {
            Result::Patched => {
                let _ = writeln!(out, "\npatched {patched} packages into {}", self.destination);
                if let Some(d) = &self.digest {
                    let _ = writeln!(out, "digest {d}");
                }
                if failed > 0 {
                    let _ = writeln!(
                        out,
                        "{failed} updates failed and are not in the VEX document (--ignore-errors)"
                    );
                }
            }
            Result::NothingToPatch => {
                let _ =
                    writeln!(out, "\nnothing to patch: no package needed an update; no image was written");
            }
            // The error message that follows says it.
            Result::Failed => {}
        }
        if let Some(vex) = &self.vex {
            let _ = writeln!(out, "VEX document: {vex}");
        }
        out
    }
}
