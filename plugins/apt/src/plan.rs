//! Deciding the updates and the apt commands that make them.
//!
//! # The commands
//!
//! Both modes first refresh the indexes (`apt-get update`), then:
//!
//! - report mode: `apt-get install -y --no-install-recommends --only-upgrade
//!   --no-remove … -- NAME…`, naming the selected packages without versions,
//!   so the newest candidate lands even when the report's fixed version is
//!   older than what the mirror has. `--only-upgrade` makes a name that is
//!   somehow not installed a no-op ("Skipping …, it is not installed") instead
//!   of a new package in the image; dependencies an upgrade needs are still
//!   installed. `--no-remove` makes apt stop rather than remove packages to
//!   satisfy an upgrade: on a real Debian 12 root with `libssl3:i386` beside
//!   `libssl3`, upgrading `libssl3` alone would otherwise remove the i386
//!   library (Multi-Arch: same versions move in lockstep);
//! - update-all mode: `apt-get upgrade -y --with-new-pkgs
//!   --no-install-recommends …`. `upgrade` never removes a package, and
//!   `--with-new-pkgs` still lets an upgrade pull in a new dependency (a
//!   renamed library); `dist-upgrade` may remove packages to resolve
//!   conflicts, which must not happen silently to an application image.
//!   What `upgrade` keeps back stays as it was.
//!
//! Options on both: dpkg keeps configuration files the image changed
//! (`--force-confdef --force-confold`: dpkg's default where it has one, else
//! the image's file) and skips fsync (`--force-unsafe-io`: the step's result
//! is kept whole or not at all). On Ubuntu (and derivatives through
//! `ID_LIKE`) `APT::Get::Always-Include-Phased-Updates=true`: apt decides
//! phasing from `/etc/machine-id` and from whether it believes it runs in a
//! chroot, both accidents of the image and the sandbox; including phased
//! updates makes the same image patch the same way every time, and a
//! scanner's fixed version may be one still phasing.
//!
//! The install is one apt transaction: when one named package cannot move
//! (a Multi-Arch: same pair whose other architecture has no update, a
//! conflict), apt changes nothing, and verification marks each package
//! failed with apt's reason. `--ignore-errors` does not split it: isolating
//! one failure would take an apt run per package (about 2 s of index loading
//! each on Debian 12, even with nothing to do) or a step that runs only after
//! another failed, which plans cannot express.
//!
//! `apt-get update` tolerates failure: a partial failure (one index of a
//! mirror in mid-sync) leaves the other suites usable, and verification
//! judges each package from the versions that landed and names the failed
//! step when a fix is missing.
//!
//! # Reusing fresh indexes
//!
//! The indexes live in a host-side cache shared by every image with the
//! same OS release, architecture, sources and keys (see [`cache_digest`]).
//! A fleet of images of one base would otherwise refresh the same indexes
//! once per image, each refresh holding the cache for a second or two. So
//! the refresh step runs `apt-get update` only when the cache's last clean
//! refresh (`apt-get update` exited 0 and printed no `W:`/`E:` line, which
//! a source that could not be fetched does) is older than `index-ttl`
//! seconds (`--plugin-opt apt.index-ttl=SECONDS`, default
//! [`DEFAULT_INDEX_TTL`]; `0` refreshes every time). The time is the mtime of
//! [`REFRESH_STAMP`] in the cache. A reuse is said on the step's stderr, and
//! verification repeats it in every package's detail, with the indexes' age.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use caulk_sdk::cache_key::CacheKey;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    CacheMount, Command, Fact, OsRelease, PassedOver, PatchPlan, PlanRequest, SelectedUpdate, SkippedUpdate,
    Step, Target, Update, UpdateMode, VersionTarget,
};
use caulk_sdk::version::deb;

use crate::error::AptError;
use crate::fix::{self, Verdict};
use crate::name::{PackageName, debian_arch, is_arch};
use crate::probe::{APT_GET, APT_GET_PATH, APT_SOURCES, APT_TRUST, DPKG_ARCH, DPKG_STATUS, DPKG_STATUS_D};
use crate::status::{Entry, STATUS_PATH, Status};

/// The ecosystem apt patches.
pub const DEB: &str = "deb";

