//! Real root file systems for the executor tests, built once with
//! mmdebstrap and cached outside the repository.
//!
//! Layer 0 (`base`): Debian 12 from suite `bookworm` only (so openssl is
//! behind bookworm-security), variant apt, plus openssl, libssl3 and
//! ca-certificates. Layer 1 (`top`), in overlayfs lower-dir form as the image
//! crate unpacks layers: bookworm-security added to the sources, whiteouts
//! for /etc/motd and /etc/resolv.conf, /usr/share/doc/apt made opaque with
//! one new file, and a new file /etc/caulk-layer1.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use caulk_exec::{ExecutorConfig, LocalExecutor, Mode};
use rustix::fs::{AtFlags, CWD, FileType, FlockOperation, Mode as FsMode, Timespec, Timestamps, XattrFlags};
use sha2::{Digest, Sha256};

/// The test cache: `$CAULK_TEST_CACHE` (default `/var/tmp/caulk-test-cache`), `exec` in it.
pub fn cache() -> std::path::PathBuf {
    std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| std::path::PathBuf::from("/var/tmp/caulk-test-cache"), std::path::PathBuf::from)
        .join("exec")
}
const FIXTURE: &str = "bookworm-v1";
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const SECURITY_LIST: &str = "deb http://deb.debian.org/debian-security bookworm-security main\n";

#[derive(Debug)]
pub struct Fixture {
    pub base: PathBuf,
    pub top: PathBuf,
}

impl Fixture {
    /// Both layers, bottom first.
    pub fn layers(&self) -> Vec<PathBuf> {
        vec![self.base.clone(), self.top.clone()]
    }
}

/// The cached fixture, built on first use under a lock shared by all test
/// processes (nextest runs each test in its own).
pub fn fixture() -> &'static Fixture {
    static FIXTURE_ONCE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE_ONCE.get_or_init(|| {
        let dir = cache().join(FIXTURE);
        fs::create_dir_all(&dir).unwrap();
        let lock = File::create(dir.join(".lock")).unwrap();
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).unwrap();
        let base = dir.join("base");
        if !dir.join("base.done").exists() {
            build_base(&dir, &base);
            File::create(dir.join("base.done")).unwrap();
        }
        let top = dir.join("top");
        if !dir.join("top.done").exists() {
            let _ = fs::remove_dir_all(&top);
            build_top(&base, &top);
            File::create(dir.join("top.done")).unwrap();
        }
        Fixture { base, top }
    })
}

fn build_base(dir: &Path, base: &Path) {
    let tmp = dir.join(format!("base.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(base);
    let status = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=apt", "--include=openssl,libssl3,ca-certificates", "bookworm"])
        .arg(&tmp)
        .arg(MIRROR)
        .status()
        .expect("mmdebstrap runs (apt-get install mmdebstrap)");
    assert!(status.success(), "mmdebstrap failed: {status}");
    fs::rename(&tmp, base).unwrap();
}

/// Copies owner, mode and times of `like` onto `path`.
fn same_meta(path: &Path, like: &Path) {
    let m = fs::symlink_metadata(like).unwrap();
    std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid())).unwrap();
    rustix::fs::chmod(path, FsMode::from_raw_mode(m.mode() & 0o7777)).unwrap();
    let t = Timespec { tv_sec: m.mtime(), tv_nsec: 0 };
    rustix::fs::utimensat(CWD, path, &Timestamps { last_access: t, last_modification: t }, AtFlags::empty())
        .unwrap();
}

fn build_top(base: &Path, top: &Path) {
    for dir in ["etc/apt/sources.list.d", "usr/share/doc/apt"] {
        fs::create_dir_all(top.join(dir)).unwrap();
    }
    fs::write(top.join("etc/apt/sources.list.d/security.list"), SECURITY_LIST).unwrap();
    fs::write(top.join("etc/caulk-layer1"), "from layer 1\n").unwrap();
    for gone in ["etc/motd", "etc/resolv.conf"] {
        whiteout(&top.join(gone));
    }
    fs::write(top.join("usr/share/doc/apt/NOTE"), "opaque in layer 1\n").unwrap();
    rustix::fs::lsetxattr(top.join("usr/share/doc/apt"), "trusted.overlay.opaque", b"y", XattrFlags::empty())
        .unwrap();
    for dir in [
        "etc",
        "etc/apt",
        "etc/apt/sources.list.d",
        "usr",
        "usr/share",
        "usr/share/doc",
        "usr/share/doc/apt",
        "",
    ] {
        same_meta(&top.join(dir), &base.join(dir));
    }
}

