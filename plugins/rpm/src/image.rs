//! What the image is, as far as patching it goes: where its rpm database
//! is and what it lists (or, without one, what Azure Linux's container
//! manifest lists), and who runs the commands: the image's own package
//! manager, the first of tdnf, dnf, yum, microdnf and zypper it has (Copa's
//! order), or for an image without one the host's dnf.

use std::collections::BTreeSet;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Fact, Target};

use crate::db::{DbLocation, Installed, MANIFEST_2};
use crate::error::RpmError;
use crate::probe::{self, DB, HOST_DNF, MANIFESTS, QUERY, RELEASEVER, REPO_DIRS, REPOS, image_has};

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
    pub fn head(self) -> Vec<String> {
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

    pub fn upgrade(self) -> &'static str {
        match self {
            Self::Microdnf | Self::Zypper => "update",
            _ => "upgrade",
        }
    }

    /// Its metadata cache, mounted from the host.
    pub fn cache_dir(self) -> Option<&'static str> {
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

/// `uname -m` names for a GOARCH: what a host of that architecture says.
fn machines(goarch: &str) -> Option<&'static [&'static str]> {
    Some(match goarch {
        "amd64" => &["x86_64"],
        "arm64" => &["aarch64", "arm64"],
        "386" => &["i386", "i486", "i586", "i686"],
        "arm" => &["armv5tel", "armv6l", "armv7l", "armv8l"],
        "ppc64le" => &["ppc64le"],
        "s390x" => &["s390x"],
        "riscv64" => &["riscv64"],
        _ => return None,
    })
}

fn host_runner(target: &Target, facts: &[Fact]) -> Result<Runner, RpmError> {
    match (facts.output(HOST_DNF), facts.unavailable(HOST_DNF)) {
        (Some(out), _) if out.exit_code == 0 => {
            // The host's dnf installs the host's architecture: into an image
            // of another, it would put packages that cannot run there (and
            // rpm, checking against the host, would let them in).
            let text = String::from_utf8_lossy(&out.stdout);
            let machine =
                text.lines().map(str::trim).rfind(|l| !l.is_empty()).filter(|l| {
                    !l.contains('/') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if let (Some(machine), Some(expected)) = (machine, machines(&target.platform.architecture))
                && !expected.contains(&machine)
            {
                return Err(RpmError::ForeignArchitecture {
                    image: target.platform.architecture.clone(),
                    host: machine.to_owned(),
                });
            }
        }
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
