//! `caulk patch` on real Debian images: installed from the release suite
//! only, with the security suite in their sources, so they really are
//! behind; reports made from what apt says now (tests/images/apt-report.py).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use caulk_image::layer::RootFs;
use caulk_image::{Image, ImageRef, TransportOptions};
use common::dpkg::{config, dpkg_ge, layer_digests, versions_in};
use common::{Sandbox, failure, run, stderr, stdout, success};

/// The cached vulnerable layout of `suite`, built once per test process.
fn vulnerable(suite: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(suite) {
        return path.clone();
    }
    let script = common::workspace().join("tests/images/vulnerable-debian.sh");
    let out = Command::new(&script).arg(suite).output().expect("running vulnerable-debian.sh");
    assert!(
        out.status.success(),
        "building the {suite} image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    built.insert(suite.to_owned(), path.clone());
    path
}

/// A private copy of the cached layout, so tests never touch the cache.
fn layout_copy(sandbox: &Sandbox, suite: &str) -> PathBuf {
    let dest = sandbox.path().join(format!("{suite}-layout"));
    let status = Command::new("cp").arg("-a").arg(vulnerable(suite)).arg(&dest).status().unwrap();
    assert!(status.success());
    dest
}

/// A Trivy report of `packages` that apt can move forward in the image.
fn apt_report(sandbox: &Sandbox, layout: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let script = common::workspace().join("tests/images/apt-report.py");
    let out = Command::new("python3").arg(script).arg(layout).arg(name).args(packages).output().unwrap();
    assert!(out.status.success(), "apt-report.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = sandbox.path().join(format!("report-{name}-{}.json", packages.join("-")));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn findings_of(report: &Path) -> BTreeMap<String, (String, String)> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    doc["Results"][0]["Vulnerabilities"]
        .as_array()
        .map(|vulns| {
            vulns
                .iter()
                .map(|v| {
                    (
                        v["PkgName"].as_str().unwrap().to_owned(),
                        (
                            v["InstalledVersion"].as_str().unwrap().to_owned(),
                            v["FixedVersion"].as_str().unwrap().to_owned(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn open(reference: &str) -> Image {
    Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).expect("the image opens")
}

/// Installed package versions in the image's dpkg status.
fn dpkg_versions(image: &Image) -> BTreeMap<String, String> {
    let platform = &image.images[0];
    let root = RootFs::open(image.source().clone(), platform).unwrap();
    versions_in(&String::from_utf8(root.read("/var/lib/dpkg/status").unwrap()).unwrap())
}

/// The digest the layout's index names `name` with.
fn ref_digest(layout: &Path, name: &str) -> Option<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().iter().find_map(|m| {
        (m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .then(|| m["digest"].as_str().unwrap().to_owned())
    })
}

/// Runs `argv` inside the image (its layers unpacked, in the local sandbox).
fn run_in_image(sandbox: &Sandbox, reference: &str, argv: &[&str]) -> String {
    let image = open(reference);
    let platform = &image.images[0];
    let cache = caulk_image::layer::LayerCache::new(sandbox.path().join("run-layers")).unwrap();
    let options = caulk_image::layer::UnpackOptions {
        whiteouts: caulk_image::layer::WhiteoutFormat::OverlayTrusted,
        preserve_ownership: true,
        device_nodes: true,
    };
    let layers = cache.unpack_image(image.source().as_ref(), platform, &options).unwrap();
    let executor =
        caulk_exec::LocalExecutor::new(caulk_exec::ExecutorConfig::new(sandbox.mkdir("run-work"))).unwrap();
    let session = executor.prepare(&layers, caulk_exec::CancelToken::new()).unwrap();
    let out = session.probe(&caulk_exec::Probe::new(argv.iter().copied())).unwrap();
    assert_eq!(out.exit_code, Some(0), "{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The OpenVEX 0.2.0 document rules: required fields, no unknown ones,
/// statuses from the spec's list.
fn assert_openvex(doc: &serde_json::Value) {
    let allowed = |value: &serde_json::Value, keys: &[&str], what: &str| {
        for key in value.as_object().unwrap_or_else(|| panic!("{what} is not an object")).keys() {
            assert!(keys.contains(&key.as_str()), "{what} has a field the spec does not define: {key}");
        }
    };
    for key in ["@context", "@id", "author", "timestamp", "version", "statements"] {
        assert!(doc.get(key).is_some(), "the document lacks required `{key}`");
    }
    allowed(
        doc,
        &[
            "@context",
            "@id",
            "author",
            "role",
            "timestamp",
            "last_updated",
            "version",
            "tooling",
            "statements",
        ],
        "document",
    );
    assert!(doc["@context"].as_str().unwrap().starts_with("https://openvex.dev/ns"));
    assert!(doc["version"].as_u64().unwrap() >= 1);
    assert!(humantime::parse_rfc3339(doc["timestamp"].as_str().unwrap()).is_ok(), "timestamp is RFC 3339");
    let statements = doc["statements"].as_array().unwrap();
    assert!(!statements.is_empty(), "statements must not be empty");
    for s in statements {
        allowed(
            s,
            &[
                "@id",
                "version",
                "vulnerability",
                "timestamp",
                "last_updated",
                "products",
                "status",
                "supplier",
                "status_notes",
                "justification",
                "impact_statement",
                "action_statement",
                "action_statement_timestamp",
            ],
            "statement",
        );
        assert!(s["vulnerability"]["name"].is_string(), "vulnerability.name is required");
        allowed(&s["vulnerability"], &["@id", "name", "description", "aliases"], "vulnerability");
        assert!(
            ["not_affected", "affected", "fixed", "under_investigation"]
                .contains(&s["status"].as_str().unwrap())
        );
        for product in s["products"].as_array().unwrap() {
            allowed(product, &["@id", "identifiers", "hashes", "subcomponents"], "product");
            if let Some(identifiers) = product.get("identifiers") {
                allowed(identifiers, &["purl", "cpe22", "cpe23"], "identifiers");
            }
            for sub in product["subcomponents"].as_array().unwrap() {
                allowed(sub, &["@id", "identifiers", "hashes"], "subcomponent");
            }
        }
    }
}

/// This process's umask, from `/proc/self/status`.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask in /proc/self/status");
    u32::from_str_radix(field.trim(), 8).unwrap()
}

/// Patches a vulnerable image of `suite` by report and checks everything the
/// issue asks of a patched image.
fn patch_by_report(suite: &str, packages: &[&str]) {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, suite);
    let input = format!("oci:{}:{suite}", layout.display());
    let input_digest = ref_digest(&layout, suite).unwrap();
    let before = open(&input);
    let report = apt_report(&sandbox, &layout, suite, packages);
    let wanted = findings_of(&report);
    assert!(!wanted.is_empty(), "the {suite} image is not behind its security suite for {packages:?}");
    let vex = sandbox.path().join("vex.json");

    let out =
        run(sandbox.caulk().args(["patch", "--json", "-i", &input, "-r"]).arg(&report).arg("-o").arg(&vex));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched");
    let output = format!("oci:{}:{suite}-patched", layout.display());
    let after = open(&output);

    // Exactly one new layer; the original blobs byte-identical.
    let (old_layers, new_layers) = (layer_digests(&before), layer_digests(&after));
    assert_eq!(new_layers.len(), old_layers.len() + 1);
    assert_eq!(new_layers[..old_layers.len()], old_layers[..]);
    for digest in &old_layers {
        let blob = layout.join("blobs").join(digest.replace(':', "/"));
        let original = vulnerable(suite).join("blobs").join(digest.replace(':', "/"));
        assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(&original).unwrap(), "{digest} changed");
    }
    // The input untouched.
    assert_eq!(ref_digest(&layout, suite).unwrap(), input_digest);

    // What caulk wrote is readable by other users, as any other file made
    // now (0666 less the umask), not left at a temp file's 0600.
    let written = new_layers.last().unwrap().replace(':', "/");
    for file in [layout.join("index.json"), layout.join("blobs").join(written), vex.clone()] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions()) & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "{} has mode {mode:o}", file.display());
    }

    // Every fixed version reached.
    let versions = dpkg_versions(&after);
    for (package, (installed, fixed)) in &wanted {
        let now = &versions[package];
        assert!(dpkg_ge(now, fixed), "{package}: {now} is below the fixed {fixed}");
        assert!(!dpkg_ge(installed, fixed), "{package} was not behind");
    }

    // Config preserved, history extended, caulk's labels added.
    let (old_config, new_config) = (config(&before), config(&after));
    for key in ["Entrypoint", "Cmd", "Env", "User", "WorkingDir", "ExposedPorts", "Volumes"] {
        assert_eq!(new_config["config"][key], old_config["config"][key], "config.{key} changed");
    }
    assert_eq!(new_config["config"]["Labels"]["org.example.suite"], suite);
    assert_eq!(new_config["config"]["Labels"]["sh.caulk.base.layers"], old_layers.len().to_string());
    let history = new_config["history"].as_array().unwrap();
    assert_eq!(history.len(), old_config["history"].as_array().unwrap().len() + 1);
    assert!(history.last().unwrap()["created_by"].as_str().unwrap().contains("caulk patch"));

    // The patched image runs.
    let version = run_in_image(&sandbox, &output, &["openssl", "version"]);
    assert!(version.starts_with("OpenSSL "), "{version}");

    // The VEX lists exactly what was fixed.
    let doc = json(&std::fs::read_to_string(&vex).unwrap());
    assert_openvex(&doc);
    let stated: BTreeSet<String> = doc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vulnerability"]["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = wanted.keys().map(|p| format!("TEST-{suite}-{p}")).collect();
    assert_eq!(stated, expected);
    let digest = summary["digest"].as_str().unwrap();
    for s in doc["statements"].as_array().unwrap() {
        let product = s["products"][0]["@id"].as_str().unwrap();
        assert!(
            product.starts_with("pkg:oci/") && product.contains(&digest.replace(':', "%3A")),
            "{product}"
        );
        for sub in s["products"][0]["subcomponents"].as_array().unwrap() {
            let purl = sub["@id"].as_str().unwrap();
            assert!(
                purl.starts_with("pkg:deb/debian/")
                    && purl.contains("arch=amd64")
                    && purl.contains("distro=debian-"),
                "{purl}"
            );
        }
    }
}

#[test]
fn patches_debian_12_by_report() {
    patch_by_report("bookworm", &["openssl", "libssl3", "libexpat1", "ca-certificates", "tzdata"]);
}

#[test]
fn patches_debian_11_by_report() {
    patch_by_report("bullseye", &["openssl", "libssl1.1", "libexpat1", "tzdata"]);
}

#[test]
fn patches_debian_13_by_report() {
    // trixie's point releases fold most security fixes into the release
    // suite, so fewer packages are behind: take every one that is.
    patch_by_report("trixie", &["--all-behind"]);
}

#[test]
fn update_all_mode_brings_every_package_up_to_date() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let input = format!("oci:{}:bookworm", layout.display());
    let vex = sandbox.path().join("vex.json");
    let summary = json(&success(&run(sandbox
        .caulk()
        .args(["patch", "--json", "-i", &input, "-t", "all", "-o"])
        .arg(&vex))));
    assert_eq!(summary["result"], "patched");
    assert_eq!(summary["mode"], "all");
    // No report, so no vulnerability to state: -o says so rather than
    // writing a document OpenVEX's schema rejects.
    let why = summary["vex_not_written"].as_str().unwrap_or_else(|| panic!("{summary:#}"));
    assert!(why.contains("no vulnerability a report named was fixed"), "{why}");
    assert!(summary["vex"].is_null() && !vex.exists());
    let after = open(&format!("oci:{}:all", layout.display()));
    let versions = dpkg_versions(&after);
    let behind = findings_of(&apt_report(&sandbox, &layout, "all", &["openssl", "libssl3", "libexpat1"]));
    assert!(behind.is_empty(), "still behind after update-all: {behind:?}");
    assert!(versions.contains_key("openssl"));
    let patched: Vec<&str> = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "patched")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(patched.contains(&"libssl3"), "{patched:?}");
}

#[test]
fn failures_write_nothing_unless_ignored() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let input = format!("oci:{}:bookworm", layout.display());
    // libexpat1 can move; `nope-caulk` is not installed; tar's fix does not exist.
    let report = apt_report(&sandbox, &layout, "bookworm", &["libexpat1", "nope-caulk"]);
    let mut doc = json(&std::fs::read_to_string(&report).unwrap());
    let vulns = doc["Results"][0]["Vulnerabilities"].as_array_mut().unwrap();
    let installed_tar = dpkg_versions(&open(&input))["tar"].clone();
    vulns.push(serde_json::json!({
        "VulnerabilityID": "TEST-unreachable-tar", "PkgName": "tar", "InstalledVersion": installed_tar,
        "FixedVersion": "99.0-1", "Status": "fixed", "Severity": "HIGH"
    }));
    std::fs::write(&report, serde_json::to_vec(&doc).unwrap()).unwrap();
    let work = sandbox.mkdir("work");

    let out = run(sandbox
        .caulk()
        .args(["patch", "-i", &input, "-r"])
        .arg(&report)
        .arg("--working-folder")
        .arg(&work));
    let err = failure(&out, 1);
    assert!(err.contains("updates failed") && err.contains("--ignore-errors"), "{err}");
    assert!(common::stdout(&out).contains("tar"), "the summary names the failure");
    assert_eq!(ref_digest(&layout, "bookworm-patched"), None, "no image was written");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary files were left in {}",
        work.display()
    );

    let vex = sandbox.path().join("vex.json");
    let out = run(sandbox
        .caulk()
        .args(["patch", "--json", "--ignore-errors", "-i", &input, "-r"])
        .arg(&report)
        .arg("-o")
        .arg(&vex));
    let summary = json(&success(&out));
    let status = |name: &str| {
        summary["rows"].as_array().unwrap().iter().find(|r| r["name"] == name).map(|r| r["status"].clone())
    };
    assert_eq!(status("libexpat1"), Some("patched".into()));
    assert_eq!(status("tar"), Some("failed".into()));
    assert_eq!(status("nope-caulk"), Some("skipped".into()));
    assert!(ref_digest(&layout, "bookworm-patched").is_some());
    let vex = json(&std::fs::read_to_string(&vex).unwrap());
    let stated: Vec<&str> = vex["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vulnerability"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(stated, ["TEST-bookworm-libexpat1"], "failures and skips stay out of the VEX");
}

#[test]
fn nothing_to_patch_writes_nothing() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let input = format!("oci:{}:bookworm", layout.display());
    let report = sandbox.path().join("clean.json");
    std::fs::write(
        &report,
        r#"{"SchemaVersion": 2, "ArtifactName": "x", "Metadata": {"OS": {"Family": "debian", "Name": "12"}},
            "Results": [{"Target": "x", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": [
              {"VulnerabilityID": "TEST-1", "PkgName": "zlib1g", "InstalledVersion": "1:1.2.13.dfsg-1", "Status": "affected", "Severity": "LOW"}]}]}"#,
    )
    .unwrap();
    let vex = sandbox.path().join("vex.json");
    let out = run(sandbox.caulk().args(["patch", "-i", &input, "-r"]).arg(&report).arg("-o").arg(&vex));
    let text = success(&out);
    assert!(text.contains("nothing to patch"), "{text}");
    assert_eq!(ref_digest(&layout, "bookworm-patched"), None);
    assert!(
        text.contains(&format!("no VEX document written to {}: nothing was patched", vex.display())),
        "{text}"
    );
    assert!(!vex.exists());
}

