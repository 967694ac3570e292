//! What the patch pipeline asks of BuildKit, in its own terms: run a probe
//! command on an image, and run a chain of steps whose resulting root fs
//! comes back through the session's `local` exporter stream.

use std::cell::RefCell;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::filesync::Sink;
use crate::llb::{CacheMount, Exec, FileMount, Graph, Network, Output, Tooling};
use crate::pb::control::SolveRequest;
use crate::pb::llb::{Platform, ProxyEnv};
use crate::progress::{Follow, Stream, Tracker};

/// Where the host's CA bundle is placed in the scratch file op.
const CA_FILE: &str = "/ca-certificates.crt";
/// BuildKit's marker when it drops a step's output past its log limit.
const CLIPPED: &[u8] = b"[output clipped, log limit";

/// One command on the previous step's root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Shown in progress.
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// The working directory; empty means `/`.
    pub cwd: String,
    pub network: Network,
    /// The host's CA bundle, bound read-only over `dest` for this step only.
    pub ca_bundle: Option<CaBundle>,
    pub caches: Vec<CacheMount>,
    /// `http_proxy` and friends for this step, kept out of BuildKit's cache
    /// key (a proxy change does not rerun a step).
    pub proxy_env: Option<ProxyEnv>,
    /// Run from another image's root fs, with the image being changed
    /// mounted read-write in it; `None`: run in the image itself.
    pub tooling: Option<ToolingImage>,
}

/// An image (by the name the daemon knows it) whose tools a step runs,
/// read-only. Its op names no platform, so the daemon runs it as its own
/// (the first platform its workers list): name a manifest for that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolingImage {
    pub image: String,
    /// Where the image being changed is mounted (absolute).
    pub mount_point: String,
    /// `image` is a tree this client shares, not a registry reference.
    pub local: Option<Local>,
}

/// A root fs the client's session shares (see [`Client::share`]) rather
/// than one the daemon pulls: `session` is the id `share` returned, `hint`
/// names the content for the daemon's copy of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub session: String,
    pub hint: String,
}

/// What a chain of steps starts from: an image the daemon resolves, for a
/// platform (`None`: the worker's own). Steps run with that platform's
/// binaries, through the daemon host's binfmt_misc for a foreign one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base {
    /// A registry reference, or with `local` the name of a shared tree.
    pub image: String,
    pub platform: Option<Platform>,
    pub local: Option<Local>,
}

impl From<&str> for Base {
    fn from(image: &str) -> Self {
        Base { image: image.to_owned(), platform: None, local: None }
    }
}

impl From<&Base> for Base {
    fn from(base: &Base) -> Self {
        base.clone()
    }
}

