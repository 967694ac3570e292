//! OpenVEX output: one `fixed` statement per vulnerability a patch fixed,
//! naming the patched image (`pkg:oci/…` with its digest, registry and
//! namespace) as the product and each updated package as a subcomponent
//! with its package URL. Copa-compatible in shape.

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
    /// GOARCH of the patched platform (`amd64`).
    pub architecture: String,
}

/// Builds the document; `timestamp` is RFC 3339.
pub fn document(subject: &Subject, fixed: &[FixedPackage], author: &str, timestamp: &str) -> Document {
    let product_id = oci_purl(&subject.reference, &subject.digest, &subject.architecture);
    let mut by_vuln: BTreeMap<&str, Vec<Subcomponent>> = BTreeMap::new();
    for package in fixed {
        let id = package_purl(package, subject);
        for vuln in &package.vulnerabilities {
            let subs = by_vuln.entry(vuln.as_str()).or_default();
            if !subs.iter().any(|s| s.id == id) {
                subs.push(Subcomponent { id: id.clone() });
            }
        }
    }
    let statements: Vec<Statement> = by_vuln
        .into_iter()
        .map(|(vuln, mut subcomponents)| {
            subcomponents.sort();
            Statement {
                vulnerability: Vulnerability { name: vuln.to_owned() },
                products: vec![Product { id: product_id.clone(), subcomponents }],
                status: "fixed".to_owned(),
            }
        })
        .collect();
    finish(statements, author, timestamp)
}

/// One document for the platforms of an index: per vulnerability, a
/// product for each platform manifest it was fixed in (from that
/// platform's own document), and the index (`index_product`) with every
/// platform's fixed packages.
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
            let index = Product { id: index_product.to_owned(), subcomponents: all };
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
    // Like OpenVEX's canonical ids: a digest of what the document states.
    let canonical = serde_json::to_vec(&statements).expect("statements serialise");
    let id = format!("https://openvex.dev/docs/public/vex-{}", hex::encode(Sha256::digest(&canonical)));
    Document {
        context: CONTEXT.to_owned(),
        id,
        author: author.to_owned(),
        timestamp: timestamp.to_owned(),
        version: 1,
        tooling: format!("caulk {}", env!("CARGO_PKG_VERSION")),
        statements,
    }
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

/// The package URL of an updated package, by ecosystem.
pub fn package_purl(package: &FixedPackage, subject: &Subject) -> String {
    let os_id = subject.os_id.clone().unwrap_or_default();
    let distro = match (&subject.os_id, &subject.os_version) {
        (Some(id), Some(version)) => format!("{id}-{version}"),
        (Some(id), None) => id.clone(),
        _ => String::new(),
    };
    let arch = purl_arch(&package.ecosystem, &subject.architecture);
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
            let (epoch, version) = match package.version.split_once(':') {
                Some((e, v)) if e.chars().all(|c| c.is_ascii_digit()) => (e.to_owned(), v.to_owned()),
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
            // PyPI names compare in their PEP 503 form, as the purl spec asks.
            let name = caulk_sdk::names::pep503(&package.name);
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

/// Architecture names as each packaging world spells them.
fn purl_arch(ecosystem: &str, goarch: &str) -> String {
    let mapped = match (ecosystem, goarch) {
        ("rpm" | "apk", "amd64") => "x86_64",
        ("rpm" | "apk", "arm64") => "aarch64",
        ("rpm" | "apk", "386") => "x86",
        ("deb", "386") => "i386",
        ("deb", "arm") => "armhf",
        (_, other) => other,
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
            },
            FixedPackage {
                ecosystem: "deb".into(),
                name: "libssl3".into(),
                version: "3.0.15-1~deb12u1".into(),
                vulnerabilities: vec!["CVE-2024-5535".into()],
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
        // The id depends on what is stated, not on when.
        let again = document(&subject(), &fixed, "caulk", "2027-01-01T00:00:00Z");
        assert_eq!(doc.id, again.id);
    }

    #[test]
    fn an_index_document_names_each_platform_manifest_and_the_index() {
        let package = |name: &str, vulns: &[&str]| FixedPackage {
            ecosystem: "deb".into(),
            name: name.into(),
            version: "2".into(),
            vulnerabilities: vulns.iter().map(|v| (*v).to_owned()).collect(),
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
        assert_eq!(both[0].id, "pkg:oci/debian@sha256%3A1dx?tag=12");
        assert_eq!(both[0].subcomponents.len(), 2, "the index has every platform's packages");
        assert!(both[1].id.contains("0123abcd") && both[1].id.contains("arch=amd64"), "{}", both[1].id);
        assert!(both[2].id.contains("feed") && both[2].id.contains("arch=arm64"), "{}", both[2].id);
        assert!(
            both[2].subcomponents[0].id.contains("libssl3")
                && both[2].subcomponents[0].id.contains("arch=arm64")
        );
        assert_eq!(doc.statements[1].products.len(), 2, "CVE-2 was fixed on amd64 only");
    }
}
