//! What can go wrong, typed, and how it reaches the host.

use caulk_sdk::types::{Error, ErrorKind};

use crate::db::QueryError;
use crate::name::NameError;

/// An error of the rpm plugin; converted into the WIT `error` record with
/// its kind and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpmError {
    #[error("the image has no rpm database (none of {paths}){}", .os.as_ref().map(|os| format!(", though its os-release says {os}")).unwrap_or_default())]
    NoDatabase { paths: String, os: Option<String> },
    #[error(
        "the image lists its packages only in {manifest} (as Azure Linux distroless images do) yet has a package \
         manager, with no rpm database for it to install into"
    )]
    ManifestsOnly { manifest: &'static str },
    #[error("reading the image's rpm database in {dir} failed: {why}")]
    Query { dir: String, why: String },
    #[error("{0}")]
    QueryOutput(#[from] QueryError),
    #[error(
        "the image has an rpm database but no package manager (tdnf, dnf, yum, microdnf or zypper), and the host's \
         dnf cannot work on it: {why}"
    )]
    NoManager { why: String },
    #[error("the image lists no package repositories (no *.repo file in {dirs})")]
    NoRepositories { dirs: String },
    #[error(
        "the image is for {image} and this machine is {host}: the image has no package manager, and the host's dnf \
         would fill it with {host} packages"
    )]
    ForeignArchitecture { image: String, host: String },
    #[error("the host gave no answer to the {phase} probe `{id}` ({what})")]
    MissingFact { phase: &'static str, id: &'static str, what: &'static str },
    #[error("update for package {name:?} from the report: the name is not an RPM package name: {problem}")]
    BadName { name: String, problem: NameError },
    #[error("update for package {name}: {field} {value:?} is not an RPM version: {problem}")]
    BadVersion { name: String, field: &'static str, value: String, problem: String },
    #[error("rpm has no setting {key:?} (from --plugin-opt rpm.{key}=...)")]
    UnknownSetting { key: String },
    #[error("rpm does not take package index URLs ({urls}): the image's own repository files decide")]
    IndexUrls { urls: String },
}

impl RpmError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoDatabase { .. }
            | Self::ManifestsOnly { .. }
            | Self::NoManager { .. }
            | Self::NoRepositories { .. } => ErrorKind::NotApplicable,
            Self::Query { .. } | Self::QueryOutput(_) | Self::BadName { .. } | Self::BadVersion { .. } => {
                ErrorKind::MalformedInput
            }
            Self::MissingFact { .. } => ErrorKind::MissingFacts,
            Self::UnknownSetting { .. } | Self::IndexUrls { .. } | Self::ForeignArchitecture { .. } => {
                ErrorKind::Unsupported
            }
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::NoDatabase { os: Some(_), .. } => {
                "the image removed its rpm database; without it nothing says which packages are installed"
            }
            Self::NoDatabase { os: None, .. } => {
                "the rpm updater patches RPM-based images (RHEL, Fedora, Alma, Rocky, Oracle, Amazon Linux, Azure \
                 Linux, Photon, SUSE); is this image built from one?"
            }
            Self::ManifestsOnly { .. } => {
                "caulk patches an image that lists its packages only in container manifests with the host's dnf, \
                 which it uses only for images without a package manager; remove the manifests or restore the rpm \
                 database"
            }
            Self::Query { .. } | Self::QueryOutput(_) => {
                "the image's rpm database is damaged or of a backend the rpm that read it does not know; `rpm \
                 --verifydb` inside it says more"
            }
            Self::NoManager { .. } => {
                "an image without a package manager is patched with the tooling root's dnf (`--installroot`): give \
                 `--tooling-image IMAGE` with an image that has dnf, or install dnf on the host (Debian: apt-get \
                 install dnf)"
            }
            Self::NoRepositories { .. } => {
                "dnf can only fetch fixed packages from repositories the image configures in /etc/yum.repos.d"
            }
            Self::ForeignArchitecture { .. } => {
                "patch this platform on a machine of its architecture (`--platform` picks it from an index), or \
                 leave it out with `--platform` for the others"
            }
            Self::BadName { .. } | Self::BadVersion { .. } => {
                "the report is damaged or was not made for an RPM package; --ignore-errors skips such entries"
            }
            Self::MissingFact { .. } => "this is a bug in the host: it must answer every probe",
            Self::UnknownSetting { .. } => "the rpm updater has no settings",
            Self::IndexUrls { .. } => "edit the image's repository files to use another mirror",
        }
    }
}

impl From<RpmError> for Error {
    fn from(error: RpmError) -> Self {
        Error::new(error.kind(), error.to_string()).with_hint(error.hint())
    }
}
