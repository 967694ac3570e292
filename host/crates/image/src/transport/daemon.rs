//! `docker-daemon:NAME:TAG`: images in a Docker Engine, through its HTTP
//! API on a unix socket (`DOCKER_HOST`, default `/var/run/docker.sock`).
//!
//! The Engine only trades whole images as `docker save` archives, so the
//! source spools `GET /images/{name}/get` to a temp file and reads it as a
//! docker archive; the destination builds an archive in a temp dir and posts
//! it to `/images/load`, which tags the image only once it is fully loaded.
//! Note that the Engine re-creates layer blobs on export: diff_ids survive a
//! round trip through it, blob digests do not.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::docker_archive::{DockerArchiveDestination, DockerArchiveSource, familiar};
use super::{BlobDesc, ImageDestination, ImageSource, LocalBlob, RawManifest, TransportOptions};
use crate::error::{Error, IoContext, Result};

const API: &str = "/v1.41";

/// Where the Engine listens.
#[derive(Debug, Clone)]
pub struct DockerHost {
    /// As given (`unix:///run/docker.sock`), for messages.
    pub host: String,
    socket: PathBuf,
}

impl DockerHost {
    pub fn from_options(options: &TransportOptions) -> Result<Self> {
        let host = options
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let Some(path) = host.strip_prefix("unix://") else {
            return Err(Error::Daemon { host, reason: "only unix:// Docker hosts are supported".to_owned() });
        };
        Ok(DockerHost { socket: PathBuf::from(path), host })
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Daemon { host: self.host.clone(), reason: reason.into() }
    }

    /// One HTTP/1.1 request on a fresh connection.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &mut dyn Read, u64)>,
    ) -> Result<Response> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            self.error(format!("cannot connect to {}: {e} (is dockerd running?)", self.socket.display()))
        })?;
        stream.set_read_timeout(Some(Duration::from_mins(10))).ctx(|| "configuring the socket".to_owned())?;
        let mut writer = io::BufWriter::with_capacity(
            1 << 16,
            stream.try_clone().ctx(|| "cloning the socket".to_owned())?,
        );
        let mut head = format!(
            "{method} {API}{path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: caulk\r\nConnection: close\r\n"
        );
        if let Some((content_type, _, len)) = &body {
            let _ = write!(head, "Content-Type: {content_type}\r\nContent-Length: {len}\r\n");
        }
        head.push_str("\r\n");
        let send = |e: io::Error| self.error(format!("{method} {path}: {e}"));
        writer.write_all(head.as_bytes()).map_err(send)?;
        if let Some((_, data, _)) = body {
            crate::transport::oci_layout::copy_stream(data, &mut writer).map_err(send)?;
        }
        writer.flush().map_err(send)?;
        drop(writer);
        Response::read(stream, self, method, path)
    }
}

struct Response {
    status: u16,
    body: Box<dyn Read + Send>,
}

impl Response {
    fn read(stream: UnixStream, host: &DockerHost, method: &str, path: &str) -> Result<Self> {
        let fail = |e: String| host.error(format!("{method} {path}: {e}"));
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| fail(e.to_string()))?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("not an HTTP response: {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).map_err(|e| fail(e.to_string()))? == 0 || h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<u64>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let body: Box<dyn Read + Send> = if chunked {
            Box::new(Chunked { inner: reader, left: 0, done: false })
        } else if let Some(n) = length {
            Box::new(reader.take(n))
        } else {
            Box::new(reader)
        };
        Ok(Response { status, body })
    }

    fn text(mut self) -> String {
        let mut s = String::new();
        let _ = self.body.read_to_string(&mut s);
        s
    }
}

/// HTTP/1.1 chunked transfer decoding.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line == "\r\n" {
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk header {line:?}"))
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a chunk"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Read side: the exported archive, kept in a temp dir for the source's
/// lifetime.
pub struct DaemonSource {
    inner: DockerArchiveSource,
    origin: String,
    _spool: tempfile::TempDir,
}

/// The image ID the Engine has under `name`, if it has one; reads no layers.
pub fn image_id(name: &str, options: &TransportOptions) -> Result<Option<String>> {
    let host = DockerHost::from_options(options)?;
    let short = familiar(name);
    let response = host.request("GET", &format!("/images/{short}/json"), None)?;
    match response.status {
        200 => {
            let text = response.text();
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| host.error(format!("inspecting {short}: {e}")))?;
            Ok(value.get("Id").and_then(|id| id.as_str()).map(str::to_owned))
        }
        404 => Ok(None),
        s => Err(host.error(format!("inspecting {short}: HTTP {s}: {}", response.text().trim()))),
    }
}

