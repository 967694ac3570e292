//! The plugin kit as a third-party author meets it: the example toy updater
//! (examples/toy-updater) built to a component, dropped into a plugin
//! directory and run by the real `caulk patch` on a Debian image that lists
//! toy packages (tests/images/toy-debian.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Sandbox, failure, run, success, wasm_of};
use serde_json::{Value, json};

fn copy_into(dir: &Path, wasm: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(wasm, &dest).unwrap();
    dest
}

fn row<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {summary:#}"))
}

/// The blob of the top layer of the one image in the OCI layout `dir`.
fn top_layer(dir: &Path) -> PathBuf {
    let read = |path: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let blob = |digest: &Value| {
        dir.join("blobs/sha256").join(digest.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"));
    let manifest = read(blob(&index["manifests"][0]["digest"]));
    blob(&manifest["layers"].as_array().unwrap().last().unwrap()["digest"])
}

/// A file of a layer blob, read by GNU tar (which finds the compression
/// itself), so the check does not rest on caulk's own layer code.
fn file_in_layer(layer: &Path, path: &str) -> String {
    let out = Command::new("tar").arg("-xOf").arg(layer).arg(path.trim_start_matches('/')).output().unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_example_toy_updater_patches_an_image_from_a_plugin_directory() {
    let sandbox = Sandbox::new();
    let plugins = sandbox.mkdir("plugins");
    copy_into(&plugins, &wasm_of("caulk-example-toy-updater"), "toy.wasm");
    copy_into(&plugins, &wasm_of("caulk-example-csv-scanner"), "csv.wasm");
    let report = sandbox.path().join("report.csv");
    std::fs::write(
        &report,
        "# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n\
         CVE-2099-1001,hello,1.0.0,1.0.2,high,toy\n\
         CVE-2099-1002,hello,1.0.0,1.0.1;2.0.0,medium,toy\n\
         CVE-2099-1003,widget,2.3.1,2.3.0,low,toy\n\
         CVE-2099-1004,gizmo,0.9.0,1.0.0,high,toy\n",
    )
    .unwrap();
    let layout = common::image_layout("toy-debian.sh");
    let out_dir = sandbox.path().join("out");
    let vex = sandbox.path().join("vex.json");
    let patch = |extra: &[&str]| {
        run(sandbox
            .caulk()
            .arg("--plugin-dir")
            .arg(&plugins)
            .args(["patch", "--json", "--pkg-types", "library", "-r"])
            .arg(&report)
            .arg("-i")
            .arg(format!("oci:{}:toy", layout.display()))
            .arg("--dest")
            .arg(format!("oci:{}:patched", out_dir.display()))
            .arg("-o")
            .arg(&vex)
            .args(extra))
    };

    // A plugin from a directory runs commands in the image only when granted.
    let err = failure(&patch(&[]), 1);
    assert!(err.contains("image-commands") && err.contains("toy"), "{err}");

    let summary: Value = serde_json::from_str(&success(&patch(&["--grant", "toy:image-commands"]))).unwrap();
    let hello = row(&summary, "hello");
    assert_eq!((&hello["status"], &hello["to"]), (&json!("patched"), &json!("1.0.2")), "{hello:#}");
    let widget = row(&summary, "widget");
    assert_eq!(widget["status"], "already-fixed", "{widget:#}");
    let gizmo = row(&summary, "gizmo");
    assert_eq!(gizmo["status"], "skipped", "{gizmo:#}");
    assert!(gizmo["detail"].as_str().unwrap().contains("--library-patch-level patch"), "{gizmo:#}");

    // The new layer holds the rewritten list and nothing else of the step's.
    let layer = top_layer(&out_dir);
    assert_eq!(
        file_in_layer(&layer, "/etc/toy/packages"),
        "# toy packages: NAME VERSION\nhello 1.0.2\nwidget 2.3.1\ngizmo 0.9.0\n"
    );
    let listing = Command::new("tar").arg("-tf").arg(&layer).output().unwrap();
    let files: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| l.trim_start_matches("./").to_owned())
        .collect();
    assert_eq!(files, ["etc/toy/packages"], "sed's temporary file is not left behind");

    // The host has no version rules for `toy`: the plugin's verdicts put
    // both of hello's vulnerabilities into the VEX, and nothing of gizmo's.
    let doc: Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    let statements = doc["statements"].as_array().unwrap();
    let stated: Vec<&str> = statements.iter().map(|s| s["vulnerability"]["name"].as_str().unwrap()).collect();
    assert!(stated.contains(&"CVE-2099-1001") && stated.contains(&"CVE-2099-1002"), "{stated:?}");
    assert!(!stated.contains(&"CVE-2099-1004"), "{stated:?}");
    let text = doc.to_string();
    assert!(text.contains("pkg:generic/hello@1.0.2?ecosystem=toy"), "{text}");
}
