//! The probe rounds, driven as the host drives them.

mod support;

use caulk_plugin_pip::Pip;
use caulk_plugin_pip::scripts::{IMPORT_CHECK, PYTHON_FACTS};
use caulk_sdk::Updater;
use caulk_sdk::update::{ExecContext, Fact, PatchLevel, Phase, ProbeRequest, Question, QuestionKind, Update};
use support::{DataHost, Host, asked, mini, options, probe, update, without_dry_runs};

const SYSTEM: &str = "/usr/local/lib/python3.11/dist-packages";
const VENV: &str = "/opt/app/venv/lib/python3.11/site-packages";
const NOPIP: &str = "/srv/nopip/lib/python3.11/site-packages";
const LEGACY: &str = "/opt/legacy/lib/python3.9/site-packages";

fn patterns(q: &Question) -> &[String] {
    match &q.kind {
        QuestionKind::Files(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_first_round_reads_every_place_python_lives() {
    let host = DataHost::new(mini());
    let mut target = host.target();
    target.env.push(("PIP_CONFIG_FILE".into(), "/srv/pip.conf".into()));
    let request = ProbeRequest {
        phase: Phase::Plan,
        target,
        updates: vec![update(
            "urllib3",
            "1.26.5",
            &["1.26.18"],
            Some("/work/app/.venv/lib/python3.12/site-packages/"),
        )],
        selected: Vec::new(),
        options: options(PatchLevel::Patch),
        facts: Vec::new(),
    };
    let questions = Pip::probe(&request).unwrap();
    let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(ids, ["dists", "venvs", "stdlibs", "pip-conf", "externally-managed", "ca-bundles"]);
    let dists = patterns(&questions[0]);
    for expected in [
        "/usr/lib/python3*/dist-packages/*.dist-info/METADATA",
        "/usr/local/lib/python3*/site-packages/*.dist-info/METADATA",
        "/opt/**/site-packages/*.egg-info/PKG-INFO",
        "/work/app/.venv/lib/python3.12/site-packages/*.dist-info/METADATA",
    ] {
        assert!(dists.iter().any(|p| p == expected), "{expected} not in {dists:#?}");
    }
    // The venv the report names, though it sits deeper than the usual places.
    assert!(patterns(&questions[1]).contains(&"/work/app/.venv/pyvenv.cfg".to_owned()));
    let conf = patterns(&questions[3]);
    assert_eq!(
        conf,
        [
            "/etc/xdg/pip/pip.conf",
            "/etc/pip.conf",
            "/root/.pip/pip.conf",
            "/root/.config/pip/pip.conf",
            "/srv/pip.conf"
        ]
    );
}

#[test]
fn plan_rounds_settle_and_ask_each_question_once() {
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("urllib3", "2.0.6", &["2.0.7"], Some(VENV)),
        update("idna", "3.6", &["3.7"], Some(NOPIP)),
        update("idna", "3.6", &["3.7"], Some(LEGACY)),
    ];
    let mut opts = options(PatchLevel::Minor);
    let (facts, rounds) = probe(&host, Phase::Plan, &updates, &opts);
    // Discovery (2), dist files, look-ups, dry runs.
    assert_eq!(rounds, 5);
    let ids: Vec<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
    assert!(ids.contains(&"python:/usr/bin/python3.11") && ids.contains(&"python:/opt/app/venv/bin/python"));
    assert!(ids.contains(&"tooling-pip"), "the 3.9 tree needs the host's pip: {ids:?}");
    assert_eq!(ids.iter().filter(|i| i.starts_with("index:")).count(), 2, "one look-up per name: {ids:?}");
    assert_eq!(ids.iter().filter(|i| i.starts_with("resolve:")).count(), 4, "a dry run per install: {ids:?}");
    opts = without_dry_runs(opts);
    let (_, rounds) = probe(&host, Phase::Plan, &updates, &opts);
    assert_eq!(rounds, 4);
}

/// Every question of a phase, with the facts that answered them.
fn questions(host: &DataHost, phase: Phase, updates: &[Update], minor: bool) -> Vec<(Question, Fact)> {
    asked(host, phase, updates, &options(if minor { PatchLevel::Minor } else { PatchLevel::Patch }))
}

#[test]
fn commands_the_probes_run() {
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("idna", "3.6", &["3.7"], Some(LEGACY)),
    ];
    for (q, _) in questions(&host, Phase::Plan, &updates, true) {
        let QuestionKind::Run(command) = &q.kind else { continue };
        if let Some(python) = q.id.strip_prefix("python:") {
            // Interpreters are asked offline, in the image.
            assert_eq!(command.argv, [python, "-c", PYTHON_FACTS]);
            assert!(!command.network);
            assert_eq!(command.context, ExecContext::Target);
        } else if q.id == "tooling-pip" {
            assert!(matches!(&command.context, ExecContext::Tooling(t) if t.image.is_none()));
            assert!(!command.network);
        } else {
            // Dry runs: with the network, every version pinned after `--`.
            assert!(q.id.starts_with("resolve:"), "{}", q.id);
            assert!(command.network);
            let pins: Vec<&String> = command.argv.iter().skip_while(|a| *a != "--").skip(1).collect();
            assert!(!pins.is_empty() && pins.iter().all(|p| p.contains("==")), "{:?}", command.argv);
            assert!(command.argv.windows(3).any(|w| w == ["--dry-run", "--quiet", "--report"]));
        }
    }
}

#[test]
fn verify_rounds_read_the_image_again_and_check_it() {
    let host = DataHost::new(support::data("roots/bookworm-python-patched"));
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18"], Some(SYSTEM)),
        update("urllib3", "2.0.6", &["2.0.7"], Some(VENV)),
        update("Jinja2", "3.1.2", &["3.1.4"], Some(VENV)),
        update("MarkupSafe", "2.1.2", &["2.1.3"], Some(NOPIP)),
        update("idna", "3.6", &["3.7"], Some(LEGACY)),
    ];
    let asked = questions(&host, Phase::Verify, &updates, false);
    let runs: Vec<(&str, &[String])> = asked
        .iter()
        .filter_map(|(q, _)| match &q.kind {
            QuestionKind::Run(c) if !q.id.starts_with("python:") => Some((q.id.as_str(), &c.argv[..])),
            _ => None,
        })
        .collect();
    // One run per interpreter that runs, importing every distribution it
    // imports, after checking the requirements where there is pip; none for
    // the tree without one; no look-ups, no network.
    let described: Vec<(String, serde_json::Value)> = runs
        .iter()
        .map(|(id, argv)| {
            assert!(id.starts_with(&format!("import:{}:", argv[0])), "{id}");
            assert_eq!(argv[1..3], ["-c".to_owned(), IMPORT_CHECK.to_owned()]);
            (format!("{} {}", argv[6], argv[0]), serde_json::from_str(&argv[3]).unwrap())
        })
        .collect();
    let venv_site = "/opt/app/venv/lib/python3.11/site-packages";
    assert_eq!(
        described,
        [
            (
                "deps /opt/app/venv/bin/python".to_owned(),
                // urllib3 2.x has no top_level.txt: its module comes from RECORD.
                serde_json::json!([
                    {"id": format!("{venv_site}/jinja2-3.1.4.dist-info"), "path": null, "modules": ["jinja2"]},
                    {"id": format!("{venv_site}/urllib3-2.0.7.dist-info"), "path": null, "modules": ["urllib3"]},
                ])
            ),
            (
                "imports /srv/nopip/bin/python".to_owned(),
                serde_json::json!([{
                    "id": "/srv/nopip/lib/python3.11/site-packages/MarkupSafe-2.1.3.dist-info",
                    "path": null,
                    "modules": ["markupsafe"],
                }])
            ),
            (
                "deps /usr/bin/python3.11".to_owned(),
                serde_json::json!([{
                    "id": "/usr/local/lib/python3.11/dist-packages/urllib3-1.26.18.dist-info",
                    "path": null,
                    "modules": ["urllib3"],
                }])
            ),
        ]
    );
    assert!(asked.iter().all(|(q, _)| match &q.kind {
        QuestionKind::Run(c) => !c.network,
        QuestionKind::Lookup(_) => false,
        QuestionKind::Files(_) => true,
    }));
}
