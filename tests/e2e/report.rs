//! `caulk report` through the binary: every fixture report normalised
//! (snapshots), scanner choice by sniffing, Copa manifests and plugins,
//! native plugins, and bad input.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Sandbox, failure, fixtures, run, success};

/// Every JSON report under `tests/fixtures`, relative to the fixtures dir.
fn fixture_reports() -> Vec<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let base = fixtures();
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

fn report(sandbox: &Sandbox, args: &[&str], file: &Path) -> Output {
    run(sandbox.caulk().current_dir(fixtures()).arg("report").args(args).arg(file))
}

fn snapshot_name(path: &Path) -> String {
    path.to_string_lossy().replace(['/', '.'], "_")
}

#[test]
fn every_fixture_report_snapshot() {
    let sandbox = Sandbox::new();
    let reports = fixture_reports();
    assert!(reports.len() >= 15, "fixtures missing? {reports:?}");
    let mut read = 0;
    for path in &reports {
        let out = report(&sandbox, &["--json"], path);
        let name = snapshot_name(path);
        if out.status.success() {
            read += 1;
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["schema"], "caulk.report/v1");
            insta::assert_json_snapshot!(name, doc);
        } else {
            // Reports no scanner reads are errors that name the file.
            let err = common::stderr(&out);
            assert!(err.contains(&path.display().to_string()), "{err}");
            insta::assert_snapshot!(name, err);
        }
    }
    assert!(read >= 13, "only {read} of {} fixtures were read", reports.len());
}

#[test]
fn sniffing_picks_the_right_scanner_for_each_fixture() {
    let sandbox = Sandbox::new();
    for path in fixture_reports() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = if name.starts_with("grype") {
            "grype"
        } else if name.starts_with("trivy") || name.starts_with("nginx") || name.starts_with("patched") {
            "trivy"
        } else {
            continue;
        };
        let out = report(&sandbox, &["--json"], &path);
        let doc: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
        assert_eq!(doc["scanner"]["name"], expected, "{}", path.display());
        assert!(doc["scanner"]["confidence"].as_u64().unwrap() >= 50);
    }
}

#[test]
fn grouping_restores_epochs_the_scanner_dropped() {
    // Trivy reports login 1:4.16.0-2+really2.41-5 with fixed versions without
    // the epoch; grouped, every fixed version carries it.
    let sandbox = Sandbox::new();
    let out = report(&sandbox, &["--json"], Path::new("reports/trivy-debian-flask-python-app-1.json"));
    let doc: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    let packages = doc["packages"].as_array().unwrap();
    let login = packages.iter().find(|p| p["name"] == "login").expect("login in the report");
    assert_eq!(login["installed_version"], "1:4.16.0-2+really2.41-5");
    for fixed in login["fixed_versions"].as_array().unwrap() {
        assert!(fixed.as_str().unwrap().starts_with("1:"), "{fixed}");
    }
    let bsdutils = packages.iter().find(|p| p["name"] == "bsdutils").unwrap();
    assert_eq!(bsdutils["installed_version"], "1:2.41-5");
    assert_eq!(bsdutils["fixes_all_at"], "1:2.41.5-0+deb13u1");
    // Library findings keep where the scanner saw them.
    let pip = packages.iter().find(|p| p["name"] == "pip").unwrap();
    assert_eq!(pip["class"], "library");
    assert!(pip["location"].as_str().unwrap().contains("site-packages"));
    assert_eq!(doc["summary"]["unfixed"]["by_status"]["affected"], 116);
}

#[test]
fn the_text_form_lists_packages_and_what_was_left() {
    let sandbox = Sandbox::new();
    let out = report(&sandbox, &[], Path::new("reports/grype-redhat-anteather-1.json"));
    let text = success(&out);
    assert!(text.contains("read by grype"), "{text}");
    assert!(text.contains("vim-minimal") && text.contains("2:7.4.160-6.el7_6"), "{text}");
    assert!(text.contains("615 will-not-fix"), "{text}");
}

