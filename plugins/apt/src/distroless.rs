//! Distroless Debian images: packages listed one per file in
//! `/var/lib/dpkg/status.d` (`NAME`, often beside `NAME.md5sums`), no
//! `/var/lib/dpkg/status`, no apt, no dpkg, usually no shell.
//!
//! Every step runs in a Debian tooling root (the host's `/`, or the image
//! `caulk patch --tooling-image` names) with the image mounted read-write at
//! [`MOUNT`]:
//!
//! 1. prepare: the apt state in the work cache ([`WORK`]): an empty `debs`
//!    directory and a `sources.list` of the lines the plan passes (only used
//!    when the image has no apt sources of its own);
//! 2. `apt-get update` with the image's sources and keys when it has them,
//!    else with the release its os-release names (`deb.debian.org`, the
//!    suite, `-updates` and `-security`, the tooling root's keys); indexes in
//!    the lists cache ([`LISTS`]);
//! 3. `apt-get download` of the selected packages, so the newest candidate
//!    lands, into the empty `debs` directory (`env -C`: apt downloads to its
//!    working directory);
//! 4. install: dpkg's database is made for the step from the image's
//!    status.d (paragraphs without `Status` count as installed) in [`ADMIN`],
//!    a directory of the target no image has (dpkg wants its admin dir below
//!    its root); `dpkg --root /target --admindir … -i` the downloads; each
//!    upgraded package's paragraph is written back to its own status.d file
//!    (without `Status` when the image's had none and dpkg configured it),
//!    its md5sums beside it when the image kept one; the admin dir is removed.
//!
//! dpkg runs with `--force-script-chrootless`: maintainer scripts run from
//! the tooling root with `DPKG_ROOT` set to the target, since the image has
//! no shell to chroot into (a script that ignores `DPKG_ROOT` and writes
//! outside the target fails on the read-only tooling root, and the package
//! with it), and `--force-confdef --force-confold --force-unsafe-io` as in
//! images with apt. No `--force-depends`: the new versions' dependencies
//! must be met by what status.d lists, or dpkg refuses and verification
//! says why.
//!
//! Only the shell scripts of steps 1 and 4 are shell; they are constants,
//! and every value reaches them as a positional argument, never as script
//! text. The tooling root needs what any Debian root has: `sh`, `awk`,
//! `env`, `apt-get`, `dpkg`, `dpkg-query`, `grep`, `cp`.

use std::collections::BTreeMap;

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{
    CacheMount, Command, ExecContext, Fact, FileEntry, FileKind, PatchPlan, PlanRequest, SkippedUpdate, Step,
    Target, Tooling, UpdateMode,
};

use crate::error::AptError;
use crate::name::{PackageName, debian_arch};
use crate::plan::{self, Decision, Image};
use crate::probe::{APT_SOURCES, APT_TRUST, DPKG_STATUS, DPKG_STATUS_D};
use crate::status::Status;

/// Where the image is mounted in the tooling root.
pub const MOUNT: &str = "/target";
/// apt's indexes, a host-side cache shared between runs.
pub const LISTS: &str = "/caulk/lists";
/// apt's other state and the downloads of one run, a host-side cache.
pub const WORK: &str = "/caulk/work";
/// Where distroless images list their packages.
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";
/// dpkg's database while the install step runs, inside the target.
pub const ADMIN: &str = "/var/lib/caulk-dpkg";

/// The mirror the release's sources name when the image has none.
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
const DEBIAN_SECURITY: &str = "http://deb.debian.org/debian-security";

/// Step 1: `$1` the work dir, then the sources lines.
const PREPARE: &str = r#"set -eu
w=$1; shift
rm -rf "$w/debs" "$w/sources.list.d" "$w/state" "$w/cache"
mkdir -p "$w/debs" "$w/sources.list.d" "$w/state" "$w/cache"
: > "$w/status"
printf '%s\n' "$@" > "$w/sources.list"
"#;

