//! `caulk generate`: the patch as a Docker build context (Copa's `generate`).
//! The patch runs as `caulk patch` would, into a scratch OCI layout; its
//! layer becomes the context.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::GlobalArgs;
use super::patch::{PatchArgs, Progress, cancellation};
use crate::Error;
use crate::patch::{self, labels, summary};

/// Write a Docker build context (Dockerfile and the patch's files) that
/// `docker build` turns into the patched image.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The image: a registry reference or docker-daemon:NAME:TAG (what a
    /// Dockerfile's FROM can name).
    #[arg(short, long, value_name = "IMAGE")]
    pub image: String,

    /// A vulnerability report for the image; without one every OS package is
    /// brought up to date.
    #[arg(short, long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Where the context tar goes; stdout when omitted.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Package types to patch: os, library, or os,library.
    #[arg(long, value_name = "TYPES", default_value = "os")]
    pub pkg_types: String,

    /// How far a library may move: patch, minor or major.
    #[arg(long, value_name = "LEVEL", default_value = "patch")]
    pub library_patch_level: String,

    /// The scanner plugin that reads the report.
    #[arg(long, value_name = "NAME")]
    pub scanner: Option<String>,

    /// Leave out the updates that fail instead of writing nothing.
    #[arg(long)]
    pub ignore_errors: bool,

    /// The platform to patch in a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Give up after this long (e.g. 5m, 90s).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub timeout: String,

    /// Where temporary files go.
    #[arg(long, value_name = "DIR")]
    pub working_folder: Option<PathBuf>,
}

/// `caulk patch`'s own parsing, so generate checks its flags the same way.
#[derive(Parser)]
struct AsPatch {
    #[command(flatten)]
    patch: PatchArgs,
}

impl GenerateArgs {
    fn as_patch(&self) -> Result<PatchArgs, Error> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["caulk-generate".into(), "-i".into(), self.image.clone().into()];
        let mut flag = |name: &str, value: std::ffi::OsString| {
            argv.push(name.into());
            argv.push(value);
        };
        if let Some(report) = &self.report {
            flag("--report", report.clone().into());
        }
        flag("--pkg-types", self.pkg_types.clone().into());
        flag("--library-patch-level", self.library_patch_level.clone().into());
        flag("--timeout", self.timeout.clone().into());
        if let Some(scanner) = &self.scanner {
            flag("--scanner", scanner.clone().into());
        }
        if let Some(platform) = &self.platform {
            flag("--platform", platform.clone().into());
        }
        if let Some(dir) = &self.working_folder {
            flag("--working-folder", dir.clone().into());
        }
        if self.ignore_errors {
            argv.push("--ignore-errors".into());
        }
        AsPatch::try_parse_from(argv).map(|p| p.patch).map_err(|e| Error::Usage(e.to_string()))
    }
}

pub fn run(args: &GenerateArgs, global: &GlobalArgs) -> Result<ExitCode, Error> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "the build context is a tar: name a file with -o or redirect stdout".into(),
        ));
    }
    let patch_args = args.as_patch()?;
    let mut request = patch_args.request()?;
    if request.platforms.len() > 1 {
        return Err(Error::Usage("caulk generate writes one build context: give one --platform".into()));
    }
    // The layer and the base digest must come from the same platform: the
    // one asked for, else the one `docker build` here would pull.
    let platform = request.platforms.first().cloned();
    request.transport = global.transport();
    let scratch = tempfile::Builder::new()
        .prefix("caulk-generate-")
        .tempdir_in(patch::working_folder(&request)?)
        .map_err(Error::Output)?;
    let layout = format!("oci:{}:generated", scratch.path().join("layout").display());
    request.naming.dest = Some(layout.clone());
    request.naming.push = false;
    request.vex_output = None;

    let runtime = global.runtime()?;
    let plugins = global.plugins(&runtime)?;
    request.policy = global.policy(&plugins)?;
    request.budgets = global.budgets();
    let scanners =
        crate::scan::Scanners::new(&plugins, &global.plugin_search_path(), global.allow_native_plugins);
    let cancel = cancellation(patch_args.timeout);
    let mut progress = Progress::new(global.verbose > 0, global.quiet);
    let result = patch::run(&request, &plugins, &scanners, &mut progress, &cancel);
    drop(progress);
    let summary = result.map_err(Error::from)?;
    if !global.quiet {
        eprint!("{}", summary.render_text());
    }
    if summary.result != summary::Result::Patched {
        eprintln!("nothing to patch: no build context written");
        return Ok(ExitCode::SUCCESS);
    }

    let patched = caulk_image::ImageRef::parse(&layout).map_err(|e| Error::Usage(e.to_string()))?;
    let written = caulk_image::Image::open(&patched, &caulk_image::TransportOptions::default())
        .map_err(|e| Error::Image { image: layout.clone(), source: Box::new(e) })?;
    let chosen = written
        .image_for(platform.as_ref())
        .map_err(|e| Error::Image { image: layout.clone(), source: Box::new(e) })?;
    let base_digest = chosen
        .config
        .parsed
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref().and_then(|l| l.get(labels::BASE_DIGEST).cloned()))
        .unwrap_or_default();
    let write = |out: &mut dyn Write| -> Result<(), Error> {
        crate::generate::write_context(
            &request.image,
            &base_digest,
            &patched,
            platform.as_ref(),
            &caulk_image::TransportOptions::default(),
            scratch.path(),
            out,
        )?;
        out.flush().map_err(Error::Output)
    };
    match &args.output {
        // Written beside the destination and renamed over it: a failed run
        // leaves no partial tar and no earlier one mistaken for this run's.
        Some(path) => {
            let dir =
                path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let mut file = tempfile::NamedTempFile::new_in(dir).map_err(Error::Output)?;
            write(file.as_file_mut())?;
            file.persist(path).map_err(|e| Error::Output(e.error))?;
        }
        None => write(&mut std::io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}
