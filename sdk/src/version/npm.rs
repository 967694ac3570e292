//! npm package versions and ranges, as npm's `semver` package reads them.
//!
//! Versions are SemVer 2.0: `MAJOR.MINOR.PATCH`, an optional prerelease
//! (`-beta.2`, ordered below the release, numeric identifiers by value
//! and below alphanumeric ones) and optional build metadata (`+sha.1`,
//! ignored by the order). A leading `v` or `=` is accepted, as npm does.
//!
//! Ranges ([`Range`]) are what `package.json` dependencies and `engines`
//! hold: comparator sets joined by `||`, each made of `<`, `<=`, `>`, `>=`,
//! `=` comparators, X-ranges (`1.x`, `1.2.*`, `*`, `1`), tilde (`~1.2.3`),
//! caret (`^0.2.3`) and hyphen (`1.2.3 - 2.3`) ranges. A prerelease version
//! satisfies a set only when a comparator of that set names a prerelease of
//! the same `MAJOR.MINOR.PATCH`, as npm requires without
//! `--include-prerelease`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Problem, Scheme, VersionError};

/// One prerelease identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Numeric(u64),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Numeric(a), Self::Numeric(b)) => a.cmp(b),
            (Self::Numeric(_), Self::Alpha(_)) => Ordering::Less,
            (Self::Alpha(_), Self::Numeric(_)) => Ordering::Greater,
            (Self::Alpha(a), Self::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Numeric(n) => write!(f, "{n}"),
            Self::Alpha(s) => f.write_str(s),
        }
    }
}

/// An npm (SemVer 2.0) version. Equality and order ignore build metadata,
/// as npm's do: `1.0.0+a` equals `1.0.0+b`.
#[derive(Debug, Clone)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
    build: String,
}

impl Version {
    /// `MAJOR.MINOR.PATCH` with no prerelease or build.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self { major, minor, patch, pre: Vec::new(), build: String::new() }
    }

    pub fn major(&self) -> u64 {
        self.major
    }

    pub fn minor(&self) -> u64 {
        self.minor
    }

    pub fn patch(&self) -> u64 {
        self.patch
    }

    /// Whether it has a prerelease part (`1.0.0-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The build metadata after `+`, empty when there is none.
    pub fn build(&self) -> &str {
        &self.build
    }

    fn triple(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }

    /// The lowest prerelease of `MAJOR.MINOR.PATCH` (`X.Y.Z-0`): an
    /// exclusive upper bound that keeps that release's prereleases out.
    fn floor_pre(major: u64, minor: u64, patch: u64) -> Self {
        Self { pre: vec![Ident::Numeric(0)], ..Self::new(major, minor, patch) }
    }
}

fn invalid(input: &str, problem: Problem) -> VersionError {
    VersionError::invalid(Scheme::Npm, input, problem)
}

/// A numeric part: digits only, no leading zero (SemVer forbids `01`).
fn number(input: &str, text: &str, part: &'static str, offset: usize) -> Result<u64, VersionError> {
    if text.is_empty() {
        return Err(invalid(input, Problem::EmptyPart { part }));
    }
    if let Some((at, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(invalid(input, Problem::Character { found, at: offset + at }));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(invalid(input, Problem::Character { found: '0', at: offset }));
    }
    text.parse().map_err(|_| invalid(input, Problem::TooLarge { part }))
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, none empty.
fn identifiers<'a>(
    input: &str,
    text: &'a str,
    part: &'static str,
    offset: usize,
) -> Result<Vec<&'a str>, VersionError> {
    let mut at = offset;
    let mut out = Vec::new();
    for ident in text.split('.') {
        if ident.is_empty() {
            return Err(invalid(input, Problem::EmptyPart { part }));
        }
        if let Some((i, found)) =
            ident.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(invalid(input, Problem::Character { found, at: at + i }));
        }
        out.push(ident);
        at += ident.len() + 1;
    }
    Ok(out)
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = super::trimmed(Scheme::Npm, input)?;
        let skip = usize::from(text.starts_with(['v', 'V', '=']));
        let body = &text[skip..];
        let (body, build, build_at) = match body.split_once('+') {
            Some((b, build)) => (b, Some(build), skip + b.len() + 1),
            None => (body, None, 0),
        };
        let (core, pre, pre_at) = match body.split_once('-') {
            Some((c, pre)) => (c, Some(pre), skip + c.len() + 1),
            None => (body, None, 0),
        };
        let mut parts = core.splitn(3, '.');
        let mut at = skip;
        let mut next = |name: &'static str| -> Result<u64, VersionError> {
            let part = parts.next().unwrap_or("");
            let n = number(input, part, name, at)?;
            at += part.len() + 1;
            Ok(n)
        };
        let (major, minor, patch) = (next("major version")?, next("minor version")?, next("patch version")?);
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => identifiers(input, pre, "prerelease", pre_at)?
                .into_iter()
                .map(|i| match i.parse::<u64>() {
                    Ok(n) if !(i.len() > 1 && i.starts_with('0')) => Ident::Numeric(n),
                    _ => Ident::Alpha(i.to_owned()),
                })
                .collect(),
        };
        let build = match build {
            None => String::new(),
            Some(b) => identifiers(input, b, "build metadata", build_at)?.join("."),
        };
        Ok(Self { major, minor, patch, pre, build })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, ident) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            write!(f, "{ident}")?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple().cmp(&other.triple()).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        })
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

