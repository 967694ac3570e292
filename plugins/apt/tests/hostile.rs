//! Report data that must never reach apt-get, and bad facts or options.

mod support;

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{PlanRequest, Update, UpdateMode};
use support::{Root, options, plan_request, read_data, update, with_status};

const HOSTILE_NAMES: &[&str] = &[
    "-oAPT::Get::AllowUnauthenticated=1",
    "--allow-downgrades",
    "-y",
    "openssl; rm -rf /",
    "openssl && reboot",
    "$(reboot)",
    "`id`",
    "open ssl",
    "openssl\n",
    "",
    "libssl3:amd64 i386",
    "libssl3:amd64;x",
    "OpenSSL",
    "../../etc/passwd",
    "openssl=3.0.22-1~deb12u2",
    "openssl/bookworm-security",
    "libssl3:",
    "o",
];

fn request_with(updates: Vec<Update>, ignore_errors: bool) -> PlanRequest {
    let mut options = options(UpdateMode::Report);
    options.ignore_errors = ignore_errors;
    plan_request(&Root::mini("bookworm"), updates, options)
}

#[test]
fn hostile_names_are_refused_naming_the_entry() {
    for name in HOSTILE_NAMES {
        let hostile = update(name, "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]);
        let err = Apt::plan(&request_with(vec![hostile], false)).expect_err(name);
        assert_eq!(err.kind, ErrorKind::MalformedInput, "{name:?}");
        assert!(err.message.contains(&format!("{name:?}")), "{name:?}: {}", err.message);
        assert!(err.message.contains("not a Debian package name"), "{}", err.message);
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("--ignore-errors")));
    }
}

#[test]
fn with_ignore_errors_hostile_entries_are_skipped_and_never_reach_argv() {
    let mut updates: Vec<Update> =
        HOSTILE_NAMES.iter().map(|n| update(n, "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"])).collect();
    updates.push(update("openssl", "3.0.20-1~deb12u2", &["3.0.22-1~deb12u2"]));
    let plan = Apt::plan(&request_with(updates, true)).unwrap();
    assert_eq!(plan.skipped.len(), HOSTILE_NAMES.len());
    for skipped in &plan.skipped {
        assert!(skipped.reason.contains("--ignore-errors"), "{}", skipped.reason);
        assert!(!skipped.already_fixed);
    }
    let argv = &plan.steps[2].command.argv;
    assert_eq!(argv.last().map(String::as_str), Some("openssl"));
    assert_eq!(argv.iter().filter(|a| *a == "--").count(), 1);
    for name in HOSTILE_NAMES.iter().filter(|n| !n.is_empty() && **n != "-y") {
        assert!(!argv.iter().any(|a| a == name), "{name:?} reached argv: {argv:?}");
    }
}

#[test]
fn bad_versions_are_refused_naming_the_package_and_field() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("1.0 beta", &["3.0.22-1~deb12u2"], "installed version", "whitespace"),
        ("", &["3.0.22-1~deb12u2"], "installed version", "empty"),
        ("x:1.0", &["3.0.22-1~deb12u2"], "installed version", "epoch"),
        ("3.0.20-1~deb12u2", &["3.0.22-1~deb12u2", ""], "fixed version", "empty"),
        ("3.0.20-1~deb12u2", &["3.0.22 -1"], "fixed version", "whitespace"),
        ("3.0.20-1~deb12u2", &["1:"], "fixed version", "after the epoch is empty"),
        ("3.0.20-1~deb12u2", &["3.0.22\u{7}"], "fixed version", "not allowed"),
        ("3.0.20-1~deb12u2", &["3.0.22-ü"], "fixed version", "not allowed"),
    ];
    for (installed, fixed, field, problem) in cases {
        let bad = update("openssl", installed, fixed);
        let err = Apt::plan(&request_with(vec![bad.clone()], false)).expect_err(installed);
        assert_eq!(err.kind, ErrorKind::MalformedInput);
        assert!(
            err.message.starts_with("update for package openssl: ")
                && err.message.contains(field)
                && err.message.contains(problem),
            "{installed:?} {fixed:?}: {}",
            err.message
        );
        let plan = Apt::plan(&request_with(vec![bad], true)).unwrap();
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.steps.is_empty());
    }
}

#[test]
fn missing_facts_are_the_hosts_bug() {
    let request = PlanRequest {
        target: Root::mini("bookworm").target(),
        updates: Vec::new(),
        options: options(UpdateMode::All),
        facts: Vec::new(),
    };
    let err = Apt::plan(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MissingFacts);
    assert!(
        err.message.contains("dpkg-status") && err.message.contains("/var/lib/dpkg/status"),
        "{}",
        err.message
    );
}

#[test]
fn an_image_without_apt_get_is_not_applicable() {
    let root = Root::mini("bookworm").without_apt_get();
    let err = Apt::plan(&plan_request(&root, Vec::new(), options(UpdateMode::All))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotApplicable);
    assert!(
        err.message.contains("no apt-get") && err.message.contains("/usr/bin/apt-get"),
        "{}",
        err.message
    );
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("tooling root")));
}

#[test]
fn a_damaged_dpkg_database_is_reported_with_its_line() {
    let request = plan_request(&Root::mini("bookworm"), Vec::new(), options(UpdateMode::All));
    let mut status = read_data("roots/bookworm/var/lib/dpkg/status");
    // Cut the file inside a paragraph's Status field: the line dpkg would
    // choke on.
    let at = status
        .find("Status: install ok installed\nPriority: required\nSection: admin\nInstalled-Size: 6")
        .unwrap();
    status.replace_range(at..at + "Status: install ok installed".len(), "Status: install");
    let line = status[..at].lines().count();
    let err = Apt::plan(&with_status(request, status.as_bytes())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedInput);
    assert!(err.message.contains(&format!("/var/lib/dpkg/status line {}", line + 1)), "{}", err.message);
    assert!(err.message.contains("three words"), "{}", err.message);
}

#[test]
fn options_apt_cannot_honour_are_refused() {
    let mut with_setting = request_with(Vec::new(), false);
    with_setting.options.settings = vec![("upgrade".into(), "dist".into())];
    let err = Apt::plan(&with_setting).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("\"upgrade\""), "{}", err.message);

    let mut with_index = request_with(Vec::new(), false);
    with_index.options.index_urls = vec!["http://mirror.example/debian".into()];
    let err = Apt::plan(&with_index).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("http://mirror.example/debian"), "{}", err.message);
}
