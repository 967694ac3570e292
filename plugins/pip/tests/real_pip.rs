//! The plan run for real: the Debian 12 test image (see
//! `support::base_image`: system pins, a virtualenv, a virtualenv without
//! pip, a Python 3.9 tree without an interpreter) probed, planned, patched
//! by running the plan's steps under bubblewrap as the local executor does
//! (the image's own root for target steps; for tooling steps a read-only
//! Debian root with python3-pip standing in for the host's, the image
//! mounted at /target), then verified. Look-ups go to PyPI.
//!
//! Needs root, bubblewrap, mmdebstrap, curl and the network; the image is
//! cached under $CAULK_TEST_CACHE/pip
//! (default /var/tmp/caulk-test-cache). Set CAULK_SKIP_REAL_PIP=1 to
//! skip.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use caulk_plugin_pip::Pip;
use caulk_plugin_pip::scripts::{DEPS_PREFIX, IMPORT_CHECK, IMPORT_PAUSED, IMPORT_PREFIX};
use caulk_sdk::Updater;
use caulk_sdk::update::{
    Command, ExecContext, OutcomeStatus, PatchLevel, Phase, PlanRequest, StepResult, Update, VerifyRequest,
    VersionTarget,
};
use support::{Host, RealHost, base_image, image_copy, options, probe, run, runnable};

const SYSTEM: &str = "/usr/local/lib/python3.11/dist-packages";
const VENV: &str = "/opt/app/venv/lib/python3.11/site-packages";
const NOPIP: &str = "/srv/nopip/lib/python3.11/site-packages";
const LEGACY: &str = "/opt/legacy/lib/python3.9/site-packages";

fn report(name: &str, installed: &str, location: &str, vulns: &[(&str, &[&str])]) -> Update {
    let mut fixed: Vec<String> = Vec::new();
    for (_, versions) in vulns {
        for v in *versions {
            if !fixed.iter().any(|f| f == v) {
                fixed.push((*v).to_owned());
            }
        }
    }
    Update {
        ecosystem: "python".into(),
        name: name.into(),
        location: Some(location.into()),
        installed_version: installed.into(),
        fixed_versions: fixed,
        vulnerabilities: vulns.iter().map(|(id, _)| (*id).to_owned()).collect(),
    }
}

/// Findings as Trivy reports them for this image (real advisories; the
/// MarkupSafe and chardet ones are made up to move a compiled wheel and a
/// distribution with a console script).
fn updates() -> Vec<Update> {
    vec![
        report(
            "urllib3",
            "1.26.5",
            SYSTEM,
            &[("CVE-2023-43804", &["1.26.17", "2.0.6"]), ("CVE-2023-45803", &["1.26.18", "2.0.7"])],
        ),
        report("requests", "2.25.1", SYSTEM, &[("CVE-2023-32681", &["2.31.0"])]),
        report("urllib3", "2.0.6", VENV, &[("CVE-2023-45803", &["1.26.18", "2.0.7"])]),
        report("Jinja2", "3.1.2", VENV, &[("CVE-2024-22195", &["3.1.3"]), ("CVE-2024-34064", &["3.1.4"])]),
        report("certifi", "2023.5.7", VENV, &[("CVE-2023-37920", &["2023.7.22"])]),
        report("idna", "3.6", NOPIP, &[("CVE-2024-3651", &["3.7"])]),
        report("MarkupSafe", "2.1.2", NOPIP, &[("TEST-MARKUPSAFE", &["2.1.3"])]),
        report("chardet", "5.1.0", NOPIP, &[("TEST-CHARDET", &["5.2.0"])]),
        report("idna", "3.6", LEGACY, &[("CVE-2024-3651", &["3.7"])]),
        report("urllib3", "1.26.5", LEGACY, &[("CVE-2023-45803", &["1.26.18", "2.0.7"])]),
        report(
            "wheel",
            "0.43.0",
            "/opt/app/venv/lib/python3.11/site-packages/setuptools/_vendor",
            &[("CVE-2026-24049", &["0.46.2"])],
        ),
        report("setuptools", "66.1.1", "/usr/lib/python3/dist-packages", &[("CVE-2024-6345", &["70.0.0"])]),
    ]
}

/// Names of the `.dist-info` directories of `normal` in `site`.
fn dist_infos(root: &Path, site: &str, prefix: &str) -> Vec<String> {
    let dir = root.join(site.trim_start_matches('/'));
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".dist-info") && n.to_lowercase().starts_with(&format!("{}-", prefix.to_lowercase()))
        })
        .collect();
    found.sort();
    found
}

/// Whether the real pip tests can run here; says on stderr why not.
fn real_pip_runs() -> bool {
    match runnable() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipping the real pip run: {why}");
            false
        }
    }
}

