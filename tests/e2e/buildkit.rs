//! `caulk patch --engine buildkit` against Debian's dockerd and its embedded
//! BuildKit (v0.8), started by `tests/scripts/dockerd.sh start` and named by
//! `CAULK_TEST_DOCKER_HOST`: the same image and report through both engines,
//! library patching with the CA bundle mounted, a registry image pulled by
//! BuildKit itself, a distroless image patched from a tooling image, both
//! platforms of an index (arm64 under qemu-user), a build cancelled on the
//! daemon when caulk is stopped, an address nothing listens on, and a local
//! image sent through caulk's session (never in the daemon's image store)
//! whose result keeps a file replaced by rename with its size and mtime.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, TransportOptions};
use common::dpkg::{config, dpkg_ge, layer_digests, versions_in};
use common::{Sandbox, failure, run, success};

/// `docker-unix://SOCKET` of the test daemon.
fn addr() -> String {
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
    let socket = host.strip_prefix("unix://").unwrap_or_else(|| {
        panic!(
            "CAULK_TEST_DOCKER_HOST is not a unix:// socket ({host:?}): start the test daemon with \
             `eval \"$(tests/scripts/dockerd.sh start >/dev/null; tests/scripts/dockerd.sh env)\"`"
        )
    });
    format!("docker-unix://{socket}")
}

