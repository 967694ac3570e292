//! Memory and process-count limits of each sandboxed process tree, so a
//! fork bomb or a runaway build fails its step, not the host.
//!
//! Each step (and probe) gets a cgroup of its own, made before the spawn;
//! the child joins it between `fork` and `exec` by writing `0` (itself) to
//! the `cgroup.procs` files opened beforehand, so every process bwrap
//! starts is counted from the first. Afterwards the cgroup's event
//! counters tell whether a limit was hit, leftovers are killed and the
//! cgroup is removed.
//!
//! cgroup v2 is used where its memory and pids controllers are available to
//! the parent of caulk's own cgroup (the step cgroups are made beside
//! caulk's: a v2 cgroup holding processes cannot hand controllers to
//! children), cgroup v1 where the `memory` and `pids` hierarchies are
//! mounted. Without either, memory falls back to `RLIMIT_DATA` per process,
//! and nothing limits the number of processes: `RLIMIT_NPROC` does not
//! apply to uid 0, which the steps run as.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The limits every step and probe runs under. `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Bytes of memory for the whole process tree (swap: as much again).
    pub memory: Option<u64>,
    /// Processes and threads in the tree.
    pub pids: Option<u64>,
}

impl StepLimits {
    /// Room for apt, dpkg and pip building a wheel from source, far below
    /// what a fork bomb or a leak would take.
    pub const DEFAULT_MEMORY_MIB: u64 = 4096;
    pub const DEFAULT_PIDS: u64 = 4096;
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits { memory: Some(Self::DEFAULT_MEMORY_MIB << 20), pids: Some(Self::DEFAULT_PIDS) }
    }
}

/// Which limit a step ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The kernel killed a process for using more than this many bytes.
    Memory(u64),
    /// A fork or thread was refused at this many tasks.
    Pids(u64),
}

impl LimitHit {
    /// What happened and how to raise the limit.
    pub fn describe(&self) -> String {
        match self {
            LimitHit::Memory(bytes) => format!(
                "it ran out of its memory limit of {} MiB (raise it with --step-memory MIB, 0 for none)",
                bytes >> 20
            ),
            LimitHit::Pids(max) => format!(
                "it reached its limit of {max} processes and threads (raise it with --step-pids N, 0 for none)"
            ),
        }
    }
}

/// How limits are enforced on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Step cgroups go in `parent`, a cgroup v2 dir with memory and pids
    /// enabled for its children.
    V2 { parent: PathBuf },
    /// Step cgroups go in these v1 dirs (caulk's own cgroup in each).
    V1 { memory: Option<PathBuf>, pids: Option<PathBuf> },
    /// Per-process rlimits only.
    Rlimits,
}

/// The limits and how they are enforced, settled once per executor.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    pub limits: StepLimits,
    pub backend: Backend,
}

/// A cgroup line of `/proc/self/cgroup`: hierarchy controllers and path.
fn own_paths(cgroup_file: &str) -> Vec<(Vec<String>, String)> {
    cgroup_file
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
            Some((controllers, parts.next()?.to_owned()))
        })
        .collect()
}

/// cgroup mounts of `/proc/self/mountinfo`: (mount point, root, fs type,
/// super options).
fn cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, String, String, Vec<String>)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut rest = right.split(' ');
            let fstype = rest.next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let _source = rest.next()?;
            let options = rest.next().unwrap_or("").split(',').map(str::to_owned).collect();
            let root = unescape(fields.get(3)?);
            let point = PathBuf::from(unescape(fields.get(4)?));
            Some((point, root, fstype.to_owned(), options))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `path` in a hierarchy mounted at `point` whose
/// mount shows cgroup `root`; `None` when the cgroup is outside the mount.
fn dir_of(point: &Path, root: &str, path: &str) -> Option<PathBuf> {
    let rel = if root == "/" { path } else { path.strip_prefix(root)? };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() { point.to_owned() } else { point.join(rel) })
}

fn has_controllers(list: &str, wanted: &[&str]) -> bool {
    let have: Vec<&str> = list.split_whitespace().collect();
    wanted.iter().all(|w| have.contains(w))
}

