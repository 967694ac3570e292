//! `sniff` over every fixture: Trivy's reports are claimed with confidence,
//! everything else (Grype, Copa manifests and plugin reports, package lists,
//! YAML, non-JSON) is left alone.

mod support;

use caulk_plugin_trivy::sniff;
use support::{files_under, fixtures_dir};

/// The fixtures written by Trivy, relative to the fixtures directory.
const TRIVY_REPORTS: &[&str] = &[
    "copa/copa-action/test/data/nginx.1.21.6.json",
    "copa/copa-action/test/data/patched-report.json",
    "copa/copacetic/pkg/report/testdata/pkg_types_test.json",
    "copa/copacetic/pkg/report/testdata/trivy_dotnet.json",
    "copa/copacetic/pkg/report/testdata/trivy_no_history.json",
    "copa/copacetic/pkg/report/testdata/trivy_node_valid.json",
    "copa/copacetic/pkg/report/testdata/trivy_python_venv.json",
    "copa/copacetic/pkg/report/testdata/trivy_valid.json",
    "reports/trivy-debian-flask-python-app-1.json",
    "reports/trivy-debian-mirgs-1.json",
    "reports/trivy-redhat-anteather-1.json",
];

#[test]
fn every_fixture_is_claimed_only_if_trivy_wrote_it() {
    let root = fixtures_dir();
    let files = files_under(&root);
    assert!(files.len() > 30, "fixtures missing under {}", root.display());
    let mut claimed = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap().to_str().unwrap();
        let confidence = sniff(&std::fs::read(path).unwrap());
        if TRIVY_REPORTS.contains(&relative) {
            assert!(confidence >= 90, "{relative}: {confidence}");
            claimed.push(relative.to_owned());
        } else {
            assert_eq!(confidence, 0, "{relative}");
        }
    }
    assert_eq!(claimed.len(), TRIVY_REPORTS.len(), "a listed report is missing: {claimed:?}");
}

#[test]
fn byte_order_mark_crlf_and_truncation_keep_the_verdict() {
    let root = fixtures_dir();
    let original = std::fs::read(root.join("reports/trivy-debian-mirgs-1.json")).unwrap();
    let mut windows = b"\xEF\xBB\xBF".to_vec();
    windows.extend(original.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }));
    assert_eq!(sniff(&windows), sniff(&original));
    // A cut-off report is still recognisably Trivy's; parse says what is wrong.
    assert!(sniff(&original[..4096]) >= 90);
}

#[test]
fn sniff_reads_only_the_start_of_large_input() {
    // 64 MB of one JSON string: sniff answers from its budget, fast.
    let mut huge = b"{\"x\": \"".to_vec();
    huge.resize(64 * 1024 * 1024, b'a');
    let started = std::time::Instant::now();
    assert_eq!(sniff(&huge), 0);
    assert!(started.elapsed().as_millis() < 500, "{:?}", started.elapsed());
}
