//! Each Grype JSON generation, read from real reports (see the fixtures'
//! SOURCES.md) and from variants derived from them.

mod support;

use caulk_plugin_grype::parse;
use caulk_sdk::types::{FixStatus, OsInfo, PackageClass, Platform, Severity};
use serde_json::{Value, json};
use support::{count, finding, parse_fixture, read_fixture};

fn amd64() -> Platform {
    Platform { os: "linux".into(), architecture: "amd64".into(), variant: None }
}

#[test]
fn grype_0_7_without_fix_objects() {
    let report = parse_fixture("reports/grype-debian-defectdojo-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Grype 0.7.0"));
    assert_eq!(report.artifact.as_deref(), Some("defectdojo/defectdojo-django:1.13.1"));
    // `idLike` is the string "" here.
    assert_eq!(report.os, Some(OsInfo { family: "debian".into(), version: "10".into() }));
    assert_eq!(report.platform, None);
    assert_eq!(report.findings.len(), 327);
    assert_eq!(count(&report, |f| f.ecosystem == "deb" && f.class == PackageClass::Os), 219);
    assert_eq!(count(&report, |f| f.ecosystem == "python" && f.class == PackageClass::Library), 108);
    // `fixedInVersion` is the only fix information of that era.
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed && f.fixed_versions.len() == 1), 28);
    assert_eq!(count(&report, |f| f.status == FixStatus::Unknown && f.fixed_versions.is_empty()), 299);

    let zstd = finding(&report, "CVE-2021-24031", "libzstd1");
    assert_eq!(zstd.installed_version, "1.3.8+dfsg-3");
    assert_eq!(zstd.fixed_versions, ["1.3.8+dfsg-3+deb10u1"]);
    assert_eq!(zstd.location, None);
    assert_eq!(zstd.purl.as_deref(), Some("pkg:deb/debian/libzstd1@1.3.8+dfsg-3?arch=amd64"));
    let bash = finding(&report, "CVE-2019-18276", "bash");
    assert_eq!(bash.severity, Severity::Negligible);

    let protobuf = finding(&report, "CVE-2015-5237", "protobuf");
    assert_eq!(protobuf.installed_version, "3.15.3");
    assert_eq!(
        protobuf.location.as_deref(),
        Some("/usr/local/lib/python3.6/site-packages/protobuf-3.15.3.dist-info/METADATA")
    );
    assert_eq!(protobuf.severity, Severity::High);
}

#[test]
fn grype_0_34_rhel_with_epochs_and_wont_fix() {
    let report = parse_fixture("reports/grype-redhat-anteather-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Grype 0.34.7"));
    assert_eq!(report.artifact.as_deref(), Some("registry.access.redhat.com/ubi7/ubi:7.6-73"));
    // `idLike` is the list ["fedora"] here.
    assert_eq!(report.os, Some(OsInfo { family: "redhat".into(), version: "7.6".into() }));
    assert_eq!(report.platform, Some(amd64()));
    assert_eq!(report.findings.len(), 922);
    assert_eq!(count(&report, |f| f.ecosystem == "rpm" && f.class == PackageClass::Os), 922);
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed), 272);
    assert_eq!(count(&report, |f| f.status == FixStatus::WillNotFix), 615);
    assert_eq!(count(&report, |f| f.status == FixStatus::Affected), 35);

    let openssl = finding(&report, "CVE-2018-0734", "openssl-libs");
    assert_eq!(openssl.installed_version, "1:1.0.2k-16.el7_6.1");
    assert_eq!(openssl.fixed_versions, ["1:1.0.2k-19.el7"]);
    assert_eq!(openssl.status, FixStatus::Fixed);
    assert_eq!(openssl.source_package.as_deref(), Some("openssl"));
    let glibc = finding(&report, "CVE-2009-5155", "glibc");
    assert_eq!((glibc.status, glibc.fixed_versions.len()), (FixStatus::Affected, 0));
    // Upstreams name the source of a subpackage; for a package that is its
    // own source, the purl's `upstream` source rpm does.
    assert_eq!(finding(&report, "CVE-2014-3477", "dbus-libs").source_package.as_deref(), Some("dbus"));
    let tar = finding(&report, "CVE-2005-2541", "tar");
    assert_eq!((tar.installed_version.as_str(), tar.status), ("2:1.26-35.el7", FixStatus::WillNotFix));
    assert_eq!(tar.source_package.as_deref(), Some("tar"));
}

