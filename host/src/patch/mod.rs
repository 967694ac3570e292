//! `caulk patch`: report → findings → updates; image → platform; updaters
//! chosen by ecosystem and OS; probe → facts → plan → steps in the sandbox →
//! facts → verify; one new layer appended; the destination written; VEX.
//!
//! Nothing is written before every phase that can fail has passed: a failed
//! or cancelled run leaves no image and no temporary files behind.

pub mod dest;
pub mod emulation;
pub mod engine;
mod facts;
#[cfg(test)]
mod phase_tests;
pub mod platforms;
pub mod summary;
pub mod tooling;
mod workdir;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use caulk_exec::{CancelToken, ExecutorConfig, Mode, Step, StepLimits, StepOutcome, Stream};
use caulk_image::append::{AppendSpec, Appended, EditedImage, HistoryEntry, append};
use caulk_image::layer::{
    LayerCache, UnpackOptions, WhiteoutFormat, WriteOptions, WrittenLayer, write_layer,
};
use caulk_image::{CopyOptions, Image, ImageRef, Platform, PlatformImage, TransportOptions};

use crate::model::{
    Fact, IndexQuery, Options, PackageClass, PatchLevel, PatchPlan, Phase, PlanRequest, ProbeRequest,
    SelectedUpdate, StepResult, Target, Update, UpdateMode, VerifyRequest,
};
use crate::plugin::{Budgets, Plugin, PluginError, PluginSet, Policy};
use crate::scan::{ScanError, Scanners};
use crate::updates::{Grouped, PackageUpdate};
use crate::vex;
pub use engine::{Base, Changes, Engine, LocalEngine, Workspace};
pub use summary::{PatchSummary, Row, RowStatus};

/// Config labels caulk sets on a patched image.
pub mod labels {
    /// The digest of the image manifest caulk patched (before any caulk layer).
    pub const BASE_DIGEST: &str = "sh.caulk.base.digest";
    /// How many layers that image had: the layers above are caulk's.
    pub const BASE_LAYERS: &str = "sh.caulk.base.layers";
    /// The caulk version that wrote the layer.
    pub const VERSION: &str = "sh.caulk.version";
}

/// How many rounds of questions an updater may ask per phase; the SDK's
/// test loop stops at the same count.
const MAX_PROBE_ROUNDS: usize = caulk_sdk::MAX_PROBE_ROUNDS;

/// Which package classes to patch (Copa's `--pkg-types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkgTypes {
    pub os: bool,
    pub library: bool,
}

impl Default for PkgTypes {
    fn default() -> Self {
        Self { os: true, library: false }
    }
}

/// Everything `caulk patch` was asked to do.
#[derive(Debug, Clone)]
pub struct PatchRequest {
    pub image: ImageRef,
    pub report: Option<PathBuf>,
    pub scanner: Option<String>,
    pub naming: dest::Naming,
    pub ignore_errors: bool,
    pub working_folder: Option<PathBuf>,
    pub pkg_types: PkgTypes,
    pub patch_level: PatchLevel,
    /// `--platform`: the platforms of an index to patch (empty: all, or the
    /// one a report file names).
    pub platforms: Vec<Platform>,
    /// `--jobs`: platforms patched at once (`None`: as cores and memory allow).
    pub jobs: Option<usize>,
    pub ca_bundle: Option<PathBuf>,
    pub mode: Mode,
    /// Memory and process limits of each step (`--step-memory`, `--step-pids`).
    pub step_limits: StepLimits,
    /// Package index URLs by ecosystem (`python`, `npm`): the first
    /// replaces the default index, the rest are extra. An updater gets those
    /// of the ecosystems it handles.
    pub index_urls: std::collections::BTreeMap<String, Vec<String>>,
    /// `--plugin-opt NAME.KEY=VALUE`.
    pub plugin_settings: Vec<(String, String, String)>,
    pub vex_output: Option<PathBuf>,
    pub transport: TransportOptions,
    /// What directory plugins may ask the host for.
    pub policy: Policy,
    pub budgets: Budgets,
    /// `SOURCE_DATE_EPOCH`: the time stamped on the layer's files, its
    /// history and the VEX document, and passed to steps.
    pub source_date_epoch: Option<u64>,
    /// caulk's own directories: the layer cache and host-side step caches.
    /// Absolute: steps bind its subdirectories from another cwd.
    pub cache_dir: PathBuf,
    /// The author named in the VEX document.
    pub vex_author: String,
    /// `--tooling-image`: the root commands run from when a plugin asks for
    /// the host's (a tooling context without an image). None: the host's.
    pub tooling_image: Option<String>,
}

