//! Deciding the updates and the apk commands that make them.
//!
//! # The commands
//!
//! First `apk update` refreshes the indexes into `/var/cache/apk`, which is
//! a host-side cache mount: the indexes never reach the new layer, and later
//! steps read them from there instead of fetching them again (this is why
//! no step passes `--no-cache`, which would make each step download every
//! index anew, apk(8): "Do not use any local cache path"). Then:
//!
//! - report mode, for each selected package, two steps:
//!   `apk add --upgrade --virtual .caulk-NAME NAME>=FIXED`, then
//!   `apk del .caulk-NAME`. `apk add NAME` would add NAME to the world file
//!   (apk-add(8): "adds or updates given constraints to world"), turning a
//!   package installed as a dependency into one the image asked for, and
//!   `NAME>=FIXED` would stay in world as a pin. apk-add(8) documents the
//!   virtual package for exactly this: "One can use this to ensure that
//!   selected set of packages are installed, and later the temporary
//!   modification be undone with apk-del(8) NAME without removing packages
//!   that were installed earlier". `apk fix --upgrade NAME`, which apk-add(8)
//!   names for upgrading "without modifying world", takes no version
//!   constraint, so a repository without the fix would go unnoticed until
//!   verification; the constraint makes apk refuse it with its reason. One
//!   add per package, so with `--ignore-errors` one package's failure
//!   (tolerated) leaves the others to their own steps; the `del` steps always
//!   tolerate failure (nothing to delete when the add failed);
//! - update-all mode: `apk upgrade` (apk-upgrade(8): upgrades installed
//!   packages, never changes world).
//!
//! With `apk` in the image the commands run there. Without one (Wolfi and
//! Chainguard distroless images), they run in the tooling context: the
//! host's root fs, or the image `caulk patch --tooling-image` names, with
//! the image mounted at `/target`, as `apk --root /target --keys-dir
//! /target/etc/apk/keys …` (apk(8): `--root` "Manage file system at
//! ROOT"). No `--repositories-file`: given one, apk-tools reads that file
//! alone and skips `etc/apk/repositories.d`, where Wolfi images keep theirs;
//! without it apk reads both from the root, as in the image. apk reads
//! `etc/apk/arch` and the database relative to the root too, and runs
//! package scripts chrooted into it. That needs an apk-tools in the tooling
//! root; the probe asks, and one without makes the image not-applicable
//! with that reason.
//!
//! Every name reaching an argv passed [`crate::name`], every version apk's
//! version grammar; names start with a letter or digit, so none is read as
//! an option.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use caulk_sdk::cache_key::CacheKey;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    CacheMount, Command, ExecContext, Fact, PassedOver, PatchPlan, PlanRequest, SelectedUpdate,
    SkippedUpdate, Step, Target, Update, UpdateMode, VersionTarget,
};
use caulk_sdk::version::apk;

use crate::db::{INSTALLED_PATH, Installed, KEYS_DIR, REPOSITORIES_PATH, World, repositories};
use crate::error::ApkError;
use crate::name::PackageName;
use crate::probe::{
    APK_BIN, APK_PATHS, ARCH, HOST_APK, INSTALLED, KEYS, REPOSITORIES, TOOLING_MOUNT, WORLD, host_tooling,
};

/// The ecosystem apk patches.
pub const APK: &str = "apk";

/// Names of the plan's temporary virtual packages start with this.
pub const VIRTUAL_PREFIX: &str = ".caulk-";

/// Where apk keeps its indexes (and packages, when a cache is configured).
pub const CACHE_DIR: &str = "/var/cache/apk";

/// Paths left out of the new layer: indexes and cached packages (also under
/// `/etc/apk/cache`, where an image may configure its package cache), apk's
/// lock file, and the log apk-tools 3 appends every change to (apk(8):
/// "logged to /var/log/apk.log"). Never `/lib/apk/db/installed`, `scripts.tar` or
/// `triggers`, which must move together with the installed files.
pub const DROP_PATHS: &[&str] =
    &["/var/cache/apk/**", "/etc/apk/cache/**", "/lib/apk/db/lock", "/var/log/apk.log"];

/// Where the commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The image's own apk.
    Image,
    /// The host's apk with `--root` on the image.
    Host,
}

/// The image as far as planning needs it.
pub struct Image {
    pub installed: Installed,
    pub world: World,
    pub runner: Runner,
}

/// Whether os-release names an apk distribution, itself or through
/// `ID_LIKE`; the host picks this updater by the same names.
pub fn is_apk_os(os: &caulk_sdk::update::OsRelease) -> bool {
    const FAMILIES: [&str; 3] = ["alpine", "wolfi", "chainguard"];
    std::iter::once(&os.id).chain(&os.id_like).any(|id| FAMILIES.contains(&id.as_str()))
}

