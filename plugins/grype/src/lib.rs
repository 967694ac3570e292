//! caulk's built-in scanner plugin for Grype JSON reports.
//!
//! Reads Grype JSON from the 0.7 era (no `fix` object, `fixedInVersion`,
//! `matchDetails` an object, `distro.idLike` a string) to current reports
//! (`fix.versions`, `fix.state`, `fix.available`, a top-level
//! `alertsByPackage`).
//!
//! Findings get the ecosystem vocabulary of `caulk:plugin/types`: syft's
//! package types map to `deb`, `rpm`, `apk` (OS packages) and `python`,
//! `maven` (`java-archive`), `go` (`go-module`), `cargo` (`rust-crate`),
//! `binary`, ... (libraries); a type no one knows is kept as it is.
//! `fix.state` maps `not-fixed` to affected, `wont-fix` to will-not-fix, and
//! otherwise a listed fixed version means fixed and none means unknown, which
//! is also the rule for 0.7 reports. A finding without a fix in a package
//! that `alertsByPackage` marks `distro-eol` is end-of-life. rpm versions
//! carry the epoch from the package metadata when syft left it out of the
//! version. The location of a library is its first location path; OS
//! packages have none.
//!
//! What counts as a report: an object with `matches`, even an empty list, is
//! a report (with no findings, for a clean image). Zero bytes, whitespace,
//! `{}`, `[]`, `null` and any object without `matches` are errors: nothing
//! in them says they came from Grype.
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
pub const FORMAT: &str = "grype-json";

/// Parses a Grype JSON report into findings.
pub fn parse(report: &[u8]) -> Result<Findings, Error> {
    report::parse_text(caulk_sdk::json::text(report)?)
}

/// Confidence from 0 to 100 that `report` is a Grype JSON report, from its
/// first keys; cheap, and never fails.
pub fn sniff(report: &[u8]) -> u8 {
    sniff::sniff(report)
}

/// The Grype scanner plugin.
pub struct Grype;

impl Scanner for Grype {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "grype".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            summary: "Reads Grype JSON reports (Grype 0.7 and later)".to_owned(),
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
caulk_sdk::export_scanner!(Grype);
