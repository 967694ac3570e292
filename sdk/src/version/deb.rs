//! Debian package versions, ordered as dpkg orders them.
//!
//! A version is `[epoch:]upstream[-revision]`. Epochs compare as numbers;
//! upstream and revision compare with dpkg's `verrevcmp`: alternating runs of
//! non-digits, compared character by character with `~` before the end of the
//! string, the end before letters and letters before every other character,
//! and runs of digits, compared as numbers.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Problem, Scheme, VersionError, cmp_digit_runs, run_len, trimmed};

/// dpkg keeps the epoch in a C `int`.
const MAX_EPOCH: u32 = i32::MAX.unsigned_abs();

/// A Debian package version.
///
/// Parsing follows dpkg's validity rules. What dpkg refuses is an error here
/// too (an empty version or part, an epoch that is not a number, whitespace
/// inside). What dpkg only warns about is accepted and ordered as dpkg
/// orders it, because scanners do emit such versions: an upstream version
/// not starting with a digit, or characters such as `_` that Debian policy
/// does not allow. Control and non-ASCII characters are refused: dpkg's
/// order for them depends on whether the machine's `char` is signed.
///
/// Equality is dpkg's: `1.0` equals `1.00` and `0:1.0`.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    explicit_epoch: bool,
    upstream: String,
    revision: String,
}

impl Version {
    /// The epoch; `0` when none is written.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether the epoch is written out (`0:1.0` has one, `1.0` does not).
    pub fn has_epoch(&self) -> bool {
        self.explicit_epoch
    }

    /// The upstream version: between the epoch and the last hyphen.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision after the last hyphen; empty when there is none.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// This version, read as a fixed version for a package at `installed`:
    /// with `installed`'s epoch when this version writes none. See
    /// [`super::with_epoch_of`].
    #[must_use]
    pub fn with_epoch_of(&self, installed: &Version) -> Version {
        let mut fixed = self.clone();
        if !self.explicit_epoch && installed.epoch != 0 {
            fixed.epoch = installed.epoch;
            fixed.explicit_epoch = true;
        }
        fixed
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| VersionError::invalid(Scheme::Deb, input, problem);
        let text = trimmed(Scheme::Deb, input)?;
        if let Some((at, found)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
            return Err(invalid(Problem::Character { found, at }));
        }

        let (epoch, explicit_epoch, rest) = match text.split_once(':') {
            Some((epoch, rest)) => {
                let epoch = parse_epoch(epoch).map_err(|detail| invalid(Problem::Epoch { detail }))?;
                if rest.is_empty() {
                    return Err(invalid(Problem::EmptyPart { part: "version after the epoch" }));
                }
                (epoch, true, rest)
            }
            None => (0, false, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((_, "")) => return Err(invalid(Problem::EmptyPart { part: "revision" })),
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(invalid(Problem::EmptyPart { part: "upstream version" }));
        }
        Ok(Self { epoch, explicit_epoch, upstream: upstream.to_owned(), revision: revision.to_owned() })
    }
}

/// dpkg reads the epoch with `strtol`, so a sign is accepted and `-0` is 0.
fn parse_epoch(text: &str) -> Result<u32, &'static str> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or_default()),
        Some(b'+') => (false, text.get(1..).unwrap_or_default()),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(if text.is_empty() { "is empty" } else { "is not a number" });
    }
    let mut value: u32 = 0;
    for digit in digits.bytes() {
        if !digit.is_ascii_digit() {
            return Err("is not a number");
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(digit - b'0')))
            .filter(|&v| v <= MAX_EPOCH)
            .ok_or("is larger than dpkg's limit of 2147483647")?;
    }
    if negative && value != 0 {
        return Err("is negative");
    }
    Ok(value)
}

impl fmt::Display for Version {
    /// The version with its epoch as a plain number, if one was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explicit_epoch {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
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

/// dpkg's weight of one character of a non-digit run; `None` is the end of
/// the string, which weighs like a digit so that it ends the run.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    let non_digit = |s: &[u8]| s.first().is_some_and(|c| !c.is_ascii_digit());
    while !a.is_empty() || !b.is_empty() {
        while non_digit(a) || non_digit(b) {
            let (wa, wb) = (weight(a.first().copied()), weight(b.first().copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Equal weights of which one is a non-digit: both are the same
            // non-digit character, so neither string has ended.
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let (da, rest_a) = a.split_at(run_len(a, |c| c.is_ascii_digit()));
        let (db, rest_b) = b.split_at(run_len(b, |c| c.is_ascii_digit()));
        let ordering = cmp_digit_runs(da, db);
        if ordering != Ordering::Equal {
            return ordering;
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn splits_epoch_upstream_and_last_hyphen() {
        let v = parse(" 1:2.0-rc1-3ubuntu1 ");
        assert_eq!((v.epoch(), v.upstream(), v.revision()), (1, "2.0-rc1", "3ubuntu1"));
        assert!(v.has_epoch());
        let v = parse("2:1.0:beta");
        assert_eq!((v.epoch(), v.upstream()), (2, "1.0:beta"));
        assert_eq!(parse("1.0").to_string(), "1.0");
        assert_eq!(parse("+01:1.0-1").to_string(), "1:1.0-1");
    }

    #[test]
    fn refuses_what_dpkg_refuses() {
        for (bad, want) in [
            ("", "it is empty"),
            ("1.0 2", "whitespace"),
            (":1.0", "epoch is empty"),
            ("a:1.0", "epoch is not a number"),
            ("-1:1.0", "epoch is negative"),
            ("2147483648:1.0", "limit"),
            ("1:", "version after the epoch is empty"),
            ("1.0-", "revision is empty"),
            ("-1", "upstream version is empty"),
            ("1:-1", "upstream version is empty"),
            ("1.0é", "'é' at byte 3"),
            ("1.0\u{7}", "'\\u{7}'"),
        ] {
            let err = bad.parse::<Version>().unwrap_err().to_string();
            assert!(err.contains(want), "{bad:?}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(parse("2147483647:1").epoch(), 2_147_483_647);
        assert_eq!(parse("-0:1").epoch(), 0);
    }

    #[test]
    fn tolerates_what_dpkg_only_warns_about() {
        assert!(parse("v1.0_beta") > parse("v1.0~"));
        assert!(parse("abc") > parse("1"));
    }

    #[test]
    fn explicit_epoch_is_kept() {
        let installed = parse("1:2.0");
        assert_eq!(parse("2.1").with_epoch_of(&installed).to_string(), "1:2.1");
        assert_eq!(parse("0:2.1").with_epoch_of(&installed).to_string(), "0:2.1");
        assert_eq!(parse("2.1").with_epoch_of(&parse("0:2.0")).to_string(), "2.1");
    }
}
