//! Steps on a BuildKit daemon (`--engine buildkit`): probes and plan steps
//! become ExecOps on the image, the daemon runs them, and the steps'
//! layers come back to be folded into the one layer caulk writes. File
//! questions are still answered from caulk's own read of the image.
//!
//! Bytes move through caulk's client session with BuildKit's filesync
//! protocol, so every address form works the same: a local image goes in
//! as a `local://` source caulk sends (its unpacked layers, merged), the
//! result comes out through the `local` exporter and is compared with the
//! image entry by entry (see `upper.rs`). Registry images are pulled by
//! the daemon itself, pinned by digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use caulk_buildkit::{
    Address, CacheMount, Client, ConnectOptions, Credentials, Event, Follow, Local, Network, ToolingImage,
};
use caulk_exec::{
    CA_BUNDLE_PATHS, CancelToken, DEFAULT_CA_BUNDLE, DEFAULT_PATH, EntryKind, MergedReader, PROXY_VARIABLES,
    Probe, ProbeOutput, RunIn, STDERR_TAIL, Step, StepOutcome, Stream, ToolingRoot,
};
use caulk_image::layer::unpack::unpack;
use caulk_image::layer::{
    EntryKind as ImageEntry, LayerSource, RootFs, UnpackOptions, WhiteoutFormat, open_tar_stream,
};
use caulk_image::{Image, ImageRef, Platform, TransportOptions};

use super::image_tree::ImageTree;
use super::squash;
use super::upper::{StatSink, UpperSink};
use super::{Base, Changes, Engine, Workspace};
use crate::patch::{Observer, PatchError};

/// Where and how to reach the daemon (`--addr`, `--cacert`, `--cert`, `--key`).
#[derive(Debug, Clone, Default)]
pub struct BuildkitSettings {
    /// `None`: `$BUILDKIT_HOST`, then buildctl's default address.
    pub addr: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    #[error(transparent)]
    Daemon(#[from] caulk_buildkit::Error),

    #[error("{what}: {source}")]
    Image {
        what: String,
        #[source]
        source: caulk_image::Error,
    },

    #[error(transparent)]
    Squash(#[from] squash::SquashError),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the BuildKit engine cannot run {what}")]
    Unsupported { what: String },

    #[error(
        "the BuildKit engine cannot run `{step}` from this machine's own root fs: a BuildKit step runs \
         in an image the daemon has, and the daemon cannot use the files of the machine caulk runs on"
    )]
    HostTooling { step: String },

    #[error("the BuildKit daemon at {addr} cannot run {platform} steps: its worker runs {workers}")]
    ForeignPlatform { addr: String, platform: String, workers: String },

    #[error("building the changes from the result of {addr}: {reason}")]
    Result { addr: String, reason: String },
}

