//! What can go wrong, typed, and how it reaches the host.

use caulk_sdk::types::{Error, ErrorKind};

use crate::name::{LocationError, NameError};

/// An error of the pip plugin; converted into the WIT `error` record with
/// its kind and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipError {
    #[error(
        "update for package {name:?} from the report: the name is not a Python distribution name: {problem}"
    )]
    BadName { name: String, problem: NameError },
    #[error("update for package {name}: {field} {value:?} is refused: {problem}")]
    BadVersion { name: String, field: &'static str, value: String, problem: String },
    #[error("update for package {name}: location {location:?} is refused: {problem}")]
    BadLocation { name: String, location: String, problem: LocationError },
    #[error("the host gave no answer to the {phase} probe `{id}`")]
    MissingFact { phase: &'static str, id: String },
    #[error("pip has no setting {key:?} (from --plugin-opt pip.{key}=...)")]
    UnknownSetting { key: String },
    #[error("setting pip.{key}={value:?}: {problem}")]
    BadSetting { key: String, value: String, problem: &'static str },
    #[error("package index URL {url:?} is refused: {problem}")]
    BadIndexUrl { url: String, problem: caulk_sdk::index_url::IndexUrlError },
}

impl PipError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::BadName { .. } | Self::BadVersion { .. } | Self::BadLocation { .. } => {
                ErrorKind::MalformedInput
            }
            Self::MissingFact { .. } => ErrorKind::MissingFacts,
            Self::UnknownSetting { .. } | Self::BadSetting { .. } | Self::BadIndexUrl { .. } => {
                ErrorKind::Unsupported
            }
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::BadName { .. } | Self::BadVersion { .. } | Self::BadLocation { .. } => {
                "the report is damaged or was not made for a Python distribution; --ignore-errors skips such entries"
            }
            Self::MissingFact { .. } => "this is a bug in the host: it must answer every probe",
            Self::UnknownSetting { .. } | Self::BadSetting { .. } => {
                "the pip updater knows `dry-run=true|false` (resolve each install with pip before planning)"
            }
            Self::BadIndexUrl { .. } => {
                "give index URLs as http:// or https:// URLs with a host, without spaces, with `%` only in %XX escapes"
            }
        }
    }
}

impl From<PipError> for Error {
    fn from(error: PipError) -> Self {
        Error::new(error.kind(), error.to_string()).with_hint(error.hint())
    }
}
