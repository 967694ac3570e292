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

/// A candidate version an updater did not choose, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedOverRow {
    pub version: String,
    pub reason: String,
}

/// A check an updater made after patching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    pub name: String,
    pub passed: bool,
    pub detail: String,
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
    pub passed_over: Vec<PassedOverRow>,
    /// Checks the updater made after patching.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRow>,
    /// Vulnerabilities the version now installed does not fix (its fixes
    /// are on another release line): left out of the VEX document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_open: Vec<String>,
    /// Each vulnerability's fixed versions, from the report.
    #[serde(skip)]
    pub fixes: Vec<(String, Vec<String>)>,
    /// The package URL of what is installed now, as the VEX document names
    /// it (`pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1`);
    /// patched rows only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// The package URL the report gave the package, of the version found.
    #[serde(skip)]
    pub report_purl: Option<String>,
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
            purl: None,
            report_purl: None,
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
            purl: None,
            report_purl: None,
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
                o.checks
                    .iter()
                    .map(|c| CheckRow { name: c.name.clone(), passed: c.passed, detail: c.detail.clone() })
                    .collect(),
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
        // The host's version rules decide where it has them; elsewhere the
        // updater's verdict does, and without either only an exact fix counts.
        let rules = crate::updates::has_version_rules(&selected.ecosystem);
        let plugin_says = |id: &str| {
            verdict.filter(|_| !rules)?.verdicts.iter().find(|v| v.vulnerability == id).map(|v| v.fixed)
        };
        let still_open = match (&to, status) {
            (Some(now), RowStatus::Patched) => vulnerabilities
                .iter()
                .filter(|id| {
                    fixes.iter().find(|(v, _)| v == *id).is_some_and(|(_, fixed)| {
                        !plugin_says(id).unwrap_or_else(|| {
                            crate::updates::fixes_vulnerability(&selected.ecosystem, now, fixed)
                        })
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
            passed_over: selected
                .passed_over
                .iter()
                .map(|p| PassedOverRow { version: p.version.clone(), reason: p.reason.clone() })
                .collect(),
            checks,
            still_open,
            fixes,
            purl: None,
            report_purl: update.and_then(|u| u.purl.clone()),
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

/// What the destination named before this run wrote over it.
#[derive(Debug, Clone, Serialize)]
pub struct Replaced {
    /// Its digest (the image ID for the Docker Engine), when it is an image.
    pub digest: Option<String>,
    /// Whether it was the very image written now (a reproducible re-run).
    pub same: bool,
}

impl Replaced {
    pub fn new(existing: caulk_image::Existing, written: Option<&str>) -> Self {
        match existing {
            caulk_image::Existing::Image(digest) => {
                Self { same: written == Some(digest.as_str()), digest: Some(digest) }
            }
            caulk_image::Existing::File => Self { digest: None, same: false },
        }
    }
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
    /// What the destination held before, now replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
    pub vex: Option<String>,
    /// Why `-o` got no document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vex_not_written: Option<String>,
    pub timings: Timings,
    /// Where the steps' changes were kept (memory or disk) and why; none
    /// when `--working-folder` decided or the steps ran elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_store: Option<String>,
    /// A multi-platform run: each patched platform's own summary, in index
    /// order (`digest` is then its new manifest's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PatchSummary>,
    /// Why this platform was kept unpatched (multi-platform runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Something about the written image the user should know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
            replaced: None,
            vex: None,
            vex_not_written: None,
            timings: Timings::default(),
            working_store: None,
            platforms: Vec::new(),
            error: None,
            note: None,
        }
    }

    /// Records that `-o PATH` gets no document, and why: OpenVEX's schema
    /// wants at least one statement, so an empty document would not be valid.
    pub fn no_vex(&mut self, path: Option<&std::path::Path>, why: &str) {
        let Some(path) = path else { return };
        let mut reason = format!(
            "no VEX document written to {}: {why}, and an OpenVEX document needs at least one statement",
            path.display()
        );
        if path.exists() {
            reason.push_str("; the file there is from an earlier run and was left as it was");
        }
        self.vex_not_written = Some(reason);
    }

    /// The line that says the destination's earlier image was replaced.
    pub fn replaced_line(&self) -> Option<String> {
        let replaced = self.replaced.as_ref()?;
        Some(match (&replaced.digest, replaced.same) {
            (Some(_), true) => format!("{} already held this very image; it is unchanged", self.destination),
            (Some(old), false) => {
                format!("{} already existed ({old}); it now names the patched image", self.destination)
            }
            (None, _) => format!("{} already existed and was replaced whole", self.destination),
        })
    }

    /// Gives each patched row the package URL of its new version: the
    /// report's moved to it, or one with the distribution and architecture
    /// of the image (`os`, GOARCH `architecture` and its `variant`).
    pub fn add_purls(
        &mut self,
        os: Option<&crate::model::OsRelease>,
        architecture: &str,
        variant: Option<&str>,
    ) {
        let subject = crate::vex::Subject {
            reference: String::new(),
            digest: String::new(),
            os_id: os.map(|o| o.id.clone()),
            os_version: os.and_then(|o| o.version_id.clone()),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        };
        for row in &mut self.rows {
            if row.status != RowStatus::Patched {
                continue;
            }
            let Some(version) = &row.to else { continue };
            let package = crate::vex::FixedPackage {
                ecosystem: row.ecosystem.clone(),
                name: row.name.clone(),
                version: version.clone(),
                vulnerabilities: Vec::new(),
                report_purl: row.report_purl.clone(),
            };
            row.purl = Some(crate::vex::package_purl(&package, &subject));
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
        if !self.platforms.is_empty() {
            return self.render_platforms();
        }
        let mut out = String::new();
        // In update-all mode most packages are already current: count them.
        let quiet_current = self.mode == "all";
        let shown: Vec<&Row> =
            self.rows.iter().filter(|r| !(quiet_current && r.status == RowStatus::AlreadyFixed)).collect();
        if !shown.is_empty() {
            write_rows(&mut out, &shown);
        }
        let patched = self.count(RowStatus::Patched);
        let failed = self.count(RowStatus::Failed);
        let current = self.count(RowStatus::AlreadyFixed);
        if quiet_current && current > 0 {
            let _ = writeln!(
                out,
                "{} already up to date",
                counted(current, "other package was", "other packages were")
            );
        }
        match self.result {
            Result::Patched => {
                let _ = writeln!(
                    out,
                    "\npatched {} into {}",
                    counted(patched, "package", "packages"),
                    self.destination
                );
                if let Some(d) = &self.digest {
                    let _ = writeln!(out, "digest {d}");
                }
                if let Some(line) = self.replaced_line() {
                    let _ = writeln!(out, "{line}");
                }
                if failed > 0 {
                    let _ = writeln!(
                        out,
                        "{} and {} not in the VEX document (--ignore-errors)",
                        counted(failed, "update failed", "updates failed"),
                        if failed == 1 { "is" } else { "are" }
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
        if let Some(why) = &self.vex_not_written {
            let _ = writeln!(out, "{why}");
        }
        out
    }
}

/// One row per package and place, then the notes that do not fit a cell.
impl PatchSummary {
    /// A multi-platform run: each platform's table, then one line per
    /// platform and the index written.
    fn render_platforms(&self) -> String {
        let mut out = String::new();
        for p in &self.platforms {
            let shown: Vec<&Row> =
                p.rows.iter().filter(|r| !(p.mode == "all" && r.status == RowStatus::AlreadyFixed)).collect();
            if !shown.is_empty() {
                let _ = writeln!(out, "{}:", p.platform);
                write_rows(&mut out, &shown);
                out.push('\n');
            }
        }
        for p in &self.platforms {
            let line = match (p.result, &p.error) {
                (_, Some(e)) => format!("FAILED, kept unpatched: {e}"),
                (Result::Patched, None) => format!(
                    "patched {} (manifest {})",
                    counted(p.count(RowStatus::Patched), "package", "packages"),
                    p.digest.as_deref().unwrap_or("?")
                ),
                (Result::NothingToPatch, None) => "nothing to patch; kept as it was".to_owned(),
                (Result::Failed, None) => "FAILED".to_owned(),
            };
            let _ = writeln!(out, "{}: {line}", p.platform);
        }
        match self.result {
            Result::Patched => {
                let patched = self.platforms.iter().filter(|p| p.result == Result::Patched).count();
                let _ = writeln!(
                    out,
                    "\npatched {} of {} into {}",
                    patched,
                    counted(self.platforms.len(), "platform", "platforms"),
                    self.destination
                );
                if let Some(d) = &self.digest {
                    let _ = writeln!(out, "digest {d}");
                }
                if let Some(line) = self.replaced_line() {
                    let _ = writeln!(out, "{line}");
                }
            }
            Result::NothingToPatch => {
                let _ = writeln!(out, "\nnothing to patch on any platform; no image was written");
            }
            Result::Failed => {}
        }
        if let Some(vex) = &self.vex {
            let _ = writeln!(out, "VEX document: {vex}");
        }
        for line in [&self.note, &self.vex_not_written].into_iter().flatten() {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

fn write_rows(out: &mut String, shown: &[&Row]) {
    // Library rows name where they live: the same package can sit in the
    // system Python and in a virtualenv, at different versions.
    let with_location = shown.iter().any(|r| r.location.is_some());
    let mut header = vec!["PACKAGE".to_owned()];
    if with_location {
        header.push("LOCATION".into());
    }
    header.extend(["FROM", "TO", "VULNERABILITIES", "OUTCOME"].map(String::from));
    let mut rows = vec![header];
    for r in shown {
        let vulns = if r.vulnerabilities.len() > 3 {
            format!("{} (+{})", r.vulnerabilities[..3].join(", "), r.vulnerabilities.len() - 3)
        } else {
            r.vulnerabilities.join(", ")
        };
        let mut outcome = r.status.label().to_owned();
        if !r.detail.is_empty() && r.status != RowStatus::Patched {
            let _ = write!(outcome, ": {}", r.detail);
        }
        let mut row = vec![r.name.clone()];
        if with_location {
            row.push(r.location.as_deref().map_or_else(|| "-".to_owned(), location_label));
        }
        row.extend([r.from.clone(), r.to.clone().unwrap_or_else(|| "-".into()), vulns, outcome]);
        rows.push(row);
    }
    let mut table = Vec::new();
    crate::table::write(&mut table, &rows).expect("writing to memory");
    out.push_str(&String::from_utf8_lossy(&table));
    let name = |r: &Row| match &r.location {
        Some(location) => format!("{} ({})", r.name, location_label(location)),
        None => r.name.clone(),
    };
    for r in shown.iter().filter(|r| r.rationale.is_some() || !r.passed_over.is_empty()) {
        let _ = write!(out, "  {}: {}", name(r), r.rationale.as_deref().unwrap_or(""));
        for p in &r.passed_over {
            let _ = write!(out, "; passed over {}: {}", p.version, p.reason);
        }
        out.push('\n');
    }
    for r in shown.iter().filter(|r| !r.still_open.is_empty()) {
        let _ = writeln!(
            out,
            "  {} {}: still open (fixed only on another release line): {}",
            name(r),
            r.to.as_deref().unwrap_or(""),
            r.still_open.join(", ")
        );
    }
}

/// `1 package`, `2 packages`.
pub(crate) fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Where a library package lives, short: the environment's prefix
/// (`/opt/venv`), marked `(system)` for the interpreter's own
/// (`/usr/local (system)`); a path of another shape cut to fit a column.
pub fn location_label(location: &str) -> String {
    let trimmed = location.trim_end_matches('/');
    let Some(lib) = trimmed.rfind("/lib/python") else { return cut_path(location) };
    let (prefix, rest) = trimmed.split_at(lib);
    let site = rest.trim_start_matches("/lib/").split_once('/').map(|(_, s)| s);
    if !matches!(site, Some("site-packages" | "dist-packages")) {
        return cut_path(location);
    }
    match prefix {
        "" => "/ (system)".to_owned(),
        "/usr" | "/usr/local" => format!("{prefix} (system)"),
        venv => cut_path(venv),
    }
}

/// Longer than this, a path in a table cell loses its middle.
const MAX_PATH: usize = 40;

/// `/srv/…/node_modules/lodash` for a long path: its first component and
/// as many of its last as fit, so the start and the package stay readable.
pub fn cut_path(path: &str) -> String {
    if path.chars().count() <= MAX_PATH {
        return path.to_owned();
    }
    let parts: Vec<&str> = path.split('/').collect();
    let head =
        if path.starts_with('/') { format!("/{}", parts.get(1).unwrap_or(&"")) } else { parts[0].to_owned() };
    let mut tail: Vec<&str> = Vec::new();
    for part in parts.iter().skip(2).rev() {
        let len = head.chars().count()
            + 2
            + tail.iter().chain([part]).map(|p| p.chars().count() + 1).sum::<usize>();
        if len > MAX_PATH && !tail.is_empty() {
            break;
        }
        tail.insert(0, part);
    }
    format!("{head}/…/{}", tail.join("/"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(name: &str, location: Option<&str>, from: &str, to: &str, status: RowStatus) -> Row {
        Row {
            ecosystem: if location.is_some() { "python" } else { "deb" }.to_owned(),
            name: name.to_owned(),
            location: location.map(str::to_owned),
            updater: Some(if location.is_some() { "pip" } else { "apt" }.to_owned()),
            from: from.to_owned(),
            to: Some(to.to_owned()),
            status,
            vulnerabilities: vec![format!("CVE-{name}")],
            detail: String::new(),
            rationale: None,
            passed_over: Vec::new(),
            checks: Vec::new(),
            still_open: Vec::new(),
            fixes: Vec::new(),
            purl: None,
            report_purl: None,
        }
    }

    #[test]
    fn patched_rows_carry_the_purl_of_their_new_version() {
        let apk = |name: &str, to: &str, status| Row {
            ecosystem: "apk".into(),
            ..row(name, None, "1-r0", to, status)
        };
        let os = |id: &str, version: Option<&str>| crate::model::OsRelease {
            id: id.into(),
            id_like: Vec::new(),
            version_id: version.map(str::to_owned),
            version_codename: None,
            pretty_name: None,
        };
        let mut alpine = summary(
            vec![
                apk("libssl3", "3.1.4-r5", RowStatus::Patched),
                apk("busybox", "1.36.1-r2", RowStatus::Failed),
            ],
            Result::Patched,
        );
        alpine.add_purls(Some(&os("alpine", Some("3.19.1"))), "amd64", None);
        assert_eq!(
            alpine.rows[0].purl.as_deref(),
            Some("pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1")
        );
        assert_eq!(alpine.rows[1].purl, None, "only what was patched has a new version to name");
        let json = serde_json::to_value(&alpine.rows).unwrap();
        assert_eq!(json[0]["purl"], "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1");
        assert!(json[1].get("purl").is_none());

        for (id, version, want) in [
            ("wolfi", Some("20230201"), "pkg:apk/wolfi/glibc@2.39-r2?arch=aarch64&distro=wolfi-20230201"),
            ("chainguard", None, "pkg:apk/chainguard/glibc@2.39-r2?arch=aarch64&distro=chainguard"),
        ] {
            let mut rows = summary(vec![apk("glibc", "2.39-r2", RowStatus::Patched)], Result::Patched);
            rows.add_purls(Some(&os(id, version)), "arm64", None);
            assert_eq!(rows.rows[0].purl.as_deref(), Some(want));
        }
    }

    pub(crate) fn summary(rows: Vec<Row>, result: Result) -> PatchSummary {
        PatchSummary {
            schema: SCHEMA,
            image: "oci:/work/layout:python".into(),
            destination: "oci:/work/layout:python-patched".into(),
            digest: (result == Result::Patched).then(|| "sha256:0123".into()),
            platform: "linux/amd64".into(),
            mode: "report",
            report: Some("report.json".into()),
            scanner: Some("trivy".into()),
            result,
            rows,
            layer: None,
            replaced: None,
            vex: None,
            vex_not_written: None,
            timings: Timings::default(),
            working_store: None,
            platforms: Vec::new(),
            error: None,
            note: None,
        }
    }

    #[test]
    fn locations_tell_the_system_python_from_a_virtualenv() {
        assert_eq!(location_label("/usr/local/lib/python3.11/dist-packages"), "/usr/local (system)");
        assert_eq!(location_label("/usr/lib/python3/dist-packages"), "/usr (system)");
        assert_eq!(location_label("/opt/venv/lib/python3.11/site-packages"), "/opt/venv");
        assert_eq!(location_label("/opt/venv/lib/python3.11/site-packages/"), "/opt/venv");
        assert_eq!(location_label("/app/vendor"), "/app/vendor");
        assert_eq!(location_label("/srv/lib/python-tools/x"), "/srv/lib/python-tools/x");
        assert_eq!(
            location_label(
                "/srv/applications/customer-portal/releases/2024-11/venv/lib/python3.12/site-packages"
            ),
            "/srv/…/releases/2024-11/venv"
        );
        assert_eq!(
            location_label("/app/frontend/node_modules/@scope/some-package/node_modules/lodash"),
            "/app/…/some-package/node_modules/lodash"
        );
        assert_eq!(
            cut_path("/a/very-long-component-name-that-alone-is-longer-than-forty"),
            "/a/…/very-long-component-name-that-alone-is-longer-than-forty"
        );
    }

    #[test]
    fn one_row_per_package_and_location() {
        let mut certifi_venv = row(
            "certifi",
            Some("/opt/venv/lib/python3.11/site-packages"),
            "2022.12.7",
            "2023.7.22",
            RowStatus::Patched,
        );
        certifi_venv.rationale = Some("the newest fixed version".into());
        let mut summary = summary(
            vec![
                row(
                    "certifi",
                    Some("/usr/local/lib/python3.11/dist-packages"),
                    "2022.12.7",
                    "2023.7.22",
                    RowStatus::Patched,
                ),
                certifi_venv,
            ],
            Result::Patched,
        );
        summary.replaced = Some(Replaced { digest: Some("sha256:abcd".into()), same: false });
        insta::assert_snapshot!(summary.render_text());
    }

    #[test]
    fn os_rows_have_no_location_column_and_counts_agree_in_number() {
        let mut summary = summary(
            vec![
                row("libssl3", None, "3.0.11-1~deb12u2", "3.0.15-1~deb12u1", RowStatus::Patched),
                row("tar", None, "1.34+dfsg-1.2", "99.0-1", RowStatus::Failed),
            ],
            Result::Patched,
        );
        summary.no_vex(
            Some(std::path::Path::new("/nonexistent/vex.json")),
            "no vulnerability a report named was fixed",
        );
        insta::assert_snapshot!(summary.render_text());
    }
}
