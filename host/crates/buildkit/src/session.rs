//! A client session for Docker's embedded BuildKit, so the daemon can ask
//! caulk for registry credentials while it pulls. The session is a second
//! connection: `POST /session` upgraded to h2c, on which the daemon is the
//! gRPC client and caulk answers `moby.filesync.v1.Auth/Credentials` and
//! the health checks that keep the session open.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

const CREDENTIALS: &str = "/moby.filesync.v1.Auth/Credentials";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

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

/// An open session; dropping it closes it.
pub(crate) struct Session {
    pub(crate) id: String,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a session on the Engine at `socket` that answers with `credentials`.
pub(crate) async fn attach(socket: &Path, id: String, credentials: Credentials) -> io::Result<Session> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
    tokio::spawn(async move {
        // Ends when the upgraded stream is handed over.
        let _ = conn.with_upgrades().await;
    });
    let request = Request::post("/session")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "caulk")
        .header("X-Docker-Expose-Session-Sharedkey", "")
        .header("X-Docker-Expose-Session-Grpc-Method", CREDENTIALS)
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let response = sender.send_request(request).await.map_err(io::Error::other)?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(io::Error::other(format!("POST /session answered {}", response.status())));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(io::Error::other)?;
    let task = tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request| answer(request, credentials.clone()));
        // Ends when the daemon closes the session or the task is aborted.
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(upgraded, service)
            .await;
    });
    Ok(Session { id, task })
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>, credentials: Credentials) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
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
            let (username, secret) = (credentials.0)(&request.host).unwrap_or_default();
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
    fn only_whole_uncompressed_messages_are_read() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 7, 8]), Some(&[7, 8][..]));
        assert_eq!(unframe(&[0, 0, 0, 0, 0]), Some(&[][..]));
        assert_eq!(unframe(&[1, 0, 0, 0, 2, 7, 8]), None, "compressed");
        assert_eq!(unframe(&[0, 0, 0, 0, 3, 7, 8]), None, "short");
        assert_eq!(unframe(&[0, 0, 0, 0, 1, 7, 8]), None, "two messages or trailing bytes");
        assert_eq!(unframe(&[0, 0, 0]), None);
    }
}
