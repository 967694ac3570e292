//! Plans for the roots of tests/images/rpm.sh, with the facts the real rpm
//! and dnf of the host give.

mod support;

use caulk_plugin_rpm::Rpm;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{ExecContext, Phase, UpdateMode, VersionTarget};
use support::{Root, options, plan, plan_request, probe, update};

const REPO: &str = "[caulk-test]\nname=test\nbaseurl=http://127.0.0.1:9/\ngpgcheck=0\n";

fn toolless() -> Root {
    let root = Root::unpack("toolless");
    root.write("/etc/yum.repos.d/caulk.repo", REPO);
    root
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_toolless_image_is_planned_for_the_hosts_dnf_with_its_own_repos_and_release() {
    let root = toolless();
    let (_, rounds) = probe(&root, Phase::Plan, &options(UpdateMode::Report));
    assert_eq!(rounds, 2, "files first, then rpm -qa, the releasever provide and the host's dnf");
    let plan = plan(
        &root,
        vec![
            update("caulk-demo", "1.0-1", &["1.1-1"]),
            update("caulk-data", "2.0-1", &["2.1-1"]),
            update("caulk-tool", "3.0-1", &["2.9-1"]),
            update("nope", "1.0-1", &["1.1-1"]),
        ],
        options(UpdateMode::Report),
    );
    let selected: Vec<(&str, &str, &VersionTarget)> =
        plan.selected.iter().map(|s| (s.name.as_str(), s.from.as_str(), &s.target)).collect();
    assert_eq!(
        selected,
        [
            ("caulk-demo", "1.0-1", &VersionTarget::AtLeast("1.1-1".into())),
            // The report's 2.1-1 has no epoch: the installed epoch 1 applies.
            ("caulk-data", "1:2.0-1", &VersionTarget::AtLeast("1:2.1-1".into())),
        ]
    );
    assert!(plan.selected[1].rationale.as_deref().unwrap().contains("installed epoch 1 applies"));
    let skipped: Vec<(&str, bool)> =
        plan.skipped.iter().map(|s| (s.name.as_str(), s.already_fixed)).collect();
    assert_eq!(skipped, [("caulk-tool", true), ("nope", false)]);
    assert!(plan.skipped[1].reason.contains("not installed"), "{}", plan.skipped[1].reason);

    assert_eq!(plan.steps.len(), 1);
    let command = &plan.steps[0].command;
    assert_eq!(command.argv[..2], strings(&["sh", "-c"]));
    assert_eq!(
        command.argv[3..],
        strings(&[
            "sh",
            "dnf",
            "-y",
            "--noplugins",
            "--refresh",
            "--installroot=/target",
            "--releasever=1",
            "--setopt=reposdir=/target/etc/yum.repos.d",
            "--setopt=skip_if_unavailable=False",
            "--setopt=install_weak_deps=False",
            "upgrade",
            "caulk-demo",
            "caulk-data",
        ])
    );
    assert!(
        matches!(&command.context, ExecContext::Tooling(t) if t.image.is_none() && t.mount_point == "/target")
    );
    assert!(command.network);
    assert!(command.env.contains(&("CAULK_RPM_DBPATH".into(), "/var/lib/rpm".into())), "{:?}", command.env);
    assert!(!plan.steps[0].tolerate_failure);
    assert_eq!(plan.caches.len(), 1);
    assert_eq!(plan.caches[0].path, "/target/var/cache/dnf");
    assert!(plan.caches[0].key.starts_with("rpm-host-dnf-caulk-1-amd64-"), "{}", plan.caches[0].key);
    for churn in [
        "/var/lib/dnf/**",
        "/var/cache/libdnf5/**",
        "/var/log/dnf*.log",
        "/var/lib/rpm/.rpm.lock",
        "/var/lib/rpm/__db.*",
    ] {
        assert!(plan.drop_paths.iter().any(|p| p == churn), "{churn} not dropped: {:?}", plan.drop_paths);
    }
    assert!(!plan.drop_paths.iter().any(|p| p.ends_with("rpmdb.sqlite") || p.ends_with("/Packages")));
}

#[test]
fn with_ignore_errors_each_package_has_its_own_tolerated_step() {
    let root = toolless();
    let mut opts = options(UpdateMode::Report);
    opts.ignore_errors = true;
    let plan = plan(
        &root,
        vec![update("caulk-demo", "1.0-1", &["1.1-1"]), update("caulk-data", "1:2.0-1", &["1:2.1-1"])],
        opts,
    );
    let steps: Vec<(&str, bool)> =
        plan.steps.iter().map(|s| (s.summary.as_str(), s.tolerate_failure)).collect();
    assert_eq!(steps, [("upgrade: caulk-demo", true), ("upgrade: caulk-data", true)]);
}

#[test]
fn update_all_upgrades_everything() {
    let root = toolless();
    let plan = plan(&root, Vec::new(), options(UpdateMode::All));
    let names: Vec<&str> = plan.selected.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["caulk-data", "caulk-demo", "caulk-demo-libs", "caulk-release", "caulk-tool"]);
    assert!(plan.selected.iter().all(|s| s.target == VersionTarget::Newest));
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].command.argv.last().map(String::as_str), Some("upgrade"));
}

