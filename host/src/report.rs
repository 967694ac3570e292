//! `caulk report`'s document: a scanner report normalised, per package the
//! candidate fixed versions and the vulnerabilities behind them. Its JSON
//! form is versioned (`schema`) and documented in docs/report-json.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{OsInfo, Platform};
use crate::patch::summary::{counted, location_label};
use crate::plugin::PluginSet;
use crate::scan::{Scanned, ScannerUsed};
use crate::updates::{Grouped, PackageUpdate, Unfixed};

/// The version of the JSON document; bumped on any incompatible change.
pub const SCHEMA: &str = "caulk.report/v1";

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// The report file as given on the command line.
    pub report: String,
    pub scanner: ScannerUsed,
    /// What the report says produced it (`Trivy 0.50.1`), when it says.
    pub reported_by: Option<String>,
    pub artifact: Option<String>,
    pub os: Option<Os>,
    pub platform: Option<PlatformDoc>,
    pub summary: Summary,
    pub packages: Vec<Package>,
}

#[derive(Debug, Serialize)]
pub struct Os {
    pub family: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct PlatformDoc {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Findings in the report, one per (vulnerability, package, location).
    pub findings: usize,
    /// Findings that repeated another and were counted once.
    pub duplicates: usize,
    /// Packages with at least one fixed version.
    pub packages_to_update: usize,
    /// Vulnerabilities those updates fix (counted per package).
    pub fixable: usize,
    pub unfixed: Unfixed,
    /// Per ecosystem with fixable packages: how many, and the updater that
    /// handles it (none: caulk cannot patch them yet).
    pub ecosystems: BTreeMap<String, EcosystemSummary>,
}

#[derive(Debug, Serialize)]
pub struct EcosystemSummary {
    pub packages: usize,
    pub updater: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Package {
    #[serde(flatten)]
    pub update: PackageUpdate,
    /// The updater plugin that would patch it, if any.
    pub updater: Option<String>,
}

impl Report {
    pub fn new(report: &str, scanned: Scanned, grouped: Grouped, plugins: &PluginSet) -> Self {
        let updater_for = |ecosystem: &str| {
            plugins
                .updaters()
                .find(|u| u.info.handles.iter().any(|h| h == ecosystem))
                .map(|u| u.name().to_owned())
        };
        let mut ecosystems: BTreeMap<String, EcosystemSummary> = BTreeMap::new();
        for update in &grouped.updates {
            ecosystems
                .entry(update.ecosystem.clone())
                .or_insert_with(|| EcosystemSummary { packages: 0, updater: updater_for(&update.ecosystem) })
                .packages += 1;
        }
        let findings = scanned.findings;
        let os = findings.os.map(|OsInfo { family, version }| Os { family, version });
        let platform = findings.platform.map(|Platform { os, architecture, variant }| PlatformDoc {
            os,
            architecture,
            variant,
        });
        Self {
            schema: SCHEMA,
            report: report.to_owned(),
            scanner: scanned.scanner,
            reported_by: findings.scanner,
            artifact: findings.artifact,
            os,
            platform,
            summary: Summary {
                findings: findings.findings.len(),
                duplicates: grouped.duplicates,
                packages_to_update: grouped.updates.len(),
                fixable: grouped.updates.iter().map(|u| u.vulnerabilities.len()).sum(),
                unfixed: grouped.unfixed,
                ecosystems,
            },
            packages: grouped
                .updates
                .into_iter()
                .map(|update| Package { updater: updater_for(&update.ecosystem), update })
                .collect(),
        }
    }

    /// The human form: a heading, a table of packages, and what was left.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let by = self.reported_by.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let _ = write!(out, "{} read by {}{by}", self.report, self.scanner.name);
        if let Some(os) = &self.os {
            let _ = write!(out, ": {} {}", os.family, os.version);
        }
        if let Some(p) = &self.platform {
            let variant = p.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default();
            let _ = write!(out, ", {}/{}{variant}", p.os, p.architecture);
        }
        out.push('\n');
        if self.packages.is_empty() {
            out.push_str("nothing to update: no finding has a fixed version\n");
        } else {
            // The same package can be installed in several places (the
            // system Python, a virtualenv): one row each, saying where.
            let with_location = self.packages.iter().any(|p| p.update.location.is_some());
            let mut header = vec!["PACKAGE".to_owned()];
            if with_location {
                header.push("LOCATION".into());
            }
            header.extend(["ECOSYSTEM", "INSTALLED", "FIXED IN", "VULNERABILITIES"].map(String::from));
            let mut rows = vec![header];
            for p in &self.packages {
                let u = &p.update;
                let fixed = u.fixes_all_at.clone().unwrap_or_else(|| u.fixed_versions.join(", "));
                let ids: Vec<&str> = u.vulnerabilities.iter().map(|v| v.id.as_str()).collect();
                let vulns = if ids.len() > 3 {
                    format!("{} (+{} more)", ids[..3].join(", "), ids.len() - 3)
                } else {
                    ids.join(", ")
                };
                let mut row = vec![u.name.clone()];
                if with_location {
                    row.push(u.location.as_deref().map_or_else(|| "-".to_owned(), location_label));
                }
                row.extend([u.ecosystem.clone(), u.installed_version.clone(), fixed, vulns]);
                rows.push(row);
            }
            let mut table = Vec::new();
            crate::table::write(&mut table, &rows).expect("writing to memory");
            out.push_str(&String::from_utf8_lossy(&table));
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\n{}: {} fixable in {}, {} without a fix",
            counted(s.findings, "finding", "findings"),
            s.fixable,
            counted(s.packages_to_update, "package", "packages"),
            s.unfixed.total
        );
        if s.unfixed.total > 0 {
            let parts: Vec<String> = s.unfixed.by_status.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let _ = writeln!(out, "without a fix: {}", parts.join(", "));
        }
        let unhandled: Vec<String> = s
            .ecosystems
            .iter()
            .filter(|(_, e)| e.updater.is_none())
            .map(|(name, e)| format!("{name} ({})", counted(e.packages, "package", "packages")))
            .collect();
        if !unhandled.is_empty() {
            let _ = writeln!(out, "no updater for: {}", unhandled.join(", "));
        }
        out
    }
}
