//! The crate's one error type. Variants the user can act on (address,
//! reachability, daemon version, entitlements) are distinct; `hint` says what
//! to do about them so the binary can print it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid BuildKit address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },

    #[error("BuildKit daemon not reachable at {addr}: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: Source,
    },

    #[error("the BuildKit daemon at {addr} is too old: it lacks {feature}")]
    DaemonTooOld { addr: String, feature: String },

    #[error("the BuildKit daemon at {addr} refused the entitlement {entitlement}")]
    EntitlementRefused { addr: String, entitlement: String },

    #[error("TLS settings for {addr}: {what} {}: {source}", path.display())]
    Tls {
        addr: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Source,
    },

    #[error("BuildKit {call} at {addr} failed ({code}): {message}")]
    Rpc { addr: String, call: &'static str, code: String, message: String },

    #[error("the build at {addr} failed: {message}")]
    Solve { addr: String, message: String },

    /// The client stopped the build (interrupted, or past a time limit);
    /// its call was dropped, which makes the daemon cancel it.
    #[error("the build at {addr} was stopped: {reason}")]
    Stopped { addr: String, reason: String },

    /// A filesync stream (a shared tree or an export) broke or carried
    /// something caulk refuses.
    #[error("{what} with the BuildKit daemon at {addr}: {source}")]
    Filesync {
        addr: String,
        what: &'static str,
        #[source]
        source: crate::filesync::FsError,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What the user can do about it, for the errors that have an answer.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::InvalidAddress { .. } => Some(
                "use unix:///path, tcp://HOST:PORT, docker://, docker-unix:///path or docker-container://NAME",
            ),
            Error::Unreachable { .. } => Some(
                "check that the daemon runs and the address is right (--addr or $BUILDKIT_HOST); \
                 for Docker's BuildKit use docker:// or docker-unix:///var/run/docker.sock",
            ),
            Error::DaemonTooOld { .. } => Some("upgrade BuildKit (or Docker) on the daemon side"),
            Error::EntitlementRefused { .. } => Some(
                "allow it on the daemon (buildkitd --allow-insecure-entitlement network.host, \
                 or Docker's builder entitlements) or run without network steps",
            ),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
