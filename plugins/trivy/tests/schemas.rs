//! Each Trivy JSON shape, read from real reports (see the fixtures'
//! SOURCES.md) and from variants derived from them.

mod support;

use caulk_plugin_trivy::parse;
use caulk_sdk::types::{FixStatus, OsInfo, PackageClass, Platform, Severity};
use serde_json::{Value, json};
use support::{count, finding, parse_fixture, read_fixture};

#[test]
fn current_schema_2_with_fingerprints_packages_and_python() {
    let report = parse_fixture("reports/trivy-debian-flask-python-app-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Trivy 0.74.0"));
    assert_eq!(report.artifact.as_deref(), Some("watchtower:security-test"));
    assert_eq!(report.os, Some(OsInfo { family: "debian".into(), version: "13.6".into() }));
    assert_eq!(
        report.platform,
        Some(Platform { os: "linux".into(), architecture: "arm64".into(), variant: None })
    );
    assert_eq!(report.findings.len(), 194);
    assert_eq!(count(&report, |f| f.ecosystem == "deb" && f.class == PackageClass::Os), 186);
    assert_eq!(count(&report, |f| f.ecosystem == "python" && f.class == PackageClass::Library), 8);
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed), 71);
    assert_eq!(count(&report, |f| f.status == FixStatus::Affected), 116);
    assert_eq!(count(&report, |f| f.status == FixStatus::FixDeferred), 7);
    // Every finding with a fixed version is `fixed`, and only those.
    assert_eq!(count(&report, |f| !f.fixed_versions.is_empty()), 71);

    // An epoch in the installed version but not in the fixed one, and the
    // source package found through `PkgIdentifier.UID` in `Packages`.
    let bsdutils = finding(&report, "CVE-2026-53612", "bsdutils");
    assert_eq!(bsdutils.installed_version, "1:2.41-5");
    assert_eq!(bsdutils.fixed_versions, ["2.41.5-0+deb13u1"]);
    assert_eq!(bsdutils.status, FixStatus::Fixed);
    assert_eq!(bsdutils.ecosystem, "deb");
    assert_eq!(bsdutils.location, None);
    assert_eq!(bsdutils.severity, Severity::High);
    assert_eq!(bsdutils.source_package.as_deref(), Some("util-linux"));
    assert_eq!(
        bsdutils.purl.as_deref(),
        Some("pkg:deb/debian/bsdutils@2.41-5?arch=arm64&distro=debian-13.6&epoch=1")
    );
    assert!(bsdutils.title.as_deref().unwrap().starts_with("util-linux: util-linux: TOCTOU"));

    let deferred = finding(&report, "CVE-2026-14456", "libssl3t64");
    assert_eq!(deferred.status, FixStatus::FixDeferred);
    assert!(deferred.fixed_versions.is_empty());
    assert_eq!(deferred.source_package.as_deref(), Some("openssl"));

    let vendored = finding(&report, "CVE-2026-24049", "wheel");
    assert_eq!(vendored.ecosystem, "python");
    assert_eq!(
        vendored.location.as_deref(),
        Some("usr/local/lib/python3.11/site-packages/setuptools/_vendor/wheel-0.45.1.dist-info/METADATA")
    );
    assert_eq!(vendored.installed_version, "0.45.1");
    assert_eq!(vendored.fixed_versions, ["0.46.2"]);
    assert_eq!(vendored.purl.as_deref(), Some("pkg:pypi/wheel@0.45.1"));
    assert_eq!(vendored.source_package, None);
    // pip has five vulnerabilities at one location.
    assert_eq!(
        count(&report, |f| f.package == "pip"
            && f.location.as_deref()
                == Some("usr/local/lib/python3.11/site-packages/pip-24.0.dist-info/METADATA")),
        5
    );
}

#[test]
fn early_schema_2_without_status_or_pkg_id() {
    let report = parse_fixture("reports/trivy-redhat-anteather-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Trivy"));
    assert_eq!(report.artifact.as_deref(), Some("registry.access.redhat.com/ubi7/ubi:7.6-73"));
    assert_eq!(report.os, Some(OsInfo { family: "redhat".into(), version: "7.6".into() }));
    assert_eq!(report.platform.as_ref().map(|p| p.architecture.as_str()), Some("amd64"));
    assert_eq!(report.findings.len(), 1000);
    assert_eq!(count(&report, |f| f.ecosystem == "rpm" && f.class == PackageClass::Os), 1000);
    // No Status field: a fixed version means fixed, none means affected.
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed), 259);
    assert_eq!(count(&report, |f| f.status == FixStatus::Affected), 741);
    assert_eq!(count(&report, |f| f.purl.is_some() || f.source_package.is_some()), 0);

    let dbus = finding(&report, "CVE-2020-12049", "dbus");
    assert_eq!(dbus.installed_version, "1:1.10.24-13.el7_6");
    assert_eq!(dbus.fixed_versions, ["1:1.10.24-14.el7_8"]);
    assert_eq!(dbus.status, FixStatus::Fixed);
    let bash = finding(&report, "CVE-2019-9924", "bash");
    assert_eq!((bash.installed_version.as_str(), bash.severity), ("4.2.46-31.el7", Severity::Medium));
    assert_eq!(bash.fixed_versions, ["4.2.46-34.el7"]);
}

