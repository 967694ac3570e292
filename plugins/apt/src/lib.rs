//! caulk's built-in updater for Debian and Ubuntu images: plans `apt-get`
//! commands that move vulnerable deb packages to fixed versions, and judges
//! the result from the dpkg database.
//!
//! The plugin does no I/O. The host answers its probes (file reads of the
//! image, see [`probe`]), runs the planned steps in the image and reads the
//! dpkg database again for verification.
//!
//! - Detection: `/var/lib/dpkg/status` and `/usr/bin/apt-get` must exist;
//!   or, for distroless images, no status file and package files in
//!   `/var/lib/dpkg/status.d`: those are patched from a Debian tooling root
//!   with `apt-get --download-only` and `dpkg --root`, by report or in
//!   update-all mode (see [`distroless`]).
//!   Otherwise the error is `not-applicable`.
//! - Report mode ([`plan`]): each update's name and versions are checked
//!   before anything reaches an argv; an update is skipped, with its reason,
//!   when the package is not installed, is already at or above the highest
//!   fixed version (Debian order, the installed epoch restored on epoch-less
//!   fixed versions, and the source version recorded by dpkg consulted, see
//!   [`fix`]), or is held. The rest are installed by name so the newest
//!   candidate lands.
//! - Update-all mode: `apt-get upgrade --with-new-pkgs`; every installed,
//!   unheld package is selected with target `newest`, and verification
//!   reports those whose version changed as patched.
//! - The new layer leaves out indexes, caches and churning logs; the indexes
//!   and downloaded packages go to host-side caches keyed by a digest of the
//!   image's apt sources, keys, release and architecture.

pub mod distroless;
pub mod error;
pub mod fix;
pub mod name;
pub mod plan;
pub mod probe;
pub mod status;
pub mod verify;

use caulk_sdk::Updater;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{Outcome, PatchPlan, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// The apt updater; its methods are plain functions, testable natively.
pub struct Apt;

impl Updater for Apt {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "apt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Upgrades vulnerable deb packages in Debian and Ubuntu images with apt-get".into(),
            handles: vec![plan::DEB.into()],
            os_families: vec!["debian".into(), "ubuntu".into()],
            class: PackageClass::Os,
        }
    }

    fn probe(request: &ProbeRequest) -> Result<Vec<Question>, Error> {
        Ok(probe::questions(request.phase, &request.facts))
    }

    fn plan(request: &PlanRequest) -> Result<PatchPlan, Error> {
        plan::plan(request).map_err(Error::from)
    }

    fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, Error> {
        verify::verify(request).map_err(Error::from)
    }
}

// Built-ins need no grants; the declaration says what a copy installed
// in a plugin directory would have to be granted.
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Apt, capabilities = ["image-commands", "host-tooling", "network"]);
