//! Verification against real dpkg databases after real apt-get runs, with
//! the stderr those runs printed.

mod support;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{Outcome, OutcomeStatus, PatchPlan, StepResult, UpdateMode, VerifyRequest};
use support::{
    Root, edit_status, fixture, options, plan_request, read_data, step_result, trivy_updates, update,
    verify_request,
};

const REFRESH: &str = "apt-get update: refresh the package indexes";

fn plan_for(updates: Vec<caulk_sdk::update::Update>) -> PatchPlan {
    support::plan(&Root::mini("bookworm"), updates, options(UpdateMode::Report))
}

fn verify(plan: &PatchPlan, status: &str, steps: Vec<StepResult>) -> Vec<Outcome> {
    Apt::verify(&verify_request(&Root::mini("bookworm"), plan, status, steps)).expect("verify succeeds")
}

fn install_summary(plan: &PatchPlan) -> String {
    plan.steps[2].summary.clone()
}

fn by_name<'o>(outcomes: &'o [Outcome], name: &str) -> &'o Outcome {
    outcomes.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no outcome for {name}"))
}

#[test]
fn packages_the_install_moved_past_the_fix_are_patched() {
    // The real run: apt-get install … -- openssl libexpat1 perl-base curl.
    let plan = plan_for(vec![
        update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("libexpat1", "2.5.0-1+deb12u2", &["2.5.0-1+deb12u3"]),
        update("perl-base", "5.36.0-7+deb12u3", &["5.36.0-7+deb12u4"]),
    ]);
    let steps =
        vec![step_result(REFRESH, 0, None), step_result(&install_summary(&plan), 0, Some("install-ok.txt"))];
    let outcomes = verify(&plan, "status/bookworm-after-install.status", steps);
    assert_eq!(outcomes.len(), 3);
    let expected = [
        ("openssl", "3.0.22-1~deb12u2"),
        ("libexpat1", "2.5.0-1+deb12u5"),
        ("perl-base", "5.36.0-7+deb12u4"),
    ];
    for (outcome, (name, to)) in outcomes.iter().zip(expected) {
        assert_eq!(outcome.name, name);
        assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:?}");
        assert_eq!(outcome.to.as_deref(), Some(to));
        assert!(
            outcome.detail.starts_with(&format!("upgraded from {} to {to}", outcome.from)),
            "{}",
            outcome.detail
        );
    }
    // libexpat1 went beyond the report's fix: the newest candidate landed.
    assert!(by_name(&outcomes, "libexpat1").detail.contains("(fixed in 2.5.0-1+deb12u3)"));
}

#[test]
fn a_multi_arch_pair_that_cannot_move_fails_with_apts_reason() {
    let plan = plan_for(vec![update("libssl3", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])]);
    assert!(plan.steps[2].command.argv.ends_with(&["libssl3".into(), "libssl3:i386".into()]));
    let steps = vec![
        step_result(REFRESH, 0, None),
        step_result(&install_summary(&plan), 100, Some("install-no-remove.txt")),
    ];
    let outcomes = verify(&plan, "roots/bookworm/var/lib/dpkg/status", steps);
    let libssl = &outcomes[0];
    assert_eq!(libssl.status, OutcomeStatus::Failed);
    assert_eq!(libssl.to.as_deref(), Some("3.0.20-1~deb12u2"));
    let detail = &libssl.detail;
    assert!(
        detail.starts_with("libssl3 stayed at 3.0.20-1~deb12u2, below the fixed version 3.0.22-1~deb12u2"),
        "{detail}"
    );
    assert!(
        detail.contains(
            "apt-get install failed (exit 100): E: Packages need to be removed but remove is disabled."
        ),
        "{detail}"
    );
    assert!(detail.contains("Multi-Arch: same"), "{detail}");
}