#[test]
fn copa_actions_nginx_report_with_status() {
    let report = parse_fixture("copa/copa-action/test/data/nginx.1.21.6.json");
    assert_eq!(report.findings.len(), 181);
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed && f.fixed_versions.len() == 1), 181);
    assert_eq!(report.os, Some(OsInfo { family: "debian".into(), version: "11.3".into() }));
    let curl = finding(&report, "CVE-2021-22945", "curl");
    assert_eq!(curl.fixed_versions, ["7.74.0-1.3+deb11u2"]);
    assert_eq!(curl.severity, Severity::Critical);

    // The patched image's report: a result with no vulnerabilities at all.
    let patched = parse_fixture("copa/copa-action/test/data/patched-report.json");
    assert!(patched.findings.is_empty());
    assert_eq!(patched.artifact.as_deref(), Some("docker.io/library/nginx:1.21.6-patched"));
}

#[test]
fn legacy_array_with_type() {
    let report = parse_fixture("reports/trivy-debian-mirgs-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Trivy"));
    // The legacy format names the image only in the OS result's target.
    assert_eq!(report.artifact.as_deref(), Some("debian:10.8"));
    assert_eq!(report.os, Some(OsInfo { family: "debian".into(), version: "10.8".into() }));
    assert_eq!(report.platform, None);
    assert_eq!(report.findings.len(), 93);
    assert_eq!(count(&report, |f| f.ecosystem == "deb" && f.class == PackageClass::Os), 93);
    assert_eq!(count(&report, |f| f.status == FixStatus::Affected && f.fixed_versions.is_empty()), 93);
    let apt = finding(&report, "CVE-2011-3374", "apt");
    assert_eq!((apt.installed_version.as_str(), apt.severity), ("1.8.2.2", Severity::Low));
}

#[test]
fn legacy_array_without_type() {
    let original = parse_fixture("reports/trivy-debian-mirgs-1.json");
    let mut results: Value =
        serde_json::from_slice(&read_fixture("reports/trivy-debian-mirgs-1.json")).unwrap();
    results[0].as_object_mut().unwrap().remove("Type").expect("the fixture has a Type");
    // Pre-Type Trivy also listed lock files by path.
    results.as_array_mut().unwrap().push(json!({
        "Target": "app/Pipfile.lock",
        "Vulnerabilities": [{
            "VulnerabilityID": "CVE-2019-11236", "PkgName": "urllib3",
            "InstalledVersion": "1.24.1", "FixedVersion": "1.24.3", "Severity": "MEDIUM"
        }]
    }));
    let report = parse(&serde_json::to_vec(&results).unwrap()).unwrap();
    assert_eq!(report.os, original.os);
    assert_eq!(report.artifact, original.artifact);
    assert_eq!(report.findings[..93], original.findings[..]);
    let urllib3 = finding(&report, "CVE-2019-11236", "urllib3");
    assert_eq!(urllib3.ecosystem, "python");
    assert_eq!(urllib3.class, PackageClass::Library);
    assert_eq!(urllib3.location.as_deref(), Some("app/Pipfile.lock"));
    assert_eq!(urllib3.status, FixStatus::Fixed);
}

#[test]
fn byte_order_mark_and_crlf_line_endings() {
    let original = read_fixture("copa/copa-action/test/data/nginx.1.21.6.json");
    let mut windows = b"\xEF\xBB\xBF".to_vec();
    for &byte in &original {
        if byte == b'\n' {
            windows.push(b'\r');
        }
        windows.push(byte);
    }
    assert!(windows.windows(2).any(|w| w == b"\r\n"));
    assert_eq!(parse(&windows).unwrap(), parse(&original).unwrap());
}

