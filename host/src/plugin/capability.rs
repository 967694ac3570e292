//! Capabilities: what an updater may ask the host to do beyond reading the
//! image's files, how a component declares them (the SDK's custom section),
//! and which capabilities a question or a plan step needs.

use std::fmt;
use std::str::FromStr;

use caulk_sdk::capability as names;

use crate::model::{Command, ExecContext, IndexQuery};

/// The most a declaration may hold; a real one is a few lines.
const MAX_DECLARATION: usize = 64 << 10;

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Run commands in the image's root fs (probes and plan steps).
    ImageCommands,
    /// Run commands from a tooling root (the host's root fs or a tooling
    /// image) with the image mounted.
    HostTooling,
    /// Give a command the host's network.
    Network,
    /// Have the host look packages up on an index.
    Index(IndexHost),
}

/// The index hosts an `index:` capability covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexHost {
    /// `index:*`.
    Any,
    /// One host, lowercase, without a port.
    Host(String),
}

impl Capability {
    /// Whether holding `self` allows `wanted`: `index:*` covers every index host.
    pub fn covers(&self, wanted: &Capability) -> bool {
        match (self, wanted) {
            (Self::Index(IndexHost::Any), Self::Index(_)) => true,
            _ => self == wanted,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageCommands => f.write_str(names::IMAGE_COMMANDS),
            Self::HostTooling => f.write_str(names::HOST_TOOLING),
            Self::Network => f.write_str(names::NETWORK),
            Self::Index(host) => write!(f, "{}{host}", names::INDEX_PREFIX),
        }
    }
}

impl fmt::Display for IndexHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Host(host) => f.write_str(host),
        }
    }
}

/// Why a capability name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a capability: use image-commands, host-tooling, network or index:HOST (index:* for any host)"
)]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // One validator for the SDK (at the plugin's build) and the host.
        if !names::is_capability(text) {
            return Err(UnknownCapability(text.to_owned()));
        }
        Ok(match text {
            names::IMAGE_COMMANDS => Self::ImageCommands,
            names::HOST_TOOLING => Self::HostTooling,
            names::NETWORK => Self::Network,
            _ => match text.strip_prefix(names::INDEX_PREFIX) {
                Some("*") => Self::Index(IndexHost::Any),
                Some(host) => Self::Index(IndexHost::Host(host.to_owned())),
                None => return Err(UnknownCapability(text.to_owned())),
            },
        })
    }
}

impl serde::Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The capabilities a component declares: every `caulk:capabilities`
/// custom section in it (at any nesting depth), one capability per line,
/// sorted and without repeats. No section declares nothing.
pub fn declared(wasm: &[u8]) -> Result<Vec<Capability>, String> {
    let mut found = Vec::new();
    let mut total = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("reading its sections: {e}"))?;
        let wasmparser::Payload::CustomSection(section) = payload else { continue };
        if section.name() != names::SECTION {
            continue;
        }
        total += section.data().len();
        if total > MAX_DECLARATION {
            return Err(format!("its {} section is larger than {MAX_DECLARATION} bytes", names::SECTION));
        }
        let text = std::str::from_utf8(section.data())
            .map_err(|_| format!("its {} section is not UTF-8", names::SECTION))?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let capability = line.parse::<Capability>().map_err(|e| {
                format!("its {} section declares {e}; a newer caulk may know it", names::SECTION)
            })?;
            found.push(capability);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The capabilities running `command` needs, strongest last.
pub fn command_needs(command: &Command) -> Vec<Capability> {
    let mut needs = vec![match command.context {
        ExecContext::Target => Capability::ImageCommands,
        ExecContext::Tooling(_) => Capability::HostTooling,
    }];
    if command.network {
        needs.push(Capability::Network);
    }
    needs
}

/// A look-up with its index URLs parsed and written out canonically (so
/// the host fetches exactly the URL whose host was checked), and the
/// `index:HOST` capability each needs.
#[derive(Debug)]
pub struct CheckedLookup {
    pub query: IndexQuery,
    pub needs: Vec<Capability>,
}