#[test]
fn rpm_epoch_comes_from_metadata_when_the_version_lacks_it() {
    // Older syft wrote rpm versions without the epoch and kept it in the
    // metadata: make the fixture look like that (purl too).
    let original = parse_fixture("reports/grype-redhat-anteather-1.json");
    let mut report: Value =
        serde_json::from_slice(&read_fixture("reports/grype-redhat-anteather-1.json")).unwrap();
    let mut stripped = 0;
    for found in report["matches"].as_array_mut().unwrap() {
        if found["artifact"]["metadata"]["epoch"].is_u64() {
            let artifact = found["artifact"].as_object_mut().unwrap();
            let version = artifact["version"].as_str().unwrap();
            let without = version.split_once(':').unwrap().1.to_owned();
            artifact.insert("version".into(), without.into());
            artifact.remove("purl");
            stripped += 1;
        }
    }
    assert_eq!(stripped, 54);
    let derived = parse(&serde_json::to_vec(&report).unwrap()).unwrap();
    let versions = |findings: &caulk_sdk::types::Findings| {
        findings.findings.iter().map(|f| f.installed_version.clone()).collect::<Vec<_>>()
    };
    assert_eq!(versions(&derived), versions(&original));
    assert_eq!(finding(&derived, "CVE-2018-0734", "openssl-libs").installed_version, "1:1.0.2k-16.el7_6.1");
}

#[test]
fn grype_0_97_with_binaries_python_and_fix_states() {
    let report = parse_fixture("reports/grype-debian-multiscanner-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Grype 0.97.1"));
    assert_eq!(report.artifact.as_deref(), Some("my-app:latest"));
    assert_eq!(report.os, Some(OsInfo { family: "debian".into(), version: "12".into() }));
    assert_eq!(report.platform, Some(amd64()));
    assert_eq!(report.findings.len(), 160);
    assert_eq!(count(&report, |f| f.ecosystem == "deb" && f.class == PackageClass::Os), 140);
    assert_eq!(count(&report, |f| f.ecosystem == "binary" && f.class == PackageClass::Library), 15);
    assert_eq!(count(&report, |f| f.ecosystem == "python" && f.class == PackageClass::Library), 5);
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed), 68);
    assert_eq!(count(&report, |f| f.status == FixStatus::Affected), 67);
    assert_eq!(count(&report, |f| f.status == FixStatus::WillNotFix), 24);
    // fix.state "" without versions.
    let unknown = finding(&report, "CVE-2023-36632", "python");
    assert_eq!((unknown.status, unknown.ecosystem.as_str()), (FixStatus::Unknown, "binary"));

    // A binary matched by its version, with every fixed branch listed.
    let python = finding(&report, "CVE-2025-0938", "python");
    assert_eq!(python.fixed_versions, ["3.9.22", "3.10.17", "3.11.12", "3.12.9", "3.13.2", "3.14.0a5"]);
    assert_eq!(python.location.as_deref(), Some("/usr/local/lib/libpython3.8.so.1.0"));
    assert_eq!(python.purl.as_deref(), Some("pkg:generic/python@3.8.20"));
    assert_eq!(python.severity, Severity::Medium);

    let flask = finding(&report, "GHSA-m2qf-hxjv-5gpq", "flask");
    assert_eq!(
        (flask.installed_version.as_str(), &flask.fixed_versions[..]),
        ("1.1.2", &["2.2.5".to_owned()][..])
    );
    assert_eq!(
        flask.location.as_deref(),
        Some("/usr/local/lib/python3.8/site-packages/Flask-1.1.2.dist-info/METADATA")
    );

    let login = finding(&report, "CVE-2024-56433", "login");
    assert_eq!(login.installed_version, "1:4.13+dfsg1-1+b1");
    assert_eq!(login.status, FixStatus::WillNotFix);
    assert_eq!(login.source_package.as_deref(), Some("shadow"));
    let libssl = finding(&report, "CVE-2024-5535", "libssl3");
    assert_eq!(libssl.fixed_versions, ["3.0.15-1~deb12u1"]);
    assert_eq!(libssl.source_package.as_deref(), Some("openssl"));
    assert_eq!(libssl.severity, Severity::Critical);
}

