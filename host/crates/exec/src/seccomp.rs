//! The system call filter of every sandboxed process, with the intent of
//! Docker's default seccomp profile: the calls that reach kernel surface a
//! package's scripts never need, or that act on the host rather than the
//! sandbox, fail with `EPERM`; everything else is allowed. Compiled with
//! `seccompiler` for the architecture caulk was built for (x86_64 or
//! aarch64) and handed to bubblewrap, which installs it right before it
//! execs the step (and in its own pid 1 of the sandbox).
//!
//! Two answers `seccompiler` cannot give (one action per filter) come from
//! a few instructions put in front of its program: `clone3` fails with
//! `ENOSYS`, as in Docker, because its flags sit in memory a filter cannot
//! read and the C library then falls back to `clone`, whose flags it can;
//! and on x86_64 every x32 call (bit 30 of the number) fails with `ENOSYS`,
//! since those numbers would otherwise pass a list of x86_64 numbers. A
//! call made with another architecture's convention (i386 `int 0x80`)
//! kills the process, as `seccompiler`'s architecture check does.

use std::collections::BTreeMap;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

// Namespace flags of clone(2)/unshare(2) (`linux/sched.h`). Docker refuses
// the same ones; CLONE_NEWTIME shares its bit with clone's exit signal, so
// it is checked for unshare only.
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
const CLONE_NEWTIME: u64 = 0x0000_0080;
const CLONE_NAMESPACES: [u64; 7] =
    [CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET];

const S_IFMT: u64 = 0o170_000;
const S_IFCHR: u64 = 0o020_000;
const S_IFBLK: u64 = 0o060_000;
const AF_VSOCK: u64 = 40;
/// personality(2) values Docker allows: the default, `PER_LINUX32`,
/// `UNAME26` with each, and the query.
const PERSONALITIES: [u64; 5] = [0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// A call refused, and when.
pub(crate) struct Denied {
    pub name: &'static str,
    pub nr: i64,
    rules: Vec<SeccompRule>,
}

fn always(name: &'static str, nr: i64) -> Denied {
    Denied { name, nr, rules: Vec::new() }
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, len, op, value).expect("argument index below 6")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("a rule has conditions")
}

/// One rule per bit: a call with any of `flags` in argument `arg` matches.
fn any_flag(arg: u8, len: &Len, flags: &[u64]) -> Vec<SeccompRule> {
    flags.iter().map(|&f| rule(vec![cond(arg, len.clone(), Op::MaskedEq(f), f)])).collect()
}

/// Rules matching a device node (character or block) in mode argument `arg`.
fn device_node(arg: u8) -> Vec<SeccompRule> {
    [S_IFCHR, S_IFBLK].iter().map(|&t| rule(vec![cond(arg, Len::Dword, Op::MaskedEq(S_IFMT), t)])).collect()
}

/// Every refused call of this architecture.
pub(crate) fn denied() -> Vec<Denied> {
    let mut list = vec![
        // Mounts: the sandbox's file system layout is bwrap's to make.
        always("mount", libc::SYS_mount),
        always("umount2", libc::SYS_umount2),
        always("pivot_root", libc::SYS_pivot_root),
        always("open_tree", libc::SYS_open_tree),
        always("move_mount", libc::SYS_move_mount),
        always("fsopen", libc::SYS_fsopen),
        always("fsconfig", libc::SYS_fsconfig),
        always("fsmount", libc::SYS_fsmount),
        always("fspick", libc::SYS_fspick),
        always("mount_setattr", libc::SYS_mount_setattr),
        // The running kernel.
        always("kexec_load", libc::SYS_kexec_load),
        always("kexec_file_load", libc::SYS_kexec_file_load),
        always("init_module", libc::SYS_init_module),
        always("finit_module", libc::SYS_finit_module),
        always("delete_module", libc::SYS_delete_module),
        always("bpf", libc::SYS_bpf),
        always("perf_event_open", libc::SYS_perf_event_open),
        always("lookup_dcookie", libc::SYS_lookup_dcookie),
        always("syslog", libc::SYS_syslog),
        // Kernel keyrings are not namespaced.
        always("keyctl", libc::SYS_keyctl),
        always("add_key", libc::SYS_add_key),
        always("request_key", libc::SYS_request_key),
        // File handles bypass the mount a path would be checked against.
        always("open_by_handle_at", libc::SYS_open_by_handle_at),
        always("name_to_handle_at", libc::SYS_name_to_handle_at),
        // The machine.
        always("reboot", libc::SYS_reboot),
        always("swapon", libc::SYS_swapon),
        always("swapoff", libc::SYS_swapoff),
        always("clock_settime", libc::SYS_clock_settime),
        always("clock_adjtime", libc::SYS_clock_adjtime),
        always("settimeofday", libc::SYS_settimeofday),
        always("adjtimex", libc::SYS_adjtimex),
        always("acct", libc::SYS_acct),
        always("quotactl", libc::SYS_quotactl),
        always("quotactl_fd", libc::SYS_quotactl_fd),
        always("vhangup", libc::SYS_vhangup),
        // Kernel surface with a history of sandbox escapes.
        always("userfaultfd", libc::SYS_userfaultfd),
        always("io_uring_setup", libc::SYS_io_uring_setup),
        always("io_uring_enter", libc::SYS_io_uring_enter),
        always("io_uring_register", libc::SYS_io_uring_register),
        // Namespaces other than the ones bwrap made.
        always("setns", libc::SYS_setns),
        Denied {
            name: "unshare",
            nr: libc::SYS_unshare,
            rules: any_flag(0, &Len::Qword, &[CLONE_NAMESPACES.as_slice(), &[CLONE_NEWTIME]].concat()),
        },
        Denied { name: "clone", nr: libc::SYS_clone, rules: any_flag(0, &Len::Qword, &CLONE_NAMESPACES) },
        // Other processes' memory: nothing a package installs needs it, and
        // the pid namespace already hides every process outside the sandbox.
        always("ptrace", libc::SYS_ptrace),
        always("process_vm_readv", libc::SYS_process_vm_readv),
        always("process_vm_writev", libc::SYS_process_vm_writev),
        always("pidfd_getfd", libc::SYS_pidfd_getfd),
        Denied { name: "mknodat", nr: libc::SYS_mknodat, rules: device_node(2) },
        Denied {
            name: "personality",
            nr: libc::SYS_personality,
            rules: vec![rule(PERSONALITIES.iter().map(|&p| cond(0, Len::Dword, Op::Ne, p)).collect())],
        },
        // vsock is not network-namespaced: it reaches the hypervisor even
        // from a step without network.
        Denied {
            name: "socket",
            nr: libc::SYS_socket,
            rules: vec![rule(vec![cond(0, Len::Dword, Op::Eq, AF_VSOCK)])],
        },
    ];
    list.extend(arch_only());
    list
}

