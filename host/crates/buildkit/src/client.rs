//! A minimal gRPC client for BuildKit's Control service: tonic's generic
//! `Grpc` with prost codecs over caulk's own connector, no generated stubs.
//!
//! The API is synchronous like the rest of caulk: each client owns a small
//! tokio runtime and blocks on it. Do not call it from inside another tokio
//! runtime's worker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use crate::addr::Address;
use crate::connect::{ConnectOptions, Dialer};
use crate::error::{Error, Result};
use crate::filesync::{FsError, Sink, Tree};
use crate::pb::control::{
    BuildkitVersion, InfoRequest, InfoResponse, ListWorkersRequest, ListWorkersResponse, SolveRequest,
    SolveResponse, StatusRequest, StatusResponse, WorkerRecord,
};
use crate::progress::STOP_POLL;
use crate::session::{self, Export, Offer, Session};

const SERVICE: &str = "/moby.buildkit.v1.Control/";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
// Status messages carry whole log chunks; BuildKit's own limit is 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;
const STATUS_GRACE: Duration = Duration::from_secs(5);

pub struct Client {
    addr: Address,
    dialer: Dialer,
    offer: Arc<Offer>,
    /// One session for the client's life, opened at the first solve: a
    /// `local://` source's cache key names its session, so steps cached in
    /// one solve are found by the next.
    session: tokio::sync::Mutex<Option<Session>>,
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr.to_string()).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects now, so an unreachable daemon is reported here, naming the
    /// address tried.
    pub fn connect(addr: &Address, options: &ConnectOptions) -> Result<Self> {
        let dialer = Dialer::new(addr, options)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("caulk-buildkit")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the BuildKit client's runtime", e))?;
        let unreachable = |source: Box<dyn std::error::Error + Send + Sync>| {
            explain(&dialer, Error::Unreachable { addr: addr.to_string(), source })
        };
        let for_connector = dialer.clone();
        let channel = runtime.block_on(async {
            let connector = tower::service_fn(move |_: http::Uri| {
                let dialer = for_connector.clone();
                async move { dialer.dial().await.map(TokioIo::new) }
            });
            // The URI only fills :authority; the connector decides where to go.
            let endpoint = Endpoint::from_static("http://buildkit").connect_timeout(CONNECT_TIMEOUT);
            tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector)).await
        });
        let channel = match channel {
            Err(_) => return Err(unreachable("no answer within 20 s".into())),
            Ok(Err(e)) => return Err(unreachable(root_cause(&e))),
            Ok(Ok(channel)) => channel,
        };
        let offer = Arc::new(Offer::new(addr.to_string(), options.credentials.clone()));
        Ok(Client {
            addr: addr.clone(),
            dialer,
            offer,
            session: tokio::sync::Mutex::new(None),
            runtime,
            channel,
        })
    }

    pub fn address(&self) -> &Address {
        &self.addr
    }

    /// The daemon's workers; Docker's embedded BuildKit has one, `moby`.
    pub fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        let response: ListWorkersResponse = self
            .runtime
            .block_on(self.unary("ListWorkers", ListWorkersRequest::default()))
            .map_err(|e| explain(&self.dialer, e))?;
        Ok(response.record)
    }

    /// The daemon's BuildKit version, or `None` when the daemon predates
    /// `Control.Info` (v0.8, as in Debian's dockerd): old daemons are
    /// recognised by the call being unimplemented, not refused.
    pub fn info(&self) -> Result<Option<BuildkitVersion>> {
        match self.runtime.block_on(self.unary::<_, InfoResponse>("Info", InfoRequest {})) {
            Ok(info) => Ok(info.buildkit_version),
            Err(Error::DaemonTooOld { .. }) => Ok(None),
            Err(e) => Err(explain(&self.dialer, e)),
        }
    }

    /// Runs one solve while following its status stream. `on_status` sees
    /// every status message as it arrives; the request's `ref` is set here.
    /// `stop` is asked every [`STOP_POLL`]: `Some(why)` drops the call,
    /// and so cancels the build on the daemon, and returns
    /// [`Error::Stopped`].
    pub fn solve(
        &self,
        request: SolveRequest,
        on_status: &mut dyn FnMut(&StatusResponse),
        stop: &mut dyn FnMut() -> Option<String>,
    ) -> Result<SolveResponse> {
        self.block_on(self.solve_async(request, on_status, stop)).map_err(|e| self.explain(e))
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub(crate) fn explain(&self, err: Error) -> Error {
        explain(&self.dialer, err)
    }

    pub(crate) async fn solve_async(
        &self,
        request: SolveRequest,
        on_status: &mut dyn FnMut(&StatusResponse),
        stop: &mut dyn FnMut() -> Option<String>,
    ) -> Result<SolveResponse> {
        let solve = self.follow_solve(request, on_status);
        let stopped = async {
            loop {
                tokio::time::sleep(STOP_POLL).await;
                if let Some(reason) = stop() {
                    return reason;
                }
            }
        };
        // Dropping the solve future resets its HTTP/2 streams (Solve,
        // Status, the session's): the daemon's handler sees its context
        // cancelled and tears the build down, killing the running step.
        tokio::select! {
            solved = solve => solved,
            reason = stopped => Err(Error::Stopped { addr: self.addr.to_string(), reason }),
        }
    }

    async fn follow_solve(
        &self,
        mut request: SolveRequest,
        on_status: &mut dyn FnMut(&StatusResponse),
    ) -> Result<SolveResponse> {
        request.r#ref = new_ref();
        if request.session.is_empty() {
            request.session = self.session_id().await?;
        }
        let status_request = StatusRequest { r#ref: request.r#ref.clone() };
        let solve = self.unary::<_, SolveResponse>("Solve", request);
        let status = async {
            let mut stream = self.streaming::<_, StatusResponse>("Status", status_request).await?;
            while let Some(message) = stream.message().await.map_err(|s| self.status_error("Status", &s))? {
                on_status(&message);
            }
            Ok::<_, Error>(())
        };
        tokio::pin!(solve, status);
        let mut followed = None;
        let solved = tokio::select! {
            solved = &mut solve => solved,
            ended = &mut status => {
                followed = Some(ended);
                solve.await
            }
        };
        // The stream ends with the job; a daemon that never closes it must
        // not hold a finished solve.
        if followed.is_none() {
            followed = tokio::time::timeout(STATUS_GRACE, status).await.ok();
        }
        let response = solved.map_err(|e| match e {
            Error::Rpc { message, .. } => Error::Solve { addr: self.addr.to_string(), message },
            other => other,
        })?;
        // A status stream that broke after a successful solve lost only
        // progress lines; the result stands.
        match followed {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!("BuildKit status stream ended early: {e}"),
            None => tracing::warn!("BuildKit status stream still open {STATUS_GRACE:?} after the solve"),
        }
        Ok(response)
    }

    /// The session's id, opening it on first use.
    async fn session_id(&self) -> Result<String> {
        let mut session = self.session.lock().await;
        if let Some(open) = session.as_ref() {
            return Ok(open.id.clone());
        }
        let opened = session::attach(self.grpc(), new_ref(), Arc::clone(&self.offer))
            .await
            .map_err(|s| self.status_error("Session", &s))?;
        let id = opened.id.clone();
        *session = Some(opened);
        Ok(id)
    }

    /// Offers `tree` to the daemon as the `local://` source `name` and
    /// returns the session id the source op must name.
    pub fn share(&self, name: &str, tree: Arc<dyn Tree>) -> Result<String> {
        self.offer
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), tree);
        self.block_on(self.session_id()).map_err(|e| self.explain(e))
    }

    /// A session of its own for one `local` export, whose stream goes to
    /// `sink`: the exporter names no destination, so concurrent exports
    /// are told apart by their sessions. The receiver waits for its end.
    pub(crate) async fn export_session(
        &self,
        sink: Box<dyn Sink>,
    ) -> Result<(Session, oneshot::Receiver<Result<(), FsError>>)> {
        let (done, ended) = oneshot::channel();
        let offer = self.offer.sibling();
        *offer.export.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Export { sink, done });
        let session = session::attach(self.grpc(), new_ref(), Arc::new(offer))
            .await
            .map_err(|s| self.status_error("Session", &s))?;
        Ok((session, ended))
    }

    async fn unary<Req, Resp>(&self, method: &'static str, request: Req) -> Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        grpc.ready().await.map_err(|e| self.unreachable(&e))?;
        grpc.unary(tonic::Request::new(request), path(method), ProstCodec::<Req, Resp>::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status_error(method, &s))
    }

    async fn streaming<Req, Resp>(&self, method: &'static str, request: Req) -> Result<tonic::Streaming<Resp>>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        grpc.ready().await.map_err(|e| self.unreachable(&e))?;
        grpc.server_streaming(tonic::Request::new(request), path(method), ProstCodec::<Req, Resp>::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status_error(method, &s))
    }

    fn grpc(&self) -> Grpc<Channel> {
        Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> Error {
        Error::Unreachable { addr: self.addr.to_string(), source: root_cause(e) }
    }

    fn status_error(&self, call: &'static str, status: &tonic::Status) -> Error {
        classify(&self.addr, call, status)
    }
}

