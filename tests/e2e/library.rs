//! Library patching with the pip updater on a real image: Debian 12 with
//! python3 and old pins from PyPI in the system site-packages and in a
//! virtualenv (tests/images/python-debian.sh). The reports are Trivy's
//! format with the fixed versions real advisories give.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, TransportOptions};
use common::{Sandbox, row_at, run, success};
use serde_json::{Value, json};

const SYSTEM: &str = "/usr/local/lib/python3.11/dist-packages";
const VENV: &str = "/opt/venv/lib/python3.11/site-packages";

fn layout_copy(sandbox: &Sandbox) -> PathBuf {
    common::layout_copy(sandbox, "python-debian.sh")
}

/// A Trivy python-pkg finding at `site` (as Trivy writes PkgPath: relative,
/// pointing at the distribution's METADATA).
fn finding(site: &str, name: &str, installed: &str, id: &str, fixed: &str) -> Value {
    let dist = name.replace('-', "_");
    json!({
        "VulnerabilityID": id, "PkgName": name, "InstalledVersion": installed, "FixedVersion": fixed,
        "Status": "fixed", "Severity": "HIGH",
        "PkgPath": format!("{}/{dist}-{installed}.dist-info/METADATA", site.trim_start_matches('/')),
        "PkgIdentifier": {"PURL": format!("pkg:pypi/{name}@{installed}")},
    })
}

fn report(sandbox: &Sandbox, name: &str, os: &[Value], python: &[Value]) -> PathBuf {
    let doc = json!({
        "SchemaVersion": 2, "ArtifactName": "python", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"}, "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [
            {"Target": "python (debian 12)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": os},
            {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": python},
        ]
    });
    let path = sandbox.path().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// The findings every test starts from: real advisories' fixed versions.
fn library_findings() -> Vec<Value> {
    vec![
        // urllib3: requests 2.25.1 requires urllib3<1.27, so only 1.26.x fixes fit.
        finding(SYSTEM, "urllib3", "1.26.5", "CVE-2023-43804", "2.0.6, 1.26.17"),
        finding(SYSTEM, "urllib3", "1.26.5", "CVE-2023-45803", "2.0.7, 1.26.18"),
        // Fixed only on the 2.x line, which requests' bound rules out: the
        // 1.26.x that lands leaves it open, and the VEX must not claim it.
        finding(SYSTEM, "urllib3", "1.26.5", "CVE-2025-66471", "2.6.0"),
        // certifi goes to its newest fixed version whatever the level.
        finding(SYSTEM, "certifi", "2022.12.7", "CVE-2023-37920", "2023.7.22"),
        finding(SYSTEM, "certifi", "2022.12.7", "CVE-2024-39689", "2024.7.4"),
        // idna's only fix is a major release: not at the patch level.
        finding(SYSTEM, "idna", "2.10", "CVE-2024-3651", "3.7"),
        // requests' fixes are minor releases: not at the default patch level.
        finding(SYSTEM, "requests", "2.25.1", "CVE-2023-32681", "2.31.0"),
        finding(SYSTEM, "jinja2", "3.1.2", "CVE-2024-22195", "3.1.3"),
        finding(VENV, "jinja2", "3.1.2", "CVE-2024-22195", "3.1.3"),
        finding(VENV, "werkzeug", "2.2.2", "CVE-2023-25577", "2.2.3"),
        // A fixed version that was never published.
        finding(VENV, "click", "8.1.3", "TEST-CLICK-1", "8.1.99"),
    ]
}

/// Versions of the distributions in `site`, read from their metadata in the image.
fn dist_versions(reference: &str, site: &str) -> BTreeMap<String, Vec<String>> {
    let image = Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).unwrap();
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for info in root.glob(&format!("{site}/*.dist-info/METADATA")).unwrap() {
        let text = String::from_utf8(root.read(&info.path).unwrap()).unwrap();
        let field =
            |f: &str| text.lines().find_map(|l| l.strip_prefix(f)).map(|v| v.trim().to_owned()).unwrap();
        versions.entry(field("Name:").to_lowercase()).or_default().push(field("Version:"));
    }
    versions
}

/// The paths in the top layer of the image `name` in the OCI layout.
fn new_layer_entries(layout: &Path, name: &str) -> Vec<String> {
    let read = |path: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let blob = |digest: &Value| layout.join("blobs").join(digest.as_str().unwrap().replace(':', "/"));
    let index = read(layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap();
    let manifest = read(blob(&manifest["digest"]));
    let top = manifest["layers"].as_array().unwrap().last().unwrap();
    let out = Command::new("tar").arg("-tzf").arg(blob(&top["digest"])).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim_start_matches("./").to_owned()).collect()
}

fn layer_count(reference: &str) -> usize {
    let image = Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).unwrap();
    image.images[0].layers.len()
}

