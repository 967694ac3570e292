//! Foreign architectures: an image's binaries run under qemu-user through
//! the kernel's binfmt_misc. Inside the sandbox `/usr/libexec` is the
//! image's, so the interpreter must have been opened by the kernel when it
//! was registered (the `F` flag, Debian's default for qemu-user-static);
//! checked before anything is unpacked, so a missing registration is one
//! clear error instead of "Exec format error" from the first step.

use std::path::Path;

use caulk_image::Platform;

/// Where the kernel lists binfmt_misc registrations.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

#[derive(Debug, thiserror::Error)]
#[error("{platform} cannot run on this {host} machine: {problem}")]
pub struct EmulationError {
    platform: String,
    host: String,
    problem: Problem,
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("binfmt_misc is not mounted at {BINFMT_DIR}")]
    NotMounted,
    #[error("no qemu-user interpreter is registered for it (no {BINFMT_DIR}/{0})")]
    NotRegistered(String),
    #[error("{BINFMT_DIR}/{0} is disabled")]
    Disabled(String),
    #[error(
        "{BINFMT_DIR}/{0} is registered without the F flag (flags: {1}), so the interpreter is looked up inside the image, where it is not"
    )]
    NoFixBinary(String, String),
    #[error("caulk knows no qemu-user emulator for architecture `{0}`")]
    UnknownArchitecture(String),
}

impl EmulationError {
    pub fn hint(&self) -> String {
        let name = match &self.problem {
            Problem::NotRegistered(n) | Problem::Disabled(n) | Problem::NoFixBinary(n, _) => n.as_str(),
            Problem::UnknownArchitecture(_) => {
                return "patch it on a machine of that architecture".to_owned();
            }
            Problem::NotMounted => "qemu-ARCH",
        };
        format!(
            "install Debian's qemu-user-static and binfmt-support (they register with the F flag), then as root: \
             `mountpoint -q {BINFMT_DIR} || mount -t binfmt_misc binfmt_misc {BINFMT_DIR}; update-binfmts --enable {name}`"
        )
    }
}

/// The qemu-user name of a GOARCH architecture.
fn qemu_name(platform: &Platform) -> Option<&'static str> {
    Some(match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("amd64", _) => "x86_64",
        ("arm64", _) => "aarch64",
        ("arm", _) => "arm",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64el",
        ("loong64", _) => "loongarch64",
        _ => return None,
    })
}

/// Whether this machine runs `platform`'s binaries itself.
fn native(platform: &Platform, host: &Platform) -> bool {
    platform.architecture == host.architecture
        || (host.architecture == "amd64" && platform.architecture == "386")
        || (host.architecture == "arm64" && platform.architecture == "arm" && cfg!(target_arch = "aarch64"))
}

/// Checks that `platform`'s binaries can run here, natively or under a
/// qemu-user interpreter registered with the `F` flag.
pub fn check(platform: &Platform) -> Result<(), EmulationError> {
    check_in(platform, &Platform::host(), Path::new(BINFMT_DIR))
}

fn check_in(platform: &Platform, host: &Platform, binfmt: &Path) -> Result<(), EmulationError> {
    if native(platform, host) {
        return Ok(());
    }
    let fail = |problem| EmulationError { platform: platform.to_string(), host: host.to_string(), problem };
    let Some(qemu) = qemu_name(platform) else {
        return Err(fail(Problem::UnknownArchitecture(platform.architecture.clone())));
    };
    if !binfmt.join("register").exists() {
        return Err(fail(Problem::NotMounted));
    }
    let name = format!("qemu-{qemu}");
    let Ok(entry) = std::fs::read_to_string(binfmt.join(&name)) else {
        return Err(fail(Problem::NotRegistered(name)));
    };
    if entry.lines().next() != Some("enabled") {
        return Err(fail(Problem::Disabled(name)));
    }
    let flags = entry.lines().find_map(|l| l.strip_prefix("flags:")).unwrap_or_default().trim();
    if !flags.contains('F') {
        return Err(fail(Problem::NoFixBinary(name, flags.to_owned())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(arch: &str) -> Platform {
        Platform { os: "linux".into(), architecture: arch.into(), variant: None }
    }

    fn binfmt(entry: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        if let Some(entry) = entry {
            std::fs::write(dir.path().join("qemu-aarch64"), entry).unwrap();
        }
        dir
    }

    const REGISTERED: &str =
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n";

    #[test]
    fn the_host_architecture_needs_no_emulator() {
        let empty = tempfile::tempdir().unwrap();
        check_in(&platform("amd64"), &platform("amd64"), empty.path()).unwrap();
        check_in(&platform("386"), &platform("amd64"), empty.path()).unwrap();
    }

    #[test]
    fn a_foreign_architecture_needs_an_enabled_registration_with_the_f_flag() {
        let host = platform("amd64");
        let arm = platform("arm64");
        check_in(&arm, &host, binfmt(Some(REGISTERED)).path()).unwrap();
        for (dir, expected) in [
            (tempfile::tempdir().unwrap(), "binfmt_misc is not mounted"),
            (binfmt(None), "no qemu-user interpreter is registered for it"),
            (binfmt(Some(&REGISTERED.replace("enabled", "disabled"))), "qemu-aarch64 is disabled"),
            (binfmt(Some(&REGISTERED.replace("PF", "P"))), "without the F flag (flags: P)"),
        ] {
            let e = check_in(&arm, &host, dir.path()).unwrap_err();
            let message = e.to_string();
            assert!(message.starts_with("linux/arm64 cannot run on this linux/amd64 machine: "), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(e.hint().contains("update-binfmts --enable qemu-"), "{}", e.hint());
        }
        let e = check_in(&platform("sparc64"), &host, binfmt(Some(REGISTERED)).path()).unwrap_err();
        assert!(e.to_string().contains("no qemu-user emulator for architecture `sparc64`"), "{e}");
    }
}
