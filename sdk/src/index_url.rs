//! Package-index URLs as caulk accepts them, wherever they come from: the
//! command line, an image's `pip.conf` or `PIP_INDEX_URL`, a plugin's
//! look-up. One parser (the `url` crate's WHATWG parser) and one set of
//! rules for all of them: http or https, a host, no whitespace or control
//! characters, every `%` the start of a valid escape, credentials that
//! decode to UTF-8. Credentials are taken out of the URL when it is parsed,
//! so the URL that reaches a request line or a message never carries them.

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// Longest URL accepted; real index URLs are far shorter.
pub const MAX_LEN: usize = 4096;

/// Why a string is not an acceptable index URL. The texts name the part
/// that is wrong and never repeat credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexUrlError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("it contains whitespace or control characters")]
    Whitespace,
    #[error("it is not a URL: {0}")]
    Syntax(url::ParseError),
    #[error("only http:// and https:// indexes are supported, not {0}:")]
    Scheme(String),
    #[error("it names no host")]
    NoHost,
    #[error("its {0} has a `%` not followed by two hex digits (a literal `%` is written %25)")]
    Escape(Part),
    #[error("its {0} is not UTF-8 once its %-escapes are decoded")]
    NotUtf8(Part),
}

/// A part of a URL, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    User,
    Password,
    Path,
    Query,
    Fragment,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::User => "user name",
            Part::Password => "password",
            Part::Path => "path",
            Part::Query => "query",
            Part::Fragment => "fragment",
        })
    }
}

/// A checked index URL with its credentials held apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexUrl {
    /// The URL without user name and password.
    url: Url,
    user: String,
    password: Option<String>,
}

impl IndexUrl {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Self, IndexUrlError> {
        if text.is_empty() {
            return Err(IndexUrlError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(IndexUrlError::TooLong);
        }
        // The WHATWG parser silently drops tabs and newlines and trims
        // spaces; a URL holding them is refused instead, so that what pip
        // and the host see is what the text says.
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IndexUrlError::Whitespace);
        }
        let mut url = Url::parse(text).map_err(IndexUrlError::Syntax)?;
        if !matches!(url.scheme(), "http" | "https") {
            let scheme: String = url.scheme().chars().take(20).collect();
            return Err(IndexUrlError::Scheme(scheme));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(IndexUrlError::NoHost);
        }
        // The parser keeps a stray `%` as it is; pip would decode such a
        // part differently than the host, so it is refused.
        for (part, value) in [
            (Part::User, Some(url.username())),
            (Part::Password, url.password()),
            (Part::Path, Some(url.path())),
            (Part::Query, url.query()),
            (Part::Fragment, url.fragment()),
        ] {
            if value.is_some_and(|v| !escapes_are_valid(v)) {
                return Err(IndexUrlError::Escape(part));
            }
        }
        let decode = |text: &str, part: Part| {
            percent_decode_str(text)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| IndexUrlError::NotUtf8(part))
        };
        let user = decode(url.username(), Part::User)?;
        let password = url.password().map(|p| decode(p, Part::Password)).transpose()?;
        // Cannot fail: http(s) URLs with a host can carry credentials.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(IndexUrl { url, user, password })
    }

    /// The URL without credentials, normalised by the parser.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The decoded user name and password, when the URL carried any. A
    /// token alone (`https://TOKEN@host`) is a user name with no password.
    pub fn credentials(&self) -> Option<(&str, Option<&str>)> {
        (!self.user.is_empty() || self.password.is_some())
            .then_some((self.user.as_str(), self.password.as_deref()))
    }

    /// For people: `https://user:***@host/simple`, or `https://***@host`
    /// when a token alone was given.
    pub fn redacted(&self) -> String {
        let mut shown = self.url.clone();
        // Cannot fail: http(s) URLs with a host can carry credentials.
        match (self.user.is_empty(), &self.password) {
            (true, None) => {}
            (false, Some(_)) => {
                let _ = shown.set_username(&self.user);
                let _ = shown.set_password(Some("***"));
            }
            _ => {
                let _ = shown.set_username("***");
            }
        }
        shown.to_string()
    }

    /// The simple-API page of a project: the index URL with the name as one
    /// more path segment (escaped as a segment, so a name cannot climb the
    /// path) and a trailing slash. A query stays after the path; a fragment,
    /// which no server sees, is dropped.
    pub fn project_page(&self, project: &str) -> String {
        let mut page = self.url.clone();
        page.set_fragment(None);
        if let Ok(mut segments) = page.path_segments_mut() {
            segments.pop_if_empty().push(project).push("");
        }
        page.to_string()
    }

    /// An npm registry's document of a package: the registry URL with the
    /// name as one more path segment (`@scope/name` as `@scope%2Fname`, as
    /// npm sends it) and no trailing slash.
    pub fn package_document(&self, package: &str) -> String {
        let mut page = self.url.clone();
        page.set_fragment(None);
        if let Ok(mut segments) = page.path_segments_mut() {
            segments.pop_if_empty().push(package);
        }
        page.to_string()
    }
}

