//! Deciding the updates and the package manager commands that make them.
//!
//! # Who runs the commands
//!
//! The image's own package manager, the first of tdnf, dnf, yum, microdnf
//! and zypper it has (Copa's order). An image without one ("toolless": UBI
//! micro, distroless) is patched with the host's dnf from the host's root
//! fs, the image mounted at `/target`:
//!
//! `dnf -y --noplugins --installroot=/target --releasever=R
//!  --setopt=reposdir=/target/etc/yum.repos.d ... upgrade NAME...`
//!
//! dnf then takes the image's repository files (`reposdir` given as host
//! paths, dnf(8): "always relative to the host"), keeps its cache, logs and
//! history in the image (dropped from the layer) and installs into the
//! image's rpm database. The release version comes from the image's
//! `system-release(releasever)` provide, else os-release `VERSION_ID`. The
//! host's dnf runs through `sh -c` only to write `%_dbpath` into a
//! `.rpmmacros` in the step's private `/tmp` first: Debian's rpm defaults to
//! `~/.rpmdb`, and dnf has no option for it. Names reach dnf as `"$@"`.
//!
//! # What the commands do
//!
//! - Report mode: `upgrade NAME...` (microdnf and zypper: `update`), which
//!   moves each package to the newest version the repositories have and
//!   pulls along whatever its dependencies need; verification checks that
//!   this is at least the fixed version. One transaction for all, or one
//!   step per package with `--ignore-errors`, so that one package without a
//!   fix does not hold back the rest.
//! - Update-all mode: `upgrade` without names.
//! - Every command is non-interactive (`-y`, zypper `--non-interactive`).
//! - An image with Azure Linux's container manifests gets them rewritten
//!   from the patched rpm database, in their own formats.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    CacheMount, Command, Fact, FileKind, PatchPlan, PlanRequest, SelectedUpdate, SkippedUpdate, Step, Target,
    Update, UpdateMode, VersionTarget,
};
use caulk_sdk::version::rpm::Evr;
use sha2::{Digest, Sha256};

use crate::db::{DbLocation, Installed, MANIFEST_1, MANIFEST_1_FORMAT, MANIFEST_2, MANIFEST_2_FORMAT};
use crate::error::RpmError;
use crate::name::PackageName;
use crate::probe::{
    self, DB, HOST_DNF, MANIFESTS, QUERY, RELEASEVER, REPO_DIRS, REPOS, TOOLING_MOUNT, host_tooling,
    image_has,
};

/// The ecosystem this plugin patches.
pub const RPM: &str = "rpm";

/// What only churns: package manager caches, history databases and logs
/// (the directories too: a glob `D/**` leaves `D` itself in the layer),
/// and rpm's lock files (Berkeley DB environments `__db.*`, `.rpm.lock`)
/// and sqlite's shared-memory index. rpm checkpoints sqlite's write-ahead
/// log when it closes the database, leaving it empty. Never the database
/// files themselves, which must move with the installed files.
pub const DROP_PATHS: &[&str] = &[
    "/var/cache/dnf",
    "/var/cache/dnf/**",
    "/var/cache/yum",
    "/var/cache/yum/**",
    "/var/cache/tdnf",
    "/var/cache/tdnf/**",
    "/var/cache/zypp",
    "/var/cache/zypp/**",
    "/var/lib/dnf",
    "/var/lib/dnf/**",
    "/var/lib/yum/history",
    "/var/lib/yum/history/**",
    "/var/lib/tdnf",
    "/var/lib/tdnf/**",
    "/var/log/zypp",
    "/var/lib/caulk-rpmdb",
    "/var/lib/caulk-rpmdb/**",
    "/var/log/dnf*.log",
    "/var/log/hawkey.log",
    "/var/log/yum.log",
    "/var/log/tdnf*.log",
    "/var/log/zypper.log",
    "/var/log/zypp/**",
    "/var/lib/rpm/__db.*",
    "/var/lib/rpm/.rpm.lock",
    "/var/lib/rpm/.dbenv.lock",
    "/var/lib/rpm/rpmdb.sqlite-shm",
    "/var/lib/rpm/rpmdb.sqlite-wal",
    "/usr/lib/sysimage/rpm/__db.*",
    "/usr/lib/sysimage/rpm/.rpm.lock",
    "/usr/lib/sysimage/rpm/.dbenv.lock",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite-shm",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite-wal",
];

