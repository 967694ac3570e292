//! Plans over the committed miniature of the Debian 12 test image, with
//! PyPI pages, interpreter answers and pip dry runs recorded from the real
//! thing (see tests/data/README.md).

mod support;

use caulk_plugin_pip::Pip;
use caulk_sdk::Updater;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    Answer, ExecContext, PatchLevel, PatchPlan, QuestionKind, SelectedUpdate, UpdateMode, VersionTarget,
};
use support::{
    DataHost, argv_words, asked, lanes, mini, options, plan, plan_request, runs, update, without_dry_runs,
};

const SYSTEM: &str = "/usr/local/lib/python3.11/dist-packages";
const VENV: &str = "/opt/app/venv/lib/python3.11/site-packages";
const NOPIP: &str = "/srv/nopip/lib/python3.11/site-packages";
const LEGACY: &str = "/opt/legacy/lib/python3.9/site-packages";

fn selected<'p>(plan: &'p PatchPlan, name: &str, site: Option<&str>) -> &'p SelectedUpdate {
    plan.selected
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name) && (site.is_none() || s.location.as_deref() == site))
        .unwrap_or_else(|| panic!("{name} not selected: {plan:#?}"))
}

fn version(s: &SelectedUpdate) -> &str {
    match &s.target {
        VersionTarget::Exactly(v) => v,
        other => panic!("{other:?}"),
    }
}

fn skip_reason<'p>(plan: &'p PatchPlan, name: &str) -> &'p str {
    &plan
        .skipped
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("{name} not skipped: {plan:#?}"))
        .reason
}

#[test]
fn a_pinned_requests_bounds_urllib3() {
    let host = DataHost::new(mini());
    // The only fix is 2.x; requests 2.25.1 requires urllib3<1.27.
    let plan =
        plan(&host, vec![update("urllib3", "1.26.5", &["2.0.7"], Some(SYSTEM))], options(PatchLevel::Major));
    assert!(plan.selected.is_empty() && plan.steps.is_empty(), "{plan:#?}");
    let reason = skip_reason(&plan, "urllib3");
    assert!(
        reason.starts_with(
            "urllib3 1.26.5 stays: requests 2.25.1 requires urllib3<1.27,>=1.21.1; 2.0.7 not installed"
        ),
        "{reason}"
    );
    // With the 1.26 fix listed beside it, that one is taken.
    let plan = plan_with(
        &host,
        vec![update("urllib3", "1.26.5", &["1.26.18", "2.0.7"], Some(SYSTEM))],
        PatchLevel::Major,
    );
    let urllib3 = selected(&plan, "urllib3", Some(SYSTEM));
    assert_eq!(version(urllib3), "1.26.18");
    assert!(urllib3.passed_over.iter().any(|p| p.version == "2.0.7"), "{urllib3:#?}");
}

fn plan_with(host: &DataHost, updates: Vec<caulk_sdk::update::Update>, level: PatchLevel) -> PatchPlan {
    plan(host, updates, options(level))
}

#[test]
fn moving_requests_too_frees_urllib3_and_pulls_its_new_dependency() {
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["2.0.7"], Some(SYSTEM)),
        update("requests", "2.25.1", &["2.31.0"], Some(SYSTEM)),
    ];
    let plan = plan_with(&host, updates, PatchLevel::Major);
    assert_eq!(version(selected(&plan, "urllib3", Some(SYSTEM))), "2.0.7", "{plan:#?}");
    assert_eq!(version(selected(&plan, "requests", Some(SYSTEM))), "2.31.0");
    // requests 2.31.0 needs charset-normalizer, which the image lacks: the
    // dry run found the release pip would take, and it is pinned too.
    let dependency = selected(&plan, "charset-normalizer", Some(SYSTEM));
    assert_eq!(dependency.from, "");
    assert!(dependency.vulnerabilities.is_empty());
    assert!(
        dependency
            .rationale
            .as_deref()
            .unwrap()
            .contains("requests 2.31.0 requires charset-normalizer<4,>=2")
    );
    assert_eq!(plan.steps.len(), 1);
    let argv = &plan.steps[0].command.argv;
    let pins: Vec<&str> = argv.iter().skip_while(|a| *a != "--").skip(1).map(String::as_str).collect();
    assert_eq!(pins[..2], ["urllib3==2.0.7", "requests==2.31.0"]);
    assert!(pins[2].starts_with("charset-normalizer=="), "{pins:?}");
    assert!(argv.contains(&"--no-deps".to_owned()), "every version is pinned, nothing else may move");
}

