//! Package names from a report, checked before any of them can reach an
//! argv.
//!
//! A report is untrusted input: `--nogpgcheck` or `openssl; reboot` must
//! never get to dnf, even as one argv element. RPM names in the
//! distributions' packaging guidelines use letters, digits and `+ - . _`;
//! a name must start with a letter or digit, so none is read as an option.
//! dnf and zypper read `*`, `?` and `[` in a package argument as a glob and
//! `<`, `>`, `=` as a version constraint, so those are refused too.

use std::fmt;
use std::str::FromStr;

/// Longer than any package name of Fedora, RHEL, SUSE or Azure Linux.
const MAX_NAME_LEN: usize = 128;

/// A validated RPM package name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

/// Why a string is not an RPM package name.
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
    use super::*;

    #[test]
    fn names_from_real_databases_parse() {
        for good in
            ["openssl-libs", "glibc", "libstdc++", "python3.11", "perl-Net-SSLeay", "xz_utils", "3proxy"]
        {
            assert_eq!(good.parse::<PackageName>().map(|n| n.to_string()).as_deref(), Ok(good));
        }
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("--nogpgcheck", NameError::Start { found: '-' }),
            ("openssl; reboot", NameError::Character { found: ';', at: 7 }),
            ("openssl>=0", NameError::Character { found: '>', at: 7 }),
            ("open*", NameError::Character { found: '*', at: 4 }),
            ("$(reboot)", NameError::Start { found: '$' }),
            ("/usr/bin/sh", NameError::Start { found: '/' }),
            ("a b", NameError::Character { found: ' ', at: 1 }),
            ("glibc\n", NameError::Character { found: '\n', at: 5 }),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PackageName>().as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!("x".repeat(129).parse::<PackageName>(), Err(NameError::TooLong));
    }
}
