//! Judging a selected update from the version a package database shows
//! after the steps.
//!
//! OS updaters (apk, rpm, ...) all answer the same question in verify: the
//! package was selected to reach a target; the database now shows a version;
//! did it move, did it reach the target, and if not, what do the steps say?
//! The version order is the ecosystem's (any [`Ord`] version type), and the
//! explanation of a failure is the updater's own (it knows its tools'
//! error messages); the verdict in between is the same everywhere, so it
//! lives here.

use std::str::FromStr;

use crate::update::{Outcome, OutcomeStatus, SelectedUpdate, VersionTarget};

/// What the updater found after the steps, for one selected package.
pub struct Found<'a, V> {
    /// The installed version as the database spells it (shown to people).
    pub shown: &'a str,
    /// The same version, parsed in the ecosystem's order.
    pub version: &'a V,
    /// Why the steps may have failed for this package (`None` when every
    /// step that concerns it succeeded).
    pub trouble: Option<String>,
    /// What to say when the steps succeeded but the package stayed below
    /// a fixed version: usually where the fixed version should have come
    /// from (`the image's repositories offer no fixed version`).
    pub no_fix: &'a str,
}

/// The outcome of `selected`, given what was found after the steps.
///
/// - A fixed version (`at-least` or `exactly`) that is reached is
///   `patched` when the package moved and `already-fixed` when it did not.
/// - `newest` is `patched` when the package moved; otherwise it failed
///   when a step failed and is `already-fixed` when none did (the
///   repositories had nothing newer).
/// - A `from` version that does not parse is compared as text: any change
///   counts as a move.
pub fn judge<V: FromStr + Ord>(selected: &SelectedUpdate, found: Found<'_, V>) -> Outcome {
    let Found { shown, version: now, trouble, no_fix } = found;
    let name = &selected.name;
    let from = &selected.from;
    let to = || Some(shown.to_owned());
    let outcome = |status, detail| Outcome::of(selected, to(), status, detail);
    let moved = from.parse::<V>().map_or(from != shown, |from| from != *now);
    match &selected.target {
        VersionTarget::AtLeast(fixed) | VersionTarget::Exactly(fixed) => {
            let exact = matches!(selected.target, VersionTarget::Exactly(_));
            let reached = fixed.parse::<V>().is_ok_and(|f| if exact { *now == f } else { *now >= f });
            if reached && moved {
                outcome(OutcomeStatus::Patched, format!("upgraded from {from} to {shown} (fixed in {fixed})"))
            } else if reached {
                outcome(
                    OutcomeStatus::AlreadyFixed,
                    format!("already at {shown}, at or above the fixed version {fixed}"),
                )
            } else {
                let head = if moved {
                    format!("{name} moved from {from} to {shown}, still below the fixed version {fixed}")
                } else {
                    format!("{name} stayed at {shown}, below the fixed version {fixed}")
                };
                let why = trouble.unwrap_or_else(|| format!("the steps succeeded but {no_fix}"));
                outcome(OutcomeStatus::Failed, format!("{head}; {why}"))
            }
        }
        VersionTarget::Newest if moved => {
            outcome(OutcomeStatus::Patched, format!("upgraded from {from} to {shown}"))
        }
        VersionTarget::Newest => match trouble {
            Some(trouble) => outcome(OutcomeStatus::Failed, format!("{name} stayed at {shown}; {trouble}")),
            None => outcome(
                OutcomeStatus::AlreadyFixed,
                format!("{name} stayed at {shown}: no newer version in the image's repositories"),
            ),
        },
    }
}

/// At most this many lines of a tool's error output go into an outcome,
/// and at most this many characters of them: enough to name the cause,
/// short enough for a summary table.
pub const MAX_LINES: usize = 4;
pub const MAX_CHARS: usize = 600;

/// `lines` joined with ` / `, cut to [`MAX_LINES`] and [`MAX_CHARS`].
pub fn excerpt<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    let lines: Vec<S> = lines.into_iter().take(MAX_LINES).collect();
    let text = lines.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" / ");
    if text.chars().count() > MAX_CHARS {
        text.chars().take(MAX_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::deb::Version;

    fn selected(from: &str, target: VersionTarget) -> SelectedUpdate {
        SelectedUpdate {
            ecosystem: "debian".into(),
            name: "libfoo".into(),
            location: None,
            from: from.into(),
            target,
            vulnerabilities: vec!["CVE-1".into()],
            rationale: None,
            passed_over: Vec::new(),
        }
    }

    fn run(from: &str, target: VersionTarget, now: &str, trouble: Option<&str>) -> Outcome {
        let version: Version = now.parse().unwrap();
        judge(
            &selected(from, target),
            Found {
                shown: now,
                version: &version,
                trouble: trouble.map(str::to_owned),
                no_fix: "no fix here",
            },
        )
    }

    #[test]
    fn verdicts_follow_the_version_order_not_the_text() {
        let at_least = |v: &str| VersionTarget::AtLeast(v.into());
        // 1.10 is above 1.9 in dpkg's order although it sorts below as text.
        let o = run("1.2", at_least("1.9"), "1.10", None);
        assert_eq!(
            (o.status, o.detail.as_str()),
            (OutcomeStatus::Patched, "upgraded from 1.2 to 1.10 (fixed in 1.9)")
        );
        let o = run("1.10", at_least("1.9"), "1.10", None);
        assert_eq!(o.status, OutcomeStatus::AlreadyFixed);
        // Epoch 0 written out or not is the same version: no move.
        let o = run("0:1.10", at_least("1.9"), "1.10", None);
        assert_eq!(o.status, OutcomeStatus::AlreadyFixed);
        let o = run("1.2", at_least("1.9"), "1.5", None);
        assert_eq!(o.status, OutcomeStatus::Failed);
        assert_eq!(
            o.detail,
            "libfoo moved from 1.2 to 1.5, still below the fixed version 1.9; the steps succeeded but no fix here"
        );
        let o = run("1.2", at_least("1.9"), "1.2", Some("step `x` failed (exit 1): E: boom"));
        assert_eq!(
            o.detail,
            "libfoo stayed at 1.2, below the fixed version 1.9; step `x` failed (exit 1): E: boom"
        );
    }

    #[test]
    fn exactly_means_equal() {
        let o = run("1.2", VersionTarget::Exactly("1.9".into()), "1.10", None);
        assert_eq!(o.status, OutcomeStatus::Failed);
        let o = run("1.2", VersionTarget::Exactly("1.9".into()), "1.9", None);
        assert_eq!(o.status, OutcomeStatus::Patched);
    }

    #[test]
    fn newest_fails_only_when_a_step_did() {
        assert_eq!(run("1.2", VersionTarget::Newest, "1.3", None).status, OutcomeStatus::Patched);
        assert_eq!(run("1.2", VersionTarget::Newest, "1.2", None).status, OutcomeStatus::AlreadyFixed);
        let o = run("1.2", VersionTarget::Newest, "1.2", Some("no step ran"));
        assert_eq!(
            (o.status, o.detail.as_str()),
            (OutcomeStatus::Failed, "libfoo stayed at 1.2; no step ran")
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(["a", "b", "c", "d", "e"]), "a / b / c / d");
        let long = "x".repeat(MAX_CHARS + 10);
        let cut = excerpt([long.as_str()]);
        assert_eq!(cut.chars().count(), MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