impl BuildkitError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Daemon(e) => e.hint().map(str::to_owned),
            Self::Unsupported { .. } => Some("use --engine local".to_owned()),
            Self::HostTooling { .. } => Some(
                "give --tooling-image IMAGE, an image with the tools the updater needs (for apt, a Debian \
                 image such as debian:12; for rpm, one with dnf), or use --engine local"
                    .to_owned(),
            ),
            Self::ForeignPlatform { .. } => Some(
                "on the daemon's host, install qemu-user-static and binfmt-support (Debian registers the \
                 interpreters with the F flag), check /proc/sys/fs/binfmt_misc/qemu-* are enabled, then \
                 restart the daemon: BuildKit reads the platforms it can run when it starts"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

fn bk(e: impl Into<BuildkitError>) -> PatchError {
    PatchError::Buildkit(Box::new(e.into()))
}

/// Runs the pipeline with steps on the BuildKit daemon `settings` name.
pub fn run(
    settings: &BuildkitSettings,
    request: &crate::patch::PatchRequest,
    plugins: &crate::plugin::PluginSet,
    scanners: &crate::scan::Scanners<'_>,
    observer: &mut dyn Observer,
    cancel: &CancelToken,
) -> Result<crate::patch::PatchSummary, PatchError> {
    let working_folder = crate::patch::working_folder(request)?;
    let mut engine = BuildkitEngine::connect(
        settings,
        &request.image,
        &request.transport,
        &working_folder,
        request.ca_bundle.as_deref(),
    )?;
    engine.local_tooling =
        Some(crate::patch::tooling::ToolingImages::new(&request.cache_dir, request.transport.clone()));
    crate::patch::run_on(&engine, request, plugins, scanners, observer, cancel)
}

/// Runs steps on a BuildKit daemon.
pub struct BuildkitEngine {
    client: Client,
    addr: Address,
    /// The image as the user named it: a registry image is pulled by the
    /// daemon itself.
    image: ImageRef,
    /// Where a local tooling image is unpacked before it is sent.
    local_tooling: Option<crate::patch::tooling::ToolingImages>,
    transport: TransportOptions,
    working_folder: PathBuf,
    ca_bundle: Option<Vec<u8>>,
    /// Tooling images by the reference the plan gave, once in the daemon:
    /// one slot per reference, so that preparing one image does not hold up
    /// steps that need another.
    tooling: Mutex<HashMap<String, Arc<Mutex<Option<InDaemon>>>>>,
    /// What the daemon's workers run, asked once (foreign platforms only).
    worker_platforms: Mutex<Option<Vec<caulk_buildkit::pb::llb::Platform>>>,
}

/// An image as the daemon knows it.
#[derive(Clone)]
struct InDaemon {
    /// A registry reference, or the name caulk's session shares it as.
    name: String,
    local: Option<Local>,
    /// Its CA bundle (a regular file), over which the host's is mounted.
    ca_dest: Option<String>,
}

impl BuildkitEngine {
    /// Connects to the daemon now, so an unreachable one is reported before
    /// any work, naming the address tried.
    pub fn connect(
        settings: &BuildkitSettings,
        image: &ImageRef,
        transport: &TransportOptions,
        working_folder: &Path,
        ca_bundle: Option<&Path>,
    ) -> Result<Self, PatchError> {
        let from_env = std::env::var("BUILDKIT_HOST").ok();
        let addr = Address::resolve(settings.addr.as_deref(), from_env.as_deref()).map_err(bk)?;
        let mut options = ConnectOptions {
            ca_cert: settings.ca_cert.clone(),
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            ..ConnectOptions::default()
        };
        // Logins only for what the daemon pulls itself.
        if matches!(image, ImageRef::Registry(_)) {
            let registry = transport.registry.clone();
            options.credentials = Some(Credentials::new(move |host| {
                caulk_image::transport::registry::login_for(host, &registry).unwrap_or_else(|e| {
                    tracing::warn!("no registry login for {host}: {e}");
                    None
                })
            }));
        }
        let client = Client::connect(&addr, &options).map_err(bk)?;
        let bundle_path = ca_bundle.map_or_else(|| PathBuf::from(DEFAULT_CA_BUNDLE), Path::to_owned);
        let ca_bundle = match std::fs::read(&bundle_path) {
            Ok(pem) => Some(pem),
            Err(_) if ca_bundle.is_none() => None,
            Err(source) => {
                return Err(bk(BuildkitError::Io {
                    what: format!("reading {}", bundle_path.display()),
                    source,
                }));
            }
        };
        Ok(Self {
            client,
            addr,
            image: image.clone(),
            local_tooling: None,
            transport: transport.clone(),
            working_folder: working_folder.to_owned(),
            ca_bundle,
            tooling: Mutex::new(HashMap::new()),
            worker_platforms: Mutex::new(None),
        })
    }

    /// `reference` where the daemon finds it: a registry image by its own
    /// name (pinned to `digest` when given); anything else, `docker-daemon:`
    /// images of the daemon's own Engine included, sent from `layers`
    /// through the session. Sending is exact where naming an Engine image
    /// would race with a retag, and it needs no Engine at all.
    fn in_daemon(
        &self,
        reference: &ImageRef,
        digest: &str,
        layers: impl FnOnce() -> Result<Vec<PathBuf>, PatchError>,
    ) -> Result<InDaemon, PatchError> {
        if let ImageRef::Registry(registry) = reference {
            // Pinned to the manifest caulk read, whatever the tag means now.
            return Ok(InDaemon {
                name: registry.with_digest(digest).to_string(),
                local: None,
                ca_dest: None,
            });
        }
        let name = format!("caulk-{}", digest.trim_start_matches("sha256:"));
        let tree = Arc::new(ImageTree::new(layers()?));
        let session = self.client.share(&name, tree).map_err(bk)?;
        tracing::debug!("sharing {reference} with {} as local://{name}", self.addr);
        Ok(InDaemon { name, local: Some(Local { session, hint: digest.to_owned() }), ca_dest: None })
    }

    /// The tooling image `reference` in the daemon, for the platform of
    /// the daemon's first worker (the one a step without a platform runs
    /// on): resolved (and a local one shared) once per run, with its CA
    /// bundle's path.
    fn tooling_in_daemon(&self, reference: &str) -> Result<InDaemon, PatchError> {
        let slot = {
            let mut slots = self.tooling.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(reference.to_owned()).or_default())
        };
        // Held while resolving: steps that ask for this image at once wait
        // for one copy.
        let mut tooling = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = tooling.as_ref() {
            return Ok(found.clone());
        }
        let fail = |reason: String| {
            PatchError::Executor(Box::new(caulk_exec::Error::ToolingImage {
                image: reference.to_owned(),
                reason,
            }))
        };
        let parsed = ImageRef::parse(reference).map_err(|e| fail(e.to_string()))?;
        let image = Image::open(&parsed, &self.transport).map_err(|e| fail(e.to_string()))?;
        let workers = self.worker_platforms()?;
        let available = image.platforms();
        let wanted = tooling_platform(&workers, &available).ok_or_else(|| {
            let has: Vec<String> = available.iter().map(ToString::to_string).collect();
            fail(format!(
                "it has {}, the BuildKit daemon at {} runs {}",
                has.join(", "),
                self.addr,
                listed(&workers)
            ))
        })?;
        let platform = image.image_for(Some(&wanted)).map_err(|e| fail(e.to_string()))?;
        let root = RootFs::open(image.source().clone(), platform).map_err(|e| fail(e.to_string()))?;
        let digest = platform.manifest.digest.to_string();
        let mut found = self.in_daemon(&parsed, &digest, || {
            let unpacked = self
                .local_tooling
                .as_ref()
                .ok_or_else(|| fail("this engine has no cache to unpack tooling images into".to_owned()))?;
            let dir = unpacked
                .root(reference, &CancelToken::new())
                .map_err(|e| PatchError::Executor(Box::new(e)))?;
            Ok(vec![dir])
        })?;
        found.ca_dest = bundle_in(&root);
        *tooling = Some(found.clone());
        Ok(found)
    }

    /// The platforms the daemon's workers run, in the order they name
    /// them, asked once.
    fn worker_platforms(&self) -> Result<Vec<caulk_buildkit::pb::llb::Platform>, PatchError> {
        let mut known = self.worker_platforms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(platforms) = known.as_ref() {
            return Ok(platforms.clone());
        }
        let workers = self.client.list_workers().map_err(bk)?;
        let platforms: Vec<_> = workers.into_iter().flat_map(|w| w.platforms).collect();
        *known = Some(platforms.clone());
        Ok(platforms)
    }

    /// Checks that the daemon's workers run `platform`.
    fn check_platform(&self, platform: &Platform) -> Result<(), PatchError> {
        worker_runs(&self.worker_platforms()?, platform).map_err(|workers| {
            bk(BuildkitError::ForeignPlatform {
                addr: self.addr.to_string(),
                platform: platform.to_string(),
                workers,
            })
        })
    }
}