#[test]
fn the_plan_patches_every_environment_of_a_real_debian_12_image() {
    if !real_pip_runs() {
        return;
    }
    let tooling = base_image();
    let work = image_copy();
    let mut host = RealHost::new(work.path(), &tooling);
    let updates = updates();
    let options = options(PatchLevel::Minor);

    let started = Instant::now();
    let (facts, rounds) = probe(&host, Phase::Plan, &updates, &options);
    eprintln!(
        "plan probes: {rounds} rounds, {} facts, {:.1} s",
        facts.len(),
        started.elapsed().as_secs_f64()
    );
    let plan = Pip::plan(&PlanRequest {
        target: host.target(),
        updates: updates.clone(),
        options: options.clone(),
        facts,
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    let chosen: BTreeMap<(String, Option<String>), String> = plan
        .selected
        .iter()
        .map(|s| {
            let VersionTarget::Exactly(v) = &s.target else { panic!("{s:?}") };
            ((s.name.to_lowercase(), s.location.clone()), v.clone())
        })
        .collect();
    let at =
        |name: &str, site: &str| chosen.get(&(name.to_owned(), Some(site.to_owned()))).map(String::as_str);
    assert_eq!(at("urllib3", SYSTEM), Some("1.26.18"), "{:#?}", plan.selected);
    assert_eq!(at("requests", SYSTEM), Some("2.31.0"));
    assert_eq!(at("urllib3", VENV), Some("2.0.7"));
    assert_eq!(at("jinja2", VENV), Some("3.1.4"));
    assert_eq!(at("certifi", VENV), Some("2023.7.22"));
    assert_eq!(at("idna", NOPIP), Some("3.7"));
    assert_eq!(at("markupsafe", NOPIP), Some("2.1.3"));
    assert_eq!(at("chardet", NOPIP), Some("5.2.0"));
    assert_eq!(at("idna", LEGACY), Some("3.7"), "{:#?}", plan.skipped);
    assert_eq!(at("urllib3", LEGACY), Some("1.26.18"));
    // requests 2.31.0 needs charset-normalizer, which the system site lacks:
    // the dry run found it and the plan moves it in the same pip run.
    let dependency =
        plan.selected.iter().find(|s| s.name == "charset-normalizer").expect("the new dependency");
    assert_eq!(dependency.from, "");
    assert!(dependency.rationale.as_deref().unwrap().contains("requests 2.31.0 requires charset-normalizer"));
    let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["wheel", "setuptools"], "{:#?}", plan.skipped);
    // The Python 3.9 tree has no interpreter: the host's pip, told the
    // environment's Python, installs into it.
    let tooling_steps: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.command.context, ExecContext::Tooling(_)))
        .map(|s| s.summary.as_str())
        .collect();
    // One pip run for its two distributions, one clean-up run.
    assert_eq!(tooling_steps.len(), 2, "{tooling_steps:#?}");
    // The venv without pip likewise: its three distributions in one
    // `--target` run and one clean-up.
    let nopip_steps = plan.steps.iter().filter(|s| s.summary.contains(NOPIP)).count();
    assert_eq!(nopip_steps, 2, "{:#?}", plan.steps.iter().map(|s| &s.summary).collect::<Vec<_>>());
    // The system Python and the venv install with their own pips side by
    // side, in one step.
    let side_by_side: Vec<Vec<Vec<support::Run>>> = plan.steps.iter().filter_map(support::lanes).collect();
    assert_eq!(side_by_side.len(), 1, "{:#?}", plan.steps.iter().map(|s| &s.summary).collect::<Vec<_>>());
    let lanes = &side_by_side[0];
    assert_eq!(lanes.len(), 2, "{lanes:#?}");
    assert!(lanes[0][0].argv.contains(&"--break-system-packages".to_owned()), "{lanes:#?}");
    assert!(lanes[1][0].label.contains("virtualenv"), "{lanes:#?}");

    let mut results = Vec::new();
    for step in &plan.steps {
        let started = Instant::now();
        let (code, _, stderr) = run(work.path(), &tooling, &step.command, true);
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        eprintln!("{}: exit {code} in {:.1} s", step.summary, started.elapsed().as_secs_f64());
        assert_eq!(code, 0, "{}:\n{stderr}", step.summary);
        results.push(StepResult { summary: step.summary.clone(), exit_code: code, stderr_tail: stderr });
    }

    let started = Instant::now();
    // CAULK_RECORD=1 keeps the patched image's metadata and the verify
    // outputs as test data (tests/verify.rs).
    host.record_verify = std::env::var_os("CAULK_RECORD").is_some();
    let (facts, rounds) = probe(&host, Phase::Verify, &updates, &options);
    eprintln!("verify probes: {rounds} rounds, {:.1} s", started.elapsed().as_secs_f64());
    let outcomes = Pip::verify(&VerifyRequest {
        target: host.target(),
        options: options.clone(),
        selected: plan.selected.clone(),
        steps: results,
        facts,
    })
    .unwrap();
    if host.record_verify {
        let capture = support::data("capture.sh");
        let status = std::process::Command::new("sh")
            .arg(capture)
            .arg(work.path())
            .arg("bookworm-python-patched")
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(outcomes.len(), plan.selected.len());
    for outcome in &outcomes {
        assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:#?}");
        assert!(outcome.checks.iter().all(|c| c.passed), "{outcome:#?}");
    }
    let checks = |name: &str, site: &str| -> Vec<String> {
        outcomes
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name) && o.location.as_deref() == Some(site))
            .map(|o| o.checks.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(checks("urllib3", SYSTEM), ["version", "pip check", "import urllib3"]);
    assert_eq!(checks("markupsafe", NOPIP), ["version", "dependency check", "import markupsafe"]);
    assert_eq!(checks("idna", LEGACY), ["version", "dependency check"], "no interpreter runs the 3.9 tree");

    // One distribution per name, and nothing of the old ones left.
    for (site, name, wanted) in [
        (SYSTEM, "urllib3", "urllib3-1.26.18.dist-info"),
        (VENV, "jinja2", "jinja2-3.1.4.dist-info"),
        (NOPIP, "idna", "idna-3.7.dist-info"),
        (NOPIP, "markupsafe", "MarkupSafe-2.1.3.dist-info"),
        (NOPIP, "chardet", "chardet-5.2.0.dist-info"),
        (LEGACY, "idna", "idna-3.7.dist-info"),
        (LEGACY, "urllib3", "urllib3-1.26.18.dist-info"),
    ] {
        assert_eq!(dist_infos(work.path(), site, name), [wanted], "{site}");
    }
    let root = work.path();
    assert!(
        !root.join("srv/nopip/lib/python3.11/site-packages/bin").exists(),
        "--target's scripts dir removed"
    );
    assert!(
        root.join(
            "srv/nopip/lib/python3.11/site-packages/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
        )
        .is_file()
    );
    assert!(
        root.join(
            "opt/legacy/lib/python3.9/site-packages/markupsafe/_speedups.cpython-39-x86_64-linux-gnu.so"
        )
        .is_file(),
        "the untouched 3.9 MarkupSafe keeps its cp39 extension"
    );
    assert!(!root.join("root/.cache/pip").exists(), "no pip cache in the image");
    // The old console script still runs, now on chardet 5.2.0.
    let chardetect = Command {
        argv: vec!["/srv/nopip/bin/chardetect".into(), "--version".into()],
        cwd: None,
        env: Vec::new(),
        context: ExecContext::Target,
        network: false,
    };
    let (code, out, err) = run(root, &tooling, &chardetect, false);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(String::from_utf8_lossy(&out).contains("5.2.0"), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn a_pinned_requests_keeps_urllib3_below_2_on_the_real_index() {
    if !real_pip_runs() {
        return;
    }
    let host = RealHost::new(base_image(), base_image());
    let updates = vec![report("urllib3", "1.26.5", SYSTEM, &[("CVE-2024-37891", &["2.2.2"])])];
    let options = options(PatchLevel::Major);
    let (facts, _) = probe(&host, Phase::Plan, &updates, &options);
    let plan = Pip::plan(&PlanRequest { target: host.target(), updates, options, facts }).unwrap();
    assert!(plan.selected.is_empty() && plan.steps.is_empty(), "{plan:#?}");
    let reason = &plan.skipped[0].reason;
    assert!(
        reason.starts_with(
            "urllib3 1.26.5 stays: requests 2.25.1 requires urllib3<1.27,>=1.21.1; 2.2.2 not installed"
        ),
        "{reason}"
    );
}

/// The venv's urllib3, Jinja2 and certifi verified as they stand in `root`
/// (each "update" already at its version): the ids of the import runs
/// asked, the dependency check's lines (or error), and per `(name,
/// module)` the outcome's status and import check.
struct InPlace {
    import_runs: Vec<String>,
    deps: Option<serde_json::Value>,
    outcomes: Vec<caulk_sdk::update::Outcome>,
}

impl InPlace {
    fn verify(root: &Path, options: caulk_sdk::update::Options) -> Self {
        let host = RealHost::new(root, base_image());
        let updates = vec![
            report("urllib3", "2.0.6", VENV, &[("TEST-URLLIB3", &["2.0.6"])]),
            report("Jinja2", "3.1.2", VENV, &[("TEST-JINJA2", &["3.1.2"])]),
            report("certifi", "2023.5.7", VENV, &[("TEST-CERTIFI", &["2023.5.7"])]),
        ];
        let asked = support::asked(&host, Phase::Verify, &updates, &options);
        let import_runs =
            asked.iter().map(|(q, _)| q.id.clone()).filter(|id| id.starts_with("import:")).collect();
        let deps = asked.iter().find_map(|(_, f)| match &f.answer {
            caulk_sdk::update::Answer::Output(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix(DEPS_PREFIX))
                .map(|l| serde_json::from_str(l).unwrap()),
            _ => None,
        });
        let selected = updates
            .iter()
            .map(|u| caulk_sdk::update::SelectedUpdate {
                ecosystem: "python".into(),
                name: u.name.clone(),
                location: u.location.clone(),
                from: u.installed_version.clone(),
                target: VersionTarget::Exactly(u.installed_version.clone()),
                vulnerabilities: u.vulnerabilities.clone(),
                rationale: None,
                passed_over: Vec::new(),
            })
            .collect();
        let outcomes = Pip::verify(&VerifyRequest {
            target: host.target(),
            options,
            selected,
            steps: Vec::new(),
            facts: asked.into_iter().map(|(_, f)| f).collect(),
        })
        .unwrap();
        Self { import_runs, deps, outcomes }
    }

    fn import(&self, name: &str, module: &str) -> (OutcomeStatus, Option<(bool, String)>) {
        let outcome = self.outcomes.iter().find(|o| o.name == name).unwrap();
        let check = outcome.checks.iter().find(|c| c.name == format!("import {module}"));
        (outcome.status, check.map(|c| (c.passed, c.detail.clone())))
    }
}

#[test]
fn one_import_run_per_interpreter_still_names_each_broken_distribution() {
    if !real_pip_runs() {
        return;
    }
    // The virtualenv with a module of Jinja2 deleted and certifi's import
    // killing the interpreter; urllib3 untouched.
    let work = image_copy();
    let site = work.path().join(VENV.trim_start_matches('/'));
    std::fs::remove_file(site.join("jinja2/filters.py")).unwrap();
    std::fs::write(site.join("certifi/__init__.py"), "import os\nos._exit(7)\n").unwrap();
    let checked = InPlace::verify(work.path(), options(PatchLevel::Patch));
    let imports = &checked.import_runs;
    // One run for the three, and one more for what came after the module
    // that killed it.
    assert_eq!(imports.len(), 2, "{imports:#?}");
    assert!(imports.iter().all(|id| id.starts_with("import:/opt/app/venv/bin/python:")), "{imports:#?}");
    assert_eq!(
        checked.import("urllib3", "urllib3"),
        (OutcomeStatus::Patched, Some((true, "imported".into())))
    );
    assert_eq!(
        checked.import("Jinja2", "jinja2"),
        (
            OutcomeStatus::Failed,
            Some((false, "ModuleNotFoundError: No module named 'jinja2.filters'".into()))
        )
    );
    assert_eq!(
        checked.import("certifi", "certifi"),
        (OutcomeStatus::Failed, Some((false, "the interpreter died importing it (exited 7)".into())))
    );
}

#[test]
fn the_dependency_check_says_what_pip_check_says() {
    if !real_pip_runs() {
        return;
    }
    // A distribution in the venv whose requirements pip check rejects in
    // both ways, beside requirements it skips (an extra, a false marker).
    let work = image_copy();
    let info = work.path().join(VENV.trim_start_matches('/')).join("needs_old-1.0.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(
        info.join("METADATA"),
        "Metadata-Version: 2.1\nName: Needs_Old\nVersion: 1.0\nRequires-Dist: urllib3 (<2,>=1.21)\n\
         Requires-Dist: No_Such.Thing>=1\nRequires-Dist: jinja2>=99; extra == \"x\"\n\
         Requires-Dist: idna>=99; python_version < \"3\"\nRequires-Dist: certifi<2000\n\n",
    )
    .unwrap();
    let host = RealHost::new(work.path(), base_image());
    let updates = vec![report("urllib3", "2.0.6", VENV, &[("TEST-URLLIB3", &["2.0.6"])])];
    let asked = support::asked(&host, Phase::Verify, &updates, &options(PatchLevel::Patch));
    let runs: Vec<&caulk_sdk::update::CommandOutput> = asked
        .iter()
        .filter(|(q, _)| q.id.starts_with("import:/opt/app/venv/bin/python:"))
        .filter_map(|(_, f)| match &f.answer {
            caulk_sdk::update::Answer::Output(out) => Some(out),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 1, "one run checks the requirements and imports urllib3");
    let stdout = String::from_utf8_lossy(&runs[0].stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(DEPS_PREFIX))
        .unwrap_or_else(|| panic!("no dependency check line in {stdout}"));
    let said: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut ours: Vec<String> =
        said["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    ours.sort();
    let pip_check = Command {
        argv: ["/opt/app/venv/bin/python", "-m", "pip", "check"].map(str::to_owned).to_vec(),
        cwd: None,
        env: Vec::new(),
        context: ExecContext::Target,
        network: false,
    };
    let (code, out, _) = run(work.path(), &base_image(), &pip_check, false);
    assert_eq!(code, 1);
    let mut theirs: Vec<String> = String::from_utf8_lossy(&out).lines().map(str::to_owned).collect();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 3, "{ours:#?}");
    // Its verdict on urllib3: the requirement it breaks is named.
    let outcomes = Pip::verify(&VerifyRequest {
        target: host.target(),
        options: options(PatchLevel::Patch),
        selected: vec![caulk_sdk::update::SelectedUpdate {
            ecosystem: "python".into(),
            name: "urllib3".into(),
            location: Some(VENV.into()),
            from: "1.26.18".into(),
            target: VersionTarget::Exactly("2.0.6".into()),
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        }],
        steps: Vec::new(),
        facts: asked.into_iter().map(|(_, f)| f).collect(),
    })
    .unwrap();
    let check = outcomes[0].checks.iter().find(|c| c.name == "pip check").unwrap();
    assert!(!check.passed);
    assert_eq!(check.detail, "needs-old 1.0 has requirement urllib3<2,>=1.21, but you have urllib3 2.0.6");
}

#[test]
fn an_import_check_is_not_answered_by_what_the_dependency_check_loaded() {
    if !real_pip_runs() {
        return;
    }
    // The venv's pip made to do what Debian's debundled pip does: put a
    // directory first on sys.path and import a distribution's package from
    // it (here a working certifi), while the venv's own certifi is broken.
    // Beside them, distributions the dependency check cannot parse: no
    // Version, a malformed wheel tag, a WHEEL file that is not UTF-8.
    let work = image_copy();
    let site = work.path().join(VENV.trim_start_matches('/'));
    let shadow = work.path().join("srv/shadow/certifi");
    std::fs::create_dir_all(&shadow).unwrap();
    std::fs::write(shadow.join("__init__.py"), "def where():\n    return ''\n").unwrap();
    let vendor = site.join("pip/_vendor/__init__.py");
    let mut text = std::fs::read_to_string(&vendor).unwrap();
    text.push_str("\nimport sys\nsys.path.insert(0, '/srv/shadow')\nimport certifi\n");
    std::fs::write(&vendor, text).unwrap();
    std::fs::write(site.join("certifi/__init__.py"), "raise ImportError('broken on purpose')\n").unwrap();
    let odd: [(&str, &str, &[u8]); 3] = [
        ("no_version-1.0", "Name: no-version\n", b"Tag: py3-none-any\n"),
        ("bad_tag-1.0", "Name: bad-tag\nVersion: 1.0\n", b"Tag: garbage\n"),
        ("bad_wheel-1.0", "Name: bad-wheel\nVersion: 1.0\n", b"Tag: py3-none-any\n\xff\xfe\n"),
    ];
    for (dir, metadata, wheel) in odd {
        let info = site.join(format!("{dir}.dist-info"));
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(info.join("METADATA"), format!("Metadata-Version: 2.1\n{metadata}\n")).unwrap();
        std::fs::write(info.join("WHEEL"), wheel).unwrap();
    }
    let checked = InPlace::verify(work.path(), options(PatchLevel::Patch));
    assert_eq!(
        checked.import("certifi", "certifi"),
        (OutcomeStatus::Failed, Some((false, "ImportError: broken on purpose".into())))
    );
    assert_eq!(
        checked.import("urllib3", "urllib3"),
        (OutcomeStatus::Patched, Some((true, "imported".into())))
    );
    // One line per odd distribution, and no error for the whole check.
    let deps = checked.deps.expect("the dependency check ran");
    let lines: Vec<&str> = deps["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{deps}"))
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"no-version has a version that does not parse: no Version in its METADATA"),
        "{lines:#?}"
    );
    for name in ["bad-tag 1.0 has a WHEEL file", "bad-wheel 1.0 has a WHEEL file"] {
        assert_eq!(lines.iter().filter(|l| l.starts_with(name)).count(), 1, "{lines:#?}");
    }
    assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:#?}");
}

