//! npm patching with the built-in npm updater on a real image: Debian 12
//! with Debian's nodejs and npm, an app in /app with old packages from the
//! npm registry (direct, transitive, scoped), one old global package, and a
//! yarn-managed app (tests/images/npm-debian.sh). Reports are Trivy's
//! format, written here with the fixed versions real advisories give.

mod common;

use std::path::{Path, PathBuf};

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, TransportOptions};
use common::{Sandbox, failure, row_at, run, success};
use serde_json::{Value, json};

const LOCK: &str = "/app/package-lock.json";
const GLOBAL: &str = "/usr/local/lib/node_modules/semver/package.json";

fn layout_copy(sandbox: &Sandbox) -> PathBuf {
    common::layout_copy(sandbox, "npm-debian.sh")
}

fn vuln(name: &str, installed: &str, id: &str, fixed: &str) -> Value {
    json!({
        "VulnerabilityID": id, "PkgName": name, "InstalledVersion": installed, "FixedVersion": fixed,
        "Status": "fixed", "Severity": "HIGH",
        "PkgIdentifier": {"PURL": format!("pkg:npm/{}@{installed}", name.replace('@', "%40"))},
    })
}

/// The app's findings, as Trivy reports a lock file (no PkgPath: the
/// result's Target, relative, is the location).
fn app_findings(lodash_fix: &str) -> Vec<Value> {
    vec![
        // Fixed on a lower release than the one that lands (4.17.21).
        vuln(
            "lodash",
            "4.17.15",
            "CVE-2020-8203",
            if lodash_fix == "4.17.21" { "4.17.19" } else { lodash_fix },
        ),
        vuln("lodash", "4.17.15", "CVE-2021-23337", lodash_fix),
        // Transitive, through mkdirp; fixed on two lines.
        vuln("minimist", "1.2.5", "CVE-2021-44906", "1.2.6, 0.2.4"),
        // Scoped; both fixes only in later 0.x minor releases.
        vuln("@xmldom/xmldom", "0.7.5", "TEST-XMLDOM-1", "0.8.4"),
        vuln("@xmldom/xmldom", "0.7.5", "TEST-XMLDOM-2", "0.8.3"),
    ]
}