/// Both plugin compilers read the largest reports to the same result, and
/// the code cache keeps each one's code apart (an engine set up for one
/// never loads the other's).
#[test]
fn both_plugin_compilers_read_reports_alike_and_cache_apart() {
    let sandbox = Sandbox::with_private_cache();
    for file in ["reports/grype-redhat-anteather-1.json", "reports/trivy-redhat-anteather-1.json"] {
        let read = |compiler: &str| {
            success(&run(sandbox.caulk().current_dir(fixtures()).args([
                "--plugin-compiler",
                compiler,
                "report",
                "--json",
                file,
            ])))
        };
        assert_eq!(read("baseline"), read("optimizing"), "{file}");
    }
    // Entries are `<wasm sha256>-<engine key>.cwasm`.
    let mut engines = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(sandbox.cache_dir().join("plugins")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some((_, key)) = name.strip_suffix(".cwasm").and_then(|n| n.split_once('-')) {
            engines.insert(key.to_owned());
        }
    }
    assert_eq!(engines.len(), 2, "{engines:?}");
}

#[test]
fn copa_update_manifests_are_read_with_scanner_native() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"apiVersion":"v1alpha1","metadata":{"os":{"type":"debian","version":"11.3"},"config":{"arch":"amd64"}},
           "updates":[{"name":"libssl1.1","installedVersion":"1.1.1n-0+deb11u1","fixedVersion":"1.1.1n-0+deb11u3","vulnerabilityID":"CVE-2022-2097"}]}"#,
    )
    .unwrap();
    for args in [&["--json", "--scanner", "native"][..], &["--json"][..]] {
        let doc: serde_json::Value =
            serde_json::from_str(&success(&report(&sandbox, args, &manifest))).unwrap();
        assert_eq!(doc["scanner"]["kind"], "copa-manifest");
        assert_eq!(doc["packages"][0]["name"], "libssl1.1");
        assert_eq!(doc["packages"][0]["fixed_versions"][0], "1.1.1n-0+deb11u3");
    }
    let bad = sandbox.path().join("v9.json");
    std::fs::write(&bad, r#"{"apiVersion":"v9","updates":[]}"#).unwrap();
    let err = failure(&report(&sandbox, &["--scanner", "native"], &bad), 1);
    assert!(err.contains("v9.json") && err.contains("apiVersion `v9`"), "{err}");
}

