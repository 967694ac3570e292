//! OpenVEX output: one `fixed` statement per vulnerability a patch fixed,
//! naming the patched image as the product and each updated package as a
//! subcomponent with its package URL. Copa-compatible in shape.
//!
//! Scanners that read VEX (Trivy's `--vex`, Grype's) match a statement to
//! what they scanned by package URL, and a qualifier the document has must
//! be in the scanned URL with the same value. So the product's `@id` is
//! `pkg:oci/NAME@DIGEST` with no qualifiers (the digest alone is exact;
//! the URL with `repository_url`, `tag` and `arch` follows as an
//! identifier), and a package the report named with a URL keeps the
//! report's URL, moved to the version now installed: the scanner that wrote
//! the report finds its own qualifiers there (Trivy's
//! `distro=debian-12.8`, `arch=all`, `epoch=1`). Without one the URL is
//! built from the image (`?arch=…&distro=ID-VERSION_ID`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The OpenVEX context caulk writes.
pub const CONTEXT: &str = "https://openvex.dev/ns/v0.2.0";

/// An OpenVEX document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Document {
    #[serde(rename = "@context")]
    pub context: String,
    #[serde(rename = "@id")]
    pub id: String,
    pub author: String,
    pub timestamp: String,
    pub version: u32,
    pub tooling: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Statement {
    pub vulnerability: Vulnerability,
    pub products: Vec<Product>,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Vulnerability {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Product {
    #[serde(rename = "@id")]
    pub id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identifiers: BTreeMap<String, String>,
    pub subcomponents: Vec<Subcomponent>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subcomponent {
    #[serde(rename = "@id")]
    pub id: String,
}

/// One package a patch moved to a fixed version.
#[derive(Debug, Clone)]
pub struct FixedPackage {
    /// `deb`, `rpm`, `apk`, `python`, ...
    pub ecosystem: String,
    pub name: String,
    /// The version installed now.
    pub version: String,
    pub vulnerabilities: Vec<String>,
    /// The package URL the report gave the package (of the version it
    /// found), if any.
    pub report_purl: Option<String>,
}

/// What the document is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The patched image's reference as the user will know it
    /// (`registry/namespace/name:tag`, or just `name:tag`).
    pub reference: String,
    /// The patched image's manifest digest (`sha256:…`).
    pub digest: String,
    /// OS release `ID` (`debian`) and `VERSION_ID` (`12`), for distro qualifiers.
    pub os_id: Option<String>,
    pub os_version: Option<String>,
    /// GOARCH of the patched platform (`amd64`) and its variant (`v7`).
    pub architecture: String,
    pub variant: Option<String>,
}

/// Builds the document; `timestamp` is RFC 3339.
pub fn document(subject: &Subject, fixed: &[FixedPackage], author: &str, timestamp: &str) -> Document {
    let mut by_vuln: BTreeMap<&str, Vec<Subcomponent>> = BTreeMap::new();
    for package in fixed {
        let id = package_purl(package, subject);
        // A crafted report's blank id would make a statement about nothing.
        for vuln in package.vulnerabilities.iter().filter(|v| !v.trim().is_empty()) {
            let subs = by_vuln.entry(vuln.as_str()).or_default();
            if !subs.iter().any(|s| s.id == id) {
                subs.push(Subcomponent { id: id.clone() });
            }
        }
    }
    let image = oci_purl(&subject.reference, &subject.digest, &subject.architecture);
    let statements: Vec<Statement> = by_vuln
        .into_iter()
        .map(|(vuln, mut subcomponents)| {
            subcomponents.sort();
            Statement {
                vulnerability: Vulnerability { name: vuln.to_owned() },
                products: vec![image_product(image.clone(), subcomponents)],
                status: "fixed".to_owned(),
            }
        })
        .collect();
    finish(statements, author, timestamp)
}

/// An image (a manifest or an index) as a product: its package URL
/// without qualifiers as the `@id`, the `qualified` one as an identifier
/// (module docs).
fn image_product(qualified: String, subcomponents: Vec<Subcomponent>) -> Product {
    Product {
        id: bare(&qualified).to_owned(),
        identifiers: BTreeMap::from([("purl".to_owned(), qualified)]),
        subcomponents,
    }
}

/// A package URL without its qualifiers and subpath.
fn bare(purl: &str) -> &str {
    purl.split(['?', '#']).next().unwrap_or(purl)
}

/// One document for the platforms of an index: per vulnerability, a
/// product for each platform manifest it was fixed in (from that
/// platform's own document), and the index (`index_product`, its package
/// URL) with every platform's fixed packages.
pub fn merge(platforms: &[Document], index_product: &str, author: &str, timestamp: &str) -> Document {
    let mut by_vuln: BTreeMap<&str, Vec<Product>> = BTreeMap::new();
    for document in platforms {
        for statement in &document.statements {
            by_vuln
                .entry(statement.vulnerability.name.as_str())
                .or_default()
                .extend(statement.products.iter().cloned());
        }
    }
    let statements = by_vuln
        .into_iter()
        .map(|(vuln, products)| {
            let mut all: Vec<Subcomponent> =
                products.iter().flat_map(|p| p.subcomponents.iter().cloned()).collect();
            all.sort();
            all.dedup();
            let index = image_product(index_product.to_owned(), all);
            Statement {
                vulnerability: Vulnerability { name: vuln.to_owned() },
                products: std::iter::once(index).chain(products).collect(),
                status: "fixed".to_owned(),
            }
        })
        .collect();
    finish(statements, author, timestamp)
}

fn finish(statements: Vec<Statement>, author: &str, timestamp: &str) -> Document {
    let mut document = Document {
        context: CONTEXT.to_owned(),
        id: String::new(),
        author: author.to_owned(),
        timestamp: timestamp.to_owned(),
        version: 1,
        tooling: format!("caulk {}", env!("CARGO_PKG_VERSION")),
        statements,
    };
    // Like OpenVEX's canonical ids: a digest of the whole document, author
    // and timestamp included, so two documents that differ in anything
    // (each at version 1) never share an id. SOURCE_DATE_EPOCH fixes the
    // timestamp, and with it the id, for reproducible runs.
    let canonical = serde_json::to_vec(&document).expect("documents serialise");
    document.id = format!("https://openvex.dev/docs/public/vex-{}", hex::encode(Sha256::digest(&canonical)));
    document
}

/// Percent-encodes per the purl spec: everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Qualifiers in the purl spec's order (sorted by key), values encoded;
/// `/` stays readable in values such as `repository_url`.
fn qualifiers(pairs: &mut [(&str, String)]) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v).replace("%2F", "/")))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// `pkg:oci/NAME@DIGEST?arch=…&repository_url=REGISTRY/NAMESPACE/NAME&tag=TAG`.
pub fn oci_purl(reference: &str, digest: &str, architecture: &str) -> String {
    let (without_digest, _) = reference.split_once('@').unwrap_or((reference, ""));
    // A tag is after the last ':' that follows the last '/' (a registry port is not a tag).
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match without_digest[last_slash..].rfind(':') {
        Some(i) => (&without_digest[..last_slash + i], &without_digest[last_slash + i + 1..]),
        None => (without_digest, ""),
    };
    let name = repository.rsplit('/').next().unwrap_or(repository).to_ascii_lowercase();
    let repository_url = if repository.contains('/') { repository.to_owned() } else { String::new() };
    let mut pairs =
        [("arch", architecture.to_owned()), ("repository_url", repository_url), ("tag", tag.to_owned())];
    format!("pkg:oci/{}@{}{}", encode(&name), encode(digest), qualifiers(&mut pairs))
}

