//! Distroless Debian images (status.d, no status file, no apt): the plan's
//! exact commands in the tooling root, and verification from status.d.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{
    ExecContext, OutcomeStatus, Phase, PlanRequest, StepResult, UpdateMode, VerifyRequest, VersionTarget,
};
use support::{Root, options, probe, update};

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

fn write(root: &Path, rel: &str, contents: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

fn paragraph(name: &str, version: &str, arch: &str, depends: &str) -> String {
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Debian\nInstalled-Size: 10\n\
         Depends: {depends}\nDescription: {name}\n a package\n"
    )
}

/// A distroless-style root: libssl3 (with md5sums), openssl (without),
/// base-files (arch all), libc6; no status file, no apt.
fn distroless_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "etc/os-release", OS_RELEASE);
    let d = "var/lib/dpkg/status.d";
    write(root, &format!("{d}/libssl3"), &paragraph("libssl3", "3.0.20-1~deb12u2", "amd64", "libc6"));
    write(root, &format!("{d}/libssl3.md5sums"), "0123  usr/lib/x86_64-linux-gnu/libssl.so.3\n");
    write(root, &format!("{d}/openssl"), &paragraph("openssl", "3.0.20-1~deb12u2", "amd64", "libssl3"));
    write(root, &format!("{d}/base-files"), &paragraph("base-files", "12.4+deb12u15", "all", "libc6"));
    write(root, &format!("{d}/libc6"), &paragraph("libc6", "2.36-9+deb12u14", "amd64", "libgcc-s1"));
    dir
}

fn plan_request(root: &Root, updates: Vec<caulk_sdk::update::Update>, mode: UpdateMode) -> PlanRequest {
    let (facts, _) = probe(root, Phase::Plan, &updates, &options(mode));
    PlanRequest { target: root.target(), updates, options: options(mode), facts }
}