fn script_output(script: &str, args: &[&str]) -> PathBuf {
    let path = common::workspace().join("tests/images").join(script);
    let out = Command::new(&path).args(args).output().unwrap();
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A private copy of a cached layout.
fn layout_copy(sandbox: &Sandbox, cached: &Path, name: &str) -> PathBuf {
    let dest = sandbox.path().join(name);
    assert!(Command::new("cp").arg("-a").arg(cached).arg(&dest).status().unwrap().success());
    dest
}

fn apt_report(sandbox: &Sandbox, layout: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let script = common::workspace().join("tests/images/apt-report.py");
    let out = Command::new("python3").arg(script).arg(layout).arg(name).args(packages).output().unwrap();
    assert!(out.status.success(), "apt-report.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = sandbox.path().join(format!("report-{name}.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn open(reference: &str) -> Image {
    Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).expect("the image opens")
}

fn dpkg_versions(image: &Image) -> BTreeMap<String, String> {
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    versions_in(&String::from_utf8(root.read("/var/lib/dpkg/status").unwrap()).unwrap())
}

/// The versions a distroless image lists, one package per status.d file.
fn status_d_versions(image: &Image) -> BTreeMap<String, String> {
    let root = RootFs::open(image.source().clone(), &image.images[0]).unwrap();
    let files = root.glob("/var/lib/dpkg/status.d/*").unwrap();
    let text: Vec<String> = files
        .iter()
        .filter(|f| !f.path.ends_with(".md5sums"))
        .map(|f| String::from_utf8(root.read(&f.path).unwrap()).unwrap())
        .collect();
    versions_in(&text.join("\n\n"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The config without what caulk changes for its layer: the diff_id, the
/// history entry, caulk's labels and the creation time.
fn config_without_caulk(mut config: serde_json::Value) -> serde_json::Value {
    config.as_object_mut().unwrap().remove("created");
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    config["history"].as_array_mut().unwrap().pop();
    if let Some(labels) = config["config"]["Labels"].as_object_mut() {
        labels.retain(|k, _| !k.starts_with("sh.caulk."));
        if labels.is_empty() {
            // Made for caulk's labels in a config that had none.
            config["config"].as_object_mut().unwrap().remove("Labels");
        }
    }
    config
}

fn config_without_caulk_time(mut config: serde_json::Value) -> serde_json::Value {
    config.as_object_mut().unwrap().remove("created");
    config
}

/// `name`'s versions among the distributions in `site` of the image.
fn dist_versions(root: &RootFs, site: &str, name: &str) -> Vec<String> {
    let mut versions = Vec::new();
    for info in root.glob(&format!("/{site}/*.dist-info/METADATA")).unwrap() {
        let text = String::from_utf8(root.read(&info.path).unwrap()).unwrap();
        let field = |f: &str| text.lines().find_map(|l| l.strip_prefix(f)).map(|v| v.trim().to_owned());
        if field("Name:").is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            versions.extend(field("Version:"));
        }
    }
    versions
}

#[test]
fn both_engines_patch_to_the_same_versions_in_one_layer_over_the_original_blobs() {
    let sandbox = Sandbox::new();
    let cached = script_output("vulnerable-debian.sh", &["bookworm"]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let input = format!("oci:{}:bookworm", layout.display());
    let report = apt_report(&sandbox, &layout, "bookworm", &["openssl", "libssl3", "libexpat1"]);
    let engines: [(&str, &[String]); 2] =
        [("local", &["--engine".into(), "local".into()]), ("bk", &["--addr".into(), addr()])];
    for (tag, engine) in engines {
        let summary = json(&success(&run(sandbox
            .caulk()
            .args(["patch", "--json", "-i", &input, "-r"])
            .arg(&report)
            .args(["-t", tag])
            .args(engine))));
        assert_eq!(summary["result"], "patched", "{tag}: {summary:#}");
    }
    let before = open(&input);
    let local = open(&format!("oci:{}:local", layout.display()));
    let buildkit = open(&format!("oci:{}:bk", layout.display()));

    let (old, by_local, by_buildkit) =
        (dpkg_versions(&before), dpkg_versions(&local), dpkg_versions(&buildkit));
    assert_eq!(by_buildkit, by_local, "the same package versions through both engines");
    assert_ne!(by_buildkit["libssl3"], old["libssl3"], "libssl3 moved");

    let original = layer_digests(&before);
    for (engine, image) in [("local", &local), ("buildkit", &buildkit)] {
        let now = layer_digests(image);
        assert_eq!(now.len(), original.len() + 1, "{engine}: exactly one new layer");
        assert_eq!(now[..original.len()], original[..], "{engine}: the original blobs, byte for byte");
        assert_eq!(
            config_without_caulk(config(image)),
            config_without_caulk_time(config(&before)),
            "{engine}: the original config apart from caulk's layer"
        );
    }
    // apt's indexes and downloads stay out of the layer on BuildKit too.
    let root = RootFs::open(buildkit.source().clone(), &buildkit.images[0]).unwrap();
    assert!(root.glob("/var/lib/apt/lists/*Packages*").unwrap().is_empty(), "apt lists left in the image");
}

#[test]
fn library_patching_mounts_the_ca_bundle_without_keeping_it() {
    let sandbox = Sandbox::new();
    let cached = script_output("python-debian.sh", &[]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let input = format!("oci:{}:python", layout.display());
    let site = "usr/local/lib/python3.11/dist-packages";
    let report = sandbox.path().join("report.json");
    let doc = serde_json::json!({
        "SchemaVersion": 2, "ArtifactName": "python", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"}, "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [{"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": [{
            "VulnerabilityID": "CVE-2024-22195", "PkgName": "jinja2", "InstalledVersion": "3.1.2",
            "FixedVersion": "3.1.3", "Status": "fixed", "Severity": "HIGH",
            "PkgPath": format!("{site}/jinja2-3.1.2.dist-info/METADATA"),
            "PkgIdentifier": {"PURL": "pkg:pypi/jinja2@3.1.2"},
        }]}],
    });
    std::fs::write(&report, serde_json::to_vec(&doc).unwrap()).unwrap();
    let summary = json(&success(&run(sandbox
        .caulk()
        .args(["patch", "--json", "--pkg-types", "library", "-i", &input, "-r"])
        .arg(&report)
        .args(["-t", "bk", "--engine", "buildkit", "--addr", &addr()]))));
    assert_eq!(summary["result"], "patched", "{summary:#}");

    let before = open(&input);
    let after = open(&format!("oci:{}:bk", layout.display()));
    let root = RootFs::open(after.source().clone(), &after.images[0]).unwrap();
    assert_eq!(dist_versions(&root, site, "jinja2"), ["3.1.3"], "{summary:#}");
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let old_root = RootFs::open(before.source().clone(), &before.images[0]).unwrap();
    assert_eq!(
        root.read(bundle).unwrap(),
        old_root.read(bundle).unwrap(),
        "the image keeps its own CA bundle"
    );
}

#[test]
fn a_registry_image_is_pulled_by_buildkit_and_written_back_there() {
    let sandbox = Sandbox::new();
    let registry = common::registry::Registry::start();
    let cached = script_output("vulnerable-debian.sh", &["bookworm"]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let remote = format!("{}/caulk-bk/debian:bookworm", registry.addr);
    success(&run(sandbox.caulk().args([
        "image",
        "copy",
        &format!("oci:{}:bookworm", layout.display()),
        &remote,
    ])));
    let report = apt_report(&sandbox, &layout, "bookworm", &["libexpat1"]);
    let summary = json(&success(&run(sandbox
        .caulk()
        .args(["patch", "--json", "-i", &remote, "-r"])
        .arg(&report)
        .args(["--engine", "buildkit", "--addr", &addr()]))));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let patched = open(&format!("{}/caulk-bk/debian:bookworm-patched", registry.addr));
    let before = open(&remote);
    assert_ne!(dpkg_versions(&patched)["libexpat1"], dpkg_versions(&before)["libexpat1"]);
    assert_eq!(layer_digests(&patched)[..layer_digests(&before).len()], layer_digests(&before)[..]);
    assert_eq!(layer_digests(&patched).len(), layer_digests(&before).len() + 1);
}

#[test]
fn an_unreachable_daemon_is_named() {
    let sandbox = Sandbox::new();
    let cached = script_output("vulnerable-debian.sh", &["bookworm"]);
    let socket = sandbox.path().join("nobody.sock");
    let addr = format!("unix://{}", socket.display());
    let out = run(sandbox.caulk().args([
        "patch",
        "-i",
        &format!("oci:{}:bookworm", cached.display()),
        "--engine",
        "buildkit",
        "--addr",
        &addr,
    ]));
    let err = failure(&out, 1);
    assert!(err.contains("BuildKit daemon not reachable at") && err.contains(&addr), "{err}");
    assert!(err.contains("--addr"), "the hint says what to change: {err}");
}

/// Removes images from the test daemon when dropped.
struct DaemonImages(Vec<String>);

impl Drop for DaemonImages {
    fn drop(&mut self) {
        let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
        let _ = Command::new("/usr/bin/docker").args(["-H", &host, "rmi", "-f"]).args(&self.0).output();
    }
}

#[test]
fn a_generated_context_builds_into_the_same_packages() {
    let sandbox = Sandbox::new();
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap();
    let cached = script_output("vulnerable-debian.sh", &["bookworm"]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let tag = std::process::id();
    let (base, built) = (format!("caulk-gen/debian:base-{tag}"), format!("caulk-gen/debian:built-{tag}"));
    let _cleanup = DaemonImages(vec![base.clone(), built.clone()]);
    let in_daemon = format!("docker-daemon:{base}");
    success(&run(sandbox.caulk().env("DOCKER_HOST", &host).args([
        "image",
        "copy",
        &format!("oci:{}:bookworm", layout.display()),
        &in_daemon,
    ])));
    let report = apt_report(&sandbox, &layout, "bookworm", &["openssl", "libssl3", "libexpat1"]);

    let context = sandbox.path().join("context.tar");
    success(&run(sandbox
        .caulk()
        .env("DOCKER_HOST", &host)
        .args(["generate", "-i", &in_daemon, "-r"])
        .arg(&report)
        .arg("-o")
        .arg(&context)));
    let listing = run(Command::new("tar").arg("-tf").arg(&context));
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "Dockerfile\npatch.tar\n");
    // The classic builder, as Debian's docker.io uses by default.
    let build = Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["-H", &host, "build", "--network", "host", "-q", "-t", &built, "-"])
        .stdin(std::fs::File::open(&context).unwrap())
        .output()
        .unwrap();
    assert!(build.status.success(), "docker build: {}", String::from_utf8_lossy(&build.stderr));

    let daemon = TransportOptions { docker_host: Some(host.clone()), ..TransportOptions::default() };
    let from_build =
        Image::open(&ImageRef::parse(&format!("docker-daemon:{built}")).unwrap(), &daemon).unwrap();
    // The report's fixed versions are apt's candidates: what caulk patch
    // installs, and what the built image must have.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let versions = dpkg_versions(&from_build);
    let vulns = doc["Results"][0]["Vulnerabilities"].as_array().unwrap();
    assert!(vulns.len() >= 3, "the image has packages to patch: {doc:#}");
    for vuln in vulns {
        let name = vuln["PkgName"].as_str().unwrap();
        assert_eq!(versions[name], vuln["FixedVersion"].as_str().unwrap(), "{name} after docker build");
    }
}

#[test]
fn a_distroless_image_is_patched_from_a_tooling_image_as_the_local_engine_does() {
    let sandbox = Sandbox::new();
    let cached = script_output("distroless-debian.sh", &[]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let input = format!("oci:{}:distroless", layout.display());
    let tooling = format!("oci:{}:bookworm", script_output("vulnerable-debian.sh", &["bookworm"]).display());
    let before = open(&input);
    let old = status_d_versions(&before);
    // Fixed just above what is installed: any newer upload is the fix.
    let vulns: Vec<serde_json::Value> = ["libssl3", "openssl"]
        .iter()
        .map(|p| {
            serde_json::json!({"VulnerabilityID": format!("TEST-bk-{p}"), "PkgName": p,
                "InstalledVersion": old[*p], "FixedVersion": format!("{}+caulk1", old[*p]),
                "Status": "fixed", "Severity": "HIGH"})
        })
        .collect();
    let report = sandbox.path().join("report.json");
    let doc = serde_json::json!({
        "SchemaVersion": 2, "ArtifactName": "distroless", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"},
                     "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [{"Target": "distroless (debian 12)", "Class": "os-pkgs", "Type": "debian",
                     "Vulnerabilities": vulns}],
    });
    std::fs::write(&report, serde_json::to_vec(&doc).unwrap()).unwrap();
    let patch = |tag: &str, engine: &str| {
        let mut cmd = sandbox.caulk();
        cmd.args(["patch", "--json", "-i", &input, "-r"]).arg(&report);
        cmd.args(["-t", tag, "--engine", engine]);
        if engine == "buildkit" {
            cmd.args(["--addr", &addr()]);
        }
        cmd
    };

    // The host's root cannot be a BuildKit exec's root: refused, naming
    // the way out, before anything is written.
    let out = run(&mut patch("host", "buildkit"));
    assert!(!out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("this machine's own root fs") && err.contains("--tooling-image"), "{err}");

    for (tag, engine) in [("local", "local"), ("bk", "buildkit")] {
        let summary = json(&success(&run(patch(tag, engine).args(["--tooling-image", &tooling]))));
        assert_eq!(summary["result"], "patched", "{engine}: {summary:#}");
    }
    let local = open(&format!("oci:{}:local", layout.display()));
    let buildkit = open(&format!("oci:{}:bk", layout.display()));
    let by_buildkit = status_d_versions(&buildkit);
    assert_eq!(by_buildkit, status_d_versions(&local), "the same versions through both engines");
    for package in ["libssl3", "openssl"] {
        assert!(!dpkg_ge(&old[package], &by_buildkit[package]), "{package} moved: {by_buildkit:?}");
    }
    assert_eq!(old["libc6"], by_buildkit["libc6"], "a package not in the report stayed");
    let original = layer_digests(&before);
    let now = layer_digests(&buildkit);
    assert_eq!(now.len(), original.len() + 1, "exactly one new layer");
    assert_eq!(now[..original.len()], original[..], "the original blobs, byte for byte");
    assert_eq!(config_without_caulk(config(&buildkit)), config_without_caulk_time(config(&before)));
    // Nothing of the tooling image comes along: it was the exec's root,
    // and the result is the mounted image's.
    let root = RootFs::open(buildkit.source().clone(), &buildkit.images[0]).unwrap();
    for absent in ["/usr/bin/apt-get", "/usr/bin/dpkg", "/bin/sh", "/usr/bin/sh"] {
        assert!(!root.exists(absent), "{absent} in the patched distroless image");
    }
}

#[test]
fn each_platform_of_an_index_is_patched_on_buildkit_arm64_under_qemu() {
    let sandbox = Sandbox::new();
    let cached = script_output("multiarch-debian.sh", &["bookworm"]);
    let layout = layout_copy(&sandbox, &cached, "layout");
    let input = format!("oci:{}:bookworm", layout.display());
    // Copa's report directory: one report per platform, each from that
    // platform's own image.
    let reports = sandbox.mkdir("reports");
    let mut fixed = BTreeMap::new();
    for (arch, file) in [("amd64", "linux-amd64.json"), ("arm64", "linux-arm64-v8.json")] {
        let single = script_output("vulnerable-debian.sh", &["bookworm", "", arch]);
        let report = apt_report(&sandbox, &single, "bookworm", &["libexpat1"]);
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(doc["Metadata"]["ImageConfig"]["architecture"], arch, "{doc:#}");
        let version = doc["Results"][0]["Vulnerabilities"][0]["FixedVersion"].as_str().unwrap().to_owned();
        fixed.insert(arch, version);
        std::fs::rename(&report, reports.join(file)).unwrap();
    }

    let summary = json(&success(&run(sandbox
        .caulk()
        .args(["patch", "--json", "-i", &input, "-r"])
        .arg(&reports)
        .args(["--engine", "buildkit", "--addr", &addr()]))));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    assert_eq!(summary["platform"], "linux/amd64, linux/arm64/v8", "{summary:#}");

    let before = open(&input);
    let after = open(&format!("oci:{}:bookworm-patched", layout.display()));
    let of = |image: &Image, arch: &str| {
        let position = image.images.iter().position(|i| i.platform.architecture == arch).unwrap();
        image.images[position].clone()
    };
    for (arch, fixed) in fixed {
        let (old, new) = (of(&before, arch), of(&after, arch));
        let layers = |i: &caulk_image::PlatformImage| -> Vec<String> {
            i.layers.iter().map(|l| l.desc.digest.to_string()).collect()
        };
        assert_eq!(layers(&new).len(), layers(&old).len() + 1, "{arch}: one new layer");
        assert_eq!(layers(&new)[..layers(&old).len()], layers(&old)[..], "{arch}: the original blobs");
        // dpkg of the platform's own root ran (arm64's under qemu) and
        // says the new version.
        let version = |image: &Image, platform| {
            let root = RootFs::open(image.source().clone(), platform).unwrap();
            versions_in(&String::from_utf8(root.read("/var/lib/dpkg/status").unwrap()).unwrap())
                .remove("libexpat1")
                .unwrap()
        };
        let (was, now) = (version(&before, &old), version(&after, &new));
        assert!(!dpkg_ge(&was, &fixed) && dpkg_ge(&now, &fixed), "{arch}: {was} -> {now}, fixed in {fixed}");
    }
}

/// The processes whose command line is exactly `command`.
fn processes(command: &str) -> Vec<String> {
    let out = run(Command::new("pgrep").args(["-x", "-f", command]));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The `asks` test updater and the CSV scanner in a plugin directory, a
/// report with one `asks` finding and the small Debian image: commands of
/// the test's choosing through a real `caulk patch --engine buildkit`.
struct Asks {
    sandbox: Sandbox,
    plugins: PathBuf,
    report: PathBuf,
    input: String,
}

impl Asks {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        let plugins = sandbox.mkdir("plugins");
        for (package, file) in [("caulk-test-asks", "asks.wasm"), ("caulk-example-csv-scanner", "csv.wasm")] {
            std::fs::copy(common::wasm_of(package), plugins.join(file)).unwrap();
        }
        let report = sandbox.path().join("report.csv");
        let csv = "# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n\
                   CVE-2099-0001,thing,1.0,1.1,low,asks\n";
        std::fs::write(&report, csv).unwrap();
        let input = format!("oci:{}:bookworm", common::image_layout("debian.sh").display());
        Self { sandbox, plugins, report, input }
    }

    /// `caulk -vv patch` on BuildKit with `asks.ask=ask` and `extra` flags.
    fn patch(&self, ask: &str, extra: &[&str]) -> Command {
        let mut cmd = self.sandbox.caulk();
        cmd.arg("--plugin-dir").arg(&self.plugins).args(["-vv", "patch", "--json", "--pkg-types", "library"]);
        cmd.args(["-i", &self.input, "-r"]).arg(&self.report);
        cmd.args(["--engine", "buildkit", "--addr", &addr(), "--plugin-opt", &format!("asks.ask={ask}")]);
        cmd.args(extra);
        cmd
    }

    /// What the plugin was told when it asked: its one row's detail.
    fn answered(&self, ask: &str, extra: &[&str]) -> String {
        let summary = json(&success(&run(&mut self.patch(ask, extra))));
        summary["rows"][0]["detail"].as_str().unwrap_or_else(|| panic!("no detail in {summary:#}")).to_owned()
    }
}

#[test]
fn a_question_from_a_tooling_image_sees_the_image_mounted() {
    let asks = Asks::new();
    let tooling = format!("oci:{}:bookworm", script_output("vulnerable-debian.sh", &["bookworm"]).display());
    // `test -d /target/etc` from the tooling image's root.
    let detail =
        asks.answered("host-tooling", &["--grant", "asks:host-tooling", "--tooling-image", &tooling]);
    assert!(detail.starts_with("answered: exit 0"), "{detail}");
    // From this machine's root it cannot run on a daemon: the plugin hears
    // why, and the way out.
    let detail = asks.answered("host-tooling", &["--grant", "asks:host-tooling"]);
    assert!(detail.contains("this machine's own root fs") && detail.contains("--tooling-image"), "{detail}");
}

#[test]
fn a_stopped_caulk_cancels_its_build_on_the_daemon_and_leaves_no_image() {
    let asks = Asks::new();
    // A length no other test sleeps, to find this step's process.
    let seconds = (7000 + std::process::id() % 1000).to_string();
    let sleeper = format!("sleep {seconds}");
    let seconds_opt = format!("asks.seconds={seconds}");
    let patch =
        |ask: &str| asks.patch(ask, &["--plugin-opt", &seconds_opt, "--grant", "asks:image-commands"]);
    let sandbox = &asks.sandbox;

    let log = sandbox.path().join("stopped.log");
    let mut child = patch("step-sleep")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while processes(&sleeper).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "caulk ended early:\n{}", read(&log));
        assert!(started.elapsed() < Duration::from_mins(3), "the step never started:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    let took = stopped.elapsed();
    let err = read(&log);
    assert!(!status.success(), "{err}");
    assert!(took < Duration::from_secs(5), "caulk took {took:?} to stop:\n{err}");
    assert!(err.contains("cancelled") && err.contains("the build there was cancelled"), "{err}");
    // The daemon stops the build: the step's process goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes(&sleeper).is_empty() {
        assert!(Instant::now() < deadline, "the daemon still runs `{sleeper}` 10 s after caulk stopped");
        std::thread::sleep(Duration::from_millis(200));
    }
    // caulk puts nothing into the daemon's image store: the image went in
    // through the session.
    let config = open(&asks.input).images[0].config.desc.digest.to_string();
    assert!(!in_store(&config), "the image was loaded into the daemon's store");

    // The daemon is fine for the next run.
    let summary = json(&success(&run(&mut patch("step"))));
    assert_eq!(summary["result"], "patched", "{summary:#}");
}

#[test]
fn a_local_image_is_sent_not_loaded_and_a_file_replaced_by_rename_is_in_the_layer() {
    let mut asks = Asks::new();
    let layout = common::layout_copy(&asks.sandbox, "debian.sh");
    asks.input = format!("oci:{}:bookworm", layout.display());
    let before = open(&asks.input);
    let config = before.images[0].config.desc.digest.to_string();
    let loaded = || in_store(&config);
    let log = asks.sandbox.path().join("rename.log");
    let mut child = asks
        .patch("step-rename", &["-t", "renamed", "--grant", "asks:image-commands"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(!loaded(), "the image is in the daemon's store during the run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", read(&log));
    assert!(!loaded(), "the image is in the daemon's store after the run");

    let after = open(&format!("oci:{}:renamed", layout.display()));
    let original = layer_digests(&before);
    let now = layer_digests(&after);
    assert_eq!(now.len(), original.len() + 1, "one new layer");
    assert_eq!(now[..original.len()], original[..], "the original blobs, byte for byte");
    let old_root = RootFs::open(before.source().clone(), &before.images[0]).unwrap();
    let new_root = RootFs::open(after.source().clone(), &after.images[0]).unwrap();
    let (old, new) =
        (old_root.read("/etc/debian_version").unwrap(), new_root.read("/etc/debian_version").unwrap());
    let swapped: Vec<u8> =
        old.iter().map(|b| if b.is_ascii_digit() { b'9' - (b - b'0') } else { *b }).collect();
    assert_ne!(old, swapped, "the file has digits to swap");
    assert_eq!(new, swapped, "the renamed file, same size and mtime, is in the layer");
    let (old_info, new_info) =
        (old_root.stat("/etc/debian_version").unwrap(), new_root.stat("/etc/debian_version").unwrap());
    assert_eq!((old_info.size, old_info.mtime), (new_info.size, new_info.mtime), "same size and mtime");
}

/// Whether the daemon's store has the image whose config is `config` (the
/// image ID `docker load` gives it) under a name other than the one
/// caulk-buildkit's own tests load the same Debian image as.
fn in_store(config: &str) -> bool {
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap();
    let out = run(Command::new("/usr/bin/docker").args([
        "-H",
        &host,
        "image",
        "inspect",
        "-f",
        "{{range .RepoTags}}{{println .}}{{end}}",
        config,
    ]));
    out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|t| !t.is_empty() && !t.starts_with("caulk-buildkit-test/"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
