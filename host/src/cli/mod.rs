//! The command line: parses arguments, calls the library, renders errors once.

mod fleet;
mod generate;
mod image;
mod patch;
mod plugins;
mod report;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::plugin::{Budgets, Compiler, GrantStore, Limits, PluginSet, Policy, Runtime, cache::CodeCache};

/// Patch vulnerable packages inside container images without rebuilding them.
#[derive(Debug, Parser)]
#[command(name = "caulk", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    global: GlobalArgs,
}

/// Options every command accepts.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// A directory of `.wasm` plugins; repeatable, searched in order before
    /// $CAULK_PLUGIN_PATH and $XDG_DATA_HOME/caulk/plugins.
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,

    /// Time limit for each plugin call (e.g. `10s`, `500ms`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, global = true)]
    plugin_timeout: Duration,

    /// Memory limit for each plugin instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512, global = true)]
    plugin_memory: usize,

    /// How plugins not in the code cache yet are compiled: `baseline`
    /// (wasmtime's Winch: compiles fast, the default on x86_64) or
    /// `optimizing` (Cranelift: slower to compile, faster code; the default
    /// elsewhere, and the only one there).
    #[arg(long, value_name = "COMPILER", global = true)]
    plugin_compiler: Option<Compiler>,

    /// Grant a directory plugin a capability it declares for this run only
    /// (NAME:CAPABILITY, e.g. my-updater:network); repeatable. `caulk plugins
    /// grant` grants for good.
    #[arg(long = "grant", value_name = "NAME:CAPABILITY", global = true)]
    grants: Vec<String>,

    /// Bytes of file contents an updater's questions may read per round, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64, global = true)]
    plugin_file_budget: u64,

    /// New questions an updater may ask per round.
    #[arg(long, value_name = "N", default_value_t = 1000, global = true)]
    plugin_question_budget: usize,

    /// Bytes of stdout each command an updater asks for may print, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16, global = true)]
    plugin_output_budget: usize,

    /// More output: -v names each phase and step once and shows the steps'
    /// output, -vv adds debugging detail (the executor's own lines).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Load native (shared-library) scanner plugins from the plugin
    /// directories. They run with caulk's full privileges, outside the
    /// WebAssembly sandbox.
    #[arg(long, global = true)]
    allow_native_plugins: bool,

    /// A registry (host[:port]) to reach over plain HTTP; repeatable.
    /// Loopback registries always are.
    #[arg(long, value_name = "HOST", global = true)]
    insecure_registry: Vec<String>,

    /// The Docker Engine for docker-daemon: references (default $DOCKER_HOST).
    #[arg(long, value_name = "URL", global = true)]
    docker_host: Option<String>,

    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Colour in messages: auto (on a terminal, unless $NO_COLOR is set),
    /// always or never.
    #[arg(long, value_name = "WHEN", value_enum, default_value = "auto", global = true)]
    color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour what goes to stderr.
    fn enabled(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
        }
    }

    /// The choice on the command line, read before clap parses it so that
    /// clap's own help and errors follow it too.
    fn from_args(args: &[std::ffi::OsString]) -> Self {
        let mut choice = Self::Auto;
        let mut iter = args.iter().filter_map(|a| a.to_str());
        while let Some(arg) = iter.next() {
            let value = match arg.strip_prefix("--color") {
                Some("") => iter.next(),
                Some(rest) => rest.strip_prefix('='),
                None if arg == "--" => break,
                None => continue,
            };
            choice = match value {
                Some("always") => Self::Always,
                Some("never") => Self::Never,
                _ => Self::Auto,
            };
        }
        choice
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Patch the vulnerable packages of an image into one new layer.
    Patch(Box<patch::PatchArgs>),
    /// Write a Docker build context that `docker build` turns into the
    /// patched image (Copa's generate).
    Generate(Box<generate::GenerateArgs>),
    /// Read a scanner report: per package the fixed versions and the
    /// vulnerabilities behind them.
    Report(report::ReportArgs),
    /// Inspect and copy images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List, inspect, grant, call and scaffold plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("`{text}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl GlobalArgs {
    fn runtime(&self) -> Result<Arc<Runtime>, Error> {
        let limits = Limits { timeout: self.plugin_timeout, memory: self.plugin_memory << 20 };
        let compiler = self.plugin_compiler.unwrap_or_default();
        Ok(Arc::new(Runtime::with_compiler(limits, CodeCache::default_dir(), compiler)?))
    }

    fn transport(&self) -> caulk_image::TransportOptions {
        let mut options = caulk_image::TransportOptions::default();
        options.docker_host.clone_from(&self.docker_host);
        options.registry.insecure.clone_from(&self.insecure_registry);
        options
    }

    fn plugin_search_path(&self) -> Vec<PathBuf> {
        crate::plugin::search_path(&self.plugin_dirs)
    }

    fn plugins(&self, runtime: &Arc<Runtime>) -> Result<PluginSet, Error> {
        Ok(PluginSet::discover(runtime, &self.plugin_search_path())?)
    }

    fn budgets(&self) -> Budgets {
        Budgets {
            file_bytes: self.plugin_file_budget.saturating_mul(1 << 20),
            questions: self.plugin_question_budget,
            output_bytes: self.plugin_output_budget.saturating_mul(1 << 20),
        }
    }

    /// The grants file and the `--grant` flags, checked against `plugins`.
    fn policy(&self, plugins: &PluginSet) -> Result<Policy, Error> {
        let once = self
            .grants
            .iter()
            .map(|g| crate::plugin::grants::parse_once(g).map_err(Error::Usage))
            .collect::<Result<Vec<_>, _>>()?;
        let store = GrantStore::open(&GrantStore::default_path()?)?;
        let policy = Policy::new(store, once);
        policy.check_once(plugins).map_err(Error::Usage)?;
        Ok(policy)
    }
}