#[test]
fn a_patched_image_patched_again_still_has_one_caulk_layer() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let input = format!("oci:{}:bookworm", layout.display());
    let original_layers = layer_digests(&open(&input));
    let first = apt_report(&sandbox, &layout, "bookworm", &["libexpat1"]);
    success(&run(sandbox.caulk().args(["patch", "-i", &input, "-t", "p1", "-r"]).arg(&first)));
    let once = format!("oci:{}:p1", layout.display());
    let second = apt_report(&sandbox, &layout, "p1", &["openssl", "libssl3", "libexpat1"]);
    success(&run(sandbox.caulk().args(["patch", "-i", &once, "-t", "p2", "-r"]).arg(&second)));
    let twice = open(&format!("oci:{}:p2", layout.display()));
    let layers = layer_digests(&twice);
    assert_eq!(layers.len(), original_layers.len() + 1, "one caulk layer on top of the original");
    assert_eq!(layers[..original_layers.len()], original_layers[..]);
    let versions = dpkg_versions(&twice);
    for (package, (_, fixed)) in findings_of(&first).into_iter().chain(findings_of(&second)) {
        assert!(dpkg_ge(&versions[&package], &fixed), "{package} lost its fix on re-patching");
    }
    let history = config(&twice)["history"].as_array().unwrap().len();
    assert_eq!(history, config(&open(&input))["history"].as_array().unwrap().len() + 1);
}

