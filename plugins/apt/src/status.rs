//! The dpkg database (`/var/lib/dpkg/status`): which packages are installed,
//! at which version, for which architecture, built from which source version,
//! and whether they are held.

use caulk_sdk::version::deb;

use crate::name::PackageName;

/// Where dpkg keeps its database in every Debian and Ubuntu image.
pub const STATUS_PATH: &str = "/var/lib/dpkg/status";

/// A malformed line of the status file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{STATUS_PATH} line {line}: {problem}")]
pub struct StatusError {
    pub line: usize,
    pub problem: String,
}

/// One paragraph of the status file: a package instance (name and
/// architecture) as dpkg knows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// `Architecture`; `all` for architecture-independent packages.
    pub arch: String,
    /// `Version` as written; none for packages dpkg only remembers as
    /// not installed.
    pub version: Option<String>,
    /// The first word of `Status`: `install`, `hold`, `deinstall`, `purge`,
    /// `unknown`.
    pub want: String,
    /// The third word of `Status`: `installed`, `config-files`, ...
    pub state: String,
    /// The source package's version when it differs from the binary's,
    /// from `Source: NAME (VERSION)`.
    pub source: Option<(String, String)>,
    /// The line of the paragraph's first field, for messages.
    pub line: usize,
}

impl Entry {
    /// Whether the package's files are on disk (dpkg states other than
    /// `not-installed` and `config-files`).
    pub fn is_installed(&self) -> bool {
        self.version.is_some() && !matches!(self.state.as_str(), "not-installed" | "config-files")
    }

    /// Whether dpkg finished configuring it: `installed`, or only waiting
    /// for triggers of other packages.
    pub fn is_configured(&self) -> bool {
        matches!(self.state.as_str(), "installed" | "triggers-pending" | "triggers-awaited")
    }

    /// Whether `apt-mark hold` (a dpkg selection of `hold`) pins it.
    pub fn is_held(&self) -> bool {
        self.want == "hold"
    }

    /// `name` or `name:arch`, as apt accepts it on the command line: the
    /// architecture is spelled out unless it is the native one or `all`.
    pub fn apt_name(&self, native: Option<&str>) -> String {
        if self.arch == "all" || native == Some(self.arch.as_str()) {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.arch)
        }
    }
}

/// The parsed status file.
#[derive(Debug, Clone, Default)]
pub struct Status {
    entries: Vec<Entry>,
}

impl Status {
    /// Parses the status file. Bytes that are not UTF-8 (a description in
    /// Latin-1 from a very old package) are replaced: only ASCII fields are
    /// used.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatusError> {
        let text = String::from_utf8_lossy(bytes);
        let mut entries = Vec::new();
        let mut paragraph = Paragraph::default();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() {
                if let Some(entry) = paragraph.finish()? {
                    entries.push(entry);
                }
                paragraph = Paragraph::default();
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                if paragraph.start.is_none() {
                    return Err(StatusError {
                        line,
                        problem: "a continuation line where a field should start".into(),
                    });
                }
                continue;
            }
            let Some((field, value)) = raw.split_once(':') else {
                return Err(StatusError { line, problem: format!("{raw:?} is not a `Field: value` line") });
            };
            paragraph.start.get_or_insert(line);
            paragraph.field(field.trim(), value.trim(), line)?;
        }
        if let Some(entry) = paragraph.finish()? {
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// Every paragraph, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The installed instances matching `package`: every architecture when
    /// it names none (`libssl3` matches `libssl3:amd64` and `libssl3:i386`).
    pub fn installed(&self, package: &PackageName) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.is_installed() && e.name == package.name())
            .filter(|e| package.arch().is_none_or(|arch| arch == e.arch))
            .collect()
    }

    /// Paragraphs for `package` whatever their state, to say why a package
    /// counts as not installed.
    pub fn known(&self, package: &PackageName) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.name == package.name())
            .filter(|e| package.arch().is_none_or(|arch| arch == e.arch))
            .collect()
    }

    /// The native architecture: that of dpkg itself, which is never foreign.
    pub fn native_arch(&self) -> Option<&str> {
        self.entries.iter().find(|e| e.name == "dpkg" && e.is_installed()).map(|e| e.arch.as_str())
    }
}

#[derive(Default)]
struct Paragraph {
    start: Option<usize>,
    name: Option<String>,
    arch: Option<String>,
    version: Option<String>,
    status: Option<(String, String)>,
    source: Option<(String, String)>,
}

