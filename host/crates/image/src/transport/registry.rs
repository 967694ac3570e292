//! Registry references (`docker://REF` or bare) through `oci-client`.
//!
//! `oci-client` is async; this module owns one multi-threaded tokio runtime
//! for the process and bridges to the crate's synchronous traits: a pulled
//! blob becomes a `Read` that blocks on the next chunk, and a pushed blob is
//! fed to a streaming upload task through a bounded channel, so neither side
//! ever holds a whole layer in memory.
//!
//! Credentials come from the Docker config (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`): `credHelpers` for the registry, then
//! `auths`, then `credsStore`. Plain HTTP is used for loopback registries and
//! for those listed in [`RegistryOptions::insecure`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use super::{BlobDesc, ImageDestination, ImageSource, RawManifest};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;
use crate::reference::RegistryRef;

/// Registry settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) to reach over plain HTTP; loopback
    /// addresses always are.
    pub insecure: Vec<String>,
    /// Directory holding `config.json`; `None` means `$DOCKER_CONFIG`, then
    /// `~/.docker`.
    pub docker_config: Option<PathBuf>,
    /// Where to look for `docker-credential-*` helpers; `None` means `$PATH`.
    pub helper_path: Option<OsString>,
}

/// Bytes per chunk handed between the sync and async sides.
const CHUNK: usize = 1 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("caulk-registry")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

struct Session {
    client: Client,
    reference: Reference,
    registry: String,
}

impl Session {
    fn new(reference: &RegistryRef, options: &RegistryOptions) -> Result<Self> {
        let registry = reference.registry().to_owned();
        let plain = is_loopback(&registry) || options.insecure.iter().any(|r| r == &registry);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_mins(1)),
            ..ClientConfig::default()
        };
        let client = Client::new(config);
        let auth = credentials(&registry, options)?;
        let inner = reference.0.clone();
        runtime().block_on(client.store_auth_if_needed(inner.resolve_registry(), &auth));
        Ok(Session { client, reference: inner, registry })
    }

    fn error(&self, e: &OciDistributionError) -> Error {
        classify(&self.registry, e)
    }

    /// [`Self::error`], with a refusal naming one of `codes` (the
    /// registry's "no such thing") made [`Error::ImageNotFound`]. The codes
    /// are matched without underscores: `classify` spells an envelope's
    /// code as the client's enum does (`NAMEUNKNOWN`).
    fn not_found_or(&self, e: &OciDistributionError, codes: &[&str], reference: String) -> Error {
        match self.error(e) {
            Error::RegistryRefused { reason, .. }
                if codes.iter().any(|c| reason.replace('_', "").contains(&c.replace('_', ""))) =>
            {
                self.not_found(reference)
            }
            other => other,
        }
    }

    fn not_found(&self, reference: String) -> Error {
        Error::ImageNotFound { origin: format!("docker://{}", self.registry), reference, hint: String::new() }
    }

    fn pull_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest)> {
        let (bytes, digest) = runtime()
            .block_on(self.client.pull_manifest_raw(
                reference,
                &RegistryAuth::Anonymous,
                &media::MANIFEST_ACCEPT,
            ))
            .map_err(|e| self.not_found_or(&e, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"], reference.whole()))?;
        // The registry's word for the digest is not enough: hash the bytes.
        let actual = Digest::of(&bytes);
        if let Ok(claimed) = Digest::parse(&digest)
            && claimed != actual
        {
            return Err(Error::DigestMismatch {
                origin: format!("docker://{}", reference.whole()),
                expected: claimed,
                actual,
            });
        }
        Ok((bytes.to_vec(), actual))
    }
}

/// Sorts an `oci-client` error into retryable, refused or unauthorized.
fn classify(registry: &str, e: &OciDistributionError) -> Error {
    let reason = e.to_string();
    let refused = |reason: String| Error::RegistryRefused { registry: registry.to_owned(), reason };
    let unauthorized = |reason: String| Error::Unauthorized { registry: registry.to_owned(), reason };
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            unauthorized(reason)
        }
        OciDistributionError::ServerError { code: 401 | 403, .. } => unauthorized(reason),
        OciDistributionError::ServerError { code, .. } if *code >= 500 => {
            Error::Registry { registry: registry.to_owned(), reason }
        }
        OciDistributionError::ServerError { .. } | OciDistributionError::ImageManifestNotFoundError(_) => {
            refused(reason)
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = format!("{envelope:?}").to_uppercase();
            if codes.contains("UNAUTHORIZED") || codes.contains("DENIED") {
                unauthorized(reason)
            } else {
                refused(format!("{reason} [{codes}]"))
            }
        }
        OciDistributionError::RequestError(r)
            if r.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            unauthorized(reason)
        }
        OciDistributionError::RequestError(r) if r.status().is_some_and(|s| s.is_client_error()) => {
            refused(reason)
        }
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => Error::Registry {
            registry: registry.to_owned(),
            reason: format!("{reason}: {}", source_chain(e)),
        },
        _ => refused(reason),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Registries page `tags/list`. A page shorter than asked for is taken as
