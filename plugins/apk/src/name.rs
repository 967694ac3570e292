//! Package names from a report, checked before any of them can reach an
//! argv.
//!
//! A report is untrusted input: `--allow-untrusted` or `openssl; reboot`
//! must never get to `apk`, even as one argv element. apk-tools ends a name
//! at the first constraint operator (`<`, `>`, `=`, `~`) or repository pin
//! (`@`), and Alpine's abuild allows lowercase letters, digits and `+ - . _`;
//! some Wolfi packages carry uppercase letters. A name must start with a
//! letter or digit: a leading `-` would be an option, and a leading `.` is
//! the convention of virtual packages (`.build-deps`, and the `.caulk-*`
//! ones the plan makes), which no scanner reports.

use std::fmt;
use std::str::FromStr;

/// Longer than any package name in Alpine or Wolfi.
const MAX_NAME_LEN: usize = 128;

/// A validated apk package name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

/// Why a string is not an apk package name.
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
        for good in [
            "musl",
            "libssl3",
            "ca-certificates-bundle",
            "py3-setuptools",
            "libstdc++",
            "gdk-pixbuf2.0",
            "perl-Net-SSLeay",
            "ld-linux_x86-64",
        ] {
            assert_eq!(good.parse::<PackageName>().map(|n| n.to_string()).as_deref(), Ok(good));
        }
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("--allow-untrusted", NameError::Start { found: '-' }),
            (".caulk-openssl", NameError::Start { found: '.' }),
            ("openssl; reboot", NameError::Character { found: ';', at: 7 }),
            ("openssl>=0", NameError::Character { found: '>', at: 7 }),
            ("openssl@edge", NameError::Character { found: '@', at: 7 }),
            ("$(reboot)", NameError::Start { found: '$' }),
            ("so:libc.musl-x86_64.so.1", NameError::Character { found: ':', at: 2 }),
            ("a b", NameError::Character { found: ' ', at: 1 }),
            ("musl\n", NameError::Character { found: '\n', at: 4 }),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PackageName>().as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!("x".repeat(129).parse::<PackageName>(), Err(NameError::TooLong));
    }
}