/// Step 4: `$1` the target, `$2` the work dir, `$3` the admin dir inside
/// the target, then per package: its dpkg name (`NAME:ARCH`), its status.d
/// file and its md5sums file (`-` for none), both as paths in the image.
const INSTALL: &str = r#"set -eu
t=$1 w=$2 a=$1$3; shift 3
rm -rf "$a"
mkdir -p "$a/info" "$a/updates" "$a/triggers"
for f in "$t"/var/lib/dpkg/status.d/*; do
  case ${f##*/} in .*|*.md5sums*|*.dpkg-*) continue ;; esac
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
    { if (tolower($0) !~ /(^|\n)status:/) $0 = $0 "\nStatus: install ok installed"; print }' "$f"
done > "$a/status"
: > "$a/available"
rc=0
dpkg --root="$t" --admindir="$a" --force-script-chrootless --force-confdef --force-confold \
  --force-unsafe-io --install "$w"/debs/*.deb || rc=$?
while [ $# -ge 3 ]; do
  p=$1 f=$2 m=$3; shift 3
  if grep -qi '^Status:' "$t$f"; then
    dpkg-query --admindir="$a" --status "$p" > "$t$f"
  else
    dpkg-query --admindir="$a" --status "$p" | grep -vx 'Status: install ok installed' > "$t$f"
  fi
  if [ "$m" != - ]; then
    for i in "$a/info/$p.md5sums" "$a/info/${p%%:*}.md5sums"; do
      if [ -f "$i" ]; then cp "$i" "$t$m"; break; fi
    done
  fi
done
rm -rf "$a"
exit $rc
"#;

/// One package's file in status.d and what the image keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFile {
    pub path: String,
    /// `NAME.md5sums` beside it, when the image has one.
    pub md5sums: Option<String>,
    /// How many paragraphs the file holds: a file of several packages
    /// cannot be written back for one.
    pub paragraphs: usize,
}

/// The image's status.d read as one dpkg database.
pub struct Listing {
    pub status: Status,
    /// By `(name, arch)`.
    pub files: BTreeMap<(String, String), StatusFile>,
}

/// Whether `path` is a status.d paragraph file rather than a companion
/// (`.md5sums`) or a leftover of a tool (`.dpkg-new`, hidden files).
fn is_paragraph_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.starts_with('.') && !name.contains(".md5sums") && !name.contains(".dpkg-")
}

/// Reads status.d (the files a `status.d/*` probe matched): entries without
/// a `Status` field count as installed, as distroless means them.
pub fn read(files: &[FileEntry]) -> Result<Listing, AptError> {
    let mut combined = Vec::new();
    let mut listing = Listing { status: Status::default(), files: BTreeMap::new() };
    let mut sorted: Vec<&FileEntry> = files.iter().filter(|f| f.kind == FileKind::Regular).collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for file in sorted.iter().filter(|f| is_paragraph_file(&f.path)) {
        let Some(contents) = &file.contents else {
            return Err(AptError::StatusD { path: file.path.clone(), problem: "too large to read".into() });
        };
        let text = with_status(&String::from_utf8_lossy(contents));
        let parsed = Status::parse(text.as_bytes()).map_err(|e| AptError::StatusD {
            path: file.path.clone(),
            problem: format!("line {}: {}", e.line, e.problem),
        })?;
        let md5sums = format!("{}.md5sums", file.path);
        let md5sums = sorted.iter().any(|f| f.path == md5sums).then_some(md5sums);
        for entry in parsed.entries() {
            listing.files.insert(
                (entry.name.clone(), entry.arch.clone()),
                StatusFile {
                    path: file.path.clone(),
                    md5sums: md5sums.clone(),
                    paragraphs: parsed.entries().len(),
                },
            );
        }
        combined.extend_from_slice(text.as_bytes());
        combined.push(b'\n');
    }
    listing.status = Status::parse(&combined).map_err(|e| AptError::StatusD {
        path: STATUS_D.to_owned(),
        problem: format!("line {} of the files read together: {}", e.line, e.problem),
    })?;
    Ok(listing)
}

/// `text` with `Status: install ok installed` added to each paragraph
/// that has no Status field, every paragraph ending in a newline.
fn with_status(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + 32);
    for paragraph in text.split("\n\n").map(|p| p.trim_matches('\n')).filter(|p| !p.is_empty()) {
        out.push_str(paragraph);
        out.push('\n');
        let has_status =
            paragraph.lines().any(|l| l.get(..7).is_some_and(|field| field.eq_ignore_ascii_case("status:")));
        if !has_status {
            out.push_str("Status: install ok installed\n");
        }
        out.push('\n');
    }
    out
}

/// Where the packages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sources {
    /// The image's own `/etc/apt` sources, and its keys when it has any.
    Image { keys: bool },
    /// Lines for the release os-release names.
    Release(Vec<String>),
}

fn sources(target: &Target, facts: &[Fact]) -> Result<Sources, AptError> {
    let has = |id| facts.files(id).iter().any(|f| f.kind == FileKind::Regular);
    if has(APT_SOURCES) {
        return Ok(Sources::Image { keys: has(APT_TRUST) });
    }
    let os = target.os.as_ref();
    let codename = os.and_then(|o| o.version_codename.as_deref());
    match (os.map(|o| o.id.as_str()), codename) {
        (Some("debian"), Some(c))
            if !c.is_empty() && c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase()) =>
        {
            Ok(Sources::Release(vec![
                format!("deb {DEBIAN_MIRROR} {c} main"),
                format!("deb {DEBIAN_MIRROR} {c}-updates main"),
                format!("deb {DEBIAN_SECURITY} {c}-security main"),
            ]))
        }
        _ => Err(AptError::NoSources {
            os: os
                .and_then(|o| o.pretty_name.clone())
                .or_else(|| os.map(|o| o.id.clone()))
                .unwrap_or_else(|| "none".to_owned()),
        }),
    }
}

/// apt's options for every command: the image's or the generated sources,
/// the state and indexes in the caches, the image's architecture.
fn apt_options(sources: &Sources, arch: &str) -> Vec<String> {
    let mut set: Vec<(String, String)> = Vec::new();
    match sources {
        Sources::Image { keys } => {
            set.push(("Dir::Etc::SourceList".into(), format!("{MOUNT}/etc/apt/sources.list")));
            set.push(("Dir::Etc::SourceParts".into(), format!("{MOUNT}/etc/apt/sources.list.d")));
            if *keys {
                set.push(("Dir::Etc::Trusted".into(), format!("{MOUNT}/etc/apt/trusted.gpg")));
                set.push(("Dir::Etc::TrustedParts".into(), format!("{MOUNT}/etc/apt/trusted.gpg.d")));
            }
        }
        Sources::Release(_) => {
            set.push(("Dir::Etc::SourceList".into(), format!("{WORK}/sources.list")));
            set.push(("Dir::Etc::SourceParts".into(), format!("{WORK}/sources.list.d")));
        }
    }
    for (key, value) in [
        ("Dir::State::Lists", LISTS.to_owned()),
        ("Dir::State", format!("{WORK}/state")),
        ("Dir::State::status", format!("{WORK}/status")),
        ("Dir::Cache", format!("{WORK}/cache")),
        ("Dir::Cache::pkgcache", String::new()),
        ("Dir::Cache::srcpkgcache", String::new()),
        ("APT::Architecture", arch.to_owned()),
        ("APT::Architectures", arch.to_owned()),
        ("Acquire::Languages", "none".to_owned()),
        ("Acquire::Retries", "3".to_owned()),
    ] {
        set.push((key.into(), value));
    }
    set.into_iter().flat_map(|(k, v)| ["-o".to_owned(), format!("{k}={v}")]).collect()
}

fn tooling() -> ExecContext {
    ExecContext::Tooling(Tooling { image: None, mount_point: MOUNT.to_owned() })
}

fn step(summary: String, argv: Vec<String>, network: bool, tolerate_failure: bool) -> Step {
    let mut command = Command::new(argv).env("DEBIAN_FRONTEND", "noninteractive");
    command.context = tooling();
    command.network = network;
    Step { summary, command, tolerate_failure }
}

/// Whether the facts describe a distroless image: no dpkg status file, a
/// status.d with at least one package file.
pub fn applies(facts: &[Fact]) -> bool {
    facts.answered(DPKG_STATUS)
        && facts.file(DPKG_STATUS).is_none()
        && facts
            .files(DPKG_STATUS_D)
            .iter()
            .any(|f| f.kind == FileKind::Regular && is_paragraph_file(&f.path))
}

/// The plan for a distroless image (no `/var/lib/dpkg/status`, a non-empty
/// status.d).
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, AptError> {
    if request.options.mode == UpdateMode::All {
        return Err(AptError::DistrolessAll);
    }
    let listing = read(request.facts.files(DPKG_STATUS_D))?;
    let native =
        debian_arch(&request.target.platform.architecture, request.target.platform.variant.as_deref())
            .map(str::to_owned)
            .ok_or_else(|| AptError::UnknownArch { arch: request.target.platform.architecture.clone() })?;
    let image = Image { status: listing.status.clone(), native: Some(native.clone()), ubuntu: false };
    let mut plan = PatchPlan::empty();
    let mut names: Vec<String> = Vec::new();
    let mut writeback: Vec<String> = Vec::new();
    for update in &request.updates {
        let selected = match plan::decide(update, &image, request.options.ignore_errors)? {
            Decision::Select(selected, _) => selected,
            Decision::Skip(skipped) => {
                plan.skipped.push(skipped);
                continue;
            }
        };
        // `decide` selects only valid names with installed instances.
        let Ok(package) = update.name.parse::<PackageName>() else { continue };
        let instances = image.status.installed(&package);
        let files: Vec<&StatusFile> =
            instances.iter().filter_map(|e| listing.files.get(&(e.name.clone(), e.arch.clone()))).collect();
        if let Some(file) = files.iter().find(|f| f.paragraphs > 1) {
            plan.skipped.push(SkippedUpdate {
                ecosystem: update.ecosystem.clone(),
                name: update.name.clone(),
                location: update.location.clone(),
                installed_version: Some(selected.from.clone()),
                reason: format!(
                    "{} lists {} packages; caulk writes status.d entries back one package per file",
                    file.path, file.paragraphs
                ),
                already_fixed: false,
            });
            continue;
        }
        for (entry, file) in instances.iter().zip(files) {
            names.push(entry.apt_name(Some(&native)));
            let dpkg_name = if entry.arch == "all" {
                entry.name.clone()
            } else {
                format!("{}:{}", entry.name, entry.arch)
            };
            writeback.extend([
                dpkg_name,
                file.path.clone(),
                file.md5sums.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        plan.selected.push(selected);
    }
    if plan.selected.is_empty() {
        return Ok(plan);
    }
    names.sort();
    names.dedup();
    let sources = sources(&request.target, &request.facts)?;
    let options = apt_options(&sources, &native);

    let lines = match &sources {
        Sources::Release(lines) => lines.clone(),
        Sources::Image { .. } => Vec::new(),
    };
    let what = match &sources {
        Sources::Release(_) => "the release os-release names",
        Sources::Image { .. } => "the image's apt sources",
    };
    let mut prepare =
        vec!["sh".to_owned(), "-c".to_owned(), PREPARE.to_owned(), "sh".to_owned(), WORK.to_owned()];
    prepare.extend(lines);
    let mut update = vec!["apt-get".to_owned(), "update".to_owned()];
    update.extend(options.iter().cloned());
    let mut download =
        ["env", "-C", &format!("{WORK}/debs"), "apt-get", "download"].map(str::to_owned).to_vec();
    download.extend(options.iter().cloned());
    download.push("--".to_owned());
    download.extend(names.iter().cloned());
    let mut install = ["sh", "-c", INSTALL, "sh", MOUNT, WORK, ADMIN].map(str::to_owned).to_vec();
    install.extend(writeback);
    let listed = names.join(", ");
    plan.steps = vec![
        step(
            format!("prepare apt's state for a distroless image (packages from {what})"),
            prepare,
            false,
            false,
        ),
        step("apt-get update: refresh the package indexes (tooling root)".into(), update, true, true),
        step(format!("apt-get download: fetch {listed} (tooling root)"), download, true, false),
        step(
            format!("dpkg --root {MOUNT}: install {listed} and write their status.d entries"),
            install,
            false,
            false,
        ),
    ];
    plan.drop_paths = vec![ADMIN.to_owned(), format!("{ADMIN}/**")];
    let digest = plan::cache_digest(&request.target, &request.facts);
    plan.caches = vec![
        CacheMount { path: LISTS.into(), key: format!("apt-distroless-lists-{native}-{digest}") },
        // Per package set too: runs on other packages never share (and
        // wipe) each other's downloads.
        CacheMount {
            path: WORK.into(),
            key: format!("apt-distroless-work-{native}-{digest}-{}", names.join(",")),
        },
    ];
    Ok(plan)
}
