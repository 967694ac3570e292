//! The built component, run by the real `caulk` binary.

use caulk_sdk::testing::{Host, build_component};

#[test]
fn the_component_parses_through_caulk() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("the plugin builds for wasm32-wasip2");
    let host = Host::find().expect("a caulk binary (CAULK_BIN, the workspace's target dir, or PATH)");
    let report = b"# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n\
                   CVE-2023-0464,libssl3,3.0.8-1,3.0.9-1~deb12u1,high,deb\n";
    assert_eq!(host.sniff(&wasm, report).unwrap(), 100);
    let findings = host.parse(&wasm, report).unwrap();
    assert_eq!(findings.findings.len(), 1);
    assert_eq!(findings.findings[0].fixed_versions, ["3.0.9-1~deb12u1"]);

    let err = host.parse(&wasm, b"vulnerability,package\n").unwrap_err().to_string();
    assert!(err.contains("line 1"), "the plugin's error reaches the user: {err}");
}
