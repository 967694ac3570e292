//! The questions of the plan phase and reading their answers.
//!
//! Round one asks what needs no knowledge of the image: node's version,
//! `npm root -g`, the CA bundles, and the registry for every package. Once
//! the global root is known, round two reads each app's manifests and each
//! global package's `package.json`.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Command, Fact, FileKind, IndexQuery, Options, Question, QuestionKind, Update};
use caulk_sdk::version::npm::Version;
use serde_json::Value;

use crate::NPM;
use crate::place::{Place, place_of, valid_name};

pub const NODE: &str = "node";
pub const NPM_ROOT: &str = "npm-root";
pub const CA: &str = "ca";

pub fn app_id(dir: &str) -> String {
    format!("app:{dir}")
}

pub fn lookup_id(name: &str) -> String {
    format!("lookup:{name}")
}

pub fn global_id(name: &str) -> String {
    format!("global:{name}")
}

/// The plan phase's questions, given the facts so far.
pub fn plan_questions(updates: &[Update], options: &Options, facts: &[Fact]) -> Vec<Question> {
    let mut questions = vec![
        Question::run(NODE, ["node", "--version"]),
        Question::run(NPM_ROOT, ["npm", "root", "-g"]),
        Question::files(CA, caulk_sdk::CA_BUNDLE_PATHS.iter().copied()),
    ];
    let mut names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).filter(|n| valid_name(n)).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        questions.push(Question {
            id: lookup_id(name),
            kind: QuestionKind::Lookup(IndexQuery {
                ecosystem: NPM.into(),
                name: (*name).to_owned(),
                index_urls: options.index_urls.clone(),
            }),
        });
    }
    let Ok(root) = global_root(facts) else { return questions };
    let mut places: Vec<(Place, &str)> = updates
        .iter()
        .filter(|u| valid_name(&u.name))
        .filter_map(|u| Some((place_of(u.location.as_deref(), &root)?, u.name.as_str())))
        .collect();
    places.sort_unstable();
    places.dedup();
    for (place, name) in places {
        questions.push(match place {
            Place::App(dir) => {
                let base = dir.trim_end_matches('/');
                Question::files(
                    app_id(&dir),
                    [
                        "package.json",
                        "package-lock.json",
                        "npm-shrinkwrap.json",
                        "yarn.lock",
                        "pnpm-lock.yaml",
                    ]
                    .map(|f| format!("{base}/{f}")),
                )
            }
            Place::Global => Question::files(global_id(name), [format!("{root}/{name}/package.json")]),
        });
    }
    questions.dedup_by(|a, b| a.id == b.id);
    questions
}

/// `npm root -g`, or why it is not known.
pub fn global_root(facts: &[Fact]) -> Result<String, String> {
    if let Some(why) = facts.unavailable(NPM_ROOT) {
        return Err(why.to_owned());
    }
    let out = facts.output(NPM_ROOT).ok_or("was not run")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout.trim();
    if out.exit_code != 0 {
        return Err(format!("exited {}: {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()));
    }
    if !crate::place::safe_path(root) {
        return Err(format!("printed {root:?}, not an absolute path"));
    }
    Ok(root.to_owned())
}

/// The image's node version (`node --version` prints `v18.19.0`).
pub fn node_version(facts: &[Fact]) -> Option<Version> {
    let out = facts.output(NODE).filter(|o| o.exit_code == 0)?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The first system CA bundle the image has: where the host mounts its own
/// bundle in network steps, so node is pointed there.
pub fn ca_bundle(facts: &[Fact]) -> Option<String> {
    caulk_sdk::CA_BUNDLE_PATHS.iter().find_map(|path| {
        facts
            .files(CA)
            .iter()
            .find(|f| f.path == *path && f.kind == FileKind::Regular)
            .map(|f| f.path.clone())
    })
}

/// What an app directory holds.
#[derive(Debug, Default)]
pub struct App {
    pub manifest: Option<Value>,
    /// `package-lock.json` or `npm-shrinkwrap.json`, parsed.
    pub lock: Option<Value>,
    /// A lock file that is there but is not JSON: why.
    pub bad_lock: Option<String>,
    pub yarn: bool,
    pub pnpm: bool,
}

pub fn app(facts: &[Fact], dir: &str) -> App {
    let base = dir.trim_end_matches('/');
    let files = facts.files(&app_id(dir));
    let file = |name: &str| {
        let path = format!("{base}/{name}");
        files.iter().find(|f| f.path == path && f.kind == FileKind::Regular)
    };
    let json =
        |name: &str| file(name).and_then(|f| f.contents.as_deref()).map(serde_json::from_slice::<Value>);
    let mut app =
        App { yarn: file("yarn.lock").is_some(), pnpm: file("pnpm-lock.yaml").is_some(), ..App::default() };
    app.manifest = json("package.json").and_then(Result::ok);
    match json("npm-shrinkwrap.json").or_else(|| json("package-lock.json")) {
        Some(Ok(lock)) => app.lock = Some(lock),
        Some(Err(e)) => app.bad_lock = Some(e.to_string()),
        None => {}
    }
    app
}

/// One copy of a package in an app's lock: its key (`node_modules/a/node_modules/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub key: String,
    pub version: String,
    /// Needed only by devDependencies.
    pub dev: bool,
}

/// Every copy of `name` the lock records (lockfile v2 and v3 `packages`).
pub fn copies(lock: &Value, name: &str) -> Vec<Copy> {
    let suffix = format!("node_modules/{name}");
    let Some(packages) = lock.get("packages").and_then(Value::as_object) else { return Vec::new() };
    packages
        .iter()
        .filter(|(key, _)| *key == &suffix || key.ends_with(&format!("/{suffix}")))
        .filter_map(|(key, entry)| {
            Some(Copy {
                key: key.clone(),
                version: entry.get("version")?.as_str()?.to_owned(),
                dev: entry.get("dev").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// The range `package.json` gives `name` among the dependencies that are
/// installed in production (`dependencies`, `optionalDependencies`).
pub fn direct_range<'a>(manifest: &'a Value, name: &str) -> Option<&'a str> {
    ["dependencies", "optionalDependencies"].iter().find_map(|field| manifest.get(field)?.get(name)?.as_str())
}

/// A command in the image with npm's noise off.
pub fn npm(args: &[&str]) -> Command {
    let mut argv = vec!["npm"];
    argv.extend_from_slice(args);
    Command::new(argv)
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_copies_are_every_nested_install() {
        let lock: Value = serde_json::from_str(
            r#"{"lockfileVersion":3,"packages":{
                "":{"name":"app"},
                "node_modules/minimist":{"version":"1.2.5"},
                "node_modules/mkdirp/node_modules/minimist":{"version":"0.0.8"},
                "node_modules/left-pad":{"version":"1.3.0","dev":true},
                "node_modules/minimist-extra":{"version":"9.9.9"}
            }}"#,
        )
        .unwrap();
        let found = copies(&lock, "minimist");
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].version, "0.0.8");
        assert!(copies(&lock, "left-pad")[0].dev);
        assert!(
            copies(&serde_json::json!({"dependencies": {}}), "x").is_empty(),
            "lockfile v1 has no packages"
        );
    }
}
