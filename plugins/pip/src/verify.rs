//! Judging each selected update from the patched image.
//!
//! The evidence, gathered by the verify-phase probes on the patched root:
//! the distributions' METADATA read again (the version must be exactly the
//! one planned, and only one `.dist-info` of the name may remain in its
//! directory), `pip check`'s rules in every environment touched (its
//! complaints that involve a patched package and were not there before: a
//! requirement the old version met and the new one does not, or a
//! requirement of the new version itself), and an import of each patched
//! distribution's top-level modules (from `top_level.txt`, else its RECORD):
//! one `python -c` per interpreter for both ([`crate::imports`]).
//! Environments without pip get caulk's own dependency check from METADATA
//! instead; those without a runnable interpreter get no import check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::str::FromStr;

use crate::pep508::Requirement;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    Check, Fact, Outcome, OutcomeStatus, Question, SelectedUpdate, StepResult, Target, Update, VerifyRequest,
    VersionTarget,
};

use crate::conflict;
use crate::discover::{self, Image};
use crate::env::{self, Dist, Env};
use crate::error::PipError;
use crate::imports;
use crate::metadata;
use crate::name::{self, Version};
use crate::plan::{DIST_FILES, Settings, dist_file, dist_files_question, settings};
use crate::resolve::{self, CheckLine};

pub use crate::imports::IMPORT;

/// Most modules imported per distribution.
const MAX_MODULES: usize = 3;

/// The distributions the updates may have moved: by name, at the update's
/// location when it gives one, never a vendored copy.
fn touched<'i>(image: &'i Image, updates: &[Update]) -> Vec<&'i Dist> {
    let wanted: Vec<(String, Option<String>)> = updates
        .iter()
        .filter_map(|u| {
            let name = u.name.parse::<name::DistName>().ok()?;
            let location = match &u.location {
                Some(l) => Some(name::location(l).ok()?),
                None => None,
            };
            Some((name.normal().to_owned(), location))
        })
        .collect();
    image
        .dists
        .iter()
        .filter(|d| env::vendored_in(&d.site).is_none())
        .filter(|d| wanted.iter().any(|(n, l)| *n == d.normal && l.as_ref().is_none_or(|l| *l == d.site)))
        .collect()
}

/// The interpreter that imports a distribution at `site`, with the
/// `PYTHONPATH` it needs when the directory is not on its `sys.path`.
fn importer<'e>(image: &'e Image, site: &str) -> Option<(&'e Env, Option<String>)> {
    let owners = env::owners(&image.envs, site);
    let (_, env) = owners.into_iter().find(|(_, e)| e.facts.is_some())?;
    // A loose directory's `sys_path` is the directory itself, which the
    // interpreter borrowed for it does not see by itself.
    let loose = matches!(env.kind, env::EnvKind::Loose { .. });
    let extra = (loose || !env.sys_path.iter().any(|p| p == site)).then(|| site.to_owned());
    Some((env, extra))
}

/// Top-level modules of a distribution, from the dist-files facts.
fn modules(facts: &[Fact], dist: &Dist) -> Vec<String> {
    let top = dist_file(facts, &format!("{}/top_level.txt", dist.meta_dir));
    let record = dist_file(facts, &format!("{}/RECORD", dist.meta_dir));
    let mut found = metadata::top_level_modules(top, record);
    found.truncate(MAX_MODULES);
    found
}

/// Whether `pip check`'s rules judge the environment of a distribution at
/// a site its interpreter sees by itself: the interpreter has pip.
fn pip_checked(env: &Env, pythonpath: Option<&String>) -> bool {
    env.runs_pip() && pythonpath.is_none()
}

/// The verification runs: one batch per interpreter, of the distributions
/// whose files [`DIST_FILES`] read (those the updates touched; `verify`
/// has no updates to find them by), in the image's order; the first batch
/// of an interpreter with pip also checks its environment's requirements.
fn import_batches(image: &Image, facts: &[Fact], limit: u32) -> Vec<imports::Batch> {
    let read: BTreeSet<&str> =
        facts.files(DIST_FILES).iter().filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| dir)).collect();
    let mut batches: Vec<imports::Batch> = Vec::new();
    let mut checked: Vec<String> = Vec::new();
    for dist in image.dists.iter().filter(|d| read.contains(d.meta_dir.as_str())) {
        let Some((env, path)) = importer(image, &dist.site) else { continue };
        let Some(python) = env.python.clone() else { continue };
        if pip_checked(env, path.as_ref()) && !checked.contains(&python) {
            checked.push(python.clone());
        }
        let modules = modules(facts, dist);
        if modules.is_empty() {
            continue;
        }
        let entry = imports::Entry { id: dist.meta_dir.clone(), path, modules };
        match batches.iter_mut().find(|b| b.python == python && b.entries.len() < imports::MAX_ENTRIES) {
            Some(batch) => batch.entries.push(entry),
            None => batches.push(imports::Batch { python, entries: vec![entry], limit, deps: false }),
        }
    }
    for python in checked {
        match batches.iter_mut().find(|b| b.python == python) {
            Some(first) => first.deps = true,
            None => batches.push(imports::Batch { python, entries: Vec::new(), limit, deps: true }),
        }
    }
    batches
}

