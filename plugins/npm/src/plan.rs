//! Deciding each update and the steps that make them.

use std::collections::BTreeMap;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::rules::{self, Finding, Pick};
use caulk_sdk::update::{
    CacheMount, Command, Fact, PatchPlan, PlanRequest, SelectedUpdate, SkippedUpdate, Step, Update,
    VersionTarget,
};
use caulk_sdk::version::npm::{Range, Version};

use crate::error::NpmError;
use crate::facts::{self, App};
use crate::place::{Place, place_of, valid_name};

/// npm's cache during steps: a host-side cache mount, never in the layer
/// (npm writes its logs there too).
pub const CACHE_DIR: &str = "/var/cache/caulk-npm";

/// An offline install in an app, production dependencies only.
const INSTALL: &[&str] = &["install", "--offline", "--omit=dev", "--no-audit", "--no-fund"];

/// Added to every install unless `npm.scripts=true`: lifecycle scripts of
/// the image's packages and of the app itself are image content, and a
/// bare `npm install` (after an `overrides` entry) runs the app's own.
const NO_SCRIPTS: &str = "--ignore-scripts";

/// Where the fetch steps install, to fill the cache: the sandbox's /tmp.
const FETCH_PREFIX: &str = "/tmp/caulk-npm-fetch";

/// `specs` (`NAME@VERSION`) split so no batch names a package twice.
fn batches(specs: &[String]) -> Vec<Vec<String>> {
    let name = |spec: &str| spec.rsplit_once('@').map_or(spec, |(n, _)| n).to_owned();
    let mut out: Vec<Vec<String>> = Vec::new();
    for spec in specs {
        match out.iter_mut().find(|b| !b.iter().any(|s| name(s) == name(spec))) {
            Some(batch) => batch.push(spec.clone()),
            None => out.push(vec![spec.clone()]),
        }
    }
    out
}

/// What npm leaves behind that the layer should not carry.
pub const DROP_PATHS: &[&str] = &["/root/.npm/**", "/root/.npm"];

/// How one selected update is made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// `npm install NAME@VERSION` in the app; `exact` keeps an exact pin
    /// exact in `package.json` (else npm saves `^VERSION`).
    Direct { exact: bool },
    /// An `overrides` entry, then `npm install` in the app.
    Transitive,
    /// `npm install -g NAME@VERSION`.
    Global,
}

enum Decision {
    Select(SelectedUpdate, Action),
    Skip(SkippedUpdate),
}

/// Everything one app or the global root gets.
#[derive(Default)]
struct Work {
    exact: Vec<String>,
    ranged: Vec<String>,
    overrides: Vec<(String, String)>,
}

pub fn plan(request: &PlanRequest) -> Result<PatchPlan, NpmError> {
    let settings = crate::settings::settings(&request.options)?;
    let scripts: &[&str] = if settings.scripts { &[] } else { &[NO_SCRIPTS] };
    let mut plan = PatchPlan::default();
    if request.updates.is_empty() {
        return Ok(plan);
    }
    let facts = &request.facts;
    let root = facts::global_root(facts).map_err(|detail| NpmError::NoNpm { detail })?;
    let node = facts::node_version(facts);
    let mut work: BTreeMap<Place, Work> = BTreeMap::new();
    let mut specs: Vec<String> = Vec::new();
    for update in &request.updates {
        match decide(update, facts, &root, node.as_ref(), request)? {
            Decision::Skip(skipped) => plan.skipped.push(skipped),
            Decision::Select(selected, action) => {
                let VersionTarget::Exactly(version) = &selected.target else {
                    unreachable!("npm pins exactly")
                };
                let spec = format!("{}@{version}", selected.name);
                let place = match (&action, place_of(selected.location.as_deref(), &root)) {
                    (Action::Global, _) | (_, None) => Place::Global,
                    (_, Some(place)) => place,
                };
                let entry = work.entry(place).or_default();
                match action {
                    Action::Direct { exact: true } | Action::Global => entry.exact.push(spec.clone()),
                    Action::Direct { exact: false } => entry.ranged.push(spec.clone()),
                    Action::Transitive => entry.overrides.push((selected.name.clone(), version.clone())),
                }
                if !specs.contains(&spec) {
                    specs.push(spec);
                }
                plan.selected.push(selected);
            }
        }
    }
    if specs.is_empty() {
        return Ok(plan);
    }
    let env = step_env(request, facts);
    let with_env = |mut command: Command| {
        for (k, v) in &env {
            command = command.env(k.clone(), v.clone());
        }
        command
    };
    let tolerate = request.options.ignore_errors;
    let step = |summary: String, command: Command| Step {
        summary,
        command: with_env(command),
        tolerate_failure: tolerate,
    };

    // Installing into a scratch prefix on the sandbox's /tmp (never in the
    // layer) puts each target and everything it depends on into the cache,
    // so the installs below resolve and unpack offline. One package name
    // per batch: two versions of one name cannot share a prefix.
    for batch in batches(&specs) {
        let mut fetch = vec![
            "install",
            "--prefix",
            FETCH_PREFIX,
            "--no-save",
            "--no-package-lock",
            "--omit=dev",
            // Never scripts here, whatever the setting: this scratch
            // install only fills the cache.
            NO_SCRIPTS,
            "--no-audit",
            "--no-fund",
        ];
        fetch.extend(batch.iter().map(String::as_str));
        // Tolerated like the installs under --ignore-errors: a batch that
        // cannot be fetched fails only its own packages' installs.
        plan.steps.push(step(
            format!("fetch {} from the registry", batch.join(" ")),
            facts::npm(&fetch).with_network(),
        ));
    }
    for (place, work) in &work {
        match place {
            Place::Global => {
                let mut argv = vec!["install", "-g", "--offline", "--no-audit", "--no-fund"];
                argv.extend(scripts);
                argv.extend(work.exact.iter().map(String::as_str));
                plan.steps
                    .push(step(format!("install {} globally", work.exact.join(" ")), facts::npm(&argv)));
            }
            Place::App(dir) => {
                for (name, version) in &work.overrides {
                    let set = format!("overrides.{name}={version}");
                    plan.steps.push(step(
                        format!("override {name} with {version} in {dir}/package.json"),
                        facts::npm(&["pkg", "set", &set]).in_dir(dir.clone()),
                    ));
                }
                let mut installs: Vec<(Vec<&str>, &[String])> = Vec::new();
                if !work.exact.is_empty() {
                    installs.push((vec!["--save-exact"], &work.exact));
                }
                if !work.ranged.is_empty() {
                    installs.push((Vec::new(), &work.ranged));
                }
                if installs.is_empty() {
                    installs.push((Vec::new(), &[]));
                }
                for (flags, specs) in installs {
                    let mut argv = INSTALL.to_vec();
                    argv.extend(scripts);
                    argv.extend(flags);
                    argv.extend(specs.iter().map(String::as_str));
                    let what =
                        if specs.is_empty() { "the overridden packages".to_owned() } else { specs.join(" ") };
                    plan.steps.push(step(
                        format!("install {what} in {dir}"),
                        facts::npm(&argv).in_dir(dir.clone()),
                    ));
                }
            }
        }
    }
    plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    plan.caches = vec![CacheMount { path: CACHE_DIR.into(), key: "npm-cache-v1".into() }];
    Ok(plan)
}

