//! Report data that must never reach apk, and damaged image files.

mod support;

use caulk_plugin_apk::Apk;
use caulk_plugin_apk::db::Installed;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{Answer, FileEntry, FileKind, PlanRequest, Update, UpdateMode};
use support::{Root, options, plan_request, update};

const HOSTILE_NAMES: &[&str] = &[
    "--allow-untrusted",
    "-X",
    "openssl; rm -rf /",
    "openssl && reboot",
    "$(reboot)",
    "`id`",
    "lib ssl3",
    "libssl3\n",
    "",
    "libssl3>=0",
    "libssl3=3.1.4-r1",
    "libssl3@edge",
    "../../etc/passwd",
    ".caulk-libssl3",
    "so:libssl.so.3",
    "libßsl",
];

const HOSTILE_VERSIONS: &[&str] =
    &["", "--force", "3.1.4-r5; reboot", "3.1.4 -r5", "latest", "3.1.4-r5\nP:x", "1.0_bogus1"];

fn request_with(updates: Vec<Update>, ignore_errors: bool) -> PlanRequest {
    let mut options = options(UpdateMode::Report);
    options.ignore_errors = ignore_errors;
    plan_request(&Root::mini("alpine-3.19"), updates, options)
}

#[test]
fn hostile_names_are_refused_naming_the_entry() {
    for name in HOSTILE_NAMES {
        let err =
            Apk::plan(&request_with(vec![update(name, "3.1.4-r1", &["3.1.4-r5"])], false)).expect_err(name);
        assert_eq!(err.kind, ErrorKind::MalformedInput, "{name:?}");
        assert!(err.message.contains(&format!("{name:?}")), "{name:?}: {}", err.message);
        assert!(err.message.contains("not an apk package name"), "{}", err.message);
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("--ignore-errors")));
    }
}

#[test]
fn hostile_versions_are_refused_naming_the_field() {
    for version in HOSTILE_VERSIONS {
        let err = Apk::plan(&request_with(vec![update("libssl3", "3.1.4-r1", &[version])], false))
            .expect_err(version);
        assert_eq!(err.kind, ErrorKind::MalformedInput, "{version:?}");
        assert!(err.message.starts_with("update for package libssl3: fixed version"), "{}", err.message);
        let err = Apk::plan(&request_with(vec![update("libssl3", version, &["3.1.4-r5"])], false))
            .expect_err(version);
        assert!(err.message.contains("installed version"), "{}", err.message);
    }
}

#[test]
fn with_ignore_errors_hostile_entries_are_skipped_and_never_reach_argv() {
    let mut updates: Vec<Update> =
        HOSTILE_NAMES.iter().map(|n| update(n, "3.1.4-r1", &["3.1.4-r5"])).collect();
    updates.extend(HOSTILE_VERSIONS.iter().map(|v| update("libcrypto3", "3.1.4-r1", &[v])));
    updates.push(update("libssl3", "3.1.4-r1", &["3.1.4-r5"]));
    let plan = Apk::plan(&request_with(updates, true)).unwrap();
    assert_eq!(plan.skipped.len(), HOSTILE_NAMES.len() + HOSTILE_VERSIONS.len());
    assert!(plan.skipped.iter().all(|s| s.reason.contains("--ignore-errors") && !s.already_fixed));
    let argv: Vec<&String> = plan.steps.iter().flat_map(|s| &s.command.argv).collect();
    for arg in &argv {
        assert!(arg.chars().all(|c| c.is_ascii_alphanumeric() || "-._>=/".contains(c)), "{arg:?}");
    }
    assert_eq!(plan.selected.len(), 1);
}

fn with_installed(contents: Vec<u8>) -> PlanRequest {
    let mut request = request_with(vec![update("libssl3", "3.1.4-r1", &["3.1.4-r5"])], false);
    let fact = request.facts.iter_mut().find(|f| f.question_id == "apk-installed").unwrap();
    fact.answer = Answer::Files(vec![FileEntry {
        path: "/lib/apk/db/installed".into(),
        kind: FileKind::Regular,
        contents: Some(contents),
        link_target: None,
    }]);
    request
}

