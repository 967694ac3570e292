//! Package version comparison, following the package managers' own rules.
//!
//! Scanners report an installed version and the versions that fix a
//! vulnerability; updaters must decide whether a package is already fixed and
//! which candidate to install. Getting this wrong either leaves a vulnerable
//! package behind or "downgrades" one, so each scheme follows its tool exactly:
//!
//! | scheme           | rules of                                      |
//! |------------------|-----------------------------------------------|
//! | [`Scheme::Deb`]    | dpkg (`dpkg --compare-versions`)               |
//! | [`Scheme::Rpm`]    | rpm 4.15 and later (`rpmvercmp`, EVR compare)  |
//! | [`Scheme::Apk`]    | apk-tools (`apk version -t`)                   |
//! | [`Scheme::Python`] | PEP 440 (pip, `packaging.version`)             |
//! | [`Scheme::Npm`]    | SemVer 2.0 as npm's `semver` reads it, ranges too |
//!
//! Nothing here does I/O or panics, whatever the input: the same code runs
//! natively in the host and inside `wasm32-wasip2` plugins.
//!
//! ```
//! use std::cmp::Ordering;
//! use caulk_sdk::version::{compare, is_fixed_by, Scheme};
//!
//! assert_eq!(compare(Scheme::Deb, "1.0~rc1", "1.0")?, Ordering::Less);
//! // The scanner dropped the epoch of the fixed version; dpkg would not.
//! assert!(is_fixed_by(Scheme::Deb, "1:2.37.2-4ubuntu3.4", "2.37.2-4ubuntu3.4")?);
//! assert!(!is_fixed_by(Scheme::Deb, "1:2.37.2-4ubuntu3", "2.37.2-4ubuntu3.4")?);
//! # Ok::<(), caulk_sdk::version::VersionError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

pub mod apk;
pub mod deb;
pub mod npm;
pub mod python;
pub mod rpm;

/// A versioning scheme: whose rules decide the order of two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian packages (dpkg).
    Deb,
    /// RPM packages (rpm).
    Rpm,
    /// Alpine packages (apk-tools).
    Apk,
    /// Python distributions (PEP 440).
    Python,
    /// npm packages (SemVer 2.0).
    Npm,
}

impl Scheme {
    /// The scheme of a finding's ecosystem, ignoring ASCII case: `deb`,
    /// `rpm`, `apk`, `python` (or `pip`, `pypi`) and `npm` (or `node`,
    /// `nodejs`). Other ecosystems (go, ...) have no scheme here and give
    /// `None`.
    pub fn from_ecosystem(ecosystem: &str) -> Option<Self> {
        let ecosystem = ecosystem.trim();
        [
            ("deb", Self::Deb),
            ("rpm", Self::Rpm),
            ("apk", Self::Apk),
            ("python", Self::Python),
            ("pip", Self::Python),
            ("pypi", Self::Python),
            ("npm", Self::Npm),
            ("node", Self::Npm),
            ("nodejs", Self::Npm),
        ]
        .into_iter()
        .find(|(name, _)| ecosystem.eq_ignore_ascii_case(name))
        .map(|(_, scheme)| scheme)
    }

    /// The scheme's canonical ecosystem name (`deb`, `rpm`, `apk`, `python`,
    /// `npm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Rpm => "rpm",
            Self::Apk => "apk",
            Self::Python => "python",
            Self::Npm => "npm",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = VersionError;

    /// Same as [`Scheme::from_ecosystem`], with an error naming the
    /// ecosystem when it has no scheme.
    fn from_str(ecosystem: &str) -> Result<Self, Self::Err> {
        Self::from_ecosystem(ecosystem)
            .ok_or_else(|| VersionError::UnknownEcosystem { ecosystem: ecosystem.to_owned() })
    }
}