impl Engine for BuildkitEngine {
    fn runs_here(&self) -> bool {
        false
    }

    fn prepare<'e>(
        &'e self,
        base: &Base<'_>,
        cancel: CancelToken,
    ) -> Result<Box<dyn Workspace + 'e>, PatchError> {
        let platform = &base.platform_image.platform;
        self.check_platform(platform)?;
        let mut layers: Vec<PathBuf> = base.lower.to_vec();
        layers.extend(base.seed.map(Path::to_owned));
        let digest = base.platform_image.manifest.digest.to_string();
        let image = self.in_daemon(&self.image, &digest, || Ok(layers.clone()))?;
        let workspace = BuildkitWorkspace {
            engine: self,
            base: caulk_buildkit::Base {
                image: image.name,
                local: image.local,
                platform: Some(caulk_buildkit::pb::llb::Platform {
                    architecture: platform.architecture.clone(),
                    os: platform.os.clone(),
                    variant: platform.variant.clone().unwrap_or_default(),
                }),
            },
            seed_layer: base.seed.and_then(|_| base.platform_image.layers.last().cloned()),
            source: base.image.source().clone(),
            lower: layers.clone(),
            layers,
            done: Vec::new(),
            changes: None,
            cancel,
            baseline: Mutex::new(None),
        };
        Ok(Box::new(workspace))
    }
}

pub struct BuildkitWorkspace<'e> {
    engine: &'e BuildkitEngine,
    /// The image as the daemon names it, and its platform.
    base: caulk_buildkit::Base,
    /// An earlier caulk layer on top of the image, whose changes the new
    /// layer keeps.
    seed_layer: Option<caulk_image::Layer>,
    source: std::sync::Arc<dyn caulk_image::ImageSource>,
    /// The image's layers unpacked (and the earlier caulk layer).
    lower: Vec<PathBuf>,
    /// `lower` and, once steps ran, their folded changes.
    layers: Vec<PathBuf>,
    /// The steps that ran, in the daemon's terms: later probes run on them.
    done: Vec<caulk_buildkit::Step>,
    changes: Option<tempfile::TempDir>,
    cancel: CancelToken,
    /// See [`BuildkitWorkspace::baseline`].
    baseline: Mutex<Option<HashMap<String, caulk_buildkit::pb::fsutil::Stat>>>,
}

impl Workspace for BuildkitWorkspace<'_> {
    fn reader(&self) -> MergedReader {
        MergedReader::new(self.layers.clone())
    }

    fn probe(&self, probe: &Probe) -> caulk_exec::Result<ProbeOutput> {
        let failed = |what: String| caulk_exec::Error::Io {
            context: format!("running {:?} on {}", probe.argv, self.engine.addr),
            source: std::io::Error::other(what),
        };
        let label = probe.argv.join(" ");
        let command = Command {
            label: &label,
            argv: &probe.argv,
            env: &probe.env,
            cwd: probe.cwd.as_deref(),
            network: probe.network,
            run_in: &probe.run_in,
            caches: &[],
        };
        let step = self.daemon_step("probe", &command).map_err(|e| match e {
            PatchError::Executor(e) => *e,
            other => {
                failed(other.hint().map_or_else(|| other.to_string(), |hint| format!("{other} ({hint})")))
            }
        })?;
        let started = Instant::now();
        let mut watch = Watch {
            cancel: vec![self.cancel.clone()],
            deadline: probe.timeout.map(|t| started + t),
            on_event: |event: Event| tracing::trace!(?event, "probe"),
        };
        let output = match self.engine.client.probe(&self.base, &self.done, &step, &mut watch) {
            Ok(output) => output,
            Err(caulk_buildkit::Error::Stopped { .. }) if self.cancel.is_cancelled() => {
                return Err(caulk_exec::Error::Cancelled {
                    during: format!("probe {}", probe.argv.join(" ")),
                });
            }
            Err(caulk_buildkit::Error::Stopped { .. }) => {
                return Ok(ProbeOutput {
                    exit_code: None,
                    signal: None,
                    stdout: Vec::new(),
                    stdout_truncated: false,
                    stderr: Vec::new(),
                    timed_out: true,
                    duration: started.elapsed(),
                    limit_hit: None,
                });
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let mut stdout = output.stdout;
        let stdout_truncated = stdout.len() > probe.stdout_limit;
        stdout.truncate(probe.stdout_limit);
        Ok(ProbeOutput {
            exit_code: Some(output.exit_code),
            signal: None,
            stdout,
            stdout_truncated,
            stderr: output.stderr,
            timed_out: false,
            duration: started.elapsed(),
            limit_hit: None,
        })
    }

    fn run_step(
        &mut self,
        step: &Step,
        on_output: &mut dyn FnMut(Stream, &str),
    ) -> caulk_exec::Result<StepOutcome> {
        // The pipeline hands BuildKit all steps at once (`run_steps`): they
        // share cache mounts only within one solve.
        let _ = (step, on_output);
        Err(caulk_exec::Error::InvalidStep {
            step: step.summary.clone(),
            reason: "the BuildKit engine runs a plan's steps together".to_owned(),
        })
    }

    fn run_steps(
        &mut self,
        steps: &[Step],
        observer: &mut dyn Observer,
        cancel: &CancelToken,
    ) -> Result<Vec<StepOutcome>, PatchError> {
        let mut daemon_steps = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let name = format!("caulk step {}/{}: {}", i + 1, steps.len(), step.summary);
            daemon_steps.push(self.daemon_step(
                &name,
                &Command {
                    label: &step.summary,
                    argv: &step.argv,
                    env: &step.env,
                    cwd: step.cwd.as_deref(),
                    network: step.network,
                    run_in: &step.run_in,
                    caches: &step.caches,
                },
            )?);
        }
        let cancels = vec![cancel.clone(), self.cancel.clone()];
        let mut outcomes: Vec<StepOutcome> = Vec::new();
        // Steps still to run, as indexes into `steps`; a failed step that
        // tolerates failure is left out and the rest run on what came before.
        let mut pending: Vec<usize> = (0..steps.len()).collect();
        let mut built = None;
        while !pending.is_empty() {
            if cancels.iter().any(CancelToken::is_cancelled) {
                return Err(PatchError::Cancelled { during: "before the steps".to_owned() });
            }
            let chain: Vec<caulk_buildkit::Step> =
                self.done.iter().cloned().chain(pending.iter().map(|&i| daemon_steps[i].clone())).collect();
            let mut run = ChainRun::new(steps, &daemon_steps, &pending);
            let (diff, sink) = self.result_sink()?;
            let solving = Instant::now();
            let solved = {
                let mut following = Following { run: &mut run, observer: &mut *observer, cancel: &cancels };
                self.engine.client.export_chain(&self.base, &chain, sink, &mut following)
            };
            tracing::debug!(
                "the solve of {} steps and the result's transfer took {:?}",
                chain.len(),
                solving.elapsed()
            );
            let finished = run.finish(solved.is_ok(), observer);
            outcomes.extend(finished.outcomes);
            match (solved, finished.failed) {
                (Ok(()), _) => {
                    self.done = chain;
                    built = Some(diff);
                    break;
                }
                (Err(_), Some(failed)) => {
                    let position = pending.iter().position(|&i| i == failed).unwrap_or(pending.len());
                    self.done.extend(pending[..position].iter().map(|&i| daemon_steps[i].clone()));
                    if !steps[failed].tolerate_failure {
                        break;
                    }
                    tracing::warn!(step = steps[failed].summary, "step failed; going on as it allows");
                    pending.drain(..=position);
                }
                (Err(e), None) => return Err(solve_failed(&self.engine.addr, e)),
            }
        }
        if built.is_none() && !self.done.is_empty() {
            // A step failed because caulk was stopped: the solve below
            // would stop at once.
            if cancels.iter().any(CancelToken::is_cancelled) {
                return Err(cancelled_on(&self.engine.addr));
            }
            // The steps that worked, for verification to look at: cached
            // by the daemon, so only exported again.
            let (diff, sink) = self.result_sink()?;
            let mut watch = Watch { cancel: cancels.clone(), deadline: None, on_event: |_| {} };
            let exported = self.engine.client.export_chain(&self.base, &self.done, sink, &mut watch);
            if let Err(e) = exported {
                return Err(solve_failed(&self.engine.addr, e));
            }
            built = Some(diff);
        }
        if let Some(diff) = built {
            self.absorb(&diff)?;
        }
        Ok(outcomes)
    }

    fn finish(self: Box<Self>) -> Result<Changes, PatchError> {
        let mut this = self;
        let dir = match this.changes.take() {
            Some(dir) => dir,
            None => this.squash_dir()?,
        };
        Ok(Changes::owning(dir, LayerSource::OverlayUpper))
    }
}

