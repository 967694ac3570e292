//! Report data that must never reach pip or a probe, and bad options.

mod support;

use caulk_plugin_pip::Pip;
use caulk_sdk::Updater;
use caulk_sdk::types::ErrorKind;
use caulk_sdk::update::{PatchLevel, Phase, ProbeRequest, QuestionKind, Update};
use support::{DataHost, Host, argv_words, asked, mini, options, plan_request, update, without_dry_runs};

const HOSTILE_NAMES: &[&str] = &[
    "-r/etc/passwd",
    "--index-url=https://evil.example/simple",
    "-e",
    "requests; rm -rf /",
    "requests && reboot",
    "$(reboot)",
    "`id`",
    "requests[socks]",
    "requests==2.31.0",
    "requests @ https://evil.example/r.whl",
    "req uests",
    "requests\n",
    "",
    "../../etc/passwd",
    "requests-",
    "ré",
];

const HOSTILE_VERSIONS: &[&str] = &[
    "2.31.0; rm -rf /",
    "--index-url=https://evil.example",
    " 2.31.0",
    "2.31.0\n",
    "",
    "latest",
    ">=2.31.0",
    "2.31.0 --pre",
];

const HOSTILE_LOCATIONS: &[&str] = &[
    "usr/local/lib/python3.11/dist-packages/../../../../etc",
    "/usr/local/lib/python3.11/dist-packages/../../../../etc",
    "/srv/**/evil",
    "/usr/*/python3*/site-packages",
    "/srv/[a-z]",
    "/usr/local/lib/python3.11/dist-packages\nx",
    "relative/site-packages",
];

fn probe_error(update: Update) -> caulk_sdk::types::Error {
    let host = DataHost::new(mini());
    Pip::probe(&ProbeRequest {
        phase: Phase::Plan,
        target: host.target(),
        updates: vec![update],
        selected: Vec::new(),
        options: options(PatchLevel::Patch),
        facts: Vec::new(),
    })
    .expect_err("refused before any probe")
}

#[test]
fn hostile_names_are_refused_naming_the_entry() {
    for name in HOSTILE_NAMES {
        let err = probe_error(update(name, "2.25.1", &["2.31.0"], None));
        assert_eq!(err.kind, ErrorKind::MalformedInput, "{name:?}");
        assert!(err.message.contains(&format!("{name:?}")), "{name:?}: {}", err.message);
        assert!(err.message.contains("not a Python distribution name"), "{}", err.message);
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("--ignore-errors")));
    }
}

#[test]
fn hostile_versions_are_refused_naming_the_package_and_field() {
    for version in HOSTILE_VERSIONS {
        let err = probe_error(update("requests", "2.25.1", &["2.31.0", version], None));
        assert_eq!(err.kind, ErrorKind::MalformedInput);
        assert!(err.message.starts_with("update for package requests: fixed version"), "{}", err.message);
        assert!(err.message.contains(&format!("{version:?}")), "{}", err.message);
        let err = probe_error(update("requests", version, &["2.31.0"], None));
        assert!(err.message.starts_with("update for package requests: installed version"), "{}", err.message);
    }
}

#[test]
fn hostile_locations_are_refused() {
    for location in HOSTILE_LOCATIONS {
        let err = probe_error(update("requests", "2.25.1", &["2.31.0"], Some(location)));
        assert_eq!(err.kind, ErrorKind::MalformedInput, "{location:?}");
        assert!(err.message.contains(&format!("location {location:?} is refused")), "{}", err.message);
    }
}