fn report() -> Vec<caulk_sdk::update::Update> {
    vec![
        update("libssl3", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("base-files", "12.4+deb12u15", &["12.4+deb12u10"]),
    ]
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The apt options every apt command gets with sources from os-release.
fn release_options() -> Vec<String> {
    strings(&[
        "-o",
        "Dir::Etc::SourceList=/caulk/work/sources.list",
        "-o",
        "Dir::Etc::SourceParts=/caulk/work/sources.list.d",
        "-o",
        "Dir::State::Lists=/caulk/lists",
        "-o",
        "Dir::State=/caulk/work/state",
        "-o",
        "Dir::State::status=/caulk/work/status",
        "-o",
        "Dir::Cache=/caulk/work/cache",
        "-o",
        "Dir::Cache::pkgcache=",
        "-o",
        "Dir::Cache::srcpkgcache=",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "APT::Architectures=amd64",
        "-o",
        "Acquire::Languages=none",
        "-o",
        "Acquire::Retries=3",
    ])
}

#[test]
fn a_distroless_image_is_planned_through_the_tooling_root() {
    let dir = distroless_root();
    let root = Root::at(dir.path());
    let plan = Apt::plan(&plan_request(&root, report(), UpdateMode::Report)).unwrap();

    let selected: Vec<&str> = plan.selected.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(selected, ["libssl3", "openssl"]);
    assert_eq!(plan.selected[0].target, VersionTarget::AtLeast("3.0.22-1~deb12u2".into()));
    assert_eq!(plan.skipped.len(), 1);
    assert!(plan.skipped[0].already_fixed, "{:?}", plan.skipped);

    assert_eq!(plan.steps.len(), 4, "{:#?}", plan.steps);
    for step in &plan.steps {
        let ExecContext::Tooling(tooling) = &step.command.context else {
            panic!("{} runs in the image, which has no apt", step.summary)
        };
        assert_eq!(tooling.image, None, "the host decides the tooling root (--tooling-image)");
        assert_eq!(tooling.mount_point, "/target");
    }
    let [prepare, refresh, download, install] = &plan.steps[..] else { unreachable!() };
    assert_eq!(
        (prepare.command.network, refresh.command.network, download.command.network, install.command.network),
        (true, true, true, false),
        "dpkg and the scripts run offline, so the host mounts the caches read-only for them"
    );
    assert!(refresh.tolerate_failure && !download.tolerate_failure && !install.tolerate_failure);

    // The release's sources, as positional arguments of a constant script.
    assert_eq!(&prepare.command.argv[..2], ["sh", "-c"]);
    assert_eq!(
        &prepare.command.argv[3..],
        strings(&[
            "sh",
            "/caulk/work",
            "/target",
            "deb http://deb.debian.org/debian bookworm main",
            "deb http://deb.debian.org/debian bookworm-updates main",
            "deb http://deb.debian.org/debian-security bookworm-security main",
        ])
    );

    let mut want = strings(&["apt-get", "update"]);
    want.extend(release_options());
    assert_eq!(refresh.command.argv, want);

    // apt resolves against status.d, so what the new versions need comes too.
    assert_eq!(&download.command.argv[..2], ["sh", "-c"]);
    assert!(download.command.argv[2].contains("apt-get install --download-only"));
    let mut want = strings(&["sh", "/caulk/work", "report"]);
    want.extend(release_options());
    want.extend(strings(&["--", "libssl3", "openssl"]));
    assert_eq!(download.command.argv[3..], want);

    assert_eq!(&install.command.argv[..2], ["sh", "-c"]);
    let script = &install.command.argv[2];
    assert!(
        script.contains("--force-script-chrootless")
            && !script.contains("--force-depends")
            && !script.contains("--force-all"),
        "{script}"
    );
    assert_eq!(
        &install.command.argv[3..],
        strings(&[
            "sh",
            "/target",
            "/caulk/work",
            "/var/lib/caulk-dpkg",
            // A new package's entry: no Status field, md5sums beside it.
            "-",
            "md5sums",
            // Every package of a file of its own, whichever apt moves.
            "base-files",
            "/var/lib/dpkg/status.d/base-files",
            "-",
            "libc6:amd64",
            "/var/lib/dpkg/status.d/libc6",
            "-",
            "libssl3:amd64",
            "/var/lib/dpkg/status.d/libssl3",
            "/var/lib/dpkg/status.d/libssl3.md5sums",
            "openssl:amd64",
            "/var/lib/dpkg/status.d/openssl",
            "-",
        ])
    );

    assert_eq!(
        plan.drop_paths,
        ["/var/lib/caulk-dpkg", "/var/lib/caulk-dpkg/**", "/var/lib/dpkg/status.d/.*.caulk-new*"]
    );
    let caches: Vec<&str> = plan.caches.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(caches, ["/caulk/lists", "/caulk/work"]);
    assert!(plan.caches.iter().all(|c| c.key.starts_with("apt-distroless-")));
}

#[test]
fn the_images_own_sources_and_keys_are_used_when_it_has_them() {
    let dir = distroless_root();
    write(dir.path(), "etc/apt/sources.list", "deb http://mirror.example/debian bookworm main\n");
    write(dir.path(), "etc/apt/trusted.gpg.d/mirror.asc", "key\n");
    let root = Root::at(dir.path());
    let plan = Apt::plan(&plan_request(&root, report(), UpdateMode::Report)).unwrap();
    assert_eq!(plan.steps[0].command.argv.len(), 6, "no lines to write: {:?}", plan.steps[0].command.argv);
    let argv = &plan.steps[1].command.argv;
    for option in [
        "Dir::Etc::SourceList=/target/etc/apt/sources.list",
        "Dir::Etc::SourceParts=/target/etc/apt/sources.list.d",
        "Dir::Etc::Trusted=/target/etc/apt/trusted.gpg",
        "Dir::Etc::TrustedParts=/target/etc/apt/trusted.gpg.d",
    ] {
        assert!(argv.iter().any(|a| a == option), "{option} missing from {argv:?}");
    }
}

#[test]
fn without_sources_or_a_debian_release_the_plan_says_so() {
    let dir = distroless_root();
    std::fs::remove_file(dir.path().join("etc/os-release")).unwrap();
    let root = Root::at(dir.path());
    let err = Apt::plan(&plan_request(&root, report(), UpdateMode::Report)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("no apt sources"), "{}", err.message);
}

#[test]
fn update_all_takes_every_package_status_d_lists_alone_in_its_file() {
    let dir = distroless_root();
    let libfoo = paragraph("libfoo", "1.0", "amd64", "libc6");
    let libbar = paragraph("libbar", "1.0", "amd64", "libc6");
    write(dir.path(), "var/lib/dpkg/status.d/foobar", &format!("{libfoo}\n{libbar}"));
    let plan = Apt::plan(&plan_request(&Root::at(dir.path()), Vec::new(), UpdateMode::All)).unwrap();
    let selected: Vec<&str> = plan.selected.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(selected, ["base-files", "libc6", "libssl3", "openssl"]);
    assert!(plan.selected.iter().all(|s| s.target == VersionTarget::Newest));
    let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["libfoo", "libbar"], "{:?}", plan.skipped);
    assert!(
        plan.skipped[0].reason.contains("status.d/foobar lists 2 packages"),
        "{}",
        plan.skipped[0].reason
    );

    let download = &plan.steps[2].command.argv;
    assert!(download[2].contains("apt-get upgrade --download-only -y --with-new-pkgs"));
    assert_eq!(download[3..6], strings(&["sh", "/caulk/work", "all"]));
    assert!(!download.iter().any(|a| a == "--"), "no names: {download:?}");
    assert!(plan.caches[1].key.ends_with("-all"), "{}", plan.caches[1].key);
    // That the prepare step holds them for apt:
    // every_package_of_a_shared_status_d_file_is_held_even_with_a_status_field.
}

#[test]
fn a_damaged_status_d_file_is_named() {
    let dir = distroless_root();
    write(dir.path(), "var/lib/dpkg/status.d/openssl", "Package: openssl\nVersion: not a version!\n");
    let err = Apt::plan(&plan_request(&Root::at(dir.path()), report(), UpdateMode::Report)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedInput);
    assert!(err.message.contains("/var/lib/dpkg/status.d/openssl"), "{}", err.message);
}

#[test]
fn a_status_d_file_of_several_packages_is_not_rewritten_for_one() {
    let openssl = paragraph("openssl", "3.0.20-1~deb12u2", "amd64", "libssl3");
    let libfoo = paragraph("libfoo", "1.0", "amd64", "libc6");
    let status = "Status: install ok installed\n";
    for both in [
        format!("{openssl}{status}\n{libfoo}{status}"),
        // Without Status fields (each paragraph counts as installed), and
        // text that is not ASCII where a field name is looked for.
        format!("{openssl}\n{libfoo}Descrip\u{e9}tion: \u{2026}\n"),
    ] {
        let dir = distroless_root();
        write(dir.path(), "var/lib/dpkg/status.d/openssl", &both);
        let plan = Apt::plan(&plan_request(&Root::at(dir.path()), report(), UpdateMode::Report)).unwrap();
        let skipped = plan.skipped.iter().find(|s| s.name == "openssl").expect("openssl skipped");
        assert!(skipped.reason.contains("lists 2 packages"), "{}", skipped.reason);
        assert_eq!(plan.selected.len(), 1, "libssl3 still moves: {:?}", plan.selected);
    }
}

fn verify(
    root: &Root,
    plan: &caulk_sdk::update::PatchPlan,
    install_exit: i32,
) -> Vec<caulk_sdk::update::Outcome> {
    let (facts, _) = probe(root, Phase::Verify, &[], &options(UpdateMode::Report));
    let steps = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepResult {
            summary: s.summary.clone(),
            exit_code: if i == 3 { install_exit } else { 0 },
            stderr_tail: if i == 3 && install_exit != 0 {
                "dpkg: error processing package openssl (--install):\n".into()
            } else {
                String::new()
            },
        })
        .collect();
    Apt::verify(&VerifyRequest {
        target: root.target(),
        options: options(UpdateMode::Report),
        selected: plan.selected.clone(),
        steps,
        facts,
    })
    .unwrap()
}

