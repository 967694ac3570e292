//! `caulk patch --config`: Copa's PatchConfig over real Debian images in
//! Debian's docker-registry, skip detection from reports, and two caulk
//! processes sharing one cache. The images are one cached Debian 12 base
//! with a small top layer each (tests/images/fleet-debian.sh).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, RegistryRef, TransportOptions};
use common::{Sandbox, run, stderr, success};

/// The cached layout of `count` images of one base, `app-1` … `app-COUNT`.
fn fleet_layout(count: usize) -> PathBuf {
    let script = common::workspace().join("tests/images/fleet-debian.sh");
    let out = Command::new(&script).arg(count.to_string()).output().expect("running fleet-debian.sh");
    assert!(out.status.success(), "fleet-debian.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn open(reference: &str) -> Image {
    Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).expect("the image opens")
}

fn layers(image: &Image) -> Vec<String> {
    image.images[0].layers.iter().map(|l| l.desc.digest.to_string()).collect()
}

fn read(image: &Image, path: &str) -> String {
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    String::from_utf8(root.read(path).unwrap()).unwrap()
}

fn dpkg_version(image: &Image, package: &str) -> String {
    let status = read(image, "/var/lib/dpkg/status");
    let stanza = status
        .split("\n\n")
        .find(|s| s.lines().any(|l| l == format!("Package: {package}")))
        .unwrap_or_else(|| panic!("{package} is not installed"));
    stanza.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap().to_owned()
}

fn tags(repository: &str) -> Vec<String> {
    let reference = RegistryRef::parse(repository).unwrap();
    let mut tags = caulk_image::transport::registry::list_tags(
        &reference,
        &caulk_image::transport::RegistryOptions::default(),
    )
    .expect("tags are listed");
    tags.sort();
    tags
}

/// A Trivy report about `artifact` listing `fixable` (package, installed,
/// fixed) as vulnerable, or nothing.
fn trivy_report(path: &Path, artifact: &str, fixable: &[(&str, &str, &str)]) {
    let vulnerabilities: Vec<serde_json::Value> = fixable
        .iter()
        .enumerate()
        .map(|(i, (name, installed, fixed))| {
            serde_json::json!({
                "VulnerabilityID": format!("CVE-2024-{:04}", i + 1),
                "PkgName": name,
                "InstalledVersion": installed,
                "FixedVersion": fixed,
                "Severity": "HIGH",
            })
        })
        .collect();
    let report = serde_json::json!({
        "SchemaVersion": 2,
        "ArtifactName": artifact,
        "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12.0"}},
        "Results": [{
            "Target": format!("{artifact} (debian 12.0)"),
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": vulnerabilities,
        }],
    });
    std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
}

fn rows(summary: &serde_json::Value) -> BTreeMap<String, (String, String, String)> {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let source = r["source"].as_str().unwrap();
            let short = source.split_once('/').map_or(source, |(_, rest)| rest).to_owned();
            let target = r["target"].as_str().unwrap_or("-");
            let target = target.rsplit_once(':').map_or(target, |(_, tag)| tag).to_owned();
            (
                short,
                (r["status"].as_str().unwrap().to_owned(), target, r["details"].as_str().unwrap().to_owned()),
            )
        })
        .collect()
}

