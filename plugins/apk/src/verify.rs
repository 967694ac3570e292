//! Judging each selected update from apk's installed database after the
//! steps.
//!
//! The evidence is the patched image's `/lib/apk/db/installed`, its world
//! file, and how each step ended (exit code and the end of its stderr). A
//! package counts as patched when its installed version is at or above the
//! target in apk-tools' order ([`caulk_sdk::version::apk`]); otherwise the
//! outcome says where it ended and why, from apk's `ERROR:` lines when a
//! step failed.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Outcome, OutcomeStatus, SelectedUpdate, StepResult, VerifyRequest};
use caulk_sdk::verdict::{self, Found};
use caulk_sdk::version::apk;

use crate::db::{INSTALLED_PATH, Installed, World};
use crate::error::ApkError;
use crate::name::PackageName;
use crate::plan::{check_options, not_installed};
use crate::probe::{INSTALLED, WORLD};

/// The outcome of every selected update.
pub fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, ApkError> {
    check_options(&request.options)?;
    if !request.facts.answered(INSTALLED) {
        return Err(ApkError::MissingFact { phase: "verify", id: INSTALLED, what: INSTALLED_PATH });
    }
    let installed = match request.facts.file(INSTALLED) {
        Some(bytes) => Some(Installed::parse(bytes)?),
        None => None,
    };
    let world = request.facts.file(WORLD).map(World::parse).unwrap_or_default();
    let steps = Steps(&request.steps);
    Ok(request.selected.iter().map(|s| judge(s, installed.as_ref(), &world, &steps)).collect())
}

fn judge(
    selected: &SelectedUpdate,
    installed: Option<&Installed>,
    world: &World,
    steps: &Steps<'_>,
) -> Outcome {
    let failed = |to, detail: String| Outcome::of(selected, to, OutcomeStatus::Failed, detail);
    let package: PackageName = match selected.name.parse() {
        Ok(package) => package,
        Err(e) => return failed(None, format!("{:?} is not an apk package name: {e}", selected.name)),
    };
    let name = package.as_str();
    let Some(installed) = installed else {
        return failed(None, format!("the patched image has no {INSTALLED_PATH}{}", steps.because(name)));
    };
    let Some(entry) = installed.get(name) else {
        return failed(
            None,
            format!("{} after the steps{}", not_installed(&package, installed), steps.because(name)),
        );
    };
    let to = entry.version.clone();
    let Ok(now) = to.parse::<apk::Version>() else {
        return failed(
            Some(to.clone()),
            format!("{INSTALLED_PATH} gives {name} the version {to:?}, which is not an apk version"),
        );
    };
    let leftover = world
        .leftovers()
        .into_iter()
        .find(|v| v.strip_prefix(crate::plan::VIRTUAL_PREFIX) == Some(name))
        .map(|v| format!(" (note: /etc/apk/world still lists {v}; `apk del {v}` in the image removes it)"))
        .unwrap_or_default();
    let outcome = verdict::judge(
        selected,
        Found {
            shown: &to,
            version: &now,
            trouble: steps.trouble(name),
            no_fix: "the image's repositories offer no fixed version (is the right branch in /etc/apk/repositories?)",
        },
    );
    Outcome { detail: outcome.detail + &leftover, ..outcome }
}

/// How the steps went, as far as it explains an outcome.
struct Steps<'a>(&'a [StepResult]);

impl Steps<'_> {
    /// The failed steps that concern `name`: its own add step, and every
    /// step not about one package (the index refresh, `apk upgrade`).
    fn trouble(&self, name: &str) -> Option<String> {
        if self.0.is_empty() {
            return Some("no step ran".to_owned());
        }
        let own = format!("apk add: upgrade {name} ");
        let failures: Vec<String> = self
            .0
            .iter()
            .filter(|s| s.exit_code != 0)
            .filter(|s| {
                s.summary.starts_with(&own)
                    || !(s.summary.starts_with("apk add:") || s.summary.starts_with("apk del:"))
            })
            .map(|s| {
                let label = s.summary.split_once(':').map_or(s.summary.as_str(), |(l, _)| l);
                if s.exit_code == -1 {
                    return format!("{label} was killed or did not start");
                }
                let lines = error_lines(&s.stderr_tail, name);
                let mut text = format!("{label} failed (exit {})", s.exit_code);
                if !lines.is_empty() {
                    text.push_str(": ");
                    text.push_str(&lines);
                    if let Some(meaning) = meaning(&lines) {
                        text.push_str(" — ");
                        text.push_str(meaning);
                    }
                }
                text
            })
            .collect();
        (!failures.is_empty()).then(|| failures.join("; "))
    }

    fn because(&self, name: &str) -> String {
        self.trouble(name).map(|t| format!("; {t}")).unwrap_or_default()
    }
}

