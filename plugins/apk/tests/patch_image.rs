//! `caulk patch` on images made from the test roots: the real host runs the
//! plan in its sandbox. No apk-tools can run here (the test roots' `/sbin/apk`
//! is an empty file and the host has none), so these are the paths where apk
//! cannot start: the host must carry the plan through and report why.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn caulk_bin() -> PathBuf {
    std::env::var_os("CAULK_BIN")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/caulk"), PathBuf::from)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::from("sha256:"), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&digest["sha256:".len()..]), bytes).unwrap();
    digest
}

/// An OCI layout at `layout` holding `root` as its one layer, tagged
/// `latest`. `/sbin/apk`, when present, is made executable: an empty file
/// that the sandbox cannot run.
fn layout_of(root: &Path, work: &Path) -> PathBuf {
    let tree = work.join("tree");
    let copied = Command::new("cp").arg("-a").arg(root).arg(&tree).status().unwrap();
    assert!(copied.success());
    if tree.join("sbin/apk").exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tree.join("sbin/apk"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tar = work.join("layer.tar");
    let made = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = std::fs::read(&tar).unwrap();
    let layer_digest = put_blob(&layout, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let config_digest = put_blob(&layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_digest = put_blob(&layout, manifest.as_bytes());
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layout
}

fn patch(root: &str) -> (Output, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let layout = layout_of(&support::data(&format!("roots/{root}")), work.path());
    let output = Command::new(caulk_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work.path().join("home"))
        .env("XDG_DATA_HOME", work.path().join("data"))
        .env("CAULK_CACHE_DIR", work.path().join("cache"))
        .arg("patch")
        .arg("-i")
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .expect("caulk runs");
    (output, work)
}

fn host_has_apk() -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|dir| dir.join("apk").is_file())
}

#[test]
fn a_distroless_image_without_apk_on_the_host_is_refused_with_the_reason() {
    if host_has_apk() {
        eprintln!("skipped: this host has an apk, so the image would be patched with it");
        return;
    }
    let (output, _work) = patch("wolfi-static");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("plugin apk failed plan: the image has an apk database but no apk binary"),
        "{stderr}"
    );
    assert!(stderr.contains("`apk --version` on the host exited with"), "{stderr}");
    assert!(stderr.contains("with `--tooling-image IMAGE`"), "{stderr}");
}

#[test]
fn the_host_runs_the_plan_and_verification_names_why_nothing_moved() {
    let (output, work) = patch("alpine-3.19");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
    };
    assert!(
        row("libssl3").contains("FAILED: libssl3 stayed at 3.1.4-r1; apk update failed (exit 1)"),
        "{stdout}"
    );
    assert!(row("libssl3").contains("the apk command could not be started"), "{stdout}");
    assert!(row(".build-deps").contains("skipped: .build-deps is a virtual package"), "{stdout}");
    assert!(stderr.contains("no image was written"), "{stderr}");
    // The host made the index cache the plan asked for, on its side.
    let step_caches = work.path().join("cache/steps/apk");
    let made = std::fs::read_dir(&step_caches).map_or(0, Iterator::count);
    assert_eq!(made, 1, "one apk index cache under {}", step_caches.display());
}
