//! The seam between the pipeline and where an updater's commands and steps
//! run. The phases ask an [`Engine`] for a [`Workspace`] over the image's
//! layers and put every command question, step and the final diff through
//! it; nothing else in the pipeline knows about bubblewrap or overlayfs.

pub mod buildkit;
mod image_tree;
mod squash;
mod upper;

use std::path::{Path, PathBuf};

use caulk_exec::{
    CancelToken, ExecutorConfig, LocalExecutor, MergedReader, Probe, ProbeOutput, RunIn, Session, Step,
    StepOutcome, Stream, ToolingRoot,
};
use caulk_image::layer::LayerSource;
use caulk_image::{Image, PlatformImage};

use super::tooling::ToolingImages;
use super::{Observer, PatchError};

/// What a workspace starts from: the image (an engine that runs steps
/// elsewhere needs it whole) and its layers as caulk unpacked them.
pub struct Base<'a> {
    pub image: &'a Image,
    /// The platform's image within `image`.
    pub platform_image: &'a PlatformImage,
    /// Its layers unpacked, bottom first, below any earlier caulk layer.
    pub lower: &'a [PathBuf],
    /// An earlier caulk layer, unpacked: the starting changes, so the new
    /// layer holds both and replaces it.
    pub seed: Option<&'a Path>,
    /// Where a local session keeps its changes instead of the working
    /// folder: a tmpfs chosen for a small upgrade (see `workdir.rs`).
    pub scratch: Option<&'a Path>,
}

/// Where steps run.
pub trait Engine: Sync {
    fn prepare<'e>(
        &'e self,
        base: &Base<'_>,
        cancel: CancelToken,
    ) -> Result<Box<dyn Workspace + 'e>, PatchError>;

    /// Whether steps run on this machine, so a foreign platform needs this
    /// machine's binfmt_misc emulation (a daemon elsewhere has its own).
    fn runs_here(&self) -> bool {
        true
    }
}

/// The image's root fs with the steps run so far. `Sync` because command
/// questions are answered several at a time.
pub trait Workspace: Sync {
    /// The files as they are now (the layers and the steps' changes).
    fn reader(&self) -> MergedReader;
    /// Runs a read-only command an updater asked about.
    fn probe(&self, probe: &Probe) -> caulk_exec::Result<ProbeOutput>;
    /// Runs one plan step, its output line by line to `on_output`.
    fn run_step(
        &mut self,
        step: &Step,
        on_output: &mut dyn FnMut(Stream, &str),
    ) -> caulk_exec::Result<StepOutcome>;
    /// Runs the plan's steps in order until one fails (a failed step's
    /// outcome is the last one). An engine that must see them together
    /// (BuildKit shares cache mounts only within one solve) runs them so;
    /// the others step by step with [`super::execute`].
    fn run_steps(
        &mut self,
        steps: &[Step],
        observer: &mut dyn Observer,
        cancel: &CancelToken,
    ) -> Result<Vec<StepOutcome>, PatchError>;
    /// The steps' changes as they stand, where [`Workspace::finish`] will
    /// hand the same directory over unchanged and nothing writes to it in
    /// the meantime: the layer can then be written while verification
    /// runs. `None` when only `finish` can produce them.
    fn changes_so_far(&self) -> Option<(PathBuf, LayerSource)> {
        None
    }
    /// The steps' changes, to be written as the new layer.
    fn finish(self: Box<Self>) -> Result<Changes, PatchError>;
}

/// The steps' changes as a directory, in the form `source` names, kept on
/// disk until dropped.
pub struct Changes {
    pub dir: PathBuf,
    pub source: LayerSource,
    _keep: Option<Box<dyn std::any::Any>>,
}

impl Changes {
    /// Changes in `dir`, which the caller keeps alive.
    pub fn in_dir(dir: PathBuf, source: LayerSource) -> Self {
        Self { dir, source, _keep: None }
    }