/// What the pipeline reports while it works: phases, step output.
pub trait Observer {
    fn phase(&mut self, _name: &str) {}
    fn step_started(&mut self, _index: usize, _total: usize, _summary: &str) {}
    fn step_output(&mut self, _stream: Stream, _line: &str) {}
    fn step_finished(&mut self, _outcome: &StepOutcome) {}
    fn finished(&mut self) {}
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(transparent)]
    Scan(#[from] Box<ScanError>),

    #[error("{}", crate::error::about_image(image, source))]
    Image { image: String, source: Box<caulk_image::Error> },

    #[error("{0}")]
    Executor(#[from] Box<caulk_exec::Error>),

    #[error(transparent)]
    Plugin(#[from] Box<PluginError>),

    #[error("plugin {plugin} asked more than {MAX_PROBE_ROUNDS} rounds of questions during {phase}")]
    EndlessProbe { plugin: String, phase: &'static str },

    #[error("plugin {plugin}'s plan cannot run: {reason}")]
    BadPlan { plugin: String, reason: String },

    #[error("destination: {0}")]
    Destination(String),

    #[error("{failed} of {} failed; no image was written", summary::counted(*total, "update", "updates"))]
    UpdatesFailed { failed: usize, total: usize, summary: Box<PatchSummary> },

    #[error("{0}")]
    Usage(String),

    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },

    #[error("cancelled {during}; nothing was written")]
    Cancelled { during: String },

    #[error(transparent)]
    Buildkit(Box<engine::buildkit::BuildkitError>),

    #[error(transparent)]
    Emulation(#[from] emulation::EmulationError),

    #[error("{}; no image was written", platforms::failed_line(failed))]
    PlatformsFailed { failed: Vec<(String, String)>, summary: Box<PatchSummary> },

    #[error(
        "the steps' changes outgrew the {} MiB tmpfs caulk chose as their working folder (No space left \
         on device); nothing was written",
        size >> 20
    )]
    WorkingMemoryFull { size: u64 },

    #[error("{first}; writing the layer at the same time also failed: {also}")]
    Also { first: Box<PatchError>, also: Box<PatchError> },

    #[error("{image}: no operating system found ({}); nothing can be patched", no_os_detail(*layers))]
    NoOperatingSystem { image: String, layers: usize },
}

fn no_os_detail(layers: usize) -> String {
    if layers == 0 {
        "the image has no layers".to_owned()
    } else {
        "no /etc/os-release or /usr/lib/os-release in its layers".to_owned()
    }
}

impl PatchError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Scan(e) => e.hint(),
            Self::Plugin(e) => e.hint(),
            Self::Buildkit(e) => e.hint(),
            Self::UpdatesFailed { .. } => Some(
                "--ignore-errors writes the image with the updates that worked and lists the rest".into(),
            ),
            Self::Emulation(e) => Some(e.hint()),
            Self::WorkingMemoryFull { .. } => Some(
                "--working-folder DIR keeps the changes on disk (the size estimate comes from the image's \
                 package database and was too small here)"
                    .into(),
            ),
            Self::Also { first, .. } => first.hint(),
            Self::PlatformsFailed { .. } => Some(
                "--ignore-errors writes the index with the platforms that worked and keeps the rest unpatched"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The summary to show even though the run failed.
    pub fn summary(&self) -> Option<&PatchSummary> {
        match self {
            Self::UpdatesFailed { summary, .. } | Self::PlatformsFailed { summary, .. } => Some(summary),
            _ => None,
        }
    }
}

fn image_err(image: &ImageRef) -> impl Fn(caulk_image::Error) -> PatchError + '_ {
    move |e| PatchError::Image { image: image.to_string(), source: Box::new(e) }
}

fn exec_err(e: caulk_exec::Error) -> PatchError {
    match e {
        caulk_exec::Error::Cancelled { during } => PatchError::Cancelled { during },
        other => PatchError::Executor(Box::new(other)),
    }
}

fn plugin_err(e: PluginError) -> PatchError {
    PatchError::Plugin(Box::new(e))
}

/// An updater and the updates it is to make.
struct Job<'p> {
    plugin: &'p Plugin,
    updates: Vec<PackageUpdate>,
    plan: Option<PatchPlan>,
    /// Index of its first step in the combined step list, and how many.
    steps: (usize, usize),
}

/// Runs the pipeline with steps in the local sandbox.
pub fn run(
    request: &PatchRequest,
    plugins: &PluginSet,
    scanners: &Scanners<'_>,
    observer: &mut dyn Observer,
    cancel: &CancelToken,
) -> Result<PatchSummary, PatchError> {
    let working_folder = working_folder(request)?;
    let mut config = ExecutorConfig::new(&working_folder);
    config.mode = request.mode;
    config.ca_bundle.clone_from(&request.ca_bundle);
    config.limits = request.step_limits;
    let engine = LocalEngine::new(config)
        .map_err(exec_err)?
        .with_tooling_images(tooling::ToolingImages::new(&request.cache_dir, request.transport.clone()));
    run_on(&engine, request, plugins, scanners, observer, cancel)
}

/// The directory for the layer being written (and the local engine's
/// sessions), created if missing.
pub(crate) fn working_folder(request: &PatchRequest) -> Result<PathBuf, PatchError> {
    let working_folder = request.working_folder.clone().unwrap_or_else(|| std::env::temp_dir().join("caulk"));
    std::fs::create_dir_all(&working_folder)
        .map_err(|source| PatchError::Write { path: working_folder.clone(), source })?;
    Ok(working_folder)
}

