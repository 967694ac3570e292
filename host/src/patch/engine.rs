//! The seam between the pipeline and where an updater's commands and steps
//! run. The phases ask an [`Engine`] for a [`Workspace`] over the image's
//! layers and put every command question, step and the final diff through
//! it; nothing else in the pipeline knows about bubblewrap or overlayfs.

use std::path::{Path, PathBuf};

use caulk_exec::{
    CancelToken, Diff, ExecutorConfig, LocalExecutor, MergedReader, Probe, ProbeOutput, Session, Step,
    StepOutcome, Stream,
};
use caulk_image::layer::LayerSource;
use caulk_image::{Image, PlatformImage};

use super::PatchError;

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
pub trait Engine: Sync {
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
    /// The steps' changes, to be written as the new layer.
    fn finish(self: Box<Self>) -> Result<Changes, PatchError>;
}

/// The steps' changes as a directory, in the form `source` names, kept on
/// disk until dropped.
pub struct Changes {
    pub dir: PathBuf,
    pub source: LayerSource,
    _keep: Option<Diff>,
}

impl Changes {
    /// Changes in `dir`, which the caller keeps alive.
    pub fn in_dir(dir: PathBuf, source: LayerSource) -> Self {
        Self { dir, source, _keep: None }
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

    fn finish(self: Box<Self>) -> Result<Changes, PatchError> {
        let diff = Session::finish(*self).map_err(super::exec_err)?;
        Ok(Changes { dir: diff.path().to_owned(), source: LayerSource::OverlayUpper, _keep: Some(diff) })
    }
}
