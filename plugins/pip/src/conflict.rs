//! Dependency checks over an environment's installed distributions: which
//! `Requires-Dist` constraints a version move would break, evaluated as
//! `pip check` evaluates them (markers for the environment's interpreter
//! and platform, no extras, since the installed tree does not record which
//! extras anyone asked for).

use std::collections::BTreeMap;

use crate::pep508::{MarkerEnv, Requirement};

use crate::env::Dist;
use crate::name::Version;

/// One distribution as the checks see it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub version: Option<Version>,
    pub version_text: String,
    pub requires: Vec<Requirement>,
}

impl Node {
    pub fn from_dist(dist: &Dist) -> Self {
        Self {
            name: dist.name.clone(),
            version: dist.version.clone(),
            version_text: dist.version_text.clone(),
            requires: dist.requires.clone(),
        }
    }

    /// A distribution known from pip's report: name, version and
    /// `requires_dist` lines (those that do not parse are left out).
    pub fn from_report(name: &str, version: &str, requires: &[String]) -> Self {
        Self {
            name: name.to_owned(),
            version: version.parse().ok(),
            version_text: version.to_owned(),
            requires: requires.iter().filter_map(|r| r.parse::<Requirement>().ok()).collect(),
        }
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version_text)
    }
}

/// An environment's distributions by normalised name.
pub type State = BTreeMap<String, Node>;

pub fn state<'a>(dists: impl IntoIterator<Item = &'a Dist>) -> State {
    let mut state = State::new();
    for dist in dists {
        state.entry(dist.normal.clone()).or_insert_with(|| Node::from_dist(dist));
    }
    state
}

/// Whether a requirement applies in `markers` (see
/// [`crate::pep508::Marker::evaluate`] for an unknown environment).
pub fn applies(req: &Requirement, markers: Option<&MarkerEnv>) -> bool {
    req.applies(markers)
}

/// Whether `version` meets a requirement's specifiers. A URL requirement
/// names no version and is met by any.
pub fn meets(req: &Requirement, version: &Version) -> bool {
    req.allows(version)
}

/// `urllib3<1.27,>=1.21.1`: the requirement without markers, its
/// specifiers sorted as text the way `pip check` prints them.
pub fn spelt(req: &Requirement) -> String {
    req.spelt()
}

/// A constraint a dependent puts on a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// `azure-cli-core 2.40.0`.
    pub dependent: String,
    /// `paramiko<3.0.0,>=2.0.8`.
    pub requirement: String,
    /// Specifiers alone, to test versions.
    specs: Option<pep440_rs::VersionSpecifiers>,
}

impl Constraint {
    pub fn allows(&self, version: &Version) -> bool {
        self.specs.as_ref().is_none_or(|s| s.contains(version))
    }

    /// `azure-cli-core 2.40.0 requires paramiko<3.0.0,>=2.0.8; 3.4.0 not installed`.
    pub fn refusal(&self, version: &Version) -> String {
        format!("{} requires {}; {version} not installed", self.dependent, self.requirement)
    }
}

/// What every other distribution of `state` requires of `package`
/// (normalised), markers evaluated.
pub fn constraints_on(state: &State, package: &str, markers: Option<&MarkerEnv>) -> Vec<Constraint> {
    let mut out = Vec::new();
    for (normal, node) in state {
        if normal == package {
            continue;
        }
        for req in &node.requires {
            if req.normal() != package || !applies(req, markers) {
                continue;
            }
            let specs = req.specifiers.clone();
            out.push(Constraint { dependent: node.label(), requirement: spelt(req), specs });
        }
    }
    out
}

/// A requirement the state after a move does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The distribution whose requirement fails.
    pub dependent: String,
    pub dependent_normal: String,
    pub requirement: String,
    /// The required distribution (normalised).
    pub on: String,
    /// What is installed of it after the move, if anything.
    pub found: Option<String>,
}

impl Broken {
    pub fn describe(&self) -> String {
        match &self.found {
            Some(found) => {
                format!("{} requires {}; {found} would be installed", self.dependent, self.requirement)
            }
            None => format!("{} requires {}, which is not installed", self.dependent, self.requirement),
        }
    }
}

/// The requirements that fail in `after` and involve a changed
/// distribution (as the dependent or as the required one). Failures among
/// unchanged distributions were there before and are not the move's doing.
pub fn broken(after: &State, changed: &[String], markers: Option<&MarkerEnv>) -> Vec<Broken> {
    let mut out = Vec::new();
    for (normal, node) in after {
        let dependent_changed = changed.contains(normal);
        for req in &node.requires {
            let on = req.normal();
            if !(dependent_changed || changed.contains(&on)) || !applies(req, markers) {
                continue;
            }
            let found = after.get(&on);
            let ok = found.is_some_and(|f| f.version.as_ref().is_none_or(|v| meets(req, v)));
            if !ok {
                out.push(Broken {
                    dependent: node.label(),
                    dependent_normal: normal.clone(),
                    requirement: spelt(req),
                    on,
                    found: found.map(|f| f.version_text.clone()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::normalise;

    fn node(name: &str, version: &str, requires: &[&str]) -> (String, Node) {
        let reqs: Vec<String> = requires.iter().map(|r| (*r).to_owned()).collect();
        (normalise(name), Node::from_report(name, version, &reqs))
    }

    #[test]
    fn a_pinned_dependent_bounds_the_move() {
        let state: State = [
            node(
                "requests",
                "2.25.1",
                &["urllib3 (<1.27,>=1.21.1)", "PySocks (!=1.5.7,>=1.5.6) ; extra == 'socks'"],
            ),
            node("urllib3", "1.26.5", &[]),
        ]
        .into();
        let constraints = constraints_on(&state, "urllib3", None);
        assert_eq!(constraints.len(), 1);
        let v: Version = "2.0.7".parse().unwrap();
        assert!(!constraints[0].allows(&v));
        assert!(constraints[0].allows(&"1.26.18".parse().unwrap()));
        assert_eq!(
            constraints[0].refusal(&v),
            "requests 2.25.1 requires urllib3<1.27,>=1.21.1; 2.0.7 not installed"
        );
        assert!(constraints_on(&state, "pysocks", None).is_empty(), "extras do not count");
    }

    #[test]
    fn broken_after_a_move() {
        let mut after: State = [
            node("requests", "2.31.0", &["urllib3<3,>=1.21.1", "charset-normalizer<4,>=2"]),
            node("urllib3", "1.26.5", &[]),
        ]
        .into();
        let b = broken(&after, &["requests".to_owned()], None);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].describe(),
            "requests 2.31.0 requires charset-normalizer<4,>=2, which is not installed"
        );
        after.insert("charset-normalizer".into(), node("charset-normalizer", "3.2.0", &[]).1);
        assert!(broken(&after, &["requests".to_owned()], None).is_empty());
    }
}
