//! caulk's built-in updater for Python distributions: plans pip commands
//! that move vulnerable distributions to fixed versions in every Python
//! environment of an image, and judges the result.
//!
//! The plugin does no I/O. The host answers its probes:
//!
//! - plan phase, round 1 (files): metadata of the distributions in the
//!   usual places (`/usr/lib/python3*`, `/usr/local/lib/python3*`, `/opt/**`,
//!   the user site) and at every location the report names, `pyvenv.cfg`
//!   files, standard libraries, pip configuration files and PEP 668
//!   markers ([`discover`]);
//! - round 2: each virtualenv's distributions, and each interpreter's
//!   account of itself (`python -c`, see [`scripts::PYTHON_FACTS`]);
//! - round 3: `RECORD`, `INSTALLER` and `top_level.txt` of the distributions
//!   the report names;
//! - round 4: look-ups of each package on the environment's indexes, and a
//!   check of the host's pip when an environment has none;
//! - then dry runs of pip until every choice holds ([`plan`]).
//!
//! Versions are chosen by Copa's `--library-patch-level` rules ([`rules`]),
//! then checked against the index, the interpreter's version and every
//! dependent ([`choose`], [`conflict`]), then resolved by a pip dry run and
//! installed pinned with `--no-deps` ([`plan`] explains why). Verification
//! reads the metadata again, then checks the environment's requirements by
//! `pip check`'s rules and imports each patched distribution, one
//! interpreter per environment for both ([`verify`], [`imports`]).
//!
//! Settings: `--plugin-opt pip.dry-run=false` skips the dry runs (faster,
//! but a new version's new dependencies are then only found by `pip check`
//! after the install); `--plugin-opt pip.import-timeout=SECONDS` (1 to 90,
//! default 60) is how long one import of the import check may take
//! ([`imports`]). The indexes: [`config`].

pub mod choose;
pub mod config;
pub mod conflict;
pub mod discover;
pub mod env;
pub mod error;
pub mod imports;
pub mod metadata;
pub mod name;
pub mod pep508;
pub mod plan;
pub mod pyfacts;
pub mod resolve;
pub mod rules;
pub mod scripts;
pub mod verify;

use caulk_sdk::Updater;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{Outcome, PatchPlan, Phase, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// The pip updater; its methods are plain functions, testable natively.
pub struct Pip;

impl Updater for Pip {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "pip".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Upgrades vulnerable Python distributions with pip in every environment of an image"
                .into(),
            handles: vec![plan::PYTHON.into()],
            os_families: Vec::new(),
            class: PackageClass::Library,
        }
    }

    fn probe(request: &ProbeRequest) -> Result<Vec<Question>, Error> {
        match request.phase {
            Phase::Plan => {
                let ctx = plan::Ctx {
                    target: &request.target,
                    updates: &request.updates,
                    options: &request.options,
                    facts: &request.facts,
                };
                match plan::analyse(&ctx).map_err(Error::from)? {
                    Ok(_) => Ok(Vec::new()),
                    Err(questions) => Ok(questions),
                }
            }
            Phase::Verify => {
                let settings = plan::settings(&request.options).map_err(Error::from)?;
                Ok(verify::questions(&request.target, &request.updates, &request.facts, &settings))
            }
        }
    }

    fn plan(request: &PlanRequest) -> Result<PatchPlan, Error> {
        plan::plan(request).map_err(Error::from)
    }

    fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, Error> {
        verify::verify(request).map_err(Error::from)
    }
}

// Built-ins need no grants; the declaration says what a copy installed
// in a plugin directory would have to be granted. The indexes are whatever
// the image or the command line configures, hence any host.
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Pip, capabilities = ["image-commands", "host-tooling", "network", "index:*"]);
