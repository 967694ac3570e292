//! `caulk patch`: Copa's flags where Copa has them, caulk's own beside.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use caulk_exec::{CancelToken, Mode, StepLimits, StepOutcome, Stream};
use caulk_image::{ImageRef, Platform, TransportOptions};

use super::GlobalArgs;
use crate::Error;
use crate::model::PatchLevel;
use crate::patch::{self, Observer, PatchRequest, PkgTypes, dest::Naming};
use crate::scan::Scanners;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Openvex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Overlayfs and bubblewrap on this machine (needs root).
    Local,
    /// A BuildKit daemon (--addr); the steps' result is read back from
    /// Docker's embedded BuildKit.
    Buildkit,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExecMode {
    /// overlayfs where it works, else copy.
    Auto,
    Overlay,
    Copy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Patch,
    Minor,
    Major,
}

/// Patch the vulnerable packages of an image into one new layer.
#[derive(Debug, clap::Args)]
pub struct PatchArgs {
    /// The image: a registry reference, or TRANSPORT:REF (oci:DIR[:REF],
    /// oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME:TAG).
    #[arg(short, long, value_name = "IMAGE", required_unless_present = "config")]
    pub image: Option<String>,

    /// A vulnerability report for the image, or a directory of one report
    /// per platform (`linux-amd64.json`, `linux-arm64-v8.json`, ...); without
    /// one every OS package is brought up to date.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub report: Option<PathBuf>,

    /// Tag of the patched image, or a full reference.
    #[arg(short, long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Suffix for the patched tag when --tag is not given.
    #[arg(long, value_name = "SUFFIX", default_value = "patched")]
    pub tag_suffix: String,

    /// Where the patched image goes (TRANSPORT:REF); default beside the input
    /// in the same transport under the patched tag.
    #[arg(long, value_name = "TRANSPORT:REF")]
    pub dest: Option<String>,

    /// The scanner plugin that reads the report (default: the one that claims it).
    #[arg(long, value_name = "NAME")]
    pub scanner: Option<String>,

    /// Write the image even when some updates fail; they are listed and left
    /// out of the VEX document.
    #[arg(long)]
    pub ignore_errors: bool,

    /// Write an OpenVEX document of what was fixed to FILE.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The VEX format.
    #[arg(short, long, value_enum, default_value = "openvex")]
    pub format: Format,

    /// Give up after this long (e.g. 5m, 90s); nothing is written then.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::parse_duration)]
    pub timeout: Duration,

    /// Where temporary files go (must allow an overlayfs upper dir); when
    /// given, the steps' changes stay there instead of a tmpfs chosen for a
    /// small upgrade.
    #[arg(long, value_name = "DIR")]
    pub working_folder: Option<PathBuf>,

    /// Package types to patch: os, library, or os,library.
    #[arg(long, value_name = "TYPES", default_value = "os")]
    pub pkg_types: String,

    /// How far a library may move: patch, minor or major.
    #[arg(long, value_enum, default_value = "patch")]
    pub library_patch_level: Level,

    /// Push the result to the registry the image name points at.
    #[arg(long)]
    pub push: bool,

    /// The engine that runs the package managers [default: local, or
    /// buildkit when --addr, --cacert or --cert is given, as in Copa].
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,

    /// The BuildKit daemon for --engine buildkit: unix:///PATH,
    /// tcp://HOST:PORT, docker://, docker-unix:///PATH or
    /// docker-container://NAME [default: $BUILDKIT_HOST, else
    /// unix:///run/buildkit/buildkitd.sock].
    #[arg(long, value_name = "ADDRESS")]
    pub addr: Option<String>,

    /// CA certificate to verify a tcp:// BuildKit daemon with (turns on TLS).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate for a tcp:// BuildKit daemon.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Client key for a tcp:// BuildKit daemon.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// How the local engine captures changes.
    #[arg(long, value_enum, default_value = "auto")]
    pub executor_mode: ExecMode,