fn init_tracing(global: &GlobalArgs) {
    // Other crates' logs (wasmtime's are chatty at debug) only from -vvv on;
    // the executor's own step lines from -vv, so -v shows each step once.
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,caulk=info,caulk_exec=warn",
        (false, 2) => "warn,caulk=debug",
        (false, _) => "debug,caulk=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAULK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(global.color.enabled())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Runs the command line and turns the outcome into an exit code.
pub fn run() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let color = match ColorChoice::from_args(&args) {
        ColorChoice::Always => clap::ColorChoice::Always,
        ColorChoice::Never => clap::ColorChoice::Never,
        // clap's own `auto` looks at the terminal and $NO_COLOR.
        ColorChoice::Auto => clap::ColorChoice::Auto,
    };
    let cli = Cli::command()
        .color(color)
        .try_get_matches_from(&args)
        .and_then(|matches| Cli::from_arg_matches(&matches))
        .unwrap_or_else(|e| e.exit());
    init_tracing(&cli.global);
    let result = match &cli.command {
        Command::Patch(args) => patch::run(args, &cli.global),
        Command::Generate(args) => generate::run(args, &cli.global),
        Command::Report(args) => report::run(args, &cli.global),
        Command::Image(cmd) => image::run(cmd, &cli.global),
        Command::Plugins(cmd) => plugins::run(cmd, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            render(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

/// Prints an error and its causes once, with the hint that helps.
fn render(err: &Error) {
    let mut message = format!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            let _ = write!(message, "\n  caused by: {text}");
        }
        source = cause.source();
    }
    eprintln!("{message}");
    if let Some(hint) = err.hint() {
        eprintln!("  hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }

    #[test]
    fn color_is_read_before_clap_parses() {
        let args = |text: &str| text.split(' ').map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(ColorChoice::from_args(&args("caulk patch --color never -i x")), ColorChoice::Never);
        assert_eq!(ColorChoice::from_args(&args("caulk --color=always report r")), ColorChoice::Always);
        assert_eq!(ColorChoice::from_args(&args("caulk report r")), ColorChoice::Auto);
        assert_eq!(ColorChoice::from_args(&args("caulk report -- --color=never")), ColorChoice::Auto);
        assert!(ColorChoice::Always.enabled() && !ColorChoice::Never.enabled());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
