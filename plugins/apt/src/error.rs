//! What can go wrong, typed, and how it reaches the host.

use caulk_sdk::types::{Error, ErrorKind};

use crate::name::NameError;
use crate::status::StatusError;

/// An error of the apt plugin; converted into the WIT `error` record with
/// its kind and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AptError {
    #[error("the image has no dpkg database: {path} is missing")]
    NoDpkgStatus {
        path: &'static str,
        /// `/var/lib/dpkg/status.d` exists: a distroless image.
        distroless: bool,
    },
    #[error("the image has a dpkg database but no apt-get ({path} is missing)")]
    NoAptGet { path: &'static str },
    #[error("{0}")]
    Status(#[from] StatusError),
    #[error("the host gave no answer to the {phase} probe `{id}` ({what})")]
    MissingFact { phase: &'static str, id: &'static str, what: &'static str },
    #[error("update for package {name:?} from the report: the name is not a Debian package name: {problem}")]
    BadName { name: String, problem: NameError },
    #[error("update for package {name}: {field} {problem}")]
    BadVersion { name: String, field: &'static str, problem: String },
    #[error("apt has no setting {key:?} (from --plugin-opt apt.{key}=...)")]
    UnknownSetting { key: String },
    #[error("apt setting {key}={value:?} (from --plugin-opt apt.{key}=...): expected {expected}")]
    BadSetting { key: String, value: String, expected: String },
    #[error("{path}: {problem}")]
    StatusD { path: String, problem: String },
    #[error(
        "the distroless image has no apt sources and its os-release ({os}) names no Debian release to take \
         them from"
    )]
    NoSources { os: String },
    #[error("the image platform's architecture {arch:?} has no Debian name")]
    UnknownArch { arch: String },
    #[error("apt does not take package index URLs ({urls}): the image's own apt sources decide")]
    IndexUrls { urls: String },
}

impl AptError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoDpkgStatus { .. } | Self::NoAptGet { .. } => ErrorKind::NotApplicable,
            Self::Status(_) | Self::StatusD { .. } | Self::BadName { .. } | Self::BadVersion { .. } => {
                ErrorKind::MalformedInput
            }
            Self::MissingFact { .. } => ErrorKind::MissingFacts,
            Self::NoSources { .. }
            | Self::UnknownArch { .. }
            | Self::UnknownSetting { .. }
            | Self::BadSetting { .. }
            | Self::IndexUrls { .. } => ErrorKind::Unsupported,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::NoDpkgStatus { distroless: true, .. } => {
                "a distroless image lists its packages in /var/lib/dpkg/status.d; the apt updater patches \
                 it from a tooling root when status.d holds package files"
            }
            Self::NoDpkgStatus { distroless: false, .. } => {
                "the apt updater patches Debian and Ubuntu images; is this image built from one?"
            }
            Self::NoAptGet { .. } => {
                "the image removed apt but kept dpkg's status file; caulk patches only distroless images \
                 (status.d, no status file) from a tooling root"
            }
            Self::Status(_) => "the image's dpkg database is damaged; `dpkg --audit` inside it says more",
            Self::StatusD { .. } => "the image's status.d entries are damaged",
            Self::NoSources { .. } => {
                "add /etc/apt/sources.list to the image, or patch it with a report for a Debian release"
            }
            Self::UnknownArch { .. } => "patch a linux/amd64, arm64, armhf, i386, ppc64le or s390x image",
            Self::BadName { .. } | Self::BadVersion { .. } => {
                "the report is damaged or was not made for a Debian package; --ignore-errors skips such \
                 entries"
            }
            Self::MissingFact { .. } => "this is a bug in the host: it must answer every probe",
            Self::UnknownSetting { .. } | Self::BadSetting { .. } => {
                "the apt updater's one setting is index-ttl (seconds a refresh of the package indexes is reused)"
            }
            Self::IndexUrls { .. } => "edit the image's /etc/apt/sources.list to use another mirror",
        }
    }
}

impl From<AptError> for Error {
    fn from(error: AptError) -> Self {
        Error::new(error.kind(), error.to_string()).with_hint(error.hint())
    }
}
