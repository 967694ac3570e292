//! `caulk patch --config FILE`: the fleet flags and how they reach
//! `crate::fleet`. In fleet mode `-r` is Copa's directory of reports of
//! the patched images (for skip detection), not one report.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use caulk_exec::CancelToken;
use caulk_image::ImageRef;

use super::GlobalArgs;
use super::patch::PatchArgs;
use crate::Error;
use crate::fleet::{self, FleetOptions, FleetStatus, Job, Shard};
use crate::patch::PatchRequest;
use crate::scan::Scanners;

#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Patch the images a PatchConfig file lists (Copa's bulk mode; its
    /// copa.sh/v1alpha1 files work unchanged). -r then names a directory
    /// of reports of the patched images, for skip detection.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "tag", "tag_suffix", "dest", "platform", "output", "push"])]
    pub config: Option<PathBuf>,

    /// With --config: stop starting jobs once one has failed.
    #[arg(long, requires = "config")]
    pub fail_fast: bool,

    /// With --config: patch only shard I of N (1-based) of the jobs, so N
    /// runners of a CI matrix split a fleet between them.
    #[arg(long, value_name = "I/N", requires = "config", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
}

/// Each job's request: the command line's settings, the job's image.
struct FromArgs<'a> {
    args: &'a PatchArgs,
    base: PatchRequest,
}

impl fleet::Requests for FromArgs<'_> {
    fn request(&self, job: &Job) -> Result<PatchRequest, Error> {
        let mut request = self.args.request_for(job.source.clone())?;
        request.report.clone_from(&job.report);
        request.naming.dest = Some(job.destination.clone());
        request.platforms.clone_from(&job.platforms);
        // --jobs already runs this many images at once; their platforms go
        // one after the other, or the two would multiply.
        request.jobs = Some(1);
        request.transport.clone_from(&self.base.transport);
        request.policy = self.base.policy.clone();
        request.budgets = self.base.budgets;
        Ok(request)
    }
}

pub fn run(args: &PatchArgs, global: &GlobalArgs) -> Result<ExitCode, Error> {
    let path = args.fleet.config.as_deref().expect("called with --config");
    let config = fleet::config::load(path).map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(dir) = &args.report
        && !dir.is_dir()
    {
        return Err(Error::Usage(format!(
            "-r {}: with --config, -r names a directory of reports of the patched images",
            dir.display()
        )));
    }
    // Checks the shared flags once, with any image, before a job starts.
    let mut base = args.request_for(ImageRef::parse("oci:/dev/null").expect("a valid reference"))?;
    base.transport = global.transport();
    let runtime = global.runtime()?;
    let plugins = global.plugins(&runtime)?;
    base.policy = global.policy(&plugins)?;
    base.budgets = global.budgets();
    let scanners = Scanners::new(&plugins, &global.plugin_search_path(), global.allow_native_plugins);
    let options = FleetOptions {
        reports_dir: args.report.clone(),
        jobs: args.jobs.map_or_else(|| fleet::default_jobs(args.step_memory), std::num::NonZeroUsize::get),
        fail_fast: args.fleet.fail_fast,
        shard: args.fleet.shard,
        timeout: args.timeout,
        pkg_types: base.pkg_types,
        scanner: args.scanner.clone(),
        transport: base.transport.clone(),
        buildkit: args.buildkit_settings()?,
    };
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    let _ = ctrlc::set_handler(move || on_signal.cancel());
    let requests = FromArgs { args, base };
    let summary = fleet::run(&config, &options, &requests, &plugins, &scanners, &cancel);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    } else if !global.quiet {
        out.write_all(summary.render_text().as_bytes()).map_err(Error::Output)?;
    }
    let failed = summary.count(FleetStatus::Failed) + summary.count(FleetStatus::NotRun);
    if failed > 0 {
        tracing::error!("{failed} of {} fleet jobs failed or did not run", summary.rows.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
