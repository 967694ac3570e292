//! The few Docker Engine API calls the `moby` exporter's results need:
//! save an image to a file, load one, remove one. HTTP/1.1 over the
//! Engine's unix socket, one connection per call.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio_util::io::ReaderStream;

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::saved::SavedImage;

type Body = BoxBody<Bytes, std::io::Error>;

fn empty() -> Body {
    BoxBody::new(Empty::new().map_err(|never| match never {}))
}

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

    /// `docker save NAME` into `dest`: the Engine's archive, with every
    /// layer as a tar of its own (recompressed or not, diff_ids kept).
    pub fn save(&self, name: &str, dest: &Path) -> Result<()> {
        check_name(name, &self.addr)?;
        let mut file =
            std::fs::File::create(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let uri = format!("/images/get?names={name}");
        self.runtime.block_on(async {
            let mut body = self.request(hyper::Method::GET, &uri, empty()).await?;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.failed(&uri, &e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    file.write_all(data).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
                }
            }
            Ok::<_, Error>(())
        })?;
        file.sync_all().map_err(|e| Error::io(format!("writing {}", dest.display()), e))
    }

    /// Saves `name` to an unlinked file in `dir` and indexes it: the
    /// archive lives as long as the returned image.
    pub fn save_image(&self, name: &str, dir: &Path) -> Result<SavedImage> {
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
        self.save(name, tmp.path())?;
        SavedImage::open(tmp.path(), name)
    }

    /// `docker load` of a docker-archive tar file, streamed from disk.
    pub fn load(&self, archive: &Path) -> Result<()> {
        let uri = "/images/load?quiet=1";
        self.runtime.block_on(async {
            let file = tokio::fs::File::open(archive)
                .await
                .map_err(|e| Error::io(format!("opening {}", archive.display()), e))?;
            let frames = ReaderStream::new(file).map_ok(Frame::data);
            let body = self.request(hyper::Method::POST, uri, BoxBody::new(StreamBody::new(frames))).await?;
            let answer = body.collect().await.map_err(|e| self.failed(uri, &e.to_string()))?.to_bytes();
            // The Engine reports a bad archive inside a 200 stream.
            let text = String::from_utf8_lossy(&answer);
            if let Some(message) = text.lines().find_map(stream_error) {
                return Err(self.failed(uri, &message));
            }
            Ok(())
        })
    }

    /// `docker rmi NAME`; a missing image is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        check_name(name, &self.addr)?;
        let uri = format!("/images/{name}");
        self.runtime.block_on(async {
            match self.request(hyper::Method::DELETE, &uri, empty()).await {
                Ok(_) => Ok(()),
                Err(Error::Docker { message, .. }) if message.starts_with("404") => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    async fn request(&self, method: hyper::Method, uri: &str, body: Body) -> Result<hyper::body::Incoming> {
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
            .body(body)
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

fn stream_error(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("error").and_then(|e| e.as_str()).map(str::to_owned)
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

    #[test]
    fn load_errors_are_found_in_the_stream() {
        assert_eq!(stream_error(r#"{"error":"bad archive"}"#).as_deref(), Some("bad archive"));
        assert_eq!(stream_error(r#"{"stream":"Loaded image: x\n"}"#), None);
        assert_eq!(stream_error("not json"), None);
    }
}
