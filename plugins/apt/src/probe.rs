//! The questions the plugin asks the host about the image.
//!
//! Plan phase, first round: the dpkg database, whether `apt-get` exists, the
//! apt sources and trusted keys (they key the index cache) and dpkg's
//! architectures. Second round, only when the image has no dpkg status file:
//! distroless's `/var/lib/dpkg/status.d`, which the plan then works from
//! (see [`crate::distroless`]). Verify phase: the dpkg database and status.d
//! again.
//!
//! Everything is a file read: apt's own view of candidates needs its package
//! indexes, which only exist after an `apt-get update` that no read-only,
//! change-discarding probe can keep for a later command.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Fact, Phase, Question};

use crate::status::STATUS_PATH;

pub const DPKG_STATUS: &str = "dpkg-status";
pub const APT_GET: &str = "apt-get";
pub const APT_SOURCES: &str = "apt-sources";
pub const APT_TRUST: &str = "apt-trusted-keys";
pub const DPKG_ARCH: &str = "dpkg-arch";
pub const DPKG_STATUS_D: &str = "dpkg-status-d";

pub const APT_GET_PATH: &str = "/usr/bin/apt-get";
pub const STATUS_D_GLOB: &str = "/var/lib/dpkg/status.d/*";

/// The questions still to ask in `phase`, given the facts so far.
pub fn questions(phase: Phase, facts: &[Fact]) -> Vec<Question> {
    let wanted = match phase {
        // Both: a distroless image keeps status.d and no status file.
        Phase::Verify => {
            vec![Question::files(DPKG_STATUS, [STATUS_PATH]), Question::files(DPKG_STATUS_D, [STATUS_D_GLOB])]
        }
        Phase::Plan if !facts.answered(DPKG_STATUS) => vec![
            Question::files(DPKG_STATUS, [STATUS_PATH]),
            Question::files(APT_GET, [APT_GET_PATH]),
            Question::files(
                APT_SOURCES,
                [
                    "/etc/apt/sources.list",
                    "/etc/apt/sources.list.d/*.list",
                    "/etc/apt/sources.list.d/*.sources",
                ],
            ),
            Question::files(APT_TRUST, ["/etc/apt/trusted.gpg", "/etc/apt/trusted.gpg.d/*"]),
            Question::files(DPKG_ARCH, ["/var/lib/dpkg/arch"]),
        ],
        Phase::Plan if facts.file(DPKG_STATUS).is_none() => {
            vec![Question::files(DPKG_STATUS_D, [STATUS_D_GLOB])]
        }
        Phase::Plan => Vec::new(),
    };
    wanted.into_iter().filter(|q| !facts.answered(&q.id)).collect()
}