#[test]
fn a_fixed_version_pypi_never_published() {
    let host = DataHost::new(mini());
    // Nothing later in 2.10.x exists: skipped, saying so.
    let plan = plan_with(&host, vec![update("idna", "2.10", &["2.10.1"], Some(SYSTEM))], PatchLevel::Patch);
    let reason = skip_reason(&plan, "idna");
    assert!(reason.starts_with("idna 2.10 stays: not published on https://pypi.org/simple"), "{reason}");
    // A later release of the same line carries the fix: taken instead.
    let plan =
        plan_with(&host, vec![update("urllib3", "2.0.6", &["2.0.6.1"], Some(VENV))], PatchLevel::Patch);
    let urllib3 = selected(&plan, "urllib3", Some(VENV));
    assert_eq!(version(urllib3), "2.0.7");
    assert!(
        urllib3.rationale.as_deref().unwrap().contains("2.0.7 is the first release of 2.0.x after 2.0.6.1")
    );
    assert_eq!(urllib3.passed_over[0].version, "2.0.6.1");
    assert!(urllib3.passed_over[0].reason.starts_with("not published on"));
}

#[test]
fn requires_python_excludes_a_candidate() {
    let host = DataHost::new(mini());
    // The 3.9 tree: urllib3 2.7.0 requires Python >=3.10, 2.6.0 does not.
    let updates = vec![update("urllib3", "1.26.5", &["2.6.0", "2.7.0"], Some(LEGACY))];
    let plan = plan_with(&host, updates, PatchLevel::Major);
    let urllib3 = selected(&plan, "urllib3", Some(LEGACY));
    assert_eq!(version(urllib3), "2.6.0", "{plan:#?}");
    let refused = urllib3.passed_over.iter().find(|p| p.version == "2.7.0").expect("2.7.0 passed over");
    assert_eq!(refused.reason, "requires Python >=3.10; the environment has Python 3.9");
    let plan =
        plan_with(&host, vec![update("urllib3", "1.26.5", &["2.7.0"], Some(LEGACY))], PatchLevel::Major);
    assert!(skip_reason(&plan, "urllib3").contains("requires Python >=3.10; the environment has Python 3.9"));
}

#[test]
fn certifi_takes_its_highest_fix_whatever_the_level() {
    let host = DataHost::new(mini());
    let mut certifi = update("certifi", "2023.5.7", &["2023.7.22", "2024.7.4"], Some(VENV));
    certifi.vulnerabilities = vec!["CVE-2023-37920".into(), "CVE-2024-39689".into()];
    let plan = plan_with(&host, vec![certifi], PatchLevel::Patch);
    let certifi = selected(&plan, "certifi", Some(VENV));
    assert_eq!(version(certifi), "2024.7.4");
    assert!(
        certifi
            .rationale
            .as_deref()
            .unwrap()
            .starts_with("certifi always moves to its highest fixed version")
    );
    assert_eq!(certifi.vulnerabilities, ["CVE-2023-37920", "CVE-2024-39689"]);
}

#[test]
fn each_environment_holding_the_package_gets_its_own_update() {
    let host = DataHost::new(mini());
    let plan =
        plan_with(&host, vec![update("urllib3", "1.26.5", &["1.26.18", "2.0.7"], None)], PatchLevel::Patch);
    let mut found: Vec<(&str, &str)> =
        plan.selected.iter().map(|s| (s.location.as_deref().unwrap(), version(s))).collect();
    found.sort_unstable();
    assert_eq!(found, [(VENV, "2.0.7"), (LEGACY, "1.26.18"), (SYSTEM, "1.26.18")]);
}