/// Runs the pipeline with steps where `engine` runs them: one platform as
/// below, several through [`platforms`].
pub fn run_on(
    engine: &dyn Engine,
    request: &PatchRequest,
    plugins: &PluginSet,
    scanners: &Scanners<'_>,
    observer: &mut dyn Observer,
    cancel: &CancelToken,
) -> Result<PatchSummary, PatchError> {
    let started = Instant::now();
    // A directory holds one report per platform, read once the image says
    // which platforms there are.
    let findings = match &request.report {
        Some(path) if path.is_dir() => None,
        report => Some(findings(request, report.as_deref(), scanners, observer)?),
    };
    observer.phase("reading the image");
    let image = Image::open(&request.image, &request.transport).map_err(image_err(&request.image))?;
    let destination = dest::destination(&request.image, &request.naming).map_err(PatchError::Destination)?;
    let platform_image = match platforms::choose(&image, request, findings.as_ref())? {
        platforms::Chosen::Several(targets) => {
            let run = platforms::Run { engine, request, plugins, image: &image, destination: &destination };
            return run.patch(targets, scanners, observer, cancel, started);
        }
        platforms::Chosen::One(platform_image) => platform_image,
    };
    let findings = findings.expect("a report directory always chooses several platforms");
    let patched = patch_platform(
        engine,
        request,
        plugins,
        &findings,
        &image,
        platform_image,
        &destination,
        observer,
        cancel,
    )?;
    let Some((appended, layer_file)) = patched.layer else { return Ok(patched.summary) };
    let mut summary = patched.summary;
    let write_started = Instant::now();
    let platform = &platform_image.platform;
    let edited = EditedImage::new(&image, vec![appended]).map_err(image_err(&request.image))?;
    if cancel.is_cancelled() {
        return Err(PatchError::Cancelled { during: "before writing the image".to_owned() });
    }
    let replaced = caulk_image::transport::existing(&destination.reference, &request.transport);
    observer.phase("writing the image");
    let report = edited
        .write(
            &destination.reference,
            &platforms::copy_options(&destination.reference, platform),
            &request.transport,
        )
        .map_err(image_err(&destination.reference))?;
    drop(layer_file);
    summary.digest = report.digest.as_ref().map(ToString::to_string);
    summary.replaced = replaced.map(|existing| summary::Replaced::new(existing, summary.digest.as_deref()));
    if let Some(replaced) = &summary.replaced
        && !replaced.same
    {
        tracing::warn!("{}", summary.replaced_line().unwrap_or_default());
    }
    summary.result = summary::Result::Patched;
    summary.timings.write += write_started.elapsed();

    write_vex(request, &mut summary, &destination, patched.os.as_ref(), platform)?;
    summary.timings.total = started.elapsed();
    observer.finished();
    Ok(summary)
}

/// What patching one platform made: its summary and, unless nothing was
/// patched, the new manifest and config with the layer file behind them.
pub(crate) struct Patched {
    pub summary: PatchSummary,
    pub layer: Option<(Appended, tempfile::NamedTempFile)>,
    pub os: Option<crate::model::OsRelease>,
}

