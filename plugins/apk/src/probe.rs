//! The questions the plugin asks the host about the image.
//!
//! Plan phase, first round: apk's installed database, world file,
//! repositories, trusted keys and architecture, and whether the image has an
//! `apk` binary. Second round, only for an image with a database but no
//! `apk` (Wolfi and Chainguard's distroless variants): `apk --version` run
//! from the host's root fs, to learn whether the host can work on the image
//! with `--root`. Verify phase: the database and the world file again.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Command, ExecContext, Fact, Phase, Question, Tooling};

use crate::db::{INSTALLED_PATH, REPOSITORIES_PATH, WORLD_PATH};

pub const INSTALLED: &str = "apk-installed";
pub const APK_BIN: &str = "apk-binary";
pub const WORLD: &str = "apk-world";
pub const REPOSITORIES: &str = "apk-repositories";
pub const KEYS: &str = "apk-keys";
pub const ARCH: &str = "apk-arch";
pub const HOST_APK: &str = "host-apk";

/// Where apk-tools installs itself: `/sbin` on Alpine, `/usr/bin` on Wolfi.
pub const APK_PATHS: [&str; 4] = ["/sbin/apk", "/usr/bin/apk", "/bin/apk", "/usr/sbin/apk"];

/// Where the image is mounted when the host's apk works on it.
pub const TOOLING_MOUNT: &str = "/target";

/// The execution context of commands that run the host's apk.
pub fn host_tooling() -> ExecContext {
    ExecContext::Tooling(Tooling { image: None, mount_point: TOOLING_MOUNT.into() })
}

/// The questions still to ask in `phase`, given the facts so far.
pub fn questions(phase: Phase, facts: &[Fact]) -> Vec<Question> {
    let wanted = match phase {
        Phase::Verify => {
            vec![Question::files(INSTALLED, [INSTALLED_PATH]), Question::files(WORLD, [WORLD_PATH])]
        }
        Phase::Plan if !facts.answered(INSTALLED) => vec![
            Question::files(INSTALLED, [INSTALLED_PATH]),
            Question::files(APK_BIN, APK_PATHS),
            Question::files(WORLD, [WORLD_PATH]),
            Question::files(REPOSITORIES, [REPOSITORIES_PATH, "/etc/apk/repositories.d/*.list"]),
            Question::files(KEYS, ["/etc/apk/keys/*"]),
            Question::files(ARCH, ["/etc/apk/arch"]),
        ],
        Phase::Plan if facts.file(INSTALLED).is_some() && facts.files(APK_BIN).is_empty() => {
            let mut command = Command::new(["apk", "--version"]);
            command.context = host_tooling();
            vec![Question::command(HOST_APK, command)]
        }
        Phase::Plan => Vec::new(),
    };
    wanted.into_iter().filter(|q| !facts.answered(&q.id)).collect()
}
