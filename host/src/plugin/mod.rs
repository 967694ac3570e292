//! Plugins: the WebAssembly runtime, discovery of built-in and directory
//! plugins, the compiled-code cache, and typed calls into each kind.

mod adapt;
pub mod bindings;
pub mod budget;
pub mod cache;
pub mod capability;
mod error;
pub mod grants;
mod runtime;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use budget::Budgets;
pub use cache::Provenance;
pub use capability::Capability;
pub use error::{PluginError, PluginLabel, PluginSource};
pub use grants::{GrantStore, Policy, Standing};
pub use runtime::{Compiler, Limits, PluginKind, Runtime, SUPPORTED_WIT_VERSIONS};

use crate::model::{
    Findings, Outcome, PatchPlan, PlanRequest, PluginInfo, ProbeRequest, Question, VerifyRequest,
};
use crate::parallel;
use runtime::{Loaded, Pre};

mod builtin {
    /// A plugin compiled into the binary by `build.rs`.
    pub struct Builtin {
        /// Directory under `plugins/` it was built from.
        pub dir_name: &'static str,
        /// Its cargo package.
        pub package: &'static str,
        pub sha256: &'static str,
        pub wasm: &'static [u8],
    }

    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

pub use builtin::{BUILTINS, Builtin};

/// A loaded plugin of either kind.
pub struct Plugin {
    pub info: PluginInfo,
    loaded: Loaded,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads a plugin and asks it who it is.
    pub fn load(
        runtime: &Arc<Runtime>,
        source: PluginSource,
        wasm: &[u8],
        sha256: Option<&str>,
    ) -> Result<Self, PluginError> {
        let loaded = runtime.load(source, wasm, sha256)?;
        let label = loaded.source.to_string();
        let info = runtime.call(&loaded, &label, "info", |store, pre| match pre {
            Pre::ScannerV0_1(pre) => {
                adapt::convert(&pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_info(&mut *store)?)
            }
            Pre::UpdaterV0_1(pre) => {
                adapt::convert(&pre.instantiate(&mut *store)?.caulk_plugin_updater().call_info(&mut *store)?)
            }
            Pre::ScannerV0_2(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_info(&mut *store)
            }
            Pre::UpdaterV0_2(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_updater().call_info(&mut *store)
            }
        })?;
        if !valid_name(&info.name) {
            return Err(PluginError::InvalidName { plugin: PluginLabel(label), name: info.name });
        }
        Ok(Self { info, loaded, runtime: runtime.clone() })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn kind(&self) -> PluginKind {
        self.loaded.kind
    }

    pub fn source(&self) -> &PluginSource {
        &self.loaded.source
    }

    pub fn wit_version(&self) -> &str {
        &self.loaded.wit_version
    }

    pub fn sha256(&self) -> &str {
        &self.loaded.sha256
    }

    pub fn provenance(&self) -> Provenance {
        self.loaded.provenance
    }

    pub fn exports(&self) -> &[String] {
        &self.loaded.exports
    }

    pub fn imports(&self) -> &[String] {
        &self.loaded.imports
    }

    /// The capabilities the component declares.
    pub fn declared(&self) -> &[Capability] {
        &self.loaded.declared
    }

    fn wrong_kind(&self, call: &'static str) -> PluginError {
        PluginError::Returned {
            plugin: PluginLabel(self.info.name.clone()),
            call,
            message: format!("it is a {}, not a plugin that has `{call}`", self.loaded.kind),
            hint: None,
        }
    }

    fn returned(&self, call: &'static str, e: crate::model::Error) -> PluginError {
        PluginError::Returned {
            plugin: PluginLabel(self.info.name.clone()),
            call,
            message: e.message,
            hint: e.hint,
        }
    }

    /// Confidence 0–100 that `report` is this scanner's format.
    pub fn sniff(&self, report: &[u8]) -> Result<u8, PluginError> {
        self.runtime.call(&self.loaded, &self.info.name, "sniff", |store, pre| match pre {
            Pre::ScannerV0_1(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_sniff(&mut *store, report)
            }
            Pre::ScannerV0_2(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_sniff(&mut *store, report)
            }
            Pre::UpdaterV0_1(_) | Pre::UpdaterV0_2(_) => Ok(0),
        })
    }

    /// Parses a report into findings.
    pub fn parse(&self, report: &[u8]) -> Result<Findings, PluginError> {
        let result = self.runtime.call(&self.loaded, &self.info.name, "parse", |store, pre| match pre {
            Pre::ScannerV0_1(pre) => adapt::convert(
                &pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_parse(&mut *store, report)?,
            )
            .map(Some),
            Pre::ScannerV0_2(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_scanner().call_parse(&mut *store, report).map(Some)
            }
            Pre::UpdaterV0_1(_) | Pre::UpdaterV0_2(_) => Ok(None),
        })?;
        result.ok_or_else(|| self.wrong_kind("parse"))?.map_err(|e| self.returned("parse", e))
    }

    /// What the updater needs to see of the image.
    pub fn probe(&self, request: &ProbeRequest) -> Result<Vec<Question>, PluginError> {
        let result = self.runtime.call(&self.loaded, &self.info.name, "probe", |store, pre| match pre {
            Pre::UpdaterV0_1(pre) => {
                let request = adapt::convert(request)?;
                let result =
                    pre.instantiate(&mut *store)?.caulk_plugin_updater().call_probe(&mut *store, &request)?;
                adapt::convert(&result).map(Some)
            }
            Pre::UpdaterV0_2(pre) => pre
                .instantiate(&mut *store)?
                .caulk_plugin_updater()
                .call_probe(&mut *store, request)
                .map(Some),
            Pre::ScannerV0_1(_) | Pre::ScannerV0_2(_) => Ok(None),
        })?;
        result.ok_or_else(|| self.wrong_kind("probe"))?.map_err(|e| self.returned("probe", e))
    }

    /// The updater's plan.
    pub fn plan(&self, request: &PlanRequest) -> Result<PatchPlan, PluginError> {
        let result = self.runtime.call(&self.loaded, &self.info.name, "plan", |store, pre| match pre {
            Pre::UpdaterV0_1(pre) => {
                let request = adapt::convert(request)?;
                let result =
                    pre.instantiate(&mut *store)?.caulk_plugin_updater().call_plan(&mut *store, &request)?;
                adapt::convert(&result).map(Some)
            }
            Pre::UpdaterV0_2(pre) => {
                pre.instantiate(&mut *store)?.caulk_plugin_updater().call_plan(&mut *store, request).map(Some)
            }
            Pre::ScannerV0_1(_) | Pre::ScannerV0_2(_) => Ok(None),
        })?;
        result.ok_or_else(|| self.wrong_kind("plan"))?.map_err(|e| self.returned("plan", e))
    }

    /// The updater's judgement of each selected update.
    pub fn verify(&self, request: &VerifyRequest) -> Result<Vec<Outcome>, PluginError> {
        let result = self.runtime.call(&self.loaded, &self.info.name, "verify", |store, pre| match pre {
            Pre::UpdaterV0_1(pre) => {
                let request = adapt::convert(request)?;
                let result = pre
                    .instantiate(&mut *store)?
                    .caulk_plugin_updater()
                    .call_verify(&mut *store, &request)?;
                adapt::convert_with(&result, adapt::add_empty_verdicts).map(Some)
            }
            Pre::UpdaterV0_2(pre) => pre
                .instantiate(&mut *store)?
                .caulk_plugin_updater()
                .call_verify(&mut *store, request)
                .map(Some),
            Pre::ScannerV0_1(_) | Pre::ScannerV0_2(_) => Ok(None),
        })?;
        result.ok_or_else(|| self.wrong_kind("verify"))?.map_err(|e| self.returned("verify", e))
    }
}

/// One live instance of a plugin for several calls in a row: sniffing many
/// reports, or measuring call overhead. Memory persists between its calls;
/// each call gets the whole time limit.
pub struct Session<'p> {
    plugin: &'p Plugin,
    store: wasmtime::Store<runtime::State>,
    instance: Instance,
}

enum Instance {
    ScannerV0_1(bindings::v0_1::ScannerPlugin),
    UpdaterV0_1(bindings::v0_1::updater::UpdaterPlugin),
    ScannerV0_2(bindings::v0_2::ScannerPlugin),
    UpdaterV0_2(bindings::v0_2::updater::UpdaterPlugin),
}

impl Plugin {
    /// Instantiates the plugin once for several calls.
    pub fn session(&self) -> Result<Session<'_>, PluginError> {
        let mut store = self.runtime.store(&self.info.name);
        let instance = match &self.loaded.pre {
            Pre::ScannerV0_1(pre) => pre.instantiate(&mut store).map(Instance::ScannerV0_1),
            Pre::UpdaterV0_1(pre) => pre.instantiate(&mut store).map(Instance::UpdaterV0_1),
            Pre::ScannerV0_2(pre) => pre.instantiate(&mut store).map(Instance::ScannerV0_2),
            Pre::UpdaterV0_2(pre) => pre.instantiate(&mut store).map(Instance::UpdaterV0_2),
        };
        let instance = instance.map_err(|e| self.runtime.call_error(&store, &e, "instantiate"))?;
        Ok(Session { plugin: self, store, instance })
    }
}

