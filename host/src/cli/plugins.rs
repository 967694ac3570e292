//! `caulk plugins list | inspect | grant | revoke | call | new`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use serde::Serialize;

use super::GlobalArgs;
use crate::Error;
use crate::model::{PlanRequest, ProbeRequest, VerifyRequest};
use crate::plugin::grants::{Refusal, StoredGrant};
use crate::plugin::{
    Capability, GrantStore, Plugin, PluginKind, PluginSet, PluginSource, Policy, Runtime, Standing,
};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin caulk finds: built-ins and plugin directories.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin's information, interface version and exports.
    Inspect {
        /// Plugin name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grant a plugin from a plugin directory capabilities it declares, for
    /// its current bytes (sha256) only; stored in
    /// $XDG_CONFIG_HOME/caulk/grants.json.
    Grant {
        /// Plugin name.
        name: String,
        /// image-commands, host-tooling, network or index:HOST (index:* for any host).
        #[arg(required = true, value_name = "CAPABILITY")]
        capabilities: Vec<String>,
    },
    /// Take back capabilities granted to a plugin (all of them when none is named).
    Revoke {
        /// Plugin name.
        name: String,
        #[arg(value_name = "CAPABILITY")]
        capabilities: Vec<String>,
    },
    /// Call one function of a plugin and print its result as JSON (for plugin
    /// authors and their tests).
    Call {
        /// A plugin name, or a path to a `.wasm` component.
        plugin: String,
        /// The function to call.
        #[arg(value_enum)]
        function: Function,
        /// Input: the report for `sniff` and `parse`, the JSON request for
        /// `probe`, `plan` and `verify`; `-` for standard input.
        input: Option<PathBuf>,
    },
    /// Write a new plugin crate that builds and passes its tests as
    /// generated: Cargo.toml, src/lib.rs with a small working plugin, tests
    /// (one through caulk_sdk::testing), README.md with the build, test and
    /// install commands.
    New {
        /// What kind of plugin.
        #[arg(value_enum)]
        kind: crate::scaffold::Kind,
        /// The plugin's name, also its crate's: lowercase ASCII letters,
        /// digits and `-`, starting with a letter.
        name: String,
        /// Where to write the crate (new or empty); default ./NAME.
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// The sdk/ directory of a caulk source checkout, which the crate
        /// depends on by path (the SDK is not on crates.io); its Cargo.lock
        /// is copied in when there is one. Default: the sdk/ this caulk was
        /// built from, while it still exists.
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Function {
    Info,
    Sniff,
    Parse,
    Probe,
    Plan,
    Verify,
}

pub fn run(cmd: &PluginsCommand, global: &GlobalArgs) -> Result<ExitCode, Error> {
    // Scaffolding loads no plugin: no runtime, no plugin directories.
    if let PluginsCommand::New { kind, name, path, sdk } = cmd {
        return new(*kind, name, path.as_deref(), sdk.as_deref());
    }
    let runtime = global.runtime()?;
    match cmd {
        PluginsCommand::List { json } => {
            let user_dir = ensure_user_dir();
            let set = global.plugins(&runtime)?;
            let policy = global.policy(&set)?;
            list(&set, &policy, user_dir.as_deref(), *json)
        }
        PluginsCommand::Inspect { name, json } => {
            let set = global.plugins(&runtime)?;
            let policy = global.policy(&set)?;
            let plugin = set.get(name).ok_or_else(|| no_such_plugin(&set, name))?;
            inspect(plugin, &set, &policy, *json)
        }
        PluginsCommand::Grant { name, capabilities } => {
            let set = global.plugins(&runtime)?;
            let plugin = set.get(name).ok_or_else(|| no_such_plugin(&set, name))?;
            grant(plugin, capabilities)
        }
        PluginsCommand::Revoke { name, capabilities } => revoke(name, capabilities),
        PluginsCommand::Call { plugin, function, input } => {
            call(&runtime, global, plugin, *function, input.as_ref())
        }
        PluginsCommand::New { .. } => unreachable!("handled above"),
    }
}

fn new(
    kind: crate::scaffold::Kind,
    name: &str,
    path: Option<&std::path::Path>,
    sdk: Option<&std::path::Path>,
) -> Result<ExitCode, Error> {
    use crate::scaffold;
    // The name first: it also names the default directory.
    scaffold::check_name(name)?;
    let sdk = match sdk {
        Some(path) => scaffold::check_sdk(path)?,
        None => scaffold::default_sdk()?,
    };
    let dir = path.map_or_else(|| PathBuf::from(name), std::path::Path::to_path_buf);
    let done = scaffold::scaffold(kind, name, &dir, &sdk)?;
    let mut out = std::io::stdout().lock();
    let lock = if done.locked { ", with the SDK checkout's Cargo.lock" } else { "" };
    writeln!(out, "wrote the {} `{name}` to {}{lock}", kind.name(), done.dir.display())
        .map_err(Error::Output)?;
    writeln!(out, "depends on the SDK at {}", sdk.display()).map_err(Error::Output)?;
    writeln!(
        out,
        "next: cd {} && cargo test && cargo build --target wasm32-wasip2 --release",
        done.dir.display()
    )
    .map_err(Error::Output)?;
    writeln!(out, "(README.md there says how to install it)").map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    kind: PluginKind,
    version: &'a str,
    wit: &'a str,
    source: &'a PluginSource,
    /// Sources of plugins of the same name this one overrides.
    overrides: Vec<&'a PluginSource>,
    summary: &'a str,
    /// What it declares it may ask the host for.
    declared: &'a [Capability],
    /// What it may ask for in this run.
    grants: Standing,
}

#[derive(Serialize)]
struct BrokenRow {
    path: PathBuf,
    error: String,
}

fn rows<'a>(set: &'a PluginSet, policy: &Policy) -> Vec<Row<'a>> {
    set.all()
        .iter()
        .map(|p| Row {
            name: p.name(),
            kind: p.kind(),
            version: &p.info.version,
            wit: p.wit_version(),
            source: p.source(),
            overrides: set.shadowed.iter().filter(|s| s.name == p.name()).map(|s| &s.source).collect(),
            summary: &p.info.summary,
            declared: p.declared(),
            grants: policy.standing(p),
        })
        .collect()
}

