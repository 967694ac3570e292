//! Reading Trivy JSON into findings.
//!
//! The report is walked once with serde: vulnerabilities become findings as
//! they are read, strings are borrowed from the input until they are copied
//! into a finding, and everything caulk does not need (descriptions, CVSS,
//! layers, installed files) is skipped without being built. A result's
//! context (its class, type, target and package list) may come after its
//! vulnerabilities in the JSON, so each result's findings are completed when
//! the result's object closes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use caulk_sdk::json::{Elements, Segment, Text, path_string};
use caulk_sdk::types::{
    Error, ErrorKind, Finding, Findings, FixStatus, OsInfo, PackageClass, Platform, Severity,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

use crate::ecosystem;

/// Parses a whole report (already checked to be UTF-8 text).
pub(crate) fn parse_text(text: &str) -> Result<Findings, Error> {
    let mut state = State::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let outcome = (&mut state).deserialize(&mut de).and_then(|()| de.end());
    match outcome {
        Ok(()) => state.finish(),
        Err(err) => Err(state.describe(&err)),
    }
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "OS")]
    os: Option<MetadataOs>,
    #[serde(rename = "ImageConfig")]
    image_config: Option<ImageConfig>,
}

#[derive(Deserialize)]
struct MetadataOs {
    #[serde(rename = "Family")]
    family: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct TrivyVersion {
    #[serde(rename = "Version")]
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawVulnerability<'a> {
    #[serde(rename = "VulnerabilityID", borrow)]
    id: Text<'a>,
    #[serde(rename = "PkgID", borrow)]
    pkg_id: Option<Text<'a>>,
    #[serde(rename = "PkgName", borrow)]
    pkg_name: Text<'a>,
    #[serde(rename = "PkgPath", borrow)]
    pkg_path: Option<Text<'a>>,
    #[serde(rename = "PkgIdentifier", borrow)]
    pkg_identifier: Option<Identifier<'a>>,
    #[serde(rename = "InstalledVersion", borrow)]
    installed_version: Text<'a>,
    #[serde(rename = "FixedVersion", borrow)]
    fixed_version: Option<Text<'a>>,
    #[serde(rename = "Status", borrow)]
    status: Option<Text<'a>>,
    #[serde(rename = "Severity", borrow)]
    severity: Option<Text<'a>>,
    #[serde(rename = "Title", borrow)]
    title: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Identifier<'a> {
    #[serde(rename = "PURL", borrow)]
    purl: Option<Text<'a>>,
    #[serde(rename = "UID", borrow)]
    uid: Option<Text<'a>>,
}

/// An entry of a result's `Packages` (present with `--list-all-pkgs`): the
/// only place Trivy names the source package.
#[derive(Deserialize)]
struct RawPackage<'a> {
    #[serde(rename = "ID", borrow)]
    id: Option<Text<'a>>,
    #[serde(rename = "Name", borrow)]
    name: Option<Text<'a>>,
    #[serde(rename = "Identifier", borrow)]
    identifier: Option<Identifier<'a>>,
    #[serde(rename = "SrcName", borrow)]
    src_name: Option<Text<'a>>,
}

/// How a finding refers to an entry of its result's `Packages`.
struct PackageRef<'a> {
    uid: Option<Text<'a>>,
    id: Option<Text<'a>>,
}

/// Where a report says an OS result's OS is, for reports without
/// `Metadata.OS`: `(artifact, family, version)`.
type TargetOs = (String, String, String);

#[derive(Default)]
struct State<'de> {
    path: Vec<Segment>,
    findings: Vec<Finding>,
    legacy: bool,
    schema_version: bool,
    results: bool,
    /// Top-level keys that are not Trivy's, to say what the input looks like.
    foreign_keys: Vec<String>,
    artifact: Option<String>,
    scanner_version: Option<String>,
    metadata: Option<Metadata>,
    target_os: Option<TargetOs>,
    /// OS findings whose ecosystem needs `Metadata.OS`, which may come later.
    os_pending: Vec<Range<usize>>,
    unsupported: Option<String>,
    /// Package references of the findings of the result being read.
    refs: Vec<PackageRef<'de>>,
}

