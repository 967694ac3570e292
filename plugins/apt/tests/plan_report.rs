//! Report-driven plans over real dpkg databases and real reports.

mod support;

use std::collections::BTreeSet;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::update::{PatchPlan, Step, UpdateMode, VersionTarget};
use support::{
    Root, dpkg_compare, edit_status, fixture, options, plan_request, read_data, status_versions,
    trivy_updates, update, upgradable_updates, with_installed_epoch, with_status,
};

fn install_step(plan: &PatchPlan) -> &Step {
    assert_eq!(plan.steps.len(), 3, "refresh, fetch, then install: {:#?}", plan.steps);
    // The fetch is the same command, downloading only, with network; the
    // install runs offline from what it fetched.
    let (fetch, install) = (&plan.steps[1], &plan.steps[2]);
    assert!(fetch.command.network && !install.command.network);
    let mut without = fetch.command.argv.clone();
    assert_eq!(without.remove(2), "--download-only");
    assert_eq!(without, install.command.argv);
    install
}

/// The package names given to apt-get, after `--`.
fn install_names(plan: &PatchPlan) -> Vec<String> {
    let argv = &install_step(plan).command.argv;
    let dashes = argv.iter().position(|a| a == "--").expect("`--` ends the options");
    argv[dashes + 1..].to_vec()
}

fn bookworm_status() -> String {
    read_data("roots/bookworm/var/lib/dpkg/status")
}