#[test]
fn copas_bulk_example_runs_unchanged_then_skips_what_reports_call_clean() {
    let sandbox = Sandbox::new();
    let registry = common::registry::Registry::start();
    let layout = fleet_layout(3);
    let push = |app: usize, repo: &str, tag: &str| {
        let source = format!("oci:{}:app-{app}", layout.display());
        success(&run(sandbox.caulk().args([
            "image",
            "copy",
            &source,
            &format!("{}/{repo}:{tag}", registry.addr),
        ])));
    };
    // nginx: pattern ^1\.25\.[0-9]+$, maxTags 2, exclude 1.25.1.
    push(1, "nginx", "1.24.0");
    push(1, "nginx", "1.25.1");
    push(2, "nginx", "1.25.2");
    push(3, "nginx", "1.25.3");
    push(1, "nginx", "1.25.3-rc1");
    // alpine: latest.
    push(1, "alpine", "3.19.1");
    push(2, "alpine", "3.20.0");
    push(3, "alpine", "edge");
    // ubuntu: list [20.04].
    push(1, "ubuntu", "20.04");
    push(2, "ubuntu", "22.04");

    // Copa's own integration config, placeholders filled as Copa's test does.
    let copa =
        std::fs::read_to_string(common::fixtures().join("copa/copacetic/integration/bulk/config-test.yaml"))
            .unwrap();
    let text = copa
        .replace("__NGINX_REPO__", &format!("{}/nginx", registry.addr))
        .replace("__ALPINE_REPO__", &format!("{}/alpine", registry.addr))
        .replace("__UBUNTU_REPO__", &format!("{}/ubuntu", registry.addr));
    let config = sandbox.path().join("bulk.yaml");
    std::fs::write(&config, text).unwrap();

    let out = run(sandbox.caulk().args(["patch", "--json", "--jobs", "2", "--config"]).arg(&config));
    let summary: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    let got = rows(&summary);
    let statuses: BTreeMap<&str, (&str, &str)> =
        got.iter().map(|(k, (s, t, _))| (k.as_str(), (s.as_str(), t.as_str()))).collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("nginx:1.25.3", ("patched", "1.25.3-patched-e2e")),
            ("nginx:1.25.2", ("patched", "1.25.2-patched-e2e")),
            ("alpine:3.20.0", ("patched", "3.20.0-patched-e2e")),
            ("ubuntu:20.04", ("patched", "20.04-patched-e2e")),
        ]),
        "{}",
        stderr(&out)
    );
    for (source, tag) in [("nginx:1.25.3", "1.25.3-patched-e2e"), ("alpine:3.20.0", "3.20.0-patched-e2e")] {
        let (repo, _) = source.split_once(':').unwrap();
        let before = open(&format!("{}/{source}", registry.addr));
        let after = open(&format!("{}/{repo}:{tag}", registry.addr));
        assert_eq!(layers(&after)[..2], layers(&before)[..], "{source}: the original layers stay");
        assert_eq!(layers(&after).len(), 3, "{source}: one layer added");
        assert_eq!(read(&after, "/etc/fleet-id"), read(&before, "/etc/fleet-id"));
        assert_ne!(dpkg_version(&after, "libexpat1"), dpkg_version(&before, "libexpat1"), "{source}");
    }

    // Reports of the patched images: two clean, one still listing a fix.
    let reports = sandbox.mkdir("reports");
    let name = |tag: &str| format!("{}/{tag}", registry.addr);
    trivy_report(&reports.join("one.json"), &name("nginx:1.25.3-patched-e2e"), &[]);
    trivy_report(&reports.join("two.json"), &name("alpine:3.20.0-patched-e2e"), &[]);
    trivy_report(&reports.join("three.json"), &name("ubuntu:20.04-patched-e2e"), &[]);
    trivy_report(
        &reports.join("four.json"),
        &name("nginx:1.25.2-patched-e2e"),
        &[("libexpat1", "2.5.0-1", "2.5.0-1+deb12u9")],
    );
    let out = run(sandbox.caulk().args(["patch", "--json", "--config"]).arg(&config).arg("-r").arg(&reports));
    let summary: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    let got = rows(&summary);
    let (status, target, why) = &got["nginx:1.25.2"];
    assert_eq!((status.as_str(), target.as_str()), ("patched", "1.25.2-patched-e2e-1"), "{why}");
    assert!(why.contains("newer fix exists for libexpat1"), "{why}");
    for source in ["nginx:1.25.3", "alpine:3.20.0", "ubuntu:20.04"] {
        let (status, _, why) = &got[source];
        assert_eq!(status, "skipped", "{source}: {why}");
        assert!(why.contains("lists no fixable vulnerability"), "{source}: {why}");
    }
    // Re-patched from the original: still one caulk layer on the source's two.
    let repatched = open(&name("nginx:1.25.2-patched-e2e-1"));
    assert_eq!(layers(&repatched)[..2], layers(&open(&name("nginx:1.25.2")))[..]);
    assert_eq!(layers(&repatched).len(), 3);
    assert!(tags(&name("nginx")).contains(&"1.25.2-patched-e2e-1".to_owned()));
}

