//! Python distribution versions, ordered by PEP 440 through `pep440_rs`.
//!
//! `1!` epochs, `.devN` < `aN` < `bN` < `rcN` < release < `.postN`, release
//! numbers padded with zeros (`1.0` equals `1.0.0`) and local versions
//! (`1.0` < `1.0+local`) all follow the specification, as pip applies it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Problem, Scheme, VersionError, trimmed};

/// A PEP 440 version, keeping the text it was parsed from.
///
/// Legacy versions that are not PEP 440 (which pip no longer accepts
/// either) are errors. Equality is PEP 440's: `1.0` equals `1.0.0`.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    parsed: pep440_rs::Version,
}

impl Version {
    /// The version as written, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed version, for release segments, pre-release flags and the
    /// like.
    pub fn pep440(&self) -> &pep440_rs::Version {
        &self.parsed
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = trimmed(Scheme::Python, input)?;
        let parsed = text.parse::<pep440_rs::Version>().map_err(|err| {
            VersionError::invalid(Scheme::Python, input, Problem::Pep440 { message: err.to_string() })
        })?;
        Ok(Self { text: text.to_owned(), parsed })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parsed.cmp(&other.parsed)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_explains_errors() {
        let v: Version = " 1.0.POST1 ".parse().unwrap();
        assert_eq!(v.to_string(), "1.0.POST1");
        assert_eq!(v.pep440().post(), Some(1));
        let err = "1.0-foo+".parse::<Version>().unwrap_err().to_string();
        assert!(err.starts_with("invalid python version \"1.0-foo+\": "), "{err}");
    }
}