    /// Changes in a temporary directory, removed when these are dropped.
    pub fn owning(dir: tempfile::TempDir, source: LayerSource) -> Self {
        Self { dir: dir.path().to_owned(), source, _keep: Some(Box::new(dir)) }
    }
}

/// Steps in bubblewrap over overlayfs (or a copy) on this machine.
pub struct LocalEngine {
    executor: LocalExecutor,
    tooling: Option<ToolingImages>,
}

impl LocalEngine {
    /// An engine that refuses tooling images (the host's root still works).
    pub fn new(config: ExecutorConfig) -> caulk_exec::Result<Self> {
        Ok(Self { executor: LocalExecutor::new(config)?, tooling: None })
    }

    /// Tooling images are pulled and unpacked through `tooling`.
    #[must_use]
    pub fn with_tooling_images(mut self, tooling: ToolingImages) -> Self {
        self.tooling = Some(tooling);
        self
    }
}

impl Engine for LocalEngine {
    fn prepare<'e>(
        &'e self,
        base: &Base<'_>,
        cancel: CancelToken,
    ) -> Result<Box<dyn Workspace + 'e>, PatchError> {
        let session = match base.scratch {
            Some(folder) => self.executor.prepare_on_in(folder, base.lower, base.seed, cancel),
            None => self.executor.prepare_on(base.lower, base.seed, cancel),
        }
        .map_err(super::exec_err)?;
        Ok(Box::new(LocalWorkspace { session, tooling: self.tooling.as_ref() }))
    }
}

/// A local session that runs tooling images from their unpacked roots.
struct LocalWorkspace<'e> {
    session: Session<'e>,
    tooling: Option<&'e ToolingImages>,
}

impl LocalWorkspace<'_> {
    /// `run_in` with a tooling image replaced by its unpacked root.
    fn resolve(&self, run_in: &RunIn) -> caulk_exec::Result<Option<RunIn>> {
        let RunIn::Tooling { root: ToolingRoot::Image(image), mount_point } = run_in else { return Ok(None) };
        let Some(tooling) = self.tooling else {
            return Err(caulk_exec::Error::ToolingImage {
                image: image.clone(),
                reason: "this engine has no cache to unpack tooling images into".to_owned(),
            });
        };
        let dir = tooling.root(image, self.session.cancel_token())?;
        Ok(Some(RunIn::Tooling { root: ToolingRoot::Dir(dir), mount_point: mount_point.clone() }))
    }
}

impl Workspace for LocalWorkspace<'_> {
    fn reader(&self) -> MergedReader {
        self.session.reader()
    }

    fn probe(&self, probe: &Probe) -> caulk_exec::Result<ProbeOutput> {
        match self.resolve(&probe.run_in)? {
            Some(run_in) => self.session.probe(&probe.clone().run_in(run_in)),
            None => self.session.probe(probe),
        }
    }

    fn run_step(
        &mut self,
        step: &Step,
        on_output: &mut dyn FnMut(Stream, &str),
    ) -> caulk_exec::Result<StepOutcome> {
        match self.resolve(&step.run_in)? {
            Some(run_in) => self.session.run_step(&step.clone().run_in(run_in), on_output),
            None => self.session.run_step(step, on_output),
        }
    }

    fn run_steps(
        &mut self,
        steps: &[Step],
        observer: &mut dyn Observer,
        cancel: &CancelToken,
    ) -> Result<Vec<StepOutcome>, PatchError> {
        let outcomes = super::execute(self, steps, observer, cancel);
        self.session.drop_pins();
        outcomes
    }

    fn changes_so_far(&self) -> Option<(PathBuf, LayerSource)> {
        self.session.changes_dir().map(|dir| (dir, LayerSource::OverlayUpper))
    }

    fn finish(self: Box<Self>) -> Result<Changes, PatchError> {
        let diff = self.session.finish().map_err(super::exec_err)?;
        Ok(Changes {
            dir: diff.path().to_owned(),
            source: LayerSource::OverlayUpper,
            _keep: Some(Box::new(diff)),
        })
    }
}
