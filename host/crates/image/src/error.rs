//! One error type for the whole crate: every variant names the input it is
//! about (an image reference, a blob digest, a path in a layer) and what is
//! wrong with it, so a caller can print it as is.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("{origin}: blob {expected} has digest {actual} (content does not match its descriptor)")]
    DigestMismatch { origin: String, expected: Digest, actual: Digest },

    #[error(
        "{origin}: blob {digest} is {actual} bytes, its descriptor says {expected} (truncated or padded)"
    )]
    SizeMismatch { origin: String, digest: Digest, expected: u64, actual: u64 },

    #[error("{origin}: layer {digest} uncompresses to {actual}, the config's diff_id says {expected}")]
    DiffIdMismatch { origin: String, digest: Digest, expected: Digest, actual: Digest },

    #[error("{origin}: blob {digest} is missing")]
    BlobNotFound { origin: String, digest: Digest },

    #[error("{origin}: no image named {reference:?}{hint}")]
    ImageNotFound { origin: String, reference: String, hint: String },

    #[error("{origin}: invalid {what}: {reason}")]
    Invalid { origin: String, what: String, reason: String },

    #[error("{origin}: unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { origin: String, what: String, media_type: String },

    #[error("layer {layer}: refusing tar entry {entry:?}: {reason}")]
    HostileEntry { layer: String, entry: String, reason: String },

    #[error("layer {layer}: corrupt tar stream: {reason}")]
    CorruptLayer { layer: String, reason: String },

    #[error("no image for platform {wanted} in {origin} (it has: {available})")]
    NoMatchingPlatform { origin: String, wanted: String, available: String },

    /// A registry failure that may pass on retry (5xx, connection dropped).
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },

    /// A definite refusal by a registry (4xx other than auth).
    #[error("registry {registry} refused: {reason}")]
    RegistryRefused { registry: String, reason: String },

    #[error("registry {registry}: not authorized ({reason}); check the credentials in the Docker config")]
    Unauthorized { registry: String, reason: String },

    #[error("{origin}: giving up after {attempts} attempts: {last}")]
    RetriesExhausted { origin: String, attempts: u32, last: String },

    #[error("docker daemon at {host}: {reason}")]
    Daemon { host: String, reason: String },

    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },

    #[error("{what} is not supported by {transport}")]
    Unsupported { transport: String, what: String },

    /// The caller asked to stop (a cancel flag it passed was set).
    #[error("{what}: cancelled")]
    Cancelled { what: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        // A reader in the chain (a digest-verifying one, a registry stream)
        // may have carried one of our errors through `io::Error`: unwrap it so
        // the caller sees the real cause rather than "I/O error: <it>".
        if source.get_ref().is_some_and(<dyn std::error::Error + Send + Sync>::is::<Error>) {
            if let Some(inner) = source.into_inner() {
                if let Ok(ours) = inner.downcast::<Error>() {
                    return *ours;
                }
                unreachable!("checked is::<Error>() above");
            }
            unreachable!("checked get_ref() above");
        }
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn invalid(
        origin: impl Into<String>,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid { origin: origin.into(), what: what.into(), reason: reason.into() }
    }

    /// Whether trying the same operation again could succeed (a network
    /// hiccup or a truncated transfer), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Registry { .. } | Error::SizeMismatch { .. } => true,
            Error::Io { source, .. } => {
                !matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied)
            }
            _ => false,
        }
    }

    /// Carries this error through an API that only speaks `io::Error`;
    /// [`Error::io`] unwraps it again.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// Attaches a context to `io::Result`s.
/// Longest path [`short_path`] leaves whole, in characters.
const SHOWN_PATH: usize = 160;

/// A path fit for a message: whole when short, else its head and tail
/// around `…`. Layer entries can nest far deeper than anyone reads.
pub fn short_path(path: &str) -> std::borrow::Cow<'_, str> {
    let count = path.chars().count();
    if count <= SHOWN_PATH {
        return path.into();
    }
    let head: String = path.chars().take(60).collect();
    let tail: String = path.chars().skip(count - (SHOWN_PATH - 61)).collect();
    format!("{head}…{tail}").into()
}

pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