impl BuildkitWorkspace<'_> {
    /// A command in the daemon's terms: the local engine's clean
    /// environment, host network when asked (with the host's CA bundle over
    /// the image's), plan caches as cache mounts keyed by the plugin's key,
    /// a tooling image as the exec's root with the image mounted in it.
    fn daemon_step(&self, name: &str, command: &Command<'_>) -> Result<caulk_buildkit::Step, PatchError> {
        let mut vars: Vec<(String, String)> =
            vec![("PATH".into(), DEFAULT_PATH.into()), ("HOME".into(), "/root".into())];
        for (k, v) in command.env {
            vars.retain(|(name, _)| name != k);
            vars.push((k.clone(), v.clone()));
        }
        let (tooling, bundle_dest) = match command.run_in {
            RunIn::Target => (None, self.bundle_dest()),
            RunIn::Tooling { root: ToolingRoot::Image(reference), mount_point } => {
                let image = self.engine.tooling_in_daemon(reference)?;
                (
                    Some(ToolingImage {
                        image: image.name,
                        mount_point: mount_point.clone(),
                        local: image.local,
                    }),
                    image.ca_dest,
                )
            }
            RunIn::Tooling { root: ToolingRoot::Host, .. } => {
                return Err(bk(BuildkitError::HostTooling { step: command.label.to_owned() }));
            }
            RunIn::Tooling { root: ToolingRoot::Dir(dir), .. } => {
                return Err(bk(BuildkitError::Unsupported {
                    what: format!("`{}` from the directory {}", command.label, dir.display()),
                }));
            }
        };
        let ca_bundle = match (&self.engine.ca_bundle, command.network, bundle_dest) {
            (Some(pem), true, Some(dest)) => Some(caulk_buildkit::CaBundle { pem: pem.clone(), dest }),
            _ => None,
        };
        Ok(caulk_buildkit::Step {
            name: name.to_owned(),
            args: command.argv.to_vec(),
            env: vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: command.cwd.unwrap_or_default().to_owned(),
            network: if command.network { Network::Host } else { Network::None },
            ca_bundle,
            caches: command.caches.iter().map(|cache| cache_mount(cache, command.run_in)).collect(),
            proxy_env: if command.network { proxy_env() } else { None },
            tooling,
        })
    }

    /// The image's CA bundle (symlinks resolved): the host's goes over it.
    /// An image without one gets none, since the mount point would stay
    /// behind in the layer.
    fn bundle_dest(&self) -> Option<String> {
        let reader = MergedReader::new(self.lower.clone());
        CA_BUNDLE_PATHS.iter().find_map(|path| match reader.canonicalize(path) {
            Ok(Some(info)) if info.kind == EntryKind::File => Some(info.path),
            _ => None,
        })
    }

    /// An empty dir for a result's difference from the image, and the
    /// sink that fills it from the export stream.
    /// The sink holds the dir too, so the thread receiving into it is done
    /// before the dir goes.
    fn result_sink(&self) -> Result<(Arc<tempfile::TempDir>, Box<dyn caulk_buildkit::Sink>), PatchError> {
        let folder = &self.engine.working_folder;
        let diff = tempfile::Builder::new()
            .prefix("bk-result-")
            .tempdir_in(folder)
            .map_err(|source| bk(BuildkitError::Io { what: "creating the result dir".to_owned(), source }))?;
        let diff = Arc::new(diff);
        let baseline = self.baseline()?;
        let sink = UpperSink::new(MergedReader::new(self.lower.clone()), baseline, diff.path(), folder)
            .map_err(|reason| bk(BuildkitError::Result { addr: self.engine.addr.to_string(), reason }))?
            .holding(Arc::clone(&diff));
        Ok((diff, Box::new(sink)))
    }

    /// The daemon's copy of the image, stats only, exported once: results
    /// are compared with it rather than with caulk's own read.
    fn baseline(&self) -> Result<HashMap<String, caulk_buildkit::pb::fsutil::Stat>, PatchError> {
        let mut known = self.baseline.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = known.as_ref() {
            return Ok(stats.clone());
        }
        let stats = Arc::new(Mutex::new(HashMap::new()));
        let sink = Box::new(StatSink(Arc::clone(&stats)));
        let cancels = vec![self.cancel.clone()];
        let mut watch = Watch { cancel: cancels, deadline: None, on_event: |_| {} };
        let started = Instant::now();
        self.engine
            .client
            .export_chain(&self.base, &[], sink, &mut watch)
            .map_err(|e| solve_failed(&self.engine.addr, e))?;
        let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(PoisonError::into_inner));
        tracing::debug!("the daemon's copy of the image: {} entries in {:?}", stats.len(), started.elapsed());
        *known = Some(stats.clone());
        Ok(stats)
    }

    /// Folds a result's difference from the image over the earlier caulk
    /// layer (if any): the changes the one new layer holds.
    fn absorb(&mut self, diff: &tempfile::TempDir) -> Result<(), PatchError> {
        let dir = self.squash_dir()?;
        squash::fold(diff.path(), dir.path()).map_err(bk)?;
        self.layers = self.lower.clone();
        if self.seed_layer.is_some() {
            // The earlier caulk layer is in `dir` now.
            self.layers.pop();
        }
        self.layers.push(dir.path().to_owned());
        self.changes = Some(dir);
        Ok(())
    }

    /// A fresh upper dir holding the earlier caulk layer's changes, if any.
    fn squash_dir(&self) -> Result<tempfile::TempDir, PatchError> {
        let dir =
            tempfile::Builder::new().prefix("bk-changes-").tempdir_in(&self.engine.working_folder).map_err(
                |source| bk(BuildkitError::Io { what: "creating the changes dir".to_owned(), source }),
            )?;
        if let Some(layer) = &self.seed_layer {
            let options = UnpackOptions {
                whiteouts: WhiteoutFormat::OverlayTrusted,
                preserve_ownership: true,
                device_nodes: true,
            };
            let what = |source| {
                bk(BuildkitError::Image { what: "unpacking the earlier caulk layer".to_owned(), source })
            };
            let mut tar = open_tar_stream(self.source.as_ref(), layer).map_err(what)?;
            unpack(&mut tar, dir.path(), &layer.desc.digest.to_string(), &options).map_err(what)?;
        }
        Ok(dir)
    }
}

