use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::budget::{Budget, Budgets};
use super::capability::Capability;
use super::grants::Refusal;

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum PluginSource {
    /// Embedded in the caulk binary.
    Builtin,
    /// A `.wasm` file in a plugin directory.
    File(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Which plugin, for messages: its name when known, else where it came from.
#[derive(Debug, Clone)]
pub struct PluginLabel(pub String);

impl fmt::Display for PluginLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that can go wrong loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{source_path} is not a WebAssembly component: {detail}")]
    NotAComponent { source_path: PluginSource, detail: String },

    #[error(
        "plugin {plugin} is built against {found}; this caulk supports {}",
        supported.join(", ")
    )]
    UnknownWitVersion { plugin: PluginLabel, found: String, supported: Vec<String> },

    #[error("plugin {plugin} exports neither caulk:plugin/scanner nor caulk:plugin/updater")]
    NoPluginInterface { plugin: PluginLabel },

    #[error("plugin {plugin} exports both a scanner and an updater; a component must be one kind")]
    TwoKinds { plugin: PluginLabel },

    #[error("plugin {plugin} imports `{import}`, which caulk does not provide")]
    UnsupportedImport { plugin: PluginLabel, import: String },

    #[error("plugin {plugin} cannot be linked: {detail}")]
    Link { plugin: PluginLabel, detail: String },

    #[error("plugin {plugin} trapped during {call}: {detail}")]
    Trap { plugin: PluginLabel, call: &'static str, detail: String },

    #[error("plugin {plugin} did not finish {call} within {}s", limit.as_secs_f64())]
    Timeout { plugin: PluginLabel, call: &'static str, limit: Duration },

    #[error("plugin {plugin} exceeded its memory limit of {} MiB during {call}", limit >> 20)]
    OutOfMemory { plugin: PluginLabel, call: &'static str, limit: usize },

    #[error("plugin {plugin} failed {call}: {message}")]
    Returned { plugin: PluginLabel, call: &'static str, message: String, hint: Option<String> },

    #[error("two plugins named `{name}` in {}: {} and {}", dir.display(), first.display(), second.display())]
    DuplicateName { name: String, dir: PathBuf, first: PathBuf, second: PathBuf },

    #[error("plugin {plugin} has an invalid name `{name}`: use lowercase letters, digits and `-`")]
    InvalidName { plugin: PluginLabel, name: String },

    #[error("plugin {plugin} cannot be loaded: {detail}")]
    BadDeclaration { plugin: PluginLabel, detail: String },

    #[error("plugin {plugin} {request}: that needs the capability `{capability}`, {refusal}")]
    NotGranted { plugin: PluginLabel, request: String, capability: Capability, refusal: Box<Refusal> },

    #[error("plugin {plugin} went over its budget of {}: {detail}", budget.describe(budgets))]
    OverBudget { plugin: PluginLabel, budget: Budget, budgets: Budgets, detail: String },

    #[error("reading plugin {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("starting the WebAssembly engine: {0}")]
    Engine(String),
}

impl PluginError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotAComponent { .. } => Some(
                "build plugins as components: `cargo build --target wasm32-wasip2` with caulk-sdk".into(),
            ),
            Self::UnknownWitVersion { .. } => {
                Some("rebuild the plugin against a caulk-sdk this caulk supports, or upgrade caulk".into())
            }
            Self::UnsupportedImport { .. } => {
                Some("plugins may import only caulk:plugin/host and WASI; the host performs all I/O".into())
            }
            Self::Timeout { .. } => {
                Some("raise the limit with --plugin-timeout if the input is very large".into())
            }
            Self::DuplicateName { .. } => Some("remove or rename one of the two files".into()),
            Self::NotGranted { plugin, refusal, capability, .. } => Some(match **refusal {
                Refusal::Undeclared { .. } => "a plugin declares what it asks for in its component \
                     (caulk_sdk::export_updater!(Plugin, capabilities = [...])); ask its author"
                    .into(),
                _ => format!(
                    "grant only what you trust the plugin with; `--grant {plugin}:{capability}` \
                     allows it for this run only"
                ),
            }),
            Self::OverBudget { budget, .. } => Some(format!(
                "budgets keep a plugin, or a hostile image it reads, from filling caulk's memory; \
                 raise this one with {} only for an image that needs it",
                budget.flag()
            )),
            Self::Returned { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}
