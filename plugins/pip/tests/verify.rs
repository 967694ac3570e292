//! Verification over the image as tests/real_pip.rs left it (metadata and
//! the `pip check` and import outputs recorded there), and over copies of
//! it broken on purpose.

mod support;

use std::path::Path;

use caulk_plugin_pip::Pip;
use caulk_sdk::Updater;
use caulk_sdk::update::{
    Answer, Outcome, OutcomeStatus, PatchLevel, PatchPlan, SelectedUpdate, StepResult, Update, VersionTarget,
};
use support::{DataHost, data, options, read_data, recorded_verify, update, verify_request};

const SYSTEM: &str = "/usr/local/lib/python3.11/dist-packages";
const VENV: &str = "/opt/app/venv/lib/python3.11/site-packages";
const NOPIP: &str = "/srv/nopip/lib/python3.11/site-packages";
const LEGACY: &str = "/opt/legacy/lib/python3.9/site-packages";

fn patched() -> std::path::PathBuf {
    data("roots/bookworm-python-patched")
}

fn selected(name: &str, site: &str, from: &str, to: &str) -> SelectedUpdate {
    SelectedUpdate {
        ecosystem: "python".into(),
        name: name.into(),
        location: Some(site.into()),
        from: from.into(),
        target: VersionTarget::Exactly(to.into()),
        vulnerabilities: vec![format!("CVE-TEST-{name}")],
        rationale: None,
        passed_over: Vec::new(),
    }
}

/// What the real run selected (tests/real_pip.rs), and its updates.
fn real_run() -> (Vec<SelectedUpdate>, Vec<Update>) {
    let selected = vec![
        selected("urllib3", SYSTEM, "1.26.5", "1.26.18"),
        selected("requests", SYSTEM, "2.25.1", "2.31.0"),
        selected("urllib3", VENV, "2.0.6", "2.0.7"),
        selected("Jinja2", VENV, "3.1.2", "3.1.4"),
        selected("certifi", VENV, "2023.5.7", "2023.7.22"),
        selected("idna", NOPIP, "3.6", "3.7"),
        selected("MarkupSafe", NOPIP, "2.1.2", "2.1.3"),
        selected("chardet", NOPIP, "5.1.0", "5.2.0"),
        selected("idna", LEGACY, "3.6", "3.7"),
        selected("urllib3", LEGACY, "1.26.5", "1.26.18"),
    ];
    let updates =
        selected.iter().map(|s| update(&s.name, &s.from, &[version(s)], s.location.as_deref())).collect();
    (selected, updates)
}

fn version(s: &SelectedUpdate) -> &str {
    let VersionTarget::Exactly(v) = &s.target else { panic!() };
    v
}

fn verify(
    host: &DataHost,
    selected: Vec<SelectedUpdate>,
    updates: &[Update],
    steps: Vec<StepResult>,
) -> Vec<Outcome> {
    let plan = PatchPlan {
        selected,
        skipped: Vec::new(),
        steps: Vec::new(),
        drop_paths: Vec::new(),
        caches: Vec::new(),
    };
    let options = options(PatchLevel::Minor);
    Pip::verify(&verify_request(host, &plan, updates, &options, steps)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn find<'o>(outcomes: &'o [Outcome], name: &str, site: &str) -> &'o Outcome {
    outcomes.iter().find(|o| o.name == name && o.location.as_deref() == Some(site)).unwrap()
}

fn copy_of(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", root.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    dir
}

#[test]
fn the_real_run_verifies() {
    let host = DataHost::new(patched());
    let (selected, updates) = real_run();
    let outcomes = verify(&host, selected.clone(), &updates, Vec::new());
    assert_eq!(outcomes.len(), selected.len());
    for outcome in &outcomes {
        assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:#?}");
        assert!(outcome.checks.iter().all(|c| c.passed), "{outcome:#?}");
    }
    let urllib3 = find(&outcomes, "urllib3", SYSTEM);
    assert_eq!(urllib3.to.as_deref(), Some("1.26.18"));
    assert_eq!(urllib3.detail, format!("urllib3 1.26.5 → 1.26.18 in {SYSTEM}"));
    let names: Vec<&str> = urllib3.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["version", "pip check", "import urllib3"]);
    // urllib3 2.x wheels have no top_level.txt: the module comes from RECORD.
    let venv = find(&outcomes, "urllib3", VENV);
    assert!(venv.checks.iter().any(|c| c.name == "import urllib3"), "{venv:#?}");
    // No pip in /srv/nopip: caulk's own check from METADATA.
    let markupsafe = find(&outcomes, "MarkupSafe", NOPIP);
    assert_eq!(markupsafe.checks[1].name, "dependency check");
    // No interpreter for the 3.9 tree: said so, not failed.
    let legacy = find(&outcomes, "idna", LEGACY);
    assert!(legacy.detail.contains("no interpreter of the image can import it"), "{}", legacy.detail);
}

