//! RPM package versions (`[epoch:]version[-release]`), ordered as rpm 4.15
//! and later order them.
//!
//! Epochs compare as numbers, a missing epoch being 0. Version and release
//! compare with `rpmvercmp`: each string is cut into runs of ASCII digits and
//! runs of ASCII letters, everything else only separating them. Digit runs
//! compare as numbers and beat letter runs; letter runs compare as bytes.
//! `~` sorts before everything, even the end of the string (`1.0~rc1` <
//! `1.0`); `^` sorts after the end but before anything else (`1.0` <
//! `1.0^git1` < `1.0.1`). A missing release sorts before any release, as in
//! rpm's `rpmverCmp`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Problem, Scheme, VersionError, cmp_digit_runs, run_len, trimmed};

/// An RPM epoch-version-release.
///
/// rpm itself accepts any non-empty string; this type also refuses what no
/// installed package can carry: whitespace or control characters, an empty
/// version or release, an epoch beyond rpm's 32-bit header field. An epoch
/// is only recognised as rpm recognises it, digits followed by `:` at the
/// start.
///
/// Equality is rpm's: `1.0` equals `1_0` and `0:1.0`.
#[derive(Debug, Clone)]
pub struct Evr {
    epoch: Option<u32>,
    version: String,
    release: Option<String>,
}

impl Evr {
    /// The epoch; `0` when none is written.
    pub fn epoch(&self) -> u32 {
        self.epoch.unwrap_or(0)
    }

    /// Whether the epoch is written out (`0:1.0` has one, `1.0` does not).
    pub fn has_epoch(&self) -> bool {
        self.epoch.is_some()
    }

    /// The version: between the epoch and the last hyphen.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The release after the last hyphen, if any.
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// This EVR, read as a fixed version for a package at `installed`: with
    /// `installed`'s epoch when this one writes none. See
    /// [`super::with_epoch_of`].
    #[must_use]
    pub fn with_epoch_of(&self, installed: &Evr) -> Evr {
        let mut fixed = self.clone();
        if self.epoch.is_none() && installed.epoch() != 0 {
            fixed.epoch = installed.epoch;
        }
        fixed
    }
}

impl FromStr for Evr {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| VersionError::invalid(Scheme::Rpm, input, problem);
        let text = trimmed(Scheme::Rpm, input)?;

        let digits = run_len(text.as_bytes(), |c| c.is_ascii_digit());
        let (epoch, rest) = match (text.get(..digits), text.get(digits..)) {
            (Some(epoch), Some(rest)) if rest.starts_with(':') => {
                let epoch = if epoch.is_empty() {
                    0
                } else {
                    epoch.parse::<u32>().map_err(|_| {
                        invalid(Problem::Epoch { detail: "is larger than rpm's limit of 4294967295" })
                    })?
                };
                (Some(epoch), rest.get(1..).unwrap_or_default())
            }
            _ => (None, text),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((version, release)) => (version, Some(release)),
            None => (rest, None),
        };
        if version.is_empty() {
            return Err(invalid(Problem::EmptyPart { part: "version" }));
        }
        if release == Some("") {
            return Err(invalid(Problem::EmptyPart { part: "release" }));
        }
        Ok(Self { epoch, version: version.to_owned(), release: release.map(str::to_owned) })
    }
}

impl fmt::Display for Evr {
    /// `[epoch:]version[-release]`, the epoch only if one was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(epoch) = self.epoch {
            write!(f, "{epoch}:")?;
        }
        f.write_str(&self.version)?;
        if let Some(release) = &self.release {
            write!(f, "-{release}")?;
        }
        Ok(())
    }
}

impl Ord for Evr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch()
            .cmp(&other.epoch())
            .then_with(|| vercmp(self.version.as_bytes(), other.version.as_bytes()))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => vercmp(a.as_bytes(), b.as_bytes()),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
    }
}

impl PartialOrd for Evr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Evr {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Evr {}

fn is_separator(c: u8) -> bool {
    !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
}

/// rpm's `rpmvercmp` for one version or release string.
fn vercmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    loop {
        a = a.split_at(run_len(a, is_separator)).1;
        b = b.split_at(run_len(b, is_separator)).1;
        let (ca, cb) = (a.first().copied(), b.first().copied());

        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
        } else if ca == Some(b'^') || cb == Some(b'^') {
            // A caret beats the end of the other string but loses to
            // anything else there.
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(b'^'), Some(b'^')) => {}
                (Some(b'^'), _) => return Ordering::Less,
                _ => return Ordering::Greater,
            }
        } else {
            let Some(first) = ca.filter(|_| cb.is_some()) else {
                break;
            };
            let numeric = first.is_ascii_digit();
            let class = |c: u8| {
                if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }
            };
            let (sa, rest_a) = a.split_at(run_len(a, class));
            let (sb, rest_b) = b.split_at(run_len(b, class));
            if sb.is_empty() {
                // A digit run against a letter run: digits are newer.
                return if numeric { Ordering::Greater } else { Ordering::Less };
            }
            let ordering = if numeric { cmp_digit_runs(sa, sb) } else { sa.cmp(sb) };
            if ordering != Ordering::Equal {
                return ordering;
            }
            a = rest_a;
            b = rest_b;
            continue;
        }
        // Both at the same `~` or `^`: step over it.
        a = a.get(1..).unwrap_or_default();
        b = b.get(1..).unwrap_or_default();
    }
    // Whichever string has a segment left is newer.
    (!a.is_empty()).cmp(&!b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Evr {
        s.parse().unwrap()
    }

    #[test]
    fn splits_like_rpm() {
        let v = parse("2:1.0-1.el9-3");
        assert_eq!((v.epoch(), v.version(), v.release()), (2, "1.0-1.el9", Some("3")));
        let v = parse(":1.0");
        assert!(v.has_epoch());
        assert_eq!(v.epoch(), 0);
        // Not digits before the colon: no epoch, the colon is part of the
        // version, as in rpm.
        let v = parse("a:1.0");
        assert!(!v.has_epoch());
        assert_eq!(v.version(), "a:1.0");
        assert_eq!(parse("1.0").release(), None);
    }

    #[test]
    fn refuses_nonsense() {
        for (bad, want) in [
            (" ", "it is empty"),
            ("1.0 -1", "whitespace"),
            ("4294967296:1", "limit"),
            ("1:", "version is empty"),
            ("-1", "version is empty"),
            ("1.0-", "release is empty"),
        ] {
            let err = bad.parse::<Evr>().unwrap_err().to_string();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn segments() {
        assert_eq!(vercmp(b"1.0a", b"1.0.a"), Ordering::Equal);
        assert_eq!(vercmp(b"1.0", b"1.0."), Ordering::Equal);
        assert_eq!(vercmp(b"1.0^", b"1.0"), Ordering::Greater);
        assert_eq!(vercmp(b"1.0~", b"1.0"), Ordering::Less);
        assert_eq!(vercmp(b"", b"~"), Ordering::Greater);
    }
}