/// Reads the plan-phase facts.
pub fn image(target: &Target, facts: &[Fact]) -> Result<Image, ApkError> {
    let missing = |id, what| ApkError::MissingFact { phase: "plan", id, what };
    if !facts.answered(INSTALLED) {
        return Err(missing(INSTALLED, INSTALLED_PATH));
    }
    let Some(bytes) = facts.file(INSTALLED) else {
        let os = target.os.as_ref().filter(|os| is_apk_os(os));
        let os = os.map(|os| os.pretty_name.clone().unwrap_or_else(|| os.id.clone()));
        return Err(ApkError::NoDatabase { path: INSTALLED_PATH, os });
    };
    let installed = Installed::parse(bytes)?;
    if !facts.answered(APK_BIN) {
        return Err(missing(APK_BIN, "/sbin/apk"));
    }
    let runner = if facts.files(APK_BIN).is_empty() { Runner::Host } else { Runner::Image };
    if runner == Runner::Host {
        let why = match (facts.output(HOST_APK), facts.unavailable(HOST_APK)) {
            (Some(out), _) if out.exit_code == 0 => None,
            (Some(out), _) => Some(format!(
                "`apk --version` on the host exited with {}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim().chars().take(200).collect::<String>()
            )),
            (None, Some(why)) => Some(format!("running apk from the host's root fs: {why}")),
            (None, None) => return Err(missing(HOST_APK, "apk --version from the host's root fs")),
        };
        if let Some(why) = why {
            return Err(ApkError::NoApk { paths: APK_PATHS.join(", "), why });
        }
    }
    let files: Vec<&[u8]> = facts.files(REPOSITORIES).iter().filter_map(|f| f.contents.as_deref()).collect();
    if repositories(&files).is_empty() {
        return Err(ApkError::NoRepositories { path: REPOSITORIES_PATH });
    }
    let world = facts.file(WORLD).map(World::parse).unwrap_or_default();
    Ok(Image { installed, world, runner })
}

/// The whole plan for `request`.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, ApkError> {
    check_options(&request.options)?;
    let image = image(&request.target, &request.facts)?;
    let mut plan = PatchPlan::empty();
    let mut work = Vec::new();
    match request.options.mode {
        UpdateMode::Report => {
            let mut seen = BTreeSet::new();
            for update in &request.updates {
                match decide(update, &image, request.options.ignore_errors)? {
                    Decision::Select(selected, name, needed) => {
                        if seen.insert(name.clone()) {
                            work.extend(add_steps(
                                image.runner,
                                &name,
                                &needed,
                                request.options.ignore_errors,
                            ));
                        }
                        plan.selected.push(selected);
                    }
                    Decision::Skip(skipped) => plan.skipped.push(skipped),
                }
            }
            if work.is_empty() {
                return Ok(plan);
            }
        }
        UpdateMode::All => {
            everything(&image, &mut plan);
            let argv = apk_argv(image.runner, "upgrade", &[]);
            work.push(step(
                "apk upgrade: upgrade every package with a newer version".into(),
                image.runner,
                argv,
                false,
            ));
        }
    }
    let refresh = step(
        "apk update: refresh the package indexes".into(),
        image.runner,
        apk_argv(image.runner, "update", &[]),
        true,
    );
    plan.steps = std::iter::once(refresh).chain(work).collect();
    plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    let cache_path = match image.runner {
        Runner::Image => CACHE_DIR.to_owned(),
        Runner::Host => format!("{TOOLING_MOUNT}{CACHE_DIR}"),
    };
    let key = format!(
        "apk-indexes-{}-{}",
        cache_label(&request.target, &request.facts),
        cache_digest(&request.target, &request.facts)
    );
    plan.caches = vec![CacheMount { path: cache_path, key }];
    Ok(plan)
}

/// Refuses options the apk updater cannot honour, rather than ignoring them.
pub fn check_options(options: &caulk_sdk::update::Options) -> Result<(), ApkError> {
    if let Some((key, _)) = options.settings.first() {
        return Err(ApkError::UnknownSetting { key: key.clone() });
    }
    if !options.index_urls.is_empty() {
        return Err(ApkError::IndexUrls { urls: options.index_urls.join(", ") });
    }
    Ok(())
}

enum Decision {
    /// Selected, with the validated name and the version to reach.
    Select(SelectedUpdate, PackageName, String),
    Skip(SkippedUpdate),
}

fn skip(update: &Update, installed: Option<&str>, reason: String, already_fixed: bool) -> Decision {
    Decision::Skip(SkippedUpdate {
        ecosystem: update.ecosystem.clone(),
        name: update.name.clone(),
        location: update.location.clone(),
        installed_version: installed.map(str::to_owned),
        reason,
        already_fixed,
    })
}