/// The environment of every step: npm's cache in the cache mount, node
/// trusting the bundle the host mounts in network steps, the registry the
/// user named.
fn step_env(request: &PlanRequest, facts: &[Fact]) -> Vec<(String, String)> {
    let mut env = vec![("npm_config_cache".to_owned(), CACHE_DIR.to_owned())];
    if let Some(ca) = facts::ca_bundle(facts) {
        env.push(("NODE_EXTRA_CA_CERTS".into(), ca));
    }
    if let Some(registry) = request.options.index_urls.first() {
        env.push(("npm_config_registry".into(), registry.clone()));
    }
    env
}

fn skip(update: &Update, reason: impl Into<String>) -> Decision {
    Decision::Skip(SkippedUpdate::of(update, reason))
}

fn decide(
    update: &Update,
    facts: &[Fact],
    root: &str,
    node: Option<&Version>,
    request: &PlanRequest,
) -> Result<Decision, NpmError> {
    let name = &update.name;
    if !valid_name(name) {
        return Ok(skip(update, format!("{name:?} is not an npm package name")));
    }
    let Some(place) = place_of(update.location.as_deref(), root) else {
        return Ok(skip(
            update,
            format!(
                "{name}: the location {:?} names no app directory, lock file or package.json",
                update.location.as_deref().unwrap_or("")
            ),
        ));
    };
    let (installed, action) = match &place {
        Place::Global => {
            let file = facts.file(&facts::global_id(name));
            let version = file
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|m| m.get("version")?.as_str().map(str::to_owned));
            let Some(version) = version else {
                return Ok(skip(update, format!("{name} is not installed globally under {root}")));
            };
            (version, Action::Global)
        }
        Place::App(dir) => match in_app(update, &facts::app(facts, dir), dir) {
            Ok(found) => found,
            Err(reason) => return Ok(skip(update, reason)),
        },
    };
    let Ok(installed_v) = installed.parse::<Version>() else {
        return Ok(skip(update, format!("{name}: the installed version {installed:?} is not SemVer")));
    };
    let fixed: Vec<Version> = update.fixed_versions.iter().filter_map(|f| f.parse().ok()).collect();
    let mut ids = update.vulnerabilities.clone();
    if ids.is_empty() {
        ids.push(String::new());
    }
    let findings: Vec<Finding<Version>> =
        ids.into_iter().map(|vulnerability| Finding { vulnerability, fixed: fixed.clone() }).collect();
    let level = request.options.patch_level.into();
    let (order, rule, mut passed_over) = match rules::pick(&installed_v, &findings, level, None) {
        Pick::AlreadyFixed { .. } => {
            let s = SkippedUpdate::of(update, format!("{name} {installed} is already at or above every fix"))
                .installed(installed.clone())
                .already_fixed();
            return Ok(Decision::Skip(s));
        }
        Pick::OutOfReach { reason, .. } => {
            return Ok(Decision::Skip(
                SkippedUpdate::of(update, format!("{name}: {reason}")).installed(installed),
            ));
        }
        Pick::Chosen { order, rule, passed_over } => (order, rule, passed_over),
    };
    // A fix that cannot be installed may have a later release on its line
    // that still carries it (4.17.20 deprecated: 4.17.21).
    let published: Vec<Version> = facts
        .versions(&facts::lookup_id(name))
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.version.parse::<Version>().ok())
        .filter(|v| !v.is_prerelease())
        .collect();
    let mut tries: Vec<Version> = Vec::new();
    for candidate in order {
        let later = rules::ascending_from(&candidate, published.iter())
            .into_iter()
            .filter(|v| rules::line(v) == rules::line(&candidate));
        for version in std::iter::once(candidate.clone()).chain(later) {
            if !tries.contains(&version) {
                tries.push(version);
            }
        }
    }
    let mut chosen = None;
    let mut refused: Vec<String> = Vec::new();
    for candidate in tries {
        match installable(facts, name, &candidate, node) {
            Ok(()) => {
                chosen = Some(candidate);
                break;
            }
            Err(why) => {
                refused.push(format!("{candidate}: {why}"));
                passed_over.push((candidate, why));
            }
        }
    }
    let Some(chosen) = chosen else {
        let reasons = refused.join("; ");
        if request.options.ignore_errors {
            return Ok(skip(update, format!("{name}: no fixed version can be installed: {reasons}")));
        }
        return Err(NpmError::NothingInstallable { name: name.clone(), reasons });
    };
    let rule = match refused.first() {
        Some(first) => format!("{rule}; {chosen} instead, as {first}"),
        None => rule,
    };
    let mut selected =
        SelectedUpdate::of(update, installed, VersionTarget::Exactly(chosen.to_string())).because(rule);
    for (version, reason) in passed_over {
        selected = selected.passing_over(version.to_string(), reason);
    }
    Ok(Decision::Select(selected, action))
}