impl From<&String> for Base {
    fn from(image: &String) -> Self {
        Base::from(image.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaBundle {
    pub pem: Vec<u8>,
    /// A file the image already has (a missing one would leave an empty
    /// mount point behind in the step's layer).
    pub dest: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl Client {
    /// Runs `probe` on `image` after `steps` and returns its output and exit
    /// code; a non-zero exit is an answer, not an error. The probe always
    /// runs (never answered from BuildKit's cache) and changes no image.
    pub fn probe(
        &self,
        base: impl Into<Base>,
        steps: &[Step],
        probe: &Step,
        follow: &mut dyn Follow,
    ) -> Result<ProbeOutput> {
        let mut outputs = self.probe_all(base, steps, std::slice::from_ref(probe), follow)?;
        Ok(outputs.remove(0))
    }

    /// Runs several probes at once, one solve each over the same
    /// connection; the steps they share run once. Outputs come in the
    /// order of `probes`; the first probe that fails (other than by its
    /// exit code) is the error. `follow` stopping one stops them all.
    pub fn probe_all(
        &self,
        base: impl Into<Base>,
        steps: &[Step],
        probes: &[Step],
        follow: &mut dyn Follow,
    ) -> Result<Vec<ProbeOutput>> {
        let base = base.into();
        let follow = RefCell::new(follow);
        let runs = probes.iter().map(|probe| self.probe_async(&base, steps, probe, &follow));
        let outputs = self.block_on(futures_util::future::join_all(runs));
        outputs.into_iter().map(|output| output.map_err(|e| self.explain(e))).collect()
    }

    async fn probe_async(
        &self,
        base: &Base,
        steps: &[Step],
        probe: &Step,
        follow: &RefCell<&mut dyn Follow>,
    ) -> Result<ProbeOutput> {
        let mut graph = Graph::new();
        let root = chain(&mut graph, base, steps);
        let probe_out = step_on(&mut graph, base, &root, probe, true);
        let request = SolveRequest {
            definition: Some(graph.definition(&probe_out)),
            entitlements: entitlements(steps.iter().chain([probe])),
            ..SolveRequest::default()
        };
        // A probe's answer is its output, which only the status stream
        // carries: one that never reported the probe's end is asked again,
        // once, rather than read as silence.
        let mut attempts = 0;
        let (tracker, exit_code) = loop {
            attempts += 1;
            let mut tracker = Tracker::new();
            // Each callback runs to its end before any other probe's: the
            // borrows never overlap.
            let solved = self
                .solve_async(
                    request.clone(),
                    &mut |status| tracker.feed(status, &mut |e| follow.borrow_mut().event(e)),
                    &mut || follow.borrow_mut().stop(),
                )
                .await;
            tracker.finish(&mut |e| follow.borrow_mut().event(e));
            let exit_code = match solved {
                Ok(_) if tracker.finished(&probe_out.digest) => 0,
                Ok(_) if attempts < 2 => continue,
                Ok(_) => {
                    return Err(Error::Solve {
                        addr: self.address().to_string(),
                        message: format!(
                            "the daemon did not report the end of the probe {:?} twice",
                            probe.args
                        ),
                    });
                }
                Err(Error::Solve { addr, message }) => {
                    match tracker.error_of(&probe_out.digest).and_then(exit_code) {
                        Some(code) => code,
                        None => return Err(Error::Solve { addr, message }),
                    }
                }
                Err(e) => return Err(e),
            };
            break (tracker, exit_code);
        };
        let stdout = tracker.output(&probe_out.digest, Stream::Stdout).to_vec();
        let stderr = tracker.output(&probe_out.digest, Stream::Stderr).to_vec();
        if [&stdout, &stderr].iter().any(|out| out.windows(CLIPPED.len()).any(|w| w == CLIPPED)) {
            return Err(Error::Solve {
                addr: self.address().to_string(),
                message: format!(
                    "the probe {:?} wrote more than the daemon's log limit (BUILDKIT_STEP_LOG_MAX_SIZE), so its output is incomplete",
                    probe.args
                ),
            });
        }
        Ok(ProbeOutput { stdout, stderr, exit_code })
    }

    /// Runs `steps` on `base`, one exec per step on the previous one's
    /// root, and streams the resulting root fs into `sink` through the
    /// `local` exporter (any BuildKit has it; it needs the session).
    pub fn export_chain(
        &self,
        base: impl Into<Base>,
        steps: &[Step],
        sink: Box<dyn Sink>,
        follow: &mut dyn Follow,
    ) -> Result<()> {
        let base = base.into();
        let mut graph = Graph::new();
        let result = chain(&mut graph, &base, steps);
        let mut request = SolveRequest {
            definition: Some(graph.definition(&result)),
            exporter: "local".into(),
            entitlements: entitlements(steps),
            ..SolveRequest::default()
        };
        let mut tracker = Tracker::new();
        let follow = RefCell::new(follow);
        let addr = self.address().to_string();
        let outcome = self.block_on(async {
            let (session, mut ended) = self.export_session(sink).await?;
            request.session.clone_from(&session.id);
            let mut on_status = |status: &_| tracker.feed(status, &mut |e| follow.borrow_mut().event(e));
            let mut stop = || follow.borrow_mut().stop();
            let solve = self.solve_async(request, &mut on_status, &mut stop);
            tokio::pin!(solve);
            // A result caulk refused ends the solve at once (dropping it
            // cancels the build); otherwise the stream's end and the
            // solve's answer race, and whichever failed says why. A failed
            // solve may never have exported. `heard`: the receiver said
            // how the stream ended.
            let (solved, received, heard) = tokio::select! {
                solved = &mut solve => {
                    let grace = if solved.is_ok() { EXPORT_GRACE } else { STATUS_GRACE };
                    let received = tokio::time::timeout(grace, &mut ended).await.ok();
                    let heard = received.is_some();
                    (Some(solved.map(drop)), received.and_then(Result::ok), heard)
                }
                Ok(received) = &mut ended => {
                    let (solved, received) = match received {
                        // A stream cut because caulk was being stopped is
                        // that stop, not a broken transfer.
                        Err(e) => {
                            let stopped = follow.borrow_mut().stop();
                            let stopped = stopped.map(|reason| Err(Error::Stopped { addr: addr.clone(), reason }));
                            (stopped, Some(Err(e)))
                        }
                        Ok(()) => (Some(solve.await.map(drop)), Some(Ok(()))),
                    };
                    (solved, received, true)
                }
            };
            drop(session);
            // The receiving thread writes into the sink until it sees the
            // stream end, which closing the session brings about: its
            // caller may remove the sink's directory once this returns.
            if !heard && tokio::time::timeout(EXPORT_GRACE, ended).await.is_err() {
                tracing::warn!("the receiver of the result from {addr} did not stop within {EXPORT_GRACE:?}");
            }
            Ok::<_, Error>((solved, received))
        });
        tracker.finish(&mut |e| follow.borrow_mut().event(e));
        let (solved, received) = outcome.map_err(|e| self.explain(e))?;
        settle(&addr, solved, received).map_err(|e| self.explain(e))
    }
}

/// What an export reports: caulk being stopped first (the stream it cut
/// then ends early too), then a refused or broken result, then the solve's
/// own failure. `solved` is `None` when a refused result ended the solve.
fn settle(
    addr: &str,
    solved: Option<Result<()>>,
    received: Option<std::result::Result<(), crate::filesync::FsError>>,
) -> Result<()> {
    let filesync = |source| Error::Filesync { addr: addr.to_owned(), what: "receiving the result", source };
    match (solved, received) {
        (Some(Err(e @ Error::Stopped { .. })), _) => Err(e),
        (_, Some(Err(e))) => Err(filesync(e)),
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(())), Some(Ok(()))) => Ok(()),
        (Some(Ok(())), None) => Err(Error::Solve {
            addr: addr.to_owned(),
            message: "the daemon reported the export done but never sent the result".to_owned(),
        }),
        (None, _) => {
            Err(Error::Solve { addr: addr.to_owned(), message: "the solve ended with no answer".to_owned() })
        }
    }
}

/// How long a failed solve's export stream may take to say why.
const STATUS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after the solve's answer the export stream may take to end.
const EXPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn chain(graph: &mut Graph, base: &Base, steps: &[Step]) -> Output {
    let mut root = match &base.local {
        Some(local) => graph.local(&base.image, &local.session, &local.hint, base.platform.as_ref()),
        None => graph.image(&base.image, base.platform.as_ref()),
    };
    for step in steps {
        root = step_on(graph, base, &root, step, false);
    }
    root
}

/// `step` on `root`, in the base's platform, or in its tooling image (the
/// worker's platform) with `root` mounted: the changed `root` either way.
fn step_on(graph: &mut Graph, base: &Base, root: &Output, step: &Step, ignore_cache: bool) -> Output {
    let mut exec = exec_of(graph, step, ignore_cache);
    match &step.tooling {
        None => {
            exec.platform.clone_from(&base.platform);
            graph.exec(root, &exec)
        }
        Some(tooling) => {
            let tools = match &tooling.local {
                Some(local) => graph.local(&tooling.image, &local.session, &local.hint, None),
                None => graph.image(&tooling.image, None),
            };
            graph.exec_in(&Tooling { root: tools, mount_point: tooling.mount_point.clone() }, root, &exec)
        }
    }
}

fn exec_of(graph: &mut Graph, step: &Step, ignore_cache: bool) -> Exec {
    let files = step
        .ca_bundle
        .iter()
        .map(|ca| FileMount {
            source: graph.file(CA_FILE, &ca.pem, 0o644),
            selector: CA_FILE.into(),
            dest: ca.dest.clone(),
        })
        .collect();
    Exec {
        name: step.name.clone(),
        args: step.args.clone(),
        env: step.env.clone(),
        cwd: step.cwd.clone(),
        network: step.network,
        files,
        caches: step.caches.clone(),
        proxy_env: step.proxy_env.clone(),
        ignore_cache,
        ..Exec::default()
    }
}

fn entitlements<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Vec<String> {
    let host = steps.into_iter().any(|s| s.network == Network::Host);
    if host { vec!["network.host".to_owned()] } else { Vec::new() }
}

/// The exit code in a failed exec's error: BuildKit ends it with "exit
/// code: N" (v0.8's "executor failed running …" and later "process … did
/// not complete successfully" alike).
pub fn exit_code(error: &str) -> Option<i32> {
    let rest = error.rsplit("exit code: ").next().filter(|_| error.contains("exit code: "))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesync::FsError;

    #[test]
    fn exit_codes_are_read_from_both_message_forms() {
        assert_eq!(exit_code("executor failed running [/bin/sh -c exit 3]: exit code: 3"), Some(3));
        assert_eq!(exit_code("process \"/bin/false\" did not complete successfully: exit code: 1"), Some(1));
        assert_eq!(exit_code("failed to compute cache key: not found"), None);
        assert_eq!(exit_code("exit code: "), None);
    }

    #[test]
    fn a_stop_outranks_the_transfer_it_cut_short() {
        let stopped = || Error::Stopped { addr: "a".into(), reason: "caulk was interrupted".into() };
        let cut = || Some(Err(FsError::Closed("all asked-for data")));
        let settled = settle("a", Some(Err(stopped())), cut());
        assert!(matches!(settled, Err(Error::Stopped { .. })), "{settled:?}");
        let settled = settle("a", None, cut());
        assert!(matches!(settled, Err(Error::Filesync { .. })), "a refused result: {settled:?}");
        let failed = Error::Solve { addr: "a".into(), message: "exit code: 1".into() };
        let settled = settle("a", Some(Err(failed)), cut());
        assert!(matches!(settled, Err(Error::Filesync { .. })), "the transfer says why: {settled:?}");
        let settled = settle("a", Some(Ok(())), None);
        assert!(matches!(settled, Err(Error::Solve { .. })), "{settled:?}");
        settle("a", Some(Ok(())), Some(Ok(()))).unwrap();
    }

    #[test]
    fn only_network_steps_ask_for_the_host_network() {
        let quiet = Step::default();
        let online = Step { network: Network::Host, ..Step::default() };
        assert!(entitlements([&quiet]).is_empty());
        assert_eq!(entitlements([&quiet, &online]), ["network.host"]);
    }
}