#[test]
fn libraries_move_within_the_patch_level_and_skips_say_why() {
    // Its own caches: the probe scratch it looks at below is this run's.
    let sandbox = Sandbox::with_private_cache();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:python", layout.display());
    let report = report(&sandbox, "libs", &[], &library_findings());
    let vex = sandbox.path().join("vex.json");
    let out = run(sandbox
        .caulk()
        .args(["patch", "--json", "--pkg-types", "library", "-i", &input, "-r"])
        .arg(&report)
        .arg("-o")
        .arg(&vex));
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    let output = format!("oci:{}:python-patched", layout.display());

    // Moved, within 1.26.x because of requests' bound, and verified.
    let urllib3 = row_at(&summary, "urllib3", SYSTEM);
    assert_eq!(urllib3["status"], "patched", "{urllib3:#}");
    assert!(urllib3["to"].as_str().unwrap().starts_with("1.26."), "{urllib3:#}");
    assert_eq!(urllib3["still_open"], json!(["CVE-2025-66471"]), "{urllib3:#}");
    let certifi = row_at(&summary, "certifi", SYSTEM);
    assert_eq!(certifi["status"], "patched");
    assert!(row_at(&summary, "jinja2", SYSTEM)["status"] == "patched");
    assert!(row_at(&summary, "jinja2", VENV)["status"] == "patched");
    assert!(row_at(&summary, "werkzeug", VENV)["status"] == "patched");
    for r in summary["rows"].as_array().unwrap().iter().filter(|r| r["status"] == "patched") {
        assert!(r["rationale"].is_string(), "the rule that chose the version is shown: {r:#}");
        let checks = r["checks"].as_array().unwrap();
        assert!(!checks.is_empty() && checks.iter().all(|c| c["passed"] == true), "checks passed: {r:#}");
    }

    // Skipped, with reasons that name what blocked them.
    let idna = row_at(&summary, "idna", SYSTEM);
    assert_eq!(idna["status"], "skipped");
    assert!(idna["detail"].as_str().unwrap().contains("--library-patch-level patch"), "{idna:#}");
    let requests = row_at(&summary, "requests", SYSTEM);
    assert_eq!(requests["status"], "skipped", "{requests:#}");
    let click = row_at(&summary, "click", VENV);
    assert_eq!(click["status"], "skipped", "{click:#}");
    assert!(click["detail"].as_str().unwrap().contains("not published"), "{click:#}");

    // The image holds what the summary says, with no stale metadata.
    let system = dist_versions(&output, SYSTEM);
    assert_eq!(system["urllib3"], [urllib3["to"].as_str().unwrap()]);
    assert_eq!(system["certifi"].len(), 1, "one certifi dist-info: {system:?}");
    assert_eq!(system["idna"], ["2.10"]);
    assert_eq!(system["requests"], ["2.25.1"]);
    let venv = dist_versions(&output, VENV);
    assert_eq!(venv["jinja2"].len(), 1);
    assert_ne!(venv["jinja2"][0], "3.1.2");
    assert_eq!(layer_count(&output), layer_count(&input) + 1);

    // pip compiled what it installed, but the interpreters caulk ran wrote
    // no bytecode of pip or the standard library into the layer (the
    // image's .pyc files are stale: its tar clamps mtimes); the checks kept
    // theirs in the image's probe scratch, outside it.
    let entries = new_layer_entries(&layout, "python-patched");
    assert!(
        entries.iter().any(|e| e.starts_with("opt/venv/lib/python3.11/site-packages/jinja2/__pycache__/"))
    );
    let stray: Vec<&String> = entries
        .iter()
        .filter(|e| {
            Path::new(e).extension().is_some_and(|x| x == "pyc")
                && (e.contains("/pip/") || e.starts_with("usr/lib/python3.11/"))
        })
        .collect();
    assert!(stray.is_empty(), "recompiled bytecode in the layer: {stray:?}");
    let scratch = Command::new("find")
        .arg(sandbox.cache_dir().join("probes"))
        .args(["-path", "*/pip/pyc/*/pip/_internal/*.pyc"])
        .output()
        .unwrap();
    assert!(!scratch.stdout.is_empty(), "pip's bytecode in the probe scratch");

    // The VEX names the fixes with PyPI purls, and only them.
    let doc: Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    let stated: Vec<&str> = doc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vulnerability"]["name"].as_str().unwrap())
        .collect();
    for id in ["CVE-2023-43804", "CVE-2023-45803", "CVE-2023-37920", "CVE-2024-22195", "CVE-2023-25577"] {
        assert!(stated.contains(&id), "{id} missing from {stated:?}");
    }
    for id in ["CVE-2024-3651", "CVE-2023-32681", "TEST-CLICK-1", "CVE-2025-66471"] {
        assert!(!stated.contains(&id), "{id} was not fixed but is in the VEX");
    }
    let purls: Vec<&str> = doc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["products"][0]["subcomponents"].as_array().unwrap())
        .map(|c| c["@id"].as_str().unwrap())
        .collect();
    assert!(purls.iter().all(|p| p.starts_with("pkg:pypi/")), "{purls:?}");
}