/// The installed version of `update` in the app at `dir` and how to move
/// it, or why it is skipped.
fn in_app(update: &Update, app: &App, dir: &str) -> Result<(String, Action), String> {
    let name = &update.name;
    let Some(lock) = &app.lock else {
        return Err(if app.yarn {
            format!("{dir} is managed by yarn (yarn.lock); the npm updater patches npm trees only")
        } else if app.pnpm {
            format!("{dir} is managed by pnpm (pnpm-lock.yaml); the npm updater patches npm trees only")
        } else if let Some(why) = &app.bad_lock {
            format!("{dir}/package-lock.json is not JSON: {why}")
        } else if app.manifest.is_none() {
            format!("{dir} has no package.json")
        } else {
            format!("{dir} has no package-lock.json, so npm's tree there cannot be kept consistent")
        });
    };
    let Some(manifest) = &app.manifest else { return Err(format!("{dir} has no package.json")) };
    let copies = facts::copies(lock, name);
    if copies.is_empty() {
        return Err(format!("{name} is not in {dir}/package-lock.json (lockfile v2 or later is needed)"));
    }
    let production: Vec<&facts::Copy> = copies.iter().filter(|c| !c.dev).collect();
    if production.is_empty() {
        return Err(format!("{name} is only a devDependency in {dir}; devDependencies are left out"));
    }
    let installed = production
        .iter()
        .find(|c| c.version == update.installed_version)
        .or_else(|| production.iter().min_by(|a, b| cmp_versions(&a.version, &b.version)))
        .map(|c| c.version.clone())
        .unwrap_or_default();
    let action = match facts::direct_range(manifest, name) {
        Some(range) => {
            Action::Direct { exact: range.trim().trim_start_matches('=').parse::<Version>().is_ok() }
        }
        None if name.contains('.') => {
            return Err(format!(
                "{name} is a transitive dependency in {dir} and `npm pkg set` cannot name it in overrides"
            ));
        }
        None => Action::Transitive,
    };
    Ok((installed, action))
}

fn cmp_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// Whether the registry publishes `version`, has not deprecated it, and its
/// `engines.node` admits the image's node.
fn installable(facts: &[Fact], name: &str, version: &Version, node: Option<&Version>) -> Result<(), String> {
    let id = facts::lookup_id(name);
    if let Some(why) = facts.unavailable(&id) {
        return Err(format!("the registry could not be asked ({why})"));
    }
    let published = facts.versions(&id).ok_or("the registry was not asked")?;
    let Some(entry) = published.iter().find(|p| p.version.parse::<Version>().is_ok_and(|v| v == *version))
    else {
        return Err("not published on the registry".to_owned());
    };
    if let Some(message) = &entry.deprecated {
        return Err(format!("deprecated on the registry: {message}"));
    }
    let wants = entry.engines.iter().find(|(runtime, _)| runtime == "node").map(|(_, range)| range);
    if let (Some(range), Some(node)) = (wants, node)
        && let Ok(parsed) = range.parse::<Range>()
        && !parsed.satisfies(node)
    {
        return Err(format!("needs node {range}; the image has {node}"));
    }
    Ok(())
}
