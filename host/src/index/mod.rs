//! Package-index look-ups the host answers for updaters (plugins do no I/O):
//! which versions an index publishes, with each release's runtime ranges
//! (`Requires-Python`, npm's `engines`) and whether it is yanked or
//! deprecated. Python indexes are answered here, npm registries in [`npm`].
//!
//! Python indexes are read through the simple API: the JSON form (PEP 691)
//! when the index offers it, else the HTML form (PEP 503) with its
//! `data-requires-python` and `data-yanked` attributes. TLS trusts the same
//! CA bundle the steps get (`--ca-bundle`, default the host's), so an
//! intercepting proxy's CA works; proxies come from the environment.
//!
//! Index URLs come from plugins, which read them from images (`pip.conf`,
//! `PIP_INDEX_URL`): each passes [`IndexUrl::parse`] before any request,
//! and credentials travel only in an `Authorization` header.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caulk_sdk::index_url::{IndexUrl, redact};
use caulk_sdk::names::pep503;
use serde::Deserialize;

use crate::model::{Answer, IndexQuery, PublishedVersion};

mod npm;

/// PyPI's simple index.
pub const PYPI: &str = "https://pypi.org/simple";

/// The index asked when a look-up names none, by ecosystem; `None` for
/// ecosystems caulk cannot look up.
pub fn default_index(ecosystem: &str) -> Option<&'static str> {
    match ecosystem {
        "python" => Some(PYPI),
        "npm" => Some(npm::REGISTRY),
        _ => None,
    }
}

/// Why a look-up in `ecosystem` cannot be answered.
pub fn unsupported(ecosystem: &str) -> String {
    format!("caulk cannot look up {ecosystem} packages; it looks up python and npm packages")
}

/// Answers look-ups, remembering each answer for the run.
pub struct IndexClient {
    agent: ureq::Agent,
    answers: Mutex<HashMap<(String, String), Answer>>,
}

impl std::fmt::Debug for IndexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexClient").finish_non_exhaustive()
    }
}

impl IndexClient {
    /// A client trusting the certificates in `ca_bundle` (PEM), or the
    /// host's bundle when `None` (falling back to the built-in roots).
    pub fn new(ca_bundle: Option<&Path>) -> Self {
        let bundle =
            ca_bundle.map_or_else(|| Path::new(caulk_exec::DEFAULT_CA_BUNDLE).to_owned(), Path::to_owned);
        let mut tls = ureq::tls::TlsConfig::builder();
        match std::fs::read(&bundle) {
            Ok(pem) => {
                let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if !certs.is_empty() {
                    tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
                }
            }
            Err(e) => {
                tracing::warn!(
                    "CA bundle {}: {e}; using built-in roots for index look-ups",
                    bundle.display()
                );
            }
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_mins(1)))
            .http_status_as_error(false)
            .build();
        Self { agent: config.into(), answers: Mutex::new(HashMap::new()) }
    }

    /// Answers one look-up.
    pub fn lookup(&self, query: &IndexQuery) -> Answer {
        let Some(default) = default_index(&query.ecosystem) else {
            return Answer::Unavailable(unsupported(&query.ecosystem));
        };
        let urls: Vec<String> =
            if query.index_urls.is_empty() { vec![default.to_owned()] } else { query.index_urls.clone() };
        let name = if query.ecosystem == "python" { pep503(&query.name) } else { query.name.clone() };
        let key = (format!("{} {}", query.ecosystem, urls.join(" ")), name);
        if let Some(answer) = self.answers.lock().expect("not poisoned").get(&key) {
            return answer.clone();
        }
        let answer = if query.ecosystem == "npm" {
            npm::lookup(&self.agent, &urls, &query.name)
        } else {
            self.python(&urls, &query.name)
        };
        self.answers.lock().expect("not poisoned").insert(key, answer.clone());
        answer
    }

    /// Versions of `name` across `urls`, merged; unavailable only when no
    /// index knows it.
    fn python(&self, urls: &[String], name: &str) -> Answer {
        let mut merged: BTreeMap<String, PublishedVersion> = BTreeMap::new();
        let mut problems = Vec::new();
        for text in urls {
            let url = match IndexUrl::parse(text) {
                Ok(url) => url,
                Err(e) => {
                    problems.push(format!("index URL {:?} is refused: {e}", redact(text)));
                    continue;
                }
            };
            match self.simple_page(&url, name) {
                Ok(versions) => {
                    for v in versions {
                        merged
                            .entry(v.version.clone())
                            .and_modify(|e| {
                                e.yanked &= v.yanked;
                                if e.requires_python.is_none() {
                                    e.requires_python.clone_from(&v.requires_python);
                                }
                            })
                            .or_insert(v);
                    }
                }
                Err(e) => problems.push(format!("{url}: {e}")),
            }
        }
        if merged.is_empty() {
            let why =
                if problems.is_empty() { "no versions published".to_owned() } else { problems.join("; ") };
            return Answer::Unavailable(format!("{name}: {why}"));
        }
        Answer::Versions(merged.into_values().collect())
    }

    fn simple_page(&self, base: &IndexUrl, name: &str) -> Result<Vec<PublishedVersion>, String> {
        let (content_type, body) = fetch(
            &self.agent,
            base,
            &base.project_page(&pep503(name)),
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )?;
        let files = if content_type.contains("json") { json_files(&body)? } else { html_files(&body) };
        Ok(versions_of(name, files))
    }
}