impl fmt::Display for IndexUrl {
    /// The redacted form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn escapes_are_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
        bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

/// Longest text [`redact`] shows.
const SHOWN: usize = 120;

/// For messages about text that may not parse: whatever precedes the last
/// `@` of the authority is masked, control characters are escaped, and
/// the text is cut to its first 120 characters.
pub fn redact(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").map_or(("", text), |(s, r)| (s, r));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let masked = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}{path}"),
            None => format!("***@{host}{path}"),
        },
        None => rest.to_owned(),
    };
    let joined = if text.contains("://") { format!("{scheme}://{masked}") } else { masked };
    let mut shown = String::new();
    for c in joined.chars().take(SHOWN) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if joined.chars().nth(SHOWN).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> IndexUrlError {
        IndexUrl::parse(text).expect_err(text)
    }

    #[test]
    fn credentials_are_held_apart_and_decoded() {
        let url = IndexUrl::parse("https://user:p%40ss@pypi.example/simple").unwrap();
        assert_eq!(url.as_str(), "https://pypi.example/simple");
        assert_eq!(url.credentials(), Some(("user", Some("p@ss"))));
        assert_eq!(url.redacted(), "https://user:***@pypi.example/simple");
        let token = IndexUrl::parse("https://t%C3%B6ken@pypi.example/simple/").unwrap();
        assert_eq!(token.credentials(), Some(("töken", None)));
        assert_eq!(token.to_string(), "https://***@pypi.example/simple/");
        let plain = IndexUrl::parse("http://127.0.0.1:8080/simple").unwrap();
        assert_eq!(plain.credentials(), None);
        assert_eq!(plain.redacted(), "http://127.0.0.1:8080/simple");
    }

    #[test]
    fn npm_package_documents_escape_the_scope_slash() {
        let url = IndexUrl::parse("https://registry.npmjs.org/").unwrap();
        assert_eq!(url.package_document("lodash"), "https://registry.npmjs.org/lodash");
        assert_eq!(url.package_document("@babel/core"), "https://registry.npmjs.org/@babel%2Fcore");
        let url = IndexUrl::parse("https://h.example/npm/").unwrap();
        assert_eq!(url.package_document("../x"), "https://h.example/npm/..%2Fx");
    }

    #[test]
    fn project_pages_are_one_escaped_segment() {
        let url = IndexUrl::parse("https://u:p@h.example/simple/").unwrap();
        assert_eq!(url.project_page("requests"), "https://h.example/simple/requests/");
        let url = IndexUrl::parse("https://h.example/simple").unwrap();
        assert_eq!(url.project_page("requests"), "https://h.example/simple/requests/");
        assert_eq!(url.project_page("../../admin"), "https://h.example/simple/..%2F..%2Fadmin/");
        // Found by fuzzing: a fragment ended up after the project's path.
        let url = IndexUrl::parse("https://h.example/simple/?t=1#frag").unwrap();
        assert_eq!(url.project_page("requests"), "https://h.example/simple/requests/?t=1");
    }

    #[test]
    fn crafted_urls_are_refused_with_the_part_named() {
        // The review's panic: a `%` followed by a multi-byte character.
        assert_eq!(refused("https://u:%aé@h/"), IndexUrlError::Escape(Part::Password));
        assert_eq!(refused("https://%@h/"), IndexUrlError::Escape(Part::User));
        assert_eq!(refused("https://h/simple%zz"), IndexUrlError::Escape(Part::Path));
        assert_eq!(refused("https://h/simple?a=%"), IndexUrlError::Escape(Part::Query));
        assert_eq!(refused("https://u:%ff@h/"), IndexUrlError::NotUtf8(Part::Password));
        assert_eq!(refused("file:///etc/passwd"), IndexUrlError::Scheme("file".into()));
        assert_eq!(refused("ftp://mirror/simple"), IndexUrlError::Scheme("ftp".into()));
        assert!(matches!(refused("--index-url=x"), IndexUrlError::Syntax(_)));
        assert!(matches!(refused("https://"), IndexUrlError::Syntax(_)));
        assert!(matches!(refused("https://exa mple/"), IndexUrlError::Whitespace));
        assert!(matches!(refused("https://h/\nx"), IndexUrlError::Whitespace));
        assert_eq!(refused(""), IndexUrlError::Empty);
        assert_eq!(refused(&format!("https://h/{}", "a".repeat(MAX_LEN))), IndexUrlError::TooLong);
        let err = refused("https://u:s3cret%zz@h/");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert_eq!(
            err.to_string(),
            "its password has a `%` not followed by two hex digits (a literal `%` is written %25)"
        );
    }

    #[test]
    fn raw_text_is_redacted_escaped_and_cut() {
        assert_eq!(redact("https://a:b@h/simple"), "https://a:***@h/simple");
        assert_eq!(redact("https://tok@h"), "https://***@h");
        assert_eq!(redact("https://u:%aé@h/"), "https://u:***@h/");
        assert_eq!(redact("https://h/simple"), "https://h/simple");
        assert_eq!(redact("ftp://u:s3cret@h"), "ftp://u:***@h");
        assert_eq!(redact("a\nb"), "a\\nb");
        let long = redact(&format!("https://h/{}", "x".repeat(5000)));
        assert_eq!(long.chars().count(), SHOWN + 1);
        assert!(long.ends_with('…'));
    }
}