    /// The platforms to patch in a multi-platform image, comma-separated
    /// (os/arch[/variant],...); default: every platform, or the one a report
    /// file names.
    #[arg(long, value_name = "PLATFORMS")]
    pub platform: Option<String>,

    /// How many platforms of an index, or images of a --config fleet, to
    /// patch at once (default: as many as the cores and memory allow).
    #[arg(long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,

    /// Memory limit of each package-manager step (all its processes), in
    /// MiB; 0 for none. A step that runs out fails and says so.
    #[arg(long, value_name = "MIB", default_value_t = StepLimits::DEFAULT_MEMORY_MIB)]
    pub step_memory: u64,

    /// Limit on the processes and threads of each package-manager step; 0
    /// for none.
    #[arg(long, value_name = "N", default_value_t = StepLimits::DEFAULT_PIDS)]
    pub step_pids: u64,

    /// CA bundle mounted read-only into package-manager steps (default: the
    /// host's); never written into the image.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// An image to run tools from (any transport caulk reads) when an
    /// updater needs tools the image lacks (a distroless image): pulled
    /// once, cached, run read-only for this machine's platform with the
    /// image mounted. Default: this machine's own programs, read-only.
    #[arg(long, value_name = "IMAGE")]
    pub tooling_image: Option<String>,

    /// A package index for one ecosystem's library updates, ECOSYSTEM=URL
    /// (`python=https://mirror/simple`, `npm=https://registry.example/`);
    /// repeatable: an ecosystem's first replaces its default index, the
    /// rest are extra indexes.
    #[arg(long, value_name = "ECOSYSTEM=URL")]
    pub index_url: Vec<String>,

    /// The Python package index (replaces PyPI); `--index-url python=URL`.
    #[arg(long, value_name = "URL")]
    pub pip_index_url: Option<String>,

    /// An extra Python package index; repeatable.
    #[arg(long, value_name = "URL")]
    pub pip_extra_index_url: Vec<String>,

    /// A plugin setting, NAME.KEY=VALUE; repeatable.
    #[arg(long, value_name = "NAME.KEY=VALUE")]
    pub plugin_opt: Vec<String>,

