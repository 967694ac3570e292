//! The probe rounds, driven as the host drives them.

mod support;

use caulk_plugin_apk::Apk;
use caulk_sdk::Updater;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{ExecContext, Phase, PlanRequest, QuestionKind, UpdateMode};
use support::{HostApk, Root, options, probe};

#[test]
fn one_round_reads_everything_an_alpine_image_needs() {
    let root = Root::mini("alpine-3.19");
    let os = root.target().os.unwrap();
    assert_eq!((os.id.as_str(), os.version_id.as_deref()), ("alpine", Some("3.19.1")));
    let (facts, rounds) = probe(&root, Phase::Plan, &options(UpdateMode::Report));
    assert_eq!(rounds, 1, "an image with apk needs no second round");
    let ids: Vec<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
    assert_eq!(ids, ["apk-installed", "apk-binary", "apk-world", "apk-repositories", "apk-keys", "apk-arch"]);
    assert!(facts.file("apk-installed").is_some_and(|db| db.starts_with(b"C:Q1")));
    assert_eq!(facts.files("apk-binary")[0].path, "/sbin/apk");
    let keys: Vec<&str> = facts.files("apk-keys").iter().map(|f| f.path.as_str()).collect();
    assert_eq!(keys, ["/etc/apk/keys/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub"]);
    assert_eq!(facts.file("apk-arch"), Some(&b"x86_64\n"[..]));
}

#[test]
fn an_image_without_apk_asks_the_host_for_its_apk() {
    let root = Root::mini("wolfi-static").with_host_apk(HostApk::Present);
    assert_eq!(root.target().os.unwrap().id, "wolfi", "os-release from /usr/lib");
    let (facts, rounds) = probe(&root, Phase::Plan, &options(UpdateMode::Report));
    assert_eq!(rounds, 2);
    assert!(facts.files("apk-binary").is_empty());
    assert_eq!(facts.output("host-apk").map(|o| o.exit_code), Some(0));
    let request = caulk_sdk::update::ProbeRequest {
        phase: Phase::Plan,
        target: root.target(),
        updates: Vec::new(),
        selected: Vec::new(),
        options: options(UpdateMode::Report),
        facts: facts[..6].to_vec(),
    };
    let questions = Apk::probe(&request).unwrap();
    let QuestionKind::Run(command) = &questions[0].kind else { panic!("{questions:?}") };
    let ExecContext::Tooling(tooling) = &command.context else { panic!("{command:?}") };
    assert_eq!((tooling.image.as_deref(), tooling.mount_point.as_str()), (None, "/target"));
    assert!(!command.network);
}

#[test]
fn without_apk_anywhere_the_image_is_not_applicable_with_the_reason() {
    let root = Root::mini("wolfi-static");
    let request = support::plan_request(&root, Vec::new(), options(UpdateMode::All));
    let err = Apk::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert!(err.message.contains("no apk binary (/sbin/apk, /usr/bin/apk"), "{}", err.message);
    assert!(err.message.contains("command not found: apk"), "{}", err.message);
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("distroless") && h.contains("host")), "{err:?}");
}

#[test]
fn a_root_without_an_apk_database_is_not_applicable() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::at(dir.path());
    let (facts, rounds) = probe(&root, Phase::Plan, &options(UpdateMode::All));
    assert_eq!(rounds, 1, "no database: nothing more to ask");
    let request =
        PlanRequest { target: root.target(), updates: Vec::new(), options: options(UpdateMode::All), facts };
    let err = Apk::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert_eq!(err.message, "the image has no apk database: /lib/apk/db/installed is missing");
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("Alpine and Wolfi")), "{err:?}");

    // os-release says Alpine (or is like it): the database was removed.
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/os-release"),
        "ID=postmarketos\nID_LIKE=alpine\nPRETTY_NAME=\"postmarketOS edge\"\n",
    )
    .unwrap();
    let root = Root::at(dir.path());
    let request = support::plan_request(&root, Vec::new(), options(UpdateMode::All));
    let err = Apk::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert!(
        err.message.ends_with("is missing, though its os-release says postmarketOS edge"),
        "{}",
        err.message
    );
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("removed apk's database")), "{err:?}");
}

#[test]
fn an_image_without_repositories_is_not_applicable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lib/apk/db")).unwrap();
    std::fs::create_dir_all(dir.path().join("sbin")).unwrap();
    std::fs::write(dir.path().join("sbin/apk"), "").unwrap();
    std::fs::write(dir.path().join("lib/apk/db/installed"), "P:musl\nV:1.2.4-r4\n").unwrap();
    std::fs::create_dir_all(dir.path().join("etc/apk")).unwrap();
    std::fs::write(dir.path().join("etc/apk/repositories"), "# all commented out\n\n").unwrap();
    let request = support::plan_request(&Root::at(dir.path()), Vec::new(), options(UpdateMode::All));
    let err = Apk::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert!(err.message.contains("lists no package repositories"), "{}", err.message);
}

#[test]
fn verification_reads_the_database_and_the_world_file() {
    let (facts, rounds) = probe(&Root::mini("alpine-3.19"), Phase::Verify, &options(UpdateMode::Report));
    assert_eq!(rounds, 1);
    let ids: Vec<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
    assert_eq!(ids, ["apk-installed", "apk-world"]);
}
