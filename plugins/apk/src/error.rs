//! What can go wrong, typed, and how it reaches the host.

use caulk_sdk::types::{Error, ErrorKind};

use crate::db::DbError;
use crate::name::NameError;

/// An error of the apk plugin; converted into the WIT `error` record with
/// its kind and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApkError {
    #[error("the image has no apk database: {path} is missing{}", .os.as_ref().map(|os| format!(", though its os-release says {os}")).unwrap_or_default())]
    NoDatabase {
        path: &'static str,
        /// The image's OS when os-release names an apk distribution: then
        /// the database was removed, not never there.
        os: Option<String>,
    },
    #[error(
        "the image has an apk database but no apk binary ({paths}), and the host has none to use with --root: {why}"
    )]
    NoApk { paths: String, why: String },
    #[error("the image lists no package repositories ({path} is missing or empty)")]
    NoRepositories { path: &'static str },
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("the host gave no answer to the {phase} probe `{id}` ({what})")]
    MissingFact { phase: &'static str, id: &'static str, what: &'static str },
    #[error("update for package {name:?} from the report: the name is not an apk package name: {problem}")]
    BadName { name: String, problem: NameError },
    #[error("update for package {name}: {field} {value:?} is not an apk version: {problem}")]
    BadVersion { name: String, field: &'static str, value: String, problem: String },
    #[error("apk has no setting {key:?} (from --plugin-opt apk.{key}=...)")]
    UnknownSetting { key: String },
    #[error("apk does not take package index URLs ({urls}): the image's own /etc/apk/repositories decides")]
    IndexUrls { urls: String },
}

impl ApkError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoDatabase { .. } | Self::NoApk { .. } | Self::NoRepositories { .. } => {
                ErrorKind::NotApplicable
            }
            Self::Database(_) | Self::BadName { .. } | Self::BadVersion { .. } => ErrorKind::MalformedInput,
            Self::MissingFact { .. } => ErrorKind::MissingFacts,
            Self::UnknownSetting { .. } | Self::IndexUrls { .. } => ErrorKind::Unsupported,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::NoDatabase { os: Some(_), .. } => {
                "the image removed apk's database (a hardened or static variant); without it nothing says \
                 which packages are installed, so caulk cannot patch them"
            }
            Self::NoDatabase { os: None, .. } => {
                "the apk updater patches Alpine and Wolfi (Chainguard) images; is this image built from one?"
            }
            Self::NoApk { .. } => {
                "a distroless Wolfi/Chainguard image has no apk; give caulk an image that has apk-tools with \
                 `--tooling-image IMAGE` (or install apk-tools on the host)"
            }
            Self::NoRepositories { .. } => {
                "apk can only fetch fixed packages from repositories listed in the image's /etc/apk/repositories"
            }
            Self::Database(_) => "the image's apk database is damaged; `apk audit` inside it says more",
            Self::BadName { .. } | Self::BadVersion { .. } => {
                "the report is damaged or was not made for an apk package; --ignore-errors skips such entries"
            }
            Self::MissingFact { .. } => "this is a bug in the host: it must answer every probe",
            Self::UnknownSetting { .. } => "the apk updater has no settings",
            Self::IndexUrls { .. } => "edit the image's /etc/apk/repositories to use another mirror",
        }
    }
}

impl From<ApkError> for Error {
    fn from(error: ApkError) -> Self {
        Error::new(error.kind(), error.to_string()).with_hint(error.hint())
    }
}
