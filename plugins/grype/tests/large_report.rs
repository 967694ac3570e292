//! A ~100 MB report, generated here from a real one, parses natively with
//! memory to spare: the parser keeps findings, not the document.
//!
//! Alone in its test binary so the process's peak memory is its own.

mod support;

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::Value;
use support::read_fixture;

const TARGET_SIZE: usize = 100 * 1024 * 1024;

/// The real matches of the RHEL report, repeated up to ~100 MB, each with
/// its own vulnerability id so no two findings are alike.
fn large_report() -> (String, usize) {
    let fixture: Value =
        serde_json::from_slice(&read_fixture("reports/grype-redhat-anteather-1.json")).unwrap();
    // Each match's JSON without its vulnerability id: the id is written in
    // front, as the vulnerability's first key.
    let bodies: Vec<(String, String)> = fixture["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let mut vulnerability = m.as_object_mut().unwrap().remove("vulnerability").unwrap();
            vulnerability.as_object_mut().unwrap().remove("id");
            (vulnerability.to_string()[1..].to_owned(), m.to_string()[1..].to_owned())
        })
        .collect();
    let mut report = String::with_capacity(TARGET_SIZE + 64 * 1024);
    report.push_str(r#"{"matches": ["#);
    let mut count = 0;
    while report.len() < TARGET_SIZE {
        if count > 0 {
            report.push(',');
        }
        let (vulnerability, rest) = &bodies[count % bodies.len()];
        write!(report, r#"{{"vulnerability":{{"id":"CVE-9999-{count}",{vulnerability},{rest}"#).unwrap();
        count += 1;
    }
    report.push_str(r#"], "distro": {"name": "redhat", "version": "7.6", "idLike": ["fedora"]}}"#);
    (report, count)
}

/// Kilobytes of `field` (VmRSS, VmHWM) in /proc/self/status.
fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn hundred_megabyte_report() {
    let (report, count) = large_report();
    assert!(report.len() >= TARGET_SIZE);
    // Reset the peak so it measures the parse alone (Linux: "5" → VmHWM).
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = memory_kb("VmRSS:");

    let started = Instant::now();
    let findings = caulk_plugin_grype::parse(report.as_bytes()).unwrap();
    let elapsed = started.elapsed();

    assert_eq!(findings.findings.len(), count);
    assert_eq!(findings.findings[count - 1].vulnerability, format!("CVE-9999-{}", count - 1));
    assert!(findings.findings.iter().all(|f| f.ecosystem == "rpm"));
    let peak = memory_kb("VmHWM:");
    eprintln!(
        "{} MB, {count} findings in {elapsed:.2?}; RSS before {before:?} kB, peak {peak:?} kB",
        report.len() / (1024 * 1024)
    );
    if let (true, Some(before), Some(peak)) = (peak_reset, before, peak) {
        let grown_mb = peak.saturating_sub(before) / 1024;
        // The findings themselves take ~15 MB here; a parser holding the
        // document as a tree would need several times the input's 100 MB.
        assert!(grown_mb < 64, "parsing grew the process by {grown_mb} MB");
    }
}