/// A package manager an image can have, in Copa's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Tdnf,
    Dnf,
    Yum,
    Microdnf,
    Zypper,
}

impl Manager {
    pub const ALL: [Manager; 5] = [Self::Tdnf, Self::Dnf, Self::Yum, Self::Microdnf, Self::Zypper];

    pub fn program(self) -> &'static str {
        match self {
            Self::Tdnf => "tdnf",
            Self::Dnf => "dnf",
            Self::Yum => "yum",
            Self::Microdnf => "microdnf",
            Self::Zypper => "zypper",
        }
    }

    /// The command before the subcommand: non-interactive, fresh metadata
    /// where the manager can be told (the metadata cache is a host-side
    /// cache that may be days old), no weak dependencies where dnf would
    /// add them, and for dnf an unreachable repository as an error: with
    /// `skip_if_unavailable` (Debian's and Fedora's dnf.conf set it) dnf
    /// skips it, finds nothing to do and succeeds.
    fn head(self) -> Vec<String> {
        let args: &[&str] = match self {
            Self::Tdnf => &["tdnf", "-y", "--refresh"],
            Self::Dnf => &[
                "dnf",
                "-y",
                "--refresh",
                "--setopt=skip_if_unavailable=False",
                "--setopt=install_weak_deps=False",
            ],
            Self::Yum => &["yum", "-y"],
            Self::Microdnf => &["microdnf", "-y"],
            Self::Zypper => &["zypper", "--non-interactive"],
        };
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    fn upgrade(self) -> &'static str {
        match self {
            Self::Microdnf | Self::Zypper => "update",
            _ => "upgrade",
        }
    }

    /// Its metadata cache, mounted from the host.
    fn cache_dir(self) -> Option<&'static str> {
        match self {
            Self::Tdnf => Some("/var/cache/tdnf"),
            Self::Dnf => Some("/var/cache/dnf"),
            Self::Yum | Self::Microdnf | Self::Zypper => None,
        }
    }
}

/// Where the commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The image's own package manager.
    Image(Manager),
    /// The host's dnf with `--installroot`.
    Host { releasever: Option<String>, reposdirs: Vec<String> },
}

/// The image as far as planning needs it.
pub struct Image {
    /// None for an image that lists its packages only in Azure Linux's
    /// container manifests.
    pub db: Option<DbLocation>,
    pub installed: Installed,
    pub runner: Runner,
    /// Whether the image has Azure Linux's container manifests.
    pub manifests: bool,
    /// Whether the image has `sh` and `rpm` to rewrite them itself.
    pub shell_and_rpm: bool,
}

/// The first package manager of the image, in order of preference.
pub fn manager(facts: &[Fact]) -> Option<Manager> {
    Manager::ALL.into_iter().find(|m| image_has(facts, m.program()))
}

/// Whether os-release names an RPM distribution, itself or through
/// `ID_LIKE`; the host picks this updater by the same names.
pub const OS_FAMILIES: &[&str] = &[
    "rhel",
    "fedora",
    "centos",
    "rocky",
    "almalinux",
    "ol",
    "amzn",
    "azurelinux",
    "mariner",
    "photon",
    "suse",
    "sles",
    "opensuse",
    "opensuse-leap",
    "opensuse-tumbleweed",
    "sle-micro",
];

pub fn is_rpm_os(os: &caulk_sdk::update::OsRelease) -> bool {
    std::iter::once(&os.id).chain(&os.id_like).any(|id| OS_FAMILIES.contains(&id.as_str()))
}

