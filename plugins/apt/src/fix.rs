//! Whether an installed package already carries a fix.
//!
//! Security trackers (Debian's, Ubuntu's) publish fixed versions of *source*
//! packages, and scanners compare them with the installed *binary* version.
//! Usually the two are equal, or differ only by a binNMU suffix (`+b1`), and
//! dpkg's order with the installed epoch restored ([`is_fixed_by`]) gives the
//! right answer. Some binaries carry versions of their own, and then the
//! binary comparison is wrong:
//!
//! - Debian 13 builds `login` from `util-linux` as `1:4.16.0-2+really2.41-5`
//!   (the version must stay above the old shadow-built `login`). A real Trivy
//!   report lists util-linux's `2.41.5-0+deb13u1` as its fix; read with the
//!   epoch of `login`, that is `1:2.41.5-0+deb13u1`, *below* the installed
//!   version, so the binary comparison calls the vulnerable `login` fixed.
//! - `gcc 4:12.2.0-3` is built from `gcc-defaults 1.203`.
//!
//! dpkg records the source version in the status file whenever it differs
//! (`Source: util-linux (2.41-5)`). So a package counts as fixed only when
//! both its binary version and, where recorded, its source version are at or
//! above the fixed version. For the source comparison the epoch rule uses the
//! source's own epoch, and an epoch the fixed version only carries because it
//! was copied from the binary (`1:` on a util-linux version) is dropped.

use std::cmp::Ordering;

use caulk_sdk::version::{Scheme, deb, is_fixed_by};

use crate::status::Entry;

/// The verdict for one installed instance against one fixed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or above the fixed version.
    Fixed,
    /// Below the fixed version.
    Vulnerable,
    /// The binary version is at or above the fixed version but the source
    /// version recorded by dpkg is below it: the fix is a source version the
    /// binary's own numbering hides.
    VulnerableBySource,
}

impl Verdict {
    pub fn is_fixed(self) -> bool {
        self == Self::Fixed
    }
}

/// Judges `entry` against `fixed`. Both versions must be valid (the status
/// parser and the plan validate them); an invalid one counts as vulnerable.
pub fn judge(entry: &Entry, fixed: &str) -> Verdict {
    let Some(installed) = entry.version.as_deref() else { return Verdict::Vulnerable };
    if !is_fixed_by(Scheme::Deb, installed, fixed).unwrap_or(false) {
        return Verdict::Vulnerable;
    }
    match source_is_fixed(entry, installed, fixed) {
        Some(false) => Verdict::VulnerableBySource,
        Some(true) | None => Verdict::Fixed,
    }
}

/// Whether the recorded source version is at or above `fixed`; none when
/// dpkg recorded no (valid) source version.
fn source_is_fixed(entry: &Entry, installed: &str, fixed: &str) -> Option<bool> {
    let (_, source) = entry.source.as_ref()?;
    let source: deb::Version = source.parse().ok()?;
    let binary: deb::Version = installed.parse().ok()?;
    let fixed_version: deb::Version = fixed.parse().ok()?;
    let fixed_for_source = if fixed_version.has_epoch()
        && fixed_version.epoch() == binary.epoch()
        && fixed_version.epoch() != source.epoch()
    {
        // `1:2.41.5-0+deb13u1` for util-linux (epoch 0): the `1:` came from
        // the binary.
        fixed.split_once(':').map_or(fixed, |(_, rest)| rest).parse::<deb::Version>().ok()?
    } else {
        fixed_version
    };
    Some(source.cmp(&fixed_for_source.with_epoch_of(&source)) != Ordering::Less)
}