/// The verify-phase questions still to ask.
pub fn questions(target: &Target, updates: &[Update], facts: &[Fact], settings: &Settings) -> Vec<Question> {
    let pending: Vec<Question> =
        discover::pending(target, updates, facts).into_iter().filter(|q| !facts.answered(&q.id)).collect();
    if !pending.is_empty() {
        return pending;
    }
    let image = Image::from_facts(target, facts);
    let dists = touched(&image, updates);
    if !facts.answered(DIST_FILES) {
        return dist_files_question(&dists).into_iter().collect();
    }
    let mut out = imports::progress(&import_batches(&image, facts, settings.import_timeout), facts).pending;
    out.retain(|q| !facts.answered(&q.id));
    out
}

/// The outcome of every selected update.
pub fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, PipError> {
    let settings = settings(&request.options)?;
    let facts = &request.facts;
    if !discover::round_one_done(facts) {
        return Err(PipError::MissingFact { phase: "verify", id: discover::DISTS.to_owned() });
    }
    let image = Image::from_facts(&request.target, facts);
    let checked = imports::progress(&import_batches(&image, facts, settings.import_timeout), facts);
    Ok(request.selected.iter().map(|s| judge(&image, &checked, s, &request.steps)).collect())
}

fn judge(
    image: &Image,
    checked: &imports::Progress,
    selected: &SelectedUpdate,
    steps: &[StepResult],
) -> Outcome {
    let failed =
        |to, detail, checks| Outcome::of(selected, to, OutcomeStatus::Failed, detail).with_checks(checks);
    let normal = name::normalise(&selected.name);
    let wanted = match &selected.target {
        VersionTarget::Exactly(v) | VersionTarget::AtLeast(v) => v.parse::<Version>().ok(),
        VersionTarget::Newest => None,
    };
    let Some(wanted) = wanted else {
        return failed(
            None,
            format!("the plan's target for {} is not a PEP 440 version", selected.name),
            Vec::new(),
        );
    };
    let found: Vec<&Dist> = image
        .dists
        .iter()
        .filter(|d| d.normal == normal && env::vendored_in(&d.site).is_none())
        .filter(|d| selected.location.as_ref().is_none_or(|l| &d.site == l))
        .collect();
    let Some(dist) =
        found.iter().find(|d| d.version.as_ref() == Some(&wanted)).or_else(|| found.first()).copied()
    else {
        let place = selected.location.as_deref().unwrap_or("any environment");
        return failed(
            None,
            format!("{} is not installed in {place} after the steps{}", selected.name, because(steps)),
            Vec::new(),
        );
    };
    let same_site: Vec<&&Dist> = found.iter().filter(|d| d.site == dist.site).collect();
    let to = Some(dist.version_text.clone());
    if same_site.len() > 1 {
        let names: Vec<&str> = same_site.iter().map(|d| d.meta_name()).collect();
        return failed(
            to,
            format!(
                "{} holds {} distributions of {} ({}): the old one was not removed{}",
                dist.site,
                names.len(),
                selected.name,
                names.join(", "),
                because(steps)
            ),
            Vec::new(),
        );
    }
    let mut checks = vec![Check {
        name: "version".to_owned(),
        passed: dist.version.as_ref() == Some(&wanted),
        detail: format!("{} in {} reads {}", dist.meta_name(), dist.site, dist.version_text),
    }];
    if dist.version.as_ref() != Some(&wanted) {
        let moved = dist.version_text != selected.from;
        let detail = if moved {
            format!(
                "{} moved from {} to {}, not {wanted}{}",
                selected.name,
                selected.from,
                dist.version_text,
                because(steps)
            )
        } else {
            format!("{} stayed at {}, not {wanted}{}", selected.name, dist.version_text, because(steps))
        };
        return failed(to, detail, checks);
    }
    let mut notes = Vec::new();
    checks.extend(dependency_checks(image, &checked.deps, dist, selected, &mut notes));
    if importer(image, &dist.site).is_some_and(|(env, _)| env.python.is_some()) {
        if let Some(verdict) = checked.verdicts.get(&dist.meta_dir) {
            checks.extend(verdict.checks.iter().cloned());
            notes.extend(verdict.notes.iter().cloned());
        }
    } else {
        notes.push("no interpreter of the image can import it, so no import check".to_owned());
    }
    let failures: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    let mut detail = if failures.is_empty() {
        format!("{} {} → {wanted} in {}", selected.name, selected.from, dist.site)
    } else {
        let listed: Vec<String> = failures.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect();
        format!("{} is at {wanted}, but {}", selected.name, listed.join("; "))
    };
    if !notes.is_empty() {
        let _ = write!(detail, " ({})", notes.join("; "));
    }
    let status = if failures.is_empty() { OutcomeStatus::Patched } else { OutcomeStatus::Failed };
    Outcome::of(selected, to, status, detail).with_checks(checks)
}