#[test]
fn copa_test_reports() {
    // Comma-separated fixed versions, one location per PkgPath.
    let dotnet = parse_fixture("copa/copacetic/pkg/report/testdata/trivy_dotnet.json");
    assert_eq!(dotnet.findings.len(), 6);
    assert_eq!(count(&dotnet, |f| f.ecosystem == "nuget" && f.class == PackageClass::Library), 6);
    let runtime = finding(&dotnet, "CVE-2026-26130", "Microsoft.AspNetCore.App.Runtime.linux-x64");
    assert_eq!(runtime.fixed_versions, ["8.0.25", "9.0.14", "10.0.4"]);
    assert_eq!(runtime.status, FixStatus::Fixed);
    let json_locations: Vec<_> = dotnet
        .findings
        .iter()
        .filter(|f| f.package == "System.Text.Json")
        .map(|f| f.location.as_deref().unwrap())
        .collect();
    assert_eq!(json_locations, ["app/MyApp.deps.json", "app/OtherLib.deps.json"]);

    // The same package in two site-packages directories stays two findings.
    let venv = parse_fixture("copa/copacetic/pkg/report/testdata/trivy_python_venv.json");
    let requests: Vec<_> = venv
        .findings
        .iter()
        .filter(|f| f.package == "requests")
        .map(|f| (f.installed_version.as_str(), f.location.as_deref().unwrap()))
        .collect();
    assert_eq!(
        requests,
        [
            ("2.28.0", "opt/venv/lib/python3.11/site-packages"),
            ("2.28.1", "usr/local/lib/python3.11/site-packages")
        ]
    );

    // Without PkgPath the lock file named by Target is the location.
    let node = parse_fixture("copa/copacetic/pkg/report/testdata/trivy_node_valid.json");
    let ansi = finding(&node, "CVE-2021-3807", "ansi-regex");
    assert_eq!((ansi.ecosystem.as_str(), ansi.location.as_deref()), ("npm", Some("app/package-lock.json")));
    assert_eq!(finding(&node, "CVE-2022-3509", "protobuf-c").ecosystem, "apk");

    // No Metadata.OS: the OS comes from the OS result's target.
    let alpine = parse_fixture("copa/copacetic/pkg/report/testdata/trivy_no_history.json");
    assert_eq!(alpine.os, Some(OsInfo { family: "alpine".into(), version: "3.21.0".into() }));
    assert_eq!(finding(&alpine, "CVE-2024-1234", "libssl3").ecosystem, "apk");

    let ubuntu = parse_fixture("copa/copacetic/pkg/report/testdata/pkg_types_test.json");
    assert_eq!(finding(&ubuntu, "CVE-2023-1234", "libc6").ecosystem, "deb");
    let requests = finding(&ubuntu, "CVE-2023-5678", "requests");
    assert_eq!(
        (requests.ecosystem.as_str(), requests.location.as_deref()),
        ("python", Some("requirements.txt"))
    );
}

/// A report with one result of `result_type` (and `class`) holding one
/// vulnerability with the given extra fields.
fn one_result(class: &str, result_type: &str, target: &str, vulnerability: &Value) -> Value {
    let mut v = json!({"VulnerabilityID": "CVE-0000-0001", "PkgName": "pkg", "InstalledVersion": "1.0"});
    v.as_object_mut().unwrap().extend(vulnerability.as_object().unwrap().clone());
    json!({
        "SchemaVersion": 2,
        "Results": [{"Target": target, "Class": class, "Type": result_type, "Vulnerabilities": [v]}]
    })
}

fn parse_value(report: &Value) -> caulk_sdk::types::Findings {
    parse(&serde_json::to_vec(report).unwrap()).unwrap()
}

#[test]
fn every_result_type_maps_to_an_ecosystem() {
    let os = [
        ("debian", "deb"),
        ("ubuntu", "deb"),
        ("alpine", "apk"),
        ("wolfi", "apk"),
        ("chainguard", "apk"),
        ("redhat", "rpm"),
        ("centos", "rpm"),
        ("rocky", "rpm"),
        ("alma", "rpm"),
        ("oracle", "rpm"),
        ("amazon", "rpm"),
        ("fedora", "rpm"),
        ("photon", "rpm"),
        ("cbl-mariner", "rpm"),
        ("azurelinux", "rpm"),
        ("opensuse.leap", "rpm"),
        ("sles", "rpm"),
        ("bottlerocket", "bottlerocket"),
    ];
    for (family, ecosystem) in os {
        let report = parse_value(&one_result("os-pkgs", family, &format!("img ({family} 1)"), &json!({})));
        let f = &report.findings[0];
        assert_eq!(
            (f.ecosystem.as_str(), f.class, f.location.as_deref()),
            (ecosystem, PackageClass::Os, None)
        );
    }
    let libraries = [
        ("python-pkg", "python"),
        ("pip", "python"),
        ("pipenv", "python"),
        ("poetry", "python"),
        ("uv", "python"),
        ("node-pkg", "npm"),
        ("npm", "npm"),
        ("yarn", "npm"),
        ("pnpm", "npm"),
        ("gomod", "go"),
        ("gobinary", "go"),
        ("jar", "maven"),
        ("pom", "maven"),
        ("gradle", "maven"),
        ("gemspec", "gem"),
        ("bundler", "gem"),
        ("cargo", "cargo"),
        ("rustbinary", "cargo"),
        ("composer", "composer"),
        ("dotnet-core", "nuget"),
        ("nuget", "nuget"),
        ("conan", "conan"),
        ("hex", "hex"),
        ("pub", "pub"),
        ("swift", "swift"),
        ("cocoapods", "cocoapods"),
        ("conda-pkg", "conda"),
        ("julia", "julia"),
        ("some-future-type", "some-future-type"),
    ];
    for (result_type, ecosystem) in libraries {
        let report = parse_value(&one_result("lang-pkgs", result_type, "srv/lockfile", &json!({})));
        let f = &report.findings[0];
        assert_eq!(
            (f.ecosystem.as_str(), f.class, f.location.as_deref()),
            (ecosystem, PackageClass::Library, Some("srv/lockfile")),
            "{result_type}"
        );
    }
    // Aggregating targets are labels, not places.
    let java = parse_value(&one_result("lang-pkgs", "jar", "Java", &json!({})));
    assert_eq!(java.findings[0].location, None);
    let jar = parse_value(&one_result("lang-pkgs", "jar", "Java", &json!({"PkgPath": "opt/app/lib/x.jar"})));
    assert_eq!(jar.findings[0].location.as_deref(), Some("opt/app/lib/x.jar"));
}

