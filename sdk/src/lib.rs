//! # caulk-sdk
//!
//! Everything needed to write a [caulk](https://github.com/caulk-dev/caulk)
//! plugin: a scanner that turns a vulnerability report into findings, or an
//! updater that plans package-manager commands to move vulnerable packages to
//! fixed versions. A plugin is a WebAssembly component built for
//! `wasm32-wasip2`; drop the `.wasm` file into a plugin directory and caulk
//! picks it up.
//!
//! ```ignore
//! use caulk_sdk::{Scanner, types::*};
//!
//! struct Csv;
//!
//! impl Scanner for Csv {
//!     fn info() -> PluginInfo { /* ... */ }
//!     fn parse(report: &[u8]) -> Result<Findings, Error> { /* ... */ }
//! }
//!
//! caulk_sdk::export_scanner!(Csv);
//! ```
//!
//! Enable the `testing` feature in `dev-dependencies` to run the built
//! component through the real host from a test (see `testing`). An updater
//! that reads package-index URLs from images enables `index-url` and checks
//! them with `index_url::IndexUrl`, as the host does; `names::pep503`
//! compares Python package names.

pub mod cache_key;
pub mod capability;
pub mod facts;
#[cfg(feature = "index-url")]
pub mod index_url;
pub mod json;
pub mod log;
pub mod names;
pub mod rules;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verdict;
pub mod version;

mod bindings;
mod records;

/// Where images keep their system CA bundle. In steps and commands with
/// network access the host mounts its own bundle (`--ca-bundle`, default the
/// host's) read-only over each of these that is a regular file in the image,
/// so tools with a bundle setting of their own (`NODE_EXTRA_CA_CERTS`,
/// `PIP_CERT`) can be pointed at the first one the image has.
pub const CA_BUNDLE_PATHS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/cacert.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
];

/// The WIT version this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.2.0";

/// A `--plugin-opt` switch's value: `true`, `1` or `yes` is on, `false`,
/// `0` or `no` off; anything else is `None`, for the plugin to refuse by
/// name (every built-in plugin reads switches this way, so users learn one
/// spelling).
pub fn flag(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// A directory every command probe of a plugin in the image's root sees,
/// shared by all that plugin's probes (plan and verify) of every run on an
/// image with the same layers, by no other plugin or image, and never part
/// of the image: for what probes can reuse from each other, such as
/// compiled bytecode. Several runs may use it at once. caulk's local
/// executor provides it; elsewhere (BuildKit) it is an empty directory of
/// the probe's own `/tmp`, so a plugin must not depend on it.
pub const PROBE_SCRATCH: &str = "/tmp/caulk-scratch";

/// How many rounds of questions caulk answers per phase: a plugin still
/// asking something new after that fails the run.
pub const MAX_PROBE_ROUNDS: usize = 16;

/// Records shared by every plugin kind (`caulk:plugin/types`).
pub mod types {
    pub use crate::bindings::common::caulk::plugin::types::*;
}

/// Records of the updater interface (`caulk:plugin/updater`).
pub mod update {
    pub use crate::bindings::updater::exports::caulk::plugin::updater::*;

    impl PatchPlan {
        /// A plan that selects, skips and runs nothing yet.
        pub fn empty() -> Self {
            PatchPlan {
                selected: Vec::new(),
                skipped: Vec::new(),
                steps: Vec::new(),
                drop_paths: Vec::new(),
                caches: Vec::new(),
            }
        }
    }

    impl Outcome {
        /// The outcome of `selected`, naming it as the plan did; no checks.
        pub fn of(
            selected: &SelectedUpdate,
            to: Option<String>,
            status: OutcomeStatus,
            detail: String,
        ) -> Self {
            Outcome {
                ecosystem: selected.ecosystem.clone(),
                name: selected.name.clone(),
                location: selected.location.clone(),
                from: selected.from.clone(),
                to,
                status,
                detail,
                checks: Vec::new(),
                verdicts: Vec::new(),
            }
        }

        /// The same outcome with `checks`.
        #[must_use]
        pub fn with_checks(mut self, checks: Vec<Check>) -> Self {
            self.checks = checks;
            self
        }
    }
}

/// A scanner plugin: reads one report format.
///
/// Implement it on a unit struct and export it with [`export_scanner!`].
pub trait Scanner {
    /// Who the plugin is; `handles` names the report formats it reads.
    fn info() -> types::PluginInfo;

    /// Confidence from 0 to 100 that `report` is in this plugin's format.
    /// The default never claims a report, so users must name the plugin with
    /// `--scanner`.
    fn sniff(report: &[u8]) -> u8 {
        let _ = report;
        0
    }

    /// Parse the report into findings.
    fn parse(report: &[u8]) -> Result<types::Findings, types::Error>;
}

/// An updater plugin: plans package-manager commands for one ecosystem.
///
/// Implement it on a unit struct and export it with [`export_updater!`].
pub trait Updater {
    /// Who the plugin is; `handles` names its ecosystems and `os-families`
    /// the distributions it patches.
    fn info() -> types::PluginInfo;

    /// What the plugin needs to see of the image. Called again after the host
    /// answered, with the facts so far, until it returns nothing new. The
    /// default asks for nothing.
    fn probe(request: &update::ProbeRequest) -> Result<Vec<update::Question>, types::Error> {
        let _ = request;
        Ok(Vec::new())
    }

    /// Decide which updates to make and the steps that make them.
    fn plan(request: &update::PlanRequest) -> Result<update::PatchPlan, types::Error>;

    /// Judge each selected update from facts gathered after the steps ran.
    /// The default marks every selected update failed, which is only right
    /// for plugins that cannot verify anything.
    fn verify(request: &update::VerifyRequest) -> Result<Vec<update::Outcome>, types::Error> {
        Ok(request
            .selected
            .iter()
            .map(|s| update::Outcome {
                ecosystem: s.ecosystem.clone(),
                name: s.name.clone(),
                location: s.location.clone(),
                from: s.from.clone(),
                to: None,
                status: update::OutcomeStatus::Failed,
                detail: "this plugin does not verify its updates".to_owned(),
                checks: Vec::new(),
                verdicts: Vec::new(),
            })
            .collect())
    }
}

impl types::Error {
    /// An error of `kind` with a message and no hint.
    pub fn new(kind: types::ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), hint: None }
    }

    /// The input is not in the plugin's format or is damaged.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(types::ErrorKind::MalformedInput, message)
    }

    /// Adds what the user can do about it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