#[test]
fn grype_0_110_with_alerts_by_package() {
    let report = parse_fixture("reports/grype-alpine-trustdsai-1.json");
    assert_eq!(report.scanner.as_deref(), Some("Grype 0.110.0"));
    assert_eq!(report.artifact.as_deref(), Some("alpine:3.19"));
    assert_eq!(report.os, Some(OsInfo { family: "alpine".into(), version: "3.19.9".into() }));
    assert_eq!(report.platform, Some(amd64()));
    assert_eq!(report.findings.len(), 10);
    assert_eq!(count(&report, |f| f.ecosystem == "apk" && f.class == PackageClass::Os), 10);
    assert_eq!(count(&report, |f| f.status == FixStatus::Fixed), 6);
    // Alpine 3.19 is end-of-life (`distro-eol` alerts): what has no fix
    // (state "" or "unknown") never will.
    assert_eq!(count(&report, |f| f.status == FixStatus::EndOfLife && f.fixed_versions.is_empty()), 4);
    assert_eq!(finding(&report, "CVE-2026-27171", "zlib").status, FixStatus::EndOfLife);
    let binsh = finding(&report, "CVE-2025-46394", "busybox-binsh");
    assert_eq!(
        (binsh.installed_version.as_str(), &binsh.fixed_versions[..]),
        ("1.36.1-r20", &["1.36.1-r21".to_owned()][..])
    );
    assert_eq!(binsh.source_package.as_deref(), Some("busybox"));
    assert_eq!(binsh.location, None);

    // Without the alerts the same findings are merely unknown.
    let mut without: Value =
        serde_json::from_slice(&read_fixture("reports/grype-alpine-trustdsai-1.json")).unwrap();
    without.as_object_mut().unwrap().remove("alertsByPackage");
    let without = parse(&serde_json::to_vec(&without).unwrap()).unwrap();
    assert_eq!(count(&without, |f| f.status == FixStatus::Unknown), 4);
}

#[test]
fn byte_order_mark_and_crlf_line_endings() {
    let original = read_fixture("reports/grype-debian-multiscanner-1.json");
    // This file is one line: reformat it with CRLF line endings first.
    let value: Value = serde_json::from_slice(&original).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap().replace('\n', "\r\n");
    let mut windows = b"\xEF\xBB\xBF".to_vec();
    windows.extend_from_slice(pretty.as_bytes());
    assert_eq!(parse(&windows).unwrap(), parse(&original).unwrap());
}

/// A report with one match of an artifact of `artifact_type`.
fn one_match(artifact_type: &str, vulnerability: &Value) -> Value {
    let mut v = json!({"id": "CVE-0000-0001", "severity": "High"});
    v.as_object_mut().unwrap().extend(vulnerability.as_object().unwrap().clone());
    json!({"matches": [{
        "vulnerability": v,
        "artifact": {"name": "pkg", "version": "1.0", "type": artifact_type,
                     "locations": [{"path": "/srv/app/first"}, {"path": "/srv/app/second"}]}
    }]})
}

fn parse_value(report: &Value) -> caulk_sdk::types::Findings {
    parse(&serde_json::to_vec(report).unwrap()).unwrap()
}

#[test]
fn every_artifact_type_maps_to_an_ecosystem() {
    let os = [("deb", "deb"), ("rpm", "rpm"), ("apk", "apk"), ("alpm", "alpm"), ("portage", "portage")];
    for (artifact_type, ecosystem) in os {
        let f = &parse_value(&one_match(artifact_type, &json!({}))).findings[0];
        assert_eq!(
            (f.ecosystem.as_str(), f.class, f.location.as_deref()),
            (ecosystem, PackageClass::Os, None)
        );
    }
    let libraries = [
        ("python", "python"),
        ("java-archive", "maven"),
        ("jenkins-plugin", "maven"),
        ("go-module", "go"),
        ("npm", "npm"),
        ("gem", "gem"),
        ("rust-crate", "cargo"),
        ("php-composer", "composer"),
        ("dotnet", "nuget"),
        ("conan", "conan"),
        ("hex", "hex"),
        ("dart-pub", "pub"),
        ("pod", "cocoapods"),
        ("swift", "swift"),
        ("binary", "binary"),
        ("R-package", "cran"),
        ("linux-kernel", "linux-kernel"),
        ("some-future-type", "some-future-type"),
    ];
    for (artifact_type, ecosystem) in libraries {
        let f = &parse_value(&one_match(artifact_type, &json!({}))).findings[0];
        assert_eq!(
            (f.ecosystem.as_str(), f.class, f.location.as_deref()),
            (ecosystem, PackageClass::Library, Some("/srv/app/first")),
            "{artifact_type}"
        );
    }
}