#[test]
fn the_images_own_package_manager_is_preferred_in_copas_order() {
    // dnf 4 and dnf5 take the same command; only the cache differs.
    const DNF_UPGRADE: &[&str] = &[
        "dnf",
        "-y",
        "--refresh",
        "--setopt=skip_if_unavailable=False",
        "--setopt=install_weak_deps=False",
        "upgrade",
    ];
    let cases: &[(&[&str], &[&str], Option<&str>)] = &[
        (
            &["/usr/bin/dnf", "/usr/bin/tdnf"],
            &["tdnf", "-y", "--refresh", "upgrade"],
            Some("/var/cache/tdnf"),
        ),
        (&["/usr/bin/dnf", "/usr/bin/yum", "/usr/bin/microdnf"], DNF_UPGRADE, Some("/var/cache/dnf")),
        (&["/usr/bin/dnf", "/usr/bin/dnf5"], DNF_UPGRADE, Some("/var/cache/libdnf5")),
        (&["/usr/bin/yum"], &["yum", "-y", "upgrade"], None),
        (&["/usr/bin/microdnf"], &["microdnf", "-y", "update"], None),
        (&["/usr/bin/zypper"], &["zypper", "--non-interactive", "update"], None),
    ];
    for (programs, head, cache) in cases {
        let root = Root::unpack("toolless");
        for program in *programs {
            root.add_program(program);
        }
        let plan = plan(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], options(UpdateMode::Report));
        let mut argv = strings(head);
        argv.push("caulk-demo".into());
        assert_eq!(plan.steps[0].command.argv, argv, "{programs:?}");
        assert_eq!(plan.steps[0].command.context, ExecContext::Target);
        assert_eq!(plan.caches.first().map(|c| c.path.as_str()), *cache, "{programs:?}");
    }
}

#[test]
fn azure_linux_manifests_are_rewritten_after_the_upgrade() {
    let root = Root::unpack("azure");
    root.write("/etc/yum.repos.d/caulk.repo", REPO);
    let plan = plan(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], options(UpdateMode::Report));
    assert!(
        plan.steps[0].command.argv.contains(&"--releasever=3.0".to_owned()),
        "{:?}",
        plan.steps[0].command.argv
    );
    assert_eq!(plan.steps.len(), 2);
    let rewrite = &plan.steps[1];
    assert!(
        rewrite.summary.starts_with("rewrite /var/lib/rpmmanifest/container-manifest-1"),
        "{}",
        rewrite.summary
    );
    assert_eq!(rewrite.command.argv[3..6], strings(&["sh", "/target", "/var/lib/rpm"]));
    assert!(matches!(rewrite.command.context, ExecContext::Tooling(_)));
}

#[test]
fn images_the_plugin_cannot_patch_say_why() {
    let err = |root: &Root| {
        Rpm::plan(&plan_request(
            root,
            vec![update("caulk-demo", "1.0-1", &["1.1-1"])],
            options(UpdateMode::Report),
        ))
        .unwrap_err()
    };

    let manifests_and_tdnf = Root::unpack("azure");
    manifests_and_tdnf.write("/etc/yum.repos.d/caulk.repo", REPO);
    manifests_and_tdnf.remove("/var/lib/rpm");
    manifests_and_tdnf.add_program("/usr/bin/tdnf");
    let e = err(&manifests_and_tdnf);
    assert_eq!(e.kind, ErrorKind::NotApplicable);
    assert!(
        e.message.contains("lists its packages only in /var/lib/rpmmanifest/container-manifest-2"),
        "{}",
        e.message
    );

    let no_db = toolless();
    no_db.remove("/var/lib/rpm");
    let e = err(&no_db);
    assert_eq!(e.kind, ErrorKind::NotApplicable);
    assert!(e.message.contains("no rpm database") && e.message.contains("caulk test 1"), "{}", e.message);

    let no_repos = Root::unpack("toolless");
    let e = err(&no_repos);
    assert_eq!(e.kind, ErrorKind::NotApplicable);
    assert!(e.message.contains("no *.repo file in /etc/yum.repos.d"), "{}", e.message);

    let broken = toolless();
    std::fs::write(broken.dir.join("var/lib/rpm/rpmdb.sqlite"), b"not a database").unwrap();
    let e = err(&broken);
    assert_eq!(e.kind, ErrorKind::MalformedInput);
    assert!(e.message.contains("reading the image's rpm database in /var/lib/rpm failed"), "{}", e.message);
}