#[test]
fn minor_level_moves_requests_and_os_and_library_share_one_layer() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:python", layout.display());
    let os = vec![json!({
        "VulnerabilityID": "TEST-libexpat1", "PkgName": "libexpat1",
        "InstalledVersion": dpkg_version(&input, "libexpat1"), "FixedVersion": candidate(&layout, "libexpat1"),
        "Status": "fixed", "Severity": "HIGH"
    })];
    let libs = vec![finding(SYSTEM, "requests", "2.25.1", "CVE-2023-32681", "2.31.0")];
    let report = report(&sandbox, "both", &os, &libs);
    let out = run(sandbox
        .caulk()
        .args([
            "patch",
            "--json",
            "--pkg-types",
            "os,library",
            "--library-patch-level",
            "minor",
            "-i",
            &input,
            "-r",
        ])
        .arg(&report));
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    let requests = row_at(&summary, "requests", SYSTEM);
    assert_eq!(requests["status"], "patched", "{requests:#}");
    assert!(requests["to"].as_str().unwrap().starts_with("2."), "{requests:#}");
    let expat = summary["rows"].as_array().unwrap().iter().find(|r| r["name"] == "libexpat1").unwrap();
    assert_eq!(expat["status"], "patched", "{expat:#}");
    let output = format!("oci:{}:python-patched", layout.display());
    assert_eq!(layer_count(&output), layer_count(&input) + 1, "OS and library updates land in one layer");
    assert_eq!(dist_versions(&output, SYSTEM)["requests"], [requests["to"].as_str().unwrap()]);
}

#[test]
fn a_fix_that_breaks_a_dependent_is_skipped_naming_the_dependent() {
    // At level major idna may go to 3.7, but requests 2.25.1 requires
    // idna<3: caulk says so instead of letting pip break requests.
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:python", layout.display());
    let report = report(&sandbox, "idna", &[], &[finding(SYSTEM, "idna", "2.10", "CVE-2024-3651", "3.7")]);
    let out = run(sandbox
        .caulk()
        .args([
            "patch",
            "--json",
            "--pkg-types",
            "library",
            "--library-patch-level",
            "major",
            "-i",
            &input,
            "-r",
        ])
        .arg(&report));
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(summary["result"], "nothing-to-patch");
    let idna = row_at(&summary, "idna", SYSTEM);
    assert_eq!(idna["status"], "skipped");
    let detail = idna["detail"].as_str().unwrap();
    assert!(detail.contains("requests 2.25.1") && detail.contains("idna<3"), "{detail}");
    assert!(!layout.join("index.json").exists() || common::stdout(&out).contains("nothing"));
}

#[test]
fn a_non_default_patch_level_needs_library_in_pkg_types() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.caulk().args(["patch", "-i", "oci:/nowhere:x", "--library-patch-level", "minor"]));
    let err = common::failure(&out, 2);
    assert!(err.contains("--library-patch-level needs `library` in --pkg-types"), "{err}");
    let out = run(sandbox.caulk().args(["patch", "-i", "oci:/nowhere:x", "--pkg-types", "library"]));
    let err = common::failure(&out, 2);
    assert!(err.contains("needs a report"), "{err}");
}

/// The installed version of a Debian package in the image.
fn dpkg_version(reference: &str, package: &str) -> String {
    let image = Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).unwrap();
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    let status = String::from_utf8(root.read("/var/lib/dpkg/status").unwrap()).unwrap();
    status
        .split("\n\n")
        .find(|s| s.lines().any(|l| l == format!("Package: {package}")))
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Version: ")))
        .unwrap()
        .to_owned()
}

/// What apt would install now for `package`, from apt-report.py.
fn candidate(layout: &Path, package: &str) -> String {
    let script = common::workspace().join("tests/images/apt-report.py");
    let out = Command::new("python3").arg(script).arg(layout).arg("python").arg(package).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["Results"][0]["Vulnerabilities"][0]["FixedVersion"].as_str().expect("libexpat1 is behind").to_owned()
}
