//! The import checks of verification, and the dependency check, one
//! interpreter per environment.
//!
//! Every patched distribution an interpreter of the image can import is
//! checked by importing its top-level modules. All of them for one
//! interpreter go in a single `python -c` run ([`IMPORT_CHECK`]), which
//! imports each module alone and prints one line per module, so a failing
//! import is still reported under its own distribution. The first run of
//! an environment with pip checks its requirements as `pip check` does
//! ([`crate::scripts::DEPENDENCY_CHECK`]) before any import, so one
//! interpreter start does both.
//!
//! Runs end early three ways, and the modules after go to another run:
//!
//! - a module that kills the interpreter (a crashing extension,
//!   `os._exit`) is the first one without a line: it fails;
//! - a module still importing after the import limit (`pip.import-timeout`,
//!   [`DEFAULT_LIMIT`] s by default) is named by the script's watchdog,
//!   which stops the interpreter: it fails as timed out;
//! - a run stops itself before a module that could take it past
//!   [`RUN_BUDGET`] s (under the host's two-minute limit on one probe), and
//!   the rest simply go on in the next run.
//!
//! So a batch gets as much time as its modules need, one import limit per
//! module, bounded by [`MAX_RUNS`] runs per interpreter, of which at most
//! [`MAX_FAILED_RUNS`] may end in a crash or a timeout.

use std::collections::BTreeMap;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Answer, Check, CommandOutput, Fact, Question};
use serde::{Deserialize, Serialize};

use crate::discover;
use crate::plan::digest;
use crate::scripts::{DEPS_PREFIX, IMPORT_CHECK, IMPORT_PAUSED, IMPORT_PREFIX, IMPORT_START, python_command};

pub const IMPORT: &str = "import:";

/// Runs of the import check per interpreter that may end in a module
/// killing the interpreter or timing out.
pub const MAX_FAILED_RUNS: usize = 3;

/// Runs of the import check per interpreter, at most. The host allows
/// an updater 16 rounds of questions per phase and verification spends
/// four before the first import run: ten leaves room.
pub const MAX_RUNS: usize = 10;

/// Seconds one import may take unless `pip.import-timeout` says otherwise.
pub const DEFAULT_LIMIT: u32 = 60;

/// The most `pip.import-timeout` may be: an import must fit in one run.
pub const MAX_LIMIT: u32 = 90;

/// Seconds one run may spend importing: below the host's two-minute limit
/// on a probe, with room for the interpreter to start.
pub const RUN_BUDGET: u32 = 100;

/// Distributions per run at most: the list is one argv element, which
/// Linux caps at 128 KiB; a longer list is split over several runs.
pub const MAX_ENTRIES: usize = 200;

/// One distribution's modules, as the import check reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The distribution's metadata directory.
    pub id: String,
    /// A directory put first on `sys.path` for these imports (a site the
    /// interpreter does not see by itself), or none.
    pub path: Option<String>,
    pub modules: Vec<String>,
}

/// The import checks of one interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub python: String,
    pub entries: Vec<Entry>,
    /// Seconds one import may take.
    pub limit: u32,
    /// Whether the first run checks the environment's requirements too.
    pub deps: bool,
}

/// What the dependency check of an interpreter said: `pip check`'s lines,
/// or why there are none.
pub type Deps = Result<Vec<String>, String>;

/// What the checks say about one distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

/// Where the batches stand: the run still to ask, or every verdict.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub pending: Vec<Question>,
    /// By distribution id.
    pub verdicts: BTreeMap<String, Verdict>,
    /// By interpreter, for the batches that asked.
    pub deps: BTreeMap<String, Deps>,
}