#[test]
fn a_timeout_stops_the_run_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let input = format!("oci:{}:bookworm", layout.display());
    let work = sandbox.mkdir("work");
    // Update-all downloads and installs for seconds: 2 s is never enough.
    let out =
        run(sandbox.caulk().args(["patch", "-i", &input, "--timeout", "2s", "--working-folder"]).arg(&work));
    let err = failure(&out, 1);
    assert!(err.contains("cancelled") || err.contains("timeout"), "{err}");
    assert_eq!(ref_digest(&layout, "bookworm-patched"), None);
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "{}", stderr(&out));
}

#[test]
fn patches_an_image_in_a_registry_and_names_it_there_in_the_vex() {
    let sandbox = Sandbox::new();
    let registry = common::registry::Registry::start();
    let layout = layout_copy(&sandbox, "bookworm");
    let remote = format!("{}/team/app/debian:bookworm", registry.addr);
    success(&run(sandbox.caulk().args([
        "image",
        "copy",
        &format!("oci:{}:bookworm", layout.display()),
        &remote,
    ])));
    let report = apt_report(&sandbox, &layout, "bookworm", &["libexpat1"]);
    let vex = sandbox.path().join("vex.json");
    let out =
        run(sandbox.caulk().args(["patch", "--json", "-i", &remote, "-r"]).arg(&report).arg("-o").arg(&vex));
    let summary = json(&success(&out));
    let patched = format!("{}/team/app/debian:bookworm-patched", registry.addr);
    assert_eq!(summary["destination"], format!("docker://{patched}"));
    let (before, after) = (open(&remote), open(&patched));
    assert_eq!(layer_digests(&after).len(), layer_digests(&before).len() + 1);
    assert_eq!(layer_digests(&after)[..1], layer_digests(&before)[..]);
    // skopeo, independently, finds the image where the summary says.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{patched}")])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let skopeo: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(skopeo["Digest"], summary["digest"]);
    // The VEX product is the image by digest, which scanners match with
    // their own qualifiers; its full URL keeps the registry, the namespace
    // and the tag.
    let doc = json(&std::fs::read_to_string(&vex).unwrap());
    assert_openvex(&doc);
    let product = &doc["statements"][0]["products"][0];
    let digest = skopeo["Digest"].as_str().unwrap().replace(':', "%3A");
    assert_eq!(product["@id"], format!("pkg:oci/debian@{digest}"));
    let full = product["identifiers"]["purl"].as_str().unwrap();
    let port = registry.addr.rsplit(':').next().unwrap();
    assert!(full.starts_with(&format!("pkg:oci/debian@{digest}?")), "{full}");
    assert!(full.contains(&format!("repository_url=127.0.0.1%3A{port}/team/app/debian")), "{full}");
    assert!(full.contains("tag=bookworm-patched"), "{full}");
}

