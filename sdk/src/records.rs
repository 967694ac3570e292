//! Defaults, builders and `Display` for the generated records, so plugins
//! and their tests name only the fields they care about.

use std::fmt;

use crate::types::Platform;
use crate::update::{
    Options, PassedOver, PatchLevel, PatchPlan, Phase, ProbeRequest, SelectedUpdate, SkippedUpdate, Target,
    Update, UpdateMode, Verdict, VersionTarget,
};

impl Default for PatchPlan {
    fn default() -> Self {
        Self::empty()
    }
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Self { os: "linux".into(), architecture: "amd64".into(), variant: None }
    }
}

impl Default for Target {
    /// A `linux/amd64` image without os-release and with an empty `Env`.
    fn default() -> Self {
        Self { os: None, platform: Platform::default(), env: Vec::new() }
    }
}

impl Default for Options {
    /// What `caulk patch -r REPORT` without other flags asks for: report
    /// mode, patch level `patch`, no tolerated failures, the image's own
    /// index configuration, no settings.
    fn default() -> Self {
        Self {
            mode: UpdateMode::Report,
            patch_level: PatchLevel::Patch,
            ignore_errors: false,
            index_urls: Vec::new(),
            settings: Vec::new(),
        }
    }
}

impl Options {
    /// The value of plugin setting `key` (`--plugin-opt NAME.KEY=VALUE`).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl ProbeRequest {
    /// A request for `phase` with no updates, selections or facts yet.
    pub fn new(phase: Phase, target: Target, options: Options) -> Self {
        Self { phase, target, updates: Vec::new(), selected: Vec::new(), options, facts: Vec::new() }
    }

    /// The report's updates (plan phase).
    #[must_use]
    pub fn updates(mut self, updates: Vec<Update>) -> Self {
        self.updates = updates;
        self
    }

    /// The plan's selections (verify phase).
    #[must_use]
    pub fn selected(mut self, selected: Vec<SelectedUpdate>) -> Self {
        self.selected = selected;
        self
    }
}

impl Update {
    /// `name` of `ecosystem` installed at `installed`, with no fixes yet.
    pub fn new(ecosystem: impl Into<String>, name: impl Into<String>, installed: impl Into<String>) -> Self {
        Self {
            ecosystem: ecosystem.into(),
            name: name.into(),
            location: None,
            installed_version: installed.into(),
            fixed_versions: Vec::new(),
            vulnerabilities: Vec::new(),
        }
    }

    /// Where the scanner saw it.
    #[must_use]
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// Adds a vulnerability and the versions that fix it.
    #[must_use]
    pub fn fixing<S: Into<String>>(
        mut self,
        vulnerability: impl Into<String>,
        fixed: impl IntoIterator<Item = S>,
    ) -> Self {
        self.vulnerabilities.push(vulnerability.into());
        for version in fixed {
            let version = version.into();
            if !self.fixed_versions.contains(&version) {
                self.fixed_versions.push(version);
            }
        }
        self
    }
}

impl SelectedUpdate {
    /// Moves `update` from `from` (the installed version as the facts show
    /// it) to `target`, resolving all of its vulnerabilities.
    pub fn of(update: &Update, from: impl Into<String>, target: VersionTarget) -> Self {
        Self {
            ecosystem: update.ecosystem.clone(),
            name: update.name.clone(),
            location: update.location.clone(),
            from: from.into(),
            target,
            vulnerabilities: update.vulnerabilities.clone(),
            rationale: None,
            passed_over: Vec::new(),
        }
    }

    /// Moves `name` of `ecosystem` from `from` to `target`, resolving no
    /// listed vulnerability (update-all mode).
    pub fn new(
        ecosystem: impl Into<String>,
        name: impl Into<String>,
        from: impl Into<String>,
        target: VersionTarget,
    ) -> Self {
        Self {
            ecosystem: ecosystem.into(),
            name: name.into(),
            location: None,
            from: from.into(),
            target,
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        }
    }

