//! The plan's steps run with the host's real dnf on a root of
//! tests/images/rpm.sh, as the host's sandbox would run them (the root where
//! the sandbox mounts it, a private HOME), then verification from the
//! patched rpm database.

mod support;

use std::process::Command;

use caulk_plugin_rpm::Rpm;
use caulk_plugin_rpm::probe::TOOLING_MOUNT;
use caulk_sdk::Updater;
use caulk_sdk::update::{OutcomeStatus, PatchPlan, Phase, StepResult, UpdateMode, VerifyRequest};
use support::{Root, Server, options, plan, probe, rpm_q, update};

/// Runs every step natively; returns how each went.
fn run_steps(root: &Root, plan: &PatchPlan) -> Vec<StepResult> {
    let home = tempfile::tempdir().unwrap();
    let dir = root.dir.to_str().unwrap();
    plan.steps
        .iter()
        .map(|step| {
            let argv: Vec<String> = step
                .command
                .argv
                .iter()
                .map(|a| match a.strip_prefix(TOOLING_MOUNT) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{dir}{rest}"),
                    _ => a.replace(&format!("={TOOLING_MOUNT}"), &format!("={dir}")),
                })
                .collect();
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            for (key, value) in &step.command.env {
                let value = match (key.as_str(), value.as_str()) {
                    ("HOME", _) => home.path().to_str().unwrap(),
                    (_, TOOLING_MOUNT) => dir,
                    _ => value,
                };
                command.env(key, value);
            }
            let out = command.output().unwrap();
            StepResult {
                summary: step.summary.clone(),
                exit_code: out.status.code().unwrap_or(-1),
                stderr_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

fn verify(root: &Root, plan: &PatchPlan, steps: Vec<StepResult>) -> Vec<caulk_sdk::update::Outcome> {
    let (facts, _) = probe(root, Phase::Verify, &options(UpdateMode::Report));
    Rpm::verify(&VerifyRequest {
        target: root.target(),
        options: options(UpdateMode::Report),
        selected: plan.selected.clone(),
        steps,
        facts,
    })
    .unwrap()
}

#[test]
fn the_hosts_dnf_moves_a_toolless_root_and_its_dependency_to_the_newest_fix() {
    let server = Server::start();
    let root = Root::unpack("toolless");
    root.write("/etc/yum.repos.d/caulk.repo", &server.repo_file());
    let plan = plan(
        &root,
        vec![
            update("caulk-demo", "1.0-1", &["1.1-1"]),
            update("caulk-data", "2.0-1", &["2.1-1"]),
            // The repository's newest is 3.0-1: no fix to install.
            update("caulk-tool", "3.0-1", &["3.1-1"]),
        ],
        options(UpdateMode::Report),
    );
    let steps = run_steps(&root, &plan);
    assert_eq!(steps[0].exit_code, 0, "{}", steps[0].stderr_tail);

    // The newest version lands, not just the fixed one, and the library
    // the program requires moves with it.
    assert_eq!(rpm_q(&root.dir, "caulk-demo"), "1.2-1");
    assert_eq!(rpm_q(&root.dir, "caulk-demo-libs"), "1.2-1");
    assert_eq!(rpm_q(&root.dir, "caulk-data"), "1:2.1-1");
    assert_eq!(
        std::fs::read_to_string(root.dir.join("usr/lib/libcaulkdemo.txt")).unwrap(),
        "libcaulkdemo 1.2\n"
    );

    let outcomes = verify(&root, &plan, steps);
    let got: Vec<(&str, Option<&str>, &OutcomeStatus)> =
        outcomes.iter().map(|o| (o.name.as_str(), o.to.as_deref(), &o.status)).collect();
    assert_eq!(
        got,
        [
            ("caulk-demo", Some("1.2-1"), &OutcomeStatus::Patched),
            ("caulk-data", Some("1:2.1-1"), &OutcomeStatus::Patched),
            ("caulk-tool", Some("3.0-1"), &OutcomeStatus::Failed),
        ]
    );
    assert!(outcomes[2].detail.contains("offer no fixed version"), "{}", outcomes[2].detail);
    for outcome in &outcomes {
        let check = &outcome.checks[0];
        assert!(check.name == "rpmdb --verifydb" && check.passed, "{check:?}");
    }
    // dnf's cache, logs and history went into the root; the plan drops them.
    assert!(root.dir.join("var/lib/dnf").exists() && root.dir.join("var/log/dnf.log").exists());
    assert!(plan.drop_paths.contains(&"/var/lib/dnf/**".to_owned()));
}

#[test]
fn a_failed_upgrade_is_reported_with_dnfs_reason() {
    let server = Server::start();
    let root = Root::unpack("toolless");
    root.write("/etc/yum.repos.d/caulk.repo", &server.repo_file());
    let mut opts = options(UpdateMode::Report);
    opts.ignore_errors = true;
    let plan = plan(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], opts);
    // The repository goes away between planning and the step.
    drop(server);
    let steps = run_steps(&root, &plan);
    assert_ne!(steps[0].exit_code, 0);
    let outcomes = verify(&root, &plan, steps);
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(
        outcomes[0].detail.starts_with("caulk-demo stayed at 1.0-1, below the fixed version 1.1-1; step `upgrade: caulk-demo` failed (exit 1): "),
        "{}",
        outcomes[0].detail
    );
    assert_eq!(rpm_q(&root.dir, "caulk-demo"), "1.0-1");
}

#[test]
fn azure_linux_manifests_follow_the_database() {
    let server = Server::start();
    let root = Root::unpack("azure");
    root.write("/etc/yum.repos.d/caulk.repo", &server.repo_file());
    let plan = plan(&root, vec![update("caulk-data", "1:2.0-1", &["1:2.1-1"])], options(UpdateMode::Report));
    let steps = run_steps(&root, &plan);
    assert!(steps.iter().all(|s| s.exit_code == 0), "{steps:?}");
    let manifest1 =
        std::fs::read_to_string(root.dir.join("var/lib/rpmmanifest/container-manifest-1")).unwrap();
    assert!(manifest1.lines().any(|l| l == "caulk-data-2.1-1.noarch"), "{manifest1}");
    assert!(!manifest1.contains("caulk-data-2.0-1"), "{manifest1}");
    let manifest2 =
        std::fs::read_to_string(root.dir.join("var/lib/rpmmanifest/container-manifest-2")).unwrap();
    let line = manifest2.lines().find(|l| l.starts_with("caulk-data\t")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 10, "{line}");
    assert_eq!((fields[1], fields[5], fields[7], fields[8]), ("2.1-1", "1", "noarch", "1"), "{line}");
    assert!(!root.dir.join("var/lib/rpmmanifest/container-manifest-1.caulk").exists());
    let outcomes = verify(&root, &plan, steps);
    assert_eq!(outcomes[0].status, OutcomeStatus::Patched);
    let manifest = outcomes[0].checks.iter().find(|c| c.name == "container manifest").unwrap();
    assert!(manifest.passed, "{manifest:?}");
}

#[test]
fn an_image_with_only_manifests_gets_the_fixed_packages_unpacked_and_listed() {
    let server = Server::start();
    let root = Root::unpack("azure");
    root.remove("/var/lib/rpm");
    root.write("/etc/yum.repos.d/caulk.repo", &server.repo_file());
    let plan = plan(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], options(UpdateMode::Report));
    let steps = run_steps(&root, &plan);
    assert_eq!(steps[0].exit_code, 0, "{}", steps[0].stderr_tail);
    // The named package and its library, built from the same source
    // package, are unpacked; caulk-data, fetched by nobody, is not touched.
    assert_eq!(std::fs::read_to_string(root.dir.join("usr/bin/caulk-demo")).unwrap(), "caulk-demo 1.2\n");
    assert_eq!(
        std::fs::read_to_string(root.dir.join("usr/lib/libcaulkdemo.txt")).unwrap(),
        "libcaulkdemo 1.2\n"
    );
    assert_eq!(std::fs::read_to_string(root.dir.join("usr/share/caulk/data.txt")).unwrap(), "data 2.0\n");
    assert!(!root.dir.join("var/lib/rpm").exists() && !root.dir.join("var/lib/caulk-rpmdb").exists());
    let manifest1 =
        std::fs::read_to_string(root.dir.join("var/lib/rpmmanifest/container-manifest-1")).unwrap();
    let mut lines: Vec<&str> = manifest1.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "azurelinux-release-3.0-1.noarch",
            "caulk-data-2.0-1.noarch",
            "caulk-demo-1.2-1.x86_64",
            "caulk-demo-libs-1.2-1.x86_64"
        ]
    );
    let manifest2 =
        std::fs::read_to_string(root.dir.join("var/lib/rpmmanifest/container-manifest-2")).unwrap();
    let demo: Vec<&str> =
        manifest2.lines().find(|l| l.starts_with("caulk-demo\t")).unwrap().split('\t').collect();
    assert_eq!(demo.len(), 10);
    assert_eq!((demo[1], demo[7], demo[9]), ("1.2-1", "x86_64", "caulk-demo-1.2-1.src.rpm"));
    assert!(demo[2].parse::<u64>().is_ok_and(|t| t > 1_700_000_000), "install time {:?}", demo[2]);
    let outcomes = verify(&root, &plan, steps);
    assert_eq!(outcomes[0].status, OutcomeStatus::Patched, "{}", outcomes[0].detail);
    assert_eq!(outcomes[0].to.as_deref(), Some("1.2-1"));
}