#[test]
fn an_import_that_overruns_its_limit_is_named_and_the_others_still_run() {
    if !real_pip_runs() {
        return;
    }
    // Jinja2's import sleeps far past a two-second import limit; certifi
    // comes before it and urllib3 after it in the one run for the venv.
    let work = image_copy();
    let init = work.path().join(VENV.trim_start_matches('/')).join("jinja2/__init__.py");
    let original = std::fs::read_to_string(&init).unwrap();
    std::fs::write(&init, format!("import time\ntime.sleep(600)\n{original}")).unwrap();
    let mut options = options(PatchLevel::Patch);
    options.settings.push(("import-timeout".into(), "2".into()));
    let started = Instant::now();
    let checked = InPlace::verify(work.path(), options);
    assert!(started.elapsed().as_secs() < 60, "the sleeping import was stopped, not waited for");
    let imports = &checked.import_runs;
    assert_eq!(imports.len(), 2, "one run, and one for what came after the stopped import: {imports:#?}");
    assert_eq!(
        checked.import("certifi", "certifi"),
        (OutcomeStatus::Patched, Some((true, "imported".into())))
    );
    assert_eq!(
        checked.import("Jinja2", "jinja2"),
        (
            OutcomeStatus::Failed,
            Some((false, "the import did not finish within 2 s; the interpreter was stopped".into()))
        )
    );
    assert_eq!(
        checked.import("urllib3", "urllib3"),
        (OutcomeStatus::Patched, Some((true, "imported".into())))
    );
}

