//! Helpers shared by the integration tests: the real fixture reports.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use caulk_sdk::types::{Finding, Findings};

/// The repository's `tests/fixtures` (see `reports/SOURCES.md` there).
pub fn fixtures_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).to_path_buf()
}

pub fn read_fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

pub fn parse_fixture(relative: &str) -> Findings {
    caulk_plugin_trivy::parse(&read_fixture(relative)).unwrap_or_else(|e| panic!("parsing {relative}: {e:?}"))
}

/// The one finding of `vulnerability` in `package`.
pub fn finding<'f>(findings: &'f Findings, vulnerability: &str, package: &str) -> &'f Finding {
    let mut matching =
        findings.findings.iter().filter(|f| f.vulnerability == vulnerability && f.package == package);
    let found = matching.next().unwrap_or_else(|| panic!("no finding {vulnerability} in {package}"));
    assert!(matching.next().is_none(), "several findings {vulnerability} in {package}");
    found
}

/// How many findings satisfy `predicate`.
pub fn count(findings: &Findings, predicate: impl Fn(&Finding) -> bool) -> usize {
    findings.findings.iter().filter(|f| predicate(f)).count()
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