/// The entries of a gzipped layer blob with everything tar shows about
/// them, for saying what differs between two layers that should not.
fn layer_listing(layout: &Path, digest: &str) -> Vec<String> {
    let blob = layout.join("blobs").join(digest.replace(':', "/"));
    let out = run(Command::new("tar").args(["--full-time", "-tvzf"]).arg(&blob));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn the_same_inputs_with_source_date_epoch_give_the_same_digest() {
    let sandbox = Sandbox::new();
    // Two copies of one image, patched under the same name: the VEX names it.
    let layout = layout_copy(&sandbox, "bookworm");
    let twin = sandbox.path().join("twin");
    assert!(Command::new("cp").arg("-a").arg(&layout).arg(&twin).status().unwrap().success());
    let input = format!("oci:{}:bookworm", layout.display());
    let report = apt_report(&sandbox, &layout, "bookworm", &["openssl", "libssl3", "libexpat1"]);
    let patch = |layout: &Path, vex: &Path| {
        let out = run(sandbox
            .caulk()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["patch", "--json", "-i", &format!("oci:{}:bookworm", layout.display()), "-t", "a", "-r"])
            .arg(&report)
            .arg("-o")
            .arg(vex));
        json(&success(&out))
    };
    let (vex_a, vex_b) = (sandbox.path().join("a.json"), sandbox.path().join("b.json"));
    let a = patch(&layout, &vex_a);
    let b = patch(&twin, &vex_b);
    let new_layer =
        |layout: &Path| layer_digests(&open(&format!("oci:{}:a", layout.display()))).pop().unwrap();
    let (layer_a, layer_b) = (new_layer(&layout), new_layer(&twin));
    if layer_a != layer_b {
        let (la, lb) = (layer_listing(&layout, &layer_a), layer_listing(&twin, &layer_b));
        let differ: Vec<_> =
            la.iter().filter(|l| !lb.contains(l)).chain(lb.iter().filter(|l| !la.contains(l))).collect();
        panic!(
            "two runs wrote different layers; entries whose metadata differ (none: contents):\n{differ:#?}"
        );
    }
    assert_eq!(a["digest"], b["digest"], "one layer, but different images");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(read(&vex_a), read(&vex_b), "different VEX documents");
    let created = config(&open(&format!("oci:{}:a", layout.display())))["created"].clone();
    assert_eq!(created, "2023-11-14T22:13:20Z");

    // Another time is another image, and writing it over `a` says what `a`
    // named before; -v names each step once.
    let out = run(sandbox
        .caulk()
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .args(["patch", "-v", "-i", &input, "-t", "a", "-r"])
        .arg(&report));
    let text = success(&out);
    let old = a["digest"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "{}:a already existed ({old}); it now names the patched image",
            layout.display()
        )),
        "{text}"
    );
    let err = stderr(&out);
    assert!(err.contains(&format!("already existed ({old})")), "the replacement is also a warning:\n{err}");
    assert!(!err.contains("Some("), "{err}");
    let steps: Vec<&str> = err.lines().filter(|l| l.trim_start().starts_with("INFO step ")).collect();
    assert!(!steps.is_empty(), "{err}");
    for line in &steps {
        let summary = line.split_once(": ").map_or(*line, |(_, s)| s);
        assert_eq!(err.matches(summary).count(), 1, "`{summary}` logged more than once:\n{err}");
    }
    assert!(!err.contains('\u{1b}'), "no colour off a terminal:\n{err}");
}

#[test]
fn an_image_with_no_layers_has_no_operating_system() {
    let sandbox = Sandbox::new();
    let layout = sandbox.mkdir("empty");
    let put = |bytes: &[u8]| {
        let digest = caulk_image::Digest::of(bytes);
        let dir = layout.join("blobs/sha256");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(digest.hex()), bytes).unwrap();
        serde_json::json!({"digest": digest.to_string(), "size": bytes.len()})
    };
    let config =
        put(br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#);
    let mut config_desc = config.clone();
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": []});
    let mut manifest_desc = put(&serde_json::to_vec(&manifest).unwrap());
    manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "empty"});
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [manifest_desc]})).unwrap(),
    )
    .unwrap();
    let input = format!("oci:{}:empty", layout.display());
    let err = failure(&run(sandbox.caulk().args(["patch", "-i", &input])), 1);
    assert!(err.contains("no operating system found (the image has no layers)"), "{err}");
    assert!(!err.contains("nothing to patch"), "{err}");
    assert_eq!(err.matches(&layout.display().to_string()).count(), 1, "the image is named once:\n{err}");
}

