//! A client session: an HTTP/2 connection tunnelled through a
//! `Control.Session` stream of byte chunks, on which the daemon is the gRPC
//! client. caulk answers `moby.filesync.v1.Auth/Credentials` (registry
//! logins while the daemon pulls), `FileSync/DiffCopy` (the trees caulk
//! shares as `local://` sources), `FileSend/DiffCopy` (the `local`
//! exporter's result) and the health checks that keep the session open.
//! The same call works for a buildkitd and for Docker's embedded BuildKit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::filesync::{self, Conn, FsError, Sink, Tree};
use crate::pb::control::BytesMessage;
use crate::pb::fsutil::Packet;

const CREDENTIALS: &str = "/moby.filesync.v1.Auth/Credentials";
const HEALTH: &str = "/grpc.health.v1.Health/Check";
/// The daemon pulls a `local://` source's tree from here.
const FILE_SYNC: &str = "/moby.filesync.v1.FileSync/DiffCopy";
/// The `local` exporter pushes the result here.
const FILE_SEND: &str = "/moby.filesync.v1.FileSend/DiffCopy";
/// The session's HTTP/2 receive window.
const WINDOW: u32 = 64 << 20;
/// The largest gRPC message caulk takes from the daemon.
const MAX_MESSAGE: usize = 4 << 20;
/// Part of the key the daemon keeps a `local://` source's copy under, so a
/// later run (another session) sends only what changed.
const SHARED_KEY: &str = "caulk";
/// The most bytes of a DiffCopy stream's messages waiting for the thread
/// that runs the protocol: past it caulk stops reading and HTTP/2 flow
/// control holds the daemon back. Room for a few largest messages.
const QUEUED: u32 = 64 << 20;
/// What a queued message costs besides its bytes, so empty ones count.
const MESSAGE_COST: u32 = 64;
/// The most bytes one BytesMessage carries.
const CHUNK: usize = 32 * 1024;

type Lookup = dyn Fn(&str) -> Option<(String, String)> + Send + Sync;

/// Registry credentials BuildKit may ask for: given a registry host (as
/// `registry.example.com` or `127.0.0.1:5000`), a user name and secret, or
/// `None` for an anonymous pull.
#[derive(Clone)]
pub struct Credentials(Arc<Lookup>);