#[test]
fn with_ignore_errors_hostile_entries_are_skipped_and_reach_no_argv_or_probe() {
    let mut updates: Vec<Update> =
        HOSTILE_NAMES.iter().map(|n| update(n, "2.25.1", &["2.31.0"], None)).collect();
    updates.extend(HOSTILE_VERSIONS.iter().map(|v| update("urllib3", "1.26.5", &[v], None)));
    updates.extend(HOSTILE_LOCATIONS.iter().map(|l| update("urllib3", "1.26.5", &["1.26.18"], Some(l))));
    updates.push(update("urllib3", "1.26.5", &["1.26.18"], Some("/usr/local/lib/python3.11/dist-packages")));
    let mut options = without_dry_runs(options(PatchLevel::Patch));
    options.ignore_errors = true;
    let host = DataHost::new(mini());
    let request = plan_request(&host, updates.clone(), options);
    let plan = Pip::plan(&request).unwrap();
    let hostile = HOSTILE_NAMES.len() + HOSTILE_VERSIONS.len() + HOSTILE_LOCATIONS.len();
    let refused: Vec<&str> = plan
        .skipped
        .iter()
        .filter(|s| s.reason.contains("(skipped: --ignore-errors)"))
        .map(|s| s.reason.as_str())
        .collect();
    assert_eq!(refused.len(), hostile, "{plan:#?}");
    assert_eq!(plan.selected.len(), 1);
    let words = argv_words(&plan);
    assert_eq!(words.last().map(String::as_str), Some("urllib3==1.26.18"));
    for bad in HOSTILE_NAMES.iter().chain(HOSTILE_VERSIONS).chain(HOSTILE_LOCATIONS).filter(|b| !b.is_empty())
    {
        assert!(!words.iter().any(|w| w.contains(bad.trim())), "{bad:?} reached argv: {words:?}");
    }
    // Nor any probe: globs come from clean locations only, look-ups and
    // commands from checked names.
    for fact in &request.facts {
        let id = &fact.question_id;
        for bad in HOSTILE_LOCATIONS {
            assert!(!id.contains(bad), "{bad:?} in question {id}");
        }
    }
    let questions = all_questions(&host, &updates, &request.options);
    for q in &questions {
        let text = match &q.kind {
            QuestionKind::Files(globs) => globs.join(" "),
            QuestionKind::Run(c) => c.argv.join(" "),
            QuestionKind::Lookup(l) => l.name.clone(),
        };
        for bad in HOSTILE_LOCATIONS.iter().chain(HOSTILE_NAMES.iter().filter(|n| n.len() > 2)) {
            assert!(!text.contains(bad), "{bad:?} reached question {}: {text}", q.id);
        }
    }
}

/// Every question the plan phase asks.
fn all_questions(
    host: &DataHost,
    updates: &[Update],
    options: &caulk_sdk::update::Options,
) -> Vec<caulk_sdk::update::Question> {
    asked(host, Phase::Plan, updates, options).into_iter().map(|(q, _)| q).collect()
}

#[test]
fn bad_options_are_refused() {
    let host = DataHost::new(mini());
    let updates = vec![update("urllib3", "1.26.5", &["1.26.18"], None)];
    let mut opts = options(PatchLevel::Patch);
    opts.settings = vec![("resolver".into(), "legacy".into())];
    let err = Pip::plan(&plan_request_unchecked(&host, &updates, opts)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("pip has no setting \"resolver\""), "{}", err.message);
    let mut opts = options(PatchLevel::Patch);
    opts.settings = vec![("dry-run".into(), "maybe".into())];
    let err = Pip::plan(&plan_request_unchecked(&host, &updates, opts)).unwrap_err();
    assert!(err.message.contains("expected true or false"), "{}", err.message);
    // An import limit must fit in one run of the import check.
    for value in ["0", "91", "-5", "1e9", "soon"] {
        let mut opts = options(PatchLevel::Patch);
        opts.settings = vec![("import-timeout".into(), value.into())];
        let err = Pip::plan(&plan_request_unchecked(&host, &updates, opts)).unwrap_err();
        assert!(err.message.contains("expected whole seconds from 1 to 90"), "{value}: {}", err.message);
    }
    for url in ["--extra-index-url=x", "file:///etc/passwd", "https://a b/simple", "ftp://mirror/simple"] {
        let mut opts = options(PatchLevel::Patch);
        opts.index_urls = vec![url.into()];
        let err = Pip::plan(&plan_request_unchecked(&host, &updates, opts)).unwrap_err();
        assert!(err.message.contains("is refused"), "{url}: {}", err.message);
    }
    // Credentials in a refused URL are not repeated.
    let mut opts = options(PatchLevel::Patch);
    opts.index_urls = vec!["ftp://user:s3cret@mirror/simple".into()];
    let err = Pip::plan(&plan_request_unchecked(&host, &updates, opts)).unwrap_err();
    assert!(!err.message.contains("s3cret"), "{}", err.message);
}