#[derive(Debug, Deserialize)]
struct DepsLine {
    #[serde(default)]
    lines: Vec<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Line {
    id: String,
    module: String,
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    timeout: bool,
}

/// The question running `entries` in `python`, after the dependency check
/// when `deps`; its id names the interpreter and what it does, so a later
/// run with fewer modules is a new question.
pub fn question(python: &str, entries: &[Entry], limit: u32, deps: bool) -> Question {
    let argument = serde_json::to_string(entries).expect("strings and lists serialise");
    let limit = limit.to_string();
    let deps = if deps { "deps" } else { "imports" };
    let id = format!("{IMPORT}{python}:{}", digest(&format!("{argument}\u{1f}{limit}\u{1f}{deps}")));
    let budget = RUN_BUDGET.to_string();
    Question::command(
        id,
        python_command([python, "-c", IMPORT_CHECK, argument.as_str(), &limit, &budget, deps]),
    )
}

/// The batches' runs asked so far read into verdicts, and the next run of
/// each batch that is not finished.
pub fn progress(batches: &[Batch], facts: &[Fact]) -> Progress {
    let mut out = Progress::default();
    for batch in batches {
        if let Some(q) = advance(batch, facts, &mut out.verdicts, &mut out.deps) {
            out.pending.push(q);
        }
    }
    out
}

/// `(distribution, module)` in the order imported.
type Item = (usize, String);

fn entries_of(batch: &Batch, items: &[Item]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, module) in items {
        let entry = &batch.entries[*i];
        match out.last_mut() {
            Some(last) if last.id == entry.id => last.modules.push(module.clone()),
            _ => out.push(Entry {
                id: entry.id.clone(),
                path: entry.path.clone(),
                modules: vec![module.clone()],
            }),
        }
    }
    out
}

fn how_it_ended(out: &CommandOutput) -> String {
    let ended = if out.exit_code < 0 { "was killed".to_owned() } else { format!("exited {}", out.exit_code) };
    match discover::first_line(&out.stderr) {
        Some(line) => format!("{ended}: {line}"),
        None => ended,
    }
}

fn at<'v>(verdicts: &'v mut BTreeMap<String, Verdict>, batch: &Batch, i: usize) -> &'v mut Verdict {
    verdicts.entry(batch.entries[i].id.clone()).or_default()
}

/// How one run ended, beyond the lines it printed.
enum Ended {
    /// Every module has its line.
    Done,
    /// It stopped itself for time; the rest go on.
    Paused,
    /// A module timed out (its line says so) or killed the interpreter
    /// (the first module without a line).
    Failed,
}

/// The dependency check's line in a run's output.
fn deps_said(text: &str) -> Deps {
    let Some(line) = text.lines().find_map(|l| l.strip_prefix(DEPS_PREFIX)) else {
        return Err("it printed nothing".to_owned());
    };
    match serde_json::from_str::<DepsLine>(line) {
        Ok(DepsLine { error: Some(why), .. }) => Err(discover::truncate(&why, 400)),
        Ok(DepsLine { lines, .. }) => Ok(lines),
        Err(e) => Err(format!("the dependency check printed something else: {e}")),
    }
}