#[test]
fn how_each_kind_of_environment_is_patched() {
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("urllib3", "2.0.6", &["2.0.7"], Some(VENV)),
        update("idna", "3.6", &["3.7"], Some(NOPIP)),
        update("idna", "3.6", &["3.7"], Some(LEGACY)),
    ];
    let plan = plan_with(&host, updates, PatchLevel::Minor);
    let steps: Vec<(&str, &[String], &ExecContext)> =
        plan.steps.iter().map(|s| (s.summary.as_str(), &s.command.argv[..], &s.command.context)).collect();
    assert_eq!(steps.len(), 5, "{steps:#?} {:#?}", plan.skipped);
    // The system Python and the virtualenv install with their own pips,
    // side by side in one step, one lane each.
    let (summary, argv, context) = steps[0];
    assert_eq!(*context, ExecContext::Target);
    assert!(plan.steps[0].command.network);
    assert_eq!(argv[..4], ["/usr/bin/python3.11", "-I", "-B", "-c"]);
    assert_eq!(
        summary,
        "pip install in 2 environments at once: the system Python 3.11 (/usr/bin/python3.11); \
         the virtualenv /opt/app/venv (Python 3.11)"
    );
    let lanes = lanes(&plan.steps[0]).expect("a side-by-side step");
    assert_eq!(lanes.len(), 2, "{lanes:#?}");
    // System Python: its own pip; Debian marks it externally managed.
    let system = &lanes[0][0];
    assert_eq!(system.argv[..4], ["/usr/bin/python3.11", "-m", "pip", "install"]);
    assert!(system.argv.contains(&"--break-system-packages".to_owned()));
    assert!(system.argv.ends_with(&["--".to_owned(), "urllib3==1.26.18".to_owned()]), "{system:#?}");
    // The virtualenv: its own pip, not externally managed.
    let venv = &lanes[1][0];
    assert_eq!(venv.argv[0], "/opt/app/venv/bin/python");
    assert!(!venv.argv.contains(&"--break-system-packages".to_owned()));
    assert!(venv.label.contains("/opt/app/venv"), "{venv:#?}");
    // pip trusts the image's system bundle, where the host mounts its own.
    for run in [system, venv] {
        assert!(
            run.env.contains(&("PIP_CERT".into(), "/etc/ssl/certs/ca-certificates.crt".into())),
            "{run:#?}"
        );
        let epoch = ("SOURCE_DATE_EPOCH".into(), caulk_plugin_pip::plan::SOURCE_DATE_EPOCH.into());
        assert!(run.env.contains(&epoch), "{run:#?}");
    }
    // The venv without pip: the image's Python 3.11 pip with --target into
    // a fresh directory beside the site, then merged in, the old
    // distribution removed by its RECORD.
    let nopip_scratch = "/srv/nopip/lib/python3.11/.site-packages.caulk-new";
    let nopip_aside = "/srv/nopip/lib/python3.11/.site-packages.caulk-old";
    let (_, argv, _) = steps[1];
    assert_eq!(argv[0], "/usr/bin/python3.11");
    let target = argv.iter().position(|a| a == "--target").unwrap();
    assert_eq!(argv[target + 1], nopip_scratch);
    let (summary, argv, _) = steps[2];
    assert_eq!(summary, format!("replace idna-3.6.dist-info in {NOPIP} by the new install"));
    // -I ignores PYTHONDONTWRITEBYTECODE: -B keeps the script's imports
    // from recompiling the image's bytecode into the layer.
    assert_eq!(argv[1..3], ["-I", "-B"]);
    // The old files wait beside the site; the venv's root holds its scripts.
    assert_eq!(
        argv[5..],
        [
            NOPIP.to_owned(),
            nopip_scratch.into(),
            nopip_aside.into(),
            "/srv/nopip".into(),
            "idna-3.6.dist-info".into(),
            "idna".into(),
            "3.7".into()
        ]
    );
    // The 3.9 tree no interpreter runs: the host's pip, told Python 3.9.
    let (_, argv, context) = steps[3];
    assert!(matches!(context, ExecContext::Tooling(t) if t.image.is_none() && t.mount_point == "/target"));
    let text = argv.join(" ");
    for expected in [
        "--python-version 3.9",
        "--implementation cp",
        "--abi cp39",
        "--only-binary=:all:",
        "--platform manylinux2014_x86_64",
        "--platform manylinux_2_36_x86_64",
        "--target /target/opt/legacy/lib/python3.9/.site-packages.caulk-new",
    ] {
        assert!(text.contains(expected), "{expected} missing: {text}");
    }
    assert!(plan.steps[3].command.env.contains(&("PIP_CONFIG_FILE".into(), "/dev/null".into())));
    let (_, argv, context) = steps[4];
    assert!(matches!(context, ExecContext::Tooling(_)));
    assert_eq!(argv[5], format!("/target{LEGACY}"));
    // A loose tree's root is itself: nothing outside it is touched.
    assert_eq!(argv[8], format!("/target{LEGACY}"));
    for step in &plan.steps[1..2] {
        if step.command.network {
            assert!(
                step.command.env.contains(&("PIP_CERT".into(), "/etc/ssl/certs/ca-certificates.crt".into())),
                "{step:#?}"
            );
        }
    }
    // Scratch directories a failed step leaves stay out of the layer.
    assert_eq!(
        plan.drop_paths,
        [
            "/root/.cache/pip",
            "/root/.cache/pip/**",
            &format!("{nopip_scratch}/**"),
            nopip_scratch,
            &format!("{nopip_aside}/**"),
            nopip_aside,
            "/opt/legacy/lib/python3.9/.site-packages.caulk-new/**",
            "/opt/legacy/lib/python3.9/.site-packages.caulk-new",
            "/opt/legacy/lib/python3.9/.site-packages.caulk-old/**",
            "/opt/legacy/lib/python3.9/.site-packages.caulk-old",
        ]
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| !s.command.network
                || runs(s).iter().all(|r| r.argv.contains(&"--no-cache-dir".to_owned())))
    );
}

