//! Starting bubblewrap (optionally inside a private mount namespace holding
//! the overlay mount) and supervising it: streaming its output line by line,
//! enforcing a timeout and cancellation by killing its process group.
//!
//! Before bwrap execs, the child joins its step's cgroup, narrows its
//! capability bounding set to what the step may keep, drops the core
//! size to 0 (a crashing script leaves no `core` in the image), sets
//! no-new-privileges and unmasks the seccomp program's fd for bwrap.

use std::ffi::{CString, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::limits::{self, LimitHit, Limiter, StepCgroup};
use crate::privileges;
use crate::seccomp;
use crate::step::{STDERR_TAIL, Stream};

/// Lines longer than this are passed on in pieces, so a process printing
/// without newlines cannot make the supervisor buffer without bound.
const MAX_LINE: usize = 64 * 1024;
/// How often the supervisor looks at the clock and the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// An overlay mount made in the child between `fork` and `exec`, in a mount
/// namespace of its own: everything the pre-exec hook touches is prepared
/// here, because allocating after `fork` is not allowed.
#[derive(Debug, Clone)]
pub(crate) struct OverlayMount {
    /// Directory the relative paths of `data` are relative to.
    pub base: CString,
    /// Mount point, relative to `base`.
    pub target: CString,
    /// The overlay mount options (`lowerdir=...,upperdir=...`).
    pub data: CString,
}

/// The overlayfs mount data of a stack: `lower` top first, every path
/// relative to the directory the mount is made from.
pub(crate) fn overlay_data(lower: &[String], upper: &str, work: &str, volatile: bool) -> String {
    let mut data = format!(
        "lowerdir={},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off",
        lower.join(":")
    );
    if volatile {
        data.push_str(",volatile");
    }
    data
}

/// The kernel reads mount data as one page, NUL included.
pub(crate) const MAX_MOUNT_DATA: usize = 4095;

/// What [`run`] needs to start one sandboxed process.
pub(crate) struct Launch<'a> {
    /// Names the process in errors and logs (the step's summary).
    pub label: &'a str,
    pub bwrap: &'a Path,
    pub args: Vec<OsString>,
    /// Mounted in this order: the root fs's overlay first, if any.
    pub overlays: Vec<OverlayMount>,
    pub timeout: Option<Duration>,
    pub cancel: &'a CancelToken,
    /// Bytes of stdout to keep (the rest is still streamed, then dropped).
    pub stdout_limit: usize,
    /// The compiled seccomp filter (see [`seccomp::program`]).
    pub seccomp: &'a [u8],
    pub limiter: &'a Limiter,
}

/// How a sandboxed process ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_tail: Vec<u8>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
    /// The resource limit the process tree ran into, if one was.
    pub limit_hit: Option<LimitHit>,
}

