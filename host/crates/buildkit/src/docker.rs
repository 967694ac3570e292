//! The Docker Engine call the `moby` exporter's results need beyond
//! caulk-image's `docker-daemon:` transport (which reads and loads images):
//! removing a result once it has been read. HTTP/1.1 over the Engine's unix
//! socket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::addr::Address;
use crate::error::{Error, Result};

pub struct DockerApi {
    socket: PathBuf,
    addr: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for DockerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerApi").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl DockerApi {
    /// The Engine behind a `docker://` or `docker-unix://` address; other
    /// forms have no image store to read results from.
    pub fn for_address(addr: &Address, what: &'static str) -> Result<Self> {
        let socket = addr.docker_socket().ok_or_else(|| Error::NotDocker { addr: addr.to_string(), what })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the Docker API client's runtime", e))?;
        Ok(DockerApi { socket: socket.to_owned(), addr: addr.to_string(), runtime })
    }

    /// `docker rmi NAME`; a missing image is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        check_name(name, &self.addr)?;
        let uri = format!("/images/{name}");
        self.runtime.block_on(async {
            match self.request(hyper::Method::DELETE, &uri).await {
                Ok(_) => Ok(()),
                Err(Error::Docker { message, .. }) if message.starts_with("404") => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    async fn request(&self, method: hyper::Method, uri: &str) -> Result<hyper::body::Incoming> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::Unreachable { addr: self.addr.clone(), source: Box::new(e) })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.failed(uri, &e.to_string()))?;
        tokio::spawn(async move {
            // The response body reports the connection's failure, if any.
            let _ = conn.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.failed(uri, &e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| self.failed(uri, &e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let text =
            response.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).trim().to_owned());
        Err(self.failed(uri, &format!("{} {message}", status.as_u16())))
    }

    fn failed(&self, request: &str, message: &str) -> Error {
        Error::Docker { addr: self.addr.clone(), request: request.to_owned(), message: message.to_owned() }
    }
}

/// Names go into a URL unescaped, so only reference characters pass.
fn check_name(name: &str, addr: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Docker {
            addr: addr.to_owned(),
            request: "image name".into(),
            message: format!("{name:?} is not a plain image reference"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_references_reach_a_url() {
        for good in ["caulk/x:1", "example.com:5000/a/b@sha256:ab", "sha256:0123"] {
            check_name(good, "a").unwrap();
        }
        for bad in ["", "x?y", "a b", "../x", "-x", "x#y", "x%2f"] {
            assert!(check_name(bad, "a").is_err(), "{bad}");
        }
    }
}