/// A comparison operator of a comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One `OP VERSION` test.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
}

impl Comparator {
    fn test(&self, v: &Version) -> bool {
        let ord = v.cmp(&self.version);
        match self.op {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Eq => ord == Ordering::Equal,
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "",
        };
        write!(f, "{op}{}", self.version)
    }
}

/// A version as written in a range: any part may be missing or a wildcard
/// (`x`, `X`, `*`).
#[derive(Debug, Clone)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<Ident>,
}

impl Partial {
    fn parse(range: &str, text: &str) -> Result<Self, VersionError> {
        let bad = |problem| VersionError::invalid(Scheme::Npm, range, problem);
        let text = text.strip_prefix(['v', 'V', '=']).unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(t, _)| t);
        let (core, pre) = match text.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (text, None),
        };
        let mut numbers = [None; 3];
        let mut parts = core.split('.');
        for (i, slot) in numbers.iter_mut().enumerate() {
            let Some(part) = parts.next() else { break };
            if matches!(part, "x" | "X" | "*") || (part.is_empty() && i == 0 && core.is_empty()) {
                break;
            }
            *slot = Some(number(range, part, "version part", 0)?);
        }
        if parts.next().is_some() {
            return Err(bad(Problem::Character { found: '.', at: 0 }));
        }
        let pre = match pre {
            Some(p) if numbers[2].is_some() => {
                Version::from_str(&format!("0.0.0-{p}"))
                    .map_err(|_| bad(Problem::EmptyPart { part: "prerelease" }))?
                    .pre
            }
            Some(_) => return Err(bad(Problem::EmptyPart { part: "patch version" })),
            None => Vec::new(),
        };
        Ok(Self { major: numbers[0], minor: numbers[1], patch: numbers[2], pre })
    }

    /// The lowest version it covers.
    fn low(&self) -> Version {
        Version {
            pre: self.pre.clone(),
            ..Version::new(self.major.unwrap_or(0), self.minor.unwrap_or(0), self.patch.unwrap_or(0))
        }
    }

    fn full(&self) -> Option<Version> {
        self.patch.is_some().then(|| self.low())
    }

    /// The exclusive upper bound of an X-range (`1.2` → `<1.3.0-0`); none
    /// when every part is a wildcard.
    fn x_upper(&self) -> Option<Version> {
        match (self.major, self.minor) {
            (None, _) => None,
            (Some(m), None) => Some(Version::floor_pre(m.saturating_add(1), 0, 0)),
            (Some(m), Some(n)) => Some(Version::floor_pre(m, n.saturating_add(1), 0)),
        }
    }
}

/// A range as npm reads it: sets of comparators joined by `||`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    sets: Vec<Vec<Comparator>>,
}

