//! Package names as package indexes compare them, and OS package names
//! checked before they can reach a package manager's argv.

use std::fmt;
use std::str::FromStr;

/// PEP 503 normalisation: runs of `-`, `_` and `.` become one `-`, and the
/// result is lowercased (`re.sub(r"[-_.]+", "-", name).lower()`), which is
/// how pip, PyPI and `packaging.utils.canonicalize_name` compare names.
///
/// It applies to any string, valid distribution name or not, so that names
/// read from an image compare the way pip compares them; leading and
/// trailing separators are kept, as in the PEP.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separators = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separators {
                out.push('-');
            }
            in_separators = true;
        } else {
            out.extend(c.to_lowercase());
            in_separators = false;
        }
    }
    out
}

/// Longer than any package name in Alpine, Wolfi, Fedora, RHEL, SUSE or
/// Azure Linux.
const MAX_NAME_LEN: usize = 128;

/// A validated OS package name (apk, RPM): letters, digits and `+ - . _`,
/// starting with a letter or digit so that it is never read as an option,
/// and free of the globs and constraint operators package managers read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

/// Why a string is not an OS package name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("it starts with {found:?}; a name starts with a letter or digit")]
    Start { found: char },
    #[error("character {found:?} at byte {at} is not allowed (only letters, digits, `+`, `-`, `.`, `_`)")]
    Character { found: char, at: usize },
}

impl PackageName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PackageName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let mut chars = text.char_indices();
        match chars.next() {
            None => return Err(NameError::Empty),
            Some((_, c)) if c.is_ascii_alphanumeric() => {}
            Some((_, found)) => return Err(NameError::Start { found }),
        }
        if let Some((at, found)) =
            chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')))
        {
            return Err(NameError::Character { found, at });
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::pep503;

    #[test]
    fn runs_of_separators_become_one_dash_and_case_folds() {
        assert_eq!(pep503("Jinja2"), "jinja2");
        assert_eq!(pep503("typing_extensions"), "typing-extensions");
        assert_eq!(pep503("zope.interface"), "zope-interface");
        assert_eq!(pep503("a__-.b"), "a-b");
        assert_eq!(pep503("A-_-B.-_C"), "a-b-c");
        assert_eq!(pep503("friendly-bard"), "friendly-bard");
        assert_eq!(pep503("FrIeNdLy-._.-bArD"), "friendly-bard");
    }

    #[test]
    fn ends_and_non_ascii_follow_the_pep_regex() {
        // `re.sub(r"[-_.]+", "-", "_x.").lower()` is "-x-".
        assert_eq!(pep503("_x."), "-x-");
        assert_eq!(pep503(""), "");
        assert_eq!(pep503("..."), "-");
        // Python's str.lower() folds non-ASCII letters too.
        assert_eq!(pep503("ÉCOLE_Ünï"), "école-ünï");
    }
}