/// Patches one platform of `image`: unpack, plan, run the steps, verify,
/// write the layer and the new manifest. Writes no image.
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
pub(crate) fn patch_platform(
    engine: &dyn Engine,
    request: &PatchRequest,
    plugins: &PluginSet,
    findings: &Findings,
    image: &Image,
    platform_image: &PlatformImage,
    destination: &dest::Destination,
    observer: &mut dyn Observer,
    cancel: &CancelToken,
) -> Result<Patched, PatchError> {
    let started = Instant::now();
    let check_cancel = |during: &str| {
        if cancel.is_cancelled() { Err(PatchError::Cancelled { during: during.to_owned() }) } else { Ok(()) }
    };
    let Findings { scanned, grouped, wanted, mode } = findings;
    let mode = *mode;
    if engine.runs_here() {
        emulation::check(&platform_image.platform)?;
    }
    let mut summary = PatchSummary::new(request, destination, platform_image, mode, scanned.as_ref());
    for update in grouped.updates.iter().filter(|u| !wanted.iter().any(|w| same(w, u))) {
        summary.rows.push(Row::left_out(update, "its package type is not in --pkg-types"));
    }

    // A patched image patched again: start from the layers below caulk's.
    let (base_layers, previous_caulk_layer) = caulk_layers(platform_image);
    check_cancel("before unpacking")?;

    // Layers unpacked for the executor.
    observer.phase("unpacking layers");
    let cache = LayerCache::new(request.cache_dir.join("layers")).map_err(image_err(&request.image))?;
    let unpack = UnpackOptions {
        whiteouts: WhiteoutFormat::OverlayTrusted,
        preserve_ownership: true,
        device_nodes: true,
    };
    let layer_dirs = cache
        .unpack_image(image.source().as_ref(), platform_image, &unpack)
        .map_err(image_err(&request.image))?;
    check_cancel("after unpacking")?;

    let working_folder = working_folder(request)?;
    let (lower, top) = match previous_caulk_layer {
        Some(_) => (&layer_dirs[..base_layers], layer_dirs.get(base_layers)),
        None => (&layer_dirs[..], None),
    };
    // The earlier caulk layer seeds this session's changes, so the new layer
    // holds both and replaces it.
    // Memory or disk for the steps' changes; made before the session so
    // that it is unmounted only once the session is gone.
    let (memory, store) =
        workdir::memory_folder(engine.runs_here(), request, lower, top.map(PathBuf::as_path), wanted, mode)?;
    summary.working_store = store;
    let base = Base {
        image,
        platform_image,
        lower,
        seed: top.map(PathBuf::as_path),
        scratch: memory.as_ref().map(workdir::Scratch::path),
    };
    let mut session = engine.prepare(&base, cancel.clone())?;

    // Who patches what.
    let reader = session.reader();
    let os = facts::os_release(&reader);
    let target = Target {
        os: os.clone(),
        platform: crate::model::Platform {
            os: platform_image.platform.os.clone(),
            architecture: platform_image.platform.architecture.clone(),
            variant: platform_image.platform.variant.clone(),
        },
        env: image_env(platform_image),
    };
    let needs_os = mode == UpdateMode::All || wanted.iter().any(|u| u.class == PackageClass::Os);
    if os.is_none() && (needs_os || platform_image.layers.is_empty()) {
        return Err(PatchError::NoOperatingSystem {
            image: request.image.to_string(),
            layers: platform_image.layers.len(),
        });
    }
    let mut jobs = select_updaters(plugins, mode, wanted, os.as_ref(), &mut summary);
    let index = crate::index::IndexClient::new(request.ca_bundle.as_deref());
    let lookup = |q: &IndexQuery| index.lookup(q);
    let options_for = |plugin: &Plugin| Options {
        mode,
        patch_level: request.patch_level,
        ignore_errors: request.ignore_errors,
        index_urls: plugin
            .info
            .handles
            .iter()
            .find_map(|ecosystem| request.index_urls.get(ecosystem))
            .filter(|_| plugin.info.class == PackageClass::Library)
            .cloned()
            .unwrap_or_default(),
        settings: request
            .plugin_settings
            .iter()
            .filter(|(p, _, _)| p == plugin.name())
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect(),
    };

    // Time waiting for commands and look-ups run for updaters' questions.
    let probe_time = std::sync::Mutex::new(Duration::ZERO);
    let probe_scratch = probe_scratch_dir(&request.cache_dir, platform_image);
    let answering = facts::Shared {
        lookup: &lookup,
        base_env: &target.env,
        tooling_image: request.tooling_image.as_deref(),
        spent: &probe_time,
        policy: &request.policy,
        budgets: &request.budgets,
        probe_scratch: Some(&probe_scratch),
    };

    // Plan.
    observer.phase("planning");
    let mut steps: Vec<Step> = Vec::new();
    let mut drop_paths: Vec<String> = Vec::new();
    for job in &mut jobs {
        check_cancel("while planning")?;
        let answerer = facts::Answerer { session: session.as_ref(), shared: &answering, plugin: job.plugin };
        let updates: Vec<Update> = job.updates.iter().map(PackageUpdate::to_update).collect();
        let options = options_for(job.plugin);
        let facts = gather(job.plugin, Phase::Plan, &target, &updates, &[], &options, &answerer, &reader)?;
        let plan = job
            .plugin
            .plan(&PlanRequest { target: target.clone(), updates, options, facts })
            .map_err(plugin_err)?;
        let first = steps.len();
        for step in &plan.steps {
            steps.push(to_step(job.plugin, step, &plan, &target.env, request)?);
        }
        job.steps = (first, plan.steps.len());
        drop_paths.extend(plan.drop_paths.iter().cloned());
        job.plan = Some(plan);
    }
    let selected: usize = jobs.iter().filter_map(|j| j.plan.as_ref()).map(|p| p.selected.len()).sum();
    for job in &jobs {
        let plan = job.plan.as_ref().expect("planned above");
        for skipped in &plan.skipped {
            let update =
                job.updates.iter().find(|u| u.name == skipped.name && u.location == skipped.location);
            summary.rows.push(Row::skipped(job.plugin.name(), skipped, update));
        }
    }
    if mode == UpdateMode::Report && selected == 0 {
        summary.result = summary::Result::NothingToPatch;
        summary.timings.total = started.elapsed();
        summary.no_vex(request.vex_output.as_deref(), "nothing was patched");
        return Ok(Patched { summary, layer: None, os });
    }

    // Run the steps, a job's installs reading the caches as its own
    // fetches left them.
    caulk_exec::mark_pins(&mut steps);
    let outcomes = session.run_steps(&steps, observer, cancel)?;
    summary.timings.steps = outcomes.iter().map(|o| o.duration).sum();
    if let Some(folder) = &memory
        && workdir::outgrown(folder, &outcomes)
    {
        return Err(PatchError::WorkingMemoryFull { size: folder.size() });
    }

    // Verify, and meanwhile write the layer where the changes are final
    // already (verification reads the merged root, the writer the upper
    // dir; neither writes what the other reads).
    observer.phase("verifying");
    let reader = session.reader();
    let verify = |summary: &mut PatchSummary| -> Result<(), PatchError> {
        for job in &jobs {
            check_cancel("while verifying")?;
            let plan = job.plan.as_ref().expect("planned above");
            if plan.selected.is_empty() {
                continue;
            }
            let answerer =
                facts::Answerer { session: session.as_ref(), shared: &answering, plugin: job.plugin };
            let updates: Vec<Update> = job.updates.iter().map(PackageUpdate::to_update).collect();
            let options = options_for(job.plugin);
            let facts = gather(
                job.plugin,
                Phase::Verify,
                &target,
                &updates,
                &plan.selected,
                &options,
                &answerer,
                &reader,
            )?;
            let step_results: Vec<StepResult> = outcomes
                .iter()
                .skip(job.steps.0)
                .take(job.steps.1)
                .map(|o| StepResult {
                    summary: o.summary.clone(),
                    exit_code: o.exit_code.unwrap_or(-1),
                    stderr_tail: o.stderr_tail.clone(),
                })
                .collect();
            let verdicts = job
                .plugin
                .verify(&VerifyRequest {
                    target: target.clone(),
                    options,
                    selected: plan.selected.clone(),
                    steps: step_results,
                    facts,
                })
                .map_err(plugin_err)?;
            for selected in &plan.selected {
                let verdict =
                    verdicts.iter().find(|o| o.name == selected.name && o.location == selected.location);
                let update =
                    job.updates.iter().find(|u| u.name == selected.name && u.location == selected.location);
                summary.rows.push(Row::verified(job.plugin.name(), selected, verdict, update));
            }
        }
        Ok(())
    };
    let early = session.changes_so_far();
    let place = LayerPlace {
        working_folder: &working_folder,
        source_date_epoch: request.source_date_epoch,
        image: &request.image,
    };
    let (verified, early_layer) = std::thread::scope(|scope| {
        let writer = early.map(|(dir, source)| {
            let (place, drop_paths) = (&place, &drop_paths);
            scope.spawn(move || place.write(&dir, source, drop_paths.clone(), cancel))
        });
        let verified = verify(&mut summary);
        (verified, writer.map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))))
    });
    let early_layer = after_both(verified, early_layer)?;
    summary.sort_rows();
    summary.add_purls(
        os.as_ref(),
        &platform_image.platform.architecture,
        platform_image.platform.variant.as_deref(),
    );

    let judged = judge(summary, request.ignore_errors, request.vex_output.as_deref(), started);
    if !matches!(judged, Ok(ControlFlow::Continue(_)))
        && let Some(Err(e)) = &early_layer
    {
        tracing::warn!(error = %e, "writing the layer failed too; no layer was needed");
    }
    let mut summary = match judged? {
        ControlFlow::Continue(summary) => summary,
        ControlFlow::Break(summary) => return Ok(Patched { summary, layer: None, os }),
    };

    // The layer.
    check_cancel("before writing the layer")?;
    observer.phase("writing the layer");
    let write_started = Instant::now();
    let (layer_file, layer) = match early_layer {
        Some(written) => {
            drop(session);
            written?
        }
        None => assemble_layer(session, &working_folder, drop_paths, request, cancel)?,
    };
    summary.layer = Some(summary::LayerInfo {
        digest: layer.digest.to_string(),
        diff_id: layer.diff_id.to_string(),
        size: layer.size,
        entries: layer.entries,
    });

    // The image.
    let base_digest = previous_caulk_layer
        .as_ref()
        .map_or_else(|| platform_image.manifest.digest.to_string(), |(digest, _)| digest.clone());
    let patched_names: Vec<String> = summary
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Patched)
        .map(|r| format!("{} {}", r.name, r.to.as_deref().unwrap_or("?")))
        .collect();
    let mut labels = BTreeMap::new();
    labels.insert(labels::BASE_DIGEST.to_owned(), base_digest);
    labels.insert(labels::BASE_LAYERS.to_owned(), base_layers.to_string());
    labels.insert(labels::VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    let spec = AppendSpec {
        drop_last: usize::from(previous_caulk_layer.is_some()),
        layer: Some(layer),
        history: HistoryEntry {
            created: Some(rfc3339(request.source_date_epoch)),
            created_by: Some(format!(
                "caulk patch ({} updated)",
                summary::counted(patched_names.len(), "package", "packages")
            )),
            comment: Some(format!("caulk {}: {}", env!("CARGO_PKG_VERSION"), patched_names.join(", "))),
            author: None,
        },
        labels,
        layer_annotations: BTreeMap::new(),
    };
    let appended = append(platform_image, &spec).map_err(image_err(&request.image))?;
    summary.timings.write = write_started.elapsed();
    summary.timings.probes = probe_time.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(Patched { summary, layer: Some((appended, layer_file)), os })
}