/// Picks the backend from the process's own cgroup files.
pub(crate) fn detect(mountinfo: &str, own: &str) -> Backend {
    let mounts = cgroup_mounts(mountinfo);
    let own = own_paths(own);
    let v2_path = own.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p.as_str());
    if let Some(path) = v2_path
        && let Some((point, root, _, _)) = mounts.iter().find(|m| m.2 == "cgroup2")
        && let Some(dir) = dir_of(point, root, path)
        && let Some(parent) = v2_parent(&dir, point)
    {
        return Backend::V2 { parent };
    }
    let v1 = |controller: &str| {
        let (point, root, _, _) =
            mounts.iter().find(|m| m.2 == "cgroup" && m.3.iter().any(|o| o == controller))?;
        let (_, path) = own.iter().find(|(c, _)| c.iter().any(|x| x == controller))?;
        let dir = dir_of(point, root, path)?;
        writable_dir(&dir).then_some(dir)
    };
    let (memory, pids) = (v1("memory"), v1("pids"));
    if memory.is_some() || pids.is_some() {
        return Backend::V1 { memory, pids };
    }
    Backend::Rlimits
}

/// Where v2 step cgroups can go: the root cgroup itself (which may hold
/// processes and still delegate), else the parent of caulk's own cgroup,
/// with memory and pids enabled for its children (enabling them if the
/// parent offers them).
fn v2_parent(own: &Path, mount_point: &Path) -> Option<PathBuf> {
    let wanted = ["memory", "pids"];
    let parent = if own == mount_point { own.to_owned() } else { own.parent()?.to_owned() };
    if !parent.starts_with(mount_point) {
        return None;
    }
    let offered = fs::read_to_string(parent.join("cgroup.controllers")).ok()?;
    if !has_controllers(&offered, &wanted) {
        return None;
    }
    let subtree = parent.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&subtree).ok()?;
    if !has_controllers(&enabled, &wanted) {
        fs::write(&subtree, "+memory +pids").ok()?;
    }
    Some(parent)
}