/// the last one, so this must not exceed what registries serve per page:
/// Docker Hub and quay.io cap pages at 100 whatever `n` asks.
const TAGS_PAGE: usize = 100;

/// The most tags [`list_tags`] takes from one repository: far more than any
/// real one has, and a registry that pages on without end must not keep
/// caulk listing (and growing) forever.
pub const MAX_TAGS: usize = 100_000;

/// Every tag of `reference`'s repository (`/v2/<name>/tags/list`, following
/// pages), in the registry's order. The reference's own tag is ignored. A
/// repository nobody has pushed to is [`Error::ImageNotFound`] (the
/// registry's `NAME_UNKNOWN`).
pub fn list_tags(reference: &RegistryRef, options: &RegistryOptions) -> Result<Vec<String>> {
    let session = Session::new(reference, options)?;
    let mut tags: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let last = tags.last().cloned();
        let page = runtime()
            .block_on(session.client.list_tags(
                &session.reference,
                &RegistryAuth::Anonymous,
                Some(TAGS_PAGE),
                last.as_deref(),
            ))
            // Any 404 of tags/list is a repository that does not exist:
            // registries name it NAME_UNKNOWN, Harbor NOT_FOUND, others with
            // a code the client does not know.
            .map_err(|e| match e {
                OciDistributionError::ServerError { code: 404, .. } => {
                    session.not_found(reference.to_string())
                }
                e => session.not_found_or(&e, &["NAME_UNKNOWN", "NOT_FOUND"], reference.to_string()),
            })?;
        if tags.len() + page.tags.len() > MAX_TAGS {
            return Err(Error::RegistryRefused {
                registry: session.registry.clone(),
                reason: format!(
                    "it lists more than {MAX_TAGS} tags for {reference}; caulk stops listing there"
                ),
            });
        }
        let count = page.tags.len();
        // A registry that ignores `last` would repeat the first page forever.
        let fresh: Vec<String> = page.tags.into_iter().filter(|t| seen.insert(t.clone())).collect();
        let done = count < TAGS_PAGE || fresh.is_empty();
        tags.extend(fresh);
        if done {
            return Ok(tags);
        }
    }
}

/// Read side.
pub struct RegistrySource {
    session: Session,
    reference: RegistryRef,
    top: RawManifest,
}

impl RegistrySource {
    pub fn open(reference: &RegistryRef, options: &RegistryOptions) -> Result<Self> {
        let session = Session::new(reference, options)?;
        let (bytes, digest) = session.pull_manifest(&session.reference)?;
        if let Some(wanted) = reference.digest()
            && wanted != digest.as_str()
        {
            return Err(Error::DigestMismatch {
                origin: format!("docker://{reference}"),
                expected: Digest::parse(wanted)?,
                actual: digest,
            });
        }
        let media_type = RawManifest::declared_media_type(&bytes).unwrap_or_default();
        Ok(RegistrySource {
            session,
            reference: reference.clone(),
            top: RawManifest { bytes, media_type, digest },
        })
    }
}

fn oci_descriptor(desc: &BlobDesc) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.to_string(),
        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// A pulled blob as a blocking reader. A task on the runtime drains the
/// response and hands over ~1 MiB pieces, so the reading thread enters the
/// runtime's machinery once per piece rather than once per network read.
struct StreamReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    done: bool,
}