#[test]
fn two_processes_sharing_a_cache_patch_two_images_of_one_base() {
    let sandbox = Sandbox::with_private_cache();
    let layout = fleet_layout(3);
    let source = open(&format!("oci:{}:app-1", layout.display()));
    // One package by report keeps the dpkg work (and the test) short; the
    // caches are what is under test.
    let report = sandbox.path().join("report.json");
    let installed = dpkg_version(&source, "libexpat1");
    trivy_report(&report, "app", &[("libexpat1", &installed, &format!("{installed}+deb12u1"))]);
    let spawn = |app: usize| {
        let dest = sandbox.path().join(format!("out-{app}"));
        let child = sandbox
            .caulk()
            .args(["patch", "--json", "-i", &format!("oci:{}:app-{app}", layout.display())])
            .arg("-r")
            .arg(&report)
            .arg("--dest")
            .arg(format!("oci:{}:patched", dest.display()))
            .arg("--working-folder")
            .arg(sandbox.path().join(format!("work-{app}")))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (dest, child)
    };
    let (dest_1, one) = spawn(1);
    let (dest_2, two) = spawn(2);
    for child in [one, two] {
        success(&child.wait_with_output().unwrap());
    }
    let (a, b) = (
        open(&format!("oci:{}:patched", dest_1.display())),
        open(&format!("oci:{}:patched", dest_2.display())),
    );
    assert_eq!(read(&a, "/etc/fleet-id"), "app-1\n");
    assert_eq!(read(&b, "/etc/fleet-id"), "app-2\n");
    assert_eq!(layers(&a)[0], layers(&source)[0]);
    assert_eq!(layers(&b)[0], layers(&source)[0]);
    assert_eq!(dpkg_version(&a, "libexpat1"), dpkg_version(&b, "libexpat1"));
    assert_ne!(dpkg_version(&a, "libexpat1"), installed, "libexpat1 was not upgraded");
    // One unpacked copy of each layer (base, two tops), nothing half-done.
    let cache = sandbox.cache_dir();
    let unpacked = std::fs::read_dir(cache.join("layers/sha256")).unwrap().count();
    assert_eq!(unpacked, 3);
    assert_eq!(std::fs::read_dir(cache.join("layers/tmp")).unwrap().count(), 0);
    // One apt index cache and one download cache, shared by both runs, and
    // no snapshot left of them (the installs read snapshots).
    let entries: Vec<PathBuf> =
        std::fs::read_dir(cache.join("steps/apt")).unwrap().map(|e| e.unwrap().path()).collect();
    let (snapshots, apt): (Vec<PathBuf>, Vec<PathBuf>) =
        entries.into_iter().partition(|p| p.ends_with(".caulk-snapshots"));
    assert_eq!(apt.len(), 2, "apt caches: {apt:?}");
    for dir in snapshots {
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "snapshots left in {}", dir.display());
    }
    let archives = apt.iter().find(|p| p.join("partial").is_dir()).expect("a download cache");
    let debs: Vec<String> = std::fs::read_dir(archives)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(debs.iter().any(|d| d.starts_with("libexpat1_")), "{debs:?}");
    assert_eq!(std::fs::read_dir(archives.join("partial")).unwrap().count(), 0);
}

#[test]
fn shards_split_a_fleet_between_runners_and_bad_configs_are_named() {
    let sandbox = Sandbox::new();
    let config = sandbox.path().join("fleet.yaml");
    std::fs::write(
        &config,
        "apiVersion: copa.sh/v1alpha1\nkind: PatchConfig\nimages:\n  - name: a\n    image: 127.0.0.1:1/a\n    tags: {strategy: latest, typo: 1}\n",
    )
    .unwrap();
    let out = run(sandbox.caulk().args(["patch", "--config"]).arg(&config));
    let err = common::failure(&out, 2);
    assert!(err.contains("fleet.yaml") && err.contains("unknown field `typo`"), "{err}");
    let out = run(sandbox.caulk().args(["patch", "--shard", "3/2", "--config"]).arg(&config));
    assert!(common::failure(&out, 2).contains("I/N with 1 <= I <= N"));
    let out = run(sandbox.caulk().args(["patch", "-i", "x:1", "--config"]).arg(&config));
    assert!(common::failure(&out, 2).contains("cannot be used with"));
}