#[test]
fn copying_a_docker_archive_into_an_oci_layout_gives_what_skopeo_reads() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let archive = format!("docker-archive:{}/debian.tar:debian:12", sandbox.path().display());
    success(&run(sandbox.caulk().args([
        "image",
        "copy",
        &format!("oci:{}:bookworm", layout.display()),
        &archive,
    ])));

    let out = sandbox.path().join("out");
    let dest = format!("oci:{}:t", out.display());
    let text = success(&run(sandbox.caulk().args(["image", "copy", &archive, &dest])));
    assert!(text.contains("converted Docker v2 schema 2 media types to OCI"), "{text}");
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().unwrap();
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let inspected: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &dest])).unwrap();
    let archived = open(&archive);
    let layers: Vec<String> = layer_digests(&archived);
    assert_eq!(inspected["Layers"], serde_json::json!(layers), "layer bytes unchanged");
    skopeo(&["copy", &dest, &format!("oci:{}/onward:x", sandbox.path().display())]);

    // --preserve-digests keeps the Docker manifest, as skopeo's flag does,
    // and says what that costs; in colour only when asked.
    let kept = format!("oci:{}/kept:t", sandbox.path().display());
    let out = run(sandbox.caulk().args(["image", "copy", "--preserve-digests", &archive, &kept]));
    success(&out);
    assert_eq!(open(&kept).top.digest, archived.top.digest);
    let err = stderr(&out);
    assert!(err.contains("keeps Docker media types") && !err.contains('\u{1b}'), "{err}");
    let out = run(sandbox.caulk().args([
        "image",
        "copy",
        "--color",
        "always",
        "--preserve-digests",
        &archive,
        &kept,
    ]));
    success(&out);
    assert!(stderr(&out).contains('\u{1b}'), "--color always colours: {}", stderr(&out));
}

#[test]
fn patch_help_sets_global_options_apart() {
    let sandbox = Sandbox::new();
    let help = success(&run(sandbox.caulk().args(["patch", "--help"])));
    let heading = help.find("Global options:").unwrap_or_else(|| panic!("{help}"));
    assert!(help.find("--image").unwrap() < heading, "{help}");
    for global in ["--plugin-dir", "--verbose", "--color", "--docker-host"] {
        assert!(help.find(global).unwrap() > heading, "{global} is not under Global options:\n{help}");
    }
}

#[test]
fn a_source_date_epoch_that_is_not_a_number_is_refused() {
    let sandbox = Sandbox::new();
    let out =
        run(sandbox.caulk().env("SOURCE_DATE_EPOCH", "yesterday").args(["patch", "-i", "oci:/nowhere:x"]));
    let err = failure(&out, 2);
    assert!(err.contains("SOURCE_DATE_EPOCH=\"yesterday\" is not a whole number of seconds"), "{err}");
}

/// The cached distroless-style layout (tests/images/distroless-debian.sh).
fn distroless() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let script = common::workspace().join("tests/images/distroless-debian.sh");
            let out = Command::new(&script).output().expect("running distroless-debian.sh");
            assert!(
                out.status.success(),
                "distroless-debian.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// `status.d/NAME` files of the image, by package: version and text.
fn status_d(image: &Image) -> BTreeMap<String, (String, String)> {
    let platform = &image.images[0];
    let root = RootFs::open(image.source().clone(), platform).unwrap();
    let mut found = BTreeMap::new();
    for path in root.glob("/var/lib/dpkg/status.d/*").unwrap() {
        let path = path.path;
        if path.ends_with(".md5sums") {
            continue;
        }
        let text = String::from_utf8(root.read(&path).unwrap()).unwrap();
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()));
        found.insert(field("Package:").unwrap(), (field("Version:").unwrap(), text));
    }
    found
}

/// The candidate of `package` in this machine's apt sources (the same
/// Debian release as the image's, with its security and updates suites).
fn apt_candidate(package: &str) -> String {
    let out = run(Command::new("apt-cache").args(["policy", package]));
    stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:").map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("apt-cache policy {package} names no candidate"))
}

/// A Trivy report of `packages` of the distroless image, each fixed in
/// this machine's candidate.
fn distroless_report(
    sandbox: &Sandbox,
    image: &Image,
    packages: &[&str],
) -> (PathBuf, BTreeMap<String, String>) {
    let installed = status_d(image);
    let mut fixed = BTreeMap::new();
    let vulns: Vec<serde_json::Value> = packages
        .iter()
        .map(|p| {
            let (version, _) = &installed[*p];
            let candidate = apt_candidate(p);
            assert!(!dpkg_ge(version, &candidate), "{p} {version} is not behind the candidate {candidate}");
            fixed.insert((*p).to_owned(), candidate.clone());
            serde_json::json!({"VulnerabilityID": format!("TEST-distroless-{p}"), "PkgName": p,
                "InstalledVersion": version, "FixedVersion": candidate, "Status": "fixed", "Severity": "HIGH"})
        })
        .collect();
    let report = serde_json::json!({
        "SchemaVersion": 2, "ArtifactName": "distroless", "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12"},
                     "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [{"Target": "distroless (debian 12)", "Class": "os-pkgs", "Type": "debian",
                     "Vulnerabilities": vulns}],
    });
    let path = sandbox.path().join("distroless-report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    (path, fixed)
}

