//! From the rules' preference to one installable version: each fixed
//! version in the rules' order, then the later releases of its line that
//! carry the fix, is tried against what the index publishes (yanked
//! releases and pre-releases are passed over), the interpreter
//! (`Requires-Python`), every dependent's constraint, and what a dry run of
//! pip refused. The first that passes is chosen; each one refused is
//! recorded with why.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use caulk_sdk::update::{PassedOver, PublishedVersion};
use pep440_rs::VersionSpecifiers;

use crate::conflict::Constraint;
use crate::name::Version;
use crate::rules::{self, Finding, Level, Pick};

/// Most candidates listed as passed over for one update.
const MAX_PASSED_OVER: usize = 12;

/// What the index says, when it was asked.
#[derive(Debug, Clone)]
pub enum Published<'a> {
    Known { versions: &'a [PublishedVersion], indexes: String },
    Unknown { why: String },
}

/// The interpreter a candidate must suit.
#[derive(Debug, Clone, Default)]
pub struct Interpreter {
    /// `3.11.2`, when the interpreter ran.
    pub full: Option<Version>,
    /// `(3, 11)`, from the interpreter or a path.
    pub major_minor: Option<(u64, u64)>,
}

impl Interpreter {
    fn describe(&self) -> String {
        match (&self.full, self.major_minor) {
            (Some(v), _) => format!("Python {v}"),
            (None, Some((a, b))) => format!("Python {a}.{b}"),
            (None, None) => "an unknown Python".to_owned(),
        }
    }

    /// `Some(false)` when `requires_python` excludes this interpreter,
    /// `None` when it cannot be told.
    pub fn suits(&self, requires_python: &str) -> Option<bool> {
        let specs = VersionSpecifiers::from_str(requires_python).ok()?;
        if let Some(full) = &self.full {
            return Some(specs.contains(full));
        }
        let (a, b) = self.major_minor?;
        let low: Version = format!("{a}.{b}.0").parse().ok()?;
        let high: Version = format!("{a}.{b}.999").parse().ok()?;
        match (specs.contains(&low), specs.contains(&high)) {
            (true, true) => Some(true),
            (false, false) => Some(false),
            _ => None,
        }
    }
}

/// Everything one decision needs.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub package: &'a str,
    pub installed: &'a Version,
    pub findings: &'a [Finding],
    pub level: Level,
    pub certifi: bool,
    pub published: Published<'a>,
    pub interpreter: Interpreter,
    pub constraints: &'a [Constraint],
    /// Candidates a dry run refused, by normalised version, with why.
    pub refused: &'a BTreeMap<String, String>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    AlreadyFixed { reason: String },
    Skip { reason: String, passed_over: Vec<PassedOver> },
    Select { version: Version, rationale: String, passed_over: Vec<PassedOver> },
}

struct Tried {
    passed_over: Vec<PassedOver>,
    /// The most telling refusal: the first dependent's constraint, else the
    /// first refusal.
    main: Option<(String, bool)>,
    omitted: usize,
}

impl Tried {
    fn refuse(&mut self, version: &Version, reason: String, telling: bool) {
        if self.main.as_ref().is_none_or(|(_, was_telling)| telling && !was_telling) {
            self.main = Some((reason.clone(), telling));
        }
        if self.passed_over.len() < MAX_PASSED_OVER {
            self.passed_over.push(PassedOver { version: version.to_string(), reason });
        } else {
            self.omitted += 1;
        }
    }
}