fn path_with_copa_plugins() -> std::ffi::OsString {
    let bin = common::workspace().join("tests/e2e/bin");
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn a_copa_scanner_plugin_on_path_is_run_for_an_unknown_scanner_name() {
    let sandbox = Sandbox::new();
    let input = sandbox.path().join("lines.txt");
    std::fs::write(
        &input,
        "CVE-2023-0464 libssl3 3.0.8-1 3.0.9-1~deb12u1\nCVE-2023-0465 openssl 3.0.8-1 3.0.9-1~deb12u1\n",
    )
    .unwrap();
    let out = run(sandbox
        .caulk()
        .env("PATH", path_with_copa_plugins())
        .args(["report", "--json", "--scanner", "lines"])
        .arg(&input));
    let doc: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(doc["scanner"]["kind"], "copa-plugin");
    assert!(doc["scanner"]["source"].as_str().unwrap().ends_with("copa-lines"));
    let names: Vec<&str> =
        doc["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["libssl3", "openssl"]);
    // What the plugin printed on stderr is kept out of the output.
    assert!(!common::stdout(&out).contains("copa-lines: reading"));

    // Its failure shows its stderr.
    std::fs::write(&input, "FAIL\n").unwrap();
    let out = run(sandbox
        .caulk()
        .env("PATH", path_with_copa_plugins())
        .args(["report", "--scanner", "lines"])
        .arg(&input));
    let err = failure(&out, 1);
    assert!(
        err.contains("copa-lines") && err.contains("it asked to fail") && err.contains("exit status: 3"),
        "{err}"
    );

    // Neither a plugin nor copa-NAME.
    let err = failure(&run(sandbox.caulk().args(["report", "--scanner", "nothing-here"]).arg(&input)), 1);
    assert!(err.contains("no scanner named `nothing-here`") && err.contains("copa-nothing-here"), "{err}");
}

/// Builds the native test plugin and returns a plugin directory holding it.
fn native_plugin_dir(sandbox: &Sandbox) -> PathBuf {
    let target = common::workspace().join("target/native-plugins");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(common::workspace())
        .args(["build", "--quiet", "-p", "caulk-test-native-scanner", "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success());
    let dir = sandbox.mkdir("native");
    std::fs::copy(target.join("debug/libcaulk_test_native_scanner.so"), dir.join("native-lines.so")).unwrap();
    dir
}

#[test]
fn native_plugins_load_only_when_allowed() {
    let sandbox = Sandbox::new();
    let dir = native_plugin_dir(&sandbox);
    let input = sandbox.path().join("r.txt");
    std::fs::write(&input, "# native-lines\nCVE-2024-1 zlib1g 1:1.2.13 1:1.2.13.1\n").unwrap();

    let err = failure(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["report"]).arg(&input)), 1);
    assert!(err.contains("no scanner recognises"), "{err}");
    let err = failure(
        &run(sandbox
            .caulk()
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["report", "--scanner", "native-lines"])
            .arg(&input)),
        1,
    );
    assert!(err.contains("--allow-native-plugins"), "the error says how to opt in: {err}");

    let out = run(sandbox
        .caulk()
        .arg("--plugin-dir")
        .arg(&dir)
        .args(["--allow-native-plugins", "report", "--json"])
        .arg(&input));
    let doc: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(doc["scanner"]["kind"], "native-plugin");
    assert_eq!(doc["packages"][0]["name"], "zlib1g");

    std::fs::write(&input, "# native-lines\nCVE-2024-1 zlib1g\n").unwrap();
    let err = failure(
        &run(sandbox
            .caulk()
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["--allow-native-plugins", "report"])
            .arg(&input)),
        1,
    );
    assert!(err.contains("native-lines failed parse") && err.contains("line 2"), "{err}");
}

#[test]
fn two_scanners_claiming_a_report_equally_is_an_error_listing_them() {
    let sandbox = Sandbox::new();
    let dir = native_plugin_dir(&sandbox);
    std::fs::copy(common::wasm_of("caulk-example-csv-scanner"), dir.join("csv.wasm")).unwrap();
    let input = sandbox.path().join("r.csv");
    std::fs::write(&input, "# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n")
        .unwrap();
    let err = failure(
        &run(sandbox
            .caulk()
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["--allow-native-plugins", "report"])
            .arg(&input)),
        1,
    );
    assert!(
        err.contains("claimed equally") && err.contains("csv 100") && err.contains("native-lines 100"),
        "{err}"
    );
    assert!(err.contains("--scanner"), "{err}");
}

