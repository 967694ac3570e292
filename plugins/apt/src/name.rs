//! Package names from a report, checked against Debian policy before any of
//! them can reach an argv.
//!
//! A report is untrusted input: a name such as `-oAPT::Get::AllowUnauthenticated=1`
//! or `openssl; rm -rf /` must never get to `apt-get`, even as a single argv
//! element. Debian policy (§5.6.1) allows lowercase letters, digits, `+`, `-`
//! and `.`, at least two characters, starting with a letter or digit; dpkg and
//! scanners may add `:ARCH` (`libssl3:amd64`).

use std::fmt;
use std::str::FromStr;

/// Longer than any name in Debian or Ubuntu (the longest is about 70).
const MAX_NAME_LEN: usize = 200;

/// A binary package name, optionally qualified with an architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageName {
    name: String,
    arch: Option<String>,
}

/// Why a string is not a Debian package name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("it has fewer than two characters")]
    TooShort,
    #[error("it starts with {found:?}; a name starts with a lowercase letter or digit")]
    Start { found: char },
    #[error("character {found:?} at byte {at} is not allowed (only a-z, 0-9, `+`, `-`, `.`)")]
    Character { found: char, at: usize },
    #[error("architecture {arch:?} after `:` is not an architecture name (a-z, 0-9, `-`)")]
    Arch { arch: String },
}

impl PackageName {
    /// The name without architecture.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The architecture after `:`, when given.
    pub fn arch(&self) -> Option<&str> {
        self.arch.as_deref()
    }

    /// The same package, any architecture.
    #[must_use]
    pub fn without_arch(&self) -> Self {
        Self { name: self.name.clone(), arch: None }
    }
}

impl FromStr for PackageName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let (name, arch) = match text.split_once(':') {
            Some((name, arch)) => (name, Some(arch)),
            None => (text, None),
        };
        check_name(name)?;
        if let Some(arch) = arch
            && !is_arch(arch)
        {
            return Err(NameError::Arch { arch: arch.to_owned() });
        }
        Ok(Self { name: name.to_owned(), arch: arch.map(str::to_owned) })
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.arch {
            Some(arch) => write!(f, "{}:{arch}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn check_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err(NameError::Empty),
        Some((_, c)) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        Some((_, found)) => return Err(NameError::Start { found }),
    }
    for (at, found) in chars {
        if !(found.is_ascii_lowercase() || found.is_ascii_digit() || matches!(found, '+' | '-' | '.')) {
            return Err(NameError::Character { found, at });
        }
    }
    if name.len() < 2 {
        return Err(NameError::TooShort);
    }
    Ok(())
}

/// Debian architecture names: `amd64`, `arm64`, `i386`, `all`, `hurd-i386`.
pub fn is_arch(arch: &str) -> bool {
    !arch.is_empty()
        && arch.len() <= 32
        && arch.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && arch.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The Debian architecture of an OCI platform (GOARCH spelling), for images
/// whose dpkg database does not say.
pub fn debian_arch(architecture: &str, variant: Option<&str>) -> Option<&'static str> {
    Some(match (architecture, variant) {
        ("amd64", _) => "amd64",
        ("arm64", _) => "arm64",
        ("386", _) => "i386",
        ("arm", Some("v5" | "v6")) => "armel",
        ("arm", _) => "armhf",
        ("ppc64le", _) => "ppc64el",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64el",
        ("loong64", _) => "loong64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_real_dpkg_databases_parse() {
        for good in
            ["libssl3", "libssl3:amd64", "g++", "libstdc++6:i386", "perl-modules-5.36", "login.defs", "0ad"]
        {
            let parsed: PackageName = good.parse().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(parsed.to_string(), good);
        }
        let qualified: PackageName = "libssl3:i386".parse().unwrap();
        assert_eq!((qualified.name(), qualified.arch()), ("libssl3", Some("i386")));
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("-oAPT::Get::AllowUnauthenticated=1", NameError::Start { found: '-' }),
            ("--allow-downgrades", NameError::Start { found: '-' }),
            ("openssl; rm -rf /", NameError::Character { found: ';', at: 7 }),
            ("openssl rm", NameError::Character { found: ' ', at: 7 }),
            ("$(reboot)", NameError::Start { found: '$' }),
            ("libssl3`id`", NameError::Character { found: '`', at: 7 }),
            ("OpenSSL", NameError::Start { found: 'O' }),
            ("a", NameError::TooShort),
            ("libssl3:", NameError::Arch { arch: String::new() }),
            ("libssl3:amd64:i386", NameError::Arch { arch: "amd64:i386".into() }),
            ("libssl3:-x", NameError::Arch { arch: "-x".into() }),
            (":amd64", NameError::Empty),
            ("libssl3\n", NameError::Character { found: '\n', at: 7 }),
            ("libßsl", NameError::Character { found: 'ß', at: 3 }),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PackageName>().as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!("x".repeat(201).parse::<PackageName>(), Err(NameError::TooLong));
    }

    #[test]
    fn oci_platforms_map_to_debian_architectures() {
        assert_eq!(debian_arch("amd64", None), Some("amd64"));
        assert_eq!(debian_arch("arm", Some("v7")), Some("armhf"));
        assert_eq!(debian_arch("arm", Some("v6")), Some("armel"));
        assert_eq!(debian_arch("386", None), Some("i386"));
        assert_eq!(debian_arch("wasm", None), None);
    }
}
