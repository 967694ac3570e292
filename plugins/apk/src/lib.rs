//! caulk's built-in updater for Alpine and Wolfi (Chainguard) images: plans
//! apk-tools commands that move vulnerable apk packages to fixed versions,
//! and judges the result from apk's installed database.
//!
//! The plugin does no I/O. The host answers its probes (file reads of the
//! image, and for images without apk whether the host has one, see
//! [`probe`]), runs the planned steps and reads the database again.
//!
//! - Detection: `/lib/apk/db/installed` must exist (see [`db`]); the image
//!   needs `apk` itself, or else the host's root fs must have one, used with
//!   `--root` on the image (see [`plan`]).
//! - Report mode: names and versions are validated before any reaches an
//!   argv ([`name`]); each package gets its own step, a temporary virtual
//!   package holding `NAME>=FIXED`, so the world file ends as it began.
//! - Update-all mode: `apk upgrade`.
//! - Verification reads the patched database with apk-tools' version order
//!   ([`verify`]).

pub mod db;
pub mod error;
pub mod name;
pub mod plan;
pub mod probe;
pub mod verify;

use caulk_sdk::Updater;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{Outcome, PatchPlan, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// The apk updater; its methods are plain functions, testable natively.
pub struct Apk;

impl Updater for Apk {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "apk".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Upgrades vulnerable apk packages in Alpine and Wolfi images with apk-tools".into(),
            handles: vec![plan::APK.into()],
            os_families: vec!["alpine".into(), "wolfi".into(), "chainguard".into()],
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
// in a plugin directory would have to be granted. `host-tooling` is for
// images without apk: the host's apk then works on the image with `--root`.
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Apk, capabilities = ["image-commands", "host-tooling", "network"]);