impl Session<'_> {
    /// The plugin's `info`.
    pub fn info(&mut self) -> Result<PluginInfo, PluginError> {
        self.plugin.runtime.reset_deadline(&mut self.store);
        let result = match &self.instance {
            Instance::ScannerV0_1(i) => {
                i.caulk_plugin_scanner().call_info(&mut self.store).and_then(|info| adapt::convert(&info))
            }
            Instance::UpdaterV0_1(i) => {
                i.caulk_plugin_updater().call_info(&mut self.store).and_then(|info| adapt::convert(&info))
            }
            Instance::ScannerV0_2(i) => i.caulk_plugin_scanner().call_info(&mut self.store),
            Instance::UpdaterV0_2(i) => i.caulk_plugin_updater().call_info(&mut self.store),
        };
        result.map_err(|e| self.plugin.runtime.call_error(&self.store, &e, "info"))
    }

    /// A scanner's `sniff`; 0 for updaters.
    pub fn sniff(&mut self, report: &[u8]) -> Result<u8, PluginError> {
        self.plugin.runtime.reset_deadline(&mut self.store);
        let result = match &self.instance {
            Instance::ScannerV0_1(i) => i.caulk_plugin_scanner().call_sniff(&mut self.store, report),
            Instance::ScannerV0_2(i) => i.caulk_plugin_scanner().call_sniff(&mut self.store, report),
            Instance::UpdaterV0_1(_) | Instance::UpdaterV0_2(_) => Ok(0),
        };
        result.map_err(|e| self.plugin.runtime.call_error(&self.store, &e, "sniff"))
    }
}