/// Paths left out of the new layer: indexes and downloaded packages (they
/// live in host-side caches), logs that only grow, and the backups dpkg and
/// debconf write on every run. Never `/var/lib/dpkg/status` itself.
pub const DROP_PATHS: &[&str] = &[
    "/var/lib/apt/lists/**",
    "/var/cache/apt/**",
    "/var/log/apt/**",
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/lib/dpkg/*-old",
    "/var/lib/dpkg/lock",
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/triggers/Lock",
    "/var/cache/debconf/*-old",
    // ldconfig's cache of inode numbers and ctimes: different on every run,
    // so two runs would never give one digest; ldconfig rebuilds it.
    "/var/cache/ldconfig/aux-cache",
];

/// Where apt keeps the indexes and the downloaded packages.
pub const LISTS_DIR: &str = "/var/lib/apt/lists";
/// Touched in the lists cache after a clean `apt-get update`.
pub const REFRESH_STAMP: &str = "/var/lib/apt/lists/.caulk-refreshed";
/// Seconds indexes are reused after a clean refresh, unless
/// `apt.index-ttl` says otherwise: none. The indexes and the stamp are
/// shared by every image of the same release, sources and keys, and the
/// image's own apt runs the refresh with both writable, so reusing them
/// trusts every image that ran before; the user opts in to that.
pub const DEFAULT_INDEX_TTL: u64 = 0;
/// The longest `apt.index-ttl` taken: a week.
const MAX_INDEX_TTL: u64 = 7 * 24 * 3600;
/// What the refresh step prints on stderr when it reuses the indexes,
/// followed by their age and the TTL in seconds.
pub const REUSED_MARK: &str = "caulk: package indexes reused";
pub const ARCHIVES_DIR: &str = "/var/cache/apt/archives";

/// The image as far as planning needs it.
pub struct Image {
    pub status: Status,
    /// The native dpkg architecture, when known.
    pub native: Option<String>,
    pub ubuntu: bool,
}

/// Reads the plan-phase facts: the dpkg database and apt's presence.
pub fn image(target: &Target, facts: &[Fact]) -> Result<Image, AptError> {
    let missing = |id, what| AptError::MissingFact { phase: "plan", id, what };
    if !facts.answered(DPKG_STATUS) {
        return Err(missing(DPKG_STATUS, STATUS_PATH));
    }
    let Some(bytes) = facts.file(DPKG_STATUS) else {
        let distroless = !facts.files(DPKG_STATUS_D).is_empty();
        return Err(AptError::NoDpkgStatus { path: STATUS_PATH, distroless });
    };
    if !facts.answered(APT_GET) {
        return Err(missing(APT_GET, APT_GET_PATH));
    }
    if facts.files(APT_GET).is_empty() {
        return Err(AptError::NoAptGet { path: APT_GET_PATH });
    }
    let status = Status::parse(bytes)?;
    let native = status.native_arch().map(str::to_owned).or_else(|| {
        debian_arch(&target.platform.architecture, target.platform.variant.as_deref()).map(str::to_owned)
    });
    Ok(Image { status, native, ubuntu: target.os.as_ref().is_some_and(is_ubuntu) })
}

fn is_ubuntu(os: &OsRelease) -> bool {
    os.id == "ubuntu" || os.id_like.iter().any(|id| id == "ubuntu")
}

/// The whole plan for `request`.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, AptError> {
    let settings = check_options(&request.options)?;
    if crate::distroless::applies(&request.facts) {
        return crate::distroless::plan(request);
    }
    let image = image(&request.target, &request.facts)?;
    let mut plan = PatchPlan::empty();
    let install = match request.options.mode {
        UpdateMode::Report => {
            let mut names = Vec::new();
            for update in &request.updates {
                match decide(update, &image, request.options.ignore_errors)? {
                    Decision::Select(selected, apt_names) => {
                        plan.selected.push(selected);
                        names.extend(apt_names);
                    }
                    Decision::Skip(skipped) => plan.skipped.push(skipped),
                }
            }
            if names.is_empty() {
                return Ok(plan);
            }
            let mut seen = BTreeSet::new();
            names.retain(|n| seen.insert(n.clone()));
            install_step(&names, image.ubuntu)
        }
        UpdateMode::All => {
            everything(&image, &mut plan);
            upgrade_step(image.ubuntu)
        }
    };
    let [fetch, install] = fetch_then_install(install);
    plan.steps = vec![refresh_step(settings.index_ttl), fetch, install];
    plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    let digest = cache_digest(&request.target, &request.facts);
    let label = cache_label(&request.target, image.native.as_deref());
    plan.caches = vec![
        CacheMount { path: LISTS_DIR.into(), key: format!("apt-lists-{label}-{digest}") },
        CacheMount { path: ARCHIVES_DIR.into(), key: format!("apt-archives-{label}-{digest}") },
    ];
    Ok(plan)
}

/// The apt updater's `--plugin-opt` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Seconds a clean refresh of the shared indexes is reused.
    pub index_ttl: u64,
}

/// The settings, refusing options the apt updater cannot honour rather
/// than ignoring them.
pub fn check_options(options: &caulk_sdk::update::Options) -> Result<Settings, AptError> {
    let mut settings = Settings { index_ttl: DEFAULT_INDEX_TTL };
    for (key, value) in &options.settings {
        match key.as_str() {
            "index-ttl" => {
                settings.index_ttl =
                    value.parse::<u64>().ok().filter(|ttl| *ttl <= MAX_INDEX_TTL).ok_or_else(|| {
                        AptError::BadSetting {
                            key: key.clone(),
                            value: value.clone(),
                            expected: format!("whole seconds from 0 to {MAX_INDEX_TTL}"),
                        }
                    })?;
            }
            _ => return Err(AptError::UnknownSetting { key: key.clone() }),
        }
    }
    if !options.index_urls.is_empty() {
        return Err(AptError::IndexUrls { urls: options.index_urls.join(", ") });
    }
    Ok(settings)
}

pub(crate) enum Decision {
    /// Selected, with the names to give apt-get.
    Select(SelectedUpdate, Vec<String>),
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

/// Checks the report's strings; none of them reaches apt before this.
fn validate(update: &Update) -> Result<PackageName, AptError> {
    let package: PackageName =
        update.name.parse().map_err(|problem| AptError::BadName { name: update.name.clone(), problem })?;
    let bad_version = |field, e: caulk_sdk::version::VersionError| AptError::BadVersion {
        name: update.name.clone(),
        field,
        problem: e.to_string().replace("invalid deb version", "is not a Debian version:"),
    };
    update.installed_version.parse::<deb::Version>().map_err(|e| bad_version("installed version", e))?;
    for fixed in &update.fixed_versions {
        fixed.parse::<deb::Version>().map_err(|e| bad_version("fixed version", e))?;
    }
    Ok(package)
}

pub(crate) fn decide(update: &Update, image: &Image, ignore_errors: bool) -> Result<Decision, AptError> {
    if !update.ecosystem.eq_ignore_ascii_case(DEB) {
        let reason = format!(
            "{} is a package of ecosystem {:?}; the apt updater patches deb packages only",
            update.name, update.ecosystem
        );
        return Ok(skip(update, None, reason, false));
    }
    let package = match validate(update) {
        Ok(package) => package,
        Err(e) if ignore_errors => {
            return Ok(skip(update, None, format!("{e} (skipped: --ignore-errors)"), false));
        }
        Err(e) => return Err(e),
    };
    let instances = image.status.installed(&package);
    let Some(lowest) = lowest_version(&instances) else {
        return Ok(skip(update, None, not_installed(&package, &image.status), false));
    };
    if let Some(bad) = instances.iter().find(|e| !is_arch(&e.arch)) {
        let reason = format!(
            "the dpkg database lists {} for architecture {:?}, which is not an architecture name",
            bad.name, bad.arch
        );
        return Ok(skip(update, Some(&lowest), reason, false));
    }
    let Some(needed) = fix::highest(&lowest, &update.fixed_versions) else {
        let reason = format!("the report lists no fixed version for {package}");
        return Ok(skip(update, Some(&lowest), reason, false));
    };
    let verdicts: Vec<(&Entry, Verdict)> = instances.iter().map(|e| (*e, fix::judge(e, &needed))).collect();
    if verdicts.iter().all(|(_, v)| v.is_fixed()) {
        let mut reason = format!("{package} {lowest} is already at or above the fixed version {needed}");
        if let Some((source, version)) = instances.iter().find_map(|e| e.source.as_ref()) {
            let _ = write!(reason, " (its source {source} {version} too)");
        }
        return Ok(skip(update, Some(&lowest), reason, true));
    }
    if let Some(held) = instances.iter().find(|e| e.is_held()) {
        let reason = format!(
            "{}:{} is held (`apt-mark showhold` lists it); `apt-mark unhold {}` in the image lets caulk upgrade it",
            held.name, held.arch, held.name
        );
        return Ok(skip(update, Some(&lowest), reason, false));
    }
    let rationale = rationale(update, &package, &lowest, &needed, &verdicts);
    let passed_over = passed_over(&lowest, &needed, &update.fixed_versions);
    let names = instances.iter().map(|e| e.apt_name(image.native.as_deref())).collect();
    Ok(Decision::Select(
        SelectedUpdate {
            ecosystem: DEB.into(),
            name: update.name.clone(),
            location: update.location.clone(),
            from: lowest,
            target: VersionTarget::AtLeast(needed),
            vulnerabilities: update.vulnerabilities.clone(),
            rationale: Some(rationale),
            passed_over,
        },
        names,
    ))
}

/// The lowest installed version among `instances` (Multi-Arch: same
/// packages installed for several architectures), so no instance is
/// reported better than it is.
pub fn lowest_version(instances: &[&Entry]) -> Option<String> {
    instances
        .iter()
        .filter_map(|e| e.version.as_deref())
        .filter_map(|v| v.parse::<deb::Version>().ok().map(|parsed| (parsed, v)))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.to_owned())
}

/// Why `package` counts as not installed, naming what dpkg does know.
pub fn not_installed(package: &PackageName, status: &Status) -> String {
    let known = status.known(package);
    if let Some(entry) = known.iter().find(|e| e.state == "config-files") {
        return format!(
            "{package} is not installed: only its configuration files remain (dpkg state config-files, {}:{})",
            entry.name, entry.arch
        );
    }
    if package.arch().is_some() {
        let other: Vec<&str> =
            status.installed(&package.without_arch()).iter().map(|e| e.arch.as_str()).collect();
        if !other.is_empty() {
            return format!(
                "{package} is not installed; {} is installed for {}",
                package.name(),
                other.join(", ")
            );
        }
    }
    format!("{package} is not installed (the dpkg database has no installed package of that name)")
}

fn rationale(
    update: &Update,
    package: &PackageName,
    lowest: &str,
    needed: &str,
    verdicts: &[(&Entry, Verdict)],
) -> String {
    let mut text = format!("the newest candidate from the image's apt sources, at least {needed}");
    let distinct: BTreeSet<&str> = update.fixed_versions.iter().map(String::as_str).collect();
    if distinct.len() > 1 {
        let _ = write!(text, " (the highest of {} fixed versions)", distinct.len());
    }
    if let Ok(installed) = lowest.parse::<deb::Version>()
        && installed.epoch() != 0
        && update.fixed_versions.iter().any(|f| f.parse::<deb::Version>().is_ok_and(|v| !v.has_epoch()))
    {
        let _ = write!(
            text,
            "; the report's epoch-less fixed version is read with the installed epoch {}",
            installed.epoch()
        );
    }
    if let Some((entry, _)) = verdicts.iter().find(|(_, v)| *v == Verdict::VulnerableBySource)
        && let Some((source, source_version)) = &entry.source
    {
        let _ = write!(
            text,
            "; {package} {lowest} is built from source {source} {source_version}, which is below the fix: \
             the fixed version is a {source} version, so the source version decides"
        );
    }
    if update.installed_version != lowest
        && update.installed_version.parse::<deb::Version>().ok() != lowest.parse::<deb::Version>().ok()
    {
        let _ = write!(text, "; the report saw {}, the image has {lowest}", update.installed_version);
    }
    text
}

fn passed_over(lowest: &str, needed: &str, fixed_versions: &[String]) -> Vec<PassedOver> {
    let Ok(installed) = lowest.parse::<deb::Version>() else { return Vec::new() };
    let Ok(needed_version) = needed.parse::<deb::Version>() else { return Vec::new() };
    let mut seen = BTreeSet::new();
    fixed_versions
        .iter()
        .filter(|f| seen.insert(f.as_str()))
        .filter(|f| f.parse::<deb::Version>().is_ok_and(|v| v.with_epoch_of(&installed) < needed_version))
        .map(|f| PassedOver {
            version: f.clone(),
            reason: format!("lower than {needed}, which other vulnerabilities of the package need"),
        })
        .collect()
}

/// Update-all mode: every installed package, held ones skipped. A package
/// installed for several architectures is named with its architecture each
/// time, so verification judges each instance apart.
pub(crate) fn everything(image: &Image, plan: &mut PatchPlan) {
    let installed: Vec<&Entry> = image.status.entries().iter().filter(|e| e.is_installed()).collect();
    for entry in &installed {
        let instances = installed.iter().filter(|e| e.name == entry.name).count();
        let name = if instances > 1 && entry.arch != "all" {
            format!("{}:{}", entry.name, entry.arch)
        } else {
            entry.apt_name(image.native.as_deref())
        };
        let version = entry.version.clone().unwrap_or_default();
        if entry.is_held() {
            plan.skipped.push(SkippedUpdate {
                ecosystem: DEB.into(),
                reason: format!(
                    "{name} is held (`apt-mark showhold` lists it); `apt-get upgrade` leaves held packages alone"
                ),
                name,
                location: None,
                installed_version: Some(version),
                already_fixed: false,
            });
            continue;
        }
        plan.selected.push(SelectedUpdate {
            ecosystem: DEB.into(),
            name,
            location: None,
            from: version,
            target: VersionTarget::Newest,
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        });
    }
}

const NONINTERACTIVE: (&str, &str) = ("DEBIAN_FRONTEND", "noninteractive");

fn apt_options(ubuntu: bool) -> Vec<String> {
    let mut options: Vec<String> = [
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "-o",
        "Dpkg::Options::=--force-unsafe-io",
    ]
    .map(str::to_owned)
    .into();
    if ubuntu {
        options.extend(["-o".to_owned(), "APT::Get::Always-Include-Phased-Updates=true".to_owned()]);
    }
    options
}

fn step(summary: String, argv: Vec<String>, tolerate_failure: bool) -> Step {
    Step {
        summary,
        command: Command::new(argv).env(NONINTERACTIVE.0, NONINTERACTIVE.1).with_network(),
        tolerate_failure,
    }
}

/// Splits an install (or upgrade) into the same apt command with
/// `--download-only`, with network, and the command itself without: the
/// packages' maintainer scripts then run offline, and they are free to
/// replace the image's CA bundle (ca-certificates renames a new one over
/// it), which the host's bundle, bound read-only over it in network steps
/// only, would refuse with EBUSY. The downloads stay in the archives cache
/// mount between the two steps.
///
/// The offline step gets the caches read-only (the host's rule for steps
/// without network): other jobs' installs read them at the same time, and
/// an image hook that deletes the downloads after dpkg (`DPkg::Post-Invoke`
/// in Docker's Debian images) cannot take them from the next job. With the
/// local engine on a host with overlayfs, apt-get sees a throwaway view of
/// them; where a mount really is read-only, apt-get warns that it cannot
/// lock the archives or chmod the `partial/` dirs, and goes on. Without
/// overlayfs, and on BuildKit, the install still gets them writable and
/// takes its turn (such a hook there can still empty the shared downloads).
fn fetch_then_install(install: Step) -> [Step; 2] {
    let mut fetch = install.clone();
    fetch.command.argv.insert(2, "--download-only".to_owned());
    let (label, what) = install.summary.split_once(": ").unwrap_or(("apt-get", install.summary.as_str()));
    fetch.summary = format!("{label} --download-only: fetch the packages to {what}");
    let mut offline = install;
    offline.command.network = false;
    [fetch, offline]
}

/// `apt-get update`, skipped while the shared indexes are younger than
/// `ttl` seconds (module docs). The script is fixed; the TTL, the paths and
/// apt's argv reach it as arguments. `date`, `stat` and `ln` are coreutils
/// and `find` findutils, which every image with apt has. Translations only describe packages;
/// skipping them saves fetching and unpacking some 30 MB of text on Debian.
///
/// An image's `APT::Update::Post-Invoke` hook may delete the downloaded
/// packages (Docker's Debian and Ubuntu images do: `docker-clean` removes
/// `/var/cache/apt/archives/*.deb`). Those are the shared downloads, which
/// another job may have fetched and not installed yet, so the script keeps
/// hard links to them through the update and puts back what the hook took;
/// a refresh stopped halfway is mended by the next one, which puts back
/// what the kept links hold before taking new ones.
/// They never reach the image: the layer drops `/var/cache/apt`.
fn refresh_step(ttl: u64) -> Step {
    const SCRIPT: &str = r#"ttl=$1 stamp=$2 mark=$3 archives=$4
shift 4
if [ "$ttl" -gt 0 ] && [ -f "$stamp" ]; then
  age=$(( $(date +%s) - $(stat -c %Y "$stamp") ))
  if [ "$age" -ge 0 ] && [ "$age" -lt "$ttl" ]; then
    echo "$mark: refreshed $age s ago, within apt.index-ttl=$ttl s; apt-get update not run" >&2
    exit 0
  fi
fi
# A refresh that fails or is stopped halfway may leave some lists new and
# some old: until one completes cleanly, nothing counts as fresh.
rm -f "$stamp"
keep=$archives/.caulk-keep
restore() {
  for f in "$keep"/*.deb; do [ -f "$f" ] && [ ! -e "$archives/${f##*/}" ] && ln "$f" "$archives/"; done
}
# A refresh stopped after the hook ran left the only links to what it
# deleted here.
restore
rm -rf "$keep"
# find, not a glob on ln's command line: the downloads may pass ARG_MAX.
mkdir "$keep" && find "$archives" -maxdepth 1 -type f -name '*.deb' -exec ln -t "$keep" {} +
log=$(mktemp)
"$@" 2>"$log"
code=$?
cat "$log" >&2
if [ "$code" -eq 0 ] && ! grep -q '^[WE]:' "$log"; then touch "$stamp"; fi
rm -f "$log"
restore
rm -rf "$keep"
exit "$code"
"#;
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), SCRIPT.into(), "caulk-apt-refresh".into()];
    argv.extend([ttl.to_string(), REFRESH_STAMP.to_owned(), REUSED_MARK.to_owned(), ARCHIVES_DIR.to_owned()]);
    argv.extend(
        ["apt-get", "update", "-o", "Acquire::Retries=3", "-o", "Acquire::Languages=none"].map(str::to_owned),
    );
    let summary = if ttl == 0 {
        "apt-get update: refresh the package indexes".to_owned()
    } else {
        format!("apt-get update: refresh the package indexes unless refreshed less than {ttl} s ago")
    };
    step(summary, argv, true)
}

