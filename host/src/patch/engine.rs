//! The seam between the pipeline and where an updater's commands and steps
//! run. The phases ask an [`Engine`] for a [`Workspace`] over the image's
//! layers and put every command question, step and the final diff through
//! it; nothing else in the pipeline knows about bubblewrap or overlayfs.

pub mod buildkit;
mod squash;

use std::path::{Path, PathBuf};

use caulk_exec::{
    CancelToken, ExecutorConfig, LocalExecutor, MergedReader, Probe, ProbeOutput, Session, Step, StepOutcome,
    Stream,
};
use caulk_image::layer::LayerSource;
use caulk_image::{Image, PlatformImage};

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
}

/// Where steps run.
pub trait Engine {
    fn prepare<'e>(
        &'e self,
        base: &Base<'_>,
        cancel: CancelToken,
    ) -> Result<Box<dyn Workspace + 'e>, PatchError>;
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
}

impl LocalEngine {
    pub fn new(config: ExecutorConfig) -> caulk_exec::Result<Self> {
        Ok(Self { executor: LocalExecutor::new(config)? })
    }
}

impl Engine for LocalEngine {
    fn prepare<'e>(
        &'e self,
        base: &Base<'_>,
        cancel: CancelToken,
    ) -> Result<Box<dyn Workspace + 'e>, PatchError> {
        Ok(Box::new(self.executor.prepare_on(base.lower, base.seed, cancel).map_err(super::exec_err)?))
    }
}

impl Workspace for Session<'_> {
    fn reader(&self) -> MergedReader {
        Session::reader(self)
    }

    fn probe(&self, probe: &Probe) -> caulk_exec::Result<ProbeOutput> {
        Session::probe(self, probe)
    }

    fn run_step(
        &mut self,
        step: &Step,
        on_output: &mut dyn FnMut(Stream, &str),
    ) -> caulk_exec::Result<StepOutcome> {
        Session::run_step(self, step, on_output)
    }

    fn run_steps(
        &mut self,
        steps: &[Step],
        observer: &mut dyn Observer,
        cancel: &CancelToken,
    ) -> Result<Vec<StepOutcome>, PatchError> {
        super::execute(self, steps, observer, cancel)
    }

    fn finish(self: Box<Self>) -> Result<Changes, PatchError> {
        let diff = Session::finish(*self).map_err(super::exec_err)?;
        Ok(Changes {
            dir: diff.path().to_owned(),
            source: LayerSource::OverlayUpper,
            _keep: Some(Box::new(diff)),
        })
    }
}
