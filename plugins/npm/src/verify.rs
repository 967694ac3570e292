//! After the steps: every copy of each selected package read back from its
//! `package.json`, and `npm ls` for each app, whose complaints fail the
//! update in npm's own words.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    Check, Fact, FileKind, Outcome, OutcomeStatus, Question, SelectedUpdate, VerifyRequest, VersionTarget,
};
use caulk_sdk::version::npm::Version;

use crate::facts::{self, NPM_ROOT};
use crate::place::{Place, place_of, valid_name};

fn copies_id(place: &Place, name: &str) -> String {
    match place {
        Place::App(dir) => format!("copies:{dir}:{name}"),
        Place::Global => format!("copies:global:{name}"),
    }
}

fn ls_id(dir: &str) -> String {
    format!("ls:{dir}")
}

/// The verify phase's questions: `npm root -g` first, then the copies of
/// every selected package and `npm ls` in each app.
pub fn questions(selected: &[SelectedUpdate], facts: &[Fact]) -> Vec<Question> {
    let mut questions = vec![Question::run(NPM_ROOT, ["npm", "root", "-g"])];
    let Ok(root) = facts::global_root(facts) else { return questions };
    for s in selected.iter().filter(|s| valid_name(&s.name)) {
        let Some(place) = place_of(s.location.as_deref(), &root) else { continue };
        let name = &s.name;
        match &place {
            Place::Global => {
                questions
                    .push(Question::files(copies_id(&place, name), [format!("{root}/{name}/package.json")]));
            }
            Place::App(dir) => {
                let base = dir.trim_end_matches('/');
                questions.push(Question::files(
                    copies_id(&place, name),
                    [
                        format!("{base}/node_modules/{name}/package.json"),
                        format!("{base}/node_modules/**/node_modules/{name}/package.json"),
                    ],
                ));
                questions.push(Question::command(
                    ls_id(dir),
                    facts::npm(&["ls", "--omit=dev", "--all"]).in_dir(dir.clone()),
                ));
            }
        }
    }
    questions.sort_by(|a, b| a.id.cmp(&b.id));
    questions.dedup_by(|a, b| a.id == b.id);
    questions
}

pub fn verify(request: &VerifyRequest) -> Vec<Outcome> {
    let root = facts::global_root(&request.facts).unwrap_or_default();
    let failed_steps: Vec<String> = request
        .steps
        .iter()
        .filter(|s| s.exit_code != 0)
        .map(|s| format!("step `{}` exited {}: {}", s.summary, s.exit_code, last_lines(&s.stderr_tail, 3)))
        .collect();
    request
        .selected
        .iter()
        .map(|s| {
            let mut outcome = judge(&request.facts, s, &root);
            if outcome.status == OutcomeStatus::Failed && !failed_steps.is_empty() {
                outcome.detail = format!("{}; {}", outcome.detail, failed_steps.join("; "));
            }
            outcome
        })
        .collect()
}

fn judge(facts: &[Fact], selected: &SelectedUpdate, root: &str) -> Outcome {
    let failed = |detail: String| Outcome::of(selected, None, OutcomeStatus::Failed, detail);
    let VersionTarget::Exactly(target) = &selected.target else {
        return failed("the npm updater plans exact versions only".into());
    };
    let Ok(target) = target.parse::<Version>() else {
        return failed(format!("target {target:?} is not SemVer"));
    };
    let Some(place) = place_of(selected.location.as_deref(), root) else {
        return failed("its location names no app or global package".into());
    };
    let mut found: Vec<(String, Option<Version>)> = facts
        .files(&copies_id(&place, &selected.name))
        .iter()
        .filter(|f| f.kind == FileKind::Regular)
        .map(|f| {
            let version = f
                .contents
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|m| m.get("version")?.as_str()?.parse::<Version>().ok());
            (f.path.clone(), version)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        return failed(format!("{} is no longer installed", selected.name));
    }
    let lowest = found.iter().filter_map(|(_, v)| v.clone()).min();
    let below: Vec<String> = found
        .iter()
        .filter(|(_, v)| v.as_ref().is_none_or(|v| *v < target))
        .map(|(path, v)| {
            format!("{path} has {}", v.as_ref().map_or("no version".to_owned(), ToString::to_string))
        })
        .collect();
    let mut checks = Vec::new();
    let mut ls_problem = None;
    if let Place::App(dir) = &place {
        let (passed, detail) = match facts.output(&ls_id(dir)) {
            Some(out) if out.exit_code == 0 => (true, "the tree is valid".to_owned()),
            Some(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let stdout = String::from_utf8_lossy(&out.stdout);
                let words: Vec<&str> = stderr
                    .lines()
                    .chain(stdout.lines())
                    .filter(|l| l.contains("ERR!") || l.contains("invalid") || l.contains("missing"))
                    .take(6)
                    .collect();
                (false, format!("exited {}: {}", out.exit_code, words.join(" / ")))
            }
            None => (false, facts.unavailable(&ls_id(dir)).unwrap_or("not run").to_owned()),
        };
        if !passed {
            ls_problem = Some(format!("npm ls in {dir} {detail}"));
        }
        checks.push(Check { name: "npm ls".into(), passed, detail });
    }
    let to = lowest.map(|v| v.to_string());
    let outcome = if !below.is_empty() {
        Outcome::of(selected, to, OutcomeStatus::Failed, format!("below {target}: {}", below.join(", ")))
    } else if let Some(problem) = ls_problem {
        Outcome::of(selected, to, OutcomeStatus::Failed, problem)
    } else {
        let copies = if found.len() == 1 { "1 copy".to_owned() } else { format!("{} copies", found.len()) };
        Outcome::of(selected, to, OutcomeStatus::Patched, format!("{copies} at {target} or above"))
    };
    outcome.with_checks(checks)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}
