//! caulk's npm updater: moves vulnerable npm packages to fixed versions with
//! the image's own npm, in app trees (a `package-lock.json` and its
//! `node_modules`) and among the global packages under `npm root -g`.
//!
//! Planning reads each app's `package.json` and `package-lock.json`, picks
//! a fixed version by Copa's `--library-patch-level` rules
//! (`caulk_sdk::rules`), and keeps only versions the registry publishes,
//! has not deprecated, and whose `engines.node` admits the image's node.
//! Steps fetch with the network into a cache that never enters the layer,
//! then install offline: a direct dependency by `npm install NAME@VERSION`,
//! a transitive one through an npm `overrides` entry, so `package.json` and
//! `package-lock.json` stay consistent with `node_modules`. Verification
//! reads every affected `package.json` back and runs `npm ls` for the app.
//! Trees managed by yarn or pnpm are skipped with a reason.
//!
//! No install runs lifecycle scripts (`--ignore-scripts`): the image's
//! `package.json` files are untrusted. `--plugin-opt npm.scripts=true` lets
//! the installs in the image run them again (`settings`).

pub mod error;
pub mod facts;
pub mod place;
pub mod plan;
pub mod settings;
pub mod verify;

use caulk_sdk::Updater;
use caulk_sdk::types::{Error, PackageClass, PluginInfo};
use caulk_sdk::update::{Outcome, PatchPlan, Phase, PlanRequest, ProbeRequest, Question, VerifyRequest};

/// The ecosystem name findings and look-ups use.
pub const NPM: &str = "npm";

pub struct Npm;

impl Updater for Npm {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "npm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Upgrades vulnerable npm packages in app trees and global installs with the image's npm"
                .into(),
            handles: vec![NPM.into()],
            os_families: Vec::new(),
            class: PackageClass::Library,
        }
    }

    fn probe(request: &ProbeRequest) -> Result<Vec<Question>, Error> {
        // Refused before the first question, so a misspelt option costs
        // nothing.
        settings::settings(&request.options)?;
        Ok(match request.phase {
            Phase::Plan => facts::plan_questions(&request.updates, &request.options, &request.facts),
            Phase::Verify => verify::questions(&request.selected, &request.facts),
        })
    }

    fn plan(request: &PlanRequest) -> Result<PatchPlan, Error> {
        plan::plan(request).map_err(Error::from)
    }

    fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, Error> {
        Ok(verify::verify(request))
    }
}

#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Npm, capabilities = ["image-commands", "network", "index:*"]);
