//! A client session, so the daemon can ask caulk for registry credentials
//! while it pulls. The session is an HTTP/2 connection tunnelled through a
//! `Control.Session` stream of byte chunks, on which the daemon is the gRPC
//! client and caulk answers `moby.filesync.v1.Auth/Credentials` and the
//! health checks that keep the session open. The same call works for a
//! buildkitd and for Docker's embedded BuildKit.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::pb::control::BytesMessage;

const CREDENTIALS: &str = "/moby.filesync.v1.Auth/Credentials";
const HEALTH: &str = "/grpc.health.v1.Health/Check";
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
/// `credentials`. Returns once the daemon has taken the call.
pub(crate) async fn attach(
    mut grpc: tonic::client::Grpc<tonic::transport::Channel>,
    id: String,
    credentials: Credentials,
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
        ("x-docker-expose-session-sharedkey", ""),
        ("x-docker-expose-session-grpc-method", CREDENTIALS),
    ] {
        let value =
            value.parse().map_err(|_| tonic::Status::internal(format!("bad session header {key}")))?;
        meta.insert(key, value);
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
        let service = hyper::service::service_fn(move |request| answer(request, credentials.clone()));
        // Ends when the daemon closes the session or the task is aborted.
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(near), service)
            .await;
    });
    Ok(Session { id, tasks: [pump, server] })
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
