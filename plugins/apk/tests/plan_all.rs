//! Update-all mode: `apk upgrade`, every package but virtual ones.

mod support;

use caulk_sdk::update::{UpdateMode, VersionTarget};
use support::{Root, options, plan};

#[test]
fn apk_upgrade_upgrades_every_real_package() {
    let plan = plan(&Root::mini("alpine-3.19"), Vec::new(), options(UpdateMode::All));
    let steps: Vec<(Vec<&str>, bool)> = plan
        .steps
        .iter()
        .map(|s| (s.command.argv.iter().map(String::as_str).collect(), s.tolerate_failure))
        .collect();
    assert_eq!(
        steps,
        [(vec!["apk", "--no-progress", "update"], true), (vec!["apk", "--no-progress", "upgrade"], false)]
    );
    let names: Vec<&str> = plan.selected.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "musl",
            "busybox",
            "libcrypto3",
            "libssl3",
            "ssl_client",
            "zlib",
            "libcurl",
            "ca-certificates-bundle",
            "apk-tools"
        ]
    );
    assert!(plan.selected.iter().all(|s| s.target == VersionTarget::Newest));
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].name, ".build-deps");
    assert!(plan.skipped[0].reason.contains("virtual package"), "{}", plan.skipped[0].reason);
}

#[test]
fn without_apk_in_the_image_apk_upgrade_runs_from_the_tooling_root() {
    let root = Root::mini("wolfi-static").with_host_apk(support::HostApk::Present);
    let plan = plan(&root, Vec::new(), options(UpdateMode::All));
    let steps: Vec<Vec<&str>> =
        plan.steps.iter().map(|s| s.command.argv.iter().map(String::as_str).collect()).collect();
    assert_eq!(steps, [[support::ROOTED, &["update"]].concat(), [support::ROOTED, &["upgrade"]].concat()]);
    for step in &plan.steps {
        let caulk_sdk::update::ExecContext::Tooling(tooling) = &step.command.context else {
            panic!("{step:?}")
        };
        assert_eq!((tooling.image.as_deref(), tooling.mount_point.as_str()), (None, "/target"));
    }
    assert_eq!(plan.caches[0].path, "/target/var/cache/apk");
}
