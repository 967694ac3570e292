//! Copa's UpdateManifest (`v1alpha1`, `v1alpha2`): what `--scanner native`
//! reads and what Copa scanner plugins (`copa-NAME REPORT`) print.

use serde::Deserialize;

use crate::model::{Finding, Findings, FixStatus, OsInfo, PackageClass, Platform, Severity};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    /// Absent in the unversioned manifests Copa's frontend tests use.
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    /// v1alpha1
    #[serde(default)]
    updates: Vec<UpdatePackage>,
    /// v1alpha1 (node packages)
    #[serde(default)]
    node_updates: Vec<UpdatePackage>,
    /// v1alpha2
    #[serde(default, rename = "osupdates")]
    os_updates: Vec<UpdatePackage>,
    /// v1alpha2
    #[serde(default, rename = "langupdates")]
    lang_updates: Vec<UpdatePackage>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    os: Os,
    #[serde(default)]
    config: Config,
}

#[derive(Deserialize, Default)]
struct Os {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    arch: String,
    #[serde(default)]
    variant: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatePackage {
    name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: String,
    #[serde(default, rename = "vulnerabilityID")]
    vulnerability_id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    class: String,
}

/// Whether `bytes` look like an UpdateManifest: 100 when the `apiVersion`
/// is one Copa defines, 90 for an unversioned manifest (`metadata.os` and an
/// update list), 0 otherwise.
pub fn sniff(bytes: &[u8]) -> u8 {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        api_version: Option<String>,
        metadata: Option<ProbeMetadata>,
        updates: Option<serde::de::IgnoredAny>,
        #[serde(rename = "osupdates")]
        os_updates: Option<serde::de::IgnoredAny>,
        #[serde(rename = "langupdates")]
        lang_updates: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct ProbeMetadata {
        os: Option<serde::de::IgnoredAny>,
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(strip_bom(bytes)) else { return 0 };
    let has_updates = probe.updates.is_some() || probe.os_updates.is_some() || probe.lang_updates.is_some();
    match probe.api_version.as_deref() {
        Some("v1alpha1" | "v1alpha2") => 100,
        None if has_updates && probe.metadata.is_some_and(|m| m.os.is_some()) => 90,
        _ => 0,
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Reads an UpdateManifest into findings; `Err` says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Findings, String> {
    let manifest: Manifest = serde_json::from_slice(strip_bom(bytes)).map_err(|e| {
        if e.is_eof() && bytes.iter().all(u8::is_ascii_whitespace) {
            "the manifest is empty".to_owned()
        } else {
            format!("not a Copa UpdateManifest: {e}")
        }
    })?;
    let (os_updates, lang_updates) = match manifest.api_version.as_deref() {
        Some("v1alpha1") => (manifest.updates, manifest.node_updates),
        Some("v1alpha2") => (manifest.os_updates, manifest.lang_updates),
        // Unversioned: whichever lists it has.
        None => {
            let mut os = manifest.updates;
            os.extend(manifest.os_updates);
            let mut lang = manifest.node_updates;
            lang.extend(manifest.lang_updates);
            (os, lang)
        }
        Some(other) => {
            return Err(format!(
                "unsupported UpdateManifest apiVersion `{other}` (caulk reads v1alpha1 and v1alpha2)"
            ));
        }
    };
    let os_family = manifest.metadata.os.kind.to_ascii_lowercase();
    let os_ecosystem = os_ecosystem(&os_family);
    let mut findings = Vec::with_capacity(os_updates.len() + lang_updates.len());
    for (index, update) in os_updates.into_iter().enumerate() {
        let ecosystem = match update.kind.to_ascii_lowercase().as_str() {
            kind @ ("deb" | "rpm" | "apk") => kind.to_owned(),
            _ => os_ecosystem.clone().ok_or_else(|| {
                format!(
                    "OS update #{index} ({}) has no type and the OS `{}` is not one caulk knows",
                    update.name, manifest.metadata.os.kind
                )
            })?,
        };
        findings.push(finding(update, ecosystem, PackageClass::Os)?);
    }
    for update in lang_updates {
        let ecosystem = lang_ecosystem(&update.kind, &update.class);
        findings.push(finding(update, ecosystem, PackageClass::Library)?);
    }
    let os = (!os_family.is_empty())
        .then(|| OsInfo { family: os_family, version: manifest.metadata.os.version.clone() });
    let platform = (!manifest.metadata.config.arch.is_empty()).then(|| Platform {
        os: "linux".into(),
        architecture: manifest.metadata.config.arch.clone(),
        variant: Some(manifest.metadata.config.variant.clone()).filter(|v| !v.is_empty()),
    });
    Ok(Findings {
        scanner: Some(match &manifest.api_version {
            Some(version) => format!("Copa UpdateManifest {version}"),
            None => "Copa UpdateManifest (unversioned)".to_owned(),
        }),
        artifact: None,
        os,
        platform,
        findings,
    })
}

fn finding(update: UpdatePackage, ecosystem: String, class: PackageClass) -> Result<Finding, String> {
    if update.name.trim().is_empty() {
        return Err("an update has an empty `name`".into());
    }
    let fixed_versions: Vec<String> =
        update.fixed_version.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
    Ok(Finding {
        vulnerability: update.vulnerability_id,
        package: update.name,
        installed_version: update.installed_version,
        status: if fixed_versions.is_empty() { FixStatus::Unknown } else { FixStatus::Fixed },
        fixed_versions,
        ecosystem,
        class,
        location: None,
        severity: Severity::Unknown,
        purl: None,
        source_package: None,
        title: None,
    })
}

/// The OS package ecosystem of a distribution, as Copa and the scanners name it.
pub fn os_ecosystem(family: &str) -> Option<String> {
    let eco = match family {
        "debian" | "ubuntu" | "distroless" => "deb",
        "alpine" | "wolfi" | "chainguard" => "apk",
        "redhat" | "rhel" | "centos" | "rocky" | "alma" | "almalinux" | "amazon" | "oracle" | "ol"
        | "fedora" | "photon" | "cbl-mariner" | "mariner" | "azurelinux" | "suse" | "sles" | "opensuse"
        | "opensuse-leap" | "opensuse.leap" => "rpm",
        _ => return None,
    };
    Some(eco.to_owned())
}

fn lang_ecosystem(kind: &str, class: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    let eco = match kind.as_str() {
        "python" | "python-pkg" | "pip" | "pipenv" | "poetry" | "uv" => "python",
        "node" | "node-pkg" | "npm" | "yarn" | "pnpm" => "npm",
        "dotnet" | "dotnet-core" | "dotnet-deps" | "nuget" => "nuget",
        "go" | "gomod" | "gobinary" | "golang" => "go",
        "java" | "jar" | "pom" | "gradle" | "maven" => "maven",
        "gem" | "gemspec" | "bundler" | "ruby" => "gem",
        "cargo" | "rust" | "rustbinary" => "cargo",
        "composer" | "php" => "composer",
        "" if class.is_empty() => "unknown",
        "" => class,
        other => other,
    };
    eco.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1alpha1_updates_are_os_findings() {
        let manifest = br#"{"apiVersion":"v1alpha1","metadata":{"os":{"type":"debian","version":"11.3"},"config":{"arch":"amd64"}},
            "updates":[{"name":"libssl1.1","installedVersion":"1.1.1n-0+deb11u1","fixedVersion":"1.1.1n-0+deb11u3","vulnerabilityID":"CVE-2022-2097"}]}"#;
        assert_eq!(sniff(manifest), 100);
        let findings = parse(manifest).unwrap();
        let f = &findings.findings[0];
        assert_eq!((f.ecosystem.as_str(), f.class), ("deb", PackageClass::Os));
        assert_eq!(f.fixed_versions, ["1.1.1n-0+deb11u3"]);
        assert_eq!(findings.os.unwrap().version, "11.3");
        assert_eq!(findings.platform.unwrap().architecture, "amd64");
    }

    #[test]
    fn v1alpha2_separates_os_and_library_updates() {
        let manifest = br#"{"apiVersion":"v1alpha2","metadata":{"os":{"type":"linux","version":"4.19"},"config":{"arch":"arm64","variant":"v8"}},
            "osupdates":[{"name":"openssl","installedVersion":"1.1.1f-1ubuntu2.16","fixedVersion":"1.1.1f-1ubuntu2.17","vulnerabilityID":"CVE-2023-0286","type":"deb","class":"os-pkgs"}],
            "langupdates":[{"name":"requests","installedVersion":"2.25.1","fixedVersion":"2.31.0, 3.0.1","vulnerabilityID":"CVE-2023-32681","type":"python","class":"lang-pkgs"}]}"#;
        let findings = parse(manifest).unwrap();
        assert_eq!(findings.findings.len(), 2);
        assert_eq!(findings.findings[0].ecosystem, "deb");
        let lib = &findings.findings[1];
        assert_eq!((lib.ecosystem.as_str(), lib.class), ("python", PackageClass::Library));
        assert_eq!(lib.fixed_versions, ["2.31.0", "3.0.1"]);
        assert_eq!(findings.platform.unwrap().variant.as_deref(), Some("v8"));
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        assert!(parse(b"").unwrap_err().contains("empty"));
        assert!(parse(b"{\"apiVersion\":\"v2\"}").unwrap_err().contains("apiVersion `v2`"));
        assert!(parse(b"{nope").unwrap_err().contains("not a Copa UpdateManifest"));
        let unknown_os =
            br#"{"apiVersion":"v1alpha1","metadata":{"os":{"type":"plan9"}},"updates":[{"name":"x"}]}"#;
        assert!(parse(unknown_os).unwrap_err().contains("plan9"));
        assert_eq!(sniff(br#"{"SchemaVersion":2}"#), 0);
        assert_eq!(sniff(b"not json"), 0);
    }

    #[test]
    fn unversioned_manifests_are_read_like_their_lists_say() {
        let manifest = br#"{"metadata":{"os":{"type":"ubuntu","version":"20.04"},"config":{"arch":"amd64"}},
            "updates":[{"name":"curl","installedVersion":"7.68.0-1ubuntu2.18","fixedVersion":"7.68.0-1ubuntu2.19","vulnerabilityID":"CVE-2023-28321"}]}"#;
        assert_eq!(sniff(manifest), 90);
        let findings = parse(manifest).unwrap();
        assert_eq!(findings.findings[0].ecosystem, "deb");
        assert_eq!(sniff(br#"{"metadata":{"name":"x"},"updates":[]}"#), 0, "no metadata.os: not a manifest");
    }
}