/// A plugin's capabilities in a few words: what it holds and what it
/// declares without holding.
fn capabilities_text(declared: &[Capability], standing: &Standing) -> String {
    let Standing::Directory { granted, stale_grant_sha256 } = standing else {
        return "all (built-in)".to_owned();
    };
    if declared.is_empty() {
        return "-".to_owned();
    }
    let join = |caps: &mut dyn Iterator<Item = &Capability>| {
        caps.map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    let mut parts = Vec::new();
    if !granted.is_empty() {
        parts.push(format!("granted: {}", join(&mut granted.iter())));
    }
    let mut missing = declared.iter().filter(|d| !granted.contains(d)).peekable();
    if missing.peek().is_some() {
        parts.push(format!("not granted: {}", join(&mut missing)));
    }
    if stale_grant_sha256.is_some() {
        parts.push("a grant for other bytes no longer holds".to_owned());
    }
    parts.join("; ")
}

/// The user's plugin directory, made when it is missing so that installing
/// a plugin is one `cp` into a directory `caulk plugins list` names. Not
/// being able to make it (a read-only home) costs only that convenience.
fn ensure_user_dir() -> Option<PathBuf> {
    let dir = crate::plugin::user_dir()?;
    if dir.is_dir() {
        return Some(dir);
    }
    match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            tracing::info!("created the plugin directory {}", dir.display());
            Some(dir)
        }
        Err(e) => {
            tracing::warn!("cannot create the plugin directory {}: {e}", dir.display());
            None
        }
    }
}

fn no_such_plugin(set: &PluginSet, name: &str) -> Error {
    Error::NoSuchPlugin { message: set.missing(name), install_dir: ensure_user_dir() }
}