fn bad_input(sandbox: &Sandbox, name: &str, bytes: &[u8], args: &[&str]) -> String {
    let path = sandbox.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = run(sandbox.caulk().arg("report").args(args).arg(&path));
    let err = failure(&out, 1);
    assert!(err.contains(name), "the error names the file: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_reports_are_clear_errors_naming_file_and_plugin() {
    let sandbox = Sandbox::new();
    for scanner in ["trivy", "grype"] {
        let args = ["--scanner", scanner];
        for (name, bytes) in [
            ("not-json.txt", &b"this is not json at all"[..]),
            (
                "truncated.json",
                br#"{"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": [{"Vuln"#,
            ),
            ("other-tool.json", br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}"#),
            ("empty.json", b""),
            ("invalid-utf8.json", b"{\"SchemaVersion\": 2, \"ArtifactName\": \"\xff\xfe\", \"Results\": []}"),
        ] {
            let err = bad_input(&sandbox, name, bytes, &args);
            assert!(err.contains(&format!("scanner {scanner}")), "the error names the plugin: {err}");
        }
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let err = bad_input(&sandbox, "deep.json", deep.as_bytes(), &args);
        assert!(err.contains(&format!("scanner {scanner}")), "{err}");
    }
    // Without --scanner, nobody claims them, and the error lists who was asked.
    let err = bad_input(&sandbox, "junk.json", b"[1, 2, 3]", &[]);
    assert!(
        err.contains("trivy 0") && err.contains("grype 0") && err.contains("native (Copa UpdateManifest) 0"),
        "{err}"
    );
}

/// A valid Trivy report of about 100 MB: long descriptions, as real ones have.
fn huge_trivy_report(vulns: usize) -> Vec<u8> {
    let description = "A long description of the vulnerability. ".repeat(240);
    let mut out =
        String::from(r#"{"SchemaVersion": 2, "ArtifactName": "huge", "ArtifactType": "container_image","#);
    out.push_str(r#""Metadata": {"OS": {"Family": "debian", "Name": "12.5"}}, "Results": [{"Target": "huge (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": ["#);
    for i in 0..vulns {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"VulnerabilityID": "CVE-2099-{i}", "PkgName": "pkg{}", "InstalledVersion": "1.0-1", "FixedVersion": "1.0-2", "Status": "fixed", "Severity": "HIGH", "Description": "{description}"}}"#,
            i % 50
        );
    }
    out.push_str("]}]}");
    out.into_bytes()
}

#[test]
fn a_100_mb_report_is_read_within_the_plugin_limits() {
    let sandbox = Sandbox::new();
    let bytes = huge_trivy_report(10_000);
    assert!(bytes.len() > 100_000_000, "{} bytes", bytes.len());
    let path = sandbox.path().join("huge.json");
    std::fs::write(&path, &bytes).unwrap();
    let out = run(sandbox.caulk().args(["--plugin-timeout", "120s", "report", "--json"]).arg(&path));
    let doc: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(doc["summary"]["findings"], 10_000);
    assert_eq!(doc["summary"]["packages_to_update"], 50);

    // The same report cut short is an error, not a partial result.
    let cut = &bytes[..bytes.len() - 1000];
    let err =
        bad_input(&sandbox, "huge-truncated.json", cut, &["--plugin-timeout", "120s", "--scanner", "trivy"]);
    assert!(err.contains("scanner trivy"), "{err}");
}

#[test]
fn one_row_per_package_and_location_and_counts_in_the_right_number() {
    let sandbox = Sandbox::new();
    let finding = |site: &str, id: &str| {
        serde_json::json!({
            "VulnerabilityID": id, "PkgName": "certifi", "InstalledVersion": "2022.12.7",
            "FixedVersion": "2023.7.22", "Status": "fixed", "Severity": "HIGH",
            "PkgPath": format!("{site}/certifi-2022.12.7.dist-info/METADATA"),
        })
    };
    let report = |name: &str, vulns: Vec<serde_json::Value>| {
        let doc = serde_json::json!({
            "SchemaVersion": 2, "ArtifactName": "python", "ArtifactType": "container_image",
            "Metadata": {"OS": {"Family": "debian", "Name": "12"}},
            "Results": [{"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": vulns}]
        });
        let path = sandbox.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        path
    };
    let both = report(
        "both.json",
        vec![
            finding("usr/local/lib/python3.11/dist-packages", "CVE-2023-37920"),
            finding("opt/venv/lib/python3.11/site-packages", "CVE-2023-37920"),
        ],
    );
    let text = common::success(&common::run(sandbox.caulk().arg("report").arg(&both)));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("certifi")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().any(|r| r.contains("/usr/local (system)")), "{text}");
    assert!(rows.iter().any(|r| r.contains("/opt/venv ")), "{text}");
    assert!(text.contains("2 findings") && text.contains("in 2 packages"), "{text}");

    let one = report("one.json", vec![finding("opt/venv/lib/python3.11/site-packages", "CVE-2023-37920")]);
    let text = common::success(&common::run(sandbox.caulk().arg("report").arg(&one)));
    assert!(text.contains("1 finding:") && text.contains("in 1 package,"), "{text}");
}
