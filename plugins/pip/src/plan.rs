//! Deciding the updates and the pip commands that make them.
//!
//! # How a distribution is replaced
//!
//! - **The environment's own pip**, when the interpreter runs, has pip, and
//!   the distribution sits where that pip installs (`purelib`/`platlib`, or
//!   the user site with `--user`): `PYTHON -m pip install --no-deps … --
//!   NAME==VERSION …`, one pip run per environment. pip uninstalls the old
//!   version by its RECORD; the image's own pip configuration and `PIP_*`
//!   variables apply as they would for the image's users, and
//!   `--break-system-packages` is added for an interpreter that carries
//!   PEP 668's `EXTERNALLY-MANAGED` marker (Debian's), since caulk only
//!   moves what pip installed there.
//! - **`--target` with an interpreter of the image**, when the directory is
//!   not where the environment's pip installs (a `pip install --target`
//!   tree), or the environment has no pip but an interpreter of the image
//!   with the same Python version has one (a venv made `--without-pip`):
//!   `PYTHON -m pip install --no-deps --upgrade --target SCRATCH` (one pip
//!   run per directory, into a fresh directory beside DIR, see
//!   [`scratch`]), then a small script (see
//!   [`crate::scripts::MERGE_TARGET`]), run once for all of them, removes
//!   the old distributions' files and `.dist-info` by their RECORDs (their
//!   console scripts in the environment's `bin/` too, replaced by the new
//!   version's) and moves the new ones in file by file, so no stale metadata
//!   is left and a namespace package directory keeps its other
//!   distributions (pip's own `--target DIR --upgrade` replaces whole
//!   top-level directories). It is all or nothing: the old files wait aside
//!   ([`aside`]) until every new one is in place, and any error puts them
//!   back. The scratch directory is always removed, and it and the aside
//!   directory are left out of the layer should a step fail first. The image's own pip is preferred to the host's: it
//!   picks wheels for exactly the image's interpreter and C library.
//! - **`--target` with the host's pip** (`exec-context::tooling`, the host's
//!   root file system read-only and the image mounted at `/target`), when no
//!   interpreter of the image with that Python version has pip (distroless,
//!   or a copied tree of another version): the host's `python3 -I -m pip
//!   --isolated`, told the environment's Python version, implementation, ABI
//!   and wheel platforms (`--only-binary=:all:`, so nothing is built for the
//!   wrong interpreter), and the image's indexes spelt out
//!   (`PIP_CONFIG_FILE=/dev/null` keeps the host's configuration out); then
//!   the same clean-up.
//!
//! Distributions of the operating system (Debian's `/usr/lib/python3/dist-packages`,
//! anything under `/usr/lib` not installed by pip) are left to the OS
//! updater, and vendored copies (`setuptools/_vendor/...`) move only with the
//! package that vendors them: both are skipped with the reason.
//!
//! # Dependencies: checked first, then pinned
//!
//! Each candidate version is checked against the `Requires-Dist` of every
//! other distribution the environment sees (markers evaluated for its
//! interpreter and platform, see [`crate::conflict`]). Then pip itself is
//! asked, in a network probe, what installing the chosen versions would do
//! (`pip install --dry-run --report -`, with dependencies for the
//! environment's own pip, `--no-deps` for `--target`): the report gives each
//! new version's own requirements and any dependency pip would have to move.
//! The whole result is checked against the environment again; a candidate
//! that would break something is refused with the reason and the next one
//! is tried. What survives is installed **with `--no-deps` and every version
//! pinned**, exactly what was checked: nothing moves that was not checked,
//! and a dependency a new version needs is moved in the same pip run
//! (listed as a selected update of its own, "needed by ..."). With a pip
//! older than 22.2 (no `--report`) or `--plugin-opt pip.dry-run=false`, the
//! install is `--no-deps` after the dependents check alone, and
//! verification's `pip check` reports anything a new version lacks.
//!
//! Installs by environments' own pips that follow each other in the plan
//! run side by side in one step ([`SIDE_BY_SIDE`], see `side_by_side`):
//! environments that could meet share a lane, in plan order, and the lanes
//! run at once, because a pip install is mostly one core's work.
//!
//! No pip cache is written (`--no-cache-dir`); `SOURCE_DATE_EPOCH` makes
//! pip's bytecode checked-hash `.pyc` files, identical on every run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    Answer, Command, ExecContext, Fact, IndexQuery, Options, PatchLevel, PatchPlan, PlanRequest, Question,
    QuestionKind, SelectedUpdate, SkippedUpdate, Step, Target, Tooling, Update, UpdateMode, VersionTarget,
};
use sha2::{Digest, Sha256};

use crate::choose::{self, Choice, Interpreter, Published};
use crate::config::Indexes;
use crate::conflict::{self, Node, State};
use crate::discover::{self, Image};
use crate::env::{self, Dist, Env, EnvKind};
use crate::error::PipError;
use crate::name::{self, DistName, Version};
use crate::resolve::{self, Resolved};
use crate::rules::{self, Finding, Level};
use crate::scripts::{MERGE_TARGET, NO_BYTECODE, SIDE_BY_SIDE, probe_bytecode};

fn no_bytecode() -> (String, String) {
    (NO_BYTECODE.0.to_owned(), NO_BYTECODE.1.to_owned())
}

/// The ecosystem this plugin patches.
pub const PYTHON: &str = "python";
pub const DIST_FILES: &str = "dist-files";
pub const TOOLING_PIP: &str = "tooling-pip";
pub const INDEX: &str = "index:";
pub const RESOLVE: &str = "resolve:";
/// Where the image is mounted when the host's pip works on it.
pub const MOUNT: &str = "/target";
/// A fixed `SOURCE_DATE_EPOCH` (1980-01-01, the zip epoch): its presence
/// makes Python write checked-hash bytecode.
pub const SOURCE_DATE_EPOCH: &str = "315532800";
/// Dry runs per plan, at most: each refusal costs one.
const MAX_RESOLVE_ROUNDS: usize = 12;

/// Paths left out of the new layer: pip's cache (never written with
/// `--no-cache-dir`, dropped in case an image's config turns it back on).
pub const DROP_PATHS: &[&str] = &["/root/.cache/pip", "/root/.cache/pip/**"];

/// The plugin settings (`--plugin-opt pip.KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub dry_run: bool,
    /// Seconds one import of the import check may take.
    pub import_timeout: u32,
}

pub fn settings(options: &Options) -> Result<Settings, PipError> {
    let mut settings = Settings { dry_run: true, import_timeout: crate::imports::DEFAULT_LIMIT };
    for (key, value) in &options.settings {
        match key.as_str() {
            "dry-run" => {
                settings.dry_run = caulk_sdk::flag(value).ok_or_else(|| PipError::BadSetting {
                    key: key.clone(),
                    value: value.clone(),
                    problem: "expected true or false (or 1/0, yes/no)",
                })?;
            }
            "import-timeout" => {
                settings.import_timeout = value
                    .trim()
                    .trim_end_matches('s')
                    .parse()
                    .ok()
                    .filter(|s| (1..=crate::imports::MAX_LIMIT).contains(s))
                    .ok_or_else(|| PipError::BadSetting {
                        key: key.clone(),
                        value: value.clone(),
                        problem: "expected whole seconds from 1 to 90, the time one import may take",
                    })?;
            }
            _ => return Err(PipError::UnknownSetting { key: key.clone() }),
        }
    }
    for url in &options.index_urls {
        caulk_sdk::index_url::IndexUrl::parse(url)
            .map_err(|problem| PipError::BadIndexUrl { url: caulk_sdk::index_url::redact(url), problem })?;
    }
    Ok(settings)
}

pub fn level(options: &Options) -> Level {
    match options.patch_level {
        PatchLevel::Patch => Level::Patch,
        PatchLevel::Minor => Level::Minor,
        PatchLevel::Major => Level::Major,
    }
}

/// An update whose strings passed the checks.
#[derive(Debug, Clone)]
pub struct Checked<'u> {
    pub update: &'u Update,
    pub name: DistName,
    pub location: Option<String>,
    pub findings: Vec<Finding>,
}

