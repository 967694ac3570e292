//! Reading what a dry run of pip (`pip install --dry-run --report -`, pip
//! 22.2 and later) says it would install, and what pip prints when it
//! refuses.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    install: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    metadata: Metadata,
    #[serde(default)]
    requested: bool,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    version: String,
    #[serde(default)]
    requires_dist: Option<Vec<String>>,
    #[serde(default)]
    requires_python: Option<String>,
}

/// One distribution the dry run would install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    pub requires: Vec<String>,
    pub requires_python: Option<String>,
    /// Named on the command line (not pulled in as a dependency).
    pub requested: bool,
}

/// The install list of a report on stdout, or `None` when stdout holds no
/// report.
pub fn report(stdout: &[u8]) -> Option<Vec<Resolved>> {
    let text = String::from_utf8_lossy(stdout);
    let start = text.find('{')?;
    let report: Report = serde_json::from_str(text[start..].trim_end()).ok()?;
    Some(
        report
            .install
            .into_iter()
            .map(|i| Resolved {
                name: i.metadata.name,
                version: i.metadata.version,
                requires: i.metadata.requires_dist.unwrap_or_default(),
                requires_python: i.metadata.requires_python,
                requested: i.requested,
            })
            .collect(),
    )
}

/// pip's own words for a failure: its `ERROR:` lines (the first few), else
/// the last line of stderr.
pub fn pip_error(stderr: &str) -> String {
    let errors: Vec<&str> =
        stderr.lines().map(str::trim).filter(|l| l.starts_with("ERROR:")).take(3).collect();
    let text = if errors.is_empty() {
        stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output").to_owned()
    } else {
        errors.join(" ")
    };
    crate::discover::truncate(&text, 600)
}

/// The lines of `pip check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckLine {
    /// `DEP VER has requirement REQ, but you have NAME VER.`
    Mismatch {
        dependent: String,
        dependent_version: String,
        requirement: String,
        name: String,
        version: String,
    },
    /// `DEP VER requires NAME, which is not installed.`
    Missing { dependent: String, dependent_version: String, name: String },
    /// Anything else pip says (`... is not supported on this platform`).
    Other(String),
}

/// Parses `pip check`'s stdout.
pub fn check_lines(stdout: &[u8]) -> Vec<CheckLine> {
    let text = String::from_utf8_lossy(stdout);
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No broken requirements") {
            continue;
        }
        if let Some((head, tail)) = line.split_once(" has requirement ")
            && let Some((requirement, have)) = tail.split_once(", but you have ")
            && let Some((dependent, dependent_version)) = head.rsplit_once(' ')
        {
            let have = have.trim_end_matches('.');
            if let Some((name, version)) = have.rsplit_once(' ') {
                out.push(CheckLine::Mismatch {
                    dependent: dependent.to_owned(),
                    dependent_version: dependent_version.to_owned(),
                    requirement: requirement.to_owned(),
                    name: name.to_owned(),
                    version: version.to_owned(),
                });
                continue;
            }
        }
        if let Some((head, tail)) = line.split_once(" requires ")
            && let Some(name) = tail.strip_suffix(", which is not installed.")
            && let Some((dependent, dependent_version)) = head.rsplit_once(' ')
        {
            out.push(CheckLine::Missing {
                dependent: dependent.to_owned(),
                dependent_version: dependent_version.to_owned(),
                name: name.to_owned(),
            });
            continue;
        }
        out.push(CheckLine::Other(line.to_owned()));
    }
    out
}

impl CheckLine {
    pub fn text(&self) -> String {
        match self {
            Self::Mismatch { dependent, dependent_version, requirement, name, version } => {
                format!(
                    "{dependent} {dependent_version} has requirement {requirement}, but you have {name} {version}"
                )
            }
            Self::Missing { dependent, dependent_version, name } => {
                format!("{dependent} {dependent_version} requires {name}, which is not installed")
            }
            Self::Other(text) => text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_output() {
        let lines = check_lines(
            b"requests 2.25.1 has requirement urllib3<1.27,>=1.21.1, but you have urllib3 2.0.7.\nfoo 1.0 requires bar, which is not installed.\n",
        );
        assert_eq!(lines.len(), 2);
        assert!(
            matches!(&lines[0], CheckLine::Mismatch { name, version, .. } if name == "urllib3" && version == "2.0.7")
        );
        assert!(matches!(&lines[1], CheckLine::Missing { name, .. } if name == "bar"));
        assert!(check_lines(b"No broken requirements found.\n").is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(
            pip_error(
                "Looking in indexes...\nERROR: Could not find a version that satisfies the requirement x==9\nERROR: No matching distribution found for x==9\n"
            ),
            "ERROR: Could not find a version that satisfies the requirement x==9 ERROR: No matching distribution found for x==9"
        );
    }
}
