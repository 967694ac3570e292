//! Steps on a BuildKit daemon (`--engine buildkit`): probes and plan steps
//! become ExecOps on the image, the daemon runs them, and the steps'
//! layers come back to be folded into the one layer caulk writes. File
//! questions are still answered from caulk's own read of the image.
//!
//! The result leaves the daemon through Docker's `moby` exporter, so the
//! steps need Docker's embedded BuildKit (`docker://`, `docker-unix://`);
//! probes work on every address form.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caulk_buildkit::{Address, CacheMount, Client, ConnectOptions, Credentials, DockerApi, Event, Network};
use caulk_exec::{
    CA_BUNDLE_PATHS, CancelToken, DEFAULT_CA_BUNDLE, DEFAULT_PATH, EntryKind, MergedReader, PROXY_VARIABLES,
    Probe, ProbeOutput, RunIn, STDERR_TAIL, Step, StepOutcome, Stream,
};
use caulk_image::layer::unpack::unpack;
use caulk_image::layer::{LayerSource, UnpackOptions, WhiteoutFormat, open_tar_stream};
use caulk_image::{CopyOptions, Image, ImageRef, TransportOptions};

use super::squash;
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
        "the result read back from {addr} does not start with the image's layers \
         (layer {index} is {found}, the image has {expected})"
    )]
    ForeignResult { addr: String, index: usize, found: String, expected: String },
}

impl BuildkitError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Daemon(e) => e.hint().map(str::to_owned),
            Self::Unsupported { .. } => Some("use --engine local".to_owned()),
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
    let engine = BuildkitEngine::connect(
        settings,
        &request.image,
        &request.transport,
        &working_folder,
        request.ca_bundle.as_deref(),
    )?;
    crate::patch::run_on(&engine, request, plugins, scanners, observer, cancel)
}

/// Runs steps on a BuildKit daemon.
pub struct BuildkitEngine {
    client: Client,
    addr: Address,
    /// Reads and loads images in the daemon's Docker Engine.
    daemon_transport: TransportOptions,
    /// The image as the user named it: a registry image is pulled by the
    /// daemon itself.
    image: ImageRef,
    transport: TransportOptions,
    working_folder: PathBuf,
    ca_bundle: Option<Vec<u8>>,
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
        // A client session (and so a round trip per solve) only when the
        // daemon pulls from a registry and may need a login.
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
        let daemon_transport = TransportOptions { docker_host: addr.docker_host(), ..transport.clone() };
        Ok(Self {
            client,
            addr,
            daemon_transport,
            image: image.clone(),
            transport: transport.clone(),
            working_folder: working_folder.to_owned(),
            ca_bundle,
        })
    }

    /// The name the daemon knows the image by, loading it into the Docker
    /// Engine's store when the daemon cannot pull it itself.
    fn image_in_daemon(&self, base: &Base<'_>) -> Result<(String, Option<String>), PatchError> {
        let digest = base.platform_image.manifest.digest.to_string();
        if let ImageRef::Registry(reference) = &self.image {
            // Pinned to the manifest caulk read, whatever the tag means now.
            return Ok((reference.with_digest(&digest).to_string(), None));
        }
        if let ImageRef::DockerDaemon { name } = &self.image
            && self.same_engine()
        {
            // Already in the daemon's store. Should the name move on
            // meanwhile, the result's layers would not start with the
            // image's and reading it back refuses it.
            return Ok((name.clone(), None));
        }
        if self.addr.docker_socket().is_none() {
            return Err(bk(BuildkitError::Unsupported {
                what: format!(
                    "{} on {}: a local image can only be loaded into a Docker Engine's store \
                     (push it to a registry the daemon reaches, or use a docker:// address)",
                    self.image, self.addr
                ),
            }));
        }
        let name = unique_name("load");
        let destination = ImageRef::DockerDaemon { name: name.clone() };
        let options = CopyOptions {
            platforms: Some(vec![base.platform_image.platform.clone()]),
            ..CopyOptions::default()
        };
        caulk_image::copy(&self.image, &destination, &options, &self.cross_transport()).map_err(
            |source| {
                bk(BuildkitError::Image {
                    what: format!("loading {} into {}", self.image, self.addr),
                    source,
                })
            },
        )?;
        Ok((name.clone(), Some(name)))
    }

    /// Whether the user's `docker-daemon:` images live in the daemon's
    /// Docker Engine.
    fn same_engine(&self) -> bool {
        let user = self
            .transport
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("unix://{}", caulk_buildkit::DOCKER_DEFAULT_SOCKET));
        self.addr.docker_host().is_some_and(|daemon| daemon == user)
    }

    /// Reads the image with the user's transport settings and writes into
    /// the daemon's Engine: an input that is itself `docker-daemon:` keeps
    /// the user's `DOCKER_HOST`.
    fn cross_transport(&self) -> TransportOptions {
        match &self.image {
            ImageRef::DockerDaemon { .. } => self.transport.clone(),
            _ => self.daemon_transport.clone(),
        }
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
        let (image, loaded) = self.image_in_daemon(base)?;
        let mut layers: Vec<PathBuf> = base.lower.to_vec();
        layers.extend(base.seed.map(Path::to_owned));
        let workspace = BuildkitWorkspace {
            engine: self,
            image,
            loaded,
            base_layers: base.platform_image.layers.iter().map(|l| l.diff_id.to_string()).collect(),
            seed_layer: base.seed.and_then(|_| base.platform_image.layers.last().cloned()),
            source: base.image.source().clone(),
            lower: layers.clone(),
            layers,
            done: Vec::new(),
            changes: None,
            cancel,
        };
        Ok(Box::new(workspace))
    }
}

