//! Grouping findings into updates: one per (ecosystem, package, location),
//! carrying every fixed version seen and the vulnerabilities behind them.
//!
//! Scanners often drop the epoch from fixed versions (Ubuntu's `bsdutils`
//! installed `1:2.37.2-4ubuntu3`, fixed `2.37.2-4ubuntu3.4`); read literally,
//! the fix would sort below what is installed. Grouping gives such versions
//! the installed version's epoch, so every later comparison means what the
//! scanner meant.

use std::collections::{BTreeMap, HashSet};

use caulk_sdk::version::{self, Scheme};
use serde::Serialize;

use crate::model::{Finding, Findings, FixStatus, PackageClass, Severity, Update};
use crate::names::status_name;

/// One vulnerability behind an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vulnerability {
    pub id: String,
    #[serde(serialize_with = "crate::names::serialize_severity")]
    pub severity: Severity,
    /// The finding's fixed versions, epoch-normalised.
    pub fixed_versions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A package to update and why.
#[derive(Debug, Clone, Serialize)]
pub struct PackageUpdate {
    pub ecosystem: String,
    #[serde(serialize_with = "crate::names::serialize_class")]
    pub class: PackageClass,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub installed_version: String,
    /// Every fixed version seen, epoch-normalised, deduplicated, in the order
    /// first seen.
    pub fixed_versions: Vec<String>,
    /// The lowest version that fixes every vulnerability below, when the
    /// versions can be compared: for each vulnerability its lowest fixed
    /// version above the installed one, then the highest of those.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixes_all_at: Option<String>,
    pub vulnerabilities: Vec<Vulnerability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
}

impl PackageUpdate {
    /// The record updaters receive.
    pub fn to_update(&self) -> Update {
        Update {
            ecosystem: self.ecosystem.clone(),
            name: self.name.clone(),
            location: self.location.clone(),
            installed_version: self.installed_version.clone(),
            fixed_versions: self.fixed_versions.clone(),
            vulnerabilities: self.vulnerabilities.iter().map(|v| v.id.clone()).collect(),
        }
    }
}

/// Findings without a fix, counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unfixed {
    pub total: usize,
    /// Counts by fix status (`affected`, `will-not-fix`, ...).
    pub by_status: BTreeMap<&'static str, usize>,
    /// Counts by ecosystem.
    pub by_ecosystem: BTreeMap<String, usize>,
}

/// The result of grouping a report's findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Grouped {
    pub updates: Vec<PackageUpdate>,
    pub unfixed: Unfixed,
    /// Findings that repeated another (same vulnerability, package, location).
    pub duplicates: usize,
}

/// Whether a finding can be fixed by an update.
fn fixable(finding: &Finding) -> bool {
    !finding.fixed_versions.is_empty() && finding.status != FixStatus::NotAffected
}

/// A fixed version with the installed version's epoch where the scanner
/// left it out; unchanged when either version does not parse.
pub fn normalise_fixed(ecosystem: &str, installed: &str, fixed: &str) -> String {
    match Scheme::from_ecosystem(ecosystem) {
        Some(scheme @ (Scheme::Deb | Scheme::Rpm)) => {
            version::with_epoch_of(scheme, installed, fixed).unwrap_or_else(|_| fixed.to_owned())
        }
        _ => fixed.to_owned(),
    }
}

/// Where a library lives, the same way whichever scanner said it: an
/// absolute path, and for Python the environment's site-packages directory
/// rather than one distribution's metadata file (newer Trivy and Grype name
/// `…/pip-24.0.dist-info/METADATA`, older Trivy the directory, Trivy without
/// the leading `/`).
pub fn normalise_location(ecosystem: &str, location: &str) -> String {
    let mut path = if location.starts_with('/') { location.to_owned() } else { format!("/{location}") };
    if ecosystem == "python" {
        let parts: Vec<&str> = path.rsplitn(3, '/').collect();
        if let [file, meta_dir, parent] = parts[..]
            && matches!(file, "METADATA" | "PKG-INFO")
            && (meta_dir.ends_with(".dist-info") || meta_dir.ends_with(".egg-info"))
        {
            path = if parent.is_empty() { "/".to_owned() } else { parent.to_owned() };
        }
    }
    path
}

