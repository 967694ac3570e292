//! Grants: the capabilities the user allowed each directory plugin, pinned
//! to the plugin's sha256 and kept in `$XDG_CONFIG_HOME/caulk/grants.json`;
//! the `--grant NAME:CAPABILITY` grants of one run; and the check every
//! question and plan step passes before the host acts on it.
//!
//! A capability is usable when the plugin declares it in its component and
//! the user granted it to exactly these bytes. Built-in plugins are part of
//! caulk and trusted.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::capability::Capability;
use super::{Plugin, PluginError, PluginLabel, PluginSource};

/// What the grants file says it is.
const FORMAT: &str = "caulk-grants/v1";

/// A grants file larger than this is not one caulk wrote.
const MAX_FILE: u64 = 4 << 20;

/// What can go wrong with the grants file.
#[derive(Debug, thiserror::Error)]
pub enum GrantStoreError {
    #[error("no config directory for the grants file: neither XDG_CONFIG_HOME nor HOME is set")]
    NoConfigDir,

    #[error("reading the grants file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("the grants file {} is not valid: {detail}", path.display())]
    Malformed { path: PathBuf, detail: String },

    #[error(
        "refusing the grants file: {} is writable by group or others (mode {mode:o}), so they could grant plugins capabilities",
        path.display()
    )]
    Insecure { path: PathBuf, mode: u32 },

    #[error("writing the grants file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl GrantStoreError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Malformed { .. } => Some(
                "fix or delete the file; `caulk plugins grant` writes it again (deleting revokes every grant)".into(),
            ),
            Self::Insecure { path, .. } => Some(format!("chmod go-w {}", path.display())),
            _ => None,
        }
    }
}

/// One plugin's grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredGrant {
    /// The plugin's bytes the grant holds for.
    pub sha256: String,
    /// Where the plugin was when granted, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    pub capabilities: Vec<Capability>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsFile {
    format: String,
    #[serde(default)]
    plugins: BTreeMap<String, StoredGrant>,
}

/// The grants file: every plugin's stored grant, by plugin name.
#[derive(Debug, Clone, Default)]
pub struct GrantStore {
    path: PathBuf,
    grants: BTreeMap<String, StoredGrant>,
}

impl GrantStore {
    /// `$XDG_CONFIG_HOME/caulk/grants.json`, else `~/.config/caulk/grants.json`.
    pub fn default_path() -> Result<PathBuf, GrantStoreError> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config"))
            })
            .ok_or(GrantStoreError::NoConfigDir)?;
        Ok(config.join("caulk").join("grants.json"))
    }

    /// Reads the grants file at `path`; a missing file grants nothing.
    pub fn open(path: &Path) -> Result<Self, GrantStoreError> {
        let read_err = |source| GrantStoreError::Read { path: path.to_owned(), source };
        // Whoever may write the directory may put a grants file there.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(meta) = std::fs::metadata(dir)
        {
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(GrantStoreError::Insecure { path: dir.to_owned(), mode: mode & 0o7777 });
            }
        }
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { path: path.to_owned(), grants: BTreeMap::new() });
            }
            Err(e) => return Err(read_err(e)),
        };
        let meta = file.metadata().map_err(read_err)?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(GrantStoreError::Insecure { path: path.to_owned(), mode: mode & 0o7777 });
        }
        if !meta.is_file() || meta.len() > MAX_FILE {
            return Err(GrantStoreError::Malformed {
                path: path.to_owned(),
                detail: format!("not a regular file of at most {} MiB", MAX_FILE >> 20),
            });
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE), &mut bytes).map_err(read_err)?;
        let parsed: GrantsFile = serde_json::from_slice(&bytes)
            .map_err(|e| GrantStoreError::Malformed { path: path.to_owned(), detail: e.to_string() })?;
        if parsed.format != FORMAT {
            return Err(GrantStoreError::Malformed {
                path: path.to_owned(),
                detail: format!("its format is `{}`, this caulk reads `{FORMAT}`", parsed.format),
            });
        }
        Ok(Self { path: path.to_owned(), grants: parsed.plugins })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&StoredGrant> {
        self.grants.get(name)
    }

    /// Changes the grants file under a lock: reads it again, applies
    /// `change`, and replaces it atomically, so two `caulk plugins grant`
    /// at once both land.
    pub fn update<R>(
        path: &Path,
        change: impl FnOnce(&mut BTreeMap<String, StoredGrant>) -> R,
    ) -> Result<R, GrantStoreError> {
        let write_err = |source| GrantStoreError::Write { path: path.to_owned(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_err)?;
        lock.lock().map_err(write_err)?;
        let mut store = Self::open(path)?;
        let result = change(&mut store.grants);
        let doc = GrantsFile { format: FORMAT.to_owned(), plugins: store.grants };
        let mut bytes = serde_json::to_vec_pretty(&doc).expect("grants serialise");
        bytes.push(b'\n');
        let mut file = tempfile::Builder::new()
            .prefix(".grants-")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(write_err)?;
        file.write_all(&bytes).map_err(write_err)?;
        file.as_file().sync_data().map_err(write_err)?;
        file.persist(path).map_err(|e| write_err(e.error))?;
        Ok(result)
    }
}