#[test]
fn hostile_report_entries_never_reach_dnf() {
    let root = toolless();
    for (name, installed, fixed, expected) in [
        ("--nogpgcheck", "1.0-1", "1.1-1", "not an RPM package name"),
        ("caulk-demo;reboot", "1.0-1", "1.1-1", "not an RPM package name"),
        ("caulk-demo", "1.0-1", "1.1 -1", "not an RPM version"),
    ] {
        let request =
            plan_request(&root, vec![update(name, installed, &[fixed])], options(UpdateMode::Report));
        let e = Rpm::plan(&request).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedInput, "{name}");
        assert!(e.message.contains(expected), "{}", e.message);
        let mut lenient = request.clone();
        lenient.options.ignore_errors = true;
        let plan = Rpm::plan(&lenient).unwrap();
        assert!(plan.steps.is_empty() && plan.selected.is_empty(), "{name}: {plan:?}");
        assert!(plan.skipped[0].reason.contains("skipped: --ignore-errors"));
    }
    let mut opts = options(UpdateMode::Report);
    opts.settings = vec![("x".into(), "y".into())];
    assert_eq!(Rpm::plan(&plan_request(&root, Vec::new(), opts)).unwrap_err().kind, ErrorKind::Unsupported);
}

#[test]
fn a_toolless_image_needs_a_dnf_on_the_host() {
    use caulk_sdk::update::{Answer, CommandOutput};
    let root = toolless();
    let mut request =
        plan_request(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], options(UpdateMode::Report));
    let fact = request.facts.iter_mut().find(|f| f.question_id == caulk_plugin_rpm::probe::HOST_DNF).unwrap();
    // What `command -v dnf` answers on a host without dnf.
    fact.answer = Answer::Output(CommandOutput { exit_code: 1, stdout: Vec::new(), stderr: Vec::new() });
    let e = Rpm::plan(&request).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotApplicable);
    assert!(
        e.message.ends_with(
            "the host's dnf cannot work on it: `command -v dnf` on the host exited with 1: no dnf on its PATH"
        ),
        "{}",
        e.message
    );
    assert!(e.hint.as_deref().unwrap().contains("apt-get install dnf"));
}

#[test]
fn a_toolless_image_of_another_architecture_is_refused() {
    use caulk_sdk::update::{Answer, CommandOutput};
    let root = toolless();
    let mut request =
        plan_request(&root, vec![update("caulk-demo", "1.0-1", &["1.1-1"])], options(UpdateMode::Report));
    let dnf_on = |machine: &str| {
        Answer::Output(CommandOutput {
            exit_code: 0,
            stdout: format!("/usr/bin/dnf\n{machine}\n").into_bytes(),
            stderr: Vec::new(),
        })
    };
    let fact = request.facts.iter_mut().find(|f| f.question_id == caulk_plugin_rpm::probe::HOST_DNF).unwrap();
    fact.answer = dnf_on("x86_64");
    request.target.platform.architecture = "arm64".into();
    let e = Rpm::plan(&request).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("for arm64 and this machine is x86_64"), "{}", e.message);
    // The host's own architecture is planned as before.
    request.target.platform.architecture = "amd64".into();
    assert!(Rpm::plan(&request).is_ok());
    let fact = request.facts.iter_mut().find(|f| f.question_id == caulk_plugin_rpm::probe::HOST_DNF).unwrap();
    fact.answer = dnf_on("aarch64");
    assert_eq!(Rpm::plan(&request).unwrap_err().kind, ErrorKind::Unsupported);
}

#[test]
fn an_image_with_manifests_and_no_database_is_planned_from_its_manifest() {
    let root = Root::unpack("azure");
    root.write("/etc/yum.repos.d/caulk.repo", REPO);
    root.remove("/var/lib/rpm");
    let plan = plan(
        &root,
        vec![update("caulk-data", "2.0-1", &["2.1-1"]), update("caulk-demo", "1.0-1", &["1.0-1"])],
        options(UpdateMode::Report),
    );
    // The epoch comes from the manifest's epoch field.
    assert_eq!(plan.selected[0].from, "1:2.0-1");
    assert_eq!(plan.selected[0].target, VersionTarget::AtLeast("1:2.1-1".into()));
    assert!(plan.skipped[0].already_fixed);
    assert_eq!(plan.steps.len(), 1, "the manifests are rewritten by the same step");
    let argv = &plan.steps[0].command.argv;
    assert_eq!(argv[3..6], strings(&["sh", "3.0", "/target/etc/yum.repos.d"]));
    assert_eq!(argv.last().map(String::as_str), Some("caulk-data"));
    assert!(plan.caches.is_empty(), "dnf works in the step's private /tmp");
    assert!(plan.drop_paths.contains(&"/var/lib/caulk-rpmdb/**".to_owned()));
}
