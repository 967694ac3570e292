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
//!
//! Every URL, from a file, a variable or the command line, passes
//! [`IndexUrl::parse`], the check the host applies too. One that fails is
//! not used: it becomes a problem naming where it came from, and an
//! environment with a problem is not updated (falling back to PyPI could
//! fetch a public package in place of a private one).

use caulk_sdk::index_url::{IndexUrl, redact};

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
    /// Refused values still in force, by setting (`index-url`,
    /// `extra-index-url`): where each came from and what is wrong.
    pub problems: Vec<(&'static str, String)>,
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

    /// The first refused value still in force, for a skip reason.
    pub fn problem(&self) -> Option<&str> {
        self.problems.first().map(|(_, why)| why.as_str())
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
                    touched |= apply(&mut out, key, value, path);
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
            && apply(&mut out, key, value, &format!("${name}"))
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
        // Checked by `plan::settings` before anything is asked.
        out.problems.clear();
    }
    out
}

/// Applies one setting from `source` (a file's path or `$VARIABLE`);
/// whether it is one that decides the indexes.
fn apply(out: &mut Indexes, key: &str, value: &str, source: &str) -> bool {
    match key {
        "index-url" | "i" => {
            out.problems.retain(|(k, _)| *k != "index-url");
            let value = value.trim();
            out.index = None;
            if !value.is_empty() {
                match IndexUrl::parse(value) {
                    Ok(_) => out.index = Some(value.to_owned()),
                    Err(e) => out.problems.push(("index-url", refusal(source, "index-url", value, &e))),
                }
            }
            true
        }
        "extra-index-url" => {
            out.problems.retain(|(k, _)| *k != "extra-index-url");
            out.extra.clear();
            for url in list(value) {
                match IndexUrl::parse(&url) {
                    Ok(_) => out.extra.push(url),
                    Err(e) => {
                        out.problems.push(("extra-index-url", refusal(source, "extra-index-url", &url, &e)));
                    }
                }
            }
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

fn refusal(source: &str, key: &str, url: &str, error: &caulk_sdk::index_url::IndexUrlError) -> String {
    format!("{source}: {key} {:?} is refused: {error}", redact(url))
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
        assert_eq!(found.problem(), None);
        let found = indexes(&files, &env(&[("PIP_INDEX_URL", "https://env.example/simple")]), &[]);
        assert_eq!(found.index.as_deref(), Some("https://env.example/simple"));
        let found = indexes(&files, &env(&[("PIP_CONFIG_FILE", "/dev/null")]), &[]);
        assert_eq!(found, Indexes::default());
        let found = indexes(&files, &[], &["https://cli.example/simple".to_owned()]);
        assert_eq!(found.lookup_urls(), ["https://cli.example/simple"]);
        assert_eq!(found.pip_args(), ["--index-url", "https://cli.example/simple"]);
    }

    #[test]
    fn crafted_urls_become_problems_naming_their_source() {
        let crafted: &[u8] = b"[global]\nindex-url = https://u:%a\xc3\xa9@h/\nextra-index-url = https://ok.example/simple %zz\n";
        let found = indexes(&[("/etc/pip.conf", crafted)], &[], &[]);
        assert_eq!(found.index, None);
        assert_eq!(found.extra, ["https://ok.example/simple"]);
        assert_eq!(found.problems.len(), 2, "{found:?}");
        assert_eq!(
            found.problem(),
            Some(
                "/etc/pip.conf: index-url \"https://u:***@h/\" is refused: its password has a `%` not followed \
                 by two hex digits (a literal `%` is written %25)"
            )
        );
        assert!(
            found.problems[1].1.starts_with("/etc/pip.conf: extra-index-url \"%zz\" is refused"),
            "{found:?}"
        );
        // A later, valid setting replaces the refused one, as in pip.
        let env = env(&[("PIP_INDEX_URL", "https://env.example/simple"), ("PIP_EXTRA_INDEX_URL", "")]);
        let found = indexes(&[("/etc/pip.conf", crafted)], &env, &[]);
        assert_eq!(found.problem(), None, "{found:?}");
        assert_eq!(found.lookup_urls(), ["https://env.example/simple"]);
        // A refused variable names itself.
        let found = indexes(&[], &[("PIP_INDEX_URL".into(), "file:///wheels".into())], &[]);
        assert!(found.problem().is_some_and(|p| p.starts_with("$PIP_INDEX_URL: index-url")), "{found:?}");
        // The command line decides alone.
        let found = indexes(&[("/etc/pip.conf", crafted)], &[], &["https://cli.example/simple".to_owned()]);
        assert_eq!(found.problem(), None);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://a:b@h/simple"), "https://a:***@h/simple");
        assert_eq!(redact("https://tok@h"), "https://***@h");
        assert_eq!(redact("https://h/simple"), "https://h/simple");
    }
}