/// Why a capability a plugin asked for was refused.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// Declared, never granted to this plugin.
    NotGranted { command: String },
    /// Granted to other bytes: the plugin changed since.
    Stale { granted_sha256: String, granted_path: Option<PathBuf>, sha256: String, command: String },
    /// The plugin does not declare it, so no grant can allow it.
    Undeclared { declared: Vec<Capability> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGranted { command } => write!(f, "which is not granted; grant it with `{command}`"),
            Self::Stale { granted_sha256, granted_path, sha256, command } => {
                write!(f, "and its grant no longer holds: it was for sha256 {granted_sha256}")?;
                if let Some(path) = granted_path {
                    write!(f, " ({})", path.display())?;
                }
                write!(
                    f,
                    " but the plugin's sha256 is now {sha256}; its bytes changed, which revokes the grant. \
                     Review the new plugin, then grant it again with `{command}`"
                )
            }
            Self::Undeclared { declared } => {
                let list = if declared.is_empty() {
                    "nothing".to_owned()
                } else {
                    declared.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                };
                write!(f, "which the plugin does not declare (it declares {list}), so it cannot be granted")
            }
        }
    }
}

/// What a plugin may do, as `plugins list` and `inspect` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "standing")]
pub enum Standing {
    /// A built-in: part of caulk.
    Trusted,
    Directory {
        /// Granted and declared, from the grants file and `--grant`.
        granted: Vec<Capability>,
        /// A stored grant for other bytes, which no longer holds.
        #[serde(skip_serializing_if = "Option::is_none")]
        stale_grant_sha256: Option<String>,
    },
}

/// The grants in force for one run.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    store: GrantStore,
    /// `--grant NAME:CAPABILITY`.
    once: Vec<(String, Capability)>,
}

/// Parses `--grant NAME:CAPABILITY`.
pub fn parse_once(text: &str) -> Result<(String, Capability), String> {
    let (name, capability) = text
        .split_once(':')
        .filter(|(n, c)| !n.is_empty() && !c.is_empty())
        .ok_or_else(|| format!("--grant `{text}`: expected NAME:CAPABILITY, e.g. my-plugin:network"))?;
    let capability = capability.parse::<Capability>().map_err(|e| format!("--grant `{text}`: {e}"))?;
    Ok((name.to_owned(), capability))
}

impl Policy {
    pub fn new(store: GrantStore, once: Vec<(String, Capability)>) -> Self {
        Self { store, once }
    }

    pub fn store(&self) -> &GrantStore {
        &self.store
    }

    /// Checks the `--grant` flags against the plugins found: each must name
    /// a directory plugin and a capability it declares.
    pub fn check_once(&self, plugins: &super::PluginSet) -> Result<(), String> {
        for (name, capability) in &self.once {
            let Some(plugin) = plugins.get(name) else {
                return Err(format!("--grant {name}:{capability}: {}", plugins.missing(name)));
            };
            if plugin.source() == &PluginSource::Builtin {
                return Err(format!(
                    "--grant {name}:{capability}: {name} is a built-in plugin, trusted without grants"
                ));
            }
            if !plugin.declared().iter().any(|d| d.covers(capability)) {
                return Err(format!(
                    "--grant {name}:{capability}: {}",
                    Refusal::Undeclared { declared: plugin.declared().to_vec() }
                ));
            }
        }
        Ok(())
    }