#[test]
fn verification_reads_the_patched_status_d() {
    let dir = distroless_root();
    let root = Root::at(dir.path());
    let plan = Apt::plan(&plan_request(&root, report(), UpdateMode::Report)).unwrap();
    // What the install step writes back: libssl3 moved (no Status, as the
    // image had none); openssl left half-configured by a failed script.
    write(
        dir.path(),
        "var/lib/dpkg/status.d/libssl3",
        &paragraph("libssl3", "3.0.22-1~deb12u2", "amd64", "libc6"),
    );
    write(
        dir.path(),
        "var/lib/dpkg/status.d/openssl",
        &format!(
            "{}Status: install reinstreq half-configured\n",
            paragraph("openssl", "3.0.22-1~deb12u2", "amd64", "libssl3")
        ),
    );
    let outcomes = verify(&root, &plan, 1);
    let libssl3 = outcomes.iter().find(|o| o.name == "libssl3").unwrap();
    assert_eq!(libssl3.status, OutcomeStatus::Patched, "{libssl3:?}");
    assert_eq!(libssl3.to.as_deref(), Some("3.0.22-1~deb12u2"));
    let openssl = outcomes.iter().find(|o| o.name == "openssl").unwrap();
    assert_eq!(openssl.status, OutcomeStatus::Failed, "{openssl:?}");
    assert!(openssl.detail.contains("half-configured"), "{}", openssl.detail);

    // Nothing moved at all: both failed, still below the fix.
    let dir = distroless_root();
    let root = Root::at(dir.path());
    let outcomes = verify(&root, &plan, 0);
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Failed), "{outcomes:?}");
    assert!(outcomes[0].detail.contains("below the fixed version"), "{}", outcomes[0].detail);
}