#[test]
fn a_damaged_database_is_an_error_naming_the_line() {
    let cases: &[(&[u8], &str)] = &[
        (b"P:libssl3\nV:3.1.4-r1\n\ngarbage line\n", "line 4: \"garbage line\" is not a `K:value` field"),
        (b"P:libssl3\n", "package \"libssl3\" has no V: (version) field"),
        (b"V:1\nA:x86_64\n", "line 1: a package block without a P: (name) field"),
        (b"P:libssl3\nV:1\nV:2\n", "line 3: a second V: field"),
        (b"P:libssl3\nV:1\xc3\x28\n", "line 2: the V: field is not UTF-8 text"),
        (b"P:libssl3\nV:3.1.4-r1\nT:caf\xe9\n\nP:libcrypto3\nV:1\n\n:x\n", "line 8: \":x\" is not"),
        (b"\x00\x01\x02", "line 1"),
    ];
    for (bytes, expected) in cases {
        let err = Apk::plan(&with_installed(bytes.to_vec())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedInput);
        assert!(err.message.contains(expected), "{expected}: {}", err.message);
        assert!(err.message.starts_with("/lib/apk/db/installed"), "{}", err.message);
    }
}

#[test]
fn huge_and_odd_databases_parse_or_fail_without_panicking() {
    // A 4 MiB line, a name with shell metacharacters, an invalid version:
    // apk's database is the image's word, but nothing from it reaches argv.
    let mut db =
        format!("P:libssl3\nV:3.1.4-r1\nT:{}\n\nP:$(reboot);x\nV:not a version\n", "x".repeat(4 << 20));
    db.push_str("\nP:libcrypto3\nV:3.1.4-r1\n");
    let request = with_installed(db.into_bytes());
    let plan = Apk::plan(&request).unwrap();
    assert_eq!(plan.selected.len(), 1);
    let mut bad_version = with_installed(b"P:libssl3\nV:three\n".to_vec());
    let plan = Apk::plan(&bad_version).unwrap();
    assert!(
        plan.skipped[0].reason.contains("version \"three\", which is not an apk version"),
        "{}",
        plan.skipped[0].reason
    );
    bad_version.options.mode = UpdateMode::All;
    assert!(Apk::plan(&bad_version).is_ok());

    // Every prefix of a real database, and bytes flipped through it: an
    // answer or a typed error, never a panic.
    let real = std::fs::read(support::data("roots/alpine-3.19/lib/apk/db/installed")).unwrap();
    for end in (0..real.len()).step_by(97) {
        let _ = Installed::parse(&real[..end]);
    }
    for at in (0..real.len()).step_by(13) {
        let mut flipped = real.clone();
        flipped[at] ^= 0x5a;
        let _ = Apk::plan(&with_installed(flipped));
    }
}

#[test]
fn damaged_world_and_repository_files_do_not_break_planning() {
    let mut request = request_with(vec![update("libssl3", "3.1.4-r1", &["3.1.4-r5"])], false);
    for fact in &mut request.facts {
        if fact.question_id == "apk-world" || fact.question_id == "apk-repositories" {
            let Answer::Files(files) = &mut fact.answer else { panic!() };
            for file in files {
                let mut garbage = vec![0xff, 0x00, b'\n'];
                garbage.extend(b"https://dl-cdn.alpinelinux.org/alpine/v3.19/main\n");
                file.contents = Some(garbage);
            }
        }
    }
    let plan = Apk::plan(&request).unwrap();
    assert_eq!(plan.selected.len(), 1);
}

#[test]
fn settings_and_index_urls_are_refused() {
    let mut request = request_with(Vec::new(), false);
    request.options.settings = vec![("mirror".into(), "x".into())];
    assert_eq!(Apk::plan(&request).unwrap_err().kind, ErrorKind::Unsupported);
    request.options.settings.clear();
    request.options.index_urls = vec!["https://example.org/alpine".into()];
    let err = Apk::plan(&request).unwrap_err();
    assert!(err.message.contains("/etc/apk/repositories"), "{}", err.message);
}