/// Verification's result and the layer written meanwhile: the layer when
/// verification passed; verification's error otherwise, with the writer's
/// attached when it failed as well.
fn after_both<T>(
    verified: Result<(), PatchError>,
    layer: Option<Result<T, PatchError>>,
) -> Result<Option<Result<T, PatchError>>, PatchError> {
    match (verified, layer) {
        (Ok(()), layer) => Ok(layer),
        (Err(first), Some(Err(also))) => {
            Err(PatchError::Also { first: Box::new(first), also: Box::new(also) })
        }
        (Err(first), _) => Err(first),
    }
}

/// The report's updates, and those of them `--pkg-types` asks for.
pub(crate) struct Findings {
    scanned: Option<crate::scan::Scanned>,
    grouped: Grouped,
    wanted: Vec<PackageUpdate>,
    mode: UpdateMode,
}

/// Reads the report, if there is one; without one every OS package is to
/// be brought up to date.
pub(crate) fn findings(
    request: &PatchRequest,
    report: Option<&Path>,
    scanners: &Scanners<'_>,
    observer: &mut dyn Observer,
) -> Result<Findings, PatchError> {
    if request.pkg_types.library && report.is_none() {
        return Err(PatchError::Usage("--pkg-types library needs a report (-r)".into()));
    }
    let Some(path) = report else {
        return Ok(Findings {
            scanned: None,
            grouped: Grouped::default(),
            wanted: Vec::new(),
            mode: UpdateMode::All,
        });
    };
    observer.phase("reading the report");
    let scanned = scanners.scan(path, request.scanner.as_deref()).map_err(Box::new)?;
    let grouped = crate::updates::group(&scanned.findings);
    let wanted = grouped
        .updates
        .iter()
        .filter(|u| match u.class {
            PackageClass::Os => request.pkg_types.os,
            PackageClass::Library => request.pkg_types.library,
        })
        .cloned()
        .collect();
    Ok(Findings { scanned: Some(scanned), grouped, wanted, mode: UpdateMode::Report })
}