/// Reads the plan-phase facts.
pub fn image(target: &Target, facts: &[Fact]) -> Result<Image, RpmError> {
    let missing = |id, what| RpmError::MissingFact { phase: "plan", id, what };
    if !facts.answered(DB) {
        return Err(missing(DB, "/var/lib/rpm"));
    }
    let manifests = !facts.files(MANIFESTS).is_empty();
    let (db, installed) = if let Some(db) = probe::located(facts) {
        let installed = query(facts, "plan", &db)?;
        (Some(db), installed)
    } else {
        let manifest =
            facts.files(MANIFESTS).iter().find(|f| f.path == MANIFEST_2).and_then(|f| f.contents.as_deref());
        match manifest {
            Some(contents) if manager(facts).is_none() => (None, Installed::from_manifest(contents)?),
            Some(_) => return Err(RpmError::ManifestsOnly { manifest: MANIFEST_2 }),
            None => {
                let os = target.os.as_ref().filter(|os| is_rpm_os(os));
                let os = os.map(|os| os.pretty_name.clone().unwrap_or_else(|| os.id.clone()));
                return Err(RpmError::NoDatabase { paths: crate::db::db_paths().join(", "), os });
            }
        }
    };
    let runner = match (&db, manager(facts)) {
        (Some(_), Some(manager)) => Runner::Image(manager),
        _ => host_runner(target, facts)?,
    };
    let shell_and_rpm = image_has(facts, "sh") && image_has(facts, "rpm");
    Ok(Image { db, installed, runner, manifests, shell_and_rpm })
}

/// What `rpm -qa` said, or why it could not say it.
pub fn query(facts: &[Fact], phase: &'static str, db: &DbLocation) -> Result<Installed, RpmError> {
    let failed = |why: String| RpmError::Query { dir: db.dir.clone(), why };
    if let Some(why) = facts.unavailable(QUERY) {
        return Err(failed(why.to_owned()));
    }
    let Some(out) = facts.output(QUERY) else {
        return Err(RpmError::MissingFact { phase, id: QUERY, what: "rpm -qa" });
    };
    if out.exit_code != 0 {
        return Err(failed(format!("`rpm -qa` exited with {}: {}", out.exit_code, tail(&out.stderr))));
    }
    Ok(Installed::parse(&out.stdout)?)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    text[start..].to_owned()
}

fn host_runner(target: &Target, facts: &[Fact]) -> Result<Runner, RpmError> {
    match (facts.output(HOST_DNF), facts.unavailable(HOST_DNF)) {
        (Some(out), _) if out.exit_code == 0 => {}
        (Some(out), _) => {
            let stderr = tail(&out.stderr);
            let why = if stderr.is_empty() { "no dnf on its PATH".to_owned() } else { stderr };
            return Err(RpmError::NoManager {
                why: format!("`command -v dnf` on the host exited with {}: {why}", out.exit_code),
            });
        }
        (None, Some(why)) => {
            return Err(RpmError::NoManager { why: format!("looking for dnf in the host's root fs: {why}") });
        }
        (None, None) => {
            return Err(RpmError::MissingFact {
                phase: "plan",
                id: HOST_DNF,
                what: "command -v dnf on the host",
            });
        }
    }
    let reposdirs: BTreeSet<String> = facts
        .files(REPOS)
        .iter()
        .filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| dir.to_owned()))
        .filter(|dir| REPO_DIRS.contains(&dir.as_str()))
        .collect();
    if reposdirs.is_empty() {
        return Err(RpmError::NoRepositories { dirs: REPO_DIRS.join(", ") });
    }
    Ok(Runner::Host { releasever: releasever(target, facts), reposdirs: reposdirs.into_iter().collect() })
}

