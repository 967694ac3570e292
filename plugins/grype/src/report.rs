//! Reading Grype JSON into findings.
//!
//! The report is walked once with serde: each match becomes a finding as it
//! is read, strings are borrowed from the input until copied into a finding,
//! and what caulk does not need (CVSS, descriptions, file lists, CPEs) is
//! skipped without being built. `alertsByPackage` follows the matches, so
//! the end-of-life alerts it carries are applied when the report closes.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use caulk_sdk::json::{Elements, Segment, Text, path_string};
use caulk_sdk::types::{Error, Finding, Findings, FixStatus, OsInfo, PackageClass, Platform, Severity};
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
struct RawMatch<'a> {
    #[serde(borrow)]
    vulnerability: RawVulnerability<'a>,
    #[serde(borrow)]
    artifact: RawArtifact<'a>,
}

#[derive(Deserialize)]
struct RawVulnerability<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    severity: Option<Text<'a>>,
    /// Grype 0.8 and later.
    #[serde(borrow)]
    fix: Option<RawFix<'a>>,
    /// Grype 0.7 and before, instead of `fix`.
    #[serde(rename = "fixedInVersion", borrow)]
    fixed_in_version: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawFix<'a> {
    #[serde(borrow)]
    versions: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    state: Option<Text<'a>>,
    /// Grype 0.9x and later: the fixes with their dates.
    #[serde(borrow)]
    available: Option<Vec<AvailableFix<'a>>>,
}

#[derive(Deserialize)]
struct AvailableFix<'a> {
    #[serde(borrow)]
    version: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawArtifact<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    locations: Option<Vec<Location<'a>>>,
    #[serde(borrow)]
    purl: Option<Text<'a>>,
    #[serde(borrow)]
    upstreams: Option<Vec<Upstream<'a>>>,
    #[serde(default)]
    metadata: PackageMetadata,
}

#[derive(Deserialize)]
struct Location<'a> {
    #[serde(borrow)]
    path: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Upstream<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
}

/// What caulk reads of syft's package metadata, whose shape depends on the
/// package type: the rpm epoch, and the source package of older syft
/// versions that had no `upstreams`. Anything else in it, or metadata that is
/// not an object, is skipped.
#[derive(Default)]
struct PackageMetadata {
    epoch: Option<u64>,
    /// dpkg: `source`.
    source: Option<String>,
    /// rpm: `sourceRpm`, e.g. `tar-1.26-35.el7.src.rpm`.
    source_rpm: Option<String>,
}

impl<'de> Deserialize<'de> for PackageMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = PackageMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("package metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PackageMetadata, A::Error> {
                let mut metadata = PackageMetadata::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        "epoch" => metadata.epoch = map.next_value::<Lenient<u64>>()?.0,
                        "source" => metadata.source = map.next_value::<Lenient<String>>()?.0,
                        "sourceRpm" => metadata.source_rpm = map.next_value::<Lenient<String>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(metadata)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PackageMetadata, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PackageMetadata::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<PackageMetadata, E> {
                Ok(PackageMetadata::default())
            }
        }
        deserializer.deserialize_any(MetadataVisitor)
    }
}

/// A metadata value caulk would like to read but can do without: one of an
/// unexpected type (a number as a string, an object) is read or skipped
/// rather than failing the report.
struct Lenient<T>(Option<T>);

impl<'de> Deserialize<'de> for Lenient<u64> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Lenient<String> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

/// How a scalar becomes the lenient value's type.
trait FromScalar: Sized {
    fn from_u64(v: u64) -> Option<Self>;
    fn from_str(v: &str) -> Option<Self>;
}

impl FromScalar for u64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
    fn from_str(v: &str) -> Option<Self> {
        v.trim().parse().ok()
    }
}

impl FromScalar for String {
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_str(v: &str) -> Option<Self> {
        (!v.trim().is_empty()).then(|| v.to_owned())
    }
}

impl<'de, T: FromScalar> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Lenient(T::from_u64(v)))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient(T::from_str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }
}