/// What failed steps said, for a detail.
fn because(steps: &[StepResult]) -> String {
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s.exit_code != 0)
        .map(|s| format!("`{}` exited {}: {}", s.summary, s.exit_code, resolve::pip_error(&s.stderr_tail)))
        .collect();
    if failed.is_empty() { String::new() } else { format!("; {}", failed.join("; ")) }
}

fn meets_text(requirement: &str, version: &str) -> Option<bool> {
    let req = Requirement::from_str(requirement).ok()?;
    let v: Version = version.parse().ok()?;
    Some(conflict::meets(&req, &v))
}

/// `pip check`'s rules (or caulk's own check without pip), narrowed to
/// complaints about this distribution that its move caused.
fn dependency_checks(
    image: &Image,
    deps: &BTreeMap<String, imports::Deps>,
    dist: &Dist,
    selected: &SelectedUpdate,
    notes: &mut Vec<String>,
) -> Vec<Check> {
    let Some((env, pythonpath)) = importer(image, &dist.site)
        .or_else(|| env::owners(&image.envs, &dist.site).into_iter().next().map(|(_, e)| (e, None)))
    else {
        return Vec::new();
    };
    let normal = name::normalise(&selected.name);
    if pip_checked(env, pythonpath.as_ref()) {
        let python = env.python.clone().unwrap_or_default();
        return match deps.get(&python) {
            Some(Ok(said)) => {
                let lines = resolve::check_lines(said.join("\n").as_bytes());
                let (new, old) = attribute(&lines, &normal, &selected.from);
                let mut detail = if new.is_empty() {
                    format!("no broken requirement involves {} {}", selected.name, dist.version_text)
                } else {
                    new.join("; ")
                };
                if !old.is_empty() {
                    let _ = write!(detail, " (already unmet before: {})", old.join("; "));
                }
                vec![Check { name: "pip check".to_owned(), passed: new.is_empty(), detail }]
            }
            Some(Err(why)) => {
                notes.push(format!("pip check could not run: {why}"));
                Vec::new()
            }
            None => Vec::new(),
        };
    }
    let markers = env.markers(image.machine);
    let state = conflict::state(env::visible(env, &image.dists));
    let broken = conflict::broken(&state, std::slice::from_ref(&normal), markers.as_ref());
    let (new, old): (Vec<_>, Vec<_>) = broken.into_iter().partition(|b| {
        // A requirement on the package the old version met too was not
        // broken by the move.
        b.on != normal || meets_text(&b.requirement, &selected.from) != Some(false)
    });
    let new: Vec<String> = new.iter().map(conflict::Broken::describe).collect();
    let mut detail = if new.is_empty() {
        format!(
            "no broken requirement involves {} (from METADATA; {} has no pip)",
            selected.name,
            env.label()
        )
    } else {
        new.join("; ")
    };
    if !old.is_empty() {
        let _ = write!(
            detail,
            " (already unmet before: {})",
            old.iter().map(conflict::Broken::describe).collect::<Vec<_>>().join("; ")
        );
    }
    vec![Check { name: "dependency check".to_owned(), passed: new.is_empty(), detail }]
}

/// `pip check` lines about `normal`: (caused by the move, there before).
fn attribute(lines: &[CheckLine], normal: &str, from: &str) -> (Vec<String>, Vec<String>) {
    let mut new = Vec::new();
    let mut old = Vec::new();
    for line in lines {
        match line {
            CheckLine::Mismatch { dependent, requirement, name: required, .. } => {
                if name::normalise(dependent) == normal {
                    new.push(line.text());
                } else if name::normalise(required) == normal {
                    if meets_text(requirement, from) == Some(false) {
                        old.push(line.text());
                    } else {
                        new.push(line.text());
                    }
                }
            }
            CheckLine::Missing { dependent, .. } if name::normalise(dependent) == normal => {
                new.push(line.text());
            }
            CheckLine::Other(text) if text.to_ascii_lowercase().starts_with(&format!("{normal} ")) => {
                new.push(line.text());
            }
            _ => {}
        }
    }
    (new, old)
}