/// apk's `ERROR:` lines (and the indented lines that explain an unsolvable
/// constraint), those naming `name` first; the last line when there are
/// none.
fn error_lines(stderr: &str, name: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let is_error = |l: &&str| l.starts_with("ERROR:") || l.starts_with("  ");
    let errors: Vec<(usize, &str)> = lines.iter().copied().enumerate().filter(|(_, l)| is_error(l)).collect();
    let mut naming: Vec<(usize, &str)> = errors.iter().copied().filter(|(_, l)| names(l, name)).collect();
    // `  libssl3-3.1.4-r5:` means little without the `ERROR:` line above it.
    if let Some(&(first, _)) = naming.first()
        && !naming.iter().any(|(_, l)| l.starts_with("ERROR:"))
        && let Some(&header) = errors.iter().rev().find(|(i, l)| *i < first && l.starts_with("ERROR:"))
    {
        naming.insert(0, header);
    }
    let chosen: Vec<&str> = if !naming.is_empty() {
        naming.into_iter().map(|(_, l)| l.trim()).collect()
    } else if !errors.is_empty() {
        errors.into_iter().map(|(_, l)| l.trim()).collect()
    } else {
        lines.last().map(|l| l.trim()).into_iter().collect()
    };
    verdict::excerpt(chosen)
}

/// Whether `line` names package `name` as a whole word (`libssl3` is not
/// named by `libssl3-dbg`; `libssl3-3.1.4-r5` names it).
fn names(line: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.');
    line.match_indices(name).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let rest = &line[at + name.len()..];
        let after_ok = match rest.chars().next() {
            None => true,
            Some('-') => rest[1..].starts_with(|c: char| c.is_ascii_digit()),
            Some(c) => !is_name_char(c),
        };
        !before.is_some_and(|c| is_name_char(c) || c == '-') && after_ok
    })
}

/// What apk's terser errors mean for a patch.
fn meaning(errors: &str) -> Option<&'static str> {
    const MEANINGS: &[(&str, &str)] = &[
        (
            "unable to select packages",
            "apk found no set of versions meeting every constraint: the repositories lack the fixed version, or \
             another package or a world entry holds an older one",
        ),
        ("UNTRUSTED signature", "the index is signed with a key missing from the image's /etc/apk/keys"),
        ("temporary error", "apk could not reach the repository (network or DNS); retrying later may work"),
        ("execvp", "the apk command could not be started in the step's root"),
        ("ERROR: /", "a repository path in /etc/apk/repositories does not exist"),
        (
            "script exited with error",
            "a package's install script failed; the step's output (-v) has its messages",
        ),
    ];
    MEANINGS.iter().find(|(needle, _)| errors.contains(needle)).map(|(_, meaning)| *meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_names_only() {
        assert!(names("ERROR: unable to select packages:", "unable"));
        assert!(names("  libssl3-3.1.4-r5:", "libssl3"));
        assert!(names("    libssl3>=3.1.4-r6 (no such package)", "libssl3"));
        assert!(!names("  libssl3-dbg-3.1.4-r5:", "libssl3"));
        assert!(!names("  xlibssl3-1", "libssl3"));
    }

    #[test]
    fn an_apk_that_cannot_start_is_named_as_such() {
        // What the real host's sandbox says when the image's apk will not run.
        let lines = error_lines("bwrap: execvp apk: No such file or directory\n", "musl");
        assert_eq!(lines, "bwrap: execvp apk: No such file or directory");
        assert_eq!(meaning(&lines), Some("the apk command could not be started in the step's root"));
    }
}
