//! npm registry look-ups: the package's document in its abbreviated form
//! (`application/vnd.npm.install-v1+json`, what npm itself fetches), which
//! lists every version with its `deprecated` message and `engines`.

use std::collections::BTreeMap;

use caulk_sdk::index_url::{IndexUrl, redact};
use caulk_sdk::version::npm::Version;
use serde::Deserialize;

use crate::model::{Answer, PublishedVersion};

/// The public npm registry.
pub const REGISTRY: &str = "https://registry.npmjs.org/";

/// What a package document says that look-ups answer with.
#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    versions: BTreeMap<String, Manifest>,
}

/// One version's manifest. Old packages spell `engines` as a list of
/// strings and `deprecated` as `false`; both are read as what they mean.
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    deprecated: Option<serde_json::Value>,
    #[serde(default)]
    engines: Option<serde_json::Value>,
}

/// The versions of `name` on the first registry in `urls` that has it.
pub(super) fn lookup(agent: &ureq::Agent, urls: &[String], name: &str) -> Answer {
    if let Err(why) = check_name(name) {
        return Answer::Unavailable(format!("{name:?} is not an npm package name: {why}"));
    }
    let mut problems = Vec::new();
    for text in urls {
        let url = match IndexUrl::parse(text) {
            Ok(url) => url,
            Err(e) => {
                problems.push(format!("registry URL {:?} is refused: {e}", redact(text)));
                continue;
            }
        };
        let document = super::fetch(
            agent,
            &url,
            &url.package_document(name),
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        );
        match document {
            Ok((_, body)) => match versions(&body) {
                Ok(versions) if !versions.is_empty() => return Answer::Versions(versions),
                Ok(_) => problems.push(format!("{url}: no versions published")),
                Err(e) => problems.push(format!("{url}: the package document is not what npm serves: {e}")),
            },
            Err(e) => problems.push(format!("{url}: {e}")),
        }
    }
    Answer::Unavailable(format!("{name}: {}", problems.join("; ")))
}

/// What npm accepts as a package name (`validate-npm-package-name`, with
/// the old names it still installs): `name` or `@scope/name`, at most 214
/// bytes, URL-safe, not starting with `.` or `_`.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 214 {
        return Err("it must have 1 to 214 characters");
    }
    let bare = match name.strip_prefix('@') {
        Some(scoped) => {
            let (scope, bare) = scoped.split_once('/').ok_or("a scoped name is `@scope/name`")?;
            if scope.is_empty() || scope.starts_with('.') {
                return Err("the scope is empty or starts with `.`");
            }
            check_chars(scope)?;
            bare
        }
        None => name,
    };
    if bare.is_empty() || bare.starts_with(['.', '_']) {
        return Err("it is empty or starts with `.` or `_`");
    }
    check_chars(bare)
}

fn check_chars(part: &str) -> Result<(), &'static str> {
    if part.chars().all(|c| c.is_ascii_alphanumeric() || "-._~!*'()".contains(c)) {
        Ok(())
    } else {
        Err("it has a character npm does not allow in names")
    }
}

/// The published versions in a package document, oldest first by npm's
/// order; versions that are not valid SemVer (npm cannot install them
/// either) are left out.
fn versions(body: &str) -> Result<Vec<PublishedVersion>, String> {
    let document: Document = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut versions: Vec<(Version, PublishedVersion)> = document
        .versions
        .into_iter()
        .filter_map(|(text, manifest)| {
            let parsed = text.parse::<Version>().ok()?;
            let deprecated = match manifest.deprecated {
                Some(serde_json::Value::String(why)) if !why.is_empty() => Some(why),
                Some(serde_json::Value::Bool(true)) => Some("deprecated".to_owned()),
                _ => None,
            };
            let engines = match manifest.engines {
                Some(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .filter_map(|(runtime, range)| Some((runtime, range.as_str()?.to_owned())))
                    .collect(),
                // `["node >=0.4"]`, from npm's early days.
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .filter_map(|item| {
                        let (runtime, range) = item.as_str()?.trim().split_once(' ')?;
                        Some((runtime.to_owned(), range.trim().to_owned()))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some((
                parsed,
                PublishedVersion { version: text, requires_python: None, yanked: false, deprecated, engines },
            ))
        })
        .collect();
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(versions.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_give_deprecation_and_engines_in_semver_order() {
        let body = r#"{"name":"x","versions":{
            "1.10.0":{"engines":{"node":">=14","npm":">=6"}},
            "1.2.0":{"deprecated":"critical bug, use 1.2.1"},
            "1.2.1":{"deprecated":false,"engines":["node >=0.4"]},
            "1.0.0-beta.1":{"engines":{"node":7}},
            "not-semver":{}
        }}"#;
        let found = versions(body).unwrap();
        let names: Vec<&str> = found.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["1.0.0-beta.1", "1.2.0", "1.2.1", "1.10.0"]);
        assert_eq!(found[1].deprecated.as_deref(), Some("critical bug, use 1.2.1"));
        assert_eq!(found[2].deprecated, None);
        assert_eq!(found[2].engines, [("node".to_owned(), ">=0.4".to_owned())]);
        assert_eq!(found[3].engines.len(), 2);
        assert!(found[0].engines.is_empty(), "a number is no range");
        assert!(versions("[1,2]").is_err());
        assert!(versions("{}").unwrap().is_empty());
    }

    #[test]
    fn names_are_checked_before_any_request() {
        for good in ["lodash", "@babel/core", "JSONStream", "lodash.merge"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "@scope", "@/x", "a/b", "a b", ".hidden", "_under", "ünï"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let agent = ureq::Agent::new_with_defaults();
        let Answer::Unavailable(why) = lookup(&agent, &[REGISTRY.to_owned()], "../etc") else { panic!() };
        assert!(why.contains("not an npm package name"), "{why}");
    }
}