/// Adds what the connection's helper command said to an unreachable error.
fn explain(dialer: &Dialer, err: Error) -> Error {
    match err {
        Error::Unreachable { addr, source } => {
            let said = dialer.stderr();
            let source =
                if said.is_empty() { source } else { format!("{source}; docker said: {said}").into() };
            Error::Unreachable { addr, source }
        }
        other => other,
    }
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("{SERVICE}{method}")).expect("method names are static ASCII")
}

/// Turns a gRPC status into the error the user can act on.
pub(crate) fn classify(addr: &Address, call: &'static str, status: &tonic::Status) -> Error {
    let addr = addr.to_string();
    let message = status.message().to_owned();
    if status.code() == tonic::Code::Unimplemented {
        return Error::DaemonTooOld { addr, feature: format!("the Control.{call} call") };
    }
    if let Some(entitlement) = refused_entitlement(&message) {
        return Error::EntitlementRefused { addr, entitlement };
    }
    if let Some(feature) = missing_capability(&message) {
        return Error::DaemonTooOld { addr, feature: format!("the LLB capability {feature}") };
    }
    // A connection that breaks under a call (a TLS alert, a daemon that
    // went away) arrives as a status carrying the transport error.
    if let Some(source) = std::error::Error::source(status) {
        return Error::Unreachable { addr, source: root_cause(source) };
    }
    if status.code() == tonic::Code::Unavailable {
        return Error::Unreachable { addr, source: message.into() };
    }
    Error::Rpc { addr, call, code: format!("{:?}", status.code()), message }
}

