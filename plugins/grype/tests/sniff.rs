//! `sniff` over every fixture: Grype's reports are claimed with confidence,
//! everything else (Trivy, Copa manifests and plugin reports, package lists,
//! YAML, non-JSON) is left alone.

mod support;

use caulk_plugin_grype::sniff;
use support::{files_under, fixtures_dir};

/// The fixtures written by Grype, relative to the fixtures directory.
const GRYPE_REPORTS: &[&str] = &[
    "reports/grype-alpine-trustdsai-1.json",
    "reports/grype-debian-defectdojo-1.json",
    "reports/grype-debian-multiscanner-1.json",
    "reports/grype-redhat-anteather-1.json",
];

#[test]
fn every_fixture_is_claimed_only_if_grype_wrote_it() {
    let root = fixtures_dir();
    let files = files_under(&root);
    assert!(files.len() > 30, "fixtures missing under {}", root.display());
    let mut claimed = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap().to_str().unwrap();
        let confidence = sniff(&std::fs::read(path).unwrap());
        if GRYPE_REPORTS.contains(&relative) {
            assert!(confidence >= 90, "{relative}: {confidence}");
            claimed.push(relative.to_owned());
        } else {
            assert_eq!(confidence, 0, "{relative}");
        }
    }
    assert_eq!(claimed.len(), GRYPE_REPORTS.len(), "a listed report is missing: {claimed:?}");
}

#[test]
fn byte_order_mark_and_truncation_keep_the_verdict() {
    let original = std::fs::read(fixtures_dir().join("reports/grype-debian-defectdojo-1.json")).unwrap();
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&original);
    assert_eq!(sniff(&with_bom), sniff(&original));
    // A cut-off report is still recognisably Grype's; parse says what is wrong.
    assert!(sniff(&original[..4096]) >= 90);
}

#[test]
fn sniff_reads_only_the_start_of_large_input() {
    let mut huge = b"{\"matches\": [\"".to_vec();
    huge.resize(64 * 1024 * 1024, b'a');
    let started = std::time::Instant::now();
    assert_eq!(sniff(&huge), 30);
    assert!(started.elapsed().as_millis() < 500, "{:?}", started.elapsed());
}