fn writable_dir(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

impl Limiter {
    /// Settles how `limits` are enforced here, trying a cgroup once so a
    /// host that refuses them shows now and not at the first step.
    pub(crate) fn new(limits: StepLimits) -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut backend = detect(&mountinfo, &own);
        if limits.memory.is_none() && limits.pids.is_none() {
            backend = Backend::Rlimits;
        }
        let limiter = Limiter { limits, backend };
        limiter.sweep_stale();
        if limiter.backend != Backend::Rlimits {
            match limiter.start() {
                Ok(Some(trial)) => trial.finish(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make cgroups for the steps; falling back to rlimits");
                    return Limiter { limits, backend: Backend::Rlimits }.warn_gaps();
                }
            }
        }
        limiter.warn_gaps()
    }

    fn warn_gaps(self) -> Self {
        let (memory_cgroup, pids_cgroup) = match &self.backend {
            Backend::V2 { .. } => (true, true),
            Backend::V1 { memory, pids } => (memory.is_some(), pids.is_some()),
            Backend::Rlimits => (false, false),
        };
        if let Some(bytes) = self.limits.memory
            && !memory_cgroup
        {
            tracing::warn!(
                limit_mib = bytes >> 20,
                "no memory cgroup here: each process of a step is limited to this much data \
                 (RLIMIT_DATA), the step as a whole is not"
            );
        }
        if self.limits.pids.is_some() && !pids_cgroup {
            tracing::warn!(
                "no pids cgroup here: nothing limits how many processes a step starts \
                 (RLIMIT_NPROC does not apply to root)"
            );
        }
        self
    }

    /// The dirs step cgroups are made in.
    fn parents(&self) -> Vec<&Path> {
        match &self.backend {
            Backend::V2 { parent } => vec![parent.as_path()],
            Backend::V1 { memory, pids } => memory.iter().chain(pids).map(PathBuf::as_path).collect(),
            Backend::Rlimits => Vec::new(),
        }
    }

    /// Removes step cgroups left by a caulk that died (SIGKILL): the
    /// sandbox's processes died with it, the empty cgroup dirs stay.
    fn sweep_stale(&self) {
        for parent in self.parents() {
            let Ok(entries) = fs::read_dir(parent) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("caulk-")?.split('-').next())
                else {
                    continue;
                };
                // Only an empty one goes: the pid may belong to another pid
                // namespace, whose caulk's live cgroups must stay.
                if pid.parse::<u32>().is_ok()
                    && !Path::new("/proc").join(pid).exists()
                    && fs::remove_dir(entry.path()).is_ok()
                {
                    tracing::info!(cgroup = %entry.path().display(), "removed a step cgroup left by an earlier run");
                }
            }
        }
    }

    /// The per-process fallback for memory when no cgroup enforces it.
    pub(crate) fn rlimit_data(&self) -> Option<u64> {
        let cgroup = match &self.backend {
            Backend::V2 { .. } => true,
            Backend::V1 { memory, .. } => memory.is_some(),
            Backend::Rlimits => false,
        };
        if cgroup { None } else { self.limits.memory }
    }

    /// A fresh cgroup (one per v1 hierarchy) with the limits written,
    /// ready for the child to join.
    pub(crate) fn start(&self) -> io::Result<Option<StepCgroup>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("caulk-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut cgroup = StepCgroup { dirs: Vec::new(), procs: Vec::new(), limits: self.limits, v2: false };
        match &self.backend {
            Backend::Rlimits => return Ok(None),
            Backend::V2 { parent } => {
                cgroup.v2 = true;
                let dir = cgroup.make(parent, &name)?;
                if let Some(bytes) = self.limits.memory {
                    write(&dir, "memory.max", bytes)?;
                    // Optional: absent without swap accounting.
                    let _ = write(&dir, "memory.swap.max", bytes);
                }
                if let Some(max) = self.limits.pids {
                    write(&dir, "pids.max", max)?;
                }
            }
            Backend::V1 { memory, pids } => {
                if let (Some(parent), Some(bytes)) = (memory, self.limits.memory) {
                    let dir = cgroup.make(parent, &name)?;
                    write(&dir, "memory.limit_in_bytes", bytes)?;
                    let _ = write(&dir, "memory.memsw.limit_in_bytes", bytes.saturating_mul(2));
                }
                if let (Some(parent), Some(max)) = (pids, self.limits.pids) {
                    let dir = cgroup.make(parent, &name)?;
                    write(&dir, "pids.max", max)?;
                }
            }
        }
        for dir in &cgroup.dirs {
            let procs = OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?;
            cgroup.procs.push(procs);
        }
        Ok(Some(cgroup))
    }
}

fn write(dir: &Path, file: &str, value: u64) -> io::Result<()> {
    fs::write(dir.join(file), value.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", dir.join(file).display())))
}

/// The cgroup(s) of one sandboxed process tree; removed on drop.
#[derive(Debug)]
pub(crate) struct StepCgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<File>,
    limits: StepLimits,
    v2: bool,
}

