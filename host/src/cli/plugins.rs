//! `caulk plugins list | inspect | call`.

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
use crate::plugin::{Plugin, PluginKind, PluginSet, PluginSource, Runtime};

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
    let runtime = global.runtime()?;
    match cmd {
        PluginsCommand::List { json } => {
            let user_dir = ensure_user_dir();
            let set = global.plugins(&runtime)?;
            list(&set, user_dir.as_deref(), *json)
        }
        PluginsCommand::Inspect { name, json } => {
            let set = global.plugins(&runtime)?;
            let plugin = set.get(name).ok_or_else(|| no_such_plugin(&set, name))?;
            inspect(plugin, &set, *json)
        }
        PluginsCommand::Call { plugin, function, input } => {
            call(&runtime, global, plugin, *function, input.as_ref())
        }
    }
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
}

#[derive(Serialize)]
struct BrokenRow {
    path: PathBuf,
    error: String,
}

fn rows(set: &PluginSet) -> Vec<Row<'_>> {
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
        })
        .collect()
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

fn list(set: &PluginSet, user_dir: Option<&std::path::Path>, json: bool) -> Result<ExitCode, Error> {
    let rows = rows(set);
    let broken: Vec<BrokenRow> =
        set.broken.iter().map(|b| BrokenRow { path: b.path.clone(), error: b.error.to_string() }).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "plugins": rows, "broken": broken, "user_dir": user_dir });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("serialisable"))
            .map_err(Error::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![["NAME".to_owned(), "KIND".into(), "VERSION".into(), "WIT".into(), "SOURCE".into()]];
    for row in &rows {
        let mut source = row.source.to_string();
        for overridden in &row.overrides {
            let _ = write!(source, " (overrides {overridden})");
        }
        table.push([row.name.into(), row.kind.to_string(), row.version.into(), row.wit.into(), source]);
    }
    write_table(&mut out, &table).map_err(Error::Output)?;
    for b in &broken {
        writeln!(out, "not loaded: {}: {}", b.path.display(), b.error).map_err(Error::Output)?;
    }
    if let Some(dir) = user_dir {
        writeln!(out, "\nTo install a plugin, copy its .wasm file into {}", dir.display())
            .map_err(Error::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Left-aligned columns separated by two spaces; the last column unpadded.
pub fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
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
}

fn inspect(plugin: &Plugin, set: &PluginSet, json: bool) -> Result<ExitCode, Error> {
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
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("serialisable"))
            .map_err(Error::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(", ") };
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
    ];
    for (key, value) in lines {
        writeln!(out, "{key:<12} {value}").map_err(Error::Output)?;
    }
    for overridden in &doc.overrides {
        writeln!(out, "{:<12} {overridden}", "overrides").map_err(Error::Output)?;
    }
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
