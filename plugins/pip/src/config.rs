//! Which package indexes pip uses in an environment, the way pip itself
//! decides: its configuration files, then `PIP_*` variables of the image's
//! environment, then the command line (`--pip-index-url`,
//! `--pip-extra-index-url`, which reach the plugin as `options.index-urls`:
//! the first replaces the default index, the rest are extra indexes).
//!
//! Configuration files, in pip's order, each overriding the ones before:
//! global (`/etc/xdg/pip/pip.conf`, `/etc/pip.conf`), user
//! (`~/.pip/pip.conf`, `~/.config/pip/pip.conf`, for `HOME=/root` as the
//! steps run; skipped when `PIP_CONFIG_FILE` names an existing file), site
//! (`<venv>/pip.conf`), then `PIP_CONFIG_FILE` itself. Within a file the
//! `[install]` section overrides `[global]`. `PIP_CONFIG_FILE=/dev/null`
//! turns all files off, as in pip.
//!
//! URLs may carry credentials (`https://user:token@host/simple`). They go to
//! the host for look-ups and into the argv of steps that run pip outside the
//! image; they are never written into a file and are masked in everything the
//! plugin says for people.

use crate::metadata::{Entry, ini};

/// The default index when nothing else is configured.
pub const PYPI: &str = "https://pypi.org/simple";

pub const GLOBAL_FILES: &[&str] = &["/etc/xdg/pip/pip.conf", "/etc/pip.conf"];
pub const USER_FILES: &[&str] = &["/root/.pip/pip.conf", "/root/.config/pip/pip.conf"];

/// A configuration file's contents, by path.
pub type ConfigFile<'a> = (&'a str, &'a [u8]);

/// Indexes pip would use, and what said so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// `index-url`; `None`: PyPI.
    pub index: Option<String>,
    pub extra: Vec<String>,
    /// `no-index`: pip would only use `find-links`.
    pub no_index: bool,
    pub trusted_hosts: Vec<String>,
    /// `cert`: the CA bundle the image told pip to trust.
    pub cert: Option<String>,
    /// Where the settings came from, for rationales.
    pub sources: Vec<String>,
    /// Whether the command line decided the indexes.
    pub from_command_line: bool,
}

impl Indexes {
    /// The URLs a look-up asks, in order; empty means the host's default
    /// (PyPI).
    pub fn lookup_urls(&self) -> Vec<String> {
        if self.index.is_none() && self.extra.is_empty() {
            return Vec::new();
        }
        let mut urls = vec![self.index.clone().unwrap_or_else(|| PYPI.to_owned())];
        urls.extend(self.extra.iter().cloned());
        urls
    }

    /// pip options naming these indexes, for a pip that must not read the
    /// image's configuration itself (one running outside the image).
    pub fn pip_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.no_index {
            args.push("--no-index".to_owned());
        }
        if let Some(index) = &self.index {
            args.extend(["--index-url".to_owned(), index.clone()]);
        }
        for extra in &self.extra {
            args.extend(["--extra-index-url".to_owned(), extra.clone()]);
        }
        for host in &self.trusted_hosts {
            args.extend(["--trusted-host".to_owned(), host.clone()]);
        }
        args
    }

    /// For people: the indexes with credentials masked.
    pub fn describe(&self) -> String {
        let urls = self.lookup_urls();
        let shown = if urls.is_empty() {
            PYPI.to_owned()
        } else {
            urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
        };
        if self.sources.is_empty() { shown } else { format!("{shown} (from {})", self.sources.join(", ")) }
    }
}

/// Splits a pip list value (`extra-index-url`, `trusted-host`): whitespace
/// or newlines separate entries.
fn list(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_owned).collect()
}