fn list(
    set: &PluginSet,
    policy: &Policy,
    user_dir: Option<&std::path::Path>,
    json: bool,
) -> Result<ExitCode, Error> {
    let rows = rows(set, policy);
    let broken: Vec<BrokenRow> =
        set.broken.iter().map(|b| BrokenRow { path: b.path.clone(), error: b.error.to_string() }).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "plugins": rows, "broken": broken, "user_dir": user_dir });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("serialisable"))
            .map_err(Error::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "NAME".to_owned(),
        "KIND".into(),
        "VERSION".into(),
        "WIT".into(),
        "CAPABILITIES".into(),
        "SOURCE".into(),
    ]];
    for row in &rows {
        let mut source = row.source.to_string();
        for overridden in &row.overrides {
            let _ = write!(source, " (overrides {overridden})");
        }
        table.push([
            row.name.into(),
            row.kind.to_string(),
            row.version.into(),
            row.wit.into(),
            capabilities_text(row.declared, &row.grants),
            source,
        ]);
    }
    crate::table::write(&mut out, &table).map_err(Error::Output)?;
    for b in &broken {
        writeln!(out, "not loaded: {}: {}", b.path.display(), b.error).map_err(Error::Output)?;
    }
    if let Some(dir) = user_dir {
        writeln!(out, "\nTo install a plugin, copy its .wasm file into {}", dir.display())
            .map_err(Error::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Inspection<'a> {
    name: &'a str,
    kind: PluginKind,
    version: &'a str,
    summary: &'a str,
    handles: &'a [String],
    os_families: &'a [String],
    class: &'static str,
    wit: String,
    source: &'a PluginSource,
    sha256: &'a str,
    overrides: Vec<&'a PluginSource>,
    exports: &'a [String],
    imports: &'a [String],
    declared: &'a [Capability],
    grants: Standing,
}

fn inspect(plugin: &Plugin, set: &PluginSet, policy: &Policy, json: bool) -> Result<ExitCode, Error> {
    let info = &plugin.info;
    let doc = Inspection {
        name: &info.name,
        kind: plugin.kind(),
        version: &info.version,
        summary: &info.summary,
        handles: &info.handles,
        os_families: &info.os_families,
        class: crate::names::class_name(info.class),
        wit: format!("caulk:plugin@{}", plugin.wit_version()),
        source: plugin.source(),
        sha256: plugin.sha256(),
        overrides: set.shadowed.iter().filter(|s| s.name == info.name).map(|s| &s.source).collect(),
        exports: plugin.exports(),
        imports: plugin.imports(),
        declared: plugin.declared(),
        grants: policy.standing(plugin),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("serialisable"))
            .map_err(Error::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(", ") };
    let declared: Vec<String> = doc.declared.iter().map(ToString::to_string).collect();
    let granted = match &doc.grants {
        Standing::Trusted => "everything: built-in plugins are part of caulk".to_owned(),
        Standing::Directory { granted, stale_grant_sha256 } => {
            let mut text = list(&granted.iter().map(ToString::to_string).collect::<Vec<_>>());
            if let Some(sha) = stale_grant_sha256 {
                let _ =
                    write!(text, " (a grant for sha256 {sha} no longer holds: the plugin's bytes changed)");
            }
            text
        }
    };
    let lines = [
        ("name", doc.name.to_owned()),
        ("kind", doc.kind.to_string()),
        ("version", doc.version.to_owned()),
        ("summary", doc.summary.to_owned()),
        (if doc.kind == PluginKind::Scanner { "reads" } else { "ecosystems" }, list(doc.handles)),
        ("os families", list(doc.os_families)),
        ("class", doc.class.to_owned()),
        ("interface", doc.wit.clone()),
        ("source", doc.source.to_string()),
        ("sha256", doc.sha256.to_owned()),
        ("exports", list(doc.exports)),
        ("imports", list(doc.imports)),
        ("declares", list(&declared)),
        ("granted", granted),
    ];
    for (key, value) in lines {
        writeln!(out, "{key:<12} {value}").map_err(Error::Output)?;
    }
    for overridden in &doc.overrides {
        writeln!(out, "{:<12} {overridden}", "overrides").map_err(Error::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_capabilities(texts: &[String]) -> Result<Vec<Capability>, Error> {
    texts.iter().map(|t| t.parse::<Capability>().map_err(|e| Error::Usage(e.to_string()))).collect()
}

fn grant(plugin: &Plugin, texts: &[String]) -> Result<ExitCode, Error> {
    let name = plugin.name();
    if plugin.source() == &PluginSource::Builtin {
        return Err(Error::Usage(format!(
            "{name} is a built-in plugin: built-ins are part of caulk and need no grants"
        )));
    }
    let wanted = parse_capabilities(texts)?;
    for capability in &wanted {
        if !plugin.declared().iter().any(|d| d.covers(capability)) {
            let refusal = Refusal::Undeclared { declared: plugin.declared().to_vec() };
            return Err(Error::Usage(format!("cannot grant {name} `{capability}`, {refusal}")));
        }
    }
    let path = GrantStore::default_path()?;
    let PluginSource::File(source) = plugin.source() else { unreachable!("built-ins returned above") };
    let replaced = GrantStore::update(&path, |grants| {
        let previous = grants.remove(name);
        let (mut capabilities, replaced) = match previous {
            Some(g) if g.sha256 == plugin.sha256() => (g.capabilities, None),
            Some(g) => (Vec::new(), Some(g.sha256)),
            None => (Vec::new(), None),
        };
        capabilities.extend(wanted.iter().cloned());
        capabilities.sort();
        capabilities.dedup();
        let grant =
            StoredGrant { sha256: plugin.sha256().to_owned(), path: Some(source.clone()), capabilities };
        grants.insert(name.to_owned(), grant.clone());
        (grant, replaced)
    })?;
    let (grant, replaced) = replaced;
    let mut out = std::io::stdout().lock();
    let held: Vec<String> = grant.capabilities.iter().map(ToString::to_string).collect();
    writeln!(out, "{name} ({}, sha256 {}) is granted: {}", source.display(), grant.sha256, held.join(", "))
        .map_err(Error::Output)?;
    if let Some(old) = replaced {
        writeln!(out, "the grant for its earlier bytes (sha256 {old}) is replaced").map_err(Error::Output)?;
    }
    writeln!(out, "grants are kept in {}", path.display()).map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}

fn revoke(name: &str, texts: &[String]) -> Result<ExitCode, Error> {
    let unwanted = parse_capabilities(texts)?;
    let path = GrantStore::default_path()?;
    let left = GrantStore::update(&path, |grants| {
        let grant = grants.get_mut(name)?;
        if unwanted.is_empty() {
            grant.capabilities.clear();
        } else {
            grant.capabilities.retain(|c| !unwanted.contains(c));
        }
        let left = grant.capabilities.clone();
        if left.is_empty() {
            grants.remove(name);
        }
        Some(left)
    })?;
    let mut out = std::io::stdout().lock();
    let line = match left {
        None => format!("{name} had no grants"),
        Some(left) if left.is_empty() => format!("{name} now holds no grants"),
        Some(left) => format!(
            "{name} still holds: {}",
            left.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    writeln!(out, "{line}").map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}

fn read_input(input: Option<&PathBuf>) -> Result<Vec<u8>, Error> {
    match input {
        None => Ok(Vec::new()),
        Some(path) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Read { path: path.clone(), source })?;
            Ok(bytes)
        }
        Some(path) => std::fs::read(path).map_err(|source| Error::Read { path: path.clone(), source }),
    }
}

fn request<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    input: Option<&PathBuf>,
    call: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::RequestJson {
        what: input.map_or_else(|| "the empty input".to_owned(), |p| p.display().to_string()),
        call,
        source,
    })
}

fn call(
    runtime: &Arc<Runtime>,
    global: &GlobalArgs,
    plugin: &str,
    function: Function,
    input: Option<&PathBuf>,
) -> Result<ExitCode, Error> {
    let looks_like_path = plugin.contains('/')
        || std::path::Path::new(plugin).extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm"));
    let set;
    let from_file;
    let plugin: &Plugin = if looks_like_path {
        let path = PathBuf::from(plugin);
        let wasm = std::fs::read(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        from_file = Plugin::load(runtime, PluginSource::File(path), &wasm, None)?;
        &from_file
    } else {
        set = global.plugins(runtime)?;
        set.get(plugin).ok_or_else(|| no_such_plugin(&set, plugin))?
    };
    let bytes = read_input(input)?;
    let value = match function {
        Function::Info => serde_json::to_value(&plugin.info),
        Function::Sniff => serde_json::to_value(plugin.sniff(&bytes)?),
        Function::Parse => serde_json::to_value(plugin.parse(&bytes)?),
        Function::Probe => {
            serde_json::to_value(plugin.probe(&request::<ProbeRequest>(&bytes, input, "probe")?)?)
        }
        Function::Plan => serde_json::to_value(plugin.plan(&request::<PlanRequest>(&bytes, input, "plan")?)?),
        Function::Verify => {
            serde_json::to_value(plugin.verify(&request::<VerifyRequest>(&bytes, input, "verify")?)?)
        }
    }
    .expect("plugin results serialise");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&value).expect("serialisable"))
        .map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}
