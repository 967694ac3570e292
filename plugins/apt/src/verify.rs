//! Judging each selected update from the dpkg database after the steps.
//!
//! The only evidence is the patched image's `/var/lib/dpkg/status` and how
//! each step ended (exit code and the end of its stderr). A package counts
//! as patched when every installed instance is at or above the target with
//! Debian's rules (see [`crate::fix`]); otherwise the outcome says where it
//! ended and the most likely reason, taken from a failed step's `E:` lines
//! when there is one.

use std::fmt::Write as _;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Outcome, OutcomeStatus, SelectedUpdate, StepResult, VerifyRequest, VersionTarget};
use caulk_sdk::version::deb;

use crate::error::AptError;
use crate::fix::{self, Verdict};
use crate::name::PackageName;
use crate::plan::{REUSED_MARK, check_options, lowest_version, not_installed};
use crate::probe::{DPKG_STATUS, DPKG_STATUS_D};
use crate::status::{Entry, STATUS_PATH, Status};

/// The outcome of every selected update.
pub fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, AptError> {
    check_options(&request.options)?;
    if !request.facts.answered(DPKG_STATUS) {
        return Err(AptError::MissingFact { phase: "verify", id: DPKG_STATUS, what: STATUS_PATH });
    }
    let status = match request.facts.file(DPKG_STATUS) {
        Some(bytes) => Some(Status::parse(bytes)?),
        None if crate::distroless::applies(&request.facts) => {
            Some(crate::distroless::read(request.facts.files(DPKG_STATUS_D))?.status)
        }
        None => None,
    };
    let steps = StepReport::new(&request.steps);
    let codename = request.target.os.as_ref().and_then(|os| os.version_codename.as_deref());
    let reused = steps.reused();
    Ok(request
        .selected
        .iter()
        .map(|s| {
            let mut outcome = judge(s, status.as_ref(), &steps, codename);
            if let Some(reused) = reused {
                let _ = write!(outcome.detail, "; {reused}");
            }
            outcome
        })
        .collect())
}

fn judge(
    selected: &SelectedUpdate,
    status: Option<&Status>,
    steps: &StepReport<'_>,
    codename: Option<&str>,
) -> Outcome {
    let failed = |to, detail: String| Outcome::of(selected, to, OutcomeStatus::Failed, detail);
    let package: PackageName = match selected.name.parse() {
        Ok(package) => package,
        Err(e) => return failed(None, format!("{:?} is not a Debian package name: {e}", selected.name)),
    };
    let Some(status) = status else {
        return failed(None, format!("the patched image has no {STATUS_PATH}{}", steps.because(None)));
    };
    let instances = status.installed(&package);
    let Some(to) = lowest_version(&instances) else {
        let detail = format!(
            "{} after the steps{}",
            not_installed(&package, status),
            steps.because(Some(package.name()))
        );
        return failed(None, detail);
    };
    let moved = !same_version(&selected.from, &to);
    let split = split_versions(&instances, &to);
    // dpkg stopped half-way (an unpack or a maintainer script failed): the
    // new files may be there, but the package is not configured.
    if let Some(broken) = instances.iter().find(|e| !e.is_configured()) {
        let detail = format!(
            "dpkg left {}:{} {} at {} (state {}, not configured){}",
            broken.name,
            broken.arch,
            if moved { "half-upgraded" } else { "broken" },
            broken.version.as_deref().unwrap_or("?"),
            broken.state,
            steps.because(Some(package.name()))
        );
        return failed(Some(to), detail);
    }
    match &selected.target {
        VersionTarget::AtLeast(fixed) => {
            let verdicts: Vec<(&Entry, Verdict)> =
                instances.iter().map(|e| (*e, fix::judge(e, fixed))).collect();
            if verdicts.iter().all(|(_, v)| v.is_fixed()) {
                return fixed_outcome(selected, to, moved, fixed);
            }
            let mut detail = if moved {
                format!(
                    "{package} moved from {} to {to}{split}, still below the fixed version {fixed}",
                    selected.from
                )
            } else {
                format!("{package} stayed at {to}{split}, below the fixed version {fixed}")
            };
            if let Some((entry, _)) = verdicts.iter().find(|(_, v)| *v == Verdict::VulnerableBySource)
                && let Some((source, version)) = &entry.source
            {
                let _ =
                    write!(detail, " (its source {source} is at {version}; the fix is a {source} version)");
            }
            detail.push_str(&steps.why_not_fixed(&package, moved, codename));
            failed(Some(to), detail)
        }
        VersionTarget::Exactly(wanted) => {
            if instances.iter().all(|e| e.version.as_deref().is_some_and(|v| same_version(v, wanted))) {
                return fixed_outcome(selected, to, moved, wanted);
            }
            let detail = format!(
                "{package} is at {to}{split}, not {wanted}{}",
                steps.why_not_fixed(&package, moved, codename)
            );
            failed(Some(to), detail)
        }
        VersionTarget::Newest => {
            if moved {
                let detail = format!("upgraded from {} to {to}{split}", selected.from);
                Outcome::of(selected, Some(to), OutcomeStatus::Patched, detail)
            } else if let Some(trouble) = steps.trouble(Some(package.name())) {
                // Without fresh indexes "nothing newer" is not known.
                let detail = format!("{package} stayed at {to}; {trouble}");
                failed(Some(to), detail)
            } else {
                // `apt-get upgrade` prints what it kept back on stdout only,
                // which verification does not see.
                let detail = format!(
                    "{package} stayed at {to}: no newer candidate in the image's apt sources, or kept back by apt \
                     (the upgrade step's output names those)"
                );
                Outcome::of(selected, Some(to), OutcomeStatus::AlreadyFixed, detail)
            }
        }
    }
}