fn truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// The indexes for an environment.
///
/// `files` are the configuration files the image holds in pip's order
/// (global, user, site, `PIP_CONFIG_FILE`); `env` the image's environment;
/// `command_line` the options' index URLs.
pub fn indexes(files: &[ConfigFile<'_>], env: &[(String, String)], command_line: &[String]) -> Indexes {
    let mut out = Indexes::default();
    let var = |key: &str| env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let config_file = var("PIP_CONFIG_FILE");
    if config_file != Some("/dev/null") && var("PIP_ISOLATED").is_none_or(|v| !truthy(v)) {
        let parsed: Vec<(&str, Vec<Entry>)> = files.iter().map(|(path, bytes)| (*path, ini(bytes))).collect();
        // pip pools `[global]` of every file, then `[install]` of every
        // file: an `[install]` value anywhere beats a `[global]` one.
        for section in ["global", "install"] {
            for (path, entries) in &parsed {
                let mut touched = false;
                for (_, key, value) in entries.iter().filter(|(s, _, _)| s == section) {
                    touched |= apply(&mut out, key, value);
                }
                if touched && !out.sources.iter().any(|s| s == path) {
                    out.sources.push((*path).to_owned());
                }
            }
        }
    }
    for (key, name) in [
        ("index-url", "PIP_INDEX_URL"),
        ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
        ("no-index", "PIP_NO_INDEX"),
        ("trusted-host", "PIP_TRUSTED_HOST"),
        ("cert", "PIP_CERT"),
    ] {
        if let Some(value) = var(name)
            && apply(&mut out, key, value)
        {
            out.sources.push(format!("${name}"));
        }
    }
    if let Some((first, rest)) = command_line.split_first() {
        out.index = Some(first.clone());
        out.extra = rest.to_vec();
        out.no_index = false;
        out.from_command_line = true;
        out.sources = vec!["the command line".to_owned()];
    }
    out
}

fn apply(out: &mut Indexes, key: &str, value: &str) -> bool {
    match key {
        "index-url" | "i" => {
            out.index = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            true
        }
        "extra-index-url" => {
            out.extra = list(value);
            true
        }
        "no-index" => {
            out.no_index = truthy(value);
            true
        }
        "trusted-host" => {
            out.trusted_hosts = list(value);
            true
        }
        "cert" => {
            out.cert = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            false
        }
        _ => false,
    }
}

/// Whether a URL may be handed to pip or the host: http(s), no whitespace
/// or control characters, not an option.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("only http:// and https:// indexes are supported");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    Ok(())
}

/// `https://user:secret@host/simple` → `https://user:***@host/simple`;
/// a token alone (`https://token@host`) is masked whole.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{masked}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn files_then_environment_then_command_line() {
        let global: &[u8] = b"[global]\nindex-url = https://mirror.example/simple\n";
        let user: &[u8] = b"[install]\nextra-index-url = https://u:p@private.example/simple\n";
        let files = [("/etc/pip.conf", global), ("/root/.config/pip/pip.conf", user)];
        let found = indexes(&files, &[], &[]);
        assert_eq!(
            found.lookup_urls(),
            ["https://mirror.example/simple", "https://u:p@private.example/simple"]
        );
        assert!(found.describe().contains("u:***@private.example"), "{}", found.describe());
        let found = indexes(&files, &env(&[("PIP_INDEX_URL", "https://env.example/simple")]), &[]);
        assert_eq!(found.index.as_deref(), Some("https://env.example/simple"));
        let found = indexes(&files, &env(&[("PIP_CONFIG_FILE", "/dev/null")]), &[]);
        assert_eq!(found, Indexes::default());
        let found = indexes(&files, &[], &["https://cli.example/simple".to_owned()]);
        assert_eq!(found.lookup_urls(), ["https://cli.example/simple"]);
        assert_eq!(found.pip_args(), ["--index-url", "https://cli.example/simple"]);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://a:b@h/simple"), "https://a:***@h/simple");
        assert_eq!(redact("https://tok@h"), "https://***@h");
        assert_eq!(redact("https://h/simple"), "https://h/simple");
        assert!(check_url("--index-url=x").is_err());
        assert!(check_url("https://h/ x").is_err());
    }
}