#[derive(Deserialize)]
struct Distro {
    name: Option<String>,
    version: Option<String>,
    /// A string in old Grype (`""`), a list in newer ones.
    #[serde(rename = "idLike", default)]
    id_like: IdLike,
}

#[derive(Default)]
struct IdLike(Vec<String>);

impl<'de> Deserialize<'de> for IdLike {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdLikeVisitor;
        impl<'de> Visitor<'de> for IdLikeVisitor {
            type Value = IdLike;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a distribution ID or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdLike, E> {
                Ok(IdLike(v.split_whitespace().map(str::to_owned).collect()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<IdLike, E> {
                Ok(IdLike::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IdLike, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<String>()? {
                    ids.push(id);
                }
                Ok(IdLike(ids))
            }
        }
        deserializer.deserialize_any(IdLikeVisitor)
    }
}

#[derive(Deserialize)]
struct Descriptor {
    version: Option<String>,
}

/// `source`: an image (`target` an object) or a directory or file (`target`
/// its path).
#[derive(Deserialize)]
struct Source {
    #[serde(default)]
    target: SourceTarget,
}

#[derive(Default)]
struct SourceTarget {
    name: Option<String>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct ImageTarget {
    #[serde(rename = "userInput")]
    user_input: Option<String>,
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
}

impl<'de> Deserialize<'de> for SourceTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = SourceTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an image description or a path")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SourceTarget, E> {
                Ok(SourceTarget { name: non_empty(v), platform: None })
            }
            fn visit_unit<E: de::Error>(self) -> Result<SourceTarget, E> {
                Ok(SourceTarget::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SourceTarget, A::Error> {
                let image = ImageTarget::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let platform =
                    image.architecture.filter(|a| !a.trim().is_empty()).map(|architecture| Platform {
                        // Image configs always carry `os`; without it the report
                        // was trimmed by hand, and container images are Linux.
                        os: image.os.filter(|o| !o.trim().is_empty()).unwrap_or_else(|| "linux".to_owned()),
                        architecture: goarch(&architecture),
                        variant: image.variant.filter(|v| !v.trim().is_empty()),
                    });
                Ok(SourceTarget { name: image.user_input.filter(|u| !u.trim().is_empty()), platform })
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// An entry of `alertsByPackage`.
#[derive(Deserialize)]
struct PackageAlerts<'a> {
    #[serde(borrow)]
    package: AlertedPackage<'a>,
    #[serde(borrow)]
    alerts: Option<Vec<Alert<'a>>>,
}

#[derive(Deserialize)]
struct AlertedPackage<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Alert<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
}

#[derive(Default)]
struct State<'de> {
    path: Vec<Segment>,
    findings: Vec<Finding>,
    /// The artifact id of each finding, to apply `alertsByPackage`.
    artifact_ids: Vec<Option<Text<'de>>>,
    matches: bool,
    /// Artifact ids with a `distro-eol` alert.
    end_of_life: BTreeSet<Cow<'de, str>>,
    /// Top-level keys that are not Grype's, to say what the input looks like.
    foreign_keys: Vec<String>,
    distro: Option<Distro>,
    source: Option<Source>,
    descriptor: Option<Descriptor>,
}

impl<'de> DeserializeSeed<'de> for &mut State<'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut State<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Grype JSON report (an object with matches)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.as_str() {
                "matches" => {
                    self.path.push(Segment::Key("matches"));
                    let (findings, artifact_ids) = (&mut self.findings, &mut self.artifact_ids);
                    map.next_value_seed(Elements::new(&mut self.path, |found: RawMatch<'de>| {
                        let (finding, artifact_id) = finding_of(found);
                        findings.push(finding);
                        artifact_ids.push(artifact_id);
                    }))?;
                    self.path.pop();
                    self.matches = true;
                }
                "alertsByPackage" => {
                    self.path.push(Segment::Key("alertsByPackage"));
                    let end_of_life = &mut self.end_of_life;
                    map.next_value_seed(Elements::new(&mut self.path, |entry: PackageAlerts<'de>| {
                        let eol = entry.alerts.iter().flatten().any(|alert| {
                            alert.kind.as_ref().is_some_and(|kind| kind.as_str() == "distro-eol")
                        });
                        if let (true, Some(id)) = (eol, entry.package.id) {
                            end_of_life.insert(id.0);
                        }
                    }))?;
                    self.path.pop();
                }
                "distro" => {
                    self.path.push(Segment::Key("distro"));
                    self.distro = map.next_value()?;
                    self.path.pop();
                }
                "source" => {
                    self.path.push(Segment::Key("source"));
                    self.source = map.next_value()?;
                    self.path.pop();
                }
                "descriptor" => {
                    self.path.push(Segment::Key("descriptor"));
                    self.descriptor = map.next_value()?;
                    self.path.pop();
                }
                other => {
                    if other != "ignoredMatches" && self.foreign_keys.len() < 8 {
                        self.foreign_keys.push(other.to_owned());
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The finding for one match, and its artifact's id.
fn finding_of(found: RawMatch<'_>) -> (Finding, Option<Text<'_>>) {
    let RawMatch { vulnerability, artifact } = found;
    let fixed_versions = fixed_versions(&vulnerability);
    let status = match &vulnerability.fix {
        Some(fix) => fix_status(fix.state.as_ref().map_or("", Text::as_str), !fixed_versions.is_empty()),
        // Grype 0.7 only says whether a fixed version is known.
        None if fixed_versions.is_empty() => FixStatus::Unknown,
        None => FixStatus::Fixed,
    };
    let kind = artifact.kind.as_ref().map(Text::as_str).unwrap_or_default();
    let purl = artifact.purl.and_then(Text::non_empty);
    let ecosystem = if kind.trim().is_empty() {
        purl.as_deref().and_then(ecosystem::ecosystem_of_purl).unwrap_or("unknown").to_owned()
    } else {
        ecosystem::ecosystem(kind)
    };
    let class = if ecosystem::is_os_package(&ecosystem) { PackageClass::Os } else { PackageClass::Library };
    let installed_version =
        installed_version(&ecosystem, artifact.version.as_str(), &artifact.metadata, purl.as_deref());
    let location = match class {
        PackageClass::Os => None,
        PackageClass::Library => artifact
            .locations
            .into_iter()
            .flatten()
            .find_map(|location| location.path.and_then(Text::non_empty)),
    };
    let source_package = artifact
        .upstreams
        .into_iter()
        .flatten()
        .find_map(|upstream| upstream.name.and_then(Text::non_empty))
        .or(artifact.metadata.source)
        .or_else(|| artifact.metadata.source_rpm.as_deref().and_then(source_rpm_name))
        .or_else(|| purl.as_deref().and_then(purl_upstream));
    let finding = Finding {
        vulnerability: vulnerability.id.0.into_owned(),
        package: artifact.name.0.into_owned(),
        installed_version,
        fixed_versions,
        status,
        ecosystem,
        class,
        location,
        severity: vulnerability.severity.as_ref().map_or(Severity::Unknown, |s| severity(s.as_str())),
        purl,
        source_package,
        title: None,
    };
    (finding, artifact.id)
}

fn fixed_versions(vulnerability: &RawVulnerability<'_>) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    if let Some(fix) = &vulnerability.fix {
        versions.extend(fix.versions.iter().flatten().filter_map(|v| non_empty(v.as_str())));
        if versions.is_empty() {
            versions.extend(
                fix.available
                    .iter()
                    .flatten()
                    .filter_map(|a| a.version.as_ref())
                    .filter_map(|v| non_empty(v.as_str())),
            );
        }
    }
    if versions.is_empty()
        && let Some(fixed) = &vulnerability.fixed_in_version
    {
        versions.extend(fixed.as_str().split(',').filter_map(non_empty));
    }
    versions
}

/// Grype's `fix.state`: `fixed`, `not-fixed`, `wont-fix`, `unknown` or ``.
fn fix_status(state: &str, has_fix: bool) -> FixStatus {
    let state = state.trim();
    if state.eq_ignore_ascii_case("not-fixed") {
        FixStatus::Affected
    } else if state.eq_ignore_ascii_case("wont-fix") {
        FixStatus::WillNotFix
    } else if has_fix {
        // `fixed`, `unknown`, `` and states to come: a listed fixed version
        // is the evidence that counts.
        FixStatus::Fixed
    } else {
        FixStatus::Unknown
    }
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

/// The installed version as the package database shows it. syft has not
/// always put the rpm epoch into `version`: then it comes from the
/// metadata, or the purl's `epoch` qualifier.
fn installed_version(
    ecosystem: &str,
    version: &str,
    metadata: &PackageMetadata,
    purl: Option<&str>,
) -> String {
    if ecosystem != "rpm" || has_epoch(version) {
        return version.to_owned();
    }
    match metadata.epoch.or_else(|| purl.and_then(purl_epoch)) {
        Some(epoch) => format!("{epoch}:{version}"),
        None => version.to_owned(),
    }
}

/// Whether `version` starts with `EPOCH:`.
fn has_epoch(version: &str) -> bool {
    version
        .split_once(':')
        .is_some_and(|(epoch, _)| !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()))
}

/// The `epoch` qualifier of a purl (`pkg:rpm/rhel/tar@1.26?arch=x86_64&epoch=2`).
fn purl_epoch(purl: &str) -> Option<u64> {
    let (_, qualifiers) = purl.split_once('?')?;
    let qualifiers = qualifiers.split('#').next().unwrap_or_default();
    qualifiers.split('&').find_map(|pair| pair.strip_prefix("epoch=")).and_then(|epoch| epoch.parse().ok())
}

/// The source package in a purl's `upstream` qualifier, which syft writes
/// as a name (`openssl`), `name@version` (`shadow%401%3A4.13`) or a source
/// rpm (`tar-1.26-35.el7.src.rpm`).
fn purl_upstream(purl: &str) -> Option<String> {
    let (_, qualifiers) = purl.split_once('?')?;
    let qualifiers = qualifiers.split('#').next().unwrap_or_default();
    let upstream = percent_decode(qualifiers.split('&').find_map(|pair| pair.strip_prefix("upstream="))?);
    if upstream.ends_with(".src.rpm") {
        source_rpm_name(&upstream)
    } else {
        non_empty(upstream.split('@').next().unwrap_or_default())
    }
}

/// `%XX` escapes decoded; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The package name of a source rpm file name: `tar-1.26-35.el7.src.rpm` →
/// `tar` (name, version and release are separated by the last two dashes).
fn source_rpm_name(source_rpm: &str) -> Option<String> {
    let stem = source_rpm.trim().strip_suffix(".rpm")?;
    let stem = stem.strip_suffix(".src").or_else(|| stem.strip_suffix(".nosrc")).unwrap_or(stem);
    let (name_version, _release) = stem.rsplit_once('-')?;
    let (name, _version) = name_version.rsplit_once('-')?;
    non_empty(name)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
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

impl State<'_> {
    fn finish(self) -> Result<Findings, Error> {
        if !self.matches {
            return Err(not_grype(&self.foreign_keys));
        }
        let mut findings = self.findings;
        if !self.end_of_life.is_empty() {
            // The distribution no longer publishes fixes: what has none now
            // will not get one.
            for (finding, id) in findings.iter_mut().zip(&self.artifact_ids) {
                let unfixed = matches!(finding.status, FixStatus::Affected | FixStatus::Unknown);
                if unfixed
                    && finding.fixed_versions.is_empty()
                    && id.as_ref().is_some_and(|id| self.end_of_life.contains(id.as_str()))
                {
                    finding.status = FixStatus::EndOfLife;
                }
            }
        }
        let os = self.distro.and_then(|distro| {
            let family = distro
                .name
                .filter(|n| !n.trim().is_empty())
                .or_else(|| distro.id_like.0.into_iter().find(|id| !id.trim().is_empty()))?;
            Some(OsInfo {
                family: family.trim().to_ascii_lowercase(),
                version: distro.version.unwrap_or_default(),
            })
        });
        let target = self.source.map(|source| source.target).unwrap_or_default();
        Ok(Findings {
            scanner: Some(match self.descriptor.and_then(|d| d.version).filter(|v| !v.trim().is_empty()) {
                Some(version) => format!("Grype {version}"),
                None => "Grype".to_owned(),
            }),
            artifact: target.name,
            os,
            platform: target.platform,
            findings,
        })
    }

    /// The plugin error for a serde_json error, naming where it happened.
    fn describe(&self, err: &serde_json::Error) -> Error {
        let at =
            if self.path.is_empty() { String::new() } else { format!(" at {}", path_string(&self.path)) };
        Error::malformed(match err.classify() {
            Category::Eof => format!("the report ends too early{at} (is it truncated?): {err}"),
            Category::Syntax => format!("the report is not valid JSON{at}: {err}"),
            Category::Data | Category::Io => format!("malformed Grype report{at}: {err}"),
        })
    }
}

/// The error for a JSON object that is not a Grype report, with a guess at
/// what it is from its keys.
fn not_grype(keys: &[String]) -> Error {
    let has = |key: &str| keys.iter().any(|k| k == key);
    let found = if keys.is_empty() {
        "an empty object".to_owned()
    } else {
        format!("an object with keys {}", keys.join(", "))
    };
    let error =
        Error::malformed(format!("not a Grype report: expected matches at the top level, found {found}"));
    if has("SchemaVersion") || has("Results") {
        error.with_hint("this looks like a Trivy report: use `--scanner trivy`")
    } else if has("updates") {
        error.with_hint("this looks like a Copa UpdateManifest: use `--scanner native`")
    } else if has("bomFormat") || has("spdxVersion") || has("artifacts") {
        error.with_hint("this is an SBOM, not a vulnerability report; scan it with `grype sbom:FILE -o json`")
    } else {
        error.with_hint("write the report with `grype IMAGE -o json`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        let with = PackageMetadata { epoch: Some(2), ..PackageMetadata::default() };
        let without = PackageMetadata::default();
        assert_eq!(installed_version("rpm", "1.26-35.el7", &with, None), "2:1.26-35.el7");
        assert_eq!(installed_version("rpm", "2:1.26-35.el7", &with, None), "2:1.26-35.el7");
        assert_eq!(
            installed_version("rpm", "1.26", &without, Some("pkg:rpm/rhel/tar@1.26?epoch=3&arch=x")),
            "3:1.26"
        );
        assert_eq!(installed_version("rpm", "1.26", &without, Some("pkg:rpm/rhel/tar@1.26")), "1.26");
        // Epoch 0 is an epoch the database records, and rpm shows it.
        let zero = PackageMetadata { epoch: Some(0), ..PackageMetadata::default() };
        assert_eq!(installed_version("rpm", "1.0-1", &zero, None), "0:1.0-1");
        assert_eq!(installed_version("deb", "1.0-1", &with, None), "1.0-1");
    }

    #[test]
    fn purl_upstreams() {
        assert_eq!(
            purl_upstream("pkg:deb/debian/libssl3@3.0.14?arch=amd64&upstream=openssl").as_deref(),
            Some("openssl")
        );
        assert_eq!(
            purl_upstream(
                "pkg:deb/debian/login@1%3A4.13?upstream=shadow%401%3A4.13%2Bdfsg1-1&distro=debian-12"
            )
            .as_deref(),
            Some("shadow")
        );
        assert_eq!(
            purl_upstream("pkg:rpm/rhel/tar@1.26?epoch=2&upstream=tar-1.26-35.el7.src.rpm").as_deref(),
            Some("tar")
        );
        assert_eq!(purl_upstream("pkg:pypi/flask@1.1.2"), None);
        assert_eq!(percent_decode("a%2Bb%zz%4"), "a+b%zz%4");
    }

    #[test]
    fn source_rpm_names() {
        assert_eq!(source_rpm_name("tar-1.26-35.el7.src.rpm").as_deref(), Some("tar"));
        assert_eq!(
            source_rpm_name("openssl-libs-1.0.2k-16.el7_6.1.src.rpm").as_deref(),
            Some("openssl-libs")
        );
        assert_eq!(source_rpm_name("foo-1.2-3.rpm").as_deref(), Some("foo"));
        assert_eq!(source_rpm_name("garbage"), None);
        assert_eq!(source_rpm_name("-1-2.src.rpm"), None);
    }
}
