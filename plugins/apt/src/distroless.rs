//! Distroless Debian images: packages listed one per file in
//! `/var/lib/dpkg/status.d` (`NAME`, often beside `NAME.md5sums`), no
//! `/var/lib/dpkg/status`, no apt, no dpkg, usually no shell.
//!
//! Every step runs in a Debian tooling root (the host's `/`, or the image
//! `caulk patch --tooling-image` names) with the image mounted read-write at
//! [`MOUNT`]:
//!
//! 1. prepare: the apt state in the work cache ([`WORK`]): an empty `debs`
//!    directory, a `sources.list` of the lines the plan passes (only used
//!    when the image has no apt sources of its own), and apt's status file
//!    made from the image's status.d (paragraphs without `Status` count as
//!    installed; the packages of a file listing several are held, whatever
//!    `Status` the file gives them);
//! 2. `apt-get update` with the image's sources and keys when it has them,
//!    else with the release its os-release names (`deb.debian.org`, the
//!    suite, `-updates` and `-security`, the tooling root's keys); indexes in
//!    the lists cache ([`LISTS`]);
//! 3. `apt-get --download-only` into the empty `debs` directory: `install`
//!    of the report's packages, or (update-all) `upgrade --with-new-pkgs`.
//!    apt resolves against status.d, so a dependency a new version needs
//!    and the image lacks, or has too old, is fetched too. When status.d's
//!    own dependencies are broken apt resolves nothing, and the report's
//!    packages alone are fetched (`apt-get download`), or for update-all
//!    every package `apt list --upgradable` names but the held ones; dpkg
//!    then says what is missing;
//! 4. install: refused unless `/var`, `/var/lib`, `/var/lib/dpkg` and
//!    status.d are directories of the image, not symlinks (the image
//!    chooses them; a link would point the writes at the tooling root or
//!    the host-side caches; the host mounts the caches read-only for this
//!    step, the one without network, so dpkg's own writes through a link
//!    cannot reach them either). dpkg's database is made for the step from the same status
//!    file in [`ADMIN`], a directory of the target no image has (dpkg wants
//!    its admin dir below its root); `dpkg --root /target --admindir … -i`
//!    the downloads; each package downloaded gets its paragraph written to
//!    its own status.d file, or for a package the image did not have to a
//!    new `status.d/NAME` (with `Status` only when the image's files have
//!    it, `NAME.md5sums` beside it when the image keeps md5sums). A package
//!    whose new version has another Architecture (`any` to `all`) keeps the
//!    one file that lists its name. Each file is written under a fresh
//!    `mktemp` name and renamed when complete; a destination the image has
//!    as a symlink or directory is refused (left as it is, the step fails),
//!    never written through or replaced. The admin dir is removed.
//!
//! dpkg runs with `--force-script-chrootless`: maintainer scripts run from
//! the tooling root with `DPKG_ROOT` set to the target, since the image has
//! no shell to chroot into (a script that ignores `DPKG_ROOT` and writes
//! outside the target fails on the read-only tooling root, and the package
//! with it), and `--force-confdef --force-confold --force-unsafe-io` as in
//! images with apt. No `--force-depends`: the new versions' dependencies
//! must be met by what status.d lists and what was fetched, or dpkg refuses
//! and verification says why.
//!
//! Steps 1, 3 and 4 are shell scripts; they are constants,
//! and every value reaches them as a positional argument, never as script
//! text. The tooling root needs what any Debian root has: `sh`, `awk`,
//! `apt-get`, `apt`, `dpkg`, `dpkg-deb`, `dpkg-query`, `grep`, `cp`, `mv`,
//! `mktemp`.

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

