//! Report mode: which updates are made, and the exact apk commands.

mod support;

use caulk_plugin_apk::plan::DROP_PATHS;
use caulk_sdk::update::{ExecContext, PatchPlan, Step, UpdateMode, VersionTarget};
use support::{HostApk, ROOTED, Root, options, plan, update};

fn argv(step: &Step) -> Vec<&str> {
    step.command.argv.iter().map(String::as_str).collect()
}

fn report() -> Vec<caulk_sdk::update::Update> {
    let mut deb = update("libssl3", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]);
    deb.ecosystem = "deb".into();
    vec![
        update("libssl3", "3.1.4-r1", &["3.1.4-r3", "3.1.4-r5"]),
        update("libcrypto3", "3.1.4-r1", &["3.1.4-r5"]),
        // `_p1` sorts after the release and its revisions.
        update("busybox", "1.36.1-r15", &["1.36.1-r19", "1.36.1_p1-r0"]),
        // `_rc1` sorts before the release.
        update("libcurl", "8.5.0_rc1-r0", &["8.5.0-r0"]),
        update("musl", "1.2.4_git20230717-r4", &["1.2.4_git20230717-r4"]),
        update("zlib", "1.3-r2", &["1.3.1-r0"]),
        update("openssl", "3.1.4-r1", &["3.1.4-r5"]),
        update("ca-certificates-cacert", "20230506-r0", &["20240226-r0"]),
        update("curl", "8.5.0-r0", &["8.6.0-r0"]),
        update("bash", "5.2.21-r0", &["5.2.26-r0"]),
        deb,
    ]
}

fn alpine_plan() -> PatchPlan {
    plan(&Root::mini("alpine-3.19"), report(), options(UpdateMode::Report))
}

#[test]
fn selected_packages_aim_at_the_highest_fix_in_apk_order() {
    let plan = alpine_plan();
    let selected: Vec<(&str, &str, &VersionTarget)> =
        plan.selected.iter().map(|s| (s.name.as_str(), s.from.as_str(), &s.target)).collect();
    let at_least = |v: &str| VersionTarget::AtLeast(v.into());
    assert_eq!(
        selected,
        [
            ("libssl3", "3.1.4-r1", &at_least("3.1.4-r5")),
            ("libcrypto3", "3.1.4-r1", &at_least("3.1.4-r5")),
            ("busybox", "1.36.1-r15", &at_least("1.36.1_p1-r0")),
            ("libcurl", "8.5.0_rc1-r0", &at_least("8.5.0-r0")),
        ]
    );
    assert_eq!(plan.selected[0].passed_over.len(), 1);
    assert_eq!(plan.selected[0].passed_over[0].version, "3.1.4-r3");
    assert_eq!(plan.selected[2].passed_over[0].version, "1.36.1-r19");
    let rationale = |i: usize| plan.selected[i].rationale.as_deref().unwrap();
    assert!(rationale(0).contains("libssl3 is installed as a dependency and stays one"), "{}", rationale(0));
    assert!(rationale(0).contains("the highest of 2 fixed versions"), "{}", rationale(0));
    assert!(rationale(2).contains("busybox stays listed in /etc/apk/world as it was"), "{}", rationale(2));
}

#[test]
fn skipped_packages_say_why() {
    let plan = alpine_plan();
    let reason = |name: &str| {
        let s = plan.skipped.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} not skipped"));
        (s.reason.as_str(), s.already_fixed)
    };
    assert_eq!(
        reason("musl"),
        ("musl 1.2.4_git20230717-r4 is already at or above the fixed version 1.2.4_git20230717-r4", true)
    );
    assert!(
        reason("zlib").0.starts_with("/etc/apk/world holds zlib with `zlib=1.3-r2`, which the fixed version"),
        "{}",
        reason("zlib").0
    );
    assert_eq!(
        reason("openssl").0,
        "openssl is not installed; it is the origin (source package) of the installed libcrypto3 3.1.4-r1, \
         libssl3 3.1.4-r1, which the report should name"
    );
    assert!(
        reason("ca-certificates-cacert")
            .0
            .contains("a name that ca-certificates-bundle 20230506-r0 provides"),
        "{}",
        reason("ca-certificates-cacert").0
    );
    assert_eq!(
        reason("curl").0,
        "curl is not installed; it is the origin (source package) of the installed libcurl 8.5.0_rc1-r0, which \
         the report should name"
    );
    assert_eq!(reason("bash").0, "bash is not installed (/lib/apk/db/installed has no package of that name)");
    assert!(plan.skipped.iter().any(|s| s.ecosystem == "deb" && s.reason.contains("apk packages only")));
    assert_eq!(plan.skipped.len(), 7);
    assert!(!plan.skipped.iter().any(|s| s.name != "musl" && s.already_fixed));
}

fn add<'a>(name: &'a str, constraint: &'a str) -> (Vec<&'a str>, bool) {
    (vec!["apk", "--no-progress", "add", "--upgrade", "--virtual", name, constraint], false)
}
fn del(name: &str) -> (Vec<&str>, bool) {
    (vec!["apk", "--no-progress", "del", name], true)
}