// `Display` and `std::error::Error` come with the generated bindings.

/// Exports a [`Scanner`] implementation as the plugin's component interface.
#[macro_export]
macro_rules! export_scanner {
    ($plugin:ty) => {
        const _: () = {
            struct CaulkScannerExport;

            impl $crate::__private::scanner_guest::Guest for CaulkScannerExport {
                fn info() -> $crate::types::PluginInfo {
                    <$plugin as $crate::Scanner>::info()
                }
                fn sniff(report: ::std::vec::Vec<u8>) -> u8 {
                    <$plugin as $crate::Scanner>::sniff(&report)
                }
                fn parse(
                    report: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<$crate::types::Findings, $crate::types::Error> {
                    <$plugin as $crate::Scanner>::parse(&report)
                }
            }

            $crate::__private::scanner::__export_scanner_world!(CaulkScannerExport with_types_in $crate::__private::scanner);
        };
    };
}

/// Exports an [`Updater`] implementation as the plugin's component interface.
///
/// `capabilities = [...]` declares what the plugin may ask the host for
/// beyond the image's files (see [`capability`]); the list is recorded in
/// the component, and a misspelt name fails the build:
///
/// ```ignore
/// caulk_sdk::export_updater!(MyUpdater, capabilities = ["image-commands", "network"]);
/// ```
#[macro_export]
macro_rules! export_updater {
    ($plugin:ty) => {
        $crate::export_updater!($plugin, capabilities = []);
    };
    ($plugin:ty, capabilities = [$($capability:literal),* $(,)?]) => {
        const _: () = {
            struct CaulkUpdaterExport;

            impl $crate::__private::updater_guest::Guest for CaulkUpdaterExport {
                fn info() -> $crate::types::PluginInfo {
                    <$plugin as $crate::Updater>::info()
                }
                fn probe(
                    request: $crate::update::ProbeRequest,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::update::Question>, $crate::types::Error> {
                    <$plugin as $crate::Updater>::probe(&request)
                }
                fn plan(
                    request: $crate::update::PlanRequest,
                ) -> ::std::result::Result<$crate::update::PatchPlan, $crate::types::Error> {
                    <$plugin as $crate::Updater>::plan(&request)
                }
                fn verify(
                    request: $crate::update::VerifyRequest,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::update::Outcome>, $crate::types::Error> {
                    <$plugin as $crate::Updater>::verify(&request)
                }
            }

            $crate::__private::updater::__export_updater_world!(CaulkUpdaterExport with_types_in $crate::__private::updater);
            $crate::__declare_capabilities!($($capability),*);
        };
    };
}

/// Records declared capabilities in the `caulk:capabilities` custom
/// section, the way Zed records an extension's API version: the host reads
/// the section without instantiating anything, and the WIT stays as it is.
#[doc(hidden)]
#[macro_export]
macro_rules! __declare_capabilities {
    () => {};
    ($($capability:literal),+) => {
        const CAULK_CAPABILITIES: &str = ::core::concat!($($capability, "\n"),+);
        const _: () = $crate::capability::__validate(CAULK_CAPABILITIES);
        // Custom sections survive linking and componentisation untouched.
        #[allow(unsafe_code)]
        #[unsafe(link_section = "caulk:capabilities")]
        #[used]
        static CAULK_CAPABILITIES_SECTION: [u8; CAULK_CAPABILITIES.len()] =
            $crate::capability::__bytes(CAULK_CAPABILITIES);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::scanner;
    pub use crate::bindings::scanner::exports::caulk::plugin::scanner as scanner_guest;
    pub use crate::bindings::updater;
    pub use crate::bindings::updater::exports::caulk::plugin::updater as updater_guest;
}