/// Checks the report's strings; none of them reaches apk before this.
fn validate(update: &Update) -> Result<(PackageName, Vec<apk::Version>), ApkError> {
    let package: PackageName =
        update.name.parse().map_err(|problem| ApkError::BadName { name: update.name.clone(), problem })?;
    let bad = |field, value: &str, e: caulk_sdk::version::VersionError| ApkError::BadVersion {
        name: update.name.clone(),
        field,
        value: value.chars().take(80).collect(),
        problem: e.to_string(),
    };
    update
        .installed_version
        .parse::<apk::Version>()
        .map_err(|e| bad("installed version", &update.installed_version, e))?;
    let fixed = update
        .fixed_versions
        .iter()
        .map(|f| f.parse::<apk::Version>().map_err(|e| bad("fixed version", f, e)))
        .collect::<Result<_, _>>()?;
    Ok((package, fixed))
}

fn decide(update: &Update, image: &Image, ignore_errors: bool) -> Result<Decision, ApkError> {
    if !update.ecosystem.eq_ignore_ascii_case(APK) {
        let reason = format!(
            "{} is a package of ecosystem {:?}; the apk updater patches apk packages only",
            update.name, update.ecosystem
        );
        return Ok(skip(update, None, reason, false));
    }
    let (package, fixed) = match validate(update) {
        Ok(valid) => valid,
        Err(e) if ignore_errors => {
            return Ok(skip(update, None, format!("{e} (skipped: --ignore-errors)"), false));
        }
        Err(e) => return Err(e),
    };
    let Some(installed) = image.installed.get(package.as_str()) else {
        return Ok(skip(update, None, not_installed(&package, &image.installed), false));
    };
    let current = &installed.version;
    let Ok(current_version) = current.parse::<apk::Version>() else {
        let reason = format!(
            "{INSTALLED_PATH} (line {}) gives {package} the version {current:?}, which is not an apk version",
            installed.line
        );
        return Ok(skip(update, Some(current), reason, false));
    };
    let Some(needed) = fixed.iter().max() else {
        return Ok(skip(
            update,
            Some(current),
            format!("the report lists no fixed version for {package}"),
            false,
        ));
    };
    if current_version >= *needed {
        let reason = format!("{package} {current} is already at or above the fixed version {needed}");
        return Ok(skip(update, Some(current), reason, true));
    }
    if let Some(pin) = image.world.blocking(package.as_str(), needed) {
        let reason = format!(
            "/etc/apk/world holds {package} with `{pin}`, which the fixed version {needed} does not meet; edit the \
             image's world file to let caulk upgrade it"
        );
        return Ok(skip(update, Some(current), reason, false));
    }
    let needed = needed.as_str().to_owned();
    let rationale = rationale(update, &package, current, &needed, &fixed, &image.world);
    let passed_over = passed_over(&needed, &update.fixed_versions);
    Ok(Decision::Select(
        SelectedUpdate {
            ecosystem: APK.into(),
            name: update.name.clone(),
            location: update.location.clone(),
            from: current.clone(),
            target: VersionTarget::AtLeast(needed.clone()),
            vulnerabilities: update.vulnerabilities.clone(),
            rationale: Some(rationale),
            passed_over,
        },
        package,
        needed,
    ))
}

/// Why `package` counts as not installed, naming what does provide it.
pub fn not_installed(package: &PackageName, installed: &Installed) -> String {
    let names = |packages: Vec<&crate::db::Package>| {
        packages.iter().map(|p| format!("{} {}", p.name, p.version)).collect::<Vec<_>>().join(", ")
    };
    let providers = installed.providers(package.as_str());
    if !providers.is_empty() {
        return format!(
            "{package} is not an installed package but a name that {} provides (a virtual package); the report \
             should name the providing package",
            names(providers)
        );
    }
    let built = installed.built_from(package.as_str());
    if !built.is_empty() {
        return format!(
            "{package} is not installed; it is the origin (source package) of the installed {}, which the report \
             should name",
            names(built)
        );
    }
    format!("{package} is not installed ({INSTALLED_PATH} has no package of that name)")
}

fn rationale(
    update: &Update,
    package: &PackageName,
    current: &str,
    needed: &str,
    fixed: &[apk::Version],
    world: &World,
) -> String {
    let mut text = format!("the newest version in the image's repositories, at least {needed}");
    let distinct: BTreeSet<&str> = fixed.iter().map(apk::Version::as_str).collect();
    if distinct.len() > 1 {
        let _ = write!(text, " (the highest of {} fixed versions)", distinct.len());
    }
    if world.lists(package.as_str()) {
        let _ = write!(text, "; {package} stays listed in /etc/apk/world as it was");
    } else {
        let _ = write!(
            text,
            "; {package} is installed as a dependency and stays one (not added to /etc/apk/world)"
        );
    }
    if update.installed_version.parse::<apk::Version>().ok() != current.parse::<apk::Version>().ok() {
        let _ = write!(text, "; the report saw {}, the image has {current}", update.installed_version);
    }
    text
}

