//! The package manager commands a plan runs, and what their layer leaves out.
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

use std::fmt::Write as _;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{CacheMount, Command, Fact, FileKind, Step, Target};
use sha2::{Digest, Sha256};

use crate::db::{MANIFEST_1, MANIFEST_1_FORMAT, MANIFEST_2, MANIFEST_2_FORMAT};
use crate::image::{Image, Manager, Runner};
use crate::name::PackageName;
use crate::probe::{REPOS, TOOLING_MOUNT, host_tooling};

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
    // dnf5's (Fedora 41 and later): metadata and solver caches.
    "/var/cache/libdnf5",
    "/var/cache/libdnf5/**",
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

pub fn upgrade_step(image: &Image, names: &[PackageName], tolerate_failure: bool) -> Step {
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
pub fn manifest_step(image: &Image) -> Step {
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

/// dnf5's metadata and solver cache (dnf5-caching(7)).
pub const DNF5_CACHE: &str = "/var/cache/libdnf5";

pub fn cache(image: &Image, target: &Target, facts: &[Fact]) -> Option<CacheMount> {
    image.db.as_ref()?;
    let path = match &image.runner {
        // Fedora 41's dnf is dnf5, which caches in its own dir.
        Runner::Image(Manager::Dnf) if crate::probe::image_has(facts, "dnf5") => DNF5_CACHE.to_owned(),
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