pub struct BuildkitWorkspace<'e> {
    engine: &'e BuildkitEngine,
    /// The image as the daemon names it.
    image: String,
    /// A name caulk loaded into the Engine, removed when done.
    loaded: Option<String>,
    /// The image's diff_ids: the result must start with them.
    base_layers: Vec<String>,
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
}

impl Drop for BuildkitWorkspace<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.loaded {
            remove_image(&self.engine.addr, name);
        }
    }
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
        if probe.run_in != RunIn::Target {
            return Err(failed("commands from a tooling root fs cannot run on BuildKit".to_owned()));
        }
        let step =
            self.daemon_step("probe", &probe.argv, &probe.env, probe.cwd.as_deref(), probe.network, &[]);
        let started = Instant::now();
        let mut log = |event: Event| tracing::trace!(?event, "probe");
        let output = self
            .engine
            .client
            .probe(&self.image, &self.done, &step, &mut log)
            .map_err(|e| failed(e.to_string()))?;
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
            if step.run_in != RunIn::Target {
                return Err(bk(BuildkitError::Unsupported {
                    what: format!("step `{}` from a tooling root fs", step.summary),
                }));
            }
            let name = format!("caulk step {}/{}: {}", i + 1, steps.len(), step.summary);
            daemon_steps.push(self.daemon_step(
                &name,
                &step.argv,
                &step.env,
                step.cwd.as_deref(),
                step.network,
                &step.caches,
            ));
        }
        let mut outcomes: Vec<StepOutcome> = Vec::new();
        // Steps still to run, as indexes into `steps`; a failed step that
        // tolerates failure is left out and the rest run on what came before.
        let mut pending: Vec<usize> = (0..steps.len()).collect();
        let mut built = None;
        while !pending.is_empty() {
            if cancel.is_cancelled() || self.cancel.is_cancelled() {
                return Err(PatchError::Cancelled { during: "before the steps".to_owned() });
            }
            let chain: Vec<caulk_buildkit::Step> =
                self.done.iter().cloned().chain(pending.iter().map(|&i| daemon_steps[i].clone())).collect();
            let mut run = ChainRun::new(steps, &daemon_steps, &pending);
            let name = unique_name("result");
            let solved = self
                .engine
                .client
                .run_chain(&self.image, &chain, &name, &mut |event| run.on_event(event, observer));
            let finished = run.finish(solved.is_ok(), observer);
            outcomes.extend(finished.outcomes);
            match (solved, finished.failed) {
                (Ok(_), _) => {
                    self.done = chain;
                    built = Some(name);
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
                (Err(e), None) => return Err(bk(e)),
            }
        }
        if built.is_none() && !self.done.is_empty() {
            // The steps that worked, for verification to look at: cached
            // by the daemon, so only exported again.
            let name = unique_name("result");
            self.engine.client.run_chain(&self.image, &self.done, &name, &mut |_| {}).map_err(bk)?;
            built = Some(name);
        }
        if let Some(name) = built {
            let read = self.read_back(&name);
            remove_image(&self.engine.addr, &name);
            read?;
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
    /// the image's), plan caches as cache mounts keyed by the plugin's key.
    fn daemon_step(
        &self,
        name: &str,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        network: bool,
        caches: &[caulk_exec::CacheMount],
    ) -> caulk_buildkit::Step {
        let mut vars: Vec<(String, String)> =
            vec![("PATH".into(), DEFAULT_PATH.into()), ("HOME".into(), "/root".into())];
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            vars.push((k.clone(), v.clone()));
        }
        let ca_bundle = match (&self.engine.ca_bundle, network) {
            (Some(pem), true) => {
                self.bundle_dest().map(|dest| caulk_buildkit::CaBundle { pem: pem.clone(), dest })
            }
            _ => None,
        };
        caulk_buildkit::Step {
            name: name.to_owned(),
            args: argv.to_vec(),
            env: vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: cwd.unwrap_or_default().to_owned(),
            network: if network { Network::Host } else { Network::None },
            ca_bundle,
            caches: caches.iter().map(cache_mount).collect(),
            proxy_env: if network { proxy_env() } else { None },
        }
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

    /// Reads `name` back from the Engine and folds the steps' layers (and
    /// an earlier caulk layer below them) into one upper dir.
    fn read_back(&mut self, name: &str) -> Result<(), PatchError> {
        let reference = ImageRef::DockerDaemon { name: name.to_owned() };
        let image = Image::open(&reference, &self.engine.daemon_transport).map_err(|source| {
            bk(BuildkitError::Image {
                what: format!("reading the steps' result from {}", self.engine.addr),
                source,
            })
        })?;
        let platform = image
            .image_for(None)
            .map_err(|source| bk(BuildkitError::Image { what: "the steps' result".to_owned(), source }))?;
        for (index, expected) in self.base_layers.iter().enumerate() {
            let found =
                platform.layers.get(index).map_or_else(|| "missing".to_owned(), |l| l.diff_id.to_string());
            if &found != expected {
                return Err(bk(BuildkitError::ForeignResult {
                    addr: self.engine.addr.to_string(),
                    index,
                    found,
                    expected: expected.clone(),
                }));
            }
        }
        let dir = self.squash_dir()?;
        let options = UnpackOptions {
            whiteouts: WhiteoutFormat::OverlayTrusted,
            preserve_ownership: true,
            device_nodes: true,
        };
        for layer in &platform.layers[self.base_layers.len()..] {
            let step_dir =
                tempfile::Builder::new().prefix("bk-step-").tempdir_in(&self.engine.working_folder).map_err(
                    |source| bk(BuildkitError::Io { what: "creating a layer dir".to_owned(), source }),
                )?;
            let what =
                |source| bk(BuildkitError::Image { what: "unpacking a step's layer".to_owned(), source });
            let mut tar = open_tar_stream(image.source().as_ref(), layer).map_err(what)?;
            unpack(&mut tar, step_dir.path(), &layer.desc.digest.to_string(), &options).map_err(what)?;
            squash::fold(step_dir.path(), dir.path()).map_err(bk)?;
        }
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

/// Progress and outcomes of one chain solve, from its Status events.
struct ChainRun<'s> {
    steps: &'s [Step],
    /// Vertex name → step index, for the steps this solve runs.
    names: Vec<(String, usize)>,
    started: Vec<Option<Instant>>,
    outcomes: Vec<Option<StepOutcome>>,
    stderr: Vec<String>,
    failed: Option<usize>,
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
        }
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

    fn end(&mut self, i: usize, exit_code: i32, observer: &mut dyn Observer) {
        if self.outcomes[i].is_some() {
            return;
        }
        self.start(i, observer);
        let outcome = StepOutcome {
            summary: self.steps[i].summary.clone(),
            exit_code: Some(exit_code),
            signal: None,
            duration: self.started[i].map_or(Duration::ZERO, |t| t.elapsed()),
            stderr_tail: std::mem::take(&mut self.stderr[i]),
            timed_out: false,
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
                    self.end(i, 0, observer);
                }
            }
            Event::Failed { name, error, .. } => {
                if let Some(i) = self.index(&name) {
                    let code = caulk_buildkit::exit_code(&error).unwrap_or(-1);
                    if self.stderr[i].is_empty() {
                        self.stderr[i] = error;
                    }
                    self.end(i, code, observer);
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
        let order: Vec<usize> = self.names.iter().map(|&(_, i)| i).collect();
        if solved && self.failed.is_none() {
            for &i in &order {
                self.end(i, 0, observer);
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
fn cache_mount(cache: &caulk_exec::CacheMount) -> CacheMount {
    let parts: Vec<String> = cache
        .host_dir
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let key = format!("caulk/{}", parts.into_iter().rev().collect::<Vec<_>>().join("/"));
    CacheMount { key, dest: cache.path.clone(), sharing: caulk_buildkit::Sharing::Locked }
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

/// A name in the Engine's store no other run uses.
fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!(
        "caulk-engine/{kind}:{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn remove_image(addr: &Address, name: &str) {
    let removed = DockerApi::for_address(addr, "removing a temporary image").and_then(|api| api.remove(name));
    if let Err(e) = removed {
        tracing::warn!("could not remove {name} from {addr}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_come_from_the_plugin_and_its_key() {
        let cache = caulk_exec::CacheMount {
            host_dir: "/home/u/.cache/caulk/steps/apt/0123abcd".into(),
            path: "/var/lib/apt/lists".into(),
        };
        let mount = cache_mount(&cache);
        assert_eq!(mount.key, "caulk/apt/0123abcd");
        assert_eq!(mount.dest, "/var/lib/apt/lists");
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