fn report(sandbox: &Sandbox, lodash_fix: &str) -> PathBuf {
    let mut global = vuln("semver", "7.5.1", "CVE-2022-25883", "7.5.2, 6.3.1, 5.7.2");
    global["PkgPath"] = json!(GLOBAL.trim_start_matches('/'));
    let doc = json!({
        "SchemaVersion": 2, "ArtifactName": "npm", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"}, "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [
            {"Target": "app/package-lock.json", "Class": "lang-pkgs", "Type": "npm", "Vulnerabilities": app_findings(lodash_fix)},
            {"Target": "yarn-app/yarn.lock", "Class": "lang-pkgs", "Type": "yarn",
             "Vulnerabilities": [vuln("lodash", "4.17.15", "CVE-2020-8203", "4.17.19")]},
            {"Target": "Node.js", "Class": "lang-pkgs", "Type": "node-pkg", "Vulnerabilities": [global]},
        ]
    });
    let path = sandbox.path().join(format!("report-{lodash_fix}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

fn patch(sandbox: &Sandbox, input: &str, report: &Path, extra: &[&str]) -> std::process::Output {
    run(sandbox
        .caulk()
        .args(["patch", "--json", "--pkg-types", "library", "-i", input, "-r"])
        .arg(report)
        .args(extra))
}

/// A file of the image's merged root fs, as JSON.
fn read_json(reference: &str, path: &str) -> Value {
    let image = Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).unwrap();
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    serde_json::from_slice(&root.read(path).unwrap()).unwrap()
}

fn version_in(reference: &str, package_json: &str) -> String {
    read_json(reference, package_json)["version"].as_str().unwrap().to_owned()
}

#[test]
fn patch_level_moves_direct_transitive_and_global_packages_and_the_vex_lists_every_fix() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let output = format!("oci:{}:patched", layout.display());
    let vex = sandbox.path().join("vex.json");
    let out = patch(
        &sandbox,
        &input,
        &report(&sandbox, "4.17.21"),
        &["-t", "patched", "-o", vex.to_str().unwrap()],
    );
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();

    let lodash = row_at(&summary, "lodash", LOCK);
    assert_eq!((&lodash["status"], &lodash["to"]), (&json!("patched"), &json!("4.17.21")), "{lodash:#}");
    assert!(
        lodash.get("still_open").is_none_or(|open| open == &json!([])),
        "4.17.21 fixes what 4.17.19 fixed: {lodash:#}"
    );
    let minimist = row_at(&summary, "minimist", LOCK);
    assert_eq!((&minimist["status"], &minimist["to"]), (&json!("patched"), &json!("1.2.6")), "{minimist:#}");
    let semver = row_at(&summary, "semver", GLOBAL);
    assert_eq!((&semver["status"], &semver["to"]), (&json!("patched"), &json!("7.5.2")), "{semver:#}");
    for r in [lodash, minimist] {
        assert!(r["checks"].to_string().contains("npm ls"), "npm ls ran: {r:#}");
    }
    // Only 0.x minor releases fix xmldom: out of reach at the patch level.
    let xmldom = row_at(&summary, "@xmldom/xmldom", LOCK);
    assert_eq!(xmldom["status"], "skipped", "{xmldom:#}");
    assert!(xmldom["detail"].as_str().unwrap().contains("--library-patch-level patch"), "{xmldom:#}");
    let yarn = row_at(&summary, "lodash", "/yarn-app/yarn.lock");
    assert_eq!(yarn["status"], "skipped", "{yarn:#}");
    assert!(yarn["detail"].as_str().unwrap().contains("yarn"), "{yarn:#}");

    // The image: installed copies, package.json and the lock agree.
    assert_eq!(version_in(&output, "/app/node_modules/lodash/package.json"), "4.17.21");
    assert_eq!(version_in(&output, "/app/node_modules/minimist/package.json"), "1.2.6");
    assert_eq!(version_in(&output, GLOBAL), "7.5.2");
    let manifest = read_json(&output, "/app/package.json");
    assert_eq!(manifest["dependencies"]["lodash"], "4.17.21", "an exact pin stays exact: {manifest:#}");
    assert_eq!(manifest["overrides"]["minimist"], "1.2.6", "{manifest:#}");
    assert!(manifest["dependencies"].get("minimist").is_none(), "still transitive: {manifest:#}");
    let lock = read_json(&output, LOCK);
    assert_eq!(lock["packages"]["node_modules/lodash"]["version"], "4.17.21");
    assert_eq!(lock["packages"]["node_modules/minimist"]["version"], "1.2.6");
    assert!(
        lock["packages"].get("node_modules/left-pad").is_some_and(|p| p["dev"] == true),
        "dev deps stay in the lock"
    );

    // The VEX states every fixed vulnerability, CVE-2020-8203 included.
    let doc: Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    let stated: Vec<&str> = doc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vulnerability"]["name"].as_str().unwrap())
        .collect();
    for id in ["CVE-2020-8203", "CVE-2021-23337", "CVE-2021-44906", "CVE-2022-25883"] {
        assert!(stated.contains(&id), "{id} missing from {stated:?}");
    }
    assert!(!stated.contains(&"TEST-XMLDOM-1"), "{stated:?}");
    let purls = doc["statements"].to_string();
    assert!(purls.contains("pkg:npm/lodash@4.17.21") && purls.contains("pkg:npm/semver@7.5.2"), "{purls}");
}

#[test]
fn minor_level_reaches_the_scoped_package_and_a_missing_fix_needs_ignore_errors() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());

    let out = patch(
        &sandbox,
        &input,
        &report(&sandbox, "4.17.21"),
        &["--library-patch-level", "minor", "-t", "minor"],
    );
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    let xmldom = row_at(&summary, "@xmldom/xmldom", LOCK);
    assert_eq!((&xmldom["status"], &xmldom["to"]), (&json!("patched"), &json!("0.8.4")), "{xmldom:#}");
    let output = format!("oci:{}:minor", layout.display());
    assert_eq!(version_in(&output, "/app/node_modules/@xmldom/xmldom/package.json"), "0.8.4");

    // A fixed version the registry never published: the run fails naming
    // it, unless --ignore-errors, which patches the rest.
    let missing = report(&sandbox, "4.17.99");
    let err = failure(&patch(&sandbox, &input, &missing, &["-t", "missing"]), 1);
    assert!(err.contains("lodash") && err.contains("4.17.99") && err.contains("not published"), "{err}");
    let out = patch(&sandbox, &input, &missing, &["--ignore-errors", "-t", "ignored"]);
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    let lodash = row_at(&summary, "lodash", LOCK);
    assert_eq!(lodash["status"], "skipped", "{lodash:#}");
    assert!(lodash["detail"].as_str().unwrap().contains("4.17.99: not published"), "{lodash:#}");
    assert_eq!(row_at(&summary, "minimist", LOCK)["status"], "patched", "{summary:#}");
}

