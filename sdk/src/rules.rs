//! Which fixed version a library moves to: Copa's `--library-patch-level`
//! rules, as a pure function of the installed version, the report's fixed
//! versions and the level, for any version scheme with release lines
//! ([`ReleaseLine`]: PEP 440 and npm's SemVer here).
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
//! A package the updater names as *always latest* (pip's `certifi`, a CA
//! bundle: older is never safer) takes its highest fixed version, whatever
//! the level.
//!
//! A fixed version not above the installed one is no candidate; when none
//! is, the package is already fixed. The other allowed fixes are kept, in
//! order of preference, as fall-backs for when the chosen one cannot be
//! installed (not published, excluded by the runtime it needs, refused by a
//! dependent).

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::update::PatchLevel;

/// A version scheme whose versions have release lines: an optional epoch,
/// then major and minor numbers.
pub trait ReleaseLine: Ord + Clone + std::fmt::Display {
    /// The epoch (`1!` in PEP 440); 0 where the scheme has none.
    fn epoch(&self) -> u64 {
        0
    }
    /// The first release number, when the version has one.
    fn major(&self) -> Option<u64>;
    /// The second release number, when the version has one.
    fn minor(&self) -> Option<u64>;
}

/// So callers holding references (`filter(|v| line(v) ...)`) need no `*`.
impl<T: ReleaseLine> ReleaseLine for &T {
    fn epoch(&self) -> u64 {
        (**self).epoch()
    }
    fn major(&self) -> Option<u64> {
        (**self).major()
    }
    fn minor(&self) -> Option<u64> {
        (**self).minor()
    }
}

impl ReleaseLine for pep440_rs::Version {
    fn epoch(&self) -> u64 {
        pep440_rs::Version::epoch(self)
    }
    fn major(&self) -> Option<u64> {
        self.release().first().copied()
    }
    fn minor(&self) -> Option<u64> {
        self.release().get(1).copied()
    }
}

impl ReleaseLine for crate::version::npm::Version {
    fn major(&self) -> Option<u64> {
        Some(crate::version::npm::Version::major(self))
    }
    fn minor(&self) -> Option<u64> {
        Some(crate::version::npm::Version::minor(self))
    }
}

/// Copa's `--library-patch-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patch,
    Minor,
    Major,
}

impl Level {
    /// As on the command line: `patch`, `minor`, `major`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Patch => "patch",
            Self::Minor => "minor",
            Self::Major => "major",
        }
    }
}

