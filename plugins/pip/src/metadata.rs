//! Reading the files a Python environment keeps about itself: core metadata
//! (`METADATA`, `PKG-INFO`), egg-info `requires.txt`, `RECORD`,
//! `top_level.txt`, `pyvenv.cfg` and pip's INI configuration.
//!
//! Everything here tolerates damage: an unreadable line is left out and the
//! caller decides what a missing field means.

use std::str::FromStr;

use crate::pep508::Requirement;

/// The core-metadata fields the planner needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreMetadata {
    pub name: Option<String>,
    pub version: Option<String>,
    /// `Requires-Dist` lines that parse as PEP 508 requirements.
    pub requires: Vec<Requirement>,
    /// `Requires-Dist` lines that do not parse, as written.
    pub unparsed: Vec<String>,
    pub requires_python: Option<String>,
}

/// Parses the header block of a `METADATA` or `PKG-INFO` file (RFC 822
/// style: `Key: value`, continuation lines indented, headers end at the
/// first empty line).
pub fn core_metadata(bytes: &[u8]) -> CoreMetadata {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut meta = CoreMetadata::default();
    for (key, value) in fields {
        match key.as_str() {
            "name" if meta.name.is_none() => meta.name = Some(value),
            "version" if meta.version.is_none() => meta.version = Some(value),
            "requires-python" if meta.requires_python.is_none() && !value.is_empty() => {
                meta.requires_python = Some(value);
            }
            "requires-dist" => push_requirement(&mut meta, &value),
            _ => {}
        }
    }
    meta
}

fn push_requirement(meta: &mut CoreMetadata, line: &str) {
    match Requirement::from_str(line) {
        Ok(req) => meta.requires.push(req),
        Err(_) => meta.unparsed.push(line.to_owned()),
    }
}

/// Requirements of an egg-info `requires.txt`: the unconditional lines and
/// `[:marker]` sections become PEP 508 requirements; `[extra]` and
/// `[extra:marker]` sections only apply when someone asked for the extra,
/// which the installed tree does not record, so they are left out (as
/// `pip check` leaves them out).
pub fn egg_requires(bytes: &[u8], meta: &mut CoreMetadata) {
    let text = String::from_utf8_lossy(bytes);
    let mut marker: Option<String> = None;
    let mut in_extra = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (extra, condition) = section.split_once(':').unwrap_or((section, ""));
            in_extra = !extra.trim().is_empty();
            marker = (!condition.trim().is_empty()).then(|| condition.trim().to_owned());
            continue;
        }
        if in_extra {
            continue;
        }
        match &marker {
            Some(m) => push_requirement(meta, &format!("{line} ; {m}")),
            None => push_requirement(meta, line),
        }
    }
}

/// The paths a `RECORD` lists (first CSV column), relative to the site
/// directory. CSV quoting is honoured: paths may hold commas.
pub fn record_paths(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().filter_map(first_csv_field).filter(|p| !p.is_empty()).collect()
}

fn first_csv_field(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return None;
    }
    let Some(rest) = line.strip_prefix('"') else {
        return Some(line.split(',').next().unwrap_or_default().to_owned());
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Top-level importable names a distribution provides, from its
/// `top_level.txt` when it has one, else from the first path component of
/// each `RECORD` entry (a package directory or a single module file).
/// Private names (`_cffi_backend`) come last so a public one is tried first.
pub fn top_level_modules(top_level: Option<&[u8]>, record: Option<&[u8]>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let add = |names: &mut Vec<String>, name: &str| {
        let name = name.trim().replace('/', ".");
        if crate::name::is_module_name(&name) && !names.contains(&name) {
            names.push(name);
        }
    };
    if let Some(bytes) = top_level {
        for line in String::from_utf8_lossy(bytes).lines() {
            add(&mut names, line);
        }
    }
    if names.is_empty()
        && let Some(bytes) = record
    {
        for path in record_paths(bytes) {
            if path.starts_with("../") || path.starts_with('/') {
                continue;
            }
            let first = path.split('/').next().unwrap_or_default();
            let suffix = first.rsplit_once('.').map(|(_, s)| s.to_ascii_lowercase()).unwrap_or_default();
            if matches!(suffix.as_str(), "dist-info" | "data" | "egg-info") {
                continue;
            }
            if first == "__pycache__" || first == "bin" {
                continue;
            }
            if path.contains('/') {
                add(&mut names, first);
            } else if let Some(module) = first.strip_suffix(".py") {
                add(&mut names, module);
            } else if let Some((module, _)) = first.split_once('.')
                && matches!(suffix.as_str(), "so" | "pyd")
            {
                add(&mut names, module);
            }
        }
    }
    names.sort_by_key(|n| n.starts_with('_'));
    names
}

/// `pyvenv.cfg`: `key = value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VenvConfig {
    /// Directory of the interpreter the venv was made from.
    pub home: Option<String>,
    pub include_system_site_packages: bool,
    /// `version_info` (uv, Python 3.11+) or `version` (venv, virtualenv).
    pub version: Option<String>,
}

