//! `caulk patch` on OCI images made from the roots of tests/images/rpm.sh:
//! the real host runs the plan (the host's dnf, in its sandbox, with the
//! image mounted) against a repository served on 127.0.0.1. Checked from
//! outside caulk: versions read back with `rpm -q` from the unpacked
//! result, one new layer without dnf's churn, the original layer blobs and
//! config unchanged.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{Server, rpm_q};

fn caulk_bin() -> PathBuf {
    std::env::var_os("CAULK_BIN")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/caulk"), PathBuf::from)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

struct Image {
    layout: PathBuf,
    work: tempfile::TempDir,
    _server: Server,
}

impl Image {
    fn new(kind: &str) -> Self {
        let server = Server::start();
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let out = Command::new(support::workspace().join("tests/images/rpm-image.sh"))
            .arg(kind)
            .arg(server.port.to_string())
            .arg(&layout)
            .output()
            .unwrap();
        assert!(out.status.success(), "rpm-image.sh: {}", String::from_utf8_lossy(&out.stderr));
        Self { layout, work, _server: server }
    }

    fn patch(&self, args: &[&str]) -> Output {
        let work = self.work.path();
        Command::new(caulk_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", work.join("home"))
            .env("XDG_DATA_HOME", work.join("data"))
            .env("CAULK_CACHE_DIR", work.join("cache"))
            .arg("patch")
            .arg("--json")
            .args(args)
            .output()
            .expect("caulk runs")
    }

    /// A Trivy report of the OS `family`/`version` listing `findings`
    /// (name, installed, fixed), written beside the image; its path.
    fn report(&self, family: &str, version: &str, findings: &[(&str, &str, &str)]) -> String {
        let vulnerabilities: Vec<Value> = findings
            .iter()
            .enumerate()
            .map(|(i, (name, installed, fixed))| {
                serde_json::json!({"VulnerabilityID": format!("CVE-TEST-{i}"), "PkgName": name,
                    "InstalledVersion": installed, "FixedVersion": fixed, "Status": "fixed", "Severity": "HIGH"})
            })
            .collect();
        let doc = serde_json::json!({
            "SchemaVersion": 2, "ArtifactName": "test", "ArtifactType": "container_image",
            "Metadata": {"OS": {"Family": family, "Name": version}},
            "Results": [{"Target": format!("test ({family} {version})"), "Class": "os-pkgs", "Type": family,
                         "Vulnerabilities": vulnerabilities}]
        });
        let path = self.work.path().join("report.json");
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    /// The manifest tagged `name`.
    fn manifest(&self, name: &str) -> Value {
        let index = json_file(&self.layout.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("no image {name} in {index}"))
            .clone();
        json_file(&self.blob(entry["digest"].as_str().unwrap()))
    }

    fn layers(manifest: &Value) -> Vec<String> {
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The files of layer `digest`, as tar lists them.
    fn listing(&self, digest: &str) -> Vec<String> {
        let out = Command::new("tar").arg("-tf").arg(self.blob(digest)).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim_start_matches("./").to_owned())
            .collect()
    }

    /// Every layer of image `name` unpacked in order into a new directory.
    fn unpack(&self, name: &str) -> PathBuf {
        let root = self.work.path().join(format!("root-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        for digest in Self::layers(&self.manifest(name)) {
            let status =
                Command::new("tar").arg("-xf").arg(self.blob(&digest)).arg("-C").arg(&root).status().unwrap();
            assert!(status.success());
        }
        root
    }

    /// The held-out checks: one new layer on top of the original ones,
    /// whose blobs are untouched, and the original config kept.
    fn check_held_out(&self, before: &str, after: &str) -> String {
        let (old, new) = (self.manifest(before), self.manifest(after));
        let (old_layers, new_layers) = (Self::layers(&old), Self::layers(&new));
        assert_eq!(new_layers.len(), old_layers.len() + 1, "one new layer");
        assert_eq!(new_layers[..old_layers.len()], old_layers[..]);
        for digest in &old_layers {
            let bytes = std::fs::read(self.blob(digest)).unwrap();
            let sum = Command::new("sha256sum").arg(self.blob(digest)).output().unwrap();
            let sum = String::from_utf8(sum.stdout).unwrap();
            assert_eq!(
                format!("sha256:{}", &sum[..64]),
                *digest,
                "blob {digest} changed ({} bytes)",
                bytes.len()
            );
        }
        let config = |m: &Value| json_file(&self.blob(m["config"]["digest"].as_str().unwrap()));
        let (old_config, new_config) = (config(&old), config(&new));
        for key in ["Env", "Cmd", "Labels"] {
            let kept = &new_config["config"][key];
            if key == "Labels" {
                assert_eq!(kept["org.example.kind"], old_config["config"]["Labels"]["org.example.kind"]);
            } else {
                assert_eq!(kept, &old_config["config"][key], "config {key}");
            }
        }
        new_layers.last().unwrap().clone()
    }
}

fn summary(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

fn row<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {summary:#}"))
}

/// Churn the plan drops: none of it may reach the new layer.
fn assert_no_churn(listing: &[String]) {
    for path in listing {
        for churn in [
            "var/cache/dnf/",
            "var/lib/dnf/",
            "var/log/dnf",
            "var/log/hawkey.log",
            ".rpm.lock",
            "rpmdb.sqlite-shm",
        ] {
            assert!(!path.contains(churn), "{path} reached the new layer");
        }
    }
}

#[test]
fn a_toolless_image_is_patched_by_report_with_the_hosts_dnf() {
    let image = Image::new("toolless");
    let report =
        image.report("redhat", "1", &[("caulk-demo", "1.0-1", "1.1-1"), ("caulk-data", "1:2.0-1", "2.1-1")]);
    let input = format!("oci:{}:toolless", image.layout.display());
    let out = image.patch(&["-i", &input, "-t", "patched", "-r", &report]);
    let summary = summary(&out);
    assert_eq!(summary["result"], "patched", "{summary:#}");
    assert_eq!(
        (&row(&summary, "caulk-demo")["status"], &row(&summary, "caulk-demo")["to"]),
        (&"patched".into(), &"1.2-1".into())
    );
    assert_eq!(row(&summary, "caulk-data")["to"], "1:2.1-1");

    let new_layer = image.check_held_out("toolless", "patched");
    let listing = image.listing(&new_layer);
    assert_no_churn(&listing);
    for changed in [
        "usr/bin/caulk-demo",
        "usr/lib/libcaulkdemo.txt",
        "usr/share/caulk/data.txt",
        "var/lib/rpm/rpmdb.sqlite",
    ] {
        assert!(listing.iter().any(|p| p == changed), "{changed} not in the new layer: {listing:?}");
    }
    let root = image.unpack("patched");
    assert_eq!(rpm_q(&root, "caulk-demo"), "1.2-1");
    assert_eq!(rpm_q(&root, "caulk-demo-libs"), "1.2-1");
    assert_eq!(rpm_q(&root, "caulk-data"), "1:2.1-1");
    assert_eq!(rpm_q(&root, "caulk-tool"), "3.0-1");
    let verifydb = Command::new("rpmdb")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "--verifydb"])
        .status();
    assert!(verifydb.unwrap().success());
}

#[test]
fn an_azure_linux_style_image_keeps_its_manifests_true_in_update_all_mode() {
    let image = Image::new("azure");
    let input = format!("oci:{}:azure", image.layout.display());
    let summary = summary(&image.patch(&["-i", &input, "-t", "all"]));
    assert_eq!(row(&summary, "caulk-demo")["status"], "patched", "{summary:#}");
    assert_eq!(row(&summary, "caulk-data")["to"], "1:2.1-1");

    let new_layer = image.check_held_out("azure", "all");
    assert_no_churn(&image.listing(&new_layer));
    let root = image.unpack("all");
    assert_eq!(rpm_q(&root, "caulk-demo"), "1.2-1");
    let manifest1 = std::fs::read_to_string(root.join("var/lib/rpmmanifest/container-manifest-1")).unwrap();
    let mut lines: Vec<&str> = manifest1.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "azurelinux-release-3.0-1.noarch",
            "caulk-data-2.1-1.noarch",
            "caulk-demo-1.2-1.x86_64",
            "caulk-demo-libs-1.2-1.x86_64"
        ]
    );
    let manifest2 = std::fs::read_to_string(root.join("var/lib/rpmmanifest/container-manifest-2")).unwrap();
    assert!(manifest2.lines().any(|l| l.starts_with("caulk-demo\t1.2-1\t")), "{manifest2}");
}

#[test]
fn an_image_with_its_own_dnf_is_patched_by_it() {
    let image = Image::new("dnf");
    let input = format!("oci:{}:dnf", image.layout.display());
    let report = image.report("redhat", "1", &[("caulk-demo", "1.0-1", "1.1-1")]);
    let summary = summary(&image.patch(&["-i", &input, "-t", "patched", "-r", &report]));
    let demo = row(&summary, "caulk-demo");
    assert_eq!((&demo["status"], &demo["to"]), (&"patched".into(), &"1.2-1".into()), "{summary:#}");
    let checks = demo["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "rpmdb --verifydb" && c["passed"] == true), "{checks:?}");

    let new_layer = image.check_held_out("dnf", "patched");
    let listing = image.listing(&new_layer);
    assert_no_churn(&listing);
    assert!(listing.iter().any(|p| p == "usr/lib/libcaulkdemo.txt"), "{listing:?}");
    let root = image.unpack("patched");
    assert_eq!(rpm_q(&root, "caulk-demo"), "1.2-1");
    assert_eq!(rpm_q(&root, "caulk-demo-libs"), "1.2-1");
    assert_eq!(rpm_q(&root, "caulk-data"), "1:2.0-1", "not in the report, not moved");
}

#[test]
fn an_azure_linux_distroless_image_without_a_database_is_patched_and_listed() {
    let image = Image::new("distroless");
    let input = format!("oci:{}:distroless", image.layout.display());
    let report = image.report("azurelinux", "3.0", &[("caulk-demo", "1.0-1", "1.1-1")]);
    let summary = summary(&image.patch(&["-i", &input, "-t", "patched", "-r", &report]));
    let demo = row(&summary, "caulk-demo");
    assert_eq!((&demo["status"], &demo["to"]), (&"patched".into(), &"1.2-1".into()), "{summary:#}");

    let new_layer = image.check_held_out("distroless", "patched");
    let listing = image.listing(&new_layer);
    assert_no_churn(&listing);
    assert!(
        !listing.iter().any(|p| p.starts_with("var/lib/rpm/") || p.contains("caulk-rpmdb")),
        "{listing:?}"
    );
    let root = image.unpack("patched");
    assert_eq!(std::fs::read_to_string(root.join("usr/lib/libcaulkdemo.txt")).unwrap(), "libcaulkdemo 1.2\n");
    let manifest1 = std::fs::read_to_string(root.join("var/lib/rpmmanifest/container-manifest-1")).unwrap();
    assert!(manifest1.lines().any(|l| l == "caulk-demo-libs-1.2-1.x86_64"), "{manifest1}");
    assert!(manifest1.lines().any(|l| l == "caulk-data-2.0-1.noarch"), "{manifest1}");
}
