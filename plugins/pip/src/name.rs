//! Checking what reports and images say before any of it reaches an argv:
//! distribution names (PEP 508), versions (PEP 440) and locations.
//!
//! A name that passes starts with a letter or digit, so it can never be read
//! as an option; a version is re-spelt in its normalised PEP 440 form
//! (`1.0.0rc1`), which only holds `[0-9a-z.!+]`; a location is an absolute
//! path without `..`, glob characters or control characters, so it can
//! neither escape nor widen a file probe.

use std::fmt;
use std::str::FromStr;

/// Longest name accepted; PyPI's longest names are far below it.
pub const MAX_NAME: usize = 200;
/// Longest location accepted.
pub const MAX_LOCATION: usize = 4096;

/// Why a string is not a distribution name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_NAME} characters")]
    TooLong,
    #[error("it must start and end with an ASCII letter or digit")]
    Ends,
    #[error("{0:?} is not allowed (PEP 508 names hold ASCII letters, digits, `.`, `_` and `-`)")]
    Character(char),
}

/// A distribution name as PEP 508 allows it, with its PEP 503 normal form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DistName {
    given: String,
    normal: String,
}

impl DistName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// Lowercase, runs of `-`, `_` and `.` turned into one `-`: how pip and
    /// PyPI compare names.
    pub fn normal(&self) -> &str {
        &self.normal
    }
}

impl fmt::Display for DistName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

impl FromStr for DistName {
    type Err = NameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME {
            return Err(NameError::TooLong);
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::Character(bad));
        }
        let bytes = name.as_bytes();
        if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return Err(NameError::Ends);
        }
        Ok(Self { given: name.to_owned(), normal: normalise(name) })
    }
}

/// PEP 503 normalisation of any string (invalid names included, for
/// comparing what the image holds): the SDK's, which the host uses too.
pub use caulk_sdk::names::pep503 as normalise;

/// A PEP 440 version, kept as parsed; `Display` gives the normalised form.
pub type Version = pep440_rs::Version;

/// Parses a version from a report or the image; the error text explains.
pub fn version(text: &str) -> Result<Version, String> {
    if text.len() > 128 {
        return Err("it is longer than 128 characters".to_owned());
    }
    if text.chars().any(char::is_control) {
        return Err("it contains control characters".to_owned());
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("it is empty".to_owned());
    }
    if trimmed != text {
        return Err("it has surrounding whitespace".to_owned());
    }
    trimmed.parse::<Version>().map_err(|e| format!("it is not a PEP 440 version ({e})"))
}

/// Why a location is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("it is not an absolute path")]
    Relative,
    #[error("it is longer than {MAX_LOCATION} bytes")]
    TooLong,
    #[error("it contains a `..` component")]
    Parent,
    #[error("it contains {0:?}, which file probes read as a glob or which no path should hold")]
    Character(char),
}

/// Checks a report's location and returns it without a trailing `/` and
/// with `.` components and doubled slashes removed.
pub fn location(text: &str) -> Result<String, LocationError> {
    if !text.starts_with('/') {
        return Err(LocationError::Relative);
    }
    if text.len() > MAX_LOCATION {
        return Err(LocationError::TooLong);
    }
    if let Some(bad) =
        text.chars().find(|c| c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\'))
    {
        return Err(LocationError::Character(bad));
    }
    let mut clean = String::with_capacity(text.len());
    for part in text.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(LocationError::Parent);
        }
        clean.push('/');
        clean.push_str(part);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    Ok(clean)
}

/// Whether `module` may be imported by name: dotted Python identifiers
/// (ASCII only: what wheels name their top-level packages).
pub fn is_module_name(module: &str) -> bool {
    !module.is_empty()
        && module.len() <= 200
        && module.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n: DistName = "Typing_Extensions".parse().unwrap();
        assert_eq!(n.normal(), "typing-extensions");
        assert_eq!(normalise("zope.interface"), "zope-interface");
        assert_eq!(normalise("a__-.b"), "a-b");
        for bad in ["", "-r", "a b", "a;b", "requests[socks]", "a==1", "x-", "é"] {
            assert!(bad.parse::<DistName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_are_normalised() {
        assert_eq!(version("1.0.0-RC1").unwrap().to_string(), "1.0.0rc1");
        assert!(version("1.0; rm -rf /").is_err());
        assert!(version(" 1.0").is_err());
        assert!(version("--index-url=x").is_err());
    }

    #[test]
    fn locations() {
        assert_eq!(location("/usr//lib/./python3/").unwrap(), "/usr/lib/python3");
        assert_eq!(location("/a/../b"), Err(LocationError::Parent));
        assert_eq!(location("usr/lib"), Err(LocationError::Relative));
        assert_eq!(location("/opt/**"), Err(LocationError::Character('*')));
        assert!(is_module_name("yaml._yaml"));
        assert!(!is_module_name("os; import x"));
        assert!(!is_module_name("1abc"));
    }
}