/// Patches the distroless image by report, from `tooling` (none: the
/// host's root), and checks what the issue asks of it.
fn patch_distroless(tooling: Option<&str>) {
    let sandbox = Sandbox::new();
    let layout = sandbox.path().join("distroless-layout");
    assert!(Command::new("cp").arg("-a").arg(distroless()).arg(&layout).status().unwrap().success());
    let input = format!("oci:{}:distroless", layout.display());
    let before = open(&input);
    let (report, fixed) = distroless_report(&sandbox, &before, &["libssl3", "openssl"]);
    let vex = sandbox.path().join("vex.json");
    let mut cmd = sandbox.caulk();
    cmd.args(["patch", "--json", "-i", &input, "-r"]).arg(&report).arg("-o").arg(&vex);
    if let Some(tooling) = tooling {
        cmd.args(["--tooling-image", tooling]);
    }
    let summary = json(&success(&run(&mut cmd)));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let after = open(&format!("oci:{}:distroless-patched", layout.display()));

    // One new layer over byte-identical blobs; the config kept.
    let (old_layers, new_layers) = (layer_digests(&before), layer_digests(&after));
    assert_eq!(new_layers.len(), old_layers.len() + 1);
    assert_eq!(new_layers[..old_layers.len()], old_layers[..]);
    for digest in &old_layers {
        let path = |root: &Path| root.join("blobs").join(digest.replace(':', "/"));
        assert_eq!(std::fs::read(path(&layout)).unwrap(), std::fs::read(path(&distroless())).unwrap());
    }
    let (old_config, new_config) = (config(&before), config(&after));
    for key in ["Entrypoint", "Cmd", "Env", "User", "WorkingDir"] {
        assert_eq!(new_config["config"][key], old_config["config"][key], "config.{key} changed");
    }

    // status.d says the fixed versions, in the image's style: one file per
    // package, no Status field (the image's had none), md5sums beside it.
    let (old, new) = (status_d(&before), status_d(&after));
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>(),
        "no package file added or lost"
    );
    for (package, fixed) in &fixed {
        let (version, text) = &new[package];
        assert!(dpkg_ge(version, fixed), "{package}: {version} is below the fixed {fixed}");
        assert!(!text.contains("Status:"), "{package}'s status.d file gained a Status field:\n{text}");
    }
    assert_eq!(old["libc6"], new["libc6"], "a package not in the report changed");

    // The layer holds no dpkg database the image did not have.
    let listing = layer_listing(&layout, new_layers.last().unwrap());
    let names: Vec<&str> = listing
        .iter()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|n| n.trim_start_matches("./"))
        .collect();
    assert!(names.contains(&"var/lib/dpkg/status.d/libssl3"), "{names:#?}");
    assert!(names.contains(&"var/lib/dpkg/status.d/libssl3.md5sums"), "{names:#?}");
    for name in &names {
        let in_dpkg = name.starts_with("var/lib/dpkg/")
            && *name != "var/lib/dpkg/"
            && !name.starts_with("var/lib/dpkg/status.d/");
        assert!(
            !in_dpkg && !name.contains("caulk-dpkg") && !name.starts_with("caulk"),
            "{name} in the layer"
        );
    }

    // The patched openssl runs, with the new library.
    let upstream = new["openssl"].0.split('-').next().unwrap().to_owned();
    let patched = format!("oci:{}:distroless-patched", layout.display());
    let version = run_in_image(&sandbox, &patched, &["/usr/bin/openssl", "version"]);
    assert!(
        version.contains(&format!("OpenSSL {upstream} "))
            && version.contains(&format!("Library: OpenSSL {upstream} ")),
        "{version}"
    );

    // VEX subcomponents are deb purls of the distroless image.
    let doc = json(&std::fs::read_to_string(&vex).unwrap());
    assert_openvex(&doc);
    let purls: Vec<&str> = doc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["products"][0]["subcomponents"].as_array().unwrap())
        .map(|s| s["@id"].as_str().unwrap())
        .collect();
    assert!(
        purls.iter().any(|p| p.starts_with("pkg:deb/debian/libssl3@") && p.contains("distro=debian-12")),
        "{purls:?}"
    );
}

#[test]
fn patches_a_distroless_debian_image_from_the_hosts_root() {
    patch_distroless(None);
}

#[test]
fn patches_a_distroless_debian_image_from_a_tooling_image() {
    let tooling = format!("oci:{}:bookworm", vulnerable("bookworm").display());
    patch_distroless(Some(&tooling));
}

/// The dpkg database's files in a new layer that the image did not have
/// (status.d entries and their md5sums are the image's own).
fn dpkg_leftovers(layout: &Path, layer: &str) -> Vec<String> {
    layer_listing(layout, layer)
        .iter()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|n| n.trim_start_matches("./").to_owned())
        .filter(|n| {
            let in_dpkg = n.starts_with("var/lib/dpkg/")
                && n != "var/lib/dpkg/"
                && !n.starts_with("var/lib/dpkg/status.d/");
            in_dpkg || n.contains("caulk")
        })
        .collect()
}

#[test]
fn update_all_moves_every_distroless_package_with_a_newer_version() {
    let sandbox = Sandbox::new();
    let layout = common::layout_copy(&sandbox, "distroless-debian.sh");
    let input = format!("oci:{}:distroless", layout.display());
    let before = open(&input);
    let summary = json(&success(&run(sandbox.caulk().args(["patch", "--json", "-i", &input]))));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let after = open(&format!("oci:{}:distroless-patched", layout.display()));
    assert_eq!(layer_digests(&after).len(), layer_digests(&before).len() + 1);

    // Every package is at this machine's candidate (the same release with
    // its security and updates suites), and at least one moved.
    let (old, new) = (status_d(&before), status_d(&after));
    assert_eq!(old.keys().collect::<Vec<_>>(), new.keys().collect::<Vec<_>>());
    let mut moved = 0;
    for (package, (version, text)) in &new {
        let candidate = apt_candidate(package);
        assert!(dpkg_ge(version, &candidate), "{package}: {version} is below the candidate {candidate}");
        assert!(!text.contains("Status:"), "{package}'s status.d file gained a Status field:\n{text}");
        moved += usize::from(*version != old[package].0);
    }
    assert!(moved > 0, "nothing moved: the test image is not behind");
    // The packages the test image is built behind on moved, each to the
    // candidate: a machine whose apt is as old as the image fails here
    // rather than passing with nothing to compare.
    for package in ["libssl3", "openssl"] {
        let (was, now) = (&old[package].0, &new[package].0);
        assert!(
            !dpkg_ge(was, &apt_candidate(package)),
            "{package} {was} is not behind this machine's candidate"
        );
        assert_eq!(*now, apt_candidate(package), "{package} moved from {was}");
    }
    let last = layer_digests(&after).pop().unwrap();
    assert_eq!(dpkg_leftovers(&layout, &last), Vec::<String>::new());
    let version = run_in_image(
        &sandbox,
        &format!("oci:{}:distroless-patched", layout.display()),
        &["/usr/bin/openssl", "version"],
    );
    assert!(
        version.contains(&format!("OpenSSL {} ", new["openssl"].0.split('-').next().unwrap())),
        "{version}"
    );
}