    /// Where the package is.
    #[must_use]
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The rule that chose the version, for people.
    #[must_use]
    pub fn because(mut self, rationale: impl Into<String>) -> Self {
        self.rationale = Some(rationale.into());
        self
    }

    /// A candidate considered and not chosen.
    #[must_use]
    pub fn passing_over(mut self, version: impl Into<String>, reason: impl Into<String>) -> Self {
        self.passed_over.push(PassedOver { version: version.into(), reason: reason.into() });
        self
    }
}

impl SkippedUpdate {
    /// `update` is not made, for `reason`.
    pub fn of(update: &Update, reason: impl Into<String>) -> Self {
        Self {
            ecosystem: update.ecosystem.clone(),
            name: update.name.clone(),
            location: update.location.clone(),
            installed_version: Some(update.installed_version.clone()),
            reason: reason.into(),
            already_fixed: false,
        }
    }

    /// `name` of `ecosystem` is not updated, for `reason`.
    pub fn new(ecosystem: impl Into<String>, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            ecosystem: ecosystem.into(),
            name: name.into(),
            location: None,
            installed_version: None,
            reason: reason.into(),
            already_fixed: false,
        }
    }

    /// Where the package is.
    #[must_use]
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The version installed, as the facts show it.
    #[must_use]
    pub fn installed(mut self, version: impl Into<String>) -> Self {
        self.installed_version = Some(version.into());
        self
    }

    /// Marks it as already at or above a fixed version.
    #[must_use]
    pub fn already_fixed(mut self) -> Self {
        self.already_fixed = true;
        self
    }
}

impl Verdict {
    /// Whether the installed version resolves `vulnerability`.
    pub fn new(vulnerability: impl Into<String>, fixed: bool) -> Self {
        Self { vulnerability: vulnerability.into(), fixed }
    }
}

impl fmt::Display for PatchLevel {
    /// As on the command line: `patch`, `minor`, `major`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Patch => "patch",
            Self::Minor => "minor",
            Self::Major => "major",
        })
    }
}

impl fmt::Display for UpdateMode {
    /// `report` or `all`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Report => "report",
            Self::All => "all",
        })
    }
}

impl fmt::Display for Phase {
    /// `plan` or `verify`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plan => "plan",
            Self::Verify => "verify",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_what_they_name_and_leave_the_rest_empty() {
        let update = Update::new("npm", "lodash", "4.17.15")
            .at("/app/package-lock.json")
            .fixing("CVE-2020-8203", ["4.17.19"])
            .fixing("CVE-2021-23337", ["4.17.21", "4.17.19"]);
        assert_eq!(update.fixed_versions, ["4.17.19", "4.17.21"]);
        assert_eq!(update.vulnerabilities, ["CVE-2020-8203", "CVE-2021-23337"]);
        let selected = SelectedUpdate::of(&update, "4.17.15", VersionTarget::Exactly("4.17.21".into()))
            .because("highest 4.17.x fix")
            .passing_over("4.17.19", "does not fix CVE-2021-23337");
        assert_eq!(selected.location.as_deref(), Some("/app/package-lock.json"));
        assert_eq!(selected.vulnerabilities, update.vulnerabilities);
        assert_eq!(selected.passed_over[0].version, "4.17.19");
        let skipped = SkippedUpdate::of(&update, "held").already_fixed();
        assert_eq!(skipped.installed_version.as_deref(), Some("4.17.15"));
        assert!(skipped.already_fixed);
        assert!(PatchPlan::default().steps.is_empty());
        assert_eq!(Target::default().platform.architecture, "amd64");
    }

    #[test]
    fn enums_print_as_the_command_line_spells_them() {
        assert_eq!(PatchLevel::Minor.to_string(), "minor");
        assert_eq!(UpdateMode::All.to_string(), "all");
        assert_eq!(Phase::Verify.to_string(), "verify");
        let options = Options { settings: vec![("x".into(), "1".into())], ..Options::default() };
        assert_eq!(options.setting("x"), Some("1"));
        assert_eq!(options.patch_level, PatchLevel::Patch);
    }
}