impl Range {
    /// Whether `version` satisfies the range.
    pub fn satisfies(&self, version: &Version) -> bool {
        self.sets.iter().any(|set| {
            set.iter().all(|c| c.test(version))
                && (!version.is_prerelease()
                    || set
                        .iter()
                        .any(|c| c.version.is_prerelease() && c.version.triple() == version.triple()))
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, set) in self.sets.iter().enumerate() {
            if i > 0 {
                f.write_str(" || ")?;
            }
            if set.is_empty() {
                f.write_str("*")?;
            }
            for (j, c) in set.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn cmp(op: Op, version: Version) -> Comparator {
    Comparator { op, version }
}

/// The comparators one range token (`^1.2`, `>=3`, `1.x`) stands for.
fn desugar(range: &str, token: &str) -> Result<Vec<Comparator>, VersionError> {
    let (op, rest) = [">=", "<=", ">", "<", "=", "~>", "~", "^"]
        .iter()
        .find_map(|op| token.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("", token));
    let p = Partial::parse(range, rest)?;
    let low = p.low();
    Ok(match op {
        "" | "=" => match (p.full(), p.x_upper()) {
            (Some(v), _) => vec![cmp(Op::Eq, v)],
            (None, None) => Vec::new(),
            (None, Some(upper)) => vec![cmp(Op::Ge, low), cmp(Op::Lt, upper)],
        },
        "~" | "~>" => match (p.major, p.minor) {
            (None, _) => Vec::new(),
            (Some(m), None) => {
                vec![cmp(Op::Ge, low), cmp(Op::Lt, Version::floor_pre(m.saturating_add(1), 0, 0))]
            }
            (Some(m), Some(n)) => {
                vec![cmp(Op::Ge, low), cmp(Op::Lt, Version::floor_pre(m, n.saturating_add(1), 0))]
            }
        },
        "^" => {
            let upper = match (p.major, p.minor, p.patch) {
                (None, _, _) => return Ok(Vec::new()),
                (Some(0), Some(0), Some(z)) => Version::floor_pre(0, 0, z.saturating_add(1)),
                (Some(0), Some(n), _) => Version::floor_pre(0, n.saturating_add(1), 0),
                (Some(m), _, _) => Version::floor_pre(m.saturating_add(1), 0, 0),
            };
            vec![cmp(Op::Ge, low), cmp(Op::Lt, upper)]
        }
        ">=" => match p.major {
            None => Vec::new(),
            Some(_) => vec![cmp(Op::Ge, low)],
        },
        ">" => match (p.full(), p.x_upper()) {
            (Some(v), _) => vec![cmp(Op::Gt, v)],
            // `>1.2` is `>=1.3.0`; `>*` matches nothing.
            (None, Some(upper)) => vec![cmp(Op::Ge, Version::new(upper.major, upper.minor, upper.patch))],
            (None, None) => vec![cmp(Op::Lt, Version::floor_pre(0, 0, 0))],
        },
        "<" => match p.major {
            None => vec![cmp(Op::Lt, Version::floor_pre(0, 0, 0))],
            Some(_) if p.full().is_some() => vec![cmp(Op::Lt, low)],
            Some(_) => vec![cmp(Op::Lt, Version::floor_pre(low.major, low.minor, low.patch))],
        },
        "<=" => match (p.full(), p.x_upper()) {
            (Some(v), _) => vec![cmp(Op::Le, v)],
            (None, Some(upper)) => vec![cmp(Op::Lt, upper)],
            (None, None) => Vec::new(),
        },
        _ => unreachable!("operators listed above"),
    })
}

/// One `||` alternative.
fn comparator_set(range: &str, text: &str) -> Result<Vec<Comparator>, VersionError> {
    // `>= 1.2.3` is one comparator: glue operators to what follows.
    let mut tokens: Vec<String> = Vec::new();
    let mut pending = String::new();
    for word in text.split_whitespace() {
        if word.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^')) {
            pending.push_str(word);
            continue;
        }
        tokens.push(format!("{pending}{word}"));
        pending.clear();
    }
    if !pending.is_empty() {
        return Err(VersionError::invalid(Scheme::Npm, range, Problem::EmptyPart { part: "version" }));
    }
    if let [from, dash, to] = &tokens[..]
        && dash == "-"
    {
        let low = Partial::parse(range, from)?;
        let high = Partial::parse(range, to)?;
        let mut set = vec![cmp(Op::Ge, low.low())];
        match (high.full(), high.x_upper()) {
            (Some(v), _) => set.push(cmp(Op::Le, v)),
            (None, Some(upper)) => set.push(cmp(Op::Lt, upper)),
            (None, None) => {}
        }
        return Ok(set);
    }
    let mut set = Vec::new();
    for token in &tokens {
        set.extend(desugar(range, token)?);
    }
    Ok(set)
}

impl FromStr for Range {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Some((at, found)) = input.char_indices().find(|(_, c)| c.is_control()) {
            return Err(VersionError::invalid(Scheme::Npm, input, Problem::Character { found, at }));
        }
        let sets = input.split("||").map(|set| comparator_set(input, set)).collect::<Result<_, _>>()?;
        Ok(Self { sets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn versions_order_as_npm_orders_them() {
        // Each row is ascending, as `semver.compare` sorts them.
        let ascending = [
            "0.0.1",
            "0.1.0",
            "1.0.0-0",
            "1.0.0-1",
            "1.0.0-2",
            "1.0.0-10",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for pair in ascending.windows(2) {
            assert_eq!(v(pair[0]).cmp(&v(pair[1])), Ordering::Less, "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0.0+build.1"), v("1.0.0+other"));
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("=1.2.3").to_string(), "1.2.3");
        assert_eq!(v("1.2.3-rc.1+b.2").to_string(), "1.2.3-rc.1+b.2");
        assert_eq!(v("1.2.3+b.2").build(), "b.2");
    }

    #[test]
    fn invalid_versions_say_why() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3-é",
            "a.b.c",
        ] {
            let err = bad.parse::<Version>().expect_err(bad).to_string();
            assert!(err.starts_with("invalid npm version"), "{bad}: {err}");
        }
        assert!("99999999999999999999999.0.0".parse::<Version>().is_err());
    }

    #[test]
    fn ranges_match_npm() {
        // (range, satisfying versions, versions outside), from node-semver's
        // own range tests.
        let table: &[(&str, &[&str], &[&str])] = &[
            ("*", &["0.0.0", "1.2.3", "99.0.0"], &["1.0.0-rc.1"]),
            ("", &["1.2.3"], &[]),
            ("1.x", &["1.0.0", "1.9.9"], &["2.0.0", "0.9.9", "2.0.0-0"]),
            ("1.2.*", &["1.2.0", "1.2.99"], &["1.3.0", "1.1.9"]),
            ("1", &["1.0.0", "1.99.0"], &["2.0.0"]),
            ("1.2.3", &["1.2.3", "v1.2.3"], &["1.2.4"]),
            ("=1.2.3", &["1.2.3"], &["1.2.2"]),
            (">=1.2.3", &["1.2.3", "3.0.0"], &["1.2.2", "1.2.4-beta"]),
            (">= 14", &["14.0.0", "20.1.0"], &["12.22.12"]),
            (">1.2", &["1.3.0"], &["1.2.9"]),
            ("<1.2", &["1.1.9"], &["1.2.0", "1.2.0-pre"]),
            ("<=1.2", &["1.2.9"], &["1.3.0"]),
            ("~1.2.3", &["1.2.3", "1.2.9"], &["1.3.0", "1.2.2"]),
            ("~1.2", &["1.2.0", "1.2.9"], &["1.3.0"]),
            ("~1", &["1.0.0", "1.9.0"], &["2.0.0"]),
            (
                "~1.2.3-beta.2",
                &["1.2.3-beta.2", "1.2.3-beta.4", "1.2.3", "1.2.9"],
                &["1.2.4-beta.1", "1.2.3-beta.1"],
            ),
            ("^1.2.3", &["1.2.3", "1.9.9"], &["2.0.0", "1.2.2", "2.0.0-0"]),
            ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4"]),
            ("^1.2.x", &["1.2.0", "1.9.0"], &["2.0.0"]),
            ("^0.0.x", &["0.0.0", "0.0.9"], &["0.1.0"]),
            ("^0.x", &["0.0.0", "0.9.0"], &["1.0.0"]),
            ("^1.2.3-beta.2", &["1.2.3-beta.4", "1.2.3", "1.5.0"], &["1.2.4-beta.1", "2.0.0"]),
            ("1.2.3 - 2.3.4", &["1.2.3", "2.3.4"], &["2.3.5", "1.2.2"]),
            ("1.2 - 2.3.4", &["1.2.0"], &["1.1.9"]),
            ("1.2.3 - 2.3", &["2.3.9"], &["2.4.0"]),
            ("1.2.3 - 2", &["2.9.9"], &["3.0.0"]),
            (">=1.0.0 <2.0.0 || >=3.0.0", &["1.5.0", "3.1.0"], &["2.5.0"]),
            ("^14.17.0 || ^16.13.0 || >=18.0.0", &["16.13.0", "18.19.0"], &["15.0.0", "16.12.0"]),
            (">=0.10.0", &["18.19.0"], &[]),
        ];
        for (range, inside, outside) in table {
            let parsed: Range = range.parse().unwrap_or_else(|e| panic!("{range}: {e}"));
            for version in *inside {
                assert!(parsed.satisfies(&v(version)), "{version} satisfies {range:?} ({parsed})");
            }
            for version in *outside {
                assert!(!parsed.satisfies(&v(version)), "{version} is outside {range:?} ({parsed})");
            }
        }
    }

    #[test]
    fn malformed_ranges_are_errors_not_panics() {
        for bad in [">=", "1.2.3 - ", "^a.b", "1.2.3.4", ">=1.2\u{0}", "~01.2"] {
            assert!(bad.parse::<Range>().is_err(), "{bad:?}");
        }
    }
}