/// The purl type of an ecosystem's packages.
fn purl_type(ecosystem: &str) -> Option<&'static str> {
    Some(match ecosystem {
        "deb" => "deb",
        "apk" => "apk",
        "rpm" => "rpm",
        "python" => "pypi",
        "npm" => "npm",
        _ => return None,
    })
}

/// Qualifiers of a report's URL that a new version leaves true: syft's
/// `upstream` names the source package's version, which moves with it.
const KEPT_QUALIFIERS: &[&str] = &["arch", "distro"];

/// `report_purl` (a scanner's URL for the package as it found it) moved to
/// `version`, with the qualifiers of [`KEPT_QUALIFIERS`]. The epoch is a
/// qualifier for rpm and wherever the report had one (Trivy's deb URLs),
/// else part of the version; an epoch of 0 is none. `None` when the URL is
/// not one of this ecosystem's, or names no package.
fn rebased(report_purl: &str, ecosystem: &str, version: &str) -> Option<String> {
    let rest = report_purl.strip_prefix("pkg:")?;
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(end);
    let (name_path, _) = path.rsplit_once('@')?;
    let segments: Vec<&str> = name_path.split('/').collect();
    if segments.len() < 2
        || segments[0] != purl_type(ecosystem)?
        || segments.last().is_some_and(|n| n.is_empty())
    {
        return None;
    }
    let (query, fragment) = match tail.split_once('#') {
        Some((q, f)) => (q, format!("#{f}")),
        None => (tail, String::new()),
    };
    let mut had_epoch = false;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase();
        had_epoch |= key == "epoch";
        if KEPT_QUALIFIERS.contains(&key.as_str()) && !value.is_empty() {
            pairs.push((key, value.to_owned()));
        }
    }
    let (epoch, bare) = match version.split_once(':') {
        Some((e, v)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(e).filter(|e| !e.trim_start_matches('0').is_empty()), v)
        }
        _ => (None, version),
    };
    let version = if ecosystem == "rpm" || had_epoch {
        if let Some(epoch) = epoch {
            pairs.push(("epoch".to_owned(), epoch.to_owned()));
        }
        bare.to_owned()
    } else {
        epoch.map_or_else(|| bare.to_owned(), |e| format!("{e}:{bare}"))
    };
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    Some(format!("pkg:{name_path}@{}{query}{fragment}", encode(&version)))
}