/// The steps' changes as one layer file in the working folder, without
/// the paths the plans dropped; the file goes when the handle is dropped.
fn assemble_layer(
    workspace: Box<dyn Workspace + '_>,
    working_folder: &Path,
    drop_paths: Vec<String>,
    request: &PatchRequest,
    cancel: &CancelToken,
) -> Result<(tempfile::NamedTempFile, WrittenLayer), PatchError> {
    let changes = workspace.finish()?;
    let layer =
        LayerPlace { working_folder, source_date_epoch: request.source_date_epoch, image: &request.image };
    layer.write(&changes.dir, changes.source, drop_paths, cancel)
}

/// Where and how the layer of the steps' changes is written.
struct LayerPlace<'a> {
    working_folder: &'a Path,
    source_date_epoch: Option<u64>,
    image: &'a ImageRef,
}

impl LayerPlace<'_> {
    /// Writes the changes in `dir` as a layer file in the working folder,
    /// gzipped at the level and with the threads the size of what goes into
    /// it calls for; stops, leaving no file, once `cancel` is set.
    fn write(
        &self,
        dir: &Path,
        source: caulk_image::layer::LayerSource,
        drop_paths: Vec<String>,
        cancel: &CancelToken,
    ) -> Result<(tempfile::NamedTempFile, WrittenLayer), PatchError> {
        let folder = self.working_folder;
        let layer_file = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(folder)
            .map_err(|source| PatchError::Write { path: folder.to_owned(), source })?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let written = caulk_image::layer::content_size(dir, &drop_paths).map_err(image_err(self.image))?;
        let (level, threads) = caulk_image::layer::gzip_for_size(written, cores);
        let write_options = WriteOptions {
            source,
            exclude: drop_paths,
            mtime_clamp: self.source_date_epoch,
            level: Some(level),
            threads,
            cancel: Some(cancel.flag()),
            ..WriteOptions::default()
        };
        let layer = write_layer(dir, layer_file.path(), &write_options).map_err(|e| match e {
            caulk_image::Error::Cancelled { .. } => {
                PatchError::Cancelled { during: "while writing the layer".to_owned() }
            }
            other => image_err(self.image)(other),
        })?;
        Ok((layer_file, layer))
    }
}

/// Runs the steps in order until one fails; a failed step's outcome is the
/// last one, for the updaters' verify to judge per package.
fn execute(
    workspace: &mut dyn Workspace,
    steps: &[Step],
    observer: &mut dyn Observer,
    cancel: &CancelToken,
) -> Result<Vec<StepOutcome>, PatchError> {
    let mut outcomes: Vec<StepOutcome> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(PatchError::Cancelled { during: "before a step".to_owned() });
        }
        observer.step_started(i, steps.len(), &step.summary);
        let outcome = workspace.run_step(step, &mut |stream, line| observer.step_output(stream, line));
        let outcome = match outcome {
            Ok(o) => o,
            Err(
                caulk_exec::Error::StepFailed { outcome, .. }
                | caulk_exec::Error::StepLimit { outcome, .. }
                | caulk_exec::Error::StepTimedOut { outcome, .. },
            ) => {
                observer.step_finished(&outcome);
                outcomes.push(*outcome);
                break;
            }
            Err(e) => return Err(exec_err(e)),
        };
        observer.step_finished(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Whether the verified rows make an image worth writing: `Continue` when
/// they do; `Break` with the finished summary when nothing was patched; an
/// error when an update failed and `--ignore-errors` does not let the rest
/// through (or nothing else worked).
fn judge(
    mut summary: PatchSummary,
    ignore_errors: bool,
    vex_output: Option<&Path>,
    started: Instant,
) -> Result<ControlFlow<PatchSummary, PatchSummary>, PatchError> {
    let failed = summary.count(RowStatus::Failed);
    let patched = summary.count(RowStatus::Patched);
    if patched > 0 && (failed == 0 || ignore_errors) {
        return Ok(ControlFlow::Continue(summary));
    }
    summary.timings.total = started.elapsed();
    if failed == 0 {
        summary.result = summary::Result::NothingToPatch;
        summary.no_vex(vex_output, "nothing was patched");
        return Ok(ControlFlow::Break(summary));
    }
    summary.result = summary::Result::Failed;
    summary.no_vex(vex_output, "no image was written");
    let total = summary.rows.iter().filter(|r| r.status != RowStatus::LeftOut).count();
    Err(PatchError::UpdatesFailed { failed, total, summary: Box::new(summary) })
}

/// `patch` writes the media types the input had (an OCI layout the input
/// came from keeps its Docker types), unlike `image copy`.
fn keep_media_types() -> CopyOptions {
    CopyOptions { preserve_digests: true, ..CopyOptions::default() }
}

fn same(a: &PackageUpdate, b: &PackageUpdate) -> bool {
    a.ecosystem == b.ecosystem && a.name == b.name && a.location == b.location
}

/// The image config's `Env` as pairs.
fn image_env(image: &PlatformImage) -> Vec<(String, String)> {
    let env = image.config.parsed.config().as_ref().and_then(|c| c.env().clone()).unwrap_or_default();
    env.iter().filter_map(|entry| entry.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect()
}

/// The layers below an earlier caulk layer, and that layer's base digest.
fn caulk_layers(image: &PlatformImage) -> (usize, Option<(String, usize)>) {
    let count = image.layers.len();
    let labels = image.config.parsed.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default();
    let base = labels.get(labels::BASE_LAYERS).and_then(|n| n.parse::<usize>().ok());
    match (base, labels.get(labels::BASE_DIGEST)) {
        // Exactly one caulk layer on top, as caulk writes it.
        (Some(n), Some(digest)) if n + 1 == count => (n, Some((digest.clone(), n))),
        _ => (count, None),
    }
}

/// Picks an updater per ecosystem (report mode) or per OS family (mode all).
fn select_updaters<'p>(
    plugins: &'p PluginSet,
    mode: UpdateMode,
    wanted: &[PackageUpdate],
    os: Option<&crate::model::OsRelease>,
    summary: &mut PatchSummary,
) -> Vec<Job<'p>> {
    let families: Vec<&str> = os
        .map(|o| std::iter::once(o.id.as_str()).chain(o.id_like.iter().map(String::as_str)).collect())
        .unwrap_or_default();
    let fits_os = |p: &Plugin| {
        p.info.os_families.is_empty() || p.info.os_families.iter().any(|f| families.contains(&f.as_str()))
    };
    let mut jobs: Vec<Job<'p>> = Vec::new();
    match mode {
        UpdateMode::Report => {
            for update in wanted {
                let plugin = plugins
                    .updaters()
                    .filter(|p| p.info.handles.iter().any(|h| h == &update.ecosystem))
                    .find(|p| fits_os(p));
                match plugin {
                    Some(plugin) => match jobs.iter_mut().find(|j| j.plugin.name() == plugin.name()) {
                        Some(job) => job.updates.push(update.clone()),
                        None => jobs.push(Job {
                            plugin,
                            updates: vec![update.clone()],
                            plan: None,
                            steps: (0, 0),
                        }),
                    },
                    None => summary.rows.push(Row::left_out(
                        update,
                        &format!("no updater handles {} packages on this OS", update.ecosystem),
                    )),
                }
            }
        }
        UpdateMode::All => {
            for plugin in plugins.updaters() {
                if plugin.info.class == PackageClass::Os
                    && !plugin.info.os_families.is_empty()
                    && fits_os(plugin)
                {
                    jobs.push(Job { plugin, updates: Vec::new(), plan: None, steps: (0, 0) });
                }
            }
        }
    }
    jobs
}