/// Lowercase ASCII letters, digits and `-`, starting with a letter.
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A plugin directory plugin that lost to another of the same name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shadowed {
    pub name: String,
    pub kind: PluginKind,
    pub source: PluginSource,
    /// Where the winning plugin came from.
    pub by: PluginSource,
}

/// A plugin file that could not be loaded.
#[derive(Debug)]
pub struct Broken {
    pub path: PathBuf,
    pub error: PluginError,
}

/// Every plugin caulk can use in this run.
#[derive(Debug, Default)]
pub struct PluginSet {
    plugins: Vec<Plugin>,
    pub shadowed: Vec<Shadowed>,
    pub broken: Vec<Broken>,
}

impl PluginSet {
    /// Built-ins, overridden by plugins found in `dirs` (earlier directories
    /// win). A directory holding two plugins of one name is an error; a file
    /// that fails to load is recorded in `broken` and otherwise ignored.
    pub fn discover(runtime: &Arc<Runtime>, dirs: &[PathBuf]) -> Result<Self, PluginError> {
        let mut set = Self::default();
        let mut by_name: HashMap<String, usize> = HashMap::new();

        for dir in dirs {
            let mut in_dir: HashMap<String, PathBuf> = HashMap::new();
            let paths = wasm_files(dir)?;
            let loaded = parallel::map(&paths, parallel::cores(), |path| {
                let wasm =
                    std::fs::read(path).map_err(|source| PluginError::Read { path: path.clone(), source })?;
                Plugin::load(runtime, PluginSource::File(path.clone()), &wasm, None)
            });
            for (path, loaded) in paths.into_iter().zip(loaded) {
                let plugin = match loaded {
                    Ok(plugin) => plugin,
                    Err(error) => {
                        if !matches!(error, PluginError::Read { .. }) {
                            tracing::warn!("skipping plugin {}: {error}", path.display());
                        }
                        set.broken.push(Broken { path, error });
                        continue;
                    }
                };
                let name = plugin.info.name.clone();
                if let Some(first) = in_dir.get(&name) {
                    return Err(PluginError::DuplicateName {
                        name,
                        dir: dir.clone(),
                        first: first.clone(),
                        second: path,
                    });
                }
                in_dir.insert(name.clone(), path);
                set.add(plugin, &mut by_name);
            }
        }
        // Loading is mostly deserialising compiled code and one small call.
        let builtins = parallel::map(BUILTINS, parallel::cores(), |builtin| {
            Plugin::load(runtime, PluginSource::Builtin, builtin.wasm, Some(builtin.sha256))
        });
        for plugin in builtins {
            set.add(plugin?, &mut by_name);
        }
        Ok(set)
    }