/// Walks one batch's runs; returns the run still to ask, if any. The first
/// run also holds the dependency check when the batch asks for one.
fn advance(
    batch: &Batch,
    facts: &[Fact],
    verdicts: &mut BTreeMap<String, Verdict>,
    deps: &mut BTreeMap<String, Deps>,
) -> Option<Question> {
    let mut items: Vec<Item> = batch
        .entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| e.modules.iter().map(move |m| (i, m.clone())))
        .collect();
    let mut failed_runs = 0;
    for run in 0..MAX_RUNS {
        let with_deps = batch.deps && run == 0;
        if items.is_empty() && !with_deps {
            return None;
        }
        let q = question(&batch.python, &entries_of(batch, &items), batch.limit, with_deps);
        let out = match facts.answer(&q.id) {
            None => return Some(q),
            Some(Answer::Output(out)) => out,
            Some(Answer::Unavailable(why)) => {
                for (i, _) in &items {
                    at(verdicts, batch, *i).notes.push(format!("the import check could not run: {why}"));
                }
                if with_deps {
                    deps.insert(batch.python.clone(), Err(why.clone()));
                }
                return None;
            }
            Some(_) => {
                for (i, _) in &items {
                    at(verdicts, batch, *i).notes.push("the import check got no output".to_owned());
                }
                if with_deps {
                    deps.insert(batch.python.clone(), Err("it got no output".to_owned()));
                }
                return None;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if with_deps {
            let started = text.lines().any(|l| l == IMPORT_START);
            let stopped = started && !text.lines().any(|l| l.starts_with(DEPS_PREFIX));
            let said = if !started {
                Err(format!("{} did not run it ({})", batch.python, how_it_ended(out)))
            } else if stopped {
                Err(format!("the interpreter stopped during it ({})", how_it_ended(out)))
            } else {
                deps_said(&text)
            };
            deps.insert(batch.python.clone(), said);
            if stopped {
                // No module was started: they all go to the next run.
                failed_runs += 1;
                continue;
            }
        }
        if !text.lines().any(|l| l == IMPORT_START) {
            // The interpreter never got to the first import: one failed
            // check per distribution.
            let mut seen = Vec::new();
            for (i, _) in &items {
                if !seen.contains(i) {
                    seen.push(*i);
                    at(verdicts, batch, *i).checks.push(Check {
                        name: "import".to_owned(),
                        passed: false,
                        detail: format!(
                            "{} did not run the import check ({})",
                            batch.python,
                            how_it_ended(out)
                        ),
                    });
                }
            }
            return None;
        }
        let mut said: BTreeMap<(String, String), Line> = BTreeMap::new();
        for line in text.lines().filter_map(|l| l.strip_prefix(IMPORT_PREFIX)) {
            if let Ok(line) = serde_json::from_str::<Line>(line) {
                said.entry((line.id.clone(), line.module.clone())).or_insert(line);
            }
        }
        let mut ended = Ended::Done;
        let mut unanswered = Vec::new();
        for (i, module) in items {
            match said.get(&(batch.entries[i].id.clone(), module.clone())) {
                Some(line) => {
                    if line.timeout {
                        ended = Ended::Failed;
                    }
                    at(verdicts, batch, i).checks.push(Check {
                        name: format!("import {module}"),
                        passed: line.ok,
                        detail: if line.ok {
                            "imported".to_owned()
                        } else if line.timeout {
                            format!("{}; the interpreter was stopped", discover::truncate(&line.error, 400))
                        } else {
                            discover::truncate(&line.error, 400)
                        },
                    });
                }
                None => unanswered.push((i, module)),
            }
        }
        if unanswered.is_empty() {
            return None;
        }
        if !matches!(ended, Ended::Failed) {
            ended = if text.lines().any(|l| l == IMPORT_PAUSED) { Ended::Paused } else { Ended::Failed };
            if matches!(ended, Ended::Failed) {
                // No line and no pause: the first module without a line
                // killed the interpreter.
                let (culprit, module) = unanswered.remove(0);
                at(verdicts, batch, culprit).checks.push(Check {
                    name: format!("import {module}"),
                    passed: false,
                    detail: format!("the interpreter died importing it ({})", how_it_ended(out)),
                });
            }
        }
        if matches!(ended, Ended::Failed) {
            failed_runs += 1;
            if failed_runs == MAX_FAILED_RUNS {
                for (i, module) in &unanswered {
                    at(verdicts, batch, *i).notes.push(format!(
                        "{module} was not imported: the interpreter died or timed out {MAX_FAILED_RUNS} times \
                         importing other modules"
                    ));
                }
                return None;
            }
        }
        items = unanswered;
    }
    for (i, module) in &items {
        at(verdicts, batch, *i)
            .notes
            .push(format!("{module} was not imported: the import check stopped after {MAX_RUNS} runs"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            python: "/usr/bin/python3".into(),
            entries: vec![
                Entry { id: "/s/a-1.dist-info".into(), path: None, modules: vec!["a".into(), "a2".into()] },
                Entry { id: "/s/b-1.dist-info".into(), path: Some("/t".into()), modules: vec!["b".into()] },
                Entry { id: "/s/c-1.dist-info".into(), path: None, modules: vec!["c".into()] },
            ],
            limit: 60,
            deps: false,
        }
    }

    fn answered(q: &Question, exit_code: i32, stdout: &str, stderr: &str) -> Fact {
        Fact {
            question_id: q.id.clone(),
            answer: Answer::Output(CommandOutput {
                exit_code,
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
            }),
        }
    }

    fn line(id: &str, module: &str, ok: bool, error: &str) -> String {
        format!(
            "\n{IMPORT_PREFIX}{}\n",
            serde_json::json!({"id": id, "module": module, "ok": ok, "error": error})
        )
    }

    fn asked_modules(q: &Question) -> Vec<String> {
        let caulk_sdk::update::QuestionKind::Run(command) = &q.kind else { panic!() };
        let asked: Vec<serde_json::Value> = serde_json::from_str(&command.argv[3]).unwrap();
        asked
            .iter()
            .flat_map(|e| e["modules"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn a_module_that_times_out_is_named_and_the_rest_run_again() {
        let batch = batch();
        let first = progress(std::slice::from_ref(&batch), &[]).pending.remove(0);
        let caulk_sdk::update::QuestionKind::Run(command) = &first.kind else { panic!() };
        assert_eq!(command.argv[4..], ["60".to_owned(), RUN_BUDGET.to_string(), "imports".to_owned()]);
        let timed_out = format!(
            "\n{IMPORT_PREFIX}{}\n",
            serde_json::json!({"id": "/s/a-1.dist-info", "module": "a2", "ok": false,
                "error": "the import did not finish within 60 s", "timeout": true})
        );
        let stdout = format!("{IMPORT_START}\n{}{timed_out}", line("/s/a-1.dist-info", "a", true, ""));
        let mut facts = vec![answered(&first, 124, &stdout, "")];
        let second = progress(std::slice::from_ref(&batch), &facts).pending.remove(0);
        assert_eq!(asked_modules(&second), ["b", "c"]);
        let stdout = format!(
            "{IMPORT_START}\n{}{}",
            line("/s/b-1.dist-info", "b", true, ""),
            line("/s/c-1.dist-info", "c", true, "")
        );
        facts.push(answered(&second, 0, &stdout, ""));
        let done = progress(&[batch], &facts);
        assert!(done.pending.is_empty());
        let a = &done.verdicts["/s/a-1.dist-info"].checks;
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[0].passed && !a[1].passed);
        assert_eq!(a[1].name, "import a2");
        assert_eq!(a[1].detail, "the import did not finish within 60 s; the interpreter was stopped");
        assert!(done.verdicts["/s/c-1.dist-info"].checks[0].passed);
    }

    #[test]
    fn a_paused_run_goes_on_without_failing_anything_and_runs_are_bounded() {
        let batch = batch();
        let first = progress(std::slice::from_ref(&batch), &[]).pending.remove(0);
        let stdout =
            format!("{IMPORT_START}\n{}\n{IMPORT_PAUSED}\n", line("/s/a-1.dist-info", "a", true, ""));
        let mut facts = vec![answered(&first, 0, &stdout, "")];
        let second = progress(std::slice::from_ref(&batch), &facts).pending.remove(0);
        assert_eq!(asked_modules(&second), ["a2", "b", "c"]);
        let stdout =
            format!("{IMPORT_START}\n{}\n{IMPORT_PAUSED}\n", line("/s/a-1.dist-info", "a2", true, ""));
        facts.push(answered(&second, 0, &stdout, ""));
        let third = progress(std::slice::from_ref(&batch), &facts).pending.remove(0);
        assert_eq!(asked_modules(&third), ["b", "c"]);
        let stdout = format!(
            "{IMPORT_START}\n{}{}",
            line("/s/b-1.dist-info", "b", true, ""),
            line("/s/c-1.dist-info", "c", false, "E: c")
        );
        facts.push(answered(&third, 0, &stdout, ""));
        let done = progress(std::slice::from_ref(&batch), &facts);
        assert!(done.pending.is_empty());
        let passed = |id: &str| -> Vec<bool> { done.verdicts[id].checks.iter().map(|c| c.passed).collect() };
        assert_eq!(passed("/s/a-1.dist-info"), [true, true]);
        assert_eq!((passed("/s/b-1.dist-info"), passed("/s/c-1.dist-info")), (vec![true], vec![false]));
        assert!(done.verdicts.values().all(|v| v.notes.is_empty()));

        // A batch of many modules that pauses after each stops at MAX_RUNS.
        let many = Batch {
            python: "/usr/bin/python3".into(),
            entries: vec![Entry {
                id: "/s/m-1.dist-info".into(),
                path: None,
                modules: (0..MAX_RUNS + 2).map(|i| format!("m{i}")).collect(),
            }],
            limit: 60,
            deps: false,
        };
        let mut facts = Vec::new();
        for _ in 0..MAX_RUNS {
            let q = progress(std::slice::from_ref(&many), &facts).pending.remove(0);
            let next = asked_modules(&q).remove(0);
            let stdout =
                format!("{IMPORT_START}\n{}\n{IMPORT_PAUSED}\n", line("/s/m-1.dist-info", &next, true, ""));
            facts.push(answered(&q, 0, &stdout, ""));
        }
        let done = progress(&[many], &facts);
        assert!(done.pending.is_empty());
        let verdict = &done.verdicts["/s/m-1.dist-info"];
        assert_eq!(verdict.checks.len(), MAX_RUNS);
        assert_eq!(verdict.notes.len(), 2, "{:?}", verdict.notes);
        assert!(verdict.notes[0].ends_with("stopped after 10 runs"), "{}", verdict.notes[0]);
    }

    #[test]
    fn one_run_reports_each_module_under_its_distribution() {
        let batch = batch();
        let first = progress(std::slice::from_ref(&batch), &[]);
        assert_eq!(first.pending.len(), 1);
        let argv = &first.pending[0];
        let caulk_sdk::update::QuestionKind::Run(command) = &argv.kind else { panic!() };
        assert_eq!(command.argv[..3], ["/usr/bin/python3".to_owned(), "-c".into(), IMPORT_CHECK.into()]);
        let stdout = format!(
            "noise\n{IMPORT_START}\n{}{}{}{}",
            line("/s/a-1.dist-info", "a", true, ""),
            line("/s/a-1.dist-info", "a2", true, ""),
            line("/s/b-1.dist-info", "b", false, "ImportError: no b"),
            line("/s/c-1.dist-info", "c", true, "")
        );
        let facts = [answered(&first.pending[0], 0, &stdout, "")];
        let done = progress(&[batch], &facts);
        assert!(done.pending.is_empty());
        let names = |id: &str| -> Vec<(String, bool)> {
            done.verdicts[id].checks.iter().map(|c| (c.name.clone(), c.passed)).collect()
        };
        assert_eq!(names("/s/a-1.dist-info"), [("import a".into(), true), ("import a2".into(), true)]);
        assert_eq!(names("/s/b-1.dist-info"), [("import b".into(), false)]);
        assert_eq!(done.verdicts["/s/b-1.dist-info"].checks[0].detail, "ImportError: no b");
        assert_eq!(names("/s/c-1.dist-info"), [("import c".into(), true)]);
    }

    #[test]
    fn a_module_that_kills_the_interpreter_fails_and_the_rest_run_again() {
        let batch = batch();
        let first = progress(std::slice::from_ref(&batch), &[]).pending.remove(0);
        let stdout = format!("{IMPORT_START}\n{}", line("/s/a-1.dist-info", "a", true, ""));
        let mut facts = vec![answered(&first, -1, &stdout, "Segmentation fault")];
        let second = progress(std::slice::from_ref(&batch), &facts);
        assert_eq!(second.pending.len(), 1, "b and c again, without a2");
        let caulk_sdk::update::QuestionKind::Run(command) = &second.pending[0].kind else { panic!() };
        let asked: serde_json::Value = serde_json::from_str(&command.argv[3]).unwrap();
        assert_eq!(
            asked,
            serde_json::json!([
                {"id": "/s/b-1.dist-info", "path": "/t", "modules": ["b"]},
                {"id": "/s/c-1.dist-info", "path": null, "modules": ["c"]}
            ])
        );
        let stdout = format!(
            "{IMPORT_START}\n{}{}",
            line("/s/b-1.dist-info", "b", true, ""),
            line("/s/c-1.dist-info", "c", true, "")
        );
        facts.push(answered(&second.pending[0], 0, &stdout, ""));
        let done = progress(&[batch], &facts);
        assert!(done.pending.is_empty());
        let a = &done.verdicts["/s/a-1.dist-info"].checks;
        assert_eq!((a[0].passed, a[1].passed), (true, false));
        assert_eq!(a[1].detail, "the interpreter died importing it (was killed: Segmentation fault)");
        assert!(done.verdicts["/s/b-1.dist-info"].checks[0].passed);
        assert!(done.verdicts["/s/c-1.dist-info"].checks[0].passed);
    }

    #[test]
    fn an_interpreter_that_does_not_start_fails_every_import() {
        let batch = batch();
        let first = progress(std::slice::from_ref(&batch), &[]).pending.remove(0);
        let facts = [answered(&first, 1, "", "bwrap: execvp /usr/bin/python3: No such file or directory")];
        let done = progress(&[batch], &facts);
        assert!(done.pending.is_empty());
        for id in ["/s/a-1.dist-info", "/s/b-1.dist-info", "/s/c-1.dist-info"] {
            let checks = &done.verdicts[id].checks;
            assert!(checks.iter().all(|c| !c.passed), "{checks:?}");
            assert!(checks[0].detail.contains("exited 1: bwrap: execvp"), "{}", checks[0].detail);
        }
        // Once per distribution, not per module.
        assert_eq!(done.verdicts["/s/a-1.dist-info"].checks.len(), 1);
    }
}