/// Step 1: `$1` the work dir, `$2` the target, then the sources lines.
/// apt's status file (and, in step 4, dpkg's) is made from the image's
/// status.d: paragraphs without `Status` count as installed, and the
/// packages of a file listing several are held (an `install` Status made
/// `hold`), since caulk cannot write such a file back for one of them.
const PREPARE: &str = r#"set -eu
w=$1 t=$2; shift 2
rm -rf "$w/debs" "$w/sources.list.d" "$w/state" "$w/cache"
mkdir -p "$w/debs/partial" "$w/sources.list.d" "$w/state" "$w/cache"
printf '%s\n' "$@" > "$w/sources.list"
for f in "$t"/var/lib/dpkg/status.d/*; do
  case ${f##*/} in .*|*.md5sums*|*.dpkg-*) continue ;; esac
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  n=$(awk 'BEGIN { RS = "" } END { print NR }' "$f")
  held=0
  [ "$n" -le 1 ] || held=1
  awk -v held="$held" 'BEGIN { RS = ""; ORS = "\n\n" }
    {
      k = split($0, line, "\n"); out = ""; found = 0
      for (i = 1; i <= k; i++) {
        if (tolower(line[i]) ~ /^status:/) {
          found = 1
          if (held) sub(/^[^:]*:[ \t]*install[ \t]/, "Status: hold ", line[i])
        }
        out = out (i > 1 ? "\n" : "") line[i]
      }
      if (!found) out = out "\nStatus: " (held ? "hold" : "install") " ok installed"
      print out
    }' "$f"
done > "$w/status"
"#;

/// Step 3: `$1` the work dir, `$2` `all` or `report`, then apt's options,
/// then (report) `--` and the names. apt resolves against the image's
/// status.d, so the dependencies a new version needs and the image lacks
/// (or has too old) are fetched too. A status.d whose own dependencies are
/// broken (images list what they chose to) leaves apt nothing to resolve
/// with: the named packages alone are fetched then (update-all: those
/// `apt list --upgradable` names, less the held), and dpkg says what is
/// missing.
const DOWNLOAD: &str = r#"set -eu
w=$1 mode=$2; shift 2
cd "$w/debs"
if [ "$mode" = all ]; then
  apt-get upgrade --download-only -y --with-new-pkgs --no-install-recommends \
    -o Dir::Cache::archives="$w/debs" "$@" && exit 0
  echo "caulk: apt could not resolve the upgrade against status.d; fetching each package with a newer version alone" >&2
  # `apt list` compares versions without resolving dependencies; it lists
  # held packages too, which the status file names.
  awk 'BEGIN { RS = "" } tolower($0) ~ /(^|\n)status: hold / {
      if (match($0, /(^|\n)Package: [^\n]*/)) { s = substr($0, RSTART, RLENGTH); sub(/^\n?Package: /, "", s); print s }
    }' "$w/status" > "$w/held"
  apt list --upgradable "$@" 2>/dev/null | awk -F '[/ ]' -v held="$w/held" '
    BEGIN { while ((getline h < held) > 0) skip[h] = 1 }
    NF >= 4 && !($1 in skip) { print ($4 == "all" ? $1 : $1 ":" $4) }' > "$w/upgradable"
  if [ ! -s "$w/upgradable" ]; then
    echo "caulk: apt lists no package with a newer version"
    exit 0
  fi
  # One name a line, as apt printed them: argv elements, never script text.
  set -- "$@" --
  while IFS= read -r name; do set -- "$@" "$name"; done < "$w/upgradable"
fi
apt-get install --download-only -y --no-install-recommends -o Dir::Cache::archives="$w/debs" "$@" && exit 0
echo "caulk: apt could not resolve the new versions against status.d; fetching the named packages alone" >&2
apt-get download "$@"
"#;

