//! Input that is not a usable Grype report gets a typed error that says what
//! is wrong and where, never a panic.

mod support;

use caulk_plugin_grype::parse;
use caulk_sdk::types::{Error, ErrorKind};
use support::read_fixture;

fn assert_malformed(report: &[u8], expected: &[&str]) -> Error {
    let error = match parse(report) {
        Ok(findings) => panic!("expected an error, got {} findings", findings.findings.len()),
        Err(error) => error,
    };
    assert_eq!(error.kind, ErrorKind::MalformedInput, "{error:?}");
    for part in expected {
        assert!(error.message.contains(part), "{:?} lacks {part:?}", error.message);
    }
    error
}

#[test]
fn not_json() {
    assert_malformed(
        &read_fixture("copa/scanner-plugin-template/testdata/invalid_report.json"),
        &["not valid JSON", "line 1 column 1"],
    );
    assert_malformed(b"matches:\n  - CVE-1\n", &["not valid JSON"]);
}

#[test]
fn truncated_json_names_the_element_being_read() {
    let whole = read_fixture("reports/grype-redhat-anteather-1.json");
    let cut = &whole[..whole.len() / 2];
    let error = assert_malformed(cut, &["ends too early", "$.matches[", "truncated"]);
    let lines = cut.split(|&b| b == b'\n').count();
    assert!(error.message.contains(&format!("line {lines}")), "{}", error.message);
}

#[test]
fn other_tools_json_is_refused_with_a_hint() {
    let trivy = assert_malformed(
        &read_fixture("reports/trivy-redhat-anteather-1.json"),
        &["not a Grype report", "SchemaVersion"],
    );
    assert!(trivy.hint.unwrap().contains("--scanner trivy"));
    // Legacy Trivy: a top-level array.
    assert_malformed(&read_fixture("reports/trivy-debian-mirgs-1.json"), &["expected a Grype JSON report"]);
    let copa = assert_malformed(
        &read_fixture("copa/copacetic/test/e2e/frontend/testdata/complex-report.json"),
        &["not a Grype report"],
    );
    assert!(copa.hint.unwrap().contains("--scanner native"));
    let syft = assert_malformed(
        br#"{"artifacts": [], "source": {}, "descriptor": {"name": "syft"}}"#,
        &["not a Grype report", "artifacts"],
    );
    assert!(syft.hint.unwrap().contains("SBOM"));
    assert_malformed(
        br#"{"matches": [{"id": "CVE-1"}]}"#,
        &["$.matches[0]", "missing field `vulnerability`"],
    );
}

#[test]
fn empty_reports() {
    // Nothing says these came from Grype: errors.
    assert_malformed(b"", &["empty (0 bytes)"]);
    assert_malformed(b"\n\n", &["only whitespace"]);
    assert_malformed(b"{}", &["not a Grype report", "an empty object"]);
    assert_malformed(b"[]", &["expected a Grype JSON report"]);
    assert_malformed(b"null", &["expected a Grype JSON report"]);
    // What Grype writes for a clean image.
    for clean in [&br#"{"matches": []}"#[..], br#"{"matches": null, "descriptor": {"name": "grype"}}"#] {
        assert!(parse(clean).unwrap().findings.is_empty());
    }
}

#[test]
fn missing_and_mistyped_fields_name_their_path() {
    let missing = br#"{"matches": [
        {"vulnerability": {"id": "CVE-1"}, "artifact": {"name": "a", "version": "1", "type": "deb"}},
        {"vulnerability": {"id": "CVE-2"}, "artifact": {"name": "b", "type": "deb"}}]}"#;
    assert_malformed(missing, &["$.matches[1]", "missing field `version`", "line 3"]);
    let mistyped = br#"{"matches": [], "alertsByPackage": [{"package": {"id": 5}, "alerts": []}]}"#;
    assert_malformed(mistyped, &["$.alertsByPackage[0]", "invalid type: integer `5`"]);
    assert_malformed(br#"{"matches": [], "distro": {"name": 1}}"#, &["$.distro", "invalid type"]);
    assert_malformed(br#"{"matches": [], "distro": {"idLike": {}}}"#, &["$.distro", "invalid type"]);
    assert_malformed(br#"{"matches": "none"}"#, &["$.matches", "expected a list"]);
}

#[test]
fn invalid_utf8_even_in_skipped_fields() {
    let mut report = read_fixture("reports/grype-redhat-anteather-1.json");
    let at = report.windows(15).position(|w| w == b"\"description\": ").unwrap() + 16;
    report[at] = 0xC0;
    let line = report[..at].split(|&b| b == b'\n').count();
    assert_malformed(&report, &["not valid UTF-8", "0xC0", &format!("line {line},")]);
}

/// Parses on a thread with a small stack, as a plugin's wasm stack is.
fn parse_on_small_stack(report: String) -> Result<usize, Error> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || parse(report.as_bytes()).map(|findings| findings.findings.len()))
        .unwrap()
        .join()
        .expect("the parser overflowed its stack or panicked")
}

#[test]
fn deep_nesting_is_an_error_or_skipped_never_a_stack_overflow() {
    let depth = 1_000_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let error = parse_on_small_stack(nested.clone()).unwrap_err();
    assert!(error.message.contains("expected a Grype JSON report"), "{error:?}");
    // Where a string is expected.
    let as_id = format!(r#"{{"matches": [{{"vulnerability": {{"id": {nested}}}}}]}}"#);
    let error = parse_on_small_stack(as_id).unwrap_err();
    assert!(error.message.contains("$.matches[0]: invalid type"), "{error:?}");
    // Inside metadata, which caulk reads only in part.
    let in_metadata = format!(
        r#"{{"matches": [{{"vulnerability": {{"id": "CVE-1"}},
            "artifact": {{"name": "a", "version": "1", "metadata": {{"files": {nested}}}}}}}]}}"#
    );
    assert_eq!(parse_on_small_stack(in_metadata).unwrap(), 1);
    let in_lenient = format!(
        r#"{{"matches": [{{"vulnerability": {{"id": "CVE-1"}},
            "artifact": {{"name": "a", "version": "1", "metadata": {{"epoch": {nested}}}}}}}]}}"#
    );
    assert_eq!(parse_on_small_stack(in_lenient).unwrap(), 1);
    let as_metadata = format!(
        r#"{{"matches": [{{"vulnerability": {{"id": "CVE-1"}},
            "artifact": {{"name": "a", "version": "1", "metadata": {nested}}}}}]}}"#
    );
    assert_eq!(parse_on_small_stack(as_metadata).unwrap(), 1);
    // Skipped fields: serde_json skips without recursing.
    let skipped = format!(r#"{{"matches": [], "descriptor": {{"configuration": {nested}}}}}"#);
    assert_eq!(parse_on_small_stack(skipped).unwrap(), 0);
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let error = parse_on_small_stack(objects).unwrap_err();
    assert!(error.message.contains("not a Grype report"), "{error:?}");
}

#[test]
fn trailing_garbage_after_the_report() {
    assert_malformed(br#"{"matches": []}]"#, &["trailing characters"]);
}
