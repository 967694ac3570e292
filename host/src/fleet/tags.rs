//! Which tags of a repository a fleet patches: Copa's `list`, `pattern`
//! and `latest` strategies over the tags the repository has.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::config::{Strategy, TagTemplate};

/// A tag read as a version: `v1.25.3`, `12.4-slim`, `3.19`. Tags that do
/// not start with a number (after an optional `v`) are not versions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    numbers: Vec<u64>,
    /// What follows the numbers (`-slim`, `-rc1`); empty for a release.
    suffix: String,
}

fn version(tag: &str) -> Option<Version> {
    let body = tag.strip_prefix('v').unwrap_or(tag);
    let end = body.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(body.len());
    let (numeric, suffix) = body.split_at(end);
    if numeric.is_empty() || numeric.starts_with('.') || numeric.ends_with('.') || numeric.contains("..") {
        return None;
    }
    // A suffix must be separated (`1.2-slim`, `1.2+b1`), or `1a` would be a version.
    if !suffix.is_empty() && !suffix.starts_with(['-', '+', '_']) {
        return None;
    }
    let numbers = numeric.split('.').map(str::parse).collect::<Result<Vec<u64>, _>>().ok()?;
    Some(Version { numbers, suffix: suffix.to_owned() })
}

/// Highest first: versions by their numbers (missing parts count as 0),
/// a release above the same numbers with a suffix (semver's pre-release
/// rule), then anything else; ties by the tag text, so the order never
/// depends on the registry's.
pub fn highest_first(a: &str, b: &str) -> Ordering {
    match (version(a), version(b)) {
        (Some(x), Some(y)) => {
            let len = x.numbers.len().max(y.numbers.len());
            let part = |v: &Version, i: usize| v.numbers.get(i).copied().unwrap_or(0);
            (0..len)
                .map(|i| part(&y, i).cmp(&part(&x, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then_with(|| x.suffix.is_empty().cmp(&y.suffix.is_empty()).reverse())
                .then_with(|| y.numbers.len().cmp(&x.numbers.len()))
                .then_with(|| b.cmp(a))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}

/// A tag the strategy chose, or one it names that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Tag(String),
    /// A `list` tag the repository does not have (Copa warns and skips).
    Missing(String),
}

/// What this spec's template makes of each tag: rendered name → the tags
/// it was rendered from. Built once so that telling outputs from sources is
/// linear in the number of tags (repositories with thousands of tags exist).
fn outputs<'a>(tags: &'a [String], template: &TagTemplate) -> HashMap<String, Vec<&'a str>> {
    let mut outputs: HashMap<String, Vec<&str>> = HashMap::new();
    for source in tags {
        outputs.entry(template.render(source)).or_default().push(source);
    }
    outputs
}

/// Whether `tag` is what this spec's own template made of another tag
/// (`1.2-patched`, `1.2-patched-3`): patched outputs pushed beside their
/// sources are not sources themselves.
fn is_output(tag: &str, outputs: &HashMap<String, Vec<&str>>) -> bool {
    let made_from_another =
        |out: &str| outputs.get(out).is_some_and(|sources| sources.iter().any(|s| *s != tag));
    // `<output>-N`: N has no `-`, so the last one is the only split.
    let numbered = tag.rsplit_once('-').is_some_and(|(out, n)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && made_from_another(out)
    });
    made_from_another(tag) || numbered
}

/// How `pattern` and `latest` read and order tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// `copa.sh` files: as Copa does (see [`super::semver`]): only tags
    /// that are versions, the highest first, pre-releases included; no
    /// match is nothing to patch, not a failure.
    Copa,
    /// `caulk.sh` files: any tag, versions first ([`highest_first`]);
    /// `latest` prefers a release to a pre-release and falls back to the
    /// `latest` tag; no match is a failure.
    Caulk,
}