#[test]
fn fix_states_and_severities() {
    let cases = [
        (json!({"fix": {"versions": ["1.1"], "state": "fixed"}}), FixStatus::Fixed),
        (json!({"fix": {"versions": [], "state": "fixed"}}), FixStatus::Unknown),
        (json!({"fix": {"versions": [], "state": "not-fixed"}}), FixStatus::Affected),
        (json!({"fix": {"versions": [], "state": "wont-fix"}}), FixStatus::WillNotFix),
        (json!({"fix": {"versions": [], "state": "unknown"}}), FixStatus::Unknown),
        (json!({"fix": {"versions": [], "state": ""}}), FixStatus::Unknown),
        (json!({"fix": {"versions": ["2.0"], "state": ""}}), FixStatus::Fixed),
        (
            json!({"fix": {"available": [{"version": "3.0", "kind": "first-observed"}], "state": "fixed"}}),
            FixStatus::Fixed,
        ),
        (json!({"fixedInVersion": "1.1"}), FixStatus::Fixed),
        (json!({"fixedInVersion": ""}), FixStatus::Unknown),
        (json!({}), FixStatus::Unknown),
    ];
    for (vulnerability, expected) in cases {
        let report = parse_value(&one_match("deb", &vulnerability));
        assert_eq!(report.findings[0].status, expected, "{vulnerability}");
    }
    let available = parse_value(&one_match(
        "deb",
        &json!({"fix": {"available": [{"version": "3.0"}], "state": "fixed"}}),
    ));
    assert_eq!(available.findings[0].fixed_versions, ["3.0"]);
    for (severity, expected) in [
        ("Critical", Severity::Critical),
        ("High", Severity::High),
        ("Medium", Severity::Medium),
        ("Low", Severity::Low),
        ("Negligible", Severity::Negligible),
        ("Unknown", Severity::Unknown),
    ] {
        let report = parse_value(&one_match("deb", &json!({"severity": severity})));
        assert_eq!(report.findings[0].severity, expected, "{severity}");
    }
}

#[test]
fn directory_sources_odd_metadata_and_id_like() {
    // A directory scan names its path; metadata of unexpected shapes is
    // skipped rather than failing the report; idLike may stand in for an
    // empty distro name.
    let report = parse_value(&json!({
        "matches": [
            {"vulnerability": {"id": "CVE-1"},
             "artifact": {"name": "a", "version": "1", "type": "rpm", "metadata": {"epoch": "3", "files": [1, {"x": []}]}}},
            {"vulnerability": {"id": "CVE-2"},
             "artifact": {"name": "b", "version": "1", "type": "rpm", "metadata": [1, 2]}},
            {"vulnerability": {"id": "CVE-3"},
             "artifact": {"name": "c", "version": "1", "type": "rpm", "metadata": {"epoch": {"odd": true}}}},
            {"vulnerability": {"id": "CVE-4"},
             "artifact": {"name": "d", "version": "1-1", "type": "rpm", "metadata": {"sourceRpm": "dsrc-1-1.src.rpm"}}}
        ],
        "source": {"type": "directory", "target": "/srv/project"},
        "distro": {"name": "", "version": "9", "idLike": "rhel centos"}
    }));
    let versions: Vec<_> = report.findings.iter().map(|f| f.installed_version.as_str()).collect();
    assert_eq!(versions, ["3:1", "1", "1", "1-1"]);
    assert_eq!(report.findings[3].source_package.as_deref(), Some("dsrc"));
    assert_eq!(report.artifact.as_deref(), Some("/srv/project"));
    assert_eq!(report.platform, None);
    assert_eq!(report.os, Some(OsInfo { family: "rhel".into(), version: "9".into() }));
}