#[test]
fn under_ignore_errors_each_environment_keeps_its_own_step() {
    // A tolerated step that fails is judged whole (and BuildKit keeps
    // nothing of it): one environment's failure must not take another's
    // install with it.
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("urllib3", "2.0.6", &["2.0.7"], Some(VENV)),
    ];
    let mut tolerant = options(PatchLevel::Minor);
    tolerant.ignore_errors = true;
    let separate = plan(&host, updates.clone(), tolerant);
    assert_eq!(separate.steps.len(), 2, "{:#?}", separate.steps);
    assert!(separate.steps.iter().all(|s| lanes(s).is_none() && s.tolerate_failure));
    let shared = plan(&host, updates, options(PatchLevel::Minor));
    assert_eq!(shared.steps.len(), 1, "without --ignore-errors they share one step");
    assert_eq!(lanes(&shared.steps[0]).map(|l| l.len()), Some(2));
}

#[test]
fn vendored_copies_and_the_os_packages_are_left_alone() {
    let host = DataHost::new(mini());
    let updates = vec![
        update(
            "wheel",
            "0.43.0",
            &["0.46.2"],
            Some("/opt/app/venv/lib/python3.11/site-packages/setuptools/_vendor"),
        ),
        update("setuptools", "66.1.1", &["70.0.0"], Some("/usr/lib/python3/dist-packages")),
        update("pip", "23.0.1", &["23.3"], Some("/usr/lib/python3/dist-packages")),
    ];
    let plan = plan_with(&host, updates, PatchLevel::Major);
    assert!(plan.selected.is_empty() && plan.steps.is_empty());
    assert!(skip_reason(&plan, "wheel").contains("is a copy vendored inside setuptools 75.1.0"));
    assert!(
        skip_reason(&plan, "setuptools")
            .contains("belongs to the operating system's packages (no INSTALLER file)")
    );
    assert!(skip_reason(&plan, "pip").contains("belongs to the operating system's packages"));
}

#[test]
fn already_fixed_out_of_reach_missing_and_foreign() {
    let host = DataHost::new(mini());
    let updates = vec![
        update("requests", "2.31.0", &["2.31.0"], Some(VENV)),
        update("requests", "2.25.1", &["2.31.0"], Some(SYSTEM)),
        update("flask", "2.0.0", &["2.2.5"], None),
        update("Jinja2", "3.1.2", &["3.1.4"], Some(SYSTEM)),
        caulk_sdk::update::Update {
            ecosystem: "npm".into(),
            ..update("lodash", "4.17.20", &["4.17.21"], None)
        },
    ];
    let plan = plan_with(&host, updates, PatchLevel::Patch);
    let by_name =
        |name: &str, n: usize| &plan.skipped.iter().filter(|s| s.name == name).nth(n).unwrap().reason;
    let fixed = plan.skipped.iter().find(|s| s.already_fixed).expect("already fixed");
    assert_eq!(fixed.reason, "requests 2.31.0 is already at or above every fixed version (highest 2.31.0)");
    assert!(
        by_name("requests", 1).contains("no fixed version within --library-patch-level patch (2.25.x only"),
        "{plan:#?}"
    );
    assert_eq!(by_name("flask", 0), "flask is not installed in any Python environment caulk found");
    assert_eq!(
        by_name("Jinja2", 0),
        &format!("Jinja2 is not installed in {SYSTEM} (found: 3.1.2 in {VENV})")
    );
    assert!(by_name("lodash", 0).contains("ecosystem \"npm\""));
}