/// A chain solve's error as the pipeline reports it. A solve stops early
/// only when caulk is interrupted (a step past its time limit is a failed
/// step instead): that is a cancellation, and nothing was written.
fn solve_failed(addr: &Address, error: caulk_buildkit::Error) -> PatchError {
    match error {
        caulk_buildkit::Error::Stopped { .. } => cancelled_on(addr),
        other => bk(other),
    }
}

fn cancelled_on(addr: &Address) -> PatchError {
    PatchError::Cancelled { during: format!("while the steps ran on {addr} (the build there was cancelled)") }
}

/// Whether one of the workers' `platforms` runs `platform` (a worker
/// platform without a variant runs every variant); else the platforms they
/// do run, for the error.
fn worker_runs(platforms: &[caulk_buildkit::pb::llb::Platform], platform: &Platform) -> Result<(), String> {
    let runs = |p: &&caulk_buildkit::pb::llb::Platform| {
        p.os == platform.os
            && p.architecture == platform.architecture
            && (p.variant.is_empty() || platform.variant.as_deref().is_none_or(|v| v == p.variant))
    };
    if platforms.iter().any(|p| runs(&p)) {
        return Ok(());
    }
    Err(listed(platforms))
}

/// The workers' platforms, for an error.
fn listed(platforms: &[caulk_buildkit::pb::llb::Platform]) -> String {
    let listed: Vec<String> = platforms
        .iter()
        .map(|p| {
            let variant = if p.variant.is_empty() { String::new() } else { format!("/{}", p.variant) };
            format!("{}/{}{variant}", p.os, p.architecture)
        })
        .collect();
    if listed.is_empty() { "no platform it names".to_owned() } else { listed.join(", ") }
}

/// Which of a tooling image's `available` platforms to take: the first
/// the workers run, in the workers' order. Their first is the daemon's own
/// (emulated ones follow it), the one BuildKit gives an op that names
/// none, as the tooling root's source op does; an image without it is run
/// emulated. Never this machine's: a remote daemon may run another.
fn tooling_platform(
    workers: &[caulk_buildkit::pb::llb::Platform],
    available: &[Platform],
) -> Option<Platform> {
    workers
        .iter()
        .find_map(|p| available.iter().find(|a| worker_runs(std::slice::from_ref(p), a).is_ok()).cloned())
}