impl StreamReader {
    fn spawn(mut stream: SizedStream) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        runtime().spawn(async move {
            let mut piece = bytes::BytesMut::with_capacity(CHUNK);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(bytes) => {
                        piece.extend_from_slice(&bytes);
                        if piece.len() >= CHUNK && tx.send(Ok(piece.split().freeze())).await.is_err() {
                            return; // the reader went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            if !piece.is_empty() {
                let _ = tx.send(Ok(piece.freeze())).await;
            }
        });
        StreamReader { rx, chunk: Bytes::new(), done: false }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl ImageSource for RegistrySource {
    fn origin(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn top(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn manifest(&self, desc: &BlobDesc) -> Result<RawManifest> {
        let reference = self.session.reference.clone_with_digest(desc.digest.to_string());
        let (bytes, digest) = self.session.pull_manifest(&reference)?;
        if digest != desc.digest {
            return Err(Error::DigestMismatch {
                origin: self.origin(),
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        Ok(RawManifest { bytes, media_type: desc.media_type.clone(), digest })
    }

    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        // A range request from 0: registries answer 206 and oci-client then
        // leaves verification to the caller, which does it anyway, instead of
        // hashing every blob twice.
        let descriptor = oci_descriptor(desc);
        let client = &self.session.client;
        let reference = &self.session.reference;
        let response = runtime()
            .block_on(async {
                if desc.size == 0 {
                    // `bytes=0-` of an empty blob is unsatisfiable.
                    client.pull_blob_stream(reference, &descriptor).await.map(BlobResponse::Full)
                } else {
                    client.pull_blob_stream_partial(reference, &descriptor, 0, None).await
                }
            })
            .map_err(|e| match self.session.error(&e) {
                Error::RegistryRefused { reason, .. }
                    if reason.contains("BLOB_UNKNOWN") || reason.contains("404") =>
                {
                    Error::BlobNotFound { origin: self.origin(), digest: desc.digest.clone() }
                }
                other => other,
            })?;
        let (BlobResponse::Full(stream) | BlobResponse::Partial(stream)) = response;
        Ok(Box::new(StreamReader::spawn(stream)))
    }

    fn registry(&self) -> Option<&RegistryRef> {
        Some(&self.reference)
    }
}

/// Write side.
pub struct RegistryDestination {
    session: Session,
    reference: RegistryRef,
}

impl RegistryDestination {
    pub fn open(reference: &RegistryRef, options: &RegistryOptions) -> Result<Self> {
        Ok(RegistryDestination { session: Session::new(reference, options)?, reference: reference.clone() })
    }

    fn push_manifest(&self, reference: &Reference, manifest: &RawManifest) -> Result<()> {
        let content_type = manifest
            .media_type
            .parse()
            .map_err(|_| Error::invalid(self.origin(), "manifest media type", manifest.media_type.clone()))?;
        runtime()
            .block_on(self.session.client.push_manifest_raw(reference, manifest.bytes.clone(), content_type))
            .map_err(|e| self.session.error(&e))?;
        Ok(())
    }
}

impl ImageDestination for RegistryDestination {
    fn origin(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool> {
        runtime()
            .block_on(self.session.client.blob_exists(&self.session.reference, desc.digest.as_str()))
            .map_err(|e| self.session.error(&e))
    }

    fn mount_blob(&mut self, desc: &BlobDesc, from: &RegistryRef) -> Result<bool> {
        if from.registry() != self.reference.registry() || from.repository() == self.reference.repository() {
            return Ok(false);
        }
        // A refused mount (the blob is not readable there) just means
        // uploading it.
        Ok(runtime()
            .block_on(self.session.client.mount_blob(&self.session.reference, &from.0, desc.digest.as_str()))
            .is_ok())
    }

    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<oci_client::errors::Result<Bytes>>(4);
        let client = self.session.client.clone();
        let reference = self.session.reference.clone();
        let digest = desc.digest.to_string();
        let size = desc.size;
        let upload = runtime().spawn(async move {
            let stream = tokio_stream(rx);
            client.push_blob_stream(&reference, stream, &digest, Some(size)).await
        });
        // Feed the upload from this thread; a read error (a verification
        // failure included) is passed into the stream so the upload aborts
        // and the registry never commits the blob.
        let mut read_error = None;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match read_full(data, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let message = e.to_string();
                    read_error = Some(e);
                    let _ = tx.blocking_send(Err(OciDistributionError::IoError(io::Error::other(message))));
                    break;
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                break; // the upload ended early; its result says why
            }
        }
        drop(tx);
        let result = runtime().block_on(upload);
        if let Some(e) = read_error {
            return Err(Error::io(format!("reading blob {} for {}", desc.digest, self.origin()), e));
        }
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.session.error(&e)),
            Err(join) => Err(Error::Registry {
                registry: self.session.registry.clone(),
                reason: format!("upload task failed: {join}"),
            }),
        }
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        let reference = self.session.reference.clone_with_digest(manifest.digest.to_string());
        let by_digest = Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            manifest.digest.to_string(),
        );
        self.push_manifest(&by_digest, manifest)
    }

    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()> {
        // The tag moves last: until this PUT the destination is unchanged.
        self.push_manifest(&self.session.reference, top)
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---- credentials -------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

fn config_path(options: &RegistryOptions) -> Option<PathBuf> {
    if let Some(dir) = &options.docker_config {
        return Some(dir.join("config.json"));
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

/// The keys a registry may appear under in `auths`.
fn auth_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
        return vec![
            "https://index.docker.io/v1/".to_owned(),
            "index.docker.io".to_owned(),
            "docker.io".to_owned(),
        ];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ]
}

/// The user name and secret caulk would send to `registry` (`host[:port]`)
/// from the Docker config or its credential helper, for a client that pulls
/// on caulk's behalf (a BuildKit daemon); `None` for anonymous access. An
/// identity token comes back as the secret with an empty user name, the form
/// Docker's credential protocol uses for it.
pub fn login_for(registry: &str, options: &RegistryOptions) -> Result<Option<(String, String)>> {
    Ok(match credentials(registry, options)? {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic(user, secret) => Some((user, secret)),
        RegistryAuth::Bearer(token) => Some((String::new(), token)),
    })
}

fn credentials(registry: &str, options: &RegistryOptions) -> Result<RegistryAuth> {
    let Some(path) = config_path(options) else { return Ok(RegistryAuth::Anonymous) };
    let config: DockerConfig = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Path { path: path.clone(), reason: format!("invalid Docker config: {e}") })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let keys = auth_keys(registry);
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return helper_credentials(helper, registry, options);
    }
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
        if let Some(token) = &entry.identitytoken {
            return Ok(RegistryAuth::Bearer(token.clone()));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
            let Some((user, pass)) = decoded else {
                return Err(Error::Path {
                    path,
                    reason: format!("auths[{registry:?}].auth is not base64 of USER:PASSWORD"),
                });
            };
            return Ok(RegistryAuth::Basic(user, pass));
        }
    }
    if let Some(store) = &config.creds_store {
        return helper_credentials(store, registry, options);
    }
    Ok(RegistryAuth::Anonymous)
}

/// Asks `docker-credential-NAME get` (registry on stdin, as the protocol
/// says); "not found" means anonymous access.
fn helper_credentials(name: &str, registry: &str, options: &RegistryOptions) -> Result<RegistryAuth> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::Registry {
            registry: registry.to_owned(),
            reason: format!("invalid credential helper name {name:?}"),
        });
    }
    let program = format!("docker-credential-{name}");
    let resolved = match &options.helper_path {
        Some(dirs) => std::env::split_paths(dirs)
            .map(|d| d.join(&program))
            .find(|p| p.is_file())
            .map(PathBuf::into_os_string),
        None => Some(OsString::from(&program)),
    };
    let fail = |reason: String| Error::Unauthorized { registry: registry.to_owned(), reason };
    let Some(program_path) = resolved else {
        return Err(fail(format!("credential helper {program} not found")));
    };
    let mut child = Command::new(&program_path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("{program}: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned()
            + String::from_utf8_lossy(&out.stderr).trim();
        if said.to_lowercase().contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        return Err(fail(format!("{program} failed: {said}")));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("{program} printed something other than credentials: {e}")))?;
    if answer.username == "<token>" {
        return Ok(RegistryAuth::Bearer(answer.secret));
    }
    Ok(RegistryAuth::Basic(answer.username, answer.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for yes in ["127.0.0.1:5000", "localhost", "localhost:1", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in ["docker.io", "10.0.0.1:5000", "example.com:443"] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn docker_config_auths_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let helper_dir = dir.path().join("bin");
        std::fs::create_dir(&helper_dir).unwrap();
        let helper = helper_dir.join("docker-credential-fake");
        std::fs::write(&helper, "#!/bin/sh\nread host\n[ \"$host\" = helped.example ] || { echo 'credentials not found in native keychain'; exit 1; }\necho '{\"Username\":\"h\",\"Secret\":\"s\"}'\n").unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"reg.example:5000": {"auth": "dTpw"}, "https://index.docker.io/v1/": {"auth": "ZDpx"}},
                "credHelpers": {"helped.example": "fake"}, "credsStore": "fake"}"#,
        )
        .unwrap();
        let options = RegistryOptions {
            docker_config: Some(dir.path().to_owned()),
            helper_path: Some(helper_dir.into_os_string()),
            ..RegistryOptions::default()
        };
        let pair = |registry: &str| match credentials(registry, &options).unwrap() {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            RegistryAuth::Anonymous => None,
            RegistryAuth::Bearer(_) => panic!("unexpected token"),
        };
        let some = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert_eq!(pair("reg.example:5000"), some("u", "p"));
        assert_eq!(pair("docker.io"), some("d", "q"));
        assert_eq!(pair("helped.example"), some("h", "s"));
        // credsStore answers "not found" for others: anonymous.
        assert_eq!(pair("other.example"), None);
    }
}