#[test]
fn a_dependency_the_distroless_image_lacks_is_installed_and_listed() {
    // An openssl whose entry needs no libssl3, and no libssl3
    // (tests/images/distroless-missing-dep.sh): the fixed openssl needs it,
    // so it is fetched, installed and given a status.d entry in the image's
    // style.
    let sandbox = Sandbox::new();
    let layout = common::layout_copy(&sandbox, "distroless-missing-dep.sh");
    let input = format!("oci:{}:distroless", layout.display());
    let before = open(&input);
    assert!(!status_d(&before).contains_key("libssl3"));
    let (report, fixed) = distroless_report(&sandbox, &before, &["openssl"]);
    let out = run(sandbox.caulk().args(["patch", "--json", "-i", &input, "-r"]).arg(&report));
    let summary = json(&success(&out));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let after = open(&format!("oci:{}:distroless-patched", layout.display()));
    let new = status_d(&after);
    assert!(dpkg_ge(&new["openssl"].0, &fixed["openssl"]));
    let (libssl, text) = &new["libssl3"];
    assert_eq!(*libssl, apt_candidate("libssl3"), "libssl3 at the candidate openssl needs");
    assert!(text.starts_with("Package: libssl3\n") && !text.contains("Status:"), "{text}");
    let last = layer_digests(&after).pop().unwrap();
    let listing = layer_listing(&layout, &last).join("\n");
    assert!(
        listing.contains("var/lib/dpkg/status.d/libssl3.md5sums"),
        "md5sums as the image keeps them:\n{listing}"
    );
    assert_eq!(dpkg_leftovers(&layout, &last), Vec::<String>::new());
    let version = run_in_image(
        &sandbox,
        &format!("oci:{}:distroless-patched", layout.display()),
        &["/usr/bin/openssl", "version"],
    );
    assert!(version.contains("Library: OpenSSL 3."), "the new libssl3 loads: {version}");
}

#[test]
fn a_distroless_status_d_with_unmet_dependencies_fails_with_dpkgs_reason() {
    // openssl's entry needs libssl3, which the image does not list: apt
    // resolves nothing against such a status.d, so the named package alone
    // is fetched and dpkg refuses it for the missing dependency.
    let sandbox = Sandbox::new();
    let script = common::workspace().join("tests/images/distroless-missing-dep.sh");
    let cached = PathBuf::from(stdout(&run(Command::new(&script).arg("broken"))).trim());
    let layout = sandbox.path().join("layout");
    assert!(Command::new("cp").arg("-a").arg(&cached).arg(&layout).status().unwrap().success());
    let input = format!("oci:{}:distroless", layout.display());
    let (report, _) = distroless_report(&sandbox, &open(&input), &["openssl"]);
    let out = run(sandbox.caulk().args(["patch", "-i", &input, "-r"]).arg(&report));
    let err = failure(&out, 1);
    assert!(err.contains("no image was written"), "{err}");
    let table = stdout(&out);
    assert!(table.contains("dependency problems prevent configuration of openssl"), "{table}");
    assert!(ref_digest(&layout, "distroless-patched").is_none(), "nothing is written");
}

/// A copy of `tests/images/distroless-missing-dep.sh VARIANT`'s layout.
fn missing_dep_copy(sandbox: &Sandbox, variant: &str) -> PathBuf {
    let script = common::workspace().join("tests/images/distroless-missing-dep.sh");
    let cached = PathBuf::from(stdout(&run(Command::new(&script).arg(variant))).trim());
    let layout = sandbox.path().join("layout");
    assert!(Command::new("cp").arg("-a").arg(&cached).arg(&layout).status().unwrap().success());
    layout
}

#[test]
fn update_all_of_a_distroless_image_with_an_unlisted_dependency_moves_what_it_can() {
    // libc6 is listed but the libgcc-s1 it depends on is not (gcr's base
    // lists them so): apt-get upgrade refuses such a status.d, so each
    // package with a newer version is fetched alone and dpkg installs
    // those whose own dependencies are listed.
    let sandbox = Sandbox::new();
    let layout = missing_dep_copy(&sandbox, "unlisted");
    let input = format!("oci:{}:distroless", layout.display());
    let before = open(&input);
    let old = status_d(&before);
    assert!(!old.contains_key("libgcc-s1"));
    let summary = json(&success(&run(sandbox.caulk().args(["patch", "--json", "-i", &input]))));
    assert_eq!(summary["result"], "patched", "{summary:#}");
    let new = status_d(&open(&format!("oci:{}:distroless-patched", layout.display())));
    for package in ["libssl3", "openssl"] {
        let (was, now) = (&old[package].0, &new[package].0);
        assert!(!dpkg_ge(was, &apt_candidate(package)), "{package} {was} is not behind the candidate");
        assert_eq!(*now, apt_candidate(package), "{package} moved from {was}");
    }
    assert_eq!(old.keys().collect::<Vec<_>>(), new.keys().collect::<Vec<_>>(), "nothing added or lost");
    assert_eq!(old["libc6"], new["libc6"]);
}

