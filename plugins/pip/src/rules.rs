//! Which fixed version a distribution moves to: Copa's
//! `--library-patch-level` rules from `caulk_sdk::rules`, read with PEP 440
//! versions, with `certifi` (a CA bundle: older is never safer) always
//! taking its highest fixed version, whatever the level.

use crate::name::Version;

pub use caulk_sdk::rules::{Level, Move, allowed, ascending_from, class_of, fixes, line, line_name};

/// One finding's fixed versions, as PEP 440 versions.
pub type Finding = caulk_sdk::rules::Finding<Version>;

/// What the rules decide for a distribution.
pub type Pick = caulk_sdk::rules::Pick<Version>;

/// Applies the rules. `certifi` is whether the package is certifi (by its
/// normalised name).
pub fn pick(installed: &Version, findings: &[Finding], level: Level, certifi: bool) -> Pick {
    caulk_sdk::rules::pick(installed, findings, level, certifi.then_some("certifi"))
}