impl<'de> DeserializeSeed<'de> for &mut State<'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut State<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Trivy JSON report (an object with SchemaVersion 2, or a legacy array of results)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.as_str() {
                "SchemaVersion" => {
                    self.path.push(Segment::Key("SchemaVersion"));
                    let version: u64 = map.next_value()?;
                    if version != 2 {
                        self.unsupported = Some(format!(
                            "Trivy JSON SchemaVersion {version} is not supported; this plugin reads \
                             SchemaVersion 2 (Trivy 0.20 and later) and the legacy array of results"
                        ));
                        return Err(de::Error::custom("unsupported SchemaVersion"));
                    }
                    self.path.pop();
                    self.schema_version = true;
                }
                "ArtifactName" => {
                    self.path.push(Segment::Key("ArtifactName"));
                    self.artifact = map.next_value::<Option<Text<'de>>>()?.and_then(Text::non_empty);
                    self.path.pop();
                }
                "Trivy" => {
                    self.path.push(Segment::Key("Trivy"));
                    self.scanner_version = map.next_value::<Option<TrivyVersion>>()?.and_then(|t| t.version);
                    self.path.pop();
                }
                "Metadata" => {
                    self.path.push(Segment::Key("Metadata"));
                    self.metadata = map.next_value()?;
                    self.path.pop();
                }
                "Results" => {
                    self.path.push(Segment::Key("Results"));
                    map.next_value_seed(ResultList(&mut *self))?;
                    self.path.pop();
                    self.results = true;
                }
                other => {
                    if self.foreign_keys.len() < 8 {
                        self.foreign_keys.push(other.to_owned());
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.legacy = true;
        read_results(self, seq)
    }
}

/// The `Results` array, which may also be `null`.
struct ResultList<'s, 'de>(&'s mut State<'de>);

impl<'de> DeserializeSeed<'de> for ResultList<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultList<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of results")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        read_results(self.0, seq)
    }
}

fn read_results<'de, A: SeqAccess<'de>>(state: &mut State<'de>, mut seq: A) -> Result<(), A::Error> {
    for index in 0.. {
        state.path.push(Segment::Index(index));
        if seq.next_element_seed(ResultSeed(&mut *state))?.is_none() {
            state.path.pop();
            break;
        }
        state.path.pop();
    }
    Ok(())
}

/// One element of `Results`.
struct ResultSeed<'s, 'de>(&'s mut State<'de>);

impl<'de> DeserializeSeed<'de> for ResultSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Trivy result (an object with Target and Vulnerabilities)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let start = state.findings.len();
        state.refs.clear();
        let mut target: Option<Text<'de>> = None;
        let mut class: Option<Text<'de>> = None;
        let mut result_type: Option<Text<'de>> = None;
        let mut packages: Vec<RawPackage<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.as_str() {
                "Target" => target = Some(map.next_value()?),
                "Class" => class = map.next_value()?,
                "Type" => result_type = map.next_value()?,
                "Packages" => {
                    state.path.push(Segment::Key("Packages"));
                    map.next_value_seed(Elements::new(&mut state.path, |package| packages.push(package)))?;
                    state.path.pop();
                }
                "Vulnerabilities" => {
                    state.path.push(Segment::Key("Vulnerabilities"));
                    let (findings, refs) = (&mut state.findings, &mut state.refs);
                    map.next_value_seed(Elements::new(
                        &mut state.path,
                        |vulnerability: RawVulnerability<'de>| {
                            let (finding, package) = finding_of(vulnerability);
                            findings.push(finding);
                            refs.push(package);
                        },
                    ))?;
                    state.path.pop();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(target) = target else {
            return Err(de::Error::custom("not a Trivy result: it has no Target"));
        };
        let context = ResultContext {
            target: target.as_str(),
            class: class.as_ref().map(Text::as_str),
            result_type: result_type.as_ref().map(Text::as_str),
        };
        state.complete_result(start, &context, &packages);
        Ok(())
    }
}