/// The value dnf substitutes for `$releasever`: what the image's release
/// package provides (RHEL 9.4 provides `system-release(releasever) = 9`),
/// else os-release `VERSION_ID`. Only characters a release version has.
pub fn releasever(target: &Target, facts: &[Fact]) -> Option<String> {
    let provided = facts.output(RELEASEVER).filter(|o| o.exit_code == 0).and_then(|out| {
        String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
            let value = line.trim().strip_prefix("system-release(releasever)")?.trim().strip_prefix('=')?;
            Some(value.trim().to_owned())
        })
    });
    let from_os = || target.os.as_ref().and_then(|os| os.version_id.clone());
    provided.or_else(from_os).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    })
}

/// The whole plan for `request`.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, RpmError> {
    check_options(&request.options)?;
    let image = image(&request.target, &request.facts)?;
    let mut plan = PatchPlan::empty();
    let mut work = Vec::new();
    match request.options.mode {
        UpdateMode::Report => {
            let mut names: Vec<PackageName> = Vec::new();
            for update in &request.updates {
                match decide(update, &image.installed, request.options.ignore_errors)? {
                    Decision::Select(selected, name) => {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                        plan.selected.push(selected);
                    }
                    Decision::Skip(skipped) => plan.skipped.push(skipped),
                }
            }
            if names.is_empty() {
                return Ok(plan);
            }
            if request.options.ignore_errors {
                for name in &names {
                    work.push(upgrade_step(&image, std::slice::from_ref(name), true));
                }
            } else {
                work.push(upgrade_step(&image, &names, false));
            }
        }
        UpdateMode::All => {
            everything(&image.installed, &mut plan);
            if image.db.is_some() {
                work.push(upgrade_step(&image, &[], false));
            } else {
                // No database for dnf to find what is installed: name it all.
                let names: Vec<PackageName> =
                    image.installed.names().filter_map(|n| n.parse().ok()).collect();
                work.push(upgrade_step(&image, &names, false));
            }
        }
    }
    if image.manifests && image.db.is_some() {
        work.push(manifest_step(&image));
    }
    plan.steps = work;
    plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    plan.caches = cache(&image, &request.target, &request.facts).into_iter().collect();
    Ok(plan)
}

/// Refuses options the rpm updater cannot honour, rather than ignoring them.
pub fn check_options(options: &caulk_sdk::update::Options) -> Result<(), RpmError> {
    if let Some((key, _)) = options.settings.first() {
        return Err(RpmError::UnknownSetting { key: key.clone() });
    }
    if !options.index_urls.is_empty() {
        return Err(RpmError::IndexUrls { urls: options.index_urls.join(", ") });
    }
    Ok(())
}