fn fixed_outcome(selected: &SelectedUpdate, to: String, moved: bool, fixed: &str) -> Outcome {
    if moved {
        let detail = format!("upgraded from {} to {to} (fixed in {fixed})", selected.from);
        Outcome::of(selected, Some(to), OutcomeStatus::Patched, detail)
    } else {
        let detail = format!("already at {to}, at or above the fixed version {fixed}");
        Outcome::of(selected, Some(to), OutcomeStatus::AlreadyFixed, detail)
    }
}

/// Equal for dpkg (`1.0` and `0:1.0` are the same version).
fn same_version(a: &str, b: &str) -> bool {
    match (a.parse::<deb::Version>(), b.parse::<deb::Version>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// ` (libssl3:i386 at 3.0.20-1~deb12u2)` when the instances of a Multi-Arch
/// package ended at different versions.
fn split_versions(instances: &[&Entry], lowest: &str) -> String {
    if instances.len() < 2 {
        return String::new();
    }
    let parts: Vec<String> = instances
        .iter()
        .map(|e| format!("{}:{} at {}", e.name, e.arch, e.version.as_deref().unwrap_or("?")))
        .collect();
    if instances.iter().all(|e| e.version.as_deref().is_some_and(|v| same_version(v, lowest))) {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// How the steps went, as far as it explains an outcome.
struct StepReport<'a> {
    steps: &'a [StepResult],
}

impl<'a> StepReport<'a> {
    fn new(steps: &'a [StepResult]) -> Self {
        Self { steps }
    }

    /// `apt-get install failed (exit 100): E: …` for every failed step,
    /// preferring the lines that name `package`.
    fn failure(&self, package: Option<&str>) -> Option<String> {
        if self.steps.is_empty() {
            return Some("no step ran".to_owned());
        }
        let failures: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.exit_code != 0)
            .map(|s| {
                let label = label(s);
                if s.exit_code == -1 {
                    return format!("{label} was killed or did not start");
                }
                explained(
                    format!("{label} failed (exit {})", s.exit_code),
                    &error_lines(&s.stderr_tail, package),
                )
            })
            .collect();
        (!failures.is_empty()).then(|| failures.join("; "))
    }

    /// Index downloads that failed in steps that still exited 0: apt-get
    /// update only warns when a source cannot be reached, and the install
    /// then finds nothing newer.
    fn warnings(&self) -> Option<String> {
        let warnings: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.exit_code == 0)
            .filter_map(|s| {
                let lines: Vec<&str> = s
                    .stderr_tail
                    .lines()
                    .map(str::trim)
                    .filter(|l| {
                        l.starts_with("W:")
                            && (l.contains("Failed to fetch") || l.contains("failed to download"))
                    })
                    .collect();
                (!lines.is_empty())
                    .then(|| explained(format!("{} warned", label(s)), &caulk_sdk::verdict::excerpt(lines)))
            })
            .collect();
        (!warnings.is_empty()).then(|| warnings.join("; "))
    }

    /// What the refresh step said when it reused the shared indexes
    /// instead of running `apt-get update` (their age and the TTL).
    fn reused(&self) -> Option<&'a str> {
        self.steps.iter().flat_map(|s| s.stderr_tail.lines()).find_map(|line| {
            line.trim().starts_with(REUSED_MARK).then(|| line.trim().trim_start_matches("caulk: "))
        })
    }

    /// A failed step, or else a fetch warning.
    fn trouble(&self, package: Option<&str>) -> Option<String> {
        self.failure(package).or_else(|| self.warnings())
    }

    /// `; BECAUSE` when a step failed or warned, else nothing.
    fn because(&self, package: Option<&str>) -> String {
        self.trouble(package).map(|f| format!("; {f}")).unwrap_or_default()
    }

    /// Why a package is not at its fix: a failed step, a fetch warning, or
    /// else the image's sources.
    fn why_not_fixed(&self, package: &PackageName, moved: bool, codename: Option<&str>) -> String {
        if let Some(trouble) = self.trouble(Some(package.name())) {
            return format!("; {trouble}");
        }
        let suite = codename.map_or_else(|| "the security suite".to_owned(), |c| format!("{c}-security"));
        if moved {
            "; the newest candidate in the image's apt sources is older than the fix".to_owned()
        } else {
            format!(
                "; the steps succeeded but the image's apt sources offer no newer version (is {suite} in \
                 /etc/apt/sources.list or /etc/apt/sources.list.d?)"
            )
        }
    }
}

