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
         CVE-2099-1005,hello,1.0.0,2.0.0,high,toy\n\
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

    // The host has no version rules for `toy`, and hello's move to 1.0.2
    // passed over the fix 2.0.0: the plugin cannot tell which vulnerability
    // that fix was for (an update merges its findings' fixes), so it gives
    // no verdicts and caulk counts a vulnerability fixed only when 1.0.2 is
    // one of its own fixes. CVE-2099-1005 (fixed only in 2.0.0) must not be
    // claimed; CVE-2099-1002 (1.0.1 or 2.0.0) is left out too, the
    // conservative side of that ambiguity; nothing of gizmo's is stated.
    let doc: Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    let statements = doc["statements"].as_array().unwrap();
    let stated: Vec<&str> = statements.iter().map(|s| s["vulnerability"]["name"].as_str().unwrap()).collect();
    assert!(stated.contains(&"CVE-2099-1001"), "{stated:?}");
    for unfixed in ["CVE-2099-1002", "CVE-2099-1004", "CVE-2099-1005"] {
        assert!(!stated.contains(&unfixed), "{unfixed}: {stated:?}");
    }
    let text = doc.to_string();
    assert!(text.contains("pkg:generic/hello@1.0.2?ecosystem=toy"), "{text}");
}

/// The target dir every scaffolded crate builds into, kept in the test
/// cache between runs.
fn scaffold_target() -> PathBuf {
    let cache = std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| "/var/tmp/caulk-test-cache".into(), PathBuf::from);
    cache.join("scaffold-target")
}

/// `cargo` in a scaffolded crate: offline (the crate's Cargo.lock is the
/// workspace's, so everything is in the registry cache), sharing one target
/// dir across runs so a warm run costs seconds, and with the caulk under
/// test for the crate's through-caulk test.
fn cargo(dir: &Path, args: &[&str]) {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("CAULK_BIN", common::caulk_bin())
        // Flags of this test's own build must not reach the scaffold's.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scaffolded_plugins_build_pass_their_tests_and_patch_an_image_through_caulk() {
    let sandbox = Sandbox::new();
    let new = |kind: &str, name: &str| {
        let dir = sandbox.path().join(name);
        let out = run(sandbox.caulk().args(["plugins", "new", kind, name, "--path"]).arg(&dir));
        (dir, out)
    };
    let (scanner, out) = new("scanner", "toyscan");
    assert!(success(&out).contains("wrote the scanner `toyscan`"));
    let (updater, out) = new("updater", "toy");
    success(&out);

    // What cannot be a plugin or crate name, and a directory in use.
    let err = failure(&new("updater", "Toy_2").1, 2);
    assert!(err.contains("`Toy_2` cannot name a plugin"), "{err}");
    let out = run(sandbox.caulk().args(["plugins", "new", "scanner", "other", "--path"]).arg(&updater));
    assert!(failure(&out, 2).contains("is not empty"));

    // As generated: the crates' own tests pass (natively and through this
    // caulk) and the components build.
    let wasm = |dir: &Path, name: &str| {
        // Generated code is already formatted: the author's first `cargo
        // fmt` changes nothing of ours.
        let fmt = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(dir)
            .args(["fmt", "--check"])
            .output()
            .unwrap();
        assert!(fmt.status.success(), "{}", String::from_utf8_lossy(&fmt.stdout));
        cargo(dir, &["test"]);
        cargo(dir, &["build", "--target", "wasm32-wasip2", "--release"]);
        scaffold_target().join("wasm32-wasip2/release").join(format!("{name}.wasm"))
    };
    let plugins = sandbox.mkdir("plugins");
    copy_into(&plugins, &wasm(&scanner, "toyscan"), "toyscan.wasm");
    copy_into(&plugins, &wasm(&updater, "toy"), "toy.wasm");

    let list = run(sandbox.caulk().arg("--plugin-dir").arg(&plugins).args(["plugins", "list", "--json"]));
    let list: Value = serde_json::from_str(&success(&list)).unwrap();
    for (name, kind) in [("toyscan", "scanner"), ("toy", "updater")] {
        let row = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name);
        let row = row.unwrap_or_else(|| panic!("{name} not loaded: {list:#}"));
        assert_eq!((&row["kind"], &row["wit"]), (&json!(kind), &json!("0.2.0")), "{row}");
    }

    // Together, unedited, they patch the toy image: the scanner's format is
    // sniffed, the updater rewrites the package list.
    let report = sandbox.path().join("report.txt");
    std::fs::write(&report, "# toyscan v1\nCVE-2099-2001 hello 1.0.0 1.0.2 toy\n").unwrap();
    let layout = common::image_layout("toy-debian.sh");
    let out_dir = sandbox.path().join("out");
    let out = run(sandbox
        .caulk()
        .arg("--plugin-dir")
        .arg(&plugins)
        .args(["patch", "--json", "--pkg-types", "library", "--grant", "toy:image-commands", "-r"])
        .arg(&report)
        .arg("-i")
        .arg(format!("oci:{}:toy", layout.display()))
        .arg("--dest")
        .arg(format!("oci:{}:patched", out_dir.display())));
    let summary: Value = serde_json::from_str(&success(&out)).unwrap();
    let hello = row(&summary, "hello");
    assert_eq!((&hello["status"], &hello["to"]), (&json!("patched"), &json!("1.0.2")), "{hello:#}");
    let packages = file_in_layer(&top_layer(&out_dir), "/etc/toy/packages");
    assert!(packages.contains("\nhello 1.0.2\n"), "{packages}");
}