/// The highest of `fixed` versions read with `installed`'s epoch: the version
/// that resolves every vulnerability of the update. Invalid versions are
/// ignored (the plan refuses them before asking).
pub fn highest(installed: &str, fixed: &[String]) -> Option<String> {
    let installed: deb::Version = installed.parse().ok()?;
    fixed
        .iter()
        .filter_map(|f| f.parse::<deb::Version>().ok())
        .map(|f| f.with_epoch_of(&installed))
        .max()
        .map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, source: Option<(&str, &str)>) -> Entry {
        Entry {
            name: "pkg".into(),
            arch: "amd64".into(),
            version: Some(version.into()),
            want: "install".into(),
            state: "installed".into(),
            source: source.map(|(n, v)| (n.into(), v.into())),
            line: 1,
        }
    }

    #[test]
    fn login_built_from_util_linux_is_judged_by_its_source_version() {
        // Versions from the real Debian 13 Trivy report and dpkg status.
        let login = entry("1:4.16.0-2+really2.41-5", Some(("util-linux", "2.41-5")));
        assert!(is_fixed_by(Scheme::Deb, "1:4.16.0-2+really2.41-5", "2.41.5-0+deb13u1").unwrap());
        assert_eq!(judge(&login, "2.41.5-0+deb13u1"), Verdict::VulnerableBySource);
        // The epoch-applied form (as a plan's target carries it) too.
        assert_eq!(judge(&login, "1:2.41.5-0+deb13u1"), Verdict::VulnerableBySource);
        let patched = entry("1:4.16.0-2+really2.41.5-0+deb13u1", Some(("util-linux", "2.41.5-0+deb13u1")));
        assert_eq!(judge(&patched, "2.41.5-0+deb13u1"), Verdict::Fixed);
        assert_eq!(judge(&patched, "1:2.41.5-0+deb13u1"), Verdict::Fixed);
    }

    #[test]
    fn epoch_less_fixed_versions_take_the_installed_epoch() {
        // bsdutils 1:2.41-5 (Source: util-linux (2.41-5)) from the same report.
        let bsdutils = entry("1:2.41-5", Some(("util-linux", "2.41-5")));
        assert_eq!(judge(&bsdutils, "2.41.5-0+deb13u1"), Verdict::Vulnerable);
        assert_eq!(judge(&bsdutils, "2.41-5"), Verdict::Fixed);
        let libssl = entry("3.0.20-1~deb12u2", None);
        assert_eq!(judge(&libssl, "3.0.22-1~deb12u2"), Verdict::Vulnerable);
        assert_eq!(judge(&libssl, "3.0.20-1~deb12u2"), Verdict::Fixed);
        assert_eq!(judge(&libssl, "3.0.17-1~deb12u2"), Verdict::Fixed);
    }

    #[test]
    fn bin_nmus_and_version_shifted_binaries() {
        // bash 5.2.15-2+b2 from the build machine's own status file.
        let bash = entry("5.2.15-2+b2", Some(("bash", "5.2.15-2")));
        assert_eq!(judge(&bash, "5.2.15-2"), Verdict::Fixed);
        assert_eq!(judge(&bash, "5.2.15-3"), Verdict::Vulnerable);
        let gcc = entry("4:12.2.0-3", Some(("gcc-defaults", "1.203")));
        assert_eq!(judge(&gcc, "1.204"), Verdict::VulnerableBySource);
        assert_eq!(judge(&gcc, "1.203"), Verdict::Fixed);
    }

    #[test]
    fn the_highest_fix_is_read_with_the_installed_epoch() {
        let fixed = vec!["2.41.3-1".to_owned(), "2.41.5-0+deb13u1".to_owned()];
        assert_eq!(highest("1:2.41-5", &fixed).as_deref(), Some("1:2.41.5-0+deb13u1"));
        assert_eq!(highest("2.41-5", &fixed).as_deref(), Some("2.41.5-0+deb13u1"));
        assert_eq!(highest("2.41-5", &[]), None);
        // `1.0~rc1` sorts before `1.0`, as dpkg orders them.
        let fixed = vec!["1.0".to_owned(), "1.0~rc1".to_owned()];
        assert_eq!(highest("0.9", &fixed).as_deref(), Some("1.0"));
    }
}
