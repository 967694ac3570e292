//! Any bytes through the Trivy plugin's `sniff` and `parse`: neither may
//! panic, and an error must say something.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|report: &[u8]| {
    let confidence = caulk_plugin_trivy::sniff(report);
    assert!(confidence <= 100);
    match caulk_plugin_trivy::parse(report) {
        Ok(findings) => {
            for finding in &findings.findings {
                assert!(!finding.ecosystem.is_empty(), "{finding:?}");
            }
        }
        Err(error) => assert!(!error.message.is_empty()),
    }
});