#[test]
fn the_index_cannot_be_asked() {
    let mut host = DataHost::new(mini());
    host.offline = vec!["jinja2".into()];
    let plan = plan(
        &host,
        vec![update("Jinja2", "3.1.2", &["3.1.4"], Some(VENV))],
        without_dry_runs(options(PatchLevel::Patch)),
    );
    let jinja = selected(&plan, "Jinja2", Some(VENV));
    assert_eq!(version(jinja), "3.1.4");
    assert!(jinja.rationale.as_deref().unwrap().contains(
        "the index could not be asked (index unreachable (test)), so the report's version is trusted"
    ));
    assert!(
        jinja.rationale.as_deref().unwrap().contains("installed with --no-deps after the dependents check")
    );
}

#[test]
fn what_pip_refuses_in_a_dry_run_is_not_planned() {
    // The index is down, so the report's 2.0.6.1 is tried as it is; pip
    // finds no such release, and says so.
    let mut host = DataHost::new(mini());
    host.offline = vec!["urllib3".into()];
    let plan =
        plan_with(&host, vec![update("urllib3", "2.0.6", &["2.0.6.1"], Some(VENV))], PatchLevel::Patch);
    assert!(plan.steps.is_empty(), "{plan:#?}");
    let reason = skip_reason(&plan, "urllib3");
    assert!(
        reason.starts_with(
            "urllib3 2.0.6 stays: pip refused it: ERROR: Could not find a version that satisfies the requirement urllib3==2.0.6.1"
        ),
        "{reason}"
    );
}

#[test]
fn a_group_pip_refuses_as_a_whole_is_tried_package_by_package() {
    // pip's resolver failing for the system environment's run as a whole,
    // naming no culprit (as ResolutionImpossible does): each update is then
    // resolved alone (those dry runs are real recordings).
    let host = DataHost::new(mini()).with_runs(|command| {
        let key = support::dry_run_key(command);
        (key == "urllib3==1.26.18+requests==2.31.0").then(|| {
            Answer::Output(caulk_sdk::update::CommandOutput {
                exit_code: 1,
                stdout: Vec::new(),
                stderr: b"ERROR: Cannot install requests==2.31.0 and urllib3==1.26.18 because these package versions have conflicting dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts\n".to_vec(),
            })
        })
    });
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("requests", "2.25.1", &["2.31.0"], Some(SYSTEM)),
    ];
    let plan = plan_with(&host, updates, PatchLevel::Minor);
    assert_eq!(version(selected(&plan, "urllib3", Some(SYSTEM))), "1.26.18");
    assert_eq!(version(selected(&plan, "requests", Some(SYSTEM))), "2.31.0");
    let summaries: Vec<&str> = plan.steps.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(summaries.len(), 2, "one pip run each: {summaries:#?}");
}