/// What a result says about all of its vulnerabilities.
struct ResultContext<'r> {
    target: &'r str,
    class: Option<&'r str>,
    result_type: Option<&'r str>,
}

/// The finding for one vulnerability, as far as it can be told without its
/// result: class, ecosystem and source package are filled in later.
fn finding_of(v: RawVulnerability<'_>) -> (Finding, PackageRef<'_>) {
    let fixed_versions: Vec<String> = v
        .fixed_version
        .as_ref()
        .map(|fixed| {
            fixed.as_str().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        })
        .unwrap_or_default();
    let status = match &v.status {
        Some(status) => fix_status(status.as_str()),
        // Reports before Trivy 0.35 have no Status: they list a
        // vulnerability because the installed version is affected.
        None if fixed_versions.is_empty() => FixStatus::Affected,
        None => FixStatus::Fixed,
    };
    let (purl, uid) = match v.pkg_identifier {
        Some(identifier) => (identifier.purl.and_then(Text::non_empty), identifier.uid),
        None => (None, None),
    };
    let finding = Finding {
        vulnerability: v.id.0.into_owned(),
        package: v.pkg_name.0.into_owned(),
        installed_version: v.installed_version.0.into_owned(),
        fixed_versions,
        status,
        ecosystem: String::new(),
        class: PackageClass::Library,
        location: v.pkg_path.and_then(Text::non_empty),
        severity: v.severity.as_ref().map_or(Severity::Unknown, |s| severity(s.as_str())),
        purl,
        source_package: None,
        title: v.title.and_then(Text::non_empty),
    };
    (finding, PackageRef { uid, id: v.pkg_id })
}

fn fix_status(status: &str) -> FixStatus {
    const STATUSES: &[(&str, FixStatus)] = &[
        ("fixed", FixStatus::Fixed),
        ("affected", FixStatus::Affected),
        ("will_not_fix", FixStatus::WillNotFix),
        ("fix_deferred", FixStatus::FixDeferred),
        ("end_of_life", FixStatus::EndOfLife),
        ("not_affected", FixStatus::NotAffected),
        ("under_investigation", FixStatus::UnderInvestigation),
    ];
    let status = status.trim();
    STATUSES.iter().find(|(name, _)| same_word(name, status)).map_or(FixStatus::Unknown, |&(_, s)| s)
}

fn severity(severity: &str) -> Severity {
    const SEVERITIES: &[(&str, Severity)] = &[
        ("critical", Severity::Critical),
        ("high", Severity::High),
        ("medium", Severity::Medium),
        ("low", Severity::Low),
        ("negligible", Severity::Negligible),
    ];
    let severity = severity.trim();
    SEVERITIES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(severity))
        .map_or(Severity::Unknown, |&(_, s)| s)
}