/// Groups `findings` into updates.
pub fn group(findings: &Findings) -> Grouped {
    let mut grouped = Grouped::default();
    let mut index: BTreeMap<(String, String, Option<String>), usize> = BTreeMap::new();
    let mut seen: HashSet<(&str, &str, &str, Option<String>)> = HashSet::new();

    for finding in &findings.findings {
        let location = finding.location.as_deref().map(|l| normalise_location(&finding.ecosystem, l));
        let key = (
            finding.vulnerability.as_str(),
            finding.ecosystem.as_str(),
            finding.package.as_str(),
            location.clone(),
        );
        if !seen.insert(key) {
            grouped.duplicates += 1;
            continue;
        }
        if !fixable(finding) {
            grouped.unfixed.total += 1;
            *grouped.unfixed.by_status.entry(status_name(finding.status)).or_default() += 1;
            *grouped.unfixed.by_ecosystem.entry(finding.ecosystem.clone()).or_default() += 1;
            continue;
        }
        let fixed: Vec<String> = finding
            .fixed_versions
            .iter()
            .map(|f| normalise_fixed(&finding.ecosystem, &finding.installed_version, f))
            .collect();
        let group_key = (finding.ecosystem.clone(), finding.package.clone(), location.clone());
        let slot = *index.entry(group_key).or_insert_with(|| {
            grouped.updates.push(PackageUpdate {
                ecosystem: finding.ecosystem.clone(),
                class: finding.class,
                name: finding.package.clone(),
                location: location.clone(),
                installed_version: finding.installed_version.clone(),
                fixed_versions: Vec::new(),
                fixes_all_at: None,
                vulnerabilities: Vec::new(),
                purl: finding.purl.clone(),
                source_package: finding.source_package.clone(),
            });
            grouped.updates.len() - 1
        });
        let update = &mut grouped.updates[slot];
        for f in &fixed {
            if !update.fixed_versions.contains(f) {
                update.fixed_versions.push(f.clone());
            }
        }
        if update.purl.is_none() {
            update.purl.clone_from(&finding.purl);
        }
        update.vulnerabilities.push(Vulnerability {
            id: finding.vulnerability.clone(),
            severity: finding.severity,
            fixed_versions: fixed,
            title: finding.title.clone(),
        });
    }
    for update in &mut grouped.updates {
        update.fixes_all_at = fixes_all_at(update);
    }
    grouped.updates.sort_by(|a, b| {
        (a.class != PackageClass::Os, &a.ecosystem, &a.name, &a.location).cmp(&(
            b.class != PackageClass::Os,
            &b.ecosystem,
            &b.name,
            &b.location,
        ))
    });
    grouped
}

/// Whether the host has version rules for `ecosystem`, so that
/// [`fixes_vulnerability`] judges it rather than the updater's verdicts.
pub fn has_version_rules(ecosystem: &str) -> bool {
    Scheme::from_ecosystem(ecosystem).is_some()
}

/// Whether `version`, now installed, fixes a vulnerability whose fixed
/// versions are `fixed`. Scanners list one fix per release line for
/// libraries (`2.0.7, 1.26.18`): a version is fixed when it reaches every
/// fix, or a fix on its own line (same major and minor release), so
/// lodash 4.17.21 is fixed by `4.17.19` and 1.26.19 by `2.0.7, 1.26.18`.
/// OS packages have one line: reaching any fix is enough. Versions that do
/// not parse, and ecosystems without version rules here, count as fixed
/// only by string equality.
pub fn fixes_vulnerability(ecosystem: &str, version: &str, fixed: &[String]) -> bool {
    let Some(scheme) = Scheme::from_ecosystem(ecosystem) else {
        return fixed.iter().any(|f| f == version);
    };
    let reaches = |f: &String| version::is_fixed_by(scheme, version, f).unwrap_or(f == version);
    let line = |v: &str| -> Option<(u64, u64)> {
        match scheme {
            Scheme::Python => {
                let v = v.parse::<version::python::Version>().ok()?;
                let release = v.pep440().release();
                Some((release.first().copied().unwrap_or(0), release.get(1).copied().unwrap_or(0)))
            }
            Scheme::Npm => v.parse::<version::npm::Version>().ok().map(|v| (v.major(), v.minor())),
            Scheme::Deb | Scheme::Rpm | Scheme::Apk => None,
        }
    };
    if !matches!(scheme, Scheme::Python | Scheme::Npm) {
        return fixed.iter().any(reaches);
    }
    if fixed.iter().all(reaches) {
        return true;
    }
    let own = line(version);
    own.is_some() && fixed.iter().any(|f| reaches(f) && line(f) == own)
}