/// The package URL of an updated package: the report's, moved to the new
/// version, where the report gave one (module docs); else one built by
/// ecosystem.
pub fn package_purl(package: &FixedPackage, subject: &Subject) -> String {
    if let Some(purl) =
        package.report_purl.as_deref().and_then(|purl| rebased(purl, &package.ecosystem, &package.version))
    {
        return purl;
    }
    let os_id = subject.os_id.clone().unwrap_or_default();
    let distro = match (&subject.os_id, &subject.os_version) {
        (Some(id), Some(version)) => format!("{id}-{version}"),
        (Some(id), None) => id.clone(),
        _ => String::new(),
    };
    let arch = purl_arch(&package.ecosystem, &subject.architecture, subject.variant.as_deref());
    match package.ecosystem.as_str() {
        "deb" => {
            let mut q = [("arch", arch), ("distro", distro)];
            format!(
                "pkg:deb/{}/{}@{}{}",
                encode(&os_id),
                encode(&package.name),
                encode(&package.version),
                qualifiers(&mut q)
            )
        }
        "apk" => {
            let mut q = [("arch", arch), ("distro", distro)];
            format!(
                "pkg:apk/{}/{}@{}{}",
                encode(&os_id),
                encode(&package.name),
                encode(&package.version),
                qualifiers(&mut q)
            )
        }
        "rpm" => {
            // rpm purls carry the epoch as a qualifier, not in the version.
            // Epoch 0 is no epoch: scanners leave the qualifier out then.
            let (epoch, version) = match package.version.split_once(':') {
                Some((e, v)) if e.chars().all(|c| c.is_ascii_digit()) => (
                    if e.trim_start_matches('0').is_empty() { String::new() } else { e.to_owned() },
                    v.to_owned(),
                ),
                _ => (String::new(), package.version.clone()),
            };
            let mut q = [("arch", arch), ("distro", distro), ("epoch", epoch)];
            format!(
                "pkg:rpm/{}/{}@{}{}",
                encode(&os_id),
                encode(&package.name),
                encode(&version),
                qualifiers(&mut q)
            )
        }
        "python" => {
            // The purl spec's pypi name: lowercased, `_` as `-` (not PEP
            // 503's whole normalisation, which also turns `.` into `-`:
            // `jaraco.collections` stays as scanners write it).
            let name = package.name.to_ascii_lowercase().replace('_', "-");
            format!("pkg:pypi/{}@{}", encode(&name), encode(&package.version))
        }
        "npm" => {
            format!("pkg:npm/{}@{}", encode(&package.name).replace("%2F", "/"), encode(&package.version))
        }
        other => format!(
            "pkg:generic/{}@{}?ecosystem={}",
            encode(&package.name),
            encode(&package.version),
            encode(other)
        ),
    }
}