/// Equal ignoring ASCII case, with `-` and `_` alike; compares without
/// allocating, as it runs once per finding.
fn same_word(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c == b'-' { b'_' } else { c.to_ascii_lowercase() };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

impl State<'_> {
    /// Completes the findings read from one result (`start..`) with what the
    /// result says about all of them.
    fn complete_result(&mut self, start: usize, context: &ResultContext<'_>, packages: &[RawPackage<'_>]) {
        let target_os = ecosystem::os_from_target(context.target);
        let type_format = context.result_type.and_then(ecosystem::os_package_format);
        let is_os = match context.class {
            Some("os-pkgs") => true,
            Some("lang-pkgs") => false,
            // Legacy results (no Class) and unknown classes: an OS family as
            // Type, or an untyped target naming an OS, means OS packages.
            _ => type_format.is_some() || (context.result_type.is_none() && target_os.is_some()),
        };
        if is_os && self.target_os.is_none() {
            self.target_os = match (target_os, context.result_type) {
                (Some((artifact, family, version)), _) => {
                    Some((artifact.to_owned(), family.to_ascii_lowercase(), version.to_owned()))
                }
                (None, Some(family)) => Some((String::new(), family.to_ascii_lowercase(), String::new())),
                (None, None) => None,
            };
        }
        let ecosystem = if is_os {
            type_format
                .or_else(|| target_os.and_then(|(_, family, _)| ecosystem::os_package_format(family)))
                .map(str::to_owned)
        } else {
            Some(match context.result_type {
                Some(result_type) => ecosystem::library_ecosystem(result_type),
                None => ecosystem::ecosystem_of_file(context.target).unwrap_or("unknown").to_owned(),
            })
        };
        let target_location =
            (!is_os && !context.target.trim().is_empty() && !ecosystem::is_aggregate_target(context.target))
                .then(|| context.target.to_owned());
        let packages = PackageIndex::new(packages, is_os);
        let class = if is_os { PackageClass::Os } else { PackageClass::Library };
        for (finding, package_ref) in self.findings[start..].iter_mut().zip(&self.refs) {
            finding.class = class;
            if let Some(ecosystem) = &ecosystem {
                finding.ecosystem.clone_from(ecosystem);
            }
            if is_os {
                finding.location = None;
            } else if finding.location.is_none() {
                finding.location.clone_from(&target_location);
            }
            if let Some(package) = packages.find(package_ref, &finding.package) {
                finding.source_package = package.src_name.as_ref().map(Text::as_str).and_then(non_empty);
                if finding.purl.is_none() {
                    finding.purl = package
                        .identifier
                        .as_ref()
                        .and_then(|i| i.purl.as_ref())
                        .map(Text::as_str)
                        .and_then(non_empty);
                }
            }
        }
        if is_os && ecosystem.is_none() {
            self.os_pending.push(start..self.findings.len());
        }
        self.refs.clear();
    }

    fn finish(self) -> Result<Findings, Error> {
        if !self.legacy && !self.schema_version && !self.results {
            return Err(not_trivy(&self.foreign_keys));
        }
        let metadata = self.metadata.unwrap_or(Metadata { os: None, image_config: None });
        let mut os = metadata.os.and_then(|os| {
            let family = os.family.filter(|f| !f.trim().is_empty())?.to_ascii_lowercase();
            Some(OsInfo { family, version: os.name.unwrap_or_default() })
        });
        let mut artifact = self.artifact;
        if let Some((target_artifact, family, version)) = self.target_os {
            if os.is_none() {
                os = Some(OsInfo { family, version });
            }
            if artifact.is_none() {
                artifact = non_empty(&target_artifact);
            }
        }
        let mut findings = self.findings;
        if !self.os_pending.is_empty() {
            let ecosystem = os.as_ref().map_or("unknown".to_owned(), |os| {
                ecosystem::os_package_format(&os.family).map_or_else(|| os.family.clone(), str::to_owned)
            });
            for range in self.os_pending {
                for finding in &mut findings[range] {
                    finding.ecosystem.clone_from(&ecosystem);
                }
            }
        }
        let platform = metadata.image_config.and_then(|config| {
            let architecture = config.architecture.filter(|a| !a.trim().is_empty())?;
            Some(Platform {
                // Image configs always carry `os`; an absent one is a
                // hand-trimmed report of a Linux image.
                os: config.os.filter(|o| !o.trim().is_empty()).unwrap_or_else(|| "linux".to_owned()),
                architecture: goarch(&architecture),
                variant: config.variant.filter(|v| !v.trim().is_empty()),
            })
        });
        Ok(Findings {
            scanner: Some(match self.scanner_version {
                Some(version) if !version.trim().is_empty() => format!("Trivy {version}"),
                _ => "Trivy".to_owned(),
            }),
            artifact,
            os,
            platform,
            findings,
        })
    }

    /// The plugin error for a serde_json error, naming where it happened.
    fn describe(&mut self, err: &serde_json::Error) -> Error {
        if let Some(message) = self.unsupported.take() {
            return Error::new(ErrorKind::Unsupported, message)
                .with_hint("convert the report with a Trivy release that writes SchemaVersion 2");
        }
        let at =
            if self.path.is_empty() { String::new() } else { format!(" at {}", path_string(&self.path)) };
        Error::malformed(match err.classify() {
            Category::Eof => format!("the report ends too early{at} (is it truncated?): {err}"),
            Category::Syntax => format!("the report is not valid JSON{at}: {err}"),
            Category::Data | Category::Io => format!("malformed Trivy report{at}: {err}"),
        })
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

/// Architecture in GOARCH spelling, as OCI platforms write it.
fn goarch(architecture: &str) -> String {
    match architecture.trim() {
        "x86_64" | "x86-64" => "amd64".to_owned(),
        "aarch64" => "arm64".to_owned(),
        "i386" | "i686" => "386".to_owned(),
        other => other.to_owned(),
    }
}

/// The error for a JSON object that is not a Trivy report, with a guess at
/// what it is from its keys.
fn not_trivy(keys: &[String]) -> Error {
    let has = |key: &str| keys.iter().any(|k| k == key);
    let found = if keys.is_empty() {
        "an empty object".to_owned()
    } else {
        format!("an object with keys {}", keys.join(", "))
    };
    let error = Error::malformed(format!(
        "not a Trivy report: expected SchemaVersion and Results at the top level, found {found}"
    ));
    if has("matches") {
        error.with_hint("this looks like a Grype report: use `--scanner grype`")
    } else if has("updates") {
        error.with_hint("this looks like a Copa UpdateManifest: use `--scanner native`")
    } else if has("bomFormat") || has("spdxVersion") {
        error
            .with_hint("this is an SBOM, not a vulnerability report; scan it with `trivy sbom --format json`")
    } else {
        error.with_hint("write the report with `trivy image --format json`")
    }
}

/// A result's `Packages`, looked up by how its vulnerabilities refer to them.
/// (`BTreeMap`: a `HashMap` would make the plugin import WASI randomness.)
struct PackageIndex<'p, 'a> {
    packages: &'p [RawPackage<'a>],
    by_uid: BTreeMap<&'p str, usize>,
    by_id: BTreeMap<&'p str, usize>,
    by_name: BTreeMap<&'p str, usize>,
}