/// For each vulnerability its lowest fixed version above the installed one,
/// then the highest of those; `None` when the scheme is unknown or a version
/// does not parse.
fn fixes_all_at(update: &PackageUpdate) -> Option<String> {
    let scheme = Scheme::from_ecosystem(&update.ecosystem)?;
    let cmp = |a: &str, b: &str| version::compare(scheme, a, b).ok();
    let mut needed: Option<String> = None;
    for vuln in &update.vulnerabilities {
        let mut lowest: Option<&String> = None;
        for fixed in &vuln.fixed_versions {
            if cmp(fixed, &update.installed_version)? == std::cmp::Ordering::Less {
                continue;
            }
            if lowest.is_none_or(|l| cmp(fixed, l) == Some(std::cmp::Ordering::Less)) {
                lowest = Some(fixed);
            }
        }
        let lowest = lowest?;
        if needed.as_deref().is_none_or(|n| cmp(lowest, n) == Some(std::cmp::Ordering::Greater)) {
            needed = Some(lowest.clone());
        }
    }
    needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Findings;

    fn finding(vuln: &str, package: &str, installed: &str, fixed: &[&str], ecosystem: &str) -> Finding {
        Finding {
            vulnerability: vuln.into(),
            package: package.into(),
            installed_version: installed.into(),
            fixed_versions: fixed.iter().map(ToString::to_string).collect(),
            status: if fixed.is_empty() { FixStatus::Affected } else { FixStatus::Fixed },
            ecosystem: ecosystem.into(),
            class: if ecosystem == "python" { PackageClass::Library } else { PackageClass::Os },
            location: None,
            severity: Severity::High,
            purl: None,
            source_package: None,
            title: None,
        }
    }

    fn findings(list: Vec<Finding>) -> Findings {
        Findings { scanner: None, artifact: None, os: None, platform: None, findings: list }
    }

    #[test]
    fn epochless_fixes_take_the_installed_epoch() {
        let grouped = group(&findings(vec![
            finding("CVE-2024-28085", "bsdutils", "1:2.37.2-4ubuntu3", &["2.37.2-4ubuntu3.4"], "deb"),
            finding("CVE-2022-0563", "bsdutils", "1:2.37.2-4ubuntu3", &["1:2.37.2-4ubuntu3.3"], "deb"),
        ]));
        assert_eq!(grouped.updates.len(), 1);
        let update = &grouped.updates[0];
        assert_eq!(update.fixed_versions, ["1:2.37.2-4ubuntu3.4", "1:2.37.2-4ubuntu3.3"]);
        assert_eq!(update.fixes_all_at.as_deref(), Some("1:2.37.2-4ubuntu3.4"));
        assert_eq!(update.to_update().vulnerabilities, ["CVE-2024-28085", "CVE-2022-0563"]);
    }

    #[test]
    fn unfixed_findings_are_counted_by_status_and_duplicates_dropped() {
        let mut wont = finding("CVE-1", "zlib1g", "1:1.2.13", &[], "deb");
        wont.status = FixStatus::WillNotFix;
        let grouped = group(&findings(vec![
            wont,
            finding("CVE-2", "zlib1g", "1:1.2.13", &[], "deb"),
            finding("CVE-3", "openssl", "3.0.8-1", &["3.0.9-1"], "deb"),
            finding("CVE-3", "openssl", "3.0.8-1", &["3.0.9-1"], "deb"),
        ]));
        assert_eq!(grouped.updates.len(), 1);
        assert_eq!(grouped.duplicates, 1);
        assert_eq!(grouped.unfixed.total, 2);
        assert_eq!(grouped.unfixed.by_status["will-not-fix"], 1);
        assert_eq!(grouped.unfixed.by_status["affected"], 1);
    }

    #[test]
    fn library_fix_lists_pick_the_lowest_fix_per_vulnerability() {
        let grouped = group(&findings(vec![
            finding("GHSA-a", "requests", "2.25.1", &["2.31.0", "3.0.1"], "python"),
            finding("GHSA-b", "requests", "2.25.1", &["2.32.0"], "python"),
        ]));
        assert_eq!(grouped.updates[0].fixes_all_at.as_deref(), Some("2.32.0"));
        assert_eq!(grouped.updates[0].fixed_versions, ["2.31.0", "3.0.1", "2.32.0"]);
    }

    #[test]
    fn library_locations_are_site_packages_directories() {
        let n = |l: &str| normalise_location("python", l);
        assert_eq!(
            n("usr/local/lib/python3.11/site-packages/pip-24.0.dist-info/METADATA"),
            "/usr/local/lib/python3.11/site-packages"
        );
        assert_eq!(
            n("/usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO"),
            "/usr/lib/python3/dist-packages"
        );
        assert_eq!(n("/opt/venv/lib/python3.11/site-packages"), "/opt/venv/lib/python3.11/site-packages");
        assert_eq!(normalise_location("npm", "app/package-lock.json"), "/app/package-lock.json");
    }

    #[test]
    fn a_vulnerability_is_fixed_on_its_own_release_line() {
        let fixes = |v: &str, f: &[&str]| {
            fixes_vulnerability("python", v, &f.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert!(fixes("1.26.19", &["2.0.7", "1.26.18"]));
        assert!(fixes("2.0.7", &["2.0.7", "1.26.18"]));
        assert!(!fixes("2.0.1", &["2.0.7", "1.26.18"]), "2.0.1 is on the 2.0 line, fixed only at 2.0.7");
        assert!(!fixes("1.26.19", &["2.6.0"]), "the fix exists only on a later line");
        assert!(fixes("2.7.0", &["2.6.0"]));
        assert!(!fixes("1.26.17", &["1.26.18"]));
        let npm = |v: &str, f: &[&str]| {
            fixes_vulnerability("npm", v, &f.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert!(npm("4.17.21", &["4.17.19"]), "lodash: fixed on a lower release than installed");
        assert!(npm("4.17.21", &["4.17.21"]));
        assert!(!npm("4.17.15", &["4.17.19"]));
        assert!(npm("1.2.6", &["1.2.6", "0.2.4"]), "minimist: each line has its fix");
        assert!(!npm("1.2.5", &["1.2.6", "0.2.4"]));
        assert!(!npm("1.2.6-rc.1", &["1.2.6"]), "a prerelease is below its release");
        assert!(!fixes_vulnerability("go", "1.2.4", &["1.2.3".into()]), "no rules: only equality");
        assert!(fixes_vulnerability("deb", "1:2.38.1-5+deb12u3", &["2.38.1-5+deb12u2".into()]));
        assert!(!fixes_vulnerability("deb", "2.38.1-5+deb12u1", &["2.38.1-5+deb12u2".into()]));
    }

    #[test]
    fn locations_keep_library_copies_apart() {
        let mut a = finding("GHSA-a", "urllib3", "1.26.5", &["1.26.18"], "python");
        a.location = Some("/usr/lib/python3/dist-packages".into());
        let mut b = a.clone();
        b.location = Some("/opt/venv/lib/python3.11/site-packages".into());
        let grouped = group(&findings(vec![a, b]));
        assert_eq!(grouped.updates.len(), 2);
    }
}
