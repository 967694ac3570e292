//! Judging each selected update from the patched rpm database.
//!
//! The evidence is `rpm -qa` on the patched image, `rpmdb --verifydb`
//! (a check on every outcome), the container manifests when the image has
//! them (a check that they name the new version; for an image without a
//! database, the manifest is the evidence), and how each step ended.
//! A package counts as patched when its lowest installed instance is at or
//! above the target in rpm's order ([`caulk_sdk::version::rpm`]).

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Check, Outcome, OutcomeStatus, SelectedUpdate, StepResult, VerifyRequest};
use caulk_sdk::verdict::{self, Found};

use crate::db::{Installed, MANIFEST_2};
use crate::error::RpmError;
use crate::image::query;
use crate::name::PackageName;
use crate::plan::check_options;
use crate::probe::{self, DB, MANIFESTS, VERIFYDB};

/// The outcome of every selected update.
pub fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, RpmError> {
    check_options(&request.options)?;
    let facts = &request.facts;
    if !facts.answered(DB) {
        return Err(RpmError::MissingFact { phase: "verify", id: DB, what: "/var/lib/rpm" });
    }
    let steps = Steps(&request.steps);
    let manifest =
        facts.files(MANIFESTS).iter().find(|f| f.path == MANIFEST_2).and_then(|f| f.contents.as_deref());
    let db = probe::located(facts);
    let installed = match (&db, manifest) {
        (Some(db), _) => query(facts, "verify", db).map_err(|e| e.to_string()),
        // An image without a database is judged by its manifest, which
        // the plan's step rewrote from the packages it unpacked.
        (None, Some(contents)) => {
            Installed::from_manifest(contents).map_err(|e| format!("{MANIFEST_2}: {e}"))
        }
        (None, None) => Err("the patched image has no rpm database".to_owned()),
    };
    let mut checks = Vec::new();
    if let Some(out) = facts.output(VERIFYDB) {
        let detail = String::from_utf8_lossy(&out.stderr).trim().chars().take(300).collect::<String>();
        checks.push(Check {
            name: "rpmdb --verifydb".into(),
            passed: out.exit_code == 0,
            detail: if out.exit_code == 0 { "the rpm database is consistent".into() } else { detail },
        });
    }
    // With a database, whether the manifest agrees with it.
    let manifest = manifest.filter(|_| db.is_some()).map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    Ok(request
        .selected
        .iter()
        .map(|selected| {
            let outcome = match &installed {
                Ok(installed) => judge(selected, installed, &steps),
                Err(why) => Outcome::of(
                    selected,
                    None,
                    OutcomeStatus::Failed,
                    format!("{why}{}", steps.because(&selected.name)),
                ),
            };
            let mut own = checks.clone();
            if let (Some(manifest), Some(to)) = (&manifest, &outcome.to) {
                own.push(manifest_check(manifest, &selected.name, to));
            }
            outcome.with_checks(own)
        })
        .collect())
}

/// Whether `container-manifest-2` lists `name` at `evr` (it writes
/// version-release without the epoch).
fn manifest_check(manifest: &str, name: &str, evr: &str) -> Check {
    let without_epoch = evr.split_once(':').map_or(evr, |(_, rest)| rest);
    let listed: Vec<&str> = manifest
        .lines()
        .filter_map(|l| {
            let mut fields = l.split('\t');
            (fields.next() == Some(name)).then(|| fields.next().unwrap_or_default())
        })
        .collect();
    let passed = listed.contains(&without_epoch);
    let detail = if passed {
        format!("{MANIFEST_2} lists {name} {without_epoch}")
    } else if listed.is_empty() {
        format!("{MANIFEST_2} does not list {name}")
    } else {
        format!("{MANIFEST_2} lists {name} {} but the rpm database has {without_epoch}", listed.join(", "))
    };
    Check { name: "container manifest".into(), passed, detail }
}