/// Step 4: `$1` the target, `$2` the work dir, `$3` the admin dir inside
/// the target, `$4` whether a new package's entry gets a `Status` field
/// (`status` or `-`), `$5` whether it gets an md5sums file (`md5sums` or
/// `-`), then per package the image lists one to a file: its dpkg name
/// (`NAME:ARCH`, `NAME` for arch all), its status.d file and its md5sums
/// file (`-` for none), as paths in the image. Every package downloaded is
/// written back: to its own file, or to a new `status.d/NAME` in the
/// image's style. Files are written under a fresh temporary name and
/// renamed only when complete, so a failing dpkg-query never leaves one
/// empty; the image's directories and destinations that are symlinks are
/// refused, since writing through them leaves the target.
const INSTALL: &str = r#"set -eu
t=$1 w=$2 a=$1$3 new_status=$4 new_md5=$5; shift 5
d=/var/lib/dpkg/status.d
for x in /var /var/lib /var/lib/dpkg $d; do
  if [ -L "$t$x" ] || [ ! -d "$t$x" ]; then
    echo "caulk: $x in the image is not a directory (a symlink or missing); refusing to write status.d through it" >&2
    exit 1
  fi
done
if ! ls "$w"/debs/*.deb > /dev/null 2>&1; then
  echo "caulk: apt fetched nothing: no package has a newer version"
  exit 0
fi
rm -rf "$a"
mkdir -p "$a/info" "$a/updates" "$a/triggers"
cp "$w/status" "$a/status"
: > "$a/available"
rc=0
dpkg --root="$t" --admindir="$a" --force-script-chrootless --force-confdef --force-confold \
  --force-unsafe-io --install "$w"/debs/*.deb || rc=$?
# A new file in status.d, created by mktemp (never an existing name, so
# never through a link the image planted); mktemp requires the trailing
# X's of its template and fills them with a random suffix.
tmp() { mktemp "$t$d/.${1##*/}.caulk-new.XXXXXX"; }
# put SRC DEST: SRC renamed over DEST (a path in the image). A DEST that is
# a symlink or a directory is refused, not written through or replaced.
put() {
  if [ -L "$t$2" ] || [ -d "$t$2" ]; then
    rm -f "$1"
    echo "caulk: $2 in the image is a symlink or a directory; it was not written" >&2
    return 1
  fi
  mv -T "$1" "$t$2"
}
for deb in "$w"/debs/*.deb; do
  p=$(dpkg-deb --field "$deb" Package)
  arch=$(dpkg-deb --field "$deb" Architecture)
  q=$p
  [ "$arch" = all ] || q=$p:$arch
  f= m=- keep=- byname= byname_m=- named=0
  i=0
  for x in "$@"; do
    case $((i % 3)) in
      0) hit=$x ;;
      1)
        [ "$hit" != "$q" ] || f=$x
        if [ "${hit%%:*}" = "$p" ]; then byname=$x named=$((named + 1)); fi
        ;;
      2)
        if [ "$hit" = "$q" ]; then m=$x; fi
        if [ "${hit%%:*}" = "$p" ]; then byname_m=$x; fi
        ;;
    esac
    i=$((i + 1))
  done
  # The new version's Architecture differs from the image's entry (any to
  # all, or back): the one file listing the name alone is still its own.
  if [ -z "$f" ] && [ "$named" = 1 ]; then f=$byname m=$byname_m; fi
  if [ -n "$f" ]; then
    if grep -qi '^Status:' "$t$f"; then keep=status; fi
  elif grep -qxF "Package: $p" "$w/status"; then
    echo "caulk: $q is listed in a status.d file with other packages; it was not written back" >&2
    rc=1
    continue
  else
    f=$d/$p keep=$new_status
    [ "$new_md5" = - ] || m=$f.md5sums
    if [ -e "$t$f" ] || [ -L "$t$f" ]; then
      echo "caulk: $f exists but does not list $q; its entry was not written" >&2
      rc=1
      continue
    fi
  fi
  n=$(tmp "$f")
  if ! dpkg-query --admindir="$a" --status "$q" > "$n"; then
    rm -f "$n"
    echo "caulk: dpkg lists no $q after the install; $f left as it was" >&2
    rc=1
    continue
  fi
  if [ "$keep" = - ]; then
    s=$(tmp "$f")
    grep -vx 'Status: install ok installed' "$n" > "$s" || true
    mv -T "$s" "$n"
  fi
  put "$n" "$f" || { rc=1; continue; }
  if [ "$m" != - ]; then
    for i in "$a/info/$q.md5sums" "$a/info/$p.md5sums"; do
      if [ -f "$i" ]; then
        n=$(tmp "$m")
        cat "$i" > "$n"
        put "$n" "$m" || rc=1
        break
      fi
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
    /// Whether the file has `Status` fields (distroless's have none).
    pub status_field: bool,
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
        let raw = String::from_utf8_lossy(contents);
        let status_field = raw.lines().any(is_status_line);
        let text = with_status(&raw);
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
                    status_field,
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
        if !paragraph.lines().any(is_status_line) {
            out.push_str("Status: install ok installed\n");
        }
        out.push('\n');
    }
    out
}

fn is_status_line(line: &str) -> bool {
    line.get(..7).is_some_and(|field| field.eq_ignore_ascii_case("status:"))
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
/// status.d): report-driven, or every package with a newer candidate.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, AptError> {
    let listing = read(request.facts.files(DPKG_STATUS_D))?;
    let native =
        debian_arch(&request.target.platform.architecture, request.target.platform.variant.as_deref())
            .map(str::to_owned)
            .ok_or_else(|| AptError::UnknownArch { arch: request.target.platform.architecture.clone() })?;
    let image = Image { status: listing.status.clone(), native: Some(native.clone()), ubuntu: false };
    let mut plan = PatchPlan::empty();
    let names = match request.options.mode {
        UpdateMode::Report => select_reported(request, &image, &listing, &mut plan)?,
        UpdateMode::All => {
            select_all(&image, &listing, &mut plan);
            Vec::new()
        }
    };
    if plan.selected.is_empty() {
        return Ok(plan);
    }
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
    let mut prepare = ["sh", "-c", PREPARE, "sh", WORK, MOUNT].map(str::to_owned).to_vec();
    prepare.extend(lines);
    let mut update = vec!["apt-get".to_owned(), "update".to_owned()];
    update.extend(options.iter().cloned());
    let mode = if names.is_empty() { "all" } else { "report" };
    let mut download = ["sh", "-c", DOWNLOAD, "sh", WORK, mode].map(str::to_owned).to_vec();
    download.extend(options.iter().cloned());
    let fetched = if names.is_empty() {
        "every package with a newer version".to_owned()
    } else {
        download.push("--".to_owned());
        download.extend(names.iter().cloned());
        names.join(", ")
    };
    let style = |yes: bool, word: &str| if yes { word.to_owned() } else { "-".to_owned() };
    let mut install = ["sh", "-c", INSTALL, "sh", MOUNT, WORK, ADMIN].map(str::to_owned).to_vec();
    install.push(style(listing.files.values().any(|f| f.status_field), "status"));
    install.push(style(listing.files.values().any(|f| f.md5sums.is_some()), "md5sums"));
    install.extend(writeback(&listing));
    plan.steps = vec![
        // With network although it fetches nothing: it writes apt's state
        // into the work cache, and the host mounts caches writable only in
        // steps with network (the install step gets them read-only, so
        // dpkg, writing through the image's links, cannot reach them).
        step(
            format!("prepare apt's state for a distroless image (packages from {what})"),
            prepare,
            true,
            false,
        ),
        step("apt-get update: refresh the package indexes (tooling root)".into(), update, true, true),
        step(
            format!("apt-get --download-only: fetch {fetched} and what it needs (tooling root)"),
            download,
            true,
            false,
        ),
        step(
            format!("dpkg --root {MOUNT}: install what was fetched and write its status.d entries"),
            install,
            false,
            false,
        ),
    ];
    plan.drop_paths = vec![ADMIN.to_owned(), format!("{ADMIN}/**"), format!("{STATUS_D}/.*.caulk-new*")];
    let digest = plan::cache_digest(&request.target, &request.facts);
    let set = if names.is_empty() { "all".to_owned() } else { names.join(",") };
    plan.caches = vec![
        CacheMount { path: LISTS.into(), key: format!("apt-distroless-lists-{native}-{digest}") },
        // Per package set too: runs on other packages never share (and
        // wipe) each other's downloads.
        CacheMount { path: WORK.into(), key: format!("apt-distroless-work-{native}-{digest}-{set}") },
    ];
    Ok(plan)
}

/// The report's packages the plan selects (the rest skipped, with why),
/// returning their apt names.
fn select_reported(
    request: &PlanRequest,
    image: &Image,
    listing: &Listing,
    plan: &mut PatchPlan,
) -> Result<Vec<String>, AptError> {
    let native = image.native.as_deref();
    let mut names: Vec<String> = Vec::new();
    for update in &request.updates {
        let selected = match plan::decide(update, image, request.options.ignore_errors)? {
            Decision::Select(selected, _) => selected,
            Decision::Skip(skipped) => {
                plan.skipped.push(skipped);
                continue;
            }
        };
        // `decide` selects only valid names with installed instances.
        let Ok(package) = update.name.parse::<PackageName>() else { continue };
        let instances = image.status.installed(&package);
        if let Some(file) = instances.iter().find_map(|e| shared_file(listing, e)) {
            plan.skipped.push(SkippedUpdate {
                ecosystem: update.ecosystem.clone(),
                name: update.name.clone(),
                location: update.location.clone(),
                installed_version: Some(selected.from.clone()),
                reason: several_reason(file),
                already_fixed: false,
            });
            continue;
        }
        names.extend(instances.iter().map(|e| e.apt_name(native)));
        plan.selected.push(selected);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Update-all: every package, as apt-get upgrade sees them, but those in a
/// file of several packages (held by the prepare step's status).
fn select_all(image: &Image, listing: &Listing, plan: &mut PatchPlan) {
    plan::everything(image, plan);
    // `everything` names a package `NAME` or `NAME:ARCH`.
    let shared = |name: &str| {
        let base = name.split(':').next().unwrap_or(name);
        image.status.entries().iter().filter(|e| e.name == base).find_map(|e| shared_file(listing, e))
    };
    let mut kept = Vec::new();
    for selected in std::mem::take(&mut plan.selected) {
        match shared(&selected.name) {
            Some(file) => plan.skipped.push(SkippedUpdate {
                ecosystem: selected.ecosystem.clone(),
                name: selected.name.clone(),
                location: None,
                installed_version: Some(selected.from.clone()),
                reason: several_reason(file),
                already_fixed: false,
            }),
            None => kept.push(selected),
        }
    }
    plan.selected = kept;
}

/// The status.d file of `entry` when it lists other packages too.
fn shared_file<'l>(listing: &'l Listing, entry: &crate::status::Entry) -> Option<&'l StatusFile> {
    listing.files.get(&(entry.name.clone(), entry.arch.clone())).filter(|f| f.paragraphs > 1)
}

fn several_reason(file: &StatusFile) -> String {
    format!(
        "{} lists {} packages; caulk writes status.d entries back one package per file",
        file.path, file.paragraphs
    )
}

/// `NAME:ARCH FILE MD5SUMS` (`NAME` for arch all, `-` for no md5sums) of
/// every package the image lists one to a file: the install step writes
/// back whichever of them it upgraded.
fn writeback(listing: &Listing) -> Vec<String> {
    let mut args = Vec::new();
    for ((name, arch), file) in listing.files.iter().filter(|(_, f)| f.paragraphs == 1) {
        let dpkg_name = if arch == "all" { name.clone() } else { format!("{name}:{arch}") };
        args.extend([dpkg_name, file.path.clone(), file.md5sums.clone().unwrap_or_else(|| "-".to_owned())]);
    }
    args
}