impl Credentials {
    pub fn new(lookup: impl Fn(&str) -> Option<(String, String)> + Send + Sync + 'static) -> Self {
        Credentials(Arc::new(lookup))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
struct CredentialsRequest {
    #[prost(string, tag = "1")]
    host: String,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
struct CredentialsResponse {
    #[prost(string, tag = "1")]
    username: String,
    #[prost(string, tag = "2")]
    secret: String,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
struct HealthCheckResponse {
    /// 1 is SERVING.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// What a session offers the daemon.
pub(crate) struct Offer {
    /// The daemon's address, for errors.
    pub(crate) addr: String,
    pub(crate) credentials: Option<Credentials>,
    /// Trees by the `local://` name they are shared as; one map for all
    /// of a client's sessions, since a daemon pulls a `local://` source
    /// from any session of the job that needs it.
    pub(crate) trees: Arc<Mutex<HashMap<String, Arc<dyn Tree>>>>,
    /// Where the next `local` export goes, and who waits for its end.
    pub(crate) export: Mutex<Option<Export>>,
}

pub(crate) struct Export {
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) done: oneshot::Sender<Result<(), FsError>>,
}

impl Offer {
    pub(crate) fn new(addr: String, credentials: Option<Credentials>) -> Self {
        Offer { addr, credentials, trees: Arc::default(), export: Mutex::default() }
    }

    /// Another session's offer: the same trees and logins, no export.
    pub(crate) fn sibling(&self) -> Self {
        Offer {
            addr: self.addr.clone(),
            credentials: self.credentials.clone(),
            trees: Arc::clone(&self.trees),
            export: Mutex::default(),
        }
    }
}

/// An open session; dropping it closes it.
pub(crate) struct Session {
    pub(crate) id: String,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens a session through `Control.Session` on `grpc`, answering with
/// what `offer` holds. Returns once the daemon has taken the call.
pub(crate) async fn attach(
    mut grpc: tonic::client::Grpc<tonic::transport::Channel>,
    id: String,
    offer: Arc<Offer>,
) -> Result<Session, tonic::Status> {
    // `near` carries caulk's HTTP/2 server; `far` is shuttled to and from
    // the daemon as BytesMessages.
    let (near, far) = tokio::io::duplex(CHUNK * 4);
    let (far_read, mut far_write) = tokio::io::split(far);
    let outgoing = futures_util::stream::unfold(far_read, |mut from| async move {
        let mut data = vec![0; CHUNK];
        match from.read(&mut data).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                data.truncate(n);
                Some((BytesMessage { data }, from))
            }
        }
    });
    let mut request = tonic::Request::new(outgoing);
    let meta = request.metadata_mut();
    for (key, value) in [
        ("x-docker-expose-session-uuid", id.as_str()),
        ("x-docker-expose-session-name", "caulk"),
        ("x-docker-expose-session-sharedkey", SHARED_KEY),
        ("x-docker-expose-session-grpc-method", CREDENTIALS),
        ("x-docker-expose-session-grpc-method", HEALTH),
        ("x-docker-expose-session-grpc-method", FILE_SYNC),
        ("x-docker-expose-session-grpc-method", FILE_SEND),
    ] {
        let value =
            value.parse().map_err(|_| tonic::Status::internal(format!("bad session header {key}")))?;
        meta.append(key, value);
    }
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/moby.buildkit.v1.Control/Session");
    let mut incoming = grpc
        .streaming(request, path, tonic_prost::ProstCodec::<BytesMessage, BytesMessage>::default())
        .await?
        .into_inner();
    let pump = tokio::spawn(async move {
        while let Ok(Some(message)) = incoming.message().await {
            if far_write.write_all(&message.data).await.is_err() {
                break;
            }
        }
        let _ = far_write.shutdown().await;
    });
    let server = tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request| answer(request, Arc::clone(&offer)));
        // Ends when the daemon closes the session or the task is aborted.
        // h2 closes a connection whose unread small DATA frames (a STAT
        // each, thousands per tree) exceed half its window: a wide window
        // keeps a burst of them from ending the session.
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .initial_connection_window_size(WINDOW)
            .initial_stream_window_size(WINDOW / 4)
            .serve_connection(TokioIo::new(near), service)
            .await;
    });
    Ok(Session { id, tasks: [pump, server] })
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>, offer: Arc<Offer>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    // grpc-go matches methods as sent; BuildKit asks whether a session
    // offers one case-insensitively.
    if path.eq_ignore_ascii_case(FILE_SYNC) || path.eq_ignore_ascii_case(FILE_SEND) {
        return Ok(diff_copy(request, &offer, path.eq_ignore_ascii_case(FILE_SEND)));
    }
    let Ok(body) = request.into_body().collect().await else {
        return Ok(status(13, "the request body broke off"));
    };
    let body = body.to_bytes();
    let Some(message) = unframe(&body) else {
        return Ok(status(3, "not one uncompressed gRPC message"));
    };
    let reply = match path.as_str() {
        HEALTH => HealthCheckResponse { status: 1 }.encode_to_vec(),
        CREDENTIALS => {
            let Ok(request) = CredentialsRequest::decode(message) else {
                return Ok(status(3, "bad CredentialsRequest"));
            };
            let (username, secret) =
                offer.credentials.as_ref().and_then(|c| (c.0)(&request.host)).unwrap_or_default();
            CredentialsResponse { username, secret }.encode_to_vec()
        }
        _ => return Ok(status(12, "caulk's session does not offer this method")),
    };
    let mut framed = Vec::with_capacity(reply.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(reply.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&reply);
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let frames =
        futures_util::stream::iter([Ok(Frame::data(Bytes::from(framed))), Ok(Frame::trailers(trailers))]);
    Ok(grpc_response(BoxBody::new(StreamBody::new(frames))))
}

/// What one DiffCopy stream does.
enum Job {
    Send(Arc<dyn Tree>),
    Receive(Export),
}

/// A DiffCopy stream: the protocol runs on a blocking thread fed by the
/// request body's messages, its packets going out as the response body.
fn diff_copy(request: Request<Incoming>, offer: &Offer, receive: bool) -> Response<Body> {
    let job = if receive {
        match offer.export.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(export) => Job::Receive(export),
            None => return status(9, "caulk expects no result now"),
        }
    } else {
        let name = request.headers().get("dir-name").and_then(|v| v.to_str().ok()).unwrap_or_default();
        match offer.trees.lock().unwrap_or_else(PoisonError::into_inner).get(name) {
            Some(tree) => Job::Send(Arc::clone(tree)),
            None => return status(5, "caulk shares no such directory"),
        }
    };
    // Read eagerly: the daemon sends a REQ per wanted file while caulk is
    // busy sending data, and h2 ends a connection that leaves many small
    // DATA frames unread. Eagerly, not without bound: a result's data
    // arrives faster than a disk takes it.
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    // Sending a tree, the data caulk reads waits for the daemon to take
    // it. Receiving, what caulk sends (a REQ per wanted file, a few bytes
    // each) must never wait: the thread that sends them is the one that
    // drains the incoming queue, and the daemon stops reading REQs while
    // its data waits in that queue, so a bounded channel could stall both.
    let (out_tx, out_rx) = out_channel(matches!(job, Job::Receive(_)));
    tokio::spawn(read_messages(request.into_body(), in_tx, Arc::new(Semaphore::new(QUEUED as usize))));
    let addr = offer.addr.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = Channels { rx: in_rx, tx: out_tx.clone() };
        let result = match job {
            Job::Send(tree) => filesync::send(tree.as_ref(), &mut conn).map(|sent| {
                // What a probe after the first sync costs: stats only.
                tracing::debug!(
                    "sent a tree to {addr}: {} entries, {} files asked for, {} bytes",
                    sent.entries,
                    sent.files,
                    sent.bytes
                );
            }),
            Job::Receive(mut export) => {
                let result = filesync::receive(export.sink.as_mut(), &mut conn);
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = export.done.send(result);
                failed.map_or(Ok(()), |e| Err(FsError::Local(e)))
            }
        };
        let mut trailers = hyper::HeaderMap::new();
        match result {
            Ok(()) => {
                trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            }
            Err(e) => {
                tracing::debug!("filesync with {addr}: {e}");
                trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("2"));
                let message = e.to_string().replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " ");
                if let Ok(value) = hyper::header::HeaderValue::from_str(&message) {
                    trailers.insert("grpc-message", value);
                }
            }
        }
        let _ = out_tx.send(Frame::trailers(trailers));
    });
    let frames = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    grpc_response(BoxBody::new(StreamBody::new(frames)))
}