/// Builds a pure-Python wheel `OUT/NAME-VERSION-py3-none-any.whl` holding
/// `caulkns/MODULE.py` for each module (modules of the PEP 420 namespace
/// package `caulkns`, which no distribution owns alone; each prints its
/// version from `main`) and console scripts running the first module's
/// `main`: `OUT NAME VERSION MODULE,... [SCRIPT,...]`.
const WHEEL: &str = r#"import base64, hashlib, sys, zipfile
out, name, version, modules = sys.argv[1:5]
scripts = [s for s in (sys.argv[5] if len(sys.argv) > 5 else "").split(",") if s]
modules = modules.split(",")
info = "%s-%s.dist-info" % (name, version)
files = {}
for module in modules:
    files["caulkns/%s.py" % module] = 'VERSION = "%s"\ndef main():\n    print(VERSION)\n' % version
files[info + "/METADATA"] = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n\n" % (name, version)
files[info + "/WHEEL"] = "Wheel-Version: 1.0\nGenerator: caulk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
files[info + "/top_level.txt"] = "caulkns\n"
if scripts:
    files[info + "/entry_points.txt"] = "[console_scripts]\n" + "".join(
        "%s = caulkns.%s:main\n" % (s, modules[0]) for s in scripts)
record = []
with zipfile.ZipFile("%s/%s-%s-py3-none-any.whl" % (out, name, version), "w") as z:
    for path, text in files.items():
        data = text.encode()
        z.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(info + "/RECORD,,")
    z.writestr(info + "/RECORD", "\n".join(record) + "\n")