/// GETs `page` of the index at `base` (its credentials as a header):
/// the content type and the body, at most 64 MiB; a 404 says the index
/// does not know the package.
fn fetch(agent: &ureq::Agent, base: &IndexUrl, page: &str, accept: &str) -> Result<(String, String), String> {
    let mut request = agent.get(page).header("Accept", accept);
    if let Some(auth) = basic_auth(base) {
        request = request.header("Authorization", auth);
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let status = response.status();
    if status == 404 {
        return Err("not on this index".to_owned());
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body =
        response.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| e.to_string())?;
    Ok((content_type, body))
}

/// The Basic `Authorization` value for a URL's credentials.
fn basic_auth(url: &IndexUrl) -> Option<String> {
    use base64::Engine as _;
    let (user, password) = url.credentials()?;
    let pair = format!("{user}:{}", password.unwrap_or(""));
    Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
}

/// One distribution file an index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
struct File {
    filename: String,
    requires_python: Option<String>,
    yanked: bool,
}

#[derive(Deserialize)]
struct SimpleJson {
    files: Vec<SimpleJsonFile>,
}

#[derive(Deserialize)]
struct SimpleJsonFile {
    filename: String,
    #[serde(rename = "requires-python", default)]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: Yanked,
}

/// PEP 691: `false`, `true`, or a reason string (which means yanked).
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Yanked {
    #[default]
    No,
    Flag(bool),
    Reason(#[allow(dead_code)] String),
}

fn json_files(body: &str) -> Result<Vec<File>, String> {
    let doc: SimpleJson = serde_json::from_str(body).map_err(|e| format!("invalid simple-API JSON: {e}"))?;
    Ok(doc
        .files
        .into_iter()
        .map(|f| File {
            filename: f.filename,
            requires_python: f.requires_python.filter(|r| !r.trim().is_empty()),
            yanked: match f.yanked {
                Yanked::No | Yanked::Flag(false) => false,
                Yanked::Flag(true) | Yanked::Reason(_) => true,
            },
        })
        .collect())
}

fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in an HTML start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let rest = &tag[at..];
    let quote = rest.chars().next()?;
    if quote == '"' || quote == '\'' {
        let end = rest[1..].find(quote)?;
        Some(html_unescape(&rest[1..=end]))
    } else {
        Some(html_unescape(rest.split(|c: char| c.is_whitespace() || c == '>').next().unwrap_or("")))
    }
}

fn html_files(body: &str) -> Vec<File> {
    let mut files = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<a ") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else { break };
        let tag = &after[..tag_end];
        let Some(close) = after[tag_end..].find("</a>") else { break };
        let text = html_unescape(after[tag_end + 1..tag_end + close].trim());
        let filename = if text.is_empty() {
            attribute(tag, "href")
                .and_then(|h| h.split('#').next()?.rsplit('/').next().map(str::to_owned))
                .unwrap_or_default()
        } else {
            text
        };
        files.push(File {
            filename,
            requires_python: attribute(tag, "data-requires-python").filter(|r| !r.trim().is_empty()),
            yanked: tag.contains("data-yanked"),
        });
        rest = &after[tag_end + close..];
    }
    files
}

/// The version a distribution file holds, for package `name`.
fn file_version(name: &str, filename: &str) -> Option<String> {
    let normalised = pep503(name);
    if let Some(stem) = filename.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        let dist = parts.next()?;
        return (pep503(dist) == normalised).then(|| parts.next().map(str::to_owned)).flatten();
    }
    let stem = [".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".tgz", ".egg"]
        .iter()
        .find_map(|ext| filename.strip_suffix(ext))?;
    // Sdists keep the project's own spelling (`zope.interface-6.0`,
    // `python-dateutil-2.9.0`): the name is the prefix before whichever dash
    // makes it normalise to the project's name.
    // A version starts with a digit (or `v`): `requests-toolbelt-1.0` is
    // not a `requests` release.
    stem.match_indices('-')
        .find(|(at, _)| pep503(&stem[..*at]) == normalised)
        .map(|(at, _)| stem[at + 1..].to_owned())
        .filter(|v| v.trim_start_matches(['v', 'V']).starts_with(|c: char| c.is_ascii_digit()))
}