#[test]
fn a_stale_dist_info_fails_the_update() {
    let root = copy_of(&patched());
    let old = data("roots/bookworm-python/srv/nopip/lib/python3.11/site-packages/idna-3.6.dist-info");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(root.path().join(NOPIP.trim_start_matches('/')))
        .status()
        .unwrap();
    assert!(ok.success());
    let host = DataHost::new(root.path());
    let outcomes = verify(
        &host,
        vec![selected("idna", NOPIP, "3.6", "3.7")],
        &[update("idna", "3.6", &["3.7"], Some(NOPIP))],
        Vec::new(),
    );
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(
        outcomes[0].detail.starts_with(&format!(
            "{NOPIP} holds 2 distributions of idna (idna-3.6.dist-info, idna-3.7.dist-info): the old one was not removed"
        )),
        "{}",
        outcomes[0].detail
    );
}

#[test]
fn a_version_not_reached_names_the_failed_step() {
    // The unpatched image, after a pip run that failed.
    let host = DataHost::new(data("roots/bookworm-python"));
    let stderr = String::from_utf8(read_data("reports/urllib3==2.0.6.1.stderr")).unwrap();
    let steps = vec![StepResult {
        summary: "pip install in the virtualenv /opt/app/venv".into(),
        exit_code: 1,
        stderr_tail: stderr,
    }];
    let outcomes = verify(
        &host,
        vec![selected("urllib3", VENV, "2.0.6", "2.0.6.1")],
        &[update("urllib3", "2.0.6", &["2.0.6.1"], Some(VENV))],
        steps,
    );
    let outcome = &outcomes[0];
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.to.as_deref(), Some("2.0.6"));
    assert!(
        outcome.detail.starts_with("urllib3 stayed at 2.0.6, not 2.0.6.1; `pip install in the virtualenv /opt/app/venv` exited 1: ERROR: Could not find a version"),
        "{}",
        outcome.detail
    );
}

/// A copy of `root` whose system site-packages holds the virtualenv's
/// urllib3 2.0.7 in place of 1.26.18 (the metadata pip check reads).
fn with_venv_urllib3_in_system(root: &Path) -> tempfile::TempDir {
    let copy = copy_of(root);
    let system = copy.path().join(SYSTEM.trim_start_matches('/'));
    std::fs::remove_dir_all(system.join("urllib3-1.26.18.dist-info")).unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(copy.path().join(VENV.trim_start_matches('/')).join("urllib3-2.0.7.dist-info"))
        .arg(&system)
        .status()
        .unwrap();
    assert!(ok.success());
    copy
}

#[test]
fn new_conflicts_and_broken_imports_fail_the_update() {
    // urllib3 2.0.7 forced under the pinned requests 2.25.1, and a module of
    // Jinja2 deleted: pip check and the import check as they ran there.
    let root = with_venv_urllib3_in_system(&patched());
    let host = DataHost::new(root.path())
        .with_runs(|command| recorded_verify(command, "runs/verify-broken").map(|a: Answer| a));
    let selected =
        vec![selected("urllib3", SYSTEM, "1.26.5", "2.0.7"), selected("Jinja2", VENV, "3.1.2", "3.1.4")];
    let updates: Vec<Update> =
        selected.iter().map(|s| update(&s.name, &s.from, &[version(s)], s.location.as_deref())).collect();
    let outcomes = verify(&host, selected, &updates, Vec::new());
    let urllib3 = find(&outcomes, "urllib3", SYSTEM);
    assert_eq!(urllib3.status, OutcomeStatus::Failed);
    let check = urllib3.checks.iter().find(|c| c.name == "pip check").unwrap();
    assert!(!check.passed);
    assert_eq!(
        check.detail,
        "requests 2.25.1 has requirement urllib3<1.27,>=1.21.1, but you have urllib3 2.0.7"
    );
    assert!(
        urllib3.detail.starts_with("urllib3 is at 2.0.7, but pip check: requests 2.25.1"),
        "{}",
        urllib3.detail
    );
    let jinja = find(&outcomes, "Jinja2", VENV);
    assert_eq!(jinja.status, OutcomeStatus::Failed);
    let import = jinja.checks.iter().find(|c| c.name == "import jinja2").unwrap();
    assert_eq!(import.detail, "ModuleNotFoundError: No module named 'jinja2.filters'");
}

#[test]
fn a_conflict_the_old_version_had_too_is_not_the_moves_doing() {
    // requests 2.25.1 wants urllib3<1.27; had the image already held a
    // urllib3 it rejects, moving that urllib3 on did not break requests.
    let root = with_venv_urllib3_in_system(&patched());
    let host = DataHost::new(root.path()).with_runs(|command| recorded_verify(command, "runs/verify-broken"));
    let outcomes = verify(
        &host,
        vec![selected("urllib3", SYSTEM, "2.0.6", "2.0.7")],
        &[update("urllib3", "2.0.6", &["2.0.7"], Some(SYSTEM))],
        Vec::new(),
    );
    let check = outcomes[0].checks.iter().find(|c| c.name == "pip check").unwrap();
    assert!(check.passed, "{check:#?}");
    assert!(
        check.detail.contains("(already unmet before: requests 2.25.1 has requirement urllib3<1.27,>=1.21.1"),
        "{}",
        check.detail
    );
    assert_eq!(outcomes[0].status, OutcomeStatus::Patched);
}