impl StepCgroup {
    fn make(&mut self, parent: &Path, name: &str) -> io::Result<PathBuf> {
        let dir = parent.join(name);
        fs::create_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The `cgroup.procs` files the child writes `0` to, to join.
    pub(crate) fn join_fds(&self) -> Vec<i32> {
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Which limit the tree ran into, if any.
    pub(crate) fn hit(&self) -> Option<LimitHit> {
        for dir in &self.dirs {
            let (memory_file, key) =
                if self.v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
            if let Some(bytes) = self.limits.memory
                && counter(&dir.join(memory_file), key) > 0
            {
                return Some(LimitHit::Memory(bytes));
            }
            if let Some(max) = self.limits.pids
                && counter(&dir.join("pids.events"), "max") > 0
            {
                return Some(LimitHit::Pids(max));
            }
        }
        None
    }

    /// Kills what is left in the cgroups and removes them.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

/// The value of `key` in a flat-keyed cgroup file; 0 when absent.
fn counter(file: &Path, key: &str) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for StepCgroup {
    fn drop(&mut self) {
        self.procs.clear();
        for dir in &self.dirs {
            remove_cgroup(dir);
        }
    }
}

/// The sandbox's pid namespace is gone by now, taking its processes with
/// it, but a cgroup dir cannot be removed until the kernel has reaped them.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    // Usually a few hundred microseconds; a fixed 10 ms would dominate a
    // short step's cost.
    let mut pause = Duration::from_micros(200);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove a step's cgroup");
                return;
            }
            Err(_) => {
                kill_members(dir);
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn kill_members(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Joins the cgroups whose `cgroup.procs` files are open at `fds`.
///
/// # Safety
/// Called between `fork` and `exec`: only a raw `write` per fd, which the
/// parent keeps open until the child has exec'd.
#[allow(unsafe_code)]
pub(crate) unsafe fn join(fds: &[i32]) -> io::Result<()> {
    for &fd in fds {
        // SAFETY: the caller keeps the file open across the spawn.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::write(fd.as_fd(), b"0")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn own_cgroup_lines_split_into_controllers_and_path() {
        let own = own_paths("8:pids:/\n4:memory:/a/b\n1:name=systemd:/x\n0::/user.slice/s.scope\n");
        assert_eq!(own[1], (vec!["memory".to_owned()], "/a/b".to_owned()));
        assert_eq!(own[3], (Vec::<String>::new(), "/user.slice/s.scope".to_owned()));
    }

    #[test]
    fn mountinfo_gives_cgroup_mounts_with_their_controllers() {
        let mounts = cgroup_mounts(HYBRID_MOUNTS);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(mounts[0].3.contains(&"memory".to_owned()));
        assert_eq!(mounts[2].2, "cgroup2");
    }

    #[test]
    fn cgroup_dirs_follow_the_mount_root_and_refuse_escapes() {
        let point = Path::new("/sys/fs/cgroup");
        assert_eq!(dir_of(point, "/", "/a/b"), Some(point.join("a/b")));
        assert_eq!(dir_of(point, "/a", "/a/b"), Some(point.join("b")));
        assert_eq!(dir_of(point, "/", "/"), Some(point.to_owned()));
        assert_eq!(dir_of(point, "/c", "/a/b"), None);
        assert_eq!(dir_of(point, "/", "/a/../../etc"), None);
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape(r"/trailing\"), r"/trailing\");
    }

    #[test]
    fn flat_keyed_counters_are_read_by_exact_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        fs::write(&file, "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n").unwrap();
        assert_eq!(counter(&file, "oom_kill"), 2);
        assert_eq!(counter(&file, "max"), 12);
        assert_eq!(counter(&file, "oom"), 3);
        assert_eq!(counter(&dir.path().join("absent"), "max"), 0);
    }

    fn mountinfo_line(id: u32, point: &Path, fstype: &str, options: &str) -> String {
        format!("{id} 1 0:{id} / {} rw,relatime - {fstype} {fstype} {options}\n", point.display())
    }

    #[test]
    fn detection_prefers_v2_with_controllers_then_v1_then_rlimits() {
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("unified");
        let memory = dir.path().join("memory");
        fs::create_dir_all(unified.join("user.slice/caulk.scope")).unwrap();
        fs::create_dir_all(memory.join("job")).unwrap();
        let mounts = mountinfo_line(40, &memory, "cgroup", "rw,memory")
            + &mountinfo_line(41, &unified, "cgroup2", "rw");
        let own = "4:memory:/job\n0::/user.slice/caulk.scope\n";

        // A hybrid host: the v2 hierarchy has no controllers; v1 has memory.
        fs::write(unified.join("user.slice/cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(detect(&mounts, own), Backend::V1 { memory: Some(memory.join("job")), pids: None });

        // Controllers offered to the parent of caulk's cgroup: v2, beside it,
        // with them enabled for the parent's children.
        fs::write(unified.join("user.slice/cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(unified.join("user.slice/cgroup.subtree_control"), "cpu\n").unwrap();
        assert_eq!(detect(&mounts, own), Backend::V2 { parent: unified.join("user.slice") });
        assert_eq!(
            fs::read_to_string(unified.join("user.slice/cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );

        // No cgroup file systems at all.
        assert_eq!(detect("22 1 0:5 / /proc rw - proc proc rw\n", own), Backend::Rlimits);
    }

    #[test]
    fn hitting_a_limit_names_the_flag_that_raises_it() {
        assert!(LimitHit::Memory(64 << 20).describe().contains("64 MiB"));
        assert!(LimitHit::Memory(64 << 20).describe().contains("--step-memory"));
        assert!(LimitHit::Pids(32).describe().contains("--step-pids"));
    }
}