/// The tags `strategy` picks from `available` (the repository's tags;
/// `None` when they could not be listed, which only `list` survives).
/// `beside` is the template of patched tags pushed into the same
/// repository: those are left out as outputs. Patched tags pushed elsewhere
/// cannot be among the sources, so without it every tag is a source
/// (`8.9-1107` is a release of its own, not a patch of `8.9`).
pub fn choose(
    strategy: &Strategy,
    available: Option<&[String]>,
    beside: Option<&TagTemplate>,
    rules: Rules,
) -> Result<Vec<Choice>, String> {
    if let Strategy::List(list) = strategy {
        let mut seen = std::collections::BTreeSet::new();
        return Ok(list
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .map(|t| match available {
                Some(tags) if !tags.contains(t) => Choice::Missing(t.clone()),
                _ => Choice::Tag(t.clone()),
            })
            .collect());
    }
    let tags = available.ok_or("the repository's tags could not be listed")?;
    let outputs = beside.map(|template| outputs(tags, template)).unwrap_or_default();
    let sources = tags.iter().filter(|t| !is_output(t, &outputs));
    let mut picked: Vec<&String> = match strategy {
        Strategy::Pattern { pattern, exclude, .. } => {
            sources.filter(|t| pattern.is_match(t) && !exclude.contains(t)).collect()
        }
        Strategy::Latest { exclude } => sources.filter(|t| !exclude.contains(t)).collect(),
        Strategy::List(_) => unreachable!("returned above"),
    };
    if rules == Rules::Copa {
        picked.retain(|t| super::semver::parse(t).is_some());
        picked.sort_by(|a, b| super::semver::highest_first(a, b));
        picked.dedup();
        let keep = match strategy {
            Strategy::Pattern { max_tags, .. } if *max_tags > 0 => *max_tags,
            Strategy::Latest { .. } => 1,
            _ => usize::MAX,
        };
        return Ok(picked.into_iter().take(keep).map(|t| Choice::Tag(t.clone())).collect());
    }
    picked.sort_by(|a, b| highest_first(a, b));
    picked.dedup();
    let keep = match strategy {
        Strategy::Pattern { max_tags, .. } if *max_tags > 0 => *max_tags,
        Strategy::Latest { .. } => {
            // Releases over suffixed versions (`3.21-rc1`), versions over
            // names; `latest` itself only when nothing is versioned.
            let release = |t: &&String| version(t).is_some_and(|v| v.suffix.is_empty());
            if picked.iter().any(release) {
                picked.retain(release);
            } else if picked.first().is_some_and(|t| version(t).is_none()) {
                picked.retain(|t| t.as_str() == "latest");
            }
            1
        }
        _ => usize::MAX,
    };
    if picked.is_empty() {
        return Err(match strategy {
            Strategy::Pattern { pattern, .. } => format!("no tag matches the pattern `{pattern}`"),
            _ => "the repository has no versioned tag (and no `latest`)".to_owned(),
        });
    }
    Ok(picked.into_iter().take(keep).map(|t| Choice::Tag(t.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn template() -> TagTemplate {
        TagTemplate::parse("{{ .SourceTag }}-patched").unwrap()
    }

    fn chosen(strategy: &Strategy, available: &[&str]) -> Vec<String> {
        choose(strategy, Some(&tags(available)), Some(&template()), Rules::Caulk)
            .unwrap()
            .into_iter()
            .map(|c| match c {
                Choice::Tag(t) => t,
                Choice::Missing(t) => format!("missing {t}"),
            })
            .collect()
    }

    #[test]
    fn versions_sort_by_number_not_text() {
        let mut list = tags(&["1.9", "1.10", "1.10-rc1", "v1.2.3", "latest", "1.10.0", "alpine", "2"]);
        list.sort_by(|a, b| highest_first(a, b));
        assert_eq!(list, ["2", "1.10.0", "1.10", "1.10-rc1", "1.9", "v1.2.3", "latest", "alpine"]);
    }

    #[test]
    fn pattern_caps_excludes_and_ignores_its_own_outputs() {
        let strategy = Strategy::Pattern {
            pattern: regex::Regex::new(r"^1\.25\.[0-9]+").unwrap(),
            max_tags: 2,
            exclude: tags(&["1.25.4"]),
        };
        let available =
            ["1.25.1", "1.25.10", "1.25.4", "1.25.3", "1.25.10-patched", "1.25.10-patched-2", "1.24.9"];
        assert_eq!(chosen(&strategy, &available), ["1.25.10", "1.25.3"]);
        let err = choose(&strategy, Some(&tags(&["2.0"])), Some(&template()), Rules::Caulk).unwrap_err();
        assert!(err.contains("no tag matches"), "{err}");
    }

    #[test]
    fn with_the_patches_pushed_elsewhere_every_tag_is_a_source() {
        let strategy = Strategy::Pattern {
            pattern: regex::Regex::new(r"^8\.9-\d+$").unwrap(),
            max_tags: 1,
            exclude: Vec::new(),
        };
        let identity = TagTemplate::parse("{{ .SourceTag }}").unwrap();
        let available = tags(&["8.9", "8.9-1028", "8.9-1107"]);
        let picked = choose(&strategy, Some(&available), None, Rules::Caulk).unwrap();
        assert_eq!(picked, [Choice::Tag("8.9-1107".into())], "UBI's releases are not patches of 8.9");
        // Pushed beside their sources with that template, they would be.
        assert!(choose(&strategy, Some(&available), Some(&identity), Rules::Caulk).is_err());
    }

    #[test]
    fn copa_files_pick_what_copa_picks() {
        let pick = |strategy: &Strategy, available: &[&str]| -> Vec<String> {
            choose(strategy, Some(&tags(available)), Some(&template()), Rules::Copa)
                .unwrap()
                .into_iter()
                .map(|c| match c {
                    Choice::Tag(t) | Choice::Missing(t) => t,
                })
                .collect()
        };
        // Only versions count; pre-releases compare part by part.
        let alpine = Strategy::Pattern {
            pattern: regex::Regex::new("-alpine").unwrap(),
            max_tags: 2,
            exclude: Vec::new(),
        };
        assert_eq!(
            pick(
                &alpine,
                &[
                    "stable-alpine",
                    "12.22.1-alpine3.9",
                    "12.22.1-alpine3.10",
                    "mainline-alpine",
                    "12.21-alpine"
                ]
            ),
            ["12.22.1-alpine3.10", "12.22.1-alpine3.9"]
        );
        // `latest` is the highest version, a pre-release included.
        let latest = Strategy::Latest { exclude: Vec::new() };
        assert_eq!(pick(&latest, &["3.19", "3.20-rc1", "edge", "latest"]), ["3.20-rc1"]);
        // Nothing to patch is not a failure, as in Copa.
        assert!(pick(&latest, &["edge", "latest", "1.2.3.4"]).is_empty());
    }

    #[test]
    fn latest_is_the_highest_release() {
        let latest = Strategy::Latest { exclude: tags(&["3.20"]) };
        assert_eq!(
            chosen(&latest, &["3.18", "3.19.1", "3.20", "3.19.1-patched", "edge", "latest", "3.21-rc1"]),
            ["3.19.1"]
        );
        assert_eq!(chosen(&latest, &["edge", "latest"]), ["latest"]);
        assert!(choose(&latest, Some(&tags(&["edge"])), Some(&template()), Rules::Caulk).is_err());
        assert!(choose(&latest, None, Some(&template()), Rules::Caulk).is_err());
    }

    #[test]
    fn list_keeps_its_order_and_names_missing_tags() {
        let list = Strategy::List(tags(&["b", "a", "b", "gone"]));
        assert_eq!(chosen(&list, &["a", "b"]), ["b", "a", "missing gone"]);
        // Unlisted repositories: every tag is tried.
        assert_eq!(choose(&list, None, Some(&template()), Rules::Caulk).unwrap().len(), 3);
    }
}