#[test]
fn one_virtual_package_per_fix_keeps_the_world_file() {
    let plan = alpine_plan();
    let steps: Vec<(Vec<&str>, bool)> = plan.steps.iter().map(|s| (argv(s), s.tolerate_failure)).collect();
    let virt = |name: &str| format!(".caulk-{name}");
    let (ssl, crypto, bb, curl) = (virt("libssl3"), virt("libcrypto3"), virt("busybox"), virt("libcurl"));
    assert_eq!(
        steps,
        [
            (vec!["apk", "--no-progress", "update"], true),
            add(&ssl, "libssl3>=3.1.4-r5"),
            del(&ssl),
            add(&crypto, "libcrypto3>=3.1.4-r5"),
            del(&crypto),
            add(&bb, "busybox>=1.36.1_p1-r0"),
            del(&bb),
            add(&curl, "libcurl>=8.5.0-r0"),
            del(&curl),
        ]
    );
    for step in &plan.steps {
        assert!(step.command.network, "{}: every apk step may fetch", step.summary);
        assert_eq!(step.command.context, ExecContext::Target);
        assert!(step.command.env.is_empty());
    }
    assert_eq!(plan.steps[1].summary, "apk add: upgrade libssl3 to at least 3.1.4-r5");
}

#[test]
fn with_ignore_errors_each_package_may_fail_alone() {
    let mut opts = options(UpdateMode::Report);
    opts.ignore_errors = true;
    let plan = plan(&Root::mini("alpine-3.19"), report(), opts);
    assert!(plan.steps.iter().all(|s| s.tolerate_failure));
}

#[test]
fn indexes_go_to_a_cache_and_never_into_the_layer() {
    let plan = alpine_plan();
    assert_eq!(plan.caches.len(), 1);
    assert_eq!(plan.caches[0].path, "/var/cache/apk");
    assert!(plan.caches[0].key.starts_with("apk-indexes-alpine-3.19.1-x86_64-"), "{}", plan.caches[0].key);
    assert_eq!(plan.drop_paths, DROP_PATHS);
    // What apk update and a configured package cache leave is covered
    // (`**`: any depth, as the WIT defines drop globs); the database is not.
    let covered = |path: &str| {
        DROP_PATHS.iter().any(|p| p.strip_suffix("**").map_or(*p == path, |dir| path.starts_with(dir)))
    };
    for leftover in [
        "/var/cache/apk/APKINDEX.5a59b88b.tar.gz",
        "/etc/apk/cache/libssl3-3.1.4-r5.6a4d3c2b.apk",
        "/etc/apk/cache/APKINDEX.5a59b88b.tar.gz",
        "/lib/apk/db/lock",
        "/var/log/apk.log",
    ] {
        assert!(covered(leftover), "{leftover}");
    }
    for kept in ["/lib/apk/db/installed", "/lib/apk/db/scripts.tar", "/lib/apk/db/triggers", "/etc/apk/world"]
    {
        assert!(!covered(kept), "{kept}");
    }
}

#[test]
fn the_cache_key_follows_repositories_and_keys() {
    let base = alpine_plan().caches[0].key.clone();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("root");
    copy_dir(&support::data("roots/alpine-3.19"), &copy);
    assert_eq!(plan(&Root::at(&copy), report(), options(UpdateMode::Report)).caches[0].key, base);
    std::fs::write(copy.join("etc/apk/repositories"), "https://dl-cdn.alpinelinux.org/alpine/edge/main\n")
        .unwrap();
    assert_ne!(plan(&Root::at(&copy), report(), options(UpdateMode::Report)).caches[0].key, base);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn without_apk_in_the_image_the_hosts_apk_works_on_it_with_root() {
    let root = Root::mini("wolfi-static").with_host_apk(HostApk::Present);
    let plan =
        plan(&root, vec![update("libcrypto3", "3.2.0-r1", &["3.2.0-r2"])], options(UpdateMode::Report));
    let steps: Vec<Vec<&str>> = plan.steps.iter().map(argv).collect();
    assert_eq!(
        steps,
        [
            [ROOTED, &["update"][..]].concat(),
            [ROOTED, &["add", "--upgrade", "--virtual", ".caulk-libcrypto3", "libcrypto3>=3.2.0-r2",][..],]
                .concat(),
            [ROOTED, &["del", ".caulk-libcrypto3"][..]].concat(),
        ]
    );
    for step in &plan.steps {
        let ExecContext::Tooling(tooling) = &step.command.context else { panic!("{step:?}") };
        assert_eq!((tooling.image.as_deref(), tooling.mount_point.as_str()), (None, "/target"));
    }
    assert_eq!(plan.caches[0].path, "/target/var/cache/apk");
    assert!(plan.caches[0].key.starts_with("apk-indexes-wolfi-20230201-x86_64-"), "{}", plan.caches[0].key);
    assert!(plan.selected[0].rationale.as_deref().unwrap().contains("dependency"));
}

#[test]
fn nothing_to_do_plans_no_steps() {
    let plan = plan(
        &Root::mini("alpine-3.19"),
        vec![update("musl", "1.2.4_git20230717-r4", &["1.2.4_git20230717-r3"])],
        options(UpdateMode::Report),
    );
    assert!(plan.steps.is_empty() && plan.selected.is_empty());
    assert!(plan.skipped[0].already_fixed);
}
