//! The npm updater's planning, natively, from the facts the host would
//! give: app manifests, `npm root -g`, node's version and registry answers.

use caulk_plugin_npm::Npm;
use caulk_sdk::Updater;
use caulk_sdk::update::{
    Answer, CommandOutput, Fact, FileEntry, FileKind, Options, PatchLevel, PlanRequest, PublishedVersion,
    Target, Update, VersionTarget,
};

fn output(id: &str, stdout: &str) -> Fact {
    Fact {
        question_id: id.into(),
        answer: Answer::Output(CommandOutput {
            exit_code: 0,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }),
    }
}

fn files(id: &str, entries: &[(&str, &str)]) -> Fact {
    Fact {
        question_id: id.into(),
        answer: Answer::Files(
            entries
                .iter()
                .map(|(path, text)| FileEntry {
                    path: (*path).into(),
                    kind: FileKind::Regular,
                    contents: Some(text.as_bytes().to_vec()),
                    link_target: None,
                })
                .collect(),
        ),
    }
}

fn published(version: &str, deprecated: Option<&str>, node: Option<&str>) -> PublishedVersion {
    PublishedVersion {
        version: version.into(),
        requires_python: None,
        yanked: false,
        deprecated: deprecated.map(str::to_owned),
        engines: node.map(|n| ("node".to_owned(), n.to_owned())).into_iter().collect(),
    }
}

fn versions(name: &str, list: Vec<PublishedVersion>) -> Fact {
    Fact { question_id: format!("lookup:{name}"), answer: Answer::Versions(list) }
}

const MANIFEST: &str =
    r#"{"dependencies":{"lodash":"^4.17.15","mkdirp":"0.5.5"},"devDependencies":{"left-pad":"1.3.0"}}"#;
const LOCK: &str = r#"{"lockfileVersion":3,"packages":{
    "":{"name":"app"},
    "node_modules/lodash":{"version":"4.17.15"},
    "node_modules/mkdirp":{"version":"0.5.5"},
    "node_modules/minimist":{"version":"1.2.5"},
    "node_modules/left-pad":{"version":"1.3.0","dev":true}
}}"#;

fn facts() -> Vec<Fact> {
    vec![
        output("node", "v18.19.0\n"),
        output("npm-root", "/usr/local/lib/node_modules\n"),
        files("ca", &[("/etc/ssl/certs/ca-certificates.crt", "PEM")]),
        files("app:/app", &[("/app/package.json", MANIFEST), ("/app/package-lock.json", LOCK)]),
        files("app:/yarn", &[("/yarn/package.json", "{}"), ("/yarn/yarn.lock", "")]),
        versions(
            "lodash",
            vec![
                published("4.17.15", None, None),
                published("4.17.20", Some("use 4.17.21"), None),
                published("4.17.21", None, None),
            ],
        ),
        versions(
            "minimist",
            vec![published("1.2.6", None, Some(">=20")), published("1.2.7", None, Some(">=0.10"))],
        ),
        versions("left-pad", vec![published("1.3.1", None, None)]),
    ]
}

fn update(name: &str, installed: &str, location: &str, fixed: &[&str]) -> Update {
    fixed
        .iter()
        .fold(Update::new("npm", name, installed).at(location), |u, f| u.fixing(format!("V-{f}"), [*f]))
}

fn request(updates: Vec<Update>, ignore_errors: bool) -> PlanRequest {
    PlanRequest {
        target: Target::default(),
        updates,
        options: Options { patch_level: PatchLevel::Patch, ignore_errors, ..Options::default() },
        facts: facts(),
    }
}

