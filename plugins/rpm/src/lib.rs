//! caulk's built-in updater for RPM-based images (RHEL, UBI, Fedora, Alma,
//! Rocky, Oracle, Amazon Linux, Azure Linux / CBL-Mariner, Photon, SUSE):
//! plans tdnf, dnf, yum, microdnf or zypper commands that move vulnerable
//! packages to fixed versions, and judges the result from the patched rpm
//! database.
//!
//! The plugin does no I/O. The host answers its probes ([`probe`]), runs the
//! planned steps ([`plan`]) and answers again on the patched image
//! ([`verify`]).
//!
//! - Detection: an rpm database in `/var/lib/rpm` or `/usr/lib/sysimage/rpm`
//!   (sqlite, Berkeley DB or ndb, read with `rpm -qa` by the image's rpm or
//!   the host's, [`db`]), and the image's package manager in Copa's order
//!   of preference; without one, the host's dnf with `--installroot`.
//! - Names and versions from the report are validated before any reaches an
//!   argv ([`name`]).

pub mod db;
pub mod error;
pub mod image;
pub mod name;
pub mod plan;
pub mod probe;
pub mod steps;
pub mod verify;

use caulk_sdk::Updater;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{Outcome, PatchPlan, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// The rpm updater; its methods are plain functions, testable natively.
pub struct Rpm;

impl Updater for Rpm {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "rpm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Upgrades vulnerable RPM packages with tdnf, dnf, yum, microdnf or zypper, or the host's dnf for \
                      images without one"
                .into(),
            handles: vec![plan::RPM.into()],
            os_families: image::OS_FAMILIES.iter().map(|f| (*f).to_owned()).collect(),
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

// Built-ins need no grants; the declaration says what a copy installed in a
// plugin directory would have to be granted. `host-tooling` is for images
// without a package manager (and without rpm, to read their database).
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Rpm, capabilities = ["image-commands", "host-tooling", "network"]);