    /// Print a machine-readable summary (caulk.patch/v1) on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

impl PatchArgs {
    /// `--index-url ECOSYSTEM=URL` with the pip flags as its aliases, by
    /// ecosystem. Checked here too, not only by the updater, so a bad URL is
    /// a usage error before an image is pulled.
    fn index_urls(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>, Error> {
        let mut given: Vec<(&str, String, &str)> = Vec::new();
        for pair in &self.index_url {
            let Some((ecosystem, url)) = pair.split_once('=').filter(|(e, _)| !e.is_empty()) else {
                return Err(usage(format!(
                    "--index-url {:?}: expected ECOSYSTEM=URL",
                    caulk_sdk::index_url::redact(pair)
                )));
            };
            if crate::index::default_index(ecosystem).is_none() {
                return Err(usage(format!("--index-url: {}", crate::index::unsupported(ecosystem))));
            }
            given.push((ecosystem, url.to_owned(), "--index-url"));
        }
        given.extend(self.pip_index_url.iter().map(|u| ("python", u.clone(), "--pip-index-url")));
        let mut urls: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (ecosystem, url, flag) in given {
            caulk_sdk::index_url::IndexUrl::parse(&url)
                .map_err(|e| usage(format!("{flag} {:?}: {e}", caulk_sdk::index_url::redact(&url))))?;
            urls.entry(ecosystem.to_owned()).or_default().push(url);
        }
        for url in &self.pip_extra_index_url {
            caulk_sdk::index_url::IndexUrl::parse(url).map_err(|e| {
                usage(format!("--pip-extra-index-url {:?}: {e}", caulk_sdk::index_url::redact(url)))
            })?;
            let python = urls.entry("python".to_owned()).or_default();
            if python.is_empty() {
                python.push(crate::index::PYPI.to_owned());
            }
            python.push(url.clone());
        }
        Ok(urls)
    }

    pub(super) fn request(&self) -> Result<PatchRequest, Error> {
        let image = self.image.as_deref().ok_or_else(|| usage("--image is required"))?;
        let image = ImageRef::parse(image).map_err(|e| usage(format!("--image: {e}")))?;
        self.request_for(image)
    }

    /// The engine to run on. A daemon address alone means BuildKit, as it
    /// does for Copa users; daemon flags with `--engine local` would be
    /// silently unused, so they are an error.
    pub(super) fn engine(&self) -> Result<Engine, Error> {
        let daemon_flags = [
            self.addr.as_ref().map(|_| "--addr"),
            self.cacert.as_ref().map(|_| "--cacert"),
            self.cert.as_ref().map(|_| "--cert"),
            self.key.as_ref().map(|_| "--key"),
        ];
        let given: Vec<&str> = daemon_flags.into_iter().flatten().collect();
        match self.engine {
            Some(Engine::Local) if !given.is_empty() => {
                let (verb, them) = if given.len() == 1 { ("chooses", "it") } else { ("choose", "them") };
                Err(usage(format!(
                    "{} {verb} a BuildKit daemon, which --engine local does not use: drop {them}, or use --engine buildkit",
                    given.join(", ")
                )))
            }
            Some(engine) => Ok(engine),
            None if given.is_empty() => Ok(Engine::Local),
            None => Ok(Engine::Buildkit),
        }
    }

    /// The daemon to run steps on, when the engine is BuildKit.
    pub(super) fn buildkit_settings(
        &self,
    ) -> Result<Option<patch::engine::buildkit::BuildkitSettings>, Error> {
        Ok((self.engine()? == Engine::Buildkit).then(|| patch::engine::buildkit::BuildkitSettings {
            addr: self.addr.clone(),
            ca_cert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }))
    }

    /// The request for `image` with every other setting from the flags.
    pub(super) fn request_for(&self, image: ImageRef) -> Result<PatchRequest, Error> {
        if let Some(tooling) = &self.tooling_image {
            ImageRef::parse(tooling).map_err(|e| usage(format!("--tooling-image: {e}")))?;
        }
        let mut pkg_types = PkgTypes { os: false, library: false };
        for kind in self.pkg_types.split(',').map(str::trim) {
            match kind {
                "os" => pkg_types.os = true,
                "library" => pkg_types.library = true,
                other => {
                    return Err(usage(format!(
                        "--pkg-types: unknown type `{other}` (use os, library or os,library)"
                    )));
                }
            }
        }
        if self.library_patch_level != Level::Patch && !pkg_types.library {
            return Err(usage("--library-patch-level needs `library` in --pkg-types"));
        }
        if pkg_types.library && self.report.is_none() && self.fleet.config.is_none() {
            return Err(usage("--pkg-types library needs a report (-r)"));
        }
        let platforms = match &self.platform {
            Some(list) => list
                .split(',')
                .map(|p| Platform::parse(p.trim()).map_err(|e| usage(format!("--platform: {e}"))))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let mut plugin_settings = Vec::new();
        for opt in &self.plugin_opt {
            let parsed = opt.split_once('=').and_then(|(k, v)| {
                k.split_once('.').map(|(p, k)| (p.to_owned(), k.to_owned(), v.to_owned()))
            });
            match parsed {
                Some(s) if !s.0.is_empty() && !s.1.is_empty() => plugin_settings.push(s),
                _ => return Err(usage(format!("--plugin-opt `{opt}`: expected NAME.KEY=VALUE"))),
            }
        }
        let index_urls = self.index_urls()?;
        Ok(PatchRequest {
            image,
            report: self.report.clone(),
            scanner: self.scanner.clone(),
            naming: Naming {
                dest: self.dest.clone(),
                tag: self.tag.clone(),
                tag_suffix: self.tag_suffix.clone(),
                push: self.push,
            },
            ignore_errors: self.ignore_errors,
            working_folder: self.working_folder.clone(),
            pkg_types,
            patch_level: match self.library_patch_level {
                Level::Patch => PatchLevel::Patch,
                Level::Minor => PatchLevel::Minor,
                Level::Major => PatchLevel::Major,
            },
            platforms,
            jobs: self.jobs.map(std::num::NonZeroUsize::get),
            ca_bundle: self.ca_bundle.clone(),
            step_limits: StepLimits {
                memory: (self.step_memory > 0).then(|| self.step_memory.saturating_mul(1 << 20)),
                pids: (self.step_pids > 0).then_some(self.step_pids),
            },
            mode: match self.executor_mode {
                ExecMode::Auto => Mode::Auto,
                ExecMode::Overlay => Mode::Overlay,
                ExecMode::Copy => Mode::Copy,
            },
            index_urls,
            plugin_settings,
            vex_output: self.output.clone(),
            transport: TransportOptions::default(),
            policy: crate::plugin::Policy::default(),
            budgets: crate::plugin::Budgets::default(),
            source_date_epoch: source_date_epoch()?,
            cache_dir: cache_dir(),
            vex_author: std::env::var("CAULK_VEX_AUTHOR")
                .or_else(|_| std::env::var("COPA_VEX_AUTHOR"))
                .unwrap_or_else(|_| "caulk".to_owned()),
            tooling_image: self.tooling_image.clone(),
        })
    }
}

/// `SOURCE_DATE_EPOCH`. One that is set but not a number would silently
/// give a run stamped with the current time: refused instead.
pub(super) fn source_date_epoch() -> Result<Option<u64>, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            usage(format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds since 1970"))
        }),
        _ => Ok(None),
    }
}