impl<'p, 'a> PackageIndex<'p, 'a> {
    fn new(packages: &'p [RawPackage<'a>], by_name_too: bool) -> Self {
        let mut index =
            Self { packages, by_uid: BTreeMap::new(), by_id: BTreeMap::new(), by_name: BTreeMap::new() };
        for (i, package) in packages.iter().enumerate() {
            if let Some(uid) = package.identifier.as_ref().and_then(|id| id.uid.as_ref()) {
                index.by_uid.entry(uid.as_str()).or_insert(i);
            }
            if let Some(id) = &package.id {
                index.by_id.entry(id.as_str()).or_insert(i);
            }
            // An OS has one package of a name; language results may hold
            // several versions of one, so names alone identify only OS ones.
            if by_name_too && let Some(name) = &package.name {
                index.by_name.entry(name.as_str()).or_insert(i);
            }
        }
        index
    }

    fn find(&self, package_ref: &PackageRef<'_>, name: &str) -> Option<&'p RawPackage<'a>> {
        if self.packages.is_empty() {
            return None;
        }
        let found = package_ref
            .uid
            .as_ref()
            .and_then(|uid| self.by_uid.get(uid.as_str()))
            .or_else(|| package_ref.id.as_ref().and_then(|id| self.by_id.get(id.as_str())))
            .or_else(|| self.by_name.get(name))?;
        self.packages.get(*found)
    }
}