/// A real `.deb` of `name` 9.9 for `arch` in `dir` (one file and its
/// md5sums, no dependencies).
fn tiny_deb(dir: &Path, name: &str, arch: &str) -> std::path::PathBuf {
    let build = dir.join(format!("{name}-build"));
    write(&build, &format!("usr/share/doc/{name}/new"), "new\n");
    write(&build, "DEBIAN/md5sums", &format!("3b0332e02daabf31651a5a0d81ba830a  usr/share/doc/{name}/new\n"));
    write(
        &build,
        "DEBIAN/control",
        &format!(
            "Package: {name}\nVersion: 9.9\nArchitecture: {arch}\nMaintainer: caulk tests\nDescription: a test package\n"
        ),
    );
    let deb = dir.join(format!("{name}_9.9_{arch}.deb"));
    let out = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&build)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    deb
}

/// A work dir whose `debs` holds a real deb of each `(name, arch)` and
/// whose apt status is empty.
fn work_with(debs: &[(&str, &str)]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("debs")).unwrap();
    for (name, arch) in debs {
        let deb = tiny_deb(work.path(), name, arch);
        std::fs::rename(&deb, work.path().join("debs").join(deb.file_name().unwrap())).unwrap();
    }
    std::fs::write(work.path().join("status"), "").unwrap();
    work
}

/// The plan's install step (script and arguments) for the distroless
/// root `dir`, taken before a test plants anything in it.
fn install_step(dir: &Path) -> Vec<String> {
    let plan = Apt::plan(&plan_request(&Root::at(dir), report(), UpdateMode::Report)).unwrap();
    plan.steps[3].command.argv.clone()
}

/// Runs the install step `argv` for real on the root `dir` with the work
/// dir `work`, `stubs` first on PATH.
fn run_step(argv: &[String], dir: &Path, work: &Path, stubs: &Path) -> std::process::Output {
    let mut args: Vec<String> = argv[3..].to_vec();
    args[1] = dir.display().to_string();
    args[2] = work.display().to_string();
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap_or_default());
    std::process::Command::new("sh").args(["-c", &argv[2]]).args(&args).env("PATH", path).output().unwrap()
}

