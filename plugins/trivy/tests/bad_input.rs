//! Input that is not a usable Trivy report gets a typed error that says what
//! is wrong and where, never a panic.

mod support;

use caulk_plugin_trivy::parse;
use caulk_sdk::types::{Error, ErrorKind};
use support::read_fixture;

fn error_of(report: &[u8]) -> Error {
    match parse(report) {
        Ok(findings) => panic!("expected an error, got {} findings", findings.findings.len()),
        Err(error) => error,
    }
}

fn assert_malformed(report: &[u8], expected: &[&str]) -> Error {
    let error = error_of(report);
    assert_eq!(error.kind, ErrorKind::MalformedInput, "{error:?}");
    for part in expected {
        assert!(error.message.contains(part), "{:?} lacks {part:?}", error.message);
    }
    error
}

#[test]
fn not_json() {
    assert_malformed(
        &read_fixture("copa/copacetic/pkg/report/testdata/invalid.json"),
        &["not valid JSON", "line 1 column 1"],
    );
    assert_malformed(b"SchemaVersion: 2\nResults: []\n", &["not valid JSON"]);
}

#[test]
fn truncated_json_names_the_element_being_read() {
    let whole = read_fixture("copa/copa-action/test/data/nginx.1.21.6.json");
    let cut = &whole[..whole.len() / 2];
    let error = assert_malformed(cut, &["ends too early", "$.Results[0].Vulnerabilities[", "truncated"]);
    let lines = cut.split(|&b| b == b'\n').count();
    assert!(error.message.contains(&format!("line {lines}")), "{}", error.message);
}

#[test]
fn other_tools_json_is_refused_with_a_hint() {
    let grype = assert_malformed(
        &read_fixture("reports/grype-debian-multiscanner-1.json"),
        &["not a Trivy report", "matches"],
    );
    assert!(grype.hint.unwrap().contains("--scanner grype"));
    let copa = assert_malformed(
        &read_fixture("copa/copacetic/test/e2e/frontend/testdata/simple-report.json"),
        &["not a Trivy report"],
    );
    assert!(copa.hint.unwrap().contains("--scanner native"));
    assert_malformed(
        &read_fixture("copa/scanner-plugin-template/testdata/fake_report.json"),
        &["not a Trivy report", "OSType"],
    );
    assert_malformed(br#"{"bomFormat": "CycloneDX", "specVersion": "1.5"}"#, &["not a Trivy report"]);
    // An array of objects that are not Trivy results.
    assert_malformed(br#"[{"name": "x"}]"#, &["$[0]", "no Target"]);
    assert_malformed(b"[1, 2]", &["$[0]", "expected a Trivy result"]);
    assert_malformed(b"\"a string\"", &["expected a Trivy JSON report"]);
}

#[test]
fn empty_reports() {
    // Nothing says these came from Trivy: errors.
    assert_malformed(b"", &["empty (0 bytes)"]);
    assert_malformed(b"  \r\n\t", &["only whitespace"]);
    assert_malformed(b"{}", &["not a Trivy report", "an empty object"]);
    assert_malformed(b"null", &["expected a Trivy JSON report"]);
    // What Trivy itself writes when there is nothing to report.
    for clean in [
        &b"[]"[..],
        br#"{"SchemaVersion": 2, "ArtifactName": "scratch"}"#,
        br#"{"SchemaVersion": 2, "Results": null}"#,
    ] {
        let findings = parse(clean).unwrap();
        assert!(findings.findings.is_empty());
    }
}

#[test]
fn unsupported_schema_version() {
    let error = error_of(br#"{"SchemaVersion": 3, "Results": []}"#);
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("SchemaVersion 3"), "{}", error.message);
    assert_malformed(br#"{"SchemaVersion": "two"}"#, &["$.SchemaVersion", "invalid type"]);
}

#[test]
fn missing_and_mistyped_fields_name_their_path() {
    let missing = br#"{"SchemaVersion": 2, "Results": [{"Target": "t", "Class": "os-pkgs", "Type": "debian",
        "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "a", "InstalledVersion": "1"},
                            {"VulnerabilityID": "CVE-2", "InstalledVersion": "1"}]}]}"#;
    assert_malformed(missing, &["$.Results[0].Vulnerabilities[1]", "missing field `PkgName`", "line 3"]);
    let mistyped = br#"{"SchemaVersion": 2, "Results": [{"Target": "t", "Packages": [{"Name": 7}]}]}"#;
    assert_malformed(mistyped, &["$.Results[0].Packages[0]", "invalid type: integer `7`"]);
    let metadata = br#"{"SchemaVersion": 2, "Metadata": {"OS": "debian"}}"#;
    assert_malformed(metadata, &["$.Metadata", "invalid type"]);
}

#[test]
fn invalid_utf8_even_in_skipped_fields() {
    let mut report = read_fixture("copa/copa-action/test/data/nginx.1.21.6.json");
    // Damage a byte inside the first Description, a field the parser skips.
    let at = report.windows(15).position(|w| w == b"\"Description\": ").unwrap() + 16;
    report[at] = 0xFF;
    let line = report[..at].split(|&b| b == b'\n').count();
    assert_malformed(&report, &["not valid UTF-8", "0xFF", &format!("line {line},")]);
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
    let nested_objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));

    // As a legacy array, its first element is no result object.
    let error = parse_on_small_stack(nested.clone()).unwrap_err();
    assert!(error.message.contains("$[0]") && error.message.contains("expected a Trivy result"), "{error:?}");
    // Where a string is expected.
    let as_title = format!(
        r#"{{"SchemaVersion": 2, "Results": [{{"Target": "t", "Vulnerabilities": [
            {{"VulnerabilityID": "CVE-1", "PkgName": "a", "InstalledVersion": "1", "Title": {nested}}}]}}]}}"#
    );
    let error = parse_on_small_stack(as_title).unwrap_err();
    assert!(error.message.contains("$.Results[0].Vulnerabilities[0]: invalid type"), "{error:?}");
    // serde_json skips ignored values without recursing: deep nesting in a
    // field caulk does not read costs nothing.
    let in_references = format!(
        r#"{{"SchemaVersion": 2, "Results": [{{"Target": "t", "Vulnerabilities": [
            {{"VulnerabilityID": "CVE-1", "PkgName": "a", "InstalledVersion": "1", "References": {nested}}}]}}]}}"#
    );
    assert_eq!(parse_on_small_stack(in_references).unwrap(), 1);
    let error = parse_on_small_stack(nested_objects).unwrap_err();
    assert!(error.message.contains("not a Trivy report"), "{error:?}");
    // Unbalanced: the skipping still ends in an error.
    let error =
        parse_on_small_stack(format!(r#"{{"SchemaVersion": 2, "x": {}"#, "[".repeat(depth))).unwrap_err();
    assert!(error.message.contains("ends too early"), "{error:?}");
}

#[test]
fn trailing_garbage_after_the_report() {
    assert_malformed(br#"{"SchemaVersion": 2} {"SchemaVersion": 2}"#, &["trailing characters"]);
}
