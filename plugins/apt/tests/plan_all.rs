//! Update-all mode (no report): the distribution's upgrade.

mod support;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::update::{UpdateMode, VersionTarget};
use support::{Root, options, plan_request, read_data, with_status};

/// `Package` lines of installed paragraphs; a package installed for two
/// architectures (libssl3, libc6, ... for amd64 and i386) carries its
/// architecture both times.
fn installed(status: &str) -> Vec<String> {
    let paragraphs: Vec<(&str, &str)> = status
        .split("\n\n")
        .filter(|p| p.contains("\nStatus: install ok installed") || p.contains("\nStatus: hold ok installed"))
        .map(|p| {
            let name = p.lines().next().unwrap().strip_prefix("Package: ").unwrap();
            (name, p.lines().find_map(|l| l.strip_prefix("Architecture: ")).unwrap())
        })
        .collect();
    paragraphs
        .iter()
        .map(|(name, arch)| {
            if paragraphs.iter().filter(|(n, _)| n == name).count() > 1 {
                format!("{name}:{arch}")
            } else {
                (*name).to_owned()
            }
        })
        .collect()
}

#[test]
fn every_installed_package_is_selected_for_its_newest_version() {
    let root = Root::mini("bookworm");
    let plan = Apt::plan(&plan_request(&root, Vec::new(), options(UpdateMode::All))).unwrap();
    let status = read_data("roots/bookworm/var/lib/dpkg/status");
    let expected = installed(&status);
    assert_eq!(expected.len(), 97, "the root's real package count");
    let names: Vec<&str> = plan.selected.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, expected);
    assert!(plan.skipped.is_empty());
    assert!(plan.selected.iter().all(|s| s.target == VersionTarget::Newest && s.vulnerabilities.is_empty()));
    let libssl_i386 = plan.selected.iter().find(|s| s.name == "libssl3:i386").unwrap();
    assert_eq!(libssl_i386.from, "3.0.20-1~deb12u2");

    assert_eq!(plan.steps.len(), 3);
    assert_eq!(plan.steps[0].command.argv[8..10], ["apt-get", "update"]);
    assert_eq!(plan.steps[1].command.argv[..3], ["apt-get", "upgrade", "--download-only"]);
    assert!(plan.steps[1].command.network && !plan.steps[2].command.network);
    assert_eq!(
        plan.steps[2].command.argv,
        [
            "apt-get",
            "upgrade",
            "-y",
            "--with-new-pkgs",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            "Dpkg::Options::=--force-unsafe-io",
        ]
    );
    assert!(plan.steps[..2].iter().all(|s| s.command.network), "only the install runs offline");
    assert!(!plan.drop_paths.is_empty() && plan.caches.len() == 2);
}

#[test]
fn held_packages_stay_and_say_so() {
    let request = plan_request(&Root::mini("bookworm"), Vec::new(), options(UpdateMode::All));
    let plan =
        Apt::plan(&with_status(request, read_data("status/bookworm-behind-held.status").as_bytes())).unwrap();
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].name, "openssl");
    assert!(plan.skipped[0].reason.contains("held"), "{}", plan.skipped[0].reason);
    assert_eq!(plan.selected.len(), 96);
    assert!(!plan.selected.iter().any(|s| s.name == "openssl"));
}

#[test]
fn ubuntu_upgrades_include_phased_updates() {
    let mut request = plan_request(&Root::mini("bookworm"), Vec::new(), options(UpdateMode::All));
    request.target.os.as_mut().unwrap().id = "ubuntu".into();
    let plan = Apt::plan(&request).unwrap();
    assert_eq!(plan.steps[2].command.argv.last().unwrap(), "APT::Get::Always-Include-Phased-Updates=true");
}
