//! `caulk patch` on a real two-platform Debian 12 index (amd64 and arm64,
//! both behind on security updates; tests/images/multiarch-debian.sh): every
//! platform, a subset, a report per platform, a report naming one; the
//! arm64 root's binaries run under qemu-user.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, PlatformImage, TransportOptions};
use common::dpkg::{dpkg_ge, versions_in};
use common::{Sandbox, failure, run, success};

/// Fixed so two runs over the same inputs write the same bytes.
const EPOCH: &str = "1700000000";

fn script(name: &str, args: &[&str]) -> PathBuf {
    let out = Command::new(common::workspace().join("tests/images").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(out.status.success(), "{name} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The cached two-platform layout (its image is `bookworm`).
fn multiarch() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| script("multiarch-debian.sh", &["bookworm"]))
}

/// The cached single-platform layout of `arch` the index was made from.
fn single(arch: &str) -> PathBuf {
    script("vulnerable-debian.sh", &["bookworm", "", arch])
}

fn layout_copy(sandbox: &Sandbox) -> PathBuf {
    let dest = sandbox.path().join("layout");
    assert!(Command::new("cp").arg("-a").arg(multiarch()).arg(&dest).status().unwrap().success());
    dest
}

/// A Trivy report (with the platform in `Metadata.ImageConfig`) of what
/// apt can move forward in `arch`'s image.
fn report(sandbox: &Sandbox, arch: &str, packages: &[&str]) -> PathBuf {
    let script = common::workspace().join("tests/images/apt-report.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(single(arch))
        .arg("bookworm")
        .args(packages)
        .output()
        .unwrap();
    assert!(out.status.success(), "apt-report.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = sandbox.path().join(format!("report-{arch}.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// `package → fixed version` of a report.
fn fixed_in(report: &Path) -> BTreeMap<String, String> {
    let doc = json(&std::fs::read_to_string(report).unwrap());
    doc["Results"][0]["Vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["PkgName"].as_str().unwrap().to_owned(), v["FixedVersion"].as_str().unwrap().to_owned()))
        .collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn open(reference: &str) -> Image {
    Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).expect("the image opens")
}

fn platform<'i>(image: &'i Image, arch: &str) -> &'i PlatformImage {
    image.images.iter().find(|i| i.platform.architecture == arch).unwrap_or_else(|| panic!("no {arch}"))
}

/// Installed versions in a platform's dpkg status.
fn dpkg_versions(image: &Image, arch: &str) -> BTreeMap<String, String> {
    let root = RootFs::open(image.source().clone(), platform(image, arch)).unwrap();
    versions_in(&String::from_utf8(root.read("/var/lib/dpkg/status").unwrap()).unwrap())
}

/// The top-level index's raw JSON.
fn index_json(image: &Image) -> serde_json::Value {
    serde_json::from_slice(&image.top.bytes).unwrap()
}

/// The index entry of `arch` (or of the attestation).
fn entry(index: &serde_json::Value, arch: &str) -> serde_json::Value {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} entry in {index:#}"))
        .clone()
}

/// Asserts that `arch` got exactly one new layer over its original blobs
/// (byte-identical in `layout`), and returns its dpkg versions.
fn assert_patched(before: &Image, after: &Image, arch: &str, layout: &Path) -> BTreeMap<String, String> {
    let (old, new) = (platform(before, arch), platform(after, arch));
    assert_ne!(old.manifest.digest, new.manifest.digest, "{arch} was not patched");
    assert_eq!(new.layers.len(), old.layers.len() + 1, "{arch}: not exactly one new layer");
    for (o, n) in old.layers.iter().zip(&new.layers) {
        assert_eq!(o.desc.digest, n.desc.digest, "{arch}: an original layer changed");
        let path = |root: &Path| root.join("blobs").join(o.desc.digest.to_string().replace(':', "/"));
        assert_eq!(std::fs::read(path(layout)).unwrap(), std::fs::read(path(multiarch())).unwrap());
    }
    let versions = dpkg_versions(after, arch);
    let old_versions = dpkg_versions(before, arch);
    let moved = old_versions.iter().filter(|(p, v)| versions.get(*p).is_some_and(|now| now != *v)).count();
    assert!(moved > 0, "{arch}: no package moved");
    versions
}

/// Everything in the index but `arch`'s entries is as it was: the other
/// platform (when `kept` names it), the attestation, the annotations.
fn assert_kept(before: &Image, after: &Image, kept: &[&str]) {
    let (old, new) = (index_json(before), index_json(after));
    assert_eq!(new["annotations"], old["annotations"], "index annotations");
    assert_eq!(new["manifests"].as_array().unwrap().len(), 3);
    for arch in kept.iter().chain(&["unknown"]) {
        assert_eq!(entry(&new, arch), entry(&old, arch), "the {arch} entry changed");
    }
}

/// `openssl version`, run in `arch`'s root under the local sandbox (under
/// qemu-user for arm64).
fn openssl_version(sandbox: &Sandbox, image: &Image, arch: &str) -> String {
    let cache = caulk_image::layer::LayerCache::new(sandbox.path().join("run-layers")).unwrap();
    let options = caulk_image::layer::UnpackOptions {
        whiteouts: caulk_image::layer::WhiteoutFormat::OverlayTrusted,
        preserve_ownership: true,
        device_nodes: true,
    };
    let layers = cache.unpack_image(image.source().as_ref(), platform(image, arch), &options).unwrap();
    let executor =
        caulk_exec::LocalExecutor::new(caulk_exec::ExecutorConfig::new(sandbox.mkdir("run-work"))).unwrap();
    let session = executor.prepare(&layers, caulk_exec::CancelToken::new()).unwrap();
    let probe = caulk_exec::Probe::new(["/bin/sh", "-c", "uname -m; openssl version"]);
    let out = session.probe(&probe).unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `caulk patch`, with a fixed epoch and a long timeout.
fn patch(sandbox: &Sandbox) -> Command {
    let mut cmd = sandbox.caulk();
    cmd.env("SOURCE_DATE_EPOCH", EPOCH);
    // dpkg under qemu-user is several times slower than natively.
    cmd.args(["patch", "--timeout", "30m"]);
    cmd
}

#[test]
fn update_all_patches_every_platform() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let before = open(&input);

    // (a) Every platform.
    let out = run(patch(&sandbox).args(["--json", "--jobs", "2", "-i", &input, "-t", "all"]));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let platforms = summary["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    let after = open(&format!("oci:{}:all", layout.display()));
    assert_eq!(summary["digest"], after.top.digest.to_string());
    assert_kept(&before, &after, &[]);
    for arch in ["amd64", "arm64"] {
        let versions = assert_patched(&before, &after, arch, &layout);
        let fixed = fixed_in(&report(&sandbox, arch, &["openssl", "libssl3", "libexpat1"]));
        for (package, version) in &fixed {
            assert!(
                dpkg_ge(&versions[package], version),
                "{arch} {package}: {} < {version}",
                versions[package]
            );
        }
        let one = platforms.iter().find(|p| p["platform"].as_str().unwrap().contains(arch)).unwrap();
        assert_eq!(one["digest"], platform(&after, arch).manifest.digest.to_string());
        assert_eq!(one["result"], "patched", "{one:#}");
    }
    assert_eq!(entry(&index_json(&after), "arm64")["platform"]["variant"], "v8");
    let arm = openssl_version(&sandbox, &after, "arm64");
    assert!(arm.starts_with("aarch64\nOpenSSL 3."), "{arm}");
}

#[test]
fn platform_picks_from_a_report_directory_and_keeps_the_other_byte_identical() {
    // (b) Only arm64, though the directory has a report for amd64 too (by
    // report rather than update-all: dpkg under qemu makes update-all of
    // arm64 take minutes, and the update-all test above already does it).
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let reports = sandbox.mkdir("reports");
    let arm = report(&sandbox, "arm64", &["libexpat1"]);
    std::fs::copy(report(&sandbox, "amd64", &["libexpat1"]), reports.join("linux-amd64.json")).unwrap();
    std::fs::copy(&arm, reports.join("linux-arm64.json")).unwrap();
    let before = open(&input);
    let out = run(patch(&sandbox)
        .args(["--json", "-i", &input, "-t", "arm", "--platform", "linux/arm64", "-r"])
        .arg(&reports));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let platforms = summary["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1, "{summary:#}");
    assert_eq!(platforms[0]["platform"], "linux/arm64/v8");
    let after = open(&format!("oci:{}:arm", layout.display()));
    assert_kept(&before, &after, &["amd64"]);
    let versions = assert_patched(&before, &after, "arm64", &layout);
    for (package, version) in fixed_in(&arm) {
        assert!(dpkg_ge(&versions[&package], &version), "{package}");
    }
}

#[test]
fn a_report_directory_drives_each_platform_through_a_registry() {
    let sandbox = Sandbox::new();
    let registry = common::registry::Registry::start();
    let layout = layout_copy(&sandbox);
    let remote = format!("{}/multi/debian:bookworm", registry.addr);
    let copied = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bookworm", layout.display()))
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let reports = sandbox.mkdir("reports");
    let amd = report(&sandbox, "amd64", &["libexpat1"]);
    let arm = report(&sandbox, "arm64", &["openssl", "libssl3"]);
    std::fs::copy(&amd, reports.join("linux-amd64.json")).unwrap();
    std::fs::copy(&arm, reports.join("linux-arm64-v8.json")).unwrap();
    let vex = sandbox.path().join("vex.json");

    let out = run(patch(&sandbox).args(["--json", "-i", &remote, "-r"]).arg(&reports).arg("-o").arg(&vex));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let patched = format!("{}/multi/debian:bookworm-patched", registry.addr);

    // skopeo reads the index back, and copies every platform out of it.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{patched}")])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["annotations"]["org.example.index"], "kept");
    let out_dir = sandbox.path().join("copied");
    let copy = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false", &format!("docker://{patched}")])
        .arg(format!("oci:{}:patched", out_dir.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let before = open(&format!("oci:{}:bookworm", layout.display()));
    let after = open(&format!("oci:{}:patched", out_dir.display()));
    assert_eq!(index_json(&after), index);
    assert_kept(&before, &after, &[]);
    for (arch, report) in [("amd64", &amd), ("arm64", &arm)] {
        let versions = assert_patched(&before, &after, arch, &layout);
        for (package, version) in fixed_in(report) {
            assert!(dpkg_ge(&versions[&package], &version), "{arch} {package}");
        }
    }

    // One VEX document: per vulnerability the index and the platform
    // manifest it was fixed in.
    let doc = json(&std::fs::read_to_string(&vex).unwrap());
    let index_digest = summary["digest"].as_str().unwrap().replace(':', "%3A");
    for statement in doc["statements"].as_array().unwrap() {
        let name = statement["vulnerability"]["name"].as_str().unwrap();
        let arch = if name.ends_with("libexpat1") { "amd64" } else { "arm64" };
        let products: Vec<(&str, &str)> = statement["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["@id"].as_str().unwrap(), p["identifiers"]["purl"].as_str().unwrap()))
            .collect();
        let manifest = platform(&after, arch).manifest.digest.to_string().replace(':', "%3A");
        assert_eq!(products.len(), 2, "{statement:#}");
        assert!(products[0].0.ends_with(&index_digest), "{products:?}");
        assert!(
            products[1].0.ends_with(&manifest) && products[1].1.contains(&format!("arch={arch}")),
            "{products:?}"
        );
    }
    assert_eq!(doc["statements"].as_array().unwrap().len(), fixed_in(&amd).len() + fixed_in(&arm).len());
}

#[test]
fn a_report_file_patches_the_platform_it_names_and_only_that() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let arm = report(&sandbox, "arm64", &["openssl", "libssl3"]);

    // A report that does not say which platform: no guess at the host's.
    let mut doc = json(&std::fs::read_to_string(&arm).unwrap());
    doc["Metadata"].as_object_mut().unwrap().remove("ImageConfig");
    let unsaid = sandbox.path().join("unsaid.json");
    std::fs::write(&unsaid, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = failure(&run(patch(&sandbox).args(["-i", &input, "-r"]).arg(&unsaid)), 2);
    assert!(err.contains("does not say which platform it scanned") && err.contains("--platform"), "{err}");

    let out = run(patch(&sandbox).args(["--json", "-i", &input, "-r"]).arg(&arm));
    let summary = json(&success(&out));
    assert_eq!(summary["platform"], "linux/arm64/v8", "{summary:#}");
    let before = open(&input);
    let after = open(&format!("oci:{}:bookworm-patched", layout.display()));
    assert_kept(&before, &after, &["amd64"]);
    let versions = assert_patched(&before, &after, "arm64", &layout);
    for (package, version) in fixed_in(&arm) {
        assert!(dpkg_ge(&versions[&package], &version), "{package}");
    }
}

#[test]
fn a_failed_platform_writes_nothing_unless_ignored_and_is_then_kept() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let reports = sandbox.mkdir("reports");
    std::fs::copy(report(&sandbox, "amd64", &["libexpat1"]), reports.join("linux-amd64.json")).unwrap();
    std::fs::write(reports.join("linux-arm64-v8.json"), "{\"not\": \"a report\"}").unwrap();

    let err = failure(&run(patch(&sandbox).args(["-i", &input, "-r"]).arg(&reports)), 1);
    assert!(err.contains("linux-arm64-v8.json"), "{err}");
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "no image was written");

    let out = run(patch(&sandbox).args(["--json", "--ignore-errors", "-i", &input, "-r"]).arg(&reports));
    let summary = json(&success(&out));
    let arm =
        summary["platforms"].as_array().unwrap().iter().find(|p| p["platform"] == "linux/arm64/v8").unwrap();
    assert_eq!(arm["result"], "failed");
    assert!(arm["error"].as_str().unwrap().contains("linux-arm64-v8.json"), "{arm:#}");
    let before = open(&input);
    let after = open(&format!("oci:{}:bookworm-patched", layout.display()));
    assert_kept(&before, &after, &["arm64"]);
    assert_patched(&before, &after, "amd64", &layout);
}

#[test]
fn an_index_goes_whole_into_an_oci_archive() {
    // A report for amd64 only: arm64 is kept, so the archive must carry a
    // patched and a kept manifest (and the attestation) in one index.
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let reports = sandbox.mkdir("reports");
    let amd = report(&sandbox, "amd64", &["libexpat1"]);
    std::fs::copy(&amd, reports.join("linux-amd64.json")).unwrap();
    let archive = sandbox.path().join("patched.tar");
    let dest = format!("oci-archive:{}:patched", archive.display());
    let out = run(patch(&sandbox).args(["--json", "-i", &input, "--dest", &dest, "-r"]).arg(&reports));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    assert_eq!(summary["platforms"][0]["result"], "patched", "{summary:#}");

    // The archive's own files, unpacked by tar: its index.json names the
    // patched index by the digest caulk reported.
    let unpacked = sandbox.mkdir("unpacked");
    success(&run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&unpacked)));
    let outer = json(&std::fs::read_to_string(unpacked.join("index.json")).unwrap());
    let named: Vec<&serde_json::Value> = outer["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "patched")
        .collect();
    assert_eq!(named.len(), 1, "{outer:#}");
    assert_eq!(named[0]["digest"], summary["digest"], "{outer:#}");
    assert_eq!(named[0]["mediaType"], "application/vnd.oci.image.index.v1+json");

    let before = open(&input);
    let after = open(&format!("oci:{}:patched", unpacked.display()));
    assert_eq!(after.top.digest.to_string(), summary["digest"]);
    assert_kept(&before, &after, &["arm64"]);
    let versions = assert_patched(&before, &after, "amd64", &unpacked);
    for (package, version) in fixed_in(&amd) {
        assert!(dpkg_ge(&versions[&package], &version), "{package}");
    }
    // caulk reads the archive back as it wrote it.
    let reread = open(&dest);
    assert_eq!(reread.top.digest, after.top.digest);
}

/// Removes an image from the test daemon when dropped.
struct DaemonImage(String);

impl Drop for DaemonImage {
    fn drop(&mut self) {
        let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
        let _ = Command::new("/usr/bin/docker").args(["-H", &host, "rmi", "-f", &self.0]).output();
    }
}

/// Layer digests of the uncompressed layers (`rootfs.diff_ids`): dockerd
/// recompresses blobs on the way out, these stay.
fn diff_ids(image: &PlatformImage) -> Vec<String> {
    let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

#[test]
fn docker_daemon_gets_this_machines_platform_patched_and_only_that() {
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
    assert!(
        host.starts_with("unix://"),
        "CAULK_TEST_DOCKER_HOST is not a unix:// socket ({host:?}): start the test daemon with \
         `export CAULK_TEST_DOCKER_HOST=$(bash tests/scripts/dockerd.sh start)`"
    );
    assert_eq!(caulk_image::Platform::host().architecture, "amd64", "this test expects an amd64 machine");
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox);
    let input = format!("oci:{}:bookworm", layout.display());
    let name = format!("caulk-multi/debian:patched-{}", std::process::id());
    let _cleanup = DaemonImage(name.clone());

    // Update-all of the whole index, to a destination that holds one image:
    // arm64 (minutes under qemu) is not patched, and caulk says so.
    let out = run(patch(&sandbox).env("DOCKER_HOST", &host).args([
        "--json",
        "-i",
        &input,
        "--dest",
        &format!("docker-daemon:{name}"),
    ]));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let platforms = summary["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1, "{summary:#}");
    assert_eq!(platforms[0]["platform"], "linux/amd64");
    assert_eq!(platforms[0]["result"], "patched", "{summary:#}");
    let note = summary["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("holds one platform")
            && note.contains("linux/amd64")
            && note.contains("linux/arm64/v8 left out"),
        "{summary:#}"
    );
    let human = common::stderr(&out);
    assert!(human.contains("holds one platform"), "the log says it too:\n{human}");

    // What the daemon holds: amd64's layers plus one, with the fixes.
    let loaded = sandbox.path().join("loaded");
    success(&run(sandbox.caulk().env("DOCKER_HOST", &host).args([
        "image",
        "copy",
        &format!("docker-daemon:{name}"),
        &format!("oci:{}:loaded", loaded.display()),
    ])));
    let before = open(&input);
    let after = open(&format!("oci:{}:loaded", loaded.display()));
    let (old, new) = (platform(&before, "amd64"), &after.images[0]);
    assert_eq!(new.platform.architecture, "amd64");
    let (old_ids, new_ids) = (diff_ids(old), diff_ids(new));
    assert_eq!(new_ids.len(), old_ids.len() + 1, "not exactly one new layer");
    assert_eq!(new_ids[..old_ids.len()], old_ids[..], "an original layer changed");
    let versions = dpkg_versions(&after, "amd64");
    for (package, version) in fixed_in(&report(&sandbox, "amd64", &["openssl", "libssl3", "libexpat1"])) {
        assert!(dpkg_ge(&versions[&package], &version), "{package}: {} < {version}", versions[&package]);
    }
}