#[test]
fn update_all_of_a_distroless_image_with_broken_dependencies_fails_with_dpkgs_reason() {
    // openssl's entry needs the libssl3 the image lacks: the upgrade is
    // not resolvable, openssl is fetched alone, and dpkg (not apt's
    // download) says why it cannot be configured.
    let sandbox = Sandbox::new();
    let layout = missing_dep_copy(&sandbox, "broken");
    let input = format!("oci:{}:distroless", layout.display());
    let out = run(sandbox.caulk().args(["patch", "-i", &input]));
    let err = failure(&out, 1);
    assert!(err.contains("no image was written"), "{err}");
    let table = stdout(&out);
    assert!(table.contains("dependency problems prevent configuration of openssl"), "{table}\n{err}");
    assert!(ref_digest(&layout, "distroless-patched").is_none(), "nothing is written");
}

#[test]
fn a_tooling_image_that_cannot_be_read_is_named() {
    let sandbox = Sandbox::new();
    let layout = sandbox.path().join("distroless-layout");
    assert!(Command::new("cp").arg("-a").arg(distroless()).arg(&layout).status().unwrap().success());
    let input = format!("oci:{}:distroless", layout.display());
    let (report, _) = distroless_report(&sandbox, &open(&input), &["openssl"]);
    let missing = format!("oci:{}:nothing", sandbox.path().join("no-such-layout").display());
    let out = run(sandbox
        .caulk()
        .args(["patch", "-i", &input, "-r"])
        .arg(&report)
        .args(["--tooling-image", &missing]));
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains(&format!("tooling image {missing}")), "{err}");
    assert!(ref_digest(&layout, "distroless-patched").is_none(), "nothing is written");
}

#[test]
fn the_steps_changes_in_memory_or_on_disk_give_the_same_layer() {
    let sandbox = Sandbox::new();
    let layout = layout_copy(&sandbox, "bookworm");
    let report = apt_report(&sandbox, &layout, "bookworm", &["openssl", "libssl3", "libexpat1"]);
    // caulk mounts its tmpfs under TMPDIR: a private one shows it is gone after.
    let tmp = sandbox.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let patch = |store: &str, tag: &str| {
        run(sandbox
            .caulk()
            .env("CAULK_WORKING_STORE", store)
            .env("CAULK_LOG", "caulk=info")
            .env("TMPDIR", &tmp)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["patch", "--json", "-i", &format!("oci:{}:bookworm", layout.display()), "-t", tag, "-r"])
            .arg(&report))
    };
    let memory = patch("memory", "mem");
    let summary = json(&success(&memory));
    assert_eq!(summary["result"], "patched");
    assert!(stderr(&memory).contains("the steps' changes go to a tmpfs"), "{}", stderr(&memory));
    let disk = patch("disk", "disk");
    assert_eq!(json(&success(&disk))["result"], "patched");
    assert!(stderr(&disk).contains("go to the working folder on disk"), "{}", stderr(&disk));
    let new_layer =
        |tag: &str| layer_digests(&open(&format!("oci:{}:{tag}", layout.display()))).pop().unwrap();
    assert_eq!(new_layer("mem"), new_layer("disk"), "the store changed the layer");
    let version = run_in_image(&sandbox, &format!("oci:{}:mem", layout.display()), &["openssl", "version"]);
    assert!(version.starts_with("OpenSSL "), "{version}");

    // A tmpfs too small for the upgrade fails the run, saying so.
    let full = patch("memory:2", "full");
    let err = failure(&full, 1);
    assert!(err.contains("outgrew the 2 MiB tmpfs"), "{err}");
    assert!(err.contains("--working-folder"), "the hint names the way out:\n{err}");
    assert!(open_fails(&format!("oci:{}:full", layout.display())), "an image was written");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with("caulk-mem-")),
        "a tmpfs was left: {left:?}"
    );
}

fn open_fails(reference: &str) -> bool {
    Image::open(&ImageRef::parse(reference).unwrap(), &TransportOptions::default()).is_err()
}

#[test]
fn dpkg_writing_through_an_image_link_cannot_reach_the_host_side_caches() {
    // The image has /usr/share/doc/openssl as a link to /caulk/work, where
    // the plan mounts its work cache in the tooling root. dpkg --root follows
    // it while unpacking openssl: the install step has the caches read-only,
    // so the unpack fails there and nothing of the image reaches the cache.
    let sandbox = Sandbox::with_private_cache();
    let layout = common::layout_copy(&sandbox, "distroless-cache-link.sh");
    let input = format!("oci:{}:distroless", layout.display());
    let (report, _) = distroless_report(&sandbox, &open(&input), &["libssl3", "openssl"]);
    let out = run(sandbox.caulk().args(["patch", "--json", "-i", &input, "-r"]).arg(&report));
    let err = failure(&out, 1);
    assert!(err.contains("no image was written"), "{err}");
    let summary = json(&stdout(&out));
    let rows = summary["rows"].as_array().unwrap();
    let openssl = &rows.iter().find(|r| r["name"] == "openssl").unwrap()["detail"];
    assert!(
        openssl.as_str().is_some_and(|d| d.contains("error processing archive")),
        "dpkg failed to unpack openssl: {summary:#}"
    );
    assert!(ref_digest(&layout, "distroless-patched").is_none(), "nothing is written");

    // The work cache holds apt's state and the downloads, and none of
    // openssl's documentation.
    let steps = sandbox.cache_dir().join("steps/apt");
    let mut found = Vec::new();
    let mut stack = vec![steps.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            found.push(name);
        }
    }
    let is_deb = |n: &String| Path::new(n).extension().is_some_and(|e| e == "deb");
    assert!(found.iter().any(is_deb), "the downloads are in the cache: {found:?}");
    assert!(
        !found.iter().any(|n| n.starts_with("changelog") || n.starts_with("copyright")),
        "dpkg wrote openssl's documentation into the cache: {found:?}"
    );
}