fn judge(selected: &SelectedUpdate, installed: &Installed, steps: &Steps<'_>) -> Outcome {
    let failed = |to, detail: String| Outcome::of(selected, to, OutcomeStatus::Failed, detail);
    let package: PackageName = match selected.name.parse() {
        Ok(package) => package,
        Err(e) => return failed(None, format!("{:?} is not an RPM package name: {e}", selected.name)),
    };
    let name = package.as_str();
    let Some(entry) = installed.lowest(name) else {
        return failed(None, format!("{name} is no longer installed after the steps{}", steps.because(name)));
    };
    let to = entry.evr.clone();
    let Some(now) = entry.version() else {
        return failed(
            Some(to.clone()),
            format!("the rpm database gives {name} the version {to:?}, which is not an RPM version"),
        );
    };
    verdict::judge(
        selected,
        Found {
            shown: &to,
            version: &now,
            trouble: steps.trouble(name),
            no_fix: "the image's repositories offer no fixed version",
        },
    )
}

/// How the steps went, as far as it explains an outcome.
struct Steps<'a>(&'a [StepResult]);

impl Steps<'_> {
    /// The failed steps that concern `name`: the upgrade that named it (or
    /// named no package), and the manifest rewrite.
    fn trouble(&self, name: &str) -> Option<String> {
        if self.0.is_empty() {
            return Some("no step ran".to_owned());
        }
        let failures: Vec<String> = self
            .0
            .iter()
            .filter(|s| s.exit_code != 0)
            .filter(|s| match s.summary.strip_prefix("upgrade: ") {
                Some(list) => list.starts_with("every package") || list.split(' ').any(|n| n == name),
                None => true,
            })
            .map(|s| {
                let label = s.summary.chars().take(80).collect::<String>();
                if s.exit_code == -1 {
                    return format!("step `{label}` was killed or did not start");
                }
                let lines = error_lines(&s.stderr_tail);
                let mut text = format!("step `{label}` failed (exit {})", s.exit_code);
                if !lines.is_empty() {
                    text.push_str(": ");
                    text.push_str(&lines);
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

/// dnf's and zypper's error lines (`Error:`, `Problem:`, the ` - ` lines
/// that explain an unsolvable request, `No match for argument`); the last
/// line when there are none.
fn error_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.starts_with("Error")
                || l.starts_with("Problem")
                || l.starts_with("- ")
                || l.starts_with("No match for argument")
                || l.starts_with("bwrap:")
        })
        .collect();
    let chosen = if errors.is_empty() { lines.last().copied().into_iter().collect() } else { errors };
    verdict::excerpt(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnf_errors_are_picked_out() {
        let stderr = "Last metadata expiration check: 0:00:01 ago.\nError: \n Problem: cannot install the best update candidate for package caulk-demo-1.0-1.x86_64\n  - nothing provides caulk-demo-libs = 1.2-1 needed by caulk-demo-1.2-1.x86_64\n";
        assert_eq!(
            error_lines(stderr),
            "Error: / Problem: cannot install the best update candidate for package caulk-demo-1.0-1.x86_64 / - nothing provides caulk-demo-libs = 1.2-1 needed by caulk-demo-1.2-1.x86_64"
        );
        assert_eq!(error_lines("just one line\nthe last\n"), "the last");
    }

    #[test]
    fn the_manifest_must_name_the_new_version() {
        let manifest = "caulk-data\t2.1-1\t1\t1\t(none)\t1\t10\tnoarch\t1\tcaulk-data-2.1-1.src.rpm\n";
        assert!(manifest_check(manifest, "caulk-data", "1:2.1-1").passed);
        let stale = manifest_check(manifest, "caulk-data", "1:2.2-1");
        assert!(!stale.passed);
        assert!(
            stale.detail.contains("lists caulk-data 2.1-1 but the rpm database has 2.2-1"),
            "{}",
            stale.detail
        );
    }
}