/// Why a version string is not a valid version of its scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Nothing but whitespace.
    Empty,
    /// Whitespace inside the version.
    Whitespace,
    /// A character the scheme never allows at this position (control and
    /// non-ASCII characters everywhere; for apk anything outside its grammar).
    Character {
        /// The offending character.
        found: char,
        /// Its byte offset in the trimmed version.
        at: usize,
    },
    /// The epoch is not a non-negative integer the tool can hold.
    Epoch {
        /// What is wrong with it.
        detail: &'static str,
    },
    /// A part of the version that must not be empty is empty.
    EmptyPart {
        /// Which part: `upstream version`, `revision`, `version`, `release`,
        /// ...
        part: &'static str,
    },
    /// An apk suffix other than `_alpha`, `_beta`, `_pre`, `_rc`, `_cvs`,
    /// `_svn`, `_git`, `_hg` or `_p`.
    Suffix {
        /// The suffix as written, without the underscore.
        suffix: String,
    },
    /// A number too large for the tool.
    TooLarge {
        /// Which part.
        part: &'static str,
    },
    /// Not a PEP 440 version; the parser's own explanation.
    Pep440 {
        /// The explanation of `pep440_rs`.
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::Whitespace => f.write_str("it contains whitespace"),
            Self::Character { found, at } => {
                write!(f, "character {found:?} at byte {at} is not allowed there")
            }
            Self::Epoch { detail } => write!(f, "the epoch {detail}"),
            Self::EmptyPart { part } => write!(f, "the {part} is empty"),
            Self::Suffix { suffix } => write!(
                f,
                "unknown suffix `_{suffix}` (apk knows _alpha, _beta, _pre, _rc, _cvs, _svn, _git, _hg, _p)"
            ),
            Self::TooLarge { part } => write!(f, "the {part} is too large"),
            Self::Pep440 { message } => f.write_str(message),
        }
    }
}

/// A version string that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionError {
    /// `version` is not a valid version of `scheme`.
    Invalid {
        /// The scheme whose rules it breaks.
        scheme: Scheme,
        /// The version string as given.
        version: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The ecosystem has no version scheme here.
    UnknownEcosystem {
        /// The ecosystem as given.
        ecosystem: String,
    },
}

impl VersionError {
    pub(crate) fn invalid(scheme: Scheme, version: &str, problem: Problem) -> Self {
        Self::Invalid { scheme, version: version.to_owned(), problem }
    }
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { scheme, version, problem } => {
                write!(f, "invalid {scheme} version {version:?}: {problem}")
            }
            Self::UnknownEcosystem { ecosystem } => {
                write!(f, "no version scheme for ecosystem {ecosystem:?} (known: deb, rpm, apk, python, npm)")
            }
        }
    }
}

impl std::error::Error for VersionError {}

/// Orders two versions of `scheme` the way its package manager does.
///
/// `Equal` means the tool considers them the same version, which need not
/// mean the same string (`1.0` and `1.00` are equal for dpkg).
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(match scheme {
        Scheme::Deb => a.parse::<deb::Version>()?.cmp(&b.parse()?),
        Scheme::Rpm => a.parse::<rpm::Evr>()?.cmp(&b.parse()?),
        Scheme::Apk => a.parse::<apk::Version>()?.cmp(&b.parse()?),
        Scheme::Python => a.parse::<python::Version>()?.cmp(&b.parse()?),
        Scheme::Npm => a.parse::<npm::Version>()?.cmp(&b.parse()?),
    })
}

