//! Which fixed version a library moves to: Copa's `--library-patch-level`
//! rules, as a pure function of the installed version, the report's fixed
//! versions and the level.
//!
//! Fixed versions above the installed one are sorted into classes by the
//! first two release numbers: a *patch* move keeps major and minor (2.6.0 →
//! 2.6.5), a *minor* move keeps the major (2.6.0 → 2.7.1), anything else is a
//! *major* move. Then:
//!
//! | level   | choice                                                             |
//! |---------|--------------------------------------------------------------------|
//! | `patch` | the highest patch-class fix; none: the update is out of reach      |
//! | `minor` | the highest patch-class fix, else the highest minor-class fix       |
//! | `major` | a finding listing several fixed versions (a comma list): patch, else minor, else major class, each its highest; otherwise the highest fix of all, so every vulnerability is fixed |
//!
//! `certifi` (a CA bundle: older is never safer) always takes its highest
//! fixed version, whatever the level.
//!
//! A fixed version not above the installed one is no candidate; when none
//! is, the package is already fixed. The other allowed fixes are kept, in
//! order of preference, as fall-backs for when the chosen one cannot be
//! installed (not published, excluded by `Requires-Python`, refused by a
//! dependent).

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::name::Version;

/// Copa's `--library-patch-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patch,
    Minor,
    Major,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Self::Patch => "patch",
            Self::Minor => "minor",
            Self::Major => "major",
        }
    }
}

/// How far a candidate moves from the installed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Move {
    Patch,
    Minor,
    Major,
}

impl Move {
    pub fn name(self) -> &'static str {
        match self {
            Self::Patch => "patch",
            Self::Minor => "minor",
            Self::Major => "major",
        }
    }
}

/// The class of moving from `installed` to `candidate`, by the first two
/// release numbers as Copa compares them (a one-number version has no
/// minor, so it is never a patch move).
pub fn class_of(installed: &Version, candidate: &Version) -> Move {
    let (a, b) = (installed.release(), candidate.release());
    if installed.epoch() != candidate.epoch() {
        return Move::Major;
    }
    if a.len() >= 2 && b.len() >= 2 && a[0] == b[0] && a[1] == b[1] {
        Move::Patch
    } else if !a.is_empty() && !b.is_empty() && a[0] == b[0] {
        Move::Minor
    } else {
        Move::Major
    }
}

/// Whether `level` lets a package move by `class` (certifi: always).
pub fn allowed(level: Level, class: Move, certifi: bool) -> bool {
    certifi
        || match level {
            Level::Patch => class == Move::Patch,
            Level::Minor => class <= Move::Minor,
            Level::Major => true,
        }
}

/// The release line of a version: its first two release numbers.
pub fn line(version: &Version) -> (u64, u64, u64) {
    let r = version.release();
    (version.epoch(), r.first().copied().unwrap_or(0), r.get(1).copied().unwrap_or(0))
}

/// The line spelt for people: `2.6.x`.
pub fn line_name(version: &Version) -> String {
    let (_, major, minor) = line(version);
    format!("{major}.{minor}.x")
}

/// One finding's fixed versions: several when the scanner listed
/// alternatives (`1.26.18, 2.0.7`: fixed in either line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub vulnerability: String,
    pub fixed: Vec<Version>,
}

/// Whether `version` fixes a finding: at or above the finding's fix in its
/// own release line when the finding names one there, otherwise at or
/// above every fix it lists (a version between two lines' fixes may still
/// be affected, so it does not count).
pub fn fixes(version: &Version, finding: &Finding) -> bool {
    let own = finding.fixed.iter().filter(|f| line(f) == line(version)).max();
    match own {
        Some(fix) => version >= fix,
        None => finding.fixed.iter().all(|f| version >= f),
    }
}

/// What the rules decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// No fixed version is above the installed one.
    AlreadyFixed { highest: Option<Version> },
    /// Fixes exist above the installed version, none within the level.
    OutOfReach { reason: String, passed_over: Vec<(Version, String)> },
    /// The chosen fix and the fall-backs, best first.
    Chosen { order: Vec<Version>, rule: String, passed_over: Vec<(Version, String)> },
}