/// Why [`run`] could not run the process at all.
#[derive(Debug)]
pub(crate) enum RunError {
    Spawn(io::Error),
    Limits(io::Error),
    Supervise(&'static str, io::Error),
}

/// Kills the process group of a child that is still running when the
/// supervisor unwinds, so no sandbox outlives the call that started it.
struct GroupGuard {
    child: Child,
    reaped: bool,
}

impl GroupGuard {
    fn kill(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        // The group may be gone already; nothing to do then.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the process and supervises it to the end.
pub(crate) fn run(launch: Launch<'_>, on_line: &mut dyn FnMut(Stream, &str)) -> Result<Finished, RunError> {
    let filter = seccomp::memfd(launch.seccomp).map_err(RunError::Spawn)?;
    // Declared before the guard below, so dropped after it: the cgroup goes
    // once the process tree is dead and reaped.
    let cgroup = launch.limiter.start().map_err(RunError::Limits)?;
    let mut command = Command::new(launch.bwrap);
    command
        .arg("--seccomp")
        .arg(filter.as_raw_fd().to_string())
        .args(&launch.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        // Its own process group, so a timeout can kill bwrap and all it
        // started with one signal.
        .process_group(0);
    confine(&mut command, filter.as_raw_fd(), cgroup.as_ref(), launch.limiter.rlimit_data());
    if !launch.overlays.is_empty() {
        in_private_overlay(&mut command, launch.overlays);
    }
    let started = Instant::now();
    let child = command.spawn().map_err(RunError::Spawn)?;
    drop(filter);
    let mut guard = GroupGuard { child, reaped: false };

    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let stdout = guard.child.stdout.take().expect("stdout is piped");
    let stderr = guard.child.stderr.take().expect("stderr is piped");
    let readers =
        [spawn_reader(stdout, Stream::Stdout, tx.clone()), spawn_reader(stderr, Stream::Stderr, tx)];
    let deadline = launch.timeout.map(|t| started + t);

    let mut out = Finished {
        exit_code: None,
        signal: None,
        stdout: Vec::new(),
        stdout_truncated: false,
        stderr_tail: Vec::new(),
        timed_out: false,
        cancelled: false,
        duration: Duration::ZERO,
        limit_hit: None,
    };
    let mut killed = false;
    loop {
        match rx.recv_timeout(POLL) {
            Ok((stream, bytes)) => {
                match stream {
                    Stream::Stdout => {
                        keep_head(&mut out.stdout, &bytes, launch.stdout_limit, &mut out.stdout_truncated);
                    }
                    Stream::Stderr => keep_tail(&mut out.stderr_tail, &bytes, STDERR_TAIL),
                }
                let text = String::from_utf8_lossy(&bytes);
                on_line(stream, text.strip_suffix('\n').unwrap_or(&text));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !killed {
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            let cancelled = launch.cancel.is_cancelled();
            if timed_out || cancelled {
                tracing::debug!(process = launch.label, timed_out, cancelled, "killing the sandbox");
                out.timed_out = timed_out;
                out.cancelled = cancelled;
                guard.kill();
                killed = true;
            }
        }
    }
    for reader in readers {
        if let Ok(Err(e)) = reader.join() {
            return Err(RunError::Supervise("reading its output", e));
        }
    }
    let status = guard.child.wait().map_err(|e| RunError::Supervise("waiting for it", e))?;
    guard.reaped = true;
    out.duration = started.elapsed();
    out.exit_code = status.code();
    out.signal = status.signal();
    if killed {
        out.exit_code = None;
        out.signal = Some(rustix::process::Signal::KILL.as_raw());
    }
    out.limit_hit = cgroup.as_ref().and_then(StepCgroup::hit);
    Ok(out)
}

/// The pre-exec part of the confinement (see the module docs).
#[allow(unsafe_code)]
fn confine(command: &mut Command, seccomp_fd: i32, cgroup: Option<&StepCgroup>, rlimit_data: Option<u64>) {
    use rustix::process::{Resource, Rlimit, setrlimit};

    // Built before the fork: the hook only reads it.
    let join_fds = cgroup.map(StepCgroup::join_fds).unwrap_or_default();
    let hook = move || -> io::Result<()> {
        // SAFETY: the parent holds these files open until `spawn` returns.
        unsafe { limits::join(&join_fds) }?;
        privileges::narrow_bounding_set()?;
        setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) })?;
        if let Some(bytes) = rlimit_data {
            setrlimit(Resource::Data, Rlimit { current: Some(bytes), maximum: Some(bytes) })?;
        }
        rustix::thread::set_no_new_privs(true)?;
        // SAFETY: the parent holds the memfd open until `spawn` returns.
        let fd = unsafe { BorrowedFd::borrow_raw(seccomp_fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and only makes raw
    // syscalls (write, capget/capset, setrlimit, prctl, fcntl) on values prepared before
    // the fork; it does not allocate, lock or touch other threads' state.
    unsafe {
        command.pre_exec(hook);
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
        loop {
            let mut line = Vec::new();
            let n = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            if tx.send((stream, line)).is_err() {
                // The supervisor is gone; drain so the writer does not block.
                io::copy(&mut reader, &mut io::sink())?;
                return Ok(());
            }
        }
    })
}

fn keep_head(buf: &mut Vec<u8>, bytes: &[u8], limit: usize, truncated: &mut bool) {
    let room = limit.saturating_sub(buf.len());
    if bytes.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn keep_tail(buf: &mut Vec<u8>, bytes: &[u8], limit: usize) {
    buf.extend_from_slice(bytes);
    if buf.len() > limit {
        let cut = buf.len() - limit;
        buf.drain(..cut);
    }
}

/// Makes the child enter a mount namespace of its own and mount the
/// overlays there before it execs bwrap. The mounts live exactly as long as
/// the processes of that namespace: when the step ends, or caulk dies and
/// `--die-with-parent` takes bwrap with it, the kernel unmounts them.
/// Nothing can leak into the host's mount table.
#[allow(unsafe_code)]
fn in_private_overlay(command: &mut Command, overlays: Vec<OverlayMount>) {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::{UnshareFlags, unshare_unsafe};

    let hook = move || -> io::Result<()> {
        // SAFETY: the child is single-threaded after fork, so unsharing the
        // mount namespace cannot surprise another thread; NEWNS does not
        // touch the file table, which is what `unshare_unsafe` warns about.
        unsafe { unshare_unsafe(UnshareFlags::NEWNS) }?;
        // Without this the overlay mounts would propagate back to the
        // host's namespace through shared mounts.
        mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
        for overlay in &overlays {
            // Relative names keep the mount data short enough for many layers.
            rustix::process::chdir(overlay.base.as_c_str())?;
            mount(
                c"overlay",
                overlay.target.as_c_str(),
                c"overlay",
                MountFlags::empty(),
                overlay.data.as_c_str(),
            )?;
        }
        Ok(())
    };
    // SAFETY: `pre_exec` runs the hook between fork and exec, where only
    // async-signal-safe work is allowed. The hook only makes raw syscalls
    // (unshare, mount, chdir) on C strings built before the fork; it does
    // not allocate, lock or touch state shared with other threads.
    unsafe {
        command.pre_exec(hook);
    }
}

/// Mounts `overlay` the way [`run`] does and execs `bwrap --version`:
/// whether this host can run steps on overlayfs.
pub(crate) fn probe_mount(bwrap: &Path, overlay: OverlayMount) -> io::Result<()> {
    let mut command = Command::new(bwrap);
    command.arg("--version").env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    in_private_overlay(&mut command, vec![overlay]);
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("`bwrap --version` after the mount failed: {status}")))
    }
}