const ENTITLEMENTS: [&str; 3] = ["network.host", "security.insecure", "device"];

/// BuildKit says "granting entitlement X is not allowed by build daemon
/// configuration" for an entitlement it will not grant, and "X is not
/// allowed" for an op that needs one the request lacks.
fn refused_entitlement(message: &str) -> Option<String> {
    if !message.contains("is not allowed") {
        return None;
    }
    if let Some(rest) = message.split("granting entitlement ").nth(1) {
        return rest.split_whitespace().next().map(str::to_owned);
    }
    ENTITLEMENTS.iter().find(|e| message.contains(&format!("{e} is not allowed"))).map(|e| (*e).to_owned())
}

/// "unknown API capability X" (a cap the daemon has never heard of) and
/// "requested feature X ... is not supported by build server".
fn missing_capability(message: &str) -> Option<String> {
    if let Some(rest) = message.split("unknown API capability ").nth(1) {
        return rest.split_whitespace().next().map(str::to_owned);
    }
    if message.contains("not supported by build server") {
        let rest = message.split("feature ").nth(1)?;
        return rest.split_whitespace().next().map(str::to_owned);
    }
    None
}

/// The innermost error's text: tonic wraps a connector's io error in two
/// layers whose own messages say only "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> Box<dyn std::error::Error + Send + Sync> {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string().into()
}

/// A solve's job reference: unique per process and call, so concurrent
/// caulk runs against one daemon never follow each other's status.
fn new_ref() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("caulk-{}-{nanos:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address::parse("unix:///x").unwrap()
    }

    #[test]
    fn entitlement_refusals_name_the_entitlement() {
        let granting = tonic::Status::unknown(
            "failed to solve: granting entitlement security.insecure is not allowed by build daemon configuration",
        );
        let err = classify(&addr(), "Solve", &granting);
        assert!(
            matches!(&err, Error::EntitlementRefused { entitlement, .. } if entitlement == "security.insecure"),
            "{err:?}"
        );
        let op = tonic::Status::unknown("network.host is not allowed");
        let err = classify(&addr(), "Solve", &op);
        assert!(
            matches!(&err, Error::EntitlementRefused { entitlement, .. } if entitlement == "network.host")
        );
    }

    #[test]
    fn unimplemented_calls_and_unknown_caps_mean_an_old_daemon() {
        let err = classify(&addr(), "Info", &tonic::Status::unimplemented("unknown method Info"));
        assert!(matches!(&err, Error::DaemonTooOld { feature, .. } if feature.contains("Control.Info")));
        let cap = tonic::Status::unknown("unknown API capability exec.mount.cache.sharing");
        let err = classify(&addr(), "Solve", &cap);
        assert!(
            matches!(&err, Error::DaemonTooOld { feature, .. } if feature.ends_with("exec.mount.cache.sharing")),
            "{err:?}"
        );
    }

    #[test]
    fn other_failures_keep_the_daemons_message() {
        let err = classify(&addr(), "Solve", &tonic::Status::unknown("exit code: 3"));
        assert!(matches!(&err, Error::Rpc { message, .. } if message == "exit code: 3"));
    }
}