/// Whether `path` exists in the image's merged root fs.
fn exists_in(reference: &str, path: &str) -> bool {
    let image = Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).unwrap();
    RootFs::open(image.source().clone(), &image.images[0]).unwrap().read(path).is_ok()
}

/// The app's package.json has a `postinstall` script
/// (tests/images/npm-scripts-debian.sh); the transitive fix's bare
/// `npm install` would run it. It does not, unless the user opts in.
#[test]
fn installs_run_no_lifecycle_scripts_unless_npm_scripts_is_set() {
    let sandbox = Sandbox::new();
    let layout = common::image_layout("npm-scripts-debian.sh");
    let input = format!("oci:{}:scripts", layout.display());
    let doc = json!({
        "SchemaVersion": 2, "ArtifactName": "npm", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"}},
        "Results": [{"Target": "app/package-lock.json", "Class": "lang-pkgs", "Type": "npm",
                     "Vulnerabilities": [vuln("minimist", "1.2.5", "CVE-2021-44906", "1.2.6")]}]
    });
    let report = sandbox.path().join("report.json");
    std::fs::write(&report, serde_json::to_vec(&doc).unwrap()).unwrap();
    let marker = "/app/postinstall-ran";

    let out_dir = sandbox.path().join("out");
    let dest = |tag: &str| format!("oci:{}:{tag}", out_dir.display());
    let summary: Value =
        serde_json::from_str(&success(&patch(&sandbox, &input, &report, &["--dest", &dest("default")])))
            .unwrap();
    assert_eq!(row_at(&summary, "minimist", LOCK)["status"], "patched", "{summary:#}");
    assert_eq!(version_in(&dest("default"), "/app/node_modules/minimist/package.json"), "1.2.6");
    assert!(!exists_in(&dest("default"), marker), "the app's postinstall ran");

    let opt_in = ["--plugin-opt", "npm.scripts=true", "--dest", &dest("scripts")];
    success(&patch(&sandbox, &input, &report, &opt_in));
    assert!(exists_in(&dest("scripts"), marker), "npm.scripts=true lets the postinstall run");

    // A misspelt or bad option stops the run before anything is asked.
    let err = failure(&patch(&sandbox, &input, &report, &["--plugin-opt", "npm.script=true"]), 1);
    assert!(err.contains("--plugin-opt npm.script=") && err.contains("npm.scripts=true|false"), "{err}");
    let err = failure(&patch(&sandbox, &input, &report, &["--plugin-opt", "npm.scripts=maybe"]), 1);
    assert!(err.contains("npm.scripts=maybe") && err.contains("true or false"), "{err}");
}