#[test]
fn a_dry_run_failing_for_one_package_of_a_group_names_it() {
    // One dry run for the system environment's two updates. The index is
    // down for urllib3, so the report's 1.26.18.1 is tried as it is, and
    // pip's error names that pin: it alone is refused, with pip's words,
    // and certifi goes on in a dry run of its own (recorded for real); no
    // one-by-one split.
    let mut host = DataHost::new(mini()).with_runs(|command| {
        (support::dry_run_key(command) == "urllib3==1.26.18.1+certifi==2024.7.4").then(|| {
            Answer::Output(caulk_sdk::update::CommandOutput {
                exit_code: 1,
                stdout: Vec::new(),
                stderr: b"ERROR: Could not find a version that satisfies the requirement urllib3==1.26.18.1 (from versions: 1.26.17, 1.26.18, 2.0.7)\nERROR: No matching distribution found for urllib3==1.26.18.1\n".to_vec(),
            })
        })
    });
    host.offline = vec!["urllib3".into()];
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18.1"], Some(SYSTEM)),
        update("certifi", "2022.12.7", &["2024.7.4"], Some(SYSTEM)),
    ];
    let dry_runs: Vec<String> =
        asked(&host, caulk_sdk::update::Phase::Plan, &updates, &options(PatchLevel::Patch))
            .iter()
            .filter(|(q, _)| q.id.starts_with("resolve:"))
            .map(|(q, _)| match &q.kind {
                QuestionKind::Run(command) => support::dry_run_key(command),
                other => panic!("{other:?}"),
            })
            .collect();
    assert_eq!(dry_runs, ["urllib3==1.26.18.1+certifi==2024.7.4", "certifi==2024.7.4"]);
    let plan = plan_with(&host, updates, PatchLevel::Patch);
    assert_eq!(version(selected(&plan, "certifi", Some(SYSTEM))), "2024.7.4");
    let reason = skip_reason(&plan, "urllib3");
    assert!(
        reason.starts_with(
            "urllib3 1.26.5 stays: pip refused it: ERROR: Could not find a version that satisfies the requirement urllib3==1.26.18.1"
        ),
        "{reason}"
    );
}

#[test]
fn pip_configuration_of_the_image_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", mini().display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(
        dir.path().join("etc/pip.conf"),
        "[global]\nindex-url = https://ci:s3cret@mirror.example/simple\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("opt/app/venv/pip.conf"),
        "[install]\nextra-index-url = https://extra.example/simple\n",
    )
    .unwrap();
    let host = DataHost::new(dir.path());
    let updates = vec![
        update("idna", "3.6", &["3.7"], Some(LEGACY)),
        update("urllib3", "2.0.6", &["2.0.7"], Some(VENV)),
    ];
    let request = plan_request(&host, updates.clone(), without_dry_runs(options(PatchLevel::Minor)));
    let plan = Pip::plan(&request).unwrap();
    // Look-ups carry the image's indexes; the venv adds its own extra one.
    let questions = caulk_plugin_pip_questions(&host, &updates);
    assert_eq!(questions.len(), 2, "one look-up per package and index set: {questions:?}");
    assert!(
        questions
            .iter()
            .any(|(name, urls)| name == "idna" && urls == &["https://ci:s3cret@mirror.example/simple"]),
        "{questions:?}"
    );
    assert!(
        questions.iter().any(|(name, urls)| name == "urllib3"
            && urls == &["https://ci:s3cret@mirror.example/simple", "https://extra.example/simple"]),
        "{questions:?}"
    );
    // The host's pip is told the image's index (it must not read its own
    // configuration); the venv's pip reads the image's files itself.
    let words = argv_words(&plan);
    let tooling = plan.steps.iter().find(|s| matches!(s.command.context, ExecContext::Tooling(_))).unwrap();
    assert!(
        tooling
            .command
            .argv
            .windows(2)
            .any(|w| w == ["--index-url", "https://ci:s3cret@mirror.example/simple"])
    );
    let venv_step = plan.steps.iter().find(|s| s.command.argv[0] == "/opt/app/venv/bin/python").unwrap();
    assert!(!venv_step.command.argv.iter().any(|a| a.contains("mirror.example")));
    // Credentials appear in argv only, never in what people read.
    for s in &plan.selected {
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
    }
    assert!(words.iter().filter(|w| w.contains("s3cret")).count() == 1);

    // The command line replaces the image's index.
    let mut cli = without_dry_runs(options(PatchLevel::Minor));
    cli.index_urls = vec!["https://cli.example/simple".into(), "https://cli-extra.example/simple".into()];
    let plan = support::plan(&host, updates, cli);
    let venv_step = plan.steps.iter().find(|s| s.command.argv[0] == "/opt/app/venv/bin/python").unwrap();
    let text = venv_step.command.argv.join(" ");
    assert!(
        text.contains(
            "--index-url https://cli.example/simple --extra-index-url https://cli-extra.example/simple"
        ),
        "{text}"
    );
}