pub fn open_source(name: &str, options: &TransportOptions) -> Result<DaemonSource> {
    let host = DockerHost::from_options(options)?;
    let short = familiar(name);
    let origin = format!("docker-daemon:{short}");
    let exists = host.request("GET", &format!("/images/{short}/json"), None)?;
    match exists.status {
        200 => {}
        404 => {
            return Err(Error::ImageNotFound {
                origin: host.host.clone(),
                reference: short,
                hint: String::new(),
            });
        }
        s => return Err(host.error(format!("inspecting {short}: HTTP {s}: {}", exists.text().trim()))),
    }
    let spool = tempdir_in(options.tmp_dir.as_deref())?;
    let archive = spool.path().join("image.tar");
    let mut response = host.request("GET", &format!("/images/{short}/get"), None)?;
    if response.status != 200 {
        let status = response.status;
        return Err(host.error(format!("exporting {short}: HTTP {status}: {}", response.text().trim())));
    }
    let mut file = std::fs::File::create(&archive).ctx(|| format!("creating {}", archive.display()))?;
    crate::transport::oci_layout::copy_stream(&mut response.body, &mut file)
        .map_err(|e| host.error(format!("exporting {short}: {e}")))?;
    let inner = DockerArchiveSource::open(&archive, None, origin.clone())?;
    Ok(DaemonSource { inner, origin, _spool: spool })
}

fn tempdir_in(dir: Option<&Path>) -> Result<tempfile::TempDir> {
    let builder = tempfile::Builder::new().prefix("caulk-daemon-").clone();
    match dir {
        Some(d) => builder.tempdir_in(d).ctx(|| format!("creating a temp dir in {}", d.display())),
        None => builder.tempdir().ctx(|| "creating a temp dir".to_owned()),
    }
}

impl ImageSource for DaemonSource {
    fn origin(&self) -> String {
        self.origin.clone()
    }
    fn top(&self) -> Result<RawManifest> {
        self.inner.top()
    }
    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        self.inner.blob(desc)
    }
    fn local_blob(&self, desc: &BlobDesc) -> Option<LocalBlob> {
        self.inner.local_blob(desc)
    }
}

/// Write side: an archive in a temp dir, loaded at commit.
pub struct DaemonDestination {
    host: DockerHost,
    name: String,
    archive: PathBuf,
    inner: DockerArchiveDestination,
    _spool: tempfile::TempDir,
}

pub fn open_destination(name: &str, options: &TransportOptions) -> Result<DaemonDestination> {
    if name.starts_with("sha256:") {
        return Err(Error::InvalidReference {
            input: format!("docker-daemon:{name}"),
            reason: "writing to the Docker Engine needs NAME:TAG".to_owned(),
        });
    }
    let host = DockerHost::from_options(options)?;
    // Fail before building anything if the Engine is not there.
    let ping = host.request("GET", "/_ping", None)?;
    if ping.status != 200 {
        return Err(host.error(format!("ping: HTTP {}", ping.status)));
    }
    let spool = tempdir_in(options.tmp_dir.as_deref())?;
    let archive = spool.path().join("image.tar");
    let inner = DockerArchiveDestination::create(&archive, Some(name.to_owned()))?;
    Ok(DaemonDestination { host, name: name.to_owned(), archive, inner, _spool: spool })
}

impl ImageDestination for DaemonDestination {
    fn origin(&self) -> String {
        format!("docker-daemon:{}", familiar(&self.name))
    }
    fn accepts_index(&self) -> bool {
        false
    }
    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool> {
        self.inner.has_blob(desc)
    }
    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()> {
        self.inner.put_blob(desc, data)
    }
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.inner.put_manifest(manifest)
    }
    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()> {
        let DaemonDestination { host, name, archive, inner, _spool } = *self;
        Box::new(inner).commit(top)?;
        let len = std::fs::metadata(&archive).ctx(|| format!("reading {}", archive.display()))?.len();
        let mut file = std::fs::File::open(&archive).ctx(|| format!("opening {}", archive.display()))?;
        let response =
            host.request("POST", "/images/load?quiet=1", Some(("application/x-tar", &mut file, len)))?;
        let status = response.status;
        let text = response.text();
        // The Engine reports load failures inside a 200 JSON stream.
        let failed =
            text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| {
                v.get("errorDetail")
                    .or_else(|| v.get("error"))
                    .map(|e| e.get("message").unwrap_or(e).to_string())
            });
        if status != 200 || failed.is_some() {
            return Err(host.error(format!(
                "loading {}: HTTP {status}: {}",
                familiar(&name),
                failed.unwrap_or_else(|| text.trim().to_owned())
            )));
        }
        Ok(())
    }
}