#[test]
fn registry_answers_decide_the_version_and_steps_run_in_the_app() {
    let plan = Npm::plan(&request(
        vec![
            update("lodash", "4.17.15", "/app/package-lock.json", &["4.17.20"]),
            update("minimist", "1.2.5", "/app/node_modules/minimist/package.json", &["1.2.6"]),
            update("left-pad", "1.3.0", "/app/package-lock.json", &["1.3.1"]),
            update("lodash", "4.17.15", "/yarn/yarn.lock", &["4.17.21"]),
        ],
        false,
    ))
    .unwrap();
    let chosen: Vec<(&str, &VersionTarget)> =
        plan.selected.iter().map(|s| (s.name.as_str(), &s.target)).collect();
    assert_eq!(
        chosen,
        [
            ("lodash", &VersionTarget::Exactly("4.17.21".into())),
            ("minimist", &VersionTarget::Exactly("1.2.7".into()))
        ],
        "deprecated 4.17.20 and node-20-only 1.2.6 are passed over for the next release of their line"
    );
    let lodash = &plan.selected[0];
    assert!(lodash.passed_over.iter().any(|p| p.version == "4.17.20" && p.reason.contains("deprecated")));
    let reasons: Vec<&str> = plan.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("only a devDependency")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("managed by yarn")), "{reasons:?}");

    let summaries: Vec<&str> = plan.steps.iter().map(|s| s.summary.as_str()).collect();
    assert!(summaries[0].starts_with("fetch "), "{summaries:?}");
    assert!(plan.steps[0].command.network && plan.steps[1..].iter().all(|s| !s.command.network));
    let override_step =
        plan.steps.iter().find(|s| s.command.argv.contains(&"overrides.minimist=1.2.7".to_owned()));
    assert_eq!(override_step.unwrap().command.cwd.as_deref(), Some("/app"));
    let has = |s: &caulk_sdk::update::Step, arg: &str| s.command.argv.iter().any(|a| a == arg);
    let install = plan.steps.iter().find(|s| has(s, "lodash@4.17.21") && has(s, "--offline")).unwrap();
    assert_eq!(install.command.cwd.as_deref(), Some("/app"));
    assert!(has(&plan.steps[0], "lodash@4.17.21") && has(&plan.steps[0], "minimist@1.2.7"), "fetched first");
    assert!(!install.command.argv.contains(&"--save-exact".to_owned()), "a ^range stays a range");
    assert!(
        install
            .command
            .env
            .contains(&("NODE_EXTRA_CA_CERTS".into(), "/etc/ssl/certs/ca-certificates.crt".into()))
    );
    assert_eq!(plan.caches[0].path, "/var/cache/caulk-npm");
}

#[test]
fn a_fix_nobody_publishes_fails_the_plan_unless_errors_are_ignored() {
    let missing = || vec![update("lodash", "4.17.15", "/app/package-lock.json", &["4.17.99"])];
    let err = Npm::plan(&request(missing(), false)).unwrap_err();
    assert!(err.message.contains("lodash") && err.message.contains("4.17.99: not published"), "{err:?}");
    let plan = Npm::plan(&request(missing(), true)).unwrap();
    assert!(plan.selected.is_empty() && plan.steps.is_empty());
    assert!(plan.skipped[0].reason.contains("not published"), "{:?}", plan.skipped);
}

#[test]
fn installs_run_no_lifecycle_scripts_unless_the_user_opts_in() {
    let updates = || {
        vec![
            update("lodash", "4.17.15", "/app/package-lock.json", &["4.17.21"]),
            update("minimist", "1.2.5", "/app/node_modules/minimist/package.json", &["1.2.7"]),
        ]
    };
    let installs = |plan: &caulk_sdk::update::PatchPlan| {
        plan.steps
            .iter()
            .filter(|s| s.command.argv.get(1).is_some_and(|a| a == "install"))
            .map(|s| (s.summary.clone(), s.command.argv.contains(&"--ignore-scripts".to_owned())))
            .collect::<Vec<_>>()
    };
    let plan = Npm::plan(&request(updates(), false)).unwrap();
    let steps = installs(&plan);
    assert!(steps.len() >= 2 && steps.iter().all(|(_, ignored)| *ignored), "{steps:?}");

    let mut opted_in = request(updates(), false);
    opted_in.options.settings = vec![("scripts".into(), "true".into())];
    let plan = Npm::plan(&opted_in).unwrap();
    for (summary, ignored) in installs(&plan) {
        // The scratch fetch never runs scripts; the installs in the app now do.
        assert_eq!(ignored, summary.starts_with("fetch "), "{summary}");
    }

    let mut misspelt = request(updates(), false);
    misspelt.options.settings = vec![("ignore-scripts".into(), "false".into())];
    let err = Npm::plan(&misspelt).unwrap_err();
    assert!(err.message.contains("--plugin-opt npm.ignore-scripts="), "{err:?}");
}