pub fn whiteout(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, FsMode::empty(), rustix::fs::makedev(0, 0))
        .unwrap();
}

pub fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

pub fn is_opaque(path: &Path) -> bool {
    let mut v = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut v[..]), Ok(1) if v[0] == b'y')
}

/// A working folder for one test, removed at the end.
pub fn workdir() -> tempfile::TempDir {
    fs::create_dir_all(cache()).unwrap();
    tempfile::Builder::new().prefix("work-").tempdir_in(cache()).unwrap()
}

pub fn executor(work: &Path, mode: Mode) -> LocalExecutor {
    let mut config = ExecutorConfig::new(work);
    config.mode = mode;
    config.proxy_env.clear();
    LocalExecutor::new(config).unwrap()
}

pub fn sha256(path: &Path) -> String {
    let mut data = Vec::new();
    File::open(path).unwrap().read_to_end(&mut data).unwrap();
    hex::encode(Sha256::digest(&data))
}

/// A comparable description of a diff dir: every entry with its kind,
/// owner, mode, content digest or link target, whiteout and opaque flags
/// and xattrs other than overlayfs' bookkeeping. Times are left out (two
/// runs of the same step write at different times).
pub fn describe_diff(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    describe_into(dir, Path::new(""), &mut out);
    out
}

fn describe_into(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let what = if is_whiteout(&path) {
            "whiteout".to_owned()
        } else if ft.is_dir() {
            format!("dir{}", if is_opaque(&path) { " opaque" } else { "" })
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            format!("file {}", sha256(&path))
        } else {
            format!("special {:o} {}", m.mode() & 0o170_000, m.rdev())
        };
        let xattrs = user_xattrs(&path);
        out.insert(
            child.display().to_string(),
            format!("{what} {}:{} {:o}{xattrs}", m.uid(), m.gid(), m.mode() & 0o7777),
        );
        if ft.is_dir() {
            describe_into(root, &child, out);
        }
    }
}

fn user_xattrs(path: &Path) -> String {
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) else { return String::new() };
    let mut names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| !n.starts_with("trusted.overlay."))
        .collect();
    names.sort();
    if names.is_empty() { String::new() } else { format!(" xattrs={}", names.join(",")) }
}

/// Whether the host's mount table mentions `path` (a leaked mount).
pub fn host_mounts_under(path: &Path) -> Vec<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = path.to_string_lossy().into_owned();
    table.lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

/// Processes whose command line is exactly `argv`.
pub fn processes_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == want) {
            found.push(pid);
        }
    }
    found
}

/// Host-side apt caches shared by the tests and the benchmark (lists and
/// downloaded packages), as the pipeline keeps them.
pub fn apt_caches() -> (PathBuf, PathBuf) {
    let root = cache().join("apt-cache");
    let lists = root.join("lists");
    let archives = root.join("archives");
    for dir in [&lists, &archives] {
        fs::create_dir_all(dir.join("partial")).unwrap();
    }
    (lists, archives)
}

/// `apt-get update` and an upgrade of openssl and libssl3 from
/// bookworm-security (which layer 1 adds to the sources).
pub fn apt_upgrade_steps(unsafe_io: bool) -> Vec<caulk_exec::Step> {
    apt_steps(unsafe_io, &["install", "--only-upgrade", "openssl", "libssl3"])
}

/// `apt-get update`, `apt-get --download-only ACTION...` with network, and
/// `apt-get ACTION...` without (the packages' maintainer scripts need no
/// network, and the host's CA bundle is only mounted into network steps, so
/// ca-certificates can replace the image's).
pub fn apt_steps(unsafe_io: bool, action: &[&str]) -> Vec<caulk_exec::Step> {
    let (lists, archives) = apt_caches();
    let update =
        caulk_exec::Step::new("refresh package indexes", ["apt-get", "-o", "Acquire::Retries=3", "update"])
            .network(true)
            .cache(&lists, "/var/lib/apt/lists");
    let mut argv = vec!["apt-get", "-y", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"];
    if unsafe_io {
        argv.extend(["-o", "Dpkg::Options::=--force-unsafe-io"]);
    }
    let step = |summary: String, argv: Vec<&str>, network: bool| {
        caulk_exec::Step::new(summary, argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .network(network)
            .cache(&lists, "/var/lib/apt/lists")
            .cache(&archives, "/var/cache/apt/archives")
    };
    let mut download = argv.clone();
    download.push("--download-only");
    download.extend(action);
    argv.extend(action);
    vec![
        update,
        step(format!("download for apt-get {}", action.join(" ")), download, true),
        step(format!("apt-get {}", action.join(" ")), argv, false),
    ]
}