/// caulk's own directories: `$CAULK_CACHE_DIR`, else the XDG cache dir.
/// Always absolute: steps bind its subdirectories from another cwd.
pub(super) fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAULK_CACHE_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return std::path::absolute(&dir).unwrap_or(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("caulk")
}

/// Shows progress: step output with -v, a spinner on a terminal otherwise.
pub(super) struct Progress {
    verbose: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn new(verbose: bool, quiet: bool) -> Self {
        let bar = (!verbose && !quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { verbose, bar }
    }
}

impl Observer for Progress {
    fn phase(&mut self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_owned());
        } else {
            tracing::info!("{name}");
        }
    }

    fn step_started(&mut self, index: usize, total: usize, summary: &str) {
        let text = format!("step {}/{total}: {summary}", index + 1);
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        } else {
            tracing::info!("{text}");
        }
    }

    fn step_output(&mut self, stream: Stream, line: &str) {
        if self.verbose {
            let tag = if matches!(stream, Stream::Stderr) { "!" } else { "|" };
            eprintln!("  {tag} {line}");
        }
    }

    fn step_finished(&mut self, outcome: &StepOutcome) {
        // step_started named the step; this only says how it ended.
        let seconds = outcome.duration.as_secs_f64();
        match outcome.exit_code {
            Some(0) => tracing::info!("  done in {seconds:.1}s"),
            Some(code) => tracing::info!("  exit status {code} after {seconds:.1}s"),
            None => tracing::info!("  stopped by a signal after {seconds:.1}s"),
        }
    }

    fn finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Cancels on Ctrl-C or SIGTERM, and when the timeout passes.
pub(super) fn cancellation(timeout: Duration) -> CancelToken {
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    // A second handler cannot be installed in one process; the first wins.
    let _ = ctrlc::set_handler(move || on_signal.cancel());
    let on_timeout = cancel.clone();
    std::thread::Builder::new()
        .name("caulk-timeout".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            tracing::error!("--timeout of {}s reached; stopping", timeout.as_secs());
            on_timeout.cancel();
        })
        .expect("spawning the timeout thread");
    cancel
}