/// Parses the index URLs of `query` (the ecosystem's default index when it
/// names none). An unusable URL is the answer's problem, not a grant's.
pub fn lookup_needs(query: &IndexQuery, default_index: &str) -> Result<CheckedLookup, String> {
    let given: Vec<&str> = if query.index_urls.is_empty() {
        vec![default_index]
    } else {
        query.index_urls.iter().map(String::as_str).collect()
    };
    let mut urls = Vec::new();
    let mut needs = Vec::new();
    for text in given {
        let url = url::Url::parse(text).map_err(|e| format!("index URL {}: {e}", hide_credentials(text)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "index URL {}: only http and https indexes are looked up",
                url_for_people(&url)
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("index URL {}: it names no host", url_for_people(&url)));
        };
        let need = Capability::Index(IndexHost::Host(host.to_ascii_lowercase()));
        if !needs.contains(&need) {
            needs.push(need);
        }
        urls.push(if query.index_urls.is_empty() { Vec::new() } else { vec![url.to_string()] });
    }
    let index_urls = urls.into_iter().flatten().collect();
    Ok(CheckedLookup { query: IndexQuery { index_urls, ..query.clone() }, needs })
}

/// Text that failed to parse as a URL, with anything that could be a
/// password (the authority up to its last `@`) hidden.
fn hide_credentials(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &rest[at..]),
        None => text.to_owned(),
    }
}

/// A URL without its credentials, for messages.
fn url_for_people(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["image-commands", "host-tooling", "network", "index:pypi.org", "index:*"] {
            assert_eq!(name.parse::<Capability>().unwrap().to_string(), name);
        }
        assert!("index:PyPI.org".parse::<Capability>().is_err());
        assert!("files".parse::<Capability>().is_err());
    }

    #[test]
    fn any_index_covers_every_host_and_nothing_else() {
        let any: Capability = "index:*".parse().unwrap();
        assert!(any.covers(&"index:pypi.org".parse().unwrap()));
        assert!(!any.covers(&Capability::Network));
        let pypi: Capability = "index:pypi.org".parse().unwrap();
        assert!(!pypi.covers(&"index:evil.example".parse().unwrap()));
    }

    fn query(urls: &[&str]) -> IndexQuery {
        IndexQuery {
            ecosystem: "python".into(),
            name: "pip".into(),
            index_urls: urls.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn lookups_need_their_hosts() {
        let checked = lookup_needs(&query(&[]), "https://pypi.org/simple").unwrap();
        assert_eq!(checked.needs, ["index:pypi.org".parse().unwrap()]);
        assert!(checked.query.index_urls.is_empty(), "the default stays the default");

        let checked =
            lookup_needs(&query(&["https://u:p@Mirror.Example:8443/simple"]), "https://pypi.org/simple")
                .unwrap();
        assert_eq!(checked.needs, ["index:mirror.example".parse().unwrap()]);
        assert_eq!(checked.query.index_urls, ["https://u:p@mirror.example:8443/simple"]);
    }

    #[test]
    fn the_host_checked_is_the_host_fetched() {
        // A backslash ends the authority for http(s) in the URL standard:
        // the request goes to (and the grant is checked for) pypi.org.
        let checked = lookup_needs(&query(&["https://pypi.org\\@evil.example/"]), "").unwrap();
        assert_eq!(checked.needs, ["index:pypi.org".parse().unwrap()]);
        assert!(checked.query.index_urls[0].starts_with("https://pypi.org/"), "{:?}", checked.query);
        let err = lookup_needs(&query(&["file:///etc/passwd"]), "").unwrap_err();
        assert!(err.contains("only http and https"), "{err}");
        let err = lookup_needs(&query(&["https://u:secret@[::1"]), "").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn commands_need_their_context_and_network() {
        let mut command = Command {
            argv: vec!["true".into()],
            cwd: None,
            env: Vec::new(),
            context: ExecContext::Target,
            network: false,
        };
        assert_eq!(command_needs(&command), [Capability::ImageCommands]);
        command.network = true;
        command.context =
            ExecContext::Tooling(crate::model::Tooling { image: None, mount_point: "/t".into() });
        assert_eq!(command_needs(&command), [Capability::HostTooling, Capability::Network]);
    }
}