impl From<PatchLevel> for Level {
    fn from(level: PatchLevel) -> Self {
        match level {
            PatchLevel::Patch => Self::Patch,
            PatchLevel::Minor => Self::Minor,
            PatchLevel::Major => Self::Major,
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
pub fn class_of<V: ReleaseLine>(installed: &V, candidate: &V) -> Move {
    if installed.epoch() != candidate.epoch() {
        return Move::Major;
    }
    let same = |a: Option<u64>, b: Option<u64>| a.is_some() && a == b;
    if same(installed.major(), candidate.major()) && same(installed.minor(), candidate.minor()) {
        Move::Patch
    } else if same(installed.major(), candidate.major()) {
        Move::Minor
    } else {
        Move::Major
    }
}

/// Whether `level` lets a package move by `class` (an always-latest
/// package: always).
pub fn allowed(level: Level, class: Move, always_latest: bool) -> bool {
    always_latest
        || match level {
            Level::Patch => class == Move::Patch,
            Level::Minor => class <= Move::Minor,
            Level::Major => true,
        }
}

/// The release line of a version: its first two release numbers.
pub fn line<V: ReleaseLine>(version: &V) -> (u64, u64, u64) {
    (version.epoch(), version.major().unwrap_or(0), version.minor().unwrap_or(0))
}

/// The line spelt for people: `2.6.x`.
pub fn line_name<V: ReleaseLine>(version: &V) -> String {
    let (_, major, minor) = line(version);
    format!("{major}.{minor}.x")
}

/// One finding's fixed versions: several when the scanner listed
/// alternatives (`1.26.18, 2.0.7`: fixed in either line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<V> {
    pub vulnerability: String,
    pub fixed: Vec<V>,
}

/// Whether `version` fixes a finding: at or above the finding's fix in its
/// own release line when the finding names one there, otherwise at or
/// above every fix it lists (a version between two lines' fixes may still
/// be affected, so it does not count).
pub fn fixes<V: ReleaseLine>(version: &V, finding: &Finding<V>) -> bool {
    let own = finding.fixed.iter().filter(|f| line(f) == line(version)).max();
    match own {
        Some(fix) => version >= fix,
        None => finding.fixed.iter().all(|f| version >= f),
    }
}

/// What the rules decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick<V> {
    /// No fixed version is above the installed one.
    AlreadyFixed { highest: Option<V> },
    /// Fixes exist above the installed version, none within the level.
    OutOfReach { reason: String, passed_over: Vec<(V, String)> },
    /// The chosen fix and the fall-backs, best first.
    Chosen { order: Vec<V>, rule: String, passed_over: Vec<(V, String)> },
}

/// Applies the rules. `always_latest` names the package when the updater
/// exempts it from the level (pip: `certifi`), for the rationale.
pub fn pick<V: ReleaseLine>(
    installed: &V,
    findings: &[Finding<V>],
    level: Level,
    always_latest: Option<&str>,
) -> Pick<V> {
    let certifi = always_latest.is_some();
    let comma = findings.iter().any(|f| f.fixed.len() > 1);
    let mut above: Vec<(V, Move)> = Vec::new();
    let mut highest_listed: Option<V> = None;
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
    let order: Vec<V> = match &classes {
        None => above.iter().map(|(v, _)| v.clone()).collect(),
        Some(classes) => classes
            .iter()
            .flat_map(|class| above.iter().filter(move |(_, c)| c == class).map(|(v, _)| v.clone()))
            .collect(),
    };
    let passed_over_out_of_level: Vec<(V, String)> = above
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
    let rule = describe(level, always_latest, comma, &chosen, chosen_class, installed, &above);
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

fn allowance<V: ReleaseLine>(level: Level, installed: &V) -> String {
    let major = installed.major().unwrap_or(0);
    match level {
        Level::Patch => format!("{} only", line_name(installed)),
        Level::Minor => format!("{major}.x only"),
        Level::Major => "any version".to_owned(),
    }
}

fn describe<V: ReleaseLine>(
    level: Level,
    always_latest: Option<&str>,
    comma: bool,
    chosen: &V,
    class: Move,
    installed: &V,
    above: &[(V, Move)],
) -> String {
    if let Some(name) = always_latest {
        return format!("{name} always moves to its highest fixed version ({chosen}), whatever the level");
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
pub fn ascending_from<'a, V: ReleaseLine + 'a>(target: &V, published: impl Iterator<Item = &'a V>) -> Vec<V> {
    let mut above: Vec<V> = published.filter(|v| *v > target).cloned().collect();
    above.sort_by(V::cmp);
    above.dedup_by(|a, b| (*a).cmp(&*b) == Ordering::Equal);
    above
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> pep440_rs::Version {
        s.parse().unwrap()
    }

    fn n(s: &str) -> crate::version::npm::Version {
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

    #[test]
    fn npm_versions_take_the_same_rules() {
        assert_eq!(class_of(&n("4.17.15"), &n("4.17.21")), Move::Patch);
        assert_eq!(class_of(&n("1.2.5"), &n("1.3.0")), Move::Minor);
        let findings = [
            Finding { vulnerability: "CVE-2020-8203".into(), fixed: vec![n("4.17.19")] },
            Finding { vulnerability: "CVE-2021-23337".into(), fixed: vec![n("4.17.21")] },
            Finding { vulnerability: "GHSA-x".into(), fixed: vec![n("5.0.0")] },
        ];
        let Pick::Chosen { order, rule, passed_over } = pick(&n("4.17.15"), &findings, Level::Patch, None)
        else {
            panic!()
        };
        assert_eq!(order, [n("4.17.21"), n("4.17.19")]);
        assert!(rule.starts_with("patch level: the highest fixed version in 4.17.x (4.17.21)"), "{rule}");
        assert_eq!(passed_over[0].0, n("5.0.0"));
        let Pick::Chosen { order, .. } = pick(&n("4.17.15"), &findings, Level::Major, None) else { panic!() };
        assert_eq!(order[0], n("5.0.0"));
        let Pick::Chosen { rule, .. } = pick(&n("4.17.15"), &findings, Level::Patch, Some("caniuse-lite"))
        else {
            panic!()
        };
        assert!(rule.starts_with("caniuse-lite always moves to its highest fixed version (5.0.0)"), "{rule}");
        assert!(matches!(pick(&n("4.17.21"), &findings[..2], Level::Patch, None), Pick::AlreadyFixed { .. }));
    }
}