fn install_step(names: &[String], ubuntu: bool) -> Step {
    let mut argv: Vec<String> =
        ["apt-get", "install", "-y", "--no-install-recommends", "--only-upgrade", "--no-remove"]
            .map(str::to_owned)
            .into();
    argv.extend(apt_options(ubuntu));
    // Names are validated already; `--` keeps apt from ever reading one as
    // an option all the same.
    argv.push("--".into());
    argv.extend(names.iter().cloned());
    let listed = if names.len() > 8 {
        format!("{}, … ({} packages)", names[..8].join(", "), names.len())
    } else {
        names.join(", ")
    };
    step(format!("apt-get install: upgrade {listed}"), argv, false)
}

fn upgrade_step(ubuntu: bool) -> Step {
    let mut argv: Vec<String> =
        ["apt-get", "upgrade", "-y", "--with-new-pkgs", "--no-install-recommends"].map(str::to_owned).into();
    argv.extend(apt_options(ubuntu));
    step("apt-get upgrade: upgrade every package with a newer candidate".into(), argv, false)
}

/// A digest of what decides the content of apt's indexes: the OS release,
/// the platform, dpkg's architectures, the sources and the trusted keys.
/// Images of one base share it, so they share the downloaded indexes.
pub fn cache_digest(target: &Target, facts: &[Fact]) -> String {
    let mut key = CacheKey::new("caulk apt cache v1");
    if let Some(os) = &target.os {
        key.field(&os.id);
        key.field(os.version_id.as_deref().unwrap_or_default());
        key.field(os.version_codename.as_deref().unwrap_or_default());
    }
    key.field(&target.platform.architecture);
    key.field(target.platform.variant.as_deref().unwrap_or_default());
    key.field(facts.file(DPKG_ARCH).unwrap_or_default());
    for id in [APT_SOURCES, APT_TRUST] {
        key.files(facts.files(id));
    }
    key.finish()
}

/// `debian-12-amd64`: readable, and safe as a file name whatever the
/// image's os-release says.
fn cache_label(target: &Target, native: Option<&str>) -> String {
    let (id, version) = target
        .os
        .as_ref()
        .map_or(("unknown", ""), |os| (os.id.as_str(), os.version_id.as_deref().unwrap_or_default()));
    let arch = native.unwrap_or(&target.platform.architecture);
    let label = format!("{id}-{version}-{arch}");
    label
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}