/// A probe's or step's command, as the daemon step is made from it.
struct Command<'a> {
    /// Names it in errors.
    label: &'a str,
    argv: &'a [String],
    env: &'a [(String, String)],
    cwd: Option<&'a str>,
    network: bool,
    run_in: &'a RunIn,
    caches: &'a [caulk_exec::CacheMount],
}

/// Follows a solve, stopping it when caulk is interrupted (Ctrl-C,
/// SIGTERM, `--timeout`) or `deadline` passes.
struct Watch<F> {
    cancel: Vec<CancelToken>,
    deadline: Option<Instant>,
    on_event: F,
}

impl<F: FnMut(Event)> Follow for Watch<F> {
    fn event(&mut self, event: Event) {
        (self.on_event)(event);
    }

    fn stop(&mut self) -> Option<String> {
        if self.cancel.iter().any(CancelToken::is_cancelled) {
            return Some("caulk was interrupted".to_owned());
        }
        self.deadline.filter(|d| Instant::now() >= *d).map(|_| "it ran past its time limit".to_owned())
    }
}

/// A chain solve's events into its [`ChainRun`], stopping the solve when
/// caulk is interrupted or a step runs past its time limit.
struct Following<'r, 's> {
    run: &'r mut ChainRun<'s>,
    observer: &'r mut dyn Observer,
    cancel: &'r [CancelToken],
}

impl Follow for Following<'_, '_> {
    fn event(&mut self, event: Event) {
        self.run.on_event(event, self.observer);
    }

    fn stop(&mut self) -> Option<String> {
        if self.cancel.iter().any(CancelToken::is_cancelled) {
            return Some("caulk was interrupted".to_owned());
        }
        self.run.overdue()
    }
}

/// The CA bundle of a root fs (a regular file, symlinks followed), over
/// which the host's is mounted for network steps. A root without one gets
/// none, since the mount point would stay behind.
fn bundle_in(root: &RootFs) -> Option<String> {
    CA_BUNDLE_PATHS.iter().find_map(|path| {
        let mut path = (*path).to_owned();
        // A few hops: Debian's bundle is a file, others link once or twice.
        for _ in 0..8 {
            let info = root.stat(&path)?;
            match (info.kind, info.link_target) {
                (ImageEntry::File, _) => return Some(path),
                (ImageEntry::Symlink, Some(to)) => {
                    path = if to.starts_with('/') {
                        to
                    } else {
                        let parent = Path::new(&path).parent().unwrap_or(Path::new("/"));
                        parent.join(to).to_string_lossy().into_owned()
                    };
                }
                _ => return None,
            }
        }
        None
    })
}

/// Progress and outcomes of one chain solve, from its Status events.
struct ChainRun<'s> {
    steps: &'s [Step],
    /// Vertex name → step index, for the steps this solve runs.
    names: Vec<(String, usize)>,
    started: Vec<Option<Instant>>,
    outcomes: Vec<Option<StepOutcome>>,
    stderr: Vec<String>,
    failed: Option<usize>,
    /// The step the solve was stopped for, past its time limit.
    timed_out: Option<usize>,
}

struct Finished {
    outcomes: Vec<StepOutcome>,
    failed: Option<usize>,
}

impl<'s> ChainRun<'s> {
    fn new(steps: &'s [Step], daemon_steps: &[caulk_buildkit::Step], pending: &[usize]) -> Self {
        Self {
            steps,
            names: pending.iter().map(|&i| (daemon_steps[i].name.clone(), i)).collect(),
            started: vec![None; steps.len()],
            outcomes: vec![None; steps.len()],
            stderr: vec![String::new(); steps.len()],
            failed: None,
            timed_out: None,
        }
    }

    /// The running step past its time limit, if one is, noted so the
    /// outcome says it timed out; the reason to stop the solve.
    fn overdue(&mut self) -> Option<String> {
        let (index, limit) = self.names.iter().find_map(|&(_, i)| {
            let limit = self.steps[i].timeout?;
            let running = self.outcomes[i].is_none() && self.started[i]?.elapsed() >= limit;
            running.then_some((i, limit))
        })?;
        self.timed_out = Some(index);
        Some(format!("step `{}` ran past its time limit of {}s", self.steps[index].summary, limit.as_secs()))
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().find(|(n, _)| n == name).map(|&(_, i)| i)
    }

    fn start(&mut self, i: usize, observer: &mut dyn Observer) {
        if self.started[i].is_none() {
            self.started[i] = Some(Instant::now());
            observer.step_started(i, self.steps.len(), &self.steps[i].summary);
        }
    }

    /// Records step `i`'s outcome once: its exit code, or `None` when it
    /// was stopped past its time limit.
    fn end(&mut self, i: usize, exit_code: Option<i32>, observer: &mut dyn Observer) {
        if self.outcomes[i].is_some() {
            return;
        }
        self.start(i, observer);
        let outcome = StepOutcome {
            summary: self.steps[i].summary.clone(),
            exit_code,
            signal: None,
            duration: self.started[i].map_or(Duration::ZERO, |t| t.elapsed()),
            stderr_tail: std::mem::take(&mut self.stderr[i]),
            timed_out: exit_code.is_none(),
            limit_hit: None,
        };
        observer.step_finished(&outcome);
        self.outcomes[i] = Some(outcome);
    }