"#;

/// A PEP 691 index of the wheels in `sys.argv[1]` on a free loopback port
/// (printed first): `/simple/NAME/` and `/files/WHEEL`.
const INDEX: &str = r#"import hashlib, http.server, json, os, sys
root = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == "simple":
            files = []
            for f in sorted(os.listdir(root)):
                if f.startswith(parts[1] + "-") and f.endswith(".whl"):
                    with open(os.path.join(root, f), "rb") as w:
                        digest = hashlib.sha256(w.read()).hexdigest()
                    url = "http://127.0.0.1:%d/files/%s" % (self.server.server_port, f)
                    files.append({"filename": f, "url": url, "hashes": {"sha256": digest}})
            body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1], "files": files}).encode()
            kind = "application/vnd.pypi.simple.v1+json"
        elif len(parts) == 2 and parts[0] == "files" and os.path.isfile(os.path.join(root, parts[1])):
            with open(os.path.join(root, parts[1]), "rb") as w:
                body = w.read()
            kind = "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"#;

/// The index server, stopped when dropped.
struct LocalIndex {
    child: std::process::Child,
    url: String,
}

impl LocalIndex {
    fn serve(wheels: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("python3")
            .args(["-c", INDEX])
            .arg(wheels)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        Self { child, url: format!("http://127.0.0.1:{}/simple/", port.trim()) }
    }
}

impl Drop for LocalIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `pip install --target` tree the system Python 3.11 does not see.
const NS_SITE: &str = "/opt/ns/lib/python3.11/site-packages";
/// A virtualenv without pip, so patched with `--target` and merged.
const NS_VENV: &str = "/opt/nsvenv";
const NS_VENV_SITE: &str = "/opt/nsvenv/lib/python3.11/site-packages";

/// A copy of the test image with wheels of nsa 1.0 (module `caulkns.a`,
/// scripts `nsa-tool` and `nsa-gone`), nsa 2.0 (modules `caulkns.a` and
/// `caulkns.zz`, script `nsa-tool` only) and nsb 1.0 (`caulkns.b`) on a
/// local index, nsa 1.0 and nsb 1.0 installed by pip with `install` (its
/// arguments before the requirements), in the virtualenv without pip at
/// [`NS_VENV`] when `venv`.
struct NsImage {
    work: tempfile::TempDir,
    tooling: std::path::PathBuf,
    index: LocalIndex,
}