/// Checks every string of the report that could reach an argv or a probe.
pub fn check(update: &Update) -> Result<Checked<'_>, PipError> {
    let name: DistName =
        update.name.parse().map_err(|problem| PipError::BadName { name: update.name.clone(), problem })?;
    let bad = |field, value: &str, problem| PipError::BadVersion {
        name: update.name.clone(),
        field,
        value: value.to_owned(),
        problem,
    };
    name::version(&update.installed_version)
        .map_err(|p| bad("installed version", &update.installed_version, p))?;
    let mut fixed = Vec::new();
    for f in &update.fixed_versions {
        fixed.push(name::version(f).map_err(|p| bad("fixed version", f, p))?);
    }
    let location = match &update.location {
        Some(l) => Some(name::location(l).map_err(|problem| PipError::BadLocation {
            name: update.name.clone(),
            location: l.clone(),
            problem,
        })?),
        None => None,
    };
    Ok(Checked { update, name, location, findings: findings(update, &fixed) })
}

/// The findings behind an update. caulk's update record pools the fixed
/// versions of all its vulnerabilities, so with one vulnerability the list
/// is exactly its finding's; with several, each is taken to list them all
/// (as Copa pools them too), and a version counts as fixing them when it
/// fixes that pooled list.
pub fn findings(update: &Update, fixed: &[Version]) -> Vec<Finding> {
    let mut ids: Vec<String> = update.vulnerabilities.clone();
    if ids.is_empty() {
        ids.push(String::new());
    }
    ids.into_iter().map(|vulnerability| Finding { vulnerability, fixed: fixed.to_vec() }).collect()
}

/// How one distribution gets replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// The environment's own pip, where it installs.
    OwnPip { user: bool },
    /// `--target` with an interpreter of the image that has pip.
    Target { python: String },
    /// `--target` with the host's pip.
    Tooling,
}

/// One distribution to move.
#[derive(Debug, Clone)]
pub struct Work<'u> {
    pub checked: Checked<'u>,
    pub dist: Dist,
    pub env: usize,
    pub how: How,
    /// The location selected and skipped records carry.
    pub location: Option<String>,
    pub installed: Version,
}

impl Work<'_> {
    pub fn normal(&self) -> &str {
        self.checked.name.normal()
    }
}

/// Skipping an update.
pub fn skipped(
    update: &Update,
    location: Option<String>,
    installed: Option<String>,
    reason: String,
    already_fixed: bool,
) -> SkippedUpdate {
    SkippedUpdate {
        ecosystem: update.ecosystem.clone(),
        name: update.name.clone(),
        location,
        installed_version: installed,
        reason,
        already_fixed,
    }
}

/// The metadata files of a distribution the plan may read beyond METADATA.
pub fn dist_file_paths(dist: &Dist) -> Vec<String> {
    if dist.egg {
        return vec![
            format!("{}/installed-files.txt", dist.meta_dir),
            format!("{}/top_level.txt", dist.meta_dir),
        ];
    }
    ["RECORD", "INSTALLER", "top_level.txt"].iter().map(|f| format!("{}/{f}", dist.meta_dir)).collect()
}

/// Distributions in non-vendored directories whose name is among `names`.
pub fn dists_named<'i>(image: &'i Image, names: &BTreeSet<String>) -> Vec<&'i Dist> {
    image.dists.iter().filter(|d| names.contains(&d.normal)).collect()
}

/// The question reading RECORD, INSTALLER and top_level.txt of `dists`.
pub fn dist_files_question(dists: &[&Dist]) -> Option<Question> {
    let paths: Vec<String> = dists.iter().flat_map(|d| dist_file_paths(d)).collect();
    (!paths.is_empty()).then(|| Question::files(DIST_FILES, paths))
}

/// A file read by [`DIST_FILES`].
pub fn dist_file<'f>(facts: &'f [Fact], path: &str) -> Option<&'f [u8]> {
    facts.files(DIST_FILES).iter().find(|f| f.path == path).and_then(|f| f.contents.as_deref())
}

/// Whether a directory belongs to the operating system's packages.
fn os_owned(dist: &Dist, installer: Option<&str>) -> Option<String> {
    let by_pip = installer.is_some_and(|i| matches!(i.trim(), "pip" | "uv"));
    if dist.site == "/usr/lib/python3/dist-packages" || (dist.site.starts_with("/usr/lib/") && !by_pip) {
        let who = match installer.map(str::trim) {
            Some(i) if !i.is_empty() => format!("INSTALLER says {i:?}"),
            _ => "no INSTALLER file".to_owned(),
        };
        return Some(format!(
            "{} in {} belongs to the operating system's packages ({who}); the OS updater (apt, apk, dnf) patches it, \
             and pip must not overwrite its files",
            dist.label(),
            dist.site
        ));
    }
    None
}

/// Everything a plan phase computes, whether or not facts are still missing.
#[derive(Debug, Clone, Default)]
pub struct Analysis<'u> {
    pub works: Vec<Work<'u>>,
    pub skipped: Vec<SkippedUpdate>,
}

/// The plan's input, shared by probe and plan.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub target: &'a Target,
    pub updates: &'a [Update],
    pub options: &'a Options,
    pub facts: &'a [Fact],
}

/// Questions still to ask, or the finished plan.
pub type Staged<T> = Result<T, Vec<Question>>;