pub fn venv_config(bytes: &[u8]) -> VenvConfig {
    let text = String::from_utf8_lossy(bytes);
    let mut cfg = VenvConfig::default();
    let mut version_info = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        match key.as_str() {
            "home" => cfg.home = Some(value.to_owned()),
            "include-system-site-packages" => {
                cfg.include_system_site_packages = value.eq_ignore_ascii_case("true");
            }
            "version" => cfg.version = Some(value.to_owned()),
            "version_info" => version_info = Some(value.to_owned()),
            _ => {}
        }
    }
    if version_info.is_some() {
        cfg.version = version_info;
    }
    cfg
}

/// `(section, key, value)` of an INI file.
pub type Entry = (String, String, String);

/// An INI file as pip reads it (`configparser` with its defaults): sections,
/// `key = value` or `key: value`, indented continuation lines, `#` and `;`
/// comment lines. Keys are lowercased with `_` spelt `-`, as pip does.
pub fn ini(bytes: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(bytes);
    let mut entries: Vec<Entry> = Vec::new();
    let mut section = String::new();
    let mut continuing = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continuing = false;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) && continuing {
            if let Some((_, _, value)) = entries.last_mut() {
                if !value.is_empty() {
                    value.push('\n');
                }
                value.push_str(trimmed);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continuing = false;
            continue;
        }
        let split = trimmed.find(['=', ':']).map(|i| (&trimmed[..i], &trimmed[i + 1..]));
        if let Some((key, value)) = split {
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            entries.push((section.clone(), key, value.trim().to_owned()));
            continuing = true;
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_stop_at_the_body() {
        let meta = core_metadata(
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.25.1\nRequires-Python: >=2.7, !=3.0.*\n\
Requires-Dist: urllib3 (<1.27,>=1.21.1)\nRequires-Dist: PySocks (!=1.5.7,>=1.5.6) ; extra == 'socks'\n\
Requires-Dist: not a requirement !!\n\nRequires-Dist: body text\n",
        );
        assert_eq!(meta.name.as_deref(), Some("requests"));
        assert_eq!(meta.version.as_deref(), Some("2.25.1"));
        assert_eq!(meta.requires.len(), 2);
        assert_eq!(meta.unparsed, ["not a requirement !!"]);
        assert_eq!(meta.requires_python.as_deref(), Some(">=2.7, !=3.0.*"));
    }

    #[test]
    fn egg_requires_sections() {
        let mut meta = CoreMetadata::default();
        egg_requires(b"six>=1.5\n\n[:python_version < \"3\"]\nenum34\n\n[security]\npyOpenSSL\n", &mut meta);
        let names: Vec<String> = meta.requires.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["six", "enum34"]);
    }

    #[test]
    fn record_quoting_and_modules() {
        let record = b"six.py,sha256=x,1\n\"odd,name/__init__.py\",sha256=y,2\nsix-1.16.0.dist-info/RECORD,,\n\
__pycache__/six.cpython-311.pyc,,\n../../../bin/tool,sha256=z,3\n_cffi_backend.cpython-311-x86_64-linux-gnu.so,,\n";
        assert_eq!(record_paths(record)[1], "odd,name/__init__.py");
        assert_eq!(top_level_modules(None, Some(record)), ["six", "_cffi_backend"]);
        assert_eq!(top_level_modules(Some(b"yaml\n_yaml\n"), Some(record)), ["yaml", "_yaml"]);
    }

    #[test]
    fn pip_conf_continuations() {
        let entries = ini(
            b"[global]\nindex_url = https://mirror/simple\nextra-index-url =\n    https://a/simple\n    https://b/simple\n# c\n[install]\ntrusted-host: a\n",
        );
        assert_eq!(entries[0], ("global".into(), "index-url".into(), "https://mirror/simple".into()));
        assert_eq!(entries[1].2, "https://a/simple\nhttps://b/simple");
        assert_eq!(entries[2], ("install".into(), "trusted-host".into(), "a".into()));
    }
}