/// Asks an updater's questions of `phase` until it has no new ones.
#[allow(clippy::too_many_arguments)] // the probe request's parts, and where answers come from
fn gather(
    plugin: &Plugin,
    phase: Phase,
    target: &Target,
    updates: &[Update],
    selected: &[SelectedUpdate],
    options: &Options,
    answerer: &facts::Answerer<'_, '_>,
    reader: &caulk_exec::MergedReader,
) -> Result<Vec<Fact>, PatchError> {
    let mut facts: Vec<Fact> = Vec::new();
    for _ in 0..MAX_PROBE_ROUNDS {
        let request = ProbeRequest {
            phase,
            target: target.clone(),
            updates: updates.to_vec(),
            selected: selected.to_vec(),
            options: options.clone(),
            facts: facts.clone(),
        };
        let questions = plugin.probe(&request).map_err(plugin_err)?;
        if answerer.answer_new(reader, &questions, &mut facts).map_err(plugin_err)? == 0 {
            return Ok(facts);
        }
    }
    Err(PatchError::EndlessProbe {
        plugin: plugin.name().to_owned(),
        phase: if phase == Phase::Plan { "planning" } else { "verification" },
    })
}

/// A plan step as the executor runs it, with the plan's caches mounted,
/// once the plugin's grants allow it.
fn to_step(
    plugin: &Plugin,
    step: &crate::model::Step,
    plan: &PatchPlan,
    base_env: &[(String, String)],
    request: &PatchRequest,
) -> Result<Step, PatchError> {
    let asked = || {
        format!(
            "planned the step `{}` to {}",
            step.summary,
            facts::describe_command(&step.command, request.tooling_image.as_deref())
        )
    };
    request
        .policy
        .check(plugin, &asked, &crate::plugin::capability::command_needs(&step.command))
        .map_err(plugin_err)?;
    let run_in = facts::run_in(&step.command.context, request.tooling_image.as_deref())
        .map_err(|reason| PatchError::BadPlan { plugin: plugin.name().to_owned(), reason })?;
    let cwd = facts::cwd_of(&step.command)
        .map_err(|reason| PatchError::BadPlan { plugin: plugin.name().to_owned(), reason })?;
    let mut out = Step::new(step.summary.clone(), step.command.argv.clone())
        .cwd(cwd)
        .network(step.command.network)
        .tolerate_failure(step.tolerate_failure)
        .run_in(run_in);
    for (k, v) in base_env.iter().chain(&step.command.env) {
        out = out.env(k.clone(), v.clone());
    }
    // Tools that honour it (pip's byte-compiling, for one) then write the
    // same bytes on every run.
    if let Some(epoch) = request.source_date_epoch {
        out = out.env("SOURCE_DATE_EPOCH".to_owned(), epoch.to_string());
    }
    let read_only = caches_read_only(&out);
    for cache in &plan.caches {
        let host_dir = step_cache_dir(&request.cache_dir, plugin.name(), &cache.key, &cache.path);
        out = if read_only {
            out.read_only_cache(host_dir, cache.path.clone())
        } else {
            out.cache(host_dir, cache.path.clone())
        };
    }
    Ok(out)
}

