//! Alpine package versions, ordered as apk-tools orders them.
//!
//! The grammar is `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`:
//! dotted numbers, one lowercase letter, any number of suffixes, a commit
//! hash of lowercase hex digits and a package revision. The suffixes
//! `_alpha`, `_beta`, `_pre` and `_rc` mark versions before the release
//! (`1.0_rc1` < `1.0`); `_cvs`, `_svn`, `_git`, `_hg` and `_p` mark versions
//! after it (`1.0` < `1.0_p1`), in that order.
//!
//! Versions are compared token by token. Numbers compare by value, except
//! that a dotted number written with a leading zero compares as a string
//! (`1.01` < `1.1`, `8.2.0` < `8.2.001`). When one version runs out of tokens
//! or has a token of a different kind at the same place, a pre-release
//! suffix loses, and otherwise the version whose next token comes earlier in
//! the grammar wins (`1.0.1` > `1.0a` > `1.0_p1` > `1.0-r9` > `1.0`).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::{Problem, Scheme, VersionError, run_len, trimmed};

/// Kinds of token, in the order the grammar allows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    Revision,
    End,
}

/// Suffixes by rank. No suffix at all (the release itself) sits between the
/// pre-release ones and the post-release ones, from `FIRST_POST_RELEASE` on.
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
const FIRST_POST_RELEASE: u64 = 4;

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Where the token's value is in the version string.
    span: Range<usize>,
    /// The value of a number; the rank of a suffix.
    value: u64,
}

/// An Alpine package version.
///
/// Parsing refuses what `apk version -c` calls invalid: anything outside the
/// grammar, an unknown suffix, a letter not directly after a number. Equality
/// is apk's: `01.2` equals `1.2`.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    tokens: Vec<Token>,
}

impl Version {
    /// The version as written, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn token_text(&self, token: &Token) -> &[u8] {
        self.text.as_bytes().get(token.span.clone()).unwrap_or_default()
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = trimmed(Scheme::Apk, input)?;
        let tokens = tokenize(text).map_err(|problem| VersionError::invalid(Scheme::Apk, input, problem))?;
        Ok(Self { text: text.to_owned(), tokens })
    }
}

/// apk reads numbers into a `uint64_t` that silently wraps; so does this,
/// to order the (absurd) 20-digit numbers exactly as apk does.
fn number(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |n, d| n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
}

fn tokenize(text: &str) -> Result<Vec<Token>, Problem> {
    let bytes = text.as_bytes();
    // What is wrong at `at`: the character there, or, at the end, that
    // `part` is missing.
    let unexpected = |at: usize, part: &'static str| match text.get(at..).and_then(|s| s.chars().next()) {
        Some(found) => Problem::Character { found, at },
        None => Problem::EmptyPart { part },
    };
    let span_of =
        |at: usize, pred: fn(u8) -> bool| at..at + run_len(bytes.get(at..).unwrap_or_default(), pred);
    let digits = |at: usize| span_of(at, |c| c.is_ascii_digit());

    let mut tokens = Vec::new();
    let (mut kind, mut span, mut part) = (Kind::InitialDigit, digits(0), "number");
    loop {
        if span.is_empty() {
            return Err(unexpected(span.start, part));
        }
        let value = match kind {
            Kind::Suffix => {
                let suffix = bytes.get(span.clone()).unwrap_or_default();
                SUFFIXES
                    .iter()
                    .position(|s| s.as_bytes() == suffix)
                    .and_then(|rank| u64::try_from(rank).ok())
                    .ok_or_else(|| Problem::Suffix { suffix: String::from_utf8_lossy(suffix).into_owned() })?
            }
            Kind::Letter | Kind::CommitHash => 0,
            _ => number(bytes.get(span.clone()).unwrap_or_default()),
        };
        let at = span.end;
        tokens.push(Token { kind, span, value });

        let Some(&next) = bytes.get(at) else {
            return Ok(tokens);
        };
        (kind, span, part) = match next {
            b'a'..=b'z' if kind <= Kind::Digit => (Kind::Letter, at..at + 1, ""),
            b'.' if kind <= Kind::Digit => (Kind::Digit, digits(at + 1), "number after `.`"),
            b'0'..=b'9' if kind == Kind::Suffix => (Kind::SuffixNumber, digits(at), ""),
            b'_' if kind <= Kind::SuffixNumber => {
                let span = span_of(at + 1, |c| c.is_ascii_lowercase());
                if span.is_empty() {
                    // apk looks the empty word up like any other suffix.
                    return Err(Problem::Suffix { suffix: String::new() });
                }
                (Kind::Suffix, span, "")
            }
            b'~' if kind < Kind::CommitHash => (
                Kind::CommitHash,
                span_of(at + 1, |c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "commit hash after `~`",
            ),
            b'-' if kind < Kind::Revision => {
                if bytes.get(at + 1) != Some(&b'r') {
                    return Err(unexpected(at + 1, "`r` of the revision"));
                }
                (Kind::Revision, digits(at + 2), "revision number after `-r`")
            }
            _ => return Err(unexpected(at, "")),
        };
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut a = self.tokens.iter();
        let mut b = other.tokens.iter();
        loop {
            let (ta, tb) = (a.next(), b.next());
            let kind_a = ta.map_or(Kind::End, |t| t.kind);
            let kind_b = tb.map_or(Kind::End, |t| t.kind);
            match (ta, tb) {
                (Some(ta), Some(tb)) if kind_a == kind_b => {
                    let ordering = self.cmp_token(ta, other, tb);
                    if ordering != Ordering::Equal {
                        return ordering;
                    }
                }
                _ => {
                    let pre_release = |t: Option<&Token>| {
                        t.is_some_and(|t| t.kind == Kind::Suffix && t.value < FIRST_POST_RELEASE)
                    };
                    return if kind_a == kind_b {
                        Ordering::Equal
                    } else if pre_release(ta) {
                        Ordering::Less
                    } else if pre_release(tb) {
                        Ordering::Greater
                    } else {
                        // The token kind nearer the end of the grammar is
                        // the older version.
                        kind_b.cmp(&kind_a)
                    };
                }
            }
        }
    }
}

