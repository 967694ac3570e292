//! Tags as Copa's bulk mode reads them: the grammar and order of the Go
//! library it sorts with (Masterminds/semver v1), so that a `copa.sh` file
//! picks the same tags in caulk as in Copa.
//!
//! A version is `v?MAJOR(.MINOR)?(.PATCH)?(-PRE)?(+META)?`, each number
//! fitting an `i64`, `PRE` and `META` dot-separated runs of
//! `[0-9A-Za-z-]`. Anything else (`stable-alpine`, `1.2.3.4`,
//! `21.0.5_11-jdk`) is not a version, and Copa skips it. Versions compare by
//! their three numbers (missing ones are 0), then a release above any
//! pre-release of the same numbers, then the pre-release's parts in turn:
//! numbers by value, below words, words by their bytes, and more parts above
//! fewer. The build metadata does not count.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'a> {
    numbers: [i64; 3],
    pre: &'a str,
}

fn identifiers_ok(text: &str) -> bool {
    text.split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// `tag` as a version, or `None` where Copa's library refuses it.
pub fn parse(tag: &str) -> Option<Version<'_>> {
    let body = tag.strip_prefix('v').unwrap_or(tag);
    let (body, meta) = body.split_once('+').map_or((body, None), |(b, m)| (b, Some(m)));
    if meta.is_some_and(|m| !identifiers_ok(m)) {
        return None;
    }
    let (core, pre) = body.split_once('-').unwrap_or((body, ""));
    if body.contains('-') && !identifiers_ok(pre) {
        return None;
    }
    let mut numbers = [0; 3];
    let mut parts = core.split('.');
    for (i, slot) in numbers.iter_mut().enumerate() {
        match parts.next() {
            Some(part) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => {
                *slot = part.parse().ok()?;
            }
            None if i > 0 => break,
            _ => return None,
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Version { numbers, pre })
}

/// One pre-release part against another.
fn part(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers.cmp(&other.numbers).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let (mut a, mut b) = (self.pre.split('.'), other.pre.split('.'));
                loop {
                    match (a.next(), b.next()) {
                        (None, None) => break Ordering::Equal,
                        (None, Some(_)) => break Ordering::Less,
                        (Some(_), None) => break Ordering::Greater,
                        (Some(x), Some(y)) => match part(x, y) {
                            Ordering::Equal => {}
                            other => break other,
                        },
                    }
                }
            }
        })
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Highest first, for tags that are versions; equal versions (`1.2` and
/// `v1.2.0`) by their text, so the order never depends on the registry's.
pub fn highest_first(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| b.cmp(a)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_copas() {
        for tag in ["1", "v1.2", "1.2.3", "1.25-alpine", "1.2.3-rc.1+build.7", "12.22.1-alpine3.10", "01.2"] {
            assert!(parse(tag).is_some(), "{tag} refused");
        }
        for tag in [
            "stable-alpine",
            "latest",
            "1.2.3.4",
            "21.0.5_11-jdk",
            "1.",
            "1..2",
            "1.2-",
            "1.2+",
            "1.2-a..b",
            "v",
        ] {
            assert!(parse(tag).is_none(), "{tag} taken");
        }
        assert!(parse("99999999999999999999").is_none(), "past an i64");
    }

    #[test]
    fn pre_releases_compare_part_by_part_numbers_by_value() {
        let mut tags = vec![
            "1.0-rc.9",
            "1.0-rc.10",
            "1.0",
            "12.22.1-alpine3.9",
            "12.22.1-alpine3.10",
            "1.0-rc",
            "1.0-1",
            "0.9",
            "1.0.0+meta",
        ];
        tags.sort_by(|a, b| highest_first(a, b));
        assert_eq!(
            tags,
            [
                "12.22.1-alpine3.10",
                "12.22.1-alpine3.9",
                "1.0.0+meta",
                "1.0",
                "1.0-rc.10",
                "1.0-rc.9",
                "1.0-rc",
                "1.0-1",
                "0.9"
            ]
        );
    }
}