/// Whether `step` gets the plan's caches read-only: when it has no
/// network. Fetching is what needs to write a cache, and fetching needs the
/// network; a step without it (apt's install, dpkg into a tooling root's
/// target) only reads what the fetch left. With the local engine such
/// steps of concurrent jobs share the caches (the executor snapshots them
/// under a shared lock, or uses the snapshot the job's own last fetch left)
/// and overlap, and nothing they run can change what later runs
/// read: not an image's `DPkg::Post-Invoke` hook deleting the downloads,
/// nor, from a tooling root, a write through an absolute symlink the image
/// planted (`usr/share/doc/x -> /caulk/work`), which resolves in the
/// tooling root. That holds for the local engine only, and there only on a
/// host with overlayfs: without it, and on BuildKit, a step in the image
/// gets the caches writable (npm writes its cache even to read it).
/// A plugin whose offline step must write a cache gives that step network.
fn caches_read_only(step: &Step) -> bool {
    !step.network
}

/// The host directory behind [`caulk_sdk::PROBE_SCRATCH`]: one per image,
/// named by its config and its layers' digests, kept across runs. What
/// probes leave there (the pip updater's bytecode, checked against each
/// source's path, mtime and size) is then only ever read by probes of an
/// image with exactly the same files and the same config (the config sets
/// the environment and user probes run with, so two images sharing layers
/// but not a config never share what their probes wrote), apart from what
/// steps wrote since, which carry new mtimes.
fn probe_scratch_dir(cache_dir: &Path, image: &PlatformImage) -> PathBuf {
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    cache_dir.join("probes").join(probe_scratch_name(&image.config.bytes, &diff_ids))
}

fn probe_scratch_name(config: &[u8], diff_ids: &[String]) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(sha2::Sha256::digest(config));
    for diff_id in diff_ids {
        hash.update(diff_id.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())[..32].to_owned()
}

/// The host directory behind a plan's cache mount.
fn step_cache_dir(cache_dir: &Path, plugin: &str, key: &str, path: &str) -> PathBuf {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(format!("{key}\0{path}")));
    cache_dir.join("steps").join(plugin).join(&digest[..32])
}

/// `epoch` (`SOURCE_DATE_EPOCH`) or now, as RFC 3339.
pub(crate) fn rfc3339(epoch: Option<u64>) -> String {
    let now =
        epoch.map_or_else(std::time::SystemTime::now, |s| std::time::UNIX_EPOCH + Duration::from_secs(s));
    humantime::format_rfc3339_seconds(now).to_string()
}

/// `-o`: the OpenVEX document for what was fixed, or why there is none.
fn write_vex(
    request: &PatchRequest,
    summary: &mut PatchSummary,
    destination: &dest::Destination,
    os: Option<&crate::model::OsRelease>,
    platform: &Platform,
) -> Result<(), PatchError> {
    let Some(path) = &request.vex_output else { return Ok(()) };
    let document = vex_document(request, summary, destination, os, platform);
    // OpenVEX's schema asks for at least one statement; without a report
    // (or when only packages no report named moved) there is none.
    if document.statements.is_empty() {
        summary.no_vex(Some(path), "no vulnerability a report named was fixed");
    } else {
        write_atomically(path, &serde_json::to_vec_pretty(&document).expect("serialisable"))?;
        summary.vex = Some(path.display().to_string());
    }
    Ok(())
}

fn vex_document(
    request: &PatchRequest,
    summary: &PatchSummary,
    destination: &dest::Destination,
    os: Option<&crate::model::OsRelease>,
    platform: &Platform,
) -> vex::Document {
    let fixed: Vec<vex::FixedPackage> = summary
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Patched)
        .map(|r| vex::FixedPackage {
            ecosystem: r.ecosystem.clone(),
            name: r.name.clone(),
            version: r.to.clone().unwrap_or_default(),
            vulnerabilities: r.fixed_vulnerabilities(),
            report_purl: r.report_purl.clone(),
        })
        .filter(|p| !p.vulnerabilities.is_empty())
        .collect();
    let subject = vex::Subject {
        reference: destination.display_name.clone(),
        digest: summary.digest.clone().unwrap_or_default(),
        os_id: os.map(|o| o.id.clone()),
        os_version: os.and_then(|o| o.version_id.clone()),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
    };
    vex::document(&subject, &fixed, &request.vex_author, &rfc3339(request.source_date_epoch))
}

/// Writes `bytes` to a temporary file beside `path` and renames it there.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PatchError> {
    use std::io::Write as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    let fail = |source| PatchError::Write { path: path.to_owned(), source };
    let mut file = tempfile::Builder::new()
        .prefix(".caulk-tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.as_file().sync_data().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::probe_scratch_name;

    #[test]
    fn probes_share_a_scratch_only_with_the_same_config_and_layers() {
        let layers = ["sha256:aa".to_owned(), "sha256:bb".to_owned()];
        let name = probe_scratch_name(br#"{"config":{"Env":["A=1"]}}"#, &layers);
        assert_eq!(name, probe_scratch_name(br#"{"config":{"Env":["A=1"]}}"#, &layers));
        assert_ne!(name, probe_scratch_name(br#"{"config":{"Env":["A=2"]}}"#, &layers));
        assert_ne!(name, probe_scratch_name(br#"{"config":{"Env":["A=1"]}}"#, &layers[..1]));
        assert_eq!(name.len(), 32);
    }
}