#[test]
fn packages_apt_can_upgrade_are_installed_by_name() {
    // Real `apt list --upgradable` of the Debian 12 root (bookworm plus
    // bookworm-security): 12 packages, each "fixed" by its candidate.
    let updates = upgradable_updates(&read_data("bookworm-upgradable.txt"));
    assert_eq!(updates.len(), 12);
    let plan = support::plan(&Root::mini("bookworm"), updates.clone(), options(UpdateMode::Report));
    assert!(plan.skipped.is_empty(), "{:#?}", plan.skipped);
    assert_eq!(plan.selected.len(), updates.len());
    let status = bookworm_status();
    for (selected, update) in plan.selected.iter().zip(&updates) {
        assert_eq!(selected.name, update.name);
        assert_eq!(selected.ecosystem, "deb");
        assert_eq!(selected.vulnerabilities, update.vulnerabilities);
        assert_eq!(selected.target, VersionTarget::AtLeast(update.fixed_versions[0].clone()));
        // `from` is what the image has, checked against the real dpkg order.
        let installed = status_versions(&status, &update.name);
        assert!(
            installed.contains(&selected.from),
            "{}: {} not in {installed:?}",
            update.name,
            selected.from
        );
        assert!(dpkg_compare(&selected.from, "lt", &update.fixed_versions[0]));
    }

    // libssl3 is installed for amd64 (native) and i386: both instances are
    // named, so the Multi-Arch: same pair moves together.
    let names = install_names(&plan);
    let mut expected: Vec<String> = updates.iter().map(|u| u.name.clone()).collect();
    let at = expected.iter().position(|n| n == "libssl3").unwrap();
    expected.insert(at + 1, "libssl3:i386".into());
    assert_eq!(names, expected);

    let refresh = &plan.steps[0];
    // apt-get update behind the script that skips it while the shared
    // indexes are fresh, with the default TTL, 0: always refreshed.
    assert_eq!(refresh.command.argv[..2], ["sh", "-c"]);
    assert_eq!(
        refresh.command.argv[4..8],
        [
            "0",
            "/var/lib/apt/lists/.caulk-refreshed",
            "caulk: package indexes reused",
            "/var/cache/apt/archives"
        ]
    );
    assert_eq!(
        refresh.command.argv[8..],
        ["apt-get", "update", "-o", "Acquire::Retries=3", "-o", "Acquire::Languages=none"]
    );
    assert!(refresh.tolerate_failure && refresh.command.network);
    let install = install_step(&plan);
    assert!(!install.tolerate_failure && !install.command.network);
    assert_eq!(
        install.command.argv[..13],
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--only-upgrade",
            "--no-remove",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            "Dpkg::Options::=--force-unsafe-io",
            "--",
        ]
    );
    for step in &plan.steps {
        assert_eq!(step.command.env, [("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())]);
        let apt = step.command.argv.iter().position(|a| a == "apt-get").unwrap();
        assert!(step.summary.starts_with(&format!("apt-get {}", step.command.argv[apt + 1])));
    }
}

#[test]
fn layer_drops_indexes_caches_and_logs_but_never_the_dpkg_database() {
    let plan = support::plan(
        &Root::mini("bookworm"),
        upgradable_updates(&read_data("bookworm-upgradable.txt")),
        options(UpdateMode::Report),
    );
    let dropped = |path: &str| plan.drop_paths.iter().any(|pattern| matches(pattern, path));
    for path in [
        "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
        "/var/lib/apt/lists/partial/x",
        "/var/cache/apt/pkgcache.bin",
        "/var/cache/apt/archives/openssl_3.0.22-1~deb12u2_amd64.deb",
        "/var/log/apt/history.log",
        "/var/log/apt/term.log",
        "/var/log/dpkg.log",
        "/var/log/alternatives.log",
        "/var/lib/dpkg/status-old",
        "/var/lib/dpkg/diversions-old",
        "/var/cache/debconf/config.dat-old",
        "/var/cache/debconf/templates.dat-old",
        "/var/cache/ldconfig/aux-cache",
    ] {
        assert!(dropped(path), "{path} stays in the layer: {:?}", plan.drop_paths);
    }
    for path in [
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/info/openssl.list",
        "/var/lib/apt/extended_states",
        "/var/cache/debconf/config.dat",
        "/usr/bin/openssl",
        "/etc/ssl/openssl.cnf",
        "/etc/ld.so.cache",
    ] {
        assert!(!dropped(path), "{path} would be dropped: {:?}", plan.drop_paths);
    }
}

/// Glob match with `*` (within a component) and `**` (any depth).
fn matches(pattern: &str, path: &str) -> bool {
    fn go(p: &[&str], s: &[&str]) -> bool {
        match (p.split_first(), s.split_first()) {
            (None, None) => true,
            (Some((&"**", rest)), _) => go(rest, s) || (!s.is_empty() && go(p, &s[1..])),
            (Some((pc, prest)), Some((sc, srest))) => {
                component(pc.as_bytes(), sc.as_bytes()) && go(prest, srest)
            }
            _ => false,
        }
    }
    fn component(p: &[u8], s: &[u8]) -> bool {
        match (p.split_first(), s.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => component(rest, s) || (!s.is_empty() && component(p, &s[1..])),
            (Some((a, prest)), Some((b, srest))) => a == b && component(prest, srest),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    go(&p, &s)
}

#[test]
fn index_caches_are_keyed_by_sources_release_and_architecture() {
    let updates = upgradable_updates(&read_data("bookworm-upgradable.txt"));
    let request = plan_request(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    let base = Apt::plan(&request).unwrap();
    let paths: Vec<&str> = base.caches.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/var/lib/apt/lists", "/var/cache/apt/archives"]);
    let key = base.caches[0].key.clone();
    assert!(key.starts_with("apt-lists-debian-12-amd64-"), "{key}");
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'), "{key}");
    assert_eq!(base.caches[1].key, key.replace("apt-lists-", "apt-archives-"));

    // The same sources in another image of the base (a different dpkg
    // database) share the cache.
    let other_image =
        with_status(request.clone(), read_data("status/bookworm-after-install.status").as_bytes());
    assert_eq!(Apt::plan(&other_image).unwrap().caches, base.caches);

    // Another source list, another release or another architecture do not.
    let mut other_sources = request.clone();
    for fact in &mut other_sources.facts {
        if fact.question_id == "apt-sources"
            && let caulk_sdk::update::Answer::Files(files) = &mut fact.answer
        {
            files.pop();
        }
    }
    assert_ne!(Apt::plan(&other_sources).unwrap().caches[0].key, key);
    let mut other_release = request.clone();
    other_release.target.os.as_mut().unwrap().version_id = Some("13".into());
    assert_ne!(Apt::plan(&other_release).unwrap().caches[0].key, key);
    let mut other_arch = request.clone();
    other_arch.target.platform.architecture = "arm64".into();
    assert_ne!(Apt::plan(&other_arch).unwrap().caches[0].key, key);

    // A hostile os-release cannot steer the key out of a plain file name.
    let mut hostile = request;
    hostile.target.os.as_mut().unwrap().id = "../../etc".into();
    let key = Apt::plan(&hostile).unwrap().caches[0].key.clone();
    assert!(!key.contains('/') && key.starts_with("apt-lists-..-..-etc-12-"), "{key}");
}

#[test]
fn held_packages_are_skipped_with_the_way_out() {
    let updates = upgradable_updates(&read_data("bookworm-upgradable.txt"));
    let request = plan_request(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    // The same root after `apt-mark hold openssl`.
    let request = with_status(request, read_data("status/bookworm-behind-held.status").as_bytes());
    let plan = Apt::plan(&request).unwrap();
    assert_eq!(plan.skipped.len(), 1, "{:#?}", plan.skipped);
    let held = &plan.skipped[0];
    assert_eq!(held.name, "openssl");
    assert_eq!(held.installed_version.as_deref(), Some("3.0.20-1~deb12u2"));
    assert!(!held.already_fixed);
    assert!(
        held.reason.contains("held") && held.reason.contains("apt-mark unhold openssl"),
        "{}",
        held.reason
    );
    assert!(!install_names(&plan).contains(&"openssl".to_owned()));
    assert_eq!(plan.selected.len(), 11);
}

#[test]
fn the_debian_11_nginx_report_against_a_current_bullseye_root() {
    // Trivy's report of nginx:1.21.6 (Debian 11.3) against a Debian 11.11
    // root: what the root has is either newer than every fix or missing.
    let updates = trivy_updates(&fixture("copa/copa-action/test/data/nginx.1.21.6.json"));
    assert!(updates.len() >= 30, "{} updates", updates.len());
    let status = read_data("roots/bullseye/var/lib/dpkg/status");
    let plan = support::plan(&Root::mini("bullseye"), updates.clone(), options(UpdateMode::Report));
    assert_eq!(plan.selected.len() + plan.skipped.len(), updates.len());
    let (mut fixed, mut missing) = (0, 0);
    for skipped in &plan.skipped {
        let update = updates.iter().find(|u| u.name == skipped.name).unwrap();
        let installed = status_versions(&status, &update.name);
        if skipped.already_fixed {
            fixed += 1;
            let version = skipped.installed_version.as_deref().unwrap();
            assert_eq!(installed, [version]);
            for fix in &update.fixed_versions {
                let fix = with_installed_epoch(version, fix);
                assert!(dpkg_compare(version, "ge", &fix), "{}: dpkg says {version} < {fix}", update.name);
            }
            assert!(skipped.reason.contains("already at or above"), "{}", skipped.reason);
        } else {
            missing += 1;
            assert!(installed.is_empty(), "{} is installed: {installed:?}", update.name);
            assert_eq!(skipped.installed_version, None);
            assert!(skipped.reason.contains("is not installed"), "{}", skipped.reason);
        }
    }
    for selected in &plan.selected {
        let VersionTarget::AtLeast(fix) = &selected.target else { panic!("{selected:?}") };
        assert!(
            dpkg_compare(&selected.from, "lt", fix),
            "{} {} is not below {fix}",
            selected.name,
            selected.from
        );
    }
    assert!(fixed >= 10 && missing >= 5, "{fixed} already fixed, {missing} not installed");
    // zlib1g 1:1.2.11.dfsg-2+deb11u2 (epoch 1) against the report's fix.
    let zlib = plan.skipped.iter().find(|s| s.name == "zlib1g").expect("zlib1g is in the report");
    assert!(zlib.already_fixed, "{zlib:?}");
    // Nothing to install: no steps, no caches, so the host makes no layer.
    if plan.selected.is_empty() {
        assert!(plan.steps.is_empty() && plan.caches.is_empty() && plan.drop_paths.is_empty());
    }
}

/// The real Debian 13 dpkg database with the util-linux family rolled back
/// to the versions the Trivy report of a Debian 13.6 image saw.
fn trixie_before_status() -> String {
    let mut status = read_data("roots/trixie/var/lib/dpkg/status");
    let updates = trivy_updates(&fixture("reports/trivy-debian-flask-python-app-1.json"));
    for update in &updates {
        status = edit_status(&status, &update.name, &update.installed_version, Some("util-linux (2.41-5)"));
    }
    status
}

#[test]
fn login_built_from_util_linux_is_not_mistaken_for_fixed() {
    let updates = trivy_updates(&fixture("reports/trivy-debian-flask-python-app-1.json"));
    let login = updates.iter().find(|u| u.name == "login").expect("login is in the report");
    assert_eq!(login.installed_version, "1:4.16.0-2+really2.41-5");
    assert!(login.fixed_versions.contains(&"2.41.5-0+deb13u1".to_owned()));
    // dpkg itself calls it fixed once the epoch is restored: the pitfall.
    assert!(dpkg_compare(&login.installed_version, "ge", "1:2.41.5-0+deb13u1"));

    let root = Root::mini("trixie");
    let before = plan_request(&root, updates.clone(), options(UpdateMode::Report));
    let before = with_status(before, trixie_before_status().as_bytes());
    let plan = Apt::plan(&before).unwrap();
    let selected = plan.selected.iter().find(|s| s.name == "login").expect("login is selected");
    assert_eq!(selected.from, "1:4.16.0-2+really2.41-5");
    let rationale = selected.rationale.as_deref().unwrap();
    assert!(rationale.contains("source util-linux 2.41-5"), "{rationale}");
    assert!(install_names(&plan).contains(&"login".to_owned()));
    let bsdutils = plan.selected.iter().find(|s| s.name == "bsdutils").expect("bsdutils is selected");
    assert_eq!(bsdutils.target, VersionTarget::AtLeast("1:2.41.5-0+deb13u1".into()));
    assert!(bsdutils.rationale.as_deref().unwrap().contains("installed epoch 1"));
    // `mount` is in the report but not in this minimal root.
    let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["mount"]);
    assert!(plan.skipped[0].reason.starts_with("mount is not installed"));
    assert_eq!(plan.selected.len(), updates.len() - 1);

    // The real current Debian 13 root carries util-linux 2.41.5-0+deb13u1:
    // login's source version now reaches the fix.
    let after = plan_request(&root, updates.clone(), options(UpdateMode::Report));
    let plan = Apt::plan(&after).unwrap();
    assert!(plan.selected.is_empty(), "{:#?}", plan.selected);
    let login = plan.skipped.iter().find(|s| s.name == "login").unwrap();
    assert!(login.already_fixed, "{login:?}");
    assert!(plan.skipped.iter().all(|s| s.already_fixed || s.name == "mount"), "{:#?}", plan.skipped);
}

#[test]
fn the_highest_fixed_version_is_the_target() {
    // libexpat1 2.5.0-1+deb12u2 with fixes from two vulnerabilities.
    let three =
        update("libexpat1", "2.5.0-1+deb12u2", &["2.5.0-1+deb12u3", "2.5.0-1+deb12u5", "2.5.0-1+deb12u3"]);
    let plan = support::plan(&Root::mini("bookworm"), vec![three], options(UpdateMode::Report));
    let selected = &plan.selected[0];
    assert_eq!(selected.target, VersionTarget::AtLeast("2.5.0-1+deb12u5".into()));
    assert_eq!(selected.passed_over.len(), 1);
    assert_eq!(selected.passed_over[0].version, "2.5.0-1+deb12u3");
    assert!(selected.rationale.as_deref().unwrap().contains("highest of 2 fixed versions"));

    // Above one fix but below another: still selected.
    let partly = update("libexpat1", "2.5.0-1+deb12u2", &["2.5.0-1+deb12u1", "2.5.0-1+deb12u5"]);
    let partly_fixed = support::plan(&Root::mini("bookworm"), vec![partly], options(UpdateMode::Report));
    assert_eq!(partly_fixed.selected.len(), 1);
}

#[test]
fn skip_reasons_name_the_package_and_the_rule() {
    let updates = vec![
        // Not installed at all.
        update("curl", "7.88.1-10+deb12u5", &["7.88.1-10+deb12u12"]),
        // Installed for amd64 and i386 but not arm64.
        update("libssl3:arm64", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        // libc6 2.36-9+deb12u14 is newer than bookworm-security's
        // 2.36-9+deb12u7 (both real versions).
        update("libc6", "2.36-9+deb12u14", &["2.36-9+deb12u7"]),
        // A library finding: not apt's.
        caulk_sdk::update::Update { ecosystem: "python".into(), ..update("requests", "2.25.0", &["2.32.0"]) },
        // The report lists no fix.
        update("libexpat1", "2.5.0-1+deb12u2", &[]),
    ];
    let plan = support::plan(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    assert!(plan.selected.is_empty());
    let reasons: Vec<(&str, &str, bool)> =
        plan.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str(), s.already_fixed)).collect();
    assert!(reasons[0].1.starts_with("curl is not installed"), "{reasons:?}");
    assert!(
        reasons[1].1.contains("libssl3:arm64 is not installed; libssl3 is installed for amd64, i386"),
        "{reasons:?}"
    );
    assert!(
        reasons[2]
            .1
            .contains("libc6 2.36-9+deb12u14 is already at or above the fixed version 2.36-9+deb12u7")
    );
    assert!(reasons[2].2);
    assert!(dpkg_compare("2.36-9+deb12u14", "ge", "2.36-9+deb12u7"));
    assert!(reasons[3].1.contains("ecosystem \"python\""), "{reasons:?}");
    assert!(reasons[4].1.contains("lists no fixed version"), "{reasons:?}");
    assert!(plan.steps.is_empty());
}

#[test]
fn one_architecture_of_a_multi_arch_package_can_be_chosen() {
    let updates = vec![update("libssl3:i386", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])];
    let plan = support::plan(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    assert_eq!(install_names(&plan), ["libssl3:i386"]);
    // The native architecture, spelled out, is the bare name for apt.
    let updates = vec![update("libssl3:amd64", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])];
    let native = support::plan(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    assert_eq!(install_names(&native), ["libssl3"]);
    assert_eq!(native.selected[0].name, "libssl3:amd64", "the report's spelling stays for the outcome");
}

#[test]
fn ubuntu_and_its_derivatives_include_phased_updates() {
    let phased = |plan: &PatchPlan| {
        install_step(plan).command.argv.iter().any(|a| a == "APT::Get::Always-Include-Phased-Updates=true")
    };
    let updates = vec![update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])];
    let request = plan_request(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    assert!(!phased(&Apt::plan(&request).unwrap()));
    let mut ubuntu = request.clone();
    let os = ubuntu.target.os.as_mut().unwrap();
    os.id = "ubuntu".into();
    os.id_like = vec!["debian".into()];
    assert!(phased(&Apt::plan(&ubuntu).unwrap()));
    let mut mint = request;
    let os = mint.target.os.as_mut().unwrap();
    os.id = "linuxmint".into();
    os.id_like = vec!["ubuntu".into(), "debian".into()];
    assert!(phased(&Apt::plan(&mint).unwrap()));
}

#[test]
fn install_names_are_always_installed_packages() {
    // Whatever the report says, only names of installed packages reach apt.
    let updates = trivy_updates(&fixture("copa/copa-action/test/data/nginx.1.21.6.json"))
        .into_iter()
        .chain(upgradable_updates(&read_data("bookworm-upgradable.txt")))
        .collect();
    let plan = support::plan(&Root::mini("bookworm"), updates, options(UpdateMode::Report));
    let status = bookworm_status();
    let installed: BTreeSet<&str> = status
        .split("\n\n")
        .filter(|p| p.contains("\nStatus: install ok installed"))
        .filter_map(|p| p.lines().next()?.strip_prefix("Package: "))
        .collect();
    for name in install_names(&plan) {
        let bare = name.split(':').next().unwrap();
        assert!(installed.contains(bare), "{name} is not installed");
    }
}