/// Turns updates into work: validation, finding each distribution and its
/// environment, and every reason to skip that needs no index.
pub fn prepare<'u>(ctx: &Ctx<'u>, image: &Image) -> Result<Staged<Analysis<'u>>, PipError> {
    let mut analysis = Analysis::default();
    let mut checked_updates = Vec::new();
    for update in ctx.updates {
        if !matches!(update.ecosystem.to_ascii_lowercase().as_str(), "python" | "pip" | "pypi") {
            let reason = format!(
                "{} is a package of ecosystem {:?}; the pip updater patches Python distributions only",
                update.name, update.ecosystem
            );
            analysis.skipped.push(skipped(update, update.location.clone(), None, reason, false));
            continue;
        }
        match check(update) {
            Ok(c) => checked_updates.push(c),
            Err(e) if ctx.options.ignore_errors => {
                analysis.skipped.push(skipped(
                    update,
                    update.location.clone(),
                    None,
                    format!("{e} (skipped: --ignore-errors)"),
                    false,
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let names: BTreeSet<String> = checked_updates.iter().map(|c| c.name.normal().to_owned()).collect();
    let relevant = dists_named(image, &names);
    if !ctx.facts.answered(DIST_FILES)
        && let Some(q) = dist_files_question(&relevant)
    {
        return Ok(Err(vec![q]));
    }
    // Updates naming a location claim their distribution first; one without
    // a location takes the environments nobody named.
    let (located, anywhere): (Vec<_>, Vec<_>) =
        checked_updates.into_iter().partition(|c| c.location.is_some());
    for checked in located.iter().chain(&anywhere) {
        place(ctx, image, checked, &mut analysis);
    }
    Ok(Ok(analysis))
}

/// Finds where an update's distribution lives and how it can be replaced.
fn place<'u>(ctx: &Ctx<'u>, image: &Image, checked: &Checked<'u>, analysis: &mut Analysis<'u>) {
    let update = checked.update;
    let normal = checked.name.normal().to_owned();
    if let Some(location) = &checked.location
        && let Some((owner, base)) = env::vendored_in(location)
    {
        let owner_dist = image.dists.iter().find(|d| d.site == base && name::normalise(owner) == d.normal);
        let owner_text = owner_dist.map_or_else(|| owner.to_owned(), Dist::label);
        let reason = format!(
            "{} in {location} is a copy vendored inside {owner_text}: pip does not manage it; it changes only when \
             {owner} is upgraded to a release that vendors a fixed {}",
            checked.name, checked.name
        );
        analysis.skipped.push(skipped(
            update,
            update.location.clone(),
            Some(update.installed_version.clone()),
            reason,
            false,
        ));
        return;
    }
    let candidates: Vec<&Dist> = image
        .dists
        .iter()
        .filter(|d| d.normal == normal && env::vendored_in(&d.site).is_none())
        .filter(|d| checked.location.as_ref().is_none_or(|l| &d.site == l))
        .collect();
    if candidates.is_empty() {
        let elsewhere: Vec<String> = image
            .dists
            .iter()
            .filter(|d| d.normal == normal)
            .map(|d| format!("{} in {}", d.version_text, d.site))
            .collect();
        let mut reason = match &checked.location {
            Some(l) => format!("{} is not installed in {l}", checked.name),
            None => format!("{} is not installed in any Python environment caulk found", checked.name),
        };
        if !elsewhere.is_empty() {
            let _ = write!(reason, " (found: {})", elsewhere.join(", "));
        }
        analysis.skipped.push(skipped(update, update.location.clone(), None, reason, false));
        return;
    }
    let sites: BTreeSet<&str> = candidates.iter().map(|d| d.site.as_str()).collect();
    let several = sites.len() > 1;
    let sites_count = sites.len();
    let mut claimed = 0;
    for site in sites {
        let here: Vec<&Dist> = candidates.iter().copied().filter(|d| d.site == site).collect();
        let location = if several { Some(site.to_owned()) } else { update.location.clone() };
        if here.len() > 1 {
            let listed: Vec<String> = here.iter().map(|d| d.meta_name().to_owned()).collect();
            let reason = format!(
                "{site} holds {} distributions of {} ({}): a stale copy from an earlier install; caulk leaves it to a person",
                here.len(),
                checked.name,
                listed.join(", ")
            );
            analysis.skipped.push(skipped(
                update,
                location,
                Some(here[0].version_text.clone()),
                reason,
                false,
            ));
            continue;
        }
        let dist = here[0];
        if analysis.works.iter().any(|w| w.dist.meta_dir == dist.meta_dir) {
            // An update naming this location covers it.
            claimed += 1;
            continue;
        }
        let installer = dist_file(ctx.facts, &format!("{}/INSTALLER", dist.meta_dir))
            .map(|b| String::from_utf8_lossy(b).into_owned());
        if let Some(reason) = os_owned(dist, installer.as_deref()) {
            analysis.skipped.push(skipped(update, location, Some(dist.version_text.clone()), reason, false));
            continue;
        }
        let Some(installed) = dist.version.clone() else {
            let reason = format!(
                "{} in {site} has version {:?}, which is not PEP 440: pip cannot compare it with a fix",
                dist.name, dist.version_text
            );
            analysis.skipped.push(skipped(update, location, Some(dist.version_text.clone()), reason, false));
            continue;
        };
        let owners = env::owners(&image.envs, site);
        let Some(&(env_index, env)) = owners.first() else {
            let reason = format!("no Python environment of the image uses {site}");
            analysis.skipped.push(skipped(update, location, Some(dist.version_text.clone()), reason, false));
            continue;
        };
        if let Some(problem) = image.indexes(env, &ctx.options.index_urls).problem() {
            let reason = format!(
                "{} uses a pip configuration caulk cannot follow: {problem}; fix it in the image or give \
                 --pip-index-url",
                env.label()
            );
            analysis.skipped.push(skipped(update, location, Some(dist.version_text.clone()), reason, false));
            continue;
        }
        let how = match how(image, env, dist, ctx.facts) {
            Ok(how) => how,
            Err(reason) => {
                analysis.skipped.push(skipped(
                    update,
                    location,
                    Some(dist.version_text.clone()),
                    reason,
                    false,
                ));
                continue;
            }
        };
        analysis.works.push(Work {
            checked: checked.clone(),
            dist: dist.clone(),
            env: env_index,
            how,
            location,
            installed,
        });
    }
    if claimed == sites_count {
        let reason =
            format!("every installation of {} is covered by the updates naming its location", checked.name);
        analysis.skipped.push(skipped(update, None, None, reason, false));
    }
}

fn how(image: &Image, env: &Env, dist: &Dist, facts: &[Fact]) -> Result<How, String> {
    if env.runs_pip() {
        if env.install_dirs.contains(&dist.site) {
            return Ok(How::OwnPip { user: false });
        }
        if env.user_site.as_deref() == Some(dist.site.as_str()) {
            return Ok(How::OwnPip { user: true });
        }
    }
    let has_record = !dist.egg && dist_file(facts, &format!("{}/RECORD", dist.meta_dir)).is_some();
    if !has_record {
        return Err(format!(
            "{} in {} has no RECORD ({}), so its files cannot be removed cleanly, and {} cannot install there itself",
            dist.label(),
            dist.site,
            if dist.egg { "an egg-info installation" } else { "the file is missing" },
            env.label()
        ));
    }
    // An interpreter of the image with pip and the same version.
    let python = if env.runs_pip() {
        env.python.clone()
    } else {
        image
            .envs
            .iter()
            .find(|e| {
                e.runs_pip()
                    && e.version == env.version
                    && e.version.is_some()
                    && matches!(e.kind, EnvKind::System { .. })
            })
            .and_then(|e| e.python.clone())
    };
    if let Some(python) = python {
        return Ok(How::Target { python });
    }
    if env.version.is_none() {
        return Err(format!(
            "{} has no interpreter caulk could run and its Python version is not in its path, so no wheel can be chosen for it",
            env.label()
        ));
    }
    if let Some(facts) = &env.facts
        && facts.marker("implementation_name") != "cpython"
    {
        return Err(format!(
            "{} runs {} without pip; the host's pip can only install wheels for CPython",
            env.label(),
            facts.marker("implementation_name")
        ));
    }
    Ok(How::Tooling)
}

/// The indexes for `work`.
pub fn indexes(ctx: &Ctx<'_>, image: &Image, work: &Work<'_>) -> Indexes {
    image.indexes(&image.envs[work.env], &ctx.options.index_urls)
}

fn lookup_id(normal: &str, urls: &[String]) -> String {
    format!("{INDEX}{normal}@{}", digest(&urls.join("\n")))
}

/// The look-up question for a work item.
pub fn lookup_question(ctx: &Ctx<'_>, image: &Image, work: &Work<'_>) -> Question {
    let urls = indexes(ctx, image, work).lookup_urls();
    Question {
        id: lookup_id(work.normal(), &urls),
        kind: QuestionKind::Lookup(IndexQuery {
            ecosystem: PYTHON.to_owned(),
            name: work.checked.name.as_str().to_owned(),
            index_urls: urls,
        }),
    }
}

/// Checking the host's pip, for environments without one.
pub fn tooling_question() -> Question {
    let command = Command {
        argv: ["python3", "-I", "-m", "pip", "--version"].map(str::to_owned).to_vec(),
        cwd: None,
        env: vec![("PIP_CONFIG_FILE".into(), "/dev/null".into())],
        context: tooling_context(),
        network: false,
    };
    Question::command(TOOLING_PIP, command)
}

pub fn tooling_context() -> ExecContext {
    ExecContext::Tooling(Tooling { image: None, mount_point: MOUNT.to_owned() })
}

/// Short hex digest for question ids.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(8).fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The state of the resolution loop.
#[derive(Debug, Clone, Default)]
struct Resolution {
    /// Per work, candidates refused by a dry run.
    refused: Vec<BTreeMap<String, String>>,
    /// Environments whose works are resolved one by one.
    split: BTreeSet<usize>,
}

/// A group of works installed by one pip run.
#[derive(Debug, Clone)]
pub struct Group {
    pub works: Vec<usize>,
    pub env: usize,
    pub how: How,
}

fn groups(works: &[Work<'_>], chosen: &[Option<Version>], split: &BTreeSet<usize>) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, work) in works.iter().enumerate() {
        if chosen[i].is_none() {
            continue;
        }
        // One pip run per environment and way of installing; `--target`
        // runs also share the directory.
        let same = |g: &Group| {
            g.env == work.env
                && g.how == work.how
                && (matches!(work.how, How::OwnPip { .. }) || works[g.works[0]].dist.site == work.dist.site)
        };
        if !split.contains(&work.env)
            && let Some(g) = out.iter_mut().find(|g| same(g))
        {
            g.works.push(i);
            continue;
        }
        out.push(Group { works: vec![i], env: work.env, how: work.how.clone() });
    }
    out
}

fn pin(work: &Work<'_>, version: &Version) -> String {
    format!("{}=={version}", work.checked.name.as_str())
}

/// Tags for `--platform`: manylinux for the image's glibc (as the
/// environment's interpreter, else any interpreter of the image, reports
/// it; 2.17 when none does), musllinux on Alpine, and plain `linux_ARCH`.
pub fn platform_tags(image: &Image, env: &Env) -> Vec<String> {
    let arch = image.machine;
    let mut tags = Vec::new();
    if image.musl {
        for minor in (0..=2).rev() {
            tags.push(format!("musllinux_1_{minor}_{arch}"));
        }
    } else {
        let glibc = std::iter::once(env)
            .chain(&image.envs)
            .find_map(|e| e.facts.as_ref().and_then(crate::pyfacts::PythonFacts::glibc))
            .filter(|(major, _)| *major == 2)
            .map_or(17, |(_, minor)| minor);
        for minor in (5..=glibc.max(17)).rev() {
            tags.push(format!("manylinux_2_{minor}_{arch}"));
        }
        tags.extend([
            format!("manylinux2014_{arch}"),
            format!("manylinux2010_{arch}"),
            format!("manylinux1_{arch}"),
        ]);
    }
    tags.push(format!("linux_{arch}"));
    tags
}

/// `--python-version`, `--implementation`, `--abi` and `--platform` for the
/// host's pip, describing the environment.
fn tooling_interpreter_args(image: &Image, env: &Env) -> Vec<String> {
    let (major, minor) = env.version.unwrap_or((3, 0));
    let mut args = vec![
        "--only-binary=:all:".to_owned(),
        "--python-version".to_owned(),
        format!("{major}.{minor}"),
        "--implementation".to_owned(),
        "cp".to_owned(),
        "--abi".to_owned(),
        format!("cp{major}{minor}"),
    ];
    for tag in platform_tags(image, env) {
        args.extend(["--platform".to_owned(), tag]);
    }
    args
}

const COMMON: &[&str] = &["--no-cache-dir", "--disable-pip-version-check", "--no-input"];

/// The argv of a dry run for a group.
fn dry_run(ctx: &Ctx<'_>, image: &Image, works: &[Work<'_>], group: &Group, pins: &[String]) -> Command {
    let env = &image.envs[group.env];
    let cli_args = command_line_indexes(&ctx.options.index_urls);
    let mut argv: Vec<String>;
    let mut command_env = vec![("PIP_ROOT_USER_ACTION".to_owned(), "ignore".to_owned()), probe_bytecode()];
    let mut context = ExecContext::Target;
    if group.how != How::Tooling {
        command_env.extend(image.pip_cert(env));
    }
    match &group.how {
        How::OwnPip { user } => {
            argv = vec![env.python.clone().unwrap_or_default(), "-m".into(), "pip".into(), "install".into()];
            argv.extend(["--dry-run", "--quiet", "--report", "-"].map(str::to_owned));
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            if *user {
                argv.push("--user".into());
            }
            argv.extend(cli_args);
        }
        How::Target { python } => {
            argv = vec![python.clone(), "-m".into(), "pip".into(), "install".into()];
            argv.extend(
                ["--dry-run", "--quiet", "--report", "-", "--no-deps", "--ignore-installed"]
                    .map(str::to_owned),
            );
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            argv.extend(cli_args);
        }
        How::Tooling => {
            argv = ["python3", "-I", "-m", "pip", "--isolated", "install"].map(str::to_owned).to_vec();
            argv.extend(
                ["--dry-run", "--quiet", "--report", "-", "--no-deps", "--target", "/tmp/caulk-dry-run"]
                    .map(str::to_owned),
            );
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            argv.extend(tooling_interpreter_args(image, env));
            argv.extend(indexes(ctx, image, &works[group.works[0]]).pip_args());
            command_env.push(("PIP_CONFIG_FILE".to_owned(), "/dev/null".to_owned()));
            context = tooling_context();
        }
    }
    argv.push("--".into());
    argv.extend(pins.iter().cloned());
    Command { argv, cwd: None, env: command_env, context, network: true }
}

/// `--index-url FIRST --extra-index-url REST…` from the command line.
fn command_line_indexes(urls: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    if let Some((first, rest)) = urls.split_first() {
        args.extend(["--index-url".to_owned(), first.clone()]);
        for extra in rest {
            args.extend(["--extra-index-url".to_owned(), extra.clone()]);
        }
    }
    args
}

fn resolve_id(command: &Command) -> String {
    let mut text = command.argv.join("\u{1f}");
    if let ExecContext::Tooling(_) = command.context {
        text.push_str("\u{1f}tooling");
    }
    format!("{RESOLVE}{}", digest(&text))
}

/// The environment's distributions after a dry run's installs.
fn after_state(image: &Image, env: &Env, resolved: &[Resolved]) -> (State, Vec<String>) {
    let mut state = conflict::state(env::visible(env, &image.dists));
    let mut changed = Vec::new();
    for r in resolved {
        let normal = name::normalise(&r.name);
        state.insert(normal.clone(), Node::from_report(&r.name, &r.version, &r.requires));
        changed.push(normal);
    }
    (state, changed)
}

/// What a work's candidate choice depends on from the index.
fn published<'f>(ctx: &Ctx<'f>, image: &Image, work: &Work<'_>) -> Staged<Published<'f>> {
    let q = lookup_question(ctx, image, work);
    match ctx.facts.answer(&q.id) {
        None => Err(vec![q]),
        Some(Answer::Versions(versions)) => {
            Ok(Published::Known { versions, indexes: indexes(ctx, image, work).describe() })
        }
        Some(Answer::Unavailable(why)) => Ok(Published::Unknown { why: why.clone() }),
        Some(_) => {
            Ok(Published::Unknown { why: "the host answered the look-up with something else".to_owned() })
        }
    }
}

fn interpreter(env: &Env) -> Interpreter {
    Interpreter { full: env.full_version(), major_minor: env.version }
}

/// Whether a group's pip can tell what an install would do.
fn can_resolve(settings: &Settings, image: &Image, group: &Group) -> bool {
    if !settings.dry_run {
        return false;
    }
    let report_pip: Version = "22.2".parse().expect("a version");
    match &group.how {
        How::OwnPip { .. } => image.envs[group.env].pip.as_ref().is_some_and(|p| *p >= report_pip),
        How::Target { python } => image
            .envs
            .iter()
            .find(|e| e.python.as_deref() == Some(python))
            .and_then(|e| e.pip.as_ref())
            .is_some_and(|p| *p >= report_pip),
        How::Tooling => true,
    }
}

/// The finished decision for every work item.
#[derive(Debug, Clone)]
pub struct Decisions {
    pub choices: Vec<Choice>,
    /// Per group that installs something: pins and what the dry run said.
    pub installs: Vec<Install>,
}

#[derive(Debug, Clone)]
pub struct Install {
    pub group: Group,
    /// `NAME==VERSION` for every distribution pip will install.
    pub pins: Vec<String>,
    /// What the dry run resolved (empty when none ran).
    pub resolved: Vec<Resolved>,
    pub dry_run: bool,
}

/// Decides every work item, asking the index and pip as needed.
pub fn decide(ctx: &Ctx<'_>, image: &Image, works: &[Work<'_>], settings: &Settings) -> Staged<Decisions> {
    // The index and (for --target installs) the host's pip first.
    let mut pending = Vec::new();
    let mut known = Vec::new();
    for work in works {
        match published(ctx, image, work) {
            Ok(p) => known.push(Some(p)),
            Err(q) => {
                pending.extend(q);
                known.push(None);
            }
        }
    }
    if works.iter().any(|w| w.how == How::Tooling) && !ctx.facts.answered(TOOLING_PIP) {
        pending.push(tooling_question());
    }
    if !pending.is_empty() {
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        pending.dedup_by(|a, b| a.id == b.id);
        return Err(pending);
    }
    let tooling_ok = tooling_pip(ctx.facts);
    let level = level(ctx.options);
    let mut state = Resolution { refused: vec![BTreeMap::new(); works.len()], split: BTreeSet::new() };
    for _ in 0..MAX_RESOLVE_ROUNDS {
        let moving: BTreeMap<usize, BTreeSet<String>> =
            works.iter().enumerate().fold(BTreeMap::new(), |mut m, (_, w)| {
                m.entry(w.env).or_insert_with(BTreeSet::new).insert(w.normal().to_owned());
                m
            });
        let mut choices = Vec::new();
        for (i, work) in works.iter().enumerate() {
            let env = &image.envs[work.env];
            if work.how == How::Tooling
                && let Err(why) = &tooling_ok
            {
                choices.push(Choice::Skip { reason: why.clone(), passed_over: Vec::new() });
                continue;
            }
            let markers = env.markers(image.machine);
            let env_state = conflict::state(env::visible(env, &image.dists));
            let resolves =
                can_resolve(settings, image, &Group { works: vec![i], env: work.env, how: work.how.clone() });
            let constraints: Vec<conflict::Constraint> =
                conflict::constraints_on(&env_state, work.normal(), markers.as_ref())
                    .into_iter()
                    .filter(|c| {
                        // A dependent that moves too is judged by its new
                        // version's requirements, from the dry run.
                        !(resolves
                            && moving.get(&work.env).is_some_and(|m| {
                                m.iter().any(|n| {
                                    env_state.get(n).is_some_and(|node| c.dependent == node.label())
                                        && n != work.normal()
                                })
                            }))
                    })
                    .collect();
            let request = choose::Request {
                package: work.checked.name.as_str(),
                installed: &work.installed,
                findings: &work.checked.findings,
                level,
                certifi: work.normal() == "certifi",
                published: known[i].clone().expect("answered above"),
                interpreter: interpreter(env),
                constraints: &constraints,
                refused: &state.refused[i],
            };
            choices.push(choose::choose(&request));
        }
        let chosen: Vec<Option<Version>> = choices
            .iter()
            .map(|c| match c {
                Choice::Select { version, .. } => Some(version.clone()),
                _ => None,
            })
            .collect();
        let mut installs = Vec::new();
        let mut questions = Vec::new();
        let mut progressed = false;
        for group in groups(works, &chosen, &state.split) {
            let pins: Vec<String> =
                group.works.iter().map(|&i| pin(&works[i], chosen[i].as_ref().expect("grouped"))).collect();
            if !can_resolve(settings, image, &group) {
                installs.push(Install { group, pins, resolved: Vec::new(), dry_run: false });
                continue;
            }
            let command = dry_run(ctx, image, works, &group, &pins);
            let id = resolve_id(&command);
            let Some(answer) = ctx.facts.answer(&id) else {
                questions.push(Question::command(id, command));
                continue;
            };
            match judge_dry_run(image, works, &group, &pins, answer) {
                DryRun::Accepted(resolved) => {
                    let pins = match group.how {
                        How::OwnPip { .. } => {
                            resolved.iter().map(|r| format!("{}=={}", r.name, r.version)).collect()
                        }
                        _ => pins,
                    };
                    installs.push(Install { group, pins, resolved, dry_run: true });
                }
                DryRun::Refused(list) => {
                    for (i, reason) in list {
                        let v = chosen[i].as_ref().expect("grouped").to_string();
                        state.refused[i].insert(v, reason);
                    }
                    progressed = true;
                }
                DryRun::Split => {
                    state.split.insert(group.env);
                    progressed = true;
                }
            }
        }
        if progressed {
            continue;
        }
        if !questions.is_empty() {
            return Err(questions);
        }
        return Ok(Decisions { choices, installs });
    }
    // Refusals kept coming: give up on what is still unsettled.
    let choices = works
        .iter()
        .map(|w| Choice::Skip {
            reason: format!("{} {}: pip refused candidate after candidate; caulk stopped after {MAX_RESOLVE_ROUNDS} dry runs", w.checked.name, w.installed),
            passed_over: Vec::new(),
        })
        .collect();
    Ok(Decisions { choices, installs: Vec::new() })
}

/// The host's pip: `Ok` when it runs, else why not.
fn tooling_pip(facts: &[Fact]) -> Result<(), String> {
    match facts.answer(TOOLING_PIP) {
        Some(Answer::Output(out)) if out.exit_code == 0 => Ok(()),
        Some(Answer::Output(out)) => Err(format!(
            "the environment has no pip, and the host's `python3 -m pip` does not run (exit {}: {}); install python3-pip on the host",
            out.exit_code,
            discover::first_line(&out.stderr).unwrap_or_default()
        )),
        Some(Answer::Unavailable(why)) => {
            Err(format!("the environment has no pip, and the host's pip could not be run: {why}"))
        }
        _ => Err("the environment has no pip, and the host's pip was not checked".to_owned()),
    }
}

enum DryRun {
    Accepted(Vec<Resolved>),
    /// Work index → why its candidate is refused.
    Refused(Vec<(usize, String)>),
    /// Several works failed together without a culprit: try them one by one.
    Split,
}

/// The works of a group whose pins pip's `ERROR:` lines name
/// (`No matching distribution found for NAME==VERSION`, `Package 'NAME'
/// requires a different Python`), in the group's order.
fn named_in_errors(stderr: &str, group: &Group, pins: &[String]) -> Vec<usize> {
    let errors: Vec<String> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR:"))
        .map(str::to_ascii_lowercase)
        .collect();
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mentions = |line: &str, word: &str| {
        line.match_indices(word).any(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + word.len()..].chars().next();
            !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
        })
    };
    group
        .works
        .iter()
        .zip(pins)
        .filter(|(_, pin)| {
            let pin = pin.to_ascii_lowercase();
            let name = pin.split_once("==").map_or(pin.as_str(), |(n, _)| n);
            errors.iter().any(|l| mentions(l, &pin) || mentions(l, &format!("'{name}'")))
        })
        .map(|(&i, _)| i)
        .collect()
}