    /// Adds a plugin unless one of the same name is already in (which then shadows it).
    fn add(&mut self, plugin: Plugin, by_name: &mut HashMap<String, usize>) {
        if let Some(&winner) = by_name.get(plugin.name()) {
            self.shadowed.push(Shadowed {
                name: plugin.info.name.clone(),
                kind: plugin.kind(),
                source: plugin.source().clone(),
                by: self.plugins[winner].source().clone(),
            });
            return;
        }
        by_name.insert(plugin.info.name.clone(), self.plugins.len());
        self.plugins.push(plugin);
    }

    pub fn all(&self) -> &[Plugin] {
        &self.plugins
    }

    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    pub fn scanners(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter().filter(|p| p.kind() == PluginKind::Scanner)
    }

    pub fn updaters(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter().filter(|p| p.kind() == PluginKind::Updater)
    }

    /// Says why no plugin is called `name`, mentioning files that failed to load.
    pub fn missing(&self, name: &str) -> String {
        let mut msg = format!("no plugin named `{name}`");
        if !self.broken.is_empty() {
            msg.push_str("; these plugin files failed to load:");
            for broken in &self.broken {
                let _ = write!(msg, "\n  {}: {}", broken.path.display(), broken.error);
            }
        }
        msg
    }
}

/// The `.wasm` files directly in `dir`, sorted; a missing directory has none.
fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PluginError::Read { path: dir.to_owned(), source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Plugin directories in search order: `--plugin-dir` flags, then
/// `$CAULK_PLUGIN_PATH` (colon-separated), then [`user_dir`].
pub fn search_path(flags: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = flags.to_vec();
    if let Some(path) = std::env::var_os("CAULK_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(user_dir());
    dirs
}

/// The user's own plugin directory, `$XDG_DATA_HOME/caulk/plugins` (or
/// `~/.local/share/caulk/plugins`): where installing a plugin is one `cp`.
/// None when neither variable is set.
pub fn user_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share"))
        })
        .map(|data| data.join("caulk").join("plugins"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        assert!(valid_name("trivy"));
        assert!(valid_name("my-scanner-2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Trivy"));
        assert!(!valid_name("2fast"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("../x"));
    }
}
