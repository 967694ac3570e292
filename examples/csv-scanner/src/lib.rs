//! An example third-party caulk plugin: a scanner for a small CSV report
//! format, written only against `caulk-sdk`.
//!
//! The format, one finding per line after a header:
//!
//! ```text
//! # caulk-csv v1
//! vulnerability,package,installed,fixed,severity,ecosystem
//! CVE-2023-0464,libssl3,3.0.8-1,3.0.9-1~deb12u1,high,deb
//! CVE-2024-6345,setuptools,65.5.0,70.0.0,high,python
//! ```
//!
//! `fixed` may hold several versions separated by `;` or be empty (no fix).
//! Fields are not quoted; blank lines and lines starting with `#` are ignored.
//! `report.csv` beside this crate's manifest is a sample.

use caulk_sdk::Scanner;
use caulk_sdk::types::{Error, Finding, Findings, FixStatus, PackageClass, PluginInfo, Severity};

/// The scanner; its methods are plain functions, testable natively.
pub struct Csv;

const HEADER: &str = "vulnerability,package,installed,fixed,severity,ecosystem";
const MAGIC: &str = "# caulk-csv v1";

impl Scanner for Csv {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "csv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Reads the caulk-csv v1 report format (an example plugin)".into(),
            handles: vec!["caulk-csv-v1".into()],
            os_families: Vec::new(),
            class: PackageClass::Os,
        }
    }

    fn sniff(report: &[u8]) -> u8 {
        let text = String::from_utf8_lossy(&report[..report.len().min(256)]);
        let first = text.lines().next().unwrap_or("").trim();
        match first {
            MAGIC => 100,
            HEADER => 80,
            _ => 0,
        }
    }

    fn parse(report: &[u8]) -> Result<Findings, Error> {
        let text = std::str::from_utf8(report)
            .map_err(|e| Error::malformed(format!("the report is not UTF-8 (byte {})", e.valid_up_to())))?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some((_, header)) if header.trim() == HEADER => {}
            Some((n, other)) => {
                return Err(Error::malformed(format!(
                    "line {}: expected the header `{HEADER}`, found `{other}`",
                    n + 1
                ))
                .with_hint("is this a caulk-csv v1 report?"));
            }
            None => return Err(Error::malformed("the report is empty: not even a header")),
        }
        let findings = lines.map(|(n, line)| finding(n + 1, line)).collect::<Result<Vec<_>, _>>()?;
        caulk_sdk::log::debug(format!("{} findings", findings.len()));
        Ok(Findings {
            scanner: Some("caulk-csv v1".into()),
            artifact: None,
            os: None,
            platform: None,
            findings,
        })
    }
}

fn finding(line_no: usize, line: &str) -> Result<Finding, Error> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [vulnerability, package, installed, fixed, severity, ecosystem] = fields[..] else {
        return Err(Error::malformed(format!("line {line_no}: expected 6 fields, found {}", fields.len())));
    };
    if vulnerability.is_empty() || package.is_empty() || installed.is_empty() {
        return Err(Error::malformed(format!(
            "line {line_no}: vulnerability, package and installed are required"
        )));
    }
    let fixed_versions: Vec<String> =
        fixed.split(';').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
    let severity = match severity.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        "negligible" => Severity::Negligible,
        "" | "unknown" => Severity::Unknown,
        other => return Err(Error::malformed(format!("line {line_no}: unknown severity `{other}`"))),
    };
    let ecosystem = ecosystem.to_ascii_lowercase();
    let class = if matches!(ecosystem.as_str(), "deb" | "rpm" | "apk") {
        PackageClass::Os
    } else {
        PackageClass::Library
    };
    Ok(Finding {
        vulnerability: vulnerability.into(),
        package: package.into(),
        installed_version: installed.into(),
        status: if fixed_versions.is_empty() { FixStatus::Affected } else { FixStatus::Fixed },
        fixed_versions,
        ecosystem,
        class,
        location: None,
        severity,
        purl: None,
        source_package: None,
        title: None,
    })
}

#[cfg(target_family = "wasm")]
caulk_sdk::export_scanner!(Csv);

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "# caulk-csv v1\n\
        vulnerability,package,installed,fixed,severity,ecosystem\n\
        CVE-2023-0464,libssl3,3.0.8-1,3.0.9-1~deb12u1,high,deb\n\
        CVE-2024-6345,setuptools,65.5.0,70.0.0;69.5.1,HIGH,python\n\
        CVE-2020-0001,zlib1g,1:1.2.13.dfsg-1,,low,deb\n";

    #[test]
    fn parses_each_line_into_a_finding() {
        let findings = Csv::parse(REPORT.as_bytes()).unwrap();
        assert_eq!(findings.findings.len(), 3);
        let ssl = &findings.findings[0];
        assert_eq!((ssl.package.as_str(), ssl.installed_version.as_str()), ("libssl3", "3.0.8-1"));
        assert_eq!(ssl.fixed_versions, ["3.0.9-1~deb12u1"]);
        assert_eq!(ssl.class, PackageClass::Os);
        let setuptools = &findings.findings[1];
        assert_eq!(setuptools.fixed_versions, ["70.0.0", "69.5.1"]);
        assert_eq!(setuptools.class, PackageClass::Library);
        assert_eq!(setuptools.severity, Severity::High);
        assert_eq!(findings.findings[2].status, FixStatus::Affected);
    }

    #[test]
    fn sniffs_its_own_format_only() {
        assert_eq!(Csv::sniff(REPORT.as_bytes()), 100);
        assert_eq!(Csv::sniff(HEADER.as_bytes()), 80);
        assert_eq!(Csv::sniff(br#"{"SchemaVersion": 2}"#), 0);
        assert_eq!(Csv::sniff(b""), 0);
    }

    #[test]
    fn the_shipped_sample_report_parses() {
        // README's `caulk plugins call csv parse examples/csv-scanner/report.csv`.
        let sample = include_bytes!("../report.csv");
        assert_eq!(Csv::sniff(sample), 100);
        let findings = Csv::parse(sample).unwrap();
        let packages: Vec<&str> = findings.findings.iter().map(|f| f.package.as_str()).collect();
        assert_eq!(packages, ["libssl3", "libexpat1", "setuptools", "urllib3", "pip"]);
        assert_eq!(findings.findings[3].fixed_versions, ["1.26.18", "2.0.7"]);
        assert_eq!(findings.findings[4].status, FixStatus::Affected);
    }

    #[test]
    fn bad_lines_are_named() {
        let err =
            Csv::parse(b"vulnerability,package,installed,fixed,severity,ecosystem\nCVE-1,a,1\n").unwrap_err();
        assert!(err.message.contains("line 2") && err.message.contains("6 fields"), "{}", err.message);
        let err = Csv::parse(b"name,version\n").unwrap_err();
        assert!(err.message.contains("line 1"), "{}", err.message);
        assert!(Csv::parse(b"").is_err());
        assert!(Csv::parse(&[0xff, 0xfe]).is_err());
    }
}