pub fn run(args: &PatchArgs, global: &GlobalArgs) -> Result<ExitCode, Error> {
    if args.fleet.config.is_some() {
        return super::fleet::run(args, global);
    }
    let mut request = args.request()?;
    request.transport = global.transport();
    let runtime = global.runtime()?;
    let plugins = global.plugins(&runtime)?;
    request.policy = global.policy(&plugins)?;
    request.budgets = global.budgets();
    let scanners = Scanners::new(&plugins, &global.plugin_search_path(), global.allow_native_plugins);
    let cancel = cancellation(args.timeout);
    let mut progress = Progress::new(global.verbose > 0, global.quiet);
    let result = match args.buildkit_settings()? {
        None => patch::run(&request, &plugins, &scanners, &mut progress, &cancel),
        Some(settings) => {
            patch::engine::buildkit::run(&settings, &request, &plugins, &scanners, &mut progress, &cancel)
        }
    };
    drop(progress);
    let summary = match &result {
        Ok(summary) => Some(summary),
        Err(e) => e.summary(),
    };
    if let Some(summary) = summary {
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, summary).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else if !global.quiet {
            out.write_all(summary.render_text().as_bytes()).map_err(Error::Output)?;
        }
    }
    result.map(|_| ExitCode::SUCCESS).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        patch: PatchArgs,
    }

    fn request(extra: &[&str]) -> Result<PatchRequest, Error> {
        let args = ["caulk", "-i", "debian:12", "-r", "report.json", "--pkg-types", "library"];
        Wrapper::try_parse_from(args.iter().chain(extra)).expect("clap accepts it").patch.request()
    }

    fn engine(extra: &[&str]) -> Result<Engine, Error> {
        let args = ["caulk", "-i", "debian:12"];
        Wrapper::try_parse_from(args.iter().chain(extra)).expect("clap accepts it").patch.engine()
    }

    #[test]
    fn a_daemon_address_means_buildkit_unless_local_is_asked_for() {
        assert_eq!(engine(&[]).unwrap(), Engine::Local);
        assert_eq!(engine(&["--addr", "docker://"]).unwrap(), Engine::Buildkit);
        assert_eq!(engine(&["--cacert", "ca.pem"]).unwrap(), Engine::Buildkit);
        assert_eq!(engine(&["--engine", "buildkit"]).unwrap(), Engine::Buildkit);
        let Err(Error::Usage(message)) =
            engine(&["--engine", "local", "--addr", "tcp://h:1", "--cacert", "c"])
        else {
            panic!("daemon flags with the local engine are refused")
        };
        assert!(message.starts_with("--addr, --cacert choose a BuildKit daemon"), "{message}");
    }

    #[test]
    fn index_urls_are_checked_before_anything_runs() {
        let ok = request(&["--pip-index-url", "https://u:t%40k@mirror.example/simple"]).unwrap();
        assert_eq!(ok.index_urls["python"], ["https://u:t%40k@mirror.example/simple"]);
        let both = request(&[
            "--index-url",
            "npm=https://npm.example/",
            "--pip-extra-index-url",
            "https://extra.example/simple",
        ])
        .unwrap();
        assert_eq!(both.index_urls["npm"], ["https://npm.example/"]);
        assert_eq!(both.index_urls["python"], ["https://pypi.org/simple", "https://extra.example/simple"]);
        let Err(Error::Usage(message)) = request(&["--index-url", "go=https://proxy.golang.org"]) else {
            panic!()
        };
        assert!(message.contains("cannot look up go packages"), "{message}");
        let Err(Error::Usage(message)) = request(&["--index-url", "https://npm.example/"]) else { panic!() };
        assert!(message.contains("expected ECOSYSTEM=URL"), "{message}");
        for (flag, url, why) in [
            ("--pip-index-url", "https://u:%aé@h/", "its password has a `%` not followed by two hex digits"),
            ("--pip-extra-index-url", "file:///wheels", "only http:// and https://"),
            ("--pip-extra-index-url", "https://h/%zz", "its path has a `%`"),
        ] {
            let Err(Error::Usage(message)) = request(&[flag, url]) else { panic!("{url} accepted") };
            assert!(message.starts_with(flag) && message.contains(why), "{message}");
        }
        let Err(Error::Usage(message)) = request(&["--pip-index-url", "ftp://u:s3cret@h/"]) else { panic!() };
        assert!(!message.contains("s3cret"), "{message}");
    }
}
