//! caulk's built-in scanner plugin for Trivy JSON reports.
//!
//! Reads every Trivy JSON shape in use:
//! - SchemaVersion 2 objects (Trivy 0.20 and later), from the early ones
//!   without `CreatedAt`, `Class`, `Status` or `PkgID` to current ones with
//!   `PkgIdentifier`, `Fingerprint` and `ReportID`;
//! - the legacy top-level array of results (before 0.20), with or without
//!   `Type`.
//!
//! Findings get the ecosystem vocabulary of `caulk:plugin/types`: OS results
//! map by OS family to `deb`, `apk` or `rpm`; library results by `Type`
//! (`python-pkg`, `pip`, `poetry` → `python`; `gomod`, `gobinary` → `go`;
//! `jar`, `pom` → `maven`; ...), and a type no one knows is kept as it is.
//! Without `Status` (before Trivy 0.35) a finding with a fixed version is
//! `fixed` and one without is `affected`.
//!
//! What counts as a report: an object with `SchemaVersion` 2 and no
//! `Results` (Trivy's output for a clean image) and the empty legacy array
//! `[]` are reports with no findings. Zero bytes, whitespace, `{}`, `null`
//! and any object without Trivy's top-level keys are errors: nothing in them
//! says they came from Trivy, and silently reporting "no vulnerabilities"
//! for the wrong file would be worse than refusing it.
//!
//! The parser is exposed natively ([`parse`], [`sniff`]) for tests, fuzzing
//! and benchmarks; the component export exists only in wasm builds, so the
//! host can link several plugins' rlibs into one native binary.

mod ecosystem;
mod report;
mod sniff;

use caulk_sdk::Scanner;
use caulk_sdk::types::{Error, Findings, PackageClass, PluginInfo};

/// The report format name in `PluginInfo::handles`.
pub const FORMAT: &str = "trivy-json";

/// Parses a Trivy JSON report into findings.
pub fn parse(report: &[u8]) -> Result<Findings, Error> {
    report::parse_text(caulk_sdk::json::text(report)?)
}

/// Confidence from 0 to 100 that `report` is a Trivy JSON report, from its
/// first keys; cheap, and never fails.
pub fn sniff(report: &[u8]) -> u8 {
    sniff::sniff(report)
}

/// The Trivy scanner plugin.
pub struct Trivy;

impl Scanner for Trivy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "trivy".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            summary: "Reads Trivy JSON reports (SchemaVersion 2 and the legacy array of results)".to_owned(),
            handles: vec![FORMAT.to_owned()],
            os_families: Vec::new(),
            class: PackageClass::Os,
        }
    }

    fn sniff(report: &[u8]) -> u8 {
        sniff(report)
    }

    fn parse(report: &[u8]) -> Result<Findings, Error> {
        parse(report)
    }
}

#[cfg(target_family = "wasm")]
caulk_sdk::export_scanner!(Trivy);