impl Paragraph {
    fn field(&mut self, field: &str, value: &str, line: usize) -> Result<(), StatusError> {
        // deb822 field names are case-insensitive.
        if field.eq_ignore_ascii_case("Package") {
            self.name = Some(value.to_owned());
        } else if field.eq_ignore_ascii_case("Architecture") {
            self.arch = Some(value.to_owned());
        } else if field.eq_ignore_ascii_case("Version") {
            self.version = Some(value.to_owned());
        } else if field.eq_ignore_ascii_case("Status") {
            let words: Vec<&str> = value.split_ascii_whitespace().collect();
            let [want, _flag, state] = words.as_slice() else {
                return Err(StatusError {
                    line,
                    problem: format!("Status {value:?} is not three words (want, flag, state)"),
                });
            };
            self.status = Some(((*want).to_owned(), (*state).to_owned()));
        } else if field.eq_ignore_ascii_case("Source") {
            // `Source: util-linux (2.41-5)`: only written when the source
            // version differs from the binary's.
            if let Some((name, rest)) = value.split_once('(')
                && let Some(version) = rest.strip_suffix(')')
            {
                self.source = Some((name.trim().to_owned(), version.trim().to_owned()));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<Entry>, StatusError> {
        let Some(line) = self.start else { return Ok(None) };
        let name = self
            .name
            .ok_or_else(|| StatusError { line, problem: "the paragraph has no Package field".into() })?;
        let (want, state) = self
            .status
            .ok_or_else(|| StatusError { line, problem: format!("package {name} has no Status field") })?;
        let entry = Entry {
            arch: self.arch.unwrap_or_default(),
            version: self.version,
            want,
            state,
            source: self.source,
            line,
            name,
        };
        if entry.is_installed()
            && let Some(version) = &entry.version
            && let Err(e) = version.parse::<deb::Version>()
        {
            return Err(StatusError { line, problem: format!("package {}: {e}", entry.name) });
        }
        if matches!(entry.state.as_str(), "not-installed" | "config-files") || entry.version.is_some() {
            Ok(Some(entry))
        } else {
            Err(StatusError {
                line,
                problem: format!("package {} is {} but has no Version", entry.name, entry.state),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Package: login
Status: install ok installed
Architecture: arm64
Source: util-linux (2.41-5)
Version: 1:4.16.0-2+really2.41-5
Description: system login tools
 continued description
 .

Package: libssl3
Status: hold ok installed
Architecture: i386
Multi-Arch: same
Source: openssl
Version: 3.0.20-1~deb12u2

Package: curl
Status: deinstall ok config-files
Architecture: amd64
Version: 7.88.1-10

Package: gone
Status: purge ok not-installed
Architecture: amd64
";

    #[test]
    fn fields_that_matter_are_read() {
        let status = Status::parse(SAMPLE.as_bytes()).unwrap();
        let entries = status.entries();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].source, Some(("util-linux".into(), "2.41-5".into())));
        assert_eq!(entries[1].source, None, "a bare Source carries no version");
        assert!(entries[1].is_held() && entries[1].is_installed());
        assert!(!entries[2].is_installed(), "config-files only");
        assert!(!entries[3].is_installed());
        assert_eq!(entries[1].line, 10);
        assert_eq!(entries[1].apt_name(Some("amd64")), "libssl3:i386");
        assert_eq!(entries[0].apt_name(Some("arm64")), "login");
    }

    #[test]
    fn damage_is_reported_with_its_line() {
        let err =
            Status::parse(b"Package: a\nStatus: install ok installed\nVersion: 1.0 beta\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.to_string().contains("package a") && err.to_string().contains("whitespace"), "{err}");
        let err = Status::parse(b"Package: a\nno colon here\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = Status::parse(b" leading continuation\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = Status::parse(b"Package: a\nStatus: installed\nVersion: 1\n").unwrap_err();
        assert!(err.to_string().contains("three words"), "{err}");
        let err = Status::parse(b"Version: 1\nStatus: install ok installed\n").unwrap_err();
        assert!(err.to_string().contains("no Package"), "{err}");
        let err = Status::parse(b"Package: a\nStatus: install ok installed\n").unwrap_err();
        assert!(err.to_string().contains("no Version"), "{err}");
    }

    #[test]
    fn crlf_and_missing_final_newline_are_accepted() {
        let status = Status::parse(b"Package: a1\r\nStatus: install ok installed\r\nVersion: 1.0\r\n\r\nPackage: b1\nStatus: install ok installed\nVersion: 2").unwrap();
        assert_eq!(status.entries().len(), 2);
        assert_eq!(status.entries()[1].version.as_deref(), Some("2"));
    }
}