impl NsImage {
    fn new(venv: bool, install: &[&str]) -> Self {
        let work = image_copy();
        let wheels = work.path().join("srv/wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        for args in [
            ["nsa", "1.0", "a", "nsa-tool,nsa-gone"],
            ["nsa", "2.0", "a,zz", "nsa-tool"],
            ["nsb", "1.0", "b", ""],
        ] {
            let status = std::process::Command::new("python3")
                .args(["-c", WHEEL])
                .arg(&wheels)
                .args(args)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let index = LocalIndex::serve(&wheels);
        let image = Self { work, tooling: base_image(), index };
        if venv {
            image.python(&["/usr/bin/python3.11", "-m", "venv", "--without-pip", NS_VENV], Vec::new(), true);
        }
        let mut argv = vec!["/usr/bin/python3.11", "-m", "pip"];
        argv.extend(install);
        argv.extend(["--no-index", "--find-links", "/srv/wheels", "nsa==1.0", "nsb==1.0"]);
        image.python(&argv, Vec::new(), true);
        image
    }

    /// nsa 1.0 and nsb 1.0 in the virtualenv without pip at [`NS_VENV`].
    fn venv() -> Self {
        Self::new(true, &["--python", &format!("{NS_VENV}/bin/python"), "install"])
    }

    fn root(&self) -> &Path {
        self.work.path()
    }

    /// Runs every step of `plan`, each of which must succeed.
    fn apply(&self, plan: &caulk_sdk::update::PatchPlan) {
        for step in &plan.steps {
            let (code, _, stderr) = run(self.root(), &self.tooling, &step.command, true);
            assert_eq!(code, 0, "{}:\n{}", step.summary, String::from_utf8_lossy(&stderr));
        }
    }

    /// nsa 2.0's RECORD in the virtualenv.
    fn venv_record(&self) -> String {
        let path = self.root().join(NS_VENV_SITE.trim_start_matches('/')).join("nsa-2.0.dist-info/RECORD");
        std::fs::read_to_string(path).unwrap()
    }

    /// Runs `argv` in the image; its stdout, after asserting it succeeded.
    fn python(&self, argv: &[&str], env: Vec<(String, String)>, writable: bool) -> String {
        let command = Command {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            cwd: None,
            env,
            context: ExecContext::Target,
            network: false,
        };
        let (code, out, err) = run(self.root(), &self.tooling, &command, writable);
        assert_eq!(code, 0, "{argv:?}: {}", String::from_utf8_lossy(&err));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The hash and size of the image's file at `path` as RECORD lists them.
    fn digest(&self, path: &str) -> String {
        let said = self.python(
            &[
                "/usr/bin/python3.11",
                "-c",
                "import base64, hashlib, sys; d = open(sys.argv[1], 'rb').read(); \
                 print('sha256=' + base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode() + ',' + str(len(d)))",
                path,
            ],
            Vec::new(),
            false,
        );
        said.trim().to_owned()
    }

    /// The plan moving nsa in `site` to 2.0, and its updates and options.
    fn plan(
        &self,
        site: &str,
    ) -> (RealHost, Vec<Update>, caulk_sdk::update::Options, caulk_sdk::update::PatchPlan) {
        let host = RealHost::new(self.root(), &self.tooling);
        let updates = vec![report("nsa", "1.0", site, &[("TEST-NSA", &["2.0"])])];
        let mut options = options(PatchLevel::Major);
        options.index_urls = vec![self.index.url.clone()];
        let plan = support::plan(&host, updates.clone(), options.clone());
        assert_eq!(plan.selected.len(), 1, "{plan:#?}");
        (host, updates, options, plan)
    }

    /// Every file and symlink under `dir` of the image with its contents.
    fn snapshot(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let base = self.root().join(dir.trim_start_matches('/'));
        let mut todo = vec![base.clone()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
                let kind = entry.file_type().unwrap();
                let name = entry.path().strip_prefix(&base).unwrap().display().to_string();
                if kind.is_dir() {
                    // Dirs count by mode and owner: an undo must put back
                    // what it removed as it was.
                    let meta = entry.metadata().unwrap();
                    out.insert(
                        format!("{name}/"),
                        format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid()).into_bytes(),
                    );
                    todo.push(entry.path());
                } else if kind.is_symlink() {
                    out.insert(
                        name,
                        std::fs::read_link(entry.path()).unwrap().into_os_string().into_encoded_bytes(),
                    );
                } else {
                    out.insert(name, std::fs::read(entry.path()).unwrap());
                }
            }
        }
        out
    }
}