/// Applies the rules. `certifi` is whether the package is certifi (by its
/// normalised name).
pub fn pick(installed: &Version, findings: &[Finding], level: Level, certifi: bool) -> Pick {
    let comma = findings.iter().any(|f| f.fixed.len() > 1);
    let mut above: Vec<(Version, Move)> = Vec::new();
    let mut highest_listed: Option<Version> = None;
    for fixed in findings.iter().flat_map(|f| &f.fixed) {
        if highest_listed.as_ref().is_none_or(|h| fixed > h) {
            highest_listed = Some(fixed.clone());
        }
        if fixed > installed && !above.iter().any(|(v, _)| v == fixed) {
            above.push((fixed.clone(), class_of(installed, fixed)));
        }
    }
    if above.is_empty() {
        return Pick::AlreadyFixed { highest: highest_listed };
    }
    // Highest first within a class.
    above.sort_by(|a, b| b.0.cmp(&a.0));

    // The preference order of classes; `None` means "highest of any class".
    let classes: Option<Vec<Move>> = if certifi {
        None
    } else {
        match level {
            Level::Patch => Some(vec![Move::Patch]),
            Level::Minor => Some(vec![Move::Patch, Move::Minor]),
            Level::Major if comma => Some(vec![Move::Patch, Move::Minor, Move::Major]),
            Level::Major => None,
        }
    };
    let order: Vec<Version> = match &classes {
        None => above.iter().map(|(v, _)| v.clone()).collect(),
        Some(classes) => classes
            .iter()
            .flat_map(|class| above.iter().filter(move |(_, c)| c == class).map(|(v, _)| v.clone()))
            .collect(),
    };
    let passed_over_out_of_level: Vec<(Version, String)> = above
        .iter()
        .filter(|(_, c)| !allowed(level, *c, certifi))
        .map(|(v, c)| {
            (
                v.clone(),
                format!(
                    "a {} upgrade from {installed}; --library-patch-level {} allows {}",
                    c.name(),
                    level.name(),
                    allowance(level, installed)
                ),
            )
        })
        .collect();
    let Some(chosen) = order.first().cloned() else {
        let listed: Vec<String> = above.iter().map(|(v, c)| format!("{v} ({})", c.name())).collect();
        let reason = format!(
            "no fixed version within --library-patch-level {} ({} from {installed}): the fixes are {}",
            level.name(),
            allowance(level, installed),
            listed.join(", ")
        );
        return Pick::OutOfReach { reason, passed_over: passed_over_out_of_level };
    };
    let chosen_class = class_of(installed, &chosen);
    let rule = describe(level, certifi, comma, &chosen, chosen_class, installed, &above);
    let mut passed_over = passed_over_out_of_level;
    for v in order.iter().skip(1) {
        let class = class_of(installed, v);
        let reason = match class.cmp(&chosen_class) {
            Ordering::Equal => format!("lower than {chosen}, the highest {} fix", chosen_class.name()),
            Ordering::Greater => {
                format!("a {} upgrade; the {} fix {chosen} is preferred", class.name(), chosen_class.name())
            }
            Ordering::Less => format!("lower than {chosen}"),
        };
        passed_over.push((v.clone(), reason));
    }
    passed_over.sort_by(|a, b| b.0.cmp(&a.0));
    Pick::Chosen { order, rule, passed_over }
}

fn allowance(level: Level, installed: &Version) -> String {
    let r = installed.release();
    let major = r.first().copied().unwrap_or(0);
    match level {
        Level::Patch => format!("{} only", line_name(installed)),
        Level::Minor => format!("{major}.x only"),
        Level::Major => "any version".to_owned(),
    }
}

fn describe(
    level: Level,
    certifi: bool,
    comma: bool,
    chosen: &Version,
    class: Move,
    installed: &Version,
    above: &[(Version, Move)],
) -> String {
    if certifi {
        return format!("certifi always moves to its highest fixed version ({chosen}), whatever the level");
    }
    let mut text = match (level, comma) {
        (Level::Patch, _) => {
            format!("patch level: the highest fixed version in {} ({chosen})", line_name(installed))
        }
        (Level::Minor, _) if class == Move::Patch => {
            format!(
                "minor level: a patch release preferred, the highest in {} ({chosen})",
                line_name(installed)
            )
        }
        (Level::Minor, _) => {
            format!(
                "minor level: no fix in {}; the highest fix within the major version ({chosen})",
                line_name(installed)
            )
        }
        (Level::Major, true) => format!(
            "major level with alternative fixed versions: the {} fix {chosen} preferred (patch over minor over major)",
            class.name()
        ),
        (Level::Major, false) => {
            format!("major level: the highest fixed version ({chosen}), so every vulnerability is fixed")
        }
    };
    let higher = above.iter().filter(|(v, _)| v > chosen).count();
    if higher > 0 && level != Level::Major {
        let _ = write!(text, "; {higher} higher fix(es) need a bigger move");
    }
    text
}

/// Orders candidate versions of one line: `target` first, then the
/// published versions above it in ascending order (the nearest release
/// that still carries the fix).
pub fn ascending_from<'a>(target: &Version, published: impl Iterator<Item = &'a Version>) -> Vec<Version> {
    let mut above: Vec<Version> = published.filter(|v| *v > target).cloned().collect();
    above.sort_by(Version::cmp);
    above.dedup_by(|a, b| (*a).cmp(&*b) == Ordering::Equal);
    above
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(&v("2.6.0"), &v("2.6.1")), Move::Patch);
        assert_eq!(class_of(&v("2.6"), &v("2.6.0.1")), Move::Patch);
        assert_eq!(class_of(&v("2.6.0"), &v("2.7.0")), Move::Minor);
        assert_eq!(class_of(&v("2.6.0"), &v("3.0.0")), Move::Major);
        assert_eq!(class_of(&v("2"), &v("2.1")), Move::Minor);
    }

    #[test]
    fn fixes_by_line() {
        let f = Finding { vulnerability: "A".into(), fixed: vec![v("1.26.18"), v("2.0.7")] };
        assert!(fixes(&v("1.26.18"), &f));
        assert!(fixes(&v("1.26.20"), &f));
        assert!(!fixes(&v("2.0.3"), &f));
        assert!(fixes(&v("2.2.0"), &f));
        assert!(!fixes(&v("1.27.0"), &f));
        assert!(!fixes(&v("1.26.17"), &f));
    }
}