fn versions_of(name: &str, files: Vec<File>) -> Vec<PublishedVersion> {
    let mut by_version: BTreeMap<String, PublishedVersion> = BTreeMap::new();
    for file in files {
        let Some(version) = file_version(name, &file.filename) else { continue };
        by_version
            .entry(version.clone())
            .and_modify(|v| {
                v.yanked &= file.yanked;
                if v.requires_python.is_none() {
                    v.requires_python.clone_from(&file.requires_python);
                }
            })
            .or_insert(PublishedVersion {
                version,
                requires_python: file.requires_python,
                yanked: file.yanked,
                deprecated: None,
                engines: Vec::new(),
            });
    }
    by_version
        .into_values()
        .map(|mut v| {
            v.engines = v.requires_python.iter().map(|r| ("python".to_owned(), r.clone())).collect();
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_wheels_and_sdists() {
        assert_eq!(file_version("requests", "requests-2.31.0-py3-none-any.whl").as_deref(), Some("2.31.0"));
        assert_eq!(file_version("requests", "requests-2.31.0.tar.gz").as_deref(), Some("2.31.0"));
        assert_eq!(
            file_version("typing-extensions", "typing_extensions-4.12.2-py3-none-any.whl").as_deref(),
            Some("4.12.2")
        );
        assert_eq!(file_version("zope.interface", "zope.interface-6.0.tar.gz").as_deref(), Some("6.0"));
        assert_eq!(
            file_version("python-dateutil", "python-dateutil-2.9.0.post0.tar.gz").as_deref(),
            Some("2.9.0.post0")
        );
        assert_eq!(file_version("requests", "requests-toolbelt-1.0.0.tar.gz"), None);
    }

    #[test]
    fn json_and_html_pages() {
        let json = r#"{"meta":{"api-version":"1.1"},"name":"urllib3","files":[
            {"filename":"urllib3-1.26.18-py2.py3-none-any.whl","requires-python":">=2.7, !=3.0.*","yanked":false},
            {"filename":"urllib3-2.0.0-py3-none-any.whl","requires-python":">=3.7","yanked":"broken"},
            {"filename":"urllib3-2.0.0.tar.gz","requires-python":">=3.7","yanked":true}]}"#;
        let versions = versions_of("urllib3", json_files(json).unwrap());
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].requires_python.as_deref(), Some(">=2.7, !=3.0.*"));
        assert!(!versions[0].yanked);
        assert!(versions[1].yanked);
        let html = r#"<html><body><a href="https://x/urllib3-2.2.1-py3-none-any.whl#sha256=ab" data-requires-python="&gt;=3.8">urllib3-2.2.1-py3-none-any.whl</a><br/>
            <a href="/p/urllib3-1.0.tar.gz" data-yanked="">urllib3-1.0.tar.gz</a></body></html>"#;
        let versions = versions_of("urllib3", html_files(html));
        assert_eq!(versions.len(), 2);
        let v221 = versions.iter().find(|v| v.version == "2.2.1").unwrap();
        assert_eq!(v221.requires_python.as_deref(), Some(">=3.8"));
        assert!(versions.iter().find(|v| v.version == "1.0").unwrap().yanked);
    }

    #[test]
    fn credentials_leave_the_url_for_a_header() {
        let url = IndexUrl::parse("https://user:p%40ss@pypi.example/simple").unwrap();
        assert_eq!(url.project_page("x"), "https://pypi.example/simple/x/");
        assert_eq!(basic_auth(&url).as_deref(), Some("Basic dXNlcjpwQHNz"));
        let token = IndexUrl::parse("https://tok@pypi.example/simple").unwrap();
        assert_eq!(basic_auth(&token).as_deref(), Some("Basic dG9rOg=="));
        assert_eq!(basic_auth(&IndexUrl::parse("https://pypi.org/simple").unwrap()), None);
    }

    /// The review's crash: an image's `pip.conf` said
    /// `index-url = https://u:%aé@h/` and the look-up sliced the escape
    /// through `é`. Now the URL is refused before any request.
    #[test]
    fn crafted_index_urls_are_unavailable_with_a_reason_not_a_panic() {
        let client = IndexClient::new(None);
        for (url, why) in [
            ("https://u:%aé@h/", "its password has a `%` not followed by two hex digits"),
            ("https://h/%", "its path has a `%`"),
            ("https://h/%zz", "its path has a `%`"),
            ("https://u:%ff%fe@h/", "its password is not UTF-8"),
            ("file:///etc/passwd", "only http:// and https://"),
            ("https://", "it is not a URL"),
        ] {
            let answer = client.lookup(&IndexQuery {
                ecosystem: "python".into(),
                name: "requests".into(),
                index_urls: vec![url.to_owned()],
            });
            let Answer::Unavailable(reason) = answer else { panic!("{url}: {answer:?}") };
            assert!(reason.contains("is refused") && reason.contains(why), "{url}: {reason}");
            assert!(!reason.contains("%ff"), "{reason}");
        }
        let huge = format!("https://h/{}", "a".repeat(1 << 20));
        let answer = client.lookup(&IndexQuery {
            ecosystem: "python".into(),
            name: "requests".into(),
            index_urls: vec![huge],
        });
        assert!(
            matches!(&answer, Answer::Unavailable(r) if r.len() < 400 && r.contains("longer than")),
            "{answer:?}"
        );
    }
}