#[test]
fn statuses_and_severities() {
    let statuses = [
        ("fixed", FixStatus::Fixed),
        ("affected", FixStatus::Affected),
        ("will_not_fix", FixStatus::WillNotFix),
        ("fix_deferred", FixStatus::FixDeferred),
        ("end_of_life", FixStatus::EndOfLife),
        ("not_affected", FixStatus::NotAffected),
        ("under_investigation", FixStatus::UnderInvestigation),
        ("unknown", FixStatus::Unknown),
        ("something-new", FixStatus::Unknown),
    ];
    for (status, expected) in statuses {
        let report =
            parse_value(&one_result("os-pkgs", "debian", "x (debian 12)", &json!({"Status": status})));
        assert_eq!(report.findings[0].status, expected, "{status}");
    }
    // A Status always wins over the presence of a fixed version.
    let report = parse_value(&one_result(
        "os-pkgs",
        "debian",
        "x (debian 12)",
        &json!({"Status": "will_not_fix", "FixedVersion": "1.1"}),
    ));
    assert_eq!(
        (report.findings[0].status, &report.findings[0].fixed_versions[..]),
        (FixStatus::WillNotFix, &["1.1".to_owned()][..])
    );
    let empty_fix =
        parse_value(&one_result("os-pkgs", "debian", "x (debian 12)", &json!({"FixedVersion": " , "})));
    assert_eq!(
        (empty_fix.findings[0].status, empty_fix.findings[0].fixed_versions.len()),
        (FixStatus::Affected, 0)
    );
    for (severity, expected) in [
        ("CRITICAL", Severity::Critical),
        ("HIGH", Severity::High),
        ("MEDIUM", Severity::Medium),
        ("LOW", Severity::Low),
        ("UNKNOWN", Severity::Unknown),
        ("", Severity::Unknown),
    ] {
        let report =
            parse_value(&one_result("os-pkgs", "debian", "x (debian 12)", &json!({"Severity": severity})));
        assert_eq!(report.findings[0].severity, expected, "{severity}");
    }
}

#[test]
fn context_after_vulnerabilities_and_escaped_strings() {
    // Key order is free in JSON: a result's Class, Packages and Target may
    // follow its vulnerabilities, Metadata may follow Results, and strings
    // may be escaped (then they cannot be borrowed from the input).
    let text = r#"{
        "Results": [{
            "Vulnerabilities": [{
                "VulnerabilityID": "CVE-1", "PkgName": "lib\u00e9x", "PkgID": "libx@1:2.0",
                "InstalledVersion": "1:2.0", "Title": "quote \" and \\ backslash"
            }],
            "Packages": [{"ID": "libx@1:2.0", "Name": "lib\u00e9x", "SrcName": "x-src"}],
            "Class": "os-pkgs",
            "Target": "img (ubuntu 22.04)"
        }],
        "Metadata": {"OS": {"Family": "ubuntu", "Name": "22.04"},
                     "ImageConfig": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        "SchemaVersion": 2
    }"#;
    let report = parse(text.as_bytes()).unwrap();
    let f = &report.findings[0];
    assert_eq!((f.package.as_str(), f.ecosystem.as_str()), ("lib\u{e9}x", "deb"));
    assert_eq!(f.source_package.as_deref(), Some("x-src"));
    assert_eq!(f.title.as_deref(), Some("quote \" and \\ backslash"));
    assert_eq!(
        report.platform,
        Some(Platform { os: "linux".into(), architecture: "arm".into(), variant: Some("v7".into()) })
    );
}
