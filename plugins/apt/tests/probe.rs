//! The probe rounds, driven as the host drives them.

mod support;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{Phase, PlanRequest, QuestionKind, UpdateMode};
use support::{Root, options, probe};

#[test]
fn one_round_reads_everything_a_debian_image_needs() {
    let root = Root::mini("bookworm");
    let (facts, rounds) = probe(&root, Phase::Plan, &[], &options(UpdateMode::Report));
    assert_eq!(rounds, 1, "an image with a dpkg database needs no second round");
    let ids: Vec<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
    assert_eq!(ids, ["dpkg-status", "apt-get", "apt-sources", "apt-trusted-keys", "dpkg-arch"]);
    assert!(facts.file("dpkg-status").is_some_and(|s| s.starts_with(b"Package: ")));
    let sources: Vec<&str> = facts.files("apt-sources").iter().map(|f| f.path.as_str()).collect();
    assert_eq!(sources, ["/etc/apt/sources.list", "/etc/apt/sources.list.d/security.list"]);
    assert_eq!(facts.file("dpkg-arch"), Some(&b"amd64\ni386\n"[..]));
}

#[test]
fn an_image_without_dpkg_status_gets_a_second_round_for_distroless() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/lib/dpkg/status.d")).unwrap();
    // distroless writes one status paragraph per package here.
    std::fs::write(
        dir.path().join("var/lib/dpkg/status.d/libssl3"),
        "Package: libssl3\nVersion: 3.0.17-1~deb12u2\nArchitecture: amd64\n",
    )
    .unwrap();
    let root = Root::at(dir.path());
    let (facts, rounds) = probe(&root, Phase::Plan, &[], &options(UpdateMode::Report));
    assert_eq!(rounds, 2);
    assert_eq!(facts.files("dpkg-status-d").len(), 1);

    // No report entry: nothing to do, and no error (the image is one the
    // updater patches; see tests/distroless.rs).
    let request = PlanRequest {
        target: root.target(),
        updates: Vec::new(),
        options: options(UpdateMode::Report),
        facts,
    };
    let plan = Apt::plan(&request).unwrap();
    assert!(plan.steps.is_empty() && plan.selected.is_empty(), "{plan:?}");
}

#[test]
fn a_non_debian_root_is_not_applicable_without_the_distroless_hint() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::at(dir.path());
    let (facts, rounds) = probe(&root, Phase::Plan, &[], &options(UpdateMode::All));
    assert_eq!(rounds, 2);
    let request =
        PlanRequest { target: root.target(), updates: Vec::new(), options: options(UpdateMode::All), facts };
    let err = Apt::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert!(!err.hint.as_deref().unwrap_or_default().contains("distroless"), "{err:?}");
}

#[test]
fn verification_reads_only_the_dpkg_database_and_status_d() {
    let root = Root::mini("bookworm");
    let (facts, rounds) = probe(&root, Phase::Verify, &[], &options(UpdateMode::Report));
    assert_eq!(rounds, 1);
    let ids: Vec<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
    assert_eq!(ids, ["dpkg-status", "dpkg-status-d"]);
}

#[test]
fn every_question_is_a_file_read() {
    let request = caulk_sdk::update::ProbeRequest {
        phase: Phase::Plan,
        target: Root::mini("bookworm").target(),
        updates: Vec::new(),
        selected: Vec::new(),
        options: options(UpdateMode::All),
        facts: Vec::new(),
    };
    for question in Apt::probe(&request).unwrap() {
        let QuestionKind::Files(paths) = &question.kind else { panic!("{question:?} is not a file read") };
        assert!(paths.iter().all(|p| p.starts_with('/')), "{paths:?}");
    }
}
