//! The capabilities a sandboxed process keeps: Docker's default set without
//! `CAP_MKNOD` (Docker pairs that one with a device cgroup; here nothing
//! would stop a node for the host's disk from being opened) and without
//! `CAP_NET_RAW` (raw sockets on the host's network in network steps).
//! bwrap, running as root, drops every other one from the effective,
//! permitted and inheritable sets; the bounding set is narrowed by caulk
//! before it execs bwrap (bwrap narrows it only when it is setuid).

use std::ffi::OsString;
use std::io;

use rustix::io::Errno;
use rustix::thread::{CapabilitySet, capabilities, remove_capability_from_bounding_set, set_capabilities};

/// Name and number (`linux/capability.h`) of each capability kept.
pub(crate) const KEPT: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_AUDIT_WRITE", 29),
    // postinsts such as iputils-ping's run `setcap` on their binaries.
    ("CAP_SETFCAP", 31),
];

/// The kept set as the bit mask `/proc/PID/status` shows.
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |mask, (_, bit)| mask | (1 << bit))
}

/// The names of the kept capabilities.
pub fn kept_names() -> impl Iterator<Item = &'static str> {
    KEPT.iter().map(|(name, _)| *name)
}

/// bwrap's arguments for the kept set (order matters: drop all, then add).
pub(crate) fn bwrap_args() -> Vec<OsString> {
    let mut args = vec![OsString::from("--cap-drop"), OsString::from("ALL")];
    for (name, _) in KEPT {
        args.extend([OsString::from("--cap-add"), OsString::from(name)]);
    }
    args
}

/// Narrows the bounding set to the kept capabilities while bwrap keeps all
/// it has for its set-up. Run between `fork` and `exec` (raw syscalls only).
///
/// As root, exec grants the inheritable set plus the bounding set. So the
/// permitted set is made inheritable first: bwrap starts with everything,
/// then sets the step's sets to the kept ones, and the step's own execs can
/// only ever get the kept ones back from the bounding set.
pub(crate) fn narrow_bounding_set() -> io::Result<()> {
    let mut sets = capabilities(None)?;
    sets.inheritable = sets.permitted;
    set_capabilities(None, sets)?;
    let kept = kept_mask();
    for bit in 0..64 {
        if kept & (1 << bit) != 0 {
            continue;
        }
        match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << bit)) {
            // Past the kernel's last capability.
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_is_dockers_default_without_mknod_and_net_raw() {
        // Docker's default set as `capsh --decode` shows it in a container.
        const DOCKER_DEFAULT: u64 = 0x0000_0000_a804_25fb;
        const MKNOD: u64 = 1 << 27;
        const NET_RAW: u64 = 1 << 13;
        assert_eq!(kept_mask(), DOCKER_DEFAULT & !MKNOD & !NET_RAW);
    }
}