    fn on_event(&mut self, event: Event, observer: &mut dyn Observer) {
        match event {
            Event::Started { name, .. } => {
                if let Some(i) = self.index(&name) {
                    self.start(i, observer);
                }
            }
            Event::Completed { name, .. } => {
                if let Some(i) = self.index(&name) {
                    self.end(i, Some(0), observer);
                }
            }
            Event::Failed { name, error, .. } => {
                if let Some(i) = self.index(&name) {
                    let code = caulk_buildkit::exit_code(&error).unwrap_or(-1);
                    if self.stderr[i].is_empty() {
                        self.stderr[i] = error;
                    }
                    self.end(i, Some(code), observer);
                    self.failed.get_or_insert(i);
                } else {
                    tracing::debug!(vertex = name, "{error}");
                }
            }
            Event::Log { name, stream, line, .. } => {
                let Some(i) = self.index(&name) else {
                    tracing::debug!(vertex = name, "{line}");
                    return;
                };
                let stream =
                    if stream == caulk_buildkit::Stream::Stderr { Stream::Stderr } else { Stream::Stdout };
                if stream == Stream::Stderr {
                    let tail = &mut self.stderr[i];
                    tail.push_str(&line);
                    tail.push('\n');
                    if tail.len() > STDERR_TAIL {
                        let cut = tail.len() - STDERR_TAIL;
                        let cut = (cut..tail.len()).find(|&c| tail.is_char_boundary(c)).unwrap_or(tail.len());
                        tail.drain(..cut);
                    }
                }
                observer.step_output(stream, &line);
            }
        }
    }

    /// The outcomes of the steps that ran, in order, up to the failed one.
    /// After a solve that worked every step did, whether or not the stream
    /// said so.
    fn finish(mut self, solved: bool, observer: &mut dyn Observer) -> Finished {
        if let Some(i) = self.timed_out {
            self.end(i, None, observer);
            self.failed.get_or_insert(i);
        }
        let order: Vec<usize> = self.names.iter().map(|&(_, i)| i).collect();
        if solved && self.failed.is_none() {
            for &i in &order {
                self.end(i, Some(0), observer);
            }
        }
        let mut outcomes = self.outcomes;
        let mut ran = Vec::new();
        for i in order {
            match outcomes[i].take() {
                Some(outcome) => ran.push(outcome),
                None => break,
            }
            if Some(i) == self.failed {
                break;
            }
        }
        Finished { outcomes: ran, failed: self.failed }
    }
}

/// A plan cache as a BuildKit cache mount: its key is the last part of the
/// host directory the local engine would use, which the plugin's cache key
/// and path name.
///
/// BuildKit has no throwaway view of a cache as the local executor has: a
/// read-only cache mount there is read-only, which a tool that writes its
/// cache to read it (npm's offline installs) cannot use. So only tooling
/// steps get one read-only there (their writes through a link the image
/// planted would otherwise land in the cache); offline steps in the image
/// get it writable, as before. Every mount is `locked`, readers too:
/// BuildKit's `shared` mode hands a step a new, empty cache dir when a
/// `locked` user holds the only one, which would leave apt's install
/// without its downloads. So steps of concurrent solves using one cache
/// take turns on BuildKit.
fn cache_mount(cache: &caulk_exec::CacheMount, run_in: &RunIn) -> CacheMount {
    let parts: Vec<String> = cache
        .host_dir
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let key = format!("caulk/{}", parts.into_iter().rev().collect::<Vec<_>>().join("/"));
    CacheMount {
        key,
        dest: cache.path.clone(),
        sharing: caulk_buildkit::Sharing::Locked,
        readonly: cache.read_only && matches!(run_in, RunIn::Tooling { .. }),
    }
}