#[test]
fn a_target_upgrade_keeps_the_other_distributions_of_a_namespace_package() {
    if !real_pip_runs() {
        return;
    }
    // nsa and nsb both put a module in the namespace package caulkns/ of a
    // `pip install --target` tree; nsa moves from 1.0 to 2.0. pip's own
    // `--target --upgrade` would replace caulkns/ whole, nsb's module with it.
    let image = NsImage::new(false, &["install", "--target", NS_SITE]);
    let root = image.root();
    // nsa 1.0's script as another interpreter's pip would have written it.
    let tool = root.join(NS_SITE.trim_start_matches('/')).join("bin/nsa-tool");
    let text = std::fs::read_to_string(&tool).unwrap();
    let (_, body) = text.split_once('\n').unwrap();
    std::fs::write(&tool, format!("#!/usr/bin/env python3.11\n{body}")).unwrap();
    let (mut host, updates, options, plan) = image.plan(NS_SITE);
    let mut results = Vec::new();
    // The image's standard-library bytecode made stale, as a build that
    // clamps mtimes leaves it: an interpreter that writes bytecode would
    // recompile what it imports into the image.
    let stdlib = root.join("usr/lib/python3.11");
    for module in ["shutil.py", "csv.py", "fnmatch.py"] {
        let path = stdlib.join(module);
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let started = std::time::SystemTime::now();
    for step in &plan.steps {
        let (code, _, stderr) = run(root, &image.tooling, &step.command, true);
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        assert_eq!(code, 0, "{}:\n{stderr}", step.summary);
        results.push(StepResult { summary: step.summary.clone(), exit_code: code, stderr_tail: stderr });
    }
    let recompiled: Vec<_> = std::fs::read_dir(stdlib.join("__pycache__"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.metadata().unwrap().modified().unwrap() >= started)
        .map(|e| e.file_name())
        .collect();
    assert!(recompiled.is_empty(), "the steps wrote bytecode into the image: {recompiled:?}");
    host.record_verify = false;
    let (facts, _) = probe(&host, Phase::Verify, &updates, &options);
    let outcomes = Pip::verify(&VerifyRequest {
        target: host.target(),
        options,
        selected: plan.selected.clone(),
        steps: results,
        facts,
    })
    .unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Patched, "{outcomes:#?}");

    assert_eq!(dist_infos(root, NS_SITE, "nsa"), ["nsa-2.0.dist-info"]);
    assert_eq!(dist_infos(root, NS_SITE, "nsb"), ["nsb-1.0.dist-info"]);
    assert!(!root.join("opt/ns/lib/python3.11/.site-packages.caulk-new").exists(), "the scratch is gone");
    assert!(!root.join("opt/ns/lib/python3.11/.site-packages.caulk-old").exists(), "the old files are gone");
    let said = image.python(
        &[
            "/usr/bin/python3.11",
            "-c",
            "import caulkns.a, caulkns.b; print(caulkns.a.VERSION, caulkns.b.VERSION)",
        ],
        vec![("PYTHONPATH".into(), NS_SITE.into())],
        false,
    );
    assert_eq!(said.trim(), "2.0 1.0", "nsb's module survived nsa's upgrade");
    // The tree's own scripts: the one 2.0 still has replaced, the other gone.
    let bin = root.join(NS_SITE.trim_start_matches('/')).join("bin");
    assert!(!bin.join("nsa-gone").exists(), "the script only nsa 1.0 had is removed");
    // Started by the interpreter the old one named, listed with its hash.
    let script = std::fs::read(bin.join("nsa-tool")).unwrap();
    assert!(script.starts_with(b"#!/usr/bin/env python3.11\n"), "{}", String::from_utf8_lossy(&script));
    let record =
        std::fs::read_to_string(root.join(NS_SITE.trim_start_matches('/')).join("nsa-2.0.dist-info/RECORD"))
            .unwrap();
    let listed =
        record.lines().find(|l| l.starts_with("../../bin/nsa-tool,")).unwrap_or_else(|| panic!("{record}"));
    let digest = image.digest(&format!("{NS_SITE}/bin/nsa-tool"));
    assert_eq!(listed, format!("../../bin/nsa-tool,{digest}"));
}

#[test]
fn a_target_upgrade_replaces_the_old_versions_scripts_in_the_environment() {
    if !real_pip_runs() {
        return;
    }
    // A venv without pip: nsa 1.0's scripts are in /opt/nsvenv/bin, which
    // its RECORD lists as ../../../bin/…; the `--target` install of 2.0
    // puts its own in the scratch's bin/.
    let image = NsImage::venv();
    let root = image.root();
    let bin = root.join(NS_VENV.trim_start_matches('/')).join("bin");
    assert!(bin.join("nsa-gone").is_file() && bin.join("nsa-tool").is_file());
    let (_, _, _, plan) = image.plan(NS_VENV_SITE);
    assert!(plan.steps.iter().any(|s| s.summary.starts_with("replace nsa-1.0.dist-info")), "{plan:#?}");
    image.apply(&plan);
    assert_eq!(dist_infos(root, NS_VENV_SITE, "nsa"), ["nsa-2.0.dist-info"]);
    assert!(!bin.join("nsa-gone").exists(), "the script nsa 2.0 no longer has is removed");
    // nsa 2.0's script, started by the venv's interpreter as the old one was.
    let script = std::fs::read_to_string(bin.join("nsa-tool")).unwrap();
    assert_eq!(script.lines().next(), Some("#!/opt/nsvenv/bin/python"), "{script}");
    assert_eq!(image.python(&["/opt/nsvenv/bin/nsa-tool"], Vec::new(), false).trim(), "2.0");
    // The new RECORD lists it where it is, with its hash.
    let record = image.venv_record();
    let line = record.lines().find(|l| l.contains("bin/nsa-tool")).unwrap_or_else(|| panic!("{record}"));
    let listed = image.digest("/opt/nsvenv/bin/nsa-tool");
    assert_eq!(line, format!("../../../bin/nsa-tool,{listed}"));
    assert!(
        !record.lines().any(|l| l.starts_with("../../bin/")),
        "no line for the scratch's own bin/: {record}"
    );
    let said = image.python(
        &[
            "/opt/nsvenv/bin/python",
            "-c",
            "import caulkns.a, caulkns.b; print(caulkns.a.VERSION, caulkns.b.VERSION)",
        ],
        Vec::new(),
        false,
    );
    assert_eq!(said.trim(), "2.0 1.0");
}

#[test]
fn a_merge_that_fails_midway_puts_the_old_version_back() {
    if !real_pip_runs() {
        return;
    }
    // A directory where nsa 2.0's new module caulkns/zz.py goes: the merge
    // fails after taking nsa 1.0's files and scripts out.
    let image = NsImage::venv();
    let root = image.root();
    let (_, _, mut options, plan) = image.plan(NS_VENV_SITE);
    let site = root.join(NS_VENV_SITE.trim_start_matches('/'));
    std::fs::create_dir_all(site.join("caulkns/zz.py/in-the-way")).unwrap();
    // Not what a plain mkdir would give it back.
    std::fs::set_permissions(site.join("nsa-1.0.dist-info"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(site.join("nsa-1.0.dist-info"), Some(1234), Some(1234)).unwrap();
    let before = (image.snapshot(NS_VENV_SITE), image.snapshot(&format!("{NS_VENV}/bin")));
    let (install, merge) = (&plan.steps[0], &plan.steps[1]);
    let (code, _, stderr) = run(root, &image.tooling, &install.command, true);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stderr));
    let (code, _, stderr) = run(root, &image.tooling, &merge.command, true);
    let stderr = String::from_utf8_lossy(&stderr);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "caulk: replacing nsa-1.0.dist-info in /opt/nsvenv/lib/python3.11/site-packages failed at "
        ) && stderr.contains("caulkns/zz.py")
            && stderr.contains("the old files are back in place"),
        "{stderr}"
    );
    // Everything as it was, byte for byte; no scratch, nothing aside.
    assert_eq!((image.snapshot(NS_VENV_SITE), image.snapshot(&format!("{NS_VENV}/bin"))), before);
    for left in [".site-packages.caulk-new", ".site-packages.caulk-old"] {
        assert!(!root.join("opt/nsvenv/lib/python3.11").join(left).exists(), "{left} is left");
    }
    assert_eq!(image.python(&["/opt/nsvenv/bin/nsa-tool"], Vec::new(), false).trim(), "1.0");
    assert_eq!(image.python(&["/opt/nsvenv/bin/nsa-gone"], Vec::new(), false).trim(), "1.0");
    // Verification says the update did not happen, and why.
    let host = RealHost::new(root, &image.tooling);
    let updates = vec![report("nsa", "1.0", NS_VENV_SITE, &[("TEST-NSA", &["2.0"])])];
    options.ignore_errors = true;
    let (facts, _) = probe(&host, Phase::Verify, &updates, &options);
    let outcomes = Pip::verify(&VerifyRequest {
        target: host.target(),
        options,
        selected: plan.selected.clone(),
        steps: vec![StepResult {
            summary: merge.summary.clone(),
            exit_code: code,
            stderr_tail: stderr.into_owned(),
        }],
        facts,
    })
    .unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
    assert!(
        outcomes[0].detail.starts_with("nsa stayed at 1.0, not 2.0; `replace nsa-1.0.dist-info"),
        "{}",
        outcomes[0].detail
    );
}