/// Architecture names as each packaging world spells them, from GOARCH
/// and its variant (`arm` `v7`).
fn purl_arch(ecosystem: &str, goarch: &str, variant: Option<&str>) -> String {
    let mapped = match (ecosystem, goarch, variant) {
        ("rpm" | "apk", "amd64", _) => "x86_64",
        ("rpm" | "apk", "arm64", _) => "aarch64",
        ("apk", "386", _) => "x86",
        ("rpm", "386", _) => "i686",
        ("apk", "arm", Some("v6" | "v5")) => "armhf",
        ("apk", "arm", _) => "armv7",
        ("rpm", "arm", _) => "armv7hl",
        ("deb", "386", _) => "i386",
        ("deb", "arm", Some("v6" | "v5")) => "armel",
        ("deb", "arm", _) => "armhf",
        ("deb", "ppc64le", _) => "ppc64el",
        ("deb", "mips64le", _) => "mips64el",
        (_, other, _) => other,
    };
    mapped.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            reference: "127.0.0.1:5000/team/app/debian:12-patched".into(),
            digest: "sha256:0123abcd".into(),
            os_id: Some("debian".into()),
            os_version: Some("12".into()),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    #[test]
    fn the_product_keeps_registry_namespace_tag_and_digest() {
        assert_eq!(
            oci_purl("127.0.0.1:5000/team/app/debian:12-patched", "sha256:0123abcd", "amd64"),
            "pkg:oci/debian@sha256%3A0123abcd?arch=amd64&repository_url=127.0.0.1%3A5000/team/app/debian&tag=12-patched"
        );
        assert_eq!(
            oci_purl("debian:12", "sha256:ab", "arm64"),
            "pkg:oci/debian@sha256%3Aab?arch=arm64&tag=12"
        );
        assert_eq!(
            oci_purl("localhost:5000/debian", "sha256:ab", "amd64"),
            "pkg:oci/debian@sha256%3Aab?arch=amd64&repository_url=localhost%3A5000/debian"
        );
    }

    #[test]
    fn package_urls_per_ecosystem() {
        let s = subject();
        let p = |ecosystem: &str, name: &str, version: &str| FixedPackage {
            ecosystem: ecosystem.into(),
            name: name.into(),
            version: version.into(),
            vulnerabilities: vec![],
            report_purl: None,
        };
        assert_eq!(
            package_purl(&p("deb", "libssl3", "3.0.15-1~deb12u1"), &s),
            "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            package_purl(&p("deb", "bsdutils", "1:2.38.1-5+deb12u3"), &s),
            "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            package_purl(&p("rpm", "openssl-libs", "1:1.0.2k-19.el7"), &s),
            "pkg:rpm/debian/openssl-libs@1.0.2k-19.el7?arch=x86_64&distro=debian-12&epoch=1"
        );
        assert_eq!(
            package_purl(&p("rpm", "bash", "0:5.1.8-9.el9"), &s),
            "pkg:rpm/debian/bash@5.1.8-9.el9?arch=x86_64&distro=debian-12",
            "epoch 0 is no epoch"
        );
        assert_eq!(
            package_purl(&p("python", "jaraco.collections", "5.1.0"), &s),
            "pkg:pypi/jaraco.collections@5.1.0",
            "the purl spec keeps dots"
        );
        let armel = Subject { architecture: "arm".into(), variant: Some("v5".into()), ..subject() };
        assert!(package_purl(&p("deb", "libc6", "2.36"), &armel).contains("arch=armel"));
        let ppc = Subject { architecture: "ppc64le".into(), ..subject() };
        assert!(package_purl(&p("deb", "libc6", "2.36"), &ppc).contains("arch=ppc64el"));
        assert_eq!(package_purl(&p("python", "Jinja2", "3.1.4"), &s), "pkg:pypi/jinja2@3.1.4");
        assert_eq!(
            package_purl(&p("python", "typing_extensions", "4.12.2"), &s),
            "pkg:pypi/typing-extensions@4.12.2"
        );
    }

    #[test]
    fn apk_package_urls_name_the_distribution_and_its_release() {
        let package = FixedPackage {
            ecosystem: "apk".into(),
            name: "libssl3".into(),
            version: "3.1.4-r5".into(),
            vulnerabilities: vec![],
            report_purl: None,
        };
        let alpine = Subject { os_id: Some("alpine".into()), os_version: Some("3.19.1".into()), ..subject() };
        assert_eq!(
            package_purl(&package, &alpine),
            "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1"
        );
        let wolfi = Subject {
            os_id: Some("wolfi".into()),
            os_version: Some("20230201".into()),
            architecture: "arm64".into(),
            ..subject()
        };
        let busybox = FixedPackage { name: "busybox".into(), version: "1.36.1_p1-r0".into(), ..package };
        assert_eq!(
            package_purl(&busybox, &wolfi),
            "pkg:apk/wolfi/busybox@1.36.1_p1-r0?arch=aarch64&distro=wolfi-20230201"
        );
    }

    #[test]
    fn one_statement_per_vulnerability_with_every_package_it_touched() {
        let fixed = vec![
            FixedPackage {
                ecosystem: "deb".into(),
                name: "openssl".into(),
                version: "3.0.15-1~deb12u1".into(),
                vulnerabilities: vec!["CVE-2024-5535".into(), "CVE-2024-6119".into()],
                report_purl: None,
            },
            FixedPackage {
                ecosystem: "deb".into(),
                name: "libssl3".into(),
                version: "3.0.15-1~deb12u1".into(),
                vulnerabilities: vec!["CVE-2024-5535".into(), " ".into()],
                report_purl: None,
            },
        ];
        let doc = document(&subject(), &fixed, "caulk", "2026-11-26T20:00:00Z");
        assert_eq!(doc.statements.len(), 2);
        let first = &doc.statements[0];
        assert_eq!(first.vulnerability.name, "CVE-2024-5535");
        assert_eq!(first.status, "fixed");
        assert_eq!(first.products[0].subcomponents.len(), 2);
        assert_eq!(doc.statements[1].products[0].subcomponents.len(), 1);
        assert!(doc.id.starts_with("https://openvex.dev/docs/public/vex-"));
        // The product is the image by digest alone; the full URL follows.
        let product = &first.products[0];
        assert_eq!(product.id, "pkg:oci/debian@sha256%3A0123abcd");
        assert_eq!(
            product.identifiers["purl"],
            "pkg:oci/debian@sha256%3A0123abcd?arch=amd64&repository_url=127.0.0.1%3A5000/team/app/debian&tag=12-patched"
        );
        // The same document has the same id; another timestamp or author
        // makes another document, with another id.
        assert_eq!(doc.id, document(&subject(), &fixed, "caulk", "2026-11-26T20:00:00Z").id);
        assert_ne!(doc.id, document(&subject(), &fixed, "caulk", "2027-01-01T00:00:00Z").id);
        assert_ne!(doc.id, document(&subject(), &fixed, "me", "2026-11-26T20:00:00Z").id);
    }

    #[test]
    fn a_package_the_report_named_keeps_the_reports_url_at_its_new_version() {
        let p = |ecosystem: &str, version: &str, report_purl: &str| FixedPackage {
            ecosystem: ecosystem.into(),
            name: "x".into(),
            version: version.into(),
            vulnerabilities: vec![],
            report_purl: Some(report_purl.into()),
        };
        let s = subject();
        for (package, want) in [
            // Trivy's own qualifiers, distro and arch=all included.
            (
                p("deb", "3.153", "pkg:deb/debian/adduser@3.152?arch=all&distro=debian-13.6"),
                "pkg:deb/debian/adduser@3.153?arch=all&distro=debian-13.6",
            ),
            // Trivy's epoch qualifier takes the new version's epoch.
            (
                p("deb", "1:2.41-6", "pkg:deb/debian/bsdutils@2.41-5?arch=amd64&distro=debian-13.6&epoch=1"),
                "pkg:deb/debian/bsdutils@2.41-6?arch=amd64&distro=debian-13.6&epoch=1",
            ),
            (
                p("rpm", "0:1.1-2", "pkg:rpm/redhat/x@1.0-1?arch=noarch&epoch=0"),
                "pkg:rpm/redhat/x@1.1-2?arch=noarch",
            ),
            (p("python", "3.1.5", "pkg:pypi/jaraco.collections@3.1.4"), "pkg:pypi/jaraco.collections@3.1.5"),
            (
                p("apk", "3.1.4-r6", "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64&distro=3.19.1"),
                "pkg:apk/alpine/libssl3@3.1.4-r6?arch=x86_64&distro=3.19.1",
            ),
        ] {
            assert_eq!(package_purl(&package, &s), want);
        }
        // Grype's: a version-bearing `upstream` goes, an epoch of 0 is
        // none, and rpm's epoch is a qualifier even where the report had
        // none to show.
        for (package, want) in [
            (
                p(
                    "rpm",
                    "1:3.0.7-28.el9",
                    "pkg:rpm/redhat/openssl-libs@1:3.0.7-27.el9?arch=x86_64&upstream=openssl-3.0.7-27.el9.src.rpm&distro=rhel-9.4",
                ),
                "pkg:rpm/redhat/openssl-libs@3.0.7-28.el9?arch=x86_64&distro=rhel-9.4&epoch=1",
            ),
            (
                p("rpm", "0:1.1-2.el9", "pkg:rpm/redhat/foo@1.0-1.el9?arch=noarch"),
                "pkg:rpm/redhat/foo@1.1-2.el9?arch=noarch",
            ),
            (
                p(
                    "deb",
                    "1:2.41-6",
                    "pkg:deb/debian/bsdutils@1:2.41-5?arch=amd64&upstream=util-linux%402.41-5&distro=debian-13",
                ),
                "pkg:deb/debian/bsdutils@1%3A2.41-6?arch=amd64&distro=debian-13",
            ),
        ] {
            assert_eq!(package_purl(&package, &s), want);
        }
        // Another ecosystem's URL, one naming no package, or none at all,
        // is not used.
        for wrong in ["pkg:npm/x@1", "not a purl", "pkg:deb@1", "pkg:deb/debian/@1", "pkg:deb/"] {
            let built = package_purl(&p("deb", "2", wrong), &s);
            assert_eq!(built, "pkg:deb/debian/x@2?arch=amd64&distro=debian-12", "{wrong}");
        }
    }

    #[test]
    fn an_index_document_names_each_platform_manifest_and_the_index() {
        let package = |name: &str, vulns: &[&str]| FixedPackage {
            ecosystem: "deb".into(),
            name: name.into(),
            version: "2".into(),
            vulnerabilities: vulns.iter().map(|v| (*v).to_owned()).collect(),
            report_purl: None,
        };
        let amd = document(&subject(), &[package("openssl", &["CVE-1", "CVE-2"])], "caulk", "t");
        let arm_subject = Subject { digest: "sha256:feed".into(), architecture: "arm64".into(), ..subject() };
        let arm = document(&arm_subject, &[package("libssl3", &["CVE-1"])], "caulk", "t");
        let index = oci_purl("debian:12", "sha256:1dx", "");
        let doc = merge(&[amd, arm], &index, "caulk", "t");
        let names: Vec<&str> = doc.statements.iter().map(|s| s.vulnerability.name.as_str()).collect();
        assert_eq!(names, ["CVE-1", "CVE-2"]);
        let both = &doc.statements[0].products;
        assert_eq!(both.len(), 3);
        assert_eq!(both[0].id, "pkg:oci/debian@sha256%3A1dx");
        assert_eq!(both[0].identifiers["purl"], "pkg:oci/debian@sha256%3A1dx?tag=12");
        assert_eq!(both[0].subcomponents.len(), 2, "the index has every platform's packages");
        assert!(both[1].id.ends_with("0123abcd") && both[1].identifiers["purl"].contains("arch=amd64"));
        assert!(both[2].id.ends_with("feed") && both[2].identifiers["purl"].contains("arch=arm64"));
        assert!(
            both[2].subcomponents[0].id.contains("libssl3")
                && both[2].subcomponents[0].id.contains("arch=arm64")
        );
        assert_eq!(doc.statements[1].products.len(), 2, "CVE-2 was fixed on amd64 only");
    }
}