/// Runs the plan's install script for real on the distroless root `dir`
/// with the work dir `work`, `stubs` first on PATH.
fn run_install(dir: &Path, work: &Path, stubs: &Path) -> std::process::Output {
    run_step(&install_step(dir), dir, work, stubs)
}

fn status_d_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("var/lib/dpkg/status.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failing_dpkg_query_leaves_the_status_d_file_as_it_was() {
    // The plan's install script, run for real (real dpkg into a temporary
    // root) with a dpkg-query that fails: the image's status.d file must
    // keep its content, and no temporary file may stay behind.
    let dir = distroless_root();
    let work = work_with(&[("openssl", "amd64")]);
    let stubs = tempfile::tempdir().unwrap();
    write(stubs.path(), "dpkg-query", "#!/bin/sh\necho 'dpkg-query: out of memory' >&2\nexit 2\n");
    std::process::Command::new("chmod").arg("+x").arg(stubs.path().join("dpkg-query")).status().unwrap();
    let names = status_d_names(dir.path());
    let before = std::fs::read_to_string(dir.path().join("var/lib/dpkg/status.d/openssl")).unwrap();

    let out = run_install(dir.path(), work.path(), stubs.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the step fails: {stderr}");
    assert!(stderr.contains("left as it was"), "{stderr}");
    assert!(dir.path().join("usr/share/doc/openssl/new").exists(), "dpkg did install: {stderr}");
    let after = std::fs::read_to_string(dir.path().join("var/lib/dpkg/status.d/openssl")).unwrap();
    assert_eq!(after, before);
    assert_eq!(status_d_names(dir.path()), names, "no temporary file left");
    assert!(!dir.path().join("var/lib/caulk-dpkg").exists(), "the admin dir is removed");
}

#[test]
fn nothing_fetched_is_nothing_to_install() {
    // Update-all of an image already current: apt fetched no package.
    let dir = distroless_root();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("debs")).unwrap();
    std::fs::write(work.path().join("status"), "").unwrap();
    let names = status_d_names(dir.path());
    let out = run_install(dir.path(), work.path(), work.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("apt fetched nothing"));
    assert_eq!(status_d_names(dir.path()), names);
    assert!(!dir.path().join("var/lib/caulk-dpkg").exists());
}

/// Every file below `dir` with its contents (a link as its target).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let key = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_symlink() {
                found.insert(key, format!("-> {}", std::fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                found.insert(key, "dir".to_owned());
                stack.push(path);
            } else {
                found.insert(key, String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
            }
        }
    }
    found
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn a_temporary_name_the_image_planted_as_a_link_is_not_written_through() {
    // The names the install step once wrote its temporary files to, planted
    // as links to a file outside the root (a host-side cache in the tooling
    // sandbox): the step writes status.d without touching it.
    let dir = distroless_root();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("cache"), "cache\n").unwrap();
    let d = dir.path().join("var/lib/dpkg/status.d");
    for name in [".openssl.caulk-new", ".openssl.caulk-new.s"] {
        symlink(&outside.path().join("cache"), &d.join(name));
    }
    let before = snapshot(outside.path());
    let work = work_with(&[("openssl", "amd64")]);
    let out = run_install(dir.path(), work.path(), work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(snapshot(outside.path()), before, "nothing outside the root is touched");
    let entry = std::fs::read_to_string(d.join("openssl")).unwrap();
    assert!(entry.contains("Version: 9.9\n") && !entry.contains("Status:"), "{entry}");
}