/// Calls only x86_64 has (aarch64 never had the legacy ones).
#[cfg(target_arch = "x86_64")]
fn arch_only() -> Vec<Denied> {
    vec![
        Denied { name: "mknod", nr: libc::SYS_mknod, rules: device_node(1) },
        always("iopl", libc::SYS_iopl),
        always("ioperm", libc::SYS_ioperm),
        always("uselib", libc::SYS_uselib),
        always("ustat", libc::SYS_ustat),
        always("sysfs", libc::SYS_sysfs),
        always("_sysctl", libc::SYS__sysctl),
        always("nfsservctl", libc::SYS_nfsservctl),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn arch_only() -> Vec<Denied> {
    Vec::new()
}

/// Why the filter could not be built (a bug, or an architecture
/// `seccompiler` does not know).
#[derive(Debug, thiserror::Error)]
#[error("building the system call filter: {0}")]
pub struct FilterError(String);

// Classic BPF opcodes and the `seccomp_data` offsets the prelude uses.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

/// The compiled filter as bwrap reads it: `struct sock_filter`s in the
/// machine's byte order.
pub(crate) fn program() -> Result<Vec<u8>, FilterError> {
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| FilterError(format!("{e:?}")))?;
    let audit_arch = match std::env::consts::ARCH {
        "x86_64" => 0xc000_003e,
        "aarch64" => 0xc000_00b7,
        other => return Err(FilterError(format!("no filter for architecture {other}"))),
    };
    let denied = denied();
    tracing::debug!(calls = ?denied.iter().map(|d| d.name).collect::<Vec<_>>(), "seccomp filter refuses");
    let rules: BTreeMap<i64, Vec<SeccompRule>> = denied.into_iter().map(|d| (d.nr, d.rules)).collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(EPERM), arch)
        .map_err(|e| FilterError(e.to_string()))?;
    let body: BpfProgram =
        filter.try_into().map_err(|e: seccompiler::BackendError| FilterError(e.to_string()))?;

    // Prelude: for this architecture's calls, answer clone3 (and x32) with
    // ENOSYS; everything else, and other architectures, go on to the body,
    // which starts with its own architecture check.
    let clone3 = u32::try_from(libc::SYS_clone3).expect("syscall numbers are small");
    let mut checks = vec![insn(LD_W_ABS, 0, 0, NR_OFFSET)];
    if std::env::consts::ARCH == "x86_64" {
        checks.push(insn(JGE_K, 0, 1, X32_SYSCALL_BIT));
        checks.push(insn(RET_K, 0, 0, RET_ERRNO | ENOSYS));
    }
    checks.push(insn(JEQ_K, 0, 1, clone3));
    checks.push(insn(RET_K, 0, 0, RET_ERRNO | ENOSYS));
    let skip = u8::try_from(checks.len()).expect("a short prelude");
    let mut prog = vec![insn(LD_W_ABS, 0, 0, ARCH_OFFSET), insn(JEQ_K, 0, skip, audit_arch)];
    prog.extend(checks);
    prog.extend(body);

    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for i in &prog {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.extend([i.jt, i.jf]);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    Ok(bytes)
}

/// A file holding `program`, read from its start: bwrap reads it to the
/// end, so each sandbox gets its own (a shared offset would leave the next
/// one nothing to read). Close-on-exec until the child clears it.
pub(crate) fn memfd(program: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(c"caulk-seccomp", rustix::fs::MemfdFlags::CLOEXEC)?;
    // With stdin closed in caulk the memfd could be fd 0, which the child's
    // stdio set-up would replace before bwrap reads it.
    let fd = if fd.as_raw_fd() < 3 { rustix::io::fcntl_dupfd_cloexec(&fd, 3)? } else { fd };
    let mut file = std::fs::File::from(fd);
    file.write_all(program)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_compiles_to_whole_instructions() {
        let bytes = program().unwrap();
        assert_eq!(bytes.len() % 8, 0);
        // The kernel refuses programs longer than BPF_MAXINSNS.
        assert!(bytes.len() / 8 <= 4096, "{} instructions", bytes.len() / 8);
    }

    #[test]
    fn every_denied_call_is_documented() {
        let doc = include_str!("../../../../docs/sandbox.md");
        for d in denied() {
            assert!(doc.contains(&format!("`{}`", d.name)), "docs/sandbox.md does not mention `{}`", d.name);
        }
    }
}
