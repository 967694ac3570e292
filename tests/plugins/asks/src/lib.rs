//! Asks the host for one capability at a time, chosen by the plugin setting
//! `asks.ask` (`--plugin-opt asks.ask=WHAT`), so the grant checks and the
//! budgets can be tested on a real component through a real `caulk patch`.
//!
//! It handles the made-up ecosystem `asks` (as a library class). With a
//! question it plans nothing and reports what the host answered in the
//! skipped update's reason; with `step` or `step-network` it plans one step
//! and verifies by the step's exit code; `step-sleep` plans `sleep N`
//! (`asks.seconds`, default 600), a step that outlasts any short limit;
//! `step-rename` replaces `/etc/debian_version` by rename with other bytes
//! of the same size and the same mtime, as dpkg replaces files.

use caulk_sdk::Updater;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{
    Answer, Command, ExecContext, IndexQuery, Outcome, OutcomeStatus, PatchPlan, PlanRequest, ProbeRequest,
    Question, QuestionKind, SelectedUpdate, SkippedUpdate, Step, Tooling, Update, VerifyRequest,
    VersionTarget,
};

pub struct Asks;

/// Digits swapped (0↔9, 1↔8, …): other bytes, the same size; then the old
/// file's owner, mode and mtime, and a rename over it.
const RENAME: &str = "f=/etc/debian_version && tr 0-9 9876543210 <$f >$f.new && \
    chmod --reference=$f $f.new && chown --reference=$f $f.new && touch -r $f $f.new && mv -f $f.new $f";

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn lookup(id: &str, index_urls: Vec<String>) -> Question {
    Question {
        id: id.to_owned(),
        kind: QuestionKind::Lookup(IndexQuery { ecosystem: "python".into(), name: "pip".into(), index_urls }),
    }
}

/// The questions `ask` stands for.
fn questions(ask: &str, settings: &[(String, String)]) -> Result<Vec<Question>, Error> {
    let count = |key: &str, default: usize| {
        setting(settings, key).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default)
    };
    Ok(match ask {
        "image-commands" => vec![Question::run("ask", ["cat", "/etc/debian_version"])],
        "network" => vec![Question::command("ask", Command::new(["true"]).with_network())],
        "host-tooling" => vec![Question::command(
            "ask",
            Command {
                argv: vec!["test".into(), "-d".into(), "/target/etc".into()],
                cwd: None,
                env: Vec::new(),
                context: ExecContext::Tooling(Tooling { image: None, mount_point: "/target".into() }),
                network: false,
            },
        )],
        "index" => vec![lookup("ask", Vec::new())],
        "index-elsewhere" => vec![lookup("ask", vec!["https://example.org/simple".into()])],
        "files" => vec![Question::files("ask", [setting(settings, "glob").unwrap_or("/usr/**")])],
        "questions" => {
            (0..count("count", 2000)).map(|i| Question::files(format!("q{i}"), ["/etc/hostname"])).collect()
        }
        "output" => {
            let bytes = count("bytes", 32 << 20).to_string();
            vec![Question::run("ask", ["head", "-c", bytes.as_str(), "/dev/zero"])]
        }
        "step" | "step-network" | "step-sleep" | "step-rename" | "nothing" => Vec::new(),
        other => return Err(Error::malformed(format!("asks.ask: unknown request `{other}`"))),
    })
}

/// What the host answered, for the summary.
fn describe(answer: Option<&Answer>) -> String {
    match answer {
        None => "not asked".to_owned(),
        Some(Answer::Output(out)) => format!(
            "answered: exit {}, stdout {:?}",
            out.exit_code,
            String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(64)]).trim()
        ),
        Some(Answer::Files(files)) => format!("answered: {} files", files.len()),
        Some(Answer::Versions(versions)) => format!("answered: {} versions", versions.len()),
        Some(Answer::Unavailable(why)) => format!("unavailable: {why}"),
    }
}

fn ask_of(settings: &[(String, String)]) -> &str {
    setting(settings, "ask").unwrap_or("nothing")
}

fn first(updates: &[Update]) -> Result<&Update, Error> {
    updates.first().ok_or_else(|| Error::malformed("asks needs one update of ecosystem `asks`"))
}

impl Updater for Asks {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "asks".into(),
            version: "0.1.0".into(),
            summary: "Asks for one capability at a time (caulk's grant tests)".into(),
            handles: vec!["asks".into()],
            os_families: Vec::new(),
            class: PackageClass::Library,
        }
    }

    fn probe(request: &ProbeRequest) -> Result<Vec<Question>, Error> {
        questions(ask_of(&request.options.settings), &request.options.settings)
    }

    fn plan(request: &PlanRequest) -> Result<PatchPlan, Error> {
        let update = first(&request.updates)?;
        let ask = ask_of(&request.options.settings);
        let mut plan = PatchPlan::empty();
        if ask.starts_with("step") {
            let mut command = if ask == "step-sleep" {
                Command::new(["sleep", setting(&request.options.settings, "seconds").unwrap_or("600")])
            } else if ask == "step-rename" {
                Command::new(["sh", "-c", RENAME])
            } else {
                Command::new(["true"])
            };
            command.network = ask == "step-network";
            plan.steps.push(Step { summary: "do nothing".into(), command, tolerate_failure: false });
            plan.selected.push(SelectedUpdate {
                ecosystem: update.ecosystem.clone(),
                name: update.name.clone(),
                location: update.location.clone(),
                from: update.installed_version.clone(),
                target: VersionTarget::Exactly(update.fixed_versions.first().cloned().unwrap_or_default()),
                vulnerabilities: update.vulnerabilities.clone(),
                rationale: None,
                passed_over: Vec::new(),
            });
        } else {
            let answered = request.facts.len();
            plan.skipped.push(SkippedUpdate {
                ecosystem: update.ecosystem.clone(),
                name: update.name.clone(),
                location: update.location.clone(),
                installed_version: Some(update.installed_version.clone()),
                reason: format!("{} ({answered} facts)", describe(request.facts.answer("ask"))),
                already_fixed: false,
            });
        }
        Ok(plan)
    }

    fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, Error> {
        let ran = request.steps.iter().all(|s| s.exit_code == 0) && !request.steps.is_empty();
        Ok(request
            .selected
            .iter()
            .map(|s| {
                let to = match &s.target {
                    VersionTarget::Exactly(v) | VersionTarget::AtLeast(v) => v.clone(),
                    VersionTarget::Newest => String::new(),
                };
                if ran {
                    Outcome::of(s, Some(to), OutcomeStatus::Patched, "the step ran".into())
                } else {
                    Outcome::of(s, None, OutcomeStatus::Failed, "the step did not run".into())
                }
            })
            .collect())
    }
}

// Natively (a workspace build) there is no component to export.
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(
    Asks,
    capabilities = ["image-commands", "host-tooling", "network", "index:pypi.org"]
);