/// Decides one update.
pub fn choose(request: &Request<'_>) -> Choice {
    let package = request.package;
    let installed = request.installed;
    let (order, rule, rule_passed) =
        match rules::pick(installed, request.findings, request.level, request.certifi) {
            Pick::AlreadyFixed { highest } => {
                let reason = match highest {
                    Some(h) => format!(
                        "{package} {installed} is already at or above every fixed version (highest {h})"
                    ),
                    None => format!("the report lists no fixed version for {package}"),
                };
                return Choice::AlreadyFixed { reason };
            }
            Pick::OutOfReach { reason, passed_over } => {
                return Choice::Skip {
                    reason: format!("{package} {installed}: {reason}"),
                    passed_over: to_passed(&passed_over),
                };
            }
            Pick::Chosen { order, rule, passed_over } => (order, rule, passed_over),
        };
    let mut tried = Tried { passed_over: Vec::new(), main: None, omitted: 0 };
    for target in &order {
        for candidate in candidates(request, target, &mut tried) {
            if let Some(reason) = refusal(request, &candidate) {
                let telling = reason.contains(" requires ");
                tried.refuse(&candidate, reason, telling);
                continue;
            }
            let mut rationale = rule.clone();
            if candidate != *target {
                let _ = write!(
                    rationale,
                    "; {candidate} is the first release of {} after {target} that can be installed",
                    line_of(request, target)
                );
            } else if target != &order[0] {
                let _ = write!(
                    rationale,
                    "; {} could not be installed, so the next preferred fix {candidate}",
                    order[0]
                );
            }
            if let Published::Unknown { why } = &request.published {
                let _ = write!(
                    rationale,
                    "; the index could not be asked ({why}), so the report's version is trusted"
                );
            }
            let mut passed_over = tried.passed_over;
            for (v, reason) in rule_passed.iter().filter(|(v, _)| v != &candidate) {
                if !passed_over.iter().any(|p| p.version == v.to_string()) {
                    passed_over.push(PassedOver { version: v.to_string(), reason: reason.clone() });
                }
            }
            return Choice::Select { version: candidate, rationale, passed_over };
        }
    }
    let main = tried.main.clone().map_or_else(|| "no candidate".to_owned(), |(m, _)| m);
    let mut reason = format!("{package} {installed} stays: {main}");
    let others = tried.passed_over.len() + tried.omitted;
    if others > 1 {
        let _ = write!(reason, " ({others} candidates considered, none installable; see passed-over)");
    }
    let mut passed_over = tried.passed_over;
    passed_over.extend(
        to_passed(&rule_passed).into_iter().filter(|p| !order.iter().any(|o| o.to_string() == p.version)),
    );
    Choice::Skip { reason, passed_over }
}

fn to_passed(list: &[(Version, String)]) -> Vec<PassedOver> {
    list.iter().map(|(v, r)| PassedOver { version: v.to_string(), reason: r.clone() }).collect()
}

fn line_of(request: &Request<'_>, target: &Version) -> String {
    if request.certifi { "certifi".to_owned() } else { rules::line_name(target) }
}

/// The versions to try for one fixed version: itself when published (or
/// when nothing is known), then later releases of its line (any later
/// release for certifi) within the level, ascending. Records on `tried` a
/// fixed version the index does not publish.
fn candidates(request: &Request<'_>, target: &Version, tried: &mut Tried) -> Vec<Version> {
    let Published::Known { versions, indexes } = &request.published else {
        return vec![target.clone()];
    };
    let parsed: Vec<(Version, &PublishedVersion)> =
        versions.iter().filter_map(|p| p.version.parse::<Version>().ok().map(|v| (v, p))).collect();
    let mut out = Vec::new();
    if parsed.iter().any(|(v, _)| v == target) {
        out.push(target.clone());
    } else {
        tried.refuse(target, format!("not published on {indexes}"), false);
    }
    let later = rules::ascending_from(
        target,
        parsed.iter().map(|(v, _)| v).filter(|v| {
            (request.certifi || rules::line(v) == rules::line(target))
                && rules::allowed(request.level, rules::class_of(request.installed, v), request.certifi)
                && (!v.any_prerelease() || target.any_prerelease())
        }),
    );
    out.extend(later);
    out
}

/// Why `candidate` cannot be installed, if it cannot.
fn refusal(request: &Request<'_>, candidate: &Version) -> Option<String> {
    if let Published::Known { versions, .. } = &request.published
        && let Some(p) =
            versions.iter().find(|p| p.version.parse::<Version>().ok().as_ref() == Some(candidate))
    {
        if p.yanked {
            return Some("yanked on the index".to_owned());
        }
        if let Some(rp) = &p.requires_python
            && request.interpreter.suits(rp) == Some(false)
        {
            return Some(format!(
                "requires Python {rp}; the environment has {}",
                request.interpreter.describe()
            ));
        }
    }
    if let Some(c) = request.constraints.iter().find(|c| !c.allows(candidate)) {
        return Some(c.refusal(candidate));
    }
    request.refused.get(&candidate.to_string()).cloned()
}