/// `fixed` as scanners mean it for a package at `installed`: when `fixed`
/// has no epoch and `installed` has a non-zero one, `fixed` carries
/// `installed`'s epoch (deb and rpm). An epoch written in `fixed`, even `0:`,
/// is kept, and apk and Python versions come back unchanged.
///
/// Scanners take fixed versions from security trackers that often drop the
/// epoch: Ubuntu's tracker lists `2.37.2-4ubuntu3.4` as the fix for
/// `bsdutils 1:2.37.2-4ubuntu3`. Read literally, every version with epoch 1
/// would already be newer than the fix. The result is also the string an
/// updater must ask the package manager for (`bsdutils=1:2.37.2-4ubuntu3.4`).
///
/// Both versions must be valid for `scheme`.
pub fn with_epoch_of(scheme: Scheme, installed: &str, fixed: &str) -> Result<String, VersionError> {
    match scheme {
        Scheme::Deb => {
            let installed: deb::Version = installed.parse()?;
            let fixed: deb::Version = fixed.parse()?;
            Ok(fixed.with_epoch_of(&installed).to_string())
        }
        Scheme::Rpm => {
            let installed: rpm::Evr = installed.parse()?;
            let fixed: rpm::Evr = fixed.parse()?;
            Ok(fixed.with_epoch_of(&installed).to_string())
        }
        Scheme::Apk => {
            installed.parse::<apk::Version>()?;
            Ok(fixed.parse::<apk::Version>()?.to_string())
        }
        Scheme::Python => {
            installed.parse::<python::Version>()?;
            Ok(fixed.parse::<python::Version>()?.to_string())
        }
        Scheme::Npm => {
            installed.parse::<npm::Version>()?;
            Ok(fixed.parse::<npm::Version>()?.to_string())
        }
    }
}

/// Whether the package at `installed` already has the fix released as
/// `fixed`: `installed` is at or above `fixed`, with `fixed` read through
/// [`with_epoch_of`].
pub fn is_fixed_by(scheme: Scheme, installed: &str, fixed: &str) -> Result<bool, VersionError> {
    let ordering = match scheme {
        Scheme::Deb => {
            let installed: deb::Version = installed.parse()?;
            let fixed: deb::Version = fixed.parse()?;
            installed.cmp(&fixed.with_epoch_of(&installed))
        }
        Scheme::Rpm => {
            let installed: rpm::Evr = installed.parse()?;
            let fixed: rpm::Evr = fixed.parse()?;
            installed.cmp(&fixed.with_epoch_of(&installed))
        }
        Scheme::Apk | Scheme::Python | Scheme::Npm => compare(scheme, installed, fixed)?,
    };
    Ok(ordering != Ordering::Less)
}

/// Trims surrounding whitespace and rejects what no scheme accepts: nothing
/// left, whitespace inside, control characters.
fn trimmed(scheme: Scheme, version: &str) -> Result<&str, VersionError> {
    let text = version.trim();
    if text.is_empty() {
        return Err(VersionError::invalid(scheme, version, Problem::Empty));
    }
    for (at, found) in text.char_indices() {
        if found.is_whitespace() {
            return Err(VersionError::invalid(scheme, version, Problem::Whitespace));
        }
        if found.is_control() {
            return Err(VersionError::invalid(scheme, version, Problem::Character { found, at }));
        }
    }
    Ok(text)
}

/// Compares two runs of ASCII digits by numeric value, whatever their length.
fn cmp_digit_runs(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&d| d == b'0').count();
    digits.get(zeros..).unwrap_or_default()
}

/// The length of the run at the start of `bytes` whose bytes satisfy `pred`.
fn run_len(bytes: &[u8], pred: impl Fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&b| pred(b)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_map_to_schemes() {
        assert_eq!(Scheme::from_ecosystem("DEB"), Some(Scheme::Deb));
        assert_eq!(Scheme::from_ecosystem("pip"), Some(Scheme::Python));
        assert_eq!(Scheme::from_ecosystem("npm"), Some(Scheme::Npm));
        assert_eq!(Scheme::from_ecosystem("go"), None);
        let err = "go".parse::<Scheme>().unwrap_err();
        assert!(err.to_string().contains("\"go\""), "{err}");
        for scheme in [Scheme::Deb, Scheme::Rpm, Scheme::Apk, Scheme::Python, Scheme::Npm] {
            assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
        }
    }

    #[test]
    fn digit_runs_compare_by_value() {
        assert_eq!(cmp_digit_runs(b"010", b"9"), Ordering::Greater);
        assert_eq!(cmp_digit_runs(b"000", b""), Ordering::Equal);
        assert_eq!(cmp_digit_runs(b"99999999999999999999999", b"100000000000000000000000"), Ordering::Less);
    }
}