#[test]
fn scripts_and_an_old_dist_info_behind_symlinks_out_of_the_environment_stay() {
    if !real_pip_runs() {
        return;
    }
    // The venv's bin/ is a symlink to a directory outside it: what nsa 1.0's
    // RECORD lists there (../../../bin/…) resolves out of the environment,
    // so the merge neither removes nor writes it. nsa-1.0.dist-info is a
    // symlink out of the site too (made after planning, as the probes do
    // not follow it): the link goes, what it leads to stays.
    let image = NsImage::venv();
    let root = image.root();
    let bin = root.join(NS_VENV.trim_start_matches('/')).join("bin");
    let outside = root.join("srv/outside-bin");
    std::fs::rename(&bin, &outside).unwrap();
    std::os::unix::fs::symlink("/srv/outside-bin", &bin).unwrap();
    let (_, _, _, plan) = image.plan(NS_VENV_SITE);
    let info = root.join(NS_VENV_SITE.trim_start_matches('/')).join("nsa-1.0.dist-info");
    std::fs::rename(&info, root.join("srv/outside-info")).unwrap();
    std::os::unix::fs::symlink("/srv/outside-info", &info).unwrap();
    let before = (image.snapshot("/srv/outside-bin"), image.snapshot("/srv/outside-info"));
    image.apply(&plan);
    assert_eq!(dist_infos(root, NS_VENV_SITE, "nsa"), ["nsa-2.0.dist-info"]);
    assert!(!info.is_symlink());
    assert_eq!(
        (image.snapshot("/srv/outside-bin"), image.snapshot("/srv/outside-info")),
        before,
        "nothing behind the symlinks changed"
    );
    let record = image.venv_record();
    assert!(!record.contains("bin/"), "{record}");
}

#[test]
fn a_merge_refuses_to_work_through_symlinks_out_of_the_site() {
    if !real_pip_runs() {
        return;
    }
    // The namespace package caulkns/ of the venv is a symlink to a directory
    // outside it: nsa's module there cannot be replaced, and leaving the old
    // one while nsa 2.0's .dist-info goes in would make it look patched.
    let image = NsImage::venv();
    let root = image.root();
    let site = root.join(NS_VENV_SITE.trim_start_matches('/'));
    std::fs::rename(site.join("caulkns"), root.join("srv/outside-caulkns")).unwrap();
    std::os::unix::fs::symlink("/srv/outside-caulkns", site.join("caulkns")).unwrap();
    // And where the old files go aside, a symlink planted out of the site.
    let aside = root.join("opt/nsvenv/lib/python3.11/.site-packages.caulk-old");
    std::fs::create_dir_all(root.join("srv/planted")).unwrap();
    std::os::unix::fs::symlink("/srv/planted", &aside).unwrap();
    let before =
        (image.snapshot(NS_VENV_SITE), image.snapshot("/srv"), image.snapshot(&format!("{NS_VENV}/bin")));
    let (_, _, _, plan) = image.plan(NS_VENV_SITE);
    let (install, merge) = (&plan.steps[0], &plan.steps[1]);
    let merged = |what: &str| {
        let (code, _, stderr) = run(root, &image.tooling, &install.command, true);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stderr));
        let (code, _, stderr) = run(root, &image.tooling, &merge.command, true);
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        assert_ne!(code, 0, "{what}: {stderr}");
        stderr
    };
    let stderr = merged("the planted symlink");
    assert!(
        stderr.contains(".site-packages.caulk-old is a symlink; refusing to work through it"),
        "{stderr}"
    );
    std::fs::remove_file(&aside).unwrap();
    let stderr = merged("the symlinked package");
    assert!(
        stderr.contains(&format!("failed at {NS_VENV_SITE}/caulkns/"))
            && stderr.contains(&format!(
                ": a file of nsa-2.0.dist-info goes behind a symlink that leads out of {NS_VENV_SITE}; \
                 the old files are back in place"
            )),
        "{stderr}"
    );
    // Nothing changed, in the site, behind the symlinks or in bin/.
    let after =
        (image.snapshot(NS_VENV_SITE), image.snapshot("/srv"), image.snapshot(&format!("{NS_VENV}/bin")));
    assert_eq!(after, before);
    assert_eq!(dist_infos(root, NS_VENV_SITE, "nsa"), ["nsa-1.0.dist-info"]);
    assert!(!aside.exists() && !root.join("opt/nsvenv/lib/python3.11/.site-packages.caulk-new").exists());
}

#[test]
fn a_run_pauses_before_its_first_import_when_the_dependency_check_used_its_time() {
    if !real_pip_runs() {
        return;
    }
    // A run with no time left: after the dependency check even its first
    // import waits for the next run; without the check that one still runs.
    let image = base_image();
    let checked = |deps: &str| {
        let command = Command {
            argv: [
                "/opt/app/venv/bin/python",
                "-c",
                IMPORT_CHECK,
                r#"[{"id": "x", "path": null, "modules": ["json"]}]"#,
                "60",
                "0",
                deps,
            ]
            .map(str::to_owned)
            .to_vec(),
            cwd: None,
            env: Vec::new(),
            context: ExecContext::Target,
            network: false,
        };
        let (code, out, err) = run(&image, &image, &command, false);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let out = String::from_utf8_lossy(&out).into_owned();
        let has = |prefix: &str| out.lines().any(|l| l.starts_with(prefix));
        (has(DEPS_PREFIX), has(IMPORT_PREFIX), has(IMPORT_PAUSED))
    };
    assert_eq!(checked("deps"), (true, false, true));
    assert_eq!(checked("imports"), (false, true, false));
}