/// `apt-get install` from `apt-get install: upgrade …`.
fn label(step: &StepResult) -> &str {
    step.summary.split_once(':').map_or(step.summary.as_str(), |(label, _)| label)
}

/// `HEAD: LINES — MEANING`.
fn explained(head: String, lines: &str) -> String {
    let mut text = head;
    if !lines.is_empty() {
        text.push_str(": ");
        text.push_str(lines);
        if let Some(meaning) = meaning(lines) {
            text.push_str(" — ");
            text.push_str(meaning);
        }
    }
    text
}

/// The `E:` and `dpkg:` lines of a step's stderr, those naming `package`
/// first; the last line when there are none.
fn error_lines(stderr: &str, package: Option<&str>) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let errors: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with("E:") || l.starts_with("dpkg:")).collect();
    let naming: Vec<&str> =
        package.map(|p| errors.iter().copied().filter(|l| names(l, p)).collect()).unwrap_or_default();
    let chosen: Vec<&str> = if !naming.is_empty() {
        naming
    } else if !errors.is_empty() {
        errors
    } else {
        lines.last().copied().into_iter().collect()
    };
    caulk_sdk::verdict::excerpt(chosen)
}

/// Whether `line` names `package` as a whole word (`libssl3` is not named by
/// `libssl3-dev`).
fn names(line: &str, package: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.');
    line.match_indices(package).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + package.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(|c| is_name_char(c) && c != '.')
    })
}

/// What apt's terser errors mean for a patch.
fn meaning(errors: &str) -> Option<&'static str> {
    const MEANINGS: &[(&str, &str)] = &[
        (
            "Packages need to be removed but remove is disabled",
            "the upgrade would remove other packages (often another architecture of a Multi-Arch: same \
             library that has no matching update), and caulk never removes packages",
        ),
        (
            "you have held broken packages",
            "apt found no consistent set of versions (an unmet dependency, or a Multi-Arch: same library \
             whose other architectures have no matching update)",
        ),
        ("Unable to locate package", "apt's indexes do not know the package (did apt-get update fail?)"),
        ("has no installation candidate", "no source configured in the image offers the package"),
        ("Held packages were changed", "the package is held; `apt-mark unhold` it in the image"),
        ("Temporary failure resolving", "the step had no working DNS or network"),
        (
            "Sub-process /usr/bin/dpkg returned an error code",
            "dpkg failed; the step's output (-v) has its messages",
        ),
        ("Mirror sync in progress", "the mirror was mid-sync; retrying later usually works"),
    ];
    MEANINGS.iter().find(|(needle, _)| errors.contains(needle)).map(|(_, meaning)| *meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_prefer_the_package() {
        let stderr =
            "W: something\nE: Unable to locate package nosuchpkg\nE: Unable to locate package other\n";
        assert_eq!(error_lines(stderr, Some("nosuchpkg")), "E: Unable to locate package nosuchpkg");
        assert_eq!(
            error_lines(stderr, Some("openssl")),
            "E: Unable to locate package nosuchpkg / E: Unable to locate package other"
        );
        assert_eq!(error_lines("debconf: delaying\nfinal words\n", None), "final words");
        assert_eq!(error_lines("", None), "");
    }

    #[test]
    fn whole_names_only() {
        assert!(names("dpkg: error processing package libssl3:amd64 (--configure):", "libssl3"));
        assert!(names("E: Unable to locate package libssl3", "libssl3"));
        assert!(names("E: Package 'libssl3' has no installation candidate", "libssl3"));
        assert!(names("end of sentence libssl3.", "libssl3"));
        assert!(!names("E: Unable to locate package libssl3-dev", "libssl3"));
        assert!(!names("E: Unable to locate package xlibssl3", "libssl3"));
    }
}