/// A message with its share of the queue's byte budget, given back when
/// the message is dropped.
type Queued = (Vec<u8>, OwnedSemaphorePermit);

/// Splits a request body into gRPC messages; stops (closing `to`) at the
/// body's end, a broken body or a message caulk will not take. Each
/// message waits for its bytes of `budget` before it is queued.
async fn read_messages<B>(mut body: B, to: mpsc::UnboundedSender<Queued>, budget: Arc<Semaphore>)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(header) = buf.get(..5) {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if header[0] != 0 || len > MAX_MESSAGE {
                return;
            }
            if buf.len() < 5 + len {
                break;
            }
            let message = buf[5..5 + len].to_vec();
            buf.drain(..5 + len);
            // MAX_MESSAGE keeps the cost far below QUEUED.
            let cost = u32::try_from(len).unwrap_or(u32::MAX).saturating_add(MESSAGE_COST);
            let Ok(permit) = Arc::clone(&budget).acquire_many_owned(cost).await else { return };
            if to.send((message, permit)).is_err() {
                return;
            }
        }
    }
}

/// Where a DiffCopy handler's outgoing frames go.
#[derive(Clone)]
enum Out {
    Bounded(mpsc::Sender<Frame<Bytes>>),
    Unbounded(mpsc::UnboundedSender<Frame<Bytes>>),
}

impl Out {
    /// Queues `frame` from a blocking thread; false once the response is gone.
    fn send(&self, frame: Frame<Bytes>) -> bool {
        match self {
            Out::Bounded(tx) => tx.blocking_send(frame).is_ok(),
            Out::Unbounded(tx) => tx.send(frame).is_ok(),
        }
    }
}

/// The channel of a DiffCopy handler's outgoing frames: unbounded when
/// caulk receives (see `diff_copy`), bounded when it sends data.
fn out_channel(receiving: bool) -> (Out, OutRx) {
    if receiving {
        let (tx, rx) = mpsc::unbounded_channel::<Frame<Bytes>>();
        (Out::Unbounded(tx), OutRx::Unbounded(rx))
    } else {
        let (tx, rx) = mpsc::channel::<Frame<Bytes>>(64);
        (Out::Bounded(tx), OutRx::Bounded(rx))
    }
}