#[test]
fn a_destination_the_image_planted_as_a_link_is_refused() {
    // A package the image lacks gets `status.d/NAME.md5sums` (the image
    // keeps md5sums); the image has that name as a link to a directory
    // outside the root, which `mv` would move the file into.
    let dir = distroless_root();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path().join("var/lib/dpkg/status.d");
    symlink(outside.path(), &d.join("libnew.md5sums"));
    let work = work_with(&[("libnew", "amd64")]);
    let out = run_install(dir.path(), work.path(), work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the step fails: {stderr}");
    assert!(stderr.contains("/var/lib/dpkg/status.d/libnew.md5sums in the image is a symlink"), "{stderr}");
    assert_eq!(snapshot(outside.path()), BTreeMap::new(), "nothing outside the root is touched");
    assert!(std::fs::symlink_metadata(d.join("libnew.md5sums")).unwrap().is_symlink(), "the link is left");
    assert!(std::fs::read_to_string(d.join("libnew")).unwrap().contains("Version: 9.9\n"));
    let leftovers: Vec<String> =
        status_d_names(dir.path()).into_iter().filter(|n| n.contains("caulk")).collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

#[test]
fn a_status_d_or_parent_that_is_a_link_stops_the_install_before_dpkg() {
    for linked in ["var/lib/dpkg/status.d", "var/lib/dpkg", "var"] {
        let dir = distroless_root();
        let argv = install_step(dir.path());
        // The directory moved outside the root, a link in its place.
        let outside = tempfile::tempdir().unwrap();
        let moved = outside.path().join("moved");
        std::fs::rename(dir.path().join(linked), &moved).unwrap();
        symlink(&moved, &dir.path().join(linked));
        let before = snapshot(outside.path());
        let work = work_with(&[("openssl", "amd64"), ("libnew", "amd64")]);
        let out = run_step(&argv, dir.path(), work.path(), work.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{linked}: the step fails: {stderr}");
        assert!(stderr.contains(&format!("/{linked} in the image is not a directory")), "{stderr}");
        assert_eq!(snapshot(outside.path()), before, "{linked}: nothing outside the root is touched");
        assert!(!dir.path().join("usr/share/doc/openssl").exists(), "{linked}: dpkg did not run");
    }
}

#[test]
fn a_new_version_of_another_architecture_is_written_to_the_packages_own_file() {
    // The image's openssl is amd64; the new version is arch all. Its file
    // lists it alone, so that file is its entry still.
    let dir = distroless_root();
    let names = status_d_names(dir.path());
    let work = work_with(&[("openssl", "all")]);
    let out = run_install(dir.path(), work.path(), work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let entry = std::fs::read_to_string(dir.path().join("var/lib/dpkg/status.d/openssl")).unwrap();
    assert!(entry.contains("Version: 9.9\n") && entry.contains("Architecture: all\n"), "{entry}");
    assert_eq!(status_d_names(dir.path()), names, "no file added");
}

#[test]
fn every_package_of_a_shared_status_d_file_is_held_even_with_a_status_field() {
    // The prepare step, run for real: a file of two packages with
    // `Status: install ok installed` (and one without any Status) gives apt
    // and dpkg a status where both are held, so apt-get upgrade never moves
    // files caulk cannot write back. Read back by dpkg-query.
    let dir = distroless_root();
    let libfoo = paragraph("libfoo", "1.0", "amd64", "libc6");
    let libbar = paragraph("libbar", "1.0", "amd64", "libc6");
    let libbaz = paragraph("libbaz", "1.0", "amd64", "libc6");
    let installed = "Status: install ok installed\n";
    write(dir.path(), "var/lib/dpkg/status.d/foobar", &format!("{libfoo}{installed}\n{libbar}{installed}"));
    write(
        dir.path(),
        "var/lib/dpkg/status.d/bazqux",
        &format!("{libbaz}\n{}", paragraph("libqux", "1.0", "amd64", "libc6")),
    );
    let plan = Apt::plan(&plan_request(&Root::at(dir.path()), Vec::new(), UpdateMode::All)).unwrap();
    let mut argv = plan.steps[0].command.argv.clone();
    let work = tempfile::tempdir().unwrap();
    argv[4] = work.path().display().to_string();
    argv[5] = dir.path().display().to_string();
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let admin = work.path().join("admin");
    for sub in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(sub)).unwrap();
    }
    std::fs::copy(work.path().join("status"), admin.join("status")).unwrap();
    let out = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package} ${Status}\n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "base-files install ok installed",
            "libbar hold ok installed",
            "libbaz hold ok installed",
            "libc6 install ok installed",
            "libfoo hold ok installed",
            "libqux hold ok installed",
            "libssl3 install ok installed",
            "openssl install ok installed",
        ]
    );
}