impl Version {
    /// Whether this version matches a `~prefix` constraint of apk's world
    /// file (apk's fuzzy match): equal on every token `prefix` has, so
    /// `1.36.1-r19` matches `~1.36` and `1.37` does not.
    pub fn fuzzy_matches(&self, prefix: &Self) -> bool {
        let mut tokens = self.tokens.iter();
        prefix.tokens.iter().all(|tb| {
            tokens
                .next()
                .is_some_and(|ta| ta.kind == tb.kind && self.cmp_token(ta, prefix, tb) == Ordering::Equal)
        })
    }

    fn cmp_token(&self, ta: &Token, other: &Self, tb: &Token) -> Ordering {
        let (sa, sb) = (self.token_text(ta), other.token_text(tb));
        match ta.kind {
            Kind::Digit if sa.first() == Some(&b'0') || sb.first() == Some(&b'0') => sa.cmp(sb),
            Kind::Letter | Kind::CommitHash => sa.cmp(sb),
            _ => ta.value.cmp(&tb.value),
        }
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

    /// The validity list of apk-tools' own unit tests (test/unit/version.data).
    #[test]
    fn validity_matches_apk_tools() {
        for good in [
            "1.2",
            "0.1_pre2",
            "0.1_pre2~1234abcd",
            "0.1_p1_pre2",
            "0.1_alpha1_pre2",
            "0.1_git20240101_pre1",
            "1.1.1w-r1",
        ] {
            assert!(good.parse::<Version>().is_ok(), "{good}");
        }
        for bad in [
            "0.1bc",
            "0.1bc1",
            "0.1a1",
            "0.1a.1",
            "0.1_pre2~",
            "0.1_pre2~1234xbcd",
            "0.1_pre2~1234abcd_pre1",
            "0.1_pre2-r1~1234xbcd",
            "0.1_foobar",
            "0.1_foobar1",
            "0.1-pre1.1",
            "0.1-r",
            "0.1-r2_pre1",
            "0.1-r2_p3_pre1",
            "0.1-r2-r3",
            "0.1-r2.1",
            ".1",
            "a",
            "_pre1",
            "-r1",
            "0.1_",
            "0.1_-r0",
            "0.1__alpha",
            "0.1_1_alpha",
            "1.0A",
            "1.0é",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fuzzy_matches_compare_only_the_prefixs_tokens() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        for (version, prefix, matches) in [
            ("1.36.1-r19", "1.36", true),
            ("1.36", "1.36", true),
            ("1.36a", "1.36", true),
            ("1.37.0", "1.36", false),
            ("1.3", "1.36", false),
            ("1.36", "1.36.1", false),
            ("1.036", "1.36", false),
            ("1.2_rc1-r0", "1.2_rc1", true),
            ("1.2-r0", "1.2_rc1", false),
        ] {
            assert_eq!(v(version).fuzzy_matches(&v(prefix)), matches, "{version} ~{prefix}");
        }
    }

    #[test]
    fn errors_say_where() {
        let err = "1.2_foo".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("`_foo`") && err.contains("\"1.2_foo\""), "{err}");
        let err = "1.2-x1".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("'x' at byte 4"), "{err}");
        let err = "1.2-r".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("revision number after `-r` is empty"), "{err}");
    }
}