fn passed_over(needed: &str, fixed_versions: &[String]) -> Vec<PassedOver> {
    let Ok(needed_version) = needed.parse::<apk::Version>() else { return Vec::new() };
    let mut seen = BTreeSet::new();
    fixed_versions
        .iter()
        .filter(|f| seen.insert(f.as_str()))
        .filter(|f| f.parse::<apk::Version>().is_ok_and(|v| v < needed_version))
        .map(|f| PassedOver {
            version: f.clone(),
            reason: format!("lower than {needed}, which other vulnerabilities of the package need"),
        })
        .collect()
}

/// Update-all mode: every installed package but virtual ones.
fn everything(image: &Image, plan: &mut PatchPlan) {
    for package in image.installed.packages() {
        if package.is_virtual() {
            plan.skipped.push(SkippedUpdate {
                ecosystem: APK.into(),
                name: package.name.clone(),
                location: None,
                installed_version: Some(package.version.clone()),
                reason: format!(
                    "{} is a virtual package made in the image (apk add --virtual); no repository has it",
                    package.name
                ),
                already_fixed: false,
            });
            continue;
        }
        plan.selected.push(SelectedUpdate {
            ecosystem: APK.into(),
            name: package.name.clone(),
            location: None,
            from: package.version.clone(),
            target: VersionTarget::Newest,
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        });
    }
}

/// `apk [--root /target] --no-progress APPLET ARGS…`: global options before
/// the applet, as apk(8)'s synopsis has them.
pub fn apk_argv(runner: Runner, applet: &str, args: &[String]) -> Vec<String> {
    let mut argv = vec!["apk".to_owned()];
    if runner == Runner::Host {
        // The image's repositories come from the root (module docs); its
        // keys are named outright all the same.
        argv.extend([
            "--root".to_owned(),
            TOOLING_MOUNT.to_owned(),
            "--keys-dir".to_owned(),
            format!("{TOOLING_MOUNT}{KEYS_DIR}"),
        ]);
    }
    argv.extend(["--no-progress".to_owned(), applet.to_owned()]);
    argv.extend(args.iter().cloned());
    argv
}

fn step(summary: String, runner: Runner, argv: Vec<String>, tolerate_failure: bool) -> Step {
    let mut command = Command::new(argv).with_network();
    command.context = match runner {
        Runner::Image => ExecContext::Target,
        Runner::Host => host_tooling(),
    };
    Step { summary, command, tolerate_failure }
}

/// The summary of the add step of `name`; verification finds it by this.
pub fn add_summary(name: &str, needed: &str) -> String {
    format!("apk add: upgrade {name} to at least {needed}")
}

fn add_steps(runner: Runner, name: &PackageName, needed: &str, ignore_errors: bool) -> [Step; 2] {
    let virtual_name = format!("{VIRTUAL_PREFIX}{name}");
    let add = apk_argv(
        runner,
        "add",
        &["--upgrade".into(), "--virtual".into(), virtual_name.clone(), format!("{name}>={needed}")],
    );
    let del = apk_argv(runner, "del", std::slice::from_ref(&virtual_name));
    [
        step(add_summary(name.as_str(), needed), runner, add, ignore_errors),
        step(format!("apk del: drop the temporary virtual package {virtual_name}"), runner, del, true),
    ]
}

/// A digest of what decides the content of apk's indexes: the OS release,
/// the platform, apk's architecture, the repositories and the keys. Images
/// of one base share it, so they share the downloaded indexes.
pub fn cache_digest(target: &Target, facts: &[Fact]) -> String {
    let mut key = CacheKey::new("caulk apk cache v1");
    if let Some(os) = &target.os {
        key.field(&os.id);
        key.field(os.version_id.as_deref().unwrap_or_default());
    }
    key.field(&target.platform.architecture);
    key.field(target.platform.variant.as_deref().unwrap_or_default());
    key.field(facts.file(ARCH).unwrap_or_default());
    for id in [REPOSITORIES, KEYS] {
        key.files(facts.files(id));
    }
    key.finish()
}

/// `alpine-3.19.1-x86_64`: readable, and safe as a file name whatever the
/// image says.
fn cache_label(target: &Target, facts: &[Fact]) -> String {
    let (id, version) = target
        .os
        .as_ref()
        .map_or(("unknown", ""), |os| (os.id.as_str(), os.version_id.as_deref().unwrap_or_default()));
    let arch = facts.file(ARCH).map(String::from_utf8_lossy).map(|a| a.trim().to_owned());
    let arch = arch.unwrap_or_else(|| target.platform.architecture.clone());
    format!("{id}-{version}-{arch}")
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}