    /// What `plugin` may do in this run.
    pub fn standing(&self, plugin: &Plugin) -> Standing {
        if plugin.source() == &PluginSource::Builtin {
            return Standing::Trusted;
        }
        let stored = self.store.get(plugin.name());
        let pinned = stored.filter(|g| g.sha256 == plugin.sha256());
        let mut granted: Vec<Capability> = pinned
            .map(|g| g.capabilities.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(self.once.iter().filter(|(n, _)| n == plugin.name()).map(|(_, c)| c))
            .filter(|c| plugin.declared().iter().any(|d| d.covers(c)))
            .cloned()
            .collect();
        granted.sort();
        granted.dedup();
        Standing::Directory {
            granted,
            stale_grant_sha256: stored.filter(|g| g.sha256 != plugin.sha256()).map(|g| g.sha256.clone()),
        }
    }

    /// Allows `request` (what the plugin asked, for the message) when
    /// `plugin` holds every capability in `needs`.
    pub fn check(
        &self,
        plugin: &Plugin,
        request: &dyn Fn() -> String,
        needs: &[Capability],
    ) -> Result<(), PluginError> {
        let Standing::Directory { granted, .. } = self.standing(plugin) else { return Ok(()) };
        for capability in needs {
            if granted.iter().any(|g| g.covers(capability)) {
                continue;
            }
            let refusal = if plugin.declared().iter().any(|d| d.covers(capability)) {
                let command = grant_command(plugin, capability);
                match self.store.get(plugin.name()).filter(|g| g.sha256 != plugin.sha256()) {
                    Some(stale) => Refusal::Stale {
                        granted_sha256: stale.sha256.clone(),
                        granted_path: stale.path.clone(),
                        sha256: plugin.sha256().to_owned(),
                        command,
                    },
                    None => Refusal::NotGranted { command },
                }
            } else {
                Refusal::Undeclared { declared: plugin.declared().to_vec() }
            };
            return Err(PluginError::NotGranted {
                plugin: PluginLabel(plugin.name().to_owned()),
                request: request(),
                capability: capability.clone(),
                refusal: Box::new(refusal),
            });
        }
        Ok(())
    }
}

/// The command that grants `capability` to `plugin`, with the plugin's
/// directory when caulk would not find it there by default.
pub fn grant_command(plugin: &Plugin, capability: &Capability) -> String {
    let mut command = "caulk ".to_owned();
    if let PluginSource::File(path) = plugin.source()
        && let Some(dir) = path.parent()
        && !super::search_path(&[]).iter().any(|d| d == dir)
    {
        command.push_str("--plugin-dir ");
        command.push_str(&shell_quote(&dir.to_string_lossy()));
        command.push(' ');
    }
    let _ = write!(command, "plugins grant {} {}", plugin.name(), shell_quote(&capability.to_string()));
    command
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    let plain =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
    if plain { text.to_owned() } else { format!("'{}'", text.replace('\'', "'\\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_grants_parse() {
        assert_eq!(
            parse_once("asks:index:pypi.org").unwrap(),
            ("asks".into(), "index:pypi.org".parse().unwrap())
        );
        assert!(parse_once("asks").unwrap_err().contains("NAME:CAPABILITY"));
        assert!(parse_once("asks:files").unwrap_err().contains("not a capability"));
        assert!(parse_once(":network").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("/tmp/plugins"), "/tmp/plugins");
        assert_eq!(shell_quote("index:*"), "'index:*'");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
    }

    #[test]
    fn the_store_round_trips_and_refuses_what_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caulk/grants.json");
        assert!(GrantStore::open(&path).unwrap().get("asks").is_none(), "no file grants nothing");
        let grant = StoredGrant {
            sha256: "ab".repeat(32),
            path: Some("/p/asks.wasm".into()),
            capabilities: vec![Capability::Network],
        };
        GrantStore::update(&path, |g| g.insert("asks".into(), grant.clone())).unwrap();
        assert_eq!(GrantStore::open(&path).unwrap().get("asks"), Some(&grant));
        assert!(std::fs::read_dir(path.parent().unwrap()).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            !name.to_string_lossy().starts_with(".grants-")
        }));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(GrantStore::open(&path), Err(GrantStoreError::Insecure { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir_of = path.parent().unwrap();
        std::fs::set_permissions(dir_of, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(GrantStore::open(&path), Err(GrantStoreError::Insecure { .. })));
        std::fs::set_permissions(dir_of, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(GrantStore::open(&path).is_ok(), "a sticky directory keeps others' hands off the file");
        std::fs::set_permissions(dir_of, std::fs::Permissions::from_mode(0o755)).unwrap();
        for bad in [&b"{\"format\":\"caulk-grants/v1\",\"plugins\":{\"a\":{\"sha256\":\"x\",\"capabilities\":[\"files\"]}}}"[..], b"[]", b"{\"format\":\"v9\"}", b"\xff"] {
            std::fs::write(&path, bad).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = GrantStore::open(&path).unwrap_err();
            assert!(matches!(err, GrantStoreError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains("grants.json"), "{err}");
        }
    }
}