#[test]
fn a_dpkg_failure_leaves_one_package_unpacked_and_another_unchanged() {
    // The real run with /usr/bin/openssl made immutable: dpkg could not
    // unpack openssl, and libexpat1 was unpacked but never configured.
    let plan = plan_for(vec![
        update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("libexpat1", "2.5.0-1+deb12u2", &["2.5.0-1+deb12u5"]),
    ]);
    let steps = vec![
        step_result(REFRESH, 0, None),
        step_result(&install_summary(&plan), 100, Some("install-dpkg-error.txt")),
    ];
    let outcomes = verify(&plan, "status/bookworm-after-dpkg-error.status", steps);
    let openssl = by_name(&outcomes, "openssl");
    assert_eq!(openssl.status, OutcomeStatus::Failed);
    assert!(
        openssl.detail.contains(
            "apt-get install failed (exit 100): E: Sub-process /usr/bin/dpkg returned an error code (1)"
        ),
        "{}",
        openssl.detail
    );
    let expat = by_name(&outcomes, "libexpat1");
    assert_eq!(expat.status, OutcomeStatus::Failed, "an unconfigured package is not patched");
    assert_eq!(expat.to.as_deref(), Some("2.5.0-1+deb12u5"));
    assert!(
        expat
            .detail
            .starts_with("dpkg left libexpat1:amd64 half-upgraded at 2.5.0-1+deb12u5 (state unpacked"),
        "{}",
        expat.detail
    );
}

#[test]
fn without_network_apt_only_warns_and_the_outcome_says_so() {
    // Offline, apt-get update exits 0 with W: lines and the install finds
    // nothing newer, also exiting 0.
    let plan = plan_for(vec![update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])]);
    let steps = vec![
        step_result(REFRESH, 0, Some("update-offline.txt")),
        step_result(&install_summary(&plan), 0, None),
    ];
    let outcomes = verify(&plan, "roots/bookworm/var/lib/dpkg/status", steps);
    let detail = &outcomes[0].detail;
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(detail.contains("apt-get update warned: W: Failed to fetch"), "{detail}");
    assert!(detail.contains("Temporary failure resolving 'deb.debian.org'"), "{detail}");
    assert!(detail.contains("no working DNS or network"), "{detail}");
}

#[test]
fn a_failed_refresh_is_named_even_when_the_install_succeeded() {
    // The mirror served a short i386 index: apt-get update exited 100 but
    // the amd64 indexes still gave openssl its fix.
    let plan = plan_for(vec![
        update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("libssl3", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
    ]);
    let steps = vec![
        step_result(REFRESH, 100, Some("update-mirror-sync.txt")),
        step_result(&install_summary(&plan), 0, Some("install-ok.txt")),
    ];
    let outcomes = verify(&plan, "status/bookworm-after-install.status", steps);
    assert_eq!(by_name(&outcomes, "openssl").status, OutcomeStatus::Patched);
    let libssl = by_name(&outcomes, "libssl3");
    assert_eq!(libssl.status, OutcomeStatus::Failed);
    assert!(
        libssl.detail.contains("apt-get update failed (exit 100): E: Failed to fetch"),
        "{}",
        libssl.detail
    );
    assert!(libssl.detail.contains("mid-sync"), "{}", libssl.detail);
}

#[test]
fn when_every_step_succeeded_the_sources_are_the_suspect() {
    let plan = plan_for(vec![update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])]);
    let steps = vec![step_result(REFRESH, 0, None), step_result(&install_summary(&plan), 0, None)];
    let outcomes = verify(&plan, "roots/bookworm/var/lib/dpkg/status", steps);
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(
        outcomes[0].detail.contains("is bookworm-security in /etc/apt/sources.list"),
        "{}",
        outcomes[0].detail
    );
}