fn judge_dry_run(
    image: &Image,
    works: &[Work<'_>],
    group: &Group,
    pins: &[String],
    answer: &Answer,
) -> DryRun {
    let blame_all = |why: String| -> DryRun {
        if group.works.len() == 1 { DryRun::Refused(vec![(group.works[0], why)]) } else { DryRun::Split }
    };
    let out = match answer {
        Answer::Output(out) => out,
        Answer::Unavailable(why) => return blame_all(format!("pip's dry run could not be run: {why}")),
        _ => return blame_all("pip's dry run got no output".to_owned()),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let resolved = match resolve::report(&out.stdout) {
        Some(r) if out.exit_code == 0 => r,
        _ => {
            let why = format!("pip refused it: {}", resolve::pip_error(&stderr));
            // One pin named in pip's errors is the culprit; several (a
            // conflict between them) or none leave it to the split.
            if let [culprit] = named_in_errors(&stderr, group, pins)[..] {
                return DryRun::Refused(vec![(culprit, why)]);
            }
            return blame_all(why);
        }
    };
    // The report's names and versions come from the index and become pins:
    // they pass the same checks as a report's.
    if let Some(bad) =
        resolved.iter().find(|r| r.name.parse::<DistName>().is_err() || name::version(&r.version).is_err())
    {
        return blame_all(format!(
            "pip's dry run named {:?} {:?}, which is not a distribution name and PEP 440 version",
            bad.name, bad.version
        ));
    }
    let env = &image.envs[group.env];
    let markers = env.markers(image.machine);
    let (after, changed) = after_state(image, env, &resolved);
    let broken = conflict::broken(&after, &changed, markers.as_ref());
    if broken.is_empty() {
        return DryRun::Accepted(resolved);
    }
    let mut refused: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for b in &broken {
        for &i in &group.works {
            let normal = works[i].normal();
            if b.dependent_normal == normal || b.on == normal {
                refused.entry(i).or_default().push(b.describe());
            }
        }
    }
    if refused.is_empty() {
        // A dependency pip would move breaks something: the works that
        // pulled it in are to blame, which a group of one names.
        let text: Vec<String> = broken.iter().map(conflict::Broken::describe).collect();
        return blame_all(format!(
            "the dependencies pip would move break the environment: {}",
            text.join("; ")
        ));
    }
    DryRun::Refused(refused.into_iter().map(|(i, reasons)| (i, reasons.join("; "))).collect())
}

/// The steps for one install.
fn steps(ctx: &Ctx<'_>, image: &Image, works: &[Work<'_>], install: &Install) -> Vec<Step> {
    let group = &install.group;
    let env = &image.envs[group.env];
    let tolerate = ctx.options.ignore_errors;
    let mut command_env = vec![
        ("PIP_ROOT_USER_ACTION".to_owned(), "ignore".to_owned()),
        ("SOURCE_DATE_EPOCH".to_owned(), SOURCE_DATE_EPOCH.to_owned()),
        no_bytecode(),
    ];
    let cli_args = command_line_indexes(&ctx.options.index_urls);
    let listed = install.pins.join(", ");
    if group.how != How::Tooling {
        command_env.extend(image.pip_cert(env));
    }
    match &group.how {
        How::OwnPip { user } => {
            let mut argv = vec![
                env.python.clone().unwrap_or_default(),
                "-m".into(),
                "pip".into(),
                "install".into(),
                "--no-deps".into(),
            ];
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            argv.push("--no-warn-script-location".into());
            let pep668: Version = "23.0.1".parse().expect("a version");
            if env.externally_managed && env.pip.as_ref().is_some_and(|p| *p >= pep668) {
                argv.push("--break-system-packages".into());
            }
            if *user {
                argv.push("--user".into());
            }
            argv.extend(cli_args);
            argv.push("--".into());
            argv.extend(install.pins.iter().cloned());
            vec![Step {
                summary: format!("pip install in {}: {listed}", env.label()),
                command: Command {
                    argv,
                    cwd: None,
                    env: command_env,
                    context: ExecContext::Target,
                    network: true,
                },
                tolerate_failure: tolerate,
            }]
        }
        How::Target { python } => {
            let work = &works[group.works[0]];
            let mut argv = vec![
                python.clone(),
                "-m".into(),
                "pip".into(),
                "install".into(),
                "--no-deps".into(),
                "--upgrade".into(),
            ];
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            argv.extend(["--target".to_owned(), scratch(&work.dist.site)]);
            argv.extend(cli_args);
            argv.push("--".into());
            argv.extend(install.pins.iter().cloned());
            vec![
                Step {
                    summary: format!("pip install --target {}: {listed}", work.dist.site),
                    command: Command {
                        argv,
                        cwd: None,
                        env: command_env,
                        context: ExecContext::Target,
                        network: true,
                    },
                    tolerate_failure: tolerate,
                },
                merge_step(
                    python,
                    &work.dist.site,
                    &env_root(env, &work.dist.site),
                    works,
                    install,
                    ExecContext::Target,
                    tolerate,
                ),
            ]
        }
        How::Tooling => {
            let work = &works[group.works[0]];
            let site = format!("{MOUNT}{}", work.dist.site);
            let mut argv: Vec<String> =
                ["python3", "-I", "-m", "pip", "--isolated", "install", "--no-deps", "--upgrade"]
                    .map(str::to_owned)
                    .to_vec();
            argv.extend(COMMON.iter().map(|s| (*s).to_owned()));
            argv.extend(tooling_interpreter_args(image, env));
            argv.extend(["--target".to_owned(), scratch(&site)]);
            argv.extend(indexes(ctx, image, work).pip_args());
            argv.push("--".into());
            argv.extend(install.pins.iter().cloned());
            command_env.push(("PIP_CONFIG_FILE".to_owned(), "/dev/null".to_owned()));
            vec![
                Step {
                    summary: format!(
                        "host pip install --target {} (no pip in {}): {listed}",
                        work.dist.site,
                        env.label()
                    ),
                    command: Command {
                        argv,
                        cwd: None,
                        env: command_env,
                        context: tooling_context(),
                        network: true,
                    },
                    tolerate_failure: tolerate,
                },
                merge_step(
                    "python3",
                    &site,
                    &format!("{MOUNT}{}", env_root(env, &work.dist.site)),
                    works,
                    install,
                    tooling_context(),
                    tolerate,
                ),
            ]
        }
    }
}

/// The installs' steps in order, with each run of consecutive installs by
/// environments' own pips that spans two or more independent environments
/// made one step ([`SIDE_BY_SIDE`]) running its lanes at once: one lane per
/// group of environments that could meet.
///
/// A pip install is mostly one core's work, so on more than one core two
/// independent environments' installs take little more than the longer of
/// them. Environments that are not independent share a lane, their installs
/// in plan order ([`entangled`]). Kept apart, in their place: `--user`
/// installs (one Python version's environments share the user site) and
/// `--target` installs with their merge steps (a `--target` install runs
/// another environment's pip, which an install before it may have moved).
/// Nothing is combined under `--ignore-errors`: a tolerated step that fails
/// is judged as a whole, and BuildKit keeps nothing of it, so one
/// environment's failure would take the others' installs with it.
fn side_by_side(image: &Image, per_install: Vec<(&Install, Vec<Step>)>, tolerate: bool) -> Vec<Step> {
    if tolerate {
        return per_install.into_iter().flat_map(|(_, steps)| steps).collect();
    }
    let lane_of = |install: &Install, steps: &[Step]| match install.group.how {
        How::OwnPip { user: false } if steps.len() == 1 => Some(install.group.env),
        _ => None,
    };
    let mut out = Vec::new();
    let mut run: Vec<(usize, Step)> = Vec::new();
    let flush = |run: &mut Vec<(usize, Step)>, out: &mut Vec<Step>| {
        if let Some(step) = lanes_step(image, run) {
            run.clear();
            out.push(step);
        } else {
            out.extend(run.drain(..).map(|(_, step)| step));
        }
    };
    for (install, steps) in per_install {
        if let Some(env) = lane_of(install, &steps) {
            run.extend(steps.into_iter().map(|step| (env, step)));
        } else {
            flush(&mut run, &mut out);
            out.extend(steps);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether two environments' pips could meet: one imports from where the
/// other installs (a venv with the system site, pipx's shared pip), they
/// share a user site, or both are system interpreters. The last is wider
/// than needed (Debian's and one built into `/usr/local` both put scripts
/// in `/usr/local/bin`; a conda prefix would not), and costs only overlap.
fn entangled(a: &Env, b: &Env) -> bool {
    let reads = |x: &Env, y: &Env| x.sys_path.iter().any(|p| y.install_dirs.contains(p));
    reads(a, b)
        || reads(b, a)
        || (a.user_site.is_some() && a.user_site == b.user_site)
        || (matches!(a.kind, EnvKind::System { .. }) && matches!(b.kind, EnvKind::System { .. }))
}

/// One argv element of [`SIDE_BY_SIDE`] may hold at most this much: Linux
/// refuses a single argument over 128 KiB (`MAX_ARG_STRLEN`).
const MAX_COMMAND_JSON: usize = 96 << 10;
/// All of them together: arguments and environment share about 2 MiB (a
/// quarter of the stack limit), bubblewrap's own arguments included.
const MAX_ALL_JSON: usize = 1 << 20;

/// One step running `run`'s installs, a lane per group of entangled
/// environments; `None` when that would be a single lane, when no
/// environment's interpreter is Python 3.5 or later to run the script, or
/// when one command would not fit in an argument.
fn lanes_step(image: &Image, run: &[(usize, Step)]) -> Option<Step> {
    let mut envs: Vec<usize> = Vec::new();
    for (env, _) in run {
        if !envs.contains(env) {
            envs.push(*env);
        }
    }
    // Lanes: environments joined when entangled, directly or through
    // another; each lane is named by its first environment in plan order.
    let mut lane: Vec<usize> = (0..envs.len()).collect();
    for i in 0..envs.len() {
        for j in 0..i {
            if entangled(&image.envs[envs[i]], &image.envs[envs[j]]) {
                let (from, to) = (lane[i].max(lane[j]), lane[i].min(lane[j]));
                lane.iter_mut().filter(|l| **l == from).for_each(|l| *l = to);
            }
        }
    }
    let lanes: BTreeSet<usize> = lane.iter().copied().collect();
    if lanes.len() < 2 {
        return None;
    }
    let python = envs
        .iter()
        .map(|&e| &image.envs[e])
        .find(|env| env.version.is_some_and(|v| v >= (3, 5)))
        .and_then(|env| env.python.clone())?;
    // Variables every command sets go on the step, where the host's own
    // (the user's --source-date-epoch) still take precedence.
    let mut common: Vec<(String, String)> = run[0].1.command.env.clone();
    common.retain(|kv| run.iter().all(|(_, step)| step.command.env.contains(kv)));
    let mut argv = vec![python, "-I".into(), "-B".into(), "-c".into(), SIDE_BY_SIDE.into()];
    let mut total = 0;
    for (env, step) in run {
        let own: BTreeMap<&str, &str> = step
            .command
            .env
            .iter()
            .filter(|kv| !common.contains(kv))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let command =
            serde_json::json!({"label": step.summary, "argv": step.command.argv, "env": own}).to_string();
        total += command.len();
        if command.len() > MAX_COMMAND_JSON || total > MAX_ALL_JSON {
            return None;
        }
        let position = envs.iter().position(|e| e == env).expect("listed above");
        argv.extend([lane[position].to_string(), command]);
    }
    let labels: Vec<String> = envs.iter().map(|&e| image.envs[e].label()).collect();
    if !common.contains(&no_bytecode()) {
        common.push(no_bytecode());
    }
    Some(Step {
        summary: format!("pip install in {} environments at once: {}", envs.len(), labels.join("; ")),
        command: Command { argv, cwd: None, env: common, context: ExecContext::Target, network: true },
        tolerate_failure: false,
    })
}

/// Where a `--target` install into `site` goes first: a fresh directory
/// beside it, merged in by `merge_step` (pip's own `--upgrade` would
/// replace whole top-level directories of `site`, namespace packages with
/// all their other distributions).
pub fn scratch(site: &str) -> String {
    let (parent, name) = site.rsplit_once('/').unwrap_or(("", site));
    format!("{parent}/.{name}.caulk-new")
}

/// Where `merge_step` keeps the old files of `site` until the new ones
/// are all in place: beside it, so moves stay on one file system.
pub fn aside(site: &str) -> String {
    let (parent, name) = site.rsplit_once('/').unwrap_or(("", site));
    format!("{parent}/.{name}.caulk-old")
}

/// The directory an environment's pip installs scripts and data under:
/// the files of a distribution's RECORD outside `site` that [`merge_step`]
/// may replace lie in it. A loose tree has only itself.
fn env_root(env: &Env, site: &str) -> String {
    let root = match &env.kind {
        EnvKind::Venv { root, .. } => root.as_str(),
        EnvKind::System { prefix } => prefix.as_str(),
        EnvKind::Loose { .. } => site,
    };
    if root == "/" { site.to_owned() } else { root.to_owned() }
}

/// The step moving a group's new distributions from [`scratch`] into
/// `site` and removing the old ones, all in one run of [`MERGE_TARGET`]:
/// `SITE SCRATCH ASIDE ROOT`, then `OLD_DIST_INFO NAME NEW_VERSION` per
/// distribution. `site` and `root` are as the command sees them.
fn merge_step(
    python: &str,
    site: &str,
    root: &str,
    works: &[Work<'_>],
    install: &Install,
    context: ExecContext,
    tolerate: bool,
) -> Step {
    let mut argv = vec![
        python.to_owned(),
        // `-I` ignores every PYTHON* variable, PYTHONDONTWRITEBYTECODE too:
        // without `-B` the stale standard-library bytecode the script
        // imports would be recompiled into the layer.
        "-I".into(),
        "-B".into(),
        "-c".into(),
        MERGE_TARGET.into(),
        site.to_owned(),
        scratch(site),
        aside(site),
        root.to_owned(),
    ];
    let mut old = Vec::new();
    // `--target` pins are the group's choices, in the group's order.
    for (&i, pin) in install.group.works.iter().zip(&install.pins) {
        let work = &works[i];
        let version = pin.rsplit_once("==").map(|(_, v)| v.to_owned()).unwrap_or_default();
        argv.extend([work.dist.meta_name().to_owned(), work.checked.name.as_str().to_owned(), version]);
        old.push(work.dist.meta_name().to_owned());
    }
    let place = &works[install.group.works[0]].dist.site;
    Step {
        summary: format!("replace {} in {place} by the new install", old.join(", ")),
        command: Command { argv, cwd: None, env: vec![no_bytecode()], context, network: false },
        tolerate_failure: tolerate,
    }
}

/// Everything up to the decisions: discovery, work, look-ups, dry runs.
pub fn analyse<'u>(ctx: &Ctx<'u>) -> Result<Staged<(Image, Analysis<'u>, Option<Decisions>)>, PipError> {
    let settings = settings(ctx.options)?;
    let pending = discover::pending(ctx.target, ctx.updates, ctx.facts);
    let unanswered: Vec<Question> = pending.into_iter().filter(|q| !ctx.facts.answered(&q.id)).collect();
    if !unanswered.is_empty() {
        // Report data that must not reach a probe is refused up front.
        for update in ctx.updates {
            if !ctx.options.ignore_errors
                && matches!(update.ecosystem.to_ascii_lowercase().as_str(), "python" | "pip" | "pypi")
            {
                check(update)?;
            }
        }
        return Ok(Err(unanswered));
    }
    let image = Image::from_facts(ctx.target, ctx.facts);
    if ctx.options.mode == UpdateMode::All {
        return Ok(Ok((image, Analysis::default(), None)));
    }
    let analysis = match prepare(ctx, &image)? {
        Ok(a) => a,
        Err(q) => return Ok(Err(q)),
    };
    let decisions = match decide(ctx, &image, &analysis.works, &settings) {
        Ok(d) => d,
        Err(q) => return Ok(Err(q)),
    };
    Ok(Ok((image, analysis, Some(decisions))))
}

/// The whole plan for `request`.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, PipError> {
    let ctx = Ctx {
        target: &request.target,
        updates: &request.updates,
        options: &request.options,
        facts: &request.facts,
    };
    let (image, analysis, decisions) = match analyse(&ctx)? {
        Ok(done) => done,
        Err(questions) => {
            return Err(PipError::MissingFact {
                phase: "plan",
                id: questions.first().map(|q| q.id.clone()).unwrap_or_default(),
            });
        }
    };
    let mut plan = PatchPlan {
        selected: Vec::new(),
        skipped: analysis.skipped.clone(),
        steps: Vec::new(),
        drop_paths: Vec::new(),
        caches: Vec::new(),
    };
    let Some(decisions) = decisions else {
        return Ok(plan);
    };
    let works = &analysis.works;
    for (work, choice) in works.iter().zip(&decisions.choices) {
        let installed = Some(work.dist.version_text.clone());
        match choice {
            Choice::AlreadyFixed { reason } => {
                plan.skipped.push(skipped(
                    work.checked.update,
                    work.location.clone(),
                    installed,
                    reason.clone(),
                    true,
                ));
            }
            Choice::Skip { reason, .. } => {
                plan.skipped.push(skipped(
                    work.checked.update,
                    work.location.clone(),
                    installed,
                    format!("{reason} [{}]", image.envs[work.env].label()),
                    false,
                ));
            }
            Choice::Select { .. } => {}
        }
    }
    for install in &decisions.installs {
        let env = &image.envs[install.group.env];
        for &i in &install.group.works {
            let work = &works[i];
            let Choice::Select { version, rationale, passed_over } = &decisions.choices[i] else { continue };
            let fixed: Vec<String> = work
                .checked
                .findings
                .iter()
                .filter(|f| !f.vulnerability.is_empty() && rules::fixes(version, f))
                .map(|f| f.vulnerability.clone())
                .collect();
            let mut rationale = rationale.clone();
            let _ = write!(rationale, "; {} in {}", how_text(&work.how, install.dry_run), env.label());
            if name::version(&work.checked.update.installed_version).ok().as_ref() != Some(&work.installed) {
                let _ = write!(
                    rationale,
                    "; the report saw {}, the image has {}",
                    work.checked.update.installed_version, work.dist.version_text
                );
            }
            plan.selected.push(SelectedUpdate {
                ecosystem: PYTHON.to_owned(),
                name: work.checked.update.name.clone(),
                location: work.location.clone(),
                from: work.dist.version_text.clone(),
                target: VersionTarget::Exactly(version.to_string()),
                vulnerabilities: if fixed.is_empty() {
                    work.checked.update.vulnerabilities.clone()
                } else {
                    fixed
                },
                rationale: Some(rationale),
                passed_over: passed_over.clone(),
            });
        }
        plan.selected.extend(dependencies(&image, works, install));
    }
    let per_install: Vec<(&Install, Vec<Step>)> =
        decisions.installs.iter().map(|install| (install, steps(&ctx, &image, works, install))).collect();
    plan.steps = side_by_side(&image, per_install, ctx.options.ignore_errors);
    if !plan.steps.is_empty() {
        plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    }
    // A `--target` install that failed leaves its scratch directory behind,
    // and a merge that could not undo itself what it took out.
    for install in &decisions.installs {
        if !matches!(install.group.how, How::OwnPip { .. }) {
            let site = &works[install.group.works[0]].dist.site;
            for dir in [scratch(site), aside(site)] {
                for path in [format!("{dir}/**"), dir] {
                    if !plan.drop_paths.contains(&path) {
                        plan.drop_paths.push(path);
                    }
                }
            }
        }
    }
    Ok(plan)
}

fn how_text(how: &How, dry_run: bool) -> String {
    let checked = if dry_run {
        "checked with a pip dry run, installed pinned with --no-deps"
    } else {
        "installed with --no-deps after the dependents check"
    };
    match how {
        How::OwnPip { user: false } => format!("the environment's own pip, {checked}"),
        How::OwnPip { user: true } => format!("the environment's own pip into the user site, {checked}"),
        How::Target { python } => format!("pip --target with {python}, {checked}"),
        How::Tooling => format!("the host's pip --target (the environment has no pip), {checked}"),
    }
}

/// Distributions a dry run moves that no update asked for: the new
/// versions' dependencies.
fn dependencies(image: &Image, works: &[Work<'_>], install: &Install) -> Vec<SelectedUpdate> {
    let env = &image.envs[install.group.env];
    let asked: BTreeSet<&str> = install.group.works.iter().map(|&i| works[i].normal()).collect();
    let visible = env::visible(env, &image.dists);
    let markers = env.markers(image.machine);
    let mut out = Vec::new();
    for r in install.resolved.iter().filter(|r| !asked.contains(name::normalise(&r.name).as_str())) {
        let normal = name::normalise(&r.name);
        let before = visible.iter().find(|d| d.normal == normal);
        let needed_by: Vec<String> = install
            .resolved
            .iter()
            .filter(|o| name::normalise(&o.name) != normal)
            .flat_map(|o| {
                let node = Node::from_report(&o.name, &o.version, &o.requires);
                node.requires
                    .iter()
                    .filter(|q| q.normal() == normal && conflict::applies(q, markers.as_ref()))
                    .map(|q| format!("{} requires {}", node.label(), conflict::spelt(q)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let why = if needed_by.is_empty() {
            "pip's dry run moves it with the updates".to_owned()
        } else {
            needed_by.join("; ")
        };
        let rationale = match before {
            Some(d) => format!("a dependency of the updates: {why}; {} does not satisfy it", d.version_text),
            None => format!("a new dependency of the updates: {why}"),
        };
        let location = before.map(|d| d.site.clone()).or_else(|| env.install_dirs.first().cloned());
        out.push(SelectedUpdate {
            ecosystem: PYTHON.to_owned(),
            name: r.name.clone(),
            location,
            from: before.map(|d| d.version_text.clone()).unwrap_or_default(),
            target: VersionTarget::Exactly(r.version.clone()),
            vulnerabilities: Vec::new(),
            rationale: Some(rationale),
            passed_over: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kind: EnvKind, sys_path: &[&str], install_dirs: &[&str], user_site: Option<&str>) -> Env {
        Env {
            kind,
            python: Some("/usr/bin/python3.11".into()),
            version: Some((3, 11)),
            facts: None,
            not_runnable: None,
            sys_path: sys_path.iter().map(|s| (*s).to_owned()).collect(),
            install_dirs: install_dirs.iter().map(|s| (*s).to_owned()).collect(),
            user_site: user_site.map(str::to_owned),
            externally_managed: false,
            pip: None,
            site_config: None,
        }
    }

    fn venv(root: &str, sys_path: &[&str]) -> Env {
        let site = format!("{root}/lib/python3.11/site-packages");
        let mut path: Vec<&str> = vec![&site];
        path.extend(sys_path);
        let kind = EnvKind::Venv { root: root.into(), config: crate::metadata::VenvConfig::default() };
        env(kind, &path, &[&site], None)
    }

    fn image(envs: Vec<Env>) -> Image {
        Image {
            dists: Vec::new(),
            envs,
            config_files: Vec::new(),
            env_config_file: None,
            image_env: Vec::new(),
            machine: "x86_64",
            musl: false,
            ca_bundle: None,
        }
    }

    fn install(python: &str, pin: &str) -> Step {
        Step {
            summary: format!("pip install with {python}: {pin}"),
            command: Command {
                argv: vec![
                    python.into(),
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--".into(),
                    pin.into(),
                ],
                cwd: None,
                env: vec![
                    ("SOURCE_DATE_EPOCH".into(), SOURCE_DATE_EPOCH.into()),
                    no_bytecode(),
                    ("PIP_CERT".into(), format!("{python}.pem")),
                ],
                context: ExecContext::Target,
                network: true,
            },
            tolerate_failure: false,
        }
    }

    /// `(lane id, pin, the command's own variables)` per command.
    fn lanes(step: &Step) -> Vec<(String, String, serde_json::Value)> {
        assert_eq!(step.command.argv[4], SIDE_BY_SIDE);
        step.command.argv[5..]
            .chunks(2)
            .map(|pair| {
                let c: serde_json::Value = serde_json::from_str(&pair[1]).unwrap();
                let pin = c["argv"].as_array().unwrap().last().unwrap().as_str().unwrap().to_owned();
                (pair[0].clone(), pin, c["env"].clone())
            })
            .collect()
    }

    #[test]
    fn entangled_environments_share_a_lane_in_plan_order() {
        let mut system = env(
            EnvKind::System { prefix: "/usr".into() },
            &["/usr/local/lib/python3.11/dist-packages"],
            &["/usr/local/lib/python3.11/dist-packages"],
            None,
        );
        system.python = Some("/usr/bin/python3.11".into());
        let mut app = venv("/opt/app", &[]);
        app.python = Some("/opt/app/bin/python".into());
        let mut with_system = venv("/opt/sys", &["/usr/local/lib/python3.11/dist-packages"]);
        with_system.python = Some("/opt/sys/bin/python".into());
        let image = image(vec![system, app, with_system]);
        let run = vec![
            (2, install("/opt/sys/bin/python", "a==1")),
            (1, install("/opt/app/bin/python", "b==1")),
            (0, install("/usr/bin/python3.11", "c==1")),
            (2, install("/opt/sys/bin/python", "d==1")),
        ];
        let step = lanes_step(&image, &run).expect("two lanes");
        assert_eq!(
            step.command.argv[0], "/opt/sys/bin/python",
            "the first environment's interpreter runs it"
        );
        let got: Vec<(String, String)> = lanes(&step).into_iter().map(|(l, p, _)| (l, p)).collect();
        // The venv with the system site and the system Python take turns,
        // in plan order; the independent venv has a lane of its own.
        assert_eq!(
            got,
            [("0", "a==1"), ("1", "b==1"), ("0", "c==1"), ("0", "d==1")]
                .map(|(l, p)| (l.to_owned(), p.to_owned()))
        );
        // What every command sets is the step's, where the host's own
        // SOURCE_DATE_EPOCH (the user's) still wins; the rest is each one's.
        assert!(step.command.env.contains(&("SOURCE_DATE_EPOCH".into(), SOURCE_DATE_EPOCH.into())));
        assert_eq!(step.command.env.iter().filter(|kv| **kv == no_bytecode()).count(), 1);
        for (_, _, own) in lanes(&step) {
            assert!(own.get("SOURCE_DATE_EPOCH").is_none() && own.get("PIP_CERT").is_some(), "{own}");
        }
        assert!(step.summary.starts_with("pip install in 3 environments at once: the virtualenv /opt/sys"));

        // All entangled: one lane is no gain, the steps stay as they are.
        let entangled_only = vec![run[0].clone(), run[2].clone()];
        assert!(lanes_step(&image, &entangled_only).is_none());
        // A command too long for one argument: separate steps.
        let huge = format!("e=={}", "1".repeat(MAX_COMMAND_JSON));
        let too_long = vec![run[1].clone(), (0, install("/usr/bin/python3.11", &huge))];
        assert!(lanes_step(&image, &too_long).is_none());
    }

    #[test]
    fn environments_that_could_meet_are_entangled() {
        let system = |python: &str, user: Option<&str>| {
            let mut e = env(
                EnvKind::System { prefix: "/usr".into() },
                &["/usr/local/lib/python3.11/dist-packages", "/usr/lib/python3/dist-packages"],
                &["/usr/local/lib/python3.11/dist-packages"],
                user,
            );
            e.python = Some(python.into());
            e
        };
        let debian = system("/usr/bin/python3.11", Some("/root/.local/lib/python3.11/site-packages"));
        let app = venv("/opt/app", &[]);
        let other = venv("/opt/other", &[]);
        assert!(!entangled(&debian, &app), "a venv without the system site");
        assert!(!entangled(&app, &other));
        // Imports what the other installs: the system site, pipx's shared pip.
        let with_system = venv("/opt/sys", &["/usr/local/lib/python3.11/dist-packages"]);
        assert!(entangled(&debian, &with_system) && entangled(&with_system, &debian));
        let pipx_shared = venv("/opt/pipx/shared", &[]);
        let pipx_app = venv("/opt/pipx/venvs/black", &["/opt/pipx/shared/lib/python3.11/site-packages"]);
        assert!(entangled(&pipx_app, &pipx_shared));
        // Two system interpreters: one scripts prefix, and here one user site.
        let built = system("/usr/local/bin/python3.11", None);
        assert!(entangled(&debian, &built), "both write /usr/local/bin");
        let mut a = venv("/opt/a", &[]);
        let mut b = venv("/opt/b", &[]);
        a.user_site = Some("/root/.local/lib/python3.11/site-packages".into());
        b.user_site = a.user_site.clone();
        assert!(entangled(&a, &b), "one user site");
    }
}