/// The host's proxy settings, kept out of BuildKit's cache key.
fn proxy_env() -> Option<caulk_buildkit::ProxyEnv> {
    let get =
        |upper: &str, lower: &str| std::env::var(upper).or_else(|_| std::env::var(lower)).unwrap_or_default();
    debug_assert!(PROXY_VARIABLES.contains(&"HTTP_PROXY"));
    let proxy = caulk_buildkit::ProxyEnv {
        http_proxy: get("HTTP_PROXY", "http_proxy"),
        https_proxy: get("HTTPS_PROXY", "https_proxy"),
        ftp_proxy: get("FTP_PROXY", "ftp_proxy"),
        no_proxy: get("NO_PROXY", "no_proxy"),
        all_proxy: get("ALL_PROXY", "all_proxy"),
    };
    (proxy != caulk_buildkit::ProxyEnv::default()).then_some(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_come_from_the_plugin_and_its_key() {
        let cache = caulk_exec::CacheMount {
            host_dir: "/home/u/.cache/caulk/steps/apt/0123abcd".into(),
            path: "/var/lib/apt/lists".into(),
            read_only: false,
        };
        let mount = cache_mount(&cache, &RunIn::Target);
        assert_eq!(mount.key, "caulk/apt/0123abcd");
        assert_eq!(mount.dest, "/var/lib/apt/lists");
    }

    #[test]
    fn only_tooling_steps_get_read_only_cache_mounts() {
        let cache = |read_only| caulk_exec::CacheMount {
            host_dir: "/c/steps/npm/0123abcd".into(),
            path: "/var/cache/caulk-npm".into(),
            read_only,
        };
        let tooling =
            RunIn::Tooling { root: ToolingRoot::Image("debian:12".into()), mount_point: "/target".into() };
        assert!(cache_mount(&cache(true), &tooling).readonly);
        assert!(
            !cache_mount(&cache(true), &RunIn::Target).readonly,
            "npm's offline installs write their cache"
        );
        assert!(!cache_mount(&cache(false), &tooling).readonly);
        assert!(
            [&tooling, &RunIn::Target]
                .iter()
                .all(|run_in| cache_mount(&cache(true), run_in).sharing == caulk_buildkit::Sharing::Locked)
        );
    }

    #[test]
    fn a_step_past_its_time_limit_stops_the_solve_and_is_reported_timed_out() {
        let steps = vec![
            Step::new("a", ["true"]),
            Step::new("b", ["sleep", "600"]).timeout(Duration::from_millis(1)),
            Step::new("c", ["true"]),
        ];
        let daemon: Vec<caulk_buildkit::Step> = (0..3)
            .map(|i| caulk_buildkit::Step { name: format!("s{i}"), ..caulk_buildkit::Step::default() })
            .collect();
        let mut run = ChainRun::new(&steps, &daemon, &[0, 1, 2]);
        let mut quiet = crate::patch::Quiet;
        assert_eq!(run.overdue(), None, "nothing runs yet");
        run.on_event(Event::Started { vertex: "x".into(), name: "s0".into() }, &mut quiet);
        run.on_event(Event::Completed { vertex: "x".into(), name: "s0".into(), cached: false }, &mut quiet);
        run.on_event(Event::Started { vertex: "y".into(), name: "s1".into() }, &mut quiet);
        std::thread::sleep(Duration::from_millis(5));
        let why = run.overdue().expect("b is past its limit");
        assert!(why.contains("step `b`"), "{why}");
        let finished = run.finish(false, &mut quiet);
        assert_eq!(finished.failed, Some(1));
        let outcomes: Vec<_> = finished.outcomes.iter().map(|o| (o.exit_code, o.timed_out)).collect();
        assert_eq!(outcomes, [(Some(0), false), (None, true)]);
    }

    #[test]
    fn a_platform_is_run_by_a_worker_that_names_it() {
        let worker = |arch: &str, variant: &str| caulk_buildkit::pb::llb::Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.into(),
        };
        let workers = [worker("amd64", ""), worker("arm64", ""), worker("arm", "v7")];
        for wanted in ["linux/amd64", "linux/arm64/v8", "linux/arm64", "linux/arm/v7"] {
            assert_eq!(worker_runs(&workers, &Platform::parse(wanted).unwrap()), Ok(()), "{wanted}");
        }
        assert_eq!(
            worker_runs(&workers, &Platform::parse("linux/s390x").unwrap()),
            Err("linux/amd64, linux/arm64, linux/arm/v7".to_owned())
        );
        assert!(worker_runs(&workers, &Platform::parse("linux/arm/v6").unwrap()).is_err());
        assert_eq!(
            worker_runs(&[], &Platform::parse("linux/amd64").unwrap()),
            Err("no platform it names".to_owned())
        );
    }

    #[test]
    fn tooling_images_are_taken_for_the_daemons_platform_not_this_machines() {
        let worker = |arch: &str, variant: &str| caulk_buildkit::pb::llb::Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.into(),
        };
        let platforms =
            |list: &[&str]| -> Vec<Platform> { list.iter().map(|p| Platform::parse(p).unwrap()).collect() };
        let chosen = |workers: &[caulk_buildkit::pb::llb::Platform], available: &[&str]| {
            tooling_platform(workers, &platforms(available)).map(|p| p.to_string())
        };
        // Whatever this machine is, a daemon that runs s390x natively (and
        // this machine's platform emulated) gets s390x tools.
        let here = Platform::host().to_string();
        let workers = [worker("s390x", ""), worker(&Platform::host().architecture, "")];
        assert_eq!(chosen(&workers, &[&here, "linux/s390x"]).as_deref(), Some("linux/s390x"));
        // An image without the daemon's own platform runs emulated.
        assert_eq!(chosen(&workers, &[&here]), Some(here.clone()));
        assert_eq!(chosen(&workers, &["linux/mips64le"]), None);
        // A worker platform without a variant takes any of the image's.
        assert_eq!(
            chosen(&[worker("arm64", "")], &["linux/amd64", "linux/arm64/v8"]).as_deref(),
            Some("linux/arm64/v8")
        );
        assert_eq!(chosen(&[worker("arm", "v7")], &["linux/arm/v6"]), None);
        assert_eq!(chosen(&[], &["linux/amd64"]), None);
    }

    #[test]
    fn a_stopped_solve_is_a_cancellation_other_failures_are_the_daemons() {
        let addr = Address::parse("docker-unix:///nowhere.sock").unwrap();
        let stopped =
            caulk_buildkit::Error::Stopped { addr: addr.to_string(), reason: "caulk was interrupted".into() };
        let error = solve_failed(&addr, stopped);
        assert!(
            matches!(&error, PatchError::Cancelled { during } if during.contains("cancelled")),
            "{error}"
        );
        let other = caulk_buildkit::Error::Solve { addr: addr.to_string(), message: "exit code: 1".into() };
        assert!(matches!(solve_failed(&addr, other), PatchError::Buildkit(_)));
    }

    #[test]
    fn a_tolerated_failure_ends_the_run_of_outcomes() {
        let steps = vec![Step::new("a", ["true"]), Step::new("b", ["false"]), Step::new("c", ["true"])];
        let daemon: Vec<caulk_buildkit::Step> = (0..3)
            .map(|i| caulk_buildkit::Step { name: format!("s{i}"), ..caulk_buildkit::Step::default() })
            .collect();
        let mut run = ChainRun::new(&steps, &daemon, &[0, 1, 2]);
        let mut quiet = crate::patch::Quiet;
        run.on_event(Event::Started { vertex: "x".into(), name: "s0".into() }, &mut quiet);
        run.on_event(Event::Completed { vertex: "x".into(), name: "s0".into(), cached: false }, &mut quiet);
        run.on_event(
            Event::Log {
                vertex: "y".into(),
                name: "s1".into(),
                stream: caulk_buildkit::Stream::Stderr,
                line: "boom".into(),
            },
            &mut quiet,
        );
        run.on_event(
            Event::Failed {
                vertex: "y".into(),
                name: "s1".into(),
                error: "executor failed: exit code: 4".into(),
            },
            &mut quiet,
        );
        let finished = run.finish(false, &mut quiet);
        assert_eq!(finished.failed, Some(1));
        let codes: Vec<_> = finished.outcomes.iter().map(|o| o.exit_code).collect();
        assert_eq!(codes, [Some(0), Some(4)]);
        assert_eq!(finished.outcomes[1].stderr_tail, "boom\n");
    }
}