#[test]
fn a_package_gone_after_the_steps_fails() {
    let plan = plan_for(vec![update("libssl3:i386", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])]);
    // The real database after an upgrade without --no-remove would lack it.
    let status = edit_status(&read_data("roots/bookworm/var/lib/dpkg/status"), "libssl3", "3.0.22-1~deb12u2", None)
        .replace("Package: libssl3\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 5836", "Package: libssl3\nStatus: deinstall ok config-files\nPriority: optional\nSection: libs\nInstalled-Size: 5836");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("status"), status).unwrap();
    let mut request =
        verify_request(&Root::mini("bookworm"), &plan, "roots/bookworm/var/lib/dpkg/status", vec![]);
    if let caulk_sdk::update::Answer::Files(files) = &mut request.facts[0].answer {
        files[0].contents = Some(std::fs::read(dir.path().join("status")).unwrap());
    }
    let outcomes = Apt::verify(&request).unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert_eq!(outcomes[0].to, None);
    assert!(
        outcomes[0].detail.contains("libssl3:i386 is not installed: only its configuration files remain"),
        "{}",
        outcomes[0].detail
    );
    assert!(outcomes[0].detail.ends_with("no step ran"), "{}", outcomes[0].detail);
}

#[test]
fn update_all_reports_what_moved() {
    let request = plan_request(&Root::mini("bookworm"), Vec::new(), options(UpdateMode::All));
    let plan = Apt::plan(&request).unwrap();
    let steps = vec![
        step_result(REFRESH, 0, None),
        step_result(
            "apt-get upgrade: upgrade every package with a newer candidate",
            0,
            Some("upgrade-all.txt"),
        ),
    ];
    let outcomes = verify(&plan, "status/bookworm-after-upgrade.status", steps);
    assert_eq!(outcomes.len(), plan.selected.len());
    let patched: Vec<&str> =
        outcomes.iter().filter(|o| o.status == OutcomeStatus::Patched).map(|o| o.name.as_str()).collect();
    // What the real `apt list --upgradable` offered, except libssl3, which
    // apt kept back (its i386 twin had no update).
    let mut upgradable: Vec<String> = read_data("bookworm-upgradable.txt")
        .lines()
        .filter_map(|l| l.split_once('/').map(|(n, _)| n.to_owned()))
        .filter(|n| n != "libssl3")
        .collect();
    // Both architectures of libssl3 are judged apart.
    for arch in ["amd64", "i386"] {
        let libssl = by_name(&outcomes, &format!("libssl3:{arch}"));
        assert_eq!(libssl.status, OutcomeStatus::AlreadyFixed);
        assert!(libssl.detail.contains("kept back"), "{}", libssl.detail);
    }
    upgradable.sort();
    let mut patched_sorted: Vec<String> = patched.iter().map(|s| (*s).to_owned()).collect();
    patched_sorted.sort();
    assert_eq!(patched_sorted, upgradable);
    assert!(outcomes.iter().all(|o| o.status != OutcomeStatus::Failed));

    // The same upgrade without network: nothing moved, and nothing can be
    // called up to date.
    let offline = vec![
        step_result(REFRESH, 0, Some("update-offline.txt")),
        step_result("apt-get upgrade: upgrade every package with a newer candidate", 0, None),
    ];
    let outcomes = verify(&plan, "roots/bookworm/var/lib/dpkg/status", offline);
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Failed && o.detail.contains("warned")));
}

#[test]
fn login_is_patched_only_when_its_util_linux_source_reaches_the_fix() {
    let updates: Vec<_> = trivy_updates(&fixture("reports/trivy-debian-flask-python-app-1.json"))
        .into_iter()
        .filter(|u| u.name == "login")
        .collect();
    let root = Root::mini("trixie");
    let mut before = read_data("roots/trixie/var/lib/dpkg/status");
    before = edit_status(&before, "login", "1:4.16.0-2+really2.41-5", Some("util-linux (2.41-5)"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("before"), &before).unwrap();
    let request =
        support::with_status(plan_request(&root, updates, options(UpdateMode::Report)), before.as_bytes());
    let plan = Apt::plan(&request).unwrap();
    assert_eq!(plan.selected.len(), 1);

    // After: the real Debian 13 database, login 1:4.16.0-2+really2.41.5-0+deb13u1.
    let mut after = verify_request(&root, &plan, "roots/trixie/var/lib/dpkg/status", vec![]);
    after.steps = vec![step_result(REFRESH, 0, None), step_result(&install_summary(&plan), 0, None)];
    let outcomes = Apt::verify(&after).unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Patched, "{:?}", outcomes[0]);
    assert_eq!(outcomes[0].to.as_deref(), Some("1:4.16.0-2+really2.41.5-0+deb13u1"));

    // Unchanged: the binary version alone would pass, the source does not.
    let mut unchanged: VerifyRequest = after.clone();
    if let caulk_sdk::update::Answer::Files(files) = &mut unchanged.facts[0].answer {
        files[0].contents = Some(std::fs::read(dir.path().join("before")).unwrap());
    }
    let outcomes = Apt::verify(&unchanged).unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(outcomes[0].detail.contains("its source util-linux is at 2.41-5"), "{}", outcomes[0].detail);
}