enum Decision {
    Select(SelectedUpdate, PackageName),
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

/// Checks the report's strings; none of them reaches a command before this.
fn validate(update: &Update) -> Result<(PackageName, Vec<Evr>), RpmError> {
    let package: PackageName =
        update.name.parse().map_err(|problem| RpmError::BadName { name: update.name.clone(), problem })?;
    let bad = |field, value: &str, e: caulk_sdk::version::VersionError| RpmError::BadVersion {
        name: update.name.clone(),
        field,
        value: value.chars().take(80).collect(),
        problem: e.to_string(),
    };
    update
        .installed_version
        .parse::<Evr>()
        .map_err(|e| bad("installed version", &update.installed_version, e))?;
    let fixed = update
        .fixed_versions
        .iter()
        .map(|f| f.parse::<Evr>().map_err(|e| bad("fixed version", f, e)))
        .collect::<Result<_, _>>()?;
    Ok((package, fixed))
}

fn decide(update: &Update, installed: &Installed, ignore_errors: bool) -> Result<Decision, RpmError> {
    if !update.ecosystem.eq_ignore_ascii_case(RPM) {
        let reason = format!(
            "{} is a package of ecosystem {:?}; the rpm updater patches RPM packages only",
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
    let Some(current) = installed.lowest(package.as_str()) else {
        let reason =
            format!("{package} is not installed (the image's rpm database has no package of that name)");
        return Ok(skip(update, None, reason, false));
    };
    let Some(current_version) = current.version() else {
        let reason = format!(
            "the rpm database gives {package} the version {:?}, which is not an RPM version",
            current.evr
        );
        return Ok(skip(update, Some(&current.evr), reason, false));
    };
    // A fixed version without an epoch means the installed package's epoch,
    // as the scanners compare them.
    let Some(needed) = fixed.iter().map(|f| f.with_epoch_of(&current_version)).max() else {
        return Ok(skip(
            update,
            Some(&current.evr),
            format!("the report lists no fixed version for {package}"),
            false,
        ));
    };
    if current_version >= needed {
        let reason = format!("{package} {} is already at or above the fixed version {needed}", current.evr);
        return Ok(skip(update, Some(&current.evr), reason, true));
    }
    let mut rationale = format!("the newest version in the image's repositories, at least {needed}");
    let distinct: BTreeSet<String> = fixed.iter().map(ToString::to_string).collect();
    if distinct.len() > 1 {
        let _ = write!(rationale, " (the highest of {} fixed versions)", distinct.len());
    }
    if fixed.iter().any(|f| !f.has_epoch()) && current_version.epoch() != 0 {
        let _ = write!(
            rationale,
            "; the report's fixed version has no epoch, so the installed epoch {} applies",
            current_version.epoch()
        );
    }
    Ok(Decision::Select(
        SelectedUpdate {
            ecosystem: RPM.into(),
            name: update.name.clone(),
            location: update.location.clone(),
            from: current.evr.clone(),
            target: VersionTarget::AtLeast(needed.to_string()),
            vulnerabilities: update.vulnerabilities.clone(),
            rationale: Some(rationale),
            passed_over: Vec::new(),
        },
        package,
    ))
}

/// Update-all mode: every installed package, aiming at the newest version.
fn everything(installed: &Installed, plan: &mut PatchPlan) {
    for name in installed.names().filter(|n| *n != "gpg-pubkey") {
        let Some(current) = installed.lowest(name) else { continue };
        plan.selected.push(SelectedUpdate {
            ecosystem: RPM.into(),
            name: name.to_owned(),
            location: None,
            from: current.evr.clone(),
            target: VersionTarget::Newest,
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        });
    }
}

/// The summary of the upgrade step for `names` (all packages when empty);
/// verification finds a package's step by it.
pub fn upgrade_summary(names: &[PackageName]) -> String {
    if names.is_empty() {
        return "upgrade: every package with a newer version".to_owned();
    }
    let list: Vec<&str> = names.iter().map(PackageName::as_str).collect();
    format!("upgrade: {}", list.join(" "))
}

/// Writes `%_dbpath` for rpm in the step's private `/tmp`, then runs the
/// arguments as they are.
const HOST_SCRIPT: &str = r#"printf '%%_dbpath %s\n' "$CAULK_RPM_DBPATH" >"$HOME/.rpmmacros" && exec "$@""#;

fn upgrade_step(image: &Image, names: &[PackageName], tolerate_failure: bool) -> Step {
    let args = names.iter().map(|n| n.as_str().to_owned());
    let command = match (&image.runner, &image.db) {
        (Runner::Host { releasever, reposdirs }, None) => {
            manifest_only_command(releasever.as_deref(), reposdirs, names)
        }
        (Runner::Image(manager), _) => {
            let mut argv = manager.head();
            argv.push(manager.upgrade().to_owned());
            argv.extend(args);
            Command::new(argv).with_network()
        }
        (Runner::Host { releasever, reposdirs }, Some(db)) => {
            let mut argv: Vec<String> =
                ["sh", "-c", HOST_SCRIPT, "sh", "dnf", "-y", "--noplugins", "--refresh"]
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect();
            argv.push(format!("--installroot={TOOLING_MOUNT}"));
            if let Some(releasever) = releasever {
                argv.push(format!("--releasever={releasever}"));
            }
            let dirs: Vec<String> = reposdirs.iter().map(|d| format!("{TOOLING_MOUNT}{d}")).collect();
            argv.push(format!("--setopt=reposdir={}", dirs.join(",")));
            argv.push("--setopt=skip_if_unavailable=False".to_owned());
            argv.push("--setopt=install_weak_deps=False".to_owned());
            argv.push("upgrade".to_owned());
            argv.extend(args);
            let mut command =
                Command::new(argv).with_network().env("HOME", "/tmp").env("CAULK_RPM_DBPATH", db.dir.clone());
            command.context = host_tooling();
            command
        }
    };
    let summary = upgrade_summary(names);
    Step { summary, command, tolerate_failure }
}

/// Rewrites both container manifests from the patched database, with the
/// image's `sh` and rpm when it has both and its own package manager, else
/// the host's.
fn manifest_step(image: &Image) -> Step {
    const SCRIPT: &str = r#"root=$1 db=$2 f1=$3 f2=$4
rpm ${root:+--root "$root"} --dbpath "$db" -qa --qf "$f1" >"$root/var/lib/rpmmanifest/container-manifest-1.caulk" &&
rpm ${root:+--root "$root"} --dbpath "$db" -qa --qf "$f2" >"$root/var/lib/rpmmanifest/container-manifest-2.caulk" &&
mv "$root/var/lib/rpmmanifest/container-manifest-1.caulk" "$root/var/lib/rpmmanifest/container-manifest-1" &&
mv "$root/var/lib/rpmmanifest/container-manifest-2.caulk" "$root/var/lib/rpmmanifest/container-manifest-2""#;
    let in_image = matches!(image.runner, Runner::Image(_)) && image.shell_and_rpm;
    let root = if in_image { "" } else { TOOLING_MOUNT };
    let db = image.db.as_ref().map_or("/var/lib/rpm", |db| db.dir.as_str());
    let argv = ["sh", "-c", SCRIPT, "sh", root, db, MANIFEST_1_FORMAT, MANIFEST_2_FORMAT];
    let mut command = Command::new(argv);
    if !in_image {
        command.context = host_tooling();
    }
    Step {
        summary: format!("rewrite {MANIFEST_1} and {MANIFEST_2} from the patched rpm database"),
        command,
        tolerate_failure: false,
    }
}

/// `container-manifest-2` of a package from an RPM file, the install
/// time filled in by [`MANIFEST_ONLY_SCRIPT`].
const MANIFEST_2_FROM_FILE: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t@NOW@\\t%{BUILDTIME}\\t%{VENDOR}\\t%{EPOCH}\\t%{SIZE}\\t%{ARCH}\\t%{EPOCHNUM}\\t%{SOURCERPM}";

/// For an image with container manifests and no rpm database (Azure Linux
/// distroless), as Copa patches it: the host's dnf resolves and downloads
/// the packages into a scratch root in the step's private `/tmp`; of what
/// it fetched, the named packages and those built from the same source
/// package (`openssl-libs` with `openssl`), if the manifest lists them,
/// are unpacked into the image by
/// rpm with a scratch database outside the layer (`--nodeps`, no
/// scriptlets: the image has no shell to run them); their lines in
/// `container-manifest-2` are replaced and `container-manifest-1` is
/// written again from it. Files an old version had and the new one lacks
/// stay behind.
const MANIFEST_ONLY_SCRIPT: &str = r#"set -eu
rel=$1 repos=$2 f2=$3
shift 3
work=$HOME/caulk-rpm target=$CAULK_TARGET scratch=/var/lib/caulk-rpmdb
m=$target/var/lib/rpmmanifest
mkdir -p "$work/root" "$work/rpms"
printf '%%_dbpath /var/lib/rpm\n' >"$HOME/.rpmmacros"
dnf -y --noplugins --refresh --installroot="$work/root" ${rel:+"--releasever=$rel"} "--setopt=reposdir=$repos" \
  --setopt=skip_if_unavailable=False --setopt=install_weak_deps=False \
  install --downloadonly "--downloaddir=$work/rpms" "$@"
now=$(date +%s) srcs=
for f in "$work"/rpms/*.rpm; do
  name=$(rpm -qp --qf '%{NAME}' "$f")
  for want in "$@"; do
    if [ "$name" = "$want" ]; then srcs="$srcs $(rpm -qp --qf '%{SOURCERPM}' "$f")"; fi
  done
done
for f in "$work"/rpms/*.rpm; do
  name=$(rpm -qp --qf '%{NAME}' "$f")
  case " $srcs " in *" $(rpm -qp --qf '%{SOURCERPM}' "$f") "*) ;; *) continue ;; esac
  awk -F '\t' -v n="$name" '$1 == n { found = 1 } END { exit !found }' "$m/container-manifest-2" || continue
  rpm --root "$target" --dbpath "$scratch" -i --nodeps --noscripts --notriggers --replacefiles --replacepkgs "$f"
  line=$(rpm -qp --qf "$f2" "$f")
  awk -F '\t' -v n="$name" -v l="$line" -v now="$now" 'BEGIN { sub("@NOW@", now, l) } $1 == n { print l; next } { print }' \
    "$m/container-manifest-2" >"$m/container-manifest-2.caulk"
  mv "$m/container-manifest-2.caulk" "$m/container-manifest-2"
done
rm -rf "$target$scratch"
awk -F '\t' '{ print $1 "-" $2 "." $8 }' "$m/container-manifest-2" >"$m/container-manifest-1.caulk"
mv "$m/container-manifest-1.caulk" "$m/container-manifest-1""#;

fn manifest_only_command(releasever: Option<&str>, reposdirs: &[String], names: &[PackageName]) -> Command {
    let dirs: Vec<String> = reposdirs.iter().map(|d| format!("{TOOLING_MOUNT}{d}")).collect();
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), MANIFEST_ONLY_SCRIPT.into(), "sh".into()];
    argv.push(releasever.unwrap_or_default().to_owned());
    argv.push(dirs.join(","));
    argv.push(MANIFEST_2_FROM_FILE.into());
    argv.extend(names.iter().map(|n| n.as_str().to_owned()));
    let mut command =
        Command::new(argv).with_network().env("HOME", "/tmp").env("CAULK_TARGET", TOOLING_MOUNT);
    command.context = host_tooling();
    command
}

fn cache(image: &Image, target: &Target, facts: &[Fact]) -> Option<CacheMount> {
    image.db.as_ref()?;
    let path = match &image.runner {
        Runner::Image(manager) => manager.cache_dir()?.to_owned(),
        Runner::Host { .. } => format!("{TOOLING_MOUNT}/var/cache/dnf"),
    };
    let kind = match &image.runner {
        Runner::Image(manager) => manager.program(),
        Runner::Host { .. } => "host-dnf",
    };
    Some(CacheMount {
        path,
        key: format!("rpm-{kind}-{}-{}", cache_label(target), cache_digest(target, facts)),
    })
}

/// A digest of what decides the metadata dnf downloads: the OS release,
/// the platform and the repository files. Images of one base share it.
pub fn cache_digest(target: &Target, facts: &[Fact]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(b"caulk rpm cache v1");
    if let Some(os) = &target.os {
        field(os.id.as_bytes());
        field(os.version_id.as_deref().unwrap_or_default().as_bytes());
    }
    field(target.platform.architecture.as_bytes());
    let mut files: Vec<_> = facts.files(REPOS).iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        field(file.path.as_bytes());
        field(if file.kind == FileKind::Regular { b"f" } else { b"o" });
        field(file.contents.as_deref().unwrap_or_default());
    }
    hasher.finalize().iter().take(16).fold(String::with_capacity(32), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// `rhel-9.4-amd64`: readable, and safe as a file name whatever the image
/// says.
fn cache_label(target: &Target) -> String {
    let (id, version) = target
        .os
        .as_ref()
        .map_or(("unknown", ""), |os| (os.id.as_str(), os.version_id.as_deref().unwrap_or_default()));
    format!("{id}-{version}-{}", target.platform.architecture)
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}