/// A plan request with no facts: option errors come before anything else.
fn plan_request_unchecked(
    host: &DataHost,
    updates: &[Update],
    options: caulk_sdk::update::Options,
) -> caulk_sdk::update::PlanRequest {
    caulk_sdk::update::PlanRequest {
        target: host.target(),
        updates: updates.to_vec(),
        options,
        facts: Vec::new(),
    }
}

#[test]
fn a_plan_without_facts_says_which_is_missing() {
    let host = DataHost::new(mini());
    let err = Pip::plan(&plan_request_unchecked(&host, &[], options(PatchLevel::Patch))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MissingFacts);
    assert!(err.message.contains("the host gave no answer to the plan probe `dists`"), "{}", err.message);
}

/// The review's crash came from an image's `pip.conf`: its index URLs are
/// checked like the command line's, and an environment whose configuration
/// holds a refused one is skipped with the file and the problem named,
/// never falling back to PyPI.
#[test]
fn crafted_index_urls_in_the_image_skip_the_environment_naming_the_file() {
    let site = "/usr/local/lib/python3.11/dist-packages";
    let crafted: &[(&[u8], &str)] = &[
        (
            b"[global]\nindex-url = https://u:%a\xc3\xa9@h/\n",
            "its password has a `%` not followed by two hex digits",
        ),
        (b"[global]\nindex-url = https://h/simple%\n", "its path has a `%`"),
        (b"[global]\nindex-url = https://h/%zz\n", "its path has a `%`"),
        (b"[global]\nindex-url = https://h\xff\xfe/simple\n", "is not a URL"),
        (
            b"[install]\nextra-index-url = https://ok.example/simple file:///wheels\n",
            "only http:// and https://",
        ),
    ];
    let mut huge = b"[global]\nindex-url = https://h/".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    let cases = crafted.iter().map(|(c, w)| (c.to_vec(), *w)).chain([(huge, "longer than 4096 bytes")]);
    for (conf, why) in cases {
        let root = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", support::mini().display()))
            .arg(root.path())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(root.path().join("etc/pip.conf"), &conf).unwrap();
        let host = DataHost::new(root.path());
        let plan = support::plan(
            &host,
            vec![update("urllib3", "1.26.5", &["1.26.18"], Some(site))],
            without_dry_runs(options(PatchLevel::Patch)),
        );
        assert!(plan.selected.is_empty(), "{why}: {plan:#?}");
        let reason = &plan.skipped[0].reason;
        assert!(reason.contains("/etc/pip.conf: ") && reason.contains(why), "{why}: {reason}");
        assert!(reason.len() < 600, "{reason}");
        let words = argv_words(&plan);
        assert!(!words.iter().any(|w| w.contains("h/")), "{words:?}");
    }
    // The image's environment, too.
    let mut host = DataHost::new(mini());
    host.env = vec![("PIP_INDEX_URL".into(), "https://u:%aé@h/".into())];
    let plan = support::plan(
        &host,
        vec![update("urllib3", "1.26.5", &["1.26.18"], Some(site))],
        without_dry_runs(options(PatchLevel::Patch)),
    );
    assert!(plan.selected.is_empty(), "{plan:#?}");
    assert!(
        plan.skipped[0].reason.contains("$PIP_INDEX_URL: index-url \"https://u:***@h/\" is refused"),
        "{plan:#?}"
    );
}