#[test]
fn pip_variables_of_the_image_config() {
    let mut host = DataHost::new(mini());
    host.env = vec![
        ("PIP_INDEX_URL".into(), "https://env.example/simple".into()),
        ("PIP_EXTRA_INDEX_URL".into(), "https://a.example/simple https://b.example/simple".into()),
    ];
    let updates = vec![update("idna", "3.6", &["3.7"], Some(LEGACY))];
    let questions = caulk_plugin_pip_questions(&host, &updates);
    assert_eq!(
        questions,
        [(
            "idna".to_owned(),
            vec![
                "https://env.example/simple".to_owned(),
                "https://a.example/simple".to_owned(),
                "https://b.example/simple".to_owned()
            ]
        )]
    );
    let plan = support::plan(&host, updates, without_dry_runs(options(PatchLevel::Minor)));
    let text = plan.steps[0].command.argv.join(" ");
    assert!(
        text.contains("--index-url https://env.example/simple --extra-index-url https://a.example/simple --extra-index-url https://b.example/simple"),
        "{text}"
    );
    // PIP_CONFIG_FILE=/dev/null turns the image's files off, as in pip.
    host.env = vec![("PIP_CONFIG_FILE".into(), "/dev/null".into())];
    let questions = caulk_plugin_pip_questions(&host, &[update("idna", "3.6", &["3.7"], Some(LEGACY))]);
    assert_eq!(questions[0].1, Vec::<String>::new());
}

/// Every look-up the plan phase asks: (name, index URLs).
fn caulk_plugin_pip_questions(
    host: &DataHost,
    updates: &[caulk_sdk::update::Update],
) -> Vec<(String, Vec<String>)> {
    let options = without_dry_runs(options(PatchLevel::Minor));
    asked(host, caulk_sdk::update::Phase::Plan, updates, &options)
        .into_iter()
        .filter_map(|(q, _)| match q.kind {
            QuestionKind::Lookup(query) => Some((query.name, query.index_urls)),
            _ => None,
        })
        .collect()
}

#[test]
fn update_all_mode_plans_nothing() {
    let host = DataHost::new(mini());
    let mut options = options(PatchLevel::Patch);
    options.mode = UpdateMode::All;
    let plan = plan(&host, Vec::new(), options);
    assert!(plan.selected.is_empty() && plan.skipped.is_empty() && plan.steps.is_empty());
}

#[test]
fn the_interpreters_answer_decides_the_environment() {
    let host = DataHost::new(mini());
    let request = plan_request(
        &host,
        vec![update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM))],
        options(PatchLevel::Patch),
    );
    // Debian's python3.11 installs into /usr/local/.../dist-packages and
    // sees /usr/lib/python3/dist-packages: both from its own answer.
    let Some(Answer::Output(out)) = request.facts.answer("python:/usr/bin/python3.11") else {
        panic!("asked")
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"purelib\": \"/usr/local/lib/python3.11/dist-packages\""));
    assert!(request.facts.answered("python:/opt/app/venv/bin/python"));
    assert!(request.facts.answered("python:/srv/nopip/bin/python"));
}

#[test]
fn an_update_naming_a_location_takes_it_from_one_that_does_not() {
    let host = DataHost::new(mini());
    let mut anywhere = update("urllib3", "1.26.5", &["1.26.18", "2.0.7"], None);
    anywhere.vulnerabilities = vec!["CVE-2023-45803".into()];
    let mut here = update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM));
    here.vulnerabilities = vec!["CVE-2023-43804".into()];
    let plan = plan_with(&host, vec![anywhere, here], PatchLevel::Minor);
    let system: Vec<&SelectedUpdate> = plan
        .selected
        .iter()
        .filter(|s| s.location.as_deref() == Some(SYSTEM) && s.name == "urllib3")
        .collect();
    assert_eq!(system.len(), 1, "one pip pin per distribution: {plan:#?}");
    assert_eq!(system[0].vulnerabilities, ["CVE-2023-43804"]);
    let elsewhere: Vec<&str> =
        plan.selected.iter().filter(|s| s.name == "urllib3").filter_map(|s| s.location.as_deref()).collect();
    assert_eq!(elsewhere, [SYSTEM, VENV, LEGACY]);
    assert!(plan.skipped.is_empty(), "{plan:#?}");
}