/// The response body's end of [`Out`].
enum OutRx {
    Bounded(mpsc::Receiver<Frame<Bytes>>),
    Unbounded(mpsc::UnboundedReceiver<Frame<Bytes>>),
}

impl OutRx {
    async fn recv(&mut self) -> Option<Frame<Bytes>> {
        match self {
            OutRx::Bounded(rx) => rx.recv().await,
            OutRx::Unbounded(rx) => rx.recv().await,
        }
    }
}

/// A DiffCopy stream as the blocking protocol code sees it.
struct Channels {
    rx: mpsc::UnboundedReceiver<Queued>,
    tx: Out,
}

impl Conn for Channels {
    fn recv(&mut self) -> Result<Option<Packet>, FsError> {
        let Some((message, _permit)) = self.rx.blocking_recv() else { return Ok(None) };
        Packet::decode(message.as_slice())
            .map(Some)
            .map_err(|e| FsError::BadStat { path: String::new(), what: format!("undecodable packet: {e}") })
    }

    fn send(&mut self, packet: Packet) -> Result<(), FsError> {
        let body = packet.encode_to_vec();
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        framed.extend_from_slice(&body);
        if self.tx.send(Frame::data(Bytes::from(framed))) {
            Ok(())
        } else {
            Err(FsError::Closed("caulk's last packet"))
        }
    }
}

/// The one message of a unary gRPC request: a zero flag (no compression),
/// a big-endian length, and exactly that many bytes.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (header, rest) = body.split_at_checked(5)?;
    let len = u32::from_be_bytes(header[1..5].try_into().ok()?);
    (header[0] == 0 && usize::try_from(len).ok()? == rest.len()).then_some(rest)
}

/// A trailers-only gRPC error answer.
fn status(code: u16, message: &'static str) -> Response<Body> {
    let mut response = grpc_response(BoxBody::new(Empty::new().map_err(|never| match never {})));
    let headers = response.headers_mut();
    headers.insert("grpc-status", hyper::header::HeaderValue::from(code));
    headers.insert("grpc-message", hyper::header::HeaderValue::from_static(message));
    response
}

fn grpc_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/grpc"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_never_waits_to_send_and_sending_waits_for_the_daemon() {
        // Receiving: far more REQs than any bound, with nobody reading the
        // response yet, all go out without blocking the draining thread.
        let (tx, mut rx) = out_channel(true);
        for _ in 0..100_000 {
            assert!(tx.send(Frame::data(Bytes::from_static(b"req"))));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(runtime.block_on(rx.recv()).is_some());
        // Sending data: the bounded channel pushes back once full.
        let (Out::Bounded(tx), _rx) = out_channel(false) else { panic!("sending is bounded") };
        let mut queued = 0;
        while tx.try_send(Frame::data(Bytes::from_static(b"data"))).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 64);
    }

    fn framed(payload: &[u8]) -> Bytes {
        let mut out = vec![0, 0, 0, 0, u8::try_from(payload.len()).unwrap()];
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    #[tokio::test]
    async fn queued_messages_wait_for_their_share_of_the_byte_budget() {
        let frames = [framed(&[1; 100]), framed(&[2; 100]), framed(&[3; 100])]
            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Room for two messages of 100 bytes, not three.
        let budget = Arc::new(Semaphore::new(2 * (100 + MESSAGE_COST as usize)));
        let reader = tokio::spawn(read_messages(body, tx, Arc::clone(&budget)));
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "the third waits");
        assert_eq!((first.0[0], second.0[0]), (1, 2));
        drop(first);
        let third = rx.recv().await.unwrap();
        assert_eq!(third.0, [3; 100]);
        drop((second, third));
        reader.await.unwrap();
        assert!(rx.recv().await.is_none(), "the body's end closes the queue");
    }

    #[test]
    fn only_whole_uncompressed_messages_are_read() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 7, 8]), Some(&[7, 8][..]));
        assert_eq!(unframe(&[0, 0, 0, 0, 0]), Some(&[][..]));
        assert_eq!(unframe(&[1, 0, 0, 0, 2, 7, 8]), None, "compressed");
        assert_eq!(unframe(&[0, 0, 0, 0, 3, 7, 8]), None, "short");
        assert_eq!(unframe(&[0, 0, 0, 0, 1, 7, 8]), None, "two messages or trailing bytes");
        assert_eq!(unframe(&[0, 0, 0]), None);
    }
}