#[test]
fn verification_needs_the_dpkg_database_fact() {
    let plan = plan_for(vec![update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])]);
    let mut request =
        verify_request(&Root::mini("bookworm"), &plan, "roots/bookworm/var/lib/dpkg/status", vec![]);
    request.facts.clear();
    let err = Apt::verify(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MissingFacts);

    // Answered but gone: every package failed, not an error.
    request.facts = vec![caulk_sdk::update::Fact {
        question_id: "dpkg-status".into(),
        answer: caulk_sdk::update::Answer::Files(Vec::new()),
    }];
    let outcomes = Apt::verify(&request).unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(outcomes[0].detail.contains("no /var/lib/dpkg/status"), "{}", outcomes[0].detail);
}

#[test]
fn reused_indexes_are_named_in_every_outcome() {
    let plan = plan_for(vec![
        update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]),
        update("libexpat1", "2.5.0-1+deb12u2", &["2.5.0-1+deb12u3"]),
    ]);
    let mut refresh = step_result(REFRESH, 0, None);
    refresh.stderr_tail = "caulk: package indexes reused: refreshed 42 s ago, within apt.index-ttl=600 s; \
                           apt-get update not run\n"
        .into();
    let steps = vec![refresh, step_result(&install_summary(&plan), 0, Some("install-ok.txt"))];
    let outcomes = verify(&plan, "status/bookworm-after-install.status", steps);
    for outcome in &outcomes {
        assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:?}");
        assert!(
            outcome.detail.ends_with(
                "; package indexes reused: refreshed 42 s ago, within apt.index-ttl=600 s; apt-get update not run"
            ),
            "{}",
            outcome.detail
        );
    }
    // A refresh that ran leaves the details alone.
    let steps =
        vec![step_result(REFRESH, 0, None), step_result(&install_summary(&plan), 0, Some("install-ok.txt"))];
    let outcomes = verify(&plan, "status/bookworm-after-install.status", steps);
    assert!(outcomes.iter().all(|o| !o.detail.contains("reused")));
}

#[test]
fn the_index_ttl_setting_is_checked() {
    let with = |value: &str| {
        let mut options = options(UpdateMode::Report);
        options.settings = vec![("index-ttl".into(), value.into())];
        options
    };
    let root = Root::mini("bookworm");
    let updates = vec![update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])];
    let plan = support::plan(&root, updates.clone(), with("0"));
    assert_eq!(plan.steps[0].summary, "apt-get update: refresh the package indexes");
    assert_eq!(plan.steps[0].command.argv[4], "0");
    let plan = support::plan(&root, updates.clone(), with("3600"));
    assert!(plan.steps[0].summary.ends_with("unless refreshed less than 3600 s ago"));
    for bad in ["-1", "ten", "", "604801", "1e3"] {
        let err = Apt::plan(&plan_request(&root, updates.clone(), with(bad))).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported, "{bad}");
        assert!(err.message.contains("expected whole seconds from 0 to 604800"), "{bad}: {}", err.message);
    }
    let mut unknown = options(UpdateMode::Report);
    unknown.settings = vec![("ttl".into(), "5".into())];
    let err = Apt::plan(&plan_request(&root, updates, unknown)).unwrap_err();
    assert!(err.message.contains("apt has no setting \"ttl\""), "{}", err.message);
}
